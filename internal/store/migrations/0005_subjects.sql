-- Data subjects (patients): a keyed digest of the caller's identifier (never the
-- identifier), the digest audit events carry, and the random reference of the
-- subject's key, which lives only in the key provider (Vault KV, or the local
-- development directory). Erasure destroys the key there, then deletes the row; the
-- subject's mappings go with it (ON DELETE CASCADE), in the same transaction.
CREATE TABLE subjects (
    id             bigserial   PRIMARY KEY,
    digest         bytea       NOT NULL UNIQUE,
    digest_version integer     NOT NULL,
    audit_digest   bytea       NOT NULL,
    key_ref        text        NOT NULL UNIQUE,
    created_at     timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE tokens ADD COLUMN subject_id bigint REFERENCES subjects (id) ON DELETE CASCADE;
CREATE INDEX tokens_subject ON tokens (subject_id) WHERE subject_id IS NOT NULL;

GRANT SELECT, INSERT, UPDATE, DELETE ON subjects TO tokenizer_service; -- UPDATE: ForgetSubject locks the row (FOR UPDATE)
GRANT USAGE ON SEQUENCE subjects_id_seq TO tokenizer_service;

-- The audit log: one row per request, hash-chained. body is the canonical event (see
-- docs/audit.md); hash = SHA-256(prev_hash || body). The other columns repeat fields of
-- the body for queries; verification trusts only seq, prev_hash, hash and body.
CREATE TABLE audit_events (
    seq           bigint      PRIMARY KEY CHECK (seq > 0),
    prev_hash     bytea       NOT NULL,
    hash          bytea       NOT NULL,
    body          text        NOT NULL,
    time          timestamptz NOT NULL,
    operation     text        NOT NULL,
    caller        text        NOT NULL,
    -- keyed digests of the tokens revealed or deleted, for the accounting of disclosures
    token_digests bytea[]     NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_events_token_digests ON audit_events USING gin (token_digests);

-- Signed checkpoints of the chain head. A copy also goes to a sink outside the database.
CREATE TABLE audit_checkpoints (
    seq        bigint      NOT NULL,
    hash       bytea       NOT NULL,
    time       timestamptz NOT NULL,
    signature  text        NOT NULL,
    PRIMARY KEY (seq, signature)
);

-- Second line of defence: nobody (short of disabling triggers as a superuser) updates,
-- deletes or truncates audit rows.
CREATE FUNCTION audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit tables are append-only' USING ERRCODE = 'insufficient_privilege';
END $$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoints_append_only BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION audit_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION audit_append_only();

-- The role the service runs as (through a login role that is a member of it; see the
-- README). It may read and write the token vault, and only read and append the audit
-- log. Roles are cluster-wide: create it once, tolerate a concurrent creator.
DO $$
BEGIN
    CREATE ROLE tokenizer_service NOLOGIN;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;
END $$;
GRANT SELECT, INSERT, UPDATE, DELETE ON tokens TO tokenizer_service;
GRANT SELECT, INSERT, UPDATE ON data_keys TO tokenizer_service;
GRANT SELECT ON schema_migrations TO tokenizer_service;
GRANT SELECT, INSERT ON audit_events, audit_checkpoints TO tokenizer_service;

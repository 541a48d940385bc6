-- Per-patient (subject) date-shift offsets of FHIR de-identification: found by a keyed
-- digest of the subject, the offset sealed with AES-256-GCM under a data key (the digest
-- as associated data). Drawn once; the first writer wins.
CREATE TABLE subject_offsets (
    subject_digest bytea       PRIMARY KEY,
    offset_ct      bytea       NOT NULL,
    key_version    integer     NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'tokenizer_service') THEN
        GRANT SELECT, INSERT, DELETE ON subject_offsets TO tokenizer_service;
    END IF;
END $$;

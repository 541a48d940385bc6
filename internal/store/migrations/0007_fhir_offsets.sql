-- Per-patient (subject) date-shift offsets of FHIR de-identification: found by a keyed
-- digest of the subject, the offset sealed with AES-256-GCM (the digest as associated
-- data) under the subject's own key when the subject is known (subject_id), so that an
-- erased patient's offset goes with the row (ON DELETE CASCADE) and cannot be opened
-- from a backup either; else under the value-encryption key. Drawn once; the first
-- writer wins.
CREATE TABLE subject_offsets (
    subject_digest bytea       PRIMARY KEY,
    offset_ct      bytea       NOT NULL,
    key_version    integer     NOT NULL,
    subject_id     bigint      REFERENCES subjects (id) ON DELETE CASCADE,
    created_at     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX subject_offsets_subject ON subject_offsets (subject_id) WHERE subject_id IS NOT NULL;
GRANT SELECT, INSERT, DELETE ON subject_offsets TO tokenizer_service;

-- Grants: time-boxed, approved access to one subject's tokens (internal/grant). A
-- grant goes with its subject: an erased subject has no grants.
CREATE TABLE grants (
    id                 text        PRIMARY KEY,
    subject_id         bigint      NOT NULL REFERENCES subjects (id) ON DELETE CASCADE,
    principal          text        NOT NULL,
    classes            text[]      NOT NULL,
    purposes           text[]      NOT NULL,
    not_before         timestamptz NOT NULL,
    not_after          timestamptz NOT NULL CHECK (not_after > not_before),
    required_approvals integer     NOT NULL CHECK (required_approvals >= 0),
    requester          text        NOT NULL,
    justification      text        NOT NULL DEFAULT '',
    break_glass        boolean     NOT NULL DEFAULT false,
    -- deny: a denial (a FHIR Consent deny provision); it overrides permits.
    deny               boolean     NOT NULL DEFAULT false,
    created_at         timestamptz NOT NULL DEFAULT now(),
    revoked_at         timestamptz,
    revoked_by         text,
    reviewed_at        timestamptz,
    reviewed_by        text
);
CREATE INDEX grants_subject ON grants (subject_id);
CREATE INDEX grants_unreviewed ON grants (created_at) WHERE break_glass AND reviewed_at IS NULL;

CREATE TABLE grant_approvals (
    grant_id    text        NOT NULL REFERENCES grants (id) ON DELETE CASCADE,
    approver    text        NOT NULL,
    approved_at timestamptz NOT NULL,
    PRIMARY KEY (grant_id, approver)
);

GRANT SELECT, INSERT, UPDATE ON grants TO tokenizer_service;
GRANT SELECT, INSERT ON grant_approvals TO tokenizer_service;

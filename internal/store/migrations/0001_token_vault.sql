-- Data keys, stored only wrapped by the key provider (Vault Transit or the local
-- development file). One row per purpose and version.
CREATE TABLE data_keys (
    purpose    text        NOT NULL,
    version    integer     NOT NULL CHECK (version > 0),
    provider   text        NOT NULL,
    wrapped    bytea       NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (purpose, version)
);

-- The token vault. A row is found by a keyed digest of its token (128 bits of an
-- HMAC-SHA-256 over the class and the normalized token); the token itself is not stored
-- in clear. value_ct is AES-256-GCM with associated data binding it to the class and
-- the token digest. Static classes also keep a keyed fingerprint of the normalized
-- value (over class, scope and value, so unique on its own) and the token, encrypted,
-- so that a repeated value gets its token back. The two keys are random, so every
-- insert lands on a random B-tree page: they are kept short and alone in their
-- indexes, and no other index is written per row.
CREATE TABLE tokens (
    class               text        NOT NULL,
    token_digest        bytea       NOT NULL,
    digest_version      integer     NOT NULL,
    scope               text        NOT NULL DEFAULT '',
    fingerprint         bytea,
    fingerprint_version integer,
    value_ct            bytea       NOT NULL,
    token_ct            bytea,
    key_version         integer     NOT NULL,
    created_at          timestamptz NOT NULL DEFAULT now(),
    expires_at          timestamptz,
    PRIMARY KEY (token_digest)
);

CREATE UNIQUE INDEX tokens_fingerprint ON tokens (fingerprint) WHERE fingerprint IS NOT NULL;
CREATE INDEX tokens_expires_at ON tokens (expires_at) WHERE expires_at IS NOT NULL;

-- An identity at an OpenID provider waiting to be joined to an existing
-- account once the same browser signs in to it (see the SQLite
-- migration).
CREATE TABLE pending_joins (
    secret_hash TEXT PRIMARY KEY NOT NULL,
    account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    provider    TEXT NOT NULL,
    issuer      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    email       TEXT,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL
);
CREATE INDEX pending_joins_expiry ON pending_joins(expires_at);

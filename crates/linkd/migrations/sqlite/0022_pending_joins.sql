-- An identity at an OpenID provider waiting to be joined to an existing
-- account: the provider vouched for the person, whose email belongs to
-- `account_id`, and joining by verified email is off. It joins once the
-- same browser (the secret in its cookie, stored hashed) signs in to that
-- account itself, so never without both proofs. Taken (deleted) once.
CREATE TABLE pending_joins (
    secret_hash TEXT PRIMARY KEY NOT NULL,
    account_id  TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    provider    TEXT NOT NULL,
    issuer      TEXT NOT NULL,
    subject     TEXT NOT NULL,
    email       TEXT,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL
) STRICT;
CREATE INDEX pending_joins_expiry ON pending_joins(expires_at);

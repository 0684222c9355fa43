-- Identities at the operator's OpenID providers joined to accounts:
-- keyed by (issuer, subject), the pair OpenID Connect Core §5.7 says is
-- the only stable identifier of a person at a provider, never by email.
-- `provider` is the configured provider's id at the time of joining (for
-- the account page); `email` what the provider said when last used.
CREATE TABLE identities (
    issuer       TEXT NOT NULL,
    subject      TEXT NOT NULL,
    account_id   TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    provider     TEXT NOT NULL,
    email        TEXT,
    joined_at    INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL,
    PRIMARY KEY (issuer, subject)
) STRICT;
CREATE INDEX identities_account ON identities(account_id);

-- A sign-in at a provider in progress: what linkd sent (the state by its
-- hash, the nonce, the PKCE verifier) and where the person goes after.
-- `account_id` is set when a signed-in person adds an identity to their
-- account. Taken (deleted) by the callback, so each works once.
CREATE TABLE upstream_logins (
    state_hash    TEXT PRIMARY KEY NOT NULL,
    provider      TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    next          TEXT NOT NULL,
    account_id    TEXT REFERENCES accounts(id) ON DELETE CASCADE,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX upstream_logins_expiry ON upstream_logins(expires_at);

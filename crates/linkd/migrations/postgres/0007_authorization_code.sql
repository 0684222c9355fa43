-- The authorization code grant (RFC 6749 §4.1 with PKCE, RFC 7636) beside
-- the device grant. Each app lists the exact addresses codes may be sent
-- to (space-separated; a URI holds no space) and which grants it may use.
ALTER TABLE clients ADD COLUMN redirect_uris TEXT NOT NULL DEFAULT '';
ALTER TABLE clients ADD COLUMN code_flow_enabled BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE clients ADD COLUMN refresh_enabled BOOLEAN NOT NULL DEFAULT TRUE;

-- A code handed to an app's redirect URI: single-use, short-lived, bound
-- to its app, redirect URI and PKCE challenge. Stored hashed. Kept after
-- redemption until it expires, so that a second use is recognised and the
-- linked device the first use made is revoked (RFC 6749 §4.1.2).
CREATE TABLE authorization_codes (
    code_hash      TEXT PRIMARY KEY NOT NULL,
    client_id      TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
    account_id     TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    -- The redirect URI as the request named it; NULL when the app's one
    -- registered URI was used without being named (RFC 6749 §4.1.3).
    redirect_uri   TEXT,
    scope          TEXT NOT NULL,
    nonce          TEXT,
    code_challenge TEXT,
    auth_time      BIGINT NOT NULL,
    ip             TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    redeemed_at    BIGINT,
    -- The linked device the redemption made.
    device_id      TEXT
);
CREATE INDEX authorization_codes_expiry ON authorization_codes(expires_at);

-- Consent a person gave an app for a set of scopes (sorted, space-separated),
-- so the next request for the same set skips the confirmation page.
-- Withdrawn when the person unlinks the app.
CREATE TABLE consents (
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    client_id  TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
    scope      TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    PRIMARY KEY (account_id, client_id, scope)
);

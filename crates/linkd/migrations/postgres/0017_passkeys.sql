-- Passkeys and WebAuthn ceremonies in progress (see the SQLite migration).
CREATE TABLE passkeys (
    id            TEXT PRIMARY KEY NOT NULL,
    account_id    TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    user_handle   TEXT NOT NULL,
    name          TEXT NOT NULL,
    static_state  TEXT NOT NULL,
    dynamic_state TEXT NOT NULL,
    sign_count    BIGINT NOT NULL,
    backed_up     BOOLEAN NOT NULL,
    created_at    BIGINT NOT NULL,
    last_used_at  BIGINT
);
CREATE INDEX passkeys_account ON passkeys(account_id);

CREATE TABLE passkey_challenges (
    challenge  TEXT PRIMARY KEY NOT NULL,
    purpose    TEXT NOT NULL,
    binding    TEXT NOT NULL,
    account_id TEXT REFERENCES accounts(id) ON DELETE CASCADE,
    state      TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX passkey_challenges_expiry ON passkey_challenges(expires_at);

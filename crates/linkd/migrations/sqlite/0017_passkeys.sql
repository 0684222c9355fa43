-- Passkeys (WebAuthn credentials) a person added to their account.
-- `id` is the credential id (base64url), unique per authenticator by
-- WebAuthn §6.1; `user_handle` the account's WebAuthn user handle
-- (base64url, the same for every passkey of one account, never the
-- account id: WebAuthn §14.6.1 asks that it reveal nothing). The public
-- key and its extensions (`static_state`) and the signature counter,
-- backup flags and attachment (`dynamic_state`) are the relying-party
-- crate's encodings, base64url; `sign_count` and `backed_up` repeat what
-- a person or an operator may want to read.
CREATE TABLE passkeys (
    id            TEXT PRIMARY KEY NOT NULL,
    account_id    TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    user_handle   TEXT NOT NULL,
    name          TEXT NOT NULL,
    static_state  TEXT NOT NULL,
    dynamic_state TEXT NOT NULL,
    sign_count    INTEGER NOT NULL,
    backed_up     INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER
) STRICT;
CREATE INDEX passkeys_account ON passkeys(account_id);

-- A WebAuthn ceremony in progress: the challenge sent (WebAuthn §13.4.3:
-- random, used once), what it is for ('register' or 'sign_in'), the
-- browser it was sent to (`binding`: the hash of that browser's session
-- or form token), the account adding a passkey, and the crate's state of
-- the ceremony. Taken (deleted) by the answer, so each works once.
CREATE TABLE passkey_challenges (
    challenge  TEXT PRIMARY KEY NOT NULL,
    purpose    TEXT NOT NULL,
    binding    TEXT NOT NULL,
    account_id TEXT REFERENCES accounts(id) ON DELETE CASCADE,
    state      TEXT NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX passkey_challenges_expiry ON passkey_challenges(expires_at);

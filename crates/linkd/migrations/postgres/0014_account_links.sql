-- Single-use links mailed to people (see the SQLite migration).
CREATE TABLE account_links (
    token_hash TEXT PRIMARY KEY NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL,
    subject    TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX account_links_account ON account_links(account_id, purpose);
CREATE INDEX account_links_expiry ON account_links(expires_at);

-- When the account's address was last shown to be the person's (a
-- verification link opened); NULL while it is not.
ALTER TABLE accounts ADD COLUMN email_verified_at BIGINT;

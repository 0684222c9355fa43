-- Single-use links linkd mails to people: a password reset, an address to
-- verify, "this wasn't me" after a new device was linked. Only the
-- SHA-256 of the link's secret is kept; `subject` is what the link acts
-- on (the linked device's id, the address to verify). A used or expired
-- link opens nothing; the purge deletes it after `expires_at`.
CREATE TABLE account_links (
    token_hash TEXT PRIMARY KEY NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL,
    subject    TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER
) STRICT;
CREATE INDEX account_links_account ON account_links(account_id, purpose);
CREATE INDEX account_links_expiry ON account_links(expires_at);

-- When the account's address was last shown to be the person's (a
-- verification link opened); NULL while it is not.
ALTER TABLE accounts ADD COLUMN email_verified_at INTEGER;

-- Settings sync: the documents linked devices share, and a change sequence
-- per account. A document's `seq` is the account's sequence number of its
-- last write; it is also its version (the ETag) and the position in the
-- change feed, so `?since=` and `Last-Event-ID` resume exactly.

CREATE TABLE sync_documents (
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    -- The app's client_id, or 'account' for the collection every app shares.
    namespace  TEXT NOT NULL,
    collection TEXT NOT NULL,
    key        TEXT NOT NULL,
    -- The JSON text as the device sent it; NULL once deleted (a tombstone,
    -- kept so that devices catching up see the deletion).
    body       TEXT,
    size       INTEGER NOT NULL,
    seq        INTEGER NOT NULL,
    deleted    INTEGER NOT NULL DEFAULT 0,
    updated_at INTEGER NOT NULL,
    -- The linked device that wrote last; NULL when the person deleted it
    -- from their account page.
    updated_by TEXT,
    PRIMARY KEY (account_id, namespace, collection, key)
) STRICT;
CREATE UNIQUE INDEX sync_documents_seq ON sync_documents(account_id, seq);

-- The last sequence number handed out per account. Every write bumps it
-- first, which also serialises an account's writes, so sequence numbers
-- become visible in order (a reader never sees 7 before 6 commits).
CREATE TABLE sync_counters (
    account_id TEXT PRIMARY KEY NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL
) STRICT;

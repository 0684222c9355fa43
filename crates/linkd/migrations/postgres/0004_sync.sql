-- Settings sync: the documents linked devices share, and a change sequence
-- per account (see the SQLite migration for the reasoning).

CREATE TABLE sync_documents (
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    namespace  TEXT NOT NULL,
    collection TEXT NOT NULL,
    key        TEXT NOT NULL,
    body       TEXT,
    size       BIGINT NOT NULL,
    seq        BIGINT NOT NULL,
    deleted    BOOLEAN NOT NULL DEFAULT FALSE,
    updated_at BIGINT NOT NULL,
    updated_by TEXT,
    PRIMARY KEY (account_id, namespace, collection, key)
);
CREATE UNIQUE INDEX sync_documents_seq ON sync_documents(account_id, seq);

-- Bumping an account's counter first in every write takes its row lock, so
-- an account's sequence numbers commit in order.
CREATE TABLE sync_counters (
    account_id TEXT PRIMARY KEY NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    seq        BIGINT NOT NULL
);

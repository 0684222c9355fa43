-- Sync tombstones are purged: the oldest ones when an account's writes
-- need room (they count against its document limit), and any older than
-- the retention (--sync-tombstone-retention). `purged_through` is the
-- highest sequence number of a tombstone purged from the account: a device
-- whose cursor is below it may have missed a deletion and must read the
-- collection again from 0.
ALTER TABLE sync_counters ADD COLUMN purged_through INTEGER NOT NULL DEFAULT 0;

-- The retention purge finds old tombstones over all accounts without
-- reading live documents.
CREATE INDEX sync_documents_tombstones ON sync_documents(updated_at) WHERE deleted;

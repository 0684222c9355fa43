-- Sync tombstones are purged, and each account remembers the highest
-- sequence number purged (see the SQLite migration for the reasoning).
ALTER TABLE sync_counters ADD COLUMN purged_through BIGINT NOT NULL DEFAULT 0;

CREATE INDEX sync_documents_tombstones ON sync_documents(updated_at) WHERE deleted;

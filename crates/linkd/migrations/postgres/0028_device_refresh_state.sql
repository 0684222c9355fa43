-- Refresh tokens as one row of state per device; see the SQLite migration
-- for why and for the columns' meaning. Nullable columns without a
-- default: adding them rewrites no row, however many devices there are.
ALTER TABLE linked_devices
    ADD COLUMN refresh_generation    BIGINT,
    ADD COLUMN refresh_hash          TEXT,
    ADD COLUMN refresh_previous_hash TEXT,
    ADD COLUMN refresh_expires_at    BIGINT;

-- `refresh_tokens` now holds only tokens issued before this migration:
-- read, marked rotated when traded for the new form, purged, and
-- droppable once `--refresh-absolute-lifetime` has passed since this
-- migration ran (see the SQLite migration).

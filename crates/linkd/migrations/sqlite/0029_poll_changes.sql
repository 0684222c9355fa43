-- Every way a device code stops being pending, and any change to an app,
-- written down by the database itself, whatever wrote it (a decision, an
-- app deleted with its codes, the `linkd` CLI in another process, an
-- operator's SQL): the server answers polls for pending codes from memory
-- (store/poll_cache.rs) and reads this table to forget what it holds.
-- SQLite's counterpart of PostgreSQL's notifications (migration 0027).
-- AUTOINCREMENT: a sequence number is never handed out twice, even after
-- the rows read are deleted.
-- Rows are deleted a minute after they were written, by whichever
-- process trims (store/sqlite/changes.rs): any reader that reads at least
-- once a minute misses nothing, and one that finds a gap forgets all.
CREATE TABLE poll_changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    -- NULL: an app changed, which forgets every code.
    authorization_id TEXT,
    at INTEGER NOT NULL DEFAULT (CAST(strftime('%s', 'now') AS INTEGER))
);

CREATE TRIGGER device_authorizations_decided
    AFTER UPDATE OF state ON device_authorizations
    FOR EACH ROW WHEN OLD.state = 'pending' AND NEW.state IS NOT 'pending'
BEGIN
    INSERT INTO poll_changes (authorization_id) VALUES (OLD.id);
END;

-- The purge deletes codes past their deadline, which the cache drops by
-- itself; any other delete of a pending code is written down.
CREATE TRIGGER device_authorizations_deleted
    AFTER DELETE ON device_authorizations
    FOR EACH ROW WHEN OLD.state = 'pending'
                  AND OLD.expires_at >= CAST(strftime('%s', 'now') AS INTEGER)
BEGIN
    INSERT INTO poll_changes (authorization_id) VALUES (OLD.id);
END;

CREATE TRIGGER clients_changed
    AFTER UPDATE ON clients
BEGIN
    INSERT INTO poll_changes (authorization_id) VALUES (NULL);
END;

CREATE TRIGGER clients_deleted
    AFTER DELETE ON clients
BEGIN
    INSERT INTO poll_changes (authorization_id) VALUES (NULL);
END;

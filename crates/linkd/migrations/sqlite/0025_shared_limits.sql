-- The table PostgreSQL counts every instance's security limits in (see the
-- PostgreSQL migration). SQLite serves one instance, which counts them in
-- memory, so it stays empty here; it exists so that both schemas, and the
-- purge job's list of tables, are the same.
CREATE TABLE limit_counts (
    name       TEXT NOT NULL,
    key        TEXT NOT NULL,
    sub        TEXT NOT NULL DEFAULT '',
    count      INTEGER NOT NULL,
    since      INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (name, key, sub)
);
CREATE INDEX limit_counts_expiry ON limit_counts(expires_at);

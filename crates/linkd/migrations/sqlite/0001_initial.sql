-- linkd schema, SQLite. Timestamps are seconds since the Unix epoch.

CREATE TABLE clients (
    client_id   TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL,
    secret_hash TEXT,
    scopes      TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE accounts (
    id            TEXT PRIMARY KEY NOT NULL,
    email         TEXT NOT NULL COLLATE NOCASE UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    disabled      INTEGER NOT NULL DEFAULT 0
) STRICT;

CREATE TABLE sessions (
    id_hash    TEXT PRIMARY KEY NOT NULL,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
) STRICT;
CREATE INDEX sessions_account ON sessions(account_id);

CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY NOT NULL,
    private_pem TEXT NOT NULL,
    created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE device_authorizations (
    id               TEXT PRIMARY KEY NOT NULL,
    device_code_hash TEXT NOT NULL UNIQUE,
    user_code        TEXT NOT NULL UNIQUE,
    client_id        TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
    scope            TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'redeemed')),
    account_id       TEXT REFERENCES accounts(id) ON DELETE CASCADE,
    requested_ip     TEXT NOT NULL,
    device_name      TEXT,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    interval_secs    INTEGER NOT NULL,
    decided_at       INTEGER
) STRICT;
CREATE INDEX device_authorizations_expiry ON device_authorizations(expires_at);

CREATE TABLE linked_devices (
    id              TEXT PRIMARY KEY NOT NULL,
    account_id      TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    client_id       TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
    label           TEXT NOT NULL,
    scope           TEXT NOT NULL,
    linked_at       INTEGER NOT NULL,
    linked_ip       TEXT NOT NULL,
    last_refresh_at INTEGER,
    revoked_at      INTEGER
) STRICT;
CREATE INDEX linked_devices_account ON linked_devices(account_id);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY NOT NULL,
    device_id  TEXT NOT NULL REFERENCES linked_devices(id) ON DELETE CASCADE,
    scope      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    rotated_at INTEGER
) STRICT;
CREATE INDEX refresh_tokens_device ON refresh_tokens(device_id);

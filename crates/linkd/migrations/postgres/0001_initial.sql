-- linkd schema, PostgreSQL: the same tables and columns as the SQLite
-- schema. Timestamps are seconds since the Unix epoch (BIGINT).
--
-- Columns that are sorted or case-folded use the "C" collation: SQLite
-- sorts by bytes, and lower() under "C" folds ASCII letters only, like
-- SQLite's NOCASE. The database's own locale then changes nothing.

CREATE TABLE clients (
    client_id   TEXT COLLATE "C" PRIMARY KEY,
    name        TEXT NOT NULL,
    secret_hash TEXT,
    scopes      TEXT NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE accounts (
    id            TEXT PRIMARY KEY,
    email         TEXT COLLATE "C" NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    disabled      BOOLEAN NOT NULL DEFAULT FALSE
);
-- One account per email whatever its ASCII case; lookups use the same
-- expression so they use this index.
CREATE UNIQUE INDEX accounts_email ON accounts (lower(email));

CREATE TABLE sessions (
    id_hash    TEXT PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    csrf_token TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX sessions_account ON sessions(account_id);

CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    private_pem TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    -- Insertion order, to order keys made in the same second (SQLite uses
    -- its rowid).
    seq         BIGINT GENERATED ALWAYS AS IDENTITY
);

CREATE TABLE device_authorizations (
    id               TEXT PRIMARY KEY,
    device_code_hash TEXT NOT NULL UNIQUE,
    user_code        TEXT NOT NULL UNIQUE,
    client_id        TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
    scope            TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'redeemed')),
    account_id       TEXT REFERENCES accounts(id) ON DELETE CASCADE,
    requested_ip     TEXT NOT NULL,
    device_name      TEXT,
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,
    interval_secs    BIGINT NOT NULL,
    decided_at       BIGINT
);
CREATE INDEX device_authorizations_expiry ON device_authorizations(expires_at);

CREATE TABLE linked_devices (
    id              TEXT COLLATE "C" PRIMARY KEY,
    account_id      TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    client_id       TEXT NOT NULL REFERENCES clients(client_id) ON DELETE CASCADE,
    label           TEXT NOT NULL,
    scope           TEXT NOT NULL,
    linked_at       BIGINT NOT NULL,
    linked_ip       TEXT NOT NULL,
    last_refresh_at BIGINT,
    revoked_at      BIGINT
);
CREATE INDEX linked_devices_account ON linked_devices(account_id);

CREATE TABLE refresh_tokens (
    token_hash TEXT PRIMARY KEY,
    device_id  TEXT NOT NULL REFERENCES linked_devices(id) ON DELETE CASCADE,
    scope      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    rotated_at BIGINT
);
CREATE INDEX refresh_tokens_device ON refresh_tokens(device_id);

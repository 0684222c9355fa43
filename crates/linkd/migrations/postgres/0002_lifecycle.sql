-- Linked-device lifecycle: what happened to each account's devices, and
-- access tokens revoked before they expire (RFC 7009).

CREATE TABLE activity (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    account_id TEXT NOT NULL REFERENCES accounts(id) ON DELETE CASCADE,
    kind       TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    app_name   TEXT NOT NULL,
    device     TEXT,
    ip         TEXT NOT NULL,
    at         BIGINT NOT NULL
);
CREATE INDEX activity_account ON activity(account_id, id);

CREATE TABLE revoked_access_tokens (
    jti        TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX revoked_access_tokens_expiry ON revoked_access_tokens(expires_at);

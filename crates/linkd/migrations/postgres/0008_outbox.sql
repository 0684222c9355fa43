-- The outbox: messages linkd sends to the outside (mail, webhooks), each
-- written in the same transaction as its cause; see the SQLite migration
-- for the columns' meaning.
CREATE TABLE outbox (
    id              TEXT PRIMARY KEY NOT NULL,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease           TEXT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    failed_at       BIGINT,
    expires_at      BIGINT
);

-- A claim reads only the due rows of one kind that are still to send.
CREATE INDEX outbox_due ON outbox(kind, next_attempt_at) WHERE failed_at IS NULL;
CREATE INDEX outbox_expiry ON outbox(expires_at);

-- The outbox: messages linkd sends to the outside (mail now, webhooks
-- later), each written in the same transaction as what caused it and
-- sent by the background worker (jobs.rs, outbox.rs), so a crash or an
-- outage of the receiving server delays a message and loses none.
--
-- `lease` names the worker that claimed the row until `next_attempt_at`
-- (a claim moves it to the lease's end): with several instances one
-- claim wins, and a worker that died mid-send gives the row back when
-- its lease runs out. A delivered row is deleted; one that failed for
-- good keeps `failed_at` and `last_error` for the operator until
-- `expires_at`, when the purge takes it.
CREATE TABLE outbox (
    id              TEXT PRIMARY KEY NOT NULL,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease           TEXT,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    failed_at       INTEGER,
    expires_at      INTEGER
) STRICT;

-- A claim reads only the due rows of one kind that are still to send.
CREATE INDEX outbox_due ON outbox(kind, next_attempt_at) WHERE failed_at IS NULL;
CREATE INDEX outbox_expiry ON outbox(expires_at);

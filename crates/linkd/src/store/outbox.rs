//! The outbox: messages to send (mail, webhooks), written in the same
//! transaction as what caused them ([`insert`] takes that transaction),
//! claimed under a lease by the background worker, then deleted once
//! delivered or kept as failed.

use super::db::{Db, Tx, q};
use super::{OutboxKind, OutboxMessage, StoreResult, Timestamp};

const INSERT: &str = "INSERT INTO outbox (id, kind, payload, attempts, next_attempt_at, created_at)
     VALUES ($1, $2, $3, 0, $4, $5)";

/// Adds `messages` inside `tx`, the transaction of the write that caused
/// them: they exist exactly when it committed.
pub(super) async fn insert(tx: &mut Tx<'_>, messages: &[OutboxMessage]) -> StoreResult<()> {
    for m in messages {
        tx.execute(q(
            INSERT,
            &[
                (&m.id).into(),
                m.kind.as_str().into(),
                (&m.payload).into(),
                m.next_attempt_at.into(),
                m.created_at.into(),
            ],
        ))
        .await?;
    }
    Ok(())
}

/// Messages with no other write to go with (a notice about something
/// already committed), in one transaction.
pub(super) async fn enqueue(db: &Db, messages: &[OutboxMessage]) -> StoreResult<()> {
    let mut tx = db.begin().await?;
    insert(&mut tx, messages).await?;
    tx.commit().await
}

pub(super) async fn claim(
    db: &Db,
    kind: OutboxKind,
    lease: &str,
    now: Timestamp,
    lease_until: Timestamp,
    limit: i64,
) -> StoreResult<Vec<OutboxMessage>> {
    // A write that returns rows: on SQLite it must go to the writer, so it
    // runs in a transaction (reads outside one go to the readers).
    let mut tx = db.begin().await?;
    let claimed = tx
        .fetch_all(q(
            db.dialect().claim_outbox,
            &[
                lease.into(),
                lease_until.into(),
                kind.as_str().into(),
                now.into(),
                limit.into(),
            ],
        ))
        .await?;
    tx.commit().await?;
    Ok(claimed)
}

pub(super) async fn delivered(db: &Db, id: &str, lease: &str) -> StoreResult<bool> {
    let done = db
        .execute(q(
            "DELETE FROM outbox WHERE id = $1 AND lease = $2",
            &[id.into(), lease.into()],
        ))
        .await?;
    Ok(done == 1)
}

/// Replaces a claimed message with `messages` in one transaction, while
/// `lease` still holds it: a crash leaves either the one or the others.
pub(super) async fn expand(
    db: &Db,
    id: &str,
    lease: &str,
    messages: &[OutboxMessage],
) -> StoreResult<bool> {
    let mut tx = db.begin().await?;
    let done = tx
        .execute(q(
            "DELETE FROM outbox WHERE id = $1 AND lease = $2",
            &[id.into(), lease.into()],
        ))
        .await?;
    if done != 1 {
        // Another worker holds it now; the rollback leaves it to that one.
        return Ok(false);
    }
    insert(&mut tx, messages).await?;
    tx.commit().await?;
    Ok(true)
}

pub(super) async fn retry(
    db: &Db,
    id: &str,
    lease: &str,
    next_attempt_at: Timestamp,
    error: &str,
) -> StoreResult<bool> {
    let done = db
        .execute(q(
            "UPDATE outbox SET lease = NULL, next_attempt_at = $3, last_error = $4
             WHERE id = $1 AND lease = $2",
            &[
                id.into(),
                lease.into(),
                next_attempt_at.into(),
                error.into(),
            ],
        ))
        .await?;
    Ok(done == 1)
}

pub(super) async fn failed(
    db: &Db,
    id: &str,
    lease: &str,
    now: Timestamp,
    keep_until: Timestamp,
    error: &str,
) -> StoreResult<bool> {
    let done = db
        .execute(q(
            "UPDATE outbox SET lease = NULL, failed_at = $3, expires_at = $4, last_error = $5
             WHERE id = $1 AND lease = $2",
            &[
                id.into(),
                lease.into(),
                now.into(),
                keep_until.into(),
                error.into(),
            ],
        ))
        .await?;
    Ok(done == 1)
}

/// Every message still to send or failed, oldest first (the CLI and tests).
pub(super) async fn list(db: &Db) -> StoreResult<Vec<OutboxMessage>> {
    db.fetch_all(q("SELECT * FROM outbox ORDER BY created_at, id", &[]))
        .await
}

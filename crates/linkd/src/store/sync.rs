//! Synced settings documents, each account's sequence counter and its
//! purge horizon. The rules of a conditional write (RFC 9110
//! preconditions, the document limit, the tombstones it purges) are the
//! domain's (`crate::sync::decide_write`); this applies them inside the
//! transaction that writes.

use super::db::{Arg, Db, Tx, q};
use super::{StoreError, StoreResult, SyncDocument, SyncUsage, SyncWrite, SyncWriteOutcome};
use crate::sync::{WriteDecision, decide_write};

const SELECT_ONE: &str = "SELECT * FROM sync_documents
     WHERE account_id = $1 AND namespace = $2 AND collection = $3 AND key = $4";

/// Hands out the account's next sequence number. Run first in every sync
/// transaction: on PostgreSQL it takes the account's row lock, so the
/// account's writes apply one after another and commit their numbers in
/// order (SQLite has one writer anyway).
async fn next_seq(tx: &mut Tx<'_>, account_id: &str) -> StoreResult<i64> {
    tx.fetch_one(q(
        "INSERT INTO sync_counters (account_id, seq) VALUES ($1, 1)
         ON CONFLICT (account_id) DO UPDATE SET seq = sync_counters.seq + 1
         RETURNING seq AS v",
        &[account_id.into()],
    ))
    .await
}

pub(super) async fn get(
    db: &Db,
    account_id: &str,
    namespace: &str,
    collection: &str,
    key: &str,
) -> StoreResult<Option<SyncDocument>> {
    db.fetch_optional(q(
        SELECT_ONE,
        &[
            account_id.into(),
            namespace.into(),
            collection.into(),
            key.into(),
        ],
    ))
    .await
}

pub(super) async fn write(db: &Db, w: &SyncWrite) -> StoreResult<SyncWriteOutcome> {
    let mut tx = db.begin().await?;
    let seq = next_seq(&mut tx, &w.account_id).await?;
    let current: Option<SyncDocument> = tx
        .fetch_optional(q(
            SELECT_ONE,
            &[
                (&w.account_id).into(),
                (&w.namespace).into(),
                (&w.collection).into(),
                (&w.key).into(),
            ],
        ))
        .await?;
    let mut rows = None;
    let (doc, purge_tombstones) = loop {
        match decide_write(w, seq, current.as_ref(), rows) {
            WriteDecision::Write {
                doc,
                purge_tombstones,
            } => break (doc, purge_tombstones),
            WriteDecision::Refuse(outcome) => return Ok(outcome),
            WriteDecision::CountRows => {
                rows = Some(
                    tx.fetch_one(q(
                        "SELECT COUNT(CASE WHEN NOT deleted THEN 1 END) AS live,
                             COUNT(CASE WHEN deleted THEN 1 END) AS tombstones
                         FROM sync_documents WHERE account_id = $1",
                        &[(&w.account_id).into()],
                    ))
                    .await?,
                );
            }
        }
    };
    let values: [Arg<'_>; 11] = [
        (&doc.account_id).into(),
        (&doc.namespace).into(),
        (&doc.collection).into(),
        (&doc.key).into(),
        (&doc.body).into(),
        doc.size.into(),
        doc.seq.into(),
        doc.deleted.into(),
        doc.updated_at.into(),
        (&doc.updated_by).into(),
        current.as_ref().map(|c| c.seq).into(),
    ];
    let done = match &current {
        None => {
            tx.execute(q(
                "INSERT INTO sync_documents (account_id, namespace, collection, key, body,
                     size, seq, deleted, updated_at, updated_by)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                &values[..10],
            ))
            .await
        }
        // Conditional on the version just read: with the counter lock this
        // cannot miss, but it keeps the write safe on its own.
        Some(_) => {
            tx.execute(q(
                "UPDATE sync_documents SET body = $5, size = $6, seq = $7, deleted = $8,
                     updated_at = $9, updated_by = $10
                 WHERE account_id = $1 AND namespace = $2 AND collection = $3 AND key = $4
                     AND seq = $11",
                &values,
            ))
            .await
        }
    };
    match done {
        Ok(1) => {}
        Ok(_) | Err(StoreError::Conflict) => {
            drop(tx);
            let now = get(db, &w.account_id, &w.namespace, &w.collection, &w.key).await?;
            return Ok(SyncWriteOutcome::PreconditionFailed(now));
        }
        Err(e) => return Err(e),
    }
    // After the write, so a tombstone just revived is live and stays.
    if purge_tombstones > 0 {
        let through: Option<i64> = tx
            .fetch_optional(q(
                "SELECT seq AS v FROM sync_documents WHERE account_id = $1 AND deleted
                 ORDER BY seq LIMIT 1 OFFSET $2",
                &[(&w.account_id).into(), (purge_tombstones - 1).into()],
            ))
            .await?;
        if let Some(through) = through {
            purge_through(&mut tx, &w.account_id, through).await?;
        }
    }
    tx.commit().await?;
    Ok(SyncWriteOutcome::Written(doc))
}

/// Deletes the account's tombstones up to sequence number `through` and
/// raises its purge horizon to it, in the caller's transaction: a device
/// whose cursor is below the horizon is then told to resync instead of
/// silently missing those deletions.
async fn purge_through(tx: &mut Tx<'_>, account_id: &str, through: i64) -> StoreResult<u64> {
    // The counter first, like every sync write: on PostgreSQL it takes the
    // account's row lock (whether or not the horizon rises, hence no
    // condition in WHERE), so a purge never deletes a tombstone a write of
    // the account has just read and is about to revive.
    tx.execute(q(
        "UPDATE sync_counters
         SET purged_through = CASE WHEN purged_through < $2 THEN $2 ELSE purged_through END
         WHERE account_id = $1",
        &[account_id.into(), through.into()],
    ))
    .await?;
    tx.execute(q(
        "DELETE FROM sync_documents WHERE account_id = $1 AND deleted AND seq <= $2",
        &[account_id.into(), through.into()],
    ))
    .await
}

/// One batch of the retention purge: up to `limit` tombstones written
/// before `before`, each account's in its own short transaction. Returns
/// how many rows went.
pub(super) async fn purge_old_tombstones(db: &Db, before: i64, limit: i64) -> StoreResult<u64> {
    // Within an account sequence numbers grow with time, so the newest
    // old tombstone of each account is its new horizon.
    let accounts: Vec<(String, i64)> = db
        .fetch_all(q(
            "SELECT account_id AS k, MAX(seq) AS v FROM (
                 SELECT account_id, seq FROM sync_documents
                 WHERE deleted AND updated_at < $1 LIMIT $2) old
             GROUP BY account_id",
            &[before.into(), limit.into()],
        ))
        .await?;
    let mut purged = 0;
    for (account_id, through) in accounts {
        let mut tx = db.begin().await?;
        purged += purge_through(&mut tx, &account_id, through).await?;
        tx.commit().await?;
    }
    Ok(purged)
}

pub(super) async fn purged_through(db: &Db, account_id: &str) -> StoreResult<i64> {
    let seq: Option<i64> = db
        .fetch_optional(q(
            "SELECT purged_through AS v FROM sync_counters WHERE account_id = $1",
            &[account_id.into()],
        ))
        .await?;
    Ok(seq.unwrap_or(0))
}

pub(super) async fn changes(
    db: &Db,
    account_id: &str,
    namespaces: &[&str],
    collection: Option<&str>,
    since: i64,
    limit: i64,
) -> StoreResult<Vec<SyncDocument>> {
    if namespaces.is_empty() {
        return Ok(Vec::new());
    }
    // A placeholder per namespace (a device sees two): SQLite has no
    // arrays to bind, and the list is short.
    let mut sql = String::from(
        "SELECT * FROM sync_documents
         WHERE account_id = $1 AND seq > $2 AND ($3 IS NULL OR collection = $3)
             AND namespace IN (",
    );
    let mut args: Vec<Arg<'_>> = vec![account_id.into(), since.into(), collection.into()];
    for (i, ns) in namespaces.iter().enumerate() {
        sql.push_str(if i == 0 { "$" } else { ", $" });
        sql.push_str(&(args.len() + 1).to_string());
        args.push((*ns).into());
    }
    sql.push_str(") ORDER BY seq LIMIT $");
    sql.push_str(&(args.len() + 1).to_string());
    args.push(limit.into());
    db.fetch_all(q(&sql, &args)).await
}

pub(super) async fn head(db: &Db, account_id: &str) -> StoreResult<i64> {
    let seq: Option<i64> = db
        .fetch_optional(q(
            "SELECT seq AS v FROM sync_counters WHERE account_id = $1",
            &[account_id.into()],
        ))
        .await?;
    Ok(seq.unwrap_or(0))
}

pub(super) async fn usage(db: &Db, account_id: &str) -> StoreResult<Vec<SyncUsage>> {
    db.fetch_all(q(
        "SELECT g.namespace, g.collection, g.documents, g.bytes, d.updated_at,
             c.name AS app_name, l.label AS last_device
         FROM (SELECT namespace, collection, COUNT(*) AS documents,
                   CAST(SUM(size) AS BIGINT) AS bytes, MAX(seq) AS last_seq
               FROM sync_documents WHERE account_id = $1 AND NOT deleted
               GROUP BY namespace, collection) g
         JOIN sync_documents d ON d.account_id = $1 AND d.seq = g.last_seq
         LEFT JOIN clients c ON c.client_id = g.namespace
         LEFT JOIN linked_devices l ON l.id = d.updated_by
         ORDER BY g.namespace, g.collection",
        &[account_id.into()],
    ))
    .await
}

pub(super) async fn delete_collection(
    db: &Db,
    account_id: &str,
    namespace: &str,
    collection: &str,
    now: i64,
) -> StoreResult<u64> {
    let mut tx = db.begin().await?;
    // The counter first, before reading, like every sync write.
    let mut seq = next_seq(&mut tx, account_id).await?;
    let keys: Vec<String> = tx
        .fetch_all(q(
            "SELECT key AS v FROM sync_documents
             WHERE account_id = $1 AND namespace = $2 AND collection = $3 AND NOT deleted
             ORDER BY key",
            &[account_id.into(), namespace.into(), collection.into()],
        ))
        .await?;
    for (i, key) in keys.iter().enumerate() {
        if i > 0 {
            seq = next_seq(&mut tx, account_id).await?;
        }
        tx.execute(q(
            "UPDATE sync_documents SET body = NULL, size = 0, seq = $1, deleted = TRUE,
                 updated_at = $2, updated_by = NULL
             WHERE account_id = $3 AND namespace = $4 AND collection = $5 AND key = $6",
            &[
                seq.into(),
                now.into(),
                account_id.into(),
                namespace.into(),
                collection.into(),
                key.into(),
            ],
        ))
        .await?;
    }
    tx.commit().await?;
    Ok(keys.len() as u64)
}

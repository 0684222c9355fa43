//! Deleting rows that have outlived their use, in small batches: expired
//! codes, sessions and tokens, and sync tombstones past their retention.

use super::db::{Db, q};
use super::{PurgeBefore, StoreResult};

pub(super) async fn purge(db: &Db, before: &PurgeBefore, limit: i64) -> StoreResult<u64> {
    let mut purged = 0;
    for (table, key, before) in before.by_table() {
        purged += db
            .execute(q(&batch(table, key), &[before.into(), limit.into()]))
            .await?;
    }
    purged += super::sync::purge_old_tombstones(db, before.tombstones, limit).await?;
    Ok(purged)
}

/// Deletes up to `$2` rows of `table` whose `expires_at` is before `$1`,
/// found by their primary key `key` (one column, or several separated by
/// commas). Neither database has `DELETE ... LIMIT` (as built), so the
/// batch is picked by a subquery; by the key, not by a physical row id
/// (SQLite's rowid, PostgreSQL's ctid), so the one statement serves both
/// backends and any engine that speaks PostgreSQL's SQL without its heap
/// (docs/scaling.md). The outer `expires_at < $1` matters on PostgreSQL:
/// a row another transaction renews while the batch is picked (a limit
/// counter counting again) is checked again in its new version before it
/// is deleted, and kept; the key alone would still match it.
fn batch(table: &str, key: &str) -> String {
    format!(
        "DELETE FROM {table} WHERE ({key}) IN
             (SELECT {key} FROM {table} WHERE expires_at < $1 LIMIT $2)
         AND expires_at < $1"
    )
}

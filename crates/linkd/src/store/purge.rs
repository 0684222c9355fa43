//! Deleting rows that have outlived their use, in small batches.

use super::db::Db;
use super::{PurgeBefore, StoreResult, postgres, sqlite};

pub(super) async fn purge(db: &Db, before: &PurgeBefore, limit: i64) -> StoreResult<u64> {
    let mut purged = 0;
    for (table, before) in before.by_table() {
        // Per backend: neither has `DELETE ... LIMIT` by default, and each
        // finds a batch of rows by its own physical row id.
        purged += match db {
            Db::Sqlite(s) => sqlite::purge_batch(s, table, before, limit).await?,
            Db::Postgres(p) => postgres::purge_batch(p, table, before, limit).await?,
        };
    }
    Ok(purged)
}

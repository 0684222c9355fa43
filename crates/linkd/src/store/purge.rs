//! Deleting rows that have outlived their use, in small batches: expired
//! codes, sessions and tokens, and sync tombstones past their retention.

use super::db::{Db, q};
use super::{PurgeBefore, StoreResult};

pub(super) async fn purge(db: &Db, before: &PurgeBefore, limit: i64) -> StoreResult<u64> {
    let mut purged = 0;
    for (table, before) in before.by_table() {
        let sql = (db.dialect().purge_batch)(table);
        purged += db.execute(q(&sql, &[before.into(), limit.into()])).await?;
    }
    purged += super::sync::purge_old_tombstones(db, before.tombstones, limit).await?;
    Ok(purged)
}

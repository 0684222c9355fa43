//! What happened to a person's devices and account, for their account page.

use super::db::{Arg, Db, Tx, q};
use super::{Activity, StoreResult};

const INSERT: &str = "INSERT INTO activity (account_id, kind, client_id, app_name, device, ip, at)
     VALUES ($1, $2, $3, $4, $5, $6, $7)";

fn args(a: &Activity) -> [Arg<'_>; 7] {
    [
        (&a.account_id).into(),
        a.kind.as_str().into(),
        (&a.client_id).into(),
        (&a.app_name).into(),
        (&a.device).into(),
        (&a.ip).into(),
        a.at.into(),
    ]
}

pub(super) async fn insert(db: &Db, a: &Activity) -> StoreResult<()> {
    db.execute(q(INSERT, &args(a))).await?;
    Ok(())
}

/// The same, inside the transaction of what it records.
pub(super) async fn insert_in(tx: &mut Tx<'_>, a: &Activity) -> StoreResult<()> {
    tx.execute(q(INSERT, &args(a))).await?;
    Ok(())
}

pub(super) async fn list(db: &Db, account_id: &str, limit: i64) -> StoreResult<Vec<Activity>> {
    db.fetch_all(q(
        "SELECT * FROM activity WHERE account_id = $1 ORDER BY id DESC LIMIT $2",
        &[account_id.into(), limit.into()],
    ))
    .await
}

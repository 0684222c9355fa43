//! The signing keys every instance signs with.

use super::db::{Db, Tx, q};
use super::{SigningKey, StoreResult, Timestamp};

pub(super) async fn insert(db: &Db, k: &SigningKey) -> StoreResult<()> {
    db.execute(q(
        "INSERT INTO signing_keys (kid, private_pem, created_at) VALUES ($1, $2, $3)",
        &[
            (&k.kid).into(),
            (&k.private_pem).into(),
            k.created_at.into(),
        ],
    ))
    .await?;
    Ok(())
}

pub(super) async fn insert_first(db: &Db, k: &SigningKey) -> StoreResult<bool> {
    let mut tx = db.begin().await?;
    lock_for_first_key(&mut tx).await?;
    let done = tx
        .execute(q(
            "INSERT INTO signing_keys (kid, private_pem, created_at)
             SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM signing_keys)",
            &[
                (&k.kid).into(),
                (&k.private_pem).into(),
                k.created_at.into(),
            ],
        ))
        .await?;
    tx.commit().await?;
    Ok(done == 1)
}

/// The first-key lock, per backend: the check and the insert above must
/// not interleave with another instance's.
async fn lock_for_first_key(tx: &mut Tx<'_>) -> StoreResult<()> {
    match tx {
        // The transaction holds SQLite's one writer lock already.
        Tx::Sqlite(..) => Ok(()),
        // Under READ COMMITTED two instances could both see an empty
        // table and both insert; this lock mode conflicts with itself, so
        // the second waits and then sees the first one's key.
        Tx::Postgres(_) => tx
            .execute(q(
                "LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE",
                &[],
            ))
            .await
            .map(drop),
    }
}

pub(super) async fn revoke(db: &Db, kid: &str, now: Timestamp) -> StoreResult<bool> {
    let done = db
        .execute(q(
            "UPDATE signing_keys SET revoked_at = $2 WHERE kid = $1 AND revoked_at IS NULL",
            &[kid.into(), now.into()],
        ))
        .await?;
    Ok(done == 1)
}

pub(super) async fn list(db: &Db) -> StoreResult<Vec<SigningKey>> {
    db.fetch_all(q(db.dialect().signing_keys_newest_first, &[]))
        .await
}

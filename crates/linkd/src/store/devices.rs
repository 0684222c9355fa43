//! Linked devices and their tokens: refresh tokens (stored hashed, one
//! family per device) and revoked access-token ids.

use super::db::{Db, Tx, q};
use super::{LinkedDevice, OutboxMessage, RefreshToken, StoreResult, Timestamp};

/// Every read of a linked device brings its app's name along.
macro_rules! device_select {
    ($where:literal) => {
        concat!(
            "SELECT d.*, c.name AS app_name FROM linked_devices d
             JOIN clients c ON c.client_id = d.client_id ",
            $where
        )
    };
}

pub(super) async fn insert(tx: &mut Tx<'_>, d: &LinkedDevice) -> StoreResult<()> {
    tx.execute(q(
        "INSERT INTO linked_devices (id, account_id, client_id, label, scope, linked_at,
             linked_ip, last_refresh_at, revoked_at, dpop_jkt, kind)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        &[
            (&d.id).into(),
            (&d.account_id).into(),
            (&d.client_id).into(),
            (&d.label).into(),
            (&d.scope).into(),
            d.linked_at.into(),
            (&d.linked_ip).into(),
            d.last_refresh_at.into(),
            d.revoked_at.into(),
            (&d.dpop_jkt).into(),
            d.kind.as_str().into(),
        ],
    ))
    .await?;
    Ok(())
}

pub(super) async fn insert_refresh_token(tx: &mut Tx<'_>, t: &RefreshToken) -> StoreResult<()> {
    tx.execute(q(
        "INSERT INTO refresh_tokens (token_hash, device_id, scope, created_at, expires_at,
             rotated_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            (&t.token_hash).into(),
            (&t.device_id).into(),
            (&t.scope).into(),
            t.created_at.into(),
            t.expires_at.into(),
            t.rotated_at.into(),
        ],
    ))
    .await?;
    Ok(())
}

pub(super) async fn get(db: &Db, id: &str) -> StoreResult<Option<LinkedDevice>> {
    db.fetch_optional(q(device_select!("WHERE d.id = $1"), &[id.into()]))
        .await
}

pub(super) async fn list(db: &Db, account_id: &str) -> StoreResult<Vec<LinkedDevice>> {
    db.fetch_all(q(
        device_select!(
            "WHERE d.account_id = $1 AND d.revoked_at IS NULL ORDER BY d.linked_at DESC, d.id"
        ),
        &[account_id.into()],
    ))
    .await
}

pub(super) async fn rename(db: &Db, id: &str, account_id: &str, label: &str) -> StoreResult<bool> {
    let done = db
        .execute(q(
            "UPDATE linked_devices SET label = $1
             WHERE id = $2 AND account_id = $3 AND revoked_at IS NULL",
            &[label.into(), id.into(), account_id.into()],
        ))
        .await?;
    Ok(done == 1)
}

pub(super) async fn revoke(
    db: &Db,
    id: &str,
    now: Timestamp,
    outbox: &[OutboxMessage],
) -> StoreResult<bool> {
    // The device row first, then its tokens: the order `rotate` keeps too,
    // so on PostgreSQL the two cannot deadlock.
    let mut tx = db.begin().await?;
    let done = revoke_in(&mut tx, id, None, now).await?;
    // Only the caller that unlinked it tells anyone.
    if done {
        super::outbox::insert(&mut tx, outbox).await?;
    }
    tx.commit().await?;
    Ok(done)
}

/// The same inside a caller's transaction, for the device of `account_id`
/// only when one is given. True when it unlinked the device.
pub(super) async fn revoke_in(
    tx: &mut Tx<'_>,
    id: &str,
    account_id: Option<&str>,
    now: Timestamp,
) -> StoreResult<bool> {
    let done = tx
        .execute(q(
            "UPDATE linked_devices SET revoked_at = $1
             WHERE id = $2 AND revoked_at IS NULL AND ($3 IS NULL OR account_id = $3)",
            &[now.into(), id.into(), account_id.into()],
        ))
        .await?;
    // Someone else's device keeps its tokens; a device revoked before has
    // none left.
    if account_id.is_none() || done == 1 {
        tx.execute(q(
            "DELETE FROM refresh_tokens WHERE device_id = $1",
            &[id.into()],
        ))
        .await?;
    }
    Ok(done == 1)
}

pub(super) async fn active_for_token(
    db: &Db,
    device_id: &str,
    jti: &str,
) -> StoreResult<Option<LinkedDevice>> {
    db.fetch_optional(q(
        device_select!(
            "WHERE d.id = $1 AND d.revoked_at IS NULL
             AND NOT EXISTS (SELECT 1 FROM revoked_access_tokens WHERE jti = $2)"
        ),
        &[device_id.into(), jti.into()],
    ))
    .await
}

pub(super) async fn get_refresh_token(
    db: &Db,
    token_hash: &str,
) -> StoreResult<Option<RefreshToken>> {
    db.fetch_optional(q(
        "SELECT * FROM refresh_tokens WHERE token_hash = $1",
        &[token_hash.into()],
    ))
    .await
}

pub(super) async fn rotate(
    db: &Db,
    old_hash: &str,
    new: &RefreshToken,
    now: Timestamp,
) -> StoreResult<bool> {
    let mut tx = db.begin().await?;
    // The device row first, then the token, like `revoke`: on PostgreSQL
    // the other order lets a refresh and an unlink deadlock (each holding
    // the row the other updates next). SQLite's one writer cannot
    // deadlock, and one order for both keeps one transaction. If the token
    // turns out to be rotated already, the rollback undoes this.
    tx.execute(q(
        "UPDATE linked_devices SET last_refresh_at = $1 WHERE id = $2",
        &[now.into(), (&new.device_id).into()],
    ))
    .await?;
    let done = tx
        .execute(q(
            "UPDATE refresh_tokens SET rotated_at = $1
             WHERE token_hash = $2 AND rotated_at IS NULL",
            &[now.into(), old_hash.into()],
        ))
        .await?;
    if done != 1 {
        return Ok(false);
    }
    insert_refresh_token(&mut tx, new).await?;
    tx.commit().await?;
    Ok(true)
}

pub(super) async fn revoke_access_token(
    db: &Db,
    jti: &str,
    expires_at: Timestamp,
) -> StoreResult<()> {
    db.execute(q(
        "INSERT INTO revoked_access_tokens (jti, expires_at) VALUES ($1, $2)
         ON CONFLICT (jti) DO NOTHING",
        &[jti.into(), expires_at.into()],
    ))
    .await?;
    Ok(())
}

/// Notes a DPoP proof (by a hash of its key and `jti`) until `expires_at`:
/// false when it was seen already, on any instance (RFC 9449 §11.1).
pub(super) async fn note_dpop_proof(db: &Db, id: &str, expires_at: Timestamp) -> StoreResult<bool> {
    let done = db
        .execute(q(
            "INSERT INTO dpop_proofs (id, expires_at) VALUES ($1, $2)
             ON CONFLICT (id) DO NOTHING",
            &[id.into(), expires_at.into()],
        ))
        .await?;
    Ok(done == 1)
}

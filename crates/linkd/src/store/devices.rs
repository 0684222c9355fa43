//! Linked devices and their tokens: each device's refresh token state
//! (hashes, on the device's own row), the refresh tokens issued before
//! that (one row per rotation, read and purged only) and revoked
//! access-token ids.

use super::db::{Db, Tx, q};
use super::{LegacyRefreshToken, LinkedDevice, OutboxMessage, StoreResult, Timestamp};

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

/// Stores a new device with its first refresh token's state, if any.
pub(super) async fn insert(tx: &mut Tx<'_>, d: &LinkedDevice) -> StoreResult<()> {
    let refresh = d.refresh.as_ref();
    tx.execute(q(
        "INSERT INTO linked_devices (id, account_id, client_id, label, scope, linked_at,
             linked_ip, last_refresh_at, revoked_at, dpop_jkt, kind, refresh_generation,
             refresh_hash, refresh_previous_hash, refresh_expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
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
            refresh.map(|r| r.generation).into(),
            refresh.map(|r| r.token_hash.as_str()).into(),
            refresh.and_then(|r| r.previous_hash.as_deref()).into(),
            refresh.map(|r| r.expires_at).into(),
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
    // The whole token family goes with this one row: every refresh
    // checks `revoked_at` on it, whatever form its token has. Tokens of
    // the old form stay in `refresh_tokens` until the purge (their device
    // being unlinked, they are refused): deleting them by `device_id`
    // would probe that table's every partition, for rows that lead
    // nowhere.
    let done = tx
        .execute(q(
            "UPDATE linked_devices SET revoked_at = $1
             WHERE id = $2 AND revoked_at IS NULL AND ($3 IS NULL OR account_id = $3)",
            &[now.into(), id.into(), account_id.into()],
        ))
        .await?;
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

/// A refresh token of the old form, by its hash.
pub(super) async fn get_legacy_refresh_token(
    db: &Db,
    token_hash: &str,
) -> StoreResult<Option<LegacyRefreshToken>> {
    db.fetch_optional(q(
        "SELECT * FROM refresh_tokens WHERE token_hash = $1",
        &[token_hash.into()],
    ))
    .await
}

/// Generation `from` → `from + 1`: the current hash becomes the previous
/// one (SQL reads every right-hand side from the row as it was), the new
/// token's hash and expiry are stored, and the refresh is noted. One
/// conditional update of one row, so of two refreshes with one token
/// exactly one changes it.
pub(super) async fn rotate_refresh_token(
    db: &Db,
    device_id: &str,
    from: i64,
    token_hash: &str,
    expires_at: Timestamp,
    now: Timestamp,
) -> StoreResult<bool> {
    let Some(next) = from.checked_add(1) else {
        return Ok(false);
    };
    let done = db
        .execute(q(
            "UPDATE linked_devices SET refresh_generation = $1,
                 refresh_previous_hash = refresh_hash, refresh_hash = $2,
                 refresh_expires_at = $3, last_refresh_at = $4
             WHERE id = $5 AND refresh_generation = $6 AND revoked_at IS NULL",
            &[
                next.into(),
                token_hash.into(),
                expires_at.into(),
                now.into(),
                device_id.into(),
                from.into(),
            ],
        ))
        .await?;
    Ok(done == 1)
}

/// A token of the old form traded for the device's first token of the
/// new form (generation 1): the device's state is set only if it has
/// none yet, and the old token marked rotated only if it was not, in one
/// transaction, so a second use of the old token is still reuse.
pub(super) async fn upgrade_legacy_refresh_token(
    db: &Db,
    legacy_hash: &str,
    device_id: &str,
    token_hash: &str,
    expires_at: Timestamp,
    now: Timestamp,
) -> StoreResult<bool> {
    let mut tx = db.begin().await?;
    // The device row first, then the token, the order every writer of
    // both keeps: the other order lets two upgrades deadlock on
    // PostgreSQL. A rollback (dropping the transaction) undoes this one
    // if the token turns out to be rotated already.
    let device = tx
        .execute(q(
            "UPDATE linked_devices SET refresh_generation = 1, refresh_hash = $1,
                 refresh_previous_hash = NULL, refresh_expires_at = $2, last_refresh_at = $3
             WHERE id = $4 AND refresh_generation IS NULL AND revoked_at IS NULL",
            &[
                token_hash.into(),
                expires_at.into(),
                now.into(),
                device_id.into(),
            ],
        ))
        .await?;
    if device != 1 {
        return Ok(false);
    }
    let token = tx
        .execute(q(
            "UPDATE refresh_tokens SET rotated_at = $1
             WHERE token_hash = $2 AND device_id = $3 AND rotated_at IS NULL",
            &[now.into(), legacy_hash.into(), device_id.into()],
        ))
        .await?;
    if token != 1 {
        return Ok(false);
    }
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

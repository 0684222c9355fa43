//! Passkeys of accounts, and WebAuthn ceremonies in progress, taken once
//! by the browser that asked for them.

use super::db::{Db, q};
use super::{Activity, Passkey, PasskeyChallenge, StoreResult, Timestamp};

pub(super) async fn insert_challenge(db: &Db, c: &PasskeyChallenge) -> StoreResult<()> {
    db.execute(q(
        "INSERT INTO passkey_challenges (challenge, purpose, binding, account_id, state,
             expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            (&c.challenge).into(),
            (&c.purpose).into(),
            (&c.binding).into(),
            (&c.account_id).into(),
            (&c.state).into(),
            c.expires_at.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// One statement deletes and returns it, so of two answers with the same
/// challenge one gets it (WebAuthn §13.4.3: a challenge is used once).
pub(super) async fn take_challenge(
    db: &Db,
    challenge: &str,
    purpose: &str,
    binding: &str,
    now: Timestamp,
) -> StoreResult<Option<PasskeyChallenge>> {
    let mut tx = db.begin().await?;
    let taken: Option<PasskeyChallenge> = tx
        .fetch_optional(q(
            "DELETE FROM passkey_challenges
             WHERE challenge = $1 AND purpose = $2 AND binding = $3 RETURNING *",
            &[challenge.into(), purpose.into(), binding.into()],
        ))
        .await?;
    tx.commit().await?;
    Ok(taken.filter(|c| c.expires_at > now))
}

pub(super) async fn insert(db: &Db, p: &Passkey, activity: &Activity) -> StoreResult<()> {
    let mut tx = db.begin().await?;
    tx.execute(q(
        "INSERT INTO passkeys (id, account_id, user_handle, name, static_state, dynamic_state,
             sign_count, backed_up, created_at, last_used_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        &[
            (&p.id).into(),
            (&p.account_id).into(),
            (&p.user_handle).into(),
            (&p.name).into(),
            (&p.static_state).into(),
            (&p.dynamic_state).into(),
            p.sign_count.into(),
            p.backed_up.into(),
            p.created_at.into(),
            p.last_used_at.into(),
        ],
    ))
    .await?;
    super::activity::insert_in(&mut tx, activity).await?;
    tx.commit().await
}

pub(super) async fn by_id(db: &Db, id: &str) -> StoreResult<Option<Passkey>> {
    db.fetch_optional(q("SELECT * FROM passkeys WHERE id = $1", &[id.into()]))
        .await
}

pub(super) async fn for_account(db: &Db, account_id: &str) -> StoreResult<Vec<Passkey>> {
    db.fetch_all(q(
        "SELECT * FROM passkeys WHERE account_id = $1 ORDER BY created_at, id",
        &[account_id.into()],
    ))
    .await
}

/// A conditional update on the counter read before the signature was
/// checked (WebAuthn §6.1.1): of two sign-ins that both read it, the one
/// that finds it moved changes nothing. An authenticator without a
/// counter always sends 0; its challenge, taken once, is what stops a
/// replay.
pub(super) async fn used(
    db: &Db,
    p: &Passkey,
    previous_sign_count: i64,
    activity: &Activity,
) -> StoreResult<bool> {
    let mut tx = db.begin().await?;
    let changed = tx
        .execute(q(
            "UPDATE passkeys SET dynamic_state = $2, sign_count = $3, backed_up = $4,
                 last_used_at = $5
             WHERE id = $1 AND sign_count = $6",
            &[
                (&p.id).into(),
                (&p.dynamic_state).into(),
                p.sign_count.into(),
                p.backed_up.into(),
                p.last_used_at.into(),
                previous_sign_count.into(),
            ],
        ))
        .await?;
    if changed == 0 {
        return Ok(false);
    }
    super::activity::insert_in(&mut tx, activity).await?;
    tx.commit().await?;
    Ok(true)
}

pub(super) async fn rename(db: &Db, account_id: &str, id: &str, name: &str) -> StoreResult<bool> {
    let changed = db
        .execute(q(
            "UPDATE passkeys SET name = $3 WHERE id = $1 AND account_id = $2",
            &[id.into(), account_id.into(), name.into()],
        ))
        .await?;
    Ok(changed == 1)
}

pub(super) async fn remove(db: &Db, id: &str, activity: &Activity) -> StoreResult<bool> {
    let mut tx = db.begin().await?;
    let removed = tx
        .execute(q(
            "DELETE FROM passkeys WHERE id = $1 AND account_id = $2",
            &[id.into(), (&activity.account_id).into()],
        ))
        .await?;
    if removed == 0 {
        return Ok(false);
    }
    super::activity::insert_in(&mut tx, activity).await?;
    tx.commit().await?;
    Ok(true)
}

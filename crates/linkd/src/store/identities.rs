//! Identities at the operator's OpenID providers joined to accounts, keyed
//! by (issuer, subject); and sign-ins at those providers in progress,
//! taken once by the person's return.

use super::db::{Db, FromRow, Query, Tx, q};
use super::{
    Account, Activity, Identity, IdentityRemoval, PendingJoin, StoreResult, Timestamp,
    UpstreamLogin,
};

pub(super) async fn insert_login(db: &Db, l: &UpstreamLogin) -> StoreResult<()> {
    db.execute(q(
        "INSERT INTO upstream_logins (state_hash, provider, nonce, pkce_verifier, next,
             account_id, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            (&l.state_hash).into(),
            (&l.provider).into(),
            (&l.nonce).into(),
            (&l.pkce_verifier).into(),
            (&l.next).into(),
            (&l.account_id).into(),
            l.created_at.into(),
            l.expires_at.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Deletes and returns the sign-in unless it expired: of two returns with
/// the same `state` one gets it, the other nothing.
pub(super) async fn take_login(
    db: &Db,
    state_hash: &str,
    now: Timestamp,
) -> StoreResult<Option<UpstreamLogin>> {
    let taken: Option<UpstreamLogin> = take(
        db,
        q(
            "DELETE FROM upstream_logins WHERE state_hash = $1 RETURNING *",
            &[state_hash.into()],
        ),
    )
    .await?;
    Ok(taken.filter(|l| l.expires_at > now))
}

/// The row `delete` (a `DELETE … RETURNING *` by primary key) removed:
/// of two callers taking the same row, one gets it.
async fn take<T: FromRow>(db: &Db, delete: Query<'_>) -> StoreResult<Option<T>> {
    let mut tx = db.begin().await?;
    let taken = tx.fetch_optional(delete).await?;
    tx.commit().await?;
    Ok(taken)
}

pub(super) async fn insert_pending_join(db: &Db, j: &PendingJoin) -> StoreResult<()> {
    db.execute(q(
        "INSERT INTO pending_joins (secret_hash, account_id, provider, issuer, subject, email,
             created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            (&j.secret_hash).into(),
            (&j.account_id).into(),
            (&j.provider).into(),
            (&j.issuer).into(),
            (&j.subject).into(),
            (&j.email).into(),
            j.created_at.into(),
            j.expires_at.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Deletes and returns the offered join unless it expired: of two
/// sign-ins carrying the same secret one gets it.
pub(super) async fn take_pending_join(
    db: &Db,
    secret_hash: &str,
    now: Timestamp,
) -> StoreResult<Option<PendingJoin>> {
    let taken: Option<PendingJoin> = take(
        db,
        q(
            "DELETE FROM pending_joins WHERE secret_hash = $1 RETURNING *",
            &[secret_hash.into()],
        ),
    )
    .await?;
    Ok(taken.filter(|j| j.expires_at > now))
}

pub(super) async fn by_subject(
    db: &Db,
    issuer: &str,
    subject: &str,
) -> StoreResult<Option<Identity>> {
    db.fetch_optional(q(
        "SELECT * FROM identities WHERE issuer = $1 AND subject = $2",
        &[issuer.into(), subject.into()],
    ))
    .await
}

pub(super) async fn for_account(db: &Db, account_id: &str) -> StoreResult<Vec<Identity>> {
    db.fetch_all(q(
        "SELECT * FROM identities WHERE account_id = $1 ORDER BY joined_at, issuer, subject",
        &[account_id.into()],
    ))
    .await
}

async fn insert_in(tx: &mut Tx<'_>, i: &Identity) -> StoreResult<()> {
    tx.execute(q(
        "INSERT INTO identities (issuer, subject, account_id, provider, email, joined_at,
             last_used_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            (&i.issuer).into(),
            (&i.subject).into(),
            (&i.account_id).into(),
            (&i.provider).into(),
            (&i.email).into(),
            i.joined_at.into(),
            i.last_used_at.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// Joins an identity to an existing account and records it. Conflict when
/// the identity is already joined (to this account or another).
pub(super) async fn join(db: &Db, identity: &Identity, activity: &Activity) -> StoreResult<()> {
    let mut tx = db.begin().await?;
    insert_in(&mut tx, identity).await?;
    super::activity::insert_in(&mut tx, activity).await?;
    tx.commit().await
}

/// A new account that only an identity opens, in one transaction: of two
/// racing first sign-ins one creates it, the other gets Conflict.
pub(super) async fn insert_account_with_identity(
    db: &Db,
    account: &Account,
    identity: &Identity,
    email_verified_at: Option<Timestamp>,
    activity: &Activity,
) -> StoreResult<()> {
    let mut tx = db.begin().await?;
    tx.execute(q(
        "INSERT INTO accounts (id, email, password_hash, created_at, disabled, email_verified_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            (&account.id).into(),
            (&account.email).into(),
            (&account.password_hash).into(),
            account.created_at.into(),
            account.disabled.into(),
            email_verified_at.into(),
        ],
    ))
    .await?;
    insert_in(&mut tx, identity).await?;
    super::activity::insert_in(&mut tx, activity).await?;
    tx.commit().await
}

/// Notes a sign-in with the identity and the email the provider gave.
pub(super) async fn touch(
    db: &Db,
    issuer: &str,
    subject: &str,
    email: Option<&str>,
    now: Timestamp,
) -> StoreResult<()> {
    db.execute(q(
        "UPDATE identities SET last_used_at = $3, email = COALESCE($4, email)
         WHERE issuer = $1 AND subject = $2",
        &[issuer.into(), subject.into(), now.into(), email.into()],
    ))
    .await?;
    Ok(())
}

/// Removes an identity from `activity.account_id` unless it is the last
/// way into the account (`password_counts`: the account's password is
/// one). The account's row is locked first, so two removals of an
/// account's last two identities cannot both see the other still there.
pub(super) async fn remove(
    db: &Db,
    issuer: &str,
    subject: &str,
    password_counts: bool,
    activity: &Activity,
) -> StoreResult<IdentityRemoval> {
    let account_id = activity.account_id.as_str();
    let mut tx = db.begin().await?;
    // A no-op update takes the row lock on PostgreSQL; SQLite's one
    // writer serialises the transaction anyway.
    let account: Option<Account> = tx
        .fetch_optional(q(
            "UPDATE accounts SET disabled = disabled WHERE id = $1 RETURNING *",
            &[account_id.into()],
        ))
        .await?;
    let Some(account) = account else {
        return Ok(IdentityRemoval::NotFound);
    };
    let identities: Vec<Identity> = tx
        .fetch_all(q(
            "SELECT * FROM identities WHERE account_id = $1",
            &[account_id.into()],
        ))
        .await?;
    if !identities
        .iter()
        .any(|i| i.issuer == issuer && i.subject == subject)
    {
        return Ok(IdentityRemoval::NotFound);
    }
    let has_password = password_counts && !account.password_hash.is_empty();
    if identities.len() == 1 && !has_password {
        return Ok(IdentityRemoval::LastWayIn);
    }
    tx.execute(q(
        "DELETE FROM identities WHERE issuer = $1 AND subject = $2 AND account_id = $3",
        &[issuer.into(), subject.into(), account_id.into()],
    ))
    .await?;
    super::activity::insert_in(&mut tx, activity).await?;
    tx.commit().await?;
    Ok(IdentityRemoval::Removed)
}

//! People's accounts and their sign-in sessions.

use super::db::{Arg, Db, Tx, q};
use super::{Account, AccountLink, Activity, OutboxMessage, Session, StoreResult, Timestamp};

const INSERT: &str = "INSERT INTO accounts (id, email, password_hash, created_at, disabled,
         email_verified_at)
     VALUES ($1, $2, $3, $4, $5, $6)";

fn insert_args(a: &Account) -> [Arg<'_>; 6] {
    [
        (&a.id).into(),
        (&a.email).into(),
        (&a.password_hash).into(),
        a.created_at.into(),
        a.disabled.into(),
        a.email_verified_at.into(),
    ]
}

pub(super) async fn insert(db: &Db, a: &Account) -> StoreResult<()> {
    db.execute(q(INSERT, &insert_args(a))).await?;
    Ok(())
}

/// A new account with its verification link and the mail that carries
/// it, in one transaction.
pub(super) async fn insert_with_link(
    db: &Db,
    a: &Account,
    link: &AccountLink,
    outbox: &[OutboxMessage],
) -> StoreResult<()> {
    let mut tx = db.begin().await?;
    tx.execute(q(INSERT, &insert_args(a))).await?;
    super::links::insert_in(&mut tx, link).await?;
    super::outbox::insert(&mut tx, outbox).await?;
    tx.commit().await
}

/// A new password hash, the given session kept and every other ended,
/// the account's unused reset links voided, the change recorded and its
/// notice queued, in one transaction.
pub(super) async fn change_password(
    db: &Db,
    password_hash: &str,
    keep_session: &str,
    activity: &Activity,
    outbox: &[OutboxMessage],
) -> StoreResult<()> {
    let account_id = activity.account_id.as_str();
    let mut tx = db.begin().await?;
    tx.execute(q(
        "UPDATE accounts SET password_hash = $2 WHERE id = $1",
        &[account_id.into(), password_hash.into()],
    ))
    .await?;
    end_other_sessions(&mut tx, account_id, keep_session).await?;
    // A reset link mailed before the change opens nothing after it.
    tx.execute(q(
        "UPDATE account_links SET used_at = $2
         WHERE account_id = $1 AND purpose = 'password_reset' AND used_at IS NULL",
        &[account_id.into(), activity.at.into()],
    ))
    .await?;
    super::activity::insert_in(&mut tx, activity).await?;
    super::outbox::insert(&mut tx, outbox).await?;
    tx.commit().await
}

async fn end_other_sessions(tx: &mut Tx<'_>, account_id: &str, keep: &str) -> StoreResult<u64> {
    tx.execute(q(
        "DELETE FROM sessions WHERE account_id = $1 AND id_hash <> $2",
        &[account_id.into(), keep.into()],
    ))
    .await
}

/// Ends every session of the account but `keep`, and records it.
pub(super) async fn delete_other_sessions(
    db: &Db,
    keep: &str,
    activity: &Activity,
) -> StoreResult<u64> {
    let mut tx = db.begin().await?;
    let ended = end_other_sessions(&mut tx, &activity.account_id, keep).await?;
    super::activity::insert_in(&mut tx, activity).await?;
    tx.commit().await?;
    Ok(ended)
}

pub(super) async fn by_email(db: &Db, email: &str) -> StoreResult<Option<Account>> {
    db.fetch_optional(q(db.dialect().account_by_email, &[email.into()]))
        .await
}

pub(super) async fn get(db: &Db, id: &str) -> StoreResult<Option<Account>> {
    db.fetch_optional(q("SELECT * FROM accounts WHERE id = $1", &[id.into()]))
        .await
}

pub(super) async fn list(db: &Db) -> StoreResult<Vec<Account>> {
    db.fetch_all(q(db.dialect().accounts_by_email, &[])).await
}

pub(super) async fn set_disabled(db: &Db, id: &str, disabled: bool) -> StoreResult<bool> {
    let done = db
        .execute(q(
            "UPDATE accounts SET disabled = $1 WHERE id = $2",
            &[disabled.into(), id.into()],
        ))
        .await?;
    Ok(done == 1)
}

pub(super) async fn set_time_zone(db: &Db, id: &str, zone: &str) -> StoreResult<()> {
    db.execute(q(
        "UPDATE accounts SET time_zone = $1 WHERE id = $2",
        &[zone.into(), id.into()],
    ))
    .await?;
    Ok(())
}

pub(super) async fn delete(db: &Db, id: &str) -> StoreResult<bool> {
    // Sessions, codes, devices, their tokens, synced settings and the
    // activity go with it (ON DELETE CASCADE), in this one statement.
    let done = db
        .execute(q("DELETE FROM accounts WHERE id = $1", &[id.into()]))
        .await?;
    Ok(done == 1)
}

pub(super) async fn insert_session(db: &Db, s: &Session) -> StoreResult<()> {
    db.execute(q(
        "INSERT INTO sessions (id_hash, account_id, csrf_token, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            (&s.id_hash).into(),
            (&s.account_id).into(),
            (&s.csrf_token).into(),
            s.created_at.into(),
            s.expires_at.into(),
        ],
    ))
    .await?;
    Ok(())
}

pub(super) async fn get_session(
    db: &Db,
    id_hash: &str,
    now: Timestamp,
) -> StoreResult<Option<Session>> {
    db.fetch_optional(q(
        "SELECT * FROM sessions WHERE id_hash = $1 AND expires_at > $2",
        &[id_hash.into(), now.into()],
    ))
    .await
}

pub(super) async fn delete_session(db: &Db, id_hash: &str) -> StoreResult<()> {
    db.execute(q(
        "DELETE FROM sessions WHERE id_hash = $1",
        &[id_hash.into()],
    ))
    .await?;
    Ok(())
}

pub(super) async fn delete_sessions(db: &Db, account_id: &str) -> StoreResult<()> {
    db.execute(q(
        "DELETE FROM sessions WHERE account_id = $1",
        &[account_id.into()],
    ))
    .await?;
    Ok(())
}

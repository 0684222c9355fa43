//! People's accounts and their sign-in sessions.

use super::db::{Db, q};
use super::{Account, Session, StoreResult, Timestamp};

pub(super) async fn insert(db: &Db, a: &Account) -> StoreResult<()> {
    db.execute(q(
        "INSERT INTO accounts (id, email, password_hash, created_at, disabled)
         VALUES ($1, $2, $3, $4, $5)",
        &[
            (&a.id).into(),
            (&a.email).into(),
            (&a.password_hash).into(),
            a.created_at.into(),
            a.disabled.into(),
        ],
    ))
    .await?;
    Ok(())
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

//! Authorization codes (RFC 6749 §4.1): issued → redeemed, one
//! conditional update; and the consents that let a person skip the
//! confirmation page for an app and scope set they approved before.

use super::db::{Arg, Db, q};
use super::{
    Account, AuthorizationCode, CodeRedeemOutcome, DecisionRecord, PrepareCodeRedemption,
    StoreResult, Timestamp,
};

const INSERT: &str = "INSERT INTO authorization_codes (code_hash, client_id, account_id,
         redirect_uri, scope, nonce, code_challenge, auth_time, ip, created_at, expires_at)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";

pub(super) async fn insert(db: &Db, c: &AuthorizationCode) -> StoreResult<()> {
    db.execute(q(INSERT, &insert_args(c))).await?;
    Ok(())
}

/// The code and what its approval causes, in one transaction.
pub(super) async fn insert_recorded(
    db: &Db,
    c: &AuthorizationCode,
    record: &DecisionRecord,
) -> StoreResult<()> {
    let mut tx = db.begin().await?;
    tx.execute(q(INSERT, &insert_args(c))).await?;
    super::links::write_record(&mut tx, record).await?;
    tx.commit().await
}

fn insert_args(c: &AuthorizationCode) -> [Arg<'_>; 11] {
    [
        (&c.code_hash).into(),
        (&c.client_id).into(),
        (&c.account_id).into(),
        (&c.redirect_uri).into(),
        (&c.scope).into(),
        (&c.nonce).into(),
        (&c.code_challenge).into(),
        c.auth_time.into(),
        (&c.ip).into(),
        c.created_at.into(),
        c.expires_at.into(),
    ]
}

pub(super) async fn redeem(
    db: &Db,
    code_hash: &str,
    client_id: &str,
    now: Timestamp,
    prepare: &mut PrepareCodeRedemption<'_>,
) -> StoreResult<CodeRedeemOutcome> {
    let mut tx = db.begin().await?;
    // The row this update changes is the one decided on: of two racing
    // redemptions one matches `redeemed_at IS NULL`, the other nothing.
    let updated: Option<AuthorizationCode> = tx
        .fetch_optional(q(
            "UPDATE authorization_codes SET redeemed_at = $1
             WHERE code_hash = $2 AND client_id = $3 AND redeemed_at IS NULL
                 AND expires_at > $1
             RETURNING *",
            &[now.into(), code_hash.into(), client_id.into()],
        ))
        .await?;
    let Some(code) = updated else {
        let found: Option<AuthorizationCode> = tx
            .fetch_optional(q(
                "SELECT * FROM authorization_codes WHERE code_hash = $1",
                &[code_hash.into()],
            ))
            .await?;
        return Ok(CodeRedeemOutcome::NotRedeemable(found.map(Box::new)));
    };
    let account: Option<Account> = tx
        .fetch_optional(q(
            "SELECT * FROM accounts WHERE id = $1",
            &[(&code.account_id).into()],
        ))
        .await?;
    // Declined: dropping the transaction undoes the update.
    let Some(redemption) = prepare(&code, account.as_ref()) else {
        return Ok(CodeRedeemOutcome::Declined);
    };
    super::devices::insert(&mut tx, &redemption.device).await?;
    super::outbox::insert(&mut tx, &redemption.outbox).await?;
    tx.execute(q(
        "UPDATE authorization_codes SET device_id = $1 WHERE code_hash = $2",
        &[(&redemption.device.id).into(), code_hash.into()],
    ))
    .await?;
    tx.commit().await?;
    Ok(CodeRedeemOutcome::Redeemed)
}

pub(super) async fn has_consent(
    db: &Db,
    account_id: &str,
    client_id: &str,
    scope: &str,
) -> StoreResult<bool> {
    let found: i64 = db
        .fetch_one(q(
            "SELECT COUNT(*) AS v FROM consents
             WHERE account_id = $1 AND client_id = $2 AND scope = $3",
            &[account_id.into(), client_id.into(), scope.into()],
        ))
        .await?;
    Ok(found > 0)
}

pub(super) async fn grant_consent(
    db: &Db,
    account_id: &str,
    client_id: &str,
    scope: &str,
    now: Timestamp,
) -> StoreResult<()> {
    db.execute(q(
        "INSERT INTO consents (account_id, client_id, scope, granted_at)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (account_id, client_id, scope) DO UPDATE SET granted_at = $4",
        &[
            account_id.into(),
            client_id.into(),
            scope.into(),
            now.into(),
        ],
    ))
    .await?;
    Ok(())
}

pub(super) async fn withdraw_consents(
    db: &Db,
    account_id: &str,
    client_id: &str,
) -> StoreResult<u64> {
    db.execute(q(
        "DELETE FROM consents WHERE account_id = $1 AND client_id = $2",
        &[account_id.into(), client_id.into()],
    ))
    .await
}

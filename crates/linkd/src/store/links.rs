//! Single-use links mailed to people (password reset, "this wasn't me"),
//! each stored by its hash and written in one transaction with the mail
//! that carries it; using one is a conditional update, so a link works
//! once.

use super::db::{Db, Tx, q};
use super::{
    AccountLink, Activity, DecisionRecord, GrantRef, LinkPurpose, NotMeReport, OutboxMessage,
    StoreResult, Timestamp,
};

/// Stores `link` and the mail that carries it, in one transaction.
pub(super) async fn insert(
    db: &Db,
    link: &AccountLink,
    outbox: &[OutboxMessage],
) -> StoreResult<()> {
    let mut tx = db.begin().await?;
    insert_in(&mut tx, link).await?;
    super::outbox::insert(&mut tx, outbox).await?;
    tx.commit().await
}

/// What a decision causes, inside the decision's transaction.
pub(super) async fn write_record(tx: &mut Tx<'_>, record: &DecisionRecord) -> StoreResult<()> {
    super::activity::insert_in(tx, &record.activity).await?;
    if let Some(link) = &record.link {
        insert_in(tx, link).await?;
    }
    super::outbox::insert(tx, &record.outbox).await
}

pub(super) async fn insert_in(tx: &mut Tx<'_>, link: &AccountLink) -> StoreResult<()> {
    tx.execute(q(
        "INSERT INTO account_links (token_hash, account_id, purpose, subject, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
        &[
            (&link.token_hash).into(),
            (&link.account_id).into(),
            link.purpose.as_str().into(),
            (&link.subject).into(),
            link.created_at.into(),
            link.expires_at.into(),
        ],
    ))
    .await?;
    Ok(())
}

/// A link of `purpose` that is unused and unexpired at `now`.
pub(super) async fn get_usable(
    db: &Db,
    token_hash: &str,
    purpose: LinkPurpose,
    now: Timestamp,
) -> StoreResult<Option<AccountLink>> {
    db.fetch_optional(q(
        "SELECT * FROM account_links
         WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3",
        &[token_hash.into(), purpose.as_str().into(), now.into()],
    ))
    .await
}

/// Marks the link used, only if it still is usable and belongs to
/// `account_id`. True for the one caller that used it.
async fn use_link(
    tx: &mut Tx<'_>,
    token_hash: &str,
    purpose: LinkPurpose,
    account_id: &str,
    now: Timestamp,
) -> StoreResult<bool> {
    let done = tx
        .execute(q(
            "UPDATE account_links SET used_at = $4
             WHERE token_hash = $1 AND purpose = $2 AND account_id = $3
               AND used_at IS NULL AND expires_at > $4",
            &[
                token_hash.into(),
                purpose.as_str().into(),
                account_id.into(),
                now.into(),
            ],
        ))
        .await?;
    Ok(done == 1)
}

/// Marks every still open link of `purpose` of the account used, so none
/// opens anything after `now`.
async fn void_links(
    tx: &mut Tx<'_>,
    account_id: &str,
    purpose: LinkPurpose,
    now: Timestamp,
) -> StoreResult<()> {
    tx.execute(q(
        "UPDATE account_links SET used_at = $3
         WHERE account_id = $1 AND purpose = $2 AND used_at IS NULL",
        &[account_id.into(), purpose.as_str().into(), now.into()],
    ))
    .await?;
    Ok(())
}

/// Uses a reset link and, in the same transaction, sets the password,
/// ends every session, voids the account's other reset links, records
/// the activity and queues the notice. False (nothing changed) when the
/// link was used, expired or is not the account's.
pub(super) async fn reset_password(
    db: &Db,
    token_hash: &str,
    password_hash: &str,
    activity: &Activity,
    outbox: &[OutboxMessage],
) -> StoreResult<bool> {
    let now = activity.at;
    let account_id = activity.account_id.as_str();
    let mut tx = db.begin().await?;
    if !use_link(
        &mut tx,
        token_hash,
        LinkPurpose::PasswordReset,
        account_id,
        now,
    )
    .await?
    {
        return Ok(false);
    }
    tx.execute(q(
        "UPDATE accounts SET password_hash = $2 WHERE id = $1",
        &[account_id.into(), password_hash.into()],
    ))
    .await?;
    tx.execute(q(
        "DELETE FROM sessions WHERE account_id = $1",
        &[account_id.into()],
    ))
    .await?;
    // A link sent before the password changed opens nothing after it.
    void_links(&mut tx, account_id, LinkPurpose::PasswordReset, now).await?;
    super::activity::insert_in(&mut tx, activity).await?;
    super::outbox::insert(&mut tx, outbox).await?;
    tx.commit().await?;
    Ok(true)
}

/// "This wasn't me" in one transaction: the link is used; the grant is
/// stopped if the device has not collected its tokens yet (an approved
/// device code becomes denied, an unredeemed authorization code is spent);
/// the device is unlinked and its refresh tokens deleted; the app's
/// remembered consent is withdrawn, so it cannot come back without the
/// confirmation page; the report is recorded. False (nothing changed)
/// when the link was used, expired or is not the account's.
pub(super) async fn report_not_me(db: &Db, report: &NotMeReport<'_>) -> StoreResult<bool> {
    let activity = report.activity;
    let (now, account_id) = (activity.at, activity.account_id.as_str());
    let mut tx = db.begin().await?;
    if !use_link(
        &mut tx,
        report.token_hash,
        LinkPurpose::NotMe,
        account_id,
        now,
    )
    .await?
    {
        return Ok(false);
    }
    match report.grant {
        GrantRef::DeviceAuthorization(id) => {
            tx.execute(q(
                "UPDATE device_authorizations SET state = 'denied'
                 WHERE id = $1 AND account_id = $2 AND state = 'approved'",
                &[id.into(), account_id.into()],
            ))
            .await?;
        }
        GrantRef::AuthorizationCode(code_hash) => {
            tx.execute(q(
                "UPDATE authorization_codes SET redeemed_at = $3
                 WHERE code_hash = $1 AND account_id = $2 AND redeemed_at IS NULL",
                &[code_hash.into(), account_id.into(), now.into()],
            ))
            .await?;
        }
    }
    if super::devices::revoke_in(&mut tx, report.device_id, Some(account_id), now).await? {
        super::outbox::insert(&mut tx, report.outbox).await?;
    }
    super::outbox::insert(&mut tx, report.reported).await?;
    tx.execute(q(
        "DELETE FROM consents WHERE account_id = $1 AND client_id = $2",
        &[account_id.into(), (&activity.client_id).into()],
    ))
    .await?;
    super::activity::insert_in(&mut tx, activity).await?;
    tx.commit().await?;
    Ok(true)
}

/// Confirms an address: the link is used, the address becomes the
/// account's (verified at `activity.at`), the account's other
/// verification links are voided and the activity recorded. False when
/// the link was used or expired; `Conflict` when another account has the
/// address.
pub(super) async fn verify_email(
    db: &Db,
    token_hash: &str,
    address: &str,
    activity: &Activity,
) -> StoreResult<bool> {
    let (now, account_id) = (activity.at, activity.account_id.as_str());
    let mut tx = db.begin().await?;
    if !use_link(
        &mut tx,
        token_hash,
        LinkPurpose::VerifyEmail,
        account_id,
        now,
    )
    .await?
    {
        return Ok(false);
    }
    tx.execute(q(
        "UPDATE accounts SET email = $2, email_verified_at = $3 WHERE id = $1",
        &[account_id.into(), address.into(), now.into()],
    ))
    .await?;
    void_links(&mut tx, account_id, LinkPurpose::VerifyEmail, now).await?;
    super::activity::insert_in(&mut tx, activity).await?;
    tx.commit().await?;
    Ok(true)
}

/// Marks the account's address verified without a link (the operator
/// checked it), voiding its verification links, in one transaction.
pub(super) async fn mark_email_verified(db: &Db, activity: &Activity) -> StoreResult<bool> {
    let (now, account_id) = (activity.at, activity.account_id.as_str());
    let mut tx = db.begin().await?;
    let changed = tx
        .execute(q(
            "UPDATE accounts SET email_verified_at = $2
             WHERE id = $1 AND email_verified_at IS NULL",
            &[account_id.into(), now.into()],
        ))
        .await?;
    if changed == 0 {
        return Ok(false);
    }
    void_links(&mut tx, account_id, LinkPurpose::VerifyEmail, now).await?;
    super::activity::insert_in(&mut tx, activity).await?;
    tx.commit().await?;
    Ok(true)
}

/// An activity entry with its link and mail, in one transaction.
pub(super) async fn insert_record(db: &Db, record: &DecisionRecord) -> StoreResult<()> {
    let mut tx = db.begin().await?;
    write_record(&mut tx, record).await?;
    tx.commit().await
}

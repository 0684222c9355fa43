//! What a person changes on `/account`: their password (the current one
//! required; every other session ends), their address (verified again
//! before it counts, with a notice to the old one), the sessions of their
//! other browsers, and the account itself (deleted with its devices,
//! tokens and synced settings). Each change is recorded in the activity.

use std::net::IpAddr;

use crate::accounts::{MAX_PASSWORD_LEN, MIN_PASSWORD_LEN, hash_password, verify_password};
use crate::ctx::Ctx;
use crate::limits::{Refused, RetryAfter};
use crate::recovery::MailContext;
use crate::store::{Account, Activity, ActivityKind, OutboxKind, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// The current password is not right.
    #[error("the current password is not right")]
    WrongPassword,
    /// Too many wrong passwords from here lately (the sign-in limits).
    #[error("too many attempts")]
    Limited(RetryAfter),
    #[error("the password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters")]
    BadPassword,
    #[error("that does not look like an email address")]
    InvalidEmail,
    #[error("that is the address already")]
    SameEmail,
    #[error("another account uses that address")]
    Taken,
    /// Too many verification mails for this account lately.
    #[error("too many links")]
    TooManyMails(RetryAfter),
    /// Mail is not set up, so a new address could never be confirmed.
    #[error("email is not set up")]
    NoMail,
    #[error("too many passwords are being checked; try again in a moment")]
    Busy,
    /// A first password needs a sign-in within [`RECENT_SIGN_IN`].
    #[error("sign in again first")]
    SignInAgain,
    /// The operator turned local passwords off (`--no-local-passwords`).
    #[error("passwords are not used here")]
    PasswordsOff,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Checks the person's current password under the sign-in limits (a
/// stolen session must not become a way to guess the password).
async fn check_password(
    ctx: &Ctx<'_>,
    account: &Account,
    password: &str,
    ip: IpAddr,
) -> Result<(), ChangeError> {
    let limits = ctx.limits;
    let attempt = limits
        .begin_sign_in(&account.email, ip, ctx.now)
        .await
        .map_err(|e| match e {
            Refused::Wait(wait) => ChangeError::Limited(wait),
            Refused::Store(e) => ChangeError::Store(e),
        })?;
    if password.len() > MAX_PASSWORD_LEN * 4 {
        return Err(ChangeError::WrongPassword);
    }
    let (password, hash) = (password.to_string(), account.password_hash.clone());
    match limits
        .hashing
        .run(move || verify_password(&password, &hash))
        .await
    {
        Ok(true) => {
            limits.sign_in_succeeded(attempt, ctx.now).await;
            Ok(())
        }
        // The failure was counted when the attempt began.
        Ok(false) => Err(ChangeError::WrongPassword),
        Err(_) => {
            limits.sign_in_not_tried(attempt, ctx.now).await;
            Err(ChangeError::Busy)
        }
    }
}

fn activity(account: &Account, kind: ActivityKind, detail: &str, ip: IpAddr, now: i64) -> Activity {
    Activity {
        account_id: account.id.clone(),
        kind,
        client_id: String::new(),
        app_name: detail.to_string(),
        device: None,
        ip: ip.to_string(),
        at: now,
    }
}

/// How long after signing in a person without a password may set one:
/// the sign-in stands in for the current password they do not have, so a
/// browser left signed in cannot add a way into the account.
pub const RECENT_SIGN_IN: i64 = 600;

/// A new password, the current one given: every other session ends, the
/// account's reset links stop working, the change is recorded and a
/// notice mailed. `session` is the browser's own session, which stays.
pub async fn change_password(
    ctx: &Ctx<'_>,
    account: &Account,
    session: &str,
    current: &str,
    new: &str,
    ip: IpAddr,
    mail: &MailContext<'_>,
) -> Result<(), ChangeError> {
    usable_password(ctx, new)?;
    check_password(ctx, account, current, ip).await?;
    store_password(
        ctx,
        account,
        session,
        new,
        ActivityKind::PasswordChanged,
        ip,
        mail,
    )
    .await
}

/// A first password for an account that signs in only through the
/// operator's OpenID providers: no current password to give, but the
/// session must have begun within [`RECENT_SIGN_IN`]. Otherwise as
/// [`change_password`].
pub async fn set_password(
    ctx: &Ctx<'_>,
    account: &Account,
    session: &crate::store::Session,
    new: &str,
    ip: IpAddr,
    mail: &MailContext<'_>,
) -> Result<(), ChangeError> {
    usable_password(ctx, new)?;
    if !account.password_hash.is_empty() {
        return Err(ChangeError::WrongPassword);
    }
    recently_signed_in(ctx, session)?;
    store_password(
        ctx,
        account,
        &session.id_hash,
        new,
        ActivityKind::PasswordSet,
        ip,
        mail,
    )
    .await
}

/// What stands in for the current password where there is none: a
/// session begun within [`RECENT_SIGN_IN`].
fn recently_signed_in(ctx: &Ctx<'_>, session: &crate::store::Session) -> Result<(), ChangeError> {
    if session.created_at < ctx.now - RECENT_SIGN_IN {
        return Err(ChangeError::SignInAgain);
    }
    Ok(())
}

/// The person is the account's owner: the current password given, or for
/// an account that has none here (signing in through OpenID providers
/// only, or local passwords off) a recent sign-in.
async fn prove_owner(
    ctx: &Ctx<'_>,
    account: &Account,
    session: &crate::store::Session,
    password: &str,
    ip: IpAddr,
) -> Result<(), ChangeError> {
    if crate::upstream::has_password(ctx, account) {
        check_password(ctx, account, password, ip).await
    } else {
        recently_signed_in(ctx, session)
    }
}

/// Local passwords are on and `new` is of a length accepted.
fn usable_password(ctx: &Ctx<'_>, new: &str) -> Result<(), ChangeError> {
    if ctx.config.no_local_passwords {
        return Err(ChangeError::PasswordsOff);
    }
    let chars = new.chars().count();
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&chars) {
        return Err(ChangeError::BadPassword);
    }
    Ok(())
}

async fn store_password(
    ctx: &Ctx<'_>,
    account: &Account,
    session: &str,
    new: &str,
    kind: ActivityKind,
    ip: IpAddr,
    mail: &MailContext<'_>,
) -> Result<(), ChangeError> {
    let new = new.to_string();
    let hash = ctx
        .limits
        .hashing
        .run(move || hash_password(&new))
        .await
        .map_err(|_| ChangeError::Busy)?;
    let now = ctx.now;
    let notice: Vec<_> = ctx
        .outbox
        .sends(OutboxKind::Mail)
        .then(|| {
            let body = match kind {
                ActivityKind::PasswordSet => "mail.password_set.body",
                _ => "mail.password_changed.body",
            };
            mail.password_notice(account, body, &ip.to_string(), now)
        })
        .into_iter()
        .collect();
    ctx.store
        .change_password(
            &hash,
            session,
            &activity(account, kind, "", ip, now),
            &notice,
        )
        .await?;
    ctx.outbox.wake();
    Ok(())
}

/// Asks to move the account to `new_email`, the current password given
/// (or a recent sign-in, see [`prove_owner`]):
/// the new address gets a link, the old one a notice; the address
/// changes when the link is confirmed (`verification::confirm`).
pub async fn change_email(
    ctx: &Ctx<'_>,
    account: &Account,
    session: &crate::store::Session,
    new_email: &str,
    password: &str,
    ip: IpAddr,
    mail: &MailContext<'_>,
) -> Result<String, ChangeError> {
    if !ctx.outbox.sends(OutboxKind::Mail) {
        return Err(ChangeError::NoMail);
    }
    let new_email =
        crate::accounts::normalize_email(new_email).map_err(|_| ChangeError::InvalidEmail)?;
    if new_email.eq_ignore_ascii_case(&account.email) {
        return Err(ChangeError::SameEmail);
    }
    prove_owner(ctx, account, session, password, ip).await?;
    if ctx.store.get_account_by_email(&new_email).await?.is_some() {
        return Err(ChangeError::Taken);
    }
    ctx.limits
        .begin_verification_mail(&account.id, ctx.now)
        .await
        .map_err(|e| match e {
            Refused::Wait(wait) => ChangeError::TooManyMails(wait),
            Refused::Store(e) => ChangeError::Store(e),
        })?;
    let record =
        crate::verification::change_request(account, &new_email, &ip.to_string(), ctx.now, mail);
    ctx.store.insert_record(&record).await?;
    ctx.outbox.wake();
    Ok(new_email)
}

/// Signs out every other browser; this one stays. Returns how many
/// sessions ended.
pub async fn sign_out_others(
    ctx: &Ctx<'_>,
    account: &Account,
    session: &str,
    ip: IpAddr,
) -> Result<u64, StoreError> {
    let ended = ctx
        .store
        .delete_other_sessions(
            session,
            &activity(account, ActivityKind::SignedOutElsewhere, "", ip, ctx.now),
        )
        .await?;
    Ok(ended)
}

/// Deletes the account, the current password given (or, for an account
/// that signs in only through OpenID providers, after a recent sign-in):
/// its sessions, devices, their tokens, its synced settings and activity
/// go with it. The operator's log keeps that it happened.
pub async fn delete(
    ctx: &Ctx<'_>,
    account: &Account,
    session: &crate::store::Session,
    password: &str,
    ip: IpAddr,
) -> Result<(), ChangeError> {
    prove_owner(ctx, account, session, password, ip).await?;
    if ctx.store.delete_account(&account.id).await? {
        tracing::info!(
            account = %account.id,
            ip = %ip,
            "an account was deleted by its owner, with its devices, tokens and synced settings"
        );
    }
    Ok(())
}

//! Getting back into an account: password-reset links (single use, valid
//! 30 minutes, only their hash stored), mailed on request or handed out by
//! the operator (`linkd user reset-link`), and the reset itself, which ends
//! every session, is recorded in the activity and followed by a notice.

use crate::accounts::{MAX_PASSWORD_LEN, MIN_PASSWORD_LEN, hash_password};
use crate::brand::Brand;
use crate::codes::{random_secret, secret_hash};
use crate::hashing::{Busy, HashPool};
use crate::i18n::{Lang, Text};
use crate::mail::Mail;
use crate::store::{
    Account, AccountLink, Activity, ActivityKind, LinkPurpose, OutboxMessage, Store, StoreError,
    Timestamp,
};
use crate::zone::Zone;

/// How long a reset link works.
pub const RESET_LINK_SECS: i64 = 30 * 60;

#[derive(Debug, thiserror::Error)]
pub enum ResetError {
    /// Unknown, used, expired, voided by a later password change, or the
    /// account is disabled: one answer for all.
    #[error("this reset link does not work any more")]
    Invalid,
    #[error("the password must be {MIN_PASSWORD_LEN} to {MAX_PASSWORD_LEN} characters")]
    BadPassword,
    #[error("too many passwords are being checked; try again in a moment")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a mail needs besides its words: the brand and where linkd lives.
pub struct MailContext<'a> {
    pub brand: &'a Brand,
    /// The public URL, without a trailing slash.
    pub base: &'a str,
    pub lang: Lang,
}

impl MailContext<'_> {
    /// The notice that the password of `account` changed, by a
    /// reset or on the account page (`body` says which), with where from
    /// and a link to reset it if that was not its owner.
    pub fn password_notice(
        &self,
        account: &Account,
        body: &'static str,
        ip: &str,
        now: Timestamp,
    ) -> OutboxMessage {
        Mail {
            to: account.email.clone(),
            lang: self.lang,
            subject: Text::key("mail.reset_done.subject"),
            lines: vec![
                Text::with(
                    body,
                    vec![
                        ("product", self.brand.product_name.clone()),
                        ("at", self.lang.datetime_in(now, &Zone::of(account), None)),
                        ("ip", ip.to_string()),
                    ],
                ),
                Text::key("mail.reset_done.not_you"),
            ],
            action: Some((
                Text::key("mail.reset_done.action"),
                format!("{}/signin/forgot", self.base),
            )),
            footer: None,
        }
        .to_outbox(self.brand, now)
    }
}

/// Makes a reset link for `account` and stores it, with the mail that
/// carries it when `mail` is given (in one transaction). Returns the link.
pub async fn create_reset_link(
    store: &dyn Store,
    account: &Account,
    now: Timestamp,
    base: &str,
    mail: Option<&MailContext<'_>>,
) -> Result<String, StoreError> {
    let token = random_secret(32);
    let url = format!("{base}/reset?token={token}");
    let link = AccountLink {
        token_hash: secret_hash(&token),
        account_id: account.id.clone(),
        purpose: LinkPurpose::PasswordReset,
        subject: None,
        created_at: now,
        expires_at: now + RESET_LINK_SECS,
        used_at: None,
    };
    let outbox: Vec<_> = mail
        .map(|m| {
            Mail {
                to: account.email.clone(),
                lang: m.lang,
                subject: Text::key("mail.reset.subject"),
                lines: vec![
                    Text::with(
                        "mail.reset.body",
                        vec![("product", m.brand.product_name.clone())],
                    ),
                    Text::key("mail.reset.expiry"),
                ],
                action: Some((Text::key("mail.reset.action"), url.clone())),
                footer: Some(Text::key("mail.reset.footer")),
            }
            .to_outbox(m.brand, now)
        })
        .into_iter()
        .collect();
    store.insert_account_link(&link, &outbox).await?;
    Ok(url)
}

/// A person asked for a reset link for `email`. Nothing tells whether the
/// account exists: the caller answers the same either way, before this
/// runs, so neither the answer nor its timing depends on it.
pub async fn request_reset(
    store: &dyn Store,
    email: &str,
    now: Timestamp,
    mail: &MailContext<'_>,
) -> Result<(), StoreError> {
    if email.len() > crate::accounts::MAX_EMAIL_LEN {
        return Ok(());
    }
    match store.get_account_by_email(email.trim()).await? {
        Some(account) if !account.disabled => {
            create_reset_link(store, &account, now, mail.base, Some(mail)).await?;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The link a mailed token stands for and its account, if the link still
/// works and the account is not disabled; `None` for every other case
/// alike. Only the token's hash is looked up. Reading changes nothing:
/// mail scanners open links.
pub async fn link_account(
    store: &dyn Store,
    token: &str,
    purpose: LinkPurpose,
    now: Timestamp,
) -> Result<Option<(AccountLink, Account)>, StoreError> {
    if token.is_empty() || token.len() > 64 {
        return Ok(None);
    }
    let Some(link) = store
        .get_account_link(&secret_hash(token), purpose, now)
        .await?
    else {
        return Ok(None);
    };
    Ok(match store.get_account(&link.account_id).await? {
        Some(account) if !account.disabled => Some((link, account)),
        _ => None,
    })
}

/// The account a reset link opens, if it still works.
pub async fn check_reset(
    store: &dyn Store,
    token: &str,
    now: Timestamp,
) -> Result<Option<Account>, StoreError> {
    let found = link_account(store, token, LinkPurpose::PasswordReset, now).await?;
    Ok(found.map(|(_, account)| account))
}

/// Sets a new password through a reset link: the link is used up, every
/// session of the account ends, the reset is recorded and a notice mailed
/// (when `mail` is given: this instance sends mail). Of two racing resets
/// with one link, one wins.
pub async fn reset(
    store: &dyn Store,
    hashing: &HashPool,
    token: &str,
    password: &str,
    ip: &str,
    now: Timestamp,
    mail: Option<&MailContext<'_>>,
) -> Result<Account, ResetError> {
    let account = check_reset(store, token, now)
        .await?
        .ok_or(ResetError::Invalid)?;
    let chars = password.chars().count();
    if !(MIN_PASSWORD_LEN..=MAX_PASSWORD_LEN).contains(&chars) {
        return Err(ResetError::BadPassword);
    }
    let password = password.to_string();
    let password_hash = hashing
        .run(move || hash_password(&password))
        .await
        .map_err(|Busy| ResetError::Busy)?;
    let activity = Activity {
        account_id: account.id.clone(),
        kind: ActivityKind::PasswordReset,
        client_id: String::new(),
        app_name: String::new(),
        device: None,
        ip: ip.to_string(),
        at: now,
    };
    let notice = mail.map(|mail| mail.password_notice(&account, "mail.reset_done.body", ip, now));
    let notice: Vec<_> = notice.into_iter().collect();
    if store
        .reset_password(&secret_hash(token), &password_hash, &activity, &notice)
        .await?
    {
        Ok(account)
    } else {
        Err(ResetError::Invalid)
    }
}

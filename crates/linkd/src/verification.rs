//! Verified addresses: a link mailed to an address (at sign-up, on
//! "send again", and to the new address when a person changes theirs)
//! shows that the person reads it. Single use, valid a day, only its hash
//! stored; a changed address counts only once its link is confirmed. The
//! operator decides whether an unverified account may approve devices
//! (`--require-verified-email`).

use crate::Config;
use crate::codes::{random_secret, secret_hash};
use crate::i18n::Text;
use crate::mail::Mail;
use crate::recovery::{MailContext, link_account};
use crate::store::{
    Account, AccountLink, Activity, ActivityKind, DecisionRecord, LinkPurpose, OutboxMessage,
    Store, StoreError, Timestamp,
};
use crate::zone::Zone;

/// How long a verification link works.
pub const VERIFY_LINK_SECS: i64 = 24 * 3600;

/// Whether `account` may approve devices and apps under this
/// configuration.
pub fn may_approve(config: &Config, account: &Account) -> bool {
    !config.require_verified_email || account.email_verified_at.is_some()
}

/// A verification link for `address` (the account's own, or the one it
/// asks to change to) and the mail that carries it.
pub fn link_for(
    account: &Account,
    address: &str,
    now: Timestamp,
    mail: &MailContext<'_>,
) -> (AccountLink, OutboxMessage) {
    let token = random_secret(32);
    let link = AccountLink {
        token_hash: secret_hash(&token),
        account_id: account.id.clone(),
        purpose: LinkPurpose::VerifyEmail,
        subject: Some(address.to_string()),
        created_at: now,
        expires_at: now + VERIFY_LINK_SECS,
        used_at: None,
    };
    let url = format!("{}/verify?token={token}", mail.base);
    let message = Mail {
        to: address.to_string(),
        lang: mail.lang,
        subject: Text::key("mail.verify.subject"),
        lines: vec![
            Text::with(
                "mail.verify.body",
                vec![
                    ("product", mail.brand.product_name.clone()),
                    ("email", address.to_string()),
                ],
            ),
            Text::key("mail.verify.expiry"),
        ],
        action: Some((Text::key("mail.verify.action"), url)),
        footer: Some(Text::key("mail.verify.footer")),
    }
    .to_outbox(mail.brand, now);
    (link, message)
}

/// Mails the account's own address a new link ("send again"), unless it
/// is verified already. True when a link went out.
pub async fn send_again(
    store: &dyn Store,
    account: &Account,
    now: Timestamp,
    mail: &MailContext<'_>,
) -> Result<bool, StoreError> {
    if account.email_verified_at.is_some() {
        return Ok(false);
    }
    let (link, message) = link_for(account, &account.email, now, mail);
    store.insert_account_link(&link, &[message]).await?;
    Ok(true)
}

/// Asks to change the account's address to `new_email`: a link goes to
/// the new address, and a notice to the old one, written with the
/// request; the address changes only when the link is confirmed.
pub fn change_request(
    account: &Account,
    new_email: &str,
    ip: &str,
    now: Timestamp,
    mail: &MailContext<'_>,
) -> DecisionRecord {
    let (link, to_new) = link_for(account, new_email, now, mail);
    let to_old = Mail {
        to: account.email.clone(),
        lang: mail.lang,
        subject: Text::key("mail.email_change.subject"),
        lines: vec![
            Text::with(
                "mail.email_change.body",
                vec![
                    ("product", mail.brand.product_name.clone()),
                    ("email", new_email.to_string()),
                    ("at", mail.lang.datetime_in(now, &Zone::of(account), None)),
                    ("ip", ip.to_string()),
                ],
            ),
            Text::key("mail.email_change.not_you"),
        ],
        action: Some((
            Text::key("mail.reset_done.action"),
            format!("{}/signin/forgot", mail.base),
        )),
        footer: None,
    }
    .to_outbox(mail.brand, now);
    DecisionRecord {
        activity: Activity {
            account_id: account.id.clone(),
            kind: ActivityKind::EmailChangeRequested,
            client_id: String::new(),
            app_name: new_email.to_string(),
            device: None,
            ip: ip.to_string(),
            at: now,
        },
        link: Some(link),
        outbox: vec![to_new, to_old],
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// Unknown, used, expired, or its account is gone: one answer for all.
    #[error("this link does not work any more")]
    Invalid,
    /// Another account took the address in the meantime.
    #[error("another account uses that address")]
    Taken,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The account and address a link confirms, if it still works. Reading
/// changes nothing: mail scanners open links.
pub async fn check(
    store: &dyn Store,
    token: &str,
    now: Timestamp,
) -> Result<Option<(Account, String)>, StoreError> {
    let found = link_account(store, token, LinkPurpose::VerifyEmail, now).await?;
    Ok(found.and_then(|(link, account)| Some((account, link.subject?))))
}

/// Confirms the address: it becomes (or stays) the account's, verified
/// now; the account's other verification links stop working. Of two
/// racing confirmations, one wins.
pub async fn confirm(
    store: &dyn Store,
    token: &str,
    ip: &str,
    now: Timestamp,
) -> Result<(Account, String), VerifyError> {
    let (account, address) = check(store, token, now)
        .await?
        .ok_or(VerifyError::Invalid)?;
    let changed = !account.email.eq_ignore_ascii_case(&address);
    let activity = Activity {
        account_id: account.id.clone(),
        kind: if changed {
            ActivityKind::EmailChanged
        } else {
            ActivityKind::EmailVerified
        },
        client_id: String::new(),
        app_name: address.clone(),
        device: None,
        ip: ip.to_string(),
        at: now,
    };
    match store
        .verify_email(&secret_hash(token), &address, &activity)
        .await
    {
        Ok(true) => Ok((account, address)),
        Ok(false) => Err(VerifyError::Invalid),
        Err(StoreError::Conflict) => Err(VerifyError::Taken),
        Err(e) => Err(e.into()),
    }
}

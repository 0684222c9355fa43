//! "A new device was linked": after every approval (a device code or an
//! authorization code) the person gets a mail naming the app, the device,
//! the time and the requesting network, written in the approval's own
//! transaction. It carries a "This wasn't me" link (single use, valid 7
//! days, only its hash stored) whose page, after the person confirms,
//! unlinks the device, revokes its tokens, records the report and offers
//! a new password.

use sha2::{Digest, Sha256};

use crate::codes::{random_secret, secret_hash};
use crate::ctx::Ctx;
use crate::i18n::{Lang, Text};
use crate::mail::Mail;
use crate::store::{
    Account, AccountLink, Activity, ActivityKind, DecisionRecord, GrantRef, LinkPurpose,
    LinkedDevice, NotMeReport, OutboxKind, StoreError, Timestamp,
};
use crate::webhooks::{Event, ReportVia, UnlinkReason};
use crate::zone::Zone;

/// How long a "This wasn't me" link works: long enough for a person back
/// from a week away to still act on the mail.
pub const NOT_ME_LINK_SECS: i64 = 7 * 86_400;

/// The id of the linked device that redeeming `grant` makes. It is fixed
/// at approval, so the notice's link names the device before the device
/// collects its tokens. 32 hex digits, as every device id
/// (`codes::random_id`); the grant's key is unguessable or unique, and
/// redeemed once, so no two devices share one.
pub fn device_id(grant: GrantRef<'_>) -> String {
    let digest = Sha256::digest(grant_key(grant).as_bytes());
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

fn grant_key(grant: GrantRef<'_>) -> String {
    match grant {
        GrantRef::DeviceAuthorization(id) => format!("device:{id}"),
        GrantRef::AuthorizationCode(hash) => format!("code:{hash}"),
    }
}

/// What a "This wasn't me" link stores as its subject: the grant and the
/// app (`device:ID:CLIENT` or `code:HASH:CLIENT`; neither an id nor a
/// hash holds a colon, a client id may).
fn subject(grant: GrantRef<'_>, client_id: &str) -> String {
    format!("{}:{client_id}", grant_key(grant))
}

fn parse_subject(subject: &str) -> Option<(GrantRef<'_>, &str)> {
    let mut parts = subject.splitn(3, ':');
    let (kind, key, client) = (parts.next()?, parts.next()?, parts.next()?);
    let grant = match kind {
        "device" => GrantRef::DeviceAuthorization(key),
        "code" => GrantRef::AuthorizationCode(key),
        _ => return None,
    };
    Some((grant, client))
}

/// An approval, as its notice tells it.
pub struct Approval<'a> {
    pub account: &'a Account,
    /// The language of the page the person approved on.
    pub lang: Lang,
    pub client_id: &'a str,
    pub app: &'a str,
    /// The name the device gave itself, if any.
    pub device_name: Option<&'a str>,
    /// Where the request came from: the device's network for a device
    /// code, the browser's for an authorization code.
    pub requested_from: &'a str,
    /// The browser the person approved in.
    pub approved_from: &'a str,
    pub grant: GrantRef<'a>,
}

/// Whether approvals are followed by a notice here: mail is set up and
/// the operator did not turn the notice off (`--no-link-notice`).
pub fn enabled(ctx: &Ctx<'_>) -> bool {
    !ctx.config.no_link_notice && ctx.outbox.sends(OutboxKind::Mail)
}

/// What an approval writes in its transaction: the activity entry and,
/// when notices are on, the "This wasn't me" link and the mail.
pub fn approval_record(ctx: &Ctx<'_>, approval: &Approval<'_>) -> DecisionRecord {
    let now = ctx.now;
    let activity = Activity {
        account_id: approval.account.id.clone(),
        kind: ActivityKind::Linked,
        client_id: approval.client_id.to_string(),
        app_name: approval.app.to_string(),
        device: approval.device_name.map(str::to_string),
        ip: approval.approved_from.to_string(),
        at: now,
    };
    if !enabled(ctx) {
        return DecisionRecord {
            activity,
            link: None,
            outbox: Vec::new(),
        };
    }
    let token = random_secret(32);
    let url = format!("{}/not-me?token={token}", ctx.config.issuer());
    let link = AccountLink {
        token_hash: secret_hash(&token),
        account_id: approval.account.id.clone(),
        purpose: LinkPurpose::NotMe,
        subject: Some(subject(approval.grant, approval.client_id)),
        created_at: now,
        expires_at: now + NOT_ME_LINK_SECS,
        used_at: None,
    };
    let lang = approval.lang;
    let device = approval.device_name.unwrap_or(approval.app);
    let mail = Mail {
        to: approval.account.email.clone(),
        lang,
        subject: Text::with(
            "mail.linked.subject",
            vec![("app", approval.app.to_string())],
        ),
        lines: vec![
            Text::with(
                "mail.linked.body",
                vec![
                    ("app", approval.app.to_string()),
                    ("product", ctx.brand.product_name.clone()),
                ],
            ),
            Text::with(
                "mail.linked.details",
                vec![
                    ("device", device.to_string()),
                    (
                        "at",
                        lang.datetime_in(now, &Zone::of(approval.account), None),
                    ),
                    ("ip", approval.requested_from.to_string()),
                ],
            ),
            Text::key("mail.linked.if_you"),
            Text::key("mail.linked.if_not"),
        ],
        action: Some((Text::key("mail.linked.action"), url)),
        footer: Some(Text::key("mail.linked.footer")),
    }
    .to_outbox(ctx.brand, now);
    DecisionRecord {
        activity,
        link: Some(link),
        outbox: vec![mail],
    }
}

#[derive(Debug, thiserror::Error)]
pub enum NotMeError {
    /// Unknown, used, expired, or its account is gone: one answer for all.
    #[error("this link does not work any more")]
    Invalid,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a working "This wasn't me" link is about, for its confirmation
/// page.
pub struct Reported {
    pub account: Account,
    pub link: AccountLink,
    pub client_id: String,
    /// The app's name (its id if the app was removed since).
    pub app: String,
    /// The device, once it collected its tokens (and while it is linked).
    pub device: Option<LinkedDevice>,
    device_id: String,
}

/// Reads what a link is about, if it still works. Reading changes
/// nothing: mail scanners open links.
pub async fn check(ctx: &Ctx<'_>, token: &str) -> Result<Reported, NotMeError> {
    let store = ctx.store;
    if token.is_empty() || token.len() > 64 {
        return Err(NotMeError::Invalid);
    }
    let link = store
        .get_account_link(&secret_hash(token), LinkPurpose::NotMe, ctx.now)
        .await?
        .ok_or(NotMeError::Invalid)?;
    let (grant, client_id) = link
        .subject
        .as_deref()
        .and_then(parse_subject)
        .ok_or(NotMeError::Invalid)?;
    let device_id = device_id(grant);
    let client_id = client_id.to_string();
    let account = store
        .get_account(&link.account_id)
        .await?
        .ok_or(NotMeError::Invalid)?;
    let app = match store.get_client(&client_id).await? {
        Some(client) => client.name,
        None => client_id.clone(),
    };
    let device = store
        .get_linked_device(&device_id)
        .await?
        .filter(|d| d.account_id == account.id && d.revoked_at.is_none());
    Ok(Reported {
        account,
        link,
        client_id,
        app,
        device,
        device_id,
    })
}

/// Carries the report out: the device is unlinked (or, if it has not
/// collected its tokens yet, its grant stopped), its tokens revoked, the
/// app's remembered consent withdrawn and the report recorded. Of two
/// racing uses of one link, one wins. Returns what was reported.
pub async fn report(ctx: &Ctx<'_>, token: &str, ip: &str) -> Result<Reported, NotMeError> {
    let reported = check(ctx, token).await?;
    let subject = reported.link.subject.as_deref().unwrap_or_default();
    let (grant, _) = parse_subject(subject).ok_or(NotMeError::Invalid)?;
    let activity = Activity {
        account_id: reported.account.id.clone(),
        kind: ActivityKind::NotMe,
        client_id: reported.client_id.clone(),
        app_name: reported.app.clone(),
        device: reported.device.as_ref().map(|d| d.label.clone()),
        ip: ip.to_string(),
        at: ctx.now,
    };
    let unlinked: Vec<_> = reported
        .device
        .iter()
        .map(|d| Event::device_unlinked(d, UnlinkReason::NotMe, ip, ctx.now).to_outbox())
        .collect();
    // The operator hears of it as of a code reported on the confirmation
    // page (`link.reported`), with where the code was asked for from.
    let requested_ip = match (&reported.device, grant) {
        (Some(device), _) => Some(device.linked_ip.clone()),
        (None, GrantRef::DeviceAuthorization(id)) => ctx
            .store
            .get_device_authorization(id)
            .await?
            .map(|a| a.requested_ip),
        (None, GrantRef::AuthorizationCode(_)) => None,
    };
    let requesting_network = requested_ip
        .as_deref()
        .and_then(|ip| ip.parse().ok())
        .map(crate::phishing::requesting_network);
    let event = Event::link_reported(
        &crate::webhooks::Report {
            account_id: &reported.account.id,
            client_id: &reported.client_id,
            app_name: &reported.app,
            requesting_ip: requested_ip.as_deref(),
            requesting_network: requesting_network.as_deref(),
            reporting_ip: ip,
            via: ReportVia::Mail,
        },
        ctx.now,
    );
    let done = ctx
        .store
        .report_not_me(&NotMeReport {
            token_hash: &secret_hash(token),
            grant,
            device_id: &reported.device_id,
            activity: &activity,
            outbox: &unlinked,
            reported: &[event.to_outbox()],
        })
        .await?;
    if !done {
        return Err(NotMeError::Invalid);
    }
    ctx.outbox.wake();
    crate::telemetry::link_reported("mail", false);
    tracing::info!(
        account = %reported.account.id,
        client_id = %reported.client_id,
        device = %reported.device_id,
        "a person reported a linked device as not theirs: unlinked"
    );
    Ok(reported)
}

/// When the reported approval happened (the link was made with it).
pub fn approved_at(reported: &Reported) -> Timestamp {
    reported.link.created_at
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_name_the_grant_and_the_app() {
        let grant = GrantRef::AuthorizationCode("abc_-DEF");
        let s = subject(grant, "app:with:colons");
        assert_eq!(parse_subject(&s), Some((grant, "app:with:colons")));
        let grant = GrantRef::DeviceAuthorization("0192ab-x");
        assert_eq!(parse_subject(&subject(grant, "tv")), Some((grant, "tv")));
        assert_eq!(parse_subject("other:x:y"), None);
        assert_eq!(parse_subject("device:x"), None);
    }

    #[test]
    fn device_ids_are_32_hex_digits_and_differ_per_grant() {
        let a = device_id(GrantRef::DeviceAuthorization("a"));
        let b = device_id(GrantRef::AuthorizationCode("a"));
        assert_eq!(a.len(), 32);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a, b);
        assert_eq!(a, device_id(GrantRef::DeviceAuthorization("a")));
    }
}

//! `/account`: who is signed in and whether their address is confirmed,
//! what recently happened to their account and devices, what each app
//! keeps in sync for them (with Delete), and the forms that change the
//! password and the address, sign out other browsers and delete the
//! account (after a confirmation page).

use axum::extract::{RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::Response;
use minijinja::{Value, context};
use serde::Serialize;

use super::{
    PageError, PageForm, SESSION_COOKIE, Visitor, query_param, render, see_other, set_cookie,
    to_sign_in, with_retry_after,
};
use crate::account_changes::{self, ChangeError};
use crate::accounts::{MAX_PASSWORD_LEN, MIN_PASSWORD_LEN};
use crate::client_ip::ClientIp;
use crate::i18n::Text;
use crate::recovery::MailContext;
use crate::state::AppState;
use crate::store::{Account, ActivityKind, OutboxKind, SHARED_NAMESPACE};
use crate::sync;

/// How many recent events the account page shows.
const ACTIVITY_SHOWN: i64 = 50;

#[derive(Serialize)]
struct EventView {
    what: String,
    when: String,
    ip: String,
    warning: bool,
}

/// One passkey on the account page.
#[derive(Serialize)]
struct PasskeyView {
    id: String,
    name: String,
    /// When it was added and last used.
    when: String,
}

/// What one app keeps in one collection, in the person's words.
#[derive(Serialize)]
struct SyncView {
    /// "Demo TV", or "all your apps" for the shared namespace.
    app: String,
    namespace: String,
    collection: String,
    /// "2 settings (prefs, 38 B)".
    summary: String,
    last_change: String,
    by: String,
}

fn sync_view(
    u: crate::store::SyncUsage,
    visitor: &Visitor,
    now: crate::store::Timestamp,
) -> SyncView {
    let lang = visitor.lang;
    let app = if u.namespace == SHARED_NAMESPACE {
        lang.t("account.synced_shared").to_string()
    } else {
        u.app_name.unwrap_or_else(|| u.namespace.clone())
    };
    let size = human_size(u.bytes);
    let summary = if u.documents == 1 {
        lang.fmt(
            "account.synced_item",
            &[("collection", &u.collection), ("size", &size)],
        )
    } else {
        lang.fmt(
            "account.synced_items",
            &[
                ("count", &u.documents.to_string()),
                ("collection", &u.collection),
                ("size", &size),
            ],
        )
    };
    SyncView {
        app,
        namespace: u.namespace,
        collection: u.collection,
        summary,
        last_change: format!(
            "{} ({})",
            visitor.datetime(u.last_change_at, now),
            lang.ago(now - u.last_change_at)
        ),
        by: u
            .last_device
            .unwrap_or_else(|| lang.t("account.synced_gone_device").to_string()),
    }
}

/// Bytes in the units a person reads.
fn human_size(bytes: i64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}

pub async fn page(
    State(state): State<AppState>,
    visitor: Visitor,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    let Some(account) = visitor.account() else {
        return Ok(to_sign_in("/account"));
    };
    let lang = visitor.lang;
    // What the last form did, said once after its redirect.
    let done = match query_param(query.as_deref(), "done").as_deref() {
        Some("password") => Some(lang.t("account.done.password").to_string()),
        Some("password_set") => Some(lang.t("account.done.password_set").to_string()),
        Some("sessions") => Some(lang.t("account.done.sessions").to_string()),
        Some("email") => Some(lang.t("account.done.email").to_string()),
        Some("synced") => Some(synced_deleted(&state, &visitor, query.as_deref()).await?),
        Some("passkey_added") => Some(lang.t("account.done.passkey_added").to_string()),
        Some("passkey_renamed") => Some(lang.t("account.done.passkey_renamed").to_string()),
        Some("passkey_removed") => Some(lang.t("account.done.passkey_removed").to_string()),
        _ => None,
    };
    account_page(
        &state,
        &visitor,
        account,
        StatusCode::OK,
        context! { done => done },
    )
    .await
}

/// The account page, with `extra` (a form's error, what a form did).
async fn account_page(
    state: &AppState,
    visitor: &Visitor,
    account: &Account,
    status: StatusCode,
    extra: Value,
) -> Result<Response, PageError> {
    let now = state.clock.now();
    let lang = visitor.lang;
    let events: Vec<EventView> = state
        .store
        .list_activity(&account.id, ACTIVITY_SHOWN)
        .await?
        .into_iter()
        .map(|a| {
            // A device keeps its app's name until renamed; say it once.
            let app = match &a.device {
                Some(device) if *device != a.app_name => format!("{} ({device})", a.app_name),
                _ => a.app_name.clone(),
            };
            let key = match a.kind {
                ActivityKind::Linked => "activity.linked",
                ActivityKind::Denied => "activity.denied",
                ActivityKind::Unlinked => "activity.unlinked",
                ActivityKind::RefreshReuse => "activity.refresh_reuse",
                ActivityKind::PasswordReset => "activity.password_reset",
                ActivityKind::NotMe => "activity.not_me",
                ActivityKind::SignIn => "activity.sign_in",
                ActivityKind::PasswordChanged => "activity.password_changed",
                ActivityKind::PasswordSet => "activity.password_set",
                ActivityKind::EmailChangeRequested => "activity.email_change_requested",
                ActivityKind::EmailChanged => "activity.email_changed",
                ActivityKind::EmailVerified => "activity.email_verified",
                ActivityKind::SignedOutElsewhere => "activity.signed_out_elsewhere",
                ActivityKind::IdentityJoined => "activity.identity_joined",
                ActivityKind::IdentityRemoved => "activity.identity_removed",
                ActivityKind::WrongCode => "activity.wrong_code",
                ActivityKind::Reported => "activity.reported",
                ActivityKind::PasskeyAdded => "activity.passkey_added",
                ActivityKind::PasskeyRemoved => "activity.passkey_removed",
                ActivityKind::PasskeySignIn => "activity.passkey_sign_in",
            };
            // A report names the network the code was asked for from
            // (kept as its `device`, see device_flow::decide_as).
            let what = match (a.kind, &a.device) {
                (ActivityKind::Reported, Some(network)) => lang.fmt(
                    key,
                    &[("app", a.app_name.as_str()), ("network", network.as_str())],
                ),
                // Account events keep their detail (an address) where
                // device events keep the app.
                _ => lang.fmt(
                    key,
                    &[("app", &app), ("email", &a.app_name), ("network", "?")],
                ),
            };
            EventView {
                what,
                when: lang.fmt(
                    "activity.when",
                    &[
                        ("at", &visitor.datetime(a.at, now)),
                        ("ago", &lang.ago(now - a.at)),
                        ("ip", &a.ip),
                    ],
                ),
                ip: a.ip,
                warning: matches!(
                    a.kind,
                    ActivityKind::RefreshReuse
                        | ActivityKind::PasswordReset
                        | ActivityKind::NotMe
                        | ActivityKind::PasswordChanged
                        | ActivityKind::PasswordSet
                        | ActivityKind::EmailChangeRequested
                        | ActivityKind::EmailChanged
                        | ActivityKind::WrongCode
                        | ActivityKind::Reported
                        | ActivityKind::PasskeyAdded
                        | ActivityKind::PasskeyRemoved
                ),
            }
        })
        .collect();
    let synced: Vec<SyncView> = state
        .store
        .sync_usage(&account.id)
        .await?
        .into_iter()
        .map(|u| sync_view(u, visitor, now))
        .collect();
    let identities = identity_views(state, account).await?;
    // The password section: change it, set a first one (an account that
    // signs in through its providers only), or none while the operator
    // has local passwords off.
    let password_form = if state.config.no_local_passwords {
        ""
    } else if account.password_hash.is_empty() {
        "set"
    } else {
        "change"
    };
    let recent_sign_in = recently_signed_in(state, visitor);
    let passkeys: Vec<PasskeyView> = state
        .store
        .list_passkeys(&account.id)
        .await?
        .into_iter()
        .map(|p| PasskeyView {
            when: match p.last_used_at {
                Some(at) => lang.fmt(
                    "account.passkeys.used",
                    &[
                        ("added", &lang.datetime(p.created_at)),
                        ("used", &lang.ago(now - at)),
                    ],
                ),
                None => lang.fmt(
                    "account.passkeys.unused",
                    &[("added", &lang.datetime(p.created_at))],
                ),
            },
            id: p.id,
            name: p.name,
        })
        .collect();
    render(
        state,
        visitor,
        status,
        "account.html",
        context! {
            title => lang.t("account.title"),
            email => &account.email,
            verified => account.email_verified_at.is_some(),
            mail_ready => state.outbox.sends(OutboxKind::Mail),
            min_password => MIN_PASSWORD_LEN,
            events => events,
            synced => synced,
            identities => identities,
            password_form => password_form,
            has_password => crate::upstream::has_password(&state.ctx(), account),
            recent_sign_in => recent_sign_in,
            shows_times => true,
            passkeys => passkeys,
            ..extra
        },
    )
}

/// The account page again with `message` shown at the form `form`.
pub(super) async fn with_form_error(
    state: &AppState,
    visitor: &Visitor,
    account: &Account,
    status: StatusCode,
    form: &str,
    message: &str,
) -> Result<Response, PageError> {
    account_page(
        state,
        visitor,
        account,
        status,
        context! { form_error => form, error => message },
    )
    .await
}

/// The account page again with a form's error: `form` names the form
/// (`password`, `email`, `delete`), `status` says why.
async fn form_error(
    state: &AppState,
    visitor: &Visitor,
    account: &Account,
    form: &str,
    error: ChangeError,
) -> Result<Response, PageError> {
    let lang = visitor.lang;
    let (status, message, wait) = match error {
        ChangeError::Store(e) => return Err(e.into()),
        ChangeError::WrongPassword => (
            StatusCode::UNAUTHORIZED,
            lang.t("account.error.wrong_password").to_string(),
            None,
        ),
        ChangeError::Limited(wait) | ChangeError::TooManyMails(wait) => (
            StatusCode::TOO_MANY_REQUESTS,
            super::signin::too_many_attempts(lang, wait.0),
            Some(wait.0),
        ),
        ChangeError::Busy => (
            StatusCode::TOO_MANY_REQUESTS,
            super::signin::too_many_attempts(lang, 1),
            Some(1),
        ),
        ChangeError::SignInAgain => (
            StatusCode::FORBIDDEN,
            lang.t("account.error.sign_in_again").to_string(),
            None,
        ),
        ChangeError::PasswordsOff => {
            return super::upstream::passwords_off(state, visitor, "/account");
        }
        ChangeError::BadPassword => (
            StatusCode::BAD_REQUEST,
            lang.fmt(
                "signup.error.password",
                &[
                    ("min", &MIN_PASSWORD_LEN.to_string()),
                    ("max", &MAX_PASSWORD_LEN.to_string()),
                ],
            ),
            None,
        ),
        ChangeError::InvalidEmail => (
            StatusCode::BAD_REQUEST,
            lang.t("signup.error.email").to_string(),
            None,
        ),
        ChangeError::SameEmail => (
            StatusCode::BAD_REQUEST,
            lang.t("account.error.same_email").to_string(),
            None,
        ),
        ChangeError::Taken => (
            StatusCode::CONFLICT,
            lang.t("account.error.email_taken").to_string(),
            None,
        ),
        ChangeError::NoMail => (
            StatusCode::SERVICE_UNAVAILABLE,
            lang.t("account.error.no_mail").to_string(),
            None,
        ),
    };
    let response = if form == "delete" {
        render(
            state,
            visitor,
            status,
            "account_delete.html",
            context! {
                title => lang.t("account.delete.title"),
                error => message,
                ..delete_proof(state, visitor, account)
            },
        )?
    } else {
        account_page(
            state,
            visitor,
            account,
            status,
            context! { form_error => form, error => message },
        )
        .await?
    };
    Ok(match wait {
        Some(secs) => with_retry_after(response, secs),
        None => response,
    })
}

/// Where a form of the account page ends: back on the page, which says
/// once what the form did (`done`), or the page again with `form`'s error.
async fn form_done<T>(
    state: &AppState,
    visitor: &Visitor,
    account: &Account,
    form: &str,
    done: &str,
    result: Result<T, ChangeError>,
) -> Result<Response, PageError> {
    match result {
        Ok(_) => Ok(see_other(&format!("/account?done={done}"))),
        Err(e) => form_error(state, visitor, account, form, e).await,
    }
}

fn mail_context<'a>(state: &'a AppState, visitor: &Visitor, base: &'a str) -> MailContext<'a> {
    MailContext {
        brand: &state.brand,
        base,
        lang: visitor.lang,
    }
}

/// `POST /account/password`: a new password, the current one given; or
/// a first one for an account without, after a recent sign-in.
pub async fn change_password(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    visitor: Visitor,
    form: PageForm,
) -> Result<Response, PageError> {
    let (session, account) = visitor.signed_in_form(&form, "/account")?;
    let base = state.config.issuer();
    let ctx = state.ctx();
    let mail = mail_context(&state, &visitor, &base);
    let new = form.get("new_password").unwrap_or("");
    let (result, done) = if account.password_hash.is_empty() {
        let set = account_changes::set_password(&ctx, account, session, new, ip, &mail).await;
        (set, "password_set")
    } else {
        let current = form.get("current_password").unwrap_or("");
        let changed = account_changes::change_password(
            &ctx,
            account,
            &session.id_hash,
            current,
            new,
            ip,
            &mail,
        )
        .await;
        (changed, "password")
    };
    form_done(&state, &visitor, account, "password", done, result).await
}

/// `POST /account/email`: asks to move to a new address, the password
/// given; the new address gets a link, the old one a notice.
pub async fn change_email(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    visitor: Visitor,
    form: PageForm,
) -> Result<Response, PageError> {
    let (session, account) = visitor.signed_in_form(&form, "/account")?;
    let base = state.config.issuer();
    let result = account_changes::change_email(
        &state.ctx(),
        account,
        session,
        form.get("new_email").unwrap_or(""),
        form.get("password").unwrap_or(""),
        ip,
        &mail_context(&state, &visitor, &base),
    )
    .await;
    form_done(&state, &visitor, account, "email", "email", result).await
}

/// `POST /account/sessions`: signs out every other browser.
pub async fn sign_out_others(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    visitor: Visitor,
    form: PageForm,
) -> Result<Response, PageError> {
    let (session, account) = visitor.signed_in_form(&form, "/account")?;
    account_changes::sign_out_others(&state.ctx(), account, &session.id_hash, ip).await?;
    Ok(see_other("/account?done=sessions"))
}

/// `GET /account/delete`: what deleting means, and the password to do it.
/// After the deletion (`?done=1`, signed out) it says it is done.
pub async fn delete_page(
    State(state): State<AppState>,
    visitor: Visitor,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    let lang = visitor.lang;
    if visitor.account().is_none() {
        if query_param(query.as_deref(), "done").as_deref() == Some("1") {
            return render(
                &state,
                &visitor,
                StatusCode::OK,
                "account_delete.html",
                context! { title => lang.t("account.deleted.title"), deleted => true },
            );
        }
        return Ok(to_sign_in("/account/delete"));
    }
    let Some(account) = visitor.account() else {
        return Ok(to_sign_in("/account/delete"));
    };
    render(
        &state,
        &visitor,
        StatusCode::OK,
        "account_delete.html",
        context! {
            title => lang.t("account.delete.title"),
            ..delete_proof(&state, &visitor, account)
        },
    )
}

/// What deleting asks for: the password, or for an account without one a
/// recent sign-in (`recent_sign_in` false: sign in again first).
fn delete_proof(state: &AppState, visitor: &Visitor, account: &Account) -> Value {
    context! {
        password => crate::upstream::has_password(&state.ctx(), account),
        recent_sign_in => recently_signed_in(state, visitor),
    }
}

/// The browser's session began within `account_changes::RECENT_SIGN_IN`.
fn recently_signed_in(state: &AppState, visitor: &Visitor) -> bool {
    let now = state.clock.now();
    visitor
        .signed_in
        .as_ref()
        .is_some_and(|(session, _)| session.created_at >= now - account_changes::RECENT_SIGN_IN)
}

/// `POST /account/delete`: deletes the account, the password given.
pub async fn delete(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    visitor: Visitor,
    form: PageForm,
) -> Result<Response, PageError> {
    let (session, account) = visitor.signed_in_form(&form, "/account/delete")?;
    let password = form.get("password").unwrap_or("");
    match account_changes::delete(&state.ctx(), account, session, password, ip).await {
        Ok(()) => {
            let mut response = see_other("/account/delete?done=1");
            response.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(&state, &SESSION_COOKIE, "", 0),
            );
            Ok(response)
        }
        Err(e) => form_error(&state, &visitor, account, "delete", e).await,
    }
}

/// One identity at an OpenID provider joined to the account.
#[derive(Serialize)]
struct IdentityView {
    name: String,
    email: Option<String>,
    issuer: String,
    subject: String,
    /// False for the last way into the account (never removed).
    removable: bool,
}

async fn identity_views(
    state: &AppState,
    account: &crate::store::Account,
) -> Result<Vec<IdentityView>, PageError> {
    let identities = state.store.list_identities(&account.id).await?;
    let ctx = state.ctx();
    let others = identities.len() > 1 || crate::upstream::has_password(&ctx, account);
    Ok(identities
        .into_iter()
        .map(|i| IdentityView {
            name: state
                .upstream
                .for_identity(&i)
                .map(|p| p.name.clone())
                .unwrap_or_else(|| i.provider.clone()),
            email: i.email,
            issuer: i.issuer,
            subject: i.subject,
            removable: others,
        })
        .collect())
}

/// The app and collection a synced-settings form or link names, checked.
fn sync_target<'a>(
    app: Option<&'a str>,
    collection: Option<&'a str>,
) -> Result<(&'a str, &'a str), PageError> {
    match (app, collection) {
        (Some(namespace), Some(collection))
            if sync::check_collection(collection).is_ok() && namespace.len() <= 256 =>
        {
            Ok((namespace, collection))
        }
        _ => Err(PageError::BadRequest(Text::key("sync_delete.choose"))),
    }
}

/// "Deleted the settings kept in sync for Demo TV". The app is named from
/// the store, never from the link's words.
async fn synced_deleted(
    state: &AppState,
    visitor: &Visitor,
    query: Option<&str>,
) -> Result<String, PageError> {
    let lang = visitor.lang;
    let namespace = query_param(query, "app").unwrap_or_default();
    let app = if namespace == SHARED_NAMESPACE {
        lang.t("account.synced_shared").to_string()
    } else if namespace.len() <= 256
        && let Some(client) = state.store.get_client(&namespace).await?
    {
        client.name
    } else {
        return Ok(lang.t("account.done.synced_any").to_string());
    };
    Ok(lang.fmt("account.done.synced", &[("app", &app)]))
}

/// `GET /account/sync/delete?app=..&collection=..`: what deleting these
/// settings means, and the button that does it (a confirmation step, as
/// unlinking a device has, since it reaches every device at once).
pub async fn confirm_delete_sync(
    State(state): State<AppState>,
    visitor: Visitor,
    RawQuery(query): RawQuery,
) -> Result<Response, PageError> {
    let Some(account) = visitor.account() else {
        return Ok(to_sign_in("/account"));
    };
    let (app, collection) = (
        query_param(query.as_deref(), "app"),
        query_param(query.as_deref(), "collection"),
    );
    let (namespace, collection) = sync_target(app.as_deref(), collection.as_deref())?;
    let now = state.clock.now();
    let Some(usage) = state
        .store
        .sync_usage(&account.id)
        .await?
        .into_iter()
        .find(|u| u.namespace == namespace && u.collection == collection)
    else {
        return Err(PageError::NotFound);
    };
    let shown = sync_view(usage, &visitor, now);
    let lang = visitor.lang;
    let title = lang.fmt("sync_delete.title", &[("app", &shown.app)]);
    render(
        &state,
        &visitor,
        StatusCode::OK,
        "sync_delete.html",
        context! { title => title, synced => shown, shows_times => true },
    )
}

/// Deletes one app's collection. Devices see the deletions in their change
/// feed and event streams, like deletions made by a device.
pub async fn delete_sync(
    State(state): State<AppState>,
    visitor: Visitor,
    form: PageForm,
) -> Result<Response, PageError> {
    let (_, account) = visitor.signed_in_form(&form, "/account")?;
    let (namespace, collection) = sync_target(form.get("app"), form.get("collection"))?;
    sync::delete_collection(
        state.store.as_ref(),
        &account.id,
        namespace,
        collection,
        state.clock.now(),
    )
    .await?;
    let back: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("done", "synced")
        .append_pair("app", namespace)
        .finish();
    Ok(see_other(&format!("/account?{back}#synced")))
}

//! `/account`: who is signed in, what recently happened to their devices,
//! and what each app keeps in sync for them (with Delete).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use serde::Serialize;

use super::{PageError, PageForm, Visitor, render, see_other, to_sign_in};
use crate::state::AppState;
use crate::store::{ActivityKind, SHARED_NAMESPACE};
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

/// What one app keeps in one collection.
#[derive(Serialize)]
struct SyncView {
    app: String,
    namespace: String,
    collection: String,
    documents: i64,
    size: String,
    last_change: String,
    by: String,
}

/// Bytes in the units a person reads.
fn human_size(bytes: i64) -> String {
    match bytes {
        b if b < 1024 => format!("{b} B"),
        b if b < 1024 * 1024 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{:.1} MiB", b as f64 / (1024.0 * 1024.0)),
    }
}

pub async fn page(State(state): State<AppState>, visitor: Visitor) -> Result<Response, PageError> {
    let Some(account) = visitor.account() else {
        return Ok(to_sign_in("/account"));
    };
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
            };
            EventView {
                what: lang.fmt(key, &[("app", &app)]),
                when: lang.fmt(
                    "activity.when",
                    &[
                        ("at", &lang.datetime(a.at)),
                        ("ago", &lang.ago(now - a.at)),
                        ("ip", &a.ip),
                    ],
                ),
                ip: a.ip,
                warning: matches!(
                    a.kind,
                    ActivityKind::RefreshReuse | ActivityKind::PasswordReset | ActivityKind::NotMe
                ),
            }
        })
        .collect();
    let synced: Vec<SyncView> = state
        .store
        .sync_usage(&account.id)
        .await?
        .into_iter()
        .map(|u| SyncView {
            app: if u.namespace == SHARED_NAMESPACE {
                lang.t("account.synced_shared").to_string()
            } else {
                u.app_name.unwrap_or_else(|| u.namespace.clone())
            },
            namespace: u.namespace,
            collection: u.collection,
            documents: u.documents,
            size: human_size(u.bytes),
            last_change: format!(
                "{} ({})",
                lang.datetime(u.last_change_at),
                lang.ago(now - u.last_change_at)
            ),
            by: u
                .last_device
                .unwrap_or_else(|| lang.t("account.synced_gone_device").to_string()),
        })
        .collect();
    render(
        &state,
        &visitor,
        StatusCode::OK,
        "account.html",
        context! {
            title => lang.t("account.title"),
            email => &account.email,
            events => events,
            synced => synced,
        },
    )
}

/// Deletes one app's collection. Devices see the deletions in their change
/// feed and event streams, like deletions made by a device.
pub async fn delete_sync(
    State(state): State<AppState>,
    visitor: Visitor,
    form: PageForm,
) -> Result<Response, PageError> {
    let Some(account) = visitor.account() else {
        return Ok(to_sign_in("/account"));
    };
    visitor.check_csrf(form.get("csrf"))?;
    let (Some(namespace), Some(collection)) = (form.get("app"), form.get("collection")) else {
        return Err(PageError::BadRequest("Choose what to delete.".into()));
    };
    if sync::check_collection(collection).is_err() || namespace.len() > 256 {
        return Err(PageError::BadRequest("Choose what to delete.".into()));
    }
    sync::delete_collection(
        state.store.as_ref(),
        &account.id,
        namespace,
        collection,
        state.clock.now(),
    )
    .await?;
    Ok(see_other("/account"))
}

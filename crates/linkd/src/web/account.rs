//! `/account`: who is signed in and what recently happened to their devices.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use serde::Serialize;

use super::{PageError, Visitor, render, to_sign_in};
use crate::app::AppState;
use crate::store::ActivityKind;

/// How many recent events the account page shows.
const ACTIVITY_SHOWN: i64 = 50;

#[derive(Serialize)]
struct EventView {
    what: String,
    when: String,
    ip: String,
    warning: bool,
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
                warning: a.kind == ActivityKind::RefreshReuse,
            }
        })
        .collect();
    render(
        &state,
        &visitor,
        StatusCode::OK,
        "account.html",
        context! { title => lang.t("account.title"), email => &account.email, events => events },
    )
}

//! `/account`: who is signed in and what recently happened to their devices.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;
use serde::Serialize;

use super::link::{ago, utc_time};
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
    let events: Vec<EventView> = state
        .store
        .list_activity(&account.id, ACTIVITY_SHOWN)
        .await?
        .into_iter()
        .map(|a| {
            let device = a.device.map(|d| format!(" ({d})")).unwrap_or_default();
            let app = a.app_name;
            let what = match a.kind {
                ActivityKind::Linked => format!("Approved {app}{device}"),
                ActivityKind::Denied => format!("Denied {app}{device}"),
                ActivityKind::Unlinked => format!("Unlinked {app}{device}"),
                ActivityKind::RefreshReuse => format!(
                    "Unlinked {app}{device} for safety: one of its old sign-in tokens was used again, which can mean it was copied"
                ),
            };
            EventView {
                what,
                when: format!("{} ({})", utc_time(a.at), ago(now - a.at)),
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
        context! { title => "Your account", email => &account.email, events => events },
    )
}

//! `GET /`: where a person lands; points to linking a device.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::context;

use super::{PageError, Visitor, render};
use crate::state::AppState;

pub async fn page(State(state): State<AppState>, visitor: Visitor) -> Result<Response, PageError> {
    render(
        &state,
        &visitor,
        StatusCode::OK,
        "home.html",
        context! { title => visitor.lang.t("home.title") },
    )
}

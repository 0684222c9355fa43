//! `GET /help`: answers to the common troubles, linked from every page's
//! footer when the operator sets no support address of their own.

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
        "help.html",
        context! { title => visitor.lang.t("help.title") },
    )
}

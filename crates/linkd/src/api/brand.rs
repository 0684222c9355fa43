//! `GET /api/v1/brand`: the operator's brand for devices and other clients
//! that show it (the `linkd device` terminal prints the product name).
//! Public: everything in it is on every page anyway.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::AppState;

pub async fn get(State(state): State<AppState>) -> Response {
    let brand = &state.brand;
    let mut response = Json(json!({
        "product_name": brand.product_name,
        "accent_color": brand.accent.to_string(),
        "support_url": brand.support_url,
        "logo_uri": format!("{}{}", state.config.issuer(), state.assets.logo.url()),
    }))
    .into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=300"),
    );
    response
}

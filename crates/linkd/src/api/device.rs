//! `/api/v1/device`: a linked device asks who it is linked to, or unlinks
//! itself (for example on a factory reset).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::client_ip::ClientIp;
use crate::devices;
use crate::oauth::bearer::{Authenticated, BearerRejection};
use crate::state::AppState;
use crate::tokens::access::BearerError;

pub async fn get(
    State(state): State<AppState>,
    Authenticated(bearer): Authenticated,
) -> Result<Response, BearerRejection> {
    let account = state
        .store
        .get_account(&bearer.device.account_id)
        .await
        .map_err(|e| BearerRejection::from(BearerError::Store(e)))?;
    let d = &bearer.device;
    Ok(Json(json!({
        "device_id": d.id,
        "label": d.label,
        "client_id": d.client_id,
        "app_name": d.app_name,
        "scope": d.scope,
        "linked_at": d.linked_at,
        "last_refresh_at": d.last_refresh_at,
        "account": {
            "sub": d.account_id,
            "email": account.map(|a| a.email),
        },
    }))
    .into_response())
}

pub async fn delete(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    Authenticated(bearer): Authenticated,
) -> Result<Response, BearerRejection> {
    devices::unlink(
        state.store.as_ref(),
        &bearer.device,
        crate::webhooks::UnlinkReason::Device,
        &ip.to_string(),
        state.clock.now(),
    )
    .await
    .map_err(|e| BearerRejection::from(BearerError::Store(e)))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

//! `POST /oauth/device/wait`: linkd's long poll for its own device library.
//! Same parameters and client authentication as the device_code token
//! request; it answers as soon as the person decides (or the code expires),
//! else after at most 30 s with the code still pending. The device then
//! makes its standard token request (RFC 8628 §3.4), so tokens only ever
//! come from the token endpoint and plain RFC clients need none of this.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::OAuthError;
use super::client_auth::authenticate;
use super::form::OAuthRequest;
use crate::client_ip::ClientIp;
use crate::codes::device_code_key;
use crate::limits::network_key;
use crate::state::AppState;
use crate::store::{AuthorizationState, DeviceAuthorization};
use crate::waits::{Busy, MAX_WAIT_SECS};

#[derive(Serialize)]
struct WaitResponse {
    /// pending, approved, denied, expired or redeemed.
    status: &'static str,
}

pub async fn handle(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    req: OAuthRequest,
) -> Result<Response, OAuthError> {
    let client = authenticate(state.store.as_ref(), &req).await?;
    let device_code = req.form.require("device_code")?;
    if device_code.len() > 256 {
        return Err(OAuthError::invalid_grant("the device code is not known"));
    }
    // Optional, in seconds: how long the device is willing to wait.
    let limit = match req.form.get("timeout") {
        None => MAX_WAIT_SECS,
        Some(t) => t
            .parse::<u64>()
            .ok()
            .filter(|t| (1..=MAX_WAIT_SECS).contains(t))
            .ok_or_else(|| {
                OAuthError::invalid_request(format!(
                    "timeout must be a whole number of seconds from 1 to {MAX_WAIT_SECS}"
                ))
            })?,
    };
    let code_hash = device_code_key(device_code);
    let read = || async {
        let auth = state
            .store
            .get_device_authorization_by_code_hash(&code_hash)
            .await?;
        // RFC 6749 §5.2: another client's code is as unknown as no code.
        auth.filter(|a| a.client_id == client.client_id)
            .ok_or_else(|| OAuthError::invalid_grant("the device code is not known"))
    };
    let auth = read().await?;
    if let Some(status) = settled(&auth, state.clock.now()) {
        return Ok(answer(status));
    }
    let ticket = state
        .waits
        .enter(&auth.id, network_key(ip))
        .map_err(|busy| match busy {
            Busy::Code => OAuthError::too_many_requests(1),
            Busy::Network => OAuthError::too_many_requests(5),
        })?;
    {
        let notified = ticket.notified();
        tokio::pin!(notified);
        // Registered before the second read: a decision landing between
        // the two still wakes us.
        notified.as_mut().enable();
        let auth = read().await?;
        let now = state.clock.now();
        if let Some(status) = settled(&auth, now) {
            return Ok(answer(status));
        }
        let until_expiry = u64::try_from(auth.expires_at - now).unwrap_or(0);
        let wait = Duration::from_secs(limit.min(until_expiry));
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep(wait) => {}
            _ = state.shutting_down() => {}
        }
    }
    // Free the place before the last read.
    drop(ticket);
    let auth = read().await?;
    Ok(answer(
        settled(&auth, state.clock.now()).unwrap_or("pending"),
    ))
}

/// The status to report at once, or `None` while the person has yet to
/// decide.
fn settled(auth: &DeviceAuthorization, now: i64) -> Option<&'static str> {
    match auth.state {
        AuthorizationState::Pending if auth.expires_at <= now => Some("expired"),
        AuthorizationState::Pending => None,
        other => Some(other.as_str()),
    }
}

fn answer(status: &'static str) -> Response {
    let mut response = Json(WaitResponse { status }).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

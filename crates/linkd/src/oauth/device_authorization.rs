//! `POST /oauth/device_authorization` (RFC 8628 §3.1-3.2).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use super::OAuthError;
use super::client_auth::authenticate;
use super::form::OAuthRequest;
use crate::client_ip::ClientIp;
use crate::device_flow::{self, DeviceRequest, StartError};
use crate::limits::{Refused, RetryAfter};
use crate::state::AppState;
use crate::telemetry;

#[derive(Serialize)]
struct DeviceAuthorizationResponse {
    device_code: String,
    user_code: String,
    verification_uri: String,
    /// RFC 8628 §3.2 makes it optional: left out for an app whose
    /// operator turned prefilled links off.
    #[serde(skip_serializing_if = "Option::is_none")]
    verification_uri_complete: Option<String>,
    expires_in: i64,
    interval: i64,
}

pub async fn handle(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    req: OAuthRequest,
) -> Result<Response, OAuthError> {
    let now = state.clock.now();
    let client = authenticate(state.store.as_ref(), &req).await?;
    if !client.device_flow_enabled {
        // RFC 6749 §5.2: the client may not use this grant.
        return Err(OAuthError::unauthorized_client(
            "this app may not use the device flow; its operator turned it off",
        ));
    }
    // Reports blocked this network ("I didn't start this", SECURITY.md):
    // no new codes from it until the block ends.
    if let Some(until) = state
        .limits
        .blocked_networks
        .blocked_until(state.store.as_ref(), ip, now)
        .await?
    {
        telemetry::rate_limited("reported_network");
        return Err(OAuthError::network_blocked(until - now));
    }
    // Both limits in one step, after the app is known, so that the
    // shared counters cost one round trip (SECURITY.md, "Several
    // instances"); taken before the authorization is made.
    state
        .limits
        .begin_device_authorization(ip, &client.client_id, now)
        .await
        .map_err(|(limit, refused)| match refused {
            Refused::Wait(RetryAfter(s)) => {
                telemetry::rate_limited(limit);
                OAuthError::too_many_requests(s)
            }
            Refused::Store(e) => e.into(),
        })?;
    let request = DeviceRequest {
        scope: req.form.get("scope"),
        device_name: req.form.get("device_name"),
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
        ip: &ip.to_string(),
    };
    let issued = device_flow::start(&state.ctx(), &state.inserter, &client, request)
        .await
        .map_err(|e| match e {
            StartError::InvalidScope(d) => OAuthError::invalid_scope(d),
            StartError::Store(e) => e.into(),
        })?;
    telemetry::authorization("requested");
    let verification_uri = format!("{}/link", state.config.issuer());
    let body = DeviceAuthorizationResponse {
        verification_uri_complete: client
            .prefilled_links
            .then(|| format!("{verification_uri}?code={}", issued.user_code.display())),
        verification_uri,
        device_code: issued.device_code,
        user_code: issued.user_code.display(),
        expires_in: issued.expires_in,
        interval: issued.interval,
    };
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

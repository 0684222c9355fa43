//! `POST /oauth/token` (RFC 6749 §3.2, §5): the device_code grant
//! (RFC 8628 §3.4-3.5) and the refresh_token grant (RFC 6749 §6).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::OAuthError;
use super::client_auth::authenticate;
use super::form::OAuthRequest;
use crate::app::{AppState, ClientIp};
use crate::device_flow::{self, PollError, PollOutcome, TokenSet};
use crate::devices::{self, RefreshOutcome};
use crate::limits::{RetryAfter, network_key};

pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
pub const REFRESH_TOKEN_GRANT: &str = "refresh_token";

pub async fn handle(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    req: OAuthRequest,
) -> Result<Response, OAuthError> {
    let grant_type = req.form.require("grant_type")?;
    match grant_type {
        DEVICE_CODE_GRANT => {
            // RFC 8628 §3.5 gives devices one way to hear "poll less":
            // slow_down. A network over its ceiling hears it too.
            if let Err(RetryAfter(secs)) = state
                .limits
                .token_polls_per_network
                .hit(&network_key(ip), state.clock.now())
            {
                let mut e = OAuthError::slow_down();
                e.retry_after = Some(secs.max(1) as u64);
                return Err(e);
            }
            device_code(&state, &req).await
        }
        REFRESH_TOKEN_GRANT => refresh_token(&state, &req, &ip.to_string()).await,
        _ => Err(OAuthError::unsupported_grant_type(format!(
            "linkd does not support the grant type {:?}",
            grant_type.chars().take(100).collect::<String>()
        ))),
    }
}

async fn device_code(state: &AppState, req: &OAuthRequest) -> Result<Response, OAuthError> {
    let client = authenticate(state.store.as_ref(), req).await?;
    let device_code = req.form.require("device_code")?;
    if device_code.len() > 256 {
        return Err(OAuthError::invalid_grant("the device code is not known"));
    }
    let keys = state.keys();
    let outcome = device_flow::poll(
        state.store.as_ref(),
        &state.polls,
        &keys,
        &state.config,
        state.clock.now_ms(),
        &client,
        device_code,
    )
    .await
    .map_err(poll_error)?;
    match outcome {
        PollOutcome::Tokens(tokens) => Ok(token_response(&tokens)),
        PollOutcome::Pending => Err(OAuthError::authorization_pending()),
        PollOutcome::SlowDown => Err(OAuthError::slow_down()),
        PollOutcome::Denied => Err(OAuthError::access_denied()),
        PollOutcome::Expired => Err(OAuthError::expired_token()),
        PollOutcome::InvalidGrant(why) => Err(OAuthError::invalid_grant(why)),
    }
}

async fn refresh_token(
    state: &AppState,
    req: &OAuthRequest,
    ip: &str,
) -> Result<Response, OAuthError> {
    let client = authenticate(state.store.as_ref(), req).await?;
    let presented = req.form.require("refresh_token")?;
    let keys = state.keys();
    let outcome = devices::refresh(
        state.store.as_ref(),
        &keys,
        &state.config,
        state.clock.now(),
        &client,
        presented,
        req.form.get("scope"),
        ip,
    )
    .await
    .map_err(poll_error)?;
    match outcome {
        RefreshOutcome::Tokens(tokens) => Ok(token_response(&tokens)),
        RefreshOutcome::InvalidGrant(why) => Err(OAuthError::invalid_grant(why)),
        RefreshOutcome::InvalidScope(why) => Err(OAuthError::invalid_scope(why)),
    }
}

fn poll_error(e: PollError) -> OAuthError {
    match e {
        PollError::Store(e) => e.into(),
        PollError::Signing(e) => {
            tracing::error!(error = %e, "could not sign tokens");
            OAuthError::server_error()
        }
    }
}

/// RFC 6749 §5.1: a successful token response, never cached.
pub fn token_response(tokens: &TokenSet) -> Response {
    let mut response = Json(tokens).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

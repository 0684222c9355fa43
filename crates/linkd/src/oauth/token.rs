//! `POST /oauth/token` (RFC 6749 §3.2, §5): the device_code grant
//! (RFC 8628 §3.4-3.5), the authorization_code grant (RFC 6749 §4.1.3,
//! RFC 7636 §4.5) and the refresh_token grant (RFC 6749 §6), each with an
//! optional DPoP proof that binds the tokens to the device's key (RFC 9449
//! §5), required for apps set to `--require-dpop`.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::OAuthError;
use super::client_auth::{self, authenticate};
use super::form::OAuthRequest;
use crate::client_ip::ClientIp;
use crate::code_flow::{self, CodeGrant, CodeGrantOutcome};
use crate::codes::device_code_key;
use crate::device_flow::{self, PollError, PollOutcome};
use crate::dpop::{self, DpopError, Proof};
use crate::limits::{RetryAfter, network_key};
use crate::state::AppState;
use crate::store::{AuthorizationState, Client};
use crate::tokens::issue::TokenSet;
use crate::tokens::refresh::{self, RefreshOutcome};

pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// The short name MSAL sends for the device code grant (Azure AD accepts
/// both). Taken as RFC 8628 §3.4's URN; discovery names only the URN.
const MSAL_DEVICE_CODE_GRANT: &str = "device_code";
pub const REFRESH_TOKEN_GRANT: &str = "refresh_token";
pub const AUTHORIZATION_CODE_GRANT: &str = "authorization_code";

pub async fn handle(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    req: OAuthRequest,
) -> Result<Response, OAuthError> {
    let grant_type = req.form.require("grant_type")?;
    match grant_type {
        DEVICE_CODE_GRANT | MSAL_DEVICE_CODE_GRANT => {
            // RFC 8628 §3.5 gives devices one way to hear "poll less":
            // slow_down. A network over its ceiling hears it too.
            if let Err(RetryAfter(secs)) = state
                .limits
                .token_polls_per_network
                .hit(&network_key(ip), state.clock.now())
            {
                crate::telemetry::rate_limited("token_polls_per_network");
                let mut e = OAuthError::slow_down();
                e.retry_after = Some(secs.max(1) as u64);
                return Err(e);
            }
            device_code(&state, &req).await
        }
        REFRESH_TOKEN_GRANT => refresh_token(&state, &req, &ip.to_string()).await,
        AUTHORIZATION_CODE_GRANT => authorization_code(&state, &req).await,
        _ => Err(OAuthError::unsupported_grant_type(format!(
            "linkd does not support the grant type {:?}",
            grant_type.chars().take(100).collect::<String>()
        ))),
    }
}

async fn device_code(state: &AppState, req: &OAuthRequest) -> Result<Response, OAuthError> {
    let presented = client_auth::presented(req)?;
    // Almost every request here is a device polling its own pending code:
    // one indexed read fetches the code with its app, and the app's
    // credentials are checked against that.
    let code_hash = match req.form.get("device_code") {
        Some(code) if code.len() <= 256 => Some(device_code_key(code)),
        _ => None,
    };
    let found = match &code_hash {
        Some(hash) => {
            state
                .store
                .poll_device_authorization_at(hash, state.clock.now())
                .await?
        }
        None => None,
    };
    let (client, auth) = match found {
        Some((auth, client)) if auth.client_id == presented.client_id => {
            (client_auth::verify(&presented, Some(client))?, Some(auth))
        }
        // Unknown code, or another app's: authenticate the caller the
        // usual way, so a wrong client still hears invalid_client first.
        _ => (
            std::sync::Arc::new(
                client_auth::authenticate_presented(state.store.as_ref(), &presented).await?,
            ),
            None,
        ),
    };
    req.form.require("device_code")?;
    if code_hash.is_none() {
        // Present but longer than any code linkd issues.
        return Err(OAuthError::invalid_grant("the device code is not known"));
    }
    // A proof's jti is noted only by the poll that can redeem: a pending
    // poll hands out nothing a replayed proof could win, and must cost no
    // write (the hot path).
    let may_redeem = auth
        .as_ref()
        .is_some_and(|a| a.state == AuthorizationState::Approved);
    let proof = dpop_proof(state, req, &client, may_redeem).await?;
    let outcome = device_flow::poll(&state.ctx(), &state.polls, &client, auth, jkt(&proof))
        .await
        .map_err(poll_error)?;
    match outcome {
        PollOutcome::Tokens(tokens) => {
            crate::telemetry::tokens_issued("device_code");
            Ok(token_response(&tokens))
        }
        PollOutcome::Pending => Err(OAuthError::authorization_pending()),
        PollOutcome::SlowDown => Err(OAuthError::slow_down()),
        PollOutcome::Denied => Err(OAuthError::access_denied()),
        PollOutcome::Expired => Err(OAuthError::expired_token()),
        PollOutcome::InvalidGrant(why) => Err(OAuthError::invalid_grant(why)),
    }
}

/// RFC 6749 §4.1.3: a code from `/oauth/authorize`, with its PKCE
/// verifier (RFC 7636 §4.5).
async fn authorization_code(state: &AppState, req: &OAuthRequest) -> Result<Response, OAuthError> {
    let client = authenticate(state.store.as_ref(), req).await?;
    if !client.code_flow_enabled {
        return Err(OAuthError::unauthorized_client(
            "this app may not use the authorization code grant",
        ));
    }
    let proof = dpop_proof(state, req, &client, true).await?;
    let grant = CodeGrant {
        code: req.form.require("code")?,
        redirect_uri: req.form.get("redirect_uri"),
        code_verifier: req.form.get("code_verifier"),
        dpop_jkt: jkt(&proof),
    };
    let outcome = code_flow::redeem(&state.ctx(), &client, &grant)
        .await
        .map_err(poll_error)?;
    match outcome {
        CodeGrantOutcome::Tokens(tokens) => {
            crate::telemetry::tokens_issued("authorization_code");
            Ok(token_response(&tokens))
        }
        CodeGrantOutcome::InvalidGrant(why) => Err(OAuthError::invalid_grant(why)),
    }
}

async fn refresh_token(
    state: &AppState,
    req: &OAuthRequest,
    ip: &str,
) -> Result<Response, OAuthError> {
    let client = authenticate(state.store.as_ref(), req).await?;
    if !client.refresh_enabled {
        return Err(OAuthError::unauthorized_client(
            "this app may not use refresh tokens",
        ));
    }
    let presented = req.form.require("refresh_token")?;
    let proof = dpop_proof(state, req, &client, true).await?;
    let outcome = refresh::refresh(
        &state.ctx(),
        &client,
        presented,
        req.form.get("scope"),
        ip,
        jkt(&proof),
    )
    .await
    .map_err(poll_error)?;
    match outcome {
        RefreshOutcome::Tokens(tokens) => {
            crate::telemetry::tokens_issued("refresh_token");
            Ok(token_response(&tokens))
        }
        RefreshOutcome::InvalidGrant(why) => Err(OAuthError::invalid_grant(why)),
        RefreshOutcome::InvalidScope(why) => Err(OAuthError::invalid_scope(why)),
        RefreshOutcome::InvalidDpop(why) => Err(OAuthError::invalid_dpop_proof(why)),
    }
}

/// RFC 9449 §5: the request's DPoP proof, checked against this request
/// (§4.3); `None` without one, unless the app requires DPoP. `note`
/// records its jti, so a second use is refused on every instance.
async fn dpop_proof(
    state: &AppState,
    req: &OAuthRequest,
    client: &Client,
    note: bool,
) -> Result<Option<Proof>, OAuthError> {
    let Some(header) = super::bearer::dpop_header(&req.headers).map_err(dpop_error)? else {
        if client.require_dpop {
            return Err(OAuthError::invalid_dpop_proof(
                "this app requires DPoP: send a DPoP proof (RFC 9449)",
            ));
        }
        return Ok(None);
    };
    let now = state.clock.now();
    let uri = format!("{}/oauth/token", state.config.issuer());
    let expect = dpop::Expect {
        method: "POST",
        uri: &uri,
        access_token: None,
    };
    let proof = dpop::check(header, &expect, now).map_err(dpop_error)?;
    if note {
        dpop::note(state.store.as_ref(), &proof, now)
            .await
            .map_err(dpop_error)?;
    }
    Ok(Some(proof))
}

fn jkt(proof: &Option<Proof>) -> Option<&str> {
    proof.as_ref().map(|p| p.jkt.as_str())
}

fn dpop_error(e: DpopError) -> OAuthError {
    match e {
        DpopError::Store(e) => e.into(),
        e => OAuthError::invalid_dpop_proof(e.to_string()),
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

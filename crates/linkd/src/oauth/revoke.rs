//! `POST /oauth/revoke` (RFC 7009).

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::OAuthError;
use super::client_auth::authenticate;
use super::form::OAuthRequest;
use crate::client_ip::ClientIp;
use crate::state::AppState;
use crate::tokens::access;

pub async fn handle(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    req: OAuthRequest,
) -> Result<Response, OAuthError> {
    let client = authenticate(state.store.as_ref(), &req).await?;
    let token = req.form.require("token")?;
    // token_type_hint is only a hint (§2.1); both kinds are tried.
    access::revoke(&state.ctx(), &client, token, &ip.to_string()).await?;
    // §2.2: 200 whether or not the token was valid.
    let mut response = StatusCode::OK.into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

//! `POST /oauth/introspect` (RFC 7662), for resource servers.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::OAuthError;
use super::client_auth::authenticate;
use super::form::OAuthRequest;
use crate::state::AppState;
use crate::tokens::access;

pub async fn handle(
    State(state): State<AppState>,
    req: OAuthRequest,
) -> Result<Response, OAuthError> {
    let client = authenticate(state.store.as_ref(), &req).await?;
    // §2.1: the endpoint must be protected; public device apps have no
    // credentials, so only confidential clients (resource servers) may ask.
    if !client.is_confidential() {
        return Err(OAuthError::invalid_client(
            "introspection requires a confidential client",
            req.headers.contains_key(header::AUTHORIZATION),
        ));
    }
    let token = req.form.require("token")?;
    let body = access::introspect(&state.ctx(), token).await?;
    let mut response = Json(body).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

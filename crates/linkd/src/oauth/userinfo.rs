//! `GET|POST /oauth/userinfo` (OpenID Connect Core §5.3).

use axum::Json;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::bearer::{Authenticated, BearerRejection};
use crate::scopes;
use crate::state::AppState;

pub async fn handle(
    State(state): State<AppState>,
    Authenticated(bearer): Authenticated,
) -> Result<Response, BearerRejection> {
    let scope = &bearer.claims.scope;
    // §5.3: the UserInfo endpoint serves tokens granted for OpenID Connect.
    if !scopes::contains(scope, "openid") {
        return Err(BearerRejection::insufficient_scope(
            "the token was not granted the openid scope",
        ));
    }
    let mut body = json!({ "sub": bearer.claims.sub });
    if scopes::contains(scope, "email")
        && let Some(account) = state
            .store
            .get_account(&bearer.device.account_id)
            .await
            .map_err(|e| BearerRejection::from(crate::tokens::access::BearerError::Store(e)))?
    {
        body["email"] = json!(account.email);
        // linkd does not verify addresses by mail (yet).
        body["email_verified"] = json!(false);
    }
    Ok(Json(body).into_response())
}

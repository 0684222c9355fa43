//! Server metadata (RFC 8414, OpenID Connect Discovery 1.0 §3) and the JWK
//! set (RFC 7517).

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::scopes;
use crate::state::AppState;

use super::token::{AUTHORIZATION_CODE_GRANT, DEVICE_CODE_GRANT, REFRESH_TOKEN_GRANT};

pub fn metadata(issuer: &str) -> Value {
    json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/oauth/authorize"),
        "device_authorization_endpoint": format!("{issuer}/oauth/device_authorization"),
        "token_endpoint": format!("{issuer}/oauth/token"),
        "jwks_uri": format!("{issuer}/oauth/jwks"),
        "revocation_endpoint": format!("{issuer}/oauth/revoke"),
        "introspection_endpoint": format!("{issuer}/oauth/introspect"),
        "userinfo_endpoint": format!("{issuer}/oauth/userinfo"),
        // linkd's long poll (oauth/device_wait.rs); RFC 8414 §2 allows
        // additional metadata, and clients that do not know it ignore it.
        "linkd_device_wait_endpoint": format!("{issuer}/oauth/device/wait"),
        "grant_types_supported": [AUTHORIZATION_CODE_GRANT, DEVICE_CODE_GRANT, REFRESH_TOKEN_GRANT],
        "scopes_supported": scopes::KNOWN,
        // The authorization code flow only (RFC 9700 §2.1.2: no implicit).
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        // RFC 7636 §4.2: plain gives no protection against a stolen code.
        "code_challenge_methods_supported": ["S256"],
        // RFC 9207 §3: every authorization response carries `iss`.
        "authorization_response_iss_parameter_supported": true,
        "prompt_values_supported": ["none", "login", "consent", "select_account"],
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "id_token_signing_alg_values_supported": ["RS256"],
        // RFC 9449 §5.1: the token endpoint takes DPoP proofs signed so.
        "dpop_signing_alg_values_supported": crate::dpop::ALGORITHMS
            .iter()
            .map(|(_, name)| *name)
            .collect::<Vec<_>>(),
        "subject_types_supported": ["public"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "auth_time", "email", "sid", "nonce"],
    })
}

fn cached_json(value: Value, max_age: u32) -> Response {
    let mut response = Json(value).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("public, max-age={max_age}")) {
        response.headers_mut().insert(header::CACHE_CONTROL, v);
    }
    response
}

pub async fn openid_configuration(State(state): State<AppState>) -> Response {
    cached_json(metadata(&state.config.issuer()), 3600)
}

pub async fn jwks(State(state): State<AppState>) -> Response {
    // Short cache: a rotated key must reach verifiers well before it signs.
    let keys = state.keys();
    cached_json(serde_json::to_value(keys.jwks()).unwrap_or_default(), 300)
}

//! Bearer token authentication for linkd's APIs (RFC 6750).

use axum::Json;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::state::AppState;
use crate::tokens::access::{self, Bearer, BearerError};

/// An authenticated Bearer request: verified token, linked device.
pub struct Authenticated(pub Bearer);

/// RFC 6750 §3 errors: 401 with a `WWW-Authenticate: Bearer` challenge.
#[derive(Debug)]
pub struct BearerRejection {
    status: StatusCode,
    error: Option<&'static str>,
    description: &'static str,
}

impl BearerRejection {
    pub fn insufficient_scope(description: &'static str) -> Self {
        BearerRejection {
            status: StatusCode::FORBIDDEN,
            error: Some("insufficient_scope"),
            description,
        }
    }
}

impl From<BearerError> for BearerRejection {
    fn from(err: BearerError) -> Self {
        let (status, error, description) = match err {
            // RFC 6750 §3.1: no error code when no token was sent.
            BearerError::Missing => (
                StatusCode::UNAUTHORIZED,
                None,
                "an access token is required",
            ),
            BearerError::Invalid(_) => (
                StatusCode::UNAUTHORIZED,
                Some("invalid_token"),
                "the access token is invalid or expired",
            ),
            BearerError::Revoked => (
                StatusCode::UNAUTHORIZED,
                Some("invalid_token"),
                "the access token was revoked",
            ),
            BearerError::Store(e) => {
                tracing::error!(error = %e, "store error while checking a Bearer token");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some("temporarily_unavailable"),
                    "try again shortly",
                )
            }
        };
        BearerRejection {
            status,
            error,
            description,
        }
    }
}

impl IntoResponse for BearerRejection {
    fn into_response(self) -> Response {
        let challenge = match self.error {
            Some(error) => format!(
                "Bearer realm=\"linkd\", error=\"{error}\", error_description=\"{}\"",
                self.description
            ),
            None => "Bearer realm=\"linkd\"".to_string(),
        };
        let body = json!({
            "error": self.error.unwrap_or("invalid_request"),
            "error_description": self.description,
        });
        let mut response = (self.status, Json(body)).into_response();
        let headers = response.headers_mut();
        if self.status != StatusCode::SERVICE_UNAVAILABLE
            && let Ok(v) = HeaderValue::from_str(&challenge)
        {
            headers.insert(header::WWW_AUTHENTICATE, v);
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        response
    }
}

/// The token of an `Authorization: Bearer` header (RFC 6750 §2.1), or "".
pub fn bearer_token(parts: &Parts) -> &str {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .unwrap_or("")
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = BearerRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts);
        let bearer = access::authenticate_bearer(&state.ctx(), token).await?;
        Ok(Authenticated(bearer))
    }
}

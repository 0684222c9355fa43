//! RFC 6749 §5.2 error responses, used by every OAuth endpoint.

use std::borrow::Cow;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::store::StoreError;

#[derive(Debug, Clone)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: Cow<'static, str>,
    /// RFC 6749 §5.2: a 401 after HTTP Basic authentication must name the
    /// scheme in WWW-Authenticate.
    pub basic_challenge: bool,
    pub retry_after: Option<u64>,
}

const PENDING_DESCRIPTION: &str = "the person has not yet approved this device";
const SLOW_DOWN_DESCRIPTION: &str = "polling too fast: wait five more seconds between requests";

/// The two answers polling devices hear nearly every time (RFC 8628 §3.5),
/// serialized once; `fixed_bodies_are_what_serde_writes` holds them to the
/// serializer.
const PENDING_BODY: &str = r#"{"error":"authorization_pending","error_description":"the person has not yet approved this device"}"#;
const SLOW_DOWN_BODY: &str = r#"{"error":"slow_down","error_description":"polling too fast: wait five more seconds between requests"}"#;

#[derive(Serialize)]
struct Body<'a> {
    error: &'a str,
    error_description: &'a str,
}

impl OAuthError {
    fn new(
        status: StatusCode,
        error: &'static str,
        description: impl Into<Cow<'static, str>>,
    ) -> Self {
        OAuthError {
            status,
            error,
            description: description.into(),
            basic_challenge: false,
            retry_after: None,
        }
    }

    pub fn invalid_request(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", d)
    }
    pub fn invalid_client(d: impl Into<Cow<'static, str>>, basic: bool) -> Self {
        let mut e = Self::new(StatusCode::UNAUTHORIZED, "invalid_client", d);
        e.basic_challenge = basic;
        e
    }
    pub fn invalid_grant(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", d)
    }
    pub fn unauthorized_client(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unauthorized_client", d)
    }
    pub fn unsupported_grant_type(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "unsupported_grant_type", d)
    }
    pub fn invalid_scope(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", d)
    }
    /// RFC 9449 §5: the token request's DPoP proof is missing or wrong.
    pub fn invalid_dpop_proof(d: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_dpop_proof", d)
    }
    pub fn authorization_pending() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "authorization_pending",
            PENDING_DESCRIPTION,
        )
    }
    pub fn slow_down() -> Self {
        Self::new(StatusCode::BAD_REQUEST, "slow_down", SLOW_DOWN_DESCRIPTION)
    }
    pub fn access_denied() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "access_denied",
            "the person denied this device",
        )
    }
    pub fn expired_token() -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "expired_token",
            "the device code has expired: ask for a new one",
        )
    }
    pub fn payload_too_large() -> Self {
        Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request",
            "the request body is too large",
        )
    }
    /// Over a rate limit: 429 with Retry-After (RFC 6585 §4).
    pub fn too_many_requests(retry_after: i64) -> Self {
        let mut e = Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "slow_down",
            "too many requests from this network or app; wait before trying again",
        );
        e.retry_after = Some(retry_after.max(1) as u64);
        e
    }
    /// A network that reports blocked ("I didn't start this"): 429 with
    /// Retry-After until the block ends.
    pub fn network_blocked(retry_after: i64) -> Self {
        let mut e = Self::too_many_requests(retry_after);
        e.description = "people reported codes from this network as not theirs; \
                         new codes are refused for a while"
            .into();
        e
    }
    pub fn unavailable() -> Self {
        let mut e = Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            "linkd cannot reach its store right now; try again shortly",
        );
        e.retry_after = Some(5);
        e
    }
    pub fn server_error() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "an internal error occurred",
        )
    }
}

impl From<StoreError> for OAuthError {
    fn from(err: StoreError) -> Self {
        tracing::error!(error = %err, "store error on an OAuth endpoint");
        match err {
            StoreError::Corrupt(_) => OAuthError::server_error(),
            _ => OAuthError::unavailable(),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let fixed = match (self.error, &*self.description) {
            ("authorization_pending", PENDING_DESCRIPTION) => Some(PENDING_BODY),
            ("slow_down", SLOW_DOWN_DESCRIPTION) => Some(SLOW_DOWN_BODY),
            _ => None,
        };
        let mut response = match fixed {
            Some(body) => Response::new(axum::body::Body::from(body)),
            None => Json(Body {
                error: self.error,
                error_description: &self.description,
            })
            .into_response(),
        };
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        // Room for these and the response layer's (the security headers
        // and the request id) at once, rather than growing the map as
        // each arrives.
        headers.reserve(12);
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        // RFC 6749 §5.1/§5.2: token responses must not be cached.
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
        if self.basic_challenge {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"linkd\", charset=\"UTF-8\""),
            );
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_bodies_are_what_serde_writes() {
        for (error, description, fixed) in [
            ("authorization_pending", PENDING_DESCRIPTION, PENDING_BODY),
            ("slow_down", SLOW_DOWN_DESCRIPTION, SLOW_DOWN_BODY),
        ] {
            let body = Body {
                error,
                error_description: description,
            };
            assert_eq!(serde_json::to_string(&body).unwrap(), fixed);
        }
    }

    #[tokio::test]
    async fn a_fixed_body_answers_like_any_other() {
        for e in [OAuthError::authorization_pending(), OAuthError::slow_down()] {
            let response = e.clone().into_response();
            assert_eq!(response.status(), StatusCode::BAD_REQUEST);
            let headers = response.headers();
            assert_eq!(headers[header::CONTENT_TYPE], "application/json");
            assert_eq!(headers[header::CACHE_CONTROL], "no-store");
            assert_eq!(headers[header::PRAGMA], "no-cache");
            let body = axum::body::to_bytes(response.into_body(), 1024)
                .await
                .unwrap();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json["error"], e.error);
            assert_eq!(json["error_description"], *e.description);
        }
    }
}

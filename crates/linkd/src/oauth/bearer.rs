//! Access-token authentication for linkd's APIs: Bearer (RFC 6750) and,
//! for DPoP-bound tokens, DPoP (RFC 9449 §7).

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
    description: std::borrow::Cow<'static, str>,
    /// Challenge with the DPoP scheme (RFC 9449 §7.1) instead of Bearer.
    dpop: bool,
}

impl BearerRejection {
    pub fn insufficient_scope(description: &'static str) -> Self {
        BearerRejection {
            status: StatusCode::FORBIDDEN,
            error: Some("insufficient_scope"),
            description: description.into(),
            dpop: false,
        }
    }
}

impl From<BearerError> for BearerRejection {
    fn from(err: BearerError) -> Self {
        let mut dpop = false;
        let (status, error, description): (_, _, std::borrow::Cow<'static, str>) = match err {
            // RFC 6750 §3.1: no error code when no token was sent.
            BearerError::Missing => (
                StatusCode::UNAUTHORIZED,
                None,
                "an access token is required".into(),
            ),
            BearerError::Invalid(_) => (
                StatusCode::UNAUTHORIZED,
                Some("invalid_token"),
                "the access token is invalid or expired".into(),
            ),
            BearerError::Revoked => (
                StatusCode::UNAUTHORIZED,
                Some("invalid_token"),
                "the access token was revoked".into(),
            ),
            BearerError::Dpop(crate::dpop::DpopError::Store(e)) => {
                return BearerError::Store(e).into();
            }
            // RFC 9449 §7.1: invalid_dpop_proof, challenged as DPoP.
            e @ BearerError::Dpop(_) => {
                dpop = true;
                (
                    StatusCode::UNAUTHORIZED,
                    Some("invalid_dpop_proof"),
                    e.to_string().into(),
                )
            }
            e @ BearerError::BoundTokenAsBearer => {
                dpop = true;
                (
                    StatusCode::UNAUTHORIZED,
                    Some("invalid_token"),
                    e.to_string().into(),
                )
            }
            e @ BearerError::UnboundTokenAsDpop => (
                StatusCode::UNAUTHORIZED,
                Some("invalid_token"),
                e.to_string().into(),
            ),
            BearerError::Store(e) => {
                tracing::error!(error = %e, "store error while checking a Bearer token");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    Some("temporarily_unavailable"),
                    "try again shortly".into(),
                )
            }
        };
        BearerRejection {
            status,
            error,
            description,
            dpop,
        }
    }
}

impl IntoResponse for BearerRejection {
    fn into_response(self) -> Response {
        let scheme = if self.dpop { "DPoP" } else { "Bearer" };
        let mut challenge = match self.error {
            Some(error) => format!(
                "{scheme} realm=\"linkd\", error=\"{error}\", error_description=\"{}\"",
                self.description
            ),
            None => format!("{scheme} realm=\"linkd\""),
        };
        if self.dpop {
            // RFC 9449 §7.1: the algorithms a proof may use.
            let algs: Vec<&str> = crate::dpop::ALGORITHMS.iter().map(|(_, n)| *n).collect();
            challenge.push_str(&format!(", algs=\"{}\"", algs.join(" ")));
        }
        let body = json!({
            "error": self.error.unwrap_or("invalid_request"),
            "error_description": &*self.description,
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

/// The token of an `Authorization: Bearer` or `Authorization: DPoP`
/// header (RFC 9449 §7.1), and whether it was DPoP.
fn authorization(parts: &Parts) -> Option<(&str, bool)> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") {
        Some((token.trim(), false))
    } else if scheme.eq_ignore_ascii_case("dpop") {
        Some((token.trim(), true))
    } else {
        None
    }
}

/// The one `DPoP` header of a request, if any (RFC 9449 §4.3 check 1).
pub fn dpop_header(
    headers: &axum::http::HeaderMap,
) -> Result<Option<&str>, crate::dpop::DpopError> {
    use crate::dpop::DpopError;
    let mut values = headers.get_all("dpop").iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(DpopError::Repeated);
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| DpopError::Malformed("the header is not text"))
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = BearerRejection;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let (token, dpop_scheme) = authorization(parts).unwrap_or(("", false));
        // A proof matters only with the DPoP scheme: a Bearer request is
        // not refused for a stray header.
        let proof = if dpop_scheme {
            dpop_header(&parts.headers).map_err(BearerError::Dpop)?
        } else {
            None
        };
        let presented = access::Presented {
            token,
            dpop_scheme,
            proof,
            method: parts.method.as_str(),
            path: parts.uri.path(),
        };
        let bearer = access::authenticate(&state.ctx(), &presented).await?;
        Ok(Authenticated(bearer))
    }
}

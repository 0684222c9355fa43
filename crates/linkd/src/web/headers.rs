//! Security headers on every response (DESIGN.md, "Security decisions").

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;

use crate::state::AppState;

/// No inline script or style, nothing from other origins, never framed.
/// The scripts are linkd's own progressive touches (`/static/linkd.js`)
/// and passkeys (`/static/passkeys.js`), which fetches its WebAuthn
/// options from linkd itself (connect-src).
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
                   img-src 'self' data:; connect-src 'self'; form-action 'self'; \
                   frame-ancestors 'none'; base-uri 'none'";

/// The policy when OpenID providers are configured: "Continue with …" and
/// "Add …" are forms answered by a redirect to the provider's
/// authorization endpoint, which browsers hold to form-action (CSP 3
/// §6.3.1), so `origins` (those endpoints', `upstream::Providers`) are
/// allowed. None without any: the fixed policy.
pub fn policy_with_form_origins(origins: &[String]) -> Option<HeaderValue> {
    if origins.is_empty() {
        return None;
    }
    let policy = CSP.replace(
        "form-action 'self'",
        &format!("form-action 'self' {}", origins.join(" ")),
    );
    HeaderValue::from_str(&policy).ok()
}

/// Lets this page's forms lead to `target`'s origin as well as linkd's: a
/// form whose answer redirects to an app or an OpenID provider. Set by
/// the page; [`secure`] keeps it.
pub fn allow_form_target(state: &AppState, response: &mut Response, target: &url::Url) {
    let origin = target.origin();
    if !origin.is_tuple() {
        return;
    }
    // On top of the providers' origins, when there are any.
    let providers = state.upstream.csp();
    let base = providers
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .unwrap_or(CSP);
    let policy = base.replace(
        "form-action 'self'",
        &format!("form-action 'self' {}", origin.ascii_serialization()),
    );
    if let Ok(value) = HeaderValue::from_str(&policy) {
        response
            .headers_mut()
            .insert(header::CONTENT_SECURITY_POLICY, value);
    }
}

/// What a response holds, for the headers it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A page (`text/html`).
    Html,
    /// A JSON document: the OAuth endpoints, the device API, discovery.
    Json,
    /// Anything else: redirects, assets, QR codes, plain text.
    Other,
}

/// The media type of a message's `Content-Type`, without its parameters
/// (`application/json` of `application/json; charset=utf-8`); empty when
/// there is none or it is not text.
pub fn mime(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map_or("", |v| v.split(';').next().unwrap_or("").trim())
}

impl Kind {
    pub fn of(response: &Response) -> Kind {
        let mime = mime(response.headers());
        if mime.starts_with("text/html") {
            Kind::Html
        } else if mime == "application/json" || mime.ends_with("+json") {
            Kind::Json
        } else {
            Kind::Other
        }
    }
}

/// The policy of a JSON answer: nothing in it may load or run, and it is
/// never framed.
const JSON_CSP: &str = "default-src 'none'; frame-ancestors 'none'";

/// Part of the one response layer (`middleware::around_request`).
///
/// A JSON answer gets the set OWASP's REST Security Cheat Sheet gives API
/// responses (no framing, no sniffing, HSTS), not the page policy or
/// Referrer-Policy: it loads nothing and links nowhere, so those do nothing
/// for it. That keeps every poll's answer ~190 bytes shorter for the
/// devices (and load generators) that read it many times a minute.
/// Redirects keep Referrer-Policy: browsers apply a redirect's policy to
/// the request that follows it (Fetch §4.4), and linkd's redirects carry
/// codes.
pub fn secure(state: &AppState, response: &mut Response, kind: Kind) {
    let headers = response.headers_mut();
    // Room for these and the request id at once, rather than growing the
    // map insert by insert (~2% of a poll, BENCH.md).
    headers.reserve(7);
    // A page that widened its form-action keeps its own policy.
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        let policy = match kind {
            Kind::Json => HeaderValue::from_static(JSON_CSP),
            Kind::Html | Kind::Other => state
                .upstream
                .csp()
                .unwrap_or_else(|| HeaderValue::from_static(CSP)),
        };
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if kind != Kind::Json {
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    if state.config.is_https() {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    // Pages carry CSRF tokens and personal details: never store them.
    if kind == Kind::Html {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

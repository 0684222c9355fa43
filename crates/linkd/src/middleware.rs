//! The one layer every request and response passes through: request ids,
//! the request's log span, localized error pages, security headers and
//! request metrics.

use crate::state::AppState;
use crate::{telemetry, web};

static REQUEST_ID: axum::http::HeaderName = axum::http::HeaderName::from_static("x-request-id");

/// What every request and response gets, in one layer rather than one
/// each (every layer costs a boxed future and a state clone per request,
/// BENCH.md):
/// - an `X-Request-Id` on the response (a client's or proxy's own is kept
///   when it is short and plain, see `is_safe_request_id`, and dropped
///   from the request when not), and a span carrying it, so every log line
///   of the request names it; the span records the path without its
///   query, which can carry a user code;
/// - error pages in the visitor's language and the security headers;
/// - the request's count and latency in the metrics.
pub(crate) async fn around_request(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let id = match req.headers().get(&REQUEST_ID) {
        Some(id) if is_safe_request_id(id.as_bytes()) => id.clone(),
        // Not one we repeat: dropped from the request, so nothing
        // downstream sees the client's.
        Some(_) => {
            req.headers_mut().remove(&REQUEST_ID);
            state.request_ids.next()
        }
        None => state.request_ids.next(),
    };
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        request_id = %id.to_str().unwrap_or("-"),
    );
    let timer = telemetry::RequestTimer::start(&req);
    // Kept for a page's language and an error page's header (who is
    // signed in). Devices send neither; the hot path copies nothing and
    // negotiates no language for its JSON.
    let accept_language = req
        .headers()
        .get(axum::http::header::ACCEPT_LANGUAGE)
        .cloned();
    let cookies = req.headers().get(axum::http::header::COOKIE).cloned();
    let is_page =
        !(req.uri().path().starts_with("/oauth/") || req.uri().path().starts_with("/api/"));
    let mut response = next.run(req).instrument(span.clone()).await;
    if is_page && response.status() == axum::http::StatusCode::METHOD_NOT_ALLOWED {
        web::method_not_allowed(&mut response);
    }
    let kind = web::headers::Kind::of(&response);
    if kind == web::headers::Kind::Html {
        let lang = web::accept_language_lang(accept_language.as_ref());
        // Boxed: the page's work (a store read, a template) would
        // otherwise make every request's future as large as its own.
        Box::pin(web::localize(&state, lang, cookies.as_ref(), &mut response)).await;
    }
    web::headers::secure(&state, &mut response, kind);
    let status = response.status();
    let latency_ms = timer.finish(status);
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), latency_ms, "request failed");
        } else {
            tracing::debug!(status = status.as_u16(), latency_ms, "request finished");
        }
    });
    response.headers_mut().insert(REQUEST_ID.clone(), id);
    response
}

/// Longest client or proxy request id linkd repeats.
pub const MAX_REQUEST_ID_BYTES: usize = 64;

/// Whether a request id from outside may be kept: 1 to 64 characters of
/// `A-Z a-z 0-9 . _ : -`. That covers UUIDs and the ids proxies make
/// (nginx's `$request_id`, Envoy's, Heroku's), while a newline, a quote or
/// a `key=value` cannot reach a text log line to forge a field there, and
/// a long one cannot bloat every line and response.
fn is_safe_request_id(id: &[u8]) -> bool {
    (1..=MAX_REQUEST_ID_BYTES).contains(&id.len())
        && id
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b':' | b'-'))
}

/// Request ids shaped like UUIDs: a random 128-bit start per process plus a
/// counter. Unique across instances like random UUIDs, without asking the
/// kernel for randomness on every request (a random UUID each did).
pub struct RequestIds {
    start: u128,
    next: std::sync::atomic::AtomicU64,
}

impl Default for RequestIds {
    fn default() -> Self {
        RequestIds {
            start: rand::random(),
            next: Default::default(),
        }
    }
}

impl RequestIds {
    fn next(&self) -> axum::http::HeaderValue {
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let v = self.start.wrapping_add(u128::from(n));
        // 8-4-4-4-12 hex digits, most significant first, written in place
        // (every request gets one; `format!` cost more than the rest of
        // the id).
        let mut id = [b'-'; 36];
        let mut digits = (0..32).rev().map(|k| HEX[((v >> (4 * k)) & 0xf) as usize]);
        for (i, slot) in id.iter_mut().enumerate() {
            if !matches!(i, 8 | 13 | 18 | 23) {
                *slot = digits.next().unwrap_or(b'0');
            }
        }
        // Hex digits and dashes are always a valid header value.
        axum::http::HeaderValue::from_bytes(&id)
            .unwrap_or_else(|_| axum::http::HeaderValue::from_static("-"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_request_ids_are_kept() {
        for good in [
            "a",
            "req-from-the-proxy-1",
            "0f1e:2d3c.4b_5a",
            &"x".repeat(64),
        ] {
            assert!(is_safe_request_id(good.as_bytes()), "{good:?}");
        }
        for bad in [
            "",
            &"x".repeat(65),
            "a b",
            "a\tb",
            "a\nlevel=ERROR",
            "id\"x",
            "x=y",
            "caf\u{e9}",
        ] {
            assert!(!is_safe_request_id(bad.as_bytes()), "{bad:?}");
        }
    }

    #[test]
    fn request_ids_are_uuid_shaped_and_count_up() {
        let ids = RequestIds {
            start: 0x0123_4567_89ab_cdef_0011_2233_4455_66ff,
            next: Default::default(),
        };
        assert_eq!(ids.next(), "01234567-89ab-cdef-0011-2233445566ff");
        assert_eq!(ids.next(), "01234567-89ab-cdef-0011-223344556700");
    }
}

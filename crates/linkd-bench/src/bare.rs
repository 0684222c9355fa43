//! The baseline: the same HTTP stack as linkd (axum on hyper, a
//! multi-threaded tokio runtime) answering every token request with the
//! bytes linkd answers a pending poll with, and doing nothing else. Its
//! figures are what HTTP alone costs on this machine; linkd's are read
//! against them.

use std::net::SocketAddr;

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::http::StatusCode;
use axum::routing::post;

/// linkd's answer to a poll of a pending code (RFC 8628 §3.5), byte for
/// byte; `server::check_parity` compares it with a real one every run.
pub const PENDING_BODY: &str = r#"{"error":"authorization_pending","error_description":"the person has not yet approved this device"}"#;
pub const STATUS: StatusCode = StatusCode::BAD_REQUEST;
/// The headers RFC 6749 §5.1 asks of token responses, as linkd sends them.
pub const HEADERS: &[(&str, &str)] = &[
    ("content-type", "application/json"),
    ("cache-control", "no-store"),
    ("pragma", "no-cache"),
];

pub async fn serve(listen: SocketAddr) -> anyhow::Result<()> {
    let app = Router::new().route("/oauth/token", post(token));
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("binding {listen}"))?;
    axum::serve(listener, app).await.context("serving")
}

/// Takes the form body as bytes, as any handler must receive it before it
/// can answer (and as hyper needs to keep the connection reusable), but
/// parses nothing and looks nothing up.
async fn token(_form: Bytes) -> (StatusCode, [(&'static str, &'static str); 3], &'static str) {
    (STATUS, [HEADERS[0], HEADERS[1], HEADERS[2]], PENDING_BODY)
}

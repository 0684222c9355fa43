//! Builds the router and the state every handler shares.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, FromRequestParts};
use axum::http::request::Parts;
use axum::routing::{get, post};
use tokio::net::TcpListener;

use crate::brand::Brand;
use crate::clock::Clock;
use crate::device_flow::PollTracker;
use crate::limits::Limits;
use crate::store::{self, Client, DynStore, StoreError};
use crate::tokens::Keys;
use crate::{Config, api, oauth, scopes, telemetry, web};

static REQUEST_ID: axum::http::HeaderName = axum::http::HeaderName::from_static("x-request-id");

/// Largest request body any route accepts. OAuth and page forms are a few
/// hundred bytes.
pub const MAX_BODY_BYTES: usize = 16 * 1024;

/// What every handler shares. One reference count to clone: every
/// middleware layer and extractor clones the state once per request.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub config: Arc<Config>,
    pub store: DynStore,
    pub clock: Arc<dyn Clock>,
    pub polls: Arc<PollTracker>,
    /// Group commit of new device authorizations.
    pub inserter: Arc<crate::device_flow::Inserter>,
    /// Devices in the long poll, woken by decisions.
    pub waits: Arc<crate::waits::Waits>,
    pub limits: Arc<Limits>,
    pub templates: Arc<web::Templates>,
    /// Flips to true when the server starts shutting down, so long polls
    /// and event streams end cleanly instead of holding the drain open.
    shutdown: Arc<tokio::sync::watch::Sender<bool>>,
    /// The operator's product name, logo, colour and support link.
    pub brand: Arc<Brand>,
    /// The stylesheet (in the brand's colours), script and logo.
    pub assets: Arc<web::assets::Assets>,
    keys: Arc<RwLock<Arc<Keys>>>,
    request_ids: RequestIds,
}

impl AppState {
    /// Resolves once the server is shutting down (at once if it already is).
    pub async fn shutting_down(&self) {
        let mut rx = self.shutdown.subscribe();
        let _ = rx.wait_for(|stopping| *stopping).await;
    }

    /// Becomes true when the server begins to shut down (for streams that
    /// select on it).
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Tells long-lived requests to finish.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// The current key set. Cheap: one lock and a reference count.
    pub fn keys(&self) -> Arc<Keys> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-reads signing keys from the store: picks up rotations made by
    /// `linkd keys rotate` or another instance, and moves keys through
    /// their roles as time passes.
    pub async fn reload_keys(&self) -> Result<(), crate::tokens::KeyError> {
        let stored = self.store.list_signing_keys().await?;
        let keys = Keys::from_stored(&stored, self.clock.now(), self.config.token_lifetime())?;
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(())
    }
}

/// The demo device app registered on an empty database so a first run has
/// something to link.
pub const DEMO_CLIENT_ID: &str = "demo-tv";

/// Opens and migrates the store, loads or creates the signing key, and
/// registers the demo app when the database has no apps at all.
pub async fn prepare(config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<AppState> {
    // The metrics recorder before the first request: handles taken
    // earlier would record nowhere.
    telemetry::handle();
    config.validate().map_err(anyhow::Error::msg)?;
    let (brand, notes) = Brand::from_config(&config).map_err(anyhow::Error::msg)?;
    for note in notes {
        tracing::warn!("{note}");
    }
    let store = store::open(&config.database_url).await?;
    store.migrate().await?;
    let now = clock.now();
    let keys = Keys::load_or_create(store.as_ref(), now, config.token_lifetime()).await?;
    if !config.no_demo && store.list_clients().await?.is_empty() {
        let demo = Client {
            client_id: DEMO_CLIENT_ID.into(),
            name: "Demo TV".into(),
            secret_hash: None,
            scopes: scopes::DEFAULT_CLIENT_SCOPES.into(),
            device_flow_enabled: true,
            created_at: now,
        };
        match store.insert_client(&demo).await {
            Ok(()) | Err(StoreError::Conflict) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let limits = Arc::new(Limits::new(&config));
    let inserter = Arc::new(crate::device_flow::Inserter::start(store.clone()));
    let polls = Arc::new(PollTracker::new(clock.now_ms()));
    Ok(AppState(Arc::new(Shared {
        config: Arc::new(config),
        store,
        clock,
        polls,
        inserter,
        waits: Arc::new(crate::waits::Waits::default()),
        limits,
        shutdown: Arc::new(tokio::sync::watch::channel(false).0),
        templates: Arc::new(web::Templates::new()),
        assets: Arc::new(web::assets::Assets::new(&brand)),
        brand: Arc::new(brand),
        keys: Arc::new(RwLock::new(Arc::new(keys))),
        request_ids: RequestIds::default(),
    })))
}

pub fn router(state: AppState) -> Router {
    let router = Router::new()
        .route("/", get(web::home::page))
        .route("/link", get(web::link::page))
        .route("/link/decide", post(web::link::decide))
        .route("/signin", get(web::signin::page).post(web::signin::submit))
        .route("/signup", get(web::signup::page).post(web::signup::submit))
        .route("/signout", post(web::signin::sign_out))
        .route("/static/linkd.css", get(web::assets::stylesheet))
        .route("/static/linkd.js", get(web::assets::script))
        .route("/static/logo", get(web::assets::logo))
        .route("/api/v1/brand", get(api::brand::get))
        .route(
            "/oauth/device_authorization",
            post(oauth::device_authorization::handle),
        )
        .route("/oauth/token", post(oauth::token::handle))
        .route("/oauth/device/wait", post(oauth::device_wait::handle))
        .route("/oauth/revoke", post(oauth::revoke::handle))
        .route("/oauth/introspect", post(oauth::introspect::handle))
        .route(
            "/oauth/userinfo",
            get(oauth::userinfo::handle).post(oauth::userinfo::handle),
        )
        .route(
            "/api/v1/device",
            get(api::device::get).delete(api::device::delete),
        )
        .route("/api/v1/sync/events", get(api::sync::events))
        .route("/api/v1/sync/{collection}", get(api::sync::changes))
        .route(
            "/api/v1/sync/{collection}/{key}",
            get(api::sync::get_document)
                .put(api::sync::put_document)
                .delete(api::sync::delete_document)
                // The PUT handler reads the body itself, up to the
                // configured document size, to answer 413 in JSON.
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/devices", get(web::devices::page))
        .route("/devices/{id}/rename", post(web::devices::rename))
        .route("/devices/{id}/unlink", post(web::devices::unlink))
        .route("/account", get(web::account::page))
        .route("/account/sync/delete", post(web::account::delete_sync))
        .route("/oauth/jwks", get(oauth::discovery::jwks))
        .route(
            "/.well-known/openid-configuration",
            get(oauth::discovery::openid_configuration),
        )
        .route(
            "/.well-known/oauth-authorization-server",
            get(oauth::discovery::openid_configuration),
        )
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz));
    let router = if state.config.metrics_listen.is_none() {
        router.route("/metrics", get(telemetry::render))
    } else {
        router
    };
    router
        .fallback(web::not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            around_request,
        ))
        .with_state(state)
}

/// What every request and response gets, in one layer rather than one
/// each (every layer costs a boxed future and a state clone per request,
/// BENCH.md):
/// - an `X-Request-Id` on the request and the response (a client's or
///   proxy's own is kept), and a span carrying it, so every log line of
///   the request names it; the span records the path without its query,
///   which can carry a user code;
/// - error pages in the visitor's language and the security headers;
/// - the request's count and latency in the metrics.
async fn around_request(
    axum::extract::State(state): axum::extract::State<AppState>,
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use tracing::Instrument;
    let id = match req.headers().get(&REQUEST_ID) {
        Some(id) => id.clone(),
        None => {
            let id = state.request_ids.next();
            req.headers_mut().insert(REQUEST_ID.clone(), id.clone());
            id
        }
    };
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        request_id = %id.to_str().unwrap_or("-"),
    );
    let timer = telemetry::RequestTimer::start(&req);
    let lang = web::request_lang(req.headers());
    let mut response = next.run(req).instrument(span.clone()).await;
    web::localize(&state, lang, &mut response);
    web::headers::secure(&state, &mut response);
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

/// The router of a separate metrics listener (`--metrics-listen`).
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(telemetry::render))
        .with_state(state)
}

/// Serves until `shutdown` resolves. Background upkeep runs alongside.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let upkeep = Upkeep::start(&state);
    let drain = Duration::from_secs(u64::from(state.config.shutdown_timeout));
    let (stopping_tx, stopping_rx) = tokio::sync::oneshot::channel::<()>();
    let stopper = state.clone();
    let signal = async move {
        shutdown.await;
        tracing::info!("shutting down: no new connections; finishing requests in flight");
        stopper.begin_shutdown();
        let _ = stopping_tx.send(());
    };
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .into_future();
    tokio::pin!(server);
    // Requests in flight get `shutdown_timeout` seconds once the signal
    // came; whatever still runs after that is dropped.
    let result = tokio::select! {
        result = &mut server => result,
        _ = async {
            let _ = stopping_rx.await;
            tokio::time::sleep(drain).await;
        } => {
            tracing::warn!("requests still running after the shutdown timeout were dropped");
            Ok(())
        }
    };
    drop(upkeep);
    result
}

/// Serves HTTPS, terminating TLS in linkd (for operators without a reverse
/// proxy), until `shutdown` resolves.
pub async fn serve_tls(
    listener: std::net::TcpListener,
    state: AppState,
    tls: axum_server::tls_rustls::RustlsConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let upkeep = Upkeep::start(&state);
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    let drain = Duration::from_secs(u64::from(state.config.shutdown_timeout));
    let flag = state.clone();
    tokio::spawn(async move {
        shutdown.await;
        flag.begin_shutdown();
        stopper.graceful_shutdown(Some(drain));
    });
    listener.set_nonblocking(true)?;
    let app = router(state).into_make_service_with_connect_info::<SocketAddr>();
    let result = axum_server::from_tcp_rustls(listener, tls)?
        .handle(handle)
        .serve(app)
        .await;
    drop(upkeep);
    result
}

/// Reads a PEM certificate chain and private key into a TLS configuration
/// (rustls with the ring provider; TLS 1.2 and 1.3; HTTP/2 and 1.1).
pub fn tls_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> anyhow::Result<axum_server::tls_rustls::RustlsConfig> {
    use anyhow::Context;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the certificate chain {}", cert.display()))?;
    if certs.is_empty() {
        anyhow::bail!("{} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the private key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and key do not match")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(axum_server::tls_rustls::RustlsConfig::from_config(
        Arc::new(config),
    ))
}

/// Ready to take traffic: the store answers and has every migration this
/// build needs. Distinct from /healthz (the process is alive), so a load
/// balancer stops sending requests while the database is away.
async fn readyz(
    axum::extract::State(state): axum::extract::State<AppState>,
) -> axum::response::Response {
    use axum::http::StatusCode;
    use axum::response::IntoResponse;
    match state.store.migrations_applied().await {
        Ok(true) => (StatusCode::OK, "ready").into_response(),
        Ok(false) => (StatusCode::SERVICE_UNAVAILABLE, "migrations pending").into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "store unreachable").into_response()
        }
    }
}

/// Background tasks that live as long as the server.
struct Upkeep(Vec<tokio::task::JoinHandle<()>>);

impl Upkeep {
    fn start(state: &AppState) -> Self {
        Upkeep(vec![
            tokio::spawn(sweep_polls(state.clone())),
            tokio::spawn(reload_keys(state.clone())),
            tokio::spawn(sample_store(state.clone())),
            tokio::spawn(state.waits.clone().relay(state.store.clone())),
            tokio::spawn(purge(state.clone())),
        ])
    }
}

impl Drop for Upkeep {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

async fn sweep_polls(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        state.polls.sweep(state.clock.now());
    }
}

/// Rows per purge batch: a few milliseconds of writing, so a request never
/// waits long behind it.
pub const PURGE_BATCH: i64 = 500;
/// How often the purge looks for expired rows.
pub const PURGE_EVERY: Duration = Duration::from_secs(60);
/// Expired codes stay this long, so a device still polling after the
/// deadline hears `expired_token` (RFC 8628 §3.5) rather than "unknown".
pub const EXPIRED_CODE_GRACE_SECS: i64 = 900;

/// Keeps tables at their working size: deletes expired codes, sessions,
/// refresh tokens and revoked token ids in small batches, pausing between
/// batches so other writes get their turn.
async fn purge(state: AppState) {
    let mut tick = tokio::time::interval(PURGE_EVERY);
    loop {
        tick.tick().await;
        if let Err(e) = purge_now(&state).await {
            tracing::warn!(error = %e, "purge of expired rows failed");
        }
    }
}

/// One purge round: batches until nothing expired is left. Returns the
/// number of rows deleted.
pub async fn purge_now(state: &AppState) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let now = state.clock.now();
        let before = store::PurgeBefore {
            now,
            codes: now - EXPIRED_CODE_GRACE_SECS,
            refresh_tokens: now - i64::from(state.config.refresh_absolute_lifetime),
        };
        let purged = state.store.purge(&before, PURGE_BATCH).await?;
        total += purged;
        if purged == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if total > 0 {
        tracing::debug!(rows = total, "purged expired rows");
    }
    Ok(total)
}

async fn sample_store(state: AppState) {
    let mut tick = tokio::time::interval(telemetry::SAMPLE_EVERY);
    loop {
        tick.tick().await;
        telemetry::sample_store(&state).await;
    }
}

/// Picks up keys rotated by `linkd keys rotate` or another instance, and
/// moves keys through their roles as time passes (tokens.rs).
async fn reload_keys(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(crate::tokens::KEY_RELOAD_SECS));
    loop {
        tick.tick().await;
        if let Err(e) = state.reload_keys().await {
            // Keep signing with the keys already loaded.
            tracing::warn!(error = %e, "could not reload signing keys");
        }
    }
}

/// The address of the person or device that sent the request: the
/// connection's peer, or, when the peer is a configured trusted proxy, the
/// address that proxy reports.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// Walks a forwarding header from the right (the entry our proxy added)
/// past trusted proxies; the first untrusted address is the client.
/// Anything a client wrote further left is never believed.
pub fn client_ip(peer: IpAddr, header: Option<&str>, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    for entry in header.unwrap_or("").rsplit(',') {
        let entry = entry.trim();
        // Accept "for=" forms loosely and bracketed or port-suffixed IPv6/IPv4.
        let entry = entry.trim_start_matches("for=").trim_matches('"');
        let parsed = entry
            .parse::<IpAddr>()
            .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
            .or_else(|_| {
                entry
                    .trim_start_matches('[')
                    .split(']')
                    .next()
                    .unwrap_or("")
                    .parse::<IpAddr>()
            });
        let Ok(ip) = parsed else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let config = &state.config;
        if config.trusted_proxies.is_empty() {
            return Ok(ClientIp(peer));
        }
        let header = parts
            .headers
            .get(config.client_ip_header.as_str())
            .and_then(|v| v.to_str().ok());
        Ok(ClientIp(client_ip(peer, header, &config.trusted_proxies)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_uuid_shaped_and_count_up() {
        let ids = RequestIds {
            start: 0x0123_4567_89ab_cdef_0011_2233_4455_66ff,
            next: Default::default(),
        };
        assert_eq!(ids.next(), "01234567-89ab-cdef-0011-2233445566ff");
        assert_eq!(ids.next(), "01234567-89ab-cdef-0011-223344556700");
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        // A direct client cannot claim another address.
        assert_eq!(
            client_ip(stranger, Some("198.51.100.1"), &trusted),
            stranger
        );
        // Through the proxy: the rightmost untrusted entry; spoofed entries
        // to its left are ignored.
        assert_eq!(
            client_ip(proxy, Some("1.1.1.1, 198.51.100.1, 10.9.9.9"), &trusted),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(proxy, None, &trusted), proxy);
        assert_eq!(client_ip(proxy, Some("garbage"), &trusted), proxy);
        assert_eq!(
            client_ip(proxy, Some("[2001:db8::1]:443"), &trusted),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(proxy, Some("198.51.100.1"), &[]), proxy);
    }
}

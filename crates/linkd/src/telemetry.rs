//! Metrics (Prometheus text format, through the `metrics` facade) and the
//! request middleware that counts and times every request.

use std::collections::HashMap;
use std::sync::{LazyLock, OnceLock, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{Method, header};
use axum::response::{IntoResponse, Response};
use foldhash::fast::FixedState;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::state::AppState;

/// The process-wide recorder. The `metrics` facade has one global
/// recorder, so every server in a process (tests start many) shares it.
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let builder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("duration_seconds".into()),
                &[
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                    10.0, 30.0,
                ],
            )
            .unwrap_or_else(|_| PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Fails only when another recorder is already installed; the
        // handle then renders nothing, which is all that can be done.
        let _ = metrics::set_global_recorder(recorder);
        spawn_upkeep(handle.clone());
        handle
    })
}

/// How often histogram samples are folded into their buckets.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// A recorder made with `build_recorder` keeps every histogram sample
/// (each request's latency) until something drains them: a scrape of
/// `/metrics`, or upkeep. Unscraped, memory grew with every request
/// (about 20 bytes each: 90 MiB instead of 43 after 27 s of polling,
/// BENCH.md), so a thread drains them on a timer, whatever runtime the
/// process has.
fn spawn_upkeep(handle: PrometheusHandle) {
    let spawned = std::thread::Builder::new()
        .name("linkd-metrics".into())
        .spawn(move || {
            loop {
                std::thread::sleep(UPKEEP_EVERY);
                handle.run_upkeep();
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "could not start the metrics upkeep thread");
    }
}

/// A request's counter and latency histogram.
type RequestMetrics = (metrics::Counter, metrics::Histogram);

/// One route's handles by method label and status.
type ByStatus = HashMap<(&'static str, u16), RequestMetrics, FixedState>;

/// Handles by route template, then method and status. Building a metric's
/// key costs several allocations and a registry lookup; the hot paths
/// (polls, mostly) find theirs here with one read lock. The keys are
/// linkd's own route templates, methods and statuses, nothing a client
/// can choose, so a fast fixed hash serves rather than SipHash (two
/// lookups per request, ~1% of a poll).
static REQUEST_METRICS: LazyLock<RwLock<HashMap<String, ByStatus, FixedState>>> =
    LazyLock::new(Default::default);

/// The method's label. Methods outside the common set share one label, so a
/// client inventing methods cannot grow the metrics without bound.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

fn request_metrics(route: &str, method: &'static str, status: u16) -> RequestMetrics {
    let key = (method, status);
    if let Some(found) = REQUEST_METRICS
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .get(route)
        .and_then(|statuses| statuses.get(&key))
    {
        return found.clone();
    }
    let made = (
        metrics::counter!("linkd_http_requests_total", "route" => route.to_string(), "method" => method, "status" => status.to_string()),
        metrics::histogram!("linkd_http_request_duration_seconds", "route" => route.to_string(), "method" => method),
    );
    REQUEST_METRICS
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .entry(route.to_string())
        .or_default()
        .insert(key, made.clone());
    made
}

/// Counts and times one request by route template (never the raw path,
/// which can carry ids and codes) and status. Started and finished by the
/// one response layer (`middleware::around_request`).
pub struct RequestTimer {
    route: Option<MatchedPath>,
    method: &'static str,
    started: Instant,
}

impl RequestTimer {
    pub fn start(req: &Request) -> Self {
        RequestTimer {
            route: req.extensions().get::<MatchedPath>().cloned(),
            method: method_label(req.method()),
            started: Instant::now(),
        }
    }

    /// Records the request; returns its latency in milliseconds.
    pub fn finish(self, status: axum::http::StatusCode) -> f64 {
        let route = self.route.as_ref().map_or("unmatched", MatchedPath::as_str);
        let (requests, latency) = request_metrics(route, self.method, status.as_u16());
        let seconds = self.started.elapsed().as_secs_f64();
        requests.increment(1);
        latency.record(seconds);
        seconds * 1000.0
    }
}

/// `GET /metrics`.
pub async fn render(State(state): State<AppState>) -> Response {
    let _ = &state;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle().render(),
    )
        .into_response()
}

/// `GET /metrics` on the main listener (`--metrics-token`): the metrics
/// for a request that carries the token as `Authorization: Bearer`, else
/// the same 404 as any unknown page, so the endpoint is not advertised.
/// Both sides are hashed before the constant-time comparison, so neither
/// the token's bytes nor its length leak through timing.
pub async fn render_to_token_holder(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Response {
    use subtle::ConstantTimeEq;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let allowed = match (presented, &state.config.metrics_token) {
        (Some(presented), Some(token)) => crate::codes::secret_hash(presented)
            .as_bytes()
            .ct_eq(crate::codes::secret_hash(token).as_bytes())
            .into(),
        _ => false,
    };
    if allowed {
        render(State(state)).await
    } else {
        crate::web::not_found().await.into_response()
    }
}

/// A rejection by one of the limits in `limits.rs`.
pub fn rate_limited(limit: &'static str) {
    metrics::counter!("linkd_rate_limited_total", "limit" => limit).increment(1);
}

/// A device authorization reached an outcome: requested, approved, denied,
/// expired or redeemed.
pub fn authorization(outcome: &'static str) {
    metrics::counter!("linkd_device_authorizations_total", "outcome" => outcome).increment(1);
}

/// A person said they did not start a link (`via`: confirmation or mail);
/// `counted`: whether it counts towards blocking the requesting network.
pub fn link_reported(via: &'static str, counted: bool) {
    let counted = if counted { "true" } else { "false" };
    metrics::counter!("linkd_link_reports_total", "via" => via, "counted" => counted).increment(1);
}

/// Reports blocked a requesting network.
pub fn network_blocked() {
    metrics::counter!("linkd_network_blocks_total").increment(1);
}

pub fn tokens_issued(grant: &'static str) {
    metrics::counter!("linkd_tokens_issued_total", "grant" => grant).increment(1);
}

pub fn refresh_reuse() {
    metrics::counter!("linkd_refresh_token_reuse_total").increment(1);
}

/// Refreshes the gauges that need the store: pending codes and pool use.
pub async fn sample_store(state: &AppState) {
    match state.store.count_pending(state.clock.now()).await {
        Ok(n) => metrics::gauge!("linkd_pending_device_authorizations").set(n as f64),
        Err(e) => tracing::debug!(error = %e, "could not count pending codes"),
    }
    for (pool, size, idle) in state.store.pool_stats() {
        metrics::gauge!("linkd_store_pool_connections", "pool" => pool, "state" => "open")
            .set(f64::from(size));
        metrics::gauge!("linkd_store_pool_connections", "pool" => pool, "state" => "idle")
            .set(idle as f64);
    }
}

/// How often the store gauges are refreshed.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(15);

//! The load generator: C keep-alive HTTP/1.1 connections, each sending one
//! request, waiting for the whole answer, and sending the next (no
//! pipelining), for a warm-up and then a measured window. It writes and
//! reads the bytes itself (see `connection`). Each connection
//! keeps its own histogram and counts, merged at the end, so measuring
//! shares no lock between connections.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::dbstats::{BackendCpu, DbProbe};
use crate::machine;
use crate::seed::DeviceCodes;

/// A device's poll (RFC 8628 §3.4) up to the device code, form-encoded.
pub const POLL_BODY_PREFIX: &str = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code&client_id=bench&device_code=";
/// A device asking for a code (RFC 8628 §3.1).
pub const AUTHORIZE_BODY: &str = "client_id=bench&scope=openid";
/// Latencies are kept in microseconds, up to a minute, to three digits.
const MAX_LATENCY_US: u64 = 60_000_000;

/// What each request asks.
pub enum Workload {
    /// Token requests cycling over these device codes.
    Poll(Arc<DeviceCodes>),
    /// Device authorization requests.
    Authorize,
}

impl Workload {
    fn path(&self) -> &'static str {
        match self {
            Workload::Poll(_) => "/oauth/token",
            Workload::Authorize => "/oauth/device_authorization",
        }
    }

    /// The `n`-th request's body. Polls walk the codes in order through
    /// one counter shared by all connections, so every code is polled
    /// equally often however fast each connection is.
    fn body(&self, counter: &AtomicUsize) -> Bytes {
        match self {
            Workload::Poll(codes) => {
                let index = counter.fetch_add(1, Ordering::Relaxed) % codes.len().max(1);
                let mut body =
                    BytesMut::with_capacity(POLL_BODY_PREFIX.len() + linkd::codes::DEVICE_CODE_LEN);
                body.extend_from_slice(POLL_BODY_PREFIX.as_bytes());
                body.extend_from_slice(codes.bytes(index));
                body.freeze()
            }
            Workload::Authorize => Bytes::from_static(AUTHORIZE_BODY.as_bytes()),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LoadConfig {
    pub connections: usize,
    pub warmup: Duration,
    pub duration: Duration,
}

/// What one measured window saw.
#[derive(Debug)]
pub struct LoadResult {
    /// Answers received within the window.
    pub requests: u64,
    pub window: Duration,
    /// Per-request latency in microseconds.
    pub latency: Histogram<u64>,
    /// Answers by "status error", e.g. "400 authorization_pending".
    pub mix: BTreeMap<String, u64>,
    /// The one answer the workload should get.
    pub expected: &'static str,
    /// Requests that got no answer (connection refused, reset, closed).
    pub transport_errors: u64,
    /// Answers received in all, warm-up and the window's tail included:
    /// what the database's counters over a server's whole run divide by.
    pub answered_in_all: u64,
    /// The server's CPU time (user + system) over the window per answer.
    pub server_cpu_us: Option<f64>,
    /// The load generator's own CPU time per answer.
    pub client_cpu_us: Option<f64>,
    /// The database backends' CPU time per answer (PostgreSQL).
    pub db_cpu_us: Option<f64>,
    /// The share of the machine's cores idle over the window: near zero
    /// when server and generator between them use the machine up.
    pub idle: Option<f64>,
}

impl LoadResult {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.window.as_secs_f64()
    }

    /// The latency at `quantile` (0.5, 0.99, 0.999), in microseconds.
    pub fn latency_us(&self, quantile: f64) -> u64 {
        self.latency.value_at_quantile(quantile)
    }

    /// Whether every request got the expected answer (and there were some).
    pub fn all_expected(&self) -> bool {
        self.transport_errors == 0 && self.mix.len() == 1 && self.mix.contains_key(self.expected)
    }

    /// The share of answers that are `expected`, from 0 to 1.
    pub fn share(&self, expected: &str) -> f64 {
        let total: u64 = self.mix.values().sum::<u64>() + self.transport_errors;
        if total == 0 {
            return 0.0;
        }
        self.mix.get(expected).copied().unwrap_or(0) as f64 / total as f64
    }
}

/// When the measured window opens and closes; connections stop sending at
/// its end.
#[derive(Clone, Copy)]
struct Window {
    from: Instant,
    until: Instant,
}

impl Window {
    /// Only requests sent and answered inside the window count.
    fn counts(&self, sent: Instant, answered: Instant) -> bool {
        sent >= self.from && answered <= self.until
    }
}

/// One connection's tallies.
struct Tally {
    requests: u64,
    answered_in_all: u64,
    latency: Histogram<u64>,
    mix: BTreeMap<String, u64>,
    transport_errors: u64,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Tally {
            requests: 0,
            answered_in_all: 0,
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)
                .context("creating a latency histogram")?,
            mix: BTreeMap::new(),
            transport_errors: 0,
        })
    }
}

/// Runs `workload` against `addr` and measures it; `server_pid` is the
/// process whose CPU time is charged to the requests.
pub async fn run(
    addr: SocketAddr,
    workload: &Arc<Workload>,
    config: &LoadConfig,
    server_pid: u32,
) -> anyhow::Result<LoadResult> {
    run_spread(&[addr], workload, config, &[server_pid], None).await
}

/// Runs `workload` against several servers at once, connection `i` to
/// `addrs[i % addrs.len()]` (as a load balancer spreading connections
/// would), charging the CPU time of every process in `server_pids`, and
/// that of the database's backends when `db` names a PostgreSQL one.
pub async fn run_spread(
    addrs: &[SocketAddr],
    workload: &Arc<Workload>,
    config: &LoadConfig,
    server_pids: &[u32],
    db: Option<&DbProbe>,
) -> anyhow::Result<LoadResult> {
    anyhow::ensure!(!addrs.is_empty(), "no server to put load on");
    let start = Instant::now();
    let window = Window {
        from: start + config.warmup,
        until: start + config.warmup + config.duration,
    };
    let counter = Arc::new(AtomicUsize::new(0));
    // The connections run on GENERATOR_THREADS threads of their own, each
    // one event loop (a current-thread runtime) over its share, as wrk's
    // threads are. On the bench's own work-stealing runtime, workers with
    // nothing to do searched the other's queue before parking: CPU the
    // server on the same two cores did not get, which lowered linkd's
    // rate (slower answers, more searching) more than the bare server's.
    let threads: Vec<_> = (0..GENERATOR_THREADS)
        .map(|t| {
            let share: Vec<SocketAddr> = (t..config.connections)
                .step_by(GENERATOR_THREADS)
                .map(|i| addrs[i % addrs.len()])
                .collect();
            let workload = Arc::clone(workload);
            let counter = Arc::clone(&counter);
            let (done, result) = tokio::sync::oneshot::channel();
            std::thread::Builder::new()
                .name(format!("load-{t}"))
                .spawn(move || {
                    let _ = done.send(generate(&share, &workload, &counter, window));
                })
                .context("starting a load thread")?;
            anyhow::Ok(result)
        })
        .collect::<anyhow::Result<_>>()?;

    // CPU is read at the window's edges, so warm-up work is not charged.
    tokio::time::sleep_until(window.from).await;
    let server_before = machine::cpu_ticks_sum(server_pids);
    let client_before = machine::own_cpu_ticks();
    let idle_before = machine::idle_ticks();
    let backends = match db {
        Some(db) => Some(BackendCpu::start(db).await),
        None => None,
    };
    tokio::time::sleep_until(window.until).await;
    let server_after = machine::cpu_ticks_sum(server_pids);
    let client_after = machine::own_cpu_ticks();
    let idle = machine::idle_share(idle_before, machine::idle_ticks(), config.duration);
    let backends_after = backends.as_ref().map(BackendCpu::stop);

    let mut total = Tally::new()?;
    for thread in threads {
        for tally in thread.await.context("a load thread panicked")?? {
            total.requests += tally.requests;
            total.answered_in_all += tally.answered_in_all;
            total.transport_errors += tally.transport_errors;
            total
                .latency
                .add(&tally.latency)
                .context("merging latency histograms")?;
            for (outcome, n) in tally.mix {
                *total.mix.entry(outcome).or_default() += n;
            }
        }
    }
    let per_request = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(before), Some(after)) if total.requests > 0 => {
            Some(machine::ticks_to_us(after.saturating_sub(before)) / total.requests as f64)
        }
        _ => None,
    };
    Ok(LoadResult {
        db_cpu_us: backends_after
            .flatten()
            .filter(|_| total.requests > 0)
            .map(|us| us / total.requests as f64),
        idle,
        requests: total.requests,
        window: config.duration,
        server_cpu_us: per_request(server_before, server_after),
        client_cpu_us: per_request(client_before, client_after),
        latency: total.latency,
        mix: total.mix,
        expected: expected_outcome(workload),
        transport_errors: total.transport_errors,
        answered_in_all: total.answered_in_all,
    })
}

/// Load threads: as many as wrk's, one per core of the machine the
/// figures come from.
const GENERATOR_THREADS: usize = crate::wrk::THREADS;

/// One load thread: its connections (one per address in `share`) on a
/// runtime of its own, until the window closes.
fn generate(
    share: &[SocketAddr],
    workload: &Arc<Workload>,
    counter: &Arc<AtomicUsize>,
    window: Window,
) -> anyhow::Result<Vec<Tally>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a load thread's runtime")?;
    runtime.block_on(async {
        let mut connections = tokio::task::JoinSet::new();
        for &addr in share {
            let workload = Arc::clone(workload);
            let counter = Arc::clone(counter);
            connections.spawn(async move { connection(addr, &workload, &counter, window).await });
        }
        let mut tallies = Vec::with_capacity(share.len());
        while let Some(joined) = connections.join_next().await {
            tallies.push(joined.context("a load connection panicked")??);
        }
        Ok(tallies)
    })
}

/// One connection's loop until the window closes; reconnects when the
/// server closes or fails a connection, counting the lost request.
///
/// The generator speaks HTTP/1.1 itself over the socket: each request is
/// written whole from bytes made once, and the answer is read into one
/// buffer up to its `content-length`. It shares two cores with the server,
/// and every cycle it spends is one the server does not get: through
/// hyper's client (a connection task beside each sender, woken twice a
/// request) it spent 10-14 µs a request, against wrk's 3-4, and the two
/// generators' views of the same server differed by that (BENCH.md).
async fn connection(
    addr: SocketAddr,
    workload: &Workload,
    counter: &AtomicUsize,
    window: Window,
) -> anyhow::Result<Tally> {
    let mut tally = Tally::new()?;
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: ",
        workload.path()
    );
    let mut request = Vec::with_capacity(head.len() + 256);
    let mut answer = Vec::with_capacity(4096);
    while Instant::now() < window.until {
        let mut stream = match open(addr).await {
            Ok(stream) => stream,
            Err(_) => {
                if window.counts(Instant::now(), Instant::now()) {
                    tally.transport_errors += 1;
                }
                // Do not spin on a server that refuses connections.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        while Instant::now() < window.until {
            let body = workload.body(counter);
            request.clear();
            request.extend_from_slice(head.as_bytes());
            request.extend_from_slice(body.len().to_string().as_bytes());
            request.extend_from_slice(b"\r\n\r\n");
            request.extend_from_slice(&body);
            let sent = Instant::now();
            let exchanged = exchange(&mut stream, &request, &mut answer).await;
            let answered = Instant::now();
            let counts = window.counts(sent, answered);
            match exchanged {
                Ok(Answer {
                    status,
                    body,
                    close,
                }) => {
                    tally.answered_in_all += 1;
                    if counts {
                        tally.requests += 1;
                        let us = answered.duration_since(sent).as_micros() as u64;
                        tally.latency.saturating_record(us.max(1));
                        *tally.mix.entry(outcome(status, &answer[body])).or_default() += 1;
                    }
                    if close {
                        break;
                    }
                }
                Err(_) => {
                    if counts {
                        tally.transport_errors += 1;
                    }
                    break;
                }
            }
        }
    }
    Ok(tally)
}

async fn open(addr: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    // Small requests must leave at once, as a real client's would.
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// One answer: its status, where its body lies in the buffer, and whether
/// the server closes the connection after it.
struct Answer {
    status: u16,
    body: std::ops::Range<usize>,
    close: bool,
}

/// Most bytes of an answer's head.
const MAX_HEAD: usize = 16 * 1024;

/// Writes `request` and reads one answer into `buf`.
async fn exchange(
    stream: &mut tokio::net::TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> std::io::Result<Answer> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request).await?;
    buf.clear();
    let (status, head_len, length, close) = loop {
        if stream.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        if let Some(head) = parse_head(buf)? {
            break head;
        }
        if buf.len() > MAX_HEAD {
            return Err(invalid("an answer's head past 16 KiB"));
        }
    };
    let end = head_len + length;
    while buf.len() < end {
        buf.reserve(end - buf.len());
        if stream.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
    if buf.len() > end {
        // One request at a time: nothing may follow the answer.
        return Err(invalid("bytes after the answer"));
    }
    Ok(Answer {
        status,
        body: head_len..end,
        close,
    })
}

/// The status, head length, `content-length` and whether the connection
/// closes, once the whole head is in `buf`. Answers without a
/// `content-length` (chunked) are refused: linkd and the bare server
/// send none on these paths, and the figures would then be of another.
fn parse_head(buf: &[u8]) -> std::io::Result<Option<(u16, usize, usize, bool)>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let head_len = match response.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid(&e.to_string())),
    };
    let status = response.code.unwrap_or(0);
    let mut length = None;
    let mut close = response.version == Some(0);
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
        } else if header.name.eq_ignore_ascii_case("connection") {
            close = header.value.eq_ignore_ascii_case(b"close");
        }
    }
    let length = length.ok_or_else(|| invalid("an answer without content-length"))?;
    Ok(Some((status, head_len, length, close)))
}

fn invalid(what: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_string())
}

/// "status error" for an OAuth error answer, "status" for anything else.
fn outcome(status: u16, body: &[u8]) -> String {
    match error_value(body) {
        Some(error) => format!("{status} {error}"),
        None => status.to_string(),
    }
}

/// The `error` member of an RFC 6749 §5.2 JSON body, found without a full
/// JSON parse: the load generator shares two cores with the server, and
/// every cycle it spends is one the server does not get.
pub(crate) fn error_value(body: &[u8]) -> Option<&str> {
    const KEY: &[u8] = br#""error":""#;
    let start = body.windows(KEY.len()).position(|w| w == KEY)? + KEY.len();
    let len = body[start..].iter().position(|&b| b == b'"')?;
    std::str::from_utf8(&body[start..start + len]).ok()
}

/// The expected answer of each workload, as counted in `LoadResult::mix`.
pub fn expected_outcome(workload: &Workload) -> &'static str {
    match workload {
        Workload::Poll(_) => "400 authorization_pending",
        Workload::Authorize => "200",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::seed::CLIENT_ID;

    #[test]
    fn error_values_are_read_from_oauth_bodies() {
        assert_eq!(
            error_value(crate::bare::PENDING_BODY.as_bytes()),
            Some("authorization_pending")
        );
        assert_eq!(
            error_value(br#"{"error_description":"x","error":"slow_down"}"#),
            Some("slow_down")
        );
        assert_eq!(error_value(br#"{"device_code":"abc"}"#), None);
        assert_eq!(error_value(br#"{"error":"unterminated"#), None);
        assert_eq!(outcome(200, b"{}"), "200");
        assert_eq!(
            outcome(400, crate::bare::PENDING_BODY.as_bytes()),
            "400 authorization_pending"
        );
    }

    #[test]
    fn polls_walk_every_code_in_turn() {
        let codes = Arc::new(DeviceCodes::generate(3));
        let workload = Workload::Poll(Arc::clone(&codes));
        let counter = AtomicUsize::new(0);
        let bodies: Vec<Bytes> = (0..6).map(|_| workload.body(&counter)).collect();
        for (i, body) in bodies.iter().enumerate() {
            let expected = format!("{POLL_BODY_PREFIX}{}", codes.get(i % 3));
            assert_eq!(body.as_ref(), expected.as_bytes());
        }
        assert!(POLL_BODY_PREFIX.contains(&format!("client_id={CLIENT_ID}&")));
        assert!(AUTHORIZE_BODY.starts_with(&format!("client_id={CLIENT_ID}&")));
    }
}

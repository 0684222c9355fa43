//! Accepting and holding connections so that nobody can hoard them: caps on
//! open connections (server-wide and per network), a TLS handshake
//! timeout, a request-head timeout, an idle keep-alive timeout, and a
//! lingering close so a refused request's answer reaches its client. Plain
//! HTTP and TLS go through the same loop.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::Config;
use crate::limits::network_key;

/// Unread request bytes a closing connection reads and throws away at most
/// (see `Lingering`): more than any body linkd refuses before reading it
/// is likely to have in flight.
const LINGER_BYTES: usize = 1024 * 1024;
/// How long a closing connection waits for the client to stop sending.
const LINGER_TIME: Duration = Duration::from_secs(2);

/// The connection settings of `linkd serve` (README, "Connections").
#[derive(Debug, Clone)]
pub struct Settings {
    /// A request head must be complete this long after the server starts
    /// waiting for it, or after its first byte on a kept-alive connection.
    pub header_read_timeout: Duration,
    /// A kept-alive HTTP/1 connection with no request started is closed
    /// after this long.
    pub idle_timeout: Duration,
    /// A TLS handshake must be done this long after the connection opened.
    pub tls_handshake_timeout: Duration,
    /// Open connections, server-wide (0: no cap).
    pub max_connections: u32,
    /// Open connections from one network, IPv4 address or IPv6 /64 (0: no
    /// cap).
    pub max_connections_per_network: u32,
    /// Peers no per-network cap applies to: the trusted proxies, which
    /// carry everyone's connections.
    pub uncapped: Vec<ipnet::IpNet>,
}

impl Settings {
    pub fn from_config(config: &Config) -> Self {
        Settings {
            header_read_timeout: Duration::from_secs(u64::from(config.header_read_timeout)),
            idle_timeout: Duration::from_secs(u64::from(config.idle_timeout)),
            tls_handshake_timeout: Duration::from_secs(u64::from(config.tls_handshake_timeout)),
            max_connections: config.max_connections,
            max_connections_per_network: config.max_connections_per_network,
            uncapped: config.trusted_proxies.clone(),
        }
    }
}

/// Accepts connections on `listener` (TLS when `tls` is given) and serves
/// `router` on each, until `stop` resolves; then stops accepting, lets
/// connections finish for up to `drain`, and returns.
pub async fn serve(
    listener: TcpListener,
    tls: Option<tokio_rustls::TlsAcceptor>,
    router: Router,
    settings: Settings,
    stop: impl Future<Output = ()>,
    drain: Duration,
) -> io::Result<()> {
    let settings = Arc::new(settings);
    let slots = Arc::new(Slots::new(&settings));
    // Every connection holds a receiver: they hear the stop on it, and the
    // sender sees when the last one is gone.
    let (stopping, stop_rx) = tokio::sync::watch::channel(false);
    tokio::pin!(stop);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        // Refused connections are closed at once: the accept loop does no
        // more than count and spawn, so a flood cannot starve it.
        let Some(slot) = slots.take(peer.ip()) else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let io = Lingering::new(stream, slot);
        let activity = io.activity.clone();
        let stop_rx = stop_rx.clone();
        let router = router.clone();
        let tls = tls.clone();
        let settings = settings.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_one(io, peer, router, &settings, activity, stop_rx).await,
                Some(tls) => {
                    match tokio::time::timeout(settings.tls_handshake_timeout, tls.accept(io)).await
                    {
                        Ok(Ok(io)) => {
                            serve_one(io, peer, router, &settings, activity, stop_rx).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => {
                            metrics::counter!("linkd_connections_timed_out_total", "phase" => "tls_handshake")
                                .increment(1);
                            tracing::debug!(%peer, "TLS handshake timed out");
                        }
                    }
                }
            }
        });
    }
    drop(listener);
    drop(stop_rx);
    // Idle connections close now; requests in flight get `drain` to finish.
    stopping.send_replace(true);
    if tokio::time::timeout(drain, stopping.closed())
        .await
        .is_err()
    {
        tracing::warn!("requests still running after the shutdown timeout were dropped");
    }
    Ok(())
}

/// A failed accept: a connection that went away before it was accepted is
/// nothing; anything else (out of file descriptors, say) is logged, and
/// the loop pauses briefly rather than spin on it.
async fn accept_failed(e: io::Error) {
    use io::ErrorKind::*;
    if matches!(e.kind(), ConnectionAborted | ConnectionReset | Interrupted) {
        return;
    }
    tracing::warn!(error = %e, "accepting a connection failed");
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// Serves HTTP/1.1 or HTTP/2 on one connection, until it ends, its
/// watchdog closes it, or the server stops (then it finishes what is in
/// flight and closes).
async fn serve_one<I>(
    io: I,
    peer: SocketAddr,
    router: Router,
    settings: &Settings,
    activity: Arc<Activity>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // hyper starts its header-read timer whenever it waits for an HTTP/1
    // request head: when the connection opens and again as soon as a
    // response is done, so the idle time between kept-alive requests
    // counts against it. `HeadTimer` splits that wait into its two parts,
    // the idle wait for a first byte and the head itself.
    builder
        .http1()
        .timer(HeadTimer::new(settings, activity))
        .header_read_timeout(settings.header_read_timeout);
    let requests = Arc::new(Requests::default());
    let counted = requests.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<_>| {
        // What `ClientIp` reads, as axum's own server provides it.
        req.extensions_mut().insert(ConnectInfo(peer));
        let busy = counted.start(req.version() == hyper::Version::HTTP_2);
        let answer = tower::ServiceExt::oneshot(router.clone(), req);
        async move {
            let answer = answer.await;
            drop(busy);
            answer
        }
    });
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    let opened = Instant::now();
    let mut closing = false;
    let seen = stop.clone();
    let changed = stop.changed();
    tokio::pin!(changed);
    let mut stopping = Stopping {
        seen: &seen,
        changed: changed.as_mut(),
        waiting: false,
    };
    let result = loop {
        tokio::select! {
            result = conn.as_mut() => break result,
            _ = &mut stopping, if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            close = watchdog(&requests, opened, settings), if !closing => match close {
                Close::Now => {
                    metrics::counter!("linkd_connections_timed_out_total", "phase" => "request_head")
                        .increment(1);
                    tracing::debug!(%peer, "no request within the header-read timeout");
                    break Ok(());
                }
                Close::Gracefully => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            },
        }
    };
    if let Err(e) = result {
        let timed_out = e
            .downcast_ref::<hyper::Error>()
            .is_some_and(hyper::Error::is_timeout);
        if timed_out {
            metrics::counter!("linkd_connections_timed_out_total", "phase" => "request_head")
                .increment(1);
        }
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}

/// The server's stop, as one connection waits for it. The connection's
/// future is polled on every wake-up, several times per request, and so
/// is each branch beside hyper's; waiting on the channel itself would take
/// its waiter list's lock at each of those polls, one lock shared by every
/// connection of the server, which the worker threads then queue on. This
/// registers with the channel once and afterwards only reads its version,
/// which takes no lock; the channel wakes the connection when it moves.
struct Stopping<'a, F> {
    seen: &'a tokio::sync::watch::Receiver<bool>,
    changed: Pin<&'a mut F>,
    /// The channel holds this connection's waker.
    waiting: bool,
}

impl<F> Future for Stopping<'_, F>
where
    F: Future,
{
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // A connection's task keeps its waker for life, so the one the
        // channel holds still wakes this task. A closed channel (the
        // server's loop gone) counts as moved: polling then ends the wait.
        if self.waiting && !self.seen.has_changed().unwrap_or(true) {
            return Poll::Pending;
        }
        match self.changed.as_mut().poll(cx) {
            Poll::Ready(_) => Poll::Ready(()),
            Poll::Pending => {
                self.waiting = true;
                Poll::Pending
            }
        }
    }
}

/// Requests on one connection, for its watchdog.
#[derive(Default)]
struct Requests {
    /// Whether a request ever started (a head was complete).
    started: AtomicBool,
    http2: AtomicBool,
    /// Requests whose handler is still running, and when the last one
    /// ended.
    busy: Mutex<(usize, Option<Instant>)>,
}

/// One running HTTP/2 request; ends when dropped. HTTP/1 requests are
/// not counted: only an HTTP/2 connection's idle time is the watchdog's
/// (every poll is an HTTP/1 request, and this is on its path).
struct Busy(Option<Arc<Requests>>);

impl Requests {
    fn start(self: &Arc<Self>, http2: bool) -> Busy {
        self.started.store(true, Ordering::Relaxed);
        if !http2 {
            return Busy(None);
        }
        self.http2.store(true, Ordering::Relaxed);
        self.busy.lock().unwrap_or_else(|e| e.into_inner()).0 += 1;
        Busy(Some(self.clone()))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        if let Some(requests) = &self.0 {
            let mut busy = requests.busy.lock().unwrap_or_else(|e| e.into_inner());
            busy.0 -= 1;
            busy.1 = Some(Instant::now());
        }
    }
}

enum Close {
    /// Nothing was asked: drop the connection.
    Now,
    /// Idle: finish what runs (an event stream's body), take nothing new.
    Gracefully,
}

/// What hyper's own timer cannot see: a connection that never completes a
/// first request head (hyper's HTTP/1-or-2 detection waits for bytes
/// without a timeout, and HTTP/2 has no head timeout at all) is dropped
/// `header_read_timeout` after it opened; an HTTP/2 connection with no
/// request running for `idle_timeout` is shut down gracefully. Idle
/// HTTP/1 connections are `HeadTimer`'s.
async fn watchdog(requests: &Requests, opened: Instant, settings: &Settings) -> Close {
    loop {
        if !requests.started.load(Ordering::Relaxed) {
            let deadline = opened + settings.header_read_timeout;
            if Instant::now() >= deadline {
                return Close::Now;
            }
            tokio::time::sleep_until(deadline).await;
            continue;
        }
        if !requests.http2.load(Ordering::Relaxed) {
            return std::future::pending().await;
        }
        let (running, last_ended) = *requests.busy.lock().unwrap_or_else(|e| e.into_inner());
        let deadline = match last_ended {
            Some(ended) if running == 0 => ended + settings.idle_timeout,
            _ => Instant::now() + settings.idle_timeout,
        };
        if running == 0 && Instant::now() >= deadline {
            return Close::Gracefully;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// Open connections, counted server-wide and per network.
struct Slots {
    max_total: u32,
    max_per_network: u32,
    uncapped: Vec<ipnet::IpNet>,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    total: u32,
    per_network: HashMap<IpAddr, u32>,
}

/// One open connection's place; given back when dropped.
pub struct Slot {
    slots: Arc<Slots>,
    /// The network counted, if a per-network cap applied.
    network: Option<IpAddr>,
}

impl Slots {
    fn new(settings: &Settings) -> Self {
        Slots {
            max_total: settings.max_connections,
            max_per_network: settings.max_connections_per_network,
            uncapped: settings.uncapped.clone(),
            open: Mutex::new(Open::default()),
        }
    }

    /// A place for a new connection from `peer`, or `None` when a cap is
    /// reached.
    fn take(self: &Arc<Self>, peer: IpAddr) -> Option<Slot> {
        let network = (self.max_per_network > 0
            && !self.uncapped.iter().any(|n| n.contains(&peer)))
        .then(|| network_key(peer));
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if self.max_total > 0 && open.total >= self.max_total {
            drop(open);
            metrics::counter!("linkd_connections_refused_total", "cap" => "server").increment(1);
            return None;
        }
        if let Some(network) = network {
            let count = open.per_network.entry(network).or_insert(0);
            if *count >= self.max_per_network {
                drop(open);
                metrics::counter!("linkd_connections_refused_total", "cap" => "network")
                    .increment(1);
                return None;
            }
            *count += 1;
        }
        open.total += 1;
        metrics::gauge!("linkd_connections_open").set(f64::from(open.total));
        Some(Slot {
            slots: self.clone(),
            network,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total = open.total.saturating_sub(1);
        if let Some(network) = self.network
            && let Some(count) = open.per_network.get_mut(&network)
        {
            *count -= 1;
            if *count == 0 {
                open.per_network.remove(&network);
            }
        }
        metrics::gauge!("linkd_connections_open").set(f64::from(open.total));
    }
}

/// A TCP connection that, when dropped, does not close at once: it sends
/// its FIN, then reads and discards what the client still sends (at most
/// `LINGER_BYTES`, for at most `LINGER_TIME`) before closing. Closing a
/// socket with unread data makes the kernel answer with a reset, and a
/// reset can destroy a response the client has not read yet: the JSON 413
/// for a body linkd refused before reading it would be lost to a device
/// still uploading. The connection keeps its slot while it lingers.
///
/// It also marks when the client sends bytes, for `HeadTimer`.
struct Lingering {
    stream: Option<TcpStream>,
    slot: Option<Slot>,
    activity: Arc<Activity>,
}

/// What the connection's I/O tells its timer.
#[derive(Default)]
struct Activity {
    /// The client sent bytes since the timer last cleared this.
    received: AtomicBool,
}

impl Lingering {
    fn new(stream: TcpStream, slot: Slot) -> Self {
        Lingering {
            stream: Some(stream),
            slot: Some(slot),
            activity: Arc::default(),
        }
    }

    fn stream(&mut self) -> io::Result<&mut TcpStream> {
        self.stream
            .as_mut()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let (Some(stream), slot) = (self.stream.take(), self.slot.take()) else {
            return;
        };
        // Outside a runtime (a test dropping it late) it just closes.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(linger(stream, slot));
        }
    }
}

async fn linger(mut stream: TcpStream, slot: Option<Slot>) {
    use tokio::io::AsyncWriteExt;
    let _slot = slot;
    // Our side is done: the FIN tells the client, and a client that reads
    // the response closes its side, which ends the wait below at once.
    let _ = stream.shutdown().await;
    let mut buf = vec![0u8; 16 * 1024];
    let mut discarded = 0;
    let _ = tokio::time::timeout(LINGER_TIME, async {
        while discarded < LINGER_BYTES {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => discarded += n,
            }
        }
    })
    .await;
}

impl AsyncRead for Lingering {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        let polled = Pin::new(this.stream()?).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.received.store(true, Ordering::Relaxed);
        }
        polled
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.stream()?).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(self.stream()?).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream
            .as_ref()
            .is_some_and(AsyncWrite::is_write_vectored)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()?).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(self.stream()?).poll_shutdown(cx)
    }
}

/// hyper's header-read timer for one connection, split in two. hyper asks
/// for one sleep each time it starts waiting for a request head: when the
/// connection opens (the head timeout applies from then on) and after each
/// response (the connection is idle: the idle timeout applies until the
/// client sends its first byte, then the head timeout from that byte).
///
/// Every sleep it hands out shares the connection's one tokio timer. A
/// tokio timer of its own per head wait was registered with the runtime's
/// timer wheel when hyper first polled it and removed when the head came,
/// two trips through the wheel's lock for every kept-alive request; the
/// shared one is only pushed later on each request, which tokio does with
/// one atomic update and no lock (the wheel finds the later deadline when
/// the old one comes round and files it again).
struct HeadTimer {
    header_read: Duration,
    idle: Duration,
    activity: Arc<Activity>,
    /// Whether hyper already waited for a head on this connection.
    kept_alive: AtomicBool,
    clock: Arc<SharedSleep>,
}

/// The connection's one tokio timer. Only the connection's own task polls
/// it; the lock is never contended and only there because hyper's timers
/// must be `Sync`.
type SharedSleep = Mutex<Pin<Box<tokio::time::Sleep>>>;

impl HeadTimer {
    fn new(settings: &Settings, activity: Arc<Activity>) -> Self {
        let now = Instant::now();
        HeadTimer {
            header_read: settings.header_read_timeout,
            idle: settings.idle_timeout,
            activity,
            kept_alive: AtomicBool::new(false),
            // Created unarmed: tokio registers it on its first poll.
            clock: Arc::new(Mutex::new(Box::pin(tokio::time::sleep_until(
                now + settings.header_read_timeout,
            )))),
        }
    }
}

impl hyper::rt::Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        // Not used for the head wait; a plain timer of its own.
        Box::pin(PlainSleep(Box::pin(tokio::time::sleep(duration))))
    }

    fn sleep_until(&self, _deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        // hyper uses this timer only for the head wait (see `serve_one`),
        // and asks with `now + header_read`; the deadline is ours to pick.
        let now = Instant::now();
        let (deadline, waiting_for_first_byte) = if self.kept_alive.swap(true, Ordering::Relaxed) {
            self.activity.received.store(false, Ordering::Relaxed);
            (
                now + self.idle,
                Some((self.activity.clone(), self.header_read)),
            )
        } else {
            (now + self.header_read, None)
        };
        Box::pin(HeadSleep {
            deadline,
            waiting_for_first_byte,
            clock: self.clock.clone(),
        })
    }
}

/// A sleep for anything but the head wait.
struct PlainSleep(Pin<Box<tokio::time::Sleep>>);

impl hyper::rt::Sleep for PlainSleep {}

impl Future for PlainSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.0.as_mut().poll(cx)
    }
}

/// One head wait: fires at its deadline; while idle, the first byte the
/// client sends moves the deadline to that moment plus the head timeout.
struct HeadSleep {
    deadline: Instant,
    waiting_for_first_byte: Option<(Arc<Activity>, Duration)>,
    clock: Arc<SharedSleep>,
}

impl hyper::rt::Sleep for HeadSleep {}

impl Future for HeadSleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // hyper polls this after every read that left the head incomplete,
        // so a first byte is seen here as soon as it arrives.
        if let Some((activity, header_read)) = &self.waiting_for_first_byte
            && activity.received.load(Ordering::Relaxed)
        {
            self.deadline = Instant::now() + *header_read;
            self.waiting_for_first_byte = None;
        }
        if Instant::now() >= self.deadline {
            return Poll::Ready(());
        }
        let mut clock = self.clock.lock().unwrap_or_else(|e| e.into_inner());
        // Usually later than the last head wait's: an atomic update. An
        // earlier one (a first byte after an idle wait) files it again.
        if clock.deadline() != self.deadline {
            clock.as_mut().reset(self.deadline);
        }
        clock.as_mut().poll(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots(per_network: u32, total: u32, uncapped: &[&str]) -> Arc<Slots> {
        Arc::new(Slots::new(&Settings {
            header_read_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(1),
            tls_handshake_timeout: Duration::from_secs(1),
            max_connections: total,
            max_connections_per_network: per_network,
            uncapped: uncapped.iter().map(|n| n.parse().unwrap()).collect(),
        }))
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn an_ipv6_64_is_one_network_and_proxies_are_exempt() {
        let slots = slots(2, 6, &["10.0.0.0/8"]);
        let a = slots.take(ip("2001:db8::1")).unwrap();
        let _b = slots.take(ip("2001:db8::ffff:2")).unwrap();
        // A third address in the same /64 is the same network.
        assert!(slots.take(ip("2001:db8::3")).is_none());
        // The next /64 is another network.
        let _c = slots.take(ip("2001:db8:0:1::1")).unwrap();
        // A trusted proxy carries everyone: only the server-wide cap holds.
        let proxy: Vec<_> = (0..3)
            .map(|_| slots.take(ip("10.1.2.3")).unwrap())
            .collect();
        assert!(
            slots.take(ip("192.0.2.1")).is_none(),
            "server-wide cap of 6"
        );
        drop(a);
        let _d = slots.take(ip("2001:db8::4")).unwrap();
        drop(proxy);
        assert_eq!(slots.open.lock().unwrap().total, 3);
        let unlimited = self::slots(0, 0, &[]);
        let held: Vec<_> = (0..1000)
            .map(|_| unlimited.take(ip("192.0.2.1")).unwrap())
            .collect();
        assert_eq!(unlimited.open.lock().unwrap().total, 1000);
        drop(held);
        assert!(unlimited.open.lock().unwrap().per_network.is_empty());
    }
}

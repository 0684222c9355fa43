//! Connections that cannot be hoarded (connections.rs): half-sent request
//! heads and idle keep-alive connections are closed by their timeouts,
//! under plain HTTP and TLS; the caps on open connections per network and
//! server-wide; a refused upload's 413 reaching its client. Clients bind
//! to addresses in 127.0.0.0/8 so each test speaks from its own networks.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::helpers::*;

/// A TCP connection to `server` from `source` (an address in 127.0.0.0/8).
pub async fn connect_from(source: [u8; 4], server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::from((source, 0)))
        .expect("bind the source address");
    socket.connect(server).await.expect("connect")
}

/// Reads until the server closes the connection; `None` if it is still
/// open after `wait`. What was read, when it closed.
pub async fn read_until_closed<S: AsyncRead + Unpin>(
    stream: &mut S,
    wait: Duration,
) -> Option<(Vec<u8>, Instant)> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some((seen, Instant::now())),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// Sends one whole keep-alive request for /healthz and reads its answer.
async fn healthz_on<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S) -> String {
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: linkd\r\n\r\n")
        .await
        .expect("write");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !seen.ends_with(b"\r\n\r\nok") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .unwrap_or(0);
        if n == 0 {
            break;
        }
        seen.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&seen).into_owned()
}

const METRICS_TOKEN: &str = "connections-test-metrics-token";

/// What a client that stops halfway through its request head sends.
const HALF_A_HEAD: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: linkd\r\nX-Waiting: ";

// Each connection hands back its watcher, awaited after the probe.
#[allow(clippy::async_yields_async)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_half_sent_heads_are_closed_by_the_timeout_while_others_are_served() {
    let app = spawn_app_with(with(|c| {
        c.header_read_timeout = 2;
        c.max_connections_per_network = 0;
    }))
    .await;
    let server = app.state.config.listen;
    // 3,000 connections from one address, each stopping halfway through
    // its head, each watched for the moment the server closes it.
    let watchers: Vec<_> = futures::stream::iter(0..3000)
        .map(|_| async move {
            // The server's timer starts when it accepts, which cannot be
            // before the connect began; on a loaded machine the write may
            // come long after.
            let opened = Instant::now();
            let mut stream = connect_from([127, 0, 0, 2], server).await;
            stream.write_all(HALF_A_HEAD).await.expect("write");
            tokio::spawn(async move {
                let closed = read_until_closed(&mut stream, Duration::from_secs(30)).await;
                closed.map(|(bytes, at)| (bytes, at - opened))
            })
        })
        .buffer_unordered(200)
        .collect()
        .await;

    // 300 more never send a byte, and 100 send only the HTTP/2 preface:
    // hyper has no timer for either, the connection's watchdog closes them.
    let mut silent = Vec::new();
    for i in 0..400 {
        let opened = Instant::now();
        let mut stream = connect_from([127, 0, 0, 4], server).await;
        if i % 4 == 0 {
            stream
                .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                .await
                .unwrap();
        }
        silent.push(tokio::spawn(async move {
            let closed = read_until_closed(&mut stream, Duration::from_secs(30)).await;
            closed.map(|(_, at)| at - opened)
        }));
    }

    // Someone else is served meanwhile.
    let started = Instant::now();
    let mut probe = connect_from([127, 0, 0, 3], server).await;
    let answer = healthz_on(&mut probe).await;
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(2));

    let mut closed_after = Vec::new();
    for watcher in watchers {
        let (bytes, after) = watcher
            .await
            .unwrap()
            .expect("a half-sent head is closed by the server");
        assert!(bytes.is_empty(), "{}", String::from_utf8_lossy(&bytes));
        closed_after.push(after);
    }
    for watcher in silent {
        let after = watcher
            .await
            .unwrap()
            .expect("a connection that sends no request is closed");
        assert!(
            after >= Duration::from_millis(1900) && after < Duration::from_secs(12),
            "{after:?}"
        );
    }
    closed_after.sort();
    assert_eq!(closed_after.len(), 3000);
    // Closed by the 2 s head timeout: none before it, all soon after.
    assert!(
        closed_after[0] >= Duration::from_millis(1900),
        "{closed_after:?}"
    );
    assert!(
        closed_after[2999] < Duration::from_secs(12),
        "{closed_after:?}"
    );
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_when_idle_and_its_next_head_is_timed_from_its_first_byte()
 {
    // Idle shorter than the head timeout: an idle connection goes after
    // 1 s, but a request begun before then has the full 3 s for its head.
    let short_idle = spawn_app_with(with(|c| {
        c.idle_timeout = 1;
        c.header_read_timeout = 3;
    }))
    .await;
    let server = short_idle.state.config.listen;
    let mut idle = connect_from([127, 0, 0, 10], server).await;
    assert!(healthz_on(&mut idle).await.starts_with("HTTP/1.1 200"));
    let answered = Instant::now();
    let (_, closed) = read_until_closed(&mut idle, Duration::from_secs(10))
        .await
        .expect("an idle kept-alive connection is closed");
    let idle_for = closed - answered;
    assert!(
        idle_for >= Duration::from_millis(900) && idle_for < Duration::from_millis(2500),
        "{idle_for:?}"
    );

    let mut slow = connect_from([127, 0, 0, 10], server).await;
    assert!(healthz_on(&mut slow).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    slow.write_all(b"GET /hea").await.unwrap();
    // Past the idle timeout, within the head timeout: still open.
    assert!(
        read_until_closed(&mut slow, Duration::from_millis(1500))
            .await
            .is_none()
    );
    slow.write_all(b"lthz HTTP/1.1\r\nHost: linkd\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let (answer, _) = read_until_closed(&mut slow, Duration::from_secs(5))
        .await
        .expect("answered and closed");
    assert!(answer.starts_with(b"HTTP/1.1 200"));

    // Idle longer than the head timeout: waiting between requests does
    // not count against the head.
    let long_idle = spawn_app_with(with(|c| {
        c.idle_timeout = 4;
        c.header_read_timeout = 1;
    }))
    .await;
    let mut patient = connect_from([127, 0, 0, 10], long_idle.state.config.listen).await;
    assert!(healthz_on(&mut patient).await.starts_with("HTTP/1.1 200"));
    tokio::time::sleep(Duration::from_millis(1800)).await;
    assert!(healthz_on(&mut patient).await.starts_with("HTTP/1.1 200"));
    // ...but once begun, a head must be done within the head timeout.
    patient.write_all(HALF_A_HEAD).await.unwrap();
    let sent = Instant::now();
    let (_, closed) = read_until_closed(&mut patient, Duration::from_secs(10))
        .await
        .expect("a half-sent head is closed");
    assert!(
        closed - sent < Duration::from_millis(2500),
        "{:?}",
        closed - sent
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_capped_per_network_and_server_wide() {
    let app = spawn_app_with(with(|c| {
        c.max_connections_per_network = 20;
        c.max_connections = 30;
        c.metrics_token = Some(METRICS_TOKEN.into());
    }))
    .await;
    let server = app.state.config.listen;
    let mut first = Vec::new();
    for _ in 0..20 {
        let mut stream = connect_from([127, 0, 0, 20], server).await;
        assert!(healthz_on(&mut stream).await.starts_with("HTTP/1.1 200"));
        first.push(stream);
    }
    // The 21st from that network is closed unanswered...
    let mut over = connect_from([127, 0, 0, 20], server).await;
    let _ = over
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: linkd\r\n\r\n")
        .await;
    let (bytes, _) = read_until_closed(&mut over, Duration::from_secs(5))
        .await
        .expect("an over-cap connection is closed at once");
    assert!(bytes.is_empty(), "{}", String::from_utf8_lossy(&bytes));
    // ...while another network is served, up to the server-wide cap.
    let mut second = Vec::new();
    for _ in 0..10 {
        let mut stream = connect_from([127, 0, 0, 21], server).await;
        assert!(healthz_on(&mut stream).await.starts_with("HTTP/1.1 200"));
        second.push(stream);
    }
    let mut full = connect_from([127, 0, 0, 22], server).await;
    let _ = full
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: linkd\r\n\r\n")
        .await;
    let (bytes, _) = read_until_closed(&mut full, Duration::from_secs(5))
        .await
        .expect("a connection over the server-wide cap is closed at once");
    assert!(bytes.is_empty());

    // A closed connection gives its place back.
    drop(first.pop());
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut again = connect_from([127, 0, 0, 20], server).await;
        let answer = healthz_on(&mut again).await;
        if answer.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "the place was never given back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    drop(first);
    drop(second);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let metrics = app
        .http
        .get(app.url("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    let text = metrics.text().await.unwrap();
    for line in [
        "linkd_connections_refused_total{cap=\"network\"}",
        "linkd_connections_refused_total{cap=\"server\"}",
        "linkd_connections_open",
    ] {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}

/// A server terminating TLS itself, and a client that trusts it.
struct TlsApp {
    server: SocketAddr,
    connector: tokio_rustls::TlsConnector,
    http: reqwest::Client,
    base: String,
    _dir: tempfile::TempDir,
    _db: Arc<TestDatabase>,
}

async fn spawn_tls(configure: impl FnOnce(&mut linkd::Config)) -> TlsApp {
    let dir = tempfile::tempdir().unwrap();
    let (cert, cert_path, key_path) = self_signed_cert(dir.path());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let server = listener.local_addr().unwrap();
    let db = TestDatabase::new().await;
    let mut config = linkd::Config::defaults();
    config.listen = server;
    config.public_url = Some(format!("https://localhost:{}", server.port()));
    config.database_url = db.url().to_string();
    config.tls_cert = Some(cert_path.clone());
    config.tls_key = Some(key_path.clone());
    configure(&mut config);
    linkd::telemetry::handle();
    serve_tls(listener, config).await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.der().clone()).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem().as_bytes()).unwrap())
        .resolve("localhost", server)
        .local_address(std::net::IpAddr::from([127, 0, 0, 33]))
        .build()
        .unwrap();
    TlsApp {
        server,
        connector: tokio_rustls::TlsConnector::from(Arc::new(client)),
        http,
        base: format!("https://localhost:{}", server.port()),
        _dir: dir,
        _db: db,
    }
}

// Each connection hands back its watcher, awaited after the probe.
#[allow(clippy::async_yields_async)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_tls_silent_handshakes_and_half_sent_heads_are_closed_too() {
    let app = spawn_tls(|c| {
        c.header_read_timeout = 2;
        c.tls_handshake_timeout = 1;
        c.max_connections_per_network = 0;
    })
    .await;
    let server = app.server;
    let connector = app.connector.clone();
    // 300 connections finish the handshake and stop halfway through a head.
    let half_sent: Vec<_> = futures::stream::iter(0..300)
        .map(|_| {
            let connector = connector.clone();
            async move {
                // Measured from before the connect: the server's timers
                // cannot start earlier, whatever the load.
                let opened = Instant::now();
                let tcp = connect_from([127, 0, 0, 30], server).await;
                let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
                let mut tls = connector.connect(name, tcp).await.expect("handshake");
                tls.write_all(HALF_A_HEAD).await.unwrap();
                tls.flush().await.unwrap();
                tokio::spawn(async move {
                    let closed = read_until_closed(&mut tls, Duration::from_secs(30)).await;
                    closed.map(|(_, at)| at - opened)
                })
            }
        })
        .buffer_unordered(50)
        .collect()
        .await;
    // 200 more never start their handshake.
    let mut silent = Vec::new();
    for _ in 0..200 {
        let opened = Instant::now();
        let mut tcp = connect_from([127, 0, 0, 31], server).await;
        silent.push(tokio::spawn(async move {
            let closed = read_until_closed(&mut tcp, Duration::from_secs(30)).await;
            closed.map(|(_, at)| at - opened)
        }));
    }

    let health = app
        .http
        .get(format!("{}/healthz", app.base))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), reqwest::StatusCode::OK);

    for watcher in half_sent {
        let after = watcher.await.unwrap().expect("a half-sent head is closed");
        assert!(
            after >= Duration::from_millis(1900) && after < Duration::from_secs(12),
            "{after:?}"
        );
    }
    for watcher in silent {
        let after = watcher
            .await
            .unwrap()
            .expect("a silent handshake is closed");
        assert!(
            after >= Duration::from_millis(900) && after < Duration::from_secs(10),
            "{after:?}"
        );
    }
}

#[tokio::test]
async fn a_device_uploading_too_much_gets_the_json_413_not_a_reset() {
    let app = spawn_app().await;
    let (_, tokens) = app
        .link_device("upload@example.com", "openid offline_access sync")
        .await;
    let token = tokens["access_token"].as_str().unwrap();
    // Half a megabyte against the 64 KiB document limit, refused on its
    // declared length before a byte of it is read.
    let body = format!("{{\"blob\":\"{}\"}}", "x".repeat(512 * 1024));
    for _ in 0..3 {
        let response = app
            .http
            .put(app.url("/api/v1/sync/prefs/big"))
            .bearer_auth(token)
            .header("if-none-match", "*")
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("the answer arrives, not a reset");
        assert_eq!(response.status(), reqwest::StatusCode::PAYLOAD_TOO_LARGE);
        let json: serde_json::Value = response.json().await.unwrap();
        assert_eq!(json["error"], "document_too_large");
    }

    // The same by hand, with the answer crossing the body in flight: the
    // client reads the answer after its first 16 KiB, then sends the rest.
    // The server must read and discard what still comes rather than close
    // with unread data: that close is a reset, which fails the client's
    // writes and, over a real network, destroys an answer still in flight.
    let mut stream = connect_from([127, 0, 0, 40], app.state.config.listen).await;
    let head = format!(
        "PUT /api/v1/sync/prefs/big HTTP/1.1\r\nHost: linkd\r\nAuthorization: Bearer {token}\r\n\
         If-None-Match: *\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let (first, rest) = body.as_bytes().split_at(16 * 1024);
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(first).await.unwrap();
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.ends_with(b"}") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("answered within 10 s")
            .expect("answered");
        assert!(n > 0, "closed before the answer");
        answer.extend_from_slice(&buf[..n]);
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(
        answer.contains("\"error\":\"document_too_large\""),
        "{answer}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    for chunk in rest.chunks(16 * 1024) {
        stream
            .write_all(chunk)
            .await
            .expect("the server takes the rest of the upload, no reset");
    }
    let mut tail = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut tail))
        .await
        .expect("the server closes after answering")
        .expect("a clean close, not a reset");
    assert!(tail.is_empty());
}

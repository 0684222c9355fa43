//! The soak's attackers (issue 18's attack mix): wrong passwords for the
//! owner's email and for unknown ones, wrong user codes from signed-in
//! attacker sessions, device-authorization floods, token polls far faster
//! than the interval, oversized bodies, and half-open connections held
//! until the server closes them. Every attacker sends from a loopback
//! address of its own (127.0.0.2 to 127.0.0.60), as many networks would,
//! and records what the server answered; none of them fails on a refusal.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::approve::hidden_field;
use crate::load::{POLL_BODY_PREFIX, error_value};
use crate::seed::{CLIENT_ID, user_code_for};
use crate::soak::Counts;

/// Source addresses of the attackers: 127.0.0.2 to 127.0.0.60.
const FIRST_ATTACKER: u8 = 2;
const ATTACKER_ADDRESSES: usize = 59;
/// Workers per kind of attack. Each sends its next request as soon as the
/// last is answered; on two shared cores more would only measure the
/// load generator.
const SIGN_IN_OWNER_WORKERS: usize = 4;
const SIGN_IN_UNKNOWN_WORKERS: usize = 4;
pub const CODE_GUESS_WORKERS: usize = 8;
const DEVICE_FLOOD_WORKERS: usize = 4;
const FAST_POLL_WORKERS: usize = 4;
const OVERSIZED_WORKERS: usize = 2;
/// No worker sends more than this, whatever the duration: the run is
/// bounded in count as well as in time.
const MAX_REQUESTS_PER_WORKER: u64 = 200_000;
/// An answer slower than this counts as a timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The body an oversized request carries: far above any form linkd reads.
const OVERSIZED_BYTES: usize = 4 << 20;
/// linkd's session cookie over plain http, as the bench serves it (over
/// https it carries the `__Host-` prefix).
pub(crate) const SESSION_COOKIE: &str = "linkd_session";
/// Half a request header: the line and one header, never the blank line
/// that ends the header block.
const HALF_HEADER: &[u8] = b"GET /healthz HTTP/1.1\r\nHost: linkd\r\nX-Soak: ";

/// The `i`-th attacker address, cycling over 127.0.0.2..=127.0.0.60.
pub fn attacker_ip(i: usize) -> IpAddr {
    let last = FIRST_ATTACKER + (i % ATTACKER_ADDRESSES) as u8;
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, last))
}

/// The kinds of attack, as named in the report.
pub const KINDS: &[&str] = &[
    "sign-in owner",
    "sign-in unknown",
    "code guess",
    "device flood",
    "fast poll",
    "oversized",
];

/// The half-open connections' state, read by the sampler.
#[derive(Debug, Default)]
pub struct HalfOpen {
    /// Connections currently held open.
    pub open: AtomicI64,
    /// Connections the server has closed (or answered and closed).
    pub closed_by_server: AtomicU64,
    /// Connection attempts that failed (refused, timed out).
    pub connect_failed: AtomicU64,
}

/// Where the attack goes and what it has.
pub struct Attack {
    pub addr: SocketAddr,
    pub owner_email: String,
    /// Session cookie values of signed-in attacker accounts.
    pub sessions: Vec<String>,
    pub half_open: usize,
    pub deadline: Instant,
}

/// Starts every attacker; they stop at `deadline` (or when the set is
/// aborted).
pub fn start(
    attack: Arc<Attack>,
    counts: Arc<Counts>,
    half_open: Arc<HalfOpen>,
) -> anyhow::Result<JoinSet<()>> {
    let mut set = JoinSet::new();
    let mut source = 0;
    let mut next_source = || {
        source += 1;
        attacker_ip(source - 1)
    };
    for w in 0..SIGN_IN_OWNER_WORKERS {
        let http = client(next_source(), true)?;
        let (attack, counts) = (Arc::clone(&attack), Arc::clone(&counts));
        set.spawn(async move {
            let email = attack.owner_email.clone();
            sign_in_guesser(
                &http,
                &attack,
                &counts,
                "sign-in owner",
                |_| email.clone(),
                w,
            )
            .await;
        });
    }
    for w in 0..SIGN_IN_UNKNOWN_WORKERS {
        let http = client(next_source(), true)?;
        let (attack, counts) = (Arc::clone(&attack), Arc::clone(&counts));
        set.spawn(async move {
            let email = |n: u64| format!("nobody-{w}-{n}@example.com");
            sign_in_guesser(&http, &attack, &counts, "sign-in unknown", email, w).await;
        });
    }
    for (w, session) in attack.sessions.iter().enumerate() {
        let http = client(next_source(), false)?;
        let session = session.clone();
        let (attack, counts) = (Arc::clone(&attack), Arc::clone(&counts));
        set.spawn(async move { code_guesser(&http, &attack, &counts, &session, w).await });
    }
    for _ in 0..DEVICE_FLOOD_WORKERS {
        let http = client(next_source(), false)?;
        let (attack, counts) = (Arc::clone(&attack), Arc::clone(&counts));
        set.spawn(async move { device_flood(&http, &attack, &counts).await });
    }
    for _ in 0..FAST_POLL_WORKERS {
        let http = client(next_source(), false)?;
        let (attack, counts) = (Arc::clone(&attack), Arc::clone(&counts));
        set.spawn(async move { fast_poller(&http, &attack, &counts).await });
    }
    for _ in 0..OVERSIZED_WORKERS {
        let http = client(next_source(), false)?;
        let (attack, counts) = (Arc::clone(&attack), Arc::clone(&counts));
        set.spawn(async move { oversized(&http, &attack, &counts).await });
    }
    for i in 0..attack.half_open {
        let (attack, half_open) = (Arc::clone(&attack), Arc::clone(&half_open));
        set.spawn(async move { hold_half_open(&attack, &half_open, i).await });
    }
    Ok(set)
}

/// An attacker's HTTP client, sending from `source`. Redirects are not
/// followed: a 303 after a sign-in is itself the answer to count.
fn client(source: IpAddr, cookies: bool) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .local_address(source)
        .cookie_store(cookies)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(REQUEST_TIMEOUT)
        .build()
        .context("building an attacker's client")
}

/// "429", "503", "reset", "timeout": what came back, for the answer mix.
pub fn outcome(answer: &Result<reqwest::Response, reqwest::Error>) -> String {
    match answer {
        Ok(response) => response.status().as_u16().to_string(),
        Err(e) if e.is_timeout() => "timeout".into(),
        Err(_) => "reset".into(),
    }
}

/// Records an answer (reading its body, so the connection can be reused)
/// and pauses briefly after a failed connection instead of spinning.
async fn record(
    counts: &Counts,
    kind: &'static str,
    answer: Result<reqwest::Response, reqwest::Error>,
) -> Option<bytes::Bytes> {
    counts.add(kind, outcome(&answer));
    match answer {
        Ok(response) => response.bytes().await.ok(),
        Err(_) => {
            tokio::time::sleep(Duration::from_millis(50)).await;
            None
        }
    }
}

fn base(attack: &Attack) -> String {
    format!("http://{}", attack.addr)
}

/// Wrong passwords, as fast as answered. The CSRF token comes from the
/// sign-in page, as a browser's would, and is fetched again if refused.
async fn sign_in_guesser(
    http: &reqwest::Client,
    attack: &Attack,
    counts: &Counts,
    kind: &'static str,
    email: impl Fn(u64) -> String,
    worker: usize,
) {
    let base = base(attack);
    let mut csrf = None;
    for n in 0..MAX_REQUESTS_PER_WORKER {
        if Instant::now() >= attack.deadline {
            return;
        }
        let Some(token) = &csrf else {
            csrf = csrf_token(http, &base).await;
            if csrf.is_none() {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            continue;
        };
        let password = format!("not the password {worker}-{n}");
        let answer = http
            .post(format!("{base}/signin"))
            .form(&[
                ("csrf", token.as_str()),
                ("next", "/"),
                ("email", email(n).as_str()),
                ("password", password.as_str()),
            ])
            .send()
            .await;
        if answer.as_ref().is_ok_and(|r| r.status() == 403) {
            csrf = None;
        }
        record(counts, kind, answer).await;
    }
}

/// The CSRF token of the sign-in form (its cookie stays in the jar).
pub async fn csrf_token(http: &reqwest::Client, base: &str) -> Option<String> {
    let page = http
        .get(format!("{base}/signin"))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    hidden_field(&page, "csrf")
}

/// Wrong user codes from a signed-in attacker session (RFC 8628 §5.1's
/// brute force). The codes are taken far above the seeded ones, so none
/// is a live code of the run.
async fn code_guesser(
    http: &reqwest::Client,
    attack: &Attack,
    counts: &Counts,
    session: &str,
    worker: usize,
) {
    let base = base(attack);
    let cookie = format!("{SESSION_COOKIE}={session}");
    let first = 20u64.pow(8) / 2 + worker as u64 * MAX_REQUESTS_PER_WORKER;
    for n in 0..MAX_REQUESTS_PER_WORKER {
        if Instant::now() >= attack.deadline {
            return;
        }
        let answer = http
            .get(format!("{base}/link"))
            .query(&[("code", user_code_for(first + n))])
            .header(reqwest::header::COOKIE, &cookie)
            .send()
            .await;
        record(counts, "code guess", answer).await;
    }
}

/// New device authorizations as fast as answered.
async fn device_flood(http: &reqwest::Client, attack: &Attack, counts: &Counts) {
    let url = format!("{}/oauth/device_authorization", base(attack));
    for _ in 0..MAX_REQUESTS_PER_WORKER {
        if Instant::now() >= attack.deadline {
            return;
        }
        let answer = http
            .post(&url)
            .form(&[("client_id", CLIENT_ID), ("scope", "openid")])
            .send()
            .await;
        record(counts, "device flood", answer).await;
    }
}

/// Asks for a device code of its own, then polls it without waiting the
/// interval (RFC 8628 §3.5 asks for slow_down). Polls an invalid code if
/// no code could be had.
async fn fast_poller(http: &reqwest::Client, attack: &Attack, counts: &Counts) {
    let base = base(attack);
    let device_code = async {
        let answer = http
            .post(format!("{base}/oauth/device_authorization"))
            .form(&[("client_id", CLIENT_ID), ("scope", "openid")])
            .send()
            .await
            .ok()?;
        let body: serde_json::Value = answer.json().await.ok()?;
        Some(body["device_code"].as_str()?.to_string())
    }
    .await
    .unwrap_or_else(|| "no-such-device-code".into());
    let body = format!("{POLL_BODY_PREFIX}{device_code}");
    for _ in 0..MAX_REQUESTS_PER_WORKER {
        if Instant::now() >= attack.deadline {
            return;
        }
        let answer = post_form(http, &format!("{base}/oauth/token"), body.clone()).await;
        let failed = answer.is_err();
        counts.add("fast poll", token_outcome(answer).await);
        if failed {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Sends a form body that is already encoded.
pub async fn post_form(
    http: &reqwest::Client,
    url: &str,
    body: impl Into<reqwest::Body>,
) -> Result<reqwest::Response, reqwest::Error> {
    http.post(url)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .send()
        .await
}

/// A token endpoint's answer as "400 slow_down": the OAuth error (RFC 6749
/// §5.2) says whether the server asked a device to slow down.
pub async fn token_outcome(answer: Result<reqwest::Response, reqwest::Error>) -> String {
    let status = outcome(&answer);
    let Ok(response) = answer else {
        return status;
    };
    let body = response.bytes().await.unwrap_or_default();
    match error_value(&body) {
        Some(error) => format!("{status} {error}"),
        None => status,
    }
}

/// Device authorization requests with a body of several MiB.
async fn oversized(http: &reqwest::Client, attack: &Attack, counts: &Counts) {
    let url = format!("{}/oauth/device_authorization", base(attack));
    let mut body = format!("client_id={CLIENT_ID}&scope=openid&padding=").into_bytes();
    body.resize(OVERSIZED_BYTES, b'a');
    let body = bytes::Bytes::from(body);
    for _ in 0..MAX_REQUESTS_PER_WORKER {
        if Instant::now() >= attack.deadline {
            return;
        }
        let answer = post_form(http, &url, body.clone()).await;
        record(counts, "oversized", answer).await;
    }
}

/// One half-open connection, re-opened each time the server closes it:
/// connect from an attacker address, send half a header, then read until
/// the server gives up on it.
async fn hold_half_open(attack: &Attack, state: &HalfOpen, i: usize) {
    // Spread the first connects over a second rather than all at once.
    tokio::time::sleep(Duration::from_micros((i as u64 * 997) % 1_000_000)).await;
    let source = SocketAddr::new(attacker_ip(i), 0);
    while Instant::now() < attack.deadline {
        let stream = async {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.bind(source)?;
            let mut stream = socket.connect(attack.addr).await?;
            stream.write_all(HALF_HEADER).await?;
            std::io::Result::Ok(stream)
        };
        let mut stream = match tokio::time::timeout(REQUEST_TIMEOUT, stream).await {
            Ok(Ok(stream)) => stream,
            _ => {
                state.connect_failed.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        state.open.fetch_add(1, Ordering::Relaxed);
        // Whatever the server sends (a 408, say) is read and dropped; the
        // connection counts as closed when the server ends it.
        let mut buffer = [0u8; 1024];
        let closed = loop {
            match tokio::time::timeout_at(attack.deadline, stream.read(&mut buffer)).await {
                Ok(Ok(0)) | Ok(Err(_)) => break true,
                Ok(Ok(_)) => continue,
                Err(_) => break false,
            }
        };
        state.open.fetch_sub(1, Ordering::Relaxed);
        if closed {
            state.closed_by_server.fetch_add(1, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attackers_stay_on_their_loopback_addresses() {
        assert_eq!(attacker_ip(0), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(attacker_ip(58), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 60)));
        assert_eq!(attacker_ip(59), IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
        for i in 0..1000 {
            let IpAddr::V4(ip) = attacker_ip(i) else {
                panic!("an IPv6 attacker")
            };
            assert!(ip.is_loopback() && (2..=60).contains(&ip.octets()[3]));
        }
    }

    #[test]
    fn guessed_codes_never_meet_seeded_ones() {
        // Seeded codes are user_code_for(0..n); guesses start at half of
        // the code space, so they meet only past 10^10 seeded codes.
        let first = 20u64.pow(8) / 2;
        let last = first + CODE_GUESS_WORKERS as u64 * MAX_REQUESTS_PER_WORKER;
        assert!(last < 20u64.pow(8));
        assert_ne!(user_code_for(first), user_code_for(0));
    }
}

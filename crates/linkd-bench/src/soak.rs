//! The soak (`--scenarios soak`, issue 18): linkd with its default limits,
//! under the attack mix of `attack` for the whole run, while a person in
//! good standing signs in from their own address every few seconds and
//! links a fresh device, real devices poll at their interval, and
//! `/healthz` is asked from a clean address. Every interval the server's
//! memory and open descriptors are read and a line printed; the summary
//! says whether memory kept growing and whether the person got through.
//! Nothing here fails on a refusal: the soak reports what the server
//! answered.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::approve::Person;
use crate::attack::{self, Attack, HalfOpen, csrf_token};
use crate::load::POLL_BODY_PREFIX;
use crate::machine;
use crate::report::{count, latency};
use crate::seed::{self, CLIENT_ID, CLIENT_SCOPES, DeviceCodes};
use crate::server::{self, Backend, RateLimits};

/// The person in good standing and their own address.
const OWNER_EMAIL: &str = "owner@example.com";
const OWNER_PASSWORD: &str = "the owner's own long password";
const OWNER_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 200);
/// How often the person links a new device.
const GOOD_EVERY: Duration = Duration::from_secs(3);
/// Longest one linking may take before it counts as failed.
const GOOD_TIMEOUT: Duration = Duration::from_secs(30);
/// Real devices polling pending codes at their interval, from 127.0.0.100
/// to 127.0.0.119 (several devices behind each address, as behind a NAT).
const REAL_DEVICES: usize = 100;
const REAL_DEVICE_ADDRESSES: usize = 20;
/// The interval linkd tells devices (its default).
const POLL_INTERVAL_SECS: u32 = 5;
/// `/healthz` is asked this often, each time on a new connection, from an
/// address no attacker uses.
const HEALTHZ_EVERY: Duration = Duration::from_millis(500);
const HEALTHZ_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 250);
const HEALTHZ_TIMEOUT: Duration = Duration::from_secs(5);
/// RSS moving faster than this over the second half is called growth (or
/// shrinking); slower is flat.
const GROWTH_MIB_PER_MIN: f64 = 1.0;

/// What the soak was asked for.
pub struct SoakConfig {
    pub duration: Duration,
    pub every: Duration,
    pub half_open: usize,
}

/// Answers counted by (kind, outcome), e.g. ("code guess", "429").
#[derive(Debug, Default)]
pub struct Counts(Mutex<BTreeMap<(&'static str, String), u64>>);

impl Counts {
    pub fn add(&self, kind: &'static str, outcome: String) {
        let mut map = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((kind, outcome)).or_default() += 1;
    }

    fn take(&self) -> BTreeMap<(&'static str, String), u64> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// Timed events of one kind since the last sample: successes with their
/// latency, failures with a reason.
#[derive(Debug, Default)]
struct Timings(Mutex<(Vec<Duration>, Vec<String>)>);

impl Timings {
    fn ok(&self, took: Duration) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .push(took);
    }

    fn failed(&self, why: String) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).1.push(why);
    }

    fn take(&self) -> (Vec<Duration>, Vec<String>) {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// One sampling interval.
#[derive(Debug)]
pub struct Sample {
    /// Since the attack started.
    pub at: Duration,
    pub rss_kib: Option<u64>,
    pub fds: Option<usize>,
    /// The person's linkings that ended in this interval.
    pub good: Vec<Duration>,
    pub good_failures: Vec<String>,
    pub healthz: Vec<Duration>,
    pub healthz_failures: usize,
    /// Attack answers by kind and outcome.
    pub attacks: BTreeMap<(&'static str, String), u64>,
    /// Real devices' polls by outcome.
    pub devices: BTreeMap<(&'static str, String), u64>,
    pub half_open: i64,
    pub half_open_closed: u64,
}

impl Sample {
    /// Attack answers by outcome alone ("429", "reset", ...).
    fn attack_mix(&self) -> BTreeMap<String, u64> {
        let mut mix = BTreeMap::new();
        for ((_, outcome), n) in &self.attacks {
            let status = outcome.split(' ').next().unwrap_or(outcome);
            *mix.entry(status.to_string()).or_default() += n;
        }
        mix
    }
}

/// The whole run.
pub struct SoakResult {
    pub samples: Vec<Sample>,
    pub duration: Duration,
    pub half_open: usize,
    pub connect_failed: u64,
    /// Lines linkd logged (at `warn` and above), and how many of them say
    /// it ran out of file descriptors.
    pub log_lines: usize,
    pub log_out_of_fds: usize,
}

/// Seeds a fresh store, starts linkd with its default limits, runs the
/// soak, and stops everything; bounded by `config.duration`.
pub async fn run(
    linkd: &Path,
    backend: &Backend,
    workdir: &Path,
    config: &SoakConfig,
) -> anyhow::Result<SoakResult> {
    let url = backend.fresh().await?;
    let outcome = async {
        let codes = seed::seed(&url, REAL_DEVICES).await?;
        let sessions = seed_people(&url, attack::CODE_GUESS_WORKERS).await?;
        let server = server::spawn_linkd(
            linkd,
            &url,
            POLL_INTERVAL_SECS,
            workdir,
            "soak",
            RateLimits::Defaults,
        )
        .await?;
        let result = under_attack(&server, codes, sessions, config).await;
        server.stop().await?;
        // The log goes with the temporary directory; what it said is counted.
        let log = std::fs::read_to_string(workdir.join("linkd-soak.log")).unwrap_or_default();
        result.map(|samples| SoakResult {
            samples: samples.0,
            duration: config.duration,
            half_open: config.half_open,
            connect_failed: samples.1,
            log_lines: log.lines().count(),
            log_out_of_fds: log.matches("Too many open files").count(),
        })
    }
    .await;
    backend.drop_database().await?;
    outcome
}

/// The owner's account, and `attackers` attacker accounts each with a
/// signed-in session; returns the attackers' session cookies.
async fn seed_people(url: &str, attackers: usize) -> anyhow::Result<Vec<String>> {
    let store = linkd::store::open(url)
        .await
        .context("opening the store to seed people")?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default();
    // One hash at a time, as `linkd user add` does.
    let hashing = linkd::hashing::HashPool::new(1);
    linkd::accounts::sign_up(
        store.as_ref(),
        &hashing,
        OWNER_EMAIL,
        OWNER_PASSWORD,
        now,
        None,
    )
    .await
    .map_err(|e| anyhow::anyhow!("seeding the owner: {e:?}"))?;
    let mut sessions = Vec::with_capacity(attackers);
    for i in 0..attackers {
        let email = format!("attacker-{i}@example.com");
        let account = linkd::accounts::sign_up(
            store.as_ref(),
            &hashing,
            &email,
            "an attacker's password",
            now,
            None,
        )
        .await
        .map_err(|e| anyhow::anyhow!("seeding an attacker: {e:?}"))?;
        let session = linkd::accounts::start_session(store.as_ref(), &account.id, now, 86_400)
            .await
            .context("starting an attacker's session")?;
        sessions.push(session);
    }
    Ok(sessions)
}

/// The run proper: everyone starts, the sampler reads every interval, and
/// at the deadline every task is stopped. Returns the samples and the
/// half-open connections that could not connect.
async fn under_attack(
    server: &server::ServerProcess,
    codes: DeviceCodes,
    sessions: Vec<String>,
    config: &SoakConfig,
) -> anyhow::Result<(Vec<Sample>, u64)> {
    let base = server.base_url();
    let start = Instant::now();
    let deadline = start + config.duration;
    let counts = Arc::new(Counts::default());
    let devices = Arc::new(Counts::default());
    let half_open = Arc::new(HalfOpen::default());
    let good = Arc::new(Timings::default());
    let healthz = Arc::new(Timings::default());

    let attack = Arc::new(Attack {
        addr: server.addr,
        owner_email: OWNER_EMAIL.into(),
        sessions,
        half_open: config.half_open,
        // A little past the last sample, so the attack is still whole when
        // it is read; the tasks are aborted right after it.
        deadline: deadline + config.every,
    });
    let mut tasks = attack::start(attack, Arc::clone(&counts), Arc::clone(&half_open))?;
    start_real_devices(&mut tasks, server.addr, codes, &devices, deadline)?;
    {
        let healthz = Arc::clone(&healthz);
        let url = format!("{base}/healthz");
        let http = reqwest::Client::builder()
            .local_address(IpAddr::V4(HEALTHZ_IP))
            .pool_max_idle_per_host(0)
            .timeout(HEALTHZ_TIMEOUT)
            .build()?;
        tasks.spawn(async move { probe_healthz(&http, &url, &healthz, deadline).await });
    }
    {
        let good = Arc::clone(&good);
        let device = linkd_device::Device::discover(&base, CLIENT_ID)
            .await
            .context("reading the server's metadata")?;
        let base = base.clone();
        tasks.spawn(async move { good_person(device, base, good, deadline).await });
    }

    let mut samples = Vec::new();
    let mut next = start + config.every;
    loop {
        tokio::time::sleep_until(next.min(deadline)).await;
        let now = Instant::now();
        let (good_ok, good_failures) = good.take();
        let (healthz_ok, healthz_failures) = healthz.take();
        let sample = Sample {
            at: now - start,
            rss_kib: machine::rss_kib(server.pid()),
            fds: machine::open_fds(server.pid()),
            good: good_ok,
            good_failures,
            healthz: healthz_ok,
            healthz_failures: healthz_failures.len(),
            attacks: counts.take(),
            devices: devices.take(),
            half_open: half_open.open.load(Ordering::Relaxed),
            half_open_closed: half_open.closed_by_server.swap(0, Ordering::Relaxed),
        };
        println!("{}", sample_line(&sample));
        samples.push(sample);
        if now >= deadline {
            break;
        }
        next += config.every;
    }
    // The deadline is past: whatever is still in flight is dropped.
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    Ok((samples, half_open.connect_failed.load(Ordering::Relaxed)))
}

/// Real devices: each polls its pending code once per interval (RFC 8628
/// §3.5), the first polls spread over one interval.
fn start_real_devices(
    tasks: &mut JoinSet<()>,
    addr: SocketAddr,
    codes: DeviceCodes,
    counts: &Arc<Counts>,
    deadline: Instant,
) -> anyhow::Result<()> {
    let interval = Duration::from_secs(u64::from(POLL_INTERVAL_SECS));
    let clients: Vec<reqwest::Client> = (0..REAL_DEVICE_ADDRESSES)
        .map(|i| {
            reqwest::Client::builder()
                .local_address(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 100 + i as u8)))
                .timeout(interval)
                .build()
        })
        .collect::<Result<_, _>>()
        .context("building the devices' clients")?;
    let url = format!("http://{addr}/oauth/token");
    for i in 0..codes.len().min(REAL_DEVICES) {
        let http = clients[i % clients.len()].clone();
        let body = format!("{POLL_BODY_PREFIX}{}", codes.get(i));
        let (url, counts) = (url.clone(), Arc::clone(counts));
        let first = Instant::now() + interval.mul_f64(i as f64 / REAL_DEVICES as f64);
        tasks.spawn(async move {
            let mut next = first;
            while next < deadline {
                tokio::time::sleep_until(next).await;
                let answer = attack::post_form(&http, &url, body.clone()).await;
                counts.add("device", attack::token_outcome(answer).await);
                next += interval;
            }
        });
    }
    Ok(())
}

async fn probe_healthz(http: &reqwest::Client, url: &str, timings: &Timings, deadline: Instant) {
    while Instant::now() < deadline {
        let sent = Instant::now();
        match http.get(url).send().await {
            Ok(response) if response.status() == 200 => timings.ok(sent.elapsed()),
            Ok(response) => timings.failed(response.status().to_string()),
            Err(e) => timings.failed(e.to_string()),
        }
        tokio::time::sleep_until(sent + HEALTHZ_EVERY).await;
    }
}

/// Every `GOOD_EVERY` the person links a new device, each linking its own
/// task so a slow one does not delay the next.
async fn good_person(
    device: linkd_device::Device,
    base: String,
    timings: Arc<Timings>,
    deadline: Instant,
) {
    let mut linkings = JoinSet::new();
    let mut next = Instant::now();
    while next < deadline {
        tokio::time::sleep_until(next).await;
        let (device, base, timings) = (device.clone(), base.clone(), Arc::clone(&timings));
        linkings.spawn(async move {
            let started = Instant::now();
            match tokio::time::timeout(GOOD_TIMEOUT, link_a_device(&device, &base)).await {
                Ok(Ok(())) => timings.ok(started.elapsed()),
                Ok(Err(e)) => timings.failed(format!("{e:#}")),
                Err(_) => timings.failed(format!("not linked within {} s", GOOD_TIMEOUT.as_secs())),
            }
        });
        next += GOOD_EVERY;
    }
    // Linkings still running at the deadline are aborted with the set.
    while linkings.join_next().await.is_some() {}
}

/// One linking, end to end: the device asks for a code, the person signs
/// in with the right password from their own address, enters the code and
/// approves, and the device gets its tokens.
async fn link_a_device(device: &linkd_device::Device, base: &str) -> anyhow::Result<()> {
    let auth = device
        .request_code(Some(CLIENT_SCOPES), Some("soak device"))
        .await
        .context("device code")?;
    // In a set, so the waiting device stops with the linking.
    let mut waiting = JoinSet::new();
    {
        let (device, auth) = (device.clone(), auth.clone());
        waiting.spawn(async move { device.wait_for_tokens(&auth).await });
    }
    let person = reqwest::Client::builder()
        .local_address(IpAddr::V4(OWNER_IP))
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .context("building the person's browser")?;
    sign_in(&person, base).await?;
    Person::signed_in(person, base)
        .await?
        .approve(&auth.user_code)
        .await
        .context("approve")?;
    let tokens = waiting
        .join_next()
        .await
        .context("the waiting device is gone")?
        .context("the waiting device panicked")?
        .context("tokens")?;
    if tokens.access_token.is_empty() {
        bail!("tokens: an empty access token");
    }
    Ok(())
}

/// Signs the owner in with the right password; the answer must be the
/// redirect that starts a session (303), not the form again.
async fn sign_in(person: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let csrf = csrf_token(person, base).await.context("sign-in: no form")?;
    let response = person
        .post(format!("{base}/signin"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("next", "/"),
            ("email", OWNER_EMAIL),
            ("password", OWNER_PASSWORD),
        ])
        .send()
        .await
        .context("sign-in")?;
    let status = response.status();
    if status != reqwest::StatusCode::SEE_OTHER {
        bail!("sign-in answered {status}");
    }
    Ok(())
}

/// p50 and p99 of some durations, nearest rank.
fn quantiles(values: &[Duration]) -> Option<(Duration, Duration)> {
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = |q: f64| {
        let r = (q * sorted.len() as f64).ceil() as usize;
        sorted.get(r.clamp(1, sorted.len().max(1)) - 1).copied()
    };
    Some((rank(0.5)?, rank(0.99)?))
}

fn ms(d: Duration) -> String {
    latency(d.as_micros() as u64)
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("–".into(), |kib| format!("{:.1}", kib as f64 / 1024.0))
}

fn mix(map: &BTreeMap<String, u64>) -> String {
    if map.is_empty() {
        return "none".into();
    }
    map.iter()
        .map(|(outcome, n)| format!("{outcome}×{}", count(*n)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// "t 10 s: RSS 41.2 MiB, 2,051 fds; person ...; healthz ...; attacks ..."
pub fn sample_line(s: &Sample) -> String {
    let good = match quantiles(&s.good) {
        Some((p50, p99)) => format!("{} linked p50 {} p99 {}", s.good.len(), ms(p50), ms(p99)),
        None => "none linked".into(),
    };
    let healthz = match quantiles(&s.healthz) {
        Some((_, p99)) => format!("p99 {}", ms(p99)),
        None => "no answer".into(),
    };
    let devices: BTreeMap<String, u64> = s
        .devices
        .iter()
        .map(|((_, outcome), n)| (outcome.clone(), *n))
        .collect();
    let mut line = format!(
        "t {:>4.0} s: RSS {} MiB, {} fds; person {good}, {} failed; healthz {healthz}, {} failed; \
         half-open {} held, {} closed by server\n  attack answers: {}\n  devices: {}",
        s.at.as_secs_f64(),
        mib(s.rss_kib),
        s.fds.map_or("–".into(), |n| count(n as u64)),
        s.good_failures.len(),
        s.healthz_failures,
        count(s.half_open.max(0) as u64),
        count(s.half_open_closed),
        mix(&s.attack_mix()),
        mix(&devices),
    );
    if let Some(why) = s.good_failures.first() {
        let _ = write!(line, "\n  person's first failure: {why}");
    }
    line
}

/// Least-squares slope of RSS over time in MiB per minute, over the
/// samples of the second half of the run.
fn rss_slope(samples: &[Sample], duration: Duration) -> Option<f64> {
    let points: Vec<(f64, f64)> = samples
        .iter()
        .filter(|s| s.at >= duration / 2)
        .filter_map(|s| Some((s.at.as_secs_f64() / 60.0, s.rss_kib? as f64 / 1024.0)))
        .collect();
    if points.len() < 2 {
        return None;
    }
    let n = points.len() as f64;
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let sxx: f64 = points.iter().map(|p| (p.0 - mean_x).powi(2)).sum();
    let sxy: f64 = points.iter().map(|p| (p.0 - mean_x) * (p.1 - mean_y)).sum();
    (sxx > 0.0).then(|| sxy / sxx)
}

/// The figures the summary and the table share.
struct Totals {
    peak_rss: Option<u64>,
    final_rss: Option<u64>,
    slope: Option<f64>,
    good: Vec<Duration>,
    good_failures: Vec<String>,
    healthz: Vec<Duration>,
    healthz_failures: usize,
    attacks: BTreeMap<(&'static str, String), u64>,
    devices: BTreeMap<String, u64>,
    half_open_closed: u64,
    peak_fds: Option<usize>,
}

fn totals(result: &SoakResult) -> Totals {
    let samples = &result.samples;
    let mut totals = Totals {
        peak_rss: samples.iter().filter_map(|s| s.rss_kib).max(),
        final_rss: samples.last().and_then(|s| s.rss_kib),
        slope: rss_slope(samples, result.duration),
        good: Vec::new(),
        good_failures: Vec::new(),
        healthz: Vec::new(),
        healthz_failures: 0,
        attacks: BTreeMap::new(),
        devices: BTreeMap::new(),
        half_open_closed: 0,
        peak_fds: samples.iter().filter_map(|s| s.fds).max(),
    };
    for s in samples {
        totals.good.extend(&s.good);
        totals.good_failures.extend(s.good_failures.iter().cloned());
        totals.healthz.extend(&s.healthz);
        totals.healthz_failures += s.healthz_failures;
        for (key, n) in &s.attacks {
            *totals.attacks.entry(key.clone()).or_default() += n;
        }
        for ((_, outcome), n) in &s.devices {
            *totals.devices.entry(outcome.clone()).or_default() += n;
        }
        totals.half_open_closed += s.half_open_closed;
    }
    totals
}

fn success_rate(ok: usize, failed: usize) -> String {
    if ok + failed == 0 {
        return "–".into();
    }
    format!("{:.1}%", ok as f64 * 100.0 / (ok + failed) as f64)
}

fn slope_words(slope: Option<f64>) -> String {
    match slope {
        Some(s) if s > GROWTH_MIB_PER_MIN => format!("{s:+.1} MiB/min: STILL GROWING"),
        Some(s) if s < -GROWTH_MIB_PER_MIN => format!("{s:+.1} MiB/min: shrinking"),
        Some(s) => format!("{s:+.1} MiB/min: flat"),
        None => "too few samples".into(),
    }
}

/// The summary printed after the run.
pub fn summary(result: &SoakResult) -> String {
    let t = totals(result);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "soak: {} s under attack, {} half-open connections held at once",
        result.duration.as_secs_f64(),
        count(result.half_open as u64)
    );
    let _ = writeln!(
        out,
        "  linkd RSS: peak {} MiB, final {} MiB; second half {}; peak {} open fds",
        mib(t.peak_rss),
        mib(t.final_rss),
        slope_words(t.slope),
        t.peak_fds.map_or("–".into(), |n| count(n as u64)),
    );
    let good_p99 = quantiles(&t.good).map_or("–".into(), |(_, p99)| ms(p99));
    let good_p50 = quantiles(&t.good).map_or("–".into(), |(p50, _)| ms(p50));
    let _ = writeln!(
        out,
        "  person in good standing: {} of {} linkings succeeded ({}), p50 {good_p50}, p99 {good_p99}",
        t.good.len(),
        t.good.len() + t.good_failures.len(),
        success_rate(t.good.len(), t.good_failures.len()),
    );
    let mut reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for why in &t.good_failures {
        *reasons.entry(why.as_str()).or_default() += 1;
    }
    for (why, n) in reasons.iter().take(5) {
        let _ = writeln!(out, "    failed ×{n}: {why}");
    }
    let _ = writeln!(
        out,
        "  /healthz from a clean address: p99 {}, {} of {} failed",
        quantiles(&t.healthz).map_or("–".into(), |(_, p99)| ms(p99)),
        t.healthz_failures,
        t.healthz.len() + t.healthz_failures,
    );
    let _ = writeln!(out, "  real devices' polls: {}", mix(&t.devices));
    for kind in attack::KINDS {
        let answers: BTreeMap<String, u64> = t
            .attacks
            .iter()
            .filter(|((k, _), _)| k == kind)
            .map(|((_, outcome), n)| (outcome.clone(), *n))
            .collect();
        let _ = writeln!(out, "  attack {kind}: {}", mix(&answers));
    }
    let _ = writeln!(
        out,
        "  half-open: {} closed by the server, {} connects failed",
        count(t.half_open_closed),
        count(result.connect_failed)
    );
    let _ = writeln!(
        out,
        "  linkd logged {} lines at warn and above, {} of them \"Too many open files\"",
        count(result.log_lines as u64),
        count(result.log_out_of_fds as u64)
    );
    out
}

/// The intervals and the summary as Markdown for BENCH.md.
pub fn markdown(result: &SoakResult) -> String {
    let mut out = String::from(
        "| t | RSS MiB | fds | person linked | p50 | p99 | failed | healthz p99 | half-open held | attack answers |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
    );
    for s in &result.samples {
        let q = quantiles(&s.good);
        let _ = writeln!(
            out,
            "| {:.0} s | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            s.at.as_secs_f64(),
            mib(s.rss_kib),
            s.fds.map_or("–".into(), |n| count(n as u64)),
            s.good.len(),
            q.map_or("–".into(), |(p50, _)| ms(p50)),
            q.map_or("–".into(), |(_, p99)| ms(p99)),
            s.good_failures.len(),
            quantiles(&s.healthz).map_or("–".into(), |(_, p99)| ms(p99)),
            count(s.half_open.max(0) as u64),
            mix(&s.attack_mix()),
        );
    }
    let t = totals(result);
    let _ = writeln!(
        out,
        "\nPeak RSS {} MiB, final {} MiB, second half {}; person {} ({} of {}), p99 {}; /healthz p99 {}, {} failed.",
        mib(t.peak_rss),
        mib(t.final_rss),
        slope_words(t.slope),
        success_rate(t.good.len(), t.good_failures.len()),
        t.good.len(),
        t.good.len() + t.good_failures.len(),
        quantiles(&t.good).map_or("–".into(), |(_, p99)| ms(p99)),
        quantiles(&t.healthz).map_or("–".into(), |(_, p99)| ms(p99)),
        t.healthz_failures,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at_secs: u64, rss_mib: u64) -> Sample {
        Sample {
            at: Duration::from_secs(at_secs),
            rss_kib: Some(rss_mib * 1024),
            fds: Some(10),
            good: Vec::new(),
            good_failures: Vec::new(),
            healthz: Vec::new(),
            healthz_failures: 0,
            attacks: BTreeMap::new(),
            devices: BTreeMap::new(),
            half_open: 0,
            half_open_closed: 0,
        }
    }

    #[test]
    fn the_slope_reads_only_the_second_half() {
        // Growth in the first half, flat in the second.
        let samples: Vec<Sample> = [(0, 10), (15, 40), (30, 50), (45, 50), (60, 50)]
            .into_iter()
            .map(|(t, m)| sample(t, m))
            .collect();
        let slope = rss_slope(&samples, Duration::from_secs(60));
        assert_eq!(slope, Some(0.0));
        // 1 MiB every 6 s is 10 MiB a minute.
        let samples: Vec<Sample> = (0..=10).map(|i| sample(i * 6, 100 + i)).collect();
        let slope = rss_slope(&samples, Duration::from_secs(60)).unwrap_or_default();
        assert!((slope - 10.0).abs() < 1e-9, "{slope}");
        assert_eq!(slope_words(Some(slope)), "+10.0 MiB/min: STILL GROWING");
        assert_eq!(rss_slope(&samples[..1], Duration::from_secs(60)), None);
        assert_eq!(slope_words(Some(-0.4)), "-0.4 MiB/min: flat");
        assert_eq!(slope_words(Some(-5.0)), "-5.0 MiB/min: shrinking");
    }

    #[test]
    fn attack_answers_are_mixed_by_status() {
        let mut s = sample(5, 1);
        s.attacks.insert(("fast poll", "400 slow_down".into()), 3);
        s.attacks.insert(("code guess", "429".into()), 2);
        s.attacks.insert(("sign-in owner", "429".into()), 5);
        s.attacks.insert(("oversized", "reset".into()), 1);
        assert_eq!(mix(&s.attack_mix()), "400×3 429×7 reset×1");
    }

    #[test]
    fn quantiles_take_the_nearest_rank() {
        let values: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        assert_eq!(
            quantiles(&values),
            Some((Duration::from_millis(50), Duration::from_millis(99)))
        );
        assert_eq!(quantiles(&[]), None);
    }
}

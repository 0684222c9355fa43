//! Throughput of the steps of a link after the device's request, each on
//! its own: people approving typed codes on the pages, devices redeeming
//! approved codes for their tokens, and devices refreshing tokens (RFC
//! 6749 §6) as a linked device does every hour. Spread over every server
//! of the run, as a load balancer would.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::approve::Person;
use crate::load::POLL_BODY_PREFIX;
use crate::seed::{self, CLIENT_ID, DeviceCodes};

/// Latencies up to a minute, in microseconds, to three digits.
const MAX_LATENCY_US: u64 = 60_000_000;

/// What one step's run did.
#[derive(Debug)]
pub struct StepResult {
    pub done: u64,
    pub elapsed: Duration,
    pub latency: Histogram<u64>,
    pub failures: u64,
    pub first_failure: Option<String>,
    /// Server CPU per completed step (all instances), µs.
    pub server_cpu_us: Option<f64>,
}

impl StepResult {
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Per-task tallies, merged at the end.
struct Tally {
    done: u64,
    latency: Histogram<u64>,
    failures: u64,
    first_failure: Option<String>,
}

impl Tally {
    fn new() -> anyhow::Result<Self> {
        Ok(Tally {
            done: 0,
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, 3)?,
            failures: 0,
            first_failure: None,
        })
    }

    fn record(&mut self, started: Instant, outcome: anyhow::Result<()>) {
        match outcome {
            Ok(()) => {
                self.done += 1;
                let us = started.elapsed().as_micros() as u64;
                self.latency.saturating_record(us.max(1));
            }
            Err(e) => {
                self.failures += 1;
                self.first_failure.get_or_insert_with(|| format!("{e:#}"));
            }
        }
    }
}

/// Runs `tasks` workers until each returns, then merges their tallies;
/// CPU of `pids` is charged over the whole run.
async fn gather(
    pids: &[u32],
    workers: Vec<tokio::task::JoinHandle<anyhow::Result<Tally>>>,
    started: Instant,
    cpu_before: Option<u64>,
) -> anyhow::Result<StepResult> {
    let mut total = Tally::new()?;
    for worker in workers {
        let tally = worker.await.context("a bench worker panicked")??;
        total.done += tally.done;
        total.failures += tally.failures;
        total.latency.add(&tally.latency)?;
        if total.first_failure.is_none() {
            total.first_failure = tally.first_failure;
        }
    }
    let elapsed = started.elapsed();
    let cpu_after = crate::machine::cpu_ticks_sum(pids);
    let server_cpu_us = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) if total.done > 0 => {
            Some(crate::machine::ticks_to_us(after.saturating_sub(before)) / total.done as f64)
        }
        _ => None,
    };
    Ok(StepResult {
        done: total.done,
        elapsed,
        latency: total.latency,
        failures: total.failures,
        first_failure: total.first_failure,
        server_cpu_us,
    })
}

/// People approving the seeded codes `0..codes`, each person on their own
/// browser and server, one code after another, until `duration` is over
/// or the codes run out. Returns the result and which codes were approved.
pub async fn approve(
    servers: &[String],
    pids: &[u32],
    sessions: &[String],
    codes: usize,
    duration: Duration,
) -> anyhow::Result<(StepResult, Vec<usize>)> {
    let mut people = Vec::with_capacity(sessions.len());
    for (i, session) in sessions.iter().enumerate() {
        let server = &servers[i % servers.len()];
        people.push(Person::with_session(server, session).await?);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let approved = Arc::new(std::sync::Mutex::new(Vec::new()));
    let started = Instant::now();
    let until = started + duration;
    let cpu_before = crate::machine::cpu_ticks_sum(pids);
    let mut workers = Vec::with_capacity(people.len());
    for person in people {
        let next = Arc::clone(&next);
        let approved = Arc::clone(&approved);
        workers.push(tokio::spawn(async move {
            let mut tally = Tally::new()?;
            while Instant::now() < until {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= codes {
                    break;
                }
                let begun = Instant::now();
                let outcome = person
                    .approve(&seed::user_code_for(index as u64))
                    .await
                    .map(|_| ());
                if outcome.is_ok() {
                    approved
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push(index);
                }
                tally.record(begun, outcome);
            }
            Ok(tally)
        }));
    }
    let result = gather(pids, workers, started, cpu_before).await?;
    let mut approved = std::mem::take(&mut *approved.lock().unwrap_or_else(|e| e.into_inner()));
    approved.sort_unstable();
    Ok((result, approved))
}

/// Devices polling each approved code once, `connections` at a time: each
/// poll must redeem its code for tokens. Returns the refresh tokens.
pub async fn redeem(
    servers: &[String],
    pids: &[u32],
    device_codes: &DeviceCodes,
    approved: &[usize],
    connections: usize,
) -> anyhow::Result<(StepResult, Vec<String>)> {
    let approved: Arc<Vec<String>> = Arc::new(
        approved
            .iter()
            .map(|&i| device_codes.get(i).to_string())
            .collect(),
    );
    let next = Arc::new(AtomicUsize::new(0));
    let refresh_tokens = Arc::new(std::sync::Mutex::new(Vec::with_capacity(approved.len())));
    let started = Instant::now();
    let cpu_before = crate::machine::cpu_ticks_sum(pids);
    let mut workers = Vec::with_capacity(connections);
    for w in 0..connections.max(1) {
        let url = format!("{}/oauth/token", servers[w % servers.len()]);
        let (approved, next, refresh_tokens) = (
            Arc::clone(&approved),
            Arc::clone(&next),
            Arc::clone(&refresh_tokens),
        );
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut tally = Tally::new()?;
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                let Some(code) = approved.get(index) else {
                    break;
                };
                let begun = Instant::now();
                let outcome = token_request(&http, &url, format!("{POLL_BODY_PREFIX}{code}"))
                    .await
                    .map(|refresh| {
                        refresh_tokens
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(refresh);
                    });
                tally.record(begun, outcome);
            }
            Ok(tally)
        }));
    }
    let result = gather(pids, workers, started, cpu_before).await?;
    let tokens = std::mem::take(&mut *refresh_tokens.lock().unwrap_or_else(|e| e.into_inner()));
    Ok((result, tokens))
}

/// Devices refreshing their tokens, `connections` at a time for
/// `duration`; each worker keeps a share of the devices and refreshes
/// them in turn, carrying each rotated refresh token forward.
pub async fn refresh(
    servers: &[String],
    pids: &[u32],
    refresh_tokens: Vec<String>,
    connections: usize,
    duration: Duration,
) -> anyhow::Result<StepResult> {
    anyhow::ensure!(!refresh_tokens.is_empty(), "no refresh tokens to refresh");
    let workers_n = connections.max(1).min(refresh_tokens.len());
    let mut shares: Vec<Vec<String>> = vec![Vec::new(); workers_n];
    for (i, token) in refresh_tokens.into_iter().enumerate() {
        shares[i % workers_n].push(token);
    }
    let started = Instant::now();
    let until = started + duration;
    let cpu_before = crate::machine::cpu_ticks_sum(pids);
    let mut workers = Vec::with_capacity(workers_n);
    for (w, mut share) in shares.into_iter().enumerate() {
        let url = format!("{}/oauth/token", servers[w % servers.len()]);
        workers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut tally = Tally::new()?;
            let mut i = 0;
            while Instant::now() < until && !share.is_empty() {
                let slot = i % share.len();
                let body = format!(
                    "grant_type=refresh_token&client_id={CLIENT_ID}&refresh_token={}",
                    share[slot]
                );
                let begun = Instant::now();
                match token_request(&http, &url, body).await {
                    Ok(next) => {
                        share[slot] = next;
                        tally.record(begun, Ok(()));
                        i += 1;
                    }
                    Err(e) => {
                        // A refused refresh token is spent: drop the device.
                        share.swap_remove(slot);
                        tally.record(begun, Err(e));
                    }
                }
            }
            Ok(tally)
        }));
    }
    gather(pids, workers, started, cpu_before).await
}

/// One token request that must answer 200 with a refresh token; returns it.
async fn token_request(http: &reqwest::Client, url: &str, body: String) -> anyhow::Result<String> {
    let response = http
        .post(url)
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .send()
        .await?;
    let status = response.status();
    let answer: serde_json::Value = response.json().await?;
    if status != reqwest::StatusCode::OK {
        anyhow::bail!("{status} {}", answer["error"]);
    }
    answer["refresh_token"]
        .as_str()
        .map(str::to_string)
        .context("no refresh token in the answer")
}

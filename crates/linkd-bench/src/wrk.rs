//! The outside view: the same load driven by `wrk` (when it is installed),
//! a load generator in C that shares no code with the bench, beside the
//! bench's own. Polls walk the same codes round-robin through a Lua
//! script; both views are reported side by side and flagged when their
//! ratios to the bare server disagree by more than `AGREE`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

use crate::load::{LoadConfig, POLL_BODY_PREFIX};
use crate::seed::DeviceCodes;

/// How far the two views may be apart (as a share of the larger ratio)
/// before the bench says so.
pub const AGREE: f64 = 0.10;
/// wrk's threads: one per core of the machine the figures come from.
pub const THREADS: usize = 2;

/// Polls walk the codes round-robin over all threads: thread t sends
/// codes t, t+T, t+2T, ... Every request a thread sends is built once, when
/// the script starts, so that sending one costs wrk a table lookup: built
/// per request (a string join and `wrk.format`) it cost wrk 2-4 µs more
/// per request than the bench's own generator, enough on a 2-core machine
/// to lower the bare server's rate more than linkd's. The warm-up run
/// (`LINKD_BENCH_WRK_CHECK` set) also reads every answer and counts those
/// that are not the expected one; the measured run does not, so that wrk
/// does no more per answer than count it. (wrk decides whether to hand
/// answers to `response` when it loads the script, hence the switch in
/// the environment.)
const SCRIPT: &str = r#"
local threads = {}
local next_id = 1
function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

local requests, i
function init(args)
  local path, body_prefix = args[1], args[3]
  expect = args[2]
  local step = tonumber(args[5])
  wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
  requests = {}
  if args[4] ~= "" then
    local k = 0
    for line in io.lines(args[4]) do
      k = k + 1
      if (k - id) % step == 0 then
        requests[#requests + 1] = wrk.format("POST", path, nil, body_prefix .. line)
      end
    end
  end
  if #requests == 0 then
    requests[1] = wrk.format("POST", path, nil, body_prefix)
  end
  i = 0
  unexpected = 0
end

function request()
  i = i + 1
  if i > #requests then i = 1 end
  return requests[i]
end

if os.getenv("LINKD_BENCH_WRK_CHECK") then
  function response(status, headers, body)
    if expect == "pending" then
      if status ~= 400 or not string.find(body, '"authorization_pending"', 1, true) then
        unexpected = unexpected + 1
      end
    elseif status ~= 200 then
      unexpected = unexpected + 1
    end
  end
end

function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + (t:get("unexpected") or 0) end
  local e = summary.errors
  io.write(string.format(
    "WRK-RESULT requests=%d duration_us=%d p50=%d p99=%d p999=%d socket_errors=%d status_errors=%d unexpected=%d\n",
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency:percentile(99.9), e.connect + e.read + e.write + e.timeout, e.status, bad))
end
"#;

/// What a wrk run measured.
#[derive(Debug, Clone)]
pub struct WrkResult {
    pub requests: u64,
    pub window: Duration,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub socket_errors: u64,
    /// Answers of the warm-up that were not the expected one.
    pub unexpected: u64,
    pub server_cpu_us: Option<f64>,
    /// wrk's own CPU time per request, and the share of the machine's
    /// cores idle, both read a moment before wrk ends (it reports only
    /// when it has exited).
    pub client_cpu_us: Option<f64>,
    pub idle: Option<f64>,
    /// Requests of the warm-up and the measured run together.
    pub requests_in_all: u64,
}

impl WrkResult {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.window.as_secs_f64().max(1e-9)
    }
}

/// What wrk sends.
pub enum WrkLoad<'a> {
    /// Token polls over these codes, each answered `authorization_pending`.
    Poll(&'a Path),
    /// Device authorizations, each answered 200.
    Authorize,
}

/// wrk on this machine, if any.
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join("wrk"))
        .find(|candidate| candidate.is_file())
}

/// Writes the codes one a line, for the script to read.
pub fn write_codes(codes: &DeviceCodes, path: &Path) -> anyhow::Result<()> {
    let mut text = String::with_capacity(codes.len() * 44);
    for i in 0..codes.len() {
        text.push_str(codes.get(i));
        text.push('\n');
    }
    std::fs::write(path, text).context("writing the codes for wrk")
}

/// A warm-up run that checks every answer, then the measured run.
pub async fn run(
    wrk: &Path,
    workdir: &Path,
    addr: SocketAddr,
    load: &WrkLoad<'_>,
    config: &LoadConfig,
    server_pids: &[u32],
) -> anyhow::Result<WrkResult> {
    let script = workdir.join("poll.lua");
    std::fs::write(&script, SCRIPT).context("writing wrk's script")?;
    let warmup = config.warmup.max(Duration::from_secs(1));
    let checked = once(wrk, &script, addr, load, config, warmup, true, server_pids).await?;
    let mut measured = once(
        wrk,
        &script,
        addr,
        load,
        config,
        config.duration,
        false,
        server_pids,
    )
    .await?;
    measured.unexpected = checked.unexpected;
    measured.requests_in_all = checked.requests + measured.requests;
    Ok(measured)
}

#[allow(clippy::too_many_arguments)]
async fn once(
    wrk: &Path,
    script: &Path,
    addr: SocketAddr,
    load: &WrkLoad<'_>,
    config: &LoadConfig,
    duration: Duration,
    check: bool,
    server_pids: &[u32],
) -> anyhow::Result<WrkResult> {
    let (path, expect, prefix, codes) = match load {
        WrkLoad::Poll(codes) => (
            "/oauth/token",
            "pending",
            POLL_BODY_PREFIX,
            Some(codes.display().to_string()),
        ),
        WrkLoad::Authorize => (
            "/oauth/device_authorization",
            "ok",
            crate::load::AUTHORIZE_BODY,
            None,
        ),
    };
    // wrk counts whole seconds.
    let seconds = duration.as_secs_f64().ceil().max(1.0) as u64;
    let mut command = tokio::process::Command::new(wrk);
    command
        .args(["-t", &THREADS.to_string()])
        .args(["-c", &config.connections.max(THREADS).to_string()])
        .args(["-d", &format!("{seconds}s")])
        .arg("-s")
        .arg(script)
        .arg(format!("http://{addr}"))
        .arg("--")
        .args([path, expect, prefix, codes.as_deref().unwrap_or("")])
        .arg(THREADS.to_string());
    if check {
        command.env("LINKD_BENCH_WRK_CHECK", "1");
    } else {
        command.env_remove("LINKD_BENCH_WRK_CHECK");
    }
    let cpu_before = crate::machine::cpu_ticks_sum(server_pids);
    let child = command
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .context("running wrk")?;
    let pid = child.id();
    let idle_before = crate::machine::idle_ticks();
    let started = tokio::time::Instant::now();
    // wrk's CPU is read just before it stops, the part of its run that
    // came before set against the same part of its requests below.
    let sampled = async {
        let near_end = Duration::from_secs(seconds).saturating_sub(Duration::from_millis(300));
        tokio::time::sleep(near_end).await;
        let wrk_ticks = pid.and_then(crate::machine::cpu_ticks);
        let idle = crate::machine::idle_share(
            idle_before,
            crate::machine::idle_ticks(),
            started.elapsed(),
        );
        (wrk_ticks, idle, started.elapsed())
    };
    let (output, (wrk_ticks, idle, sampled_after)) =
        tokio::join!(child.wait_with_output(), sampled);
    let output = output.context("running wrk")?;
    let cpu_after = crate::machine::cpu_ticks_sum(server_pids);
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk failed ({}): {}{}",
            output.status,
            stdout,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let mut result = parse(&stdout).with_context(|| format!("reading wrk's output:\n{stdout}"))?;
    result.server_cpu_us = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) if result.requests > 0 => {
            Some(crate::machine::ticks_to_us(after.saturating_sub(before)) / result.requests as f64)
        }
        _ => None,
    };
    result.idle = idle;
    let share = sampled_after.as_secs_f64() / seconds as f64;
    result.client_cpu_us = wrk_ticks
        .filter(|_| result.requests > 0)
        .map(|ticks| crate::machine::ticks_to_us(ticks) / (result.requests as f64 * share));
    Ok(result)
}

/// The script's `WRK-RESULT` line.
fn parse(stdout: &str) -> anyhow::Result<WrkResult> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("WRK-RESULT "))
        .context("no WRK-RESULT line")?;
    let field = |name: &str| -> anyhow::Result<u64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .with_context(|| format!("no {name}"))?
            .parse()
            .with_context(|| format!("{name} is not a number"))
    };
    Ok(WrkResult {
        requests: field("requests")?,
        window: Duration::from_micros(field("duration_us")?),
        p50_us: field("p50")?,
        p99_us: field("p99")?,
        p999_us: field("p999")?,
        socket_errors: field("socket_errors")?,
        unexpected: field("unexpected")?,
        server_cpu_us: None,
        client_cpu_us: None,
        idle: None,
        requests_in_all: 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_result_line_is_read() {
        let out = "Running 1s test\nWRK-RESULT requests=1200 duration_us=1000500 p50=800 p99=4100 p999=9000 socket_errors=0 status_errors=1200 unexpected=0\n";
        let r = parse(out).unwrap();
        assert_eq!(r.requests, 1200);
        assert_eq!(r.p99_us, 4100);
        assert_eq!(r.unexpected, 0);
        assert!((r.rate() - 1199.4).abs() < 1.0);
        assert!(parse("nothing").is_err());
    }
}

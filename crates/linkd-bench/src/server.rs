//! The processes and databases a run needs: building the release `linkd`,
//! starting it (or the bare baseline) on a free port, waiting until it
//! answers, stopping it; and a fresh database per run.

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper_util::rt::TokioIo;
use sqlx::Connection;

use crate::bare;
use crate::load::POLL_BODY_PREFIX;

/// How long a server may take to answer its first request.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// The workspace root: two levels above this crate.
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds the `linkd` binary in release mode and returns its path, as cargo
/// reports it (so CARGO_TARGET_DIR and cargo's config are respected).
pub fn build_linkd() -> anyhow::Result<PathBuf> {
    println!("building linkd (cargo build --release -p linkd --bin linkd) ...");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = std::process::Command::new(cargo);
    // `cargo run` hands this process the bench package's CARGO_PKG_*,
    // CARGO_MANIFEST_DIR and the like. Build scripts (ring's, for one)
    // rerun when those change, so passing them on would rebuild half the
    // dependency tree on every run, and again on the next plain build.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || matches!(
                name.as_ref(),
                "CARGO_MANIFEST_DIR"
                    | "CARGO_MANIFEST_PATH"
                    | "CARGO_MANIFEST_LINKS"
                    | "CARGO_CRATE_NAME"
                    | "CARGO_BIN_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "OUT_DIR"
            )
        {
            command.env_remove(name.as_ref());
        }
    }
    let output = command
        .current_dir(workspace_root())
        .args([
            "build",
            "--release",
            "-p",
            "linkd",
            "--bin",
            "linkd",
            "--message-format=json-render-diagnostics",
        ])
        // Progress and warnings go to the terminal; the JSON on stdout
        // names the binary.
        .stderr(Stdio::inherit())
        .output()
        .context("running cargo build")?;
    if !output.status.success() {
        bail!("cargo build --release -p linkd failed");
    }
    let stdout = String::from_utf8_lossy(&output.stdout);
    for line in stdout.lines() {
        let Ok(message) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if message["reason"] == "compiler-artifact"
            && message["target"]["name"] == "linkd"
            && let Some(path) = message["executable"].as_str()
        {
            return Ok(PathBuf::from(path));
        }
    }
    bail!("cargo build did not name the linkd executable")
}

/// An address on loopback nobody listens on right now. The port is free
/// again between this call and the server binding it, which is fine on a
/// machine that runs nothing else of the kind.
fn free_addr() -> anyhow::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port")?;
    Ok(listener.local_addr()?)
}

/// A server process of this run, killed when dropped if not stopped.
pub struct ServerProcess {
    name: String,
    child: tokio::process::Child,
    pid: u32,
    pub addr: SocketAddr,
    log: PathBuf,
}

impl ServerProcess {
    pub fn pid(&self) -> u32 {
        self.pid
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Kills the process and waits for it. A benchmark has nothing to lose
    /// in flight, so it does not wait for a graceful drain.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.child.start_kill().ok();
        self.child
            .wait()
            .await
            .with_context(|| format!("waiting for {} to exit", self.name))?;
        Ok(())
    }

    /// Waits until `ready` succeeds, failing early if the process exits.
    async fn wait_ready<F, Fut>(&mut self, ready: F) -> anyhow::Result<()>
    where
        F: Fn(SocketAddr) -> Fut,
        Fut: Future<Output = bool>,
    {
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "{} exited during start-up ({status}); its log ends:\n{}",
                    self.name,
                    log_tail(&self.log)
                );
            }
            if ready(self.addr).await {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not answer within {} s; its log ends:\n{}",
                    self.name,
                    STARTUP_TIMEOUT.as_secs(),
                    log_tail(&self.log)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

fn spawn(
    name: &str,
    mut command: tokio::process::Command,
    addr: SocketAddr,
    log: PathBuf,
) -> anyhow::Result<ServerProcess> {
    // A server's own output goes to a file: under load a chatty server
    // would otherwise write over the bench's report.
    let out = std::fs::File::create(&log).context("creating a server log file")?;
    let err = out.try_clone()?;
    let child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    let pid = child
        .id()
        .with_context(|| format!("{name} has no process id"))?;
    Ok(ServerProcess {
        name: name.into(),
        child,
        pid,
        addr,
        log,
    })
}

/// Which rate limits a started linkd applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateLimits {
    /// Every per-network and per-app limit off: a load generator is one
    /// network and one app, and the figures are about the work itself.
    Off,
    /// linkd's defaults, as an operator runs it (the soak: the point is
    /// to see the defences hold).
    Defaults,
}

/// Starts linkd on a free port over `database_url`, with the given rate
/// limits, and waits for `/healthz`.
pub async fn spawn_linkd(
    binary: &Path,
    database_url: &str,
    poll_interval: u32,
    logs: &Path,
    label: &str,
    limits: RateLimits,
) -> anyhow::Result<ServerProcess> {
    let addr = free_addr()?;
    let mut command = tokio::process::Command::new(binary);
    command
        .arg("serve")
        .args(["--listen", &addr.to_string()])
        .args(["--public-url", &format!("http://{addr}")])
        .args(["--database-url", database_url])
        .args(["--poll-interval", &poll_interval.to_string()]);
    if limits == RateLimits::Off {
        command
            .args(["--token-polls-per-network", "0"])
            .args(["--device-authorizations-per-network", "0"])
            .args(["--device-authorizations-per-client", "0"])
            .args(["--sign-ups-per-network", "0"]);
    }
    command
        // Only what the bench seeded lives in the store.
        .arg("--no-demo")
        .env("LINKD_LOG", "warn");
    let mut server = spawn(
        "linkd",
        command,
        addr,
        logs.join(format!("linkd-{label}.log")),
    )?;
    let http = reqwest::Client::new();
    server
        .wait_ready(|addr| {
            let http = http.clone();
            async move {
                http.get(format!("http://{addr}/healthz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
            }
        })
        .await?;
    Ok(server)
}

/// Starts the bare baseline: this very binary, in its own process.
pub async fn spawn_bare(logs: &Path) -> anyhow::Result<ServerProcess> {
    let addr = free_addr()?;
    let me = std::env::current_exe().context("locating the bench binary")?;
    let mut command = tokio::process::Command::new(me);
    command.args(["bare", "--listen", &addr.to_string()]);
    let mut server = spawn("bare server", command, addr, logs.join("bare.log"))?;
    // It has no health route: accepting a connection is ready enough.
    server
        .wait_ready(|addr| async move { tokio::net::TcpStream::connect(addr).await.is_ok() })
        .await?;
    Ok(server)
}

/// Polls linkd once and says whether the bare server answers the same
/// status, body and caching headers: the baseline is only fair if it sends
/// the same bytes.
pub async fn check_parity(addr: SocketAddr, device_code: &str) {
    match poll_once(addr, device_code).await {
        Ok((status, headers, body)) => {
            let mut differences = Vec::new();
            if status != bare::STATUS.as_u16() {
                differences.push(format!("status {status}"));
            }
            if body != bare::PENDING_BODY.as_bytes() {
                differences.push(format!("body {}", String::from_utf8_lossy(&body)));
            }
            for (name, value) in bare::HEADERS {
                let got = headers.get(*name).and_then(|v| v.to_str().ok());
                if got != Some(*value) {
                    differences.push(format!("{name}: {got:?}"));
                }
            }
            if differences.is_empty() {
                println!("parity: the bare server answers linkd's exact pending body and headers");
            } else {
                println!(
                    "!!! parity: linkd's pending answer differs from the bare one: {}",
                    differences.join("; ")
                );
            }
        }
        Err(e) => println!("!!! parity: could not poll linkd once: {e:#}"),
    }
}

async fn poll_once(
    addr: SocketAddr,
    device_code: &str,
) -> anyhow::Result<(u16, hyper::HeaderMap, Bytes)> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let request = Request::post("/oauth/token")
        .header(HOST, addr.to_string())
        .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Full::new(Bytes::from(format!(
            "{POLL_BODY_PREFIX}{device_code}"
        ))))?;
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, headers, body))
}

/// Where each run's store lives.
pub enum Backend {
    /// A SQLite file in the run's temporary directory.
    Sqlite { dir: PathBuf },
    /// A database created on a PostgreSQL server for each run.
    Postgres { admin_url: String, database: String },
}

impl Backend {
    pub fn describe(&self) -> String {
        match self {
            Backend::Sqlite { .. } => "SQLite file (temporary directory)".into(),
            Backend::Postgres {
                admin_url,
                database,
            } => format!(
                "PostgreSQL database {database} on {}",
                linkd::store::redact_url(admin_url)
            ),
        }
    }

    /// An empty store for one run; returns its URL.
    pub async fn fresh(&self) -> anyhow::Result<String> {
        match self {
            Backend::Sqlite { dir } => {
                let file = dir.join("bench.db");
                for suffix in ["", "-wal", "-shm"] {
                    let mut path = file.clone().into_os_string();
                    path.push(suffix);
                    match std::fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                        Err(e) => return Err(e).context("removing the previous database"),
                    }
                }
                Ok(format!("sqlite://{}", file.display()))
            }
            Backend::Postgres {
                admin_url,
                database,
            } => {
                self.drop_database().await?;
                let mut admin = sqlx::PgConnection::connect(admin_url)
                    .await
                    .context("connecting to PostgreSQL")?;
                sqlx::raw_sql(&format!("CREATE DATABASE {database}"))
                    .execute(&mut admin)
                    .await
                    .context("creating the bench database")?;
                admin.close().await.ok();
                Ok(database_url(admin_url, database))
            }
        }
    }

    /// The run's database, watched through PostgreSQL's statistics (none
    /// for SQLite, which has no server to ask).
    pub fn probe(&self, database_url: &str) -> Option<crate::dbstats::DbProbe> {
        match self {
            Backend::Sqlite { .. } => None,
            Backend::Postgres {
                admin_url,
                database,
            } => Some(crate::dbstats::DbProbe {
                admin_url: admin_url.clone(),
                database_url: database_url.to_string(),
                database: database.clone(),
            }),
        }
    }

    /// Removes the run's database (the SQLite file goes with the temporary
    /// directory).
    pub async fn drop_database(&self) -> anyhow::Result<()> {
        if let Backend::Postgres {
            admin_url,
            database,
        } = self
        {
            let mut admin = sqlx::PgConnection::connect(admin_url)
                .await
                .context("connecting to PostgreSQL")?;
            // FORCE: a killed server's connections may not be gone yet.
            sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .context("dropping the bench database")?;
            admin.close().await.ok();
        }
        Ok(())
    }
}

/// `admin_url` with its database name replaced by `database`.
fn database_url(admin_url: &str, database: &str) -> String {
    let (base, query) = match admin_url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (admin_url, None),
    };
    // The path starts at the first '/' after "scheme://".
    let authority_start = base.find("://").map_or(0, |i| i + 3);
    let server = match base[authority_start..].find('/') {
        Some(slash) => &base[..authority_start + slash],
        None => base,
    };
    match query {
        Some(query) => format!("{server}/{database}?{query}"),
        None => format!("{server}/{database}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_swaps_only_the_database_name() {
        assert_eq!(
            database_url("postgres://postgres@127.0.0.1:5432/postgres", "b"),
            "postgres://postgres@127.0.0.1:5432/b"
        );
        assert_eq!(
            database_url("postgres://u:p@db/x?sslmode=disable", "b"),
            "postgres://u:p@db/b?sslmode=disable"
        );
        assert_eq!(database_url("postgres://db", "b"), "postgres://db/b");
    }
}

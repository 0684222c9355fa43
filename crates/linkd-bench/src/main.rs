//! linkd-bench: load on linkd's hot paths (token polling, device
//! authorizations, approval to tokens), each figure set against a bare HTTP
//! server that answers the same bytes without doing any work. The bench
//! only reports; no figure fails anything. BENCH.md says how to read it.

/// Scenario (c): a person approves on the real pages while devices wait.
mod approve;
/// The soak's attackers, each from its own loopback address.
mod attack;
/// The baseline: a server that answers every poll with linkd's fixed body.
mod bare;
/// The load generator: keep-alive HTTP/1.1 connections, one request at a time.
mod load;
/// What machine this is and what a process costs it (/proc).
mod machine;
/// Bare server and linkd taking turns, round after round (`--rounds`).
mod paired;
/// Turning results into lines a person reads and a Markdown table.
mod report;
/// Filling a fresh store with a client and pending device authorizations.
mod seed;
/// Building, starting and stopping linkd, the bare server and databases.
mod server;
/// The soak: default limits, the attack mix, a person in good standing.
mod soak;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::load::{LoadConfig, Workload};
use crate::report::{PollRow, Report};
use crate::seed::DeviceCodes;
use crate::server::{Backend, RateLimits};

/// The PostgreSQL server the tests use too; `--postgres` alone means this one.
const DEFAULT_POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/postgres";

#[derive(Debug, Parser)]
#[command(
    name = "linkd-bench",
    about = "Benchmark linkd's hot paths against a bare HTTP baseline",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    options: Options,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The baseline server; the bench starts itself with this so the
    /// baseline runs in its own process, as linkd does.
    #[command(hide = true)]
    Bare {
        #[arg(long)]
        listen: SocketAddr,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Token requests on pending device codes (RFC 8628 §3.4).
    Poll,
    /// New device authorizations (RFC 8628 §3.1).
    Authorize,
    /// A person approves; how long until the device holds tokens.
    Approve,
    /// Default limits under the attack mix of issue 18 while a person in
    /// good standing links devices; memory, descriptors and latency sampled
    /// every interval. Not in the default set.
    Soak,
}

#[derive(Debug, Clone, Args)]
struct Options {
    /// Scenarios to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "poll,authorize,approve")]
    scenarios: Vec<Scenario>,
    /// Pending device authorizations to seed for polling, comma-separated;
    /// each count gets a fresh database.
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    codes: Vec<usize>,
    /// Shorthand for --codes 10000,100000,1000000.
    #[arg(long)]
    million: bool,
    /// Concurrent keep-alive connections of the load generator.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds measured per load run [default: 10; the soak's: 60].
    #[arg(long)]
    duration: Option<f64>,
    /// Seconds of load before measuring starts (caches, pools, JIT-free
    /// but not cold-free: connections and the database warm up).
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Use PostgreSQL instead of a SQLite file: a fresh database on this
    /// server for each run, dropped afterwards.
    #[arg(long, num_args = 0..=1, default_missing_value = DEFAULT_POSTGRES, value_name = "URL")]
    postgres: Option<String>,
    /// Also poll in N paired rounds per code count: the bare server and
    /// linkd both running and taking turns under the same load, reported
    /// with the median ratio (a single run's ratio moves with the machine).
    #[arg(long, default_value_t = 0)]
    rounds: usize,
    /// Approvals to time in the approve scenario.
    #[arg(long, default_value_t = 50)]
    approvals: usize,
    /// Seconds between the soak's samples.
    #[arg(long, default_value_t = 5.0)]
    soak_report_every: f64,
    /// Half-open connections the soak's attackers hold at once.
    #[arg(long, default_value_t = 2000)]
    soak_half_open: usize,
    /// Run this linkd binary instead of building the release one (a
    /// debug build checks the bench itself; its figures mean nothing).
    #[arg(long, value_name = "PATH")]
    linkd: Option<std::path::PathBuf>,
    /// Also print the results as a Markdown table for BENCH.md.
    #[arg(long)]
    markdown: bool,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match cli.command {
        Some(Command::Bare { listen }) => runtime.block_on(bare::serve(listen)),
        None => runtime.block_on(bench(cli.options)),
    }
}

async fn bench(options: Options) -> anyhow::Result<()> {
    let machine = machine::Machine::describe();
    println!("{machine}");
    println!("load generator: this process, on the same machine as the server");

    let codes: Vec<usize> = if options.million {
        vec![10_000, 100_000, 1_000_000]
    } else {
        // Polling needs at least one code to poll.
        options.codes.iter().copied().filter(|&n| n > 0).collect()
    };
    let load = LoadConfig {
        connections: options.connections.max(1),
        warmup: Duration::from_secs_f64(options.warmup.max(0.0)),
        duration: Duration::from_secs_f64(options.duration.unwrap_or(10.0).max(0.1)),
    };
    let wants = |s: Scenario| options.scenarios.contains(&s);

    let linkd = match &options.linkd {
        Some(path) => path.clone(),
        None => server::build_linkd()?,
    };
    let workdir = tempfile::Builder::new()
        .prefix("linkd-bench-")
        .tempdir()
        .context("creating a temporary directory")?;
    let backend = match &options.postgres {
        Some(url) => Backend::Postgres {
            admin_url: url.clone(),
            database: format!("linkd_bench_{}", std::process::id()),
        },
        None => Backend::Sqlite {
            dir: workdir.path().to_path_buf(),
        },
    };
    println!(
        "backend: {}; load runs: {} connections, {} s warm-up, {} s measured",
        backend.describe(),
        load.connections,
        load.warmup.as_secs_f64(),
        load.duration.as_secs_f64()
    );
    let mut report = Report::new(machine, backend.describe(), &load);

    // The baseline runs first and alone, so linkd's run does not share the
    // machine with it.
    if wants(Scenario::Poll) || wants(Scenario::Authorize) {
        println!("\n== bare baseline: POST /oauth/token answered with a fixed body");
        let bare = server::spawn_bare(workdir.path()).await?;
        // The bare server never looks at the code; a small set keeps the
        // request bodies the same size as linkd's.
        let codes = DeviceCodes::generate(1000);
        let result = load::run(
            bare.addr,
            &Arc::new(Workload::Poll(codes.into())),
            &load,
            bare.pid(),
        )
        .await;
        bare.stop().await?;
        let result = result?;
        println!("{}", report::load_line("bare", &result, None));
        report.bare = Some(result);
    }

    if wants(Scenario::Poll) {
        for &n in &codes {
            println!(
                "\n== polling: {} pending device codes",
                report::count(n as u64)
            );
            let row = poll_run(&linkd, &backend, workdir.path(), n, &load, &report).await?;
            report.poll.push(row);
        }
        if options.rounds > 0 {
            for &n in &codes {
                println!(
                    "\n== paired rounds: bare and linkd taking turns, {} pending codes",
                    report::count(n as u64)
                );
                paired::poll(
                    &linkd,
                    &backend,
                    workdir.path(),
                    n,
                    &load,
                    options.rounds,
                    options.markdown,
                )
                .await?;
            }
        }
    }

    if wants(Scenario::Authorize) {
        println!("\n== device authorizations: POST /oauth/device_authorization");
        let url = backend.fresh().await?;
        seed::seed(&url, 0).await?;
        let server = server::spawn_linkd(
            &linkd,
            &url,
            0,
            workdir.path(),
            "authorize",
            RateLimits::Off,
        )
        .await;
        let result = match server {
            Ok(server) => {
                let result = load::run(
                    server.addr,
                    &Arc::new(Workload::Authorize),
                    &load,
                    server.pid(),
                )
                .await;
                server.stop().await?;
                result
            }
            Err(e) => Err(e),
        };
        backend.drop_database().await?;
        let result = result?;
        println!(
            "{}",
            report::load_line("device authorizations", &result, report.bare.as_ref())
        );
        report.authorize = Some(result);
    }

    if wants(Scenario::Approve) {
        println!(
            "\n== approval to tokens: {} devices, a person approving on /link",
            options.approvals
        );
        let url = backend.fresh().await?;
        seed::seed(&url, 0).await?;
        // A normal polling interval: the figure is what a real device sees.
        let server =
            server::spawn_linkd(&linkd, &url, 5, workdir.path(), "approve", RateLimits::Off).await;
        let result = match server {
            Ok(server) => {
                let result = approve::run(&server.base_url(), options.approvals).await;
                server.stop().await?;
                result
            }
            Err(e) => Err(e),
        };
        backend.drop_database().await?;
        let result = result?;
        println!("{}", report::approval_line(&result));
        report.approve = Some(result);
    }

    let mut soak_result = None;
    if wants(Scenario::Soak) {
        let config = soak::SoakConfig {
            duration: Duration::from_secs_f64(options.duration.unwrap_or(60.0).max(1.0)),
            every: Duration::from_secs_f64(options.soak_report_every.max(0.5)),
            half_open: options.soak_half_open,
        };
        println!(
            "\n== soak: default limits, the attack mix for {} s, a sample every {} s",
            config.duration.as_secs_f64(),
            config.every.as_secs_f64()
        );
        let result = soak::run(&linkd, &backend, workdir.path(), &config).await?;
        soak_result = Some(result);
    }

    println!("\n== summary");
    print!("{}", report.summary());
    if let Some(soak) = &soak_result {
        print!("{}", soak::summary(soak));
    }
    if options.markdown {
        if wants(Scenario::Poll) || wants(Scenario::Authorize) || wants(Scenario::Approve) {
            println!();
            print!("{}", report.markdown());
        }
        if let Some(soak) = &soak_result {
            println!("\nSoak under attack:\n");
            print!("{}", soak::markdown(soak));
        }
    }
    Ok(())
}

/// One polling run: a fresh database with `n` pending codes, linkd started
/// on it, its memory read before and after the load.
async fn poll_run(
    linkd: &std::path::Path,
    backend: &Backend,
    workdir: &std::path::Path,
    n: usize,
    load: &LoadConfig,
    report: &Report,
) -> anyhow::Result<PollRow> {
    let url = backend.fresh().await?;
    let seeding = std::time::Instant::now();
    let codes = seed::seed(&url, n).await?;
    println!(
        "seeded {} pending device authorizations in {:.1} s",
        report::count(n as u64),
        seeding.elapsed().as_secs_f64()
    );
    let server = match server::spawn_linkd(
        linkd,
        &url,
        0,
        workdir,
        &format!("poll-{n}"),
        RateLimits::Off,
    )
    .await
    {
        Ok(server) => server,
        Err(e) => {
            backend.drop_database().await?;
            return Err(e);
        }
    };
    let rss_start = machine::rss_kib(server.pid());
    let outcome = async {
        if !codes.is_empty() {
            server::check_parity(server.addr, codes.get(0)).await;
        }
        load::run(
            server.addr,
            &Arc::new(Workload::Poll(codes.into())),
            load,
            server.pid(),
        )
        .await
    }
    .await;
    let rss_end = machine::rss_kib(server.pid());
    server.stop().await?;
    backend.drop_database().await?;
    let result = outcome?;
    let row = PollRow {
        codes: n,
        result,
        rss_start_kib: rss_start,
        rss_end_kib: rss_end,
    };
    println!("{}", report::poll_line(&row, report.bare.as_ref()));
    Ok(row)
}

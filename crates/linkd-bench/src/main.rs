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
/// Several linkd instances on one database (`--instances`).
mod cluster;
/// What PostgreSQL counted of a run: transactions, reads, writes, CPU.
mod dbstats;
/// The steps of a link after the device's request: approvals,
/// redemptions, refreshes.
mod links;
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
/// The outside view: the same load from `wrk`, when installed.
mod wrk;

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
    /// People approving codes as fast as they can, devices redeeming the
    /// approved codes, then refreshing their tokens: each step's rate and
    /// its cost to the database. Not in the default set.
    Links,
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
    /// with the median ratio (a single run's ratio moves with the machine);
    /// with wrk installed, wrk takes the same turns in every round and its
    /// median is set beside the bench's.
    #[arg(long, default_value_t = 0)]
    rounds: usize,
    /// Approvals to time in the approve scenario.
    #[arg(long, default_value_t = 50)]
    approvals: usize,
    /// linkd processes sharing the one database, each on its own port,
    /// the load spread over them (more than one needs --postgres).
    #[arg(long, default_value_t = 1)]
    instances: usize,
    /// People approving at once in the links scenario.
    #[arg(long, default_value_t = 8)]
    people: usize,
    /// Do not drive the polling and device-authorization runs with wrk
    /// as well (done when wrk is installed and one instance runs).
    #[arg(long)]
    no_wrk: bool,
    /// Seed the pending codes over HTTP (POST /oauth/device_authorization
    /// to the running server, as a device would) instead of through the
    /// store before the server starts.
    #[arg(long)]
    seed_over_http: bool,
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
    let instances = options.instances.max(1);
    if instances > 1 && options.postgres.is_none() {
        anyhow::bail!("--instances above 1 needs --postgres: instances share one database server");
    }
    let wrk = if options.no_wrk || instances > 1 {
        None
    } else {
        let found = wrk::find();
        if found.is_none() {
            println!("wrk is not installed: no outside view of the polling and authorization runs");
        }
        found
    };

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
        "backend: {}; {instances} linkd instance{}; load runs: {} connections, {} s warm-up, {} s measured",
        backend.describe(),
        if instances == 1 { "" } else { "s" },
        load.connections,
        load.warmup.as_secs_f64(),
        load.duration.as_secs_f64()
    );
    let mut report = Report::new(machine, backend.describe(), &load, instances);
    // wrk runs only with one instance (above), so this needs both.
    report.paired = options.rounds > 0 && wrk.is_some();
    let run = Run {
        linkd: &linkd,
        backend: &backend,
        workdir: workdir.path(),
        load: &load,
        instances,
        wrk: wrk.as_deref(),
        seed_over_http: options.seed_over_http,
    };

    // The baseline runs first and alone, so linkd's run does not share the
    // machine with it.
    if wants(Scenario::Poll) || wants(Scenario::Authorize) {
        println!("\n== bare baseline: POST /oauth/token answered with a fixed body");
        let bare = server::spawn_bare(workdir.path()).await?;
        // The bare server never looks at the code; a small set keeps the
        // request bodies the same size as linkd's.
        let codes = DeviceCodes::generate(1000);
        let codes_file = workdir.path().join("bare-codes.txt");
        wrk::write_codes(&codes, &codes_file)?;
        let result = load::run(
            bare.addr,
            &Arc::new(Workload::Poll(codes.into())),
            &load,
            bare.pid(),
        )
        .await;
        let outside = match (&result, wrk.as_deref()) {
            (Ok(_), Some(wrk)) => Some(
                wrk::run(
                    wrk,
                    workdir.path(),
                    bare.addr,
                    &wrk::WrkLoad::Poll(&codes_file),
                    &load,
                    &[bare.pid()],
                )
                .await,
            ),
            _ => None,
        };
        bare.stop().await?;
        let result = result?;
        println!("{}", report::load_line("bare", &result, None));
        if let Some(outside) = outside {
            let outside = outside?;
            println!("{}", report::wrk_line("bare, wrk", &outside, None));
            report.bare_wrk = Some(outside);
        }
        report.bare = Some(result);
    }

    if wants(Scenario::Poll) {
        for &n in &codes {
            println!(
                "\n== polling: {} pending device codes",
                report::count(n as u64)
            );
            let row = poll_run(&run, n, &report).await?;
            report.poll.push(row);
        }
        if options.rounds > 0 && instances == 1 {
            for &n in &codes {
                println!(
                    "\n== paired rounds: bare and linkd taking turns, {} pending codes",
                    report::count(n as u64)
                );
                let setup = paired::Setup {
                    linkd: &linkd,
                    backend: &backend,
                    workdir: workdir.path(),
                    load: &load,
                    wrk: wrk.as_deref(),
                    markdown: options.markdown,
                };
                paired::poll(&setup, n, options.rounds).await?;
            }
        }
    }

    if wants(Scenario::Authorize) {
        println!("\n== device authorizations: POST /oauth/device_authorization");
        let row = authorize_run(&run).await?;
        println!(
            "{}",
            report::load_line("device authorizations", &row.result, report.bare.as_ref())
        );
        if let Some(outside) = &row.wrk {
            println!(
                "{}",
                report::wrk_line(
                    "device authorizations, wrk",
                    outside,
                    report.bare_wrk.as_ref()
                )
            );
        }
        if let Some(db) = &row.db {
            println!("  {}", report::db_line("per device authorization", db));
        }
        report.authorize = Some(row);
    }

    if wants(Scenario::Approve) {
        println!(
            "\n== approval to tokens: {} devices, a person approving on /link",
            options.approvals
        );
        let url = backend.fresh().await?;
        seed::seed(&url, 0).await?;
        // A normal polling interval: the figure is what a real device sees.
        let cluster = cluster::Cluster::start(
            &linkd,
            &url,
            instances,
            5,
            workdir.path(),
            "approve",
            RateLimits::Off,
        )
        .await;
        let result = match cluster {
            Ok(cluster) => {
                let result = approve::run(&cluster.base_urls(), options.approvals).await;
                cluster.stop().await?;
                result
            }
            Err(e) => Err(e),
        };
        backend.drop_database().await?;
        let result = result?;
        println!("{}", report::approval_line(&result));
        report.approve = Some(result);
    }

    if wants(Scenario::Links) {
        println!(
            "\n== links: {} people approving, devices redeeming, devices refreshing",
            options.people
        );
        report.links = Some(links_run(&run, options.people.max(1)).await?);
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
        if wants(Scenario::Poll)
            || wants(Scenario::Authorize)
            || wants(Scenario::Approve)
            || wants(Scenario::Links)
        {
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

/// What every run of one invocation shares.
struct Run<'a> {
    linkd: &'a std::path::Path,
    backend: &'a Backend,
    workdir: &'a std::path::Path,
    load: &'a LoadConfig,
    instances: usize,
    wrk: Option<&'a std::path::Path>,
    seed_over_http: bool,
}

impl Run<'_> {
    /// The bench's load on `addrs`, then wrk's on the first of them when
    /// wrk runs: both views of one server, and how many answers they got
    /// between them (what the database's counters divide by).
    async fn both_views(
        &self,
        addrs: &[SocketAddr],
        pids: &[u32],
        probe: Option<&dbstats::DbProbe>,
        workload: &Arc<Workload>,
        outside: &wrk::WrkLoad<'_>,
    ) -> anyhow::Result<(load::LoadResult, Option<wrk::WrkResult>, u64)> {
        let result = load::run_spread(addrs, workload, self.load, pids, probe).await?;
        let mut answered = result.answered_in_all;
        let outside = match self.wrk {
            Some(wrk) => {
                let outside =
                    wrk::run(wrk, self.workdir, addrs[0], outside, self.load, pids).await?;
                answered += outside.requests_in_all;
                Some(outside)
            }
            None => None,
        };
        Ok((result, outside, answered))
    }

    async fn start(
        &self,
        url: &str,
        poll_interval: u32,
        label: &str,
    ) -> anyhow::Result<cluster::Cluster> {
        cluster::Cluster::start(
            self.linkd,
            url,
            self.instances,
            poll_interval,
            self.workdir,
            label,
            RateLimits::Off,
        )
        .await
    }

    /// Runs `work` on a cluster started over `url`; on PostgreSQL also
    /// counts what it cost the database (see `dbstats`), `work` saying how
    /// many operations it made.
    async fn counted<T, F, Fut>(
        &self,
        url: &str,
        label: &str,
        poll_interval: u32,
        work: F,
    ) -> anyhow::Result<(T, Option<dbstats::DbCost>)>
    where
        F: FnOnce(cluster::Cluster) -> Fut,
        Fut: Future<Output = anyhow::Result<(T, u64)>>,
    {
        let run = async {
            let cluster = self.start(url, poll_interval, label).await?;
            work(cluster).await
        };
        match self.backend.probe(url) {
            None => Ok((run.await?.0, None)),
            Some(probe) => {
                probe.enable_statements().await;
                let idle = |lived: Duration| async move {
                    let cluster = self
                        .start(url, poll_interval, &format!("{label}-idle"))
                        .await?;
                    tokio::time::sleep(lived).await;
                    cluster.stop().await
                };
                let (result, cost) = dbstats::measure(&probe, || run, idle).await?;
                Ok((result, Some(cost)))
            }
        }
    }
}

/// Runs `work`, then stops the cluster whatever came of it.
async fn then_stop<T>(
    cluster: cluster::Cluster,
    work: impl Future<Output = anyhow::Result<T>>,
) -> anyhow::Result<T> {
    let result = work.await;
    cluster.stop().await?;
    result
}

/// One polling run: a fresh database with `n` pending codes, linkd started
/// on it, its memory read before and after the load; wrk's view of the
/// same server when it runs.
async fn poll_run(run: &Run<'_>, n: usize, report: &Report) -> anyhow::Result<PollRow> {
    let url = run.backend.fresh().await?;
    let outcome = async {
        let seeding = std::time::Instant::now();
        let seeded = seed::seed(&url, if run.seed_over_http { 0 } else { n }).await?;
        if !run.seed_over_http {
            println!(
                "seeded {} pending device authorizations through the store in {:.1} s",
                report::count(n as u64),
                seeding.elapsed().as_secs_f64()
            );
        }
        let probe = run.backend.probe(&url);
        let work = |cluster: cluster::Cluster| async move {
            let addrs = cluster.addrs();
            let pids = cluster.pids();
            let work = async {
                let codes = if run.seed_over_http {
                    let seeding = std::time::Instant::now();
                    let codes = seed::over_http(&addrs, n, run.load.connections).await?;
                    println!(
                        "seeded {} pending device authorizations over HTTP in {:.1} s",
                        report::count(n as u64),
                        seeding.elapsed().as_secs_f64()
                    );
                    codes
                } else {
                    seeded
                };
                let rss_start = cluster::rss_kib(&pids);
                if !codes.is_empty() {
                    server::check_parity(addrs[0], codes.get(0)).await;
                }
                let codes_file = run.workdir.join("codes.txt");
                if run.wrk.is_some() {
                    wrk::write_codes(&codes, &codes_file)?;
                }
                let workload = Arc::new(Workload::Poll(codes.into()));
                let (result, outside, operations) = run
                    .both_views(
                        &addrs,
                        &pids,
                        probe.as_ref(),
                        &workload,
                        &wrk::WrkLoad::Poll(&codes_file),
                    )
                    .await?;
                let rss_end = cluster::rss_kib(&pids);
                let row = PollRow {
                    codes: n,
                    result,
                    rss_start_kib: rss_start,
                    rss_end_kib: rss_end,
                    wrk: outside,
                    db: None,
                };
                Ok((row, operations))
            };
            then_stop(cluster, work).await
        };
        let (mut row, db) = run.counted(&url, &format!("poll-{n}"), 0, work).await?;
        // Seeding over HTTP writes as it goes: its cost is not a poll's.
        row.db = db.filter(|_| !run.seed_over_http);
        anyhow::Ok(row)
    }
    .await;
    run.backend.drop_database().await?;
    let row = outcome?;
    println!("{}", report::poll_line(&row, report.bare.as_ref()));
    if let Some(outside) = &row.wrk {
        println!(
            "{}",
            report::wrk_line("polling, wrk", outside, report.bare_wrk.as_ref())
        );
        println!(
            "  {}",
            report::agreement(
                &row.result,
                outside,
                report.bare.as_ref(),
                report.bare_wrk.as_ref(),
                report.paired
            )
        );
    }
    if let Some(db) = &row.db {
        println!("  {}", report::db_line("per poll", db));
    }
    Ok(row)
}

/// Device authorizations, each view on a fresh database of its own: a
/// run adds hundreds of thousands of codes, and a view that came second
/// on the same database would insert into a table and indexes that much
/// bigger (wrk's view then trailed the bench's by 12% in 60 s runs).
async fn authorize_run(run: &Run<'_>) -> anyhow::Result<report::AuthorizeRow> {
    let (result, db) = authorize_view(run, true, |addrs, pids, probe| async move {
        let result = load::run_spread(
            &addrs,
            &Arc::new(Workload::Authorize),
            run.load,
            &pids,
            probe.as_ref(),
        )
        .await?;
        let answered = result.answered_in_all;
        Ok((result, answered))
    })
    .await?;
    let wrk = match run.wrk {
        Some(wrk) => Some(
            authorize_view(run, false, |addrs, pids, _| async move {
                let outside = wrk::run(
                    wrk,
                    run.workdir,
                    addrs[0],
                    &wrk::WrkLoad::Authorize,
                    run.load,
                    &pids,
                )
                .await?;
                let answered = outside.requests_in_all;
                Ok((outside, answered))
            })
            .await?
            .0,
        ),
        None => None,
    };
    Ok(report::AuthorizeRow { result, wrk, db })
}

/// One view of device authorizations: `work` given linkd's addresses and
/// process ids (and on PostgreSQL the database's probe), on a fresh
/// database dropped afterwards. What it cost the database is measured
/// when `count` says so (the bench's view; wrk's would only repeat it).
async fn authorize_view<T, F, Fut>(
    run: &Run<'_>,
    count: bool,
    work: F,
) -> anyhow::Result<(T, Option<dbstats::DbCost>)>
where
    F: FnOnce(Vec<SocketAddr>, Vec<u32>, Option<dbstats::DbProbe>) -> Fut,
    Fut: Future<Output = anyhow::Result<(T, u64)>>,
{
    let url = run.backend.fresh().await?;
    let outcome = async {
        seed::seed(&url, 0).await?;
        let probe = run.backend.probe(&url);
        let on = |cluster: cluster::Cluster| async move {
            let (addrs, pids) = (cluster.addrs(), cluster.pids());
            then_stop(cluster, work(addrs, pids, probe)).await
        };
        if count {
            run.counted(&url, "authorize", 0, on).await
        } else {
            let cluster = run.start(&url, 0, "authorize").await?;
            Ok((on(cluster).await?.0, None))
        }
    }
    .await;
    run.backend.drop_database().await?;
    outcome
}

/// Pending codes the links scenario seeds for its people to approve: more
/// than they approve in any run.
const LINK_CODES: usize = 20_000;

/// The links scenario: people approve, devices redeem, devices refresh,
/// each step on its own start of the servers so that the database's count
/// of each is its own.
async fn links_run(run: &Run<'_>, people: usize) -> anyhow::Result<report::LinksResult> {
    let url = run.backend.fresh().await?;
    let outcome = async {
        let codes = &seed::seed(&url, LINK_CODES).await?;
        let sessions = &seed::seed_people(&url, people).await?;
        let duration = run.load.duration;
        let ((approvals, approved), approvals_db) = run
            .counted(&url, "approvals", 0, |cluster| async move {
                let (urls, pids) = (cluster.base_urls(), cluster.pids());
                let work = links::approve(&urls, &pids, sessions, codes.len(), duration);
                let (result, approved) = then_stop(cluster, work).await?;
                let done = result.done;
                Ok(((result, approved), done))
            })
            .await?;
        println!(
            "approvals: {}",
            report::step_line(&approvals, approvals_db.as_ref())
        );
        let connections = run.load.connections;
        let approved = &approved;
        let ((redemptions, refresh_tokens), redemptions_db) = run
            .counted(&url, "redemptions", 0, |cluster| async move {
                let (urls, pids) = (cluster.base_urls(), cluster.pids());
                let work = links::redeem(&urls, &pids, codes, approved, connections);
                let (result, tokens) = then_stop(cluster, work).await?;
                let done = result.done;
                Ok(((result, tokens), done))
            })
            .await?;
        println!(
            "redemptions: {}",
            report::step_line(&redemptions, redemptions_db.as_ref())
        );
        let (refreshes, refreshes_db) = run
            .counted(&url, "refreshes", 0, |cluster| async move {
                let (urls, pids) = (cluster.base_urls(), cluster.pids());
                let work = links::refresh(&urls, &pids, refresh_tokens, connections, duration);
                let result = then_stop(cluster, work).await?;
                let done = result.done;
                Ok((result, done))
            })
            .await?;
        println!(
            "refreshes: {}",
            report::step_line(&refreshes, refreshes_db.as_ref())
        );
        anyhow::Ok(report::LinksResult {
            approvals: (approvals, approvals_db),
            redemptions: (redemptions, redemptions_db),
            refreshes: (refreshes, refreshes_db),
        })
    }
    .await;
    run.backend.drop_database().await?;
    outcome
}

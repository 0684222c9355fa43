//! Turning measurements into lines a person reads while the bench runs, a
//! summary at the end, and a Markdown table for BENCH.md.

use std::fmt::Write as _;
use std::time::Duration;

use crate::approve::ApprovalResult;
use crate::dbstats::DbCost;
use crate::links::StepResult;
use crate::load::{LoadConfig, LoadResult};
use crate::machine::Machine;
use crate::wrk::{self, WrkResult};

/// One polling run.
#[derive(Debug)]
pub struct PollRow {
    pub codes: usize,
    pub result: LoadResult,
    /// linkd's resident memory once seeded and started, and after the load
    /// (all instances together).
    pub rss_start_kib: Option<u64>,
    pub rss_end_kib: Option<u64>,
    /// wrk's view of the same server, after the bench's.
    pub wrk: Option<WrkResult>,
    /// What the database did per poll (PostgreSQL).
    pub db: Option<DbCost>,
}

/// The device-authorization run.
#[derive(Debug)]
pub struct AuthorizeRow {
    pub result: LoadResult,
    pub wrk: Option<WrkResult>,
    pub db: Option<DbCost>,
}

/// The links scenario: each step with what it cost the database.
#[derive(Debug)]
pub struct LinksResult {
    pub approvals: (StepResult, Option<DbCost>),
    pub redemptions: (StepResult, Option<DbCost>),
    pub refreshes: (StepResult, Option<DbCost>),
}

/// Everything one invocation measured.
pub struct Report {
    machine: Machine,
    backend: String,
    connections: usize,
    duration: Duration,
    instances: usize,
    pub bare: Option<LoadResult>,
    pub bare_wrk: Option<WrkResult>,
    pub poll: Vec<PollRow>,
    pub authorize: Option<AuthorizeRow>,
    pub approve: Option<ApprovalResult>,
    pub links: Option<LinksResult>,
    /// Paired rounds follow the single runs (`--rounds`): they, not a
    /// single run's two views, say whether the views agree.
    pub paired: bool,
}

impl Report {
    pub fn new(machine: Machine, backend: String, load: &LoadConfig, instances: usize) -> Self {
        Report {
            machine,
            backend,
            connections: load.connections,
            duration: load.duration,
            instances,
            bare: None,
            bare_wrk: None,
            poll: Vec::new(),
            authorize: None,
            approve: None,
            links: None,
            paired: false,
        }
    }

    /// The figures again, one line each, after the run's chatter.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let bare = self.bare.as_ref();
        let bare_wrk = self.bare_wrk.as_ref();
        if let Some(bare) = bare {
            let _ = writeln!(out, "{}", load_line("bare", bare, None));
        }
        if let Some(outside) = bare_wrk {
            let _ = writeln!(out, "{}", wrk_line("bare, wrk", outside, None));
        }
        for row in &self.poll {
            let _ = writeln!(out, "{}", poll_line(row, bare));
            if let Some(outside) = &row.wrk {
                let _ = writeln!(out, "{}", wrk_line("polling, wrk", outside, bare_wrk));
                let _ = writeln!(
                    out,
                    "  {}",
                    agreement(&row.result, outside, bare, bare_wrk, self.paired)
                );
            }
            if let Some(db) = &row.db {
                let _ = writeln!(out, "  {}", db_line("per poll", db));
            }
        }
        if let Some(row) = &self.authorize {
            let _ = writeln!(
                out,
                "{}",
                load_line("device authorizations", &row.result, bare)
            );
            if let Some(outside) = &row.wrk {
                let _ = writeln!(
                    out,
                    "{}",
                    wrk_line("device authorizations, wrk", outside, bare_wrk)
                );
            }
            if let Some(db) = &row.db {
                let _ = writeln!(out, "  {}", db_line("per device authorization", db));
            }
        }
        if let Some(result) = &self.approve {
            let _ = writeln!(out, "{}", approval_line(result));
        }
        if let Some(links) = &self.links {
            out.push_str(&links_lines(links));
        }
        out
    }

    /// A results section to paste into BENCH.md.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{}  ", self.machine);
        let _ = writeln!(
            out,
            "Store: {}; {} linkd instance{}; {} connections; {} s measured per run; load generator on the same machine.\n",
            self.backend,
            self.instances,
            if self.instances == 1 { "" } else { "s" },
            self.connections,
            self.duration.as_secs_f64()
        );
        let _ = writeln!(
            out,
            "| run | req/s | vs bare | p50 | p99 | p99.9 | server CPU/req | linkd RSS start → end | answers |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|---|");
        let bare = self.bare.as_ref();
        let row = |out: &mut String, name: &str, r: &LoadResult, rss: String| {
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} | {} | {rss} | {} |",
                count(r.rate() as u64),
                bare.map_or("–".into(), |b| format!("{:.2}x", ratio(r, b))),
                latency(r.latency_us(0.5)),
                latency(r.latency_us(0.99)),
                latency(r.latency_us(0.999)),
                r.server_cpu_us
                    .map_or("–".into(), |us| format!("{us:.0} µs")),
                mix_short(r),
            );
        };
        if let Some(b) = bare {
            row(&mut out, "bare baseline", b, "–".into());
        }
        for p in &self.poll {
            let rss = format!("{} → {}", mib(p.rss_start_kib), mib(p.rss_end_kib));
            row(
                &mut out,
                &format!("polling, {} pending", count(p.codes as u64)),
                &p.result,
                rss,
            );
        }
        if let Some(a) = &self.authorize {
            row(&mut out, "device authorizations", &a.result, "–".into());
        }
        out.push_str(&self.markdown_wrk());
        out.push_str(&self.markdown_db());
        if let Some(a) = &self.approve {
            let _ = writeln!(
                out,
                "\nApproval → tokens ({} devices, polling interval {} s): median {}, p99 {}{}.",
                a.latencies.len(),
                a.interval_secs,
                a.quantile(0.5).map_or("–".into(), duration),
                a.quantile(0.99).map_or("–".into(), duration),
                if a.failures.is_empty() {
                    String::new()
                } else {
                    format!(", {} failed", a.failures.len())
                }
            );
        }
        out
    }
}

impl Report {
    /// Both generators side by side, when wrk ran.
    fn markdown_wrk(&self) -> String {
        let mut out = String::new();
        let Some(bare_wrk) = &self.bare_wrk else {
            return out;
        };
        let bare = self.bare.as_ref();
        let _ = writeln!(
            out,
            "\n| run | bench req/s | vs bare | wrk req/s | vs bare | p99 bench / wrk | server CPU/req bench / wrk | |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---|");
        let cpu = |us: Option<f64>| us.map_or("–".into(), |us| format!("{us:.0} µs"));
        let line = |out: &mut String, name: &str, r: &LoadResult, w: &WrkResult, poll: bool| {
            let ours = bare.map(|b| ratio(r, b));
            let theirs = wrk_ratio(w, Some(bare_wrk));
            let verdict = if poll {
                match (ours, theirs) {
                    (Some(a), Some(b)) if disagree(a, b) => "**disagree**",
                    (Some(_), Some(_)) => "agree",
                    _ => "",
                }
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} / {} | {} / {} | {verdict} |",
                count(r.rate() as u64),
                ours.map_or("–".into(), |x| format!("{x:.2}x")),
                count(w.rate() as u64),
                theirs.map_or("–".into(), |x| format!("{x:.2}x")),
                latency(r.latency_us(0.99)),
                latency(w.p99_us),
                cpu(r.server_cpu_us),
                cpu(w.server_cpu_us),
            );
        };
        if let Some(b) = bare {
            line(&mut out, "bare baseline", b, bare_wrk, false);
        }
        for p in &self.poll {
            if let Some(w) = &p.wrk {
                line(
                    &mut out,
                    &format!("polling, {} pending", count(p.codes as u64)),
                    &p.result,
                    w,
                    true,
                );
            }
        }
        if let Some(a) = &self.authorize
            && let Some(w) = &a.wrk
        {
            line(&mut out, "device authorizations", &a.result, w, false);
        }
        out
    }

    /// What the database did per operation, on PostgreSQL.
    fn markdown_db(&self) -> String {
        let mut rows: Vec<(String, &DbCost, Option<f64>)> = Vec::new();
        for p in &self.poll {
            if let Some(db) = &p.db {
                rows.push((
                    format!("poll ({} pending)", count(p.codes as u64)),
                    db,
                    p.result.db_cpu_us,
                ));
            }
        }
        if let Some(a) = &self.authorize
            && let Some(db) = &a.db
        {
            rows.push(("device authorization".into(), db, a.result.db_cpu_us));
        }
        if let Some(l) = &self.links {
            for (name, (_, db)) in [
                ("approval (pages)", &l.approvals),
                ("redemption (first poll after approval)", &l.redemptions),
                ("refresh", &l.refreshes),
            ] {
                if let Some(db) = db {
                    rows.push((name.into(), db, None));
                }
            }
        }
        let mut out = String::new();
        if rows.is_empty() {
            return out;
        }
        let _ = writeln!(
            out,
            "\n| per | transactions | statements | table reads | rows written | WAL bytes | database CPU |"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|");
        for (name, db, cpu) in rows {
            let _ = writeln!(
                out,
                "| {name} | {:.3} | {} | {:.3} | {:.3} | {} | {} |",
                db.transactions(),
                db.statements().map_or("–".into(), |v| format!("{v:.3}")),
                db.table_reads(),
                db.rows_written(),
                db.wal_bytes().map_or("–".into(), |v| format!("{v:.0}")),
                cpu.map_or("–".into(), |us| format!("{us:.0} µs")),
            );
        }
        if let Some(l) = &self.links {
            let _ = writeln!(out);
            for (name, (step, _)) in [
                ("approvals", &l.approvals),
                ("redemptions", &l.redemptions),
                ("refreshes", &l.refreshes),
            ] {
                let _ = writeln!(out, "- {name}: {}", step_summary(step));
            }
        }
        out
    }
}

/// Whether two ratios to bare are further apart than `wrk::AGREE`.
fn disagree(a: f64, b: f64) -> bool {
    let larger = a.max(b);
    larger > 0.0 && (a - b).abs() / larger > wrk::AGREE
}

pub fn wrk_ratio(result: &WrkResult, bare: Option<&WrkResult>) -> Option<f64> {
    let bare = bare?;
    (bare.rate() > 0.0).then(|| result.rate() / bare.rate())
}

/// One wrk run, as `load_line` reads one of the bench's.
pub fn wrk_line(name: &str, result: &WrkResult, bare: Option<&WrkResult>) -> String {
    let mut line = format!("{name}: {} req/s", count(result.rate() as u64));
    if let (Some(r), Some(bare)) = (wrk_ratio(result, bare), bare) {
        let _ = write!(
            line,
            " = {r:.2}x wrk's bare ({})",
            count(bare.rate() as u64)
        );
    }
    let _ = write!(
        line,
        "; p50 {}, p99 {}, p99.9 {}",
        latency(result.p50_us),
        latency(result.p99_us),
        latency(result.p999_us)
    );
    if let Some(us) = result.server_cpu_us {
        let _ = write!(line, "; server CPU {us:.0} µs/req");
    }
    if let Some(us) = result.client_cpu_us {
        let _ = write!(line, ", wrk {us:.0} µs/req");
    }
    if let Some(idle) = result.idle {
        let _ = write!(line, ", machine {:.0}% idle", idle * 100.0);
    }
    if result.socket_errors > 0 || result.unexpected > 0 {
        let _ = write!(
            line,
            "\n  !!! wrk: {} socket errors, {} unexpected answers in the checked warm-up",
            result.socket_errors, result.unexpected
        );
    }
    line
}

/// The two views of one polling run set against each other. Each is a
/// ratio to its own bare run, measured minutes earlier; on a machine whose
/// speed moves between windows that alone can set them apart, so when
/// paired rounds follow (`paired`) they decide and this is only shown.
pub fn agreement(
    ours: &LoadResult,
    theirs: &WrkResult,
    bare: Option<&LoadResult>,
    bare_wrk: Option<&WrkResult>,
    paired: bool,
) -> String {
    let (Some(bare), Some(a)) = (bare, wrk_ratio(theirs, bare_wrk)) else {
        return "views: no bare run to compare with".into();
    };
    let b = ratio(ours, bare);
    if paired {
        format!(
            "single runs: the bench says {b:.2}x bare, wrk {a:.2}x (bare minutes earlier); the paired rounds compare the views"
        )
    } else {
        views(b, a)
    }
}

/// Whether the bench's ratio to bare (`b`) and wrk's (`a`) agree.
pub fn views(b: f64, a: f64) -> String {
    if disagree(a, b) {
        format!(
            "!!! the views DISAGREE: the bench says {b:.2}x bare, wrk {a:.2}x ({:.0}% apart, more than {:.0}%)",
            (a - b).abs() / a.max(b) * 100.0,
            wrk::AGREE * 100.0
        )
    } else {
        format!("views agree: the bench says {b:.2}x bare, wrk {a:.2}x")
    }
}

/// What the database did per operation.
pub fn db_line(per: &str, db: &DbCost) -> String {
    let mut line = format!(
        "database {per}: {:.3} transactions, {:.3} table reads, {:.3} rows written",
        db.transactions(),
        db.table_reads(),
        db.rows_written()
    );
    if let Some(statements) = db.statements() {
        let _ = write!(line, ", {statements:.3} statements");
    }
    if let Some(wal) = db.wal_bytes() {
        let _ = write!(line, ", {wal:.0} WAL bytes (server-wide)");
    }
    let _ = write!(
        line,
        " over {} operations (idle: {} transactions taken off)",
        count(db.operations),
        db.idle.transactions
    );
    line
}

fn step_summary(step: &StepResult) -> String {
    let mut line = format!(
        "{} in {:.1} s = {:.0}/s; p50 {}, p99 {}",
        count(step.done),
        step.elapsed.as_secs_f64(),
        step.rate(),
        latency(step.latency.value_at_quantile(0.5)),
        latency(step.latency.value_at_quantile(0.99)),
    );
    if let Some(us) = step.server_cpu_us {
        let _ = write!(line, "; server CPU {us:.0} µs each");
    }
    if step.failures > 0 {
        let _ = write!(
            line,
            "\n  !!! {} FAILED; first: {}",
            step.failures,
            step.first_failure.as_deref().unwrap_or("?")
        );
    }
    line
}

pub fn step_line(step: &StepResult, db: Option<&DbCost>) -> String {
    let mut line = step_summary(step);
    if let Some(db) = db {
        let _ = write!(line, "\n  {}", db_line("per step", db));
    }
    line
}

pub fn links_lines(links: &LinksResult) -> String {
    let mut out = String::new();
    for (name, (step, db)) in [
        ("approvals", &links.approvals),
        ("redemptions", &links.redemptions),
        ("refreshes", &links.refreshes),
    ] {
        let _ = writeln!(out, "{name}: {}", step_line(step, db.as_ref()));
    }
    out
}

/// `result`'s rate as a multiple of the baseline's.
pub fn ratio(result: &LoadResult, bare: &LoadResult) -> f64 {
    if bare.rate() > 0.0 {
        result.rate() / bare.rate()
    } else {
        0.0
    }
}

/// One load run: rate (and its ratio to bare), latencies, CPU, and the
/// answer mix, with anything unexpected called out.
pub fn load_line(name: &str, result: &LoadResult, bare: Option<&LoadResult>) -> String {
    let mut line = format!("{name}: {} req/s", count(result.rate() as u64));
    if let Some(bare) = bare {
        let _ = write!(
            line,
            " = {:.2}x bare ({})",
            ratio(result, bare),
            count(bare.rate() as u64)
        );
    }
    let _ = write!(
        line,
        "; p50 {}, p99 {}, p99.9 {}",
        latency(result.latency_us(0.5)),
        latency(result.latency_us(0.99)),
        latency(result.latency_us(0.999)),
    );
    if let Some(us) = result.server_cpu_us {
        let _ = write!(line, "; server CPU {us:.0} µs/req");
        if let Some(bare_us) = bare.and_then(|b| b.server_cpu_us) {
            let _ = write!(line, " (bare {bare_us:.0})");
        }
    }
    if let Some(us) = result.client_cpu_us {
        let _ = write!(line, ", load generator {us:.0} µs/req");
    }
    if let Some(idle) = result.idle {
        let _ = write!(line, ", machine {:.0}% idle", idle * 100.0);
    }
    let _ = write!(line, "\n  answers: {}", mix_long(result));
    if !result.all_expected() {
        let _ = write!(
            line,
            "\n  !!! NOT ALL ANSWERS WERE {:?}: the figures above do not measure the intended path",
            result.expected
        );
    }
    line
}

pub fn poll_line(row: &PollRow, bare: Option<&LoadResult>) -> String {
    format!(
        "{}\n  linkd RSS: {} after seeding and start-up, {} after polling",
        load_line(
            &format!("polling, {} pending codes", count(row.codes as u64)),
            &row.result,
            bare
        ),
        mib(row.rss_start_kib),
        mib(row.rss_end_kib),
    )
}

pub fn approval_line(result: &ApprovalResult) -> String {
    let mut line = format!(
        "approval → tokens: median {}, p99 {} over {} devices (polling interval {} s)",
        result.quantile(0.5).map_or("–".into(), duration),
        result.quantile(0.99).map_or("–".into(), duration),
        result.latencies.len(),
        result.interval_secs
    );
    if !result.failures.is_empty() {
        let _ = write!(
            line,
            "\n  !!! {} DEVICES FAILED; first: {}",
            result.failures.len(),
            result.failures[0]
        );
    }
    line
}

/// "99.98% 400 authorization_pending (213,450), 0.02% 400 slow_down (42)"
fn mix_long(result: &LoadResult) -> String {
    let total = result.mix.values().sum::<u64>() + result.transport_errors;
    let mut parts: Vec<String> = result
        .mix
        .iter()
        .map(|(outcome, n)| format!("{} {outcome} ({})", percent(*n, total), count(*n)))
        .collect();
    if result.transport_errors > 0 {
        parts.push(format!(
            "{} no answer ({})",
            percent(result.transport_errors, total),
            count(result.transport_errors)
        ));
    }
    if parts.is_empty() {
        "none".into()
    } else {
        parts.join(", ")
    }
}

/// For the table: the expected answer's share, and what else came.
fn mix_short(result: &LoadResult) -> String {
    let share = format!(
        "{:.2}% {}",
        result.share(result.expected) * 100.0,
        result.expected
    );
    if result.all_expected() {
        share
    } else {
        format!("**{}**", mix_long(result))
    }
}

fn percent(n: u64, total: u64) -> String {
    if total == 0 {
        return "0%".into();
    }
    format!("{:.2}%", n as f64 * 100.0 / total as f64)
}

/// 1234567 → "1,234,567".
pub fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A latency in microseconds, in the unit that reads best: "850 µs",
/// "1.25 ms", "12.4 ms", "1.50 s".
pub fn latency(us: u64) -> String {
    match us {
        0..1_000 => format!("{us} µs"),
        1_000..10_000 => format!("{:.2} ms", us as f64 / 1e3),
        10_000..1_000_000 => format!("{:.1} ms", us as f64 / 1e3),
        _ => format!("{:.2} s", us as f64 / 1e6),
    }
}

fn duration(d: Duration) -> String {
    latency(d.as_micros() as u64)
}

fn mib(kib: Option<u64>) -> String {
    kib.map_or("–".into(), |kib| {
        format!("{:.1} MiB", kib as f64 / 1024.0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_get_thousands_separators() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(21_345), "21,345");
        assert_eq!(count(1_000_000), "1,000,000");
    }

    #[test]
    fn latencies_pick_a_readable_unit() {
        assert_eq!(latency(1), "1 µs");
        assert_eq!(latency(850), "850 µs");
        assert_eq!(latency(1_250), "1.25 ms");
        assert_eq!(latency(12_449), "12.4 ms");
        assert_eq!(latency(1_500_000), "1.50 s");
        assert_eq!(duration(Duration::from_millis(2500)), "2.50 s");
    }

    #[test]
    fn views_more_than_a_tenth_apart_disagree() {
        assert!(views(0.62, 0.64).starts_with("views agree"));
        assert!(views(0.64, 0.62).starts_with("views agree"));
        let apart = views(0.62, 0.82);
        assert!(
            apart.contains("DISAGREE") && apart.contains("24% apart"),
            "{apart}"
        );
        assert!(views(0.0, 0.0).starts_with("views agree"));
    }

    #[test]
    fn percentages_of_nothing_are_zero() {
        assert_eq!(percent(1, 0), "0%");
        assert_eq!(percent(1, 3), "33.33%");
    }
}

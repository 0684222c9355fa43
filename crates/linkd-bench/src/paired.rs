//! Paired rounds (`--rounds N`): the bare server and linkd both running,
//! taking turns under the same load, round after round. A single run sets
//! linkd against a baseline measured a minute earlier, and on a small
//! shared machine the speed of both drifts from minute to minute; the
//! median ratio of adjacent windows is the steadier figure. With wrk
//! installed each round also has wrk's pair of windows, so the two views'
//! medians are compared on the same minutes.

use std::path::Path;
use std::sync::Arc;

use crate::load::{self, LoadConfig, LoadResult, Workload};
use crate::report::{self, count};
use crate::seed;
use crate::server::{self, Backend};
use crate::wrk::{self, WrkResult};

/// One round: the bare window, then linkd's; then wrk's two, when it runs.
struct Round {
    bare: LoadResult,
    linkd: LoadResult,
    wrk: Option<(WrkResult, WrkResult)>,
}

impl Round {
    fn ratio(&self) -> f64 {
        report::ratio(&self.linkd, &self.bare)
    }

    fn wrk_ratio(&self) -> Option<f64> {
        let (bare, linkd) = self.wrk.as_ref()?;
        report::wrk_ratio(linkd, Some(bare))
    }
}

/// Where the paired rounds run.
pub struct Setup<'a> {
    pub linkd: &'a Path,
    pub backend: &'a Backend,
    pub workdir: &'a Path,
    pub load: &'a LoadConfig,
    /// wrk, for its view in every round.
    pub wrk: Option<&'a Path>,
    pub markdown: bool,
}

/// Polls `n` pending codes for `rounds` paired rounds and prints each round
/// and the median ratio of each view (and a Markdown table with
/// `markdown`).
pub async fn poll(setup: &Setup<'_>, n: usize, rounds: usize) -> anyhow::Result<()> {
    let Setup {
        linkd,
        backend,
        workdir,
        load,
        ..
    } = *setup;
    let url = backend.fresh().await?;
    let seeded = seed::seed(&url, n).await?;
    let codes_file = workdir.join(format!("paired-{n}-codes.txt"));
    if setup.wrk.is_some() {
        wrk::write_codes(&seeded, &codes_file)?;
    }
    let codes = Arc::new(Workload::Poll(seeded.into()));
    let result = async {
        let linkd = server::spawn_linkd(
            linkd,
            &url,
            0,
            workdir,
            &format!("paired-{n}"),
            server::RateLimits::Off,
        )
        .await?;
        let bare = match server::spawn_bare(workdir).await {
            Ok(bare) => bare,
            Err(e) => {
                linkd.stop().await?;
                return Err(e);
            }
        };
        let mut done = Vec::with_capacity(rounds);
        let mut outcome = Ok(());
        for i in 1..=rounds {
            let round = async {
                let bare_result = load::run(bare.addr, &codes, load, bare.pid()).await?;
                let linkd_result = load::run(linkd.addr, &codes, load, linkd.pid()).await?;
                let wrk = match setup.wrk {
                    Some(path) => {
                        let outside = wrk::WrkLoad::Poll(&codes_file);
                        let run = |addr, pid: u32| {
                            let outside = &outside;
                            async move {
                                wrk::run(path, workdir, addr, outside, load, &[pid]).await
                            }
                        };
                        let on_bare = run(bare.addr, bare.pid()).await?;
                        let on_linkd = run(linkd.addr, linkd.pid()).await?;
                        Some((on_bare, on_linkd))
                    }
                    None => None,
                };
                anyhow::Ok(Round {
                    bare: bare_result,
                    linkd: linkd_result,
                    wrk,
                })
            }
            .await;
            match round {
                Ok(round) => {
                    println!("{}", round_line(i, &round));
                    done.push(round);
                }
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            }
        }
        bare.stop().await?;
        linkd.stop().await?;
        outcome.map(|()| done)
    }
    .await;
    backend.drop_database().await?;
    let done = result?;
    let ours = spread(done.iter().map(Round::ratio).collect());
    if let Some((mid, low, high)) = ours {
        println!(
            "paired rounds, {} pending codes: median {mid:.2}x bare over {} rounds ({low:.2}-{high:.2}x)",
            count(n as u64),
            done.len(),
        );
    }
    let theirs = spread(done.iter().filter_map(Round::wrk_ratio).collect());
    if let Some((mid, low, high)) = theirs {
        println!(
            "paired rounds, wrk: median {mid:.2}x wrk's bare over {} rounds ({low:.2}-{high:.2}x)",
            done.len(),
        );
    }
    if let (Some((ours, ..)), Some((theirs, ..))) = (ours, theirs) {
        println!("  {}", report::views(ours, theirs));
    }
    if setup.markdown {
        println!("\n{}", table(n, &done));
    }
    Ok(())
}

/// The median, lowest and highest of `ratios`; `None` without any.
fn spread(mut ratios: Vec<f64>) -> Option<(f64, f64, f64)> {
    ratios.sort_by(f64::total_cmp);
    Some((median(&ratios), *ratios.first()?, *ratios.last()?))
}

/// The middle value of sorted `values` (the mean of the two middle ones for
/// an even count).
fn median(values: &[f64]) -> f64 {
    match values.len() {
        0 => 0.0,
        len if len % 2 == 1 => values[len / 2],
        len => (values[len / 2 - 1] + values[len / 2]) / 2.0,
    }
}

/// A round's figures as text: bare and linkd req/s, the ratio, linkd's p99,
/// and server CPU per request for linkd and bare.
fn figures(round: &Round) -> [String; 6] {
    let cpu = |r: &LoadResult| micros(r.server_cpu_us);
    [
        count(round.bare.rate() as u64),
        count(round.linkd.rate() as u64),
        format!("{:.2}x", round.ratio()),
        report::latency(round.linkd.latency_us(0.99)),
        cpu(&round.linkd),
        cpu(&round.bare),
    ]
}

fn micros(us: Option<f64>) -> String {
    us.map_or("–".into(), |us| format!("{us:.0} µs"))
}

fn round_line(i: usize, round: &Round) -> String {
    let [bare, linkd, ratio, p99, cpu_linkd, cpu_bare] = figures(round);
    let mut line = format!(
        "round {i}: bare {bare} req/s, linkd {linkd} req/s = {ratio}; linkd p99 {p99}; \
         server CPU/req linkd {cpu_linkd} (bare {cpu_bare})"
    );
    if let (Some((bare, linkd)), Some(ratio)) = (&round.wrk, round.wrk_ratio()) {
        line.push_str(&format!(
            "\n  wrk: bare {} req/s, linkd {} req/s = {ratio:.2}x; wrk CPU/req linkd {} (bare {})",
            count(bare.rate() as u64),
            count(linkd.rate() as u64),
            micros(linkd.client_cpu_us),
            micros(bare.client_cpu_us),
        ));
        for (name, result) in [("bare", bare), ("linkd", linkd)] {
            if result.unexpected > 0 || result.socket_errors > 0 {
                line.push_str(&format!(
                    "\n  UNEXPECTED answers to wrk from {name}: {} unexpected, {} socket errors",
                    result.unexpected, result.socket_errors
                ));
            }
        }
    }
    for (name, result) in [("bare", &round.bare), ("linkd", &round.linkd)] {
        if !result.all_expected() {
            line.push_str(&format!(
                "\n  UNEXPECTED answers from {name}: {:?}, {} without an answer",
                result.mix, result.transport_errors
            ));
        }
    }
    line
}

fn table(n: usize, rounds: &[Round]) -> String {
    let mut out = format!(
        "Paired rounds, {} pending codes:\n\n\
         | round | bare req/s | linkd req/s | vs bare | linkd p99 | server CPU/req linkd (bare) | wrk: bare req/s | wrk: linkd req/s | wrk: vs bare |\n\
         |---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        count(n as u64)
    );
    for (i, round) in rounds.iter().enumerate() {
        let [bare, linkd, ratio, p99, cpu_linkd, cpu_bare] = figures(round);
        let (wrk_bare, wrk_linkd, wrk_ratio) = match (&round.wrk, round.wrk_ratio()) {
            (Some((b, l)), Some(r)) => (
                count(b.rate() as u64),
                count(l.rate() as u64),
                format!("{r:.2}x"),
            ),
            _ => ("–".into(), "–".into(), "–".into()),
        };
        out.push_str(&format!(
            "| {} | {bare} | {linkd} | {ratio} | {p99} | {cpu_linkd} ({cpu_bare}) | {wrk_bare} | {wrk_linkd} | {wrk_ratio} |\n",
            i + 1
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::median;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), 0.0);
        assert_eq!(median(&[0.4, 0.5, 0.9]), 0.5);
        assert_eq!(median(&[0.4, 0.5, 0.6, 0.9]), 0.55);
    }
}

//! Paired rounds (`--rounds N`): the bare server and linkd both running,
//! taking turns under the same load, round after round. A single run sets
//! linkd against a baseline measured a minute earlier, and on a small
//! shared machine the speed of both drifts from minute to minute; the
//! median ratio of adjacent windows is the steadier figure.

use std::path::Path;
use std::sync::Arc;

use crate::load::{self, LoadConfig, LoadResult, Workload};
use crate::report::{self, count};
use crate::seed;
use crate::server::{self, Backend};

/// One round: the bare window, then linkd's.
struct Round {
    bare: LoadResult,
    linkd: LoadResult,
}

impl Round {
    fn ratio(&self) -> f64 {
        if self.bare.rate() > 0.0 {
            self.linkd.rate() / self.bare.rate()
        } else {
            0.0
        }
    }
}

/// Polls `n` pending codes for `rounds` paired rounds and prints each round
/// and the median ratio (and a Markdown table with `markdown`).
pub async fn poll(
    linkd: &Path,
    backend: &Backend,
    workdir: &Path,
    n: usize,
    load: &LoadConfig,
    rounds: usize,
    markdown: bool,
) -> anyhow::Result<()> {
    let url = backend.fresh().await?;
    let codes = Arc::new(Workload::Poll(seed::seed(&url, n).await?.into()));
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
                let bare = load::run(bare.addr, &codes, load, bare.pid()).await?;
                let linkd = load::run(linkd.addr, &codes, load, linkd.pid()).await?;
                anyhow::Ok(Round { bare, linkd })
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
    let mut ratios: Vec<f64> = done.iter().map(Round::ratio).collect();
    ratios.sort_by(f64::total_cmp);
    if let (Some(low), Some(high)) = (ratios.first(), ratios.last()) {
        println!(
            "paired rounds, {} pending codes: median {:.2}x bare over {} rounds ({:.2}-{:.2}x)",
            count(n as u64),
            median(&ratios),
            ratios.len(),
            low,
            high
        );
    }
    if markdown {
        println!("\n{}", table(n, &done));
    }
    Ok(())
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
    let cpu = |r: &LoadResult| {
        r.server_cpu_us
            .map_or("–".into(), |us| format!("{us:.0} µs"))
    };
    [
        count(round.bare.rate() as u64),
        count(round.linkd.rate() as u64),
        format!("{:.2}x", round.ratio()),
        report::latency(round.linkd.latency_us(0.99)),
        cpu(&round.linkd),
        cpu(&round.bare),
    ]
}

fn round_line(i: usize, round: &Round) -> String {
    let [bare, linkd, ratio, p99, cpu_linkd, cpu_bare] = figures(round);
    let mut line = format!(
        "round {i}: bare {bare} req/s, linkd {linkd} req/s = {ratio}; linkd p99 {p99}; \
         server CPU/req linkd {cpu_linkd} (bare {cpu_bare})"
    );
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
         | round | bare req/s | linkd req/s | vs bare | linkd p99 | server CPU/req linkd (bare) |\n\
         |---:|---:|---:|---:|---:|---:|\n",
        count(n as u64)
    );
    for (i, round) in rounds.iter().enumerate() {
        let [bare, linkd, ratio, p99, cpu_linkd, cpu_bare] = figures(round);
        out.push_str(&format!(
            "| {} | {bare} | {linkd} | {ratio} | {p99} | {cpu_linkd} ({cpu_bare}) |\n",
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

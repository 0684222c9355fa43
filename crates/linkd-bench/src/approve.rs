//! Scenario (c): how long a device waits for its tokens once a person has
//! approved it. Devices use the `linkd-device` library exactly as a device
//! app would; the person signs up once and approves each code through the
//! real pages (`/link`, then `/link/decide`), with cookies and CSRF tokens
//! like a browser.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::time::Instant;

use crate::seed::{CLIENT_ID, CLIENT_SCOPES};

/// Longest a device may wait for tokens after the approval before the
/// bench gives up on it (well past any polling interval).
const TOKEN_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug)]
pub struct ApprovalResult {
    /// From the decide page's answer to tokens in the device's hands,
    /// sorted.
    pub latencies: Vec<Duration>,
    /// The polling interval the devices were told.
    pub interval_secs: u64,
    pub failures: Vec<String>,
}

impl ApprovalResult {
    /// The latency at `quantile`, nearest rank.
    pub fn quantile(&self, quantile: f64) -> Option<Duration> {
        nearest_rank(&self.latencies, quantile)
    }
}

/// The nearest-rank quantile of sorted values.
fn nearest_rank(sorted: &[Duration], quantile: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (quantile * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Starts `count` devices at once; the person approves device `i` after
/// i/count of a polling interval, so the approvals fall evenly over the
/// devices' polling cycle rather than all just before (or after) a poll.
pub async fn run(server: &str, count: usize) -> anyhow::Result<ApprovalResult> {
    let person = reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .context("building the person's browser")?;
    sign_up(&person, server).await?;
    let device = linkd_device::Device::discover(server, CLIENT_ID)
        .await
        .context("reading the server's metadata")?;

    let mut devices = tokio::task::JoinSet::new();
    for i in 0..count {
        let device = device.clone();
        let person = person.clone();
        let server = server.to_string();
        devices.spawn(async move { one_device(&device, &person, &server, i, count).await });
    }
    let mut latencies = Vec::with_capacity(count);
    let mut failures = Vec::new();
    let mut interval_secs = 0;
    while let Some(joined) = devices.join_next().await {
        match joined {
            Ok(Ok((latency, interval))) => {
                latencies.push(latency);
                interval_secs = interval;
            }
            Ok(Err(e)) => failures.push(format!("{e:#}")),
            Err(e) => failures.push(format!("a device task failed: {e}")),
        }
    }
    latencies.sort();
    Ok(ApprovalResult {
        latencies,
        interval_secs,
        failures,
    })
}

/// One device's life: ask for a code, wait for tokens while the person
/// approves it. Returns the wait after the approval and the interval told.
async fn one_device(
    device: &linkd_device::Device,
    person: &reqwest::Client,
    server: &str,
    i: usize,
    count: usize,
) -> anyhow::Result<(Duration, u64)> {
    let auth = device
        .request_code(Some(CLIENT_SCOPES), Some("linkd bench"))
        .await
        .context("asking for a device code")?;
    let interval = auth.interval.unwrap_or(5);
    let waiting = {
        let device = device.clone();
        let auth = auth.clone();
        tokio::spawn(async move {
            let tokens = device.wait_for_tokens(&auth).await;
            (tokens, Instant::now())
        })
    };

    tokio::time::sleep(Duration::from_secs(interval).mul_f64(i as f64 / count.max(1) as f64)).await;
    let approved_at = approve(person, server, &auth.user_code).await?;

    let (tokens, received_at) = tokio::time::timeout(TOKEN_TIMEOUT, waiting)
        .await
        .context("no tokens within a minute of the approval")?
        .context("the waiting device panicked")?;
    let tokens = tokens.context("the device did not get tokens")?;
    if tokens.access_token.is_empty() {
        bail!("the device got an empty access token");
    }
    // A device that long-polls may hold its tokens before the person's
    // page has finished loading; that counts as no wait at all.
    Ok((received_at.saturating_duration_since(approved_at), interval))
}

/// Signs the person up through the form: GET for the CSRF token, POST.
async fn sign_up(person: &reqwest::Client, server: &str) -> anyhow::Result<()> {
    let page = person
        .get(format!("{server}/signup"))
        .send()
        .await
        .context("opening /signup")?
        .text()
        .await?;
    let csrf = hidden_field(&page, "csrf").context("no CSRF token on /signup")?;
    let response = person
        .post(format!("{server}/signup"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("next", "/"),
            ("email", "bench@example.com"),
            ("password", "bench password, long enough"),
        ])
        .send()
        .await
        .context("submitting /signup")?;
    // Success redirects onwards; a form shown again means it failed.
    if !response.status().is_success() || response.url().path() == "/signup" {
        bail!("sign-up failed with {}", response.status());
    }
    Ok(())
}

/// Opens the code's confirmation page and presses Approve. Returns when the
/// answer to the decision has fully arrived.
pub(crate) async fn approve(
    person: &reqwest::Client,
    server: &str,
    user_code: &str,
) -> anyhow::Result<Instant> {
    let response = person
        .get(format!("{server}/link"))
        .query(&[("code", user_code)])
        .send()
        .await
        .context("opening /link")?;
    let status = response.status();
    let page = response.text().await?;
    if !status.is_success() {
        bail!("/link answered {status}");
    }
    let csrf = hidden_field(&page, "csrf").context("no CSRF token on the confirmation page")?;
    let code = hidden_field(&page, "code").context("no code on the confirmation page")?;
    let response = person
        .post(format!("{server}/link/decide"))
        .form(&[
            ("csrf", csrf.as_str()),
            ("code", code.as_str()),
            ("decision", "approve"),
        ])
        .send()
        .await
        .context("submitting /link/decide")?;
    let status = response.status();
    response.bytes().await?;
    let approved_at = Instant::now();
    if !status.is_success() {
        bail!("/link/decide answered {status}");
    }
    Ok(approved_at)
}

/// The value of `<input ... name="NAME" value="...">` in a page. The values
/// the bench reads (CSRF tokens, user codes) never contain characters HTML
/// escapes.
pub(crate) fn hidden_field(html: &str, name: &str) -> Option<String> {
    let marker = format!(r#"name="{name}" value=""#);
    let start = html.find(&marker)? + marker.len();
    let len = html[start..].find('"')?;
    Some(html[start..start + len].to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_fields_are_read_from_forms() {
        let html = r#"<form><input type="hidden" name="csrf" value="abc-_1">
            <input type="hidden" name="code" value="BCDF-GHJK"></form>"#;
        assert_eq!(hidden_field(html, "csrf").as_deref(), Some("abc-_1"));
        assert_eq!(hidden_field(html, "code").as_deref(), Some("BCDF-GHJK"));
        assert_eq!(hidden_field(html, "next"), None);
    }

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let ms = |v: u64| Duration::from_millis(v);
        let sorted: Vec<Duration> = (1..=100).map(ms).collect();
        assert_eq!(nearest_rank(&sorted, 0.5), Some(ms(50)));
        assert_eq!(nearest_rank(&sorted, 0.99), Some(ms(99)));
        assert_eq!(nearest_rank(&sorted[..1], 0.99), Some(ms(1)));
        assert_eq!(nearest_rank(&[], 0.5), None);
    }
}

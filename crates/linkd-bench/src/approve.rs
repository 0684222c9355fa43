//! Scenario (c): how long a device waits for its tokens once a person has
//! approved it. Devices use the `linkd-device` library exactly as a device
//! app would; the person signs up once and approves each code through the
//! real pages (`/link`, then `/link/decide`), with cookies and CSRF tokens
//! like a browser.

use std::time::Duration;

use anyhow::{Context, bail};
use tokio::time::Instant;

use crate::attack::SESSION_COOKIE;
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
/// With several servers (instances of one database), device `i` talks to
/// server `i` and the person approves it on the next one, so every
/// approval has to reach its device through the database.
pub async fn run(servers: &[String], count: usize) -> anyhow::Result<ApprovalResult> {
    let first = servers.first().context("no server to approve on")?;
    let person = Person::sign_up(first, "bench@example.com").await?;
    let mut devices = Vec::with_capacity(servers.len());
    for server in servers {
        devices.push(
            linkd_device::Device::discover(server, CLIENT_ID)
                .await
                .context("reading the server's metadata")?,
        );
    }

    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let device = devices[i % devices.len()].clone();
        let person = person.on(&servers[(i + 1) % servers.len()]);
        tasks.spawn(async move { one_device(&device, &person, i, count).await });
    }
    let mut devices = tasks;
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
    person: &Person,
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
    let approved_at = person.approve(&auth.user_code).await?;

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

/// A person in a browser, signed in, approving codes they typed from their
/// devices' screens.
#[derive(Clone)]
pub struct Person {
    browser: reqwest::Client,
    /// The server this person's browser talks to (any instance: the
    /// session lives in the shared database).
    server: String,
    /// The token the link page's form carries to say a code was typed on
    /// it, not followed from a link (which would ask to match numbers
    /// first).
    typed: String,
}

impl Person {
    /// Signs a new person up through the form (GET for the CSRF token,
    /// POST) and reads the link page's typed-code token.
    pub async fn sign_up(server: &str, email: &str) -> anyhow::Result<Person> {
        let browser = reqwest::Client::builder()
            .cookie_store(true)
            .build()
            .context("building the person's browser")?;
        let page = browser
            .get(format!("{server}/signup"))
            .send()
            .await
            .context("opening /signup")?
            .text()
            .await?;
        let csrf = hidden_field(&page, "csrf").context("no CSRF token on /signup")?;
        let response = browser
            .post(format!("{server}/signup"))
            .form(&[
                ("csrf", csrf.as_str()),
                ("next", "/"),
                ("email", email),
                ("password", "bench password, long enough"),
            ])
            .send()
            .await
            .context("submitting /signup")?;
        // Success redirects onwards; a form shown again means it failed.
        if !response.status().is_success() || response.url().path() == "/signup" {
            bail!("sign-up failed with {}", response.status());
        }
        Person::signed_in(browser, server).await
    }

    /// A browser holding a session made in the store (`seed::seed_people`).
    pub async fn with_session(server: &str, session: &str) -> anyhow::Result<Person> {
        let jar = std::sync::Arc::new(reqwest::cookie::Jar::default());
        let url: reqwest::Url = server.parse().context("a server's URL")?;
        // Cookies are not told apart by port: one session for every
        // instance on this host, as for one behind a load balancer.
        jar.add_cookie_str(&format!("{SESSION_COOKIE}={session}; Path=/"), &url);
        let browser = reqwest::Client::builder()
            .cookie_provider(jar)
            .build()
            .context("building the person's browser")?;
        Person::signed_in(browser, server).await
    }

    /// A browser already signed in: reads the link page's typed-code token.
    pub async fn signed_in(browser: reqwest::Client, server: &str) -> anyhow::Result<Person> {
        let page = browser
            .get(format!("{server}/link"))
            .send()
            .await
            .context("opening /link")?
            .text()
            .await?;
        let typed = hidden_field(&page, "typed").context("no typed-code token on /link")?;
        Ok(Person {
            browser,
            server: server.to_string(),
            typed,
        })
    }

    /// The same person (same browser, same cookies) on another server.
    pub fn on(&self, server: &str) -> Person {
        Person {
            server: server.to_string(),
            ..self.clone()
        }
    }

    /// Types the code on the link page, then presses Approve on the
    /// confirmation page. Returns when the answer to the decision has
    /// fully arrived.
    pub async fn approve(&self, user_code: &str) -> anyhow::Result<Instant> {
        let server = &self.server;
        let response = self
            .browser
            .get(format!("{server}/link"))
            .query(&[("code", user_code), ("typed", self.typed.as_str())])
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
        let response = self
            .browser
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

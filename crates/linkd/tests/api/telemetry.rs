//! Metrics, request ids and logs, checked the way an operator's tools see
//! them.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

use crate::helpers::*;

/// The value of one sample line in Prometheus text, 0 when absent.
pub fn sample(text: &str, name_and_labels: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            let matches = key == name_and_labels
                || (key.starts_with(name_and_labels.trim_end_matches('}'))
                    && name_and_labels.ends_with('}')
                    && {
                        // Labels may come in another order: all named ones present.
                        let want = name_and_labels
                            .split_once('{')
                            .map(|(_, l)| l.trim_end_matches('}'))
                            .unwrap_or("");
                        want.split(',').all(|pair| key.contains(pair))
                    });
            matches.then(|| value.parse().unwrap_or(0.0))
        })
        .unwrap_or(0.0)
}

/// A scrape of the main listener with the test servers' metrics token.
async fn scrape(app: &TestApp) -> reqwest::Response {
    app.http
        .get(app.url("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap()
}

pub async fn metrics(app: &TestApp) -> String {
    let response = scrape(app).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    response.text().await.unwrap()
}

#[tokio::test]
async fn metrics_move_with_a_full_flow() {
    let app = spawn_app().await;
    let before = metrics(&app).await;
    let (_, tokens) = app
        .link_device("metrics@example.com", "openid offline_access")
        .await;
    app.refresh(tokens["refresh_token"].as_str().unwrap(), None)
        .await;
    let denied = app.start_device("openid").await;
    app.signed_in_browser("metrics2@example.com")
        .await
        .deny(&denied.user_code)
        .await;
    linkd::telemetry::sample_store(&app.state).await;
    let after = metrics(&app).await;

    for (series, at_least) in [
        (
            "linkd_device_authorizations_total{outcome=\"requested\"}",
            2.0,
        ),
        (
            "linkd_device_authorizations_total{outcome=\"approved\"}",
            1.0,
        ),
        ("linkd_device_authorizations_total{outcome=\"denied\"}", 1.0),
        (
            "linkd_device_authorizations_total{outcome=\"redeemed\"}",
            1.0,
        ),
        ("linkd_tokens_issued_total{grant=\"device_code\"}", 1.0),
        ("linkd_tokens_issued_total{grant=\"refresh_token\"}", 1.0),
        (
            "linkd_http_requests_total{route=\"/oauth/token\",method=\"POST\",status=\"200\"}",
            2.0,
        ),
        (
            "linkd_http_request_duration_seconds_count{route=\"/oauth/device_authorization\",method=\"POST\"}",
            2.0,
        ),
    ] {
        let grew = sample(&after, series) - sample(&before, series);
        assert!(grew >= at_least, "{series} grew by {grew}:\n{after}");
    }
    assert!(
        after.contains("linkd_pending_device_authorizations"),
        "{after}"
    );
    // SQLite has a write and a read pool, PostgreSQL one shared pool.
    assert!(
        after.contains("linkd_store_pool_connections{pool=\"write\",state=\"open\"}")
            || after.contains("linkd_store_pool_connections{pool=\"main\",state=\"open\"}"),
        "{after}"
    );
    // Raw paths never become labels (they can carry ids and codes).
    assert!(!after.contains("/link?code"));
}

#[tokio::test]
async fn rejections_by_limits_are_counted() {
    let app = spawn_app_with(Options {
        configure: Box::new(|c| c.code_failures_per_session = 1),
        ..Default::default()
    })
    .await;
    let before = sample(
        &metrics(&app).await,
        "linkd_rate_limited_total{limit=\"code_entry\"}",
    );
    let browser = app.signed_in_browser("limited@example.com").await;
    browser.get("/link?code=BCDF-GHJK").await;
    assert_eq!(
        browser.get("/link?code=BCDF-GHJK").await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    let after = sample(
        &metrics(&app).await,
        "linkd_rate_limited_total{limit=\"code_entry\"}",
    );
    assert!(after >= before + 1.0);
}

#[tokio::test]
async fn request_ids_are_kept_or_made() {
    let app = spawn_app().await;
    let kept = app
        .http
        .get(app.url("/healthz"))
        .header("x-request-id", "req-from-the-proxy-1")
        .send()
        .await
        .unwrap();
    assert_eq!(kept.headers()["x-request-id"], "req-from-the-proxy-1");
    let made = app.http.get(app.url("/healthz")).send().await.unwrap();
    let id = made.headers()["x-request-id"].to_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
}

#[tokio::test]
async fn metrics_can_move_to_their_own_listener() {
    let app = spawn_app_with(Options {
        configure: Box::new(|c| c.metrics_listen = Some("127.0.0.1:9".parse().unwrap())),
        ..Default::default()
    })
    .await;
    // Not on the main listener, even to the token's holder.
    assert_eq!(scrape(&app).await.status(), StatusCode::NOT_FOUND);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, linkd::app::metrics_router(app.state.clone())).await
    });
    let text = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("linkd_http_requests_total"), "{text}");
}

/// Runs the real binary through a whole flow and returns what it logged
/// and every secret the flow used.
async fn logged_flow(format: &str) -> (String, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = Command::new(env!("CARGO_BIN_EXE_linkd"))
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--log-format",
            format,
            "--poll-interval",
            "1",
        ])
        .env(
            "LINKD_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("linkd.db").display()),
        )
        .env("LINKD_LOG", "trace,sqlx=trace,hyper=info,h2=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    // Read the log as it is written: trace level fills a pipe's buffer
    // long before the flow ends, and a server blocked on a full pipe
    // answers nothing.
    let mut stderr = server.stderr.take().unwrap();
    let reader = tokio::spawn(async move {
        let mut logs = String::new();
        stderr.read_to_string(&mut logs).await.unwrap();
        logs
    });
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    for _ in 0..100 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut secrets = Vec::new();
    let auth: serde_json::Value = http
        .post(format!("{base}/oauth/device_authorization"))
        .form(&[("client_id", "demo-tv"), ("scope", "openid offline_access")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let device_code = auth["device_code"].as_str().unwrap().to_string();
    let user_code = auth["user_code"].as_str().unwrap().to_string();
    let password = "a-password-nobody-should-log";
    let browser = Browser {
        base: base.clone(),
        client: reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    };
    let signup = browser.get("/signup").await;
    secrets.push(signup.csrf());
    let done = browser
        .post(
            "/signup",
            &[
                ("csrf", &signup.csrf()),
                ("email", "logs@example.com"),
                ("password", password),
            ],
        )
        .await;
    let session = done.headers["set-cookie"]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_string();
    let confirm = browser.type_code(&user_code).await;
    secrets.push(confirm.csrf());
    browser.approve(&user_code).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let tokens: serde_json::Value = http
        .post(format!("{base}/oauth/token"))
        .form(&[
            ("grant_type", DEVICE_GRANT),
            ("client_id", "demo-tv"),
            ("device_code", &device_code),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let renewed: serde_json::Value = http
        .post(format!("{base}/oauth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "demo-tv"),
            ("refresh_token", &refresh),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // A reused refresh token is logged as an event, never as the token.
    http.post(format!("{base}/oauth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "demo-tv"),
            ("refresh_token", &refresh),
        ])
        .send()
        .await
        .unwrap();
    let client_secret = "kiosk-secret-that-must-not-leak";
    http.post(format!("{base}/oauth/introspect"))
        .basic_auth("kiosk", Some(client_secret))
        .form(&[("token", tokens["access_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    secrets.extend([
        device_code,
        user_code.clone(),
        user_code.replace('-', ""),
        password.to_string(),
        session,
        refresh,
        client_secret.to_string(),
    ]);
    for t in [&tokens, &renewed] {
        for key in ["access_token", "refresh_token", "id_token"] {
            if let Some(v) = t[key].as_str() {
                secrets.push(v.to_string());
            }
        }
    }
    server.start_kill().unwrap();
    let logs = reader.await.unwrap();
    (logs, secrets)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_logs_in_either_format() {
    for format in ["text", "json"] {
        let (logs, secrets) = logged_flow(format).await;
        assert!(
            logs.lines().count() > 20,
            "{format}: the flow was logged at trace level:\n{logs}"
        );
        assert!(
            logs.contains("request_id"),
            "{format}: request ids on request lines"
        );
        if format == "json" {
            for line in logs.lines().filter(|l| !l.trim().is_empty()) {
                serde_json::from_str::<serde_json::Value>(line)
                    .unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            }
        }
        for secret in &secrets {
            assert!(
                !logs.contains(secret.as_str()),
                "{format}: a secret reached the logs: {secret}"
            );
        }
        // The refresh token reuse was noticed, without the token.
        assert!(logs.contains("refresh token reuse"), "{format}");
    }
}

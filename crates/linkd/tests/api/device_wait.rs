//! The long poll `POST /oauth/device/wait` and linkd-device's use of it.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::*;

async fn wait(app: &TestApp, device_code: &str, timeout: Option<&str>) -> Reply {
    let mut params = vec![("client_id", "demo-tv"), ("device_code", device_code)];
    if let Some(t) = timeout {
        params.push(("timeout", t));
    }
    app.post_form("/oauth/device/wait", &params).await
}

#[tokio::test]
async fn a_wait_ends_when_the_person_approves_and_the_token_request_succeeds() {
    let app = spawn_app().await;
    let auth = app.start_device("openid").await;
    let browser = app.signed_in_browser("wait@example.com").await;

    let waiting = {
        let (http, base, code) = (app.http.clone(), app.base.clone(), auth.device_code.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let reply = post_form(
                &http,
                &format!("{base}/oauth/device/wait"),
                &[("client_id", "demo-tv"), ("device_code", &code)],
            )
            .await;
            (reply, started.elapsed())
        })
    };
    // Let the wait settle in, then approve.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let approved_at = Instant::now();
    assert!(
        browser
            .approve(&auth.user_code)
            .await
            .contains("is now linked")
    );
    let (reply, waited) = waiting.await.unwrap();
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!(reply.json["status"], "approved");
    assert_eq!(reply.headers["cache-control"], "no-store");
    assert!(
        waited >= Duration::from_millis(300),
        "answered before the approval"
    );
    assert!(approved_at.elapsed() < Duration::from_secs(5));

    // The tokens still come from the token endpoint, once.
    let tokens = app.poll(&auth.device_code).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.json);
    let after = wait(&app, &auth.device_code, None).await;
    assert_eq!(after.json["status"], "redeemed");
}

#[tokio::test]
async fn a_wait_reports_denial_expiry_and_times_out_pending() {
    let app = spawn_app().await;
    let auth = app.start_device("openid").await;

    let started = Instant::now();
    let reply = wait(&app, &auth.device_code, Some("1")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    assert_eq!(reply.json["status"], "pending");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(10),
        "{waited:?}"
    );

    let browser = app.signed_in_browser("deny-wait@example.com").await;
    browser.deny(&auth.user_code).await;
    assert_eq!(
        wait(&app, &auth.device_code, None).await.json["status"],
        "denied"
    );

    let late = app.start_device("openid").await;
    app.clock.advance_secs(601);
    let started = Instant::now();
    assert_eq!(
        wait(&app, &late.device_code, None).await.json["status"],
        "expired"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_wait_refuses_what_the_token_endpoint_refuses() {
    let app = spawn_app().await;
    app.add_client("other-tv", "openid", None).await;
    let auth = app.start_device("openid").await;

    let unknown = wait(&app, "no-such-code", None).await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    assert_eq!(unknown.error(), "invalid_grant");

    // Another app's code is as unknown as none.
    let stolen = app
        .post_form(
            "/oauth/device/wait",
            &[
                ("client_id", "other-tv"),
                ("device_code", &auth.device_code),
            ],
        )
        .await;
    assert_eq!(stolen.error(), "invalid_grant");

    let missing = app
        .post_form("/oauth/device/wait", &[("client_id", "demo-tv")])
        .await;
    assert_eq!(missing.error(), "invalid_request");
    for bad in ["0", "31", "x", "-1"] {
        let reply = wait(&app, &auth.device_code, Some(bad)).await;
        assert_eq!(reply.error(), "invalid_request", "timeout={bad}");
    }
    let nobody = app
        .post_form(
            "/oauth/device/wait",
            &[("client_id", "ghost"), ("device_code", "x")],
        )
        .await;
    assert_eq!(nobody.status, StatusCode::UNAUTHORIZED);
    assert_eq!(nobody.error(), "invalid_client");
}

#[tokio::test]
async fn a_code_has_at_most_two_waiters() {
    let app = spawn_app().await;
    let auth = app.start_device("openid").await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let (http, base, code) = (app.http.clone(), app.base.clone(), auth.device_code.clone());
        held.push(tokio::spawn(async move {
            post_form(
                &http,
                &format!("{base}/oauth/device/wait"),
                &[
                    ("client_id", "demo-tv"),
                    ("device_code", &code),
                    ("timeout", "3"),
                ],
            )
            .await
        }));
    }
    // Both are in; a third is turned away with the RFC's 429 shape.
    let deadline = Instant::now() + Duration::from_secs(5);
    while app.state.waits.len() < 2 {
        assert!(Instant::now() < deadline, "the waits never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let third = wait(&app, &auth.device_code, Some("1")).await;
    assert_eq!(
        third.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        third.json
    );
    assert!(third.headers.contains_key("retry-after"));
    for h in held {
        assert_eq!(h.await.unwrap().json["status"], "pending");
    }
    assert!(app.state.waits.is_empty());
}

#[tokio::test]
async fn the_device_library_gets_tokens_moments_after_approval() {
    let app = spawn_app_with(Options {
        real_clock: true,
        ..Options::default()
    })
    .await;
    let device = linkd_device::Device::discover(&app.base, "demo-tv")
        .await
        .unwrap();
    assert!(device.endpoints.linkd_device_wait_endpoint.is_some());
    let auth = device.request_code(Some("openid"), None).await.unwrap();
    // The default interval is 5 s: plain polling would take that long.
    assert_eq!(auth.interval, Some(5));
    let browser = app.signed_in_browser("fast@example.com").await;
    let waiting = tokio::spawn({
        let (device, auth) = (device.clone(), auth.clone());
        async move {
            let tokens = device.wait_for_tokens(&auth).await;
            (tokens, Instant::now())
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        browser
            .approve(&auth.user_code)
            .await
            .contains("is now linked")
    );
    let approved = Instant::now();
    let (tokens, got) = waiting.await.unwrap();
    let tokens = tokens.unwrap();
    assert!(tokens.id_token.is_some());
    let delay = got.saturating_duration_since(approved);
    assert!(
        delay < Duration::from_secs(2),
        "tokens {delay:?} after approval"
    );
}

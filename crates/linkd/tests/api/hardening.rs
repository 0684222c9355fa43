//! Brute force, phishing and rate limits (RFC 8628 §5), over HTTP with
//! small configured limits and the injected clock.

use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn wrong_codes_lock_a_session_out_until_the_window_passes() {
    let app = spawn_app_with(with(|c| c.code_failures_per_session = 3)).await;
    let auth = app.start_device("openid").await;
    let browser = app.signed_in_browser("guess@example.com").await;
    for wrong in ["BCDF-GHJK", "BCDF-GHJL", "BCDF-GHJM"] {
        assert_eq!(browser.type_code(wrong).await.status, StatusCode::NOT_FOUND);
    }
    let locked = browser.get("/link?code=BCDF-GHJN").await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        locked.contains("Too many wrong codes") && locked.contains("Try again in 10 minutes"),
        "{}",
        locked.body
    );
    let retry: i64 = locked.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((590..=600).contains(&retry), "{retry}");
    // Even the right code waits: the lockout is not a guessing oracle.
    let right = browser.type_code(&auth.user_code).await;
    assert_eq!(right.status, StatusCode::TOO_MANY_REQUESTS);
    // Another person on another session is not locked by this one.
    let other = app.signed_in_browser("other@example.com").await;
    assert_eq!(
        other.type_code(&auth.user_code).await.status,
        StatusCode::OK
    );

    app.clock.advance_secs(600);
    let fresh = app.start_device("openid").await;
    let later = browser.type_code(&fresh.user_code).await;
    assert_eq!(later.status, StatusCode::OK, "{}", later.body);
}

#[tokio::test]
async fn wrong_codes_are_limited_per_network_with_ipv6_counted_per_64() {
    let app = spawn_app_with(with(|c| {
        behind_proxy(c);
        c.code_failures_per_session = 100;
        c.code_failures_per_network = 4;
    }))
    .await;
    let a = app.signed_in_browser("net-a@example.com").await;
    let b = app.signed_in_browser("net-b@example.com").await;
    for (browser, ip) in [
        (&a, "2001:db8:5:6::1"),
        (&b, "2001:db8:5:6:ffff::2"),
        (&a, "2001:db8:5:6::3"),
        (&b, "2001:db8:5:6::4"),
    ] {
        assert_eq!(
            browser.get_from("/link?code=BCDF-GHJK", ip).await.status,
            StatusCode::NOT_FOUND
        );
    }
    let fifth = a
        .get_from("/link?code=BCDF-GHJK", "2001:db8:5:6:1234::9")
        .await;
    assert_eq!(fifth.status, StatusCode::TOO_MANY_REQUESTS);
    // Another /64 is a different network.
    let elsewhere = b.get_from("/link?code=BCDF-GHJK", "2001:db8:5:7::1").await;
    assert_eq!(elsewhere.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn wrong_codes_are_limited_server_wide() {
    let app = spawn_app_with(with(|c| {
        behind_proxy(c);
        c.code_failures_per_minute = 5;
    }))
    .await;
    let browser = app.signed_in_browser("global@example.com").await;
    let other = app.signed_in_browser("global2@example.com").await;
    for i in 0..5 {
        let who = if i % 2 == 0 { &browser } else { &other };
        let page = who
            .get_from("/link?code=BCDF-GHJK", &format!("198.51.{i}.1"))
            .await;
        assert_eq!(page.status, StatusCode::NOT_FOUND);
    }
    let paused = other.get_from("/link?code=BCDF-GHJK", "203.0.113.50").await;
    assert_eq!(paused.status, StatusCode::TOO_MANY_REQUESTS);
    app.clock.advance_secs(60);
    assert_eq!(
        other
            .get_from("/link?code=BCDF-GHJK", "203.0.113.50")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn the_confirmation_page_warns_about_other_networks_and_old_codes() {
    let app = spawn_app_with(with(behind_proxy)).await;
    let auth = app.start_device_from("198.51.100.7").await;
    let browser = app.signed_in_browser("phish@example.com").await;
    let code = browser.typed_path(&auth.user_code).await;

    let same = browser.get_from(&code, "198.51.100.99").await;
    assert_eq!(same.status, StatusCode::OK);
    assert!(
        same.contains("198.51.100.7"),
        "shows the requesting network"
    );
    assert!(!same.contains("requested from a different network"));
    assert!(!same.body.contains("id=\"old-code\""));

    let elsewhere = browser.get_from(&code, "203.0.113.5").await;
    assert!(
        elsewhere
            .contains("This code was requested from a different network than the one you're on.")
    );
    assert!(elsewhere.contains("The device asked from 198.51.100.7; you are on 203.0.113.5."));

    app.clock.advance_secs(200);
    let old = browser.get_from(&code, "198.51.100.99").await;
    assert!(
        old.contains("This code was requested 3 minutes ago."),
        "{}",
        old.body
    );

    // Past the maximum approval age (300 s by default, and the lifetime
    // the device was told) it cannot be approved.
    let csrf = old.csrf();
    app.clock.advance_secs(101);
    let late = browser.get_from(&code, "198.51.100.99").await;
    assert_eq!(late.status, StatusCode::GONE);
    assert!(late.contains("This code has expired"));
    let decided = browser
        .post(
            "/link/decide",
            &[
                ("csrf", &csrf),
                ("code", &auth.user_code),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(decided.status, StatusCode::GONE);
    assert_eq!(app.poll(&auth.device_code).await.error(), "expired_token");
}

#[tokio::test]
async fn forwarded_addresses_count_only_from_trusted_proxies() {
    let app = spawn_app().await;
    let reply = app
        .http
        .post(app.url("/oauth/device_authorization"))
        .header("x-forwarded-for", "198.51.100.7")
        .form(&[("client_id", "demo-tv")])
        .send()
        .await
        .unwrap();
    let auth: DeviceAuth = reply.json().await.unwrap();
    let browser = app.signed_in_browser("proxy@example.com").await;
    let page = browser.type_code(&auth.user_code).await;
    assert!(
        page.contains("127.0.0.1") && !page.contains("198.51.100.7"),
        "{}",
        page.body
    );
}

#[tokio::test]
async fn an_app_can_be_barred_from_the_device_flow() {
    let app = spawn_app().await;
    let auth = app.start_device("openid").await;
    app.state
        .store
        .update_client(
            "demo-tv",
            &linkd::store::ClientChanges {
                device_flow_enabled: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let refused = app.device_authorization(&[("client_id", "demo-tv")]).await;
    assert_eq!(
        (refused.status, refused.error()),
        (StatusCode::BAD_REQUEST, "unauthorized_client")
    );
    let browser = app.signed_in_browser("barred@example.com").await;
    let page = browser.type_code(&auth.user_code).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
    assert!(page.contains("turned off linking for this app"));
    app.state
        .store
        .update_client(
            "demo-tv",
            &linkd::store::ClientChanges {
                device_flow_enabled: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        browser.type_code(&auth.user_code).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn device_authorizations_are_limited_per_network_and_per_app() {
    let app = spawn_app_with(with(|c| {
        behind_proxy(c);
        c.device_authorizations_per_network = 2;
        c.device_authorizations_per_client = 3;
    }))
    .await;
    let from = |ip: &'static str| {
        app.http
            .post(app.url("/oauth/device_authorization"))
            .header("x-forwarded-for", ip)
            .form(&[("client_id", "demo-tv")])
            .send()
    };
    assert_eq!(from("198.51.100.1").await.unwrap().status(), StatusCode::OK);
    assert_eq!(from("198.51.100.1").await.unwrap().status(), StatusCode::OK);
    let limited = reply(from("198.51.100.1").await.unwrap()).await;
    assert_eq!(
        (limited.status, limited.error()),
        (StatusCode::TOO_MANY_REQUESTS, "slow_down")
    );
    assert!(
        limited.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<i64>()
            .unwrap()
            > 0
    );
    // The app's own ceiling: one more from elsewhere, then no more.
    assert_eq!(from("198.51.100.2").await.unwrap().status(), StatusCode::OK);
    let app_limited = reply(from("198.51.100.3").await.unwrap()).await;
    assert_eq!(app_limited.status, StatusCode::TOO_MANY_REQUESTS);
    app.clock.advance_secs(60);
    assert_eq!(from("198.51.100.3").await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn token_polls_have_a_per_network_ceiling() {
    let app = spawn_app_with(with(|c| c.token_polls_per_network = 3)).await;
    let codes: Vec<DeviceAuth> =
        futures::future::join_all((0..4).map(|_| app.start_device("openid"))).await;
    for auth in &codes[..3] {
        assert_eq!(
            app.poll(&auth.device_code).await.error(),
            "authorization_pending"
        );
    }
    let over = app.poll(&codes[3].device_code).await;
    assert_eq!(
        (over.status, over.error()),
        (StatusCode::BAD_REQUEST, "slow_down")
    );
    assert!(over.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn failed_sign_ins_wait_longer_and_longer_without_revealing_accounts() {
    let app = spawn_app_with(with(|c| c.sign_in_free_failures = 2)).await;
    app.signed_in_browser("real@example.com").await;
    for email in ["real@example.com", "ghost@example.com"] {
        let browser = app.browser();
        for _ in 0..2 {
            assert_eq!(
                browser.sign_in(email, "wrong password", "/").await.status,
                StatusCode::UNAUTHORIZED
            );
        }
        let waiting = browser.sign_in(email, "correct horse battery", "/").await;
        assert_eq!(waiting.status, StatusCode::TOO_MANY_REQUESTS, "{email}");
        assert!(
            waiting.contains("Too many attempts. Wait a second, then try again."),
            "{}",
            waiting.body
        );
        assert_eq!(waiting.headers["retry-after"], "1");
    }
    app.clock.advance_secs(1);
    let ok = app
        .browser()
        .sign_in("real@example.com", "correct horse battery", "/")
        .await;
    assert_eq!(
        ok.status,
        StatusCode::SEE_OTHER,
        "after the wait the right password works"
    );
}

#[tokio::test]
async fn sign_ups_are_limited_per_network() {
    let app = spawn_app_with(with(|c| c.sign_ups_per_network = 2)).await;
    app.signed_in_browser("one@example.com").await;
    app.signed_in_browser("two@example.com").await;
    let third = app
        .browser()
        .sign_up("three@example.com", "long enough password", "/")
        .await;
    assert_eq!(third.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(third.contains("Too many accounts were created from your network"));
    assert!(
        app.state
            .store
            .get_account_by_email("three@example.com")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn linkd_can_terminate_tls_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, cert_path, key_path) = self_signed_cert(dir.path());

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut config = linkd::Config::defaults();
    config.listen = listener.local_addr().unwrap();
    config.public_url = Some(format!("https://localhost:{port}"));
    let db = TestDatabase::new().await;
    config.database_url = db.url().to_string();
    config.tls_cert = Some(cert_path.clone());
    config.tls_key = Some(key_path.clone());
    serve_tls(listener, config).await;

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem().as_bytes()).unwrap())
        .resolve("localhost", ([127, 0, 0, 1], port).into())
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let base = format!("https://localhost:{port}");
    let health = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    let page = client.get(format!("{base}/signin")).send().await.unwrap();
    assert_eq!(
        page.headers()["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    assert!(
        page.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("; Secure")
    );
    let auth: serde_json::Value = client
        .post(format!("{base}/oauth/device_authorization"))
        .form(&[("client_id", "demo-tv")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(auth["verification_uri"], format!("{base}/link"));

    // Plain HTTP to the TLS port is not served.
    let plain = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send()
        .await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));

    // A key that does not match its certificate is a clear start-up error.
    let other = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    std::fs::write(&key_path, other.signing_key.serialize_pem()).unwrap();
    let Err(err) = linkd::serve::tls_config(&cert_path, &key_path) else {
        panic!("a mismatched key must be refused");
    };
    assert!(format!("{err:#}").contains("do not match"), "{err:#}");
}

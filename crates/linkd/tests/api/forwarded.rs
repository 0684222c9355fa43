//! Client addresses behind a trusted proxy (client_ip.rs), end to end:
//! every line of the forwarding header is read as one list from the right,
//! so a client's own line can neither put a forged address on the
//! confirmation page nor dodge a per-network limit.

use reqwest::StatusCode;

use crate::helpers::*;

/// A single address as the trusted proxy: the tests' own 127.0.0.1.
fn behind_one_proxy() -> Options {
    Options {
        configure: Box::new(|c| {
            c.trusted_proxies = vec![linkd::config::parse_trusted_proxy("127.0.0.1").unwrap()];
            c.device_authorizations_per_network = 2;
        }),
        ..Default::default()
    }
}

/// A device authorization request carrying these forwarding header lines,
/// in this order.
async fn ask(app: &TestApp, lines: &[&str]) -> Reply {
    let mut request = app
        .http
        .post(app.url("/oauth/device_authorization"))
        .form(&[("client_id", "demo-tv"), ("scope", "openid")]);
    for line in lines {
        request = request.header("x-forwarded-for", *line);
    }
    reply(request.send().await.unwrap()).await
}

#[tokio::test]
async fn a_clients_own_forwarded_line_is_not_believed() {
    let app = spawn_app_with(behind_one_proxy()).await;
    // The client sent `X-Forwarded-For: 6.6.6.6`; the proxy added its own
    // line with the address it saw.
    let asked = ask(&app, &["6.6.6.6", "198.51.100.7"]).await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.json);
    let code = asked.json["user_code"].as_str().unwrap().to_string();
    let browser = app.signed_in_browser("forwarded@example.com").await;
    let page = browser.type_code_from(&code, "198.51.100.7").await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.contains("198.51.100.7"), "{}", page.body);
    assert!(!page.contains("6.6.6.6"), "{}", page.body);

    // The per-network limit counts 198.51.100.7 whatever the client writes.
    assert_eq!(
        ask(&app, &["6.6.6.7", "198.51.100.7"]).await.status,
        StatusCode::OK
    );
    let limited = ask(&app, &["6.6.6.8", "198.51.100.7"]).await;
    assert_eq!(
        (limited.status, limited.error()),
        (StatusCode::TOO_MANY_REQUESTS, "slow_down")
    );
    // Another network is not affected.
    assert_eq!(ask(&app, &["198.51.100.8"]).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_malformed_entry_makes_the_proxy_the_client() {
    let app = spawn_app_with(behind_one_proxy()).await;
    let asked = ask(&app, &["198.51.100.9, not-an-address"]).await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.json);
    let code = asked.json["user_code"].as_str().unwrap().to_string();
    let browser = app.signed_in_browser("malformed@example.com").await;
    let page = browser.type_code(&code).await;
    assert!(page.contains("127.0.0.1"), "{}", page.body);
    assert!(!page.contains("198.51.100.9"), "{}", page.body);
    // ...and shares the proxy's limit, whatever address it put left of the
    // bad entry.
    assert_eq!(
        ask(&app, &["198.51.100.10, ???"]).await.status,
        StatusCode::OK
    );
    assert_eq!(
        ask(&app, &["198.51.100.11, ???"]).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

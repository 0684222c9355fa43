//! Hostile text refused or cleaned at the edge (issue 18, item 5): NUL
//! and undecodable bytes never reach the store, names people read carry
//! no invisible or reordering characters, sync documents are held to what
//! the feed reads back, and cookies are host-only under https.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

fn basic(raw: &[u8]) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

#[tokio::test]
async fn nul_and_bytes_that_are_not_text_get_the_endpoints_own_error() {
    let app = spawn_app().await;
    let (browser, tokens) = app.link_device("nul@example.com", "openid sync").await;
    let access = tokens["access_token"].as_str().unwrap().to_string();

    // Basic client authentication, raw and percent-encoded (RFC 6749
    // §2.3.1), on every endpoint that takes it: 401 invalid_client, as
    // for any unknown client; PostgreSQL used to fail on the NUL (503).
    let form = [
        ("grant_type", DEVICE_GRANT),
        ("device_code", "x"),
        ("token", "x"),
    ];
    for path in ["/oauth/token", "/oauth/introspect", "/oauth/revoke"] {
        for credentials in [
            &b"demo\0tv:secret"[..],
            b"demo%00tv:secret",
            b"demo-tv:se\0cret",
            b"demo\xfftv:secret",
        ] {
            let response = app
                .http
                .post(app.url(path))
                .header("authorization", basic(credentials))
                .form(&form)
                .send()
                .await
                .unwrap();
            let reply = reply(response).await;
            assert_eq!(
                (reply.status, reply.error()),
                (StatusCode::UNAUTHORIZED, "invalid_client"),
                "{path} {credentials:?}: {}",
                reply.json
            );
            assert!(reply.headers.contains_key("www-authenticate"));
        }
    }

    // A device id in a page's path: the page's 404, before any lookup.
    let csrf = browser.get("/signout").await.csrf();
    for id in ["a%00b", "%00", "%FF%FE", "x%0Ay", &"a".repeat(65)] {
        for action in ["rename", "unlink"] {
            let page = browser
                .post(
                    &format!("/devices/{id}/{action}"),
                    &[("csrf", &csrf), ("label", "TV")],
                )
                .await;
            assert_eq!(page.status, StatusCode::NOT_FOUND, "{id} {action}");
            assert!(page.contains("Page not found"), "{id}: {}", page.body);
        }
    }

    // Sync names: the API's own 400 invalid_request.
    for path in ["prefs%00/a", "prefs/a%00b", "prefs/%FF", "pr%00efs"] {
        let response = app
            .get_bearer(&format!("/api/v1/sync/{path}"), &access)
            .await;
        let reply = reply(response).await;
        assert_eq!(
            (reply.status, reply.error()),
            (StatusCode::BAD_REQUEST, "invalid_request"),
            "{path}: {}",
            reply.json
        );
    }

    // Nothing was taken for a store outage, and the device still works.
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert!(browser.get("/devices").await.contains("Demo TV"));
}

/// Every character a name must not keep: bidirectional overrides,
/// isolates and marks, zero-width and other format characters, controls.
const INVISIBLE: &[char] = &[
    '\u{202A}', '\u{202B}', '\u{202C}', '\u{202D}', '\u{202E}', '\u{2066}', '\u{2067}', '\u{2068}',
    '\u{2069}', '\u{200E}', '\u{200F}', '\u{061C}', '\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}',
    '\u{2064}', '\u{FEFF}', '\u{180E}', '\u{00AD}', '\u{0007}', '\u{001B}',
];

fn assert_no_invisible(body: &str, what: &str) {
    let found: Vec<String> = body
        .chars()
        .filter(|c| INVISIBLE.contains(c))
        .map(|c| format!("U+{:04X}", c as u32))
        .collect();
    assert!(found.is_empty(), "{what} shows {found:?}");
}

#[tokio::test]
async fn names_show_without_invisible_or_reordering_characters() {
    let app = spawn_app().await;
    // "Living room TV" with its end reversed by U+202E, a zero-width
    // space, a BOM and an escape sequence mixed in.
    let sent = "\u{202E}Living\u{200B} room\u{FEFF} TV\u{001B}[2J\u{2066}\u{200D}";
    let reply = app
        .device_authorization(&[("client_id", "demo-tv"), ("device_name", sent)])
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    let code = reply.json["user_code"].as_str().unwrap().to_string();
    let device_code = reply.json["device_code"].as_str().unwrap().to_string();
    let browser = app.signed_in_browser("names@example.com").await;

    let confirm = browser.type_code(&code).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.contains("Living room TV[2J"), "{}", confirm.body);
    assert_no_invisible(&confirm.body, "the confirmation page");

    assert!(browser.approve(&code).await.contains("is now linked"));
    assert_eq!(app.poll(&device_code).await.status, StatusCode::OK);
    let devices = browser.get("/devices").await;
    assert!(devices.contains("Living room TV[2J"), "{}", devices.body);
    assert_no_invisible(&devices.body, "the devices list");

    // A label the person sets goes through the same cleaning.
    let edit = devices
        .attribute_values("href")
        .into_iter()
        .find(|a| a.ends_with("/edit"))
        .unwrap();
    let edit_page = browser.get(&edit).await;
    let rename = edit_page
        .attribute_values("action")
        .into_iter()
        .find(|a| a.ends_with("/rename"))
        .unwrap();
    let done = browser
        .post(
            &rename,
            &[
                ("csrf", &edit_page.csrf()),
                (
                    "label",
                    "\u{2067}Kitchen\u{200C}\u{202B} \u{2028} TV\u{2069}",
                ),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let devices = browser.get(done.location()).await;
    assert!(devices.contains("<h2>Kitchen TV</h2>"), "{}", devices.body);
    assert!(devices.contains("Saved: this device is now called Kitchen TV."));
    assert_no_invisible(&devices.body, "the renamed device");
    // Nothing visible left: refused, the old name kept.
    let refused = browser
        .post(
            &rename,
            &[("csrf", &edit_page.csrf()), ("label", "\u{202E}\u{200B}")],
        )
        .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert!(
        browser
            .get("/devices")
            .await
            .contains("<h2>Kitchen TV</h2>")
    );
}

#[tokio::test]
async fn sync_documents_the_feed_cannot_read_back_are_refused() {
    let app = spawn_app().await;
    let (_, tokens) = app.link_device("deep@example.com", "openid sync").await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let put = |key: &'static str, body: String| {
        app.http
            .put(app.url(&format!("/api/v1/sync/prefs/{key}")))
            .bearer_auth(&access)
            .header("if-none-match", "*")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let nested = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));

    for (key, body, why) in [
        (
            "deep",
            nested(5000),
            "nests arrays and objects deeper than 64 levels",
        ),
        (
            "deeper",
            nested(65),
            "nests arrays and objects deeper than 64 levels",
        ),
        (
            "objects",
            format!("{}1{}", r#"{"a":"#.repeat(65), "}".repeat(65)),
            "deeper than 64 levels",
        ),
        (
            "twice",
            r#"{"theme":"dark","theme":"light"}"#.into(),
            "the key \"theme\" appears twice",
        ),
        (
            "inner",
            r#"{"a":[{"k":1,"j":2,"k":3}]}"#.into(),
            "the key \"k\" appears twice",
        ),
    ] {
        let reply = reply(put(key, body).await.unwrap()).await;
        assert_eq!(
            (reply.status, reply.error()),
            (StatusCode::BAD_REQUEST, "invalid_document"),
            "{key}: {}",
            reply.json
        );
        let description = reply.json["error_description"].as_str().unwrap();
        assert!(description.contains(why), "{key}: {description}");
    }
    // Not JSON at all keeps its own answer.
    let reply = reply(put("broken", "{\"a\":".into()).await.unwrap()).await;
    assert_eq!(
        (reply.status, reply.error()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );

    // At the limit: stored, and the feed hands it back as written.
    let ok = put("limit", nested(64)).await.unwrap();
    assert_eq!(ok.status(), StatusCode::CREATED);
    let feed: Value = app
        .get_bearer("/api/v1/sync/prefs", &access)
        .await
        .json()
        .await
        .unwrap();
    let changes = feed["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "only the accepted document: {feed}");
    assert_eq!(changes[0]["key"], "limit");
    let mut value = &changes[0]["value"];
    for _ in 0..63 {
        value = &value[0];
    }
    assert_eq!(value, &Value::Array(vec![]), "64 levels read back");
}

/// The `Set-Cookie` value for `name` (the name with its `=`), if any.
fn set_cookie<'a>(headers: &'a reqwest::header::HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(name))
}

fn cookie_value(set_cookie: &str) -> String {
    let pair = set_cookie.split(';').next().unwrap();
    pair.split_once('=').unwrap().1.to_string()
}

#[tokio::test]
async fn cookies_are_host_only_under_https_and_plain_over_http() {
    // Plain http: the bare names (browsers refuse `__Host-` without Secure).
    let app = spawn_app().await;
    let form = app.browser().get("/signup").await;
    let csrf = set_cookie(&form.headers, "linkd_csrf=").unwrap();
    assert!(!csrf.contains("Secure"), "{csrf}");
    let browser = app.browser();
    let done = browser
        .sign_up("plain@example.com", "long enough password", "/")
        .await;
    assert!(set_cookie(&done.headers, "linkd_session=").is_some());
    assert!(browser.get("/devices").await.contains("plain@example.com"));

    // Behind https (here a TLS-terminating proxy in front): `__Host-`
    // names, Secure, Path=/ and no Domain (RFC 6265bis §4.1.3.2).
    let app = spawn_app_with(Options {
        configure: Box::new(|c| c.public_url = Some("https://link.example.com".into())),
        ..Default::default()
    })
    .await;
    let response = app.http.get(app.url("/signup")).send().await.unwrap();
    let form = page(response).await;
    let csrf_cookie = set_cookie(&form.headers, "__Host-linkd_csrf=")
        .unwrap()
        .to_string();
    assert!(set_cookie(&form.headers, "linkd_csrf=").is_none());
    for part in ["; Path=/", "; Secure", "; HttpOnly", "; SameSite=Lax"] {
        assert!(csrf_cookie.contains(part), "{csrf_cookie}");
    }
    assert!(!csrf_cookie.to_ascii_lowercase().contains("domain"));
    let token = cookie_value(&csrf_cookie);
    assert_eq!(form.csrf(), token);

    // A cookie under the bare name, as a sibling subdomain could plant it,
    // does not count: the form is refused.
    let sign_up = |cookie: String| {
        app.http
            .post(app.url("/signup"))
            .header("cookie", cookie)
            .form(&[
                ("csrf", token.as_str()),
                ("email", "https@example.com"),
                ("password", "long enough password"),
            ])
            .send()
    };
    let planted = page(sign_up(format!("linkd_csrf={token}")).await.unwrap()).await;
    assert_eq!(planted.status, StatusCode::FORBIDDEN);
    assert!(
        planted.contains("This form has expired"),
        "{}",
        planted.body
    );

    let done = page(sign_up(format!("__Host-linkd_csrf={token}")).await.unwrap()).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let session = set_cookie(&done.headers, "__Host-linkd_session=").unwrap();
    for part in ["; Path=/", "; Secure", "; HttpOnly"] {
        assert!(session.contains(part), "{session}");
    }
    let session = cookie_value(session);
    let devices = |cookie: String| {
        let request = app.http.get(app.url("/devices")).header("cookie", cookie);
        async move { page(request.send().await.unwrap()).await }
    };
    let signed_in = devices(format!("__Host-linkd_session={session}")).await;
    assert_eq!(signed_in.status, StatusCode::OK);
    assert!(signed_in.contains("https@example.com"));
    // The same session under the bare name is not read.
    let bare = devices(format!("linkd_session={session}")).await;
    assert_eq!(bare.status, StatusCode::SEE_OTHER);
    assert!(
        bare.location().starts_with("/signin"),
        "{}",
        bare.location()
    );
}

#[tokio::test]
async fn request_ids_are_repeated_only_when_short_and_plain() {
    let app = spawn_app().await;
    let answer = |id: reqwest::header::HeaderValue| {
        let request = app.http.get(app.url("/healthz")).header("x-request-id", id);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), StatusCode::OK);
            response.headers()["x-request-id"].as_bytes().to_vec()
        }
    };
    for kept in [
        "req-from-the-proxy-1",
        "8f14e45fceea167a5a36dedd4bea2543",
        "Root:1.5759e988_bd86",
        &"k".repeat(64),
    ] {
        let id = reqwest::header::HeaderValue::from_str(kept).unwrap();
        assert_eq!(answer(id).await, kept.as_bytes(), "{kept:?}");
    }
    // Too long, or able to forge a field in a text log line: a tab or a
    // space, a quote, `key=value`, bytes that are not ASCII. (A newline
    // cannot travel in a header value at all; HTTP/1.1 refuses it.)
    for replaced in [
        &b"k".repeat(65)[..],
        b"ok\tlevel=ERROR",
        b"ok status=200",
        b"ok\"",
        b"x=y",
        b"caf\xc3\xa9",
        b"\xff\xfe",
    ] {
        let id = reqwest::header::HeaderValue::from_bytes(replaced).unwrap();
        let got = answer(id).await;
        assert_ne!(got, replaced, "{replaced:?}");
        // linkd's own: UUID-shaped.
        assert_eq!(got.len(), 36, "{:?}", String::from_utf8_lossy(&got));
        assert!(
            got.iter()
                .enumerate()
                .all(|(i, b)| if matches!(i, 8 | 13 | 18 | 23) {
                    *b == b'-'
                } else {
                    b.is_ascii_hexdigit()
                }),
            "{:?}",
            String::from_utf8_lossy(&got)
        );
    }
}

#[tokio::test]
async fn metrics_on_the_main_listener_need_the_token() {
    // Neither --metrics-token nor --metrics-listen: no /metrics at all.
    let app = spawn_app_with(Options {
        configure: Box::new(|c| c.metrics_token = None),
        ..Default::default()
    })
    .await;
    for auth in [None, Some(format!("Bearer {METRICS_TOKEN}"))] {
        let mut request = app.http.get(app.url("/metrics"));
        if let Some(auth) = &auth {
            request = request.header("authorization", auth);
        }
        let response = page(request.send().await.unwrap()).await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{auth:?}");
        assert!(response.contains("Page not found"));
        assert!(!response.body.contains("linkd_http_requests_total"));
    }

    // With the token configured: 404 without it or with another, the
    // metrics with it.
    let app = spawn_app().await;
    let scrape = |auth: Option<String>| {
        let mut request = app.http.get(app.url("/metrics"));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        async move { page(request.send().await.unwrap()).await }
    };
    for wrong in [
        None,
        Some("Bearer wrong-token-0123456789-xx".to_string()),
        Some(format!("Bearer {}", &METRICS_TOKEN[1..])),
        Some(format!("Bearer {METRICS_TOKEN}x")),
        Some(format!("Basic {METRICS_TOKEN}")),
        Some(format!("Bearer{METRICS_TOKEN}")),
    ] {
        let response = scrape(wrong.clone()).await;
        assert_eq!(response.status, StatusCode::NOT_FOUND, "{wrong:?}");
        assert!(!response.body.contains("linkd_http_requests_total"));
    }
    let response = scrape(Some(format!("Bearer {METRICS_TOKEN}"))).await;
    assert_eq!(response.status, StatusCode::OK);
    assert!(
        response.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert!(
        response.body.contains("linkd_http_requests_total"),
        "{}",
        response.body
    );
}

//! RFC 8628 over HTTP: device authorization, every §3.5 outcome, and the
//! tokens at the end.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use linkd::clock::Clock;
use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn a_device_links_end_to_end_and_its_tokens_verify_against_jwks() {
    let app = spawn_app().await;
    let reply = app
        .device_authorization(&[
            ("client_id", "demo-tv"),
            ("scope", "openid email offline_access"),
            ("device_name", "Living room TV"),
        ])
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.headers["cache-control"], "no-store");
    let auth: DeviceAuth = serde_json::from_value(reply.json.clone()).unwrap();

    // RFC 8628 §3.2 response fields.
    assert_eq!(auth.verification_uri, app.url("/link"));
    assert_eq!(
        auth.verification_uri_complete,
        app.url(&format!("/link?code={}", auth.user_code))
    );
    // The approval window: the 600 s code lifetime cut to the 300 s
    // maximum approval age, so the device never outlives the page.
    assert_eq!(auth.expires_in, 300);
    assert_eq!(auth.interval, 5);
    // 12 hex digits of its issue time, then 256 random bits in base64url.
    assert_eq!(auth.device_code.len(), 55, "{}", auth.device_code);
    let (time, secret) = auth.device_code.split_at(12);
    assert_eq!(time, format!("{:012x}", app.clock.now_ms()));
    assert!(
        secret
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "{secret}"
    );
    let code = auth.user_code.as_bytes();
    assert_eq!(code.len(), 9);
    assert_eq!(code[4], b'-');
    assert!(
        auth.user_code
            .replace('-', "")
            .bytes()
            .all(|b| b"BCDFGHJKLMNPQRSTVWXZ".contains(&b))
    );

    // Only the hash of the device code is stored: neither the code nor
    // its secret part.
    assert!(!app.db.holds(&auth.device_code).await);
    assert!(!app.db.holds(secret).await);
    assert!(app.db.holds(&auth.user_code.replace('-', "")).await);

    assert_eq!(
        app.poll(&auth.device_code).await.error(),
        "authorization_pending"
    );

    let browser = app.signed_in_browser("alice@example.com").await;
    // The link with the code goes to number matching (tests/api/phishing.rs).
    let matching = browser.get(&auth.verification_uri_complete).await;
    assert_eq!(matching.status, StatusCode::SEE_OTHER);
    let confirm = browser.get(matching.location()).await;
    assert_eq!(confirm.status, StatusCode::OK);
    for text in [
        "Link Demo TV?",
        &auth.user_code,
        "Living room TV",
        "127.0.0.1",
        "just now",
        "See your email address",
        "Stay signed in until you unlink it",
        "alice@example.com",
        "Only continue if you started this on a device in front of you",
        "Switch account",
    ] {
        assert!(
            confirm.contains(text),
            "confirmation page lacks {text:?}:\n{}",
            confirm.body
        );
    }
    let result = browser.approve(&auth.user_code).await;
    assert_eq!(result.status, StatusCode::OK);
    assert!(
        // The device's own name, and the app it runs.
        result.contains("Your Living room TV (Demo TV) is now linked"),
        "{}",
        result.body
    );

    app.clock.advance_secs(5);
    let tokens = app.poll(&auth.device_code).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.json);
    assert_eq!(tokens.headers["cache-control"], "no-store");
    assert_eq!(tokens.headers["pragma"], "no-cache");
    assert_eq!(tokens.json["token_type"], "Bearer");
    assert_eq!(tokens.json["expires_in"], 3600);
    assert_eq!(tokens.json["scope"], "openid email offline_access");
    assert!(tokens.json["refresh_token"].as_str().unwrap().len() >= 43);

    // The access token verifies against the published JWKS by its kid.
    let jwks: serde_json::Value = app
        .http
        .get(app.url("/oauth/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = tokens.json["access_token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(access).unwrap();
    assert_eq!(header.alg, Algorithm::RS256);
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    let kid = header.kid.expect("kid");
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .expect("kid in JWKS");
    let key =
        DecodingKey::from_rsa_components(jwk["n"].as_str().unwrap(), jwk["e"].as_str().unwrap())
            .unwrap();
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[&app.base]);
    validation.set_audience(&[&app.base]);
    let claims = jsonwebtoken::decode::<serde_json::Value>(access, &key, &validation)
        .unwrap()
        .claims;
    for claim in [
        "iss",
        "sub",
        "aud",
        "exp",
        "iat",
        "jti",
        "scope",
        "client_id",
    ] {
        assert!(
            claims.get(claim).is_some(),
            "access token lacks {claim}: {claims}"
        );
    }
    assert_eq!(claims["client_id"], "demo-tv");
    assert_eq!(claims["scope"], "openid email offline_access");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );

    // The ID token names the person to the device.
    let id_token = tokens.json["id_token"].as_str().unwrap();
    let mut id_validation = Validation::new(Algorithm::RS256);
    id_validation.set_issuer(&[&app.base]);
    id_validation.set_audience(&["demo-tv"]);
    let id = jsonwebtoken::decode::<serde_json::Value>(id_token, &key, &id_validation)
        .unwrap()
        .claims;
    assert_eq!(id["email"], "alice@example.com");
    assert_eq!(id["sub"], claims["sub"]);

    // Redeemed once: the next poll is refused.
    app.clock.advance_secs(5);
    let again = app.poll(&auth.device_code).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert_eq!(again.error(), "invalid_grant");
}

#[tokio::test]
async fn a_device_code_from_before_codes_carried_their_time_still_links() {
    // Codes pending when linkd is upgraded were stored under the hash of
    // the whole code; their devices go on polling with them.
    let app = spawn_app().await;
    let now = app.clock.now();
    let code = linkd::codes::random_secret(32);
    app.state
        .store
        .insert_device_authorization(&linkd::store::DeviceAuthorization {
            id: linkd::codes::sortable_id(now * 1000),
            device_code_hash: linkd::codes::secret_hash(&code),
            user_code: "BCDFGHJK".into(),
            client_id: "demo-tv".into(),
            scope: "openid".into(),
            state: linkd::store::AuthorizationState::Pending,
            account_id: None,
            requested_ip: "127.0.0.1".into(),
            device_name: None,
            created_at: now,
            expires_at: now + 300,
            interval: 5,
            decided_at: None,
            user_agent: None,
        })
        .await
        .unwrap();
    assert_eq!(app.poll(&code).await.error(), "authorization_pending");
    // The same secret behind a time is another code.
    let timed = format!("{:012x}{code}", now * 1000);
    assert_eq!(app.poll(&timed).await.error(), "invalid_grant");

    let browser = app.signed_in_browser("alice@example.com").await;
    assert_eq!(browser.approve("BCDF-GHJK").await.status, StatusCode::OK);
    app.clock.advance_secs(5);
    let tokens = app.poll(&code).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.json);
    assert_eq!(app.poll(&code).await.error(), "invalid_grant");
}

#[tokio::test]
async fn slow_down_adds_five_seconds_each_time() {
    let app = spawn_app().await;
    let auth = app.start_device("openid").await;
    assert_eq!(
        app.poll(&auth.device_code).await.error(),
        "authorization_pending"
    );
    app.clock.advance_secs(1);
    assert_eq!(app.poll(&auth.device_code).await.error(), "slow_down");
    // The interval is now 10 s: five seconds is too soon again.
    app.clock.advance_secs(5);
    assert_eq!(app.poll(&auth.device_code).await.error(), "slow_down");
    // Now 15 s.
    app.clock.advance_secs(15);
    assert_eq!(
        app.poll(&auth.device_code).await.error(),
        "authorization_pending"
    );
    app.clock.advance_secs(15);
    let reply = app.poll(&auth.device_code).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert_eq!(reply.headers["cache-control"], "no-store");
    assert_eq!(reply.error(), "authorization_pending");
    assert!(reply.json["error_description"].is_string());
}

#[tokio::test]
async fn a_denied_code_answers_access_denied() {
    let app = spawn_app().await;
    let auth = app.start_device("openid").await;
    let browser = app.signed_in_browser("bob@example.com").await;
    let result = browser.deny(&auth.user_code).await;
    assert_eq!(result.status, StatusCode::OK);
    assert!(result.contains("Demo TV was not linked"), "{}", result.body);
    assert_eq!(app.poll(&auth.device_code).await.error(), "access_denied");
    app.clock.advance_secs(5);
    assert_eq!(app.poll(&auth.device_code).await.error(), "access_denied");
}

#[tokio::test]
async fn an_expired_code_answers_expired_token_and_cannot_be_approved() {
    let app = spawn_app_with(Options {
        configure: Box::new(|c| c.code_lifetime = 60),
        ..Default::default()
    })
    .await;
    let auth = app.start_device("openid").await;
    assert_eq!(auth.expires_in, 60);
    let browser = app.signed_in_browser("carol@example.com").await;
    app.clock.advance_secs(61);
    assert_eq!(app.poll(&auth.device_code).await.error(), "expired_token");
    let page = browser.type_code(&auth.user_code).await;
    assert_eq!(page.status, StatusCode::GONE);
    assert!(page.contains("This code has expired"));
    assert!(page.contains("Get a new code on your device"));
}

/// The lifetime a device is told is the window the person has: approved
/// seconds before it ends, the device's next poll (after it) still gets
/// its tokens; a code nobody approved is expired for the page and the
/// device alike.
#[tokio::test]
async fn a_code_approved_at_the_end_of_its_advertised_lifetime_links() {
    let app = spawn_app().await;
    let auth = app.start_device("openid").await;
    let unused = app.start_device("openid").await;
    let browser = app.signed_in_browser("last-second@example.com").await;
    app.clock.advance_secs(auth.expires_in - 3);
    let confirm = browser.type_code(&auth.user_code).await;
    let form = [
        ("csrf", confirm.csrf()),
        ("code", auth.user_code.clone()),
        ("decision", "approve".into()),
    ];
    let form: Vec<(&str, &str)> = form.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let approved = browser.post("/link/decide", &form).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    app.clock.advance_secs(5);
    let tokens = app.poll(&auth.device_code).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.json);
    assert_eq!(app.poll(&unused.device_code).await.error(), "expired_token");
    // The result sent again (a reload) says it is linked; to another
    // person the code is only used.
    let again = browser.post("/link/decide", &form).await;
    assert_eq!(again.status, StatusCode::OK);
    assert!(again.contains("is now linked"), "{}", again.body);
    let reopened = browser.type_code(&auth.user_code).await;
    assert!(reopened.contains("is now linked"), "{}", reopened.body);
    let other = app.signed_in_browser("someone-else@example.com").await;
    let used = other.type_code(&auth.user_code).await;
    assert_eq!(used.status, StatusCode::CONFLICT);
    assert!(!used.contains("is now linked"));
    let late = browser.type_code(&unused.user_code).await;
    assert_eq!(late.status, StatusCode::GONE);
    assert!(late.contains("This code has expired"));
}

#[tokio::test]
async fn an_approval_after_the_deadline_is_refused() {
    let app = spawn_app_with(Options {
        configure: Box::new(|c| c.code_lifetime = 60),
        ..Default::default()
    })
    .await;
    let auth = app.start_device("openid").await;
    let browser = app.signed_in_browser("dave@example.com").await;
    let confirm = browser.type_code(&auth.user_code).await;
    let csrf = confirm.csrf();
    app.clock.advance_secs(60);
    let late = browser
        .post(
            "/link/decide",
            &[
                ("csrf", &csrf),
                ("code", &auth.user_code),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(late.status, StatusCode::GONE);
    assert_eq!(app.poll(&auth.device_code).await.error(), "expired_token");
}

#[tokio::test]
async fn token_endpoint_errors_follow_rfc_6749() {
    let app = spawn_app().await;
    let auth = app.start_device("openid").await;

    let unknown = app.poll("not-a-device-code").await;
    assert_eq!(
        (unknown.status, unknown.error()),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );

    let grant = app
        .post_form(
            "/oauth/token",
            &[("grant_type", "password"), ("client_id", "demo-tv")],
        )
        .await;
    assert_eq!(
        (grant.status, grant.error()),
        (StatusCode::BAD_REQUEST, "unsupported_grant_type")
    );

    let missing = app
        .post_form("/oauth/token", &[("client_id", "demo-tv")])
        .await;
    assert_eq!(missing.error(), "invalid_request");

    let no_code = app
        .post_form(
            "/oauth/token",
            &[("grant_type", DEVICE_GRANT), ("client_id", "demo-tv")],
        )
        .await;
    assert_eq!(
        (no_code.status, no_code.error()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );

    let repeated = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", DEVICE_GRANT),
                ("client_id", "demo-tv"),
                ("device_code", &auth.device_code),
                ("device_code", &auth.device_code),
            ],
        )
        .await;
    assert_eq!(
        (repeated.status, repeated.error()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );

    let stranger = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", DEVICE_GRANT),
                ("client_id", "nobody"),
                ("device_code", &auth.device_code),
            ],
        )
        .await;
    assert_eq!(
        (stranger.status, stranger.error()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );

    let anonymous = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", DEVICE_GRANT),
                ("device_code", &auth.device_code),
            ],
        )
        .await;
    assert_eq!(
        (anonymous.status, anonymous.error()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );

    // A code issued to demo-tv is no grant for another app.
    app.add_client("other-app", "openid", None).await;
    let other = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", DEVICE_GRANT),
                ("client_id", "other-app"),
                ("device_code", &auth.device_code),
            ],
        )
        .await;
    assert_eq!(other.error(), "invalid_grant");

    let json = app
        .http
        .post(app.url("/oauth/token"))
        .json(&serde_json::json!({"grant_type": DEVICE_GRANT, "client_id": "demo-tv"}))
        .send()
        .await
        .unwrap();
    let json = reply(json).await;
    assert_eq!(
        (json.status, json.error()),
        (StatusCode::BAD_REQUEST, "invalid_request")
    );

    // None of that disturbed the pending code.
    assert_eq!(
        app.poll(&auth.device_code).await.error(),
        "authorization_pending"
    );
}

#[tokio::test]
async fn device_authorization_checks_client_and_scope() {
    let app = spawn_app().await;
    let unknown = app.device_authorization(&[("client_id", "nobody")]).await;
    assert_eq!(
        (unknown.status, unknown.error()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
    let missing = app.device_authorization(&[("scope", "openid")]).await;
    assert_eq!(
        (missing.status, missing.error()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );

    let bad = app
        .device_authorization(&[("client_id", "demo-tv"), ("scope", "openid admin")])
        .await;
    assert_eq!(
        (bad.status, bad.error()),
        (StatusCode::BAD_REQUEST, "invalid_scope")
    );

    app.add_client("limited", "openid", None).await;
    let wider = app
        .device_authorization(&[("client_id", "limited"), ("scope", "openid offline_access")])
        .await;
    assert_eq!(wider.error(), "invalid_scope");
    let ok = app.device_authorization(&[("client_id", "limited")]).await;
    assert_eq!(ok.status, StatusCode::OK);

    let repeated = app
        .device_authorization(&[
            ("client_id", "demo-tv"),
            ("scope", "openid"),
            ("scope", "email"),
        ])
        .await;
    assert_eq!(repeated.error(), "invalid_request");
}

#[tokio::test]
async fn tokens_follow_the_granted_scope() {
    let app = spawn_app().await;
    let auth = app.start_device("profile").await;
    let browser = app.signed_in_browser("erin@example.com").await;
    browser.approve(&auth.user_code).await;
    let tokens = app.poll(&auth.device_code).await;
    assert_eq!(tokens.status, StatusCode::OK);
    // No openid, no ID token; no offline_access, no refresh token.
    assert!(tokens.json.get("id_token").is_none(), "{}", tokens.json);
    assert!(
        tokens.json.get("refresh_token").is_none(),
        "{}",
        tokens.json
    );
    assert_eq!(tokens.json["scope"], "profile");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_polls_of_an_approved_code_yield_one_set_of_tokens() {
    let app = spawn_app().await;
    let auth = app.start_device("openid offline_access").await;
    let browser = app.signed_in_browser("frank@example.com").await;
    browser.approve(&auth.user_code).await;
    let polls = (0..16).map(|_| app.poll(&auth.device_code));
    let replies = futures::future::join_all(polls).await;
    let winners = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .count();
    assert_eq!(winners, 1);
    for r in replies.iter().filter(|r| r.status != StatusCode::OK) {
        assert_eq!(r.error(), "invalid_grant");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_decisions_on_one_code_have_one_winner() {
    let app = spawn_app().await;
    let auth = app.start_device("openid").await;
    let alice = app.signed_in_browser("alice2@example.com").await;
    let mallory = app.signed_in_browser("mallory@example.com").await;
    let a = alice.type_code(&auth.user_code).await.csrf();
    let m = mallory.type_code(&auth.user_code).await.csrf();
    let mut futures = Vec::new();
    for i in 0..8 {
        let (browser, csrf, decision) = if i % 2 == 0 {
            (&alice, &a, "approve")
        } else {
            (&mallory, &m, "deny")
        };
        let code = auth.user_code.clone();
        futures.push(async move {
            browser
                .post(
                    "/link/decide",
                    &[("csrf", csrf), ("code", &code), ("decision", decision)],
                )
                .await
        });
    }
    let pages = futures::future::join_all(futures).await;
    // One decision wins. The winner's own repeats are told that decision
    // (as a reload would be); the other account only that the code is used.
    let ok: Vec<usize> = (0..pages.len())
        .filter(|&i| pages[i].status == StatusCode::OK)
        .collect();
    assert!(!ok.is_empty());
    assert!(ok.iter().all(|i| i % 2 == ok[0] % 2), "one account's pages");
    let linked = pages[ok[0]].contains("is now linked");
    assert!(
        ok.iter()
            .all(|&i| pages[i].contains("is now linked") == linked)
    );
    assert!(
        pages
            .iter()
            .filter(|p| p.status != StatusCode::OK)
            .all(|p| p.status == StatusCode::CONFLICT)
    );
    let outcome = app.poll(&auth.device_code).await;
    if linked {
        assert_eq!(outcome.status, StatusCode::OK);
    } else {
        assert_eq!(outcome.error(), "access_denied");
    }
}

#[tokio::test]
async fn confidential_clients_authenticate_with_basic_or_post() {
    let app = spawn_app().await;
    app.add_client("tv-pro", "openid offline_access", Some("s3cret"))
        .await;

    let post = app
        .device_authorization(&[("client_id", "tv-pro"), ("client_secret", "s3cret")])
        .await;
    assert_eq!(post.status, StatusCode::OK, "{}", post.json);

    let basic = app
        .http
        .post(app.url("/oauth/device_authorization"))
        .basic_auth("tv-pro", Some("s3cret"))
        .form(&[("scope", "openid")])
        .send()
        .await
        .unwrap();
    let basic = reply(basic).await;
    assert_eq!(basic.status, StatusCode::OK, "{}", basic.json);
    let device_code = basic.json["device_code"].as_str().unwrap();

    let wrong = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth("tv-pro", Some("wrong"))
        .form(&[("grant_type", DEVICE_GRANT), ("device_code", device_code)])
        .send()
        .await
        .unwrap();
    let wrong = reply(wrong).await;
    assert_eq!(
        (wrong.status, wrong.error()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
    assert!(
        wrong.headers["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Basic")
    );

    let no_secret = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", DEVICE_GRANT),
                ("client_id", "tv-pro"),
                ("device_code", device_code),
            ],
        )
        .await;
    assert_eq!(no_secret.error(), "invalid_client");

    let both = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth("tv-pro", Some("s3cret"))
        .form(&[
            ("grant_type", DEVICE_GRANT),
            ("client_secret", "s3cret"),
            ("device_code", device_code),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(reply(both).await.error(), "invalid_request");

    let right = app
        .http
        .post(app.url("/oauth/token"))
        .basic_auth("tv-pro", Some("s3cret"))
        .form(&[("grant_type", DEVICE_GRANT), ("device_code", device_code)])
        .send()
        .await
        .unwrap();
    assert_eq!(reply(right).await.error(), "authorization_pending");
}

#[tokio::test]
async fn a_restart_keeps_pending_codes_and_keys() {
    let db = TestDatabase::new().await;
    let first = spawn_on(db.clone(), Options::default()).await;
    let auth = first.start_device("openid").await;
    let kid = first.state.keys().signing_kid().to_string();
    let second = spawn_on(db, Options::default()).await;
    assert_eq!(second.state.keys().signing_kid(), kid);
    let browser = second.signed_in_browser("gina@example.com").await;
    browser.approve(&auth.user_code).await;
    let tokens = second.poll(&auth.device_code).await;
    assert_eq!(tokens.status, StatusCode::OK);
}

#[tokio::test]
async fn a_decision_is_published_to_waiters() {
    let app = spawn_app().await;
    let mut events = app.state.store.subscribe();
    let auth = app.start_device("openid").await;
    let browser = app.signed_in_browser("hal@example.com").await;
    browser.approve(&auth.user_code).await;
    let event = tokio::time::timeout(std::time::Duration::from_secs(5), events.recv())
        .await
        .expect("an event within 5 s")
        .unwrap();
    assert!(
        matches!(event, linkd::store::Event::Decided { .. }),
        "{event:?}"
    );
}

#[tokio::test]
async fn expired_codes_are_purged_after_a_grace_period() {
    // The device-authorization limits off: on PostgreSQL their spent
    // counters are rows the same purge deletes, and this counts codes.
    let app = spawn_app_with(Options {
        configure: Box::new(|c| {
            c.device_authorizations_per_network = 0;
            c.device_authorizations_per_client = 0;
        }),
        ..Default::default()
    })
    .await;
    let old = app.start_device("openid").await;
    // Past the old code's deadline and its grace period.
    app.clock
        .advance_secs(600 + linkd::jobs::EXPIRED_CODE_GRACE_SECS + 1);
    let recent = app.start_device("openid").await;
    app.clock.advance_secs(601);
    let purged = linkd::jobs::purge_now(&app.state).await.unwrap();
    assert_eq!(purged, 1);
    // Gone: as unknown as a code never issued.
    assert_eq!(app.poll(&old.device_code).await.error(), "invalid_grant");
    // Expired within the grace period: still the RFC 8628 §3.5 answer.
    assert_eq!(app.poll(&recent.device_code).await.error(), "expired_token");
    assert_eq!(linkd::jobs::purge_now(&app.state).await.unwrap(), 0);
}

/// JSON answers get the API set of security headers (no framing, no
/// sniffing, never stored), not the pages' policy: a poll's answer stays
/// short. Redirects keep the pages' Referrer-Policy, which browsers carry
/// into the request that follows.
#[tokio::test]
async fn json_answers_carry_the_api_security_headers() {
    let app = spawn_app().await;
    let auth = app.start_device("openid").await;
    let reply = app.poll(&auth.device_code).await;
    assert_eq!(reply.error(), "authorization_pending");
    for (name, value) in [
        ("content-type", "application/json"),
        ("cache-control", "no-store"),
        ("x-content-type-options", "nosniff"),
        ("x-frame-options", "DENY"),
        (
            "content-security-policy",
            "default-src 'none'; frame-ancestors 'none'",
        ),
    ] {
        assert_eq!(reply.headers[name], value, "{name}");
    }
    assert!(reply.headers.get("referrer-policy").is_none());
    assert!(reply.headers.get("content-language").is_none());
    assert!(reply.headers.get("x-request-id").is_some());

    let redirect = app.browser().get("/devices").await;
    assert_eq!(redirect.status, StatusCode::SEE_OTHER);
    assert_eq!(redirect.headers["referrer-policy"], "no-referrer");
    let csp = redirect.headers["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(csp.contains("form-action 'self'"), "{csp}");
}

//! Refresh tokens as one row of state per device (migration 0028): the
//! token names its device and generation, the device's row keeps the
//! hashes of the current and previous tokens. Rotation, races, reuse,
//! forgeries, tokens issued before the upgrade, revocation,
//! introspection and restarts, on either backend.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::Value;

use crate::burst;
use crate::helpers::*;

fn s(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .to_string()
}

fn device_id(tokens: &Value) -> String {
    s(&jwt_claims(&s(tokens, "access_token")), "sid")
}

/// A token of the per-device form with any generation and secret.
fn forge(device_id: &str, generation: u64, secret: [u8; 32]) -> String {
    let mut raw = generation.to_be_bytes().to_vec();
    raw.extend_from_slice(&secret);
    raw.extend_from_slice(device_id.as_bytes());
    format!("lr1.{}", URL_SAFE_NO_PAD.encode(raw))
}

/// The generation a token of the per-device form names.
fn generation(token: &str) -> u64 {
    let raw = URL_SAFE_NO_PAD
        .decode(token.strip_prefix("lr1.").expect("lr1. token"))
        .unwrap();
    u64::from_be_bytes(raw[..8].try_into().unwrap())
}

async fn still_linked(app: &TestApp, device: &str) -> bool {
    app.state
        .store
        .get_linked_device(device)
        .await
        .unwrap()
        .is_some_and(|d| d.revoked_at.is_none())
}

/// An RFC 6749 §5.2 error answer: 400, JSON, this `error`.
fn assert_refused(reply: &Reply, error: &str, what: &str) {
    assert_eq!(
        (reply.status, reply.error()),
        (StatusCode::BAD_REQUEST, error),
        "{what}: {}",
        reply.json
    );
    assert!(
        reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"),
        "{what}"
    );
}

#[tokio::test]
async fn a_device_refreshes_many_times_on_one_row() {
    let app = spawn_app().await;
    let (_, tokens) = app
        .link_device("many@example.com", "openid offline_access")
        .await;
    let device = device_id(&tokens);
    let mut token = s(&tokens, "refresh_token");
    let mut seen = std::collections::HashSet::new();
    for round in 1..=25u64 {
        assert!(token.starts_with("lr1.") && token.len() <= 256, "{token}");
        assert_eq!(generation(&token), round);
        assert!(seen.insert(token.clone()), "a token came back");
        app.clock.advance_secs(3600);
        let next = app.refresh(&token, None).await;
        assert_eq!(next.status, StatusCode::OK, "round {round}: {}", next.json);
        assert_eq!(
            app.introspect(&s(&next.json, "access_token")).await["active"],
            true
        );
        token = s(&next.json, "refresh_token");
    }
    // Everything lives on the device's row: no row per rotation, and only
    // hashes (a copy of the database yields no token).
    assert_eq!(app.db.count("SELECT COUNT(*) FROM refresh_tokens").await, 0);
    assert_eq!(
        app.db
            .count(&format!(
                "SELECT refresh_generation FROM linked_devices WHERE id = '{device}'"
            ))
            .await,
        26
    );
    assert!(!app.db.holds(&token).await, "the token itself is stored");
    assert!(still_linked(&app, &device).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_refreshes_with_one_token_has_one_winner_and_unlinks() {
    let app = spawn_app().await;
    let (browser, tokens) = app
        .link_device("burst@example.com", "openid offline_access")
        .await;
    let device = device_id(&tokens);
    let token = s(&tokens, "refresh_token");
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", "demo-tv"),
        ("refresh_token", token.as_str()),
    ];
    let answers = burst::burst(
        &app,
        (0..8)
            .map(|_| (None, burst::post("/oauth/token", "", &form)))
            .collect(),
    )
    .await;
    assert_eq!(burst::count(&answers, 200), 1, "{answers:#?}");
    assert_eq!(burst::count(&answers, 400), 7, "{answers:#?}");
    for refused in answers.iter().filter(|a| a.status == 400) {
        let body: Value = serde_json::from_str(&refused.body).unwrap();
        assert_eq!(body["error"], "invalid_grant", "{body}");
    }
    // Only one of the holders can be the device: the family is gone, the
    // winner's new token with it.
    assert!(!still_linked(&app, &device).await);
    let winner = answers.iter().find(|a| a.status == 200).unwrap();
    let won: Value = serde_json::from_str(&winner.body).unwrap();
    assert_refused(
        &app.refresh(&s(&won, "refresh_token"), None).await,
        "invalid_grant",
        "the winner's token after the unlink",
    );
    assert!(
        browser
            .get("/account")
            .await
            .contains("one of its old sign-in tokens was used again")
    );
}

#[tokio::test]
async fn the_previous_generation_coming_back_unlinks_the_device() {
    let app = spawn_app().await;
    let (browser, tokens) = app
        .link_device("previous@example.com", "openid offline_access")
        .await;
    let device = device_id(&tokens);
    let first = s(&tokens, "refresh_token");
    let second = app.refresh(&first, None).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.json);
    let second_access = s(&second.json, "access_token");

    // Someone copied the first token and uses it after the device did.
    let reused = app.refresh(&first, None).await;
    assert_refused(&reused, "invalid_grant", "the previous generation");
    assert!(
        reused.json["error_description"]
            .as_str()
            .unwrap()
            .contains("already used"),
        "{}",
        reused.json
    );
    assert!(!still_linked(&app, &device).await);
    assert_eq!(app.introspect(&second_access).await["active"], false);
    assert_refused(
        &app.refresh(&s(&second.json, "refresh_token"), None).await,
        "invalid_grant",
        "the current token of an unlinked device",
    );
    assert!(
        browser
            .get("/account")
            .await
            .contains("one of its old sign-in tokens was used again")
    );
}

#[tokio::test]
async fn older_generations_forgeries_and_malformed_tokens_unlink_nothing() {
    let app = spawn_app().await;
    let (_, tokens) = app
        .link_device("forged@example.com", "openid offline_access")
        .await;
    let device = device_id(&tokens);
    let first = s(&tokens, "refresh_token");
    let second = s(&app.refresh(&first, None).await.json, "refresh_token");
    let third = s(&app.refresh(&second, None).await.json, "refresh_token");
    assert_eq!(generation(&third), 3);

    let huge = "A".repeat(10_000);
    let long_prefixed = format!("lr1.{}", "A".repeat(300));
    let mut cases: Vec<(&str, String)> = vec![
        // Kept nowhere: it cannot be told from a forgery, so it is only
        // refused.
        ("an older generation", first.clone()),
        (
            "the current generation, another secret",
            forge(&device, 3, [7; 32]),
        ),
        (
            "the previous generation, another secret",
            forge(&device, 2, [7; 32]),
        ),
        ("a generation not issued yet", forge(&device, 4, [7; 32])),
        ("generation 0", forge(&device, 0, [7; 32])),
        (
            "the largest generation",
            forge(&device, i64::MAX as u64, [7; 32]),
        ),
        ("a generation past i64", forge(&device, u64::MAX, [7; 32])),
        (
            "a device that does not exist",
            forge("00000000000000000000000000000000", 3, [7; 32]),
        ),
        (
            "a NUL in the device id",
            forge("0123456789abcdef\0", 3, [7; 32]),
        ),
        (
            "a quote in the device id",
            forge("x' OR '1'='1", 3, [7; 32]),
        ),
        ("bad base64", "lr1.%%%%not-base64%%%%".into()),
        ("padding", format!("{}=", third)),
        ("too short to name a device", "lr1.AAAAAAAA".into()),
        ("the wrong prefix", third.replacen("lr1.", "lr2.", 1)),
        ("the prefix in capitals", third.replacen("lr1.", "LR1.", 1)),
        ("the token cut short", third[..third.len() - 2].into()),
        ("the token with a character changed", {
            let mut t = third.clone().into_bytes();
            let last = t.len() - 1;
            t[last] = if t[last] == b'A' { b'B' } else { b'A' };
            String::from_utf8(t).unwrap()
        }),
        ("huge", huge),
        ("prefixed and too long", long_prefixed),
        ("a space", " ".into()),
        ("an access token", s(&tokens, "access_token")),
        ("an old-form token nobody issued", "A".repeat(43)),
    ];
    cases.push(("the device id alone", device.clone()));
    for (what, token) in &cases {
        let reply = app.refresh(token, None).await;
        assert_refused(&reply, "invalid_grant", what);
        assert!(
            still_linked(&app, &device).await,
            "{what} unlinked the device"
        );
    }
    // RFC 6749 §3.1: sent without a value, the parameter counts as missing.
    assert_refused(&app.refresh("", None).await, "invalid_request", "empty");

    // The device never noticed: its current token still works.
    let next = app.refresh(&third, None).await;
    assert_eq!(next.status, StatusCode::OK, "{}", next.json);
    assert!(still_linked(&app, &device).await);
}

/// A refresh token the way linkd stored it before migration 0028: a row
/// of `refresh_tokens` by the SHA-256 of 32 random bytes in base64url.
async fn legacy_token(app: &TestApp, device: &str, rotated: bool) -> String {
    let token = linkd::codes::random_secret(32);
    let now = linkd::clock::Clock::now(app.clock.as_ref());
    let rotated_at = if rotated {
        now.to_string()
    } else {
        "NULL".into()
    };
    app.db
        .execute(
            &format!(
                "INSERT INTO refresh_tokens (token_hash, device_id, scope, created_at,
                     expires_at, rotated_at)
                 VALUES ($1, $2, 'openid offline_access', {now}, {}, {rotated_at})",
                now + 30 * 86_400
            ),
            &[&linkd::codes::secret_hash(&token), device],
        )
        .await;
    token
}

/// A device as the older linkd left it: no state on its row.
async fn linked_before_the_upgrade(app: &TestApp, email: &str) -> (Browser, String) {
    let (browser, tokens) = app.link_device(email, "openid offline_access").await;
    let device = device_id(&tokens);
    app.db
        .execute(
            "UPDATE linked_devices SET refresh_generation = NULL, refresh_hash = NULL,
                 refresh_previous_hash = NULL, refresh_expires_at = NULL
             WHERE id = $1",
            &[&device],
        )
        .await;
    (browser, device)
}

#[tokio::test]
async fn a_token_issued_before_the_upgrade_is_traded_once_for_the_new_form() {
    let app = spawn_app().await;
    let (browser, device) = linked_before_the_upgrade(&app, "legacy@example.com").await;
    let older = legacy_token(&app, &device, true).await;
    let legacy = legacy_token(&app, &device, false).await;
    let introspected = app.introspect(&legacy).await;
    assert_eq!(
        (&introspected["active"], &introspected["token_type"]),
        (&Value::Bool(true), &Value::from("refresh_token"))
    );
    assert_eq!(app.introspect(&older).await["active"], false);

    app.clock.advance_secs(60);
    let traded = app.refresh(&legacy, None).await;
    assert_eq!(traded.status, StatusCode::OK, "{}", traded.json);
    let first = s(&traded.json, "refresh_token");
    assert!(first.starts_with("lr1."), "{first}");
    assert_eq!(generation(&first), 1);
    assert_eq!(
        app.db
            .count("SELECT COUNT(*) FROM refresh_tokens WHERE rotated_at IS NULL")
            .await,
        0,
        "the traded token is marked rotated"
    );
    assert_eq!(app.introspect(&legacy).await["active"], false);
    // From here on the device lives on its row.
    let second = app.refresh(&first, None).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.json);
    assert_eq!(generation(&s(&second.json, "refresh_token")), 2);

    // The old token again: someone holds a copy.
    assert_refused(
        &app.refresh(&legacy, None).await,
        "invalid_grant",
        "the traded token again",
    );
    assert!(!still_linked(&app, &device).await);
    assert!(
        browser
            .get("/account")
            .await
            .contains("one of its old sign-in tokens was used again")
    );

    // A token rotated before the upgrade is reuse too, as it always was.
    let (_, other) = linked_before_the_upgrade(&app, "legacy2@example.com").await;
    let rotated = legacy_token(&app, &other, true).await;
    let current = legacy_token(&app, &other, false).await;
    assert_refused(
        &app.refresh(&rotated, None).await,
        "invalid_grant",
        "a rotated old-form token",
    );
    assert!(!still_linked(&app, &other).await);
    assert_refused(
        &app.refresh(&current, None).await,
        "invalid_grant",
        "the current old-form token of an unlinked device",
    );

    // The purge empties the old table on its own schedule: a family's
    // tokens a refresh lifetime past their expiry.
    app.clock.advance_secs(400 * 86_400);
    linkd::jobs::purge_now(&app.state).await.unwrap();
    assert_eq!(app.db.count("SELECT COUNT(*) FROM refresh_tokens").await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_token_traded_by_a_burst_has_one_winner() {
    let app = spawn_app().await;
    let (_, device) = linked_before_the_upgrade(&app, "legacy-race@example.com").await;
    let legacy = legacy_token(&app, &device, false).await;
    let form = [
        ("grant_type", "refresh_token"),
        ("client_id", "demo-tv"),
        ("refresh_token", legacy.as_str()),
    ];
    let answers = burst::burst(
        &app,
        (0..6)
            .map(|_| (None, burst::post("/oauth/token", "", &form)))
            .collect(),
    )
    .await;
    assert_eq!(burst::count(&answers, 200), 1, "{answers:#?}");
    assert_eq!(burst::count(&answers, 400), 5, "{answers:#?}");
    assert!(!still_linked(&app, &device).await);
}

async fn revoke(app: &TestApp, client: &str, token: &str) -> StatusCode {
    app.http
        .post(app.url("/oauth/revoke"))
        .form(&[("client_id", client), ("token", token)])
        .send()
        .await
        .unwrap()
        .status()
}

#[tokio::test]
async fn introspection_and_revocation_know_the_per_device_tokens() {
    let app = spawn_app().await;
    let (browser, tokens) = app
        .link_device("intro@example.com", "openid email offline_access")
        .await;
    let device = device_id(&tokens);
    let first = s(&tokens, "refresh_token");
    let linked_at = linkd::clock::Clock::now(app.clock.as_ref());
    let answer = app.introspect(&first).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["token_type"], "refresh_token");
    assert_eq!(answer["scope"], "openid email offline_access");
    assert_eq!(answer["client_id"], "demo-tv");
    assert_eq!(answer["sid"], device.as_str());
    assert_eq!(answer["iat"], linked_at);
    assert_eq!(answer["exp"], linked_at + 30 * 86_400);

    app.clock.advance_secs(120);
    let second = s(&app.refresh(&first, None).await.json, "refresh_token");
    let answer = app.introspect(&second).await;
    assert_eq!(answer["active"], true, "{answer}");
    assert_eq!(answer["iat"], linked_at + 120);
    // A narrowed access token leaves the refresh token's scope whole.
    let narrowed = app.refresh(&second, Some("openid")).await;
    assert_eq!(narrowed.json["scope"], "openid");
    let third = s(&narrowed.json, "refresh_token");
    assert_eq!(
        app.introspect(&third).await["scope"],
        "openid email offline_access"
    );
    for (what, token) in [
        ("the previous generation", second.clone()),
        ("an older one", first.clone()),
        ("a forgery", forge(&device, 3, [9; 32])),
    ] {
        assert_eq!(
            app.introspect(&token).await,
            serde_json::json!({"active": false}),
            "{what}"
        );
    }

    // RFC 7009: a forgery naming the device, or the token sent by another
    // app, changes nothing (and the answer does not tell).
    app.add_client("other-app", "openid", None).await;
    assert_eq!(
        revoke(&app, "demo-tv", &forge(&device, 3, [9; 32])).await,
        StatusCode::OK
    );
    assert_eq!(revoke(&app, "other-app", &third).await, StatusCode::OK);
    assert!(still_linked(&app, &device).await);
    // The device's own token unlinks it (§2.1).
    assert_eq!(revoke(&app, "demo-tv", &third).await, StatusCode::OK);
    assert!(!still_linked(&app, &device).await);
    assert_eq!(app.introspect(&third).await["active"], false);
    assert!(browser.get("/account").await.contains("Unlinked Demo TV"));

    // So does the previous one: it shows the caller held the device's token.
    let (_, tokens) = app
        .link_device("intro2@example.com", "openid offline_access")
        .await;
    let other = device_id(&tokens);
    let before = s(&tokens, "refresh_token");
    assert_eq!(app.refresh(&before, None).await.status, StatusCode::OK);
    assert_eq!(revoke(&app, "demo-tv", &before).await, StatusCode::OK);
    assert!(!still_linked(&app, &other).await);
}

#[tokio::test]
async fn a_restart_between_refreshes_loses_nothing() {
    let db = TestDatabase::new().await;
    let first = spawn_on(db.clone(), Options::default()).await;
    let (_, tokens) = first
        .link_device("restart@example.com", "openid offline_access")
        .await;
    let device = device_id(&tokens);
    let before = s(&tokens, "refresh_token");
    let renewed = first.refresh(&before, None).await;
    assert_eq!(renewed.status, StatusCode::OK, "{}", renewed.json);
    let current = s(&renewed.json, "refresh_token");
    first.stop().await;

    let second = spawn_on(db, Options::default()).await;
    let after = second.refresh(&current, None).await;
    assert_eq!(after.status, StatusCode::OK, "{}", after.json);
    assert_eq!(generation(&s(&after.json, "refresh_token")), 3);
    // What the first server rotated stays rotated.
    assert_refused(
        &second.refresh(&current, None).await,
        "invalid_grant",
        "the previous generation after a restart",
    );
    assert!(!still_linked(&second, &device).await);
}

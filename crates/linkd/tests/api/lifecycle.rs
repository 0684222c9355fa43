//! Linked devices and their tokens: the devices page, unlinking, refresh
//! rotation and reuse detection, revocation, introspection, userinfo, the
//! device API and signing key rotation.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;

fn s(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} in {v}"))
        .to_string()
}

#[tokio::test]
async fn unlinking_from_the_devices_page_cuts_the_device_off_everywhere() {
    let app = spawn_app().await;
    let auth = app
        .device_authorization(&[
            ("client_id", "demo-tv"),
            ("scope", "openid email offline_access"),
            ("device_name", "Bedroom TV"),
        ])
        .await;
    let auth: DeviceAuth = serde_json::from_value(auth.json).unwrap();
    let browser = app.signed_in_browser("rita@example.com").await;
    browser.approve(&auth.user_code).await;
    let tokens = app.poll(&auth.device_code).await.json;
    let access = s(&tokens, "access_token");
    let refresh = s(&tokens, "refresh_token");
    assert_eq!(app.introspect(&access).await["active"], true);

    let page = browser.get("/devices").await;
    assert_eq!(page.status, StatusCode::OK);
    for text in [
        "Bedroom TV",
        "Demo TV",
        "127.0.0.1",
        "not since it was linked",
    ] {
        assert!(
            page.contains(text),
            "devices page lacks {text:?}: {}",
            page.body
        );
    }
    let device_id = jwt_claims(&access)["sid"].as_str().unwrap().to_string();
    let unlink = browser
        .post(
            &format!("/devices/{device_id}/unlink"),
            &[("csrf", &browser.get("/signout").await.csrf())],
        )
        .await;
    assert_eq!(unlink.status, StatusCode::SEE_OTHER);
    assert_eq!(unlink.location(), format!("/devices?removed={device_id}"));
    let after = browser.get(unlink.location()).await;
    assert!(after.contains("Removed Bedroom TV."), "{}", after.body);
    assert!(after.contains("No devices are linked"));

    // Refresh, introspection, userinfo and the device API all see it at once.
    let refreshed = app.refresh(&refresh, None).await;
    assert_eq!(
        (refreshed.status, refreshed.error()),
        (StatusCode::BAD_REQUEST, "invalid_grant")
    );
    assert_eq!(
        app.introspect(&access).await,
        serde_json::json!({"active": false})
    );
    assert_eq!(
        app.introspect(&refresh).await,
        serde_json::json!({"active": false})
    );
    let userinfo = app.get_bearer("/oauth/userinfo", &access).await;
    assert_eq!(userinfo.status(), StatusCode::UNAUTHORIZED);
    assert!(
        userinfo.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    assert_eq!(
        app.get_bearer("/api/v1/device", &access).await.status(),
        StatusCode::UNAUTHORIZED
    );

    let account = browser.get("/account").await;
    assert!(
        account.contains("Approved Demo TV (Bedroom TV)"),
        "{}",
        account.body
    );
    assert!(
        account.contains("Unlinked Demo TV (Bedroom TV)"),
        "{}",
        account.body
    );
}

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_revokes_the_family() {
    let app = spawn_app().await;
    let (browser, tokens) = app
        .link_device("sam@example.com", "openid offline_access")
        .await;
    let first = s(&tokens, "refresh_token");

    app.clock.advance_secs(60);
    let second = app.refresh(&first, None).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.json);
    assert_eq!(second.headers["cache-control"], "no-store");
    let second_refresh = s(&second.json, "refresh_token");
    assert_ne!(second_refresh, first);
    assert_ne!(s(&second.json, "access_token"), s(&tokens, "access_token"));
    assert_eq!(second.json["scope"], "openid offline_access");
    assert!(second.json["id_token"].is_string());

    let third = app.refresh(&second_refresh, None).await;
    assert_eq!(third.status, StatusCode::OK);
    let newest = s(&third.json, "refresh_token");
    let newest_access = s(&third.json, "access_token");
    assert_eq!(app.introspect(&newest_access).await["active"], true);
    assert!(
        browser
            .get("/devices")
            .await
            .contains("Last used: just now")
    );

    // The first token is two generations old: linkd keeps only the last
    // two, so it cannot tell it from a forgery naming the device, and only
    // refuses it.
    assert_eq!(app.refresh(&first, None).await.error(), "invalid_grant");
    assert_eq!(app.introspect(&newest_access).await["active"], true);
    // The second comes back after its successor was used: someone holds a
    // copy. Everything goes.
    let reused = app.refresh(&second_refresh, None).await;
    assert_eq!(reused.error(), "invalid_grant");
    assert_eq!(app.refresh(&newest, None).await.error(), "invalid_grant");
    assert_eq!(app.introspect(&newest_access).await["active"], false);
    let account = browser.get("/account").await;
    assert!(
        account.contains("one of its old sign-in tokens was used again"),
        "{}",
        account.body
    );
    assert!(
        browser
            .get("/devices")
            .await
            .contains("No devices are linked")
    );
}

#[tokio::test]
async fn refresh_may_narrow_the_scope_but_never_widen_it() {
    let app = spawn_app().await;
    let (_, tokens) = app
        .link_device("tom@example.com", "openid email offline_access")
        .await;
    let narrowed = app
        .refresh(&s(&tokens, "refresh_token"), Some("openid"))
        .await;
    assert_eq!(narrowed.status, StatusCode::OK, "{}", narrowed.json);
    assert_eq!(narrowed.json["scope"], "openid");
    assert_eq!(
        jwt_claims(&s(&narrowed.json, "access_token"))["scope"],
        "openid"
    );

    let wider = app
        .refresh(&s(&narrowed.json, "refresh_token"), Some("openid profile"))
        .await;
    assert_eq!(
        (wider.status, wider.error()),
        (StatusCode::BAD_REQUEST, "invalid_scope")
    );

    // Without a scope the full original grant comes back.
    let full = app.refresh(&s(&narrowed.json, "refresh_token"), None).await;
    assert_eq!(full.json["scope"], "openid email offline_access");
}

#[tokio::test]
async fn refresh_tokens_expire_when_idle_and_links_at_their_absolute_limit() {
    let app = spawn_app_with(Options {
        configure: Box::new(|c| {
            c.refresh_idle_lifetime = 100;
            c.refresh_absolute_lifetime = 150;
        }),
        ..Default::default()
    })
    .await;
    let (_, tokens) = app
        .link_device("uma@example.com", "openid offline_access")
        .await;
    app.clock.advance_secs(90);
    let next = app.refresh(&s(&tokens, "refresh_token"), None).await;
    assert_eq!(next.status, StatusCode::OK);
    // The next token is capped by the absolute limit (150 s from linking).
    app.clock.advance_secs(61);
    let late = app.refresh(&s(&next.json, "refresh_token"), None).await;
    assert_eq!(late.error(), "invalid_grant");

    let (_, idle) = app
        .link_device("uma2@example.com", "openid offline_access")
        .await;
    app.clock.advance_secs(101);
    assert_eq!(
        app.refresh(&s(&idle, "refresh_token"), None).await.error(),
        "invalid_grant"
    );
}

#[tokio::test]
async fn a_refresh_token_only_works_for_its_own_app() {
    let app = spawn_app().await;
    let (_, tokens) = app
        .link_device("val@example.com", "openid offline_access")
        .await;
    app.add_client("other-app", "openid offline_access", None)
        .await;
    let stolen = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "other-app"),
                ("refresh_token", &s(&tokens, "refresh_token")),
            ],
        )
        .await;
    assert_eq!(stolen.error(), "invalid_grant");
    // The rightful app still can.
    assert_eq!(
        app.refresh(&s(&tokens, "refresh_token"), None).await.status,
        StatusCode::OK
    );
}

async fn revoke(app: &TestApp, client: &str, token: &str, hint: Option<&str>) -> StatusCode {
    let mut form = vec![("client_id", client), ("token", token)];
    if let Some(h) = hint {
        form.push(("token_type_hint", h));
    }
    let response = app
        .http
        .post(app.url("/oauth/revoke"))
        .form(&form)
        .send()
        .await
        .unwrap();
    response.status()
}

#[tokio::test]
async fn revocation_follows_rfc_7009() {
    let app = spawn_app().await;
    let (browser, tokens) = app
        .link_device("wes@example.com", "openid offline_access")
        .await;
    let access = s(&tokens, "access_token");
    let refresh = s(&tokens, "refresh_token");

    // Unknown and malformed tokens: 200, nothing changes.
    for junk in ["nonsense", "a.b.c", &"x".repeat(10_000)] {
        assert_eq!(revoke(&app, "demo-tv", junk, None).await, StatusCode::OK);
    }
    // Another app cannot revoke this device's tokens.
    app.add_client("other-app", "openid", None).await;
    assert_eq!(
        revoke(&app, "other-app", &refresh, None).await,
        StatusCode::OK
    );
    assert_eq!(app.introspect(&access).await["active"], true);
    // Missing token parameter and unknown client are errors.
    let missing = app
        .post_form("/oauth/revoke", &[("client_id", "demo-tv")])
        .await;
    assert_eq!(missing.error(), "invalid_request");
    let stranger = app
        .post_form("/oauth/revoke", &[("client_id", "nobody"), ("token", "x")])
        .await;
    assert_eq!(
        (stranger.status, stranger.error()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );

    // Revoking the access token ends only that token.
    assert_eq!(
        revoke(&app, "demo-tv", &access, Some("access_token")).await,
        StatusCode::OK
    );
    assert_eq!(app.introspect(&access).await["active"], false);
    assert_eq!(
        app.get_bearer("/oauth/userinfo", &access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let renewed = app.refresh(&refresh, None).await;
    assert_eq!(renewed.status, StatusCode::OK);
    let new_access = s(&renewed.json, "access_token");
    assert_eq!(app.introspect(&new_access).await["active"], true);

    // Revoking the refresh token unlinks the device (§2.1).
    assert_eq!(
        revoke(
            &app,
            "demo-tv",
            &s(&renewed.json, "refresh_token"),
            Some("refresh_token")
        )
        .await,
        StatusCode::OK
    );
    assert_eq!(app.introspect(&new_access).await["active"], false);
    assert!(
        browser
            .get("/devices")
            .await
            .contains("No devices are linked")
    );
}

#[tokio::test]
async fn introspection_requires_a_confidential_client() {
    let app = spawn_app().await;
    let (_, tokens) = app
        .link_device("xia@example.com", "openid offline_access")
        .await;
    let access = s(&tokens, "access_token");

    let anonymous = app
        .post_form("/oauth/introspect", &[("token", &access)])
        .await;
    assert_eq!(
        (anonymous.status, anonymous.error()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );
    let public = app
        .post_form(
            "/oauth/introspect",
            &[("client_id", "demo-tv"), ("token", &access)],
        )
        .await;
    assert_eq!(
        (public.status, public.error()),
        (StatusCode::UNAUTHORIZED, "invalid_client")
    );

    let active = app.introspect(&access).await;
    assert_eq!(active["active"], true);
    assert_eq!(active["client_id"], "demo-tv");
    assert_eq!(active["scope"], "openid offline_access");
    assert_eq!(active["token_type"], "Bearer");
    assert_eq!(active["sub"], jwt_claims(&access)["sub"]);
    let refresh = app.introspect(&s(&tokens, "refresh_token")).await;
    assert_eq!(
        (refresh["active"].clone(), refresh["token_type"].clone()),
        (Value::Bool(true), "refresh_token".into())
    );
    assert_eq!(
        app.introspect("garbage").await,
        serde_json::json!({"active": false})
    );

    app.clock.advance_secs(3601);
    assert_eq!(app.introspect(&access).await["active"], false, "expired");
}

#[tokio::test]
async fn userinfo_answers_for_openid_tokens() {
    let app = spawn_app().await;
    let (_, tokens) = app.link_device("yan@example.com", "openid email").await;
    let access = s(&tokens, "access_token");
    let info: Value = app
        .get_bearer("/oauth/userinfo", &access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["email"], "yan@example.com");
    assert_eq!(info["sub"], jwt_claims(&access)["sub"]);
    let post = app
        .http
        .post(app.url("/oauth/userinfo"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(post.status(), StatusCode::OK);

    let none = app
        .http
        .get(app.url("/oauth/userinfo"))
        .send()
        .await
        .unwrap();
    assert_eq!(none.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(none.headers()["www-authenticate"], "Bearer realm=\"linkd\"");
    let bad = app.get_bearer("/oauth/userinfo", "not.a.token").await;
    assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);

    let (_, no_openid) = app.link_device("zed@example.com", "profile").await;
    let response = app
        .get_bearer("/oauth/userinfo", &s(&no_openid, "access_token"))
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    assert!(
        response.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("insufficient_scope")
    );

    // An ID token is not an access token.
    let id_token = s(&tokens, "id_token");
    assert_eq!(
        app.get_bearer("/oauth/userinfo", &id_token).await.status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn a_device_can_see_and_end_its_own_link() {
    let app = spawn_app().await;
    let (browser, tokens) = app
        .link_device("abe@example.com", "openid offline_access")
        .await;
    let access = s(&tokens, "access_token");
    let info: Value = app
        .get_bearer("/api/v1/device", &access)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(info["account"]["email"], "abe@example.com");
    assert_eq!(info["client_id"], "demo-tv");
    assert_eq!(info["app_name"], "Demo TV");
    assert!(info["linked_at"].is_i64());

    let gone = app
        .http
        .delete(app.url("/api/v1/device"))
        .bearer_auth(&access)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        app.get_bearer("/api/v1/device", &access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.refresh(&s(&tokens, "refresh_token"), None)
            .await
            .error(),
        "invalid_grant"
    );
    assert!(browser.get("/account").await.contains("Unlinked Demo TV"));
}

#[tokio::test]
async fn devices_can_be_renamed_but_not_by_someone_else() {
    let app = spawn_app().await;
    let (owner, tokens) = app.link_device("bea@example.com", "openid").await;
    let device_id = s(&jwt_claims(&s(&tokens, "access_token")), "sid");
    let csrf = owner.get("/signout").await.csrf();
    let renamed = owner
        .post(
            &format!("/devices/{device_id}/rename"),
            &[("csrf", &csrf), ("label", "Kitchen <b>TV</b>")],
        )
        .await;
    assert_eq!(renamed.status, StatusCode::SEE_OTHER);
    let list = owner.get("/devices").await;
    assert!(
        list.body.contains("Kitchen &lt;b&gt;TV&lt;&#x2f;b&gt;"),
        "escaped: {}",
        list.body
    );

    let empty = owner
        .post(
            &format!("/devices/{device_id}/rename"),
            &[("csrf", &csrf), ("label", "   ")],
        )
        .await;
    assert_eq!(empty.status, StatusCode::BAD_REQUEST);
    assert!(empty.contains("Could not rename"));
    let no_csrf = owner
        .post(&format!("/devices/{device_id}/rename"), &[("label", "X")])
        .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);

    // Another person, with a valid session and token of their own, gets a
    // 404 for this device and changes nothing.
    let other = app.signed_in_browser("cal@example.com").await;
    let their_csrf = other.get("/account").await.csrf();
    let rename = other
        .post(
            &format!("/devices/{device_id}/rename"),
            &[("csrf", &their_csrf), ("label", "Mine now")],
        )
        .await;
    assert_eq!(rename.status, StatusCode::NOT_FOUND);
    let unlink = other
        .post(
            &format!("/devices/{device_id}/unlink"),
            &[("csrf", &their_csrf)],
        )
        .await;
    assert_eq!(unlink.status, StatusCode::NOT_FOUND);
    assert!(!other.get("/devices").await.contains("Kitchen"));
    let still = owner.get("/devices").await;
    assert!(still.contains("Kitchen <b>TV</b>") && !still.contains("Mine now"));
    assert_eq!(
        app.introspect(&s(&tokens, "access_token")).await["active"],
        true
    );

    // Signed out, the pages send people to sign in.
    let anon = app.browser().get("/devices").await;
    assert_eq!(anon.location(), "/signin?next=%2Fdevices");
}

#[tokio::test]
async fn a_token_signed_before_key_rotation_still_verifies_after_it() {
    let app = spawn_app().await;
    let (_, before) = app
        .link_device("dee@example.com", "openid offline_access")
        .await;
    let old_access = s(&before, "access_token");
    let old_kid = app.state.keys().signing_kid().to_string();

    let new_key =
        linkd::tokens::generate_signing_key(linkd::clock::Clock::now(app.clock.as_ref())).unwrap();
    app.state.store.insert_signing_key(&new_key).await.unwrap();
    app.state.reload_keys().await.unwrap();
    // Published at once, not yet signing.
    let jwks: Value = app
        .http
        .get(app.url("/oauth/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [new_key.kid.as_str(), old_kid.as_str()]);
    assert_eq!(app.state.keys().signing_kid(), old_kid);

    app.clock
        .advance_secs(linkd::tokens::KEY_PUBLISH_AHEAD_SECS);
    app.state.reload_keys().await.unwrap();
    assert_eq!(app.state.keys().signing_kid(), new_key.kid);
    let after = app.refresh(&s(&before, "refresh_token"), None).await;
    let new_access = s(&after.json, "access_token");
    assert_eq!(
        jsonwebtoken::decode_header(&new_access)
            .unwrap()
            .kid
            .unwrap(),
        new_key.kid
    );
    // Tokens from both keys verify: at introspection, and for anyone
    // holding the published JWKS.
    assert_eq!(app.introspect(&new_access).await["active"], true);
    assert_eq!(app.introspect(&old_access).await["active"], true);
    let jwks: Value = app
        .http
        .get(app.url("/oauth/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let old_jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == old_kid.as_str())
        .expect("old key published");
    let key = jsonwebtoken::DecodingKey::from_rsa_components(
        old_jwk["n"].as_str().unwrap(),
        old_jwk["e"].as_str().unwrap(),
    )
    .unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.set_audience(&[&app.base]);
    jsonwebtoken::decode::<Value>(&old_access, &key, &validation)
        .expect("old token verifies via JWKS");

    // Once every token of the old key has expired, it leaves the JWKS.
    app.clock.advance_secs(3600);
    app.state.reload_keys().await.unwrap();
    let jwks: Value = app
        .http
        .get(app.url("/oauth/jwks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, [new_key.kid.as_str()]);
}

#[tokio::test]
async fn late_reuse_is_still_caught_after_the_purge() {
    let app = spawn_app().await;
    let (_, tokens) = app
        .link_device("late-reuse@example.com", "openid offline_access")
        .await;
    let first = tokens["refresh_token"].as_str().unwrap().to_string();
    let device_id = jwt_claims(tokens["access_token"].as_str().unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_string();
    let second = app.refresh(&first, None).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.json);

    // Long after the rotated token's own expiry, with a purge in between.
    app.clock.advance_secs(31 * 86_400);
    linkd::jobs::purge_now(&app.state).await.unwrap();
    let reused = app.refresh(&first, None).await;
    assert_eq!(reused.error(), "invalid_grant");
    let device = app
        .state
        .store
        .get_linked_device(&device_id)
        .await
        .unwrap()
        .unwrap();
    assert!(device.revoked_at.is_some(), "the family was not revoked");
}

/// Issue 23 item 5: Unlink and Edit are pages of their own (opening them
/// changes nothing); someone else's device is a 404 there; the notice
/// after a change names the device only for its owner and only when the
/// change happened, so a crafted link cannot put words on the page.
#[tokio::test]
async fn unlink_asks_first_and_the_notice_names_only_what_happened() {
    let app = spawn_app().await;
    let (owner, tokens) = app.link_device("owner@example.com", "openid").await;
    let access = tokens["access_token"].as_str().unwrap();
    let id = jwt_claims(access)["sid"].as_str().unwrap().to_string();
    let stranger = app.signed_in_browser("stranger2@example.com").await;

    let ask = owner.get(&format!("/devices/{id}/unlink")).await;
    assert_eq!(ask.status, StatusCode::OK);
    assert!(ask.contains("Unlink Demo TV?") && ask.contains("signed out at once"));
    assert_eq!(
        app.introspect(access).await["active"],
        true,
        "asking changes nothing"
    );
    let forged = owner.get(&format!("/devices?removed={id}")).await;
    assert!(!forged.contains("Removed"), "not removed yet");
    for path in [
        format!("/devices/{id}/unlink"),
        format!("/devices/{id}/edit"),
    ] {
        assert_eq!(
            stranger.get(&path).await.status,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let theirs = stranger
        .post(&format!("/devices/{id}/unlink"), &[("csrf", &ask.csrf())])
        .await;
    assert_eq!(
        theirs.status,
        StatusCode::FORBIDDEN,
        "another session's form token"
    );

    let done = owner
        .post(&format!("/devices/{id}/unlink"), &[("csrf", &ask.csrf())])
        .await;
    assert_eq!(done.location(), format!("/devices?removed={id}"));
    assert!(
        owner
            .get(done.location())
            .await
            .contains("Removed Demo TV.")
    );
    assert!(!stranger.get(done.location()).await.contains("Removed"));
    assert_eq!(app.introspect(access).await["active"], false);
    // Unlinked: no page of its own any more.
    assert_eq!(
        owner.get(&format!("/devices/{id}/edit")).await.status,
        StatusCode::NOT_FOUND
    );
}

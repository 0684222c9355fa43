//! The person's own pages as people read them: times in their own zone
//! (from the browser's cookie, remembered with the account, else UTC and
//! said so), the settings apps keep in sync deleted only after a
//! confirmation, and a rename that says what it did at the device's place
//! in the list.

use std::sync::Arc;

use reqwest::StatusCode;
use reqwest::cookie::Jar;
use serde_json::Value;

use crate::helpers::*;

const PASSWORD: &str = "correct horse battery";

/// A browser that keeps cookies in `jar`, where a test can put the zone
/// cookie linkd's script sets.
fn browser_with_jar(app: &TestApp, accept_language: &str) -> (Browser, Arc<Jar>) {
    let jar = Arc::new(Jar::default());
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        reqwest::header::ACCEPT_LANGUAGE,
        accept_language.parse().unwrap(),
    );
    let browser = Browser {
        base: app.base.clone(),
        client: reqwest::Client::builder()
            .cookie_provider(jar.clone())
            .default_headers(headers)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    };
    (browser, jar)
}

fn set_zone(app: &TestApp, jar: &Jar, zone: &str) {
    jar.add_cookie_str(
        &format!("linkd_tz={zone}; Path=/"),
        &app.base.parse().unwrap(),
    );
}

/// "HH:MM" of the server's clock at `offset_minutes` east of UTC,
/// computed apart from linkd's own formatting.
fn clock_at(app: &TestApp, offset_minutes: i32) -> String {
    use linkd::clock::Clock;
    let now = app.clock.now();
    let offset = time::UtcOffset::from_whole_seconds(offset_minutes * 60).unwrap();
    let t = time::OffsetDateTime::from_unix_timestamp(now)
        .unwrap()
        .to_offset(offset);
    format!("{:02}:{:02}", t.hour(), t.minute())
}

/// Links a demo-tv device to the account signed in on `browser`.
async fn link(app: &TestApp, browser: &Browser, scope: &str) -> Value {
    let auth = app.start_device(scope).await;
    let done = browser.approve(&auth.user_code).await;
    assert!(done.contains("is now linked"), "{}", done.body);
    let tokens = app.poll(&auth.device_code).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.json);
    tokens.json
}

#[tokio::test]
async fn times_show_in_the_browsers_zone_remembered_for_browsers_without_it() {
    let app = spawn_app().await;
    let (browser, jar) = browser_with_jar(&app, "en");
    // India has no summer time: 5 h 30 east of UTC all year.
    set_zone(&app, &jar, "Asia/Kolkata");
    let signed_up = browser.sign_up("zoe@example.com", PASSWORD, "/").await;
    assert_eq!(signed_up.status, StatusCode::SEE_OTHER);
    link(&app, &browser, "openid").await;
    let kolkata = format!("today, {} IST", clock_at(&app, 330));

    let devices = browser.get("/devices").await;
    assert_eq!(devices.status, StatusCode::OK);
    assert!(devices.contains(&kolkata), "{kolkata}: {}", devices.body);
    assert!(!devices.contains(" UTC"), "{}", devices.body);
    // The zone came from the browser: nothing to correct.
    assert!(!devices.body.contains("data-zone"), "{}", devices.body);
    let account = browser.get("/account").await;
    assert!(account.contains(&kolkata), "{}", account.body);

    // In German, by the same clock.
    let (german, german_jar) = browser_with_jar(&app, "de");
    set_zone(&app, &german_jar, "Asia/Kolkata");
    german.sign_in("zoe@example.com", PASSWORD, "/").await;
    let heute = format!("heute, {} IST", clock_at(&app, 330));
    assert!(german.get("/devices").await.contains(&heute));

    // Another browser of the account that sends no zone (no script):
    // the zone its other browser reported, remembered.
    let plain = app.browser();
    plain.sign_in("zoe@example.com", PASSWORD, "/").await;
    let remembered = plain.get("/devices").await;
    assert!(remembered.contains(&kolkata), "{}", remembered.body);
    // A guess the script may correct by loading the page again.
    assert!(
        remembered.contains("data-zone=\"Asia/Kolkata\""),
        "{}",
        remembered.body
    );

    // A new zone from a browser replaces the remembered one.
    set_zone(&app, &jar, "America/Sao_Paulo");
    let moved = browser.get("/devices").await;
    let sao_paulo = clock_at(&app, -180);
    assert!(
        moved.contains(&format!("{sao_paulo} UTC-03")),
        "{}",
        moved.body
    );
    assert!(
        plain
            .get("/account")
            .await
            .contains(&format!("{sao_paulo} UTC-03"))
    );
}

#[tokio::test]
async fn without_a_zone_times_are_in_utc_and_say_so() {
    let app = spawn_app().await;
    let (browser, _) = link_with(&app, "una@example.com").await;
    let devices = browser.get("/devices").await;
    let utc = format!("today, {} UTC", clock_at(&app, 0));
    assert!(devices.contains(&utc), "{utc}: {}", devices.body);
    assert!(
        devices.body.contains("data-zone=\"UTC\""),
        "{}",
        devices.body
    );
    // Pages without times ask for no second load.
    assert!(!browser.get("/link").await.body.contains("data-zone"));
}

async fn link_with(app: &TestApp, email: &str) -> (Browser, Value) {
    let browser = app.signed_in_browser(email).await;
    let tokens = link(app, &browser, "openid offline_access sync").await;
    (browser, tokens)
}

#[tokio::test]
async fn a_zone_cookie_is_never_trusted_blindly() {
    let app = spawn_app().await;
    let (browser, jar) = browser_with_jar(&app, "en");
    set_zone(&app, &jar, "Asia/Kolkata");
    browser.sign_up("val@example.com", PASSWORD, "/").await;
    link(&app, &browser, "openid").await;
    let kolkata = clock_at(&app, 330);
    let long = "A/".repeat(2000);
    for zone in [
        "Mars/Olympus_Mons",
        "../../../../etc/passwd",
        "..%2F..%2Fetc%2Fpasswd",
        "/usr/share/zoneinfo/UTC",
        "%3Cscript%3E",
        "Europe/Berlin%00",
        "",
        long.as_str(),
    ] {
        set_zone(&app, &jar, zone);
        for path in ["/devices", "/account", "/link", "/"] {
            let page = browser.get(path).await;
            assert_eq!(
                page.status,
                StatusCode::OK,
                "{zone:?} {path}: {}",
                page.body
            );
        }
        // An unknown zone falls back to the remembered one, which it
        // does not replace.
        let devices = browser.get("/devices").await;
        assert!(
            devices.contains(&format!("{kolkata} IST")),
            "{zone:?}: {}",
            devices.body
        );
    }
    // A signed-out visitor with a hostile zone gets the page too.
    let page = app
        .http
        .get(app.url("/help"))
        .header("cookie", "linkd_tz=Etc/../../x; linkd_tz=Asia/Kolkata")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
}

#[tokio::test]
async fn deleting_synced_settings_asks_first_then_says_it_did() {
    let app = spawn_app().await;
    let (browser, tokens) = link_with(&app, "wes@example.com").await;
    let token = tokens["access_token"].as_str().unwrap();
    for key in ["prefs/language", "prefs/volume"] {
        app.create_setting(token, key, "\"fr\"").await;
    }
    let read = || async {
        app.http
            .get(app.url("/api/v1/sync/prefs/language"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .status()
    };

    let account = browser.get("/account").await;
    for text in [
        "Settings kept in sync for Demo TV",
        "2 settings (prefs, ",
        "Last changed today,",
    ] {
        assert!(account.contains(text), "{text}: {}", account.body);
    }
    // The delete is a link to its confirmation, styled as what it does.
    let confirm_path = "/account/sync/delete?app=demo-tv&collection=prefs";
    assert!(
        account.body.contains(&format!(
            "class=\"button danger\" href=\"{}\"",
            confirm_path.replace('&', "&amp;")
        )),
        "{}",
        account.body
    );

    let confirm = browser.get(confirm_path).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.contains("Delete the settings kept in sync for Demo TV?"));
    assert!(confirm.contains("removed at once from every device"));
    assert!(
        confirm
            .body
            .contains("<button type=\"submit\" class=\"danger\">")
    );
    assert_eq!(read().await, StatusCode::OK, "asking deletes nothing");

    let done = browser
        .post(
            "/account/sync/delete",
            &[
                ("csrf", &confirm.csrf()),
                ("app", "demo-tv"),
                ("collection", "prefs"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    assert_eq!(done.location(), "/account?done=synced&app=demo-tv#synced");
    assert_eq!(read().await, StatusCode::NOT_FOUND);
    let after = browser.get("/account?done=synced&app=demo-tv").await;
    assert!(
        after.contains("Deleted the settings kept in sync for Demo TV, from every device."),
        "{}",
        after.body
    );
    assert!(after.contains("No app keeps settings here yet."));
    // Gone: its confirmation page is a 404 page, not a button.
    let again = browser.get(confirm_path).await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    assert!(!again.body.contains("class=\"danger\""));
}

#[tokio::test]
async fn the_synced_settings_confirmation_refuses_bad_and_foreign_input() {
    let app = spawn_app().await;
    let (owner, tokens) = link_with(&app, "xia@example.com").await;
    let token = tokens["access_token"].as_str().unwrap();
    app.create_setting(token, "prefs/language", "\"de\"").await;
    let other = app.signed_in_browser("yan@example.com").await;

    // Another account's settings are not there to delete.
    let foreign = other
        .get("/account/sync/delete?app=demo-tv&collection=prefs")
        .await;
    assert_eq!(foreign.status, StatusCode::NOT_FOUND);
    assert!(foreign.body.contains("<header class=\"top\">"));
    let long = "x".repeat(300);
    for query in [
        "",
        "?app=demo-tv",
        "?collection=prefs",
        "?app=demo-tv&collection=..%2Fetc",
        "?app=demo-tv&collection=%3Cscript%3E",
        &format!("?app={long}&collection=prefs"),
    ] {
        let page = owner.get(&format!("/account/sync/delete{query}")).await;
        assert_eq!(
            page.status,
            StatusCode::BAD_REQUEST,
            "{query}: {}",
            page.body
        );
        assert!(
            page.contains("Choose the settings to delete"),
            "{}",
            page.body
        );
        assert!(!page.body.contains("<script>"));
    }
    // A notice names an app only from the store, never from the link.
    let crafted = owner
        .get("/account?done=synced&app=%3Cb%3EEvil%3C%2Fb%3E")
        .await;
    assert_eq!(crafted.status, StatusCode::OK);
    assert!(crafted.contains("Deleted those settings from every device."));
    assert!(!crafted.body.contains("Evil"));
    // Signed out, the step asks to sign in first.
    let stranger = app.browser();
    let out = stranger
        .get("/account/sync/delete?app=demo-tv&collection=prefs")
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert!(out.location().starts_with("/signin"), "{}", out.location());
    // The settings are still there.
    assert!(
        owner
            .get("/account")
            .await
            .contains("Settings kept in sync for Demo TV")
    );
}

#[tokio::test]
async fn a_rename_says_so_at_the_devices_place_in_the_list() {
    let app = spawn_app().await;
    let (browser, tokens) = link_with(&app, "ivo@example.com").await;
    link(&app, &browser, "openid").await;
    let id = jwt_claims(tokens["access_token"].as_str().unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_string();
    let edit = browser.get(&format!("/devices/{id}/edit")).await;
    assert_eq!(edit.status, StatusCode::OK);

    let renamed = browser
        .post(
            &format!("/devices/{id}/rename"),
            &[("csrf", &edit.csrf()), ("label", "Office TV")],
        )
        .await;
    assert_eq!(renamed.status, StatusCode::SEE_OTHER);
    assert_eq!(
        renamed.location(),
        format!("/devices?renamed={id}#device-{id}")
    );
    let list = browser.get(&format!("/devices?renamed={id}")).await;
    // The notice sits in the renamed device's own card, where the list
    // opens.
    let card = list
        .body
        .split(&format!("<li class=\"device\" id=\"device-{id}\">"))
        .nth(1)
        .unwrap_or_else(|| panic!("no card for {id}: {}", list.body));
    let card = card.split("</li>").next().unwrap();
    assert!(
        card.contains("role=\"status\">Saved: this device is now called Office TV.</p>"),
        "{card}"
    );
    assert_eq!(list.body.matches("role=\"status\"").count(), 1);

    // Hostile names are refused or shown as text.
    for (name, status) in [
        ("<script>alert(1)</script>", StatusCode::SEE_OTHER),
        ("\u{202e}\u{200b}", StatusCode::BAD_REQUEST),
        (&"n".repeat(500), StatusCode::BAD_REQUEST),
    ] {
        let page = browser
            .post(
                &format!("/devices/{id}/rename"),
                &[("csrf", &edit.csrf()), ("label", name)],
            )
            .await;
        assert_eq!(page.status, status, "{name:?}: {}", page.body);
    }
    let list = browser.get(&format!("/devices?renamed={id}")).await;
    assert!(!list.body.contains("<script>alert"), "{}", list.body);
    assert!(list.contains("Saved: this device is now called <script>alert(1)</script>."));
    // Someone else's device id names nothing.
    let other = app.signed_in_browser("jo@example.com").await;
    let foreign = other.get(&format!("/devices?renamed={id}")).await;
    assert_eq!(foreign.status, StatusCode::OK);
    assert!(!foreign.body.contains("role=\"status\""));
}

#[tokio::test]
async fn mails_name_times_in_the_zone_the_account_remembers() {
    use crate::link_notice::mail_to;
    use crate::mail::{SmtpServer, with_smtp};

    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(with_smtp(&smtp)).await;
    let (browser, jar) = browser_with_jar(&app, "en");
    set_zone(&app, &jar, "Asia/Kolkata");
    browser.sign_up("ria@example.com", PASSWORD, "/").await;
    // The zone is remembered on the first page that sends it.
    assert_eq!(browser.get("/devices").await.status, StatusCode::OK);
    link(&app, &browser, "openid").await;
    let got = smtp.wait_for_about(1, "New device linked").await;
    let text = mail_to(&got, "ria@example.com", "New device linked")["text"]
        .as_str()
        .unwrap()
        .to_string();
    let kolkata = format!("{} IST", clock_at(&app, 330));
    assert!(text.contains(&kolkata), "{kolkata}: {text}");
    assert!(!text.contains(" UTC"), "{text}");
}

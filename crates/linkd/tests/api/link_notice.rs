//! "A new device was linked", end to end over HTTP and a real SMTP
//! server: the notice after every approval (device code and authorization
//! code), in the person's language; its "This wasn't me" link, which
//! only a confirmed POST acts on, works once for 7 days, unlinks the
//! device, revokes its tokens, records the report and offers a new
//! password; the operator's switch; mail queued across an SMTP outage and
//! a restart arrives once.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::authorize::{REDIRECT, add_web_app, approved_code, redeem};
use crate::helpers::*;
use crate::mail::{SmtpServer, with_smtp};

/// The "This wasn't me" link in a mail.
pub fn not_me_link(mail: &Value, base: &str) -> String {
    let text = mail["text"].as_str().expect("text part");
    let start = text
        .find(&format!("{base}/not-me?token="))
        .unwrap_or_else(|| panic!("no link in {text}"));
    let link: String = text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    let html = mail["html"].as_str().expect("HTML part");
    assert!(html_unescape(html).contains(&link), "{html}");
    link
}

/// The newest mail to `to` whose subject starts with `subject`.
pub fn mail_to<'a>(got: &'a [Value], to: &str, subject: &str) -> &'a Value {
    got.iter()
        .rev()
        .find(|m| m["to"][0] == to && m["subject"].as_str().unwrap_or("").starts_with(subject))
        .unwrap_or_else(|| panic!("no {subject:?} mail to {to}: {got:?}"))
}

/// Opens the link and presses the button: the page that answers the
/// press, or the link's own page when it has no button.
pub async fn report(browser: &Browser, link: &str) -> Page {
    let confirm = browser.get(link).await;
    if confirm.status != StatusCode::OK {
        return confirm;
    }
    let token = hidden_field(&confirm.body, "token").expect("token field");
    browser
        .post("/not-me", &[("csrf", &confirm.csrf()), ("token", &token)])
        .await
}

#[tokio::test]
async fn a_linked_device_is_noticed_and_this_wasnt_me_unlinks_it() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(with_smtp(&smtp)).await;
    let auth: DeviceAuth = serde_json::from_value(
        app.device_authorization(&[
            ("client_id", "demo-tv"),
            ("scope", "openid offline_access"),
            ("device_name", "Living room TV"),
        ])
        .await
        .json,
    )
    .unwrap();
    let ada = app.signed_in_browser("ada@example.com").await;
    assert!(ada.approve(&auth.user_code).await.contains("is now linked"));
    let tokens = app.poll(&auth.device_code).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.json);

    let got = smtp.wait_for_about(1, "New device linked").await;
    let notice = mail_to(&got, "ada@example.com", "New device linked: Demo TV");
    let text = notice["text"].as_str().unwrap();
    assert!(text.contains("Device: Living room TV."), "{text}");
    assert!(text.contains("from the network 127.0.0.1"), "{text}");
    assert!(text.contains("UTC"), "{text}");
    assert!(notice["html"].as_str().unwrap().contains("Demo TV"));
    let link = not_me_link(notice, &app.base);

    // Opening the link (as a mail scanner does) changes nothing.
    let someone = app.browser();
    for _ in 0..2 {
        let page = someone.get(&link).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        assert!(page.contains("Demo TV (Living room TV) was linked to ada@example.com"));
    }
    let access = tokens.json["access_token"].as_str().unwrap();
    assert_eq!(
        app.get_bearer("/api/v1/device", access).await.status(),
        StatusCode::OK
    );
    // A form without the page's token does nothing either.
    let token = link.split("token=").nth(1).unwrap();
    let forged = someone.post("/not-me", &[("token", token)]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{}", forged.body);

    // Confirmed: unlinked, tokens dead, recorded, a new password offered.
    let done = report(&someone, &link).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.contains("Demo TV was unlinked"), "{}", done.body);
    let reset = done
        .linked(&format!("{}/reset?token=", app.base))
        .expect("a reset link");
    assert_eq!(
        app.get_bearer("/api/v1/device", access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let refresh = tokens.json["refresh_token"].as_str().unwrap();
    assert_eq!(app.refresh(refresh, None).await.error(), "invalid_grant");
    assert!(!ada.get("/devices").await.contains("Living room TV"));
    let account = ada.get("/account").await;
    assert!(
        account.contains("Unlinked Demo TV (Living room TV): you reported it was not you"),
        "{}",
        account.body
    );
    let form = someone.get(&reset).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    assert!(form.contains("ada@example.com"));

    // Single use: a second report, or a second tab's form, finds nothing.
    let again = report(&app.browser(), &link).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(again.contains("does not work any more"), "{}", again.body);
    let csrf = someone.get("/signin").await.csrf();
    let stale = someone
        .post("/not-me", &[("csrf", &csrf), ("token", token)])
        .await;
    assert_eq!(stale.status, StatusCode::BAD_REQUEST);
    // Made-up, tampered and oversized tokens open nothing.
    for bad in [
        "/not-me".to_string(),
        "/not-me?token=".to_string(),
        format!("{}x", &link[..link.len() - 1]),
        format!("/not-me?token={}", "A".repeat(5000)),
    ] {
        let page = someone.get(&bad).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{bad}");
    }
}

#[tokio::test]
async fn each_link_acts_on_its_own_device_only_and_expires_after_7_days() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(with_smtp(&smtp)).await;
    let (_ada, ada_tokens) = app
        .link_device("ada@example.com", "openid offline_access")
        .await;
    let (_ada2, ada_second) = {
        let auth = app.start_device("openid offline_access").await;
        let ada = app.browser();
        ada.sign_in("ada@example.com", "correct horse battery", "/")
            .await;
        ada.approve(&auth.user_code).await;
        (ada, app.poll(&auth.device_code).await.json)
    };
    let (bob, bob_tokens) = app
        .link_device("bob@example.com", "openid offline_access")
        .await;
    let got = smtp.wait_for_about(3, "New device linked").await;
    let ada_links: Vec<String> = got
        .iter()
        .filter(|m| m["to"][0] == "ada@example.com")
        .map(|m| not_me_link(m, &app.base))
        .collect();
    assert_eq!(ada_links.len(), 2);
    let bob_link = not_me_link(mail_to(&got, "bob@example.com", "New device"), &app.base);

    // Bob, signed in, uses Ada's first link: it names Ada and unlinks
    // only that one device of hers.
    let page = bob.get(&ada_links[0]).await;
    assert!(page.contains("ada@example.com"), "{}", page.body);
    let done = report(&bob, &ada_links[0]).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let refresh = |t: &Value| t["refresh_token"].as_str().unwrap().to_string();
    let first_dead = app.refresh(&refresh(&ada_tokens), None).await;
    let second_alive = app.refresh(&refresh(&ada_second), None).await;
    let bob_alive = app.refresh(&refresh(&bob_tokens), None).await;
    // The mails came in the order of the approvals.
    assert_eq!(first_dead.error(), "invalid_grant");
    assert_eq!(second_alive.status, StatusCode::OK, "{}", second_alive.json);
    assert_eq!(bob_alive.status, StatusCode::OK, "{}", bob_alive.json);

    // Seven days later a link opens nothing.
    app.clock.advance_secs(7 * 86_400 + 1);
    let expired = report(&app.browser(), &bob_link).await;
    assert_eq!(expired.status, StatusCode::BAD_REQUEST);
    assert!(expired.contains("older than 7 days"), "{}", expired.body);
}

#[tokio::test]
async fn an_authorization_code_approval_is_noticed_in_german_and_stopped_before_redemption() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(with_smtp(&smtp)).await;
    add_web_app(&app, "web", REDIRECT, None).await;
    let browser = app.browser_in("de-DE,de;q=0.9");
    let signed_up = browser
        .sign_up("ada@example.com", "correct horse battery", "/")
        .await;
    assert_eq!(signed_up.status, StatusCode::SEE_OTHER);

    // First approval: redeemed, then reported.
    let code = approved_code(&app, &browser).await;
    let tokens = redeem(&app, "web", &code, &[]).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.json);
    let got = smtp.wait_for_about(1, "Neues Gerät").await;
    let notice = mail_to(&got, "ada@example.com", "Neues Gerät verbunden: App web");
    assert!(
        notice["text"]
            .as_str()
            .unwrap()
            .contains("Das war ich nicht"),
        "{notice}"
    );
    let link = not_me_link(notice, &app.base);
    let confirm = browser.get(&link).await;
    assert!(
        confirm.contains("Trennen: Das war ich nicht"),
        "{}",
        confirm.body
    );
    let done = report(&browser, &link).await;
    assert!(done.contains("App web wurde getrennt"), "{}", done.body);
    let refresh = tokens.json["refresh_token"].as_str().unwrap();
    let after = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "web"),
                ("refresh_token", refresh),
            ],
        )
        .await;
    assert_eq!(after.error(), "invalid_grant");

    // The remembered consent went with it: the next request asks again,
    // and a code reported before the app redeems it is refused.
    let code = approved_code(&app, &browser).await;
    let got = smtp.wait_for_about(2, "Neues Gerät").await;
    let link = not_me_link(mail_to(&got, "ada@example.com", "Neues"), &app.base);
    let done = report(&browser, &link).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    let late = redeem(&app, "web", &code, &[]).await;
    assert_eq!(late.error(), "invalid_grant", "{}", late.json);
    let account = browser.get("/account").await;
    assert!(account.contains("Sie haben gemeldet"), "{}", account.body);
}

#[tokio::test]
async fn the_operator_can_turn_the_notice_off() {
    let smtp = SmtpServer::start().await;
    let mut options = with_smtp(&smtp);
    let configure = options.configure;
    options.configure = Box::new(move |c| {
        configure(c);
        c.no_link_notice = true;
    });
    let app = spawn_app_with(options).await;
    app.link_device("ada@example.com", "openid").await;
    // The sign-up's verification mail is all there is.
    smtp.wait_for_about(1, "Confirm your email address").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.state.store.list_outbox().await.unwrap().is_empty());
    assert_eq!(smtp.messages().len(), 1, "{:?}", smtp.messages());
}

#[tokio::test]
async fn notices_queued_during_an_smtp_outage_and_a_restart_arrive_once() {
    let mut smtp = SmtpServer::start().await;
    smtp.stop().await;
    let db = TestDatabase::new().await;
    let first = spawn_on(db.clone(), with_smtp(&smtp)).await;
    let first_base = first.base.clone();
    let auth = first.start_device("openid").await;
    let ada = first.signed_in_browser("ada@example.com").await;
    ada.approve(&auth.user_code).await;
    let auth = first.start_device("openid").await;
    ada.approve(&auth.user_code).await;
    // Both were tried while SMTP was down, and wait for their retry.
    for _ in 0..200 {
        let outbox = first.state.store.list_outbox().await.unwrap();
        if outbox.len() == 3 && outbox.iter().all(|m| m.attempts == 1 && m.lease.is_none()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let queued = first.state.store.list_outbox().await.unwrap();
    // The two notices and the sign-up's verification mail.
    assert_eq!(queued.len(), 3, "{queued:?}");
    assert!(queued.iter().all(|m| m.last_error.is_some()), "{queued:?}");
    first.stop().await;

    smtp.start_again().await;
    let second = spawn_on(db, with_smtp(&smtp)).await;
    second.clock.advance_secs(linkd::outbox::backoff(1));
    let got = smtp.wait_for_about(2, "New device linked").await;
    second.clock.advance_secs(3600);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got_later = smtp.messages_about("New device linked");
    assert_eq!(got_later.len(), 2, "{got:?}");
    let mut ids: Vec<&str> = got_later
        .iter()
        .map(|m| m["messageId"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 2, "each once");
    // The links the queued mails carry work after the restart (the test
    // servers' public URL is their random port).
    let link = not_me_link(&got_later[0], &first_base).replace(&first_base, &second.base);
    let done = report(&second.browser(), &link).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
}

//! Forgot password, end to end over HTTP and a real SMTP server: the
//! link arrives by mail, works once for 30 minutes, ends every session,
//! is recorded in the activity and followed by a notice; unknown
//! addresses get the same answer; requests are limited.

use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::helpers::*;
use crate::mail::{SmtpServer, with_smtp};

const PASSWORD: &str = "correct horse battery";
const NEW_PASSWORD: &str = "a brand new passphrase";

/// Asks for a reset link for `email` from a fresh browser.
async fn ask_for_link(app: &TestApp, email: &str) -> Page {
    let browser = app.browser();
    let form = browser.get("/signin/forgot").await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    // The form's token (the sign-in page has the same one, also when the
    // forgot page has no form because linkd sends no mail).
    let csrf = browser.get("/signin").await.csrf();
    browser
        .post("/signin/forgot", &[("csrf", &csrf), ("email", email)])
        .await
}

/// The reset link in the `n`th mail to `to` whose subject is `subject`.
async fn mailed_link(smtp: &SmtpServer, count: usize, to: &str, base: &str) -> String {
    let got = smtp.wait_for_about(count, "Reset your password").await;
    let mail = got
        .iter()
        .rev()
        .find(|m| m["to"][0] == to && m["subject"] == "Reset your password")
        .unwrap_or_else(|| panic!("no reset mail to {to}: {got:?}"));
    let text = mail["text"].as_str().unwrap();
    let start = text
        .find(&format!("{base}/reset?token="))
        .unwrap_or_else(|| panic!("no link in {text}"));
    let link: String = text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect();
    let html = mail["html"].as_str().unwrap();
    assert!(
        html_unescape(html).contains(&link),
        "the HTML has the same link: {html}"
    );
    link
}

/// Opens the link and sets `password`; returns the answer.
async fn use_link(browser: &Browser, link: &str, password: &str) -> Page {
    let form = browser.get(link).await;
    if form.status != StatusCode::OK {
        return form;
    }
    let token = hidden_field(&form.body, "token").expect("token field");
    browser
        .post(
            "/reset",
            &[
                ("csrf", &form.csrf()),
                ("token", &token),
                ("password", password),
            ],
        )
        .await
}

#[tokio::test]
async fn a_mailed_link_sets_a_new_password_once_and_ends_every_session() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(with_smtp(&smtp)).await;
    let other_session = app.signed_in_browser("ada@example.com").await;
    assert_eq!(other_session.get("/account").await.status, StatusCode::OK);

    let sent = ask_for_link(&app, "ADA@example.com").await;
    assert_eq!(sent.status, StatusCode::OK);
    assert!(sent.contains("a link to set a new password is on its way"));
    let link = mailed_link(&smtp, 1, "ada@example.com", &app.base).await;

    let browser = app.browser();
    let form = browser.get(&link).await;
    assert_eq!(form.status, StatusCode::OK, "{}", form.body);
    assert!(form.contains("ada@example.com"));
    let done = use_link(&browser, &link, NEW_PASSWORD).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert_eq!(done.location(), "/signin?reset=1");
    assert!(
        browser
            .get("/signin?reset=1")
            .await
            .contains("Your password was changed")
    );

    // Every session ended; the old password is gone, the new one works.
    let old = other_session.get("/account").await;
    assert_eq!(old.status, StatusCode::SEE_OTHER, "signed out");
    let wrong = app
        .browser()
        .sign_in("ada@example.com", PASSWORD, "/")
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    let person = app.browser();
    let right = person.sign_in("ada@example.com", NEW_PASSWORD, "/").await;
    assert_eq!(right.status, StatusCode::SEE_OTHER);

    // Single use.
    let again = use_link(&app.browser(), &link, "yet another password").await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST);
    assert!(again.contains("does not work any more"), "{}", again.body);

    // The notice, and the activity.
    let got = smtp.wait_for_about(1, "Your password was changed").await;
    let notice = got
        .iter()
        .find(|m| m["subject"] == "Your password was changed")
        .expect("notice mail");
    assert!(notice["text"].as_str().unwrap().contains("127.0.0.1"));
    let account = person.get("/account").await;
    assert!(
        account.contains("Password set anew with a reset link"),
        "{}",
        account.body
    );
}

#[tokio::test]
async fn a_link_expires_after_30_minutes_and_dies_when_the_password_changes() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(with_smtp(&smtp)).await;
    app.signed_in_browser("ada@example.com").await;

    ask_for_link(&app, "ada@example.com").await;
    let first = mailed_link(&smtp, 1, "ada@example.com", &app.base).await;
    app.clock.advance_secs(30 * 60 + 1);
    let expired = use_link(&app.browser(), &first, NEW_PASSWORD).await;
    assert_eq!(expired.status, StatusCode::BAD_REQUEST);

    // Two live links: using one voids the other.
    ask_for_link(&app, "ada@example.com").await;
    let second = mailed_link(&smtp, 2, "ada@example.com", &app.base).await;
    ask_for_link(&app, "ada@example.com").await;
    let third = mailed_link(&smtp, 3, "ada@example.com", &app.base).await;
    assert_ne!(second, third);
    let done = use_link(&app.browser(), &third, NEW_PASSWORD).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let voided = use_link(&app.browser(), &second, "yet another password").await;
    assert_eq!(voided.status, StatusCode::BAD_REQUEST);
    let signed_in = app
        .browser()
        .sign_in("ada@example.com", NEW_PASSWORD, "/")
        .await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
}

#[tokio::test]
async fn a_link_resets_only_its_own_account_whoever_opens_it() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(with_smtp(&smtp)).await;
    app.signed_in_browser("ada@example.com").await;
    let bob = app.signed_in_browser("bob@example.com").await;

    ask_for_link(&app, "ada@example.com").await;
    let link = mailed_link(&smtp, 1, "ada@example.com", &app.base).await;
    // Bob opens Ada's link in his signed-in browser: it still names Ada.
    let form = bob.get(&link).await;
    assert!(
        form.contains("Choose a new password for ada@example.com"),
        "{}",
        form.body
    );
    let done = use_link(&bob, &link, NEW_PASSWORD).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let bob_again = app
        .browser()
        .sign_in("bob@example.com", PASSWORD, "/")
        .await;
    assert_eq!(
        bob_again.status,
        StatusCode::SEE_OTHER,
        "Bob's password stays"
    );
    let ada = app
        .browser()
        .sign_in("ada@example.com", NEW_PASSWORD, "/")
        .await;
    assert_eq!(ada.status, StatusCode::SEE_OTHER);
    // A made-up or tampered token opens nothing.
    let forged = format!("{}x", &link[..link.len() - 1]);
    assert_eq!(
        app.browser().get(&forged).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.browser().get("/reset").await.status,
        StatusCode::BAD_REQUEST
    );
    let long = format!("/reset?token={}", "A".repeat(5000));
    assert_eq!(
        app.browser().get(&long).await.status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn unknown_addresses_get_the_same_answer_in_the_same_time_and_no_mail() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(Options {
        configure: Box::new({
            let url = smtp.url();
            move |c| {
                c.smtp_url = Some(url);
                c.mail_from = Some("no-reply@acme.test".into());
                c.password_resets_per_network = 0;
            }
        }),
        ..Options::default()
    })
    .await;
    app.signed_in_browser("ada@example.com").await;

    let mut known = Vec::new();
    let mut unknown = Vec::new();
    let mut bodies = Vec::new();
    for round in 0..3 {
        for (email, times) in [
            ("ada@example.com", &mut known),
            ("nobody@example.com", &mut unknown),
        ] {
            // A fresh per-address budget each round: new addresses for the
            // same two cases would change the answer's cause, not its look.
            app.state
                .limits
                .password_resets_per_email
                .reset(&email.to_string());
            let started = Instant::now();
            let page = ask_for_link(&app, email).await;
            times.push(started.elapsed());
            assert_eq!(page.status, StatusCode::OK, "round {round}");
            bodies.push(page.body);
        }
    }
    assert!(bodies.windows(2).all(|w| w[0] == w[1]), "one answer");
    known.sort();
    unknown.sort();
    let (k, u) = (known[1], unknown[1]);
    let gap = k.abs_diff(u);
    assert!(
        gap < Duration::from_millis(50),
        "medians {k:?} and {u:?} differ by {gap:?}"
    );
    let got = smtp.wait_for_about(3, "Reset your password").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got_later = smtp.messages_about("Reset your password");
    assert_eq!(got_later.len(), 3, "{got:?}");
    assert!(got_later.iter().all(|m| m["to"][0] == "ada@example.com"));
}

#[tokio::test]
async fn reset_requests_are_limited_per_address_and_per_network() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(with_smtp(&smtp)).await;
    for _ in 0..3 {
        let page = ask_for_link(&app, "carol@example.com").await;
        assert_eq!(page.status, StatusCode::OK);
    }
    let limited = ask_for_link(&app, "Carol@Example.com").await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers.contains_key("retry-after"));
    assert!(limited.contains("Too many reset links"));
    // The network's budget (10 an hour) runs out over other addresses.
    for n in 0..6 {
        let page = ask_for_link(&app, &format!("p{n}@example.com")).await;
        assert_eq!(page.status, StatusCode::OK, "{n}");
    }
    let limited = ask_for_link(&app, "someone@example.com").await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn without_smtp_the_page_says_so_and_the_operator_hands_out_a_link() {
    let app = spawn_app().await;
    app.signed_in_browser("ada@example.com").await;
    let page = app.browser().get("/signin/forgot").await;
    assert!(page.contains("cannot send email"), "{}", page.body);
    let de = app.browser_in("de").get("/signin/forgot").await;
    assert!(de.contains("keine E-Mails"), "{}", de.body);
    let refused = ask_for_link(&app, "ada@example.com").await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);

    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_linkd"))
        .env("LINKD_DATABASE_URL", app.db.url())
        .args([
            "user",
            "reset-link",
            "ADA@example.com",
            "--public-url",
            &app.base,
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let link = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(
        link.starts_with(&format!("{}/reset?token=", app.base)),
        "{link}"
    );
    let done = use_link(&app.browser(), &link, NEW_PASSWORD).await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    let signed_in = app
        .browser()
        .sign_in("ada@example.com", NEW_PASSWORD, "/")
        .await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    // Nothing was queued for mail.
    assert!(app.state.store.list_outbox().await.unwrap().is_empty());
}

//! Verified addresses and the account page, over HTTP and a real SMTP
//! server: sign-up mails a verification link; with verified addresses
//! required an unverified account is told what to do instead of
//! approving; "send again" is limited; links work once, for a day, for
//! their own account; a changed address counts once confirmed, with a
//! notice to the old one; changing the password ends other sessions;
//! "sign out everywhere else"; deleting the account takes its devices,
//! tokens and synced settings; the activity shows it all.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::*;
use crate::mail::{SmtpServer, with_smtp};

const PASSWORD: &str = "correct horse battery";

/// The `/verify?token=` link in the newest mail to `to` about `subject`.
fn verify_link(smtp: &SmtpServer, to: &str, base: &str) -> String {
    let got = smtp.messages_about("Confirm your email address");
    let mail = got
        .iter()
        .rev()
        .find(|m| m["to"][0] == to)
        .unwrap_or_else(|| panic!("no verification mail to {to}: {got:?}"));
    link_in(mail, &format!("{base}/verify?token="))
}

fn link_in(mail: &Value, prefix: &str) -> String {
    let text = mail["text"].as_str().expect("text");
    let start = text
        .find(prefix)
        .unwrap_or_else(|| panic!("no {prefix} in {text}"));
    text[start..]
        .chars()
        .take_while(|c| !c.is_whitespace())
        .collect()
}

/// Opens a verification link and presses Confirm: the answer, or the
/// link's own page when it has no button.
async fn confirm(browser: &Browser, link: &str) -> Page {
    let page = browser.get(link).await;
    if page.status != StatusCode::OK {
        return page;
    }
    let token = hidden_field(&page.body, "token").expect("token field");
    browser
        .post("/verify", &[("csrf", &page.csrf()), ("token", &token)])
        .await
}

fn requiring_verified(smtp: &SmtpServer) -> Options {
    let mut options = with_smtp(smtp);
    let configure = options.configure;
    options.configure = Box::new(move |c| {
        configure(c);
        c.require_verified_email = true;
    });
    options
}

#[tokio::test]
async fn an_unverified_account_is_told_to_confirm_and_approves_once_it_has() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(requiring_verified(&smtp)).await;
    let auth = app.start_device("openid").await;
    let ada = app.signed_in_browser("ada@example.com").await;
    smtp.wait_for_about(1, "Confirm your email address").await;
    let first = verify_link(&smtp, "ada@example.com", &app.base);

    // The code's page says what to do instead of asking to approve.
    let path = format!("/link?code={}", urlencode(&auth.user_code));
    let blocked = ada.get(&path).await;
    assert_eq!(blocked.status, StatusCode::FORBIDDEN, "{}", blocked.body);
    assert!(blocked.contains("Confirm your email address first"));
    assert!(blocked.contains("ada@example.com"), "{}", blocked.body);
    let csrf = blocked.csrf();
    let posted = ada
        .post(
            "/link/decide",
            &[
                ("csrf", &csrf),
                ("code", &auth.user_code),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(posted.status, StatusCode::FORBIDDEN);
    assert_eq!(
        app.poll(&auth.device_code).await.error(),
        "authorization_pending"
    );

    // "Send again": three an hour.
    for n in 0..3 {
        let sent = ada
            .post("/verify/send", &[("csrf", &csrf), ("next", &path)])
            .await;
        assert_eq!(sent.status, StatusCode::OK, "{n}: {}", sent.body);
        assert!(sent.contains("A new link is on its way to ada@example.com"));
    }
    let limited = ada
        .post("/verify/send", &[("csrf", &csrf), ("next", &path)])
        .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers.contains_key("retry-after"));
    assert!(limited.contains("Too many links"), "{}", limited.body);
    smtp.wait_for_about(4, "Confirm your email address").await;
    let latest = verify_link(&smtp, "ada@example.com", &app.base);

    // Opening a link changes nothing; confirming in another browser,
    // even Bob's, confirms Ada's address (the link shows she reads it).
    let bob = app.signed_in_browser("bob@example.com").await;
    let shown = bob.get(&first).await;
    assert!(shown.contains("Confirm that ada@example.com is your address"));
    assert_eq!(ada.get(&path).await.status, StatusCode::FORBIDDEN);
    let done = confirm(&bob, &first).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    assert!(done.contains("ada@example.com is now the confirmed address"));
    // Used, and the other links went with it.
    for link in [&first, &latest] {
        let again = confirm(&app.browser(), link).await;
        assert_eq!(again.status, StatusCode::BAD_REQUEST, "{link}");
        assert!(again.contains("does not work any more"));
    }
    assert!(ada.approve(&auth.user_code).await.contains("is now linked"));
    assert_eq!(app.poll(&auth.device_code).await.status, StatusCode::OK);
    // Bob is not verified: his own links still wait for him.
    let bob_code = app.start_device("openid").await;
    let bob_path = format!("/link?code={}", urlencode(&bob_code.user_code));
    assert_eq!(bob.get(&bob_path).await.status, StatusCode::FORBIDDEN);

    // A day later a link opens nothing.
    smtp.wait_for_about(5, "Confirm your email address").await;
    let bob_link = verify_link(&smtp, "bob@example.com", &app.base);
    app.clock.advance_secs(24 * 3600 + 1);
    let expired = confirm(&bob, &bob_link).await;
    assert_eq!(expired.status, StatusCode::BAD_REQUEST);
    for bad in ["/verify", "/verify?token=x", &format!("{bob_link}x")] {
        assert_eq!(app.browser().get(bad).await.status, StatusCode::BAD_REQUEST);
    }
    let account = ada.get("/account").await;
    assert!(
        account.contains("Address ada@example.com confirmed"),
        "{}",
        account.body
    );
    assert!(account.contains("Your address is confirmed."));
}

#[tokio::test]
async fn a_changed_address_counts_once_confirmed_and_the_old_one_is_told() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(with_smtp(&smtp)).await;
    let ada = app.signed_in_browser("ada@example.com").await;
    app.signed_in_browser("bob@example.com").await;
    let page = ada.get("/account").await;
    assert!(
        page.contains("Your address is not confirmed yet"),
        "{}",
        page.body
    );
    let csrf = page.csrf();
    let change = |email: &'static str, password: &'static str| {
        let csrf = csrf.clone();
        let ada = &ada;
        async move {
            ada.post(
                "/account/email",
                &[
                    ("csrf", &csrf),
                    ("new_email", email),
                    ("password", password),
                ],
            )
            .await
        }
    };
    let wrong = change("ada@new.example", "not my password").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.contains("That is not your current password."));
    let taken = change("BOB@example.com", PASSWORD).await;
    assert_eq!(taken.status, StatusCode::CONFLICT);
    let same = change("ada@example.com", PASSWORD).await;
    assert_eq!(same.status, StatusCode::BAD_REQUEST);
    let bad = change("not an address", PASSWORD).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);

    let asked = change("ada@new.example", PASSWORD).await;
    assert_eq!(asked.status, StatusCode::SEE_OTHER, "{}", asked.body);
    assert_eq!(asked.location(), "/account?done=email");
    assert!(
        ada.get("/account?done=email")
            .await
            .contains("Check your new address")
    );
    let notice = smtp
        .wait_for_about(1, "Your address is being changed")
        .await;
    assert_eq!(notice[0]["to"][0], "ada@example.com");
    assert!(
        notice[0]["text"]
            .as_str()
            .unwrap()
            .contains("ada@new.example")
    );
    smtp.wait_for_about(3, "Confirm your email address").await;
    let link = verify_link(&smtp, "ada@new.example", &app.base);

    // Until then the old address is the account's.
    let old = app
        .browser()
        .sign_in("ada@example.com", PASSWORD, "/")
        .await;
    assert_eq!(old.status, StatusCode::SEE_OTHER);
    let done = confirm(&app.browser(), &link).await;
    assert!(
        done.contains("ada@new.example is now the confirmed address"),
        "{}",
        done.body
    );
    let new = app
        .browser()
        .sign_in("ada@new.example", PASSWORD, "/")
        .await;
    assert_eq!(new.status, StatusCode::SEE_OTHER);
    let old = app
        .browser()
        .sign_in("ada@example.com", PASSWORD, "/")
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let account = ada.get("/account").await;
    assert!(
        account.contains("Signed in as ada@new.example"),
        "{}",
        account.body
    );
    assert!(account.contains("Address changed to ada@new.example"));
    assert!(account.contains("Asked to change the address to ada@new.example"));
}

#[tokio::test]
async fn the_account_page_changes_the_password_signs_out_others_and_deletes_everything() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(with_smtp(&smtp)).await;
    let (ada, tokens) = app
        .link_device("ada@example.com", "openid offline_access sync")
        .await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let put = app
        .http
        .put(app.url("/api/v1/sync/prefs/language"))
        .bearer_auth(&access)
        .header("content-type", "application/json")
        .header("if-none-match", "*")
        .body("\"de\"")
        .send()
        .await
        .unwrap();
    assert!(put.status().is_success(), "{}", put.status());
    let laptop = app.browser();
    let signed_in = laptop.sign_in("ada@example.com", PASSWORD, "/").await;
    assert_eq!(signed_in.status, StatusCode::SEE_OTHER);
    let csrf = ada.get("/account").await.csrf();

    // A new password needs the current one, and ends other sessions.
    let post_password = |current: &str, new: &str| {
        let form = [
            ("csrf", csrf.clone()),
            ("current_password", current.to_string()),
            ("new_password", new.to_string()),
        ];
        let ada = &ada;
        async move {
            let form: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
            ada.post("/account/password", &form).await
        }
    };
    let wrong = post_password("guess", "a brand new passphrase").await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert!(wrong.contains("That is not your current password."));
    let short = post_password(PASSWORD, "short").await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST);
    let done = post_password(PASSWORD, "a brand new passphrase").await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{}", done.body);
    assert!(
        ada.get(done.location())
            .await
            .contains("Your password was changed")
    );
    assert_eq!(laptop.get("/account").await.status, StatusCode::SEE_OTHER);
    let old = app
        .browser()
        .sign_in("ada@example.com", PASSWORD, "/")
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    smtp.wait_for_about(1, "Your password was changed").await;
    // Devices keep their link: a password change is about browsers.
    assert_eq!(
        app.get_bearer("/api/v1/device", &access).await.status(),
        StatusCode::OK
    );

    // Sign out everywhere else.
    let phone = app.browser();
    phone
        .sign_in("ada@example.com", "a brand new passphrase", "/")
        .await;
    assert_eq!(phone.get("/account").await.status, StatusCode::OK);
    let forged = ada.post("/account/sessions", &[]).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN);
    let ended = ada.post("/account/sessions", &[("csrf", &csrf)]).await;
    assert_eq!(ended.location(), "/account?done=sessions");
    assert_eq!(phone.get("/account").await.status, StatusCode::SEE_OTHER);
    let account = ada.get("/account").await;
    assert_eq!(account.status, StatusCode::OK);
    for line in [
        "Signed out everywhere else",
        "Password changed",
        "Signed in",
        "Approved Demo TV",
    ] {
        assert!(account.contains(line), "{line}: {}", account.body);
    }

    // Deleting needs the confirmation page's password.
    let confirm_page = ada.get("/account/delete").await;
    assert_eq!(confirm_page.status, StatusCode::OK);
    assert!(confirm_page.contains("This cannot be undone"));
    let refused = ada
        .post(
            "/account/delete",
            &[("csrf", &csrf), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let store = app.state.store.as_ref();
    let id = store
        .get_account_by_email("ada@example.com")
        .await
        .unwrap()
        .expect("still there")
        .id;
    assert_eq!(store.sync_usage(&id).await.unwrap().len(), 1);
    let deleted = ada
        .post(
            "/account/delete",
            &[("csrf", &csrf), ("password", "a brand new passphrase")],
        )
        .await;
    assert_eq!(deleted.status, StatusCode::SEE_OTHER, "{}", deleted.body);
    let bye = ada.get(deleted.location()).await;
    assert!(bye.contains("Your account was deleted"), "{}", bye.body);
    assert_eq!(ada.get("/account").await.status, StatusCode::SEE_OTHER);
    assert_eq!(
        app.get_bearer("/api/v1/device", &access).await.status(),
        StatusCode::UNAUTHORIZED
    );
    let refresh = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(app.refresh(refresh, None).await.error(), "invalid_grant");
    assert!(
        store
            .get_account_by_email("ada@example.com")
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.sync_usage(&id).await.unwrap().is_empty());
    assert!(store.list_linked_devices(&id).await.unwrap().is_empty());
    let again = app
        .browser()
        .sign_in("ada@example.com", "a brand new passphrase", "/")
        .await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED);
    // The address is free again.
    app.signed_in_browser("ada@example.com").await;
}

#[tokio::test]
async fn account_forms_need_a_session_and_their_token() {
    let app = spawn_app().await;
    let stranger = app.browser();
    let csrf = stranger.get("/signin").await.csrf();
    for path in [
        "/account/password",
        "/account/email",
        "/account/sessions",
        "/account/delete",
        "/verify/send",
    ] {
        let page = stranger.post(path, &[("csrf", &csrf)]).await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{path}");
        assert!(page.location().starts_with("/signin"), "{path}");
    }
    let ada = app.signed_in_browser("ada@example.com").await;
    for path in ["/account/password", "/account/email", "/account/delete"] {
        let page = ada.post(path, &[("password", PASSWORD)]).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{path}");
    }
    // Without mail the address cannot change, and the page says so.
    let page = ada.get("/account").await;
    assert!(page.contains("cannot send email"), "{}", page.body);
    let refused = ada
        .post(
            "/account/email",
            &[
                ("csrf", &page.csrf()),
                ("new_email", "ada@new.example"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn the_operator_confirms_an_address_with_the_cli() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(requiring_verified(&smtp)).await;
    let auth = app.start_device("openid").await;
    let ada = app.signed_in_browser("ada@example.com").await;
    smtp.wait_for_about(1, "Confirm your email address").await;
    let mailed = verify_link(&smtp, "ada@example.com", &app.base);
    let path = format!("/link?code={}", urlencode(&auth.user_code));
    assert_eq!(ada.get(&path).await.status, StatusCode::FORBIDDEN);

    let (ok, out, err) =
        crate::cli::run(&app.db, &["user", "verify-email", "ADA@example.com"], "").await;
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "confirmed the address ada@example.com");
    // Now it may go on to approve (the code came in a link: number
    // matching first), and the account page says so.
    let confirm = ada.get(&path).await;
    assert_eq!(confirm.status, StatusCode::SEE_OTHER, "{}", confirm.body);
    assert!(
        confirm.location().starts_with("/link?match="),
        "{}",
        confirm.location()
    );
    let account = ada.get("/account").await;
    assert!(
        account.contains("Address ada@example.com confirmed"),
        "{}",
        account.body
    );
    // The mailed link is spent; a second run changes nothing.
    let page = ada.get(&mailed).await;
    assert_ne!(page.status, StatusCode::OK, "{}", page.body);
    let (ok, out, _) =
        crate::cli::run(&app.db, &["user", "verify-email", "ada@example.com"], "").await;
    assert!(ok);
    assert_eq!(out.trim(), "ada@example.com was confirmed already");
    let (ok, _, err) =
        crate::cli::run(&app.db, &["user", "verify-email", "nobody@example.com"], "").await;
    assert!(!ok);
    assert!(err.contains("no account"), "{err}");
}

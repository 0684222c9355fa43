//! Passkeys over HTTP: the WebAuthn options linkd hands the browser, and
//! every answer that is not a good passkey's (malformed, for a challenge
//! never sent, sent to another browser, used already, expired, for an
//! unknown passkey) getting a clear page, never a 500; the sign-in limits
//! hold for passkeys too. Registering and signing in with a real
//! authenticator is the browser suite's (Chromium's virtual
//! authenticator, `tests/browser/passkeys.rs`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::helpers::*;

/// The options a page's script fetches: the status and the JSON.
async fn fetch_options(browser: &Browser, path: &str, csrf: &str) -> (StatusCode, Value) {
    let response = browser
        .client
        .post(format!("{}{path}", browser.base))
        .form(&[("csrf", csrf)])
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A sign-in answer as a browser's `toJSON()` makes it, for `challenge`,
/// from a passkey this server never saw: well formed, so the challenge
/// is what the server looks at first; its signature is no one's.
fn assertion(base: &str, challenge: &str, credential_id: &[u8]) -> String {
    let client_data = json!({
        "type": "webauthn.get",
        "challenge": challenge,
        "origin": base,
        "crossOrigin": false,
    })
    .to_string();
    // WebAuthn §6.1: RP id hash, flags (user present and verified), counter.
    let mut authenticator_data = Sha256::digest(b"localhost").to_vec();
    authenticator_data.push(0x05);
    authenticator_data.extend_from_slice(&1u32.to_be_bytes());
    // WebAuthn §5.1: credential ids are 16 to 1023 bytes.
    let mut credential_id = credential_id.to_vec();
    credential_id.resize(32, b'.');
    let id = URL_SAFE_NO_PAD.encode(credential_id);
    json!({
        "id": id,
        "rawId": id,
        "type": "public-key",
        "response": {
            "clientDataJSON": URL_SAFE_NO_PAD.encode(client_data),
            "authenticatorData": URL_SAFE_NO_PAD.encode(authenticator_data),
            "signature": URL_SAFE_NO_PAD.encode([0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x01]),
            "userHandle": URL_SAFE_NO_PAD.encode([7u8; 16]),
        },
        "clientExtensionResults": {},
        "authenticatorAttachment": "platform",
    })
    .to_string()
}

/// Opens the sign-in page (for its form token) and fetches a challenge.
async fn sign_in_challenge(browser: &Browser) -> (String, String) {
    let page = browser.get("/signin?next=%2Fdevices").await;
    let csrf = page.csrf();
    let (status, options) = fetch_options(browser, "/signin/passkey/options", &csrf).await;
    assert_eq!(status, StatusCode::OK, "{options}");
    (csrf, options["challenge"].as_str().unwrap().to_string())
}

async fn send_assertion(browser: &Browser, csrf: &str, credential: &str) -> Page {
    browser
        .post(
            "/signin/passkey",
            &[
                ("csrf", csrf),
                ("next", "/devices"),
                ("credential", credential),
            ],
        )
        .await
}

#[tokio::test]
async fn the_sign_in_page_offers_passkeys_with_a_discoverable_request() {
    let app = spawn_on_localhost().await;
    let browser = app.browser();
    let page = browser.get("/signin").await;
    assert_eq!(page.status, StatusCode::OK);
    // The browser's autofill may offer passkeys in the email field; the
    // button is for the others. Both need the script, which the page
    // loads from linkd itself (CSP script-src 'self').
    assert!(page.body.contains(r#"autocomplete="username webauthn""#));
    assert!(page.body.contains(r#"id="passkey-signin""#));
    assert!(page.contains("Sign in with a passkey"));
    let script = page.linked("/static/passkeys.js").expect("passkeys.js");
    let (status, headers, _) = browser.get_bytes(&script).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["content-type"], "text/javascript; charset=utf-8");
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("connect-src 'self'"), "{csp}");
    // Within the pages' weight budget with the passkey script.
    crate::page_weight::weigh(&browser, "/signin+passkeys", &page).await;

    let (status, options) = fetch_options(&browser, "/signin/passkey/options", &page.csrf()).await;
    assert_eq!(status, StatusCode::OK, "{options}");
    assert_eq!(options["rpId"], "localhost");
    // WebAuthn §13.4.3: at least 16 random bytes; a new one each time.
    let challenge = options["challenge"].as_str().unwrap();
    assert!(URL_SAFE_NO_PAD.decode(challenge).unwrap().len() >= 16);
    // Discoverable credentials: no list, the authenticator offers what
    // it has for this site (WebAuthn §6.2.2).
    assert!(
        options["allowCredentials"]
            .as_array()
            .is_none_or(|a| a.is_empty()),
        "{options}"
    );
    assert_eq!(options["userVerification"], "required");
    let (_, again) = options_for(&browser, &page.csrf()).await;
    assert_ne!(again["challenge"], options["challenge"]);

    // Without the page's form token: refused like any forged form.
    let (status, _) = options_for(&browser, "forged").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

async fn options_for(browser: &Browser, csrf: &str) -> (StatusCode, Value) {
    fetch_options(browser, "/signin/passkey/options", csrf).await
}

#[tokio::test]
async fn adding_a_passkey_names_the_account_under_a_handle_that_is_not_its_email() {
    let app = spawn_on_localhost().await;
    let person = app.signed_in_browser("keys@example.com").await;
    let account = person.get("/account").await;
    assert!(account.contains("Passkeys"));
    assert!(account.contains("Adding a passkey needs JavaScript"));
    assert!(account.body.contains(r#"id="passkey-add""#));
    crate::page_weight::weigh(&person, "/account+passkeys", &account).await;
    let (status, options) =
        fetch_options(&person, "/account/passkeys/options", &account.csrf()).await;
    assert_eq!(status, StatusCode::OK, "{options}");
    assert_eq!(options["rp"]["id"], "localhost");
    assert_eq!(options["user"]["name"], "keys@example.com");
    // WebAuthn §14.6.1: the user handle carries no personal data.
    let handle = URL_SAFE_NO_PAD
        .decode(options["user"]["id"].as_str().unwrap())
        .unwrap();
    assert_eq!(handle.len(), 16);
    assert!(!String::from_utf8_lossy(&handle).contains("keys"));
    assert_eq!(options["authenticatorSelection"]["residentKey"], "required");
    assert!(
        options["excludeCredentials"]
            .as_array()
            .is_none_or(|a| a.is_empty())
    );

    // Signed out: the options are not anyone's to have.
    let stranger = app.browser();
    let page = stranger.get("/signin").await;
    let (status, _) = fetch_options(&stranger, "/account/passkeys/options", &page.csrf()).await;
    assert_eq!(status, StatusCode::SEE_OTHER);

    // A made-up registration: a page that says so, nothing added.
    let page = person
        .post(
            "/account/passkeys",
            &[
                ("csrf", &account.csrf()),
                ("name", "Laptop"),
                ("credential", r#"{"id":"AAAA","type":"public-key"}"#),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.contains("Your browser's answer was not a passkey's"));
    assert!(page.contains("No passkeys yet."));
}

#[tokio::test]
async fn answers_that_are_not_a_passkeys_get_a_page_never_a_500() {
    let app = spawn_on_localhost().await;
    let browser = app.browser();
    let (csrf, challenge) = sign_in_challenge(&browser).await;
    let huge = "x".repeat(12_000);
    let wrong_type =
        assertion(&app.base, &challenge, b"cred").replace("webauthn.get", "webauthn.create");
    for credential in [
        "",
        "null",
        "not json",
        "{}",
        r#"{"id":"!!","rawId":"!!","type":"public-key","response":{}}"#,
        &huge,
        &wrong_type,
    ] {
        let page = send_assertion(&browser, &csrf, credential).await;
        assert!(
            page.status == StatusCode::BAD_REQUEST || page.status == StatusCode::UNAUTHORIZED,
            "{credential:.40}: {} {}",
            page.status,
            page.body
        );
        assert!(page.contains("Sign in"), "{credential:.40}");
        assert!(page.body.contains(r#"role="alert""#), "{credential:.40}");
    }
    // A forged form is refused before anything is read.
    let page = send_assertion(&browser, "forged", &assertion(&app.base, &challenge, b"x")).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn a_challenge_works_once_and_only_in_the_browser_that_asked() {
    let app = spawn_on_localhost().await;
    let asker = app.browser();
    let (csrf, challenge) = sign_in_challenge(&asker).await;
    let answer = assertion(&app.base, &challenge, b"a credential nobody added");

    // Another browser with the same answer (a stolen or relayed one):
    // the challenge is not its to use, and stays the asker's.
    let other = app.browser();
    let other_csrf = other.get("/signin").await.csrf();
    let page = send_assertion(&other, &other_csrf, &answer).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.contains("That passkey request expired or was used already"));

    // The asker: the challenge is taken, and the passkey is nobody's.
    let page = send_assertion(&asker, &csrf, &answer).await;
    assert_eq!(page.status, StatusCode::UNAUTHORIZED, "{}", page.body);
    assert!(page.contains("That passkey doesn't open an account here"));
    assert!(
        page.headers
            .get("set-cookie")
            .is_none_or(|c| { !c.to_str().unwrap().starts_with("linkd_session=") })
    );

    // The same answer again: the challenge was used (WebAuthn §13.4.3).
    let page = send_assertion(&asker, &csrf, &answer).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.contains("That passkey request expired or was used already"));

    // A challenge this server never sent.
    let made_up = URL_SAFE_NO_PAD.encode([9u8; 16]);
    let page = send_assertion(&asker, &csrf, &assertion(&app.base, &made_up, b"x")).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.contains("That passkey request expired or was used already"));
}

#[tokio::test]
async fn a_challenge_expires_after_five_minutes() {
    let app = spawn_on_localhost().await;
    let browser = app.browser();
    let (csrf, challenge) = sign_in_challenge(&browser).await;
    app.clock.advance_secs(301);
    let page = send_assertion(&browser, &csrf, &assertion(&app.base, &challenge, b"x")).await;
    assert_eq!(page.status, StatusCode::BAD_REQUEST);
    assert!(page.contains("That passkey request expired or was used already"));
}

#[tokio::test]
async fn passkey_sign_ins_meet_the_sign_in_limits() {
    let app = spawn_on_localhost().await;
    let browser = app.browser();
    // The same unknown passkey again and again from one network: its
    // failures count like wrong passwords (3 free, then a wait).
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let (csrf, challenge) = sign_in_challenge(&browser).await;
        let page = send_assertion(
            &browser,
            &csrf,
            &assertion(&app.base, &challenge, b"guessed"),
        )
        .await;
        if page.status == StatusCode::TOO_MANY_REQUESTS {
            assert!(page.headers.contains_key("retry-after"));
            assert!(page.contains("Too many attempts"));
        }
        statuses.push(page.status);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS,
        ]
    );
}

#[tokio::test]
async fn a_server_at_an_ip_address_offers_no_passkeys() {
    // WebAuthn §5.1.3: the RP id is a domain; the suite's usual server is
    // at 127.0.0.1.
    let app = spawn_app().await;
    let browser = app.browser();
    let page = browser.get("/signin").await;
    assert!(!page.body.contains("passkey"));
    assert!(page.body.contains(r#"autocomplete="username""#));
    let (status, _) = options_for(&browser, &page.csrf()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let person = app.signed_in_browser("nokeys@example.com").await;
    assert!(!person.get("/account").await.contains("Passkeys"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_ceremonies_stores_no_more_challenges_than_the_network_may_start() {
    use crate::burst::{anonymous_form, burst, count, post};
    use sqlx::Connection;
    use std::net::IpAddr;

    let app = spawn_on_localhost_with(|c| c.passkey_ceremonies_per_network = 10).await;
    let (cookie, csrf) = anonymous_form(&app, "/signin").await;
    let request = || {
        post(
            "/signin/passkey/options",
            &cookie,
            &[("csrf", csrf.as_str())],
        )
    };
    // 40 at once from one network (an IPv4 address, as every limit per
    // network counts it), then 5 from another, whose budget is its own.
    let one: Vec<_> = (0..40)
        .map(|_| (Some(IpAddr::from([127, 0, 0, 10])), request()))
        .collect();
    let answers = burst(&app, one).await;
    assert_eq!(
        count(&answers, 200),
        10,
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert_eq!(count(&answers, 429), 30);
    for refused in answers.iter().filter(|a| a.status == 429) {
        assert!(refused.header("retry-after").is_some());
        assert!(
            refused.body.contains("too many passkey ceremonies"),
            "{}",
            refused.body
        );
    }
    let other: Vec<_> = (0..5)
        .map(|_| (Some(IpAddr::from([127, 0, 0, 11])), request()))
        .collect();
    assert_eq!(count(&burst(&app, other).await, 200), 5);

    // What reached the store: one challenge per ceremony allowed.
    let stored = "SELECT COUNT(*) FROM passkey_challenges";
    let rows: i64 = match &*app.db {
        TestDatabase::Sqlite { url, .. } => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query_scalar(stored)
                .fetch_one(&mut conn)
                .await
                .unwrap()
        }
        TestDatabase::Postgres { url, .. } => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query_scalar(stored)
                .fetch_one(&mut conn)
                .await
                .unwrap()
        }
    };
    assert_eq!(rows, 15);
}

//! The person's pages over HTTP: sign-in round trips, code entry, the
//! error pages, CSRF, cookies and headers.

use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn a_code_link_sends_a_stranger_to_sign_in_and_back_to_the_same_code() {
    let app = spawn_app().await;
    let auth = app.start_device("openid").await;
    let browser = app.browser();
    let first = browser.get(&auth.verification_uri_complete).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    let next = format!("/link?code={}", auth.user_code);
    assert_eq!(
        first.location(),
        format!("/signin?next={}", urlencode(&next))
    );

    // Sign-in page offers to create an account, keeping the way back.
    let signin = browser.get(first.location()).await;
    let signup_link = format!("/signup?next=/link%3Fcode%3D{}", auth.user_code);
    assert!(signin.contains(&signup_link), "{}", signin.body);
    assert!(signin.contains("autocomplete=\"current-password\""));

    let created = browser
        .sign_up("hana@example.com", "long enough password", &next)
        .await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{}", created.body);
    assert_eq!(created.location(), next);
    // A code that came in a link goes to number matching.
    let matching = browser.get(created.location()).await;
    assert_eq!(matching.status, StatusCode::SEE_OTHER);
    assert!(matching.location().starts_with("/link?match="));
    let confirm = browser.get(matching.location()).await;
    assert_eq!(confirm.status, StatusCode::OK);
    assert!(confirm.contains("Which code does your device show?"));
    assert!(confirm.contains(&auth.user_code));

    // Signing out and in again returns to the code too.
    let csrf = confirm.csrf();
    let out = browser
        .post("/signout", &[("csrf", &csrf), ("next", &next)])
        .await;
    assert_eq!(out.status, StatusCode::SEE_OTHER);
    assert_eq!(
        out.location(),
        format!("/signin?signed_out=1&next={}", urlencode(&next))
    );
    let signed_out = browser.get(out.location()).await;
    assert!(signed_out.contains("You're signed out."));
    let back = browser
        .sign_in("hana@example.com", "long enough password", &next)
        .await;
    assert_eq!(back.status, StatusCode::SEE_OTHER);
    assert_eq!(back.location(), next);
}

#[tokio::test]
async fn codes_are_accepted_in_any_case_with_or_without_dashes() {
    let app = spawn_app().await;
    let auth = app.start_device("openid").await;
    let browser = app.signed_in_browser("ivan@example.com").await;
    let plain = auth.user_code.replace('-', "");
    for typed in [
        plain.to_lowercase(),
        format!(" {} {} ", &plain[..4], &plain[4..]),
        format!("{}--{}", &plain[..2], &plain[2..]),
    ] {
        let page = browser.type_code(&typed).await;
        assert_eq!(page.status, StatusCode::OK, "{typed:?}: {}", page.body);
        assert!(page.contains(&auth.user_code));
    }
    // Approving with the code as typed works as well.
    let confirm = browser.type_code(&plain.to_lowercase()).await;
    let csrf = confirm.csrf();
    let done = browser
        .post(
            "/link/decide",
            &[
                ("csrf", &csrf),
                ("code", &plain.to_lowercase()),
                ("decision", "approve"),
            ],
        )
        .await;
    assert!(done.contains("is now linked"), "{}", done.body);
}

#[tokio::test]
async fn wrong_malformed_and_used_codes_each_get_their_own_page() {
    let app = spawn_app().await;
    let browser = app.signed_in_browser("jane@example.com").await;

    let form = browser.get("/link").await;
    assert_eq!(form.status, StatusCode::OK);
    assert!(form.contains("autocomplete=\"one-time-code\""));

    let wrong = browser.get("/link?code=BCDF-GHJK").await;
    assert_eq!(wrong.status, StatusCode::NOT_FOUND);
    assert!(
        wrong.contains("We couldn't find that code"),
        "{}",
        wrong.body
    );
    assert!(
        wrong.contains("value=\"BCDF-GHJK\""),
        "keeps what was typed"
    );

    let malformed = browser.get("/link?code=HELLO").await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    assert!(malformed.contains("Codes are 8 letters"));

    // A look-alike of a letter codes never use (Cyrillic А) is refused;
    // look-alikes of code letters are read as them (tests/api/phishing.rs).
    let lookalike = browser
        .get(&format!("/link?code={}", urlencode("ＢCDF-GHJА")))
        .await;
    assert_eq!(lookalike.status, StatusCode::BAD_REQUEST);

    let auth = app.start_device("openid").await;
    browser.approve(&auth.user_code).await;
    // The person who approved it is told it is linked; anyone else that
    // the code is used.
    let again = browser.type_code(&auth.user_code).await;
    assert_eq!(again.status, StatusCode::OK);
    assert!(again.contains("Your Demo TV is now linked"));
    let other = app.signed_in_browser("used-other@example.com").await;
    let used = other.type_code(&auth.user_code).await;
    assert_eq!(used.status, StatusCode::CONFLICT);
    assert!(used.contains("This code has already been used"));
}

#[tokio::test]
async fn forms_without_the_right_csrf_token_change_nothing() {
    let app = spawn_app().await;
    let auth = app.start_device("openid").await;
    let browser = app.signed_in_browser("kim@example.com").await;

    for csrf in [None, Some("forged-token")] {
        let mut form = vec![("code", auth.user_code.as_str()), ("decision", "approve")];
        if let Some(c) = csrf {
            form.push(("csrf", c));
        }
        let page = browser.post("/link/decide", &form).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN);
        assert!(page.contains("This form has expired"));
    }
    assert_eq!(
        app.poll(&auth.device_code).await.error(),
        "authorization_pending"
    );

    // Another person's token does not work in this session either.
    let other = app.signed_in_browser("lee@example.com").await;
    let their_csrf = other.type_code(&auth.user_code).await.csrf();
    let page = browser
        .post(
            "/link/decide",
            &[
                ("csrf", &their_csrf),
                ("code", &auth.user_code),
                ("decision", "approve"),
            ],
        )
        .await;
    assert_eq!(page.status, StatusCode::FORBIDDEN);

    // Sign-in, sign-up and sign-out check the token too.
    let anon = app.browser();
    let signin = anon
        .post(
            "/signin",
            &[
                ("email", "kim@example.com"),
                ("password", "correct horse battery"),
            ],
        )
        .await;
    assert_eq!(signin.status, StatusCode::FORBIDDEN);
    let signup = anon
        .post(
            "/signup",
            &[
                ("email", "new@example.com"),
                ("password", "correct horse battery"),
            ],
        )
        .await;
    assert_eq!(signup.status, StatusCode::FORBIDDEN);
    let signout = browser.post("/signout", &[("csrf", "nope")]).await;
    assert_eq!(signout.status, StatusCode::FORBIDDEN);
    // Still signed in.
    assert_eq!(
        browser.type_code(&auth.user_code).await.status,
        StatusCode::OK
    );
    app.clock.advance_secs(5);
    assert_eq!(
        app.poll(&auth.device_code).await.error(),
        "authorization_pending"
    );
}

#[tokio::test]
async fn sign_in_errors_do_not_reveal_whether_an_account_exists() {
    let app = spawn_app().await;
    app.signed_in_browser("mia@example.com").await;
    let browser = app.browser();
    let wrong_password = browser
        .sign_in("mia@example.com", "not the password", "/")
        .await;
    let no_account = browser
        .sign_in("nobody@example.com", "not the password", "/")
        .await;
    assert_eq!(wrong_password.status, StatusCode::UNAUTHORIZED);
    assert_eq!(no_account.status, StatusCode::UNAUTHORIZED);
    let message = "The email or password is not right.";
    assert!(wrong_password.contains(message) && no_account.contains(message));
    let strip = |p: &Page, email: &str| p.body.replace(email, "").replace(&p.csrf(), "");
    assert_eq!(
        strip(&wrong_password, "mia@example.com"),
        strip(&no_account, "nobody@example.com")
    );

    let ok = browser
        .sign_in("MIA@example.com", "correct horse battery", "/")
        .await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "emails ignore case");
}

#[tokio::test]
async fn sign_up_explains_what_is_wrong() {
    let app = spawn_app().await;
    let browser = app.browser();
    let short = browser.sign_up("nia@example.com", "short", "/").await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST);
    assert!(short.contains("8 to 1024 characters"), "{}", short.body);
    let email = browser
        .sign_up("not-an-email", "long enough password", "/")
        .await;
    assert_eq!(email.status, StatusCode::BAD_REQUEST);
    assert!(email.contains("does not look like an email address"));
    app.signed_in_browser("nia@example.com").await;
    let taken = app
        .browser()
        .sign_up("NIA@example.com", "long enough password", "/")
        .await;
    assert_eq!(taken.status, StatusCode::CONFLICT);
    assert!(taken.contains("already exists"));
}

#[tokio::test]
async fn next_never_leads_off_site() {
    let app = spawn_app().await;
    let browser = app.browser();
    let attempts = [
        "https://evil.example/",
        "//evil.example",
        "/\\evil.example",
        "javascript:alert(1)",
    ];
    for (i, next) in attempts.into_iter().enumerate() {
        let page = browser
            .get(&format!("/signin?next={}", urlencode(next)))
            .await;
        assert_eq!(
            hidden_field(&page.body, "next").as_deref(),
            Some("/"),
            "{next}"
        );
        let signed = app
            .browser()
            .sign_up(
                &format!("visitor{i}@example.com"),
                "long enough password",
                next,
            )
            .await;
        assert_eq!(signed.location(), "/", "{next}");
    }
}

#[tokio::test]
async fn session_cookies_and_security_headers() {
    let app = spawn_app().await;
    let browser = app.browser();
    let form = browser.get("/signup").await;
    for (name, value) in [
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
    ] {
        assert_eq!(form.headers[name], value, "{name}");
    }
    let csp = form.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'none'"));
    assert!(!csp.contains("unsafe-inline"));
    assert!(
        form.headers.get("strict-transport-security").is_none(),
        "no HSTS over http"
    );

    let csrf = form.csrf();
    let done = browser
        .post(
            "/signup",
            &[
                ("csrf", &csrf),
                ("email", "olga@example.com"),
                ("password", "long enough password"),
            ],
        )
        .await;
    let cookie = done.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("linkd_session="));
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
    assert!(!cookie.contains("Secure"), "plain http: {cookie}");
}

#[tokio::test]
async fn behind_https_cookies_are_secure_and_hsts_is_sent() {
    let app = spawn_app_with(Options {
        configure: Box::new(|c| c.public_url = Some("https://link.example.com".into())),
        ..Default::default()
    })
    .await;
    let page = app.browser().get("/signin").await;
    assert_eq!(
        page.headers["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
    let cookie = page.headers["set-cookie"].to_str().unwrap();
    assert!(cookie.contains("; Secure"), "{cookie}");
    let auth = app.start_device("openid").await;
    assert_eq!(auth.verification_uri, "https://link.example.com/link");
}

#[tokio::test]
async fn unknown_pages_are_readable_404s() {
    let app = spawn_app().await;
    let page = app.browser().get("/no/such/page").await;
    assert_eq!(page.status, StatusCode::NOT_FOUND);
    assert!(page.contains("Page not found"));
    assert!(
        page.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
}

#[tokio::test]
async fn approval_requires_a_signed_in_person() {
    let app = spawn_app().await;
    let auth = app.start_device("openid").await;
    let stranger = app.browser();
    let page = stranger
        .post(
            "/link/decide",
            &[("code", &auth.user_code), ("decision", "approve")],
        )
        .await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(page.location().starts_with("/signin?next="));
    assert_eq!(
        app.poll(&auth.device_code).await.error(),
        "authorization_pending"
    );
}

#[tokio::test]
async fn fields_tell_phones_and_password_managers_what_they_hold() {
    let app = spawn_app().await;
    let browser = app.browser();
    // (page, field id, attributes it must carry)
    let expectations: [(&str, &str, &[&str]); 5] = [
        (
            "/link",
            "code",
            &[
                "autocomplete=\"one-time-code\"",
                "inputmode=\"text\"",
                "autocapitalize=\"characters\"",
                "spellcheck=\"false\"",
            ],
        ),
        (
            "/signin",
            "email",
            &[
                "autocomplete=\"username\"",
                "inputmode=\"email\"",
                "type=\"email\"",
            ],
        ),
        (
            "/signin",
            "password",
            &["autocomplete=\"current-password\"", "type=\"password\""],
        ),
        (
            "/signup",
            "email",
            &["autocomplete=\"username\"", "inputmode=\"email\""],
        ),
        (
            "/signup",
            "password",
            &["autocomplete=\"new-password\"", "minlength=\"8\""],
        ),
    ];
    for (path, id, attributes) in expectations {
        let page = browser.get(path).await;
        let start = page
            .body
            .find(&format!("<input id=\"{id}\""))
            .unwrap_or_else(|| panic!("{path}: no #{id}"));
        let tag = &page.body[start..start + page.body[start..].find('>').unwrap()];
        for attribute in attributes {
            assert!(
                tag.contains(attribute),
                "{path} #{id}: {attribute} in {tag}"
            );
        }
        // Every field has a label that names it.
        assert!(
            page.body.contains(&format!("<label for=\"{id}\">")),
            "{path}: #{id} has no label"
        );
    }
    // The script is a progressive touch, loaded from linkd itself.
    let link = browser.get("/link").await;
    assert!(
        link.attribute_values("src")
            .iter()
            .any(|s| s.starts_with("/static/linkd.js?v=")),
        "{}",
        link.body
    );
    let csp = link.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'"), "{csp}");
}

/// Issue 23 item 2: signed out, a code is checked before sign-in: its
/// form at once, its existence under the wrong-code limits; a real code
/// goes on to sign-in and sign-up pages that say what they are for. The
/// code is found in pasted text and behind a typographic dash.
#[tokio::test]
async fn a_stranger_learns_at_once_that_a_code_cannot_work() {
    let app = spawn_app().await;
    let auth = app.start_device("openid").await;
    let stranger = app.browser();
    let shown = &auth.user_code;
    let next = format!("/link?code={shown}");

    let vowel = stranger.get("/link?code=BCDA-GHJK").await;
    assert_eq!(vowel.status, StatusCode::BAD_REQUEST);
    assert!(
        vowel.contains("a character codes never use"),
        "{}",
        vowel.body
    );
    let short = stranger.get("/link?code=AAAA").await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST);
    let wrong = if shown == "BCDF-GHJK" {
        "ZXWV-TSRQ"
    } else {
        "BCDF-GHJK"
    };
    let unknown = stranger.get(&format!("/link?code={wrong}")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert!(unknown.contains("couldn't find that code"));

    let plain = shown.replace('-', "").to_lowercase();
    let en_dash = shown.replace('-', "\u{2013}");
    for typed in [
        plain.clone(),
        format!("Code: {shown}"),
        format!("Your code is {plain}."),
        en_dash,
    ] {
        let found = stranger
            .get(&format!("/link?code={}", urlencode(&typed)))
            .await;
        assert_eq!(
            found.status,
            StatusCode::SEE_OTHER,
            "{typed}: {}",
            found.body
        );
        assert_eq!(
            found.location(),
            format!("/signin?next={}", urlencode(&next)),
            "{typed}"
        );
    }
    let signin = stranger
        .get(&format!("/signin?next={}", urlencode(&next)))
        .await;
    assert!(
        signin.contains(&format!("Linking code {shown}: sign in to continue."))
            && signin.contains("Demo TV is asking to be linked to your account."),
        "{}",
        signin.body
    );
    let signup = stranger
        .get(&format!("/signup?next={}", urlencode(&next)))
        .await;
    assert!(signup.contains(&format!(
        "Linking code {shown}: create an account to continue."
    )));
    assert!(signup.contains("Demo TV is asking"));
    // A page for the code only: a wrong code names no app.
    let other = stranger
        .get(&format!(
            "/signin?next={}",
            urlencode(&format!("/link?code={wrong}"))
        ))
        .await;
    assert!(other.contains(&format!("Linking code {wrong}")));
    assert!(!other.contains("is asking"));

    let created = stranger
        .sign_up("stranger@example.com", "long enough password", &next)
        .await;
    assert_eq!(created.location(), next);
    let approved = stranger.approve(shown).await;
    assert_eq!(approved.status, StatusCode::OK);
}

/// Issue 23 items 3 and 7: the last wrong codes are counted down; the
/// lockout says until when, never leads back to itself (the device's QR
/// link during it lands on it), and points to the built-in help page;
/// `GET /signout` asks first.
#[tokio::test]
async fn tries_are_counted_down_and_the_lockout_points_to_help() {
    let app = spawn_app().await;
    let auth = app.start_device("openid").await;
    let stranger = app.browser();
    // The form cookie keeps this browser's count.
    assert_eq!(stranger.get("/link").await.status, StatusCode::OK);
    let wrong = [
        "BCDF-GHJK",
        "BCDF-GHJL",
        "BCDF-GHJM",
        "BCDF-GHJN",
        "BCDF-GHJP",
        "BCDF-GHJQ",
    ];
    let mut said = Vec::new();
    for code in wrong.iter().filter(|c| **c != auth.user_code).take(5) {
        let page = stranger.get(&format!("/link?code={code}")).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{}", page.body);
        let tries = [
            "3 tries left",
            "2 tries left",
            "1 try left",
            "That was the last try",
        ]
        .into_iter()
        .find(|t| page.contains(t));
        said.push(tries.unwrap_or("-"));
    }
    assert_eq!(said.len(), 5);
    assert_eq!(
        said,
        [
            "-",
            "3 tries left",
            "2 tries left",
            "1 try left",
            "That was the last try"
        ]
    );
    let locked = stranger.get(&auth.verification_uri_complete).await;
    assert_eq!(locked.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        locked.contains("Try again in 10 minutes (at ") && locked.contains(" UTC)"),
        "{}",
        locked.body
    );
    assert!(locked.contains("href=\"/help\""));
    assert!(
        !locked.contains("href=\"/link\""),
        "no way back to the wall"
    );

    let help = stranger.get("/help").await;
    assert_eq!(help.status, StatusCode::OK);
    for heading in [
        "The page won't load",
        "I can't sign in",
        "The code expired or was already used",
        "There's a device I don't recognise",
    ] {
        assert!(help.contains(heading), "{heading}: {}", help.body);
    }

    let person = app.signed_in_browser("leaving@example.com").await;
    let ask = person.get("/signout").await;
    assert_eq!(ask.status, StatusCode::OK);
    assert!(ask.contains("Sign out?") && ask.contains("leaving@example.com"));
    let out = person.post("/signout", &[("csrf", &ask.csrf())]).await;
    assert_eq!(out.location(), "/signin?signed_out=1");
    let gone = person.get("/signout").await;
    assert!(gone.contains("You're not signed in."));
}

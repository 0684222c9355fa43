//! Sign-in through the operator's OpenID provider (OpenID Connect Core
//! §3.1): a real provider (`oidc-provider` from npm, tests/oidc-provider)
//! runs on this machine; the person goes there and back in the test's
//! browser. Forged ID tokens come from that provider's token endpoint.

use reqwest::StatusCode;

use linkd::config::ProviderConfig;

use crate::helpers::*;
use crate::oidc_provider::Provider;

async fn spawn_with(provider: &Provider, join_by_verified_email: bool, passwords: bool) -> TestApp {
    let corp = provider.config(join_by_verified_email);
    spawn_app_with(Options {
        configure: Box::new(move |c| {
            c.providers = vec![corp];
            c.no_local_passwords = !passwords;
        }),
        ..Default::default()
    })
    .await
}

/// A GET or POST to any site, keeping the browser's cookies.
async fn visit(browser: &Browser, url: &str, form: Option<&[(&str, &str)]>) -> Page {
    let request = match form {
        Some(form) => browser.client.post(url).form(form),
        None => browser.client.get(url),
    };
    page(request.send().await.expect("request")).await
}

fn absolute(base: &str, location: &str) -> String {
    url::Url::parse(base)
        .and_then(|b| b.join(location))
        .expect("a location")
        .to_string()
}

/// The `action` of the page's first form.
fn form_action(body: &str) -> String {
    let at = body.find("<form").expect("a form");
    let rest = &body[at..];
    let start = rest.find("action=\"").expect("an action") + "action=\"".len();
    html_unescape(&rest[start..start + rest[start..].find('"').expect("quote")])
}

/// The person presses "Continue with Corp" (or "Add Corp" on the account
/// page with `add`) and is sent to the provider; returns the provider's
/// address.
async fn press_continue(app: &TestApp, browser: &Browser, next: &str, add: bool) -> Page {
    let from = if add {
        browser.get("/account").await
    } else {
        browser
            .get(&format!("/signin?next={}", urlencode(next)))
            .await
    };
    let label = if add {
        "Add Corp"
    } else {
        "Continue with Corp"
    };
    assert!(from.contains(label), "{}", from.body);
    let mut form = vec![("csrf", from.csrf()), ("next", next.to_string())];
    if add {
        form.push(("add", "1".into()));
    }
    let form: Vec<(&str, &str)> = form.iter().map(|(n, v)| (*n, v.as_str())).collect();
    visit(browser, &app.url("/signin/with/corp"), Some(&form)).await
}

/// At the provider: signs in as `login` and follows the provider until it
/// sends the browser back to linkd; returns linkd's callback address.
async fn at_the_provider(app: &TestApp, browser: &Browser, started: &Page, login: &str) -> String {
    assert_eq!(started.status, StatusCode::SEE_OTHER, "{}", started.body);
    let mut url = started.location().to_string();
    let mut signed_in = false;
    for _ in 0..10 {
        if url.starts_with(&app.base) {
            return url;
        }
        let page = visit(browser, &url, None).await;
        if page.status.is_redirection() {
            url = absolute(&url, page.location());
            continue;
        }
        assert_eq!(page.status, StatusCode::OK, "{url}: {}", page.body);
        let action = absolute(&url, &form_action(&page.body));
        // The provider's own forms: sign in, then (once) agree to share
        // the email with linkd.
        let form: &[(&str, &str)] = if page.body.contains("name=\"login\"") {
            assert!(!signed_in, "the provider asked twice: {}", page.body);
            signed_in = true;
            &[("prompt", "login"), ("login", login), ("password", "any")]
        } else {
            assert!(page.body.contains("value=\"consent\""), "{}", page.body);
            &[("prompt", "consent")]
        };
        let answer = visit(browser, &action, Some(form)).await;
        assert!(answer.status.is_redirection(), "{}", answer.body);
        url = absolute(&action, answer.location());
    }
    panic!("the provider never sent the browser back")
}

/// From "Continue with Corp" to linkd's answer to the person's return.
async fn sign_in_with_corp(app: &TestApp, browser: &Browser, login: &str, next: &str) -> Page {
    let started = press_continue(app, browser, next, false).await;
    let back = at_the_provider(app, browser, &started, login).await;
    visit(browser, &back, None).await
}

async fn signed_in_as(browser: &Browser) -> Option<String> {
    let account = browser.get("/account").await;
    (account.status == StatusCode::OK).then(|| {
        let body = html_unescape(&account.body);
        let at = body.find("Signed in as").map_or(0, |i| i);
        body[at..].chars().take(120).collect()
    })
}

#[tokio::test]
async fn a_person_signs_in_with_their_provider_and_returns_to_their_code() {
    let provider = Provider::start().await;
    let app = spawn_with(&provider, false, true).await;
    let auth = app.start_device("openid email").await;
    let browser = app.browser();

    // The device's link sends the person to sign in, with the code kept.
    let link = browser
        .get(&auth.verification_uri_complete.replace(&app.base, ""))
        .await;
    assert_eq!(link.status, StatusCode::SEE_OTHER);
    let next = url::Url::parse(&app.url(link.location()))
        .unwrap()
        .query_pairs()
        .find(|(n, _)| n == "next")
        .map(|(_, v)| v.into_owned())
        .expect("next");
    // Browsers hold the form's redirect to the provider to form-action.
    let form_page = browser
        .get(&format!("/signin?next={}", urlencode(&next)))
        .await;
    let csp = form_page.headers["content-security-policy"]
        .to_str()
        .unwrap();
    assert!(
        csp.contains(&format!("form-action 'self' {}", provider.issuer)),
        "{csp}"
    );
    let started = press_continue(&app, &browser, &next, false).await;
    // PKCE S256 and a nonce go to the provider (OpenID Connect Core
    // §3.1.2.1, RFC 7636).
    let request: std::collections::HashMap<String, String> = url::Url::parse(started.location())
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect();
    assert_eq!(request["code_challenge_method"], "S256");
    assert!(request["nonce"].len() >= 32 && request["state"].len() >= 32);
    assert_eq!(
        request["redirect_uri"],
        app.url("/signin/with/corp/callback")
    );
    let back = at_the_provider(&app, &browser, &started, "ada@example.com").await;
    let landed = visit(&browser, &back, None).await;
    // Back exactly where the person was: the code they opened.
    assert_eq!(landed.status, StatusCode::SEE_OTHER, "{}", landed.body);
    assert_eq!(landed.location(), next);
    // The code came in a link: number matching, the code among three.
    let matching = browser.get(&next).await;
    assert_eq!(matching.status, StatusCode::SEE_OTHER);
    let confirm = browser.get(matching.location()).await;
    assert!(confirm.contains(&auth.user_code), "{}", confirm.body);
    assert!(confirm.contains("ada@example.com"), "{}", confirm.body);
    let approved = browser.approve(&auth.user_code).await;
    assert_eq!(approved.status, StatusCode::OK, "{}", approved.body);
    let tokens = app.poll(&auth.device_code).await;
    assert_eq!(
        jwt_claims(tokens.json["id_token"].as_str().unwrap())["email"],
        "ada@example.com"
    );

    // The return works once: the same address again is refused, and so is
    // one that did not start in this browser.
    let again = visit(&browser, &back, None).await;
    assert_eq!(again.status, StatusCode::BAD_REQUEST, "{}", again.body);
    assert!(again.contains("This sign-in has expired"), "{}", again.body);
    let elsewhere = app.browser();
    let started = press_continue(&app, &elsewhere, "/", false).await;
    let back = at_the_provider(&app, &elsewhere, &started, "ada@example.com").await;
    let stolen = visit(&app.browser(), &back, None).await;
    assert_eq!(stolen.status, StatusCode::BAD_REQUEST, "{}", stolen.body);

    // The account page: the identity, which is the only way in.
    let account = browser.get("/account").await;
    assert!(
        account.body.contains("<strong>Signed in</strong>"),
        "{}",
        account.body
    );
    assert!(
        account
            .body
            .contains("<strong>Corp</strong>: ada@example.com"),
        "{}",
        account.body
    );
    assert!(
        account.contains("Your only way to sign in"),
        "{}",
        account.body
    );
    assert!(
        account.contains("Added Corp (ada@example.com) as a way to sign in"),
        "{}",
        account.body
    );
    let accounts = app.state.store.list_accounts().await.unwrap();
    assert_eq!(accounts.len(), 1);
    // The operator sees the identity too.
    let (ok, out, err) = crate::cli::run(&app.db, &["user", "show", "ada@example.com"], "").await;
    assert!(ok, "{err}");
    assert!(out.contains("password\tnone"), "{out}");
    assert!(
        out.contains(&format!(
            "identity\tcorp\t{}\tada@example.com\tada@example.com",
            provider.issuer
        )),
        "{out}"
    );
    let identities = app
        .state
        .store
        .list_identities(&accounts[0].id)
        .await
        .unwrap();
    assert_eq!(identities.len(), 1);
    assert_eq!(identities[0].issuer, provider.issuer);
    assert_eq!(identities[0].subject, "ada@example.com");
    let removal = browser
        .post(
            "/account/identities/remove",
            &[
                ("csrf", &account.csrf()),
                ("issuer", &identities[0].issuer),
                ("subject", &identities[0].subject),
            ],
        )
        .await;
    assert_eq!(removal.status, StatusCode::CONFLICT, "{}", removal.body);
    assert_eq!(
        app.state
            .store
            .list_identities(&accounts[0].id)
            .await
            .unwrap()
            .len(),
        1
    );

    // Signed out and in again: the same account, found by (issuer,
    // subject).
    let fresh = app.browser();
    let landed = sign_in_with_corp(&app, &fresh, "ada@example.com", "/devices").await;
    assert_eq!(landed.location(), "/devices", "{}", landed.body);
    assert!(
        signed_in_as(&fresh)
            .await
            .unwrap()
            .contains("ada@example.com")
    );
    assert_eq!(app.state.store.list_accounts().await.unwrap().len(), 1);

    // The person cancels at the provider: a page, and no session.
    let cancel = app.browser();
    let started = press_continue(&app, &cancel, "/", false).await;
    let state = url::Url::parse(started.location())
        .unwrap()
        .query_pairs()
        .find(|(n, _)| n == "state")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let refused = cancel
        .get(&format!(
            "/signin/with/corp/callback?error=access_denied&state={}",
            urlencode(&state)
        ))
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(
        refused.contains("Corp didn't sign you in"),
        "{}",
        refused.body
    );
    assert!(signed_in_as(&cancel).await.is_none());
    provider.stop().await;
}

#[tokio::test]
async fn forged_id_tokens_are_refused() {
    let provider = Provider::start().await;
    let app = spawn_with(&provider, true, true).await;
    // OpenID Connect Core §3.1.3.7: signature by the provider's keys,
    // issuer, audience, expiry and nonce.
    for kind in [
        "bad_signature",
        "wrong_audience",
        "wrong_nonce",
        "expired",
        "wrong_issuer",
    ] {
        provider.forge(kind).await;
        let browser = app.browser();
        let page = sign_in_with_corp(&app, &browser, "mal@example.com", "/").await;
        assert_eq!(
            page.status,
            StatusCode::BAD_GATEWAY,
            "{kind}: {}",
            page.body
        );
        assert!(
            page.contains("We couldn't verify your Corp sign-in"),
            "{kind}: {}",
            page.body
        );
        assert!(signed_in_as(&browser).await.is_none(), "{kind}");
    }
    assert!(app.state.store.list_accounts().await.unwrap().is_empty());
    // The same person, unforged, gets in; the return sent twice at once
    // is taken by exactly one of the two.
    let browser = app.browser();
    let started = press_continue(&app, &browser, "/", false).await;
    let back = at_the_provider(&app, &browser, &started, "mal@example.com").await;
    let (a, b) = futures::join!(visit(&browser, &back, None), visit(&browser, &back, None));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::SEE_OTHER, StatusCode::BAD_REQUEST],
        "{} / {}",
        a.body,
        b.body
    );
    let accounts = app.state.store.list_accounts().await.unwrap();
    assert_eq!(accounts.len(), 1);
    // A disabled account stays shut, whatever the provider says.
    app.state
        .store
        .set_account_disabled(&accounts[0].id, true)
        .await
        .unwrap();
    let shut = app.browser();
    let page = sign_in_with_corp(&app, &shut, "mal@example.com", "/").await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert!(page.contains("This account is disabled"), "{}", page.body);
    assert!(signed_in_as(&shut).await.is_none());
    provider.stop().await;
}

#[tokio::test]
async fn an_existing_account_is_joined_only_when_proved() {
    let provider = Provider::start().await;
    let app = spawn_with(&provider, false, true).await;
    let bo = app.signed_in_browser("bo@example.com").await;

    // The provider says bo@example.com (verified), but this operator does
    // not join on the provider's word: the person proves the account.
    let other = app.browser();
    let page = sign_in_with_corp(&app, &other, "bo@example.com", "/devices").await;
    assert_eq!(page.status, StatusCode::CONFLICT, "{}", page.body);
    assert!(
        page.contains("An account with this email already exists: sign in to it to connect Corp"),
        "{}",
        page.body
    );
    assert!(page.contains("value=\"bo@example.com\""), "{}", page.body);
    assert!(page.body.contains("type=\"password\""), "{}", page.body);
    assert!(signed_in_as(&other).await.is_none());
    let bo_id = app
        .state
        .store
        .get_account_by_email("bo@example.com")
        .await
        .unwrap()
        .unwrap()
        .id;
    let joined = || async { app.state.store.list_identities(&bo_id).await.unwrap().len() };
    assert_eq!(joined().await, 0);

    // A wrong password proves nothing; signing in to another account in
    // that browser joins nothing and spends the offer.
    let wrong = other
        .sign_in("bo@example.com", "not bo's password", "/devices")
        .await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{}", wrong.body);
    let eve = app.signed_in_browser("eve@example.com").await;
    let as_eve = other
        .sign_in("eve@example.com", "correct horse battery", "/devices")
        .await;
    assert_eq!(as_eve.location(), "/devices", "{}", as_eve.body);
    let eve_id = app
        .state
        .store
        .get_account_by_email("eve@example.com")
        .await
        .unwrap()
        .unwrap()
        .id;
    assert!(
        app.state
            .store
            .list_identities(&eve_id)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(joined().await, 0);

    // An offer the person waits too long on is gone.
    let slow = app.browser();
    let page = sign_in_with_corp(&app, &slow, "bo@example.com", "/devices").await;
    assert_eq!(page.status, StatusCode::CONFLICT, "{}", page.body);
    app.clock.advance_secs(linkd::upstream::JOIN_LIFETIME + 1);
    let late = slow
        .sign_in("bo@example.com", "correct horse battery", "/devices")
        .await;
    assert_eq!(late.location(), "/devices", "{}", late.body);
    assert_eq!(joined().await, 0);

    // Both proofs in one browser: Corp's return, then bo's password. The
    // identity joins, and the person goes where they were going.
    let both = app.browser();
    let page = sign_in_with_corp(&app, &both, "bo@example.com", "/devices").await;
    assert_eq!(page.status, StatusCode::CONFLICT, "{}", page.body);
    let signed_in = both
        .sign_in("bo@example.com", "correct horse battery", "/devices")
        .await;
    assert_eq!(signed_in.location(), "/devices", "{}", signed_in.body);
    assert_eq!(joined().await, 1);
    let account = both.get("/account").await;
    assert!(
        account
            .body
            .contains("<strong>Corp</strong>: bo@example.com"),
        "{}",
        account.body
    );
    assert!(account.contains("Remove Corp"), "{}", account.body);
    assert!(
        account.contains("Added Corp (bo@example.com) as a way to sign in"),
        "{}",
        account.body
    );
    // From now on Corp opens bo's account.
    let later = app.browser();
    let page = sign_in_with_corp(&app, &later, "bo@example.com", "/").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert!(
        signed_in_as(&later)
            .await
            .unwrap()
            .contains("bo@example.com")
    );

    // Someone else's account cannot take that identity.
    let started = press_continue(&app, &eve, "/account", true).await;
    let back = at_the_provider(&app, &eve, &started, "bo@example.com").await;
    let taken = visit(&eve, &back, None).await;
    assert_eq!(taken.status, StatusCode::CONFLICT, "{}", taken.body);
    assert!(
        taken.contains("belongs to another account"),
        "{}",
        taken.body
    );

    // Removed (the password is still a way in), with an activity entry.
    let identity = &app.state.store.list_identities(&bo_id).await.unwrap()[0];
    let account = bo.get("/account").await;
    let removed = bo
        .post(
            "/account/identities/remove",
            &[
                ("csrf", &account.csrf()),
                ("issuer", &identity.issuer),
                ("subject", &identity.subject),
            ],
        )
        .await;
    assert_eq!(removed.location(), "/account", "{}", removed.body);
    let account = bo.get("/account").await;
    assert!(
        account.contains("Removed Corp (bo@example.com) as a way to sign in"),
        "{}",
        account.body
    );
    assert!(
        app.state
            .store
            .list_identities(&bo_id)
            .await
            .unwrap()
            .is_empty()
    );

    // Signed in with the password, the person adds Corp again on
    // /account.
    let started = press_continue(&app, &bo, "/account", true).await;
    let back = at_the_provider(&app, &bo, &started, "bo@example.com").await;
    let added = visit(&bo, &back, None).await;
    assert_eq!(added.location(), "/account", "{}", added.body);
    assert_eq!(joined().await, 1);
    let identity = &app.state.store.list_identities(&bo_id).await.unwrap()[0];
    let account = bo.get("/account").await;
    let removed = bo
        .post(
            "/account/identities/remove",
            &[
                ("csrf", &account.csrf()),
                ("issuer", &identity.issuer),
                ("subject", &identity.subject),
            ],
        )
        .await;
    assert_eq!(removed.location(), "/account", "{}", removed.body);

    // Where the operator joins on a verified email: an unverified one
    // still does not join, a verified one does.
    let joining = spawn_on(
        app.db.clone(),
        Options {
            configure: Box::new({
                let corp = provider.config(true);
                move |c| c.providers = vec![corp]
            }),
            ..Default::default()
        },
    )
    .await;
    let unverified = joining.browser();
    let page = sign_in_with_corp(&joining, &unverified, "bo@example.com#unverified", "/").await;
    assert_eq!(page.status, StatusCode::CONFLICT, "{}", page.body);
    let verified = joining.browser();
    let page = sign_in_with_corp(&joining, &verified, "bo@example.com", "/").await;
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    assert!(
        signed_in_as(&verified)
            .await
            .unwrap()
            .contains("bo@example.com")
    );
    assert_eq!(
        joining
            .state
            .store
            .list_identities(&bo_id)
            .await
            .unwrap()
            .len(),
        1
    );
    provider.stop().await;
}

#[tokio::test]
async fn a_provider_outage_leaves_passwords_working_and_passwords_can_be_off() {
    let provider = Provider::start().await;
    let app = spawn_with(&provider, false, true).await;
    app.signed_in_browser("cy@example.com").await;
    provider.stop().await;

    let browser = app.browser();
    let down = press_continue(&app, &browser, "/devices", false).await;
    assert_eq!(
        down.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        down.body
    );
    assert!(down.contains("Corp isn't answering"), "{}", down.body);
    assert!(
        down.contains("href=\"/signin?next=%2Fdevices\""),
        "{}",
        down.body
    );
    let signed_in = browser
        .sign_in("cy@example.com", "correct horse battery", "/devices")
        .await;
    assert_eq!(signed_in.location(), "/devices", "{}", signed_in.body);

    // Passwords off: only the provider's button, and the forms refuse.
    let closed = spawn_without_passwords(&app, provider_config_for_down(&app)).await;
    let browser = closed.browser();
    let page = browser.get("/signin").await;
    assert!(page.contains("Continue with Corp"), "{}", page.body);
    assert!(!page.body.contains("type=\"password\""), "{}", page.body);
    let refused = browser
        .post(
            "/signin",
            &[
                ("csrf", &page.csrf()),
                ("email", "cy@example.com"),
                ("password", "correct horse battery"),
                ("next", "/"),
            ],
        )
        .await;
    refused_as_passwords_off(&refused);
    assert_eq!(browser.get("/signup").await.status, StatusCode::FORBIDDEN);
    assert!(signed_in_as(&browser).await.is_none());
}

/// A password form's answer while local passwords are off.
fn refused_as_passwords_off(page: &Page) {
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert!(page.contains("Passwords aren't used here"), "{}", page.body);
}

/// A second server on `app`'s database with local passwords off and
/// `corp` the only way in.
async fn spawn_without_passwords(app: &TestApp, corp: ProviderConfig) -> TestApp {
    spawn_on(
        app.db.clone(),
        Options {
            configure: Box::new(move |c| {
                c.providers = vec![corp];
                c.no_local_passwords = true;
            }),
            ..Default::default()
        },
    )
    .await
}

/// The provider's configuration as the first server had it (the provider
/// itself is down by then).
fn provider_config_for_down(app: &TestApp) -> ProviderConfig {
    app.state.config.providers[0].clone()
}

/// A signed-in browser asks for a fresh sign-in (`reauth`) and takes it
/// through Corp; returns linkd's answer.
async fn sign_in_again_with_corp(app: &TestApp, browser: &Browser, login: &str) -> Page {
    let form = browser.get("/signin?reauth=1&next=%2Faccount").await;
    assert!(form.contains("Continue with Corp"), "{}", form.body);
    let started = visit(
        browser,
        &app.url("/signin/with/corp"),
        Some(&[("csrf", &form.csrf()), ("next", "/account")]),
    )
    .await;
    let back = at_the_provider(app, browser, &started, login).await;
    visit(browser, &back, None).await
}

#[tokio::test]
async fn an_account_without_a_password_sets_one_after_a_recent_sign_in() {
    let provider = Provider::start().await;
    let app = spawn_with(&provider, false, true).await;
    let browser = app.browser();
    let landed = sign_in_with_corp(&app, &browser, "di@example.com", "/account").await;
    assert_eq!(landed.location(), "/account", "{}", landed.body);

    // No current password to ask for: "Set a password", the new one only.
    let account = browser.get("/account").await;
    assert!(account.contains("Set a password"), "{}", account.body);
    assert!(
        !account.contains("Change your password"),
        "{}",
        account.body
    );
    assert!(
        !account.body.contains("name=\"current_password\""),
        "{}",
        account.body
    );
    assert!(
        account.contains("Your only way to sign in"),
        "{}",
        account.body
    );
    let short = browser
        .post(
            "/account/password",
            &[("csrf", &account.csrf()), ("new_password", "short")],
        )
        .await;
    assert_eq!(short.status, StatusCode::BAD_REQUEST, "{}", short.body);

    // A sign-in grown old is not enough: a browser left signed in must
    // not add a way into the account.
    app.clock
        .advance_secs(linkd::account_changes::RECENT_SIGN_IN + 1);
    let stale = browser.get("/account").await;
    assert!(
        stale.contains("Sign in again to set a password"),
        "{}",
        stale.body
    );
    assert!(
        !stale.body.contains("name=\"new_password\""),
        "{}",
        stale.body
    );
    let refused = browser
        .post(
            "/account/password",
            &[
                ("csrf", &stale.csrf()),
                ("new_password", "a brand new passphrase"),
            ],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(refused.contains("too long ago"), "{}", refused.body);

    // Signed in again through Corp, the form is back and sets it.
    let again = sign_in_again_with_corp(&app, &browser, "di@example.com").await;
    assert_eq!(again.location(), "/account", "{}", again.body);
    let fresh = browser.get("/account").await;
    let set = browser
        .post(
            "/account/password",
            &[
                ("csrf", &fresh.csrf()),
                ("new_password", "a brand new passphrase"),
            ],
        )
        .await;
    assert_eq!(set.location(), "/account?done=password_set", "{}", set.body);
    let account = browser.get("/account?done=password_set").await;
    assert!(account.contains("Your password is set"), "{}", account.body);
    assert!(account.contains("Password set"), "{}", account.body);
    // Now it is an ordinary password: changing it asks for it, and Corp
    // is no longer the only way in.
    assert!(account.contains("Change your password"), "{}", account.body);
    assert!(account.contains("Remove Corp"), "{}", account.body);
    let without_current = browser
        .post(
            "/account/password",
            &[
                ("csrf", &account.csrf()),
                ("new_password", "yet another passphrase"),
            ],
        )
        .await;
    assert_eq!(
        without_current.status,
        StatusCode::UNAUTHORIZED,
        "{}",
        without_current.body
    );
    let by_password = app
        .browser()
        .sign_in("di@example.com", "a brand new passphrase", "/devices")
        .await;
    assert_eq!(by_password.location(), "/devices", "{}", by_password.body);

    // With local passwords off there is no password section at all, the
    // form is refused, and Corp is the only way in again.
    let closed = spawn_without_passwords(&app, provider.config(false)).await;
    let browser = closed.browser();
    let landed = sign_in_with_corp(&closed, &browser, "di@example.com", "/account").await;
    assert_eq!(landed.location(), "/account", "{}", landed.body);
    let account = browser.get("/account").await;
    assert!(!account.contains("Set a password"), "{}", account.body);
    assert!(
        !account.contains("Change your password"),
        "{}",
        account.body
    );
    assert!(
        !account.body.contains("action=\"/account/password\""),
        "{}",
        account.body
    );
    assert!(
        account.contains("Your only way to sign in"),
        "{}",
        account.body
    );
    let refused = browser
        .post(
            "/account/password",
            &[
                ("csrf", &account.csrf()),
                ("current_password", "a brand new passphrase"),
                ("new_password", "yet another passphrase"),
            ],
        )
        .await;
    refused_as_passwords_off(&refused);
    provider.stop().await;
}

#[tokio::test]
async fn form_action_follows_the_discovered_authorization_endpoint() {
    // Discovery puts the authorization endpoint on another host than the
    // issuer (same port): the sign-in form's redirect goes there.
    let provider =
        Provider::start_with(serde_json::json!({ "authorization_host": "localhost" })).await;
    let app = spawn_with(&provider, false, true).await;
    let port = url::Url::parse(&provider.issuer).unwrap().port().unwrap();
    let login_host = format!("http://localhost:{port}");
    // Discovery runs in the background from start-up.
    let mut csp = String::new();
    for _ in 0..200 {
        let page = app.browser().get("/signin").await;
        csp = page.headers["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        if csp.contains(&login_host) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        csp.contains(&format!("form-action 'self' {login_host};")),
        "{csp}"
    );
    assert!(!csp.contains(&provider.issuer), "{csp}");
    let started = press_continue(&app, &app.browser(), "/", false).await;
    assert!(
        started
            .location()
            .starts_with(&format!("{login_host}/auth?")),
        "{}",
        started.location()
    );
    // The account page's "Add Corp" form too.
    let account = app
        .signed_in_browser("fe@example.com")
        .await
        .get("/account")
        .await;
    let csp = account.headers["content-security-policy"].to_str().unwrap();
    assert!(
        csp.contains(&format!("form-action 'self' {login_host};")),
        "{csp}"
    );
    provider.stop().await;
}

#[tokio::test]
async fn a_join_offer_taken_by_a_burst_of_sign_ins_joins_once() {
    let provider = Provider::start().await;
    let app = spawn_with(&provider, false, true).await;
    app.signed_in_browser("gus@example.com").await;
    let offered = sign_in_with_corp(&app, &app.browser(), "gus@example.com", "/").await;
    assert_eq!(offered.status, StatusCode::CONFLICT, "{}", offered.body);
    let join = offered
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("linkd_join="))
        .and_then(|v| v.split(';').next())
        .expect("a join cookie")
        .to_string();
    // The same offer carried by eight sign-ins to the account at once.
    let (csrf_cookie, csrf) = crate::burst::anonymous_form(&app, "/signin").await;
    let cookie = format!("{csrf_cookie}; linkd_join={join}");
    let form = [
        ("csrf", csrf.as_str()),
        ("email", "gus@example.com"),
        ("password", "correct horse battery"),
        ("next", "/"),
    ];
    let requests = (0..8)
        .map(|_| (None, crate::burst::post("/signin", &cookie, &form)))
        .collect();
    let answers = crate::burst::burst(&app, requests).await;
    // Each is signed in (or told to wait for a hashing slot); none fails.
    assert!(
        answers.iter().all(|a| a.status == 303 || a.status == 429),
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    assert!(
        crate::burst::count(&answers, 303) >= 1,
        "{:?}",
        answers.iter().map(|a| a.status).collect::<Vec<_>>()
    );
    let gus = app
        .state
        .store
        .get_account_by_email("gus@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        app.state
            .store
            .list_identities(&gus.id)
            .await
            .unwrap()
            .len(),
        1
    );
    let joins = app
        .state
        .store
        .list_activity(&gus.id, 100)
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.kind == linkd::store::ActivityKind::IdentityJoined)
        .count();
    assert_eq!(joins, 1);
    provider.stop().await;
}

#[tokio::test]
async fn an_account_without_a_password_is_deleted_after_a_recent_sign_in() {
    let provider = Provider::start().await;
    let app = spawn_with(&provider, false, true).await;
    let browser = app.browser();
    let landed = sign_in_with_corp(&app, &browser, "hal@example.com", "/account").await;
    assert_eq!(landed.location(), "/account", "{}", landed.body);

    // Grown old, the sign-in does not stand in for a password.
    app.clock
        .advance_secs(linkd::account_changes::RECENT_SIGN_IN + 1);
    let stale = browser.get("/account/delete").await;
    assert!(
        stale.contains("Sign in again to delete your account"),
        "{}",
        stale.body
    );
    assert!(!stale.body.contains("type=\"password\""), "{}", stale.body);
    let refused = browser
        .post(
            "/account/delete",
            &[("csrf", &browser.get("/account").await.csrf())],
        )
        .await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(refused.contains("too long ago"), "{}", refused.body);
    assert_eq!(app.state.store.list_accounts().await.unwrap().len(), 1);

    // Signed in again, the button alone deletes it: no password to ask.
    let again = sign_in_again_with_corp(&app, &browser, "hal@example.com").await;
    assert_eq!(again.status, StatusCode::SEE_OTHER, "{}", again.body);
    let page = browser.get("/account/delete").await;
    assert!(page.contains("Delete my account"), "{}", page.body);
    assert!(!page.body.contains("type=\"password\""), "{}", page.body);
    let deleted = browser
        .post("/account/delete", &[("csrf", &page.csrf())])
        .await;
    assert_eq!(
        deleted.location(),
        "/account/delete?done=1",
        "{}",
        deleted.body
    );
    assert!(app.state.store.list_accounts().await.unwrap().is_empty());
    provider.stop().await;
}

#[tokio::test]
async fn an_account_without_a_password_changes_its_address_after_a_recent_sign_in() {
    let provider = Provider::start().await;
    let smtp = crate::mail::SmtpServer::start().await;
    let mut options = crate::mail::with_smtp(&smtp);
    let with_mail = options.configure;
    let corp = provider.config(false);
    options.configure = Box::new(move |c| {
        with_mail(c);
        c.providers = vec![corp];
    });
    let app = spawn_app_with(options).await;
    let browser = app.browser();
    let landed = sign_in_with_corp(&app, &browser, "ida@example.com", "/account").await;
    assert_eq!(landed.location(), "/account", "{}", landed.body);
    // No password field to fill in: the recent sign-in is the proof.
    let page = browser.get("/account").await;
    assert!(
        !page.body.contains("id=\"email_password\""),
        "{}",
        page.body
    );
    let change = |csrf: String| {
        let browser = &browser;
        async move {
            browser
                .post(
                    "/account/email",
                    &[("csrf", &csrf), ("new_email", "ida@new.example")],
                )
                .await
        }
    };
    let asked = change(page.csrf()).await;
    assert_eq!(asked.location(), "/account?done=email", "{}", asked.body);
    smtp.wait_for_about(1, "Your address is being changed")
        .await;

    // Grown old, the sign-in is not enough, and the page says what to do.
    app.clock
        .advance_secs(linkd::account_changes::RECENT_SIGN_IN + 1);
    let stale = browser.get("/account").await;
    assert!(
        stale.contains("Sign in again to change your address"),
        "{}",
        stale.body
    );
    let refused = change(stale.csrf()).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.body);
    assert!(refused.contains("too long ago"), "{}", refused.body);
    provider.stop().await;
}

#[tokio::test]
async fn with_passwords_off_a_join_is_proved_through_another_provider() {
    let corp = Provider::start().await;
    let staff = Provider::start().await;
    let staff_config = ProviderConfig {
        id: "staff".into(),
        name: "Staff".into(),
        ..staff.config(false)
    };
    let app = spawn_app_with(Options {
        configure: Box::new({
            let corp = corp.config(false);
            move |c| {
                c.providers = vec![corp, staff_config];
                c.no_local_passwords = true;
            }
        }),
        ..Default::default()
    })
    .await;
    // Kim's account came from Corp.
    let landed = sign_in_with_corp(&app, &app.browser(), "kim@example.com", "/").await;
    assert_eq!(landed.status, StatusCode::SEE_OTHER, "{}", landed.body);

    // Staff vouches for the same address: no password to prove the
    // account with, so the page offers the providers.
    let browser = app.browser();
    let form = browser.get("/signin?next=%2Faccount").await;
    assert!(form.contains("Continue with Staff"), "{}", form.body);
    let started = visit(
        &browser,
        &app.url("/signin/with/staff"),
        Some(&[("csrf", &form.csrf()), ("next", "/account")]),
    )
    .await;
    let back = at_the_provider(&app, &browser, &started, "kim@example.com").await;
    let offered = visit(&browser, &back, None).await;
    assert_eq!(offered.status, StatusCode::CONFLICT, "{}", offered.body);
    assert!(
        offered.contains("sign in to it to connect Staff"),
        "{}",
        offered.body
    );
    assert!(offered.contains("Continue with Corp"), "{}", offered.body);
    assert!(
        !offered.body.contains("type=\"password\""),
        "{}",
        offered.body
    );

    // Signing in to the account through Corp is the second proof.
    let started = visit(
        &browser,
        &app.url("/signin/with/corp"),
        Some(&[("csrf", &offered.csrf()), ("next", "/account")]),
    )
    .await;
    let back = at_the_provider(&app, &browser, &started, "kim@example.com").await;
    let signed_in = visit(&browser, &back, None).await;
    assert_eq!(signed_in.location(), "/account", "{}", signed_in.body);
    let account = browser.get("/account").await;
    assert!(
        account
            .body
            .contains("<strong>Staff</strong>: kim@example.com"),
        "{}",
        account.body
    );
    assert!(
        account.contains("Added Staff (kim@example.com) as a way to sign in"),
        "{}",
        account.body
    );
    // Two ways in now: either may go.
    assert!(account.contains("Remove Corp"), "{}", account.body);
    assert!(account.contains("Remove Staff"), "{}", account.body);
    corp.stop().await;
    staff.stop().await;
}

//! The authorization code grant with PKCE (RFC 6749 §4.1, RFC 7636,
//! OpenID Connect Core §3.1): an app with a browser sends the person to
//! `/oauth/authorize`, gets a code at its redirect URI, and redeems it.

use std::collections::HashMap;

use reqwest::StatusCode;
use serde_json::Value;

use linkd::clock::Clock;

use crate::helpers::*;

/// A verifier and its S256 challenge (RFC 7636 §4.2), computed outside
/// linkd: `base64.urlsafe_b64encode(hashlib.sha256(v).digest())` in Python.
const VERIFIER: &str = "dBjftJeZ4CVP-mJ92IljmwWU5gzaKqg6ZkPHyAlUjH8";
const CHALLENGE: &str = "IIIWBh3-J_sM1hp3ro4G6TSLlrRB56slFCGklDIbRzc";
pub(crate) const REDIRECT: &str = "https://app.example/cb";
const SCOPE: &str = "openid email offline_access";

/// Registers a web app with these redirect URIs.
pub(crate) async fn add_web_app(
    app: &TestApp,
    id: &str,
    redirect_uris: &str,
    secret: Option<&str>,
) {
    app.state
        .store
        .insert_client(&linkd::store::Client {
            client_id: id.into(),
            name: format!("App {id}"),
            secret_hash: secret.map(linkd::codes::secret_hash),
            scopes: "openid email offline_access sync".into(),
            device_flow_enabled: false,
            redirect_uris: redirect_uris.into(),
            code_flow_enabled: true,
            refresh_enabled: true,
            require_dpop: false,
            prefilled_links: true,
            same_network: None,
            created_at: app.clock.now(),
        })
        .await
        .expect("insert client");
}

/// An authorization request of the app `web` with PKCE, overridden or
/// extended by `extra` (an empty value drops the parameter).
fn authorize_path(extra: &[(&str, &str)]) -> String {
    let mut params: Vec<(&str, &str)> = vec![
        ("client_id", "web"),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", SCOPE),
        ("state", "st-123"),
        ("nonce", "n-456"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ];
    for (name, value) in extra {
        params.retain(|(n, _)| n != name);
        if !value.is_empty() {
            params.push((name, value));
        }
    }
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    format!("/oauth/authorize?{query}")
}

/// The query of a redirect to the app, after checking where it points.
fn redirect_params(page: &Page, to: &str) -> HashMap<String, String> {
    assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
    let location = url::Url::parse(page.location()).expect("absolute redirect");
    let target = format!(
        "{}://{}{}{}",
        location.scheme(),
        location.host_str().unwrap_or(""),
        location.port().map(|p| format!(":{p}")).unwrap_or_default(),
        location.path()
    );
    assert_eq!(target, to, "redirected to {}", page.location());
    location.query_pairs().into_owned().collect()
}

/// Every hidden field of the confirmation page's decide form.
pub(crate) fn decide_fields(page: &Page) -> Vec<(String, String)> {
    let body = html_unescape(&page.body);
    let start = body
        .find("action=\"/oauth/authorize/decide\"")
        .unwrap_or_else(|| panic!("no authorize form: {}", page.body));
    let form = &body[start..body[start..].find("</form>").unwrap() + start];
    let marker = "<input type=\"hidden\" name=\"";
    form.match_indices(marker)
        .map(|(at, _)| {
            let rest = &form[at + marker.len()..];
            let name_end = rest.find('"').unwrap();
            let after = &rest[name_end..];
            let v = &after[after.find("value=\"").unwrap() + 7..];
            (
                rest[..name_end].to_string(),
                v[..v.find('"').unwrap()].to_string(),
            )
        })
        .collect()
}

/// Presses Approve or Deny on an authorization confirmation page.
pub(crate) async fn decide(browser: &Browser, confirm: &Page, decision: &str) -> Page {
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.body);
    let mut form = decide_fields(confirm);
    form.push(("decision".into(), decision.into()));
    let form: Vec<(&str, &str)> = form.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
    browser.post("/oauth/authorize/decide", &form).await
}

/// A signed-in person approves the standard request; returns the code.
pub(crate) async fn approved_code(app: &TestApp, browser: &Browser) -> String {
    let confirm = browser.get(&authorize_path(&[])).await;
    // Once approved, the consent is remembered and the code comes at once.
    let back = if confirm.status == StatusCode::SEE_OTHER {
        confirm
    } else {
        decide(browser, &confirm, "approve").await
    };
    let params = redirect_params(&back, REDIRECT);
    assert_eq!(params["state"], "st-123");
    assert_eq!(params["iss"], app.base);
    params["code"].clone()
}

pub(crate) async fn redeem(
    app: &TestApp,
    client_id: &str,
    code: &str,
    extra: &[(&str, &str)],
) -> Reply {
    let mut form: Vec<(&str, &str)> = vec![
        ("grant_type", "authorization_code"),
        ("client_id", client_id),
        ("code", code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ];
    for (name, value) in extra {
        form.retain(|(n, _)| n != name);
        if !value.is_empty() {
            form.push((name, value));
        }
    }
    app.post_form("/oauth/token", &form).await
}

fn s(v: &Value, key: &str) -> String {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no {key} in {v}"))
        .to_string()
}

#[tokio::test]
async fn a_web_app_links_with_a_code_and_pkce() {
    let app = spawn_app().await;
    add_web_app(&app, "web", REDIRECT, None).await;

    // Not signed in: to sign-in, and back to the same request after.
    let browser = app.browser();
    let first = browser
        .get(&authorize_path(&[("login_hint", "ada@example.com")]))
        .await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    assert!(
        first
            .location()
            .starts_with("/signin?next=%2Foauth%2Fauthorize%3F")
    );
    let sign_in_page = browser.get(first.location()).await;
    assert!(
        sign_in_page.body.contains("value=\"ada@example.com\""),
        "{}",
        sign_in_page.body
    );
    let next = url::Url::parse(&format!("http://x{}", first.location()))
        .unwrap()
        .query_pairs()
        .find(|(n, _)| n == "next")
        .unwrap()
        .1
        .into_owned();
    let signed_up = browser
        .sign_up("ada@example.com", "correct horse battery", &next)
        .await;
    assert_eq!(signed_up.location(), next);

    // The confirmation page: the app, where the person returns, the scopes.
    let confirm = browser.get(&next).await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.body);
    for text in [
        "Link App web?",
        "app.example",
        "ada@example.com",
        "Approve",
        "Deny",
    ] {
        assert!(
            confirm.contains(text),
            "confirm page lacks {text:?}: {}",
            confirm.body
        );
    }
    let back = decide(&browser, &confirm, "approve").await;
    let params = redirect_params(&back, REDIRECT);
    assert_eq!(params["state"], "st-123", "RFC 6749 §4.1.2: state echoed");
    assert_eq!(params["iss"], app.base, "RFC 9207: iss");
    let code = &params["code"];

    let tokens = redeem(&app, "web", code, &[]).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.json);
    assert_eq!(tokens.headers["cache-control"], "no-store");
    let id = jwt_claims(&s(&tokens.json, "id_token"));
    assert_eq!(id["nonce"], "n-456", "OpenID Connect Core §3.1.3.6");
    assert_eq!(id["aud"], "web");
    assert_eq!(id["email"], "ada@example.com");
    let access = s(&tokens.json, "access_token");
    let userinfo = app.get_bearer("/oauth/userinfo", &access).await;
    assert_eq!(userinfo.status(), StatusCode::OK);
    // The same refresh machinery as devices.
    let refreshed = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "web"),
                ("refresh_token", &s(&tokens.json, "refresh_token")),
            ],
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.json);

    // The app is in the person's list.
    let devices = browser.get("/devices").await;
    assert!(devices.contains("App web"), "{}", devices.body);
    // Told apart from a device that showed a code (migration 0015).
    assert!(devices.contains("App that signed in through your browser"));

    // Consent is remembered for this app and scope set, in any order...
    let again = browser
        .get(&authorize_path(&[("scope", "offline_access email openid")]))
        .await;
    let params = redirect_params(&again, REDIRECT);
    assert!(params.contains_key("code"));
    // ...but not for another set, nor when the app asks for consent.
    let other = browser
        .get(&authorize_path(&[("scope", "openid sync")]))
        .await;
    assert_eq!(other.status, StatusCode::OK, "{}", other.body);
    let forced = browser.get(&authorize_path(&[("prompt", "consent")])).await;
    assert_eq!(forced.status, StatusCode::OK, "{}", forced.body);

    // Unlinking the app withdraws the consent.
    let device_id = jwt_claims(&access)["sid"].as_str().unwrap().to_string();
    let unlink = browser
        .post(
            &format!("/devices/{device_id}/unlink"),
            &[("csrf", &browser.get("/signout").await.csrf())],
        )
        .await;
    assert_eq!(unlink.status, StatusCode::SEE_OTHER);
    let asked = browser.get(&authorize_path(&[])).await;
    assert_eq!(asked.status, StatusCode::OK, "{}", asked.body);

    // Deny: access_denied at the redirect URI.
    let denied = decide(&browser, &asked, "deny").await;
    let params = redirect_params(&denied, REDIRECT);
    assert_eq!(params["error"], "access_denied");
    assert_eq!(params["state"], "st-123");
}

#[tokio::test]
async fn a_second_use_of_a_code_revokes_what_the_first_issued() {
    let app = spawn_app().await;
    add_web_app(&app, "web", REDIRECT, None).await;
    let browser = app.signed_in_browser("bo@example.com").await;
    let code = approved_code(&app, &browser).await;
    let first = redeem(&app, "web", &code, &[]).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.json);
    let access = s(&first.json, "access_token");
    assert_eq!(app.introspect(&access).await["active"], true);

    let second = redeem(&app, "web", &code, &[]).await;
    assert_eq!(second.status, StatusCode::BAD_REQUEST);
    assert_eq!(second.error(), "invalid_grant");
    // RFC 6749 §4.1.2: the tokens of the first use are revoked.
    assert_eq!(app.introspect(&access).await["active"], false);
    let refresh = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "web"),
                ("refresh_token", &s(&first.json, "refresh_token")),
            ],
        )
        .await;
    assert_eq!(refresh.error(), "invalid_grant");
}

#[tokio::test]
async fn a_code_is_bound_to_its_app_redirect_uri_and_verifier_and_expires() {
    let app = spawn_app().await;
    add_web_app(
        &app,
        "web",
        &format!("{REDIRECT} https://app.example/other"),
        None,
    )
    .await;
    add_web_app(&app, "thief", REDIRECT, None).await;
    let browser = app.signed_in_browser("cy@example.com").await;
    let code = approved_code(&app, &browser).await;

    let wrong_verifier = "x".repeat(43);
    for (extra, why) in [
        (
            vec![("code_verifier", wrong_verifier.as_str())],
            "wrong verifier",
        ),
        (vec![("code_verifier", "")], "no verifier"),
        (
            vec![("redirect_uri", "https://app.example/other")],
            "other redirect URI",
        ),
        (vec![("redirect_uri", "")], "no redirect URI"),
    ] {
        let reply = redeem(&app, "web", &code, &extra).await;
        assert_eq!(reply.error(), "invalid_grant", "{why}: {}", reply.json);
    }
    // Another app presenting the code: invalid_grant.
    let stolen = redeem(&app, "thief", &code, &[]).await;
    assert_eq!(stolen.error(), "invalid_grant", "{}", stolen.json);
    // None of that used the code up.
    let good = redeem(&app, "web", &code, &[]).await;
    assert_eq!(good.status, StatusCode::OK, "{}", good.json);

    // At most 60 s.
    let late = approved_code(&app, &browser).await;
    app.clock.advance_secs(61);
    let expired = redeem(&app, "web", &late, &[]).await;
    assert_eq!(expired.error(), "invalid_grant");
    assert!(
        s(&expired.json, "error_description").contains("expired"),
        "{}",
        expired.json
    );

    // Unknown or oversized codes.
    for bad in ["nope".to_string(), "A".repeat(300)] {
        assert_eq!(
            redeem(&app, "web", &bad, &[]).await.error(),
            "invalid_grant"
        );
    }
    assert_eq!(
        redeem(&app, "web", "", &[("code", "")]).await.error(),
        "invalid_request"
    );
}

#[tokio::test]
async fn doubtful_apps_and_addresses_get_a_page_the_rest_an_error_at_the_app() {
    let app = spawn_app().await;
    add_web_app(&app, "web", REDIRECT, None).await;
    add_web_app(&app, "native", "http://127.0.0.1/cb", None).await;
    let browser = app.browser();

    // RFC 6749 §4.1.2.1: never a redirect to an address the app did not
    // register; a page for the person instead.
    for (extra, why) in [
        (
            vec![("redirect_uri", "https://evil.example/cb")],
            "unregistered",
        ),
        (vec![("redirect_uri", "https://app.example/c")], "prefix"),
        (
            vec![("redirect_uri", "https://app.example/cb/x")],
            "extra path",
        ),
        (
            vec![("redirect_uri", "https://app.example:8443/cb")],
            "other port",
        ),
        (
            vec![("redirect_uri", "https://app.example/cb#f")],
            "fragment",
        ),
        (vec![("client_id", "nobody")], "unknown app"),
        (vec![("client_id", "")], "no app"),
    ] {
        let page = browser.get(&authorize_path(&extra)).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{why}: {}", page.body);
        assert!(page.headers.get("location").is_none(), "{why}");
        assert!(page.body.contains("<html"), "{why}: a page");
    }
    let repeated = browser
        .get(&format!(
            "{}&redirect_uri=https%3A%2F%2Fevil.example%2F",
            authorize_path(&[])
        ))
        .await;
    assert_eq!(repeated.status, StatusCode::BAD_REQUEST);
    assert!(repeated.headers.get("location").is_none());

    // The app and address are good: errors go back to the app, with state
    // and iss.
    for (extra, error) in [
        (
            vec![("code_challenge", ""), ("code_challenge_method", "")],
            "invalid_request",
        ),
        (vec![("code_challenge_method", "plain")], "invalid_request"),
        (vec![("code_challenge_method", "")], "invalid_request"),
        (
            vec![("response_type", "token")],
            "unsupported_response_type",
        ),
        (vec![("response_type", "")], "invalid_request"),
        (vec![("scope", "openid admin")], "invalid_scope"),
        (vec![("prompt", "none login")], "invalid_request"),
        (vec![("max_age", "soon")], "invalid_request"),
        (vec![("request", "eyJ.x.y")], "request_not_supported"),
        // OpenID Connect Core §3.1.2.6: no session, no page.
        (vec![("prompt", "none")], "login_required"),
    ] {
        let page = browser.get(&authorize_path(&extra)).await;
        let params = redirect_params(&page, REDIRECT);
        assert_eq!(params["error"], error, "{extra:?}");
        assert_eq!(params["state"], "st-123");
        assert_eq!(params["iss"], app.base);
    }

    // RFC 8252 §7.3: a loopback redirect takes any port, nothing more.
    let native = |uri: &str| authorize_path(&[("client_id", "native"), ("redirect_uri", uri)]);
    let ok = browser.get(&native("http://127.0.0.1:49152/cb")).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER);
    assert!(ok.location().starts_with("/signin?"), "{}", ok.location());
    for bad in ["http://127.0.0.1:49152/cb/x", "http://localhost:49152/cb"] {
        let page = browser.get(&native(bad)).await;
        assert_eq!(page.status, StatusCode::BAD_REQUEST, "{bad}");
    }

    // prompt=none with a session but no consent yet.
    let signed_in = app.signed_in_browser("di@example.com").await;
    let page = signed_in.get(&authorize_path(&[("prompt", "none")])).await;
    assert_eq!(
        redirect_params(&page, REDIRECT)["error"],
        "consent_required"
    );
    // prompt=login: the password again, even though signed in.
    let page = signed_in.get(&authorize_path(&[("prompt", "login")])).await;
    assert_eq!(page.status, StatusCode::SEE_OTHER);
    assert!(page.location().contains("reauth=1"), "{}", page.location());
    let form = signed_in.get(page.location()).await;
    assert_eq!(
        form.status,
        StatusCode::OK,
        "the sign-in form, not a redirect"
    );
}

#[tokio::test]
async fn a_confidential_app_authenticates_and_pkce_is_its_choice() {
    let app = spawn_app().await;
    add_web_app(&app, "web", REDIRECT, Some("web-secret")).await;
    let browser = app.signed_in_browser("ed@example.com").await;
    let confirm = browser
        .get(&authorize_path(&[
            ("code_challenge", ""),
            ("code_challenge_method", ""),
        ]))
        .await;
    let back = decide(&browser, &confirm, "approve").await;
    let code = redirect_params(&back, REDIRECT)["code"].clone();
    // RFC 9700 §2.1.1: a verifier for a code issued without a challenge.
    let downgrade = redeem(&app, "web", &code, &[("client_secret", "web-secret")]).await;
    assert_eq!(downgrade.error(), "invalid_grant");
    let no_secret = redeem(&app, "web", &code, &[("code_verifier", "")]).await;
    assert_eq!(no_secret.error(), "invalid_client");
    let good = redeem(
        &app,
        "web",
        &code,
        &[("code_verifier", ""), ("client_secret", "web-secret")],
    )
    .await;
    assert_eq!(good.status, StatusCode::OK, "{}", good.json);
}

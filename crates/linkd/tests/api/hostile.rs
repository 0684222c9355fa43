//! Hostile and malformed input, as a table: each case is one request and
//! the exact answer it must get. None may panic, answer 5xx, or change a
//! record (checked at the end).

use reqwest::{Method, StatusCode};

use crate::helpers::*;

/// What a case sends.
struct Case {
    name: &'static str,
    method: Method,
    path: String,
    content_type: Option<&'static str>,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    /// Send with the signed-in browser's cookies.
    signed_in: bool,
    status: StatusCode,
    /// Must appear in the body (the JSON `error` or the page text).
    expect: &'static str,
    /// Must not appear in the body (e.g. unescaped markup).
    reject: Option<&'static str>,
}

const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

fn case(
    name: &'static str,
    method: Method,
    path: impl Into<String>,
    body: impl Into<Vec<u8>>,
) -> Case {
    Case {
        name,
        method,
        path: path.into(),
        content_type: FORM,
        headers: Vec::new(),
        body: body.into(),
        signed_in: false,
        status: StatusCode::BAD_REQUEST,
        expect: "invalid_request",
        reject: None,
    }
}

impl Case {
    fn status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }
    fn expect(mut self, text: &'static str) -> Self {
        self.expect = text;
        self
    }
    fn content_type(mut self, ct: Option<&'static str>) -> Self {
        self.content_type = ct;
        self
    }
    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    fn signed_in(mut self) -> Self {
        self.signed_in = true;
        self
    }
    fn reject(mut self, text: &'static str) -> Self {
        self.reject = Some(text);
        self
    }
}

const G: &str = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Adevice_code";

#[tokio::test]
async fn hostile_input_gets_exact_answers_and_changes_nothing() {
    let app = spawn_app().await;
    let pending = app.start_device("openid").await;
    let (browser, tokens) = app
        .link_device("victim@example.com", "openid offline_access")
        .await;
    let access = tokens["access_token"].as_str().unwrap().to_string();
    let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
    let csrf = browser.get("/account").await.csrf();
    let accounts_before = app.state.store.list_accounts().await.unwrap().len();
    let clients_before = app.state.store.list_clients().await.unwrap();

    let big = vec![b'a'; 1024 * 1024];
    let forged_none = {
        use base64::Engine;
        let e = |v: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let claims = jwt_claims(&access);
        format!(
            "{}.{}.",
            e(br#"{"alg":"none","typ":"at+jwt"}"#),
            e(claims.to_string().as_bytes())
        )
    };
    let foreign_kid = {
        let key = linkd::tokens::generate_signing_key(0).unwrap();
        let keys = linkd::tokens::Keys::from_stored(&[key], 0, 3600).unwrap();
        let claims: linkd::tokens::AccessClaims =
            serde_json::from_value(jwt_claims(&access)).unwrap();
        keys.sign_access_token(&claims).unwrap()
    };
    let tampered = {
        let mut parts: Vec<String> = access.split('.').map(str::to_string).collect();
        parts[2] = parts[2].chars().rev().collect();
        parts.join(".")
    };

    let cases = vec![
        // The token endpoint.
        case("empty token request", Method::POST, "/oauth/token", ""),
        case(
            "text/plain body",
            Method::POST,
            "/oauth/token",
            format!("{G}&client_id=demo-tv&device_code=x"),
        )
        .content_type(Some("text/plain")),
        case(
            "no content type",
            Method::POST,
            "/oauth/token",
            format!("{G}&client_id=demo-tv&device_code=x"),
        )
        .content_type(None),
        case(
            "JSON where a form is expected",
            Method::POST,
            "/oauth/token",
            r#"{"grant_type":"refresh_token"}"#,
        )
        .content_type(Some("application/json")),
        case(
            "repeated grant_type",
            Method::POST,
            "/oauth/token",
            format!("{G}&{G}&client_id=demo-tv&device_code=x"),
        ),
        case(
            "repeated client_id",
            Method::POST,
            "/oauth/token",
            format!("{G}&client_id=demo-tv&client_id=demo-tv&device_code=x"),
        ),
        case(
            "40 distinct parameters",
            Method::POST,
            "/oauth/token",
            format!(
                "{G}&client_id=demo-tv&device_code=x{}",
                (0..40).map(|i| format!("&p{i}=v")).collect::<String>()
            ),
        )
        .expect("too many parameters"),
        case("1 MB body", Method::POST, "/oauth/token", big.clone())
            .status(StatusCode::PAYLOAD_TOO_LARGE),
        case(
            "NUL in device_code",
            Method::POST,
            "/oauth/token",
            format!("{G}&client_id=demo-tv&device_code=a%00b"),
        ),
        case(
            "percent-encoded non-UTF-8",
            Method::POST,
            "/oauth/token",
            format!("{G}&client_id=demo-tv&device_code=%FF%FE"),
        ),
        case(
            "raw non-UTF-8 bytes",
            Method::POST,
            "/oauth/token",
            [
                format!("{G}&client_id=demo-tv&device_code=").as_bytes(),
                &[0xff, 0xc3, 0x28],
            ]
            .concat(),
        ),
        case(
            "over-long device_code",
            Method::POST,
            "/oauth/token",
            format!("{G}&client_id=demo-tv&device_code={}", "A".repeat(10_000)),
        )
        .expect("invalid_grant"),
        case(
            "SQL in device_code",
            Method::POST,
            "/oauth/token",
            format!("{G}&client_id=demo-tv&device_code=%27%20OR%201%3D1%20--"),
        )
        .expect("invalid_grant"),
        case(
            "SQL in client_id",
            Method::POST,
            "/oauth/token",
            format!("{G}&client_id=demo-tv%27%20OR%20%271%27%3D%271&device_code=x"),
        )
        .status(StatusCode::UNAUTHORIZED)
        .expect("invalid_client"),
        case(
            "unicode grant_type",
            Method::POST,
            "/oauth/token",
            "grant_type=%E2%80%AEdevice&client_id=demo-tv",
        )
        .expect("unsupported_grant_type"),
        case(
            "Basic with bad base64",
            Method::POST,
            "/oauth/token",
            format!("{G}&device_code=x"),
        )
        .header("authorization", "Basic !!!not-base64")
        .status(StatusCode::UNAUTHORIZED)
        .expect("invalid_client"),
        case(
            "Basic without a colon",
            Method::POST,
            "/oauth/token",
            format!("{G}&device_code=x"),
        )
        .header("authorization", "Basic ZGVtby10dg==")
        .status(StatusCode::UNAUTHORIZED)
        .expect("invalid_client"),
        case(
            "polling after redemption",
            Method::POST,
            "/oauth/token",
            format!("{G}&client_id=demo-tv&device_code=redeemed-below"),
        )
        .expect("invalid_grant"),
        case(
            "refresh token of the wrong kind",
            Method::POST,
            "/oauth/token",
            format!("grant_type=refresh_token&client_id=demo-tv&refresh_token={access}"),
        )
        .expect("invalid_grant"),
        case("GET on the token endpoint", Method::GET, "/oauth/token", "")
            .status(StatusCode::METHOD_NOT_ALLOWED)
            .expect(""),
        // Device authorization.
        case(
            "scope with a quote",
            Method::POST,
            "/oauth/device_authorization",
            "client_id=demo-tv&scope=open%22id",
        )
        .expect("invalid_scope"),
        case(
            "huge scope",
            Method::POST,
            "/oauth/device_authorization",
            format!("client_id=demo-tv&scope={}", "a".repeat(10_000)),
        )
        .expect("invalid_scope"),
        case(
            "NUL in client_id",
            Method::POST,
            "/oauth/device_authorization",
            "client_id=demo%00tv",
        ),
        case(
            "body over the limit",
            Method::POST,
            "/oauth/device_authorization",
            format!("client_id=demo-tv&device_name={}", "x".repeat(20_000)),
        )
        .status(StatusCode::PAYLOAD_TOO_LARGE),
        // Revocation, introspection, bearer tokens.
        case(
            "revoke without a token",
            Method::POST,
            "/oauth/revoke",
            "client_id=demo-tv",
        ),
        case(
            "introspect with JSON",
            Method::POST,
            "/oauth/introspect",
            "{}",
        )
        .content_type(Some("application/json")),
        case("alg none token", Method::GET, "/oauth/userinfo", "")
            .header("authorization", format!("Bearer {forged_none}"))
            .status(StatusCode::UNAUTHORIZED)
            .expect("invalid_token"),
        case(
            "token signed by an unknown key",
            Method::GET,
            "/oauth/userinfo",
            "",
        )
        .header("authorization", format!("Bearer {foreign_kid}"))
        .status(StatusCode::UNAUTHORIZED)
        .expect("invalid_token"),
        case("tampered signature", Method::GET, "/api/v1/device", "")
            .header("authorization", format!("Bearer {tampered}"))
            .status(StatusCode::UNAUTHORIZED)
            .expect("invalid_token"),
        case(
            "Basic credentials on a Bearer API",
            Method::GET,
            "/api/v1/device",
            "",
        )
        .header("authorization", "Basic ZGVtby10djp4")
        .status(StatusCode::UNAUTHORIZED)
        .expect("an access token is required"),
        case(
            "refresh token as a Bearer token",
            Method::DELETE,
            "/api/v1/device",
            "",
        )
        .header("authorization", format!("Bearer {refresh}"))
        .status(StatusCode::UNAUTHORIZED)
        .expect("invalid_token"),
        // The person's pages.
        case(
            "over-long code",
            Method::GET,
            format!("/link?code={}", "B".repeat(5000)),
            "",
        )
        .signed_in()
        .expect("Codes are 8 letters"),
        case(
            "markup in a code",
            Method::GET,
            "/link?code=%3Cscript%3Ealert(1)%3C%2Fscript%3E",
            "",
        )
        .signed_in()
        .expect("character codes never use")
        .reject("<script>alert(1)"),
        // Look-alikes are read as the letters they look like: a code
        // nobody asked for, not a malformed one.
        case(
            "full-width look-alike code",
            Method::GET,
            "/link?code=%EF%BC%A2CDF-GHJK",
            "",
        )
        .signed_in()
        .status(StatusCode::NOT_FOUND)
        .expect("find that code"),
        case(
            "Cyrillic look-alike code",
            Method::GET,
            "/link?code=BCDF-GHJ%D0%9A",
            "",
        )
        .signed_in()
        .status(StatusCode::NOT_FOUND)
        .expect("find that code"),
        case(
            "look-alike of a letter codes never use",
            Method::GET,
            "/link?code=BCDF-GHJ%D0%90",
            "",
        )
        .signed_in()
        .expect("character codes never use"),
        case("code with a NUL", Method::GET, "/link?code=BCDF%00GHJK", "")
            .signed_in()
            .expect("character codes never use"),
        case(
            "sign-in with JSON",
            Method::POST,
            "/signin",
            r#"{"email":"a@b.c"}"#,
        )
        .content_type(Some("application/json"))
        .expect("only accepts its own form"),
        case(
            "sign-in with repeated fields",
            Method::POST,
            "/signin",
            "email=a%40b.c&email=b%40c.d&password=x&csrf=x",
        )
        .expect("twice"),
        case(
            "sign-in form over the limit",
            Method::POST,
            "/signin",
            big.clone(),
        )
        .expect("too large"),
        case(
            "sign-up with markup in the email",
            Method::POST,
            "/signup",
            "csrf=wrong&email=%3Cimg+src%3Dx%3E%40example.com&password=longenoughpassword",
        )
        .status(StatusCode::FORBIDDEN)
        .expect("This form has expired"),
        case(
            "decide with an unknown decision",
            Method::POST,
            "/link/decide",
            format!("csrf={csrf}&code={}&decision=maybe", pending.user_code),
        )
        .signed_in()
        .expect("Choose Approve or Deny"),
        case(
            "decide with a stale CSRF token",
            Method::POST,
            "/link/decide",
            format!(
                "csrf=stale-token-from-an-old-session&code={}&decision=approve",
                pending.user_code
            ),
        )
        .signed_in()
        .status(StatusCode::FORBIDDEN)
        .expect("This form has expired"),
        case(
            "SQL in a device id",
            Method::POST,
            "/devices/x'%20OR%20'1'%3D'1/unlink",
            format!("csrf={csrf}"),
        )
        .signed_in()
        .status(StatusCode::NOT_FOUND)
        .expect("Page not found"),
        case(
            "rename with markup",
            Method::POST,
            "/devices/nope/rename",
            format!("csrf={csrf}&label=%3Cb%3Ex%3C%2Fb%3E"),
        )
        .signed_in()
        .status(StatusCode::NOT_FOUND)
        .expect("Page not found"),
        case("path traversal", Method::GET, "/static/../Cargo.toml", "")
            .status(StatusCode::NOT_FOUND)
            .expect("Page not found"),
        case(
            "open redirect on sign-out",
            Method::POST,
            "/signout",
            "next=https%3A%2F%2Fevil.example%2F",
        )
        .status(StatusCode::SEE_OTHER)
        .expect(""),
        case("forged session cookie", Method::GET, "/devices", "")
            .header("cookie", "linkd_session=forged-session-value")
            .status(StatusCode::SEE_OTHER)
            .expect(""),
        case("oversized session cookie", Method::GET, "/account", "")
            .header("cookie", format!("linkd_session={}", "x".repeat(4000)))
            .status(StatusCode::SEE_OTHER)
            .expect(""),
    ];
    assert!(cases.len() >= 40, "{} cases", cases.len());

    // One code is redeemed first so "polling after redemption" means it.
    let redeemed = app.start_device("openid").await;
    browser.approve(&redeemed.user_code).await;
    assert_eq!(app.poll(&redeemed.device_code).await.status, StatusCode::OK);

    for case in cases {
        let body =
            String::from_utf8_lossy(&case.body).replace("redeemed-below", &redeemed.device_code);
        let client = if case.signed_in {
            &browser.client
        } else {
            &app.http
        };
        let mut request = client.request(case.method.clone(), app.url(&case.path));
        if let Some(ct) = case.content_type {
            request = request.header("content-type", ct);
        }
        for (name, value) in &case.headers {
            request = request.header(*name, value);
        }
        let body_bytes = if body.contains('\u{FFFD}') {
            case.body.clone()
        } else {
            body.into_bytes()
        };
        let response = request.body(body_bytes).send().await.unwrap();
        let status = response.status();
        let location = response
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap_or("").to_string());
        let raw = response.text().await.unwrap();
        let text = html_unescape(&raw);
        assert!(status.as_u16() < 500, "{}: {status}", case.name);
        assert_eq!(status, case.status, "{}: {text}", case.name);
        assert!(text.contains(case.expect), "{}: {text}", case.name);
        if let Some(reject) = case.reject {
            assert!(!raw.contains(reject), "{}: {raw}", case.name);
        }
        if let Some(location) = location {
            assert!(
                location.starts_with('/') && !location.starts_with("//"),
                "{}: {location}",
                case.name
            );
        }
    }

    // Nothing changed: the pending code is pending, the device linked, no
    // account or client appeared or vanished.
    assert_eq!(
        app.poll(&pending.device_code).await.error(),
        "authorization_pending"
    );
    assert_eq!(app.introspect(&access).await["active"], true);
    assert_eq!(
        app.state.store.list_accounts().await.unwrap().len(),
        accounts_before
    );
    assert_eq!(
        app.state.store.list_clients().await.unwrap().len(),
        clients_before.len() + 1,
        "only the introspecting resource server was added"
    );
    assert!(browser.get("/devices").await.contains("Demo TV"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_and_deny_racing_on_one_code_leave_one_outcome() {
    let app = spawn_app().await;
    for _ in 0..5 {
        let auth = app.start_device("openid").await;
        let browser = app
            .signed_in_browser(&format!("racer{}@example.com", auth.user_code))
            .await;
        let csrf = browser.type_code(&auth.user_code).await.csrf();
        let approve_form = [
            ("csrf", csrf.as_str()),
            ("code", auth.user_code.as_str()),
            ("decision", "approve"),
        ];
        let deny_form = [
            ("csrf", csrf.as_str()),
            ("code", auth.user_code.as_str()),
            ("decision", "deny"),
        ];
        let approve = browser.post("/link/decide", &approve_form);
        let deny = browser.post("/link/decide", &deny_form);
        let (a, d) = futures::future::join(approve, deny).await;
        let winners = [&a, &d]
            .iter()
            .filter(|p| p.status == StatusCode::OK)
            .count();
        assert_eq!(winners, 1, "{} / {}", a.status, d.status);
        let poll = app.poll(&auth.device_code).await;
        if a.status == StatusCode::OK {
            assert_eq!(poll.status, StatusCode::OK);
        } else {
            assert_eq!(poll.error(), "access_denied");
        }
    }
}

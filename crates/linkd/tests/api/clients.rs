//! Client libraries nobody on this team wrote, used the way their authors
//! document them, run against linkd unchanged: the device flow with the
//! `oauth2` crate and with `openid-client` (npm) driven by node, and the
//! authorization code flow with PKCE with `openid-client`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use oauth2::basic::{BasicClient, BasicTokenType};
use oauth2::{
    ClientId, DeviceAuthorizationUrl, Scope, StandardDeviceAuthorizationResponse, TokenResponse,
    TokenUrl,
};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::task::JoinHandle;

use crate::helpers::*;

const SCOPES: [&str; 3] = ["openid", "email", "offline_access"];

/// Both libraries sleep for real between polls, so the server runs on the
/// wall clock; a 1 s interval keeps the wait short.
async fn spawn_app_for_real_clients() -> TestApp {
    spawn_app_with(Options {
        real_clock: true,
        configure: Box::new(|c| c.poll_interval = 1),
    })
    .await
}

/// The person approves once the device has started polling, so each client
/// also sees `authorization_pending` first.
async fn approve_after_first_poll(app: &TestApp, email: &str, user_code: &str) {
    let browser = app.signed_in_browser(email).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let result = browser.approve(user_code).await;
    assert_eq!(result.status, StatusCode::OK, "{}", result.body);
    assert!(
        result.contains("Your Demo TV is now linked"),
        "{}",
        result.body
    );
}

#[tokio::test]
async fn the_oauth2_crate_links_a_device() {
    let app = spawn_app_for_real_clients().await;
    // A public client: with no secret, oauth2 sends client_id in the body.
    let client = BasicClient::new(ClientId::new("demo-tv".into()))
        .set_token_uri(TokenUrl::new(app.url("/oauth/token")).expect("token URL"))
        .set_device_authorization_url(
            DeviceAuthorizationUrl::new(app.url("/oauth/device_authorization"))
                .expect("device authorization URL"),
        );
    // oauth2's security advice: never follow redirects (SSRF).
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client");

    let details: StandardDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scopes(SCOPES.map(|s| Scope::new(s.into())))
        .request_async(&http)
        .await
        .expect("device authorization");
    assert_eq!(details.verification_uri().as_str(), app.url("/link"));
    assert_eq!(details.interval(), Duration::from_secs(1));
    let user_code = details.user_code().secret().clone();

    let polling = client.exchange_device_access_token(&details).request_async(
        &http,
        tokio::time::sleep,
        None,
    );
    let (token, ()) = tokio::time::timeout(
        Duration::from_secs(30),
        futures::future::join(
            polling,
            approve_after_first_poll(&app, "oauth2-crate@example.com", &user_code),
        ),
    )
    .await
    .expect("tokens within 30 s");
    let token = token.expect("device access token");

    assert_eq!(*token.token_type(), BasicTokenType::Bearer);
    assert_eq!(token.expires_in(), Some(Duration::from_secs(3600)));
    let scopes: Vec<&str> = token
        .scopes()
        .expect("scope in the token response")
        .iter()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(scopes, SCOPES);
    let refresh = token
        .refresh_token()
        .expect("a refresh token for offline_access");
    assert!(refresh.secret().len() >= 43, "{}", refresh.secret());
    let claims = jwt_claims(token.access_token().secret());
    assert_eq!(claims["client_id"], "demo-tv");
    assert_eq!(claims["iss"], app.base.as_str());
    assert_eq!(claims["scope"], SCOPES.join(" "));
}

/// A device script's run: it prints the code linkd issued, the person
/// `email` approves it once the device polls, and the script prints what it
/// got and ends well.
async fn link_device(app: &TestApp, script: &mut ClientScript, email: &str) -> Value {
    let run = async {
        let issued = script.next_line().await;
        let user_code = issued["user_code"]
            .as_str()
            .unwrap_or_else(|| panic!("no user_code: {issued}"));
        assert_eq!(issued["verification_uri"], app.url("/link"));
        assert_eq!(issued["interval"], 1);
        approve_after_first_poll(app, email, user_code).await;
        let linked = script.next_line().await;
        let status = script.child.wait().await.expect("wait for the script");
        (linked, status)
    };
    let Ok((linked, status)) = tokio::time::timeout(Duration::from_secs(60), run).await else {
        script.fail("did not finish within 60 s").await
    };
    if !status.success() {
        script.fail(&format!("exited with {status}")).await
    }
    linked
}

#[tokio::test]
async fn openid_client_links_a_device_and_validates_the_id_token() {
    let dir = client_dir("openid-client", "openid-client");
    let app = spawn_app_for_real_clients().await;
    let mut node = ClientScript::start(&dir, "device.mjs", &[&app.base, "demo-tv"]);

    let linked = link_device(&app, &mut node, "openid-client@example.com").await;

    // openid-client checked the signature against the JWKS, iss, aud, exp
    // and iat before handing these over.
    let claims = &linked["claims"];
    assert_eq!(claims["email"], "openid-client@example.com", "{linked}");
    assert_eq!(claims["iss"], app.base.as_str(), "{linked}");
    assert_eq!(claims["aud"], "demo-tv", "{linked}");
    assert!(
        claims["sub"].as_str().is_some_and(|s| !s.is_empty()),
        "{linked}"
    );
    // oauth4webapi lower-cases token_type before returning it.
    assert_eq!(linked["token_type"], "bearer", "{linked}");
    assert_eq!(linked["scope"], SCOPES.join(" "), "{linked}");
    assert_eq!(linked["refresh_token"], true, "{linked}");
}

/// A native app on the person's computer (RFC 8252): openid-client sends
/// the browser to linkd with PKCE, `state` and `nonce`, receives it back at
/// a loopback address, checks `state` and `iss`, redeems the code and
/// validates the ID token; a second redemption of the code is refused.
#[tokio::test]
async fn openid_client_links_an_app_with_a_code_and_pkce() {
    let dir = client_dir("openid-client", "openid-client");
    let app = spawn_app().await;
    crate::authorize::add_web_app(&app, "desktop", "http://127.0.0.1/callback", None).await;
    // RFC 8252 §7.3: the app listens on a port of its choosing.
    let redirect_uri = "http://127.0.0.1:49321/callback";
    let mut node = ClientScript::start(&dir, "code.mjs", &[&app.base, "desktop", redirect_uri]);
    let browser = app.signed_in_browser("native@example.com").await;

    let run = async {
        let started = node.next_line().await;
        let url = started["authorization_url"]
            .as_str()
            .unwrap_or_else(|| panic!("no authorization_url: {started}"));
        let path = url
            .strip_prefix(app.base.as_str())
            .unwrap_or_else(|| panic!("not linkd's address: {url}"));
        assert!(path.starts_with("/oauth/authorize?"), "{url}");
        let confirm = browser.get(path).await;
        assert!(confirm.contains("Link App desktop?"), "{}", confirm.body);
        let back = crate::authorize::decide(&browser, &confirm, "approve").await;
        assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
        assert!(
            back.location().starts_with(&format!("{redirect_uri}?")),
            "{}",
            back.location()
        );
        node.send_line(back.location()).await;
        let linked = node.next_line().await;
        let reuse = node.next_line().await;
        let status = node.child.wait().await.expect("wait for the script");
        (linked, reuse, status)
    };
    let Ok((linked, reuse, status)) = tokio::time::timeout(Duration::from_secs(60), run).await
    else {
        node.fail("did not finish within 60 s").await
    };
    if !status.success() {
        node.fail(&format!("exited with {status}")).await
    }

    // openid-client checked the ID token's signature against the JWKS,
    // iss, aud, exp, iat and the nonce it sent before handing these over.
    let claims = &linked["claims"];
    assert_eq!(claims["email"], "native@example.com", "{linked}");
    assert_eq!(claims["iss"], app.base.as_str(), "{linked}");
    assert_eq!(claims["aud"], "desktop", "{linked}");
    assert!(
        claims["nonce"].as_str().is_some_and(|n| n.len() >= 32),
        "{linked}"
    );
    // RFC 6749 §3.3: a scope is a set; its order carries nothing.
    let mut granted: Vec<&str> = linked["scope"].as_str().unwrap_or("").split(' ').collect();
    granted.sort_unstable();
    let mut asked = SCOPES.to_vec();
    asked.sort_unstable();
    assert_eq!(granted, asked, "{linked}");
    assert_eq!(linked["refresh_token"], true, "{linked}");
    assert_eq!(reuse["reuse_error"], "invalid_grant", "{reuse}");
    // RFC 6749 §4.1.2: the second use revoked what the first issued, and
    // the app is no longer among the person's devices.
    let access = linked["access_token"].as_str().unwrap_or_default();
    assert_eq!(app.introspect(access).await["active"], false, "{linked}");
    let devices = browser.get("/devices").await;
    assert!(!devices.contains("App desktop"), "{}", devices.body);
}

/// tests/clients/NAME, with its npm packages installed (`package` is one
/// of them).
fn client_dir(name: &str, package: &str) -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/clients")
        .join(name);
    let dir = dir.canonicalize().unwrap_or(dir);
    assert!(
        dir.join("node_modules")
            .join(package)
            .join("package.json")
            .is_file(),
        "{package} is not installed: run `npm ci` in {}",
        dir.display()
    );
    dir
}

/// MSAL for Node as a public client of linkd taken as a non-Azure OpenID
/// provider (`protocolMode: "OIDC"`, discovery read by MSAL itself). MSAL
/// refuses an authority without https, so linkd terminates TLS here.
/// MSAL ignores `device_authorization_endpoint` (RFC 8628 §4) and posts
/// to `/oauth/devicecode`, the token endpoint's address with `/token`
/// replaced (Azure AD's layout), and polls with the grant type
/// `device_code`; linkd takes both: its device code grant links, then its authorization code flow with PKCE and its
/// silent refresh. MSAL validates each ID token and builds its account
/// from the claims.
#[tokio::test]
async fn msal_signs_in_with_a_code_and_refreshes_silently() {
    let dir = client_dir("msal", "@azure/msal-node");
    let (app, tls) = spawn_https_app(Options::default()).await;
    // MSAL asks for openid, profile and offline_access on every request.
    app.state
        .store
        .insert_client(&linkd::store::Client {
            client_id: "desktop".into(),
            name: "App desktop".into(),
            secret_hash: None,
            scopes: "openid profile email offline_access".into(),
            device_flow_enabled: true,
            redirect_uris: "http://127.0.0.1/callback".into(),
            code_flow_enabled: true,
            refresh_enabled: true,
            require_dpop: false,
            prefilled_links: true,
            same_network: None,
            created_at: linkd::clock::Clock::now(app.clock.as_ref()),
        })
        .await
        .expect("insert client");
    let redirect_uri = "http://127.0.0.1:49322/callback";
    let cert = tls.path().join("cert.pem");
    let mut node = ClientScript::start_with_env(
        &dir,
        "msal.mjs",
        &[&app.base, "desktop", redirect_uri],
        &[("NODE_EXTRA_CA_CERTS", &cert)],
    );
    let browser = app.signed_in_browser("msal@example.com").await;

    let run = async {
        let asked = node.next_line().await;
        let user_code = asked["user_code"]
            .as_str()
            .unwrap_or_else(|| panic!("no user code: {asked}"));
        let approved = browser.approve(user_code).await;
        assert!(approved.contains("is now linked"), "{}", approved.body);
        let device = node.next_line().await;
        let started = node.next_line().await;
        let url = started["authorization_url"]
            .as_str()
            .unwrap_or_else(|| panic!("no authorization_url: {started}"));
        let path = url
            .strip_prefix(app.base.as_str())
            .unwrap_or_else(|| panic!("not linkd's address: {url}"));
        assert!(path.starts_with("/oauth/authorize?"), "{url}");
        let confirm = browser.get(path).await;
        assert!(
            confirm.contains("Link App desktop?"),
            "{} {:?} {}",
            confirm.status,
            confirm.headers,
            confirm.body
        );
        let back = crate::authorize::decide(&browser, &confirm, "approve").await;
        assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
        node.send_line(back.location()).await;
        let linked = node.next_line().await;
        let refreshed = node.next_line().await;
        let status = node.child.wait().await.expect("wait for the script");
        (device, linked, refreshed, status)
    };
    let Ok((device, linked, refreshed, status)) =
        tokio::time::timeout(Duration::from_secs(60), run).await
    else {
        node.fail("did not finish within 60 s").await
    };
    if !status.success() {
        node.fail(&format!("exited with {status}")).await
    }

    // The device code grant, polled by MSAL at linkd's interval.
    assert_eq!(device["claims"]["email"], "msal@example.com", "{device}");
    assert_eq!(device["claims"]["aud"], "desktop", "{device}");
    let introspected = app.introspect(device["device"].as_str().unwrap()).await;
    assert_eq!(introspected["active"], true, "{introspected}");
    let claims = &linked["claims"];
    assert_eq!(claims["email"], "msal@example.com", "{linked}");
    assert_eq!(claims["iss"], app.base.as_str(), "{linked}");
    assert_eq!(claims["aud"], "desktop", "{linked}");
    // MSAL keys its account on the ID token's sub. It takes the account's
    // username from preferred_username or upn (or B2C's emails), never
    // from email; linkd's ID token carries none of them.
    assert_eq!(linked["local_account_id"], claims["sub"], "{linked}");
    assert_eq!(linked["username"], "", "{linked}");
    let access = linked["access_token"].as_str().unwrap_or_default();
    assert_eq!(jwt_claims(access)["client_id"], "desktop", "{linked}");
    assert_eq!(refreshed["refreshed"], true, "{refreshed}");
    let renewed = refreshed["access_token"].as_str().unwrap_or_default();
    assert_eq!(app.introspect(renewed).await["active"], true, "{refreshed}");
}

/// authlib (Python) as a device: the device grant through
/// `OAuth2Session.fetch_token`, with `slow_down` heard and obeyed (its
/// first two polls go out back to back), the ID token validated with
/// authlib's `jose` against linkd's JWKS, then a refresh.
#[tokio::test]
async fn authlib_links_a_device_obeys_slow_down_and_refreshes() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/authlib");
    let dir = dir.canonicalize().unwrap_or(dir);
    let python = dir.join(".venv/bin/python");
    assert!(
        python.is_file(),
        "authlib is not installed: run `python3 -m venv .venv && .venv/bin/pip install -r requirements.txt` in {}",
        dir.display()
    );
    let app = spawn_app_for_real_clients().await;
    let mut script = ClientScript::spawn(
        Command::new(python),
        &dir,
        "device.py",
        &[&app.base, "demo-tv"],
    );

    let linked = link_device(&app, &mut script, "authlib@example.com").await;

    let claims = &linked["claims"];
    assert_eq!(claims["email"], "authlib@example.com", "{linked}");
    assert_eq!(claims["iss"], app.base.as_str(), "{linked}");
    assert_eq!(claims["aud"], "demo-tv", "{linked}");
    assert_eq!(linked["token_type"], "Bearer", "{linked}");
    assert_eq!(linked["scope"], SCOPES.join(" "), "{linked}");
    // RFC 8628 §3.5: the back-to-back poll heard slow_down, and the wait
    // the person took shows as authorization_pending.
    assert!(linked["polls"]["slow_down"].as_u64() >= Some(1), "{linked}");
    assert!(
        linked["polls"]["authorization_pending"].as_u64() >= Some(1),
        "{linked}"
    );
    // RFC 6749 §6: new tokens, the refresh token rotated.
    assert_eq!(linked["refreshed"], true, "{linked}");
    let access = linked["access_token"].as_str().unwrap_or_default();
    assert_eq!(app.introspect(access).await["active"], true, "{linked}");
}

/// A client's script (`node SCRIPT ARGS`, or Python's) with its stdout read line by line, lines written to
/// its stdin, and its stderr collected for failure messages.
struct ClientScript {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: JoinHandle<String>,
    script: String,
}

impl ClientScript {
    fn start(dir: &Path, script: &str, args: &[&str]) -> Self {
        Self::start_with_env(dir, script, args, &[])
    }

    fn start_with_env(dir: &Path, script: &str, args: &[&str], env: &[(&str, &Path)]) -> Self {
        let mut node = Command::new("node");
        node.envs(env.iter().copied());
        Self::spawn(node, dir, script, args)
    }

    /// `program SCRIPT ARGS` in `dir`.
    fn spawn(mut program: Command, dir: &Path, script: &str, args: &[&str]) -> Self {
        let mut child = program
            .arg(script)
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| {
                let program = program.as_std().get_program().to_string_lossy();
                panic!("cannot run {program} {script}: {e}")
            });
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut stderr = child.stderr.take().expect("piped stderr");
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });
        ClientScript {
            child,
            stdin,
            stdout,
            stderr,
            script: script.to_string(),
        }
    }

    async fn send_line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to the script");
        stdin.flush().await.expect("flush the script's stdin");
    }

    /// The next JSON line on stdout; fails the test with node's stderr when
    /// the script ended instead.
    async fn next_line(&mut self) -> Value {
        match self
            .stdout
            .next_line()
            .await
            .expect("read the script's stdout")
        {
            Some(line) => {
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
            }
            None => {
                let status = self.child.wait().await.expect("wait for the script");
                self.fail(&format!(
                    "exited with {status} before printing the next line"
                ))
                .await
            }
        }
    }

    async fn fail(&mut self, what: &str) -> ! {
        // Already exited, or killed here so that its stderr ends.
        let _ = self.child.kill().await;
        let stderr = (&mut self.stderr).await.unwrap_or_default();
        panic!("{} {what}; stderr:\n{stderr}", self.script)
    }
}

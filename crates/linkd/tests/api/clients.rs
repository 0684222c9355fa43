//! Client libraries nobody on this team wrote, used the way their authors
//! document them, run the device flow against linkd unchanged: the `oauth2`
//! crate, and `openid-client` (npm) driven by node.

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
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};
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

#[tokio::test]
async fn openid_client_links_a_device_and_validates_the_id_token() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/openid-client");
    let dir = dir.canonicalize().unwrap_or(dir);
    assert!(
        dir.join("node_modules/openid-client/package.json")
            .is_file(),
        "openid-client is not installed: run `npm ci` in {}",
        dir.display()
    );
    let app = spawn_app_for_real_clients().await;
    let mut node = NodeScript::start(&dir, &[&app.base, "demo-tv"]);

    let run = async {
        let issued = node.next_line().await;
        let user_code = issued["user_code"]
            .as_str()
            .unwrap_or_else(|| panic!("no user_code: {issued}"));
        assert_eq!(issued["verification_uri"], app.url("/link"));
        assert_eq!(issued["interval"], 1);
        approve_after_first_poll(&app, "openid-client@example.com", user_code).await;
        let linked = node.next_line().await;
        let status = node.child.wait().await.expect("wait for node");
        (linked, status)
    };
    let Ok((linked, status)) = tokio::time::timeout(Duration::from_secs(60), run).await else {
        node.fail("did not finish within 60 s").await
    };
    if !status.success() {
        node.fail(&format!("exited with {status}")).await
    }

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

/// `node device.mjs ARGS` with its stdout read line by line and its stderr
/// collected for failure messages.
struct NodeScript {
    child: Child,
    stdout: Lines<BufReader<ChildStdout>>,
    stderr: JoinHandle<String>,
}

impl NodeScript {
    fn start(dir: &Path, args: &[&str]) -> Self {
        let mut child = Command::new("node")
            .arg("device.mjs")
            .args(args)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run node (is it on PATH?): {e}"));
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let mut stderr = child.stderr.take().expect("piped stderr");
        let stderr = tokio::spawn(async move {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text).await;
            text
        });
        NodeScript {
            child,
            stdout,
            stderr,
        }
    }

    /// The next JSON line on stdout; fails the test with node's stderr when
    /// the script ended instead.
    async fn next_line(&mut self) -> Value {
        match self.stdout.next_line().await.expect("read node stdout") {
            Some(line) => {
                serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
            }
            None => {
                let status = self.child.wait().await.expect("wait for node");
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
        panic!("node device.mjs {what}; stderr:\n{stderr}")
    }
}

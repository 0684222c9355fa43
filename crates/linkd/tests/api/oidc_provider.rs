//! The OpenID provider that upstream sign-in is tested against:
//! `oidc-provider` from npm (tests/oidc-provider/server.mjs) run as a
//! child process on this machine. Shared by the API tests and the browser
//! suite.

use std::path::Path;
use std::process::Stdio;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use linkd::config::ProviderConfig;

/// The OpenID provider, as a child process.
pub struct Provider {
    pub issuer: String,
    child: Child,
}

impl Provider {
    pub async fn start() -> Provider {
        Provider::start_with(serde_json::json!({})).await
    }

    /// With the options server.mjs takes (`authorization_host`).
    pub async fn start_with(options: Value) -> Provider {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/oidc-provider");
        assert!(
            dir.join("node_modules/oidc-provider/package.json")
                .is_file(),
            "oidc-provider is not installed: run `npm ci` in {}",
            dir.display()
        );
        // linkd's registration at the provider. A loopback redirect URI
        // takes any port (RFC 8252 §7.3), so the test need not know
        // linkd's port before starting the provider. A test with two
        // providers names the second "staff".
        let clients = serde_json::json!([{
            "client_id": "linkd",
            "client_secret": "linkd-secret",
            "application_type": "native",
            "redirect_uris": [
                "http://127.0.0.1/signin/with/corp/callback",
                "http://127.0.0.1/signin/with/staff/callback",
            ],
            "token_endpoint_auth_method": "client_secret_basic",
        }]);
        let mut child = Command::new("node")
            .arg("server.mjs")
            .arg(clients.to_string())
            .arg(options.to_string())
            .current_dir(&dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run node (is it on PATH?): {e}"));
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let line = tokio::time::timeout(std::time::Duration::from_secs(30), lines.next_line())
            .await
            .expect("the provider starts within 30 s")
            .expect("read the provider's stdout")
            .expect("the provider printed its issuer");
        // Read on, so that the provider never writes to a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let started: Value = serde_json::from_str(&line).expect("JSON");
        Provider {
            issuer: started["issuer"].as_str().expect("issuer").to_string(),
            child,
        }
    }

    pub fn config(&self, join_by_verified_email: bool) -> ProviderConfig {
        ProviderConfig {
            id: "corp".into(),
            name: "Corp".into(),
            issuer: self.issuer.clone(),
            client_id: "linkd".into(),
            client_secret: "linkd-secret".into(),
            scopes: vec!["openid".into(), "email".into()],
            email_claim: "email".into(),
            join_by_verified_email,
        }
    }

    /// The next token response carries an ID token forged this way.
    pub async fn forge(&self, kind: &str) {
        let done = reqwest::Client::new()
            .post(format!("{}/forge/{kind}", self.issuer))
            .send()
            .await
            .expect("forge");
        assert_eq!(done.status(), StatusCode::NO_CONTENT);
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

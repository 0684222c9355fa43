//! Just enough of the W3C WebDriver protocol, plus chromedriver's
//! DevTools passthrough, to drive headless Chromium from the tests over
//! the reqwest client the suite already has. (fantoccini with rustls
//! would add aws-lc, a C library, and ICU to the build for the same few
//! calls.)

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

/// The key W3C WebDriver uses for element references.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";

pub const INSTALL_HINT: &str = "the browser tests need Chromium and chromedriver: \
     `apt-get install -y chromium chromium-driver` on Debian (.ci/run does this), \
     or point LINKD_CHROMIUM and LINKD_CHROMEDRIVER at them";

/// A program on PATH, or the one an environment variable names.
fn find_program(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env) {
        return Some(PathBuf::from(path)).filter(|p| p.is_file());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|candidate| candidate.is_file())
}

/// An element found on the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Element {
    /// The element as a script argument (`arguments[i]` in the page).
    pub fn to_json(&self) -> Value {
        json!({ ELEMENT_KEY: self.0 })
    }
}

/// chromedriver, the Chromium it started, and one session.
pub struct Chrome {
    http: reqwest::Client,
    session: String,
    driver: tokio::process::Child,
    driver_pid: Option<u32>,
    _profile: tempfile::TempDir,
}

impl Chrome {
    /// Starts chromedriver on a free port and opens a Chromium session
    /// with a fresh profile. Fails with [`INSTALL_HINT`] when either
    /// program is missing.
    pub async fn start() -> Result<Chrome, String> {
        let chromium = find_program(
            "LINKD_CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        )
        .ok_or_else(|| format!("no Chromium found: {INSTALL_HINT}"))?;
        let chromedriver = find_program("LINKD_CHROMEDRIVER", &["chromedriver"])
            .ok_or_else(|| format!("no chromedriver found: {INSTALL_HINT}"))?;

        let port = free_port().map_err(|e| format!("finding a free port: {e}"))?;
        let mut command = tokio::process::Command::new(&chromedriver);
        command
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        // Its own process group, so the browser it starts can be ended
        // with it should a test panic before `quit`.
        #[cfg(unix)]
        command.process_group(0);
        let driver = command
            .spawn()
            .map_err(|e| format!("starting {}: {e}; {INSTALL_HINT}", chromedriver.display()))?;
        let driver_pid = driver.id();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| e.to_string())?;
        let base = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = http
                .get(format!("{base}/status"))
                .send()
                .await
                .ok()
                .map(|r| r.json::<Value>());
            if let Some(body) = ready
                && let Ok(body) = body.await
                && body["value"]["ready"] == true
            {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("chromedriver did not start on port {port}"));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
        // The flags this machine needs (no sandbox as root, no GPU), and
        // no background connections: the only requests are the tests'.
        let args = vec![
            "--headless".to_string(),
            "--no-sandbox".into(),
            "--disable-gpu".into(),
            "--disable-quic".into(),
            "--no-first-run".into(),
            "--disable-background-networking".into(),
            "--disable-component-update".into(),
            "--disable-sync".into(),
            "--disable-dev-shm-usage".into(),
            "--hide-scrollbars".into(),
            "--lang=en-US".into(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium.display().to_string(),
                        "args": args,
                    },
                    // Console messages and DevTools network events, read
                    // after every page to catch errors and failed requests.
                    "goog:loggingPrefs": { "browser": "ALL", "performance": "ALL" },
                    "timeouts": { "implicit": 0, "pageLoad": 20_000, "script": 20_000 },
                }
            }
        });
        let response = send(
            http.post(format!("{base}/session")).json(&capabilities),
            "creating a session",
        )
        .await?;
        let Some(id) = response["value"]["sessionId"].as_str() else {
            return Err(format!(
                "chromedriver could not start {}: {}",
                chromium.display(),
                response["value"]["message"]
            ));
        };
        let chrome = Chrome {
            http,
            session: format!("{base}/session/{id}"),
            driver,
            driver_pid,
            _profile: profile,
        };
        // Whatever the browser did while starting is not the tests' concern.
        chrome.logs("browser").await?;
        chrome.logs("performance").await?;
        Ok(chrome)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Value,
    ) -> Result<Value, String> {
        let url = format!("{}{path}", self.session);
        let mut request = self.http.request(method.clone(), &url);
        if method != reqwest::Method::GET && method != reqwest::Method::DELETE {
            request = request.json(&body);
        }
        let response = send(request, &format!("{method} {path}")).await?;
        let value = response.get("value").cloned().unwrap_or(Value::Null);
        if let Some(error) = value.get("error").and_then(Value::as_str) {
            let message = value["message"].as_str().unwrap_or("");
            let first_line = message.lines().next().unwrap_or("");
            return Err(format!("{method} {path}: {error}: {first_line}"));
        }
        Ok(value)
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        self.call(reqwest::Method::POST, path, body).await
    }

    async fn get(&self, path: &str) -> Result<Value, String> {
        self.call(reqwest::Method::GET, path, Value::Null).await
    }

    pub async fn goto(&self, url: &str) -> Result<(), String> {
        self.post("/url", json!({ "url": url })).await.map(drop)
    }

    pub async fn current_url(&self) -> Result<String, String> {
        Ok(self.get("/url").await?.as_str().unwrap_or("").to_string())
    }

    /// Runs `script` as a function body in the page; `arguments` holds
    /// `args`.
    pub async fn execute(&self, script: &str, args: Vec<Value>) -> Result<Value, String> {
        self.post("/execute/sync", json!({ "script": script, "args": args }))
            .await
    }

    /// Like [`execute`](Self::execute); the script calls the last argument
    /// with its result.
    pub async fn execute_async(&self, script: &str, args: Vec<Value>) -> Result<Value, String> {
        self.post("/execute/async", json!({ "script": script, "args": args }))
            .await
    }

    /// A DevTools protocol command on the current tab.
    pub async fn cdp(&self, command: &str, params: Value) -> Result<Value, String> {
        self.post(
            "/goog/cdp/execute",
            json!({ "cmd": command, "params": params }),
        )
        .await
    }

    /// The log entries of one kind ("browser" or "performance") since the
    /// last call.
    pub async fn logs(&self, kind: &str) -> Result<Vec<Value>, String> {
        let value = self.post("/se/log", json!({ "type": kind })).await?;
        Ok(value.as_array().cloned().unwrap_or_default())
    }

    pub async fn find(&self, css: &str) -> Result<Element, String> {
        let value = self
            .post("/element", json!({ "using": "css selector", "value": css }))
            .await
            .map_err(|e| format!("finding {css:?}: {e}"))?;
        value[ELEMENT_KEY]
            .as_str()
            .map(|id| Element(id.to_string()))
            .ok_or_else(|| format!("finding {css:?}: no element reference"))
    }

    pub async fn click(&self, element: &Element) -> Result<(), String> {
        self.post(&format!("/element/{}/click", element.0), json!({}))
            .await
            .map(drop)
    }

    /// Types into an element as a person would, key by key.
    pub async fn type_text(&self, element: &Element, text: &str) -> Result<(), String> {
        self.post(
            &format!("/element/{}/value", element.0),
            json!({ "text": text }),
        )
        .await
        .map(drop)
    }

    pub async fn clear(&self, element: &Element) -> Result<(), String> {
        self.post(&format!("/element/{}/clear", element.0), json!({}))
            .await
            .map(drop)
    }

    pub async fn property(&self, element: &Element, name: &str) -> Result<Value, String> {
        self.get(&format!("/element/{}/property/{name}", element.0))
            .await
    }

    pub async fn attribute(&self, element: &Element, name: &str) -> Result<Option<String>, String> {
        let value = self
            .get(&format!("/element/{}/attribute/{name}", element.0))
            .await?;
        Ok(value.as_str().map(str::to_string))
    }

    pub async fn text(&self, element: &Element) -> Result<String, String> {
        let value = self.get(&format!("/element/{}/text", element.0)).await?;
        Ok(value.as_str().unwrap_or("").to_string())
    }

    /// Presses a key (a WebDriver key code such as "\u{E004}" for Tab) on
    /// whatever has focus.
    pub async fn press(&self, key: &str) -> Result<(), String> {
        let actions = json!({ "actions": [{
            "type": "key",
            "id": "keyboard",
            "actions": [{ "type": "keyDown", "value": key }, { "type": "keyUp", "value": key }],
        }]});
        self.post("/actions", actions).await.map(drop)
    }

    /// Adds a virtual authenticator (WebAuthn Level 3 §11.3, "Add
    /// Virtual Authenticator"): a platform authenticator that keeps
    /// passkeys, verifies the person and always consents. Returns its id.
    pub async fn add_virtual_authenticator(&self) -> Result<String, String> {
        let id = self
            .post(
                "/webauthn/authenticator",
                json!({
                    "protocol": "ctap2",
                    "transport": "internal",
                    "hasResidentKey": true,
                    "hasUserVerification": true,
                    "isUserConsenting": true,
                    "isUserVerified": true,
                }),
            )
            .await?;
        id.as_str()
            .map(str::to_string)
            .ok_or_else(|| format!("no authenticator id in {id}"))
    }

    /// §11.4 "Remove Virtual Authenticator".
    pub async fn remove_virtual_authenticator(&self, id: &str) -> Result<(), String> {
        self.call(
            reqwest::Method::DELETE,
            &format!("/webauthn/authenticator/{id}"),
            Value::Null,
        )
        .await
        .map(drop)
    }

    /// §11.7 "Get Credentials": the passkeys the authenticator holds, with
    /// their private keys, user handles and counters.
    pub async fn virtual_credentials(&self, id: &str) -> Result<Vec<Value>, String> {
        let value = self
            .get(&format!("/webauthn/authenticator/{id}/credentials"))
            .await?;
        Ok(value.as_array().cloned().unwrap_or_default())
    }

    /// §11.6 "Add Credential": puts a passkey into the authenticator.
    pub async fn add_virtual_credential(&self, id: &str, credential: Value) -> Result<(), String> {
        self.post(
            &format!("/webauthn/authenticator/{id}/credential"),
            credential,
        )
        .await
        .map(drop)
    }

    /// §11.9 "Remove All Credentials".
    pub async fn remove_virtual_credentials(&self, id: &str) -> Result<(), String> {
        self.call(
            reqwest::Method::DELETE,
            &format!("/webauthn/authenticator/{id}/credentials"),
            Value::Null,
        )
        .await
        .map(drop)
    }

    pub async fn delete_cookies(&self) -> Result<(), String> {
        self.call(reqwest::Method::DELETE, "/cookie", Value::Null)
            .await
            .map(drop)
    }

    /// A PNG of the whole page, not only what fits the viewport.
    pub async fn screenshot(&self) -> Result<Vec<u8>, String> {
        let shot = self
            .cdp(
                "Page.captureScreenshot",
                json!({ "format": "png", "captureBeyondViewport": true }),
            )
            .await?;
        let data = shot["data"].as_str().ok_or("no screenshot data")?;
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| e.to_string())
    }

    /// Ends the session (Chromium exits) and chromedriver.
    pub async fn quit(mut self) {
        let _ = self.call(reqwest::Method::DELETE, "", Value::Null).await;
        let _ = self.driver.kill().await;
        self.driver_pid = None;
    }
}

impl Drop for Chrome {
    fn drop(&mut self) {
        // Not quit (a panic): end chromedriver's process group, which
        // holds the browser it started.
        #[cfg(unix)]
        if let Some(pid) = self.driver_pid.take() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", "--", &format!("-{pid}")])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Sends a request and reads its JSON answer; errors say what was tried.
async fn send(request: reqwest::RequestBuilder, what: &str) -> Result<Value, String> {
    let response = request.send().await.map_err(|e| format!("{what}: {e}"))?;
    response.json().await.map_err(|e| format!("{what}: {e}"))
}

/// A port nobody listens on right now.
fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

/// Where axe-core's script is, installed by `npm ci` in tests/browser.
pub fn axe_source(workspace: &Path) -> Result<String, String> {
    let path = workspace.join("tests/browser/node_modules/axe-core/axe.min.js");
    std::fs::read_to_string(&path).map_err(|e| {
        format!(
            "{}: {e}; run `npm ci` in tests/browser (scripts/test does)",
            path.display()
        )
    })
}

//! A small client for the OAuth 2.0 Device Authorization Grant (RFC 8628),
//! for device developers. It speaks plain RFC 8628 to any compliant
//! server, linkd included, and has no server dependencies.
//!
//! ```no_run
//! # async fn run() -> Result<(), linkd_device::Error> {
//! let device = linkd_device::Device::discover("https://example.com", "my-tv").await?;
//! let auth = device.request_code(Some("openid offline_access"), Some("Living room TV")).await?;
//! println!("Go to {} and enter {}", auth.verification_uri, auth.user_code);
//! let tokens = device.wait_for_tokens(&auth).await?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;

pub const DEVICE_CODE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// RFC 8628 §3.5: the interval a device keeps when the server names none.
const DEFAULT_INTERVAL_SECS: u64 = 5;
/// RFC 8628 §3.5: slow_down adds five seconds to the interval.
const SLOW_DOWN_STEP_SECS: u64 = 5;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("could not reach the server: {0}")]
    Http(#[from] reqwest::Error),
    #[error("the person denied this device")]
    Denied,
    #[error("the code expired before anyone approved it")]
    Expired,
    #[error("the server refused: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Server {
        status: u16,
        error: String,
        description: Option<String>,
    },
    #[error("the server's answer did not follow the protocol: {0}")]
    Protocol(String),
}

/// The endpoints the device needs, from server metadata (RFC 8414).
#[derive(Debug, Clone, Deserialize)]
pub struct Endpoints {
    pub issuer: String,
    pub device_authorization_endpoint: String,
    pub token_endpoint: String,
    /// linkd's long poll: answers as soon as the person decides, so the
    /// device need not wait out its polling interval. Other servers do not
    /// publish it and get plain RFC 8628 polling.
    #[serde(default)]
    pub linkd_device_wait_endpoint: Option<String>,
}

/// RFC 8628 §3.2 device authorization response.
#[derive(Debug, Clone, Deserialize)]
pub struct DeviceAuthorization {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    pub verification_uri_complete: Option<String>,
    pub expires_in: u64,
    pub interval: Option<u64>,
}

/// RFC 6749 §5.1 token response.
#[derive(Debug, Clone, Deserialize)]
pub struct Tokens {
    pub access_token: String,
    pub token_type: String,
    pub expires_in: Option<u64>,
    pub scope: Option<String>,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
}

impl Tokens {
    /// The ID token's claims, for display ("linked to alice@example.com").
    /// Not verified: the token came straight from the token endpoint over
    /// the connection this client opened, which OpenID Connect Core
    /// §3.1.3.7 accepts in place of a signature check.
    pub fn id_token_claims(&self) -> Option<serde_json::Value> {
        let payload = self.id_token.as_deref()?.split('.').nth(1)?;
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()
    }
}

#[derive(Debug, Deserialize)]
struct ErrorBody {
    error: String,
    error_description: Option<String>,
}

/// One answer of the token endpoint while polling.
#[derive(Debug)]
pub enum Poll {
    Tokens(Box<Tokens>),
    Pending,
    SlowDown,
}

/// A device app registered with an authorization server.
#[derive(Debug, Clone)]
pub struct Device {
    http: reqwest::Client,
    client_id: String,
    client_secret: Option<String>,
    pub endpoints: Endpoints,
}

impl Device {
    pub fn new(endpoints: Endpoints, client_id: impl Into<String>) -> Self {
        Device {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(40))
                .user_agent(concat!("linkd-device/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default(),
            client_id: client_id.into(),
            client_secret: None,
            endpoints,
        }
    }

    /// For confidential device apps: authenticate with client_secret_basic.
    pub fn with_secret(mut self, secret: impl Into<String>) -> Self {
        self.client_secret = Some(secret.into());
        self
    }

    /// Reads the server's metadata: OpenID discovery first, then RFC 8414.
    pub async fn discover(server: &str, client_id: impl Into<String>) -> Result<Self, Error> {
        let base = server.trim_end_matches('/');
        let http = reqwest::Client::new();
        let mut last = None;
        for path in [
            "/.well-known/openid-configuration",
            "/.well-known/oauth-authorization-server",
        ] {
            let response = http.get(format!("{base}{path}")).send().await?;
            if response.status().is_success() {
                let endpoints = response
                    .json::<Endpoints>()
                    .await
                    .map_err(|e| Error::Protocol(format!("metadata: {e}")))?;
                return Ok(Device::new(endpoints, client_id));
            }
            last = Some(response.status());
        }
        Err(Error::Protocol(format!(
            "no server metadata at {base} (last status {})",
            last.map(|s| s.as_u16()).unwrap_or(0)
        )))
    }

    async fn post(
        &self,
        url: &str,
        mut params: Vec<(&'static str, String)>,
    ) -> Result<reqwest::Response, Error> {
        let request = match &self.client_secret {
            Some(secret) => self
                .http
                .post(url)
                .basic_auth(form_encode(&self.client_id), Some(form_encode(secret))),
            None => {
                params.push(("client_id", self.client_id.clone()));
                self.http.post(url)
            }
        };
        Ok(request.form(&params).send().await?)
    }

    /// Asks for a device code and a user code (RFC 8628 §3.1).
    pub async fn request_code(
        &self,
        scope: Option<&str>,
        device_name: Option<&str>,
    ) -> Result<DeviceAuthorization, Error> {
        let mut params = Vec::new();
        if let Some(scope) = scope {
            params.push(("scope", scope.to_string()));
        }
        if let Some(name) = device_name {
            params.push(("device_name", name.to_string()));
        }
        let response = self
            .post(&self.endpoints.device_authorization_endpoint, params)
            .await?;
        if !response.status().is_success() {
            return Err(server_error(response).await);
        }
        response
            .json()
            .await
            .map_err(|e| Error::Protocol(format!("device authorization response: {e}")))
    }

    /// One token request with the device code (RFC 8628 §3.4).
    pub async fn poll_once(&self, auth: &DeviceAuthorization) -> Result<Poll, Error> {
        let params = vec![
            ("grant_type", DEVICE_CODE_GRANT.to_string()),
            ("device_code", auth.device_code.clone()),
        ];
        let response = self.post(&self.endpoints.token_endpoint, params).await?;
        if response.status().is_success() {
            let tokens = response
                .json()
                .await
                .map_err(|e| Error::Protocol(format!("token response: {e}")))?;
            return Ok(Poll::Tokens(Box::new(tokens)));
        }
        match server_error(response).await {
            Error::Server { error, .. } if error == "authorization_pending" => Ok(Poll::Pending),
            Error::Server { error, .. } if error == "slow_down" => Ok(Poll::SlowDown),
            Error::Server { error, .. } if error == "access_denied" => Err(Error::Denied),
            Error::Server { error, .. } if error == "expired_token" => Err(Error::Expired),
            other => Err(other),
        }
    }

    /// Waits until the person decides or the code expires. With linkd's
    /// long poll the tokens come moments after the approval; otherwise it
    /// polls, keeping the interval and adding five seconds on each
    /// slow_down (RFC 8628 §3.5).
    pub async fn wait_for_tokens(&self, auth: &DeviceAuthorization) -> Result<Tokens, Error> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(auth.expires_in);
        if let Some(url) = &self.endpoints.linkd_device_wait_endpoint
            && let Some(outcome) = self.long_poll(url, auth, deadline).await
        {
            return outcome;
        }
        let mut interval = auth.interval.unwrap_or(DEFAULT_INTERVAL_SECS).max(1);
        loop {
            tokio::time::sleep(Duration::from_secs(interval)).await;
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Expired);
            }
            match self.poll_once(auth).await? {
                Poll::Tokens(tokens) => return Ok(*tokens),
                Poll::Pending => {}
                Poll::SlowDown => interval += SLOW_DOWN_STEP_SECS,
            }
        }
    }
}

impl Device {
    /// Waits on the long-poll endpoint and fetches the tokens once the code
    /// is decided. `None` when the endpoint is not usable (an older server,
    /// a proxy cutting the connection, too many waits): the caller then
    /// polls the standard way.
    async fn long_poll(
        &self,
        url: &str,
        auth: &DeviceAuthorization,
        deadline: tokio::time::Instant,
    ) -> Option<Result<Tokens, Error>> {
        #[derive(Deserialize)]
        struct Waited {
            status: String,
        }
        while tokio::time::Instant::now() < deadline {
            let params = vec![("device_code", auth.device_code.clone())];
            let response = self.post(url, params).await.ok()?;
            if response.status().is_client_error()
                && response.status() != reqwest::StatusCode::TOO_MANY_REQUESTS
                && response.status() != reqwest::StatusCode::NOT_FOUND
                && response.status() != reqwest::StatusCode::METHOD_NOT_ALLOWED
            {
                // The code itself is refused (unknown, another app's):
                // the token endpoint would say the same.
                return Some(Err(server_error(response).await));
            }
            if !response.status().is_success() {
                return None;
            }
            let waited: Waited = response.json().await.ok()?;
            if waited.status == "pending" {
                continue;
            }
            // Decided (or expired): the standard token request tells the
            // outcome and carries the tokens.
            return match self.poll_once(auth).await {
                Ok(Poll::Tokens(tokens)) => Some(Ok(*tokens)),
                Ok(Poll::Pending | Poll::SlowDown) => None,
                Err(e) => Some(Err(e)),
            };
        }
        Some(Err(Error::Expired))
    }

    /// Exchanges a refresh token for new tokens (RFC 6749 §6). linkd
    /// rotates refresh tokens: keep the new one, the old one is spent.
    pub async fn refresh(&self, refresh_token: &str) -> Result<Tokens, Error> {
        let params = vec![
            ("grant_type", "refresh_token".to_string()),
            ("refresh_token", refresh_token.to_string()),
        ];
        let response = self.post(&self.endpoints.token_endpoint, params).await?;
        if !response.status().is_success() {
            return Err(server_error(response).await);
        }
        response
            .json()
            .await
            .map_err(|e| Error::Protocol(format!("token response: {e}")))
    }

    /// linkd's device API: who this device is linked to.
    pub async fn linked_info(&self, access_token: &str) -> Result<serde_json::Value, Error> {
        let url = format!("{}/api/v1/device", self.endpoints.issuer);
        let response = self.http.get(url).bearer_auth(access_token).send().await?;
        if !response.status().is_success() {
            return Err(server_error(response).await);
        }
        response
            .json()
            .await
            .map_err(|e| Error::Protocol(format!("device info: {e}")))
    }

    /// linkd's device API: unlink this device (for example on a factory
    /// reset). Its tokens stop working at once.
    pub async fn unlink(&self, access_token: &str) -> Result<(), Error> {
        let url = format!("{}/api/v1/device", self.endpoints.issuer);
        let response = self
            .http
            .delete(url)
            .bearer_auth(access_token)
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(server_error(response).await);
        }
        Ok(())
    }
}

/// A settings document as read from linkd's sync API.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncDocument {
    /// The version, as the server's entity tag (`"42"`); send it back as
    /// `If-Match` to update.
    pub etag: String,
    pub value: serde_json::Value,
}

/// What a sync write requires (RFC 9110 §13.1).
#[derive(Debug, Clone, Copy)]
pub enum SyncPrecondition<'a> {
    /// Create: only if the document does not exist (`If-None-Match: *`).
    Create,
    /// Update: only if the document is still at this version (`If-Match`).
    Match(&'a str),
}

/// One change in the feed or the event stream.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct SyncChange {
    pub seq: i64,
    pub collection: String,
    pub key: String,
    pub etag: String,
    pub deleted: bool,
    pub value: serde_json::Value,
    pub updated_at: i64,
}

/// One page of a collection's changes.
#[derive(Debug, Clone, Deserialize)]
pub struct SyncChanges {
    pub changes: Vec<SyncChange>,
    /// The cursor to ask from next.
    pub next: i64,
    /// Another page follows at once.
    pub more: bool,
}

/// How a conditional write ended.
#[derive(Debug, Clone, PartialEq)]
pub enum SyncWrite {
    /// Stored; the new version.
    Written { etag: String },
    /// 412: someone else wrote first. `current` is their version (`None`
    /// when the document no longer exists): merge, then write again with
    /// `SyncPrecondition::Match(&current.etag)`.
    Conflict { current: Option<SyncChange> },
}

impl Device {
    fn sync_url(&self, path: &str) -> String {
        format!("{}/api/v1/sync/{path}", self.endpoints.issuer)
    }

    /// Reads a document; `None` when there is none.
    pub async fn sync_get(
        &self,
        access_token: &str,
        collection: &str,
        key: &str,
    ) -> Result<Option<SyncDocument>, Error> {
        let response = self
            .http
            .get(self.sync_url(&format!("{collection}/{key}")))
            .bearer_auth(access_token)
            .send()
            .await?;
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(server_error(response).await);
        }
        let etag = etag_of(&response)?;
        let value = response
            .json()
            .await
            .map_err(|e| Error::Protocol(format!("sync document: {e}")))?;
        Ok(Some(SyncDocument { etag, value }))
    }

    /// Creates or updates a document, only if `precondition` holds.
    pub async fn sync_put(
        &self,
        access_token: &str,
        collection: &str,
        key: &str,
        value: &serde_json::Value,
        precondition: SyncPrecondition<'_>,
    ) -> Result<SyncWrite, Error> {
        let request = self
            .http
            .put(self.sync_url(&format!("{collection}/{key}")))
            .bearer_auth(access_token)
            .json(value);
        let request = match precondition {
            SyncPrecondition::Create => request.header("if-none-match", "*"),
            SyncPrecondition::Match(etag) => request.header("if-match", etag),
        };
        sync_write_outcome(request.send().await?).await
    }

    /// Deletes a document, only if it is still at version `etag`.
    pub async fn sync_delete(
        &self,
        access_token: &str,
        collection: &str,
        key: &str,
        etag: &str,
    ) -> Result<SyncWrite, Error> {
        let response = self
            .http
            .delete(self.sync_url(&format!("{collection}/{key}")))
            .bearer_auth(access_token)
            .header("if-match", etag)
            .send()
            .await?;
        sync_write_outcome(response).await
    }

    /// The collection's changes after `since` (0: from the beginning).
    pub async fn sync_changes(
        &self,
        access_token: &str,
        collection: &str,
        since: i64,
    ) -> Result<SyncChanges, Error> {
        let response = self
            .http
            .get(self.sync_url(&format!("{collection}?since={since}")))
            .bearer_auth(access_token)
            .send()
            .await?;
        if !response.status().is_success() {
            return Err(server_error(response).await);
        }
        response
            .json()
            .await
            .map_err(|e| Error::Protocol(format!("sync changes: {e}")))
    }

    /// Follows every change this device may see, as they happen. Pass the
    /// `seq` of the last change handled to resume after it (sent as
    /// `Last-Event-ID`); `None` starts from now.
    pub async fn sync_watch(
        &self,
        access_token: &str,
        after: Option<i64>,
    ) -> Result<SyncWatch, Error> {
        // No overall timeout for a stream that stays open; the server sends
        // a keep-alive every 15 s, so silence for longer means it is gone.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(20))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("linkd-device/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let mut request = http
            .get(self.sync_url("events"))
            .bearer_auth(access_token)
            .header("accept", "text/event-stream");
        if let Some(seq) = after {
            request = request.header("last-event-id", seq.to_string());
        }
        let response = request.send().await?;
        if !response.status().is_success() {
            return Err(server_error(response).await);
        }
        Ok(SyncWatch {
            response,
            parser: SseParser::default(),
        })
    }
}

fn etag_of(response: &reqwest::Response) -> Result<String, Error> {
    response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .ok_or_else(|| Error::Protocol("sync answer without an ETag".into()))
}

async fn sync_write_outcome(response: reqwest::Response) -> Result<SyncWrite, Error> {
    if response.status() == reqwest::StatusCode::PRECONDITION_FAILED {
        #[derive(Deserialize)]
        struct Conflict {
            current: Option<SyncChange>,
        }
        let body: Conflict = response
            .json()
            .await
            .map_err(|e| Error::Protocol(format!("sync conflict: {e}")))?;
        return Ok(SyncWrite::Conflict {
            current: body.current,
        });
    }
    if !response.status().is_success() {
        return Err(server_error(response).await);
    }
    Ok(SyncWrite::Written {
        etag: etag_of(&response)?,
    })
}

/// An open sync event stream.
pub struct SyncWatch {
    response: reqwest::Response,
    parser: SseParser,
}

impl SyncWatch {
    /// The next change; `None` when the server ended the stream (the token
    /// expired or the device was unlinked): reconnect from the last `seq`.
    pub async fn next(&mut self) -> Result<Option<SyncChange>, Error> {
        loop {
            while let Some(event) = self.parser.next_event() {
                if event.name == "change" {
                    let change = serde_json::from_str(&event.data)
                        .map_err(|e| Error::Protocol(format!("sync event: {e}")))?;
                    return Ok(Some(change));
                }
            }
            match self.response.chunk().await? {
                Some(bytes) => self.parser.feed(&bytes),
                None => return Ok(None),
            }
        }
    }
}

/// One server-sent event.
#[derive(Debug, Default, PartialEq)]
struct SseEvent {
    name: String,
    data: String,
}

/// The server-sent events format (HTML Living Standard §9.2.6): lines
/// ending in LF, CRLF or CR; `field: value`; a blank line ends an event;
/// lines starting with `:` are comments.
#[derive(Default)]
struct SseParser {
    pending: Vec<u8>,
    event: SseEvent,
    has_data: bool,
    ready: std::collections::VecDeque<SseEvent>,
}

impl SseParser {
    fn feed(&mut self, bytes: &[u8]) {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n' || *b == b'\r') {
            // A CR at the very end may be the first half of a CRLF.
            if self.pending[end] == b'\r' && end + 1 == self.pending.len() {
                break;
            }
            let line: Vec<u8> = self.pending.drain(..end).collect();
            let skip = if self.pending.starts_with(b"\r\n") {
                2
            } else {
                1
            };
            self.pending.drain(..skip);
            self.line(&String::from_utf8_lossy(&line));
        }
    }

    fn line(&mut self, line: &str) {
        if line.is_empty() {
            let event = std::mem::take(&mut self.event);
            if std::mem::take(&mut self.has_data) {
                self.ready.push_back(SseEvent {
                    name: if event.name.is_empty() {
                        "message".into()
                    } else {
                        event.name
                    },
                    data: event.data,
                });
            }
            return;
        }
        if line.starts_with(':') {
            return;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => self.event.name = value.to_string(),
            "data" => {
                if self.has_data {
                    self.event.data.push('\n');
                }
                self.event.data.push_str(value);
                self.has_data = true;
            }
            _ => {}
        }
    }

    fn next_event(&mut self) -> Option<SseEvent> {
        self.ready.pop_front()
    }
}

/// Tokens as a device keeps them between runs.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
pub struct SavedTokens {
    pub server: String,
    pub client_id: String,
    pub access_token: String,
    /// Seconds since the Unix epoch after which the access token is stale.
    pub expires_at: u64,
    pub refresh_token: Option<String>,
    pub id_token: Option<String>,
    pub scope: Option<String>,
}

impl SavedTokens {
    pub fn new(server: &str, client_id: &str, tokens: &Tokens, now: u64) -> Self {
        SavedTokens {
            server: server.to_string(),
            client_id: client_id.to_string(),
            access_token: tokens.access_token.clone(),
            expires_at: now + tokens.expires_in.unwrap_or(0),
            refresh_token: tokens.refresh_token.clone(),
            id_token: tokens.id_token.clone(),
            scope: tokens.scope.clone(),
        }
    }

    /// Takes newer tokens, keeping the refresh token and ID token when the
    /// server did not send new ones.
    pub fn update(&mut self, tokens: &Tokens, now: u64) {
        self.access_token = tokens.access_token.clone();
        self.expires_at = now + tokens.expires_in.unwrap_or(0);
        if tokens.refresh_token.is_some() {
            self.refresh_token = tokens.refresh_token.clone();
        }
        if tokens.id_token.is_some() {
            self.id_token = tokens.id_token.clone();
        }
        if tokens.scope.is_some() {
            self.scope = tokens.scope.clone();
        }
    }

    /// Stale a minute before the server would say so, to allow for clock
    /// skew and the time a request takes.
    pub fn is_stale(&self, now: u64) -> bool {
        now + 60 >= self.expires_at
    }

    pub fn load(path: &std::path::Path) -> std::io::Result<Option<Self>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes the file readable by its owner only (0600 on Unix), replacing
    /// it in one rename so a crash never leaves half a file.
    pub fn save(&self, path: &std::path::Path) -> std::io::Result<()> {
        use std::io::Write;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = path.with_extension("tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}

/// How a linkd server presents itself (`/api/v1/brand`), so a device can
/// say "link this device to your Acme account" in the operator's words.
#[derive(Debug, Clone, Deserialize)]
pub struct Brand {
    pub product_name: String,
    #[serde(default)]
    pub support_url: Option<String>,
}

impl Device {
    /// linkd's brand endpoint. Other RFC 8628 servers have none: callers
    /// fall back to a name of their own.
    pub async fn brand(&self) -> Result<Brand, Error> {
        let url = format!("{}/api/v1/brand", self.endpoints.issuer);
        let response = self.http.get(url).send().await?;
        if !response.status().is_success() {
            return Err(Error::Protocol(format!(
                "no brand (HTTP {})",
                response.status().as_u16()
            )));
        }
        response
            .json()
            .await
            .map_err(|e| Error::Protocol(format!("brand: {e}")))
    }
}

/// RFC 6749 §2.3.1: client id and secret are form-encoded inside Basic.
fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'*') {
            out.push(b as char);
        } else if b == b' ' {
            out.push('+');
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn server_error(response: reqwest::Response) -> Error {
    let status = response.status().as_u16();
    match response.json::<ErrorBody>().await {
        Ok(body) => Error::Server {
            status,
            error: body.error,
            description: body.error_description,
        },
        Err(_) => Error::Protocol(format!("HTTP {status} without an OAuth error body")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_encoded() {
        assert_eq!(form_encode("a b:c/é"), "a+b%3Ac%2F%C3%A9");
        assert_eq!(form_encode("demo-tv"), "demo-tv");
    }

    #[test]
    fn saved_tokens_are_private_and_round_trip() {
        let dir = std::env::temp_dir().join(format!("linkd-device-test-{}", std::process::id()));
        let path = dir.join("tokens.json");
        let tokens = Tokens {
            access_token: "a".into(),
            token_type: "Bearer".into(),
            expires_in: Some(3600),
            scope: None,
            refresh_token: Some("r".into()),
            id_token: None,
        };
        let mut saved = SavedTokens::new("http://s", "c", &tokens, 1000);
        assert!(!saved.is_stale(1000));
        assert!(saved.is_stale(1000 + 3600 - 59));
        saved.save(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let back = SavedTokens::load(&path).unwrap().unwrap();
        assert_eq!(back.refresh_token.as_deref(), Some("r"));
        saved.update(
            &Tokens {
                refresh_token: None,
                ..tokens
            },
            2000,
        );
        assert_eq!(
            saved.refresh_token.as_deref(),
            Some("r"),
            "kept when not rotated"
        );
        assert_eq!(
            SavedTokens::load(&dir.join("missing.json"))
                .unwrap()
                .map(|_| ()),
            None
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn server_sent_events_parse_across_chunks_and_line_endings() {
        let mut p = SseParser::default();
        p.feed(b": keep-alive\n\nid: 3\r\nevent: change\r");
        assert_eq!(p.next_event(), None);
        p.feed(b"\ndata: {\"a\":\r\ndata: 1}\r\n\r\ndata:x\n\n");
        assert_eq!(
            p.next_event(),
            Some(SseEvent {
                name: "change".into(),
                data: "{\"a\":\n1}".into()
            })
        );
        assert_eq!(
            p.next_event(),
            Some(SseEvent {
                name: "message".into(),
                data: "x".into()
            })
        );
        assert_eq!(p.next_event(), None);
    }

    #[test]
    fn id_token_claims_are_readable() {
        let payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"abc","email":"a@b.example"}"#);
        let tokens = Tokens {
            access_token: String::new(),
            token_type: "Bearer".into(),
            expires_in: None,
            scope: None,
            refresh_token: None,
            id_token: Some(format!("h.{payload}.s")),
        };
        assert_eq!(tokens.id_token_claims().unwrap()["email"], "a@b.example");
    }
}

//! `spawn_app()`: the real server on a random port with its own database,
//! plus a device and a browser that talk to it over HTTP.
//!
//! The backend comes from `LINKD_TEST_BACKEND`: `sqlite` (the default, a
//! file per test) or `postgres` (a database per test, created on the
//! server `LINKD_TEST_POSTGRES_URL` names and dropped afterwards).

use std::sync::Arc;

use linkd::Config;
use linkd::clock::{Clock, ManualClock, SystemClock};
use linkd::state::{self, AppState};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::{Connection, Executor, Row};

pub const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// The `--metrics-token` test servers get; scrapes send it as Bearer.
pub const METRICS_TOKEN: &str = "test-metrics-token-0123456789";

pub struct TestApp {
    pub base: String,
    pub clock: Arc<ManualClock>,
    pub state: AppState,
    pub http: reqwest::Client,
    /// The database; shared with other apps started on it.
    pub db: Arc<TestDatabase>,
    /// The certificate and address a client needs to reach the server when
    /// it terminates TLS itself (see [`spawn_https_app`]).
    tls: Option<(reqwest::Certificate, std::net::SocketAddr)>,
    /// Shuts the server down (see [`TestApp::stop`]).
    stopper: Arc<tokio::sync::Notify>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

pub struct Options {
    /// Use the wall clock instead of the manual one (for clients that sleep
    /// for real between polls).
    pub real_clock: bool,
    pub configure: Box<dyn FnOnce(&mut Config)>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            real_clock: false,
            configure: Box::new(|_| {}),
        }
    }
}

/// Options that change only the configuration.
pub fn with(configure: impl FnOnce(&mut Config) + 'static) -> Options {
    Options {
        configure: Box::new(configure),
        ..Default::default()
    }
}

/// Behind a trusted proxy on 127.0.0.1, so tests can speak for any address.
pub fn behind_proxy(c: &mut Config) {
    c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
}

/// `n` well-formed codes, all different, that no test issues (a random
/// code starting `ZZZZZ` is a one in 3.2 million chance per code).
pub fn wrong_codes(n: usize) -> Vec<String> {
    const ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
    (0..n)
        .map(|i| {
            let tail: String = [i / 400, (i / 20) % 20, i % 20]
                .iter()
                .map(|&d| ALPHABET[d] as char)
                .collect();
            format!("ZZZZZ{tail}")
        })
        .collect()
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(Options::default()).await
}

pub async fn spawn_app_with(options: Options) -> TestApp {
    spawn_on(TestDatabase::new().await, options).await
}

/// Starts a server on an existing database (for restart, CLI and
/// several-instance tests).
pub async fn spawn_on(db: Arc<TestDatabase>, options: Options) -> TestApp {
    serve_test_app(db, options, None).await
}

/// A server that terminates TLS itself at `https://localhost:PORT`, for
/// clients that refuse an issuer without https. Its self-signed
/// certificate is `cert.pem` in the returned directory; `app.http` trusts
/// it.
pub async fn spawn_https_app(options: Options) -> (TestApp, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, cert_path, key_path) = self_signed_cert(dir.path());
    let app = serve_test_app(
        TestDatabase::new().await,
        options,
        Some((cert, cert_path, key_path)),
    )
    .await;
    (app, dir)
}

async fn serve_test_app(
    db: Arc<TestDatabase>,
    options: Options,
    tls: Option<(rcgen::Certificate, std::path::PathBuf, std::path::PathBuf)>,
) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let base = match tls {
        Some(_) => format!("https://localhost:{}", addr.port()),
        None => format!("http://{addr}"),
    };
    let mut config = Config::defaults();
    config.listen = addr;
    config.public_url = Some(base.clone());
    config.database_url = db.url().to_string();
    if let Some((_, cert_path, key_path)) = &tls {
        config.tls_cert = Some(cert_path.clone());
        config.tls_key = Some(key_path.clone());
    }
    config.metrics_token = Some(METRICS_TOKEN.into());
    // The suites run side by side on a busy machine: a burst's Argon2
    // hashes may queue for longer than the production default before a
    // slot comes free, and a count test must not see that as a refusal.
    // Tests of the wait itself set it back.
    config.password_hash_wait_ms = 30_000;
    (options.configure)(&mut config);
    let manual = Arc::new(ManualClock::starting_now());
    let clock: Arc<dyn Clock> = if options.real_clock {
        Arc::new(SystemClock)
    } else {
        manual.clone()
    };
    // The metrics recorder is process-wide; install it before any server
    // counts anything.
    linkd::telemetry::handle();
    let state = state::prepare(config, clock).await.expect("prepare app");
    let stopper = Arc::new(tokio::sync::Notify::new());
    let stop = stopper.clone();
    let shutdown = async move { stop.notified().await };
    let (server, tls) = match tls {
        None => (
            tokio::spawn(linkd::serve::serve(listener, state.clone(), shutdown)),
            None,
        ),
        Some((cert, cert_path, key_path)) => {
            let acceptor = linkd::serve::tls_config(&cert_path, &key_path).expect("TLS config");
            let listener = listener.into_std().expect("std listener");
            let root = reqwest::Certificate::from_pem(cert.pem().as_bytes()).expect("certificate");
            (
                tokio::spawn(linkd::serve::serve_tls(
                    listener,
                    state.clone(),
                    acceptor,
                    shutdown,
                )),
                Some((root, addr)),
            )
        }
    };
    let http = trusting(
        reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()),
        &tls,
    );
    TestApp {
        base,
        clock: manual,
        state,
        http: http.build().expect("client"),
        tls,
        db,
        stopper,
        server,
    }
}

/// `builder`, trusting the server's own certificate when it has one.
fn trusting(
    builder: reqwest::ClientBuilder,
    tls: &Option<(reqwest::Certificate, std::net::SocketAddr)>,
) -> reqwest::ClientBuilder {
    match tls {
        Some((root, addr)) => builder
            .add_root_certificate(root.clone())
            .resolve("localhost", *addr),
        None => builder,
    }
}

/// A server whose public URL names a domain: WebAuthn's RP id must be one
/// (an IP address never is), and `localhost` reaches this machine.
pub async fn spawn_on_localhost() -> TestApp {
    spawn_on_localhost_with(|_| {}).await
}

/// [`spawn_on_localhost`] with `configure` applied to its configuration.
pub async fn spawn_on_localhost_with(configure: impl FnOnce(&mut Config) + 'static) -> TestApp {
    let mut app = spawn_app_with(Options {
        configure: Box::new(move |c| {
            c.public_url = c
                .public_url
                .take()
                .map(|u| u.replace("127.0.0.1", "localhost"));
            configure(c);
        }),
        ..Options::default()
    })
    .await;
    app.base = app.base.replace("127.0.0.1", "localhost");
    app
}

/// The store backend the suite runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

pub fn backend() -> Backend {
    match std::env::var("LINKD_TEST_BACKEND").as_deref() {
        Ok("postgres") => Backend::Postgres,
        Ok("sqlite") | Ok("") | Err(_) => Backend::Sqlite,
        Ok(other) => panic!("LINKD_TEST_BACKEND={other:?}: expected sqlite or postgres"),
    }
}

/// The PostgreSQL server's maintenance database, where test databases are
/// created and dropped.
pub fn postgres_admin_url() -> String {
    std::env::var("LINKD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// Test databases are named `linkd_test_<created, Unix seconds>_<random>`,
/// so a sweep can tell the ones that crashed runs left behind.
const TEST_DB_PREFIX: &str = "linkd_test_";
const STALE_AFTER_SECS: u64 = 3600;

/// One test's own empty database, removed when the last holder drops it.
pub enum TestDatabase {
    Sqlite {
        url: String,
        path: std::path::PathBuf,
        _dir: tempfile::TempDir,
    },
    Postgres {
        url: String,
        name: String,
    },
}

impl TestDatabase {
    /// A fresh database on the backend `LINKD_TEST_BACKEND` names.
    pub async fn new() -> Arc<Self> {
        match backend() {
            Backend::Sqlite => Self::sqlite(),
            Backend::Postgres => Self::postgres().await,
        }
    }

    pub fn sqlite() -> Arc<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("linkd.db");
        Self::sqlite_file(dir, path)
    }

    /// An SQLite file that may exist already (a restored backup), removed
    /// with `dir`.
    pub fn sqlite_file(dir: tempfile::TempDir, path: std::path::PathBuf) -> Arc<Self> {
        Arc::new(TestDatabase::Sqlite {
            url: format!("sqlite://{}", path.display()),
            path,
            _dir: dir,
        })
    }

    /// A fresh PostgreSQL database, whatever the suite's backend.
    pub async fn postgres() -> Arc<Self> {
        static SWEEP: std::sync::Once = std::sync::Once::new();
        SWEEP.call_once(|| on_admin_thread(sweep_stale_databases));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let name = format!("{TEST_DB_PREFIX}{now}_{:016x}", rand::random::<u64>());
        let admin = postgres_admin_url();
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("PostgreSQL at {admin} is needed: {e}"));
        conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
            .await
            .expect("create test database");
        let _ = conn.close().await;
        let (server, _) = admin.rsplit_once('/').expect("admin URL names a database");
        Arc::new(TestDatabase::Postgres {
            url: format!("{server}/{name}"),
            name,
        })
    }

    pub fn url(&self) -> &str {
        match self {
            TestDatabase::Sqlite { url, .. } | TestDatabase::Postgres { url, .. } => url,
        }
    }

    /// Runs one SQL statement straight on the database, around linkd (to
    /// set up rows an older linkd wrote, or break what a test needs
    /// broken). `$n` parameters are bound from `params` as text.
    pub async fn execute(&self, sql: &str, params: &[&str]) {
        match self {
            TestDatabase::Sqlite { url, .. } => {
                let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
                let mut query = sqlx::query(sql);
                for p in params {
                    query = query.bind(*p);
                }
                query.execute(&mut conn).await.unwrap();
                let _ = conn.close().await;
            }
            TestDatabase::Postgres { url, .. } => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                let mut query = sqlx::query(sql);
                for p in params {
                    query = query.bind(*p);
                }
                query.execute(&mut conn).await.unwrap();
                let _ = conn.close().await;
            }
        }
    }

    /// The one integer a query of the database answers (a count).
    pub async fn count(&self, sql: &str) -> i64 {
        match self {
            TestDatabase::Sqlite { url, .. } => {
                let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
                let n = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
                let _ = conn.close().await;
                n
            }
            TestDatabase::Postgres { url, .. } => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                let n = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
                let _ = conn.close().await;
                n
            }
        }
    }

    /// Whether `needle` appears anywhere in what the database holds: the
    /// SQLite file and its write-ahead log, or every PostgreSQL table's rows.
    pub async fn holds(&self, needle: &str) -> bool {
        match self {
            TestDatabase::Sqlite { path, .. } => {
                let raw = std::fs::read(path).unwrap();
                let wal = std::fs::read(path.with_extension("db-wal")).unwrap_or_default();
                [raw, wal]
                    .iter()
                    .any(|bytes| bytes.windows(needle.len()).any(|w| w == needle.as_bytes()))
            }
            TestDatabase::Postgres { url, .. } => {
                let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
                let tables: Vec<String> = sqlx::query(
                    "SELECT tablename::text FROM pg_tables WHERE schemaname = 'public'",
                )
                .fetch_all(&mut conn)
                .await
                .unwrap()
                .iter()
                .map(|r| r.get(0))
                .collect();
                assert!(!tables.is_empty(), "no tables in {url}");
                for table in tables {
                    let found: bool = sqlx::query_scalar(&format!(
                        "SELECT EXISTS (SELECT 1 FROM \"{table}\" t WHERE strpos(t::text, $1) > 0)"
                    ))
                    .bind(needle)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap();
                    if found {
                        return true;
                    }
                }
                false
            }
        }
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let TestDatabase::Postgres { name, .. } = self {
            let name = name.clone();
            // FORCE: the servers still running on it are cut off.
            on_admin_thread(move |mut conn| async move {
                let _ = conn
                    .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                    .await;
            });
        }
    }
}

/// Runs `work` on the maintenance database from a thread with its own
/// runtime, and waits: `Drop` cannot await, and a test's runtime may have
/// a single thread.
fn on_admin_thread<F, Fut>(work: F)
where
    F: FnOnce(sqlx::PgConnection) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            if let Ok(conn) = sqlx::PgConnection::connect(&postgres_admin_url()).await {
                work(conn).await;
            }
        });
    })
    .join();
}

/// Drops test databases that crashed or killed runs left behind.
async fn sweep_stale_databases(mut conn: sqlx::PgConnection) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname::text FROM pg_database WHERE starts_with(datname, $1)")
            .bind(TEST_DB_PREFIX)
            .fetch_all(&mut conn)
            .await
            .unwrap_or_default();
    for name in names {
        let created = name
            .strip_prefix(TEST_DB_PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|secs| secs.parse::<u64>().ok());
        if created.is_some_and(|created| created + STALE_AFTER_SECS < now) {
            let _ = conn
                .execute(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str())
                .await;
        }
    }
}

/// A server in an operator's brand: "Acme Link", a logo file written to
/// `dir`, an accent and a support link.
pub fn acme_brand(dir: &std::path::Path, accent: &str) -> Options {
    let logo = dir.join("acme.svg");
    std::fs::write(&logo, ACME_LOGO).expect("write logo");
    let accent = accent.parse().expect("hex colour");
    Options {
        configure: Box::new(move |c| {
            c.product_name = "Acme Link".into();
            c.accent_color = accent;
            c.support_url = Some(ACME_SUPPORT.into());
            c.logo = Some(logo);
        }),
        ..Default::default()
    }
}

pub const ACME_SUPPORT: &str = "https://help.acme.example/link";
pub const ACME_LOGO: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 32 32\">\
     <circle cx=\"16\" cy=\"16\" r=\"16\" fill=\"#c26100\"/>\
     <path d=\"M9 22l7-13 7 13\" fill=\"none\" stroke=\"#fff\" stroke-width=\"3\"/></svg>";

/// A device authorization response, as the device sees it.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct DeviceAuth {
    pub device_code: String,
    pub user_code: String,
    pub verification_uri: String,
    #[serde(default)]
    pub verification_uri_complete: String,
    pub expires_in: i64,
    pub interval: i64,
}

/// An OAuth JSON response.
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub json: Value,
}

impl Reply {
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("<none>")
    }
}

impl TestApp {
    /// Shuts the server down as a stopping linkd does (its background
    /// jobs end with it) and waits until it has.
    pub async fn stop(self) {
        self.stopper.notify_one();
        let _ = self.server.await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post_form(&self, path: &str, params: &[(&str, &str)]) -> Reply {
        post_form(&self.http, &self.url(path), params).await
    }

    pub async fn device_authorization(&self, params: &[(&str, &str)]) -> Reply {
        self.post_form("/oauth/device_authorization", params).await
    }

    /// A demo-tv device asks for a code.
    pub async fn start_device(&self, scope: &str) -> DeviceAuth {
        let reply = self
            .device_authorization(&[("client_id", "demo-tv"), ("scope", scope)])
            .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
        serde_json::from_value(reply.json).expect("device authorization response")
    }

    /// A demo-tv device asks for a code (scope `openid`) through the
    /// trusted proxy (see [`behind_proxy`]) on behalf of `ip`.
    pub async fn start_device_from(&self, ip: &str) -> DeviceAuth {
        let response = self
            .http
            .post(self.url("/oauth/device_authorization"))
            .header("x-forwarded-for", ip)
            .form(&[("client_id", "demo-tv"), ("scope", "openid")])
            .send()
            .await
            .expect("device authorization");
        assert_eq!(response.status(), StatusCode::OK);
        response
            .json()
            .await
            .expect("device authorization response")
    }

    /// A demo-tv device that says who it is (a name and `user_agent`),
    /// asking through `http` (which may bind a source address).
    pub async fn start_named_device(&self, http: &reqwest::Client, user_agent: &str) -> DeviceAuth {
        let reply = http
            .post(self.url("/oauth/device_authorization"))
            .header("user-agent", user_agent)
            .form(&[
                ("client_id", "demo-tv"),
                ("scope", "openid"),
                ("device_name", "Living room TV"),
            ])
            .send()
            .await
            .expect("device authorization");
        assert_eq!(reply.status(), StatusCode::OK);
        reply.json().await.expect("device authorization response")
    }

    /// One poll of the token endpoint by the demo-tv device.
    pub async fn poll(&self, device_code: &str) -> Reply {
        poll(&self.http, &self.base, device_code).await
    }

    pub fn browser(&self) -> Browser {
        self.browser_with_headers(reqwest::header::HeaderMap::new())
    }

    /// A browser whose every request says which languages it reads.
    pub fn browser_in(&self, accept_language: &str) -> Browser {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::ACCEPT_LANGUAGE,
            accept_language.parse().expect("header value"),
        );
        self.browser_with_headers(headers)
    }

    fn browser_with_headers(&self, headers: reqwest::header::HeaderMap) -> Browser {
        Browser {
            base: self.base.clone(),
            client: trusting(reqwest::Client::builder(), &self.tls)
                .cookie_store(true)
                .default_headers(headers)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("browser"),
        }
    }

    /// A browser with a new account, signed in.
    pub async fn signed_in_browser(&self, email: &str) -> Browser {
        let browser = self.browser();
        let page = browser.sign_up(email, "correct horse battery", "/").await;
        assert_eq!(page.status, StatusCode::SEE_OTHER, "{}", page.body);
        browser
    }

    /// A person signs up and links a demo-tv device; returns their browser
    /// and the device's token response.
    pub async fn link_device(&self, email: &str, scope: &str) -> (Browser, Value) {
        let auth = self.start_device(scope).await;
        let browser = self.signed_in_browser(email).await;
        let done = browser.approve(&auth.user_code).await;
        assert!(done.contains("is now linked"), "{}", done.body);
        let tokens = self.poll(&auth.device_code).await;
        assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.json);
        (browser, tokens.json)
    }

    /// A refresh by the demo-tv device.
    pub async fn refresh(&self, refresh_token: &str, scope: Option<&str>) -> Reply {
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("client_id", "demo-tv"),
            ("refresh_token", refresh_token),
        ];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        self.post_form("/oauth/token", &form).await
    }

    /// Introspection by a confidential resource server, registered on first use.
    pub async fn introspect(&self, token: &str) -> Value {
        if self
            .state
            .store
            .get_client("resource-server")
            .await
            .unwrap()
            .is_none()
        {
            self.add_client("resource-server", "openid", Some("rs-secret"))
                .await;
        }
        let response = self
            .http
            .post(self.url("/oauth/introspect"))
            .basic_auth("resource-server", Some("rs-secret"))
            .form(&[("token", token)])
            .send()
            .await
            .expect("introspect");
        let reply = reply(response).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
        reply.json
    }

    /// A GET with a Bearer token.
    pub async fn get_bearer(&self, path: &str, token: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("GET")
    }

    /// A device with `token` creates the synced setting `path`
    /// ("prefs/language") holding the JSON `value`.
    pub async fn create_setting(&self, token: &str, path: &str, value: &str) {
        let put = self
            .http
            .put(self.url(&format!("/api/v1/sync/{path}")))
            .bearer_auth(token)
            .header("if-none-match", "*")
            .header("content-type", "application/json")
            .body(value.to_string())
            .send()
            .await
            .expect("PUT");
        assert_eq!(put.status(), StatusCode::CREATED, "{path}");
    }

    /// Registers a client directly in the store.
    pub async fn add_client(&self, id: &str, scopes: &str, secret: Option<&str>) {
        self.state
            .store
            .insert_client(&linkd::store::Client {
                client_id: id.into(),
                name: format!("App {id}"),
                secret_hash: secret.map(linkd::codes::secret_hash),
                scopes: scopes.into(),
                device_flow_enabled: true,
                redirect_uris: String::new(),
                code_flow_enabled: true,
                refresh_enabled: true,
                require_dpop: false,
                prefilled_links: true,
                same_network: None,
                created_at: self.clock.now(),
            })
            .await
            .expect("insert client");
    }
}

/// A form POST, answered in OAuth JSON.
pub async fn post_form(http: &reqwest::Client, url: &str, params: &[(&str, &str)]) -> Reply {
    let response = http.post(url).form(params).send().await.expect("request");
    reply(response).await
}

/// One poll by the demo-tv device of the token endpoint of the server at
/// `base`.
pub async fn poll(http: &reqwest::Client, base: &str, device_code: &str) -> Reply {
    post_form(
        http,
        &format!("{base}/oauth/token"),
        &[
            ("grant_type", DEVICE_GRANT),
            ("client_id", "demo-tv"),
            ("device_code", device_code),
        ],
    )
    .await
}

pub async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let text = response.text().await.expect("body");
    let json =
        serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON ({status}): {text}"));
    Reply {
        status,
        headers,
        json,
    }
}

/// A page as the browser got it.
pub struct Page {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Page {
    pub fn location(&self) -> &str {
        self.headers
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    /// The CSRF token of the page's forms.
    pub fn csrf(&self) -> String {
        hidden_field(&self.body, "csrf")
            .unwrap_or_else(|| panic!("no csrf field in page: {}", self.body))
    }

    /// Whether the page shows `text` (after HTML entities are decoded).
    pub fn contains(&self, text: &str) -> bool {
        html_unescape(&self.body).contains(text)
    }

    /// The text of the `<title>`.
    pub fn title(&self) -> String {
        let start = self.body.find("<title>").map_or(0, |i| i + "<title>".len());
        let end = self.body[start..]
            .find("</title>")
            .map_or(start, |i| start + i);
        html_unescape(&self.body[start..end])
    }

    /// The first `src` or `href` that starts with `prefix`: an asset's
    /// versioned URL.
    pub fn linked(&self, prefix: &str) -> Option<String> {
        let mut urls = self.attribute_values("src");
        urls.extend(self.attribute_values("href"));
        urls.into_iter().find(|u| u.starts_with(prefix))
    }

    /// Every value of `attribute="..."` in the page, in order.
    pub fn attribute_values(&self, attribute: &str) -> Vec<String> {
        let marker = format!(" {attribute}=\"");
        self.body
            .match_indices(&marker)
            .filter_map(|(at, _)| {
                let start = at + marker.len();
                let end = self.body[start..].find('"')? + start;
                Some(html_unescape(&self.body[start..end]))
            })
            .collect()
    }
}

/// The value of `<input type="hidden" name="NAME" value="...">`.
pub fn hidden_field(body: &str, name: &str) -> Option<String> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = body.find(&marker)? + marker.len();
    let end = body[start..].find('"')? + start;
    Some(html_unescape(&body[start..end]))
}

/// Decodes the entities the templates' autoescaping produces.
pub fn html_unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#x2f;", "/")
        .replace("&amp;", "&")
}

/// A person's browser: keeps cookies, does not follow redirects (tests
/// check where they point).
pub struct Browser {
    pub base: String,
    pub client: reqwest::Client,
}

impl Browser {
    pub async fn get(&self, path: &str) -> Page {
        let url = if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        };
        page(self.client.get(url).send().await.expect("GET")).await
    }

    /// The raw bytes of an asset (stylesheet, script, logo), with headers.
    pub async fn get_bytes(&self, path: &str) -> (StatusCode, reqwest::header::HeaderMap, Vec<u8>) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("GET");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body").to_vec();
        (status, headers, bytes)
    }

    /// A GET that claims to come through a proxy from `ip`.
    pub async fn get_from(&self, path: &str, ip: &str) -> Page {
        page(
            self.client
                .get(format!("{}{path}", self.base))
                .header("x-forwarded-for", ip)
                .send()
                .await
                .expect("GET"),
        )
        .await
    }

    pub async fn post(&self, path: &str, form: &[(&str, &str)]) -> Page {
        page(
            self.client
                .post(format!("{}{path}", self.base))
                .form(form)
                .send()
                .await
                .expect("POST"),
        )
        .await
    }

    pub async fn sign_up(&self, email: &str, password: &str, next: &str) -> Page {
        let form = self.get(&format!("/signup?next={}", urlencode(next))).await;
        let csrf = form.csrf();
        self.post(
            "/signup",
            &[
                ("csrf", &csrf),
                ("email", email),
                ("password", password),
                ("next", next),
            ],
        )
        .await
    }

    pub async fn sign_in(&self, email: &str, password: &str, next: &str) -> Page {
        let form = self.get(&format!("/signin?next={}", urlencode(next))).await;
        let csrf = form.csrf();
        self.post(
            "/signin",
            &[
                ("csrf", &csrf),
                ("email", email),
                ("password", password),
                ("next", next),
            ],
        )
        .await
    }

    /// The link page's address for a code typed into its form on this
    /// browser: with the form's `typed` token, so no number matching.
    pub async fn typed_path(&self, code: &str) -> String {
        let form = self.get("/link").await;
        let token = hidden_field(&form.body, "typed").expect("the link form's typed token");
        format!("/link?code={}&typed={}", urlencode(code), urlencode(&token))
    }

    /// Types `code` into the link page through a proxy from `ip`.
    pub async fn type_code_from(&self, code: &str, ip: &str) -> Page {
        let path = self.typed_path(code).await;
        self.get_from(&path, ip).await
    }

    /// Types `code` into the link page, as a person does.
    pub async fn type_code(&self, code: &str) -> Page {
        let path = self.typed_path(code).await;
        self.get(&path).await
    }

    /// Opens the confirmation page for a typed `code` and presses a button.
    pub async fn decide(&self, code: &str, decision: &str) -> Page {
        let confirm = self.type_code(code).await;
        assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.body);
        let csrf = confirm.csrf();
        self.post(
            "/link/decide",
            &[("csrf", &csrf), ("code", code), ("decision", decision)],
        )
        .await
    }

    pub async fn approve(&self, code: &str) -> Page {
        self.decide(code, "approve").await
    }

    pub async fn deny(&self, code: &str) -> Page {
        self.decide(code, "deny").await
    }
}

pub async fn page(response: reqwest::Response) -> Page {
    Page {
        status: response.status(),
        headers: response.headers().clone(),
        body: response.text().await.expect("page body"),
    }
}

pub fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Decodes a JWT's payload without verifying it.
pub fn jwt_claims(token: &str) -> Value {
    use base64::Engine;
    let payload = token.split('.').nth(1).expect("JWT payload");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("JSON claims")
}

/// A self-signed certificate for `localhost`, written as PEM files into
/// `dir`: (the certificate, its file, its key's file).
pub fn self_signed_cert(
    dir: &std::path::Path,
) -> (rcgen::Certificate, std::path::PathBuf, std::path::PathBuf) {
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_path = dir.join("cert.pem");
    let key_path = dir.join("key.pem");
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    (cert.cert, cert_path, key_path)
}

/// Starts linkd terminating TLS itself on `listener` with the certificate
/// and key `config` names.
pub async fn serve_tls(listener: std::net::TcpListener, config: Config) {
    let (cert, key) = (config.tls_cert.clone(), config.tls_key.clone());
    let tls = linkd::serve::tls_config(&cert.unwrap(), &key.unwrap()).unwrap();
    let state = state::prepare(config, Arc::new(SystemClock)).await.unwrap();
    tokio::spawn(linkd::serve::serve_tls(
        listener,
        state,
        tls,
        std::future::pending(),
    ));
}

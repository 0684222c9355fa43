//! One `Config` for the server, read from flags and `LINKD_*` environment
//! variables (flags win).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use crate::brand::HexColor;

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// A TOML file of settings (keys are the flag names, with - or _).
    /// Flags and LINKD_* variables take precedence over it.
    #[arg(long, env = "LINKD_CONFIG")]
    pub config: Option<std::path::PathBuf>,

    /// Address to listen on.
    #[arg(long, env = "LINKD_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// The address people and devices reach linkd at; the issuer of every
    /// token. Defaults to http://<listen>.
    #[arg(long, env = "LINKD_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Where the store lives: sqlite://FILE or postgres://...
    #[arg(long, env = "LINKD_DATABASE_URL", default_value = "sqlite://linkd.db")]
    pub database_url: String,

    /// How long a device code and its user code stay valid, in seconds.
    /// Devices are told the shorter of this and the maximum approval age.
    #[arg(long, env = "LINKD_CODE_LIFETIME", default_value_t = 600,
          value_parser = clap::value_parser!(u32).range(30..=86_400))]
    pub code_lifetime: u32,

    /// The polling interval devices are told to keep, in seconds. 0 lets
    /// devices poll without pause: for load tests, never for production.
    #[arg(long, env = "LINKD_POLL_INTERVAL", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(0..=300))]
    pub poll_interval: u32,

    /// Lifetime of access tokens and ID tokens, in seconds.
    #[arg(long, env = "LINKD_ACCESS_TOKEN_LIFETIME", default_value_t = 3600,
          value_parser = clap::value_parser!(u32).range(30..=86_400))]
    pub access_token_lifetime: u32,

    /// How long a refresh token stays valid when unused, in seconds (30 days).
    #[arg(long, env = "LINKD_REFRESH_IDLE_LIFETIME", default_value_t = 30 * 86_400,
          value_parser = clap::value_parser!(u32).range(60..))]
    pub refresh_idle_lifetime: u32,

    /// How long a linked device may keep refreshing without the person
    /// approving again, in seconds (365 days).
    #[arg(long, env = "LINKD_REFRESH_ABSOLUTE_LIFETIME", default_value_t = 365 * 86_400,
          value_parser = clap::value_parser!(u32).range(60..))]
    pub refresh_absolute_lifetime: u32,

    /// How long a sign-in lasts in the browser, in seconds (14 days).
    #[arg(long, env = "LINKD_SESSION_LIFETIME", default_value_t = 14 * 86_400,
          value_parser = clap::value_parser!(u32).range(60..))]
    pub session_lifetime: u32,

    /// Longest a person may take from a code's request to approving it, in
    /// seconds. A code is approved minutes after it appears on a screen in
    /// front of the person; an old code is more likely a phishing lure.
    #[arg(long, env = "LINKD_MAX_APPROVAL_AGE", default_value_t = 300,
          value_parser = clap::value_parser!(u32).range(30..=86_400))]
    pub max_approval_age: u32,

    /// Wrong codes one signed-in session may enter per 10 minutes (0: no limit).
    #[arg(long, env = "LINKD_CODE_FAILURES_PER_SESSION", default_value_t = 5)]
    pub code_failures_per_session: u32,

    /// Wrong codes one network (IPv4 address, IPv6 /64) may enter per 10 minutes.
    #[arg(long, env = "LINKD_CODE_FAILURES_PER_NETWORK", default_value_t = 20)]
    pub code_failures_per_network: u32,

    /// Wrong codes the whole server answers per minute; past it only codes
    /// requested from the browser's own network are shown. Keeps guessing
    /// any live code below 2^-20 (SECURITY.md).
    #[arg(long, env = "LINKD_CODE_FAILURES_PER_MINUTE", default_value_t = 2000)]
    pub code_failures_per_minute: u32,

    /// Device authorization requests per network per minute.
    #[arg(
        long,
        env = "LINKD_DEVICE_AUTHORIZATIONS_PER_NETWORK",
        default_value_t = 60
    )]
    pub device_authorizations_per_network: u32,

    /// Device authorization requests per app per minute.
    #[arg(
        long,
        env = "LINKD_DEVICE_AUTHORIZATIONS_PER_CLIENT",
        default_value_t = 20_000
    )]
    pub device_authorizations_per_client: u32,

    /// Token requests per network per minute (devices behind one NAT share it).
    #[arg(long, env = "LINKD_TOKEN_POLLS_PER_NETWORK", default_value_t = 1200)]
    pub token_polls_per_network: u32,

    /// Failed sign-ins per account from one network before each further try
    /// from there must wait (1 s, 2 s, 4 s ... up to 15 minutes); a network
    /// gets four times as many over all accounts.
    #[arg(long, env = "LINKD_SIGN_IN_FREE_FAILURES", default_value_t = 3)]
    pub sign_in_free_failures: u32,

    /// Networks (IPv4 address, IPv6 /64) that may be failing to sign in to
    /// one account at once; others wait, except networks the account
    /// signed in from in the last 30 days (0: no cap).
    #[arg(long, env = "LINKD_SIGN_IN_FAILING_NETWORKS", default_value_t = 5)]
    pub sign_in_failing_networks: u32,

    /// Password hashes (Argon2id, 19 MiB each) run at once, server-wide;
    /// further sign-ins and sign-ups wait up to `password_hash_wait_ms`,
    /// then get 429.
    #[arg(long, env = "LINKD_PASSWORD_HASHES_AT_ONCE", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=256))]
    pub password_hashes_at_once: u32,

    /// Milliseconds a sign-in or sign-up waits for a free hashing slot
    /// before it is turned away with 429.
    #[arg(long, env = "LINKD_PASSWORD_HASH_WAIT_MS", default_value_t = 2000,
          value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub password_hash_wait_ms: u64,

    /// Accounts one network may create per hour.
    #[arg(long, env = "LINKD_SIGN_UPS_PER_NETWORK", default_value_t = 10)]
    pub sign_ups_per_network: u32,

    /// Password-reset mails asked for one address per hour (0: no limit).
    #[arg(long, env = "LINKD_PASSWORD_RESETS_PER_EMAIL", default_value_t = 3)]
    pub password_resets_per_email: u32,

    /// Verification mails ("send again", a change of address) one account
    /// may ask for per hour (0: no limit).
    #[arg(
        long,
        env = "LINKD_VERIFICATION_MAILS_PER_ACCOUNT",
        default_value_t = 3
    )]
    pub verification_mails_per_account: u32,

    /// Passkey ceremonies (sign-in or registration options) one network
    /// may start per minute (0: no limit). Each is a stored challenge until
    /// it is answered or expires, so this bounds what a flood can store.
    #[arg(
        long,
        env = "LINKD_PASSKEY_CEREMONIES_PER_NETWORK",
        default_value_t = 30
    )]
    pub passkey_ceremonies_per_network: u32,

    /// Distinct accounts whose "I didn't start this" reports within an
    /// hour name one requesting network (IPv4 /24, IPv6 /56) before it is
    /// blocked for an hour: its pending codes denied, new ones refused
    /// (0: reports never block).
    #[arg(long, env = "LINKD_NETWORK_BLOCK_REPORTS", default_value_t = 3)]
    pub network_block_reports: u32,

    /// Password-reset requests from one network per hour (0: no limit).
    #[arg(long, env = "LINKD_PASSWORD_RESETS_PER_NETWORK", default_value_t = 10)]
    pub password_resets_per_network: u32,

    /// Largest settings document a device may store, in bytes (64 KiB).
    #[arg(long, env = "LINKD_SYNC_MAX_DOCUMENT_BYTES", default_value_t = 64 * 1024,
          value_parser = clap::value_parser!(u32).range(16..=16 * 1024 * 1024))]
    pub sync_max_document_bytes: u32,

    /// Settings documents one account may hold, over all its apps.
    #[arg(long, env = "LINKD_SYNC_MAX_DOCUMENTS", default_value_t = 1000,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub sync_max_documents: u32,

    /// Seconds a deleted settings document's tombstone is kept for devices
    /// catching up (30 days); a device whose cursor is older must resync.
    #[arg(long, env = "LINKD_SYNC_TOMBSTONE_RETENTION", default_value_t = 30 * 86_400,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub sync_tombstone_retention: u32,

    /// Settings writes and deletes one linked device may make per minute
    /// (0: no limit).
    #[arg(long, env = "LINKD_SYNC_WRITES_PER_DEVICE", default_value_t = 120)]
    pub sync_writes_per_device: u32,

    /// Reverse proxies whose client-address header is believed (addresses or
    /// CIDR ranges, comma-separated). Requests from anywhere else are taken
    /// at their connection's address.
    #[arg(long, env = "LINKD_TRUSTED_PROXIES", value_delimiter = ',',
          value_parser = parse_trusted_proxy)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// The header trusted proxies put the client's address in.
    #[arg(
        long,
        env = "LINKD_CLIENT_IP_HEADER",
        default_value = "x-forwarded-for"
    )]
    pub client_ip_header: String,

    /// Serve HTTPS with this certificate chain (PEM). Needs --tls-key.
    #[arg(long, env = "LINKD_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<std::path::PathBuf>,

    /// The private key (PEM) for --tls-cert.
    #[arg(long, env = "LINKD_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<std::path::PathBuf>,

    /// Serve /metrics on this address only (for example an internal one),
    /// instead of on the main listener.
    #[arg(long, env = "LINKD_METRICS_LISTEN")]
    pub metrics_listen: Option<SocketAddr>,

    /// Serve /metrics on the main listener to requests that carry this
    /// token as `Authorization: Bearer` (at least 16 characters). Without
    /// it or --metrics-listen, /metrics is not served.
    #[arg(long, env = "LINKD_METRICS_TOKEN", hide_env_values = true)]
    pub metrics_token: Option<String>,

    /// Log lines as readable text or as JSON objects, one per line.
    #[arg(long, env = "LINKD_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub log_format: String,

    /// Seconds requests in flight may take to finish after SIGTERM or
    /// SIGINT before linkd exits anyway.
    #[arg(long, env = "LINKD_SHUTDOWN_TIMEOUT", default_value_t = 20)]
    pub shutdown_timeout: u32,

    /// Seconds a client has to send a complete request head, from the
    /// connection's opening or from the first byte of a later request.
    #[arg(long, env = "LINKD_HEADER_READ_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub header_read_timeout: u32,

    /// Seconds a kept-alive connection may wait for its next request.
    #[arg(long, env = "LINKD_IDLE_TIMEOUT", default_value_t = 60,
          value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub idle_timeout: u32,

    /// Seconds a client has to finish the TLS handshake (with --tls-cert).
    #[arg(long, env = "LINKD_TLS_HANDSHAKE_TIMEOUT", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=3600))]
    pub tls_handshake_timeout: u32,

    /// Open connections the server holds at once (0: no cap). Keep it
    /// below the process's file limit (`ulimit -n`).
    #[arg(long, env = "LINKD_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub max_connections: u32,

    /// Open connections one network (IPv4 address, IPv6 /64) may hold
    /// (0: no cap). Trusted proxies are exempt.
    #[arg(long, env = "LINKD_MAX_CONNECTIONS_PER_NETWORK", default_value_t = 500)]
    pub max_connections_per_network: u32,

    /// Settings event streams one linked device may hold open (0: no cap).
    #[arg(long, env = "LINKD_MAX_STREAMS_PER_DEVICE", default_value_t = 4)]
    pub max_streams_per_device: u32,

    /// Settings event streams one account's devices may hold open
    /// together (0: no cap).
    #[arg(long, env = "LINKD_MAX_STREAMS_PER_ACCOUNT", default_value_t = 64)]
    pub max_streams_per_account: u32,

    /// More names for the link page, besides `link` and its common typos
    /// (comma-separated path segments, e.g. `tv,activate`): `/tv` and
    /// `/tv/BCDF-GHJK` then lead to `/link` as `/link/...` does.
    #[arg(long, env = "LINKD_LINK_ALIASES", value_delimiter = ',',
          value_parser = crate::web::short_link::parse_alias)]
    pub link_aliases: Vec<String>,

    /// Do not register the `demo-tv` app on an empty database.
    #[arg(long, env = "LINKD_NO_DEMO")]
    pub no_demo: bool,

    /// Only accounts whose address was confirmed (a mailed link opened)
    /// may approve devices and apps. Needs --smtp-url.
    #[arg(long, env = "LINKD_REQUIRE_VERIFIED_EMAIL")]
    pub require_verified_email: bool,

    /// Do not mail people "a new device was linked" after each approval
    /// (with mail set up, they get one by default).
    #[arg(long, env = "LINKD_NO_LINK_NOTICE")]
    pub no_link_notice: bool,

    /// The product name people see on every page and on their devices.
    #[arg(long, env = "LINKD_PRODUCT_NAME", default_value = "linkd")]
    pub product_name: String,

    /// A logo file shown next to the product name and used as the page
    /// icon: SVG, PNG, JPEG, GIF or WebP, at most 16 KB. linkd serves it
    /// itself. Default: a mark in the accent colour.
    #[arg(long, env = "LINKD_LOGO")]
    pub logo: Option<PathBuf>,

    /// The colour of buttons and links, as #rrggbb. A colour too light to
    /// read on white is darkened until it is (WCAG AA), with a warning.
    #[arg(long, env = "LINKD_ACCENT_COLOR", default_value = DEFAULT_ACCENT)]
    pub accent_color: HexColor,

    /// Where people get help (https:// or mailto:), linked from every page.
    #[arg(long, env = "LINKD_SUPPORT_URL")]
    pub support_url: Option<String>,

    /// The SMTP server mail goes through: `smtp://host:25` (no TLS),
    /// `smtp://host:587?tls=required` (STARTTLS), `smtps://host:465`
    /// (TLS from the start), with `user:password@` before the host for
    /// servers that ask for a login. Without it linkd sends no mail: pages
    /// say so, and `linkd user reset-link` hands out reset links.
    #[arg(long, env = "LINKD_SMTP_URL", hide_env_values = true)]
    pub smtp_url: Option<String>,

    /// The sender of linkd's mail, `Name <address>` or a bare address.
    /// Needed with --smtp-url.
    #[arg(long, env = "LINKD_MAIL_FROM")]
    pub mail_from: Option<String>,

    /// Webhook endpoints: the config file's `[[webhooks]]` tables (url,
    /// secret, events), read by [`Config::read_file_tables`]; a list of
    /// tables has no flag.
    #[arg(skip)]
    pub webhooks: Vec<crate::webhooks::WebhookEndpoint>,

    /// Turn local passwords off: people sign in only through the OpenID
    /// providers of the configuration file (`[[provider]]`), and the
    /// password forms are gone. Needs at least one provider.
    #[arg(long, env = "LINKD_NO_LOCAL_PASSWORDS")]
    pub no_local_passwords: bool,

    /// The OpenID providers people may sign in with: `[[provider]]` tables
    /// of the configuration file (README, "Signing in through your
    /// identity provider").
    #[arg(skip)]
    pub providers: Vec<ProviderConfig>,
}

/// One OpenID provider people may sign in with (a `[[provider]]` table).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// A short name for addresses: the redirect URI to register at the
    /// provider is `<public URL>/signin/with/<id>/callback`.
    pub id: String,
    /// What the sign-in page says: "Continue with <name>".
    pub name: String,
    /// The provider's issuer; its discovery document is at
    /// `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    /// Scopes to ask for; `openid` is always among them.
    #[serde(default = "default_provider_scopes")]
    pub scopes: Vec<String>,
    /// The ID token claim that holds the person's email.
    #[serde(default = "default_email_claim")]
    pub email_claim: String,
    /// Join a first sign-in to the existing account with the same email
    /// when the provider says the email is verified (`email_verified`).
    /// Off: the person proves the account by signing in to it first.
    #[serde(default)]
    pub join_by_verified_email: bool,
}

fn default_provider_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into()]
}

fn default_email_claim() -> String {
    "email".into()
}

/// The `[[provider]]` tables of a configuration file.
fn providers_from_toml(value: &toml::Value) -> Result<Vec<ProviderConfig>, String> {
    value
        .clone()
        .try_into::<Vec<ProviderConfig>>()
        .map_err(|e| format!("[[provider]]: {e}"))
}

impl ProviderConfig {
    /// What `validate` checks for each provider.
    fn validate(&self) -> Result<(), String> {
        let id_ok = !self.id.is_empty()
            && self.id.len() <= 32
            && self
                .id
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !id_ok {
            return Err(format!(
                "provider id {:?}: 1 to 32 of a-z, 0-9 and -",
                self.id
            ));
        }
        let what = |field: &str| format!("provider {:?}: {field}", self.id);
        if self.name.trim().is_empty() || self.name.chars().count() > 60 {
            return Err(what("name must be 1 to 60 characters"));
        }
        // OpenID Connect Discovery §4.3: the issuer is an https URL; plain
        // http only for a provider on this machine.
        let issuer = url::Url::parse(&self.issuer).map_err(|e| what(&format!("issuer: {e}")))?;
        let loopback = matches!(
            issuer.host(),
            Some(url::Host::Ipv4(ip)) if ip.is_loopback()
        ) || matches!(issuer.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
            || issuer.host_str() == Some("localhost");
        if issuer.scheme() != "https" && !(issuer.scheme() == "http" && loopback) {
            return Err(what("issuer must be an https:// URL"));
        }
        if issuer.query().is_some() || issuer.fragment().is_some() {
            return Err(what("issuer must have no query or fragment"));
        }
        if self.client_id.is_empty() || self.client_secret.is_empty() {
            return Err(what("client_id and client_secret are needed"));
        }
        if self.email_claim.is_empty() {
            return Err(what("email_claim must name a claim"));
        }
        Ok(())
    }
}

/// The default theme's accent: a calm blue that passes WCAG AA on white.
pub const DEFAULT_ACCENT: &str = "#1f5fbf";

impl Config {
    /// How long a person has to approve a new code: the code lifetime, cut
    /// to the maximum approval age. This is the `expires_in` a device is
    /// told (RFC 8628 §3.2), so the device never promises a code the
    /// confirmation page would refuse as too old.
    pub fn approval_window(&self) -> u32 {
        self.code_lifetime.min(self.max_approval_age)
    }

    /// The public URL without a trailing slash.
    pub fn issuer(&self) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None if self.is_https() => format!("https://{}", self.listen),
            None => format!("http://{}", self.listen),
        }
    }

    /// The longest any token signed by this server stays valid: how long a
    /// retired signing key must stay in the JWKS.
    pub fn token_lifetime(&self) -> i64 {
        i64::from(self.access_token_lifetime)
    }

    /// Cookies get `Secure` and pages get HSTS only when people reach linkd
    /// over https.
    pub fn is_https(&self) -> bool {
        // The issuer's scheme, read without building the issuer (every
        // response asks, web::headers); `issuer` follows this rule.
        match &self.public_url {
            Some(url) => url.starts_with("https://"),
            None => self.tls_cert.is_some(),
        }
    }

    /// Checks what clap cannot: the public URL must be an absolute http(s)
    /// URL without query or fragment, since it becomes the token issuer
    /// (RFC 8414 §2).
    pub fn validate(&self) -> Result<(), String> {
        let issuer = self.issuer();
        let rest = issuer
            .strip_prefix("https://")
            .or_else(|| issuer.strip_prefix("http://"))
            .ok_or_else(|| format!("public URL {issuer:?} must start with http:// or https://"))?;
        if rest.is_empty() || rest.contains(['?', '#', ' ']) {
            return Err(format!(
                "public URL {issuer:?} must name a host and have no query or fragment"
            ));
        }
        if let Some(token) = &self.metrics_token
            && (token.len() < 16 || !token.bytes().all(|b| b.is_ascii_graphic()))
        {
            return Err("the metrics token must be at least 16 visible ASCII characters".into());
        }
        crate::mail::validate(self)?;
        if self.require_verified_email && self.smtp_url.is_none() {
            return Err(
                "--require-verified-email needs --smtp-url: without mail no address can be confirmed"
                    .into(),
            );
        }
        crate::webhooks::validate(&self.webhooks)?;
        for (i, provider) in self.providers.iter().enumerate() {
            provider.validate()?;
            if self.providers[..i].iter().any(|p| p.id == provider.id) {
                return Err(format!("provider id {:?} is used twice", provider.id));
            }
        }
        if self.no_local_passwords && self.providers.is_empty() {
            return Err(
                "no_local_passwords needs at least one [[provider]]: nobody could sign in".into(),
            );
        }
        crate::brand::validate(self)
    }

    /// The defaults, as `linkd serve` with no flags and no environment would
    /// have them. Tests start from this.
    pub fn defaults() -> Self {
        Config {
            config: None,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: None,
            database_url: "sqlite://linkd.db".into(),
            code_lifetime: 600,
            poll_interval: 5,
            access_token_lifetime: 3600,
            refresh_idle_lifetime: 30 * 86_400,
            refresh_absolute_lifetime: 365 * 86_400,
            session_lifetime: 14 * 86_400,
            max_approval_age: 300,
            code_failures_per_session: 5,
            code_failures_per_network: 20,
            code_failures_per_minute: 2000,
            device_authorizations_per_network: 60,
            device_authorizations_per_client: 20_000,
            token_polls_per_network: 1200,
            sign_in_free_failures: 3,
            sign_in_failing_networks: 5,
            password_hashes_at_once: 2,
            password_hash_wait_ms: 2000,
            sign_ups_per_network: 10,
            password_resets_per_email: 3,
            password_resets_per_network: 10,
            verification_mails_per_account: 3,
            passkey_ceremonies_per_network: 30,
            network_block_reports: 3,
            sync_max_document_bytes: 64 * 1024,
            sync_max_documents: 1000,
            sync_tombstone_retention: 30 * 86_400,
            sync_writes_per_device: 120,
            trusted_proxies: Vec::new(),
            client_ip_header: "x-forwarded-for".into(),
            tls_cert: None,
            metrics_listen: None,
            metrics_token: None,
            log_format: "text".into(),
            shutdown_timeout: 20,
            header_read_timeout: 10,
            idle_timeout: 60,
            tls_handshake_timeout: 10,
            max_connections: 10_000,
            max_connections_per_network: 500,
            max_streams_per_device: 4,
            max_streams_per_account: 64,
            tls_key: None,
            link_aliases: Vec::new(),
            no_demo: false,
            no_link_notice: false,
            require_verified_email: false,
            product_name: "linkd".into(),
            logo: None,
            accent_color: HexColor([0x1f, 0x5f, 0xbf]),
            support_url: None,
            smtp_url: None,
            mail_from: None,
            webhooks: Vec::new(),
            no_local_passwords: false,
            providers: Vec::new(),
        }
    }

    /// Reads what the config file holds beyond flags (its `[[webhooks]]`
    /// and `[[provider]]` tables); nothing without `--config`.
    pub fn read_file_tables(&mut self) -> Result<(), String> {
        let Some(path) = &self.config else {
            return Ok(());
        };
        let table = read_table(path)?;
        if let Some(value) = table.get(TABLES[0]) {
            self.webhooks = crate::webhooks::from_toml(value)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        if let Some(value) = table.get(TABLES[1]) {
            self.providers =
                providers_from_toml(value).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        Ok(())
    }
}

/// Keys of the config file that are lists of tables rather than flags.
const TABLES: &[&str] = &["webhooks", "provider"];

fn read_table(path: &std::path::Path) -> Result<toml::Table, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// A trusted proxy: a single address (`127.0.0.1`, `::1`, taken as a /32
/// or /128) or a CIDR range (`10.0.0.0/8`).
pub fn parse_trusted_proxy(text: &str) -> Result<ipnet::IpNet, String> {
    let text = text.trim();
    text.parse::<ipnet::IpNet>()
        .or_else(|_| text.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
        .map_err(|_| format!("{text:?} is neither an IP address nor a CIDR range"))
}

/// Turns a TOML settings file into defaults for the named subcommands'
/// arguments, below flags and environment variables (clap reads those
/// first). An unknown key or a value of the wrong shape is an error naming
/// the key; a value clap cannot parse is reported by clap naming the flag.
pub fn apply_file(
    mut cmd: clap::Command,
    path: &std::path::Path,
    subcommands: &[&[&str]],
) -> Result<clap::Command, String> {
    let table = read_table(path)?;
    for (key, value) in &table {
        if TABLES.contains(&key.as_str()) {
            // Read by `Config::read_file_tables`.
            continue;
        }
        let id = key.replace('-', "_");
        if id == "config" {
            return Err(format!(
                "{}: `config` cannot name another file",
                path.display()
            ));
        }
        let text = match value {
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s.clone()),
                    other => Err(format!(
                        "{}: {key}: list items must be strings, not {}",
                        path.display(),
                        other.type_str()
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(","),
            other => {
                return Err(format!(
                    "{}: {key}: unsupported value {}",
                    path.display(),
                    other.type_str()
                ));
            }
        };
        for route in subcommands {
            let mut found = false;
            cmd = mut_path(cmd, route, &mut |sub| {
                if sub.get_arguments().any(|a| a.get_id() == id.as_str()) {
                    found = true;
                    sub.mut_arg(id.as_str(), |a| a.default_value(text.clone()))
                } else {
                    sub
                }
            });
            if !found {
                return Err(format!("{}: unknown setting {key:?}", path.display()));
            }
        }
    }
    Ok(cmd)
}

fn mut_path(
    cmd: clap::Command,
    route: &[&str],
    f: &mut dyn FnMut(clap::Command) -> clap::Command,
) -> clap::Command {
    match route.split_first() {
        None => f(cmd),
        Some((name, rest)) => cmd.mut_subcommand(*name, |sub| mut_path(sub, rest, f)),
    }
}

/// The configuration as `key = value` lines, secrets redacted.
pub fn describe(c: &Config) -> String {
    let opt = |v: &Option<std::path::PathBuf>| {
        v.as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default()
    };
    let proxies: Vec<String> = c.trusted_proxies.iter().map(ToString::to_string).collect();
    [
        ("listen", c.listen.to_string()),
        ("public_url", c.issuer()),
        ("database_url", crate::store::redact_url(&c.database_url)),
        ("code_lifetime", c.code_lifetime.to_string()),
        ("poll_interval", c.poll_interval.to_string()),
        ("access_token_lifetime", c.access_token_lifetime.to_string()),
        ("refresh_idle_lifetime", c.refresh_idle_lifetime.to_string()),
        (
            "refresh_absolute_lifetime",
            c.refresh_absolute_lifetime.to_string(),
        ),
        ("session_lifetime", c.session_lifetime.to_string()),
        ("max_approval_age", c.max_approval_age.to_string()),
        (
            "code_failures_per_session",
            c.code_failures_per_session.to_string(),
        ),
        (
            "code_failures_per_network",
            c.code_failures_per_network.to_string(),
        ),
        (
            "code_failures_per_minute",
            c.code_failures_per_minute.to_string(),
        ),
        (
            "device_authorizations_per_network",
            c.device_authorizations_per_network.to_string(),
        ),
        (
            "device_authorizations_per_client",
            c.device_authorizations_per_client.to_string(),
        ),
        (
            "token_polls_per_network",
            c.token_polls_per_network.to_string(),
        ),
        ("sign_in_free_failures", c.sign_in_free_failures.to_string()),
        (
            "sign_in_failing_networks",
            c.sign_in_failing_networks.to_string(),
        ),
        (
            "password_hashes_at_once",
            c.password_hashes_at_once.to_string(),
        ),
        ("password_hash_wait_ms", c.password_hash_wait_ms.to_string()),
        ("sign_ups_per_network", c.sign_ups_per_network.to_string()),
        (
            "password_resets_per_email",
            c.password_resets_per_email.to_string(),
        ),
        (
            "password_resets_per_network",
            c.password_resets_per_network.to_string(),
        ),
        (
            "verification_mails_per_account",
            c.verification_mails_per_account.to_string(),
        ),
        (
            "passkey_ceremonies_per_network",
            c.passkey_ceremonies_per_network.to_string(),
        ),
        ("network_block_reports", c.network_block_reports.to_string()),
        ("trusted_proxies", proxies.join(",")),
        ("client_ip_header", c.client_ip_header.clone()),
        ("tls_cert", opt(&c.tls_cert)),
        ("tls_key", opt(&c.tls_key)),
        (
            "metrics_listen",
            c.metrics_listen.map(|a| a.to_string()).unwrap_or_default(),
        ),
        (
            "metrics_token",
            c.metrics_token
                .as_ref()
                .map(|_| "***".to_string())
                .unwrap_or_default(),
        ),
        ("log_format", c.log_format.clone()),
        ("shutdown_timeout", c.shutdown_timeout.to_string()),
        ("header_read_timeout", c.header_read_timeout.to_string()),
        ("idle_timeout", c.idle_timeout.to_string()),
        ("tls_handshake_timeout", c.tls_handshake_timeout.to_string()),
        ("max_connections", c.max_connections.to_string()),
        (
            "max_connections_per_network",
            c.max_connections_per_network.to_string(),
        ),
        (
            "max_streams_per_device",
            c.max_streams_per_device.to_string(),
        ),
        (
            "max_streams_per_account",
            c.max_streams_per_account.to_string(),
        ),
        ("link_aliases", c.link_aliases.join(",")),
        ("no_demo", c.no_demo.to_string()),
        ("no_link_notice", c.no_link_notice.to_string()),
        (
            "require_verified_email",
            c.require_verified_email.to_string(),
        ),
        (
            "smtp_url",
            c.smtp_url
                .as_deref()
                .map(crate::store::redact_url)
                .unwrap_or_default(),
        ),
        ("mail_from", c.mail_from.clone().unwrap_or_default()),
        (
            "webhooks",
            c.webhooks
                .iter()
                .map(crate::webhooks::WebhookEndpoint::describe)
                .collect::<Vec<_>>()
                .join("; "),
        ),
        ("no_local_passwords", c.no_local_passwords.to_string()),
    ]
    .iter()
    .map(|(k, v)| format!("{k} = {v:?}\n"))
    .chain(c.providers.iter().map(|p| {
        format!(
            "\n[[provider]]\nid = {:?}\nname = {:?}\nissuer = {:?}\nclient_id = {:?}\n\
             client_secret = \"(set)\"\nscopes = {:?}\nemail_claim = {:?}\n\
             join_by_verified_email = {}\n",
            p.id, p.name, p.issuer, p.client_id, p.scopes, p.email_claim, p.join_by_verified_email
        )
    }))
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `is_https` reads the scheme without building the issuer; the two
    /// must agree in every setup.
    #[test]
    fn is_https_agrees_with_the_issuer() {
        for (public_url, tls, https) in [
            (None, false, false),
            (None, true, true),
            (Some("http://link.example/"), false, false),
            (Some("https://link.example"), false, true),
            (Some("http://link.example"), true, false),
            (Some("https://link.example/"), true, true),
        ] {
            let mut c = Config::defaults();
            c.public_url = public_url.map(String::from);
            c.tls_cert = tls.then(|| "cert.pem".into());
            assert_eq!(c.is_https(), https, "{public_url:?}, tls {tls}");
            assert_eq!(c.issuer().starts_with("https://"), https);
        }
    }

    #[test]
    fn redacts_database_passwords() {
        let mut c = Config::defaults();
        c.database_url = "postgres://linkd:hunter2@db/linkd".into();
        let text = describe(&c);
        assert!(
            text.contains("postgres://linkd:***@db/linkd") && !text.contains("hunter2"),
            "{text}"
        );
        c.metrics_token = Some("scrape-token-0123456789".into());
        let text = describe(&c);
        assert!(
            text.contains("metrics_token = \"***\"") && !text.contains("scrape-token"),
            "{text}"
        );
    }
}

#[cfg(test)]
mod brand_tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Serve {
        #[command(flatten)]
        config: Config,
    }

    #[test]
    fn defaults_match_what_serve_gets_without_flags() {
        let parsed = Serve::try_parse_from(["serve"]).unwrap().config;
        let defaults = Config::defaults();
        assert_eq!(parsed.accent_color, defaults.accent_color);
        assert_eq!(parsed.product_name, defaults.product_name);
        assert_eq!(defaults.accent_color.to_string(), DEFAULT_ACCENT);
    }

    #[test]
    fn trusted_proxies_are_single_addresses_or_ranges() {
        let parsed = Serve::try_parse_from([
            "serve",
            "--trusted-proxies",
            "127.0.0.1,::1,10.0.0.0/8, fd00::/8",
        ])
        .unwrap()
        .config
        .trusted_proxies;
        let shown: Vec<String> = parsed.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["127.0.0.1/32", "::1/128", "10.0.0.0/8", "fd00::/8"]);
        let err = Serve::try_parse_from(["serve", "--trusted-proxies", "proxy.local"])
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("\"proxy.local\" is neither an IP address nor a CIDR range"),
            "{err}"
        );
    }

    #[test]
    fn an_accent_that_is_not_a_hex_colour_is_refused() {
        let err = Serve::try_parse_from(["serve", "--accent-color", "blue"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("is not a hex colour"), "{err}");
        let ok = Serve::try_parse_from(["serve", "--accent-color", "#0B6E4F"]).unwrap();
        assert_eq!(ok.config.accent_color.to_string(), "#0b6e4f");
    }
}

//! What each `linkd` command does. `main.rs` parses the arguments; these
//! functions do the work and print for people.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::clock::{Clock, SystemClock};
use crate::codes::{random_secret, secret_hash};
use crate::store::{self, Client, DynStore};
use crate::{Config, accounts, app, scopes, serve, state, tokens};

async fn open(database_url: &str) -> anyhow::Result<DynStore> {
    let store = store::open(database_url)
        .await
        .with_context(|| format!("opening {}", store::redact_url(database_url)))?;
    store.migrate().await.context("migrating the database")?;
    Ok(store)
}

/// Logs to standard error: readable lines, or one JSON object per line
/// for log pipelines. `LINKD_LOG` sets the filter.
fn init_logs(format: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("LINKD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(false)
            .try_init()
    } else {
        builder.try_init()
    };
}

pub async fn serve(config: Config) -> anyhow::Result<()> {
    init_logs(&config.log_format);
    crate::telemetry::handle();
    let listen = config.listen;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(serve::tls_config(cert, key)?),
        _ => None,
    };
    let state = state::prepare(config, Arc::new(SystemClock)).await?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    if let Some(addr) = state.config.metrics_listen {
        let metrics = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("listening for metrics on {addr}"))?;
        let router = app::metrics_router(state.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(metrics, router).await {
                tracing::error!(error = %e, "metrics listener stopped");
            }
        });
    }
    let issuer = state.config.issuer();
    let demo = state
        .store
        .get_client(state::DEMO_CLIENT_ID)
        .await?
        .is_some();
    println!("linkd is serving at {issuer}");
    println!("  link page:  {issuer}/link");
    println!("  discovery:  {issuer}/.well-known/openid-configuration");
    if demo {
        println!("Try it: in another terminal run");
        println!(
            "  cargo run --release -- device --server {issuer} --client {}",
            state::DEMO_CLIENT_ID
        );
        println!("then open the link it prints, create an account, and approve.");
    }
    match tls {
        Some(tls) => serve::serve_tls(listener.into_std()?, state, tls, shutdown_signal()).await?,
        None => serve::serve(listener, state, shutdown_signal()).await?,
    }
    println!("linkd stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}

pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    open(database_url).await?;
    println!("database is up to date");
    Ok(())
}

pub async fn client_add(
    database_url: &str,
    id: &str,
    name: &str,
    requested_scopes: &[String],
    confidential: bool,
) -> anyhow::Result<()> {
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("the client id must be 1 to 128 visible ASCII characters");
    }
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        bail!("the name must be 1 to 100 characters without control characters");
    }
    let scope_list = client_scopes(requested_scopes)?
        .unwrap_or_else(|| scopes::DEFAULT_CLIENT_SCOPES.to_string());
    let secret = confidential.then(|| random_secret(32));
    let store = open(database_url).await?;
    let client = Client {
        client_id: id.to_string(),
        name: name.to_string(),
        secret_hash: secret.as_deref().map(secret_hash),
        scopes: scope_list,
        device_flow_enabled: true,
        created_at: SystemClock.now(),
    };
    match store.insert_client(&client).await {
        Err(store::StoreError::Conflict) => bail!("a client with id {id:?} already exists"),
        other => other?,
    }
    println!("added client {id} ({name}), scopes: {}", client.scopes);
    if let Some(secret) = secret {
        println!("client secret (shown once, store it now): {secret}");
    }
    Ok(())
}

/// The scopes named on the command line, checked; `None` when none were.
fn client_scopes(requested: &[String]) -> anyhow::Result<Option<String>> {
    let joined = requested.join(" ");
    if joined.trim().is_empty() {
        return Ok(None);
    }
    let parsed = scopes::parse(&joined).context("scopes are space-separated words")?;
    for s in &parsed {
        if !scopes::is_known(s) {
            bail!(
                "unknown scope {s:?}; linkd knows {}",
                scopes::KNOWN.join(", ")
            );
        }
    }
    Ok(Some(parsed.join(" ")))
}

pub async fn client_update(
    database_url: &str,
    id: &str,
    device_flow: Option<bool>,
    requested_scopes: &[String],
) -> anyhow::Result<()> {
    let scope_list = client_scopes(requested_scopes)?;
    if device_flow.is_none() && scope_list.is_none() {
        bail!("nothing to change: give --device-flow on|off and/or --scope");
    }
    let store = open(database_url).await?;
    if !store
        .update_client(id, scope_list.as_deref(), device_flow)
        .await?
    {
        bail!("no client with id {id:?}");
    }
    let client = store.get_client(id).await?.context("client vanished")?;
    let flow = if client.device_flow_enabled {
        "on"
    } else {
        "off"
    };
    println!("client {id}: device flow {flow}, scopes: {}", client.scopes);
    Ok(())
}

pub async fn client_list(database_url: &str) -> anyhow::Result<()> {
    let store = open(database_url).await?;
    let clients = store.list_clients().await?;
    if clients.is_empty() {
        println!("no clients");
    }
    for c in clients {
        let kind = if c.is_confidential() {
            "confidential"
        } else {
            "public"
        };
        let flow = if c.device_flow_enabled {
            ""
        } else {
            "\tdevice flow off"
        };
        println!("{}\t{}\t{kind}\t{}{flow}", c.client_id, c.name, c.scopes);
    }
    Ok(())
}

pub async fn client_remove(database_url: &str, id: &str) -> anyhow::Result<()> {
    let store = open(database_url).await?;
    if !store.delete_client(id).await? {
        bail!("no client with id {id:?}");
    }
    println!("removed client {id}");
    Ok(())
}

fn read_password() -> anyhow::Result<String> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ")?;
        let again = rpassword::prompt_password("Password again: ")?;
        if first != again {
            bail!("the passwords differ");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line)?;
        line.trim_end_matches(['\r', '\n']).to_string()
    };
    Ok(password)
}

pub async fn user_add(database_url: &str, email: &str) -> anyhow::Result<()> {
    let store = open(database_url).await?;
    let password = read_password()?;
    let account = accounts::sign_up(store.as_ref(), email, &password, SystemClock.now()).await?;
    println!("added account {} ({})", account.email, account.id);
    Ok(())
}

pub async fn user_list(database_url: &str) -> anyhow::Result<()> {
    let store = open(database_url).await?;
    let list = store.list_accounts().await?;
    if list.is_empty() {
        println!("no accounts");
    }
    for a in list {
        let status = if a.disabled { "disabled" } else { "active" };
        println!("{}\t{}\t{status}", a.email, a.id);
    }
    Ok(())
}

/// Where admin actions come from in a person's activity list.
const ADMIN: &str = "the operator (linkd CLI)";

async fn account_by_email(
    store: &dyn store::Store,
    email: &str,
) -> anyhow::Result<crate::store::Account> {
    store
        .get_account_by_email(email)
        .await?
        .with_context(|| format!("no account with email {email:?}"))
}

pub async fn user_set_disabled(
    database_url: &str,
    email: &str,
    disabled: bool,
) -> anyhow::Result<()> {
    let store = open(database_url).await?;
    let account = account_by_email(store.as_ref(), email).await?;
    store.set_account_disabled(&account.id, disabled).await?;
    if disabled {
        // A disabled person keeps no way in: sessions end and every
        // device is unlinked, so its tokens stop working at once.
        store.delete_sessions(&account.id).await?;
        let unlinked =
            crate::devices::unlink_all(store.as_ref(), &account.id, ADMIN, SystemClock.now())
                .await?;
        println!("{} disabled; {unlinked} device(s) unlinked", account.email);
    } else {
        println!("{} enabled", account.email);
    }
    Ok(())
}

pub async fn user_delete(database_url: &str, email: &str) -> anyhow::Result<()> {
    let store = open(database_url).await?;
    let account = account_by_email(store.as_ref(), email).await?;
    store.delete_account(&account.id).await?;
    println!(
        "{} deleted with its devices, tokens and activity",
        account.email
    );
    Ok(())
}

pub async fn client_rotate_secret(database_url: &str, id: &str) -> anyhow::Result<()> {
    let store = open(database_url).await?;
    let client = store
        .get_client(id)
        .await?
        .with_context(|| format!("no client with id {id:?}"))?;
    if !client.is_confidential() {
        bail!("{id} is a public client: it has no secret to rotate");
    }
    let secret = random_secret(32);
    store.set_client_secret(id, &secret_hash(&secret)).await?;
    println!("new client secret for {id} (shown once; the old one stops working now): {secret}");
    Ok(())
}

pub async fn devices_list(database_url: &str, email: &str) -> anyhow::Result<()> {
    let store = open(database_url).await?;
    let account = account_by_email(store.as_ref(), email).await?;
    let devices = store.list_linked_devices(&account.id).await?;
    if devices.is_empty() {
        println!("no devices linked to {}", account.email);
    }
    let at = crate::web::link::utc_time;
    for d in devices {
        let last = d.last_refresh_at.map(at).unwrap_or_else(|| "-".into());
        println!(
            "{}\t{}\t{}\t{}\t{}\t{last}",
            d.id,
            d.app_name,
            d.label,
            at(d.linked_at),
            d.linked_ip
        );
    }
    Ok(())
}

pub async fn devices_unlink(database_url: &str, id: &str) -> anyhow::Result<()> {
    let store = open(database_url).await?;
    let device = store
        .get_linked_device(id)
        .await?
        .filter(|d| d.revoked_at.is_none())
        .with_context(|| format!("no linked device with id {id:?}"))?;
    crate::devices::unlink(store.as_ref(), &device, ADMIN, SystemClock.now()).await?;
    println!("unlinked {} ({})", device.label, device.app_name);
    Ok(())
}

pub async fn backup(database_url: &str, file: &std::path::Path) -> anyhow::Result<()> {
    let store = store::open(database_url)
        .await
        .with_context(|| format!("opening {}", store::redact_url(database_url)))?;
    match store.backup(file).await {
        Err(store::StoreError::Conflict) => {
            bail!("{} already exists; name a new file", file.display())
        }
        other => other.with_context(|| format!("backing up to {}", file.display()))?,
    }
    println!("backed up to {}", file.display());
    Ok(())
}

pub async fn keys_rotate(database_url: &str) -> anyhow::Result<()> {
    let store = open(database_url).await?;
    let now = SystemClock.now();
    let key = tokens::generate_signing_key(now)?;
    store.insert_signing_key(&key).await?;
    println!(
        "new signing key {}: published now, signs from {} (running servers pick it up within {} s)",
        key.kid,
        crate::web::link::utc_time(now + tokens::KEY_PUBLISH_AHEAD_SECS),
        tokens::KEY_RELOAD_SECS
    );
    Ok(())
}

/// Lists keys newest first with what each does now. `token_lifetime` is
/// the servers' access token lifetime (it decides when old keys retire).
pub async fn keys_list(database_url: &str, token_lifetime: i64) -> anyhow::Result<()> {
    let store = open(database_url).await?;
    let stored = store.list_signing_keys().await?;
    let roles = tokens::key_roles(&stored, SystemClock.now(), token_lifetime);
    let at = crate::web::link::utc_time;
    for (key, role) in stored.iter().zip(roles) {
        let role = match role {
            tokens::KeyRole::Next { since } => format!("next: signs from {}", at(since)),
            tokens::KeyRole::Signing => "signing".to_string(),
            tokens::KeyRole::Verifying { until } => format!("verifying until {}", at(until)),
            tokens::KeyRole::Retired => "retired".to_string(),
        };
        println!("{}\t{}\t{role}", key.kid, at(key.created_at));
    }
    Ok(())
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum DeviceCommand {
    /// Link this device: show a code and wait for a person to approve (the default).
    Link,
    /// Say which account this device is linked to, refreshing its tokens if needed.
    Status,
    /// Unlink this device and forget its tokens.
    Unlink,
    /// Read, write or follow the account's synced settings (scope `sync`).
    #[command(subcommand)]
    Sync(SyncCommand),
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum SyncCommand {
    /// Print a document and its version.
    Get { collection: String, key: String },
    /// Write a document. Without --if-match, updates the version it reads
    /// first (or creates it), so a concurrent change is reported, not lost.
    Put {
        collection: String,
        key: String,
        /// The document, as JSON.
        json: String,
        /// Only if the document is still at this version (its ETag).
        #[arg(long)]
        if_match: Option<String>,
    },
    /// Print every change as a JSON line as it happens.
    Watch {
        /// Start after this change (`seq`) instead of from now.
        #[arg(long)]
        since: Option<i64>,
    },
}

#[derive(Debug, clap::Args)]
pub struct DeviceArgs {
    #[command(subcommand)]
    pub command: Option<DeviceCommand>,
    /// Where the device keeps its tokens (written with mode 0600).
    /// Default: $XDG_CONFIG_HOME/linkd/device-<client>.json.
    #[arg(long, env = "LINKD_DEVICE_TOKEN_FILE", global = true)]
    pub token_file: Option<std::path::PathBuf>,
    /// The linkd server (its public URL).
    #[arg(
        long,
        env = "LINKD_SERVER",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,
    /// The device app's client_id.
    #[arg(long, default_value = state::DEMO_CLIENT_ID, global = true)]
    pub client: String,
    /// The secret, for a confidential device app.
    #[arg(long, env = "LINKD_CLIENT_SECRET", global = true)]
    pub secret: Option<String>,
    /// Scopes to ask for.
    #[arg(long, default_value = "openid email offline_access")]
    pub scope: String,
    /// The name this device shows people.
    #[arg(long)]
    pub name: Option<String>,
    /// Give up after this many expired codes.
    #[arg(long, default_value_t = 3)]
    pub attempts: u32,
}

/// A terminal QR code, two rows of modules per line of text.
pub fn qr_text(data: &str) -> Option<String> {
    let code = qrcode::QrCode::new(data.as_bytes()).ok()?;
    Some(
        code.render::<qrcode::render::unicode::Dense1x2>()
            .dark_color(qrcode::render::unicode::Dense1x2::Light)
            .light_color(qrcode::render::unicode::Dense1x2::Dark)
            .build(),
    )
}

fn unix_now() -> u64 {
    u64::try_from(SystemClock.now()).unwrap_or(0)
}

fn token_file(args: &DeviceArgs) -> std::path::PathBuf {
    if let Some(path) = &args.token_file {
        return path.clone();
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".config")))
        .unwrap_or_else(|| std::path::PathBuf::from("."));
    let safe: String = args
        .client
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    config.join("linkd").join(format!("device-{safe}.json"))
}

pub async fn device(args: DeviceArgs) -> anyhow::Result<()> {
    let mut device = linkd_device::Device::discover(&args.server, &args.client)
        .await
        .with_context(|| format!("reading {}'s metadata", args.server))?;
    if let Some(secret) = &args.secret {
        device = device.with_secret(secret);
    }
    let path = token_file(&args);
    match args.command.clone().unwrap_or(DeviceCommand::Link) {
        DeviceCommand::Link => device_link(&args, &device, &path).await,
        DeviceCommand::Status => {
            let (saved, info) = device_session(&device, &path).await?;
            let email = info["account"]["email"].as_str().unwrap_or("an account");
            let since = info["linked_at"]
                .as_i64()
                .map(crate::web::link::utc_time)
                .unwrap_or_default();
            println!(
                "Linked to {email} as \"{}\" ({}) since {since}.",
                info["label"].as_str().unwrap_or("this device"),
                info["app_name"].as_str().unwrap_or(&saved.client_id),
            );
            Ok(())
        }
        DeviceCommand::Unlink => {
            let (saved, _) = device_session(&device, &path).await?;
            device.unlink(&saved.access_token).await?;
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            println!("Unlinked. This device no longer has access to the account.");
            Ok(())
        }
        DeviceCommand::Sync(command) => device_sync(&device, &path, command).await,
    }
}

async fn device_sync(
    device: &linkd_device::Device,
    path: &std::path::Path,
    command: SyncCommand,
) -> anyhow::Result<()> {
    use linkd_device::{SyncPrecondition, SyncWrite};
    let (saved, _) = device_session(device, path).await?;
    let token = &saved.access_token;
    match command {
        SyncCommand::Get { collection, key } => {
            match device.sync_get(token, &collection, &key).await? {
                Some(doc) => {
                    println!("{}", doc.value);
                    eprintln!("version {}", doc.etag);
                    Ok(())
                }
                None => bail!("no document {collection}/{key}"),
            }
        }
        SyncCommand::Put {
            collection,
            key,
            json,
            if_match,
        } => {
            let value: serde_json::Value =
                serde_json::from_str(&json).context("the document must be JSON")?;
            let current = match if_match {
                Some(tag) => Some(tag),
                None => device
                    .sync_get(token, &collection, &key)
                    .await?
                    .map(|d| d.etag),
            };
            let precondition = match &current {
                Some(tag) => SyncPrecondition::Match(tag),
                None => SyncPrecondition::Create,
            };
            match device
                .sync_put(token, &collection, &key, &value, precondition)
                .await?
            {
                SyncWrite::Written { etag } => {
                    println!("stored {collection}/{key}, version {etag}");
                    Ok(())
                }
                SyncWrite::Conflict { current: Some(now) } => bail!(
                    "{collection}/{key} changed meanwhile: it is now {} (version {}); not written",
                    now.value,
                    now.etag
                ),
                SyncWrite::Conflict { current: None } => {
                    bail!("{collection}/{key} was deleted meanwhile; not written")
                }
            }
        }
        SyncCommand::Watch { since } => {
            let mut last = since;
            let mut out = std::io::stdout();
            loop {
                // Tokens may have been refreshed since the last stream.
                let (saved, _) = device_session(device, path).await?;
                let mut watch = device.sync_watch(&saved.access_token, last).await?;
                while let Some(change) = watch.next().await? {
                    last = Some(change.seq);
                    writeln!(
                        out,
                        "{}",
                        serde_json::json!({
                            "seq": change.seq,
                            "collection": change.collection,
                            "key": change.key,
                            "etag": change.etag,
                            "deleted": change.deleted,
                            "value": change.value,
                        })
                    )?;
                    out.flush()?;
                }
                // The server ended the stream (token expiry, shutdown):
                // pick up where it stopped, without missing a change.
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    }
}

/// The saved tokens, refreshed when stale, and what the server says about
/// the link. A device the server no longer knows forgets its tokens.
async fn device_session(
    device: &linkd_device::Device,
    path: &std::path::Path,
) -> anyhow::Result<(linkd_device::SavedTokens, serde_json::Value)> {
    let Some(mut saved) = linkd_device::SavedTokens::load(path)? else {
        bail!(
            "this device is not linked (no tokens at {}); run `linkd device` to link it",
            path.display()
        );
    };
    let gone = |path: &std::path::Path| -> anyhow::Error {
        let _ = std::fs::remove_file(path);
        anyhow::anyhow!("this device was unlinked; run `linkd device` to link it again")
    };
    if saved.is_stale(unix_now()) {
        let Some(refresh) = saved.refresh_token.clone() else {
            return Err(gone(path));
        };
        match device.refresh(&refresh).await {
            Ok(tokens) => {
                saved.update(&tokens, unix_now());
                saved.save(path)?;
            }
            Err(linkd_device::Error::Server { error, .. }) if error == "invalid_grant" => {
                return Err(gone(path));
            }
            Err(e) => return Err(e.into()),
        }
    }
    match device.linked_info(&saved.access_token).await {
        Ok(info) => Ok((saved, info)),
        Err(linkd_device::Error::Server { status: 401, .. }) => Err(gone(path)),
        Err(e) => Err(e.into()),
    }
}

/// "example.com" from "https://example.com/path".
fn host_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#'])
        .next()
        .unwrap_or(rest)
        .to_string()
}

async fn device_link(
    args: &DeviceArgs,
    device: &linkd_device::Device,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let mut out = std::io::stdout();
    // The operator's product name, so the terminal matches the pages the
    // person is about to see; a server without linkd's brand endpoint is
    // named by its host.
    let brand = device.brand().await.ok();
    let product = brand
        .as_ref()
        .map(|b| b.product_name.clone())
        .unwrap_or_else(|| host_of(&device.endpoints.issuer));
    for attempt in 1..=args.attempts.max(1) {
        let auth = device
            .request_code(Some(&args.scope), args.name.as_deref())
            .await?;
        writeln!(
            out,
            "\nTo link this device to your {product} account, open\n\n    {}\n",
            auth.verification_uri
        )?;
        writeln!(out, "and enter the code\n\n    {}\n", auth.user_code)?;
        if let Some(complete) = &auth.verification_uri_complete
            && let Some(qr) = qr_text(complete)
        {
            writeln!(out, "or scan this with your phone:\n\n{qr}")?;
        }
        writeln!(
            out,
            "The code works for {} minutes. Waiting…",
            auth.expires_in.div_ceil(60)
        )?;
        if let Some(support) = brand.as_ref().and_then(|b| b.support_url.as_deref()) {
            writeln!(out, "Need help? {support}")?;
        }
        out.flush()?;
        match device.wait_for_tokens(&auth).await {
            Ok(tokens) => {
                let who = tokens
                    .id_token_claims()
                    .and_then(|c| {
                        c.get("email")
                            .or_else(|| c.get("sub"))
                            .and_then(|v| v.as_str().map(str::to_string))
                    })
                    .unwrap_or_else(|| "your account".into());
                linkd_device::SavedTokens::new(&args.server, &args.client, &tokens, unix_now())
                    .save(path)
                    .with_context(|| format!("saving tokens to {}", path.display()))?;
                writeln!(out, "\nLinked to {who} on {product}.")?;
                writeln!(out, "Tokens saved to {}.", path.display())?;
                return Ok(());
            }
            Err(linkd_device::Error::Expired) if attempt < args.attempts => {
                writeln!(out, "\nThat code expired; here is a new one.")?;
            }
            Err(e) => return Err(e.into()),
        }
    }
    bail!("no code was approved in time")
}

//! What each `linkd` command does. `main.rs` parses the arguments; these
//! functions do the work and print for people.

/// `linkd device`: a device in the terminal (link, status, unlink, sync).
mod device;

pub use device::{DeviceArgs, DeviceCommand, SyncCommand, device, qr_text};

use std::io::{BufRead, IsTerminal};
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

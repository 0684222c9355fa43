//! `linkd client`: register, change, list and remove device apps (OAuth
//! clients), and rotate a confidential app's secret.

use anyhow::{Context, bail};

use super::open;
use crate::clock::{Clock, SystemClock};
use crate::codes::{random_secret, secret_hash};
use crate::scopes;
use crate::store::{self, Client};

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

//! `linkd client`: register, change, list and remove device apps (OAuth
//! clients), and rotate a confidential app's secret.

use anyhow::{Context, bail};

use super::open;
use crate::clock::{Clock, SystemClock};
use crate::codes::{random_secret, secret_hash};
use crate::scopes;
use crate::store::{self, Client, ClientChanges};

/// What `linkd client add` registers.
pub struct NewClient<'a> {
    pub id: &'a str,
    pub name: &'a str,
    pub scopes: &'a [String],
    pub confidential: bool,
    /// Where authorization codes may be sent (`--redirect-uri`).
    pub redirect_uris: &'a [String],
    /// Token requests must carry a DPoP proof (`--require-dpop`).
    pub require_dpop: bool,
    pub prefilled_links: bool,
    pub same_network: Option<crate::store::SameNetwork>,
}

/// The redirect URIs named on the command line, checked and joined;
/// `None` when none were.
fn redirect_uris(given: &[String]) -> anyhow::Result<Option<String>> {
    let uris: Vec<&str> = given.iter().flat_map(|g| g.split_whitespace()).collect();
    if uris.is_empty() {
        return Ok(None);
    }
    for uri in &uris {
        crate::code_flow::check_redirect_uri(uri).map_err(anyhow::Error::msg)?;
    }
    Ok(Some(uris.join(" ")))
}

fn on_off(on: bool) -> &'static str {
    if on { "on" } else { "off" }
}

fn same_network(c: &Client) -> String {
    match c.same_network {
        Some(n) => format!("required within {n}"),
        None => "not required".into(),
    }
}

/// One line on what an app may do.
fn describe(c: &Client) -> String {
    let uris = if c.redirect_uris.is_empty() {
        "none"
    } else {
        c.redirect_uris.as_str()
    };
    format!(
        "device flow {}, authorization code {}, refresh {}, DPoP required {}, \
         prefilled links {}, same network {}, scopes: {}, redirect URIs: {uris}",
        on_off(c.device_flow_enabled),
        on_off(c.code_flow_enabled),
        on_off(c.refresh_enabled),
        on_off(c.require_dpop),
        on_off(c.prefilled_links),
        same_network(c),
        c.scopes
    )
}

pub async fn client_add(database_url: &str, new: &NewClient<'_>) -> anyhow::Result<()> {
    let NewClient {
        id,
        name,
        scopes: requested_scopes,
        confidential,
        ..
    } = *new;
    if id.is_empty() || id.len() > 128 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        bail!("the client id must be 1 to 128 visible ASCII characters");
    }
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        bail!("the name must be 1 to 100 characters without control characters");
    }
    let scope_list = client_scopes(requested_scopes)?
        .unwrap_or_else(|| scopes::DEFAULT_CLIENT_SCOPES.to_string());
    let redirect_uris = redirect_uris(new.redirect_uris)?.unwrap_or_default();
    let secret = confidential.then(|| random_secret(32));
    let store = open(database_url).await?;
    let client = Client {
        client_id: id.to_string(),
        name: name.to_string(),
        secret_hash: secret.as_deref().map(secret_hash),
        scopes: scope_list,
        device_flow_enabled: true,
        redirect_uris,
        code_flow_enabled: true,
        refresh_enabled: true,
        require_dpop: new.require_dpop,
        prefilled_links: new.prefilled_links,
        same_network: new.same_network,
        created_at: SystemClock.now(),
    };
    match store.insert_client(&client).await {
        Err(store::StoreError::Conflict) => bail!("a client with id {id:?} already exists"),
        other => other?,
    }
    println!("added client {id} ({name}): {}", describe(&client));
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

/// What `linkd client update` changes; `None` leaves a setting alone.
pub struct ClientUpdate<'a> {
    pub device_flow: Option<bool>,
    pub code_flow: Option<bool>,
    pub refresh: Option<bool>,
    pub require_dpop: Option<bool>,
    pub scopes: &'a [String],
    pub redirect_uris: &'a [String],
    /// Remove every redirect URI.
    pub no_redirect_uris: bool,
    pub prefilled_links: Option<bool>,
    /// `Some(None)`: no longer required.
    pub same_network: Option<Option<crate::store::SameNetwork>>,
}

pub async fn client_update(
    database_url: &str,
    id: &str,
    update: &ClientUpdate<'_>,
) -> anyhow::Result<()> {
    let scope_list = client_scopes(update.scopes)?;
    let uris = match (
        redirect_uris(update.redirect_uris)?,
        update.no_redirect_uris,
    ) {
        (Some(_), true) => bail!("give --redirect-uri or --no-redirect-uris, not both"),
        (Some(uris), false) => Some(uris),
        (None, true) => Some(String::new()),
        (None, false) => None,
    };
    let changes = ClientChanges {
        scopes: scope_list.as_deref(),
        device_flow_enabled: update.device_flow,
        code_flow_enabled: update.code_flow,
        refresh_enabled: update.refresh,
        require_dpop: update.require_dpop,
        redirect_uris: uris.as_deref(),
        prefilled_links: update.prefilled_links,
        same_network: update.same_network,
    };
    if changes.scopes.is_none()
        && changes.device_flow_enabled.is_none()
        && changes.code_flow_enabled.is_none()
        && changes.refresh_enabled.is_none()
        && changes.require_dpop.is_none()
        && changes.redirect_uris.is_none()
        && changes.prefilled_links.is_none()
        && changes.same_network.is_none()
    {
        bail!(
            "nothing to change: give --device-flow, --code-flow, --refresh, --require-dpop or \
             --prefilled-links on|off, --same-network, --scope, --redirect-uri or \
             --no-redirect-uris"
        );
    }
    let store = open(database_url).await?;
    if !store.update_client(id, &changes).await? {
        bail!("no client with id {id:?}");
    }
    let client = store.get_client(id).await?.context("client vanished")?;
    println!("client {id}: {}", describe(&client));
    Ok(())
}

/// `linkd client show ID`: everything about one app but its secret.
pub async fn client_show(database_url: &str, id: &str) -> anyhow::Result<()> {
    let store = open(database_url).await?;
    let c = store
        .get_client(id)
        .await?
        .with_context(|| format!("no client with id {id:?}"))?;
    let kind = if c.is_confidential() {
        "confidential"
    } else {
        "public"
    };
    println!("client id:              {}", c.client_id);
    println!("name:                   {}", c.name);
    println!("kind:                   {kind}");
    println!("scopes:                 {}", c.scopes);
    println!("device flow:            {}", on_off(c.device_flow_enabled));
    println!("authorization code:     {}", on_off(c.code_flow_enabled));
    println!("refresh tokens:         {}", on_off(c.refresh_enabled));
    println!("prefilled links:        {}", on_off(c.prefilled_links));
    println!("same network:           {}", same_network(&c));
    for uri in c.redirect_uri_list() {
        println!("redirect URI:           {uri}");
    }
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
        let uris = if c.redirect_uris.is_empty() {
            String::new()
        } else {
            format!("\tredirect URIs: {}", c.redirect_uris)
        };
        println!(
            "{}\t{}\t{kind}\t{}{flow}{uris}",
            c.client_id, c.name, c.scopes
        );
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

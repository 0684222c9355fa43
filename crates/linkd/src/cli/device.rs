//! `linkd device`: a device in the terminal. It shows the link, the code
//! and a QR code, waits for the person's decision, keeps the tokens in a
//! file, and reads or follows the account's synced settings, all through
//! the `linkd-device` crate as any device app would.

use std::io::Write;

use anyhow::{Context, bail};

use crate::clock::{Clock, SystemClock};
use crate::state;

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
    /// Link without DPoP (RFC 9449): plain Bearer tokens, usable by anyone
    /// who copies them. By default the device makes a key, keeps it in the
    /// token file, and its tokens are bound to it.
    #[arg(long)]
    pub no_dpop: bool,
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
    let command = args.command.clone().unwrap_or(DeviceCommand::Link);
    if matches!(command, DeviceCommand::Link) {
        if !args.no_dpop {
            device = device.with_dpop(linkd_device::DpopKey::generate());
        }
    } else if let Some(key) = linkd_device::SavedTokens::load(&path)?.and_then(|s| s.dpop_key) {
        // Tokens bound to a key are sent with proofs by that key.
        device = device.with_dpop(
            linkd_device::DpopKey::from_secret(&key)
                .with_context(|| format!("reading the DPoP key in {}", path.display()))?,
        );
    }
    match command {
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
                let mut watch = match device.sync_watch(&saved.access_token, last).await {
                    // Deletions after `last` were purged: start again from
                    // 0, so the lines that follow are every document that
                    // exists now, then the changes as they happen.
                    Err(linkd_device::Error::ResyncRequired) => {
                        eprintln!(
                            "changes after {} are no longer kept; reading everything again",
                            last.unwrap_or(0)
                        );
                        last = Some(0);
                        continue;
                    }
                    other => other?,
                };
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

/// "45 seconds", "1 minute", "5 minutes": whole minutes rounded down, so
/// the terminal never promises more time than the code has.
fn duration_in_words(secs: u64) -> String {
    match secs {
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "1 minute".into(),
        s => format!("{} minutes", s / 60),
    }
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
            "The code works for {}. Waiting…",
            duration_in_words(auth.expires_in)
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
                let mut saved =
                    linkd_device::SavedTokens::new(&args.server, &args.client, &tokens, unix_now());
                // A server without DPoP answers Bearer: nothing is bound,
                // so no key is kept.
                if tokens.token_type.eq_ignore_ascii_case("dpop") {
                    saved.dpop_key = device.dpop_key().map(linkd_device::DpopKey::to_secret);
                }
                saved
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_terminal_says_how_long_a_code_works_in_words() {
        assert_eq!(duration_in_words(1), "1 second");
        assert_eq!(duration_in_words(45), "45 seconds");
        assert_eq!(duration_in_words(60), "1 minute");
        assert_eq!(duration_in_words(119), "1 minute");
        assert_eq!(duration_in_words(300), "5 minutes");
        assert_eq!(duration_in_words(599), "9 minutes");
    }
}

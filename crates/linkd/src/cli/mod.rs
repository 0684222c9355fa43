//! What each `linkd` command does, one file per command group. `main.rs`
//! parses the arguments; these functions do the work and print for people.

/// `linkd client`: device apps (OAuth clients).
mod client;
/// `linkd device`: a device in the terminal (link, status, unlink, sync).
mod device;
/// `linkd devices`: people's linked devices, for the operator.
mod devices;
/// `linkd keys`: token signing keys.
mod keys;
/// `linkd serve`: the server itself.
mod server;
/// `linkd user`: people's accounts.
mod user;

pub use client::{
    ClientUpdate, NewClient, client_add, client_list, client_remove, client_rotate_secret,
    client_show, client_update,
};
pub use device::{DeviceArgs, DeviceCommand, SyncCommand, device, qr_text};
pub use devices::{devices_list, devices_unlink};
pub use keys::{keys_list, keys_revoke, keys_rotate};
pub use server::serve;
pub use user::{
    user_add, user_delete, user_list, user_reset_link, user_set_disabled, user_show,
    user_verify_email,
};

use anyhow::{Context, bail};

use crate::store::{self, DynStore};

async fn open(database_url: &str) -> anyhow::Result<DynStore> {
    let store = store::open(database_url)
        .await
        .with_context(|| format!("opening {}", store::redact_url(database_url)))?;
    store.migrate().await.context("migrating the database")?;
    Ok(store)
}

pub async fn migrate(database_url: &str) -> anyhow::Result<()> {
    open(database_url).await?;
    println!("database is up to date");
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

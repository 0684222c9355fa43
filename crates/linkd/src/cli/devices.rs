//! `linkd devices`: the devices linked to a person, and unlinking one.

use anyhow::Context;

use super::{ADMIN, account_by_email, open};
use crate::clock::{Clock, SystemClock};

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
    crate::devices::unlink(
        store.as_ref(),
        &device,
        crate::webhooks::UnlinkReason::Operator,
        ADMIN,
        SystemClock.now(),
    )
    .await?;
    println!("unlinked {} ({})", device.label, device.app_name);
    Ok(())
}

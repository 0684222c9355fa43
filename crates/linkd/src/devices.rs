//! Linked devices: who owns which, renaming, unlinking (by the person, by
//! the device itself or by the operator), and the activity each leaves.

use crate::device_flow::{self, clean_device_name};
use crate::store::{Activity, ActivityKind, LinkedDevice, Store, StoreError, Timestamp};
use crate::webhooks::{Event, UnlinkReason};

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "the name must have 1 to {} visible characters",
        device_flow::MAX_DEVICE_NAME_CHARS
    )]
    BadName,
    /// No linked device of this account has the id: it may not exist, be
    /// unlinked already, or belong to someone else, and the answer does
    /// not tell which.
    #[error("no such device")]
    NotFound,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One of the account's own devices that is still linked.
pub async fn own_device(
    store: &dyn Store,
    account_id: &str,
    device_id: &str,
) -> Result<LinkedDevice, DeviceError> {
    match store.get_linked_device(device_id).await? {
        Some(d) if d.account_id == account_id && d.revoked_at.is_none() => Ok(d),
        _ => Err(DeviceError::NotFound),
    }
}

/// The person unlinks one of their own devices.
pub async fn unlink_own(
    store: &dyn Store,
    account_id: &str,
    device_id: &str,
    ip: &str,
    now: Timestamp,
) -> Result<(), DeviceError> {
    let device = own_device(store, account_id, device_id).await?;
    unlink(store, &device, UnlinkReason::Person, ip, now).await?;
    Ok(())
}

/// Unlinks a device, withdraws the consent given to its app, and notes
/// it in the person's activity and in a `device.unlinked` webhook event
/// (written with the unlink; the outbox's workers find it within a
/// second). False when it was already unlinked.
pub async fn unlink(
    store: &dyn Store,
    device: &LinkedDevice,
    reason: UnlinkReason,
    ip: &str,
    now: Timestamp,
) -> Result<bool, StoreError> {
    let event = Event::device_unlinked(device, reason, ip, now).to_outbox();
    let unlinked = store
        .revoke_linked_device(&device.id, now, std::slice::from_ref(&event))
        .await?;
    if unlinked {
        record(store, device, ActivityKind::Unlinked, ip, now).await?;
        // Unlinking an app withdraws the consent given to it: its next
        // authorization request shows the confirmation page again.
        store
            .withdraw_consents(&device.account_id, &device.client_id)
            .await?;
        // Wakes the account's sync streams, which re-check their device.
        crate::sync::wake(store, &device.account_id).await;
    }
    Ok(unlinked)
}

/// Unlinks every device of an account (when an operator disables it):
/// the same path as the person's own Unlink, so tokens stop at once.
pub async fn unlink_all(
    store: &dyn Store,
    account_id: &str,
    ip: &str,
    now: Timestamp,
) -> Result<usize, StoreError> {
    let mut count = 0;
    for device in store.list_linked_devices(account_id).await? {
        if unlink(store, &device, UnlinkReason::AccountDisabled, ip, now).await? {
            count += 1;
        }
    }
    Ok(count)
}

pub async fn record(
    store: &dyn Store,
    device: &LinkedDevice,
    kind: ActivityKind,
    ip: &str,
    now: Timestamp,
) -> Result<(), StoreError> {
    store
        .insert_activity(&Activity {
            account_id: device.account_id.clone(),
            kind,
            client_id: device.client_id.clone(),
            app_name: device.app_name.clone(),
            device: Some(device.label.clone()),
            ip: ip.to_string(),
            at: now,
        })
        .await
}

/// Renames one of the account's devices.
pub async fn rename(
    store: &dyn Store,
    account_id: &str,
    device_id: &str,
    name: &str,
) -> Result<String, DeviceError> {
    if name.chars().count() > device_flow::MAX_DEVICE_NAME_CHARS {
        return Err(DeviceError::BadName);
    }
    let label = clean_device_name(Some(name)).ok_or(DeviceError::BadName)?;
    if store
        .rename_linked_device(device_id, account_id, &label)
        .await?
    {
        Ok(label)
    } else {
        Err(DeviceError::NotFound)
    }
}

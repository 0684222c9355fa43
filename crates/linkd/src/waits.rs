//! Devices waiting for a person's decision: the registry behind the long
//! poll `POST /oauth/device/wait`. One store subscriber per instance wakes
//! the waiters of a decided code, so an approval made on any instance
//! reaches a device waiting on this one as soon as the event arrives.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::store::{DynStore, Event};

/// Concurrent waits on one device code: a device and one retry.
pub const MAX_WAITS_PER_CODE: u32 = 2;
/// Concurrent waits from one network (IPv4 address, IPv6 /64), so one
/// client cannot pin down the server's connections.
pub const MAX_WAITS_PER_NETWORK: u32 = 512;
/// Longest a wait lasts before it answers "still pending"; short enough for
/// proxies with a 60 s idle timeout.
pub const MAX_WAIT_SECS: u64 = 30;

#[derive(Default)]
pub struct Waits {
    inner: Mutex<Registry>,
}

#[derive(Default)]
struct Registry {
    /// Authorization id → its waiters.
    codes: HashMap<String, Slot>,
    /// Open waits per network.
    networks: HashMap<IpAddr, u32>,
}

struct Slot {
    notify: Arc<Notify>,
    waiters: u32,
}

/// Why a wait was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum Busy {
    Code,
    Network,
}

/// A place in the registry; leaving it (drop) frees the place.
pub struct Ticket {
    waits: Arc<Waits>,
    authorization_id: String,
    network: IpAddr,
    notify: Arc<Notify>,
}

impl Ticket {
    /// Resolves when the authorization's state may have changed. Enable the
    /// returned future (or poll it once) before re-reading the store, so a
    /// decision between the read and the wait is not missed.
    pub fn notified(&self) -> tokio::sync::futures::Notified<'_> {
        self.notify.notified()
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut registry = self.waits.lock();
        if let Some(slot) = registry.codes.get_mut(&self.authorization_id) {
            slot.waiters -= 1;
            if slot.waiters == 0 {
                registry.codes.remove(&self.authorization_id);
            }
        }
        if let Some(open) = registry.networks.get_mut(&self.network) {
            *open -= 1;
            if *open == 0 {
                registry.networks.remove(&self.network);
            }
        }
    }
}

impl Waits {
    fn lock(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes a place to wait on `authorization_id` for a client on `network`.
    pub fn enter(
        self: &Arc<Self>,
        authorization_id: &str,
        network: IpAddr,
    ) -> Result<Ticket, Busy> {
        let mut registry = self.lock();
        let open = registry.networks.get(&network).copied().unwrap_or(0);
        if open >= MAX_WAITS_PER_NETWORK {
            return Err(Busy::Network);
        }
        let slot = registry
            .codes
            .entry(authorization_id.to_string())
            .or_insert_with(|| Slot {
                notify: Arc::new(Notify::new()),
                waiters: 0,
            });
        if slot.waiters >= MAX_WAITS_PER_CODE {
            return Err(Busy::Code);
        }
        slot.waiters += 1;
        let notify = slot.notify.clone();
        *registry.networks.entry(network).or_insert(0) += 1;
        Ok(Ticket {
            waits: self.clone(),
            authorization_id: authorization_id.to_string(),
            network,
            notify,
        })
    }

    /// Wakes everyone waiting on this authorization.
    pub fn wake(&self, authorization_id: &str) {
        if let Some(slot) = self.lock().codes.get(authorization_id) {
            slot.notify.notify_waiters();
        }
    }

    /// Wakes every waiter; each re-reads its code's state from the store.
    pub fn wake_all(&self) {
        for slot in self.lock().codes.values() {
            slot.notify.notify_waiters();
        }
    }

    /// Open waits, for metrics.
    pub fn len(&self) -> usize {
        self.lock().codes.values().map(|s| s.waiters as usize).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.lock().codes.is_empty()
    }

    /// Feeds decisions from the store's event stream to the waiters, for
    /// as long as the server runs.
    pub async fn relay(self: Arc<Self>, store: DynStore) {
        use tokio::sync::broadcast::error::RecvError;
        let mut events = store.subscribe();
        loop {
            match events.recv().await {
                Ok(Event::Decided { authorization_id }) => self.wake(&authorization_id),
                Ok(_) => {}
                // Missed events: nobody knows whose code was decided, so
                // everyone looks; the store is the truth.
                Err(RecvError::Lagged(_)) => self.wake_all(),
                Err(RecvError::Closed) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn places_are_limited_and_freed() {
        let waits = Arc::new(Waits::default());
        let net: IpAddr = "192.0.2.1".parse().unwrap();
        let a = waits.enter("a", net).unwrap();
        let b = waits.enter("a", net).unwrap();
        assert_eq!(waits.enter("a", net).err(), Some(Busy::Code));
        drop(a);
        let c = waits.enter("a", net).unwrap();
        assert_eq!(waits.len(), 2);
        drop((b, c));
        assert!(waits.is_empty());

        let mut held = Vec::new();
        for i in 0..MAX_WAITS_PER_NETWORK {
            held.push(waits.enter(&i.to_string(), net).unwrap());
        }
        assert_eq!(waits.enter("x", net).err(), Some(Busy::Network));
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(waits.enter("x", other).is_ok());
        drop(held);
        assert!(waits.enter("x", net).is_ok());
    }

    #[tokio::test]
    async fn wake_reaches_an_enabled_waiter() {
        let waits = Arc::new(Waits::default());
        let ticket = waits.enter("a", "192.0.2.1".parse().unwrap()).unwrap();
        let notified = ticket.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        // The decision lands after the waiter enabled but before it awaits.
        waits.wake("a");
        tokio::time::timeout(std::time::Duration::from_secs(1), notified)
            .await
            .expect("woken");
    }
}

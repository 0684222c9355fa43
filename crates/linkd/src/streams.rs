//! Caps on open settings event streams, per linked device and per
//! account: each stream holds a connection and a store subscription for
//! as long as the device likes, so one token must not open thousands.
//! Counted in memory per instance, like the poll and settings-write limits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Which cap a new stream would break.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StreamsFull {
    #[error("this device already has {0} open event streams; close one before opening another")]
    Device(u32),
    #[error(
        "this account's devices already have {0} open event streams; close one before opening another"
    )]
    Account(u32),
}

/// Open streams per device and per account.
pub struct Streams {
    per_device: u32,
    per_account: u32,
    open: Mutex<Open>,
}

#[derive(Default)]
struct Open {
    devices: HashMap<String, u32>,
    accounts: HashMap<String, u32>,
}

/// One open stream's place; given back when the stream ends (dropped).
pub struct StreamSlot {
    streams: Arc<Streams>,
    device: String,
    account: String,
}

impl Streams {
    /// `0` turns a cap off.
    pub fn new(per_device: u32, per_account: u32) -> Self {
        Streams {
            per_device,
            per_account,
            open: Mutex::new(Open::default()),
        }
    }

    /// A place for one more stream of `device` (of `account`), taken
    /// atomically: a burst of opens gets no more than the caps allow.
    pub fn open(self: &Arc<Self>, device: &str, account: &str) -> Result<StreamSlot, StreamsFull> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let on_device = open.devices.get(device).copied().unwrap_or(0);
        if self.per_device > 0 && on_device >= self.per_device {
            return Err(StreamsFull::Device(self.per_device));
        }
        let on_account = open.accounts.get(account).copied().unwrap_or(0);
        if self.per_account > 0 && on_account >= self.per_account {
            return Err(StreamsFull::Account(self.per_account));
        }
        open.devices.insert(device.to_string(), on_device + 1);
        open.accounts.insert(account.to_string(), on_account + 1);
        Ok(StreamSlot {
            streams: self.clone(),
            device: device.to_string(),
            account: account.to_string(),
        })
    }

    /// Streams open for `device` now.
    pub fn open_for_device(&self, device: &str) -> u32 {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.devices.get(device).copied().unwrap_or(0)
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.streams.open.lock().unwrap_or_else(|e| e.into_inner());
        let Open { devices, accounts } = &mut *open;
        for (counts, key) in [(devices, &self.device), (accounts, &self.account)] {
            if let Some(n) = counts.get_mut(key.as_str()) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(key.as_str());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_hold_and_closed_streams_free_their_place() {
        let streams = Arc::new(Streams::new(2, 3));
        let a1 = streams.open("tv", "ann").unwrap();
        let _a2 = streams.open("tv", "ann").unwrap();
        assert_eq!(
            streams.open("tv", "ann").err(),
            Some(StreamsFull::Device(2))
        );
        let _b1 = streams.open("phone", "ann").unwrap();
        assert_eq!(
            streams.open("laptop", "ann").err(),
            Some(StreamsFull::Account(3))
        );
        // Another account is not affected.
        let _c = streams.open("radio", "bob").unwrap();
        drop(a1);
        assert_eq!(streams.open_for_device("tv"), 1);
        let _a3 = streams.open("tv", "ann").unwrap();
        let off = Arc::new(Streams::new(0, 0));
        let held: Vec<_> = (0..100).map(|_| off.open("tv", "ann").unwrap()).collect();
        assert_eq!(off.open_for_device("tv"), 100);
        drop(held);
        assert_eq!(off.open_for_device("tv"), 0);
    }
}

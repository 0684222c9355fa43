//! Rate limits and brute-force counters (RFC 8628 §5.1, §5.2): fixed
//! windows counted in memory per instance. With several instances behind
//! one address each counts on its own, so the effective limit is the
//! configured one times the number of instances (see SECURITY.md).

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::store::Timestamp;

/// Up to `max` events per key in each `window` seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub max: u32,
    pub window: i64,
}

impl Limit {
    pub const fn new(max: u32, window: i64) -> Self {
        Limit { max, window }
    }

    /// `max` 0 turns the limit off.
    pub fn is_off(&self) -> bool {
        self.max == 0
    }
}

/// How long to wait before trying again, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub i64);

struct Window {
    start: Timestamp,
    count: u32,
}

/// Counts events per key in fixed windows.
pub struct Counter<K> {
    limit: Limit,
    windows: Mutex<HashMap<K, Window>>,
}

/// Entries kept before old windows are swept, so a flood of distinct keys
/// cannot grow memory without bound.
const SWEEP_AT: usize = 100_000;

impl<K: Hash + Eq + Clone> Counter<K> {
    pub fn new(limit: Limit) -> Self {
        Counter {
            limit,
            windows: Mutex::new(HashMap::new()),
        }
    }

    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// Whether another event is allowed now, without counting one.
    pub fn check(&self, key: &K, now: Timestamp) -> Result<(), RetryAfter> {
        if self.limit.is_off() {
            return Ok(());
        }
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        match windows.get(key) {
            Some(w) if now < w.start + self.limit.window && w.count >= self.limit.max => {
                Err(RetryAfter(w.start + self.limit.window - now))
            }
            _ => Ok(()),
        }
    }

    /// Counts one event; `Err` when it goes over the limit (the event still
    /// counts, so hammering a locked key never reopens it early).
    pub fn hit(&self, key: &K, now: Timestamp) -> Result<(), RetryAfter> {
        if self.limit.is_off() {
            return Ok(());
        }
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if windows.len() >= SWEEP_AT {
            let window = self.limit.window;
            windows.retain(|_, w| now < w.start + window);
        }
        let w = windows.entry(key.clone()).or_insert(Window {
            start: now,
            count: 0,
        });
        if now >= w.start + self.limit.window {
            *w = Window {
                start: now,
                count: 0,
            };
        }
        w.count = w.count.saturating_add(1);
        if w.count > self.limit.max {
            Err(RetryAfter((w.start + self.limit.window - now).max(1)))
        } else {
            Ok(())
        }
    }

    /// Forgets a key (after a successful sign-in, say).
    pub fn reset(&self, key: &K) {
        self.windows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Events counted for `key` in its current window.
    pub fn count(&self, key: &K, now: Timestamp) -> u32 {
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        match windows.get(key) {
            Some(w) if now < w.start + self.limit.window => w.count,
            _ => 0,
        }
    }
}

/// The network an address belongs to for counting: the address itself for
/// IPv4, its /64 for IPv6 (one subscriber usually holds a whole /64, so
/// per-address limits would be no limit at all).
pub fn network_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let mut segments = v6.segments();
            segments[4..].fill(0);
            IpAddr::from(segments)
        }
    }
}

/// Whether two addresses are on the same network as a person would see it:
/// the same /24 for IPv4, the same /64 for IPv6. Used to warn when a code
/// was requested from elsewhere (device-code phishing).
pub fn same_network(a: IpAddr, b: IpAddr) -> bool {
    match (network_key(a), network_key(b)) {
        (IpAddr::V4(a), IpAddr::V4(b)) => a.octets()[..3] == b.octets()[..3],
        (a, b) => a == b,
    }
}

/// Failures per key with a growing wait between attempts once a free
/// allowance is used up (sign-in: per account and per network). The count
/// starts over `reset_after` seconds after the last failure.
pub struct Backoff<K> {
    free: u32,
    reset_after: i64,
    entries: Mutex<HashMap<K, (u32, Timestamp)>>,
}

impl<K: Hash + Eq + Clone> Backoff<K> {
    pub fn new(free: u32, reset_after: i64) -> Self {
        Backoff {
            free,
            reset_after,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// Whether an attempt may be made now.
    pub fn check(&self, key: &K, now: Timestamp) -> Result<(), RetryAfter> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(key) {
            Some(&(failures, last)) if now < last + self.reset_after => {
                let ready = last + sign_in_delay(failures, self.free);
                if now < ready {
                    Err(RetryAfter(ready - now))
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }

    pub fn fail(&self, key: &K, now: Timestamp) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= SWEEP_AT {
            let reset_after = self.reset_after;
            entries.retain(|_, (_, last)| now < *last + reset_after);
        }
        let entry = entries.entry(key.clone()).or_insert((0, now));
        if now >= entry.1 + self.reset_after {
            entry.0 = 0;
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
    }

    pub fn reset(&self, key: &K) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// Every limit linkd enforces, built from the configuration.
pub struct Limits {
    /// Wrong codes entered by one signed-in session (RFC 8628 §5.1).
    pub code_failures_per_session: Counter<String>,
    /// Wrong codes entered from one network.
    pub code_failures_per_network: Counter<IpAddr>,
    /// Wrong codes entered on the whole server: the bound that keeps the
    /// chance of guessing any given live code below 2^-20 (SECURITY.md).
    pub code_failures_global: Counter<()>,
    pub device_authorizations_per_network: Counter<IpAddr>,
    pub device_authorizations_per_client: Counter<String>,
    pub token_polls_per_network: Counter<IpAddr>,
    pub sign_in_per_account: Backoff<String>,
    pub sign_in_per_network: Backoff<IpAddr>,
    pub sign_ups_per_network: Counter<IpAddr>,
}

impl Limits {
    pub fn new(c: &crate::Config) -> Self {
        Limits {
            code_failures_per_session: Counter::new(Limit::new(c.code_failures_per_session, 600)),
            code_failures_per_network: Counter::new(Limit::new(c.code_failures_per_network, 600)),
            code_failures_global: Counter::new(Limit::new(c.code_failures_per_minute, 60)),
            device_authorizations_per_network: Counter::new(Limit::new(
                c.device_authorizations_per_network,
                60,
            )),
            device_authorizations_per_client: Counter::new(Limit::new(
                c.device_authorizations_per_client,
                60,
            )),
            token_polls_per_network: Counter::new(Limit::new(c.token_polls_per_network, 60)),
            sign_in_per_account: Backoff::new(c.sign_in_free_failures, 900),
            sign_in_per_network: Backoff::new(c.sign_in_free_failures.saturating_mul(4), 900),
            sign_ups_per_network: Counter::new(Limit::new(c.sign_ups_per_network, 3600)),
        }
    }

    /// Whether this session and network may look up another code.
    pub fn check_code_entry(
        &self,
        session: &str,
        ip: IpAddr,
        now: Timestamp,
    ) -> Result<(), RetryAfter> {
        self.code_failures_per_session
            .check(&session.to_string(), now)?;
        self.code_failures_per_network
            .check(&network_key(ip), now)?;
        self.code_failures_global.check(&(), now)
    }

    /// Counts a wrong code against the session, the network and the server.
    pub fn code_entry_failed(
        &self,
        session: &str,
        ip: IpAddr,
        now: Timestamp,
    ) -> Result<(), RetryAfter> {
        let session = self
            .code_failures_per_session
            .hit(&session.to_string(), now);
        let network = self.code_failures_per_network.hit(&network_key(ip), now);
        let global = self.code_failures_global.hit(&(), now);
        session.and(network).and(global)
    }
}

/// Sign-in delays grow with each failure past a free allowance: 1 s, 2 s,
/// 4 s ... capped at 15 minutes.
pub fn sign_in_delay(failures: u32, free: u32) -> i64 {
    if failures < free {
        return 0;
    }
    let doublings = (failures - free).min(10);
    (1i64 << doublings).min(900)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counter_locks_after_max_and_reopens_after_the_window() {
        let c = Counter::new(Limit::new(3, 60));
        for _ in 0..3 {
            assert_eq!(c.hit(&"k", 0), Ok(()));
        }
        assert_eq!(c.hit(&"k", 10), Err(RetryAfter(50)));
        assert_eq!(c.check(&"k", 59), Err(RetryAfter(1)));
        assert_eq!(c.check(&"other", 10), Ok(()));
        assert_eq!(c.check(&"k", 60), Ok(()));
        assert_eq!(c.hit(&"k", 60), Ok(()));
        assert_eq!(c.count(&"k", 60), 1);
        c.reset(&"k");
        assert_eq!(c.count(&"k", 60), 0);
    }

    #[test]
    fn zero_turns_a_limit_off() {
        let c = Counter::new(Limit::new(0, 60));
        for _ in 0..1000 {
            assert_eq!(c.hit(&1, 0), Ok(()));
        }
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_v4_as_v4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(network_key(a), network_key(b));
        assert_ne!(network_key(a), network_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(network_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
        assert!(same_network(
            "192.0.2.7".parse().unwrap(),
            "192.0.2.200".parse().unwrap()
        ));
        assert!(!same_network(
            "192.0.2.7".parse().unwrap(),
            "198.51.100.7".parse().unwrap()
        ));
        assert!(same_network(a, b));
    }

    #[test]
    fn backoff_waits_longer_after_each_failure() {
        let b = Backoff::new(2, 900);
        b.fail(&"a", 0);
        b.fail(&"a", 0);
        assert_eq!(b.check(&"a", 0), Err(RetryAfter(1)));
        assert_eq!(b.check(&"a", 1), Ok(()));
        b.fail(&"a", 1);
        assert_eq!(b.check(&"a", 2), Err(RetryAfter(1)));
        assert_eq!(b.check(&"a", 3), Ok(()));
        b.fail(&"a", 3);
        assert_eq!(b.check(&"a", 4), Err(RetryAfter(3)));
        // Quiet for the reset period: the count starts over.
        assert_eq!(b.check(&"a", 903), Ok(()));
        b.reset(&"a");
        assert_eq!(b.check(&"a", 4), Ok(()));
    }

    #[test]
    fn sign_in_delays_double_and_cap() {
        assert_eq!(sign_in_delay(2, 3), 0);
        assert_eq!(sign_in_delay(3, 3), 1);
        assert_eq!(sign_in_delay(5, 3), 4);
        assert_eq!(sign_in_delay(40, 3), 900);
    }
}

//! Rate limits and brute-force counters (RFC 8628 §5.1, §5.2) in fixed
//! windows. One instance counts them in memory; instances sharing a
//! PostgreSQL database count the security limits there, once for all of
//! them (SECURITY.md, "Several instances").

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::store::{DynStore, LimitOp, LimitOpKind, StoreError, Timestamp};

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

    /// Events still allowed and when the window ends, from a live window's
    /// count and end (`None`: nothing counted); `None` when off.
    fn remaining_of(
        &self,
        live: Option<(i64, Timestamp)>,
        now: Timestamp,
    ) -> Option<(u32, Timestamp)> {
        if self.is_off() {
            return None;
        }
        Some(match live {
            Some((count, ends)) if now < ends => (
                u32::try_from(i64::from(self.max).saturating_sub(count).max(0)).unwrap_or(0),
                ends,
            ),
            _ => (self.max, now + self.window),
        })
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

    /// `key`'s window as of `now`, started afresh if the last one is over.
    fn current<'a>(
        &self,
        windows: &'a mut HashMap<K, Window>,
        key: &K,
        now: Timestamp,
    ) -> &'a mut Window {
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
        w
    }

    /// Counts one event; `Err` when it goes over the limit (the event still
    /// counts, so hammering a locked key never reopens it early).
    pub fn hit(&self, key: &K, now: Timestamp) -> Result<(), RetryAfter> {
        if self.limit.is_off() {
            return Ok(());
        }
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let w = self.current(&mut windows, key, now);
        w.count = w.count.saturating_add(1);
        if w.count > self.limit.max {
            Err(RetryAfter((w.start + self.limit.window - now).max(1)))
        } else {
            Ok(())
        }
    }

    /// Takes a slot if one is free, atomically: the check and the count
    /// are one step under the lock, so of a burst of any size at most
    /// `max` get `Ok` (and the refused ones do not count).
    pub fn take(&self, key: &K, now: Timestamp) -> Result<(), RetryAfter> {
        if self.limit.is_off() {
            return Ok(());
        }
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        let w = self.current(&mut windows, key, now);
        if w.count >= self.limit.max {
            return Err(RetryAfter((w.start + self.limit.window - now).max(1)));
        }
        w.count += 1;
        Ok(())
    }

    /// Gives back a slot taken by [`Counter::take`] in the window it was
    /// taken in (the attempt turned out not to count).
    pub fn give_back(&self, key: &K, taken_at: Timestamp) {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(w) = windows.get_mut(key)
            && taken_at >= w.start
            && taken_at < w.start + self.limit.window
        {
            w.count = w.count.saturating_sub(1);
        }
    }

    /// Forgets a key (after a successful sign-in, say).
    pub fn reset(&self, key: &K) {
        self.windows
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }

    /// Events still allowed for `key` in its current window, and when that
    /// window ends; `None` when the limit is off.
    pub fn remaining(&self, key: &K, now: Timestamp) -> Option<(u32, Timestamp)> {
        if self.limit.is_off() {
            return None;
        }
        let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        Some(match windows.get(key) {
            Some(w) if now < w.start + self.limit.window => (
                self.limit.max.saturating_sub(w.count),
                w.start + self.limit.window,
            ),
            _ => (self.limit.max, now + self.limit.window),
        })
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
/// allowance is used up (sign-in: per account and network, and per
/// network). An attempt is counted as a failure when it starts and given
/// back if it succeeds, so a burst gets no more attempts than a sequence.
/// The count starts over `reset_after` seconds after the last failure.
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

    /// Starts an attempt if no wait is due, counting it as a failure in
    /// advance; `Err` says how long to wait (and counts nothing).
    pub fn reserve(&self, key: &K, now: Timestamp) -> Result<(), RetryAfter> {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= SWEEP_AT {
            let reset_after = self.reset_after;
            entries.retain(|_, (_, last)| now < *last + reset_after);
        }
        let entry = entries.entry(key.clone()).or_insert((0, now));
        if now >= entry.1 + self.reset_after {
            *entry = (0, now);
        }
        let ready = entry.1 + sign_in_delay(entry.0, self.free);
        if entry.0 > 0 && now < ready {
            return Err(RetryAfter(ready - now));
        }
        entry.0 = entry.0.saturating_add(1);
        entry.1 = now;
        Ok(())
    }

    /// Gives back an attempt that succeeded.
    pub fn give_back(&self, key: &K) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(entry) = entries.get_mut(key) {
            entry.0 = entry.0.saturating_sub(1);
        }
    }

    pub fn reset(&self, key: &K) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// Per account, the networks with failed sign-ins in the last
/// `reset_after` seconds, at most `cap` of them: a password guesser gets
/// the per-network allowance from a few networks, not from every network
/// it holds. Networks the account signed in from before are not held to
/// the cap (see [`Limits::begin_sign_in`]).
struct FailingNetworks {
    cap: u32,
    reset_after: i64,
    accounts: Mutex<HashMap<String, Vec<(IpAddr, Timestamp)>>>,
}

impl FailingNetworks {
    /// Admits an attempt from `network`, recording it as failing in
    /// advance, if it is failing already or the account has room.
    fn admit(&self, account: &str, network: IpAddr, now: Timestamp) -> Result<(), RetryAfter> {
        if self.cap == 0 {
            return Ok(());
        }
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        let reset_after = self.reset_after;
        if accounts.len() >= SWEEP_AT {
            accounts.retain(|_, nets| nets.iter().any(|(_, last)| now < last + reset_after));
        }
        let nets = accounts.entry(account.to_string()).or_default();
        nets.retain(|(_, last)| now < last + reset_after);
        if let Some(entry) = nets.iter_mut().find(|(n, _)| *n == network) {
            entry.1 = now;
            return Ok(());
        }
        if nets.len() >= self.cap as usize {
            let oldest = nets.iter().map(|(_, last)| *last).min().unwrap_or(now);
            return Err(RetryAfter((oldest + reset_after - now).max(1)));
        }
        nets.push((network, now));
        Ok(())
    }

    fn forget(&self, account: &str, network: IpAddr) {
        let mut accounts = self.accounts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(nets) = accounts.get_mut(account) {
            nets.retain(|(n, _)| *n != network);
        }
    }
}

/// How long a network stays among an account's failing networks after
/// its last failed sign-in.
const FAILING_NETWORK_SECS: i64 = 900;

/// How long a network an account signed in from stays known to it.
const KNOWN_NETWORK_SECS: i64 = 30 * 86_400;

/// A sign-in in progress: it holds a failure in advance on each of its
/// counters until [`Limits::sign_in_succeeded`] gives them back.
#[must_use]
pub struct SignInAttempt {
    account: String,
    network: IpAddr,
}

/// A code lookup in progress: it holds one wrong code in advance on its
/// session, network and (while there is room) the server's budget, until
/// [`Limits::code_entry_counts_not`] gives them back.
#[must_use]
pub struct CodeAttempt {
    session: String,
    network: IpAddr,
    global: bool,
    at: Timestamp,
    /// Set when the server-wide budget is spent: only a code requested
    /// from the browser's own network may be shown (SECURITY.md).
    pub paused: Option<RetryAfter>,
    /// Wrong codes this session may still enter from this network, this
    /// attempt counted, before code entry pauses, and when the pause would
    /// end; `None` while neither limit is on. With several instances the
    /// count is the shared counters' as this attempt took its tries.
    pub tries_left: Option<(u32, Timestamp)>,
}

/// The nearer of two limits' tries left.
fn fewest(a: Option<(u32, Timestamp)>, b: Option<(u32, Timestamp)>) -> Option<(u32, Timestamp)> {
    match (a, b) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

impl CodeAttempt {
    pub fn network(&self) -> IpAddr {
        self.network
    }
}

/// Why a limited step may not go ahead.
#[derive(Debug)]
pub enum Refused {
    /// Over the limit: try again after this long.
    Wait(RetryAfter),
    /// The shared counters could not be reached. The step is refused as
    /// the endpoint refuses any store outage (503): letting it through
    /// would open every limit while the database is away.
    Store(StoreError),
}

impl From<RetryAfter> for Refused {
    fn from(wait: RetryAfter) -> Self {
        Refused::Wait(wait)
    }
}

/// The limits' names in the shared table (migration 0025).
mod shared {
    pub const CODE_SESSION: &str = "code_session";
    pub const CODE_NETWORK: &str = "code_network";
    pub const CODE_SERVER: &str = "code_server";
    pub const DEVICE_AUTHORIZATION_NETWORK: &str = "device_authorization_network";
    pub const DEVICE_AUTHORIZATION_CLIENT: &str = "device_authorization_client";
    pub const SIGN_IN_NETWORK: &str = "sign_in_network";
    pub const SIGN_IN_ACCOUNT: &str = "sign_in_account";
    /// Its known networks are kept under `sign_in_failing:known`.
    pub const SIGN_IN_FAILING: &str = "sign_in_failing";
    pub const SIGN_IN_KNOWN: &str = "sign_in_failing:known";
    pub const SIGN_UP_NETWORK: &str = "sign_up_network";
    pub const RESET_NETWORK: &str = "password_reset_network";
    pub const RESET_EMAIL: &str = "password_reset_email";
    pub const VERIFICATION_MAIL: &str = "verification_mail_account";
}

/// An email as the shared table keys it: hashed, so that what visitors
/// typed in the email field (an address without an account, or their
/// password by mistake) is not kept in clear; hashing also bounds the
/// key's length for the index.
fn email_key(email: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(email.as_bytes()))
}

fn take<'a>(name: &'static str, key: &'a str, limit: Limit) -> LimitOp<'a> {
    LimitOp {
        kind: LimitOpKind::Take,
        name,
        key,
        sub: "",
        a: i64::from(limit.max),
        b: limit.window,
    }
}

fn step<'a>(kind: LimitOpKind, name: &'static str, key: &'a str, sub: &'a str) -> LimitOp<'a> {
    LimitOp {
        kind,
        name,
        key,
        sub,
        a: 0,
        b: 0,
    }
}

/// The first refusal among a tally's answers, if any (a `Try` only
/// reports, and is read by its caller).
fn first_refusal(ops: &[LimitOp<'_>], waits: &[i64]) -> Result<(), Refused> {
    match ops
        .iter()
        .zip(waits)
        .find(|(op, wait)| op.kind != LimitOpKind::Try && **wait > 0)
    {
        Some((_, wait)) => Err(Refused::Wait(RetryAfter(*wait))),
        None => Ok(()),
    }
}

/// Every limit linkd enforces, built from the configuration.
///
/// The security limits (code guessing, sign-in, sign-up, device
/// authorizations, password resets, verification mails) are counted in memory on one
/// instance, and in the database when the store is shared by several
/// ([`Limits::shared_in`]): then each request's limits are one atomic
/// round trip, so that N instances allow what one would. Token polls and
/// settings writes stay in memory on every instance (SECURITY.md,
/// "Several instances").
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
    /// Failed sign-ins per account from one network.
    sign_in_per_account_network: Backoff<(String, IpAddr)>,
    /// Failed sign-ins from one network over all accounts.
    sign_in_per_network: Backoff<IpAddr>,
    sign_in_failing_networks: FailingNetworks,
    /// Networks each account signed in from, with when.
    sign_in_known_networks: Mutex<HashMap<(String, IpAddr), Timestamp>>,
    pub sign_ups_per_network: Counter<IpAddr>,
    /// Reset mails asked for per address (lower case) and per network.
    pub password_resets_per_email: Counter<String>,
    pub password_resets_per_network: Counter<IpAddr>,
    /// Verification mails asked for per account.
    pub verification_mails_per_account: Counter<String>,
    /// Settings writes per linked device.
    pub sync_writes_per_device: Counter<String>,
    /// Passkey ceremonies started per network: each stores a challenge.
    pub passkey_ceremonies_per_network: Counter<IpAddr>,
    /// At most N password hashes at once, server-wide.
    pub hashing: crate::hashing::HashPool,
    /// Code lookups that reached the store, for `/metrics` and tests.
    pub code_lookups: std::sync::atomic::AtomicU64,
    /// Requesting networks blocked by reports ("I didn't start this").
    pub blocked_networks: crate::phishing::BlockedNetworks,
    /// The store that counts the security limits for every instance, when
    /// there are several.
    shared: Option<DynStore>,
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
            // Forgotten after an hour without failures, longer than the
            // longest wait (15 minutes), so waiting out the longest delay
            // does not earn a fresh free allowance.
            sign_in_per_account_network: Backoff::new(c.sign_in_free_failures, 3600),
            sign_in_per_network: Backoff::new(c.sign_in_free_failures.saturating_mul(4), 3600),
            sign_in_failing_networks: FailingNetworks {
                cap: c.sign_in_failing_networks,
                reset_after: FAILING_NETWORK_SECS,
                accounts: Mutex::new(HashMap::new()),
            },
            sign_in_known_networks: Mutex::new(HashMap::new()),
            sign_ups_per_network: Counter::new(Limit::new(c.sign_ups_per_network, 3600)),
            password_resets_per_email: Counter::new(Limit::new(c.password_resets_per_email, 3600)),
            password_resets_per_network: Counter::new(Limit::new(
                c.password_resets_per_network,
                3600,
            )),
            verification_mails_per_account: Counter::new(Limit::new(
                c.verification_mails_per_account,
                3600,
            )),
            sync_writes_per_device: Counter::new(Limit::new(c.sync_writes_per_device, 60)),
            passkey_ceremonies_per_network: Counter::new(Limit::new(
                c.passkey_ceremonies_per_network,
                60,
            )),
            hashing: crate::hashing::HashPool::with_wait(
                c.password_hashes_at_once,
                std::time::Duration::from_millis(c.password_hash_wait_ms),
            ),
            code_lookups: std::sync::atomic::AtomicU64::new(0),
            blocked_networks: crate::phishing::BlockedNetworks::default(),
            shared: None,
        }
    }

    /// Counts the security limits in `store` for every instance sharing
    /// it, when it can (PostgreSQL); otherwise they stay in memory.
    pub fn shared_in(mut self, store: &DynStore) -> Self {
        if store.shares_limits() {
            self.shared = Some(store.clone());
        }
        self
    }

    /// Takes one wrong code in advance from the session, the network and,
    /// while there is room, the server (RFC 8628 §5.1). Taken before the
    /// lookup and atomically, so a burst gets no more lookups than a
    /// sequence. A spent server budget does not refuse: it marks the
    /// attempt `paused`, so that an outsider who spends it cannot stop a
    /// person entering the code of a device on their own network.
    pub async fn begin_code_entry(
        &self,
        session: &str,
        ip: IpAddr,
        now: Timestamp,
    ) -> Result<CodeAttempt, Refused> {
        let network = network_key(ip);
        if let Some(store) = &self.shared {
            let net = network.to_string();
            let ops = [
                take(
                    shared::CODE_SESSION,
                    session,
                    self.code_failures_per_session.limit(),
                ),
                take(
                    shared::CODE_NETWORK,
                    &net,
                    self.code_failures_per_network.limit(),
                ),
                LimitOp {
                    kind: LimitOpKind::Try,
                    ..take(shared::CODE_SERVER, "", self.code_failures_global.limit())
                },
            ];
            // The counts come with the take, so that a wrong code's page
            // can say how many tries are left without a second round trip.
            let read = [
                (shared::CODE_SESSION, session),
                (shared::CODE_NETWORK, &net),
            ];
            let (waits, before) = store
                .tally_and_read_limits(&ops, &read, now)
                .await
                .map_err(Refused::Store)?;
            first_refusal(&ops, &waits)?;
            // Not refused: this attempt took one try of each.
            let left = |limit: Limit, before: Option<_>| {
                let (left, ends) = limit.remaining_of(before, now)?;
                Some((left.saturating_sub(1), ends))
            };
            let paused = (waits[2] > 0).then_some(RetryAfter(waits[2]));
            return Ok(CodeAttempt {
                session: session.to_string(),
                network,
                global: paused.is_none(),
                at: now,
                paused,
                tries_left: fewest(
                    left(
                        self.code_failures_per_session.limit(),
                        before.first().copied().flatten(),
                    ),
                    left(
                        self.code_failures_per_network.limit(),
                        before.get(1).copied().flatten(),
                    ),
                ),
            });
        }
        let session = session.to_string();
        self.code_failures_per_session.take(&session, now)?;
        if let Err(e) = self.code_failures_per_network.take(&network, now) {
            self.code_failures_per_session.give_back(&session, now);
            return Err(e.into());
        }
        let paused = self.code_failures_global.take(&(), now).err();
        Ok(CodeAttempt {
            tries_left: fewest(
                self.code_failures_per_session.remaining(&session, now),
                self.code_failures_per_network.remaining(&network, now),
            ),
            session,
            network,
            global: paused.is_none(),
            at: now,
            paused,
        })
    }

    /// The attempt was no wrong guess (a live code, a malformed one, an
    /// outage): its slots go back. If the shared counters cannot be
    /// reached, the slots stay taken: the safe side.
    pub async fn code_entry_counts_not(&self, attempt: CodeAttempt) {
        if let Some(store) = &self.shared {
            let net = attempt.network.to_string();
            let give = |name, key| LimitOp {
                b: attempt.at,
                ..step(LimitOpKind::Give, name, key, "")
            };
            let mut ops = vec![
                give(shared::CODE_SESSION, &attempt.session),
                give(shared::CODE_NETWORK, &net),
            ];
            if attempt.global {
                ops.push(give(shared::CODE_SERVER, ""));
            }
            if let Err(e) = store.tally_limits(&ops, attempt.at).await {
                tracing::warn!("a code entry's limit slots stay taken: {e}");
            }
            return;
        }
        self.code_failures_per_session
            .give_back(&attempt.session, attempt.at);
        self.code_failures_per_network
            .give_back(&attempt.network, attempt.at);
        if attempt.global {
            self.code_failures_global.give_back(&(), attempt.at);
        }
    }

    /// Takes a device authorization from the network that asks and from
    /// the app, in one step, before the authorization is made.
    pub async fn begin_device_authorization(
        &self,
        ip: IpAddr,
        client_id: &str,
        now: Timestamp,
    ) -> Result<(), (&'static str, Refused)> {
        let network = network_key(ip);
        if let Some(store) = &self.shared {
            let net = network.to_string();
            let ops = [
                take(
                    shared::DEVICE_AUTHORIZATION_NETWORK,
                    &net,
                    self.device_authorizations_per_network.limit(),
                ),
                take(
                    shared::DEVICE_AUTHORIZATION_CLIENT,
                    client_id,
                    self.device_authorizations_per_client.limit(),
                ),
            ];
            let waits = store
                .tally_limits(&ops, now)
                .await
                .map_err(|e| ("store", Refused::Store(e)))?;
            if waits[0] > 0 {
                return Err((
                    "device_authorizations_per_network",
                    Refused::Wait(RetryAfter(waits[0])),
                ));
            }
            if waits[1] > 0 {
                return Err((
                    "device_authorizations_per_client",
                    Refused::Wait(RetryAfter(waits[1])),
                ));
            }
        } else {
            self.device_authorizations_per_network
                .take(&network, now)
                .map_err(|e| ("device_authorizations_per_network", e.into()))?;
            let client = client_id.to_string();
            if let Err(e) = self.device_authorizations_per_client.take(&client, now) {
                self.device_authorizations_per_network
                    .give_back(&network, now);
                return Err(("device_authorizations_per_client", e.into()));
            }
        }
        Ok(())
    }

    /// Takes a sign-up from the network, before any password is hashed.
    pub async fn begin_sign_up(&self, ip: IpAddr, now: Timestamp) -> Result<(), Refused> {
        let network = network_key(ip);
        if let Some(store) = &self.shared {
            let net = network.to_string();
            let ops = [take(
                shared::SIGN_UP_NETWORK,
                &net,
                self.sign_ups_per_network.limit(),
            )];
            let waits = store
                .tally_limits(&ops, now)
                .await
                .map_err(Refused::Store)?;
            return first_refusal(&ops, &waits);
        }
        Ok(self.sign_ups_per_network.take(&network, now)?)
    }

    /// Takes a verification mail from the account's budget, before the
    /// mail is written.
    pub async fn begin_verification_mail(
        &self,
        account_id: &str,
        now: Timestamp,
    ) -> Result<(), Refused> {
        if let Some(store) = &self.shared {
            let ops = [take(
                shared::VERIFICATION_MAIL,
                account_id,
                self.verification_mails_per_account.limit(),
            )];
            let waits = store
                .tally_limits(&ops, now)
                .await
                .map_err(Refused::Store)?;
            return first_refusal(&ops, &waits);
        }
        let account = account_id.to_string();
        Ok(self.verification_mails_per_account.take(&account, now)?)
    }

    /// Takes a reset mail from the network and from the address (lower
    /// case), whether or not an account has it. Asking again for a
    /// refused address still spends the network's budget.
    pub async fn begin_password_reset(
        &self,
        email: &str,
        ip: IpAddr,
        now: Timestamp,
    ) -> Result<(), Refused> {
        let network = network_key(ip);
        let email = email.to_ascii_lowercase();
        if let Some(store) = &self.shared {
            let net = network.to_string();
            let key = email_key(&email);
            let ops = [
                take(
                    shared::RESET_NETWORK,
                    &net,
                    self.password_resets_per_network.limit(),
                ),
                // A refusal for the address keeps the network's slot: a
                // `Try`, which undoes nothing before it.
                LimitOp {
                    kind: LimitOpKind::Try,
                    ..take(
                        shared::RESET_EMAIL,
                        &key,
                        self.password_resets_per_email.limit(),
                    )
                },
            ];
            let waits = store
                .tally_limits(&ops, now)
                .await
                .map_err(Refused::Store)?;
            first_refusal(&ops, &waits)?;
            return match waits[1] {
                0 => Ok(()),
                wait => Err(Refused::Wait(RetryAfter(wait))),
            };
        }
        self.password_resets_per_network.take(&network, now)?;
        Ok(self.password_resets_per_email.take(&email, now)?)
    }

    /// Starts a sign-in for `email` from `ip`, before any password is
    /// hashed: counts a failure in advance per network, per account and
    /// network, and among the account's failing networks. Failures are
    /// counted per account *and* network, so someone else's wrong
    /// passwords on other networks never delay the owner; the cap on
    /// failing networks bounds a guesser with many networks, and does not
    /// apply to a network the account signed in from in the last 30 days.
    /// Counted per email whether or not an account has it, so the delays
    /// say nothing about which accounts exist.
    pub async fn begin_sign_in(
        &self,
        email: &str,
        ip: IpAddr,
        now: Timestamp,
    ) -> Result<SignInAttempt, Refused> {
        let account = email.trim().to_lowercase();
        let network = network_key(ip);
        if let Some(store) = &self.shared {
            let net = network.to_string();
            let key = email_key(&account);
            let ops = [
                LimitOp {
                    a: i64::from(self.sign_in_per_network.free),
                    b: self.sign_in_per_network.reset_after,
                    ..step(LimitOpKind::Reserve, shared::SIGN_IN_NETWORK, &net, "")
                },
                LimitOp {
                    a: i64::from(self.sign_in_per_account_network.free),
                    b: self.sign_in_per_account_network.reset_after,
                    ..step(LimitOpKind::Reserve, shared::SIGN_IN_ACCOUNT, &key, &net)
                },
                LimitOp {
                    a: i64::from(self.sign_in_failing_networks.cap),
                    b: self.sign_in_failing_networks.reset_after,
                    ..step(LimitOpKind::Admit, shared::SIGN_IN_FAILING, &key, &net)
                },
            ];
            let waits = store
                .tally_limits(&ops, now)
                .await
                .map_err(Refused::Store)?;
            first_refusal(&ops, &waits)?;
            return Ok(SignInAttempt { account, network });
        }
        self.sign_in_per_network.reserve(&network, now)?;
        let key = (account, network);
        if let Err(e) = self.sign_in_per_account_network.reserve(&key, now) {
            self.sign_in_per_network.give_back(&network);
            return Err(e.into());
        }
        let known = self
            .sign_in_known_networks
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
            .is_some_and(|at| now < at + KNOWN_NETWORK_SECS);
        if !known && let Err(e) = self.sign_in_failing_networks.admit(&key.0, network, now) {
            self.sign_in_per_network.give_back(&network);
            self.sign_in_per_account_network.give_back(&key);
            return Err(e.into());
        }
        let (account, network) = key;
        Ok(SignInAttempt { account, network })
    }

    /// The password was right: the failures counted in advance go back,
    /// and the network becomes one the account is known from.
    pub async fn sign_in_succeeded(&self, attempt: SignInAttempt, now: Timestamp) {
        if let Some(store) = &self.shared {
            let net = attempt.network.to_string();
            let key = email_key(&attempt.account);
            let ops = [
                step(LimitOpKind::Unreserve, shared::SIGN_IN_NETWORK, &net, ""),
                step(LimitOpKind::Forget, shared::SIGN_IN_FAILING, &key, &net),
                step(LimitOpKind::Reset, shared::SIGN_IN_ACCOUNT, &key, &net),
                LimitOp {
                    b: KNOWN_NETWORK_SECS,
                    ..step(LimitOpKind::Know, shared::SIGN_IN_KNOWN, &key, &net)
                },
            ];
            if let Err(e) = store.tally_limits(&ops, now).await {
                tracing::warn!("a sign-in's failures counted in advance stay counted: {e}");
            }
            return;
        }
        self.sign_in_per_network.give_back(&attempt.network);
        self.sign_in_failing_networks
            .forget(&attempt.account, attempt.network);
        let key = (attempt.account, attempt.network);
        self.sign_in_per_account_network.reset(&key);
        let mut known = self
            .sign_in_known_networks
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if known.len() >= SWEEP_AT {
            known.retain(|_, at| now < *at + KNOWN_NETWORK_SECS);
        }
        known.insert(key, now);
    }

    /// The attempt never reached a password check (the hashing pool was
    /// busy, the store failed): nothing was guessed, so nothing counts.
    pub async fn sign_in_not_tried(&self, attempt: SignInAttempt, now: Timestamp) {
        if let Some(store) = &self.shared {
            let net = attempt.network.to_string();
            let key = email_key(&attempt.account);
            let ops = [
                step(LimitOpKind::Unreserve, shared::SIGN_IN_NETWORK, &net, ""),
                step(LimitOpKind::Unreserve, shared::SIGN_IN_ACCOUNT, &key, &net),
            ];
            if let Err(e) = store.tally_limits(&ops, now).await {
                tracing::warn!("a sign-in's failures counted in advance stay counted: {e}");
            }
            return;
        }
        self.sign_in_per_network.give_back(&attempt.network);
        let key = (attempt.account, attempt.network);
        self.sign_in_per_account_network.give_back(&key);
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
        assert_eq!(b.reserve(&"a", 0), Ok(()));
        assert_eq!(b.reserve(&"a", 0), Ok(()));
        assert_eq!(b.reserve(&"a", 0), Err(RetryAfter(1)));
        assert_eq!(b.reserve(&"a", 1), Ok(()));
        assert_eq!(b.reserve(&"a", 2), Err(RetryAfter(1)));
        assert_eq!(b.reserve(&"a", 3), Ok(()));
        assert_eq!(b.reserve(&"a", 4), Err(RetryAfter(3)));
        // A success gives its attempt back.
        b.give_back(&"a");
        assert_eq!(b.reserve(&"a", 5), Ok(()));
        // Quiet for the reset period: the count starts over.
        assert_eq!(b.reserve(&"a", 905), Ok(()));
        assert_eq!(b.reserve(&"a", 905), Ok(()));
        b.reset(&"a");
        assert_eq!(b.reserve(&"a", 905), Ok(()));
    }

    #[test]
    fn take_refuses_past_max_without_counting_and_give_back_reopens() {
        let c = Counter::new(Limit::new(2, 60));
        assert_eq!(c.take(&"k", 0), Ok(()));
        assert_eq!(c.take(&"k", 0), Ok(()));
        assert_eq!(c.take(&"k", 10), Err(RetryAfter(50)));
        assert_eq!(c.count(&"k", 10), 2);
        c.give_back(&"k", 0);
        assert_eq!(c.take(&"k", 10), Ok(()));
        // A slot from an old window does not reopen the new one.
        assert_eq!(c.take(&"k", 60), Ok(()));
        assert_eq!(c.take(&"k", 60), Ok(()));
        c.give_back(&"k", 10);
        assert_eq!(c.take(&"k", 61), Err(RetryAfter(59)));
    }

    #[test]
    fn failing_networks_are_capped_per_account() {
        let f = FailingNetworks {
            cap: 2,
            reset_after: 900,
            accounts: Mutex::new(HashMap::new()),
        };
        let net = |i: u8| IpAddr::from([192, 0, 2, i]);
        assert_eq!(f.admit("a", net(1), 0), Ok(()));
        assert_eq!(f.admit("a", net(2), 10), Ok(()));
        assert_eq!(f.admit("a", net(1), 20), Ok(()));
        assert_eq!(f.admit("a", net(3), 20), Err(RetryAfter(890)));
        assert_eq!(f.admit("b", net(3), 20), Ok(()));
        f.forget("a", net(2));
        assert_eq!(f.admit("a", net(3), 30), Ok(()));
    }

    #[test]
    fn sign_in_delays_double_and_cap() {
        assert_eq!(sign_in_delay(2, 3), 0);
        assert_eq!(sign_in_delay(3, 3), 1);
        assert_eq!(sign_in_delay(5, 3), 4);
        assert_eq!(sign_in_delay(40, 3), 900);
    }
}

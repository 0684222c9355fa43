//! Pending codes this instance knows about, so that a device polling one
//! (RFC 8628 §3.4-3.5: every `interval` seconds until the person decides)
//! costs the database nothing: on PostgreSQL a round trip, on SQLite an
//! indexed read that was a fifth of a poll's instructions (BENCH.md).
//!
//! An entry is only as good as the news that ends it. Every way a code
//! stops being pending is written down by the database itself, on commit,
//! whoever wrote it (a code leaving `pending`, a pending code deleted
//! before its deadline, any change to an app): PostgreSQL announces it on
//! `linkd_events` (triggers of migration 0027) and the event listener
//! drops the entry before it hands the event on; SQLite writes it to
//! `poll_changes` (migration 0029), which a watch reads every 100 ms
//! (`sqlite/changes.rs`). This instance's own decisions leave at once.
//! The one thing no news announces, the deadline, is kept in the entry.
//! So an entry is trusted only while the news is heard: losing the
//! listener, or failing to read the changes, forgets everything, and
//! nothing is cached until it is heard again.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use super::{AuthorizationState, Client, PolledAuthorization, Timestamp};

/// Most codes held at once. An entry is about 450 bytes with both maps
/// and their spare room (each string kept once, shared by the maps; the
/// app shared by its codes; 585 bytes before that), so a full cache is
/// ~90 MB, which keeps linkd within the memory target with a million
/// pending codes (BENCH.md); codes beyond it are simply read from the
/// database on every poll.
pub const POLL_CACHE_CAP: usize = 200_000;

pub(crate) struct PollCache {
    inner: RwLock<Entries>,
    /// Bumped by every forgetting. A poll caches what it read only when no
    /// forgetting happened since before its read: the event for a decision
    /// committed after the read may have been handled before the entry
    /// went in, and would then never remove it.
    generation: AtomicU64,
    /// Whether the listener is connected (and has been since the entries
    /// were made: losing it clears them).
    listening: AtomicBool,
    cap: usize,
    hits: AtomicU64,
    misses: AtomicU64,
}

#[derive(Default)]
struct Entries {
    /// By device-code hash, as polls look codes up.
    by_hash: HashMap<Arc<str>, Entry>,
    /// Authorization id → device-code hash, as events name codes.
    by_id: HashMap<Arc<str>, Arc<str>>,
}

/// A pending code as held: what a poll needs of it, and nothing twice (its
/// state is pending, its app's id is in the app).
struct Entry {
    id: Arc<str>,
    client: Arc<Client>,
    expires_at: Timestamp,
    interval: i64,
}

impl Entry {
    fn polled(&self) -> (PolledAuthorization, Arc<Client>) {
        (
            PolledAuthorization {
                id: self.id.to_string(),
                client_id: self.client.client_id.clone(),
                state: AuthorizationState::Pending,
                expires_at: self.expires_at,
                interval: self.interval,
            },
            self.client.clone(),
        )
    }
}

/// How this instance's token polls found their codes, since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PollReads {
    pub from_memory: u64,
    pub from_database: u64,
    /// Codes held now.
    pub held: usize,
}

/// Taken before the database read a poll may cache.
pub(crate) struct Ticket(Option<u64>);

impl PollCache {
    pub(crate) fn new(cap: usize) -> Self {
        PollCache {
            inner: RwLock::default(),
            generation: AtomicU64::new(0),
            listening: AtomicBool::new(true),
            cap,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Entries> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Entries> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The pending code behind `hash`, if held and before its deadline.
    pub(crate) fn get(
        &self,
        hash: &str,
        now: Timestamp,
    ) -> Option<(PolledAuthorization, Arc<Client>)> {
        let held = self.listening.load(Ordering::Acquire).then(|| {
            let entries = self.read();
            let entry = entries.by_hash.get(hash)?;
            // At the deadline the database answers (expired_token).
            (entry.expires_at > now).then(|| entry.polled())
        });
        let counter = match held {
            Some(Some(_)) => &self.hits,
            _ => &self.misses,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        held.flatten()
    }

    /// To be taken before reading the code from the database.
    pub(crate) fn ticket(&self) -> Ticket {
        Ticket(
            self.listening
                .load(Ordering::Acquire)
                .then(|| self.generation.load(Ordering::Acquire)),
        )
    }

    /// Keeps what a poll read, if it is a pending code and nothing was
    /// forgotten since `ticket`.
    pub(crate) fn put(
        &self,
        ticket: Ticket,
        hash: &str,
        now: Timestamp,
        found: &(PolledAuthorization, Arc<Client>),
    ) {
        let Ticket(Some(generation)) = ticket else {
            return;
        };
        if found.0.state != AuthorizationState::Pending || found.0.expires_at <= now {
            return;
        }
        // A full cache is the common case past the cap (every poll of a
        // code not held comes here): it must not take the write lock,
        // which every poll's read then waits on.
        if self.read().by_hash.len() >= self.cap {
            return;
        }
        let mut entries = self.write();
        // Checked under the lock that forgetting also takes, after it has
        // bumped the generation: either this sees the bump, or the
        // forgetting comes after the insert and removes it.
        if self.generation.load(Ordering::Acquire) != generation
            || !self.listening.load(Ordering::Acquire)
            || entries.by_hash.len() >= self.cap
        {
            return;
        }
        let (auth, client) = found;
        // Only an app's own codes are held under it (a poll checks that
        // the code is the asking app's against this id).
        if auth.client_id != client.client_id {
            return;
        }
        let (id, hash): (Arc<str>, Arc<str>) = (auth.id.as_str().into(), hash.into());
        entries.by_id.insert(id.clone(), hash.clone());
        entries.by_hash.insert(
            hash,
            Entry {
                id,
                client: client.clone(),
                expires_at: auth.expires_at,
                interval: auth.interval,
            },
        );
    }

    /// A code left `pending` (or is gone).
    pub(crate) fn forget(&self, authorization_id: &str) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut entries = self.write();
        if let Some(hash) = entries.by_id.remove(authorization_id) {
            entries.by_hash.remove(&hash);
        }
    }

    /// Forgets everything: an app changed (its codes and credentials are
    /// in the entries), or events may have been missed.
    pub(crate) fn clear(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        let mut entries = self.write();
        *entries = Entries::default();
    }

    /// The listener lost its connection: events sent from now on are not
    /// heard, so nothing held can be trusted until it is back.
    pub(crate) fn deaf(&self) {
        self.listening.store(false, Ordering::Release);
        self.clear();
    }

    /// The listener is connected again (LISTEN has been run).
    pub(crate) fn listening_again(&self) {
        // Tickets taken while deaf are void already (they hold no
        // generation); the bump voids any taken around the reconnection.
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.listening.store(true, Ordering::Release);
    }

    /// Drops codes past their deadline.
    pub(crate) fn sweep(&self, now: Timestamp) {
        let mut entries = self.write();
        let Entries { by_hash, by_id } = &mut *entries;
        by_hash.retain(|_, entry| {
            let keep = entry.expires_at > now;
            if !keep {
                by_id.remove(&entry.id);
            }
            keep
        });
    }

    pub(crate) fn len(&self) -> usize {
        self.read().by_hash.len()
    }

    pub(crate) fn reads(&self) -> PollReads {
        PollReads {
            from_memory: self.hits.load(Ordering::Relaxed),
            from_database: self.misses.load(Ordering::Relaxed),
            held: self.len(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::fixtures::{client, polled};

    fn found(id: &str) -> (PolledAuthorization, Arc<Client>) {
        let mut auth = polled(id, 5);
        auth.expires_at = 100;
        (auth, Arc::new(client("openid")))
    }

    #[test]
    fn entries_end_with_their_event_their_deadline_or_the_listener() {
        let cache = PollCache::new(2);
        cache.put(cache.ticket(), "h1", 0, &found("a"));
        assert!(cache.get("h1", 99).is_some());
        assert!(cache.get("h1", 100).is_none(), "the deadline ends it");
        cache.forget("a");
        assert!(cache.get("h1", 0).is_none());

        // A forgetting between the ticket and the put wins.
        let ticket = cache.ticket();
        cache.forget("b");
        cache.put(ticket, "h2", 0, &found("b"));
        assert_eq!(cache.len(), 0);

        // Deaf: everything goes, and nothing comes in until it is back.
        cache.put(cache.ticket(), "h1", 0, &found("a"));
        let before = cache.ticket();
        cache.deaf();
        assert!(cache.get("h1", 0).is_none());
        cache.put(cache.ticket(), "h1", 0, &found("a"));
        cache.put(before, "h1", 0, &found("a"));
        cache.listening_again();
        assert_eq!(cache.len(), 0);

        // Bounded, and swept at the deadline.
        for (i, hash) in ["x", "y", "z"].iter().enumerate() {
            cache.put(cache.ticket(), hash, 0, &found(&i.to_string()));
        }
        assert_eq!(cache.len(), 2);
        cache.sweep(100);
        assert_eq!(cache.len(), 0);

        // What comes back is what went in, pending, under its own app.
        cache.put(cache.ticket(), "h1", 0, &found("a"));
        let (auth, client) = cache.get("h1", 0).unwrap();
        let (want, _) = found("a");
        assert_eq!(
            (
                auth.id,
                auth.client_id,
                auth.state,
                auth.expires_at,
                auth.interval
            ),
            (
                want.id,
                client.client_id.clone(),
                AuthorizationState::Pending,
                100,
                5
            )
        );
        // A code read with another app's record is not held.
        let (mut other, app) = found("c");
        other.client_id = "elsewhere".into();
        cache.put(cache.ticket(), "h3", 0, &(other, app));
        assert!(cache.get("h3", 0).is_none());
    }
}

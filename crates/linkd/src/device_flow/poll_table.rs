//! In-memory poll-rate bookkeeping for RFC 8628 §3.5 slow_down: a poll of
//! a pending code costs no write.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::store::{PolledAuthorization, Timestamp};

/// RFC 8628 §3.5: each slow_down adds five seconds to the interval.
pub const SLOW_DOWN_STEP_SECS: i64 = 5;

/// In-memory poll-rate bookkeeping (RFC 8628 §3.5 slow_down), so a poll
/// costs no write. Per instance: a device alternating between instances is
/// checked by each separately.
///
/// Sized for a million pending codes: an entry is a 64-bit digest of the
/// authorization id and 12 bytes of state (about 44 MB at 1M polled codes
/// with the table's spare room), and a poll allocates nothing.
pub struct PollTracker {
    /// Split by key so polls on different codes rarely wait for one lock.
    shards: [Mutex<PollTable>; POLL_SHARDS],
    /// Hashes ids to table keys; random per process, so nobody can aim ids
    /// at one key.
    digest: std::collections::hash_map::RandomState,
    /// Times are kept in deciseconds since this instant, in 32 bits
    /// (13 years of uptime).
    epoch_ms: i64,
}

const POLL_SHARDS: usize = 16;

/// One shard's entries. Keys are already keyed digests ([`PollTracker::key`]),
/// so the table uses them as they are rather than hashing them again.
type PollTable = HashMap<[u32; 2], PollEntry, std::hash::BuildHasherDefault<DigestHasher>>;

/// Passes a [`PollTracker`] key through as its own hash.
#[derive(Default)]
struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // A key's eight bytes arrive in one call and come out as they went
        // in: random already.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_usize(&mut self, _: usize) {
        // The array's length, the same for every key.
    }
}

#[derive(Clone, Copy)]
struct PollEntry {
    /// Deciseconds since the epoch; 0 before the first poll.
    last: u32,
    /// Deciseconds since the epoch.
    expires: u32,
    interval_secs: u16,
}

impl PollTracker {
    /// A tracker whose 32-bit clock starts at `now_ms`.
    pub fn new(now_ms: i64) -> Self {
        PollTracker {
            shards: Default::default(),
            digest: Default::default(),
            epoch_ms: now_ms,
        }
    }

    fn key(&self, id: &str) -> [u32; 2] {
        use std::hash::BuildHasher;
        let h = self.digest.hash_one(id);
        [h as u32, (h >> 32) as u32]
    }

    /// Deciseconds since the epoch, from 1 (0 marks "never polled").
    fn ticks(&self, ms: i64) -> u32 {
        (ms.saturating_sub(self.epoch_ms) / 100).clamp(1, i64::from(u32::MAX)) as u32
    }

    fn lock(&self, key: [u32; 2]) -> std::sync::MutexGuard<'_, PollTable> {
        self.shards[key[0] as usize % POLL_SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn all(&self) -> impl Iterator<Item = std::sync::MutexGuard<'_, PollTable>> {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Records a poll of a pending authorization. `Err(interval)` when it
    /// came sooner than the interval; the interval has then grown by
    /// five seconds for this and every later poll.
    pub fn check(&self, auth: &PolledAuthorization, now_ms: i64) -> Result<(), i64> {
        let key = self.key(&auth.id);
        let now = self.ticks(now_ms);
        let expires = self.ticks(auth.expires_at.saturating_mul(1000));
        let mut entries = self.lock(key);
        let entry = entries.entry(key).or_insert(PollEntry {
            last: 0,
            expires,
            interval_secs: u16::try_from(auth.interval).unwrap_or(u16::MAX),
        });
        // A tenth of the interval of slack absorbs network jitter for a
        // device that waits exactly the interval between polls: the gap
        // must be 90% of it (interval × 9 deciseconds).
        let min_gap = u32::from(entry.interval_secs) * 9;
        let too_fast = entry.last != 0 && now.saturating_sub(entry.last) < min_gap;
        entry.last = now;
        if too_fast {
            // RFC 8628 §3.5: slow_down adds five seconds, for good.
            entry.interval_secs = entry
                .interval_secs
                .saturating_add(SLOW_DOWN_STEP_SECS as u16);
            Err(i64::from(entry.interval_secs))
        } else {
            Ok(())
        }
    }

    /// Forgets authorizations past their deadline.
    pub fn sweep(&self, now: Timestamp) {
        let now = self.ticks(now.saturating_mul(1000));
        for mut shard in self.all() {
            shard.retain(|_, e| e.expires > now);
        }
    }

    /// Forgets one authorization; true when it was being tracked.
    pub fn forget(&self, id: &str) -> bool {
        let key = self.key(id);
        self.lock(key).remove(&key).is_some()
    }

    pub fn len(&self) -> usize {
        self.all().map(|shard| shard.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::fixtures::polled;

    #[test]
    fn slow_down_grows_interval_by_five_seconds() {
        let polls = PollTracker::new(0);
        let a = polled("a", 5);
        assert_eq!(polls.check(&a, 0), Ok(()));
        assert_eq!(polls.check(&a, 5_000), Ok(()));
        assert_eq!(polls.check(&a, 6_000), Err(10));
        // The grown interval now applies: 5 s is too soon, 10 s is fine.
        assert_eq!(polls.check(&a, 11_000), Err(15));
        assert_eq!(polls.check(&a, 26_000), Ok(()));
        polls.sweep(600);
        assert!(polls.is_empty());
    }
}

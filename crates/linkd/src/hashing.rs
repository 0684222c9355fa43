//! The password-hashing pool: at most N Argon2 hashes run at once on the
//! whole server, whatever arrives, so memory stays below N × Argon2's
//! memory cost (19 MiB each) plus the rest. A request that cannot start
//! its hash within [`HASH_WAIT`] is turned away (429) rather than queued
//! without end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

/// Longest a sign-in or sign-up waits for a free hashing slot.
pub const HASH_WAIT: Duration = Duration::from_secs(2);

/// No hashing slot came free in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

pub struct HashPool {
    slots: Arc<Semaphore>,
    running: Arc<AtomicUsize>,
    /// The most hashes ever seen running at once (for tests and metrics).
    most_at_once: Arc<AtomicUsize>,
    /// Hashes started since the server started.
    started: AtomicU64,
}

impl HashPool {
    /// `at_once` 0 is taken as 1: hashing cannot be turned off.
    pub fn new(at_once: u32) -> Self {
        HashPool {
            slots: Arc::new(Semaphore::new(at_once.max(1) as usize)),
            running: Arc::new(AtomicUsize::new(0)),
            most_at_once: Arc::new(AtomicUsize::new(0)),
            started: AtomicU64::new(0),
        }
    }

    /// Runs `work` (a hash or a verification) on a blocking thread once a
    /// slot is free. The slot is held by the blocking work itself, so a
    /// client that hangs up mid-hash does not free it early.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let slot = tokio::time::timeout(HASH_WAIT, self.slots.clone().acquire_owned())
            .await
            .map_err(|_| Busy)?
            .map_err(|_| Busy)?;
        self.started.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("linkd_password_hashes_total").increment(1);
        let running = self.running.clone();
        let most = self.most_at_once.clone();
        tokio::task::spawn_blocking(move || {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            let out = work();
            running.fetch_sub(1, Ordering::SeqCst);
            drop(slot);
            out
        })
        .await
        .map_err(|_| Busy)
    }

    pub fn most_at_once(&self) -> usize {
        self.most_at_once.load(Ordering::SeqCst)
    }

    pub fn started(&self) -> u64 {
        self.started.load(Ordering::Relaxed)
    }
}

//! The password-hashing pool: at most N Argon2 hashes run at once on the
//! whole server, whatever arrives, so memory stays below N × Argon2's
//! memory cost (19 MiB each) plus the rest. A request that cannot start
//! its hash within the configured wait (by default [`HASH_WAIT`]) is turned away (429) rather than queued
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
    wait: Duration,
    running: Arc<AtomicUsize>,
    /// The most hashes ever seen running at once (for tests and metrics).
    most_at_once: Arc<AtomicUsize>,
    /// Hashes started since the server started.
    started: AtomicU64,
}

impl HashPool {
    /// `at_once` 0 is taken as 1: hashing cannot be turned off.
    pub fn new(at_once: u32) -> Self {
        Self::with_wait(at_once, HASH_WAIT)
    }

    /// A pool whose callers wait at most `wait` for a slot.
    pub fn with_wait(at_once: u32, wait: Duration) -> Self {
        HashPool {
            slots: Arc::new(Semaphore::new(at_once.max(1) as usize)),
            wait,
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
        let slot = tokio::time::timeout(self.wait, self.slots.clone().acquire_owned())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_beyond_the_slots_waits_then_is_turned_away() {
        let pool = Arc::new(HashPool::with_wait(1, Duration::from_millis(50)));
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let busy = {
            let pool = pool.clone();
            tokio::spawn(async move { pool.run(move || hold.recv().is_ok()).await })
        };
        while pool.started() == 0 {
            tokio::task::yield_now().await;
        }
        // The one slot is held: another caller waits 50 ms, then hears Busy.
        assert_eq!(pool.run(|| 1).await, Err(Busy));
        release.send(()).unwrap();
        assert_eq!(busy.await.unwrap(), Ok(true));
        assert_eq!(pool.run(|| 2).await, Ok(2));
        assert_eq!(pool.started(), 2);
        assert_eq!(pool.most_at_once(), 1);
    }
}

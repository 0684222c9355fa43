//! The outbox's sending side. A message is written to the store in the
//! same transaction as what caused it; a worker per kind (started in
//! `jobs.rs`) claims due messages under a lease, hands each to the kind's
//! [`Deliver`] and records the outcome: delivered (deleted), tried again
//! later with exponential backoff, or failed for good. A restart or an
//! outage of the receiving server therefore delays a message and loses
//! none; with several instances, the lease gives each message to one.
//!
//! Delivery is at least once: a worker that dies after the receiver took a
//! message and before the store heard of it sends it again once its lease
//! runs out. Adding a kind: an [`OutboxKind`] variant and a [`Deliver`]
//! for it, registered in [`Outbox::new`]'s list.

use std::sync::Arc;

use async_trait::async_trait;

use crate::clock::Clock;
use crate::store::{OutboxKind, OutboxMessage, Store, StoreResult, Timestamp};

/// How long a claim holds a message: longer than any one delivery may take
/// (mail's SMTP timeout is 60 s), so a live worker never loses its claim.
pub const LEASE_SECS: i64 = 300;
/// Attempts before a message is given up on: with [`backoff`], about 8
/// hours of outage are waited out.
pub const MAX_ATTEMPTS: i64 = 15;
/// How long a failed message stays for the operator before the purge.
pub const KEEP_FAILED_SECS: i64 = 30 * 86_400;
/// Messages one claim takes.
pub const CLAIM_BATCH: i64 = 20;

/// Seconds to wait before the next try after `attempts` failed ones: 30 s,
/// doubling, at most an hour.
pub fn backoff(attempts: i64) -> i64 {
    let doublings = attempts.clamp(1, 8) - 1;
    (30_i64 << doublings).min(3600)
}

/// A new message of `kind`, due at once.
pub fn message(kind: OutboxKind, payload: String, now: Timestamp) -> OutboxMessage {
    OutboxMessage {
        id: crate::codes::sortable_id(now.saturating_mul(1000)),
        kind,
        payload,
        attempts: 0,
        next_attempt_at: now,
        lease: None,
        last_error: None,
        created_at: now,
        failed_at: None,
    }
}

/// What became of one delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// A passing failure (the server is down, busy, or answered 4xx): try
    /// again later.
    Retry(String),
    /// The message can never be delivered as it is (a bad address, a
    /// permanent 5xx): give up now.
    Rejected(String),
    /// Done by replacing it with these messages, in one transaction (a
    /// webhook event becomes one message per endpoint).
    Expand(Vec<OutboxMessage>),
}

/// Delivers the messages of one kind.
#[async_trait]
pub trait Deliver: Send + Sync + 'static {
    fn kind(&self) -> OutboxKind;
    async fn deliver(&self, message: &OutboxMessage) -> Delivery;
}

/// The senders this instance has, and the wake-up for its workers.
pub struct Outbox {
    senders: Vec<Arc<dyn Deliver>>,
    /// Bumped when this instance enqueues, so its workers look at once
    /// instead of at their next tick.
    wake: tokio::sync::watch::Sender<u64>,
}

impl Outbox {
    /// Kinds without a sender here (mail without `--smtp-url`) stay in the
    /// store until an instance that has one sends them.
    pub fn new(senders: Vec<Arc<dyn Deliver>>) -> Self {
        Outbox {
            senders,
            wake: tokio::sync::watch::channel(0).0,
        }
    }

    pub fn senders(&self) -> &[Arc<dyn Deliver>] {
        &self.senders
    }

    /// Whether this instance sends messages of `kind`.
    pub fn sends(&self, kind: OutboxKind) -> bool {
        self.senders.iter().any(|s| s.kind() == kind)
    }

    /// Tells this instance's workers that messages were enqueued.
    pub fn wake(&self) {
        self.wake.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn woken(&self) -> tokio::sync::watch::Receiver<u64> {
        self.wake.subscribe()
    }
}

/// Sends what is due of `sender`'s kind until nothing due is left; returns
/// how many messages were handled. `lease` names this worker.
pub async fn drain(
    store: &dyn Store,
    clock: &dyn Clock,
    sender: &dyn Deliver,
    lease: &str,
) -> StoreResult<usize> {
    let kind = sender.kind();
    let mut handled = 0;
    loop {
        let now = clock.now();
        let claimed = store
            .claim_outbox(kind, lease, now, now + LEASE_SECS, CLAIM_BATCH)
            .await?;
        if claimed.is_empty() {
            return Ok(handled);
        }
        for message in &claimed {
            let outcome = sender.deliver(message).await;
            settle(store, clock, message, lease, outcome).await?;
            handled += 1;
        }
    }
}

/// Records one delivery's outcome, while `lease` still holds the message.
async fn settle(
    store: &dyn Store,
    clock: &dyn Clock,
    message: &OutboxMessage,
    lease: &str,
    outcome: Delivery,
) -> StoreResult<()> {
    let kind = message.kind.as_str();
    let now = clock.now();
    match outcome {
        Delivery::Sent => {
            metrics::counter!("linkd_outbox_sent_total", "kind" => kind).increment(1);
            store.outbox_delivered(&message.id, lease).await?;
        }
        Delivery::Expand(messages) => {
            metrics::counter!("linkd_outbox_sent_total", "kind" => kind).increment(1);
            store.outbox_expand(&message.id, lease, &messages).await?;
        }
        Delivery::Retry(error) if message.attempts < MAX_ATTEMPTS => {
            metrics::counter!("linkd_outbox_retried_total", "kind" => kind).increment(1);
            let wait = backoff(message.attempts);
            tracing::warn!(kind, id = %message.id, attempts = message.attempts, retry_in = wait, %error,
                "outbox delivery failed; will try again");
            store
                .outbox_retry(&message.id, lease, now + wait, &error)
                .await?;
        }
        Delivery::Retry(error) | Delivery::Rejected(error) => {
            metrics::counter!("linkd_outbox_failed_total", "kind" => kind).increment(1);
            tracing::error!(kind, id = %message.id, attempts = message.attempts, %error,
                "outbox delivery failed for good");
            store
                .outbox_failed(&message.id, lease, now, now + KEEP_FAILED_SECS, &error)
                .await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_an_hour() {
        let waits: Vec<i64> = (1..=10).map(backoff).collect();
        assert_eq!(waits, [30, 60, 120, 240, 480, 960, 1920, 3600, 3600, 3600]);
        assert_eq!(backoff(0), 30);
        assert_eq!(backoff(i64::MAX), 3600);
        let total: i64 = (1..MAX_ATTEMPTS).map(backoff).sum();
        assert!(total > 8 * 3600, "{total} s of outage waited out");
    }
}

//! Background jobs that live as long as the server: the poll-table sweep,
//! signing-key reloads, store metrics, the long-poll relay, the purge of
//! expired rows and the outbox's workers.

use std::time::Duration;

use crate::state::AppState;
use crate::store::{self, OutboxKind, StoreError};
use crate::telemetry;

/// Background tasks that live as long as the server.
pub(crate) struct Upkeep(Vec<tokio::task::JoinHandle<()>>);

impl Upkeep {
    pub(crate) fn start(state: &AppState) -> Self {
        let mut tasks = vec![
            tokio::spawn(sweep_polls(state.clone())),
            tokio::spawn(reload_keys(state.clone())),
            tokio::spawn(sample_store(state.clone())),
            tokio::spawn(state.waits.clone().relay(state.store.clone())),
            tokio::spawn(purge(state.clone())),
        ];
        for sender in state.outbox.senders() {
            tasks.push(tokio::spawn(send_outbox(state.clone(), sender.clone())));
        }
        Upkeep(tasks)
    }
}

impl Drop for Upkeep {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

async fn sweep_polls(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    loop {
        tick.tick().await;
        state.polls.sweep(state.clock.now());
        state.store.sweep_polls(state.clock.now());
    }
}

/// Rows per purge batch: a few milliseconds of writing, so a request never
/// waits long behind it.
pub const PURGE_BATCH: i64 = 500;
/// How often the purge looks for expired rows.
pub const PURGE_EVERY: Duration = Duration::from_secs(60);
/// Expired codes stay this long, so a device still polling after the
/// deadline hears `expired_token` (RFC 8628 §3.5) rather than "unknown".
pub const EXPIRED_CODE_GRACE_SECS: i64 = 900;

/// Keeps tables at their working size: deletes expired codes, sessions,
/// refresh tokens issued before migration 0028 (later ones are state on
/// their device's row), revoked token ids and old sync tombstones in
/// small batches, pausing between batches so other writes get their turn.
async fn purge(state: AppState) {
    let mut tick = tokio::time::interval(PURGE_EVERY);
    loop {
        tick.tick().await;
        if let Err(e) = purge_now(&state).await {
            tracing::warn!(error = %e, "purge of expired rows failed");
        }
    }
}

/// One purge round: batches until nothing expired is left. Returns the
/// number of rows deleted.
pub async fn purge_now(state: &AppState) -> Result<u64, StoreError> {
    let mut total = 0;
    loop {
        let now = state.clock.now();
        let before = store::PurgeBefore {
            now,
            codes: now - EXPIRED_CODE_GRACE_SECS,
            refresh_tokens: now - i64::from(state.config.refresh_absolute_lifetime),
            tombstones: now - i64::from(state.config.sync_tombstone_retention),
        };
        let purged = state.store.purge(&before, PURGE_BATCH).await?;
        total += purged;
        if purged == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if total > 0 {
        tracing::debug!(rows = total, "purged expired rows");
    }
    Ok(total)
}

async fn sample_store(state: AppState) {
    let mut tick = tokio::time::interval(telemetry::SAMPLE_EVERY);
    loop {
        tick.tick().await;
        telemetry::sample_store(&state).await;
    }
}

/// Picks up keys rotated by `linkd keys rotate` or another instance, and
/// moves keys through their roles as time passes (tokens.rs).
async fn reload_keys(state: AppState) {
    let mut tick = tokio::time::interval(Duration::from_secs(crate::tokens::KEY_RELOAD_SECS));
    loop {
        tick.tick().await;
        if let Err(e) = state.reload_keys().await {
            // Keep signing with the keys already loaded.
            tracing::warn!(error = %e, "could not reload signing keys");
        }
    }
}

/// How often a worker looks for due messages when nothing woke it: what
/// another instance enqueued, and retries coming due.
pub const OUTBOX_EVERY: Duration = Duration::from_secs(1);

/// One kind's worker: sends what is due, then waits for a wake-up or the
/// next tick. Its lease name is new per start, so a restarted instance
/// never mistakes an old claim for its own.
async fn send_outbox(state: AppState, sender: std::sync::Arc<dyn crate::outbox::Deliver>) {
    let lease = crate::codes::random_secret(12);
    let mut woken = state.outbox.woken();
    loop {
        match crate::outbox::drain(
            state.store.as_ref(),
            state.clock.as_ref(),
            sender.as_ref(),
            &lease,
        )
        .await
        {
            // A worker may have made messages for another (webhook events
            // become one message per endpoint): wake them now rather than
            // at their next tick.
            Ok(handled) if handled > 0 && sender.kind() == OutboxKind::WebhookEvent => {
                state.outbox.wake();
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(kind = sender.kind().as_str(), error = %e, "outbox worker could not read the store");
            }
        }
        tokio::select! {
            _ = woken.changed() => {}
            _ = tokio::time::sleep(OUTBOX_EVERY) => {}
        }
    }
}

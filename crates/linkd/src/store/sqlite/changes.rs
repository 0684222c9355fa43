//! The SQLite store's watch on `poll_changes` (migration 0029): what the
//! database wrote down about codes leaving `pending` and apps changing,
//! whoever wrote it, read every [`WATCH_EVERY`] so that the poll cache
//! forgets it. SQLite's counterpart of the PostgreSQL listener
//! (`postgres::relay_events`). This process's own decisions leave the
//! cache at once (`SqlStore::forget_polled`); the watch catches the rest,
//! such as the `linkd` CLI changing an app from another process.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::super::poll_cache::PollCache;

/// How often the watch reads new rows: how long another process's change
/// can take to reach a device polling this one, far below any polling
/// interval (RFC 8628 §3.5: 5 s by default).
pub(super) const WATCH_EVERY: Duration = Duration::from_millis(100);
/// Rounds between deletions of old rows.
const TRIM_EVERY: u32 = 20;
/// How long a row is kept for every process watching the file to read
/// (seconds).
const KEEP_SECS: i64 = 60;
/// Most rows one round reads; the rest wait for the next.
const ROUND_ROWS: i64 = 10_000;

/// What the watch keeps from round to round.
struct Watch {
    conn: Option<rusqlite::Connection>,
    /// The last row read; `None` until the first round that could read
    /// the table, which starts from its end (nothing is cached before).
    last: Option<i64>,
}

/// One round's news: an id is a code that left `pending`, `None` an app
/// that changed.
type Changes = Vec<Option<String>>;

impl Watch {
    fn round(&mut self, path: &std::path::Path) -> rusqlite::Result<Changes> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => super::direct::open_reader(path)?,
        };
        let changes = match self.last {
            None => {
                self.last = Some(conn.query_row(
                    "SELECT COALESCE(MAX(seq), 0) FROM poll_changes",
                    [],
                    |r| r.get(0),
                )?);
                Vec::new()
            }
            Some(last) => {
                let mut statement = conn.prepare_cached(
                    "SELECT seq, authorization_id FROM poll_changes
                     WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )?;
                let mut rows = statement.query([last, ROUND_ROWS])?;
                let mut changes = Vec::new();
                while let Some(row) = rows.next()? {
                    let seq: i64 = row.get(0)?;
                    // Sequence numbers of committed rows follow each
                    // other; a gap means rows were trimmed unread (this
                    // process stalled past KEEP_SECS): forget everything.
                    if changes.is_empty() && seq != last + 1 {
                        changes.push(None);
                    }
                    self.last = Some(seq);
                    changes.push(row.get(1)?);
                }
                changes
            }
        };
        self.conn = Some(conn);
        Ok(changes)
    }
}

/// Watches `poll_changes` for as long as the cache lives. Until the first
/// read succeeds, and after any failure until one succeeds again, the
/// cache holds nothing (`deaf`), as when PostgreSQL's listener is away.
pub(super) async fn watch(
    path: std::path::PathBuf,
    polls: Weak<PollCache>,
    writes: Arc<AtomicU64>,
    writer: sqlx::SqlitePool,
) {
    let mut state = Watch {
        conn: None,
        last: None,
    };
    // When this watch last read a row: old rows are trimmed until all
    // it read are past KEEP_SECS, then the trimming rests.
    let (mut rounds, mut last_news) = (0u32, None::<std::time::Instant>);
    loop {
        tokio::time::sleep(WATCH_EVERY).await;
        let Some(cache) = polls.upgrade() else {
            return;
        };
        let was_listening = state.last.is_some();
        let path = path.clone();
        let Ok((back, result)) = tokio::task::spawn_blocking(move || {
            let result = state.round(&path);
            (state, result)
        })
        .await
        else {
            return;
        };
        state = back;
        match result {
            Ok(changes) => {
                if !was_listening {
                    cache.listening_again();
                }
                if !changes.is_empty() {
                    last_news = Some(std::time::Instant::now());
                    // Direct readers may hold a snapshot from before these
                    // changes: they take a new one, or a poll could read
                    // the old row and cache it again after it was forgotten.
                    writes.fetch_add(1, Ordering::Release);
                }
                for change in changes {
                    match change {
                        Some(id) => cache.forget(&id),
                        None => cache.clear(),
                    }
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "reading poll changes failed");
                cache.deaf();
                state.conn = None;
                state.last = None;
            }
        }
        rounds = rounds.wrapping_add(1);
        let trim_due =
            last_news.is_some_and(|at| at.elapsed() < Duration::from_secs(KEEP_SECS as u64 * 2));
        if trim_due && rounds % TRIM_EVERY == 0 {
            // The database's clock, as the rows' `at` is.
            let done = sqlx::query(
                "DELETE FROM poll_changes
                 WHERE at < CAST(strftime('%s', 'now') AS INTEGER) - $1",
            )
            .bind(KEEP_SECS)
            .execute(&writer)
            .await;
            if let Err(e) = done {
                tracing::debug!(error = %e, "trimming poll changes failed");
            }
        }
    }
}

#[cfg(test)]
#[path = "changes_tests.rs"]
mod tests;

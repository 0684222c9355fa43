//! The SQLite store's hot-path readers: polls, and the app and code
//! lookups around them, read over plain rusqlite connections on the
//! calling thread, keeping a snapshot between reads; plus the background
//! WAL checkpoint that keeps those snapshots from holding the WAL back.
//! Everything else goes through sqlx (`db.rs`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::super::db::FromRow;
use super::super::rows::Columns;
use super::super::{
    Client, DeviceAuthorization, PolledAuthorization, StoreError, StoreResult, authorizations,
    clients,
};

/// Most idle connections kept for [`Direct`]; more are opened while
/// more requests read at once and closed afterwards.
const DIRECT_IDLE: usize = 8;

/// The reads every device poll makes bypass sqlx and run on the calling
/// thread over plain SQLite connections. (Writes stay with the one sqlx
/// writer: a second writing connection would make transactions that read
/// before they write fail with SQLITE_BUSY_SNAPSHOT.) sqlx hands each query
/// to its connection's own thread and waits for the answer; on the poll
/// path those two thread switches cost several times the indexed read
/// itself (BENCH.md). The read is a few microseconds of B-tree search in
/// cached pages, short enough not to hold up the async worker it runs on.
///
/// A connection keeps its read transaction open from one read to the next
/// while nothing was written: starting and ending a read transaction takes
/// SQLite's file and WAL-index locks (`fcntl` and a process-wide mutex the
/// two async workers fought over), which cost more than the read itself
/// (BENCH.md). A write through this store ([`super::SqliteDb::writer`]) bumps
/// `writes` after it committed; a reader whose snapshot predates the bump
/// starts a new one, so a read that begins after a write returned sees it.
/// Writes by another process (the `linkd` CLI) are seen within
/// [`SNAPSHOT_MAX_AGE`].
pub(crate) struct Direct {
    pub(super) path: std::path::PathBuf,
    pub(super) idle: std::sync::Mutex<Vec<Reader>>,
    pub(super) writes: std::sync::Arc<AtomicU64>,
    /// Set while the WAL is being started over ([`restart`]): readers
    /// then end their snapshots as soon as they are done instead of
    /// keeping them for the next read.
    pub(super) restarting: std::sync::atomic::AtomicBool,
}

/// The longest a reader keeps one snapshot, for writes this process cannot
/// count. Also bounds how long a snapshot holds WAL frames from being
/// checkpointed.
const SNAPSHOT_MAX_AGE: Duration = Duration::from_millis(2);

/// A direct connection and the snapshot its open read transaction holds.
pub(crate) struct Reader {
    conn: rusqlite::Connection,
    snapshot: Option<Snapshot>,
    /// Apps read in this snapshot. A row cannot change within one read
    /// transaction, so a copy is exactly what reading it again would give;
    /// it goes when the snapshot does. Polls of one app's codes then read
    /// the app once per snapshot instead of once per poll, and share it
    /// rather than copy it.
    clients: Vec<std::sync::Arc<Client>>,
}

struct Snapshot {
    /// The store's write count when the snapshot was taken.
    writes: u64,
    taken: std::time::Instant,
}

impl Reader {
    fn is_stale(&self, writes: u64, now: std::time::Instant) -> bool {
        self.snapshot
            .as_ref()
            .is_some_and(|s| s.writes != writes || now.duration_since(s.taken) > SNAPSHOT_MAX_AGE)
    }

    /// Ends the read transaction, letting its snapshot go.
    fn release(&mut self) -> rusqlite::Result<()> {
        self.clients.clear();
        if self.snapshot.take().is_some() {
            self.conn.prepare_cached("COMMIT")?.execute([])?;
        }
        Ok(())
    }

    /// Makes sure the connection reads a snapshot no older than `writes`.
    fn refresh(&mut self, writes: u64) -> rusqlite::Result<()> {
        let now = std::time::Instant::now();
        if self.is_stale(writes, now) {
            self.release()?;
        }
        if self.snapshot.is_none() {
            // Deferred: the snapshot is taken by the read that follows,
            // after `writes` was loaded, so it holds every write counted.
            self.conn.prepare_cached("BEGIN")?.execute([])?;
            self.snapshot = Some(Snapshot { writes, taken: now });
        }
        Ok(())
    }

    /// One row of `query` with `param`, mapped while the statement is live.
    fn one<T>(
        &self,
        query: &DirectQuery,
        param: &str,
        map: impl FnOnce(&DirectRow<'_, '_>) -> StoreResult<T>,
    ) -> StoreResult<Option<T>> {
        let mut statement = self.conn.prepare_cached(query.sql).map_err(map_rusqlite)?;
        let columns = query.columns.get_or_init(|| {
            statement
                .column_names()
                .into_iter()
                .map(String::from)
                .collect()
        });
        let mut found = statement.query([param]).map_err(map_rusqlite)?;
        match found.next().map_err(map_rusqlite)? {
            Some(row) => map(&DirectRow::new(row, columns)).map(Some),
            None => Ok(None),
        }
    }

    /// The authorization a device code's hash names.
    pub(crate) fn authorization(
        &self,
        device_code_hash: &str,
    ) -> StoreResult<Option<DeviceAuthorization>> {
        self.one(&AUTHORIZATION_QUERY, device_code_hash, |r| {
            DeviceAuthorization::from_row(r)
        })
    }

    /// What a poll reads of the authorization a device code's hash names.
    pub(crate) fn polled(
        &self,
        device_code_hash: &str,
    ) -> StoreResult<Option<PolledAuthorization>> {
        self.one(&POLLED_QUERY, device_code_hash, |r| {
            PolledAuthorization::from_row(r)
        })
    }

    /// An app, from this snapshot's copies or else read.
    pub(crate) fn client(
        &mut self,
        client_id: &str,
    ) -> StoreResult<Option<std::sync::Arc<Client>>> {
        if let Some(client) = self.clients.iter().find(|c| c.client_id == client_id) {
            return Ok(Some(client.clone()));
        }
        let found = self
            .one(&CLIENT_QUERY, client_id, |r| Client::from_row(r))?
            .map(std::sync::Arc::new);
        if let Some(client) = &found {
            // A handful of apps in one 2 ms snapshot at most; the bound
            // only keeps an odd burst from growing the list.
            if self.clients.len() < DIRECT_CLIENT_COPIES {
                self.clients.push(client.clone());
            }
        }
        Ok(found)
    }
}

/// Most apps a reader keeps copies of within one snapshot.
const DIRECT_CLIENT_COPIES: usize = 16;

static CLIENT_QUERY: DirectQuery = DirectQuery::new(clients::BY_ID);
static AUTHORIZATION_QUERY: DirectQuery = DirectQuery::new(authorizations::BY_CODE_HASH);
static POLLED_QUERY: DirectQuery = DirectQuery::new(authorizations::POLLED);

impl Direct {
    fn open(&self) -> rusqlite::Result<rusqlite::Connection> {
        open_reader(&self.path)
    }

    pub(crate) fn read<T>(&self, f: impl FnOnce(&mut Reader) -> StoreResult<T>) -> StoreResult<T> {
        // Loaded before the snapshot is taken (see `Reader::refresh`).
        let writes = self.writes.load(Ordering::Acquire);
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let mut reader = match idle {
            Some(reader) => reader,
            None => Reader {
                conn: self.open().map_err(map_rusqlite)?,
                snapshot: None,
                clients: Vec::new(),
            },
        };
        let result = reader
            .refresh(writes)
            .map_err(map_rusqlite)
            .and_then(|()| f(&mut reader));
        // A restart waits for old snapshots to end (see `restart`).
        if self.restarting.load(Ordering::Acquire) {
            let _ = reader.release();
        }
        // A connection that failed may be broken; let it go.
        if result.is_ok() {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < DIRECT_IDLE {
                idle.push(reader);
            }
        }
        result
    }

    /// Ends every idle reader's snapshot, old or not.
    fn release_idle_all(&self) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain_mut(|reader| reader.release().is_ok());
    }

    /// Lets idle readers' old snapshots go, so they hold no WAL frames
    /// back from the checkpoint.
    fn release_idle(&self) {
        let now = std::time::Instant::now();
        let writes = self.writes.load(Ordering::Acquire);
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain_mut(|reader| !reader.is_stale(writes, now) || reader.release().is_ok());
    }
}

/// A plain connection for reading on the calling thread: the hot-path
/// readers' and the watch on `poll_changes` (`changes.rs`).
pub(super) fn open_reader(path: &std::path::Path) -> rusqlite::Result<rusqlite::Connection> {
    use rusqlite::OpenFlags;
    // Read-write like the sqlx readers (a read-only connection cannot
    // rebuild a WAL index another process left), but query_only.
    let conn = rusqlite::Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    // Short: the read runs on an async worker, and in WAL mode a reader
    // is only ever busy for a moment (while another connection rebuilds
    // the WAL index); better a 503 than a stalled worker.
    conn.busy_timeout(Duration::from_millis(250))?;
    conn.pragma_update(None, "query_only", true)?;
    // No memory map: every connection's map of the file counts in the
    // process's resident memory (522 MiB at 1M pending codes with
    // 256 MiB maps, BENCH.md); pages read past SQLite's own cache come
    // from the OS page cache instead.
    Ok(conn)
}

/// A statement the direct connections run, with its column names learnt
/// once: rows are then read by position, not by asking SQLite for each
/// column's name on every row.
struct DirectQuery {
    sql: &'static str,
    columns: std::sync::OnceLock<Vec<String>>,
}

impl DirectQuery {
    const fn new(sql: &'static str) -> Self {
        DirectQuery {
            sql,
            columns: std::sync::OnceLock::new(),
        }
    }
}

/// How often the background checkpoint runs.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
/// WAL frames (pages) past which a round also starts the WAL over from
/// its beginning (see [`restart`]): 4 MiB.
const RESTART_AT_FRAMES: i64 = 1000;
/// How long a restart waits for readers of old snapshots. They renew
/// their snapshot every [`SNAPSHOT_MAX_AGE`], so this is several of their
/// lifetimes; the writer waits with it, so it stays short, and a round
/// that runs out of it is simply tried again next time.
const RESTART_WAIT_MS: u32 = 20;

/// What a checkpoint round saw of the WAL: its frames, and how many of
/// them are now in the database file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WalState {
    /// The checkpoint could not finish: a reader or the writer was in
    /// the way for longer than it would wait.
    pub busy: bool,
    pub frames: i64,
    pub copied: i64,
}

impl Direct {
    /// Copies committed WAL pages into the database file (PASSIVE: never
    /// waits for readers or writers). Done here, on its own thread, the
    /// copying and its two fsyncs no longer fall on whichever request's
    /// commit crossed the WAL threshold, which stalled the one writer all
    /// requests queue behind.
    /// `conn` is the checkpoint's own connection, kept from one round to
    /// the next (opened when missing, let go after a failure).
    pub(super) fn checkpoint(
        &self,
        conn: &mut Option<rusqlite::Connection>,
    ) -> StoreResult<WalState> {
        self.release_idle();
        let checkpointer = match conn.take() {
            Some(c) => c,
            None => rusqlite::Connection::open_with_flags(
                &self.path,
                rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE
                    | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .and_then(|c| c.busy_timeout(Duration::from_secs(5)).map(|()| c))
            .map_err(map_rusqlite)?,
        };
        let state = checkpointer
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok(WalState {
                    busy: r.get::<_, i64>(0)? != 0,
                    frames: r.get(1)?,
                    copied: r.get(2)?,
                })
            })
            .map_err(map_rusqlite)?;
        *conn = Some(checkpointer);
        Ok(state)
    }
}

/// Starts the WAL over from its beginning, through the one writing
/// connection. A PASSIVE checkpoint copies pages back but never rewinds
/// the WAL: only a writer does, at the start of a transaction, and only
/// when no reader is still reading the WAL. Under steady load some
/// reader always is (polls renew their snapshots every few milliseconds),
/// so the WAL grew without end, 640 MB in ten seconds of device
/// authorizations, and once it was past the writer's threshold every
/// commit ran a checkpoint of its own (BENCH.md). A RESTART checkpoint
/// holds the write lock, lets the readers of old snapshots finish (new
/// ones read the database file, the WAL being all copied) and rewinds.
/// Run on the writer itself, it takes its turn between writes instead of
/// waiting for a gap in them from another connection, which under load
/// never came. The PASSIVE round before it has copied nearly everything,
/// so the writer waits only for what came since.
pub(super) async fn restart(direct: &Direct, writer: &sqlx::SqlitePool) -> StoreResult<WalState> {
    let mut conn = writer.acquire().await.map_err(super::super::map_sqlx)?;
    // Idle readers would keep their old snapshots through the wait.
    direct.restarting.store(true, Ordering::Release);
    direct.release_idle_all();
    let result = restart_on(&mut conn).await;
    direct.restarting.store(false, Ordering::Release);
    result
}

async fn restart_on(conn: &mut sqlx::pool::PoolConnection<sqlx::Sqlite>) -> StoreResult<WalState> {
    use sqlx::Row;
    sqlx::query(&format!("PRAGMA busy_timeout = {RESTART_WAIT_MS}"))
        .execute(&mut **conn)
        .await
        .map_err(super::super::map_sqlx)?;
    let row = sqlx::query("PRAGMA wal_checkpoint(RESTART)")
        .fetch_one(&mut **conn)
        .await;
    // Back to the writer's own wait whatever the checkpoint did; should
    // that fail, the connection goes rather than keep the short one.
    let restored = sqlx::query(&format!(
        "PRAGMA busy_timeout = {}",
        super::BUSY_TIMEOUT.as_millis()
    ))
    .execute(&mut **conn)
    .await;
    if restored.is_err() {
        // Closed rather than handed back with the short wait.
        conn.close_on_drop();
    }
    let row = row.map_err(super::super::map_sqlx)?;
    Ok(WalState {
        busy: row.try_get::<i64, _>(0).map_err(super::super::map_sqlx)? != 0,
        frames: row.try_get(1).map_err(super::super::map_sqlx)?,
        copied: row.try_get(2).map_err(super::super::map_sqlx)?,
    })
}

/// Checkpoints the WAL in the background for as long as the store lives,
/// and starts it over when it has grown (see [`restart`]).
pub(super) async fn checkpoint_in_background(
    direct: std::sync::Weak<Direct>,
    writer: sqlx::SqlitePool,
) {
    let mut conn = None;
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        let Some(held) = direct.upgrade() else {
            return;
        };
        let round = tokio::task::spawn_blocking(move || {
            let result = held.checkpoint(&mut conn);
            (held, conn, result)
        });
        match round.await {
            Ok((held, kept, result)) => {
                conn = kept;
                match result {
                    Ok(wal) if wal.frames >= RESTART_AT_FRAMES => {
                        if let Err(e) = restart(&held, &writer).await {
                            tracing::debug!(error = %e, "WAL restart failed");
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::debug!(error = %e, "background checkpoint failed"),
                }
            }
            Err(_) => return,
        }
    }
}

/// The direct connections only read, so every failure is the store being
/// unavailable (or busy) for a moment.
fn map_rusqlite(err: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

/// A row read through rusqlite (the SQLite store's hot-path reads), with
/// its statement's column names, learnt once per statement.
struct DirectRow<'a, 'r> {
    row: &'a rusqlite::Row<'r>,
    columns: &'a [String],
    /// Where the next column is looked for first: the mappings below read
    /// columns in table order, so the guess is nearly always right.
    next: std::cell::Cell<usize>,
}

impl<'a, 'r> DirectRow<'a, 'r> {
    fn new(row: &'a rusqlite::Row<'r>, columns: &'a [String]) -> Self {
        DirectRow {
            row,
            columns,
            next: Default::default(),
        }
    }

    fn get<T: rusqlite::types::FromSql>(&self, column: &str) -> StoreResult<T> {
        // By position: rusqlite's lookup by name asks SQLite for every
        // column's name and compares without case, on every get.
        let guess = self.next.get();
        let index = if self.columns.get(guess).is_some_and(|name| name == column) {
            guess
        } else {
            self.columns
                .iter()
                .position(|name| name == column)
                .ok_or_else(|| StoreError::Corrupt(format!("no column {column}")))?
        };
        self.next.set(index + 1);
        self.row
            .get(index)
            .map_err(|e| StoreError::Corrupt(format!("column {column}: {e}")))
    }
}

impl Columns for DirectRow<'_, '_> {
    fn text(&self, column: &str) -> StoreResult<String> {
        self.get(column)
    }
    fn text_or_null(&self, column: &str) -> StoreResult<Option<String>> {
        self.get(column)
    }
    fn int(&self, column: &str) -> StoreResult<i64> {
        self.get(column)
    }
    fn int_or_null(&self, column: &str) -> StoreResult<Option<i64>> {
        self.get(column)
    }
    fn flag(&self, column: &str) -> StoreResult<bool> {
        self.get(column)
    }
}

#[cfg(test)]
#[path = "direct_tests.rs"]
mod tests;

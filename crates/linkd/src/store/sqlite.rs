//! The embedded SQLite store: one file, WAL mode, one writer connection and
//! a pool of readers so reads never wait behind a write.

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use sqlx::Row;

use super::*;

const MIGRATIONS: EmbeddedMigrations = EmbeddedMigrations(&[
    (
        1,
        "initial",
        include_str!("../../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "lifecycle",
        include_str!("../../migrations/sqlite/0002_lifecycle.sql"),
    ),
    (
        3,
        "client switches",
        include_str!("../../migrations/sqlite/0003_client_switches.sql"),
    ),
    (
        4,
        "sync",
        include_str!("../../migrations/sqlite/0004_sync.sql"),
    ),
    (
        5,
        "purge",
        include_str!("../../migrations/sqlite/0005_purge.sql"),
    ),
]);

/// Every read of a linked device brings its app's name along.
const DEVICE_SELECT: &str = "SELECT d.*, c.name AS app_name FROM linked_devices d
     JOIN clients c ON c.client_id = d.client_id";

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
/// (BENCH.md). A write through this store ([`SqliteStore::writer`]) bumps
/// `writes` after it committed; a reader whose snapshot predates the bump
/// starts a new one, so a read that begins after a write returned sees it.
/// Writes by another process (the `linkd` CLI) are seen within
/// [`SNAPSHOT_MAX_AGE`].
struct Direct {
    path: std::path::PathBuf,
    idle: std::sync::Mutex<Vec<Reader>>,
    writes: std::sync::Arc<AtomicU64>,
}

/// The longest a reader keeps one snapshot, for writes this process cannot
/// count. Also bounds how long a snapshot holds WAL frames from being
/// checkpointed.
const SNAPSHOT_MAX_AGE: Duration = Duration::from_millis(2);

/// A direct connection and the snapshot its open read transaction holds.
struct Reader {
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
        map: impl FnOnce(&rows::DirectRow<'_, '_>) -> StoreResult<T>,
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
            Some(row) => map(&rows::DirectRow::new(row, columns)).map(Some),
            None => Ok(None),
        }
    }

    /// The authorization a device code's hash names.
    fn authorization(&self, device_code_hash: &str) -> StoreResult<Option<DeviceAuthorization>> {
        self.one(&AUTHORIZATION_QUERY, device_code_hash, |r| {
            rows::authorization(r)
        })
    }

    /// What a poll reads of the authorization a device code's hash names.
    fn polled(&self, device_code_hash: &str) -> StoreResult<Option<PolledAuthorization>> {
        self.one(&POLLED_QUERY, device_code_hash, |r| {
            rows::polled_authorization(r)
        })
    }

    /// An app, from this snapshot's copies or else read.
    fn client(&mut self, client_id: &str) -> StoreResult<Option<std::sync::Arc<Client>>> {
        if let Some(client) = self.clients.iter().find(|c| c.client_id == client_id) {
            return Ok(Some(client.clone()));
        }
        let found = self
            .one(&CLIENT_QUERY, client_id, |r| rows::client(r))?
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

const CLIENT_SQL: &str = "SELECT * FROM clients WHERE client_id = ?";
static CLIENT_QUERY: DirectQuery = DirectQuery::new(CLIENT_SQL);
const AUTHORIZATION_SQL: &str = "SELECT * FROM device_authorizations WHERE device_code_hash = ?";
static AUTHORIZATION_QUERY: DirectQuery = DirectQuery::new(AUTHORIZATION_SQL);
static POLLED_QUERY: DirectQuery = DirectQuery::new(concat!(
    "SELECT ",
    rows::polled_columns!(""),
    " FROM device_authorizations WHERE device_code_hash = ?"
));

impl Direct {
    fn open(&self) -> rusqlite::Result<rusqlite::Connection> {
        use rusqlite::OpenFlags;
        // Read-write like the sqlx readers (a read-only connection cannot
        // rebuild a WAL index another process left), but query_only.
        let conn = rusqlite::Connection::open_with_flags(
            &self.path,
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

    fn read<T>(&self, f: impl FnOnce(&mut Reader) -> StoreResult<T>) -> StoreResult<T> {
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
        // A connection that failed may be broken; let it go.
        if result.is_ok() {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < DIRECT_IDLE {
                idle.push(reader);
            }
        }
        result
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

/// The one writing connection, lent for one statement or transaction.
/// Dropped after it, it counts a write, so direct readers take a new
/// snapshot ([`Direct`]).
struct Writing<'a> {
    pool: &'a SqlitePool,
    writes: &'a AtomicU64,
}

impl std::ops::Deref for Writing<'_> {
    type Target = SqlitePool;

    fn deref(&self) -> &SqlitePool {
        self.pool
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.writes.fetch_add(1, Ordering::Release);
    }
}

/// WAL pages a writer may add before it copies them into the database
/// itself, should the background checkpoint fall behind. Four times
/// SQLite's default: the background checkpoint normally gets there first.
const WRITER_AUTOCHECKPOINT_PAGES: u32 = 4000;
/// How often the background checkpoint runs.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);

impl Direct {
    /// Copies committed WAL pages into the database file (PASSIVE: never
    /// waits for readers or writers). Done here, on its own thread, the
    /// copying and its two fsyncs no longer fall on whichever request's
    /// commit crossed the WAL threshold, which stalled the one writer all
    /// requests queue behind.
    /// `conn` is the checkpoint's own connection, kept from one round to
    /// the next (opened when missing, let go after a failure).
    fn checkpoint(&self, conn: &mut Option<rusqlite::Connection>) -> StoreResult<()> {
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
        checkpointer
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
            .map_err(map_rusqlite)?;
        *conn = Some(checkpointer);
        Ok(())
    }
}

/// Checkpoints the WAL in the background for as long as the store lives.
async fn checkpoint_in_background(direct: std::sync::Weak<Direct>) {
    let mut conn = None;
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        let Some(direct) = direct.upgrade() else {
            return;
        };
        let round = tokio::task::spawn_blocking(move || {
            let result = direct.checkpoint(&mut conn);
            (conn, result)
        });
        match round.await {
            Ok((kept, result)) => {
                conn = kept;
                if let Err(e) = result {
                    tracing::debug!(error = %e, "background checkpoint failed");
                }
            }
            Err(_) => return,
        }
    }
}

/// Columns of a new device authorization, in the order rows are bound.
const AUTHORIZATION_COLUMNS: &str = "id, device_code_hash, user_code, client_id, scope, state,
     account_id, requested_ip, device_name, created_at, expires_at, interval_secs, decided_at";

/// The direct connections only read, so every failure is the store being
/// unavailable (or busy) for a moment.
fn map_rusqlite(err: rusqlite::Error) -> StoreError {
    StoreError::Unavailable(err.to_string())
}

pub struct SqliteStore {
    /// Only through [`SqliteStore::writer`], which counts writes.
    write: SqlitePool,
    /// Writes made through this store, for [`Direct`] readers.
    writes: std::sync::Arc<AtomicU64>,
    read: SqlitePool,
    /// Hot-path reads on the calling thread; `None` for an in-memory
    /// database, which other connections cannot see.
    direct: Option<std::sync::Arc<Direct>>,
    /// One SQLite file serves one linkd process, so events stay in memory.
    events: tokio::sync::broadcast::Sender<Event>,
}

impl SqliteStore {
    pub async fn open(url: &str) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::Unavailable(format!("bad SQLite URL {url:?}: {e}")))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // In WAL mode NORMAL never corrupts the database and keeps every
            // commit across a process crash; only a power cut may drop the
            // last commits. FULL would cost an fsync per commit.
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5))
            .pragma(
                "wal_autocheckpoint",
                WRITER_AUTOCHECKPOINT_PAGES.to_string(),
            );
        // SQLite allows one writer at a time; a single connection queues
        // writes in the pool instead of failing them with SQLITE_BUSY.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options.clone())
            .await
            .map_err(map_sqlx)?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            // Not opened read-only: a read-only connection cannot rebuild
            // the WAL index that another process left behind, and reads go
            // only through this pool anyway.
            .connect_with(options.clone())
            .await
            .map_err(map_sqlx)?;
        // Only for a database in a file the other connections can open: an
        // in-memory database (sqlx names it `file:sqlx-in-memory-N`) lives
        // in sqlx's connections alone.
        let path = options.get_filename();
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        let writes = std::sync::Arc::new(AtomicU64::new(0));
        let direct = (!in_memory && path.is_file()).then(|| {
            std::sync::Arc::new(Direct {
                path: path.to_path_buf(),
                idle: Default::default(),
                writes: writes.clone(),
            })
        });
        if let Some(direct) = &direct {
            tokio::spawn(checkpoint_in_background(std::sync::Arc::downgrade(direct)));
        }
        Ok(SqliteStore {
            write,
            writes,
            read,
            direct,
            events: tokio::sync::broadcast::channel(EVENT_BACKLOG).0,
        })
    }
}

impl SqliteStore {
    /// The writer for one statement, or for a transaction: keep the guard
    /// until after the commit (`let writing = self.writer();`).
    fn writer(&self) -> Writing<'_> {
        Writing {
            pool: &self.write,
            writes: &self.writes,
        }
    }
}

const SYNC_SELECT_ONE: &str = "SELECT * FROM sync_documents
     WHERE account_id = ? AND namespace = ? AND collection = ? AND key = ?";

/// Hands out the account's next sequence number. Run first in every sync
/// transaction: it takes the account's row lock (on PostgreSQL; SQLite has
/// one writer anyway), so an account's writes apply one after another.
async fn next_sync_seq(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    account_id: &str,
) -> StoreResult<i64> {
    sqlx::query_scalar(
        "INSERT INTO sync_counters (account_id, seq) VALUES (?, 1)
         ON CONFLICT (account_id) DO UPDATE SET seq = sync_counters.seq + 1
         RETURNING seq",
    )
    .bind(account_id)
    .fetch_one(&mut **tx)
    .await
    .map_err(map_sqlx)
}

#[async_trait]
impl Store for SqliteStore {
    async fn migrate(&self) -> StoreResult<()> {
        let migrator = sqlx::migrate::Migrator::new(MIGRATIONS)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        migrator
            .run(&*self.writer())
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))
    }

    async fn publish(&self, event: Event) -> StoreResult<()> {
        // No subscriber is not an error: nobody was waiting.
        let _ = self.events.send(event);
        Ok(())
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    async fn migrations_applied(&self) -> StoreResult<bool> {
        let latest = MIGRATIONS.0.iter().map(|m| m.0).max().unwrap_or(0);
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.read)
                .await
                .map_err(map_sqlx)?;
        Ok(applied == Some(latest))
    }

    async fn backup(&self, path: &std::path::Path) -> StoreResult<()> {
        let target = path
            .to_str()
            .ok_or_else(|| StoreError::Unavailable("the backup path is not valid UTF-8".into()))?;
        if path.exists() {
            return Err(StoreError::Conflict);
        }
        // VACUUM INTO writes a transactionally consistent copy from one read
        // transaction, so writers go on while it runs (WAL mode).
        sqlx::query("VACUUM INTO ?")
            .bind(target)
            .execute(&self.read)
            .await
            .map_err(map_sqlx)?;
        Ok(())
    }

    fn pool_stats(&self) -> Vec<(&'static str, u32, usize)> {
        vec![
            ("write", self.write.size(), self.write.num_idle()),
            ("read", self.read.size(), self.read.num_idle()),
        ]
    }

    async fn count_pending(&self, now: Timestamp) -> StoreResult<i64> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM device_authorizations WHERE state = 'pending' AND expires_at > ?",
        )
        .bind(now)
        .fetch_one(&self.read)
        .await
        .map_err(map_sqlx)
    }

    async fn purge(&self, before: &PurgeBefore, limit: i64) -> StoreResult<u64> {
        let mut purged = 0;
        for (table, before) in before.by_table() {
            let sql = format!(
                "DELETE FROM {table} WHERE rowid IN
                 (SELECT rowid FROM {table} WHERE expires_at < ? LIMIT ?)"
            );
            let done = sqlx::query(&sql)
                .bind(before)
                .bind(limit)
                .execute(&*self.writer())
                .await
                .map_err(map_sqlx)?;
            purged += done.rows_affected();
        }
        Ok(purged)
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.read)
            .await
            .map_err(map_sqlx)?;
        Ok(())
    }

    async fn insert_client(&self, c: &Client) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO clients (client_id, name, secret_hash, scopes, device_flow_enabled, created_at)
             VALUES (?, ?, ?, ?, ?, ?)",
        )
        .bind(&c.client_id)
        .bind(&c.name)
        .bind(&c.secret_hash)
        .bind(&c.scopes)
        .bind(c.device_flow_enabled as i64)
        .bind(c.created_at)
        .execute(&*self.writer())
        .await
        .map_err(map_sqlx)?;
        Ok(())
    }

    async fn get_client(&self, client_id: &str) -> StoreResult<Option<Client>> {
        if let Some(direct) = &self.direct {
            return direct.read(|reader| Ok(reader.client(client_id)?.map(|c| (*c).clone())));
        }
        sqlx::query(CLIENT_SQL)
            .bind(client_id)
            .fetch_optional(&self.read)
            .await
            .map_err(map_sqlx)?
            .map(|r| rows::client(&r))
            .transpose()
    }

    async fn list_clients(&self) -> StoreResult<Vec<Client>> {
        sqlx::query("SELECT * FROM clients ORDER BY client_id")
            .fetch_all(&self.read)
            .await
            .map_err(map_sqlx)?
            .iter()
            .map(rows::client)
            .collect()
    }

    async fn update_client(
        &self,
        client_id: &str,
        scopes: Option<&str>,
        device_flow_enabled: Option<bool>,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE clients SET scopes = COALESCE(?, scopes),
                 device_flow_enabled = COALESCE(?, device_flow_enabled)
             WHERE client_id = ?",
        )
        .bind(scopes)
        .bind(device_flow_enabled.map(i64::from))
        .bind(client_id)
        .execute(&*self.writer())
        .await
        .map_err(map_sqlx)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_client(&self, client_id: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM clients WHERE client_id = ?")
            .bind(client_id)
            .execute(&*self.writer())
            .await
            .map_err(map_sqlx)?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_account(&self, a: &Account) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO accounts (id, email, password_hash, created_at, disabled)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&a.id)
        .bind(&a.email)
        .bind(&a.password_hash)
        .bind(a.created_at)
        .bind(a.disabled as i64)
        .execute(&*self.writer())
        .await
        .map_err(map_sqlx)?;
        Ok(())
    }

    async fn get_account_by_email(&self, email: &str) -> StoreResult<Option<Account>> {
        sqlx::query("SELECT * FROM accounts WHERE email = ?")
            .bind(email)
            .fetch_optional(&self.read)
            .await
            .map_err(map_sqlx)?
            .map(|r| rows::account(&r))
            .transpose()
    }

    async fn get_account(&self, id: &str) -> StoreResult<Option<Account>> {
        sqlx::query("SELECT * FROM accounts WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(map_sqlx)?
            .map(|r| rows::account(&r))
            .transpose()
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        sqlx::query("SELECT * FROM accounts ORDER BY email")
            .fetch_all(&self.read)
            .await
            .map_err(map_sqlx)?
            .iter()
            .map(rows::account)
            .collect()
    }

    async fn set_account_disabled(&self, id: &str, disabled: bool) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE accounts SET disabled = ? WHERE id = ?")
            .bind(disabled as i64)
            .bind(id)
            .execute(&*self.writer())
            .await
            .map_err(map_sqlx)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_account(&self, id: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM accounts WHERE id = ?")
            .bind(id)
            .execute(&*self.writer())
            .await
            .map_err(map_sqlx)?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_client_secret(&self, client_id: &str, secret_hash: &str) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE clients SET secret_hash = ? WHERE client_id = ?")
            .bind(secret_hash)
            .bind(client_id)
            .execute(&*self.writer())
            .await
            .map_err(map_sqlx)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_sessions(&self, account_id: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE account_id = ?")
            .bind(account_id)
            .execute(&*self.writer())
            .await
            .map_err(map_sqlx)?;
        Ok(())
    }

    async fn insert_session(&self, s: &Session) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, account_id, csrf_token, created_at, expires_at)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&s.id_hash)
        .bind(&s.account_id)
        .bind(&s.csrf_token)
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(&*self.writer())
        .await
        .map_err(map_sqlx)?;
        Ok(())
    }

    async fn get_session(&self, id_hash: &str, now: Timestamp) -> StoreResult<Option<Session>> {
        let row = sqlx::query("SELECT * FROM sessions WHERE id_hash = ? AND expires_at > ?")
            .bind(id_hash)
            .bind(now)
            .fetch_optional(&self.read)
            .await
            .map_err(map_sqlx)?;
        row.map(|r| rows::session(&r)).transpose()
    }

    async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = ?")
            .bind(id_hash)
            .execute(&*self.writer())
            .await
            .map_err(map_sqlx)?;
        Ok(())
    }

    async fn insert_signing_key(&self, k: &SigningKey) -> StoreResult<()> {
        sqlx::query("INSERT INTO signing_keys (kid, private_pem, created_at) VALUES (?, ?, ?)")
            .bind(&k.kid)
            .bind(&k.private_pem)
            .bind(k.created_at)
            .execute(&*self.writer())
            .await
            .map_err(map_sqlx)?;
        Ok(())
    }

    async fn insert_first_signing_key(&self, k: &SigningKey) -> StoreResult<bool> {
        // One statement under SQLite's single writer lock: the check and
        // the insert cannot interleave with another writer's.
        let done = sqlx::query(
            "INSERT INTO signing_keys (kid, private_pem, created_at)
             SELECT ?, ?, ? WHERE NOT EXISTS (SELECT 1 FROM signing_keys)",
        )
        .bind(&k.kid)
        .bind(&k.private_pem)
        .bind(k.created_at)
        .execute(&*self.writer())
        .await
        .map_err(map_sqlx)?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
        sqlx::query("SELECT * FROM signing_keys ORDER BY created_at DESC, rowid DESC")
            .fetch_all(&self.read)
            .await
            .map_err(map_sqlx)?
            .iter()
            .map(rows::signing_key)
            .collect()
    }

    async fn insert_device_authorizations(
        &self,
        auths: &[DeviceAuthorization],
    ) -> StoreResult<Vec<bool>> {
        if auths.is_empty() {
            return Ok(Vec::new());
        }
        // One statement per chunk of the group: sqlx runs each statement
        // on its connection's thread, so a statement per row would cost two
        // thread switches per row. Chunks keep within SQLite's 32,766 bound
        // parameters. DO NOTHING rather than an error on a taken code, so
        // one taken code does not cost the rest; RETURNING tells which rows
        // went in.
        const ROWS_PER_STATEMENT: usize = 1000;
        let mut inserted = std::collections::HashSet::new();
        let writing = self.writer();
        let mut tx = writing.begin().await.map_err(map_sqlx)?;
        for chunk in auths.chunks(ROWS_PER_STATEMENT) {
            let mut sql =
                format!("INSERT INTO device_authorizations ({AUTHORIZATION_COLUMNS}) VALUES ");
            for i in 0..chunk.len() {
                sql.push_str(if i == 0 { "" } else { ", " });
                sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
            }
            sql.push_str(" ON CONFLICT DO NOTHING RETURNING id");
            let mut query = sqlx::query_scalar::<_, String>(&sql);
            for a in chunk {
                query = query
                    .bind(&a.id)
                    .bind(&a.device_code_hash)
                    .bind(&a.user_code)
                    .bind(&a.client_id)
                    .bind(&a.scope)
                    .bind(a.state.as_str())
                    .bind(&a.account_id)
                    .bind(&a.requested_ip)
                    .bind(&a.device_name)
                    .bind(a.created_at)
                    .bind(a.expires_at)
                    .bind(a.interval)
                    .bind(a.decided_at);
            }
            inserted.extend(query.fetch_all(&mut *tx).await.map_err(map_sqlx)?);
        }
        tx.commit().await.map_err(map_sqlx)?;
        Ok(auths.iter().map(|a| inserted.contains(&a.id)).collect())
    }

    async fn get_device_authorization_by_code_hash(
        &self,
        device_code_hash: &str,
    ) -> StoreResult<Option<DeviceAuthorization>> {
        if let Some(direct) = &self.direct {
            return direct.read(|reader| reader.authorization(device_code_hash));
        }
        sqlx::query(AUTHORIZATION_SQL)
            .bind(device_code_hash)
            .fetch_optional(&self.read)
            .await
            .map_err(map_sqlx)?
            .map(|r| rows::authorization(&r))
            .transpose()
    }

    async fn poll_device_authorization(
        &self,
        device_code_hash: &str,
    ) -> StoreResult<Option<(PolledAuthorization, std::sync::Arc<Client>)>> {
        if let Some(direct) = &self.direct {
            // Two reads in one snapshot rather than the join: the app
            // mostly comes from the reader's copy (`Reader::client`), and
            // the poll costs one indexed read of its code.
            return direct.read(|reader| {
                let Some(auth) = reader.polled(device_code_hash)? else {
                    return Ok(None);
                };
                Ok(reader.client(&auth.client_id)?.map(|client| (auth, client)))
            });
        }
        const SQL: &str = rows::authorization_with_client_sql!("?");
        sqlx::query(SQL)
            .bind(device_code_hash)
            .fetch_optional(&self.read)
            .await
            .map_err(map_sqlx)?
            .map(|r| rows::polled_with_client(&r))
            .transpose()
    }

    async fn get_device_authorization_by_user_code(
        &self,
        user_code: &str,
    ) -> StoreResult<Option<DeviceAuthorization>> {
        sqlx::query("SELECT * FROM device_authorizations WHERE user_code = ?")
            .bind(user_code)
            .fetch_optional(&self.read)
            .await
            .map_err(map_sqlx)?
            .map(|r| rows::authorization(&r))
            .transpose()
    }

    async fn decide_device_authorization(
        &self,
        id: &str,
        approve: bool,
        account_id: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let state = if approve {
            AuthorizationState::Approved
        } else {
            AuthorizationState::Denied
        };
        let done = sqlx::query(
            "UPDATE device_authorizations SET state = ?, account_id = ?, decided_at = ?
             WHERE id = ? AND state = 'pending' AND expires_at > ?",
        )
        .bind(state.as_str())
        .bind(account_id)
        .bind(now)
        .bind(id)
        .bind(now)
        .execute(&*self.writer())
        .await
        .map_err(map_sqlx)?;
        Ok(done.rows_affected() == 1)
    }

    async fn redeem_device_authorization(
        &self,
        id: &str,
        now: Timestamp,
        redemption: &Redemption,
    ) -> StoreResult<bool> {
        let writing = self.writer();
        let mut tx = writing.begin().await.map_err(map_sqlx)?;
        let done = sqlx::query(
            "UPDATE device_authorizations SET state = 'redeemed'
             WHERE id = ? AND state = 'approved' AND expires_at > ?",
        )
        .bind(id)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        let d = &redemption.device;
        sqlx::query(
            "INSERT INTO linked_devices (id, account_id, client_id, label, scope, linked_at,
                 linked_ip, last_refresh_at, revoked_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&d.id)
        .bind(&d.account_id)
        .bind(&d.client_id)
        .bind(&d.label)
        .bind(&d.scope)
        .bind(d.linked_at)
        .bind(&d.linked_ip)
        .bind(d.last_refresh_at)
        .bind(d.revoked_at)
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        if let Some(t) = &redemption.refresh_token {
            insert_refresh_token(&mut tx, t).await?;
        }
        tx.commit().await.map_err(map_sqlx)?;
        Ok(true)
    }

    async fn get_linked_device(&self, id: &str) -> StoreResult<Option<LinkedDevice>> {
        sqlx::query(&format!("{DEVICE_SELECT} WHERE d.id = ?"))
            .bind(id)
            .fetch_optional(&self.read)
            .await
            .map_err(map_sqlx)?
            .map(|r| rows::linked_device(&r))
            .transpose()
    }

    async fn list_linked_devices(&self, account_id: &str) -> StoreResult<Vec<LinkedDevice>> {
        sqlx::query(&format!(
            "{DEVICE_SELECT} WHERE d.account_id = ? AND d.revoked_at IS NULL
             ORDER BY d.linked_at DESC, d.id"
        ))
        .bind(account_id)
        .fetch_all(&self.read)
        .await
        .map_err(map_sqlx)?
        .iter()
        .map(rows::linked_device)
        .collect()
    }

    async fn rename_linked_device(
        &self,
        id: &str,
        account_id: &str,
        label: &str,
    ) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE linked_devices SET label = ?
             WHERE id = ? AND account_id = ? AND revoked_at IS NULL",
        )
        .bind(label)
        .bind(id)
        .bind(account_id)
        .execute(&*self.writer())
        .await
        .map_err(map_sqlx)?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_linked_device(&self, id: &str, now: Timestamp) -> StoreResult<bool> {
        let writing = self.writer();
        let mut tx = writing.begin().await.map_err(map_sqlx)?;
        let done = sqlx::query(
            "UPDATE linked_devices SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        sqlx::query("DELETE FROM refresh_tokens WHERE device_id = ?")
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(map_sqlx)?;
        tx.commit().await.map_err(map_sqlx)?;
        Ok(done.rows_affected() == 1)
    }

    async fn active_device_for_token(
        &self,
        device_id: &str,
        jti: &str,
    ) -> StoreResult<Option<LinkedDevice>> {
        sqlx::query(&format!(
            "{DEVICE_SELECT} WHERE d.id = ? AND d.revoked_at IS NULL
             AND NOT EXISTS (SELECT 1 FROM revoked_access_tokens WHERE jti = ?)"
        ))
        .bind(device_id)
        .bind(jti)
        .fetch_optional(&self.read)
        .await
        .map_err(map_sqlx)?
        .map(|r| rows::linked_device(&r))
        .transpose()
    }

    async fn get_refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>> {
        let row = sqlx::query("SELECT * FROM refresh_tokens WHERE token_hash = ?")
            .bind(token_hash)
            .fetch_optional(&self.read)
            .await
            .map_err(map_sqlx)?;
        row.map(|r| rows::refresh_token(&r)).transpose()
    }

    async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new: &RefreshToken,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let writing = self.writer();
        let mut tx = writing.begin().await.map_err(map_sqlx)?;
        let done = sqlx::query(
            "UPDATE refresh_tokens SET rotated_at = ? WHERE token_hash = ? AND rotated_at IS NULL",
        )
        .bind(now)
        .bind(old_hash)
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        if done.rows_affected() != 1 {
            return Ok(false);
        }
        insert_refresh_token(&mut tx, new).await?;
        sqlx::query("UPDATE linked_devices SET last_refresh_at = ? WHERE id = ?")
            .bind(now)
            .bind(&new.device_id)
            .execute(&mut *tx)
            .await
            .map_err(map_sqlx)?;
        tx.commit().await.map_err(map_sqlx)?;
        Ok(true)
    }

    async fn revoke_access_token(&self, jti: &str, expires_at: Timestamp) -> StoreResult<()> {
        sqlx::query("INSERT OR IGNORE INTO revoked_access_tokens (jti, expires_at) VALUES (?, ?)")
            .bind(jti)
            .bind(expires_at)
            .execute(&*self.writer())
            .await
            .map_err(map_sqlx)?;
        Ok(())
    }

    async fn insert_activity(&self, a: &Activity) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO activity (account_id, kind, client_id, app_name, device, ip, at)
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&a.account_id)
        .bind(a.kind.as_str())
        .bind(&a.client_id)
        .bind(&a.app_name)
        .bind(&a.device)
        .bind(&a.ip)
        .bind(a.at)
        .execute(&*self.writer())
        .await
        .map_err(map_sqlx)?;
        Ok(())
    }

    async fn list_activity(&self, account_id: &str, limit: i64) -> StoreResult<Vec<Activity>> {
        let found =
            sqlx::query("SELECT * FROM activity WHERE account_id = ? ORDER BY id DESC LIMIT ?")
                .bind(account_id)
                .bind(limit)
                .fetch_all(&self.read)
                .await
                .map_err(map_sqlx)?;
        found.iter().map(rows::activity).collect()
    }

    async fn sync_get(
        &self,
        account_id: &str,
        namespace: &str,
        collection: &str,
        key: &str,
    ) -> StoreResult<Option<SyncDocument>> {
        sqlx::query(SYNC_SELECT_ONE)
            .bind(account_id)
            .bind(namespace)
            .bind(collection)
            .bind(key)
            .fetch_optional(&self.read)
            .await
            .map_err(map_sqlx)?
            .map(|r| rows::sync_document(&r))
            .transpose()
    }

    async fn sync_write(&self, w: &SyncWrite) -> StoreResult<SyncWriteOutcome> {
        let writing = self.writer();
        let mut tx = writing.begin().await.map_err(map_sqlx)?;
        let seq = next_sync_seq(&mut tx, &w.account_id).await?;
        let current = sqlx::query(SYNC_SELECT_ONE)
            .bind(&w.account_id)
            .bind(&w.namespace)
            .bind(&w.collection)
            .bind(&w.key)
            .fetch_optional(&mut *tx)
            .await
            .map_err(map_sqlx)?
            .map(|r| rows::sync_document(&r))
            .transpose()?;
        let live = current.as_ref().filter(|d| !d.deleted);
        let holds = match &w.precondition {
            SyncPrecondition::Absent => live.is_none(),
            SyncPrecondition::Present => live.is_some(),
            SyncPrecondition::Versions(versions) => live.is_some_and(|d| versions.contains(&d.seq)),
        };
        // Deleting what does not exist is a failed precondition too.
        if !holds || (w.body.is_none() && live.is_none()) {
            return Ok(SyncWriteOutcome::PreconditionFailed(current));
        }
        if w.body.is_some() && live.is_none() {
            let count: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM sync_documents WHERE account_id = ? AND deleted = 0",
            )
            .bind(&w.account_id)
            .fetch_one(&mut *tx)
            .await
            .map_err(map_sqlx)?;
            if count >= w.max_documents {
                return Ok(SyncWriteOutcome::TooManyDocuments);
            }
        }
        let doc = SyncDocument {
            account_id: w.account_id.clone(),
            namespace: w.namespace.clone(),
            collection: w.collection.clone(),
            key: w.key.clone(),
            body: w.body.clone(),
            size: w.body.as_ref().map_or(0, |b| b.len() as i64),
            seq,
            deleted: w.body.is_none(),
            updated_at: w.now,
            updated_by: w.device_id.clone(),
        };
        let done = match &current {
            None => sqlx::query(
                "INSERT INTO sync_documents (account_id, namespace, collection, key, body, size,
                     seq, deleted, updated_at, updated_by)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&doc.account_id)
            .bind(&doc.namespace)
            .bind(&doc.collection)
            .bind(&doc.key)
            .bind(&doc.body)
            .bind(doc.size)
            .bind(doc.seq)
            .bind(doc.deleted as i64)
            .bind(doc.updated_at)
            .bind(&doc.updated_by)
            .execute(&mut *tx)
            .await
            .map_err(map_sqlx),
            // Conditional on the version just read: with the counter lock
            // this cannot miss, but it keeps the write safe on its own.
            Some(cur) => sqlx::query(
                "UPDATE sync_documents SET body = ?, size = ?, seq = ?, deleted = ?,
                     updated_at = ?, updated_by = ?
                 WHERE account_id = ? AND namespace = ? AND collection = ? AND key = ?
                     AND seq = ?",
            )
            .bind(&doc.body)
            .bind(doc.size)
            .bind(doc.seq)
            .bind(doc.deleted as i64)
            .bind(doc.updated_at)
            .bind(&doc.updated_by)
            .bind(&doc.account_id)
            .bind(&doc.namespace)
            .bind(&doc.collection)
            .bind(&doc.key)
            .bind(cur.seq)
            .execute(&mut *tx)
            .await
            .map_err(map_sqlx),
        };
        match done {
            Ok(done) if done.rows_affected() == 1 => {}
            Ok(_) | Err(StoreError::Conflict) => {
                drop(tx);
                let now = self
                    .sync_get(&w.account_id, &w.namespace, &w.collection, &w.key)
                    .await?;
                return Ok(SyncWriteOutcome::PreconditionFailed(now));
            }
            Err(e) => return Err(e),
        }
        tx.commit().await.map_err(map_sqlx)?;
        Ok(SyncWriteOutcome::Written(doc))
    }

    async fn sync_changes(
        &self,
        account_id: &str,
        namespaces: &[&str],
        collection: Option<&str>,
        since: i64,
        limit: i64,
    ) -> StoreResult<Vec<SyncDocument>> {
        if namespaces.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders = vec!["?"; namespaces.len()].join(", ");
        let sql = format!(
            "SELECT * FROM sync_documents
             WHERE account_id = ? AND seq > ? AND namespace IN ({placeholders})
                 AND (? IS NULL OR collection = ?)
             ORDER BY seq LIMIT ?"
        );
        let mut query = sqlx::query(&sql).bind(account_id).bind(since);
        for ns in namespaces {
            query = query.bind(*ns);
        }
        query
            .bind(collection)
            .bind(collection)
            .bind(limit)
            .fetch_all(&self.read)
            .await
            .map_err(map_sqlx)?
            .iter()
            .map(rows::sync_document)
            .collect()
    }

    async fn sync_head(&self, account_id: &str) -> StoreResult<i64> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM sync_counters WHERE account_id = ?")
                .bind(account_id)
                .fetch_optional(&self.read)
                .await
                .map_err(map_sqlx)?;
        Ok(seq.unwrap_or(0))
    }

    async fn sync_usage(&self, account_id: &str) -> StoreResult<Vec<SyncUsage>> {
        let rows = sqlx::query(
            "SELECT g.namespace, g.collection, g.documents, g.bytes, d.updated_at,
                 c.name AS app_name, l.label AS last_device
             FROM (SELECT namespace, collection, COUNT(*) AS documents, SUM(size) AS bytes,
                       MAX(seq) AS last_seq
                   FROM sync_documents WHERE account_id = ? AND deleted = 0
                   GROUP BY namespace, collection) g
             JOIN sync_documents d ON d.account_id = ? AND d.seq = g.last_seq
             LEFT JOIN clients c ON c.client_id = g.namespace
             LEFT JOIN linked_devices l ON l.id = d.updated_by
             ORDER BY g.namespace, g.collection",
        )
        .bind(account_id)
        .bind(account_id)
        .fetch_all(&self.read)
        .await
        .map_err(map_sqlx)?;
        rows.iter()
            .map(|r| {
                Ok(SyncUsage {
                    namespace: r.try_get("namespace")?,
                    app_name: r.try_get("app_name")?,
                    collection: r.try_get("collection")?,
                    documents: r.try_get("documents")?,
                    bytes: r.try_get("bytes")?,
                    last_change_at: r.try_get("updated_at")?,
                    last_device: r.try_get("last_device")?,
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(map_sqlx)
    }

    async fn sync_delete_collection(
        &self,
        account_id: &str,
        namespace: &str,
        collection: &str,
        now: Timestamp,
    ) -> StoreResult<u64> {
        let writing = self.writer();
        let mut tx = writing.begin().await.map_err(map_sqlx)?;
        let keys: Vec<String> = sqlx::query_scalar(
            "SELECT key FROM sync_documents
             WHERE account_id = ? AND namespace = ? AND collection = ? AND deleted = 0
             ORDER BY key",
        )
        .bind(account_id)
        .bind(namespace)
        .bind(collection)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        for key in &keys {
            let seq = next_sync_seq(&mut tx, account_id).await?;
            sqlx::query(
                "UPDATE sync_documents SET body = NULL, size = 0, seq = ?, deleted = 1,
                     updated_at = ?, updated_by = NULL
                 WHERE account_id = ? AND namespace = ? AND collection = ? AND key = ?",
            )
            .bind(seq)
            .bind(now)
            .bind(account_id)
            .bind(namespace)
            .bind(collection)
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(map_sqlx)?;
        }
        tx.commit().await.map_err(map_sqlx)?;
        Ok(keys.len() as u64)
    }
}

async fn insert_refresh_token(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    t: &RefreshToken,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, device_id, scope, created_at, expires_at, rotated_at)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&t.token_hash)
    .bind(&t.device_id)
    .bind(&t.scope)
    .bind(t.created_at)
    .bind(t.expires_at)
    .bind(t.rotated_at)
    .execute(&mut **tx)
    .await
    .map_err(map_sqlx)?;
    Ok(())
}

/// Records and a store for tests here and elsewhere in the crate.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;

    pub(crate) fn client(scopes: &str) -> Client {
        Client {
            client_id: "tv".into(),
            name: "TV".into(),
            secret_hash: None,
            scopes: scopes.into(),
            device_flow_enabled: true,
            created_at: 0,
        }
    }

    pub(crate) fn authorization(n: usize) -> DeviceAuthorization {
        DeviceAuthorization {
            id: format!("id-{n}"),
            device_code_hash: format!("hash-{n}"),
            user_code: format!("CODE{n:04}"),
            client_id: "tv".into(),
            scope: "openid".into(),
            state: AuthorizationState::Pending,
            account_id: None,
            requested_ip: "192.0.2.1".into(),
            device_name: None,
            created_at: 0,
            expires_at: i64::MAX,
            interval: 5,
            decided_at: None,
        }
    }

    /// A store in a fresh file (kept while the directory lives) with one
    /// app, `tv`.
    pub(crate) async fn store_with_client() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("linkd.db").display()
        );
        let store = SqliteStore::open(&url).await.unwrap();
        store.migrate().await.unwrap();
        store.insert_client(&client("openid")).await.unwrap();
        (dir, store)
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::*;
    use super::*;

    /// The direct readers keep their snapshot between reads; every write
    /// through the store must still be seen by the very next read, and a
    /// write by another process within the snapshot's age limit.
    #[tokio::test]
    async fn direct_reads_see_every_committed_write() {
        let (dir, store) = store_with_client().await;
        assert!(store.direct.is_some(), "a file database reads directly");
        for n in 0..200 {
            // Reads in between, so the readers hold a snapshot.
            assert!(
                store
                    .poll_device_authorization(&format!("hash-{n}"))
                    .await
                    .unwrap()
                    .is_none()
            );
            store
                .insert_device_authorization(&authorization(n))
                .await
                .unwrap();
            let (auth, client) = store
                .poll_device_authorization(&format!("hash-{n}"))
                .await
                .unwrap()
                .expect("the row written just before");
            assert_eq!(
                (auth.id.as_str(), client.name.as_str()),
                (&*format!("id-{n}"), "TV")
            );
            let scopes = format!("openid s{n}");
            store
                .update_client("tv", Some(&scopes), None)
                .await
                .unwrap();
            assert_eq!(
                store.get_client("tv").await.unwrap().unwrap().scopes,
                scopes
            );
            // The poll's read of the app comes from the reader's copy when
            // one is there: it must not outlive the write.
            let (_, client) = store
                .poll_device_authorization(&format!("hash-{n}"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(client.scopes, scopes);
        }

        // Another process's write (here: another connection) is not
        // counted; it shows once the snapshot is older than its limit.
        let other = rusqlite::Connection::open(dir.path().join("linkd.db")).unwrap();
        other
            .execute(
                "UPDATE clients SET name = 'Elsewhere' WHERE client_id = 'tv'",
                [],
            )
            .unwrap();
        tokio::time::sleep(SNAPSHOT_MAX_AGE * 5).await;
        assert_eq!(
            store.get_client("tv").await.unwrap().unwrap().name,
            "Elsewhere"
        );
        let (_, client) = store
            .poll_device_authorization("hash-0")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(client.name, "Elsewhere");
    }

    /// A reader answers from its copy of an app until its snapshot goes.
    #[tokio::test]
    async fn a_readers_app_copy_lasts_as_long_as_its_snapshot() {
        let (dir, store) = store_with_client().await;
        let direct = store.direct.clone().unwrap();
        let mut reader = Reader {
            conn: direct.open().unwrap(),
            snapshot: None,
            clients: Vec::new(),
        };
        reader.refresh(0).unwrap();
        assert_eq!(reader.client("tv").unwrap().unwrap().name, "TV");
        assert!(reader.client("nobody").unwrap().is_none());
        assert_eq!(reader.clients.len(), 1);
        let other = rusqlite::Connection::open(dir.path().join("linkd.db")).unwrap();
        other
            .execute("UPDATE clients SET name = 'Renamed'", [])
            .unwrap();
        // Still the snapshot's app: the copy is what a read would see.
        assert_eq!(reader.client("tv").unwrap().unwrap().name, "TV");
        reader.release().unwrap();
        assert!(reader.clients.is_empty());
        assert_eq!(reader.client("tv").unwrap().unwrap().name, "Renamed");
    }

    /// Within one snapshot, polls of many codes read their app once; the
    /// copy answers exactly what the join did.
    #[tokio::test]
    async fn polls_share_their_app_within_a_snapshot() {
        let (_dir, store) = store_with_client().await;
        for n in 0..3 {
            store
                .insert_device_authorization(&authorization(n))
                .await
                .unwrap();
        }
        let read = store
            .poll_device_authorization("hash-0")
            .await
            .unwrap()
            .unwrap();
        for n in 0..3 {
            let (auth, client) = store
                .poll_device_authorization(&format!("hash-{n}"))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(auth.id, format!("id-{n}"));
            assert_eq!(client, read.1);
        }
        store.update_client("tv", None, Some(false)).await.unwrap();
        let (_, client) = store
            .poll_device_authorization("hash-1")
            .await
            .unwrap()
            .unwrap();
        assert!(!client.device_flow_enabled, "a write ends the copies");
        assert!(
            store
                .poll_device_authorization("hash-none")
                .await
                .unwrap()
                .is_none()
        );
    }

    /// The background checkpoint keeps one connection from round to round
    /// and copies every committed frame back into the database file.
    #[tokio::test]
    async fn checkpoints_reuse_their_connection() {
        let (_dir, store) = store_with_client().await;
        let direct = store.direct.clone().unwrap();
        let mut conn = None;
        for n in 0..3 {
            store
                .insert_device_authorization(&authorization(n))
                .await
                .unwrap();
            let (direct, mut slot) = (direct.clone(), conn.take());
            conn = tokio::task::spawn_blocking(move || {
                direct.checkpoint(&mut slot).unwrap();
                slot
            })
            .await
            .unwrap();
            let kept = conn.as_ref().expect("the connection is kept");
            let (frames, copied): (i64, i64) = kept
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                    Ok((r.get(1)?, r.get(2)?))
                })
                .unwrap();
            assert_eq!(frames, copied, "round {n}: every frame checkpointed");
        }
    }

    /// Idle readers let their snapshots go, so a checkpoint can copy every
    /// committed page back into the database file.
    #[tokio::test]
    async fn idle_readers_release_their_snapshots() {
        let (_dir, store) = store_with_client().await;
        store.get_client("tv").await.unwrap();
        let direct = store.direct.as_ref().unwrap();
        let holding = |direct: &Direct| {
            direct
                .idle
                .lock()
                .unwrap()
                .iter()
                .filter(|r| r.snapshot.is_some())
                .count()
        };
        assert_eq!(holding(direct), 1);
        std::thread::sleep(SNAPSHOT_MAX_AGE * 2);
        direct.release_idle();
        assert_eq!(holding(direct), 0);
    }
}

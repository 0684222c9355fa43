//! The SQLite backend: opening the file (WAL mode, one writer connection
//! and a pool of readers so reads never wait behind a write), and the few
//! things SQLite does its own way, each with its reason. The queries
//! themselves are shared (`store/*.rs`); the hot-path readers are in
//! `direct.rs`.

/// The watch on `poll_changes`, which keeps the poll cache true.
mod changes;
pub(crate) mod direct;
#[cfg(test)]
pub(crate) mod fixtures;

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use super::db::{Db, Dialect};
use super::poll_cache::{POLL_CACHE_CAP, PollCache};
use super::{
    DeviceAuthorization, EVENT_BACKLOG, EmbeddedMigrations, SqlStore, StoreError, StoreResult,
    authorizations, map_sqlx,
};

const MIGRATIONS: EmbeddedMigrations = EmbeddedMigrations(&[
    (
        1,
        "initial",
        include_str!("../../../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "lifecycle",
        include_str!("../../../migrations/sqlite/0002_lifecycle.sql"),
    ),
    (
        3,
        "client switches",
        include_str!("../../../migrations/sqlite/0003_client_switches.sql"),
    ),
    (
        4,
        "sync",
        include_str!("../../../migrations/sqlite/0004_sync.sql"),
    ),
    (
        5,
        "purge",
        include_str!("../../../migrations/sqlite/0005_purge.sql"),
    ),
    (
        6,
        "sync tombstones",
        include_str!("../../../migrations/sqlite/0006_sync_tombstones.sql"),
    ),
    (
        7,
        "authorization code",
        include_str!("../../../migrations/sqlite/0007_authorization_code.sql"),
    ),
    (
        8,
        "outbox",
        include_str!("../../../migrations/sqlite/0008_outbox.sql"),
    ),
    (
        12,
        "key revocation",
        include_str!("../../../migrations/sqlite/0012_key_revocation.sql"),
    ),
    (
        14,
        "account links",
        include_str!("../../../migrations/sqlite/0014_account_links.sql"),
    ),
    (
        15,
        "device kind",
        include_str!("../../../migrations/sqlite/0015_device_kind.sql"),
    ),
    (
        16,
        "time zone",
        include_str!("../../../migrations/sqlite/0016_time_zone.sql"),
    ),
    (
        17,
        "passkeys",
        include_str!("../../../migrations/sqlite/0017_passkeys.sql"),
    ),
    (
        19,
        "phishing checks",
        include_str!("../../../migrations/sqlite/0019_phishing_checks.sql"),
    ),
    (
        20,
        "link reports",
        include_str!("../../../migrations/sqlite/0020_link_reports.sql"),
    ),
    (
        21,
        "dpop",
        include_str!("../../../migrations/sqlite/0021_dpop.sql"),
    ),
    (
        22,
        "pending joins",
        include_str!("../../../migrations/sqlite/0022_pending_joins.sql"),
    ),
    (
        23,
        "identities",
        include_str!("../../../migrations/sqlite/0023_identities.sql"),
    ),
    (
        25,
        "shared limits",
        include_str!("../../../migrations/sqlite/0025_shared_limits.sql"),
    ),
    (
        28,
        "device refresh state",
        include_str!("../../../migrations/sqlite/0028_device_refresh_state.sql"),
    ),
    (
        29,
        "poll changes",
        include_str!("../../../migrations/sqlite/0029_poll_changes.sql"),
    ),
]);

pub(crate) const DIALECT: Dialect = Dialect {
    // The email column is declared COLLATE NOCASE (migration 0001), which
    // folds ASCII letters only; its unique index uses the same collation.
    account_by_email: "SELECT * FROM accounts WHERE email = $1",
    accounts_by_email: "SELECT * FROM accounts ORDER BY email",
    // SQLite's rowid is the insertion order (PostgreSQL needs a column).
    signing_keys_newest_first: "SELECT * FROM signing_keys ORDER BY created_at DESC, rowid DESC",
    migrations: MIGRATIONS.0,
    // The one writer runs the select and the update as one statement
    // that no other claim can interleave with.
    claim_outbox: "UPDATE outbox SET lease = $1, next_attempt_at = $2, attempts = attempts + 1
         WHERE id IN (SELECT id FROM outbox
                      WHERE kind = $3 AND failed_at IS NULL AND next_attempt_at <= $4
                      ORDER BY next_attempt_at LIMIT $5)
         RETURNING *",
};

/// The SQLite database: its one writer, its readers, and the hot-path
/// readers.
pub(crate) struct SqliteDb {
    /// Only through [`SqliteDb::writer`], which counts writes.
    write: SqlitePool,
    /// Writes made through this store, for the direct readers.
    writes: std::sync::Arc<AtomicU64>,
    pub(crate) read: SqlitePool,
    /// Hot-path reads on the calling thread; `None` for an in-memory
    /// database, which other connections cannot see.
    pub(crate) direct: Option<std::sync::Arc<direct::Direct>>,
    /// Pending codes polls are answered from (`poll_cache`), kept true by
    /// this process's own decisions and by the watch on `poll_changes`
    /// (`changes.rs`); it holds nothing for an in-memory database.
    pub(crate) polls: std::sync::Arc<PollCache>,
}

/// Opens (and creates) the SQLite store `url` names.
pub async fn open(url: &str) -> StoreResult<SqlStore> {
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|e| StoreError::Unavailable(format!("bad SQLite URL {url:?}: {e}")))?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        // In WAL mode NORMAL never corrupts the database and keeps every
        // commit across a process crash; only a power cut may drop the
        // last commits. FULL would cost an fsync per commit.
        .synchronous(SqliteSynchronous::Normal)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT)
        .pragma(
            "wal_autocheckpoint",
            WRITER_AUTOCHECKPOINT_PAGES.to_string(),
        )
        .pragma("journal_size_limit", WAL_SIZE_LIMIT_BYTES.to_string());
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
        std::sync::Arc::new(direct::Direct {
            path: path.to_path_buf(),
            idle: Default::default(),
            writes: writes.clone(),
            restarting: Default::default(),
        })
    });
    let polls = std::sync::Arc::new(PollCache::new(POLL_CACHE_CAP));
    // Nothing is cached until the watch has read `poll_changes` once.
    polls.deaf();
    if let Some(direct) = &direct {
        tokio::spawn(direct::checkpoint_in_background(
            std::sync::Arc::downgrade(direct),
            write.clone(),
        ));
        tokio::spawn(changes::watch(
            direct.path.clone(),
            std::sync::Arc::downgrade(&polls),
            writes.clone(),
            write.clone(),
        ));
    }
    Ok(SqlStore {
        db: Db::Sqlite(SqliteDb {
            write,
            writes,
            read,
            direct,
            polls,
        }),
        // One SQLite file serves one linkd process, so events stay in
        // memory.
        events: tokio::sync::broadcast::channel(EVENT_BACKLOG).0,
    })
}

/// The one writing connection, lent for one statement or transaction.
/// Dropped after it, it counts a write, so direct readers take a new
/// snapshot ([`Direct`]).
pub(crate) struct Writing<'a> {
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

/// WAL pages past which the writer copies them into the database itself
/// after every commit, should the background checkpoint and its restarts
/// fall behind (64 MiB). The background normally starts the WAL over
/// long before (`direct::restart`); it is only the fallback, since a
/// writer past it checkpoints after every commit while readers hold
/// the WAL.
const WRITER_AUTOCHECKPOINT_PAGES: u32 = 16_000;
/// How long a connection waits for another's lock.
pub(super) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// What a WAL file is cut back to when it starts over: a burst may grow
/// it far past this, and without the limit the file would keep its
/// largest size on disk for good.
const WAL_SIZE_LIMIT_BYTES: u64 = 64 << 20;
impl SqliteDb {
    /// The writer for one statement, or for a transaction: keep the guard
    /// until after the commit (`let writing = db.writer();`).
    pub(crate) fn writer(&self) -> Writing<'_> {
        Writing {
            pool: &self.write,
            writes: &self.writes,
        }
    }

    pub(super) fn pool_stats(&self) -> Vec<(&'static str, u32, usize)> {
        vec![
            ("write", self.write.size(), self.write.num_idle()),
            ("read", self.read.size(), self.read.num_idle()),
        ]
    }
}

pub(super) async fn migrate(db: &SqliteDb) -> StoreResult<()> {
    super::run_migrations(MIGRATIONS, &*db.writer()).await
}

/// Writes a consistent copy of the database to `path`.
pub(super) async fn backup(db: &SqliteDb, path: &std::path::Path) -> StoreResult<()> {
    let target = path
        .to_str()
        .ok_or_else(|| StoreError::Unavailable("the backup path is not valid UTF-8".into()))?;
    if path.exists() {
        return Err(StoreError::Conflict);
    }
    // VACUUM INTO writes a transactionally consistent copy from one read
    // transaction, so writers go on while it runs (WAL mode).
    sqlx::query("VACUUM INTO $1")
        .bind(target)
        .execute(&db.read)
        .await
        .map_err(map_sqlx)?;
    Ok(())
}

/// Stores a group of authorizations; returns the ids that went in.
pub(super) async fn insert_authorizations(
    db: &SqliteDb,
    auths: &[DeviceAuthorization],
) -> StoreResult<HashSet<String>> {
    // One statement per chunk of the group: sqlx runs each statement
    // on its connection's thread, so a statement per row would cost two
    // thread switches per row. Chunks keep within SQLite's 32,766 bound
    // parameters. DO NOTHING rather than an error on a taken code, so
    // one taken code does not cost the rest; RETURNING tells which rows
    // went in.
    let writing = db.writer();
    if auths.len() <= AUTHORIZATIONS_PER_STATEMENT {
        // One statement is a transaction of its own: no BEGIN and COMMIT
        // round trips to the writer's thread, and no statement journal
        // (which SQLite keeps for a statement inside a transaction, and
        // spills to a temporary file past 64 KiB).
        let sql = insert_sql(auths.len());
        return insert_statement(&sql, auths)
            .fetch_all(&*writing)
            .await
            .map(HashSet::from_iter)
            .map_err(map_sqlx);
    }
    let mut inserted = HashSet::new();
    let mut tx = writing.begin().await.map_err(map_sqlx)?;
    for chunk in auths.chunks(AUTHORIZATIONS_PER_STATEMENT) {
        let sql = insert_sql(chunk.len());
        inserted.extend(
            insert_statement(&sql, chunk)
                .fetch_all(&mut *tx)
                .await
                .map_err(map_sqlx)?,
        );
    }
    tx.commit().await.map_err(map_sqlx)?;
    Ok(inserted)
}

/// Most authorizations one INSERT statement stores.
const AUTHORIZATIONS_PER_STATEMENT: usize = 1000;

/// An INSERT of `rows` authorizations, returning the ids that went in.
fn insert_sql(rows: usize) -> String {
    let mut sql = format!(
        "INSERT INTO device_authorizations ({}) VALUES ",
        authorizations::COLUMNS
    );
    for i in 0..rows {
        sql.push_str(if i == 0 { "" } else { ", " });
        sql.push_str("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
    }
    sql.push_str(" ON CONFLICT DO NOTHING RETURNING id");
    sql
}

/// `sql` (from [`insert_sql`]) with `chunk` bound.
fn insert_statement<'q>(
    sql: &'q str,
    chunk: &'q [DeviceAuthorization],
) -> sqlx::query::QueryScalar<'q, sqlx::Sqlite, String, sqlx::sqlite::SqliteArguments<'q>> {
    let mut query = sqlx::query_scalar::<_, String>(sql);
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
            .bind(a.decided_at)
            .bind(&a.user_agent);
    }
    query
}

//! What PostgreSQL saw of a run, from its own statistics: transactions
//! (`pg_stat_database`; every statement outside a transaction is one),
//! statements (`pg_stat_statements`, when the server preloads it), table
//! reads (sequential and index scans begun, `pg_stat_user_tables`), rows
//! written (inserted, updated, deleted, there too), WAL written
//! (`pg_stat_wal`, server-wide) and the CPU time of the backends serving
//! the run's database (/proc).
//!
//! A backend hands its counts to the shared statistics when it has been
//! idle for a while or when it exits, not after every statement, so a run
//! is counted from a database nobody is connected to, through the servers'
//! whole life, to the moment their connections are gone again. What the
//! servers do when idle (timers, the outbox's ticks) is measured the same
//! way over a run of the same length without load, and taken off.

use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::{Connection, PgConnection, Row};

/// Longest wait for a run's connections to go after its servers stopped.
const QUIESCE_TIMEOUT: Duration = Duration::from_secs(20);

/// One reading of the counters of one database.
#[derive(Debug, Clone, Copy, Default)]
pub struct DbCounters {
    pub transactions: i64,
    /// Statements executed, when `pg_stat_statements` is there to count them.
    pub statements: Option<i64>,
    pub table_reads: i64,
    pub rows_written: i64,
    /// Server-wide: only meaningful on an otherwise quiet server.
    pub wal_bytes: Option<i64>,
}

impl DbCounters {
    fn minus(&self, earlier: &DbCounters) -> DbCounters {
        DbCounters {
            transactions: self.transactions - earlier.transactions,
            statements: self.statements.zip(earlier.statements).map(|(a, b)| a - b),
            table_reads: self.table_reads - earlier.table_reads,
            rows_written: self.rows_written - earlier.rows_written,
            wal_bytes: self.wal_bytes.zip(earlier.wal_bytes).map(|(a, b)| a - b),
        }
    }
}

/// The database a run uses, watched from an administrator's connection.
#[derive(Debug, Clone)]
pub struct DbProbe {
    /// Where activity and the database-wide counters are read: another
    /// database, so that reading them counts in none of the run's figures.
    pub admin_url: String,
    /// The run's own database (its tables' statistics are only visible
    /// from inside it; what that connection does is the same at every
    /// reading and cancels out of the differences).
    pub database_url: String,
    pub database: String,
}

impl DbProbe {
    async fn connect(&self) -> anyhow::Result<PgConnection> {
        PgConnection::connect(&self.database_url)
            .await
            .context("connecting to the bench database for its statistics")
    }

    async fn admin(&self) -> anyhow::Result<PgConnection> {
        PgConnection::connect(&self.admin_url)
            .await
            .context("connecting to PostgreSQL for its statistics")
    }

    /// Asks for `pg_stat_statements` in the run's database; without the
    /// server preloading it the extension cannot count, and statements
    /// stay unknown.
    pub async fn enable_statements(&self) {
        if let Ok(mut conn) = self.connect().await {
            let _ = sqlx::raw_sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                .execute(&mut conn)
                .await;
            conn.close().await.ok();
        }
    }

    /// Backends connected to the run's database, other than the asking one.
    pub async fn backend_pids(&self) -> Vec<u32> {
        let Ok(mut conn) = self.admin().await else {
            return Vec::new();
        };
        let pids = sqlx::query("SELECT pid FROM pg_stat_activity WHERE datname = $1")
            .bind(&self.database)
            .fetch_all(&mut conn)
            .await
            .map(|rows| {
                rows.iter()
                    .filter_map(|r| r.try_get::<i32, _>(0).ok())
                    .filter_map(|pid| u32::try_from(pid).ok())
                    .collect()
            })
            .unwrap_or_default();
        conn.close().await.ok();
        pids
    }

    /// Waits until no other connection to the run's database is left, so
    /// every backend has handed in its counts.
    pub async fn quiesce(&self) -> anyhow::Result<()> {
        let deadline = Instant::now() + QUIESCE_TIMEOUT;
        loop {
            if self.backend_pids().await.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "connections to {} still open {} s after its servers stopped",
                    self.database,
                    QUIESCE_TIMEOUT.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The counters now, of a database nobody is connected to.
    pub async fn read(&self) -> anyhow::Result<DbCounters> {
        let mut conn = self.connect().await?;
        let tables = sqlx::query(
            "SELECT COALESCE(SUM(seq_scan + COALESCE(idx_scan, 0)), 0)::bigint, \
                    COALESCE(SUM(n_tup_ins + n_tup_upd + n_tup_del), 0)::bigint \
             FROM pg_stat_user_tables",
        )
        .fetch_one(&mut conn)
        .await
        .context("reading pg_stat_user_tables")?;
        let statements = sqlx::query(
            "SELECT COALESCE(SUM(calls), 0)::bigint FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = $1) \
               AND query NOT LIKE '%pg_stat%'",
        )
        .bind(&self.database)
        .fetch_one(&mut conn)
        .await
        .ok()
        .and_then(|r| r.try_get::<i64, _>(0).ok());
        conn.close().await.ok();
        // That connection's transactions are handed in when it is gone.
        self.quiesce().await?;
        let mut admin = self.admin().await?;
        let db = sqlx::query(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1",
        )
        .bind(&self.database)
        .fetch_one(&mut admin)
        .await
        .context("reading pg_stat_database")?;
        let wal_bytes = sqlx::query("SELECT wal_bytes::bigint FROM pg_stat_wal")
            .fetch_one(&mut admin)
            .await
            .ok()
            .and_then(|r| r.try_get::<i64, _>(0).ok());
        admin.close().await.ok();
        Ok(DbCounters {
            transactions: db.try_get(0)?,
            statements,
            table_reads: tables.try_get(0)?,
            rows_written: tables.try_get(1)?,
            wal_bytes,
        })
    }
}

/// What a run cost the database: its servers' whole life under load,
/// less the same length of life without load.
#[derive(Debug, Clone, Copy)]
pub struct DbCost {
    pub loaded: DbCounters,
    pub idle: DbCounters,
    /// The operations the load made (answers received), to divide by.
    pub operations: u64,
}

impl DbCost {
    fn per_op(&self, loaded: i64, idle: i64) -> f64 {
        if self.operations == 0 {
            return 0.0;
        }
        (loaded - idle).max(0) as f64 / self.operations as f64
    }

    pub fn transactions(&self) -> f64 {
        self.per_op(self.loaded.transactions, self.idle.transactions)
    }

    pub fn statements(&self) -> Option<f64> {
        Some(self.per_op(self.loaded.statements?, self.idle.statements?))
    }

    pub fn table_reads(&self) -> f64 {
        self.per_op(self.loaded.table_reads, self.idle.table_reads)
    }

    pub fn rows_written(&self) -> f64 {
        self.per_op(self.loaded.rows_written, self.idle.rows_written)
    }

    pub fn wal_bytes(&self) -> Option<f64> {
        Some(self.per_op(self.loaded.wal_bytes?, self.idle.wal_bytes?))
    }
}

/// Counts what `run` makes the database do: `run` starts the servers,
/// loads them, stops them, and returns its result with the number of
/// operations it made; then `idle` runs the same servers as long again
/// without load.
pub async fn measure<T, Fut, IdleFut>(
    probe: &DbProbe,
    run: impl FnOnce() -> Fut,
    idle: impl FnOnce(Duration) -> IdleFut,
) -> anyhow::Result<(T, DbCost)>
where
    Fut: Future<Output = anyhow::Result<(T, u64)>>,
    IdleFut: Future<Output = anyhow::Result<()>>,
{
    probe.quiesce().await?;
    let before = probe.read().await?;
    let started = Instant::now();
    let (result, operations) = run().await?;
    let lived = started.elapsed();
    probe.quiesce().await?;
    let after = probe.read().await?;
    idle(lived).await?;
    probe.quiesce().await?;
    let after_idle = probe.read().await?;
    Ok((
        result,
        DbCost {
            loaded: after.minus(&before),
            idle: after_idle.minus(&after),
            operations,
        },
    ))
}

/// The CPU time of the run database's backends, read at a window's edges
/// (the backends open at its start; one that ends in between is lost).
pub struct BackendCpu {
    pids: Vec<u32>,
    before: Option<u64>,
}

impl BackendCpu {
    pub async fn start(probe: &DbProbe) -> Self {
        let pids = probe.backend_pids().await;
        let before = crate::machine::cpu_ticks_sum(&pids);
        BackendCpu { pids, before }
    }

    /// µs of backend CPU since `start`.
    pub fn stop(&self) -> Option<f64> {
        let after = crate::machine::cpu_ticks_sum(&self.pids)?;
        let spent = after.checked_sub(self.before?)?;
        Some(crate::machine::ticks_to_us(spent))
    }
}

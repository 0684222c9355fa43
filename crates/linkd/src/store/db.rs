//! The one SQL layer both databases share: a query is written once, as
//! `$n` SQL text with its arguments ([`Query`]), and run by [`Db`] or
//! [`Tx`] on whichever driver the store opened. sqlx's SQLite driver reads
//! `$n` parameters like PostgreSQL does, so the text is the same for both;
//! only the binding of the arguments and the driver call are per backend,
//! here, once.

use super::rows::Columns;
use super::{StoreError, StoreResult, map_sqlx};
use super::{postgres::PgDb, sqlite::SqliteDb};

/// One argument of a query. The few types linkd stores: text, 64-bit
/// integers and flags (SQLite keeps a flag as an integer; sqlx binds a
/// `bool` as 0 or 1 there).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arg<'q> {
    Text(&'q str),
    OptText(Option<&'q str>),
    Int(i64),
    OptInt(Option<i64>),
    Flag(bool),
    OptFlag(Option<bool>),
}

impl<'q> From<&'q str> for Arg<'q> {
    fn from(v: &'q str) -> Self {
        Arg::Text(v)
    }
}
impl<'q> From<&'q String> for Arg<'q> {
    fn from(v: &'q String) -> Self {
        Arg::Text(v)
    }
}
impl<'q> From<Option<&'q str>> for Arg<'q> {
    fn from(v: Option<&'q str>) -> Self {
        Arg::OptText(v)
    }
}
impl<'q> From<&'q Option<String>> for Arg<'q> {
    fn from(v: &'q Option<String>) -> Self {
        Arg::OptText(v.as_deref())
    }
}
impl From<i64> for Arg<'_> {
    fn from(v: i64) -> Self {
        Arg::Int(v)
    }
}
impl From<Option<i64>> for Arg<'_> {
    fn from(v: Option<i64>) -> Self {
        Arg::OptInt(v)
    }
}
impl From<bool> for Arg<'_> {
    fn from(v: bool) -> Self {
        Arg::Flag(v)
    }
}
impl From<Option<bool>> for Arg<'_> {
    fn from(v: Option<bool>) -> Self {
        Arg::OptFlag(v)
    }
}

/// A statement and its arguments, `$1` first. The arguments are borrowed
/// (usually an array on the caller's stack), so building a query
/// allocates nothing.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Query<'q> {
    pub sql: &'q str,
    pub args: &'q [Arg<'q>],
}

/// `q(SQL, &[a.into(), b.into()])`.
pub(crate) fn q<'q>(sql: &'q str, args: &'q [Arg<'q>]) -> Query<'q> {
    Query { sql, args }
}

/// A record read from one row, on either backend (the mappings are in
/// `rows.rs`). A lone value (a count, a sequence number) is read from the
/// column named `v`.
pub(crate) trait FromRow: Sized {
    fn from_row(row: &impl Columns) -> StoreResult<Self>;
}

impl FromRow for i64 {
    fn from_row(row: &impl Columns) -> StoreResult<Self> {
        row.int("v")
    }
}

impl FromRow for Option<i64> {
    fn from_row(row: &impl Columns) -> StoreResult<Self> {
        row.int_or_null("v")
    }
}

impl FromRow for String {
    fn from_row(row: &impl Columns) -> StoreResult<Self> {
        row.text("v")
    }
}

macro_rules! bind_all {
    ($query:expr, $args:expr) => {{
        let mut query = $query;
        for arg in $args {
            query = match *arg {
                Arg::Text(v) => query.bind(v),
                Arg::OptText(v) => query.bind(v),
                Arg::Int(v) => query.bind(v),
                Arg::OptInt(v) => query.bind(v),
                Arg::Flag(v) => query.bind(v),
                Arg::OptFlag(v) => query.bind(v),
            };
        }
        query
    }};
}

fn sqlite(
    query: Query<'_>,
) -> sqlx::query::Query<'_, sqlx::Sqlite, sqlx::sqlite::SqliteArguments<'_>> {
    bind_all!(sqlx::query(query.sql), query.args)
}

fn postgres(
    query: Query<'_>,
) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments> {
    bind_all!(sqlx::query(query.sql), query.args)
}

fn one<T: FromRow>(row: Option<impl Columns>) -> StoreResult<Option<T>> {
    row.map(|r| T::from_row(&r)).transpose()
}

fn all<T: FromRow, R: Columns>(rows: Vec<R>) -> StoreResult<Vec<T>> {
    rows.iter().map(T::from_row).collect()
}

/// The database a store runs on. Reads outside a transaction go to the
/// SQLite store's readers; every write to its one writer.
pub(crate) enum Db {
    Sqlite(SqliteDb),
    Postgres(PgDb),
}

impl Db {
    /// The row `query` finds, if any.
    pub async fn fetch_optional<T: FromRow>(&self, query: Query<'_>) -> StoreResult<Option<T>> {
        match self {
            Db::Sqlite(db) => one(sqlite(query)
                .fetch_optional(&db.read)
                .await
                .map_err(map_sqlx)?),
            Db::Postgres(db) => one(postgres(query)
                .fetch_optional(&db.pool)
                .await
                .map_err(map_sqlx)?),
        }
    }

    /// Exactly one row (an aggregate such as a count).
    pub async fn fetch_one<T: FromRow>(&self, query: Query<'_>) -> StoreResult<T> {
        self.fetch_optional(query)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a query for one row found none".into()))
    }

    pub async fn fetch_all<T: FromRow>(&self, query: Query<'_>) -> StoreResult<Vec<T>> {
        match self {
            Db::Sqlite(db) => all(sqlite(query).fetch_all(&db.read).await.map_err(map_sqlx)?),
            Db::Postgres(db) => all(postgres(query)
                .fetch_all(&db.pool)
                .await
                .map_err(map_sqlx)?),
        }
    }

    /// Runs one writing statement on its own; returns the rows it changed.
    pub async fn execute(&self, query: Query<'_>) -> StoreResult<u64> {
        let done = match self {
            Db::Sqlite(db) => sqlite(query)
                .execute(&*db.writer())
                .await
                .map_err(map_sqlx)?
                .rows_affected(),
            Db::Postgres(db) => postgres(query)
                .execute(&db.pool)
                .await
                .map_err(map_sqlx)?
                .rows_affected(),
        };
        Ok(done)
    }

    /// A transaction; dropped without [`Tx::commit`] it rolls back.
    pub async fn begin(&self) -> StoreResult<Tx<'_>> {
        Ok(match self {
            Db::Sqlite(db) => {
                let writing = db.writer();
                let tx = writing.begin().await.map_err(map_sqlx)?;
                Tx::Sqlite(tx, writing)
            }
            Db::Postgres(db) => Tx::Postgres(db.pool.begin().await.map_err(map_sqlx)?),
        })
    }
}

/// A transaction on either backend. On SQLite it holds the one writer
/// (and counts as a write once it ends, for the direct readers).
pub(crate) enum Tx<'a> {
    // Fields drop in order: the transaction ends before the write is
    // counted.
    Sqlite(
        sqlx::Transaction<'static, sqlx::Sqlite>,
        super::sqlite::Writing<'a>,
    ),
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Tx<'_> {
    pub async fn fetch_optional<T: FromRow>(&mut self, query: Query<'_>) -> StoreResult<Option<T>> {
        match self {
            Tx::Sqlite(tx, _) => one(sqlite(query)
                .fetch_optional(&mut **tx)
                .await
                .map_err(map_sqlx)?),
            Tx::Postgres(tx) => one(postgres(query)
                .fetch_optional(&mut **tx)
                .await
                .map_err(map_sqlx)?),
        }
    }

    pub async fn fetch_one<T: FromRow>(&mut self, query: Query<'_>) -> StoreResult<T> {
        self.fetch_optional(query)
            .await?
            .ok_or_else(|| StoreError::Corrupt("a query for one row found none".into()))
    }

    pub async fn fetch_all<T: FromRow>(&mut self, query: Query<'_>) -> StoreResult<Vec<T>> {
        match self {
            Tx::Sqlite(tx, _) => all(sqlite(query).fetch_all(&mut **tx).await.map_err(map_sqlx)?),
            Tx::Postgres(tx) => all(postgres(query)
                .fetch_all(&mut **tx)
                .await
                .map_err(map_sqlx)?),
        }
    }

    /// Runs one statement; returns the rows it changed.
    pub async fn execute(&mut self, query: Query<'_>) -> StoreResult<u64> {
        let done = match self {
            Tx::Sqlite(tx, _) => sqlite(query)
                .execute(&mut **tx)
                .await
                .map_err(map_sqlx)?
                .rows_affected(),
            Tx::Postgres(tx) => postgres(query)
                .execute(&mut **tx)
                .await
                .map_err(map_sqlx)?
                .rows_affected(),
        };
        Ok(done)
    }

    pub async fn commit(self) -> StoreResult<()> {
        match self {
            Tx::Sqlite(tx, _writing) => tx.commit().await.map_err(map_sqlx),
            Tx::Postgres(tx) => tx.commit().await.map_err(map_sqlx),
        }
    }
}

/// The statements whose text differs between the two databases, each
/// given by its backend (`sqlite::DIALECT`, `postgres::DIALECT`) with the
/// reason.
pub(crate) struct Dialect {
    /// An account by email, ignoring ASCII case.
    pub account_by_email: &'static str,
    /// Every account, by email ignoring ASCII case.
    pub accounts_by_email: &'static str,
    /// Signing keys newest first, ties in insertion order.
    pub signing_keys_newest_first: &'static str,
    /// Every migration version this build knows.
    pub migrations: &'static [(i64, &'static str, &'static str)],
    /// Claims up to `$5` due outbox messages of kind `$3` for lease `$1`
    /// until `$2` (`$4` is now) and returns them: the locking differs.
    pub claim_outbox: &'static str,
}

impl Db {
    pub fn dialect(&self) -> &'static Dialect {
        match self {
            Db::Sqlite(_) => &super::sqlite::DIALECT,
            Db::Postgres(_) => &super::postgres::DIALECT,
        }
    }

    /// The pending codes polls are answered from.
    pub(crate) fn polls(&self) -> &super::poll_cache::PollCache {
        match self {
            Db::Sqlite(db) => &db.polls,
            Db::Postgres(db) => &db.polls,
        }
    }

    /// The SQLite store's hot-path readers, when it has them.
    pub fn direct(&self) -> Option<&super::sqlite::direct::Direct> {
        match self {
            Db::Sqlite(db) => db.direct.as_deref(),
            Db::Postgres(_) => None,
        }
    }
}

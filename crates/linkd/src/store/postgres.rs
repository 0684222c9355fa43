//! The PostgreSQL backend, for several linkd instances sharing one
//! database: connecting, events between instances (LISTEN/NOTIFY), and the
//! few things PostgreSQL does its own way, each with its reason. The
//! queries themselves are shared (`store/*.rs`).

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::broadcast;

use super::db::{Db, Dialect};
use super::poll_cache::{POLL_CACHE_CAP, PollCache};
use super::{
    DeviceAuthorization, EVENT_BACKLOG, EmbeddedMigrations, Event, LimitOp, SqlStore, StoreError,
    StoreResult, Timestamp, map_sqlx, redact_url,
};

const MIGRATIONS: EmbeddedMigrations = EmbeddedMigrations(&[
    (
        1,
        "initial",
        include_str!("../../migrations/postgres/0001_initial.sql"),
    ),
    (
        2,
        "lifecycle",
        include_str!("../../migrations/postgres/0002_lifecycle.sql"),
    ),
    (
        3,
        "client switches",
        include_str!("../../migrations/postgres/0003_client_switches.sql"),
    ),
    (
        4,
        "sync",
        include_str!("../../migrations/postgres/0004_sync.sql"),
    ),
    (
        5,
        "purge",
        include_str!("../../migrations/postgres/0005_purge.sql"),
    ),
    (
        6,
        "sync tombstones",
        include_str!("../../migrations/postgres/0006_sync_tombstones.sql"),
    ),
    (
        7,
        "authorization code",
        include_str!("../../migrations/postgres/0007_authorization_code.sql"),
    ),
    (
        8,
        "outbox",
        include_str!("../../migrations/postgres/0008_outbox.sql"),
    ),
    (
        12,
        "key revocation",
        include_str!("../../migrations/postgres/0012_key_revocation.sql"),
    ),
    (
        14,
        "account links",
        include_str!("../../migrations/postgres/0014_account_links.sql"),
    ),
    (
        15,
        "device kind",
        include_str!("../../migrations/postgres/0015_device_kind.sql"),
    ),
    (
        16,
        "time zone",
        include_str!("../../migrations/postgres/0016_time_zone.sql"),
    ),
    (
        17,
        "passkeys",
        include_str!("../../migrations/postgres/0017_passkeys.sql"),
    ),
    (
        19,
        "phishing checks",
        include_str!("../../migrations/postgres/0019_phishing_checks.sql"),
    ),
    (
        20,
        "link reports",
        include_str!("../../migrations/postgres/0020_link_reports.sql"),
    ),
    (
        21,
        "dpop",
        include_str!("../../migrations/postgres/0021_dpop.sql"),
    ),
    (
        22,
        "pending joins",
        include_str!("../../migrations/postgres/0022_pending_joins.sql"),
    ),
    (
        23,
        "identities",
        include_str!("../../migrations/postgres/0023_identities.sql"),
    ),
    (
        25,
        "shared limits",
        include_str!("../../migrations/postgres/0025_shared_limits.sql"),
    ),
    (
        27,
        "code events",
        include_str!("../../migrations/postgres/0027_code_events.sql"),
    ),
    (
        28,
        "device refresh state",
        include_str!("../../migrations/postgres/0028_device_refresh_state.sql"),
    ),
]);

pub(crate) const DIALECT: Dialect = Dialect {
    // The same expression as the unique index `accounts_email`; the "C"
    // collation folds ASCII letters only, like SQLite's NOCASE.
    account_by_email: "SELECT * FROM accounts WHERE lower(email) = lower($1::text COLLATE \"C\")",
    accounts_by_email: "SELECT * FROM accounts ORDER BY lower(email)",
    // A table has no insertion order of its own here: `seq` is one
    // (migration 0001).
    signing_keys_newest_first: "SELECT * FROM signing_keys ORDER BY created_at DESC, seq DESC",
    migrations: MIGRATIONS.0,
    // Several instances claim at once: SKIP LOCKED lets each take rows the
    // others have not locked instead of queueing behind them, and the
    // outer condition is checked again on the locked row, so a row
    // another claim just moved past `now` is not taken twice.
    claim_outbox: "UPDATE outbox SET lease = $1, next_attempt_at = $2, attempts = attempts + 1
         WHERE id IN (SELECT id FROM outbox
                      WHERE kind = $3 AND failed_at IS NULL AND next_attempt_at <= $4
                      ORDER BY next_attempt_at LIMIT $5
                      FOR UPDATE SKIP LOCKED)
           AND failed_at IS NULL AND next_attempt_at <= $4
         RETURNING *",
};

/// The one NOTIFY channel every instance listens on. Channels are per
/// database, so deployments sharing a server do not hear each other.
const EVENT_CHANNEL: &str = "linkd_events";

/// Connections each instance may hold (the event listener holds one more).
const POOL_CONNECTIONS: u32 = 10;

/// How long a request waits for a connection before it is answered 503.
/// While the database is down, connecting is retried for this long.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// The event listener retries its connection at this pace while the
/// database is away; the longest pause bounds how late it hears again
/// once the database is back.
const RELISTEN_FIRST: Duration = Duration::from_millis(100);
const RELISTEN_MAX: Duration = Duration::from_secs(1);

/// The PostgreSQL database: a pool, and the task that relays other
/// instances' events.
pub(crate) struct PgDb {
    pub(crate) pool: PgPool,
    /// Pending codes polls are answered from (`poll_cache`), kept true by
    /// the event relay.
    pub(crate) polls: Arc<PollCache>,
    /// The task relaying notifications into the store's events; it stops
    /// with the store.
    relay: tokio::task::AbortHandle,
}

impl Drop for PgDb {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

/// Connects, and listens for events before returning so that nothing
/// published after `open` is missed.
pub async fn open(url: &str) -> StoreResult<SqlStore> {
    let options = PgConnectOptions::from_str(url)
        .map_err(|e| {
            StoreError::Unavailable(format!("bad PostgreSQL URL {}: {e}", redact_url(url)))
        })?
        .application_name("linkd");
    let pool = PgPoolOptions::new()
        .max_connections(POOL_CONNECTIONS)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .connect_with(options.clone())
        .await
        .map_err(|e| match e {
            // Refused connections are retried until the timeout; say so
            // rather than sqlx's "pool timed out".
            sqlx::Error::PoolTimedOut => StoreError::Unavailable(format!(
                "PostgreSQL did not accept a connection within {} s",
                ACQUIRE_TIMEOUT.as_secs()
            )),
            e => connect_error(e, &options),
        })?;
    let listener = listen(&options)
        .await
        .map_err(|e| connect_error(e, &options))?;
    let events = broadcast::channel(EVENT_BACKLOG).0;
    let polls = Arc::new(PollCache::new(POLL_CACHE_CAP));
    let relay = tokio::spawn(relay_events(
        options,
        listener,
        events.clone(),
        polls.clone(),
    ))
    .abort_handle();
    Ok(SqlStore {
        db: Db::Postgres(PgDb { pool, polls, relay }),
        events,
    })
}

/// A failed first connection, said so that an operator knows what to
/// fix: a refused certificate names the setting that decides it
/// (`sslrootcert` for the CA, the URL's host for the name; libpq's
/// `verify-full`, PostgreSQL manual §34.19.1).
fn connect_error(err: sqlx::Error, options: &PgConnectOptions) -> StoreError {
    // A refused certificate comes back from the handshake as an I/O error
    // wrapping rustls's, or as sqlx's own TLS error.
    let cause: Option<&(dyn std::error::Error + 'static)> = match &err {
        sqlx::Error::Io(io) => io.get_ref().map(|e| e as _),
        sqlx::Error::Tls(tls) => Some(tls.as_ref() as _),
        _ => None,
    };
    let rustls_error = cause.and_then(|e| {
        e.downcast_ref::<rustls::Error>().or_else(|| {
            e.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        })
    });
    let Some(rustls_error) = rustls_error else {
        return map_sqlx(err);
    };
    let host = options.get_host();
    let why = match rustls_error {
        rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer | rustls::CertificateError::BadSignature,
        ) => "its certificate is not signed by a CA in the file sslrootcert names \
               (or, without sslrootcert, by a well-known CA)"
            .to_string(),
        rustls::Error::InvalidCertificate(
            rustls::CertificateError::NotValidForName
            | rustls::CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "its certificate is not valid for the host name {host:?} in the URL \
             (sslmode=verify-full checks it; connect by a name the certificate holds)"
        ),
        other => format!("TLS failed: {other}"),
    };
    StoreError::Unavailable(format!("refused the PostgreSQL server at {host}: {why}"))
}

async fn listen(options: &PgConnectOptions) -> Result<PgListener, sqlx::Error> {
    // A pool of its own: the listener's connection is never lent to a
    // request, and a broken one is replaced by building a new listener.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(ACQUIRE_TIMEOUT)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with(options.clone());
    let mut listener = PgListener::connect_with(&pool).await?;
    // A lost connection ends `try_recv` at once; `relay_events` then
    // builds a fresh listener with its own backoff.
    listener.eager_reconnect(false);
    listener.listen(EVENT_CHANNEL).await?;
    Ok(listener)
}

/// Hands every notification on the channel, this instance's own included,
/// to the store's subscribers, and reconnects by itself after the database
/// restarts. Notifications sent while it is reconnecting are lost: events
/// are wake-ups, and waiters re-read the store at their interval anyway;
/// the poll cache, which is no such thing, forgets everything it holds
/// and caches nothing until the listener is back.
async fn relay_events(
    options: PgConnectOptions,
    listener: PgListener,
    events: broadcast::Sender<Event>,
    polls: Arc<PollCache>,
) {
    let mut listener = Some(listener);
    // Grows with every reconnection; a notification received proves the
    // connection and resets it. A server that accepts and then drops the
    // connection at once is thus retried at most once per RELISTEN_MAX.
    let mut pause = RELISTEN_FIRST;
    loop {
        let Some(active) = listener.as_mut() else {
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(RELISTEN_MAX);
            match listen(&options).await {
                Ok(fresh) => {
                    tracing::info!("listening for events again");
                    // LISTEN has run: every event from here on is heard.
                    polls.listening_again();
                    listener = Some(fresh);
                }
                Err(e) => tracing::debug!(error = %e, "event listener cannot reconnect yet"),
            }
            continue;
        };
        match active.try_recv().await {
            Ok(Some(notification)) => {
                pause = RELISTEN_FIRST;
                let payload = notification.payload();
                // Before the event is handed on: a woken waiter's next
                // poll must not find the entry.
                match payload.split_once(':') {
                    Some(("decided", id)) => polls.forget(id),
                    Some(("client", _)) => {
                        polls.clear();
                        continue;
                    }
                    _ => {}
                }
                match decode_event(payload) {
                    // No subscriber is not an error: nobody was waiting.
                    Some(event) => {
                        let _ = events.send(event);
                    }
                    // A newer instance during a rolling upgrade may send
                    // kinds this one does not know; they are only wake-ups.
                    None => tracing::debug!(payload = notification.payload(), "unknown event"),
                }
            }
            Ok(None) => {
                tracing::warn!("event listener lost its connection; reconnecting");
                polls.deaf();
                listener = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "event listener failed; reconnecting");
                polls.deaf();
                listener = None;
            }
        }
    }
}

/// A NOTIFY payload: short, since every instance receives every event.
fn encode_event(event: &Event) -> String {
    match event {
        Event::Decided { authorization_id } => format!("decided:{authorization_id}"),
        Event::SettingsChanged { account_id } => format!("settings:{account_id}"),
    }
}

fn decode_event(payload: &str) -> Option<Event> {
    let (kind, id) = payload.split_once(':')?;
    let id = id.to_string();
    match kind {
        "decided" => Some(Event::Decided {
            authorization_id: id,
        }),
        "settings" => Some(Event::SettingsChanged { account_id: id }),
        _ => None,
    }
}

impl PgDb {
    pub(super) fn pool_stats(&self) -> Vec<(&'static str, u32, usize)> {
        vec![("main", self.pool.size(), self.pool.num_idle())]
    }
}

pub(super) async fn migrate(db: &PgDb) -> StoreResult<()> {
    // The migrator holds an advisory lock, so instances starting together
    // migrate one after the other.
    super::run_migrations(MIGRATIONS, &db.pool).await
}

/// The limit steps as one call of `linkd_tally` (migration 0025): a
/// PL/pgSQL function, so that several steps, and the undoing of the ones
/// before a refusal, are one transaction in one round trip. SQLite has no
/// such thing and needs none (its one instance counts in memory), so this
/// lives here rather than in the shared queries.
pub(super) async fn tally_limits(
    db: &PgDb,
    ops: &[LimitOp<'_>],
    now: Timestamp,
) -> StoreResult<Vec<i64>> {
    // Every limit off (an operator's choice, or a benchmark): no round
    // trip that could only answer "go on".
    if ops.iter().all(LimitOp::is_off) {
        return Ok(vec![0; ops.len()]);
    }
    let (waits,): (Vec<i64>,) = bind_ops(
        sqlx::query_as("SELECT linkd_tally($1, $2, $3, $4, $5, $6, $7)"),
        ops,
        now,
    )
    .fetch_one(&db.pool)
    .await
    .map_err(map_sqlx)?;
    checked_waits(waits, ops)
}

/// [`tally_limits`] and a read of the counters `read` (name, key; `sub` is
/// always '' for the limits pages read), in one statement. Every part of
/// a statement sees the database as it was when the statement began, so
/// the read shows the counters just before `linkd_tally` changed them.
/// The tally runs once: a materialized CTE is evaluated once.
pub(super) async fn tally_and_read_limits(
    db: &PgDb,
    ops: &[LimitOp<'_>],
    read: &[(&str, &str)],
    now: Timestamp,
) -> StoreResult<(Vec<i64>, Vec<Option<(i64, Timestamp)>>)> {
    let names: Vec<&str> = read.iter().map(|c| c.0).collect();
    let keys: Vec<&str> = read.iter().map(|c| c.1).collect();
    // Per counter read, in the order asked: its count and the end of its
    // window, 0 and 0 for one with nothing in a live window.
    let (waits, counts, ends): (Vec<i64>, Vec<i64>, Vec<i64>) = bind_ops(
        sqlx::query_as(
            "WITH tally AS MATERIALIZED \
               (SELECT linkd_tally($1, $2, $3, $4, $5, $6, $7) AS waits), \
             live AS (SELECT asked.i, c.count, c.expires_at \
               FROM unnest($8::TEXT[], $9::TEXT[]) WITH ORDINALITY AS asked(name, key, i) \
               LEFT JOIN limit_counts c ON c.name = asked.name AND c.key = asked.key \
                 AND c.sub = '' AND c.expires_at > $7) \
             SELECT tally.waits, \
               ARRAY(SELECT coalesce(count, 0)::BIGINT FROM live ORDER BY i), \
               ARRAY(SELECT coalesce(expires_at, 0) FROM live ORDER BY i) \
             FROM tally",
        ),
        ops,
        now,
    )
    .bind(names)
    .bind(keys)
    .fetch_one(&db.pool)
    .await
    .map_err(map_sqlx)?;
    let live = counts
        .into_iter()
        .zip(ends)
        .map(|(count, ends)| (ends > 0).then_some((count, ends)))
        .collect();
    Ok((checked_waits(waits, ops)?, live))
}

/// Binds `ops` and `now` as `linkd_tally`'s seven arguments.
fn bind_ops<'q, O>(
    query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    ops: &[LimitOp<'q>],
    now: Timestamp,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    let kinds: Vec<&str> = ops.iter().map(|o| o.kind.as_str()).collect();
    let names: Vec<&str> = ops.iter().map(|o| o.name).collect();
    let keys: Vec<&str> = ops.iter().map(|o| o.key).collect();
    let subs: Vec<&str> = ops.iter().map(|o| o.sub).collect();
    let a: Vec<i64> = ops.iter().map(|o| o.a).collect();
    let b: Vec<i64> = ops.iter().map(|o| o.b).collect();
    query
        .bind(kinds)
        .bind(names)
        .bind(keys)
        .bind(subs)
        .bind(a)
        .bind(b)
        .bind(now)
}

/// `linkd_tally` answers one wait per step.
fn checked_waits(waits: Vec<i64>, ops: &[LimitOp<'_>]) -> StoreResult<Vec<i64>> {
    if waits.len() != ops.len() {
        return Err(StoreError::Corrupt(format!(
            "linkd_tally answered {} steps for {}",
            waits.len(),
            ops.len()
        )));
    }
    Ok(waits)
}

/// Tells every instance, this one included (see `relay_events`).
pub(super) async fn publish(db: &PgDb, event: &Event) -> StoreResult<()> {
    if let Event::Decided { .. } = event {
        // The database announced it already, on commit (migration 0027),
        // to every instance: once is enough to wake waiters.
        return Ok(());
    }
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(EVENT_CHANNEL)
        .bind(encode_event(event))
        .execute(&db.pool)
        .await
        .map_err(map_sqlx)?;
    Ok(())
}

/// Stores a group of authorizations; returns the ids that went in.
pub(super) async fn insert_authorizations(
    db: &PgDb,
    auths: &[DeviceAuthorization],
) -> StoreResult<HashSet<String>> {
    fn column<T>(auths: &[DeviceAuthorization], f: impl Fn(&DeviceAuthorization) -> T) -> Vec<T> {
        auths.iter().map(f).collect()
    }
    // One statement, one round trip, for the whole group. DO NOTHING
    // rather than an error on a taken code, which would cost every
    // other record in the group; RETURNING tells which went in.
    let inserted: Vec<String> = sqlx::query_scalar(
        "INSERT INTO device_authorizations (id, device_code_hash, user_code, client_id,
                 scope, state, account_id, requested_ip, device_name, created_at, expires_at,
                 interval_secs, decided_at, user_agent)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                 $6::text[], $7::text[], $8::text[], $9::text[], $10::bigint[], $11::bigint[],
                 $12::bigint[], $13::bigint[], $14::text[])
             ON CONFLICT DO NOTHING
             RETURNING id",
    )
    .bind(column(auths, |a| a.id.clone()))
    .bind(column(auths, |a| a.device_code_hash.clone()))
    .bind(column(auths, |a| a.user_code.clone()))
    .bind(column(auths, |a| a.client_id.clone()))
    .bind(column(auths, |a| a.scope.clone()))
    .bind(column(auths, |a| a.state.as_str()))
    .bind(column(auths, |a| a.account_id.clone()))
    .bind(column(auths, |a| a.requested_ip.clone()))
    .bind(column(auths, |a| a.device_name.clone()))
    .bind(column(auths, |a| a.created_at))
    .bind(column(auths, |a| a.expires_at))
    .bind(column(auths, |a| a.interval))
    .bind(column(auths, |a| a.decided_at))
    .bind(column(auths, |a| a.user_agent.clone()))
    .fetch_all(&db.pool)
    .await
    .map_err(map_sqlx)?;
    Ok(inserted.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_survive_the_notify_payload() {
        for event in [
            Event::Decided {
                authorization_id: "abc-_12".into(),
            },
            Event::SettingsChanged {
                account_id: "x:y".into(),
            },
        ] {
            assert_eq!(decode_event(&encode_event(&event)), Some(event));
        }
        assert_eq!(decode_event("resync:all"), None);
        assert_eq!(decode_event("garbage"), None);
    }
}

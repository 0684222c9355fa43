//! The PostgreSQL store, for several linkd instances sharing one database.
//! Every state change is one conditional statement, as in the SQLite store;
//! events travel between instances with LISTEN/NOTIFY.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use tokio::sync::broadcast;

use super::rows::Columns;
use super::*;

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
]);

/// Every read of a linked device brings its app's name along.
const DEVICE_SELECT: &str = "SELECT d.*, c.name AS app_name FROM linked_devices d
     JOIN clients c ON c.client_id = d.client_id";

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

pub struct PgStore {
    pool: PgPool,
    events: broadcast::Sender<Event>,
    /// The task relaying notifications into `events`; it stops with the store.
    relay: tokio::task::AbortHandle,
}

impl Drop for PgStore {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

impl PgStore {
    /// Connects, and listens for events before returning so that nothing
    /// published after `open` is missed.
    pub async fn open(url: &str) -> StoreResult<Self> {
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
                e => map_sqlx(e),
            })?;
        let listener = listen(&options).await.map_err(map_sqlx)?;
        let events = broadcast::channel(EVENT_BACKLOG).0;
        let relay = tokio::spawn(relay_events(options, listener, events.clone())).abort_handle();
        Ok(PgStore {
            pool,
            events,
            relay,
        })
    }
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
/// are wake-ups, and waiters re-read the store at their interval anyway.
async fn relay_events(
    options: PgConnectOptions,
    listener: PgListener,
    events: broadcast::Sender<Event>,
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
                    listener = Some(fresh);
                }
                Err(e) => tracing::debug!(error = %e, "event listener cannot reconnect yet"),
            }
            continue;
        };
        match active.try_recv().await {
            Ok(Some(notification)) => {
                pause = RELISTEN_FIRST;
                match decode_event(notification.payload()) {
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
                listener = None;
            }
            Err(e) => {
                tracing::warn!(error = %e, "event listener failed; reconnecting");
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

#[async_trait]
impl Store for PgStore {
    async fn migrate(&self) -> StoreResult<()> {
        // The migrator holds an advisory lock, so instances starting
        // together migrate one after the other.
        let migrator = sqlx::migrate::Migrator::new(MIGRATIONS)
            .await
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        migrator
            .run(&self.pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))
    }

    async fn publish(&self, event: Event) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(EVENT_CHANNEL)
            .bind(encode_event(&event))
            .execute(&self.pool)
            .await
            .map_err(map_sqlx)?;
        Ok(())
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    async fn migrations_applied(&self) -> StoreResult<bool> {
        let latest = MIGRATIONS.0.iter().map(|m| m.0).max().unwrap_or(0);
        let applied: Option<i64> =
            sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.pool)
                .await
                .map_err(map_sqlx)?;
        Ok(applied == Some(latest))
    }

    async fn backup(&self, _path: &std::path::Path) -> StoreResult<()> {
        // A consistent copy of a live PostgreSQL database is pg_dump's job;
        // it needs no help from linkd.
        Err(StoreError::Unavailable(
            "linkd backs up only its SQLite store; back up PostgreSQL with pg_dump".into(),
        ))
    }

    fn pool_stats(&self) -> Vec<(&'static str, u32, usize)> {
        vec![("main", self.pool.size(), self.pool.num_idle())]
    }

    async fn count_pending(&self, now: Timestamp) -> StoreResult<i64> {
        sqlx::query_scalar(
            "SELECT COUNT(*) FROM device_authorizations WHERE state = 'pending' AND expires_at > $1",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(map_sqlx)
    }

    async fn purge(&self, before: &PurgeBefore, limit: i64) -> StoreResult<u64> {
        let mut purged = 0;
        for (table, before) in before.by_table() {
            // The ARRAY form lets the delete find the rows by TID.
            let sql = format!(
                "DELETE FROM {table} WHERE ctid = ANY(ARRAY(
                     SELECT ctid FROM {table} WHERE expires_at < $1 LIMIT $2))"
            );
            let done = sqlx::query(&sql)
                .bind(before)
                .bind(limit)
                .execute(&self.pool)
                .await
                .map_err(map_sqlx)?;
            purged += done.rows_affected();
        }
        Ok(purged)
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(map_sqlx)?;
        Ok(())
    }

    async fn insert_client(&self, c: &Client) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO clients (client_id, name, secret_hash, scopes, device_flow_enabled,
                 created_at)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&c.client_id)
        .bind(&c.name)
        .bind(&c.secret_hash)
        .bind(&c.scopes)
        .bind(c.device_flow_enabled)
        .bind(c.created_at)
        .execute(&self.pool)
        .await
        .map_err(map_sqlx)?;
        Ok(())
    }

    async fn get_client(&self, client_id: &str) -> StoreResult<Option<Client>> {
        sqlx::query("SELECT * FROM clients WHERE client_id = $1")
            .bind(client_id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_sqlx)?
            .map(|r| rows::client(&r))
            .transpose()
    }

    async fn list_clients(&self) -> StoreResult<Vec<Client>> {
        sqlx::query("SELECT * FROM clients ORDER BY client_id")
            .fetch_all(&self.pool)
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
            "UPDATE clients SET scopes = COALESCE($1, scopes),
                 device_flow_enabled = COALESCE($2, device_flow_enabled)
             WHERE client_id = $3",
        )
        .bind(scopes)
        .bind(device_flow_enabled)
        .bind(client_id)
        .execute(&self.pool)
        .await
        .map_err(map_sqlx)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_client(&self, client_id: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM clients WHERE client_id = $1")
            .bind(client_id)
            .execute(&self.pool)
            .await
            .map_err(map_sqlx)?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_account(&self, a: &Account) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO accounts (id, email, password_hash, created_at, disabled)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&a.id)
        .bind(&a.email)
        .bind(&a.password_hash)
        .bind(a.created_at)
        .bind(a.disabled)
        .execute(&self.pool)
        .await
        .map_err(map_sqlx)?;
        Ok(())
    }

    async fn get_account_by_email(&self, email: &str) -> StoreResult<Option<Account>> {
        // The same expression as the unique index `accounts_email`; the
        // "C" collation folds ASCII letters only, like SQLite's NOCASE.
        sqlx::query("SELECT * FROM accounts WHERE lower(email) = lower($1::text COLLATE \"C\")")
            .bind(email)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_sqlx)?
            .map(|r| rows::account(&r))
            .transpose()
    }

    async fn get_account(&self, id: &str) -> StoreResult<Option<Account>> {
        sqlx::query("SELECT * FROM accounts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_sqlx)?
            .map(|r| rows::account(&r))
            .transpose()
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        sqlx::query("SELECT * FROM accounts ORDER BY lower(email)")
            .fetch_all(&self.pool)
            .await
            .map_err(map_sqlx)?
            .iter()
            .map(rows::account)
            .collect()
    }

    async fn set_account_disabled(&self, id: &str, disabled: bool) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE accounts SET disabled = $1 WHERE id = $2")
            .bind(disabled)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(map_sqlx)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_account(&self, id: &str) -> StoreResult<bool> {
        // Sessions, codes, devices, their tokens and the activity go with
        // it (ON DELETE CASCADE), in this one statement.
        let done = sqlx::query("DELETE FROM accounts WHERE id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(map_sqlx)?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_client_secret(&self, client_id: &str, secret_hash: &str) -> StoreResult<bool> {
        let done = sqlx::query("UPDATE clients SET secret_hash = $1 WHERE client_id = $2")
            .bind(secret_hash)
            .bind(client_id)
            .execute(&self.pool)
            .await
            .map_err(map_sqlx)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_sessions(&self, account_id: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE account_id = $1")
            .bind(account_id)
            .execute(&self.pool)
            .await
            .map_err(map_sqlx)?;
        Ok(())
    }

    async fn insert_session(&self, s: &Session) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO sessions (id_hash, account_id, csrf_token, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&s.id_hash)
        .bind(&s.account_id)
        .bind(&s.csrf_token)
        .bind(s.created_at)
        .bind(s.expires_at)
        .execute(&self.pool)
        .await
        .map_err(map_sqlx)?;
        Ok(())
    }

    async fn get_session(&self, id_hash: &str, now: Timestamp) -> StoreResult<Option<Session>> {
        let row = sqlx::query("SELECT * FROM sessions WHERE id_hash = $1 AND expires_at > $2")
            .bind(id_hash)
            .bind(now)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_sqlx)?;
        row.map(|r| rows::session(&r)).transpose()
    }

    async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
        sqlx::query("DELETE FROM sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await
            .map_err(map_sqlx)?;
        Ok(())
    }

    async fn insert_signing_key(&self, k: &SigningKey) -> StoreResult<()> {
        sqlx::query("INSERT INTO signing_keys (kid, private_pem, created_at) VALUES ($1, $2, $3)")
            .bind(&k.kid)
            .bind(&k.private_pem)
            .bind(k.created_at)
            .execute(&self.pool)
            .await
            .map_err(map_sqlx)?;
        Ok(())
    }

    async fn insert_first_signing_key(&self, k: &SigningKey) -> StoreResult<bool> {
        let mut tx = self.pool.begin().await.map_err(map_sqlx)?;
        // Under READ COMMITTED two instances could both see an empty table
        // and both insert; this lock mode conflicts with itself, so the
        // second waits and then sees the first one's key.
        sqlx::query("LOCK TABLE signing_keys IN SHARE ROW EXCLUSIVE MODE")
            .execute(&mut *tx)
            .await
            .map_err(map_sqlx)?;
        let done = sqlx::query(
            "INSERT INTO signing_keys (kid, private_pem, created_at)
             SELECT $1, $2, $3 WHERE NOT EXISTS (SELECT 1 FROM signing_keys)",
        )
        .bind(&k.kid)
        .bind(&k.private_pem)
        .bind(k.created_at)
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        tx.commit().await.map_err(map_sqlx)?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
        sqlx::query("SELECT * FROM signing_keys ORDER BY created_at DESC, seq DESC")
            .fetch_all(&self.pool)
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
        fn column<T>(
            auths: &[DeviceAuthorization],
            f: impl Fn(&DeviceAuthorization) -> T,
        ) -> Vec<T> {
            auths.iter().map(f).collect()
        }
        // One statement, one round trip, for the whole group. DO NOTHING
        // rather than an error on a taken code, which would cost every
        // other record in the group; RETURNING tells which went in.
        let inserted: Vec<String> = sqlx::query_scalar(
            "INSERT INTO device_authorizations (id, device_code_hash, user_code, client_id,
                 scope, state, account_id, requested_ip, device_name, created_at, expires_at,
                 interval_secs, decided_at)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                 $6::text[], $7::text[], $8::text[], $9::text[], $10::bigint[], $11::bigint[],
                 $12::bigint[], $13::bigint[])
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
        .fetch_all(&self.pool)
        .await
        .map_err(map_sqlx)?;
        let inserted: std::collections::HashSet<String> = inserted.into_iter().collect();
        Ok(auths.iter().map(|a| inserted.contains(&a.id)).collect())
    }

    async fn get_device_authorization_by_code_hash(
        &self,
        device_code_hash: &str,
    ) -> StoreResult<Option<DeviceAuthorization>> {
        sqlx::query("SELECT * FROM device_authorizations WHERE device_code_hash = $1")
            .bind(device_code_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_sqlx)?
            .map(|r| rows::authorization(&r))
            .transpose()
    }

    async fn poll_device_authorization(
        &self,
        device_code_hash: &str,
    ) -> StoreResult<Option<(PolledAuthorization, std::sync::Arc<Client>)>> {
        sqlx::query(rows::authorization_with_client_sql!("$1"))
            .bind(device_code_hash)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_sqlx)?
            .map(|r| rows::polled_with_client(&r))
            .transpose()
    }

    async fn get_device_authorization_by_user_code(
        &self,
        user_code: &str,
    ) -> StoreResult<Option<DeviceAuthorization>> {
        sqlx::query("SELECT * FROM device_authorizations WHERE user_code = $1")
            .bind(user_code)
            .fetch_optional(&self.pool)
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
        // Under READ COMMITTED a racing update waits for the row lock, then
        // re-checks the WHERE clause against the committed row: one winner.
        let done = sqlx::query(
            "UPDATE device_authorizations SET state = $1, account_id = $2, decided_at = $3
             WHERE id = $4 AND state = 'pending' AND expires_at > $3",
        )
        .bind(state.as_str())
        .bind(account_id)
        .bind(now)
        .bind(id)
        .execute(&self.pool)
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
        let mut tx = self.pool.begin().await.map_err(map_sqlx)?;
        let done = sqlx::query(
            "UPDATE device_authorizations SET state = 'redeemed'
             WHERE id = $1 AND state = 'approved' AND expires_at > $2",
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
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
        sqlx::query(&format!("{DEVICE_SELECT} WHERE d.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_sqlx)?
            .map(|r| rows::linked_device(&r))
            .transpose()
    }

    async fn list_linked_devices(&self, account_id: &str) -> StoreResult<Vec<LinkedDevice>> {
        sqlx::query(&format!(
            "{DEVICE_SELECT} WHERE d.account_id = $1 AND d.revoked_at IS NULL
             ORDER BY d.linked_at DESC, d.id"
        ))
        .bind(account_id)
        .fetch_all(&self.pool)
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
            "UPDATE linked_devices SET label = $1
             WHERE id = $2 AND account_id = $3 AND revoked_at IS NULL",
        )
        .bind(label)
        .bind(id)
        .bind(account_id)
        .execute(&self.pool)
        .await
        .map_err(map_sqlx)?;
        Ok(done.rows_affected() == 1)
    }

    async fn revoke_linked_device(&self, id: &str, now: Timestamp) -> StoreResult<bool> {
        // Locks the device row, then its tokens: the order
        // `rotate_refresh_token` keeps too, so the two cannot deadlock.
        let mut tx = self.pool.begin().await.map_err(map_sqlx)?;
        let done = sqlx::query(
            "UPDATE linked_devices SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        sqlx::query("DELETE FROM refresh_tokens WHERE device_id = $1")
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
            "{DEVICE_SELECT} WHERE d.id = $1 AND d.revoked_at IS NULL
             AND NOT EXISTS (SELECT 1 FROM revoked_access_tokens WHERE jti = $2)"
        ))
        .bind(device_id)
        .bind(jti)
        .fetch_optional(&self.pool)
        .await
        .map_err(map_sqlx)?
        .map(|r| rows::linked_device(&r))
        .transpose()
    }

    async fn get_refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>> {
        let row = sqlx::query("SELECT * FROM refresh_tokens WHERE token_hash = $1")
            .bind(token_hash)
            .fetch_optional(&self.pool)
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
        let mut tx = self.pool.begin().await.map_err(map_sqlx)?;
        // The device row first, then the token, like `revoke_linked_device`:
        // the other order lets a refresh and an unlink deadlock. If the token
        // turns out to be rotated already, the rollback undoes this.
        sqlx::query("UPDATE linked_devices SET last_refresh_at = $1 WHERE id = $2")
            .bind(now)
            .bind(&new.device_id)
            .execute(&mut *tx)
            .await
            .map_err(map_sqlx)?;
        let done = sqlx::query(
            "UPDATE refresh_tokens SET rotated_at = $1 WHERE token_hash = $2 AND rotated_at IS NULL",
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
        tx.commit().await.map_err(map_sqlx)?;
        Ok(true)
    }

    async fn revoke_access_token(&self, jti: &str, expires_at: Timestamp) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO revoked_access_tokens (jti, expires_at) VALUES ($1, $2)
             ON CONFLICT (jti) DO NOTHING",
        )
        .bind(jti)
        .bind(expires_at)
        .execute(&self.pool)
        .await
        .map_err(map_sqlx)?;
        Ok(())
    }

    async fn insert_activity(&self, a: &Activity) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO activity (account_id, kind, client_id, app_name, device, ip, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&a.account_id)
        .bind(a.kind.as_str())
        .bind(&a.client_id)
        .bind(&a.app_name)
        .bind(&a.device)
        .bind(&a.ip)
        .bind(a.at)
        .execute(&self.pool)
        .await
        .map_err(map_sqlx)?;
        Ok(())
    }

    async fn list_activity(&self, account_id: &str, limit: i64) -> StoreResult<Vec<Activity>> {
        let found =
            sqlx::query("SELECT * FROM activity WHERE account_id = $1 ORDER BY id DESC LIMIT $2")
                .bind(account_id)
                .bind(limit)
                .fetch_all(&self.pool)
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
        sqlx::query(PG_SYNC_SELECT_ONE)
            .bind(account_id)
            .bind(namespace)
            .bind(collection)
            .bind(key)
            .fetch_optional(&self.pool)
            .await
            .map_err(map_sqlx)?
            .map(|r| rows::sync_document(&r))
            .transpose()
    }

    async fn sync_write(&self, w: &SyncWrite) -> StoreResult<SyncWriteOutcome> {
        let mut tx = self.pool.begin().await.map_err(map_sqlx)?;
        // The counter first: it takes the account's row lock, so sequence
        // numbers commit in order and the read below cannot go stale.
        let seq = pg_next_sync_seq(&mut tx, &w.account_id).await?;
        let current = sqlx::query(PG_SYNC_SELECT_ONE)
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
        if !holds || (w.body.is_none() && live.is_none()) {
            return Ok(SyncWriteOutcome::PreconditionFailed(current));
        }
        if w.body.is_some() && live.is_none() {
            let count: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM sync_documents WHERE account_id = $1 AND NOT deleted",
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
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&doc.account_id)
            .bind(&doc.namespace)
            .bind(&doc.collection)
            .bind(&doc.key)
            .bind(&doc.body)
            .bind(doc.size)
            .bind(doc.seq)
            .bind(doc.deleted)
            .bind(doc.updated_at)
            .bind(&doc.updated_by)
            .execute(&mut *tx)
            .await
            .map_err(map_sqlx),
            Some(cur) => sqlx::query(
                "UPDATE sync_documents SET body = $1, size = $2, seq = $3, deleted = $4,
                     updated_at = $5, updated_by = $6
                 WHERE account_id = $7 AND namespace = $8 AND collection = $9 AND key = $10
                     AND seq = $11",
            )
            .bind(&doc.body)
            .bind(doc.size)
            .bind(doc.seq)
            .bind(doc.deleted)
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
        let namespaces: Vec<String> = namespaces.iter().map(|n| n.to_string()).collect();
        sqlx::query(
            "SELECT * FROM sync_documents
             WHERE account_id = $1 AND seq > $2 AND namespace = ANY($3)
                 AND ($4::text IS NULL OR collection = $4::text)
             ORDER BY seq LIMIT $5",
        )
        .bind(account_id)
        .bind(since)
        .bind(&namespaces)
        .bind(collection)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(map_sqlx)?
        .iter()
        .map(rows::sync_document)
        .collect()
    }

    async fn sync_head(&self, account_id: &str) -> StoreResult<i64> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM sync_counters WHERE account_id = $1")
                .bind(account_id)
                .fetch_optional(&self.pool)
                .await
                .map_err(map_sqlx)?;
        Ok(seq.unwrap_or(0))
    }

    async fn sync_usage(&self, account_id: &str) -> StoreResult<Vec<SyncUsage>> {
        let rows = sqlx::query(
            "SELECT g.namespace, g.collection, g.documents, g.bytes, d.updated_at,
                 c.name AS app_name, l.label AS last_device
             FROM (SELECT namespace, collection, COUNT(*) AS documents,
                       SUM(size)::BIGINT AS bytes, MAX(seq) AS last_seq
                   FROM sync_documents WHERE account_id = $1 AND NOT deleted
                   GROUP BY namespace, collection) g
             JOIN sync_documents d ON d.account_id = $1 AND d.seq = g.last_seq
             LEFT JOIN clients c ON c.client_id = g.namespace
             LEFT JOIN linked_devices l ON l.id = d.updated_by
             ORDER BY g.namespace, g.collection",
        )
        .bind(account_id)
        .fetch_all(&self.pool)
        .await
        .map_err(map_sqlx)?;
        rows.iter()
            .map(|r| {
                Ok(SyncUsage {
                    namespace: r.text("namespace")?,
                    app_name: r.text_or_null("app_name")?,
                    collection: r.text("collection")?,
                    documents: r.int("documents")?,
                    bytes: r.int("bytes")?,
                    last_change_at: r.int("updated_at")?,
                    last_device: r.text_or_null("last_device")?,
                })
            })
            .collect()
    }

    async fn sync_delete_collection(
        &self,
        account_id: &str,
        namespace: &str,
        collection: &str,
        now: Timestamp,
    ) -> StoreResult<u64> {
        let mut tx = self.pool.begin().await.map_err(map_sqlx)?;
        // Lock the account's counter before reading, like every write.
        let mut seq = pg_next_sync_seq(&mut tx, account_id).await?;
        let keys: Vec<String> = sqlx::query_scalar(
            "SELECT key FROM sync_documents
             WHERE account_id = $1 AND namespace = $2 AND collection = $3 AND NOT deleted
             ORDER BY key",
        )
        .bind(account_id)
        .bind(namespace)
        .bind(collection)
        .fetch_all(&mut *tx)
        .await
        .map_err(map_sqlx)?;
        for (i, key) in keys.iter().enumerate() {
            if i > 0 {
                seq = pg_next_sync_seq(&mut tx, account_id).await?;
            }
            sqlx::query(
                "UPDATE sync_documents SET body = NULL, size = 0, seq = $1, deleted = TRUE,
                     updated_at = $2, updated_by = NULL
                 WHERE account_id = $3 AND namespace = $4 AND collection = $5 AND key = $6",
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
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    t: &RefreshToken,
) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, device_id, scope, created_at, expires_at, rotated_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
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

const PG_SYNC_SELECT_ONE: &str = "SELECT * FROM sync_documents
     WHERE account_id = $1 AND namespace = $2 AND collection = $3 AND key = $4";

/// Hands out the account's next sequence number, taking its row lock.
async fn pg_next_sync_seq(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    account_id: &str,
) -> StoreResult<i64> {
    sqlx::query_scalar(
        "INSERT INTO sync_counters (account_id, seq) VALUES ($1, 1)
         ON CONFLICT (account_id) DO UPDATE SET seq = sync_counters.seq + 1
         RETURNING seq",
    )
    .bind(account_id)
    .fetch_one(&mut **tx)
    .await
    .map_err(map_sqlx)
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

//! The one seam between linkd and its database: the [`Store`] trait, the
//! records it reads and writes, and its implementations (`sqlite`, the
//! embedded default, and `postgres` for several instances). Nothing outside
//! this module writes SQL.
//!
//! Every state change on a device authorization or a refresh token is a
//! single conditional update, so racing requests resolve to one winner.

pub mod postgres;
mod rows;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

/// Seconds since the Unix epoch.
pub type Timestamp = i64;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// A unique key already exists (an email, a client id, a user code).
    #[error("already exists")]
    Conflict,
    /// The database could not be reached or answered with an error.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A stored value could not be read back (a corrupt or foreign row).
    #[error("stored data is invalid: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Client {
    pub client_id: String,
    pub name: String,
    /// SHA-256 of the secret for confidential clients; `None` for public ones.
    pub secret_hash: Option<String>,
    /// Space-separated scopes this client may ask for.
    pub scopes: String,
    /// Off: the app may not start device authorizations, and pending ones
    /// cannot be approved.
    pub device_flow_enabled: bool,
    pub created_at: Timestamp,
}

impl Client {
    pub fn allows_scope(&self, scope: &str) -> bool {
        self.scopes.split(' ').any(|s| s == scope)
    }
    pub fn is_confidential(&self) -> bool {
        self.secret_hash.is_some()
    }
}

#[derive(Debug, Clone)]
pub struct Account {
    pub id: String,
    pub email: String,
    pub password_hash: String,
    pub created_at: Timestamp,
    pub disabled: bool,
}

#[derive(Debug, Clone)]
pub struct Session {
    /// SHA-256 of the cookie value.
    pub id_hash: String,
    pub account_id: String,
    /// The synchronizer token every state-changing form must carry.
    pub csrf_token: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

#[derive(Debug, Clone)]
pub struct SigningKey {
    pub kid: String,
    /// PKCS#8 PEM of the RSA private key.
    pub private_pem: String,
    pub created_at: Timestamp,
}

/// Where a device authorization is in its life (DESIGN.md: pending →
/// approved → redeemed, or pending → denied; expiry is derived from
/// `expires_at`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizationState {
    Pending,
    Approved,
    Denied,
    Redeemed,
}

impl AuthorizationState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Denied => "denied",
            Self::Redeemed => "redeemed",
        }
    }

    pub fn parse(s: &str) -> StoreResult<Self> {
        Ok(match s {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "denied" => Self::Denied,
            "redeemed" => Self::Redeemed,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "authorization state {other:?}"
                )));
            }
        })
    }
}

/// What a poll of the token endpoint reads of its authorization: enough
/// to answer a pending code, which nearly every poll is. The whole row is
/// read only once the code was approved.
#[derive(Debug, Clone)]
pub struct PolledAuthorization {
    pub id: String,
    pub client_id: String,
    pub state: AuthorizationState,
    pub expires_at: Timestamp,
    /// The polling interval the device was told, in seconds.
    pub interval: i64,
}

#[derive(Debug, Clone)]
pub struct DeviceAuthorization {
    pub id: String,
    pub device_code_hash: String,
    /// Normalised user code (eight letters, no dash).
    pub user_code: String,
    pub client_id: String,
    /// Space-separated scopes asked for.
    pub scope: String,
    pub state: AuthorizationState,
    /// The person who approved or denied.
    pub account_id: Option<String>,
    /// The network address the device asked from.
    pub requested_ip: String,
    /// A label the device gave itself (`device_name`), if any.
    pub device_name: Option<String>,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// The polling interval the device was told, in seconds.
    pub interval: i64,
    pub decided_at: Option<Timestamp>,
}

/// A lasting link between a person's account and one device of one app.
#[derive(Debug, Clone)]
pub struct LinkedDevice {
    pub id: String,
    pub account_id: String,
    pub client_id: String,
    /// The app's name, read with the device (not stored on it).
    pub app_name: String,
    pub label: String,
    pub scope: String,
    pub linked_at: Timestamp,
    pub linked_ip: String,
    pub last_refresh_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
}

#[derive(Debug, Clone)]
pub struct RefreshToken {
    pub token_hash: String,
    /// The linked device, which is also the token family for reuse detection.
    pub device_id: String,
    pub scope: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// Set when the token was exchanged for a newer one.
    pub rotated_at: Option<Timestamp>,
}

/// Something that happened to a person's devices, shown on their account page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ActivityKind {
    Linked,
    Denied,
    Unlinked,
    /// A rotated refresh token came back: the device's tokens were revoked
    /// (RFC 9700 §4.14.2).
    RefreshReuse,
}

impl ActivityKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Linked => "linked",
            Self::Denied => "denied",
            Self::Unlinked => "unlinked",
            Self::RefreshReuse => "refresh_reuse",
        }
    }

    pub fn parse(s: &str) -> StoreResult<Self> {
        Ok(match s {
            "linked" => Self::Linked,
            "denied" => Self::Denied,
            "unlinked" => Self::Unlinked,
            "refresh_reuse" => Self::RefreshReuse,
            other => return Err(StoreError::Corrupt(format!("activity kind {other:?}"))),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Activity {
    pub account_id: String,
    pub kind: ActivityKind,
    pub client_id: String,
    pub app_name: String,
    /// The device's label, when the event concerns one device.
    pub device: Option<String>,
    pub ip: String,
    pub at: Timestamp,
}

/// Something other requests, possibly on other linkd instances, wait for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A person approved or denied the device authorization with this id.
    Decided { authorization_id: String },
    /// An account's synced settings changed.
    SettingsChanged { account_id: String },
}

/// Deadlines before which rows go in a purge.
#[derive(Debug, Clone, Copy)]
pub struct PurgeBefore {
    /// Sessions and revoked access-token ids that expired before this.
    pub now: Timestamp,
    /// Device authorizations whose deadline is before this.
    pub codes: Timestamp,
    /// Refresh tokens that expired before this. Later than their expiry:
    /// a rotated token presented again must still be recognised, and its
    /// family revoked (RFC 9700 §4.14.2), for as long as the family could
    /// live (the absolute refresh lifetime); a revoked family's tokens are
    /// deleted with it.
    pub refresh_tokens: Timestamp,
}

impl PurgeBefore {
    /// Each purged table with the deadline its rows' `expires_at` is held
    /// to. Every one has an index on expires_at (migrations 0001, 0002,
    /// 0005), so a batch reads only the rows it deletes.
    pub(crate) fn by_table(&self) -> [(&'static str, Timestamp); 4] {
        [
            ("device_authorizations", self.codes),
            ("sessions", self.now),
            ("refresh_tokens", self.refresh_tokens),
            ("revoked_access_tokens", self.now),
        ]
    }
}

/// How many events a slow subscriber may fall behind before it misses some
/// (it then re-reads the store, which is always the truth).
pub const EVENT_BACKLOG: usize = 4096;

/// The namespace of the collection every app of an account shares.
pub const SHARED_NAMESPACE: &str = "account";

/// One synced settings document (or its tombstone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncDocument {
    pub account_id: String,
    /// The app's client_id, or [`SHARED_NAMESPACE`].
    pub namespace: String,
    pub collection: String,
    pub key: String,
    /// The JSON text; `None` once deleted.
    pub body: Option<String>,
    /// Bytes of `body` (0 for a tombstone).
    pub size: i64,
    /// The account's sequence number of the last write: the version and
    /// the position in the change feed.
    pub seq: i64,
    pub deleted: bool,
    pub updated_at: Timestamp,
    /// The device that wrote last; `None` for the person on their page.
    pub updated_by: Option<String>,
}

/// What a conditional write requires of the current document
/// (RFC 9110 §13.1.1 If-Match, §13.1.2 If-None-Match).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncPrecondition {
    /// `If-None-Match: *`: no live document (a tombstone counts as none).
    Absent,
    /// `If-Match: *`: a live document, whatever its version.
    Present,
    /// `If-Match: "7", "9"`: a live document at one of these versions.
    Versions(Vec<i64>),
}

/// A write or delete, applied only if its precondition holds.
#[derive(Debug, Clone)]
pub struct SyncWrite {
    pub account_id: String,
    pub namespace: String,
    pub collection: String,
    pub key: String,
    /// The new JSON text; `None` deletes (writes a tombstone).
    pub body: Option<String>,
    pub precondition: SyncPrecondition,
    pub device_id: Option<String>,
    pub now: Timestamp,
    /// Live documents the account may hold after this write.
    pub max_documents: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncWriteOutcome {
    Written(SyncDocument),
    /// The precondition failed: the current document (live or tombstone),
    /// if any.
    PreconditionFailed(Option<SyncDocument>),
    /// Creating it would exceed `max_documents`.
    TooManyDocuments,
}

/// What one app keeps in one collection, for the account page.
#[derive(Debug, Clone)]
pub struct SyncUsage {
    pub namespace: String,
    /// The app's name (`None` for the shared namespace or a removed app).
    pub app_name: Option<String>,
    pub collection: String,
    pub documents: i64,
    pub bytes: i64,
    pub last_change_at: Timestamp,
    /// The label of the device that made the last change, if a device did
    /// and it is still known.
    pub last_device: Option<String>,
}

/// What redeeming an approved authorization writes, in one transaction.
#[derive(Debug, Clone)]
pub struct Redemption {
    pub device: LinkedDevice,
    pub refresh_token: Option<RefreshToken>,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Applies pending migrations.
    async fn migrate(&self) -> StoreResult<()>;

    /// Tells every linkd instance sharing this store about an event. Events
    /// only wake waiters up; what happened is always read from the store.
    async fn publish(&self, event: Event) -> StoreResult<()>;
    /// Events published by any instance from now on.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Event>;
    /// True when the database answers.
    async fn ping(&self) -> StoreResult<()>;
    /// Whether every migration this build knows has been applied.
    async fn migrations_applied(&self) -> StoreResult<bool>;
    /// Writes a consistent snapshot of the whole store to `path` while it
    /// keeps serving. Only the embedded store can; others say so.
    async fn backup(&self, path: &std::path::Path) -> StoreResult<()>;
    /// Device authorizations still waiting for a person, for the metrics.
    async fn count_pending(&self, now: Timestamp) -> StoreResult<i64>;
    /// Deletes up to `limit` rows of each kind that have outlived their
    /// use (see [`PurgeBefore`]). Returns how many rows went. Small batches
    /// keep each write short, so requests never wait long behind the purge.
    async fn purge(&self, before: &PurgeBefore, limit: i64) -> StoreResult<u64>;
    /// (pool name, open connections, idle connections), for the metrics.
    fn pool_stats(&self) -> Vec<(&'static str, u32, usize)> {
        Vec::new()
    }

    async fn insert_client(&self, client: &Client) -> StoreResult<()>;
    async fn get_client(&self, client_id: &str) -> StoreResult<Option<Client>>;
    async fn list_clients(&self) -> StoreResult<Vec<Client>>;
    /// Changes what is given; true when the client exists.
    async fn update_client(
        &self,
        client_id: &str,
        scopes: Option<&str>,
        device_flow_enabled: Option<bool>,
    ) -> StoreResult<bool>;
    /// Removes a client; true when it existed.
    async fn delete_client(&self, client_id: &str) -> StoreResult<bool>;

    async fn insert_account(&self, account: &Account) -> StoreResult<()>;
    /// Looks an account up by email, ignoring ASCII case.
    async fn get_account_by_email(&self, email: &str) -> StoreResult<Option<Account>>;
    async fn get_account(&self, id: &str) -> StoreResult<Option<Account>>;
    async fn list_accounts(&self) -> StoreResult<Vec<Account>>;
    /// True when the account existed.
    async fn set_account_disabled(&self, id: &str, disabled: bool) -> StoreResult<bool>;
    /// Deletes an account with everything that hangs on it (sessions,
    /// devices, tokens, activity). True when it existed.
    async fn delete_account(&self, id: &str) -> StoreResult<bool>;
    /// Replaces a confidential client's secret hash; true when it exists.
    async fn set_client_secret(&self, client_id: &str, secret_hash: &str) -> StoreResult<bool>;
    /// Ends every session of an account (after disabling it).
    async fn delete_sessions(&self, account_id: &str) -> StoreResult<()>;

    async fn insert_session(&self, session: &Session) -> StoreResult<()>;
    /// A session that has not expired at `now`.
    async fn get_session(&self, id_hash: &str, now: Timestamp) -> StoreResult<Option<Session>>;
    async fn delete_session(&self, id_hash: &str) -> StoreResult<()>;

    async fn insert_signing_key(&self, key: &SigningKey) -> StoreResult<()>;
    /// Stores `key` only if there is no signing key yet; true when it did.
    /// Instances starting together on an empty database thus end up with
    /// one first key instead of one each.
    async fn insert_first_signing_key(&self, key: &SigningKey) -> StoreResult<bool>;
    /// All signing keys, newest first.
    async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKey>>;

    /// Fails with `Conflict` when the user code is taken. A group of one.
    async fn insert_device_authorization(&self, auth: &DeviceAuthorization) -> StoreResult<()> {
        match self
            .insert_device_authorizations(std::slice::from_ref(auth))
            .await?[..]
        {
            [true] => Ok(()),
            _ => Err(StoreError::Conflict),
        }
    }
    /// Stores several authorizations in one transaction (one commit for
    /// many requests). One flag per record: false when its user code or
    /// device code was taken, which leaves the others stored.
    async fn insert_device_authorizations(
        &self,
        auths: &[DeviceAuthorization],
    ) -> StoreResult<Vec<bool>>;
    async fn get_device_authorization_by_code_hash(
        &self,
        device_code_hash: &str,
    ) -> StoreResult<Option<DeviceAuthorization>>;
    /// What every poll of the token endpoint reads: its authorization's
    /// poll columns and its app, in one indexed read of the code.
    async fn poll_device_authorization(
        &self,
        device_code_hash: &str,
    ) -> StoreResult<Option<(PolledAuthorization, std::sync::Arc<Client>)>>;
    async fn get_device_authorization_by_user_code(
        &self,
        user_code: &str,
    ) -> StoreResult<Option<DeviceAuthorization>>;
    /// pending → approved or denied, only while pending and before the
    /// deadline. True for the one caller that made the change.
    async fn decide_device_authorization(
        &self,
        id: &str,
        approve: bool,
        account_id: &str,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// approved → redeemed, writing the linked device and its first refresh
    /// token in the same transaction. True for the one caller that redeemed.
    async fn redeem_device_authorization(
        &self,
        id: &str,
        now: Timestamp,
        redemption: &Redemption,
    ) -> StoreResult<bool>;

    async fn get_linked_device(&self, id: &str) -> StoreResult<Option<LinkedDevice>>;
    /// The account's devices that are still linked, newest first.
    async fn list_linked_devices(&self, account_id: &str) -> StoreResult<Vec<LinkedDevice>>;
    /// Renames a device of this account; false when there is no such
    /// linked device.
    async fn rename_linked_device(
        &self,
        id: &str,
        account_id: &str,
        label: &str,
    ) -> StoreResult<bool>;
    /// Unlinks a device: marks it revoked and deletes its refresh tokens,
    /// in one transaction. True for the one caller that unlinked it.
    async fn revoke_linked_device(&self, id: &str, now: Timestamp) -> StoreResult<bool>;
    /// The linked device behind an access token, if the device is still
    /// linked and the token (by `jti`) was not revoked: the check every
    /// Bearer request makes.
    async fn active_device_for_token(
        &self,
        device_id: &str,
        jti: &str,
    ) -> StoreResult<Option<LinkedDevice>>;

    async fn get_refresh_token(&self, token_hash: &str) -> StoreResult<Option<RefreshToken>>;
    /// Marks `old_hash` rotated and stores `new`, only if `old_hash` was not
    /// rotated yet, and notes the refresh on the device. True for the one
    /// caller that rotated it.
    async fn rotate_refresh_token(
        &self,
        old_hash: &str,
        new: &RefreshToken,
        now: Timestamp,
    ) -> StoreResult<bool>;

    /// Denies an access token by `jti` until it would have expired anyway.
    async fn revoke_access_token(&self, jti: &str, expires_at: Timestamp) -> StoreResult<()>;

    async fn insert_activity(&self, activity: &Activity) -> StoreResult<()>;
    /// The account's most recent activity, newest first.
    async fn list_activity(&self, account_id: &str, limit: i64) -> StoreResult<Vec<Activity>>;

    /// A document or its tombstone.
    async fn sync_get(
        &self,
        account_id: &str,
        namespace: &str,
        collection: &str,
        key: &str,
    ) -> StoreResult<Option<SyncDocument>>;
    /// Applies a write or delete in one transaction: bumps the account's
    /// sequence, checks the precondition and the document limit, and writes
    /// with a conditional statement, so of two racing writers with the same
    /// precondition exactly one wins.
    async fn sync_write(&self, write: &SyncWrite) -> StoreResult<SyncWriteOutcome>;
    /// Documents and tombstones with `seq > since`, oldest first, at most
    /// `limit`: those in `namespaces`, and only `collection` when given.
    async fn sync_changes(
        &self,
        account_id: &str,
        namespaces: &[&str],
        collection: Option<&str>,
        since: i64,
        limit: i64,
    ) -> StoreResult<Vec<SyncDocument>>;
    /// The account's latest sequence number (0 before any write).
    async fn sync_head(&self, account_id: &str) -> StoreResult<i64>;
    /// Live documents per app and collection.
    async fn sync_usage(&self, account_id: &str) -> StoreResult<Vec<SyncUsage>>;
    /// Deletes every live document of one app's collection (tombstones, each
    /// with its own sequence number); returns how many.
    async fn sync_delete_collection(
        &self,
        account_id: &str,
        namespace: &str,
        collection: &str,
        now: Timestamp,
    ) -> StoreResult<u64>;
}

pub type DynStore = Arc<dyn Store>;

/// Opens the store that `database_url` names.
pub async fn open(database_url: &str) -> StoreResult<DynStore> {
    if database_url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(database_url).await?))
    } else if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::PgStore::open(database_url).await?))
    } else {
        Err(StoreError::Unavailable(format!(
            "unsupported database URL (expected sqlite://FILE or postgres://...): {}",
            redact_url(database_url)
        )))
    }
}

/// Hides a password in a database URL before it is shown.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            let userinfo = &url[scheme_end + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme_end + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

/// Migrations compiled into the binary, so `linkd` needs no files beside it.
#[derive(Debug)]
pub(crate) struct EmbeddedMigrations(pub &'static [(i64, &'static str, &'static str)]);

impl sqlx::migrate::MigrationSource<'static> for EmbeddedMigrations {
    fn resolve(
        self,
    ) -> std::pin::Pin<
        Box<
            dyn std::future::Future<
                    Output = Result<Vec<sqlx::migrate::Migration>, sqlx::error::BoxDynError>,
                > + Send,
        >,
    > {
        Box::pin(async move {
            Ok(self
                .0
                .iter()
                .map(|&(version, description, sql)| {
                    sqlx::migrate::Migration::new(
                        version,
                        description.into(),
                        sqlx::migrate::MigrationType::Simple,
                        sql.into(),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// Maps a database error: unique violations become `Conflict`, the rest
/// `Unavailable`.
pub(crate) fn map_sqlx(err: sqlx::Error) -> StoreError {
    match &err {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        sqlx::Error::ColumnDecode { .. }
        | sqlx::Error::Decode(_)
        | sqlx::Error::ColumnNotFound(_) => StoreError::Corrupt(err.to_string()),
        _ => StoreError::Unavailable(err.to_string()),
    }
}

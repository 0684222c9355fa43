//! The device authorization grant's domain (RFC 8628): starting an
//! authorization, the person's decision, and the device's polls that end in
//! tokens. Functions here take the store and never see HTTP.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::codes::{CodeError, UserCode, random_secret, secret_hash};
use crate::store::{
    Account, Activity, ActivityKind, AuthorizationState, Client, DeviceAuthorization, DynStore,
    Event, LinkedDevice, PolledAuthorization, Redemption, RefreshToken, Store, StoreError,
    Timestamp,
};
use crate::tokens::{AccessClaims, IdClaims, Keys};
use crate::{Config, scopes};

/// Longest `device_name` kept; longer names are cut.
pub const MAX_DEVICE_NAME_CHARS: usize = 64;
/// RFC 8628 §3.5: each slow_down adds five seconds to the interval.
pub const SLOW_DOWN_STEP_SECS: i64 = 5;

/// What the device is given (RFC 8628 §3.2).
#[derive(Debug)]
pub struct IssuedCodes {
    pub device_code: String,
    pub user_code: UserCode,
    pub expires_in: i64,
    pub interval: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    InvalidScope(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Decides the scope of a request: the client's whole allowance when none
/// is asked for (RFC 6749 §3.3 lets the server pick a default), else exactly
/// what was asked, which must be known and allowed to the client.
pub fn resolve_scope(client: &Client, requested: Option<&str>) -> Result<String, String> {
    let Some(requested) = requested else {
        return Ok(client.scopes.clone());
    };
    let tokens = scopes::parse(requested).ok_or("the scope parameter is malformed")?;
    if tokens.is_empty() {
        return Ok(client.scopes.clone());
    }
    for token in &tokens {
        if !scopes::is_known(token) || !client.allows_scope(token) {
            return Err(format!("this app may not ask for the scope {token:?}"));
        }
    }
    Ok(tokens.join(" "))
}

/// A label for a device the person will recognise: the name the device
/// gave, cleaned of control characters and cut to length.
pub fn clean_device_name(name: Option<&str>) -> Option<String> {
    let cleaned: String = name?
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_DEVICE_NAME_CHARS)
        .collect();
    let trimmed = cleaned.trim();
    (!trimmed.is_empty()).then(|| trimmed.to_string())
}

/// Most new authorizations committed in one transaction.
const MAX_GROUP: usize = 256;

/// Group commit for new device authorizations: requests that arrive while
/// a commit is under way share the next one, so a burst costs one commit
/// (and on PostgreSQL one round trip) instead of one per request. A lone
/// request is written at once, without waiting for company.
pub struct Inserter {
    queue: tokio::sync::mpsc::Sender<Queued>,
}

struct Queued {
    auth: DeviceAuthorization,
    done: tokio::sync::oneshot::Sender<Result<bool, StoreError>>,
}

impl Inserter {
    /// Starts the writer task; it ends when the inserter is dropped.
    pub fn start(store: DynStore) -> Self {
        let (queue, mut rx) = tokio::sync::mpsc::channel::<Queued>(4 * MAX_GROUP);
        tokio::spawn(async move {
            let mut group = Vec::with_capacity(MAX_GROUP);
            while rx.recv_many(&mut group, MAX_GROUP).await > 0 {
                let (auths, waiters): (Vec<_>, Vec<_>) =
                    group.drain(..).map(|q| (q.auth, q.done)).unzip();
                match store.insert_device_authorizations(&auths).await {
                    Ok(stored) => {
                        for (done, stored) in waiters.into_iter().zip(stored) {
                            let _ = done.send(Ok(stored));
                        }
                    }
                    // One bad row (an app deleted a moment ago) must not
                    // fail the others: try each alone.
                    Err(_) if auths.len() > 1 => {
                        for (auth, done) in auths.iter().zip(waiters) {
                            let alone = store
                                .insert_device_authorizations(std::slice::from_ref(auth))
                                .await
                                .map(|stored| stored.first().copied().unwrap_or(false));
                            let _ = done.send(alone);
                        }
                    }
                    Err(e) => {
                        for done in waiters {
                            let _ = done.send(Err(e.clone()));
                        }
                    }
                }
            }
        });
        Inserter { queue }
    }

    /// Stores `auth`; false when its user code (or device code) is taken.
    pub async fn insert(&self, auth: DeviceAuthorization) -> Result<bool, StoreError> {
        let (done, result) = tokio::sync::oneshot::channel();
        let gone = || StoreError::Unavailable("the authorization writer has stopped".into());
        self.queue
            .send(Queued { auth, done })
            .await
            .map_err(|_| gone())?;
        result.await.map_err(|_| gone())?
    }
}

/// Starts a device authorization (RFC 8628 §3.1-3.2).
pub async fn start(
    inserter: &Inserter,
    config: &Config,
    now: Timestamp,
    client: &Client,
    scope: Option<&str>,
    device_name: Option<&str>,
    requested_ip: &str,
) -> Result<IssuedCodes, StartError> {
    let scope = resolve_scope(client, scope).map_err(StartError::InvalidScope)?;
    let device_code = random_secret(32);
    let expires_in = i64::from(config.code_lifetime);
    let interval = i64::from(config.poll_interval);
    let mut auth = DeviceAuthorization {
        id: crate::codes::sortable_id(now.saturating_mul(1000)),
        device_code_hash: secret_hash(&device_code),
        user_code: String::new(),
        client_id: client.client_id.clone(),
        scope,
        state: AuthorizationState::Pending,
        account_id: None,
        requested_ip: requested_ip.to_string(),
        device_name: clean_device_name(device_name),
        created_at: now,
        expires_at: now + expires_in,
        interval,
        decided_at: None,
    };
    // 20^8 codes: a collision with a stored code is rare; try again on one.
    for _ in 0..8 {
        let user_code = UserCode::generate(&mut rand::thread_rng());
        auth.user_code = user_code.as_str().to_string();
        if inserter.insert(auth.clone()).await? {
            return Ok(IssuedCodes {
                device_code,
                user_code,
                expires_in,
                interval,
            });
        }
    }
    Err(StoreError::Unavailable("could not find a free user code".into()).into())
}

/// In-memory poll-rate bookkeeping (RFC 8628 §3.5 slow_down), so a poll
/// costs no write. Per instance: a device alternating between instances is
/// checked by each separately.
///
/// Sized for a million pending codes: an entry is a 64-bit digest of the
/// authorization id and 12 bytes of state (about 44 MB at 1M polled codes
/// with the table's spare room), and a poll allocates nothing.
pub struct PollTracker {
    /// Split by key so polls on different codes rarely wait for one lock.
    shards: [Mutex<PollTable>; POLL_SHARDS],
    /// Hashes ids to table keys; random per process, so nobody can aim ids
    /// at one key.
    digest: std::collections::hash_map::RandomState,
    /// Times are kept in deciseconds since this instant, in 32 bits
    /// (13 years of uptime).
    epoch_ms: i64,
}

const POLL_SHARDS: usize = 16;

/// One shard's entries. Keys are already keyed digests ([`PollTracker::key`]),
/// so the table uses them as they are rather than hashing them again.
type PollTable = HashMap<[u32; 2], PollEntry, std::hash::BuildHasherDefault<DigestHasher>>;

/// Passes a [`PollTracker`] key through as its own hash.
#[derive(Default)]
struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // A key's eight bytes arrive in one call and come out as they went
        // in: random already.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }

    fn write_usize(&mut self, _: usize) {
        // The array's length, the same for every key.
    }
}

#[derive(Clone, Copy)]
struct PollEntry {
    /// Deciseconds since the epoch; 0 before the first poll.
    last: u32,
    /// Deciseconds since the epoch.
    expires: u32,
    interval_secs: u16,
}

impl PollTracker {
    /// A tracker whose 32-bit clock starts at `now_ms`.
    pub fn new(now_ms: i64) -> Self {
        PollTracker {
            shards: Default::default(),
            digest: Default::default(),
            epoch_ms: now_ms,
        }
    }

    fn key(&self, id: &str) -> [u32; 2] {
        use std::hash::BuildHasher;
        let h = self.digest.hash_one(id);
        [h as u32, (h >> 32) as u32]
    }

    /// Deciseconds since the epoch, from 1 (0 marks "never polled").
    fn ticks(&self, ms: i64) -> u32 {
        (ms.saturating_sub(self.epoch_ms) / 100).clamp(1, i64::from(u32::MAX)) as u32
    }

    fn lock(&self, key: [u32; 2]) -> std::sync::MutexGuard<'_, PollTable> {
        self.shards[key[0] as usize % POLL_SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    fn all(&self) -> impl Iterator<Item = std::sync::MutexGuard<'_, PollTable>> {
        self.shards
            .iter()
            .map(|shard| shard.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Records a poll of a pending authorization. `Err(interval)` when it
    /// came sooner than the interval; the interval has then grown by
    /// five seconds for this and every later poll.
    pub fn check(&self, auth: &PolledAuthorization, now_ms: i64) -> Result<(), i64> {
        let key = self.key(&auth.id);
        let now = self.ticks(now_ms);
        let expires = self.ticks(auth.expires_at.saturating_mul(1000));
        let mut entries = self.lock(key);
        let entry = entries.entry(key).or_insert(PollEntry {
            last: 0,
            expires,
            interval_secs: u16::try_from(auth.interval).unwrap_or(u16::MAX),
        });
        // A tenth of the interval of slack absorbs network jitter for a
        // device that waits exactly the interval between polls: the gap
        // must be 90% of it (interval × 9 deciseconds).
        let min_gap = u32::from(entry.interval_secs) * 9;
        let too_fast = entry.last != 0 && now.saturating_sub(entry.last) < min_gap;
        entry.last = now;
        if too_fast {
            // RFC 8628 §3.5: slow_down adds five seconds, for good.
            entry.interval_secs = entry
                .interval_secs
                .saturating_add(SLOW_DOWN_STEP_SECS as u16);
            Err(i64::from(entry.interval_secs))
        } else {
            Ok(())
        }
    }

    /// Forgets authorizations past their deadline.
    pub fn sweep(&self, now: Timestamp) {
        let now = self.ticks(now.saturating_mul(1000));
        for mut shard in self.all() {
            shard.retain(|_, e| e.expires > now);
        }
    }

    /// Forgets one authorization; true when it was being tracked.
    pub fn forget(&self, id: &str) -> bool {
        let key = self.key(id);
        self.lock(key).remove(&key).is_some()
    }

    pub fn len(&self) -> usize {
        self.all().map(|shard| shard.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Tokens handed to a device (RFC 6749 §5.1).
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenSet {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: i64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

/// Who the tokens are for: the person, their linked device, and what they
/// granted it.
pub struct Grant<'a> {
    pub account: &'a Account,
    pub device: &'a LinkedDevice,
    pub scope: &'a str,
    /// When the person approved (OpenID Connect Core §2 `auth_time`).
    pub auth_time: Timestamp,
}

/// Mints the access token and, when the scope calls for it, the ID token.
pub fn mint(
    keys: &Keys,
    config: &Config,
    now: Timestamp,
    grant: &Grant<'_>,
    refresh_token: Option<String>,
) -> Result<TokenSet, jsonwebtoken::errors::Error> {
    let Grant {
        account,
        device,
        scope,
        auth_time,
    } = *grant;
    let issuer = config.issuer();
    let lifetime = i64::from(config.access_token_lifetime);
    let access_token = keys.sign_access_token(&AccessClaims {
        iss: issuer.clone(),
        sub: account.id.clone(),
        aud: issuer.clone(),
        exp: now + lifetime,
        iat: now,
        jti: random_secret(16),
        scope: scope.to_string(),
        client_id: device.client_id.clone(),
        sid: device.id.clone(),
    })?;
    let id_token = if scopes::contains(scope, "openid") {
        Some(keys.sign_id_token(&IdClaims {
            iss: issuer,
            sub: account.id.clone(),
            aud: device.client_id.clone(),
            exp: now + lifetime,
            iat: now,
            auth_time,
            email: scopes::contains(scope, "email").then(|| account.email.clone()),
            sid: Some(device.id.clone()),
        })?)
    } else {
        None
    };
    Ok(TokenSet {
        access_token,
        token_type: "Bearer",
        expires_in: lifetime,
        scope: scope.to_string(),
        refresh_token,
        id_token,
    })
}

/// How a poll of the token endpoint ends (RFC 8628 §3.5).
#[derive(Debug)]
pub enum PollOutcome {
    Tokens(Box<TokenSet>),
    Pending,
    SlowDown,
    Denied,
    Expired,
    /// Unknown device code, one issued to another client, or one already
    /// redeemed.
    InvalidGrant(&'static str),
}

#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not sign a token: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

/// The device code a poll presented: its hash, and what the store holds
/// under it (`None`: no such code).
pub struct PolledCode<'a> {
    pub hash: &'a str,
    pub auth: Option<PolledAuthorization>,
}

/// One poll of the token endpoint, given what the caller read of the
/// authorization its device code names. A pending code costs no store
/// access at all beyond the caller's read, and no write.
pub async fn poll(
    store: &dyn Store,
    polls: &PollTracker,
    keys: &Keys,
    config: &Config,
    now_ms: i64,
    client: &Client,
    code: PolledCode<'_>,
) -> Result<PollOutcome, PollError> {
    let now = now_ms.div_euclid(1000);
    let Some(auth) = code.auth else {
        return Ok(PollOutcome::InvalidGrant("the device code is not known"));
    };
    // RFC 6749 §5.2: a grant issued to another client is invalid_grant.
    if auth.client_id != client.client_id {
        return Ok(PollOutcome::InvalidGrant("the device code is not known"));
    }
    if auth.state == AuthorizationState::Redeemed {
        return Ok(PollOutcome::InvalidGrant(
            "the device code has already been used",
        ));
    }
    if auth.expires_at <= now {
        // Counted once: the first poll after the deadline.
        if polls.forget(&auth.id) {
            crate::telemetry::authorization("expired");
        }
        return Ok(PollOutcome::Expired);
    }
    match auth.state {
        AuthorizationState::Pending => Ok(match polls.check(&auth, now_ms) {
            Ok(()) => PollOutcome::Pending,
            Err(_) => PollOutcome::SlowDown,
        }),
        AuthorizationState::Denied => {
            polls.forget(&auth.id);
            Ok(PollOutcome::Denied)
        }
        AuthorizationState::Redeemed => Ok(PollOutcome::InvalidGrant(
            "the device code has already been used",
        )),
        AuthorizationState::Approved => {
            // The poll read only what a pending code needs; redeeming
            // takes the whole row, read once per device. That second read
            // may see another snapshot than the first (each of the SQLite
            // store's readers keeps one for up to 2 ms), so its state is
            // the one acted on.
            let full = store
                .get_device_authorization_by_code_hash(code.hash)
                .await?
                .filter(|full| full.id == auth.id);
            let Some(full) = full else {
                // Purged in between: as for any code no longer known.
                return Ok(PollOutcome::InvalidGrant("the device code is not known"));
            };
            match full.state {
                AuthorizationState::Approved => {
                    polls.forget(&auth.id);
                    redeem(store, keys, config, now, client, &full).await
                }
                // A snapshot from before the approval: the next poll
                // sees it.
                AuthorizationState::Pending => Ok(PollOutcome::Pending),
                AuthorizationState::Denied => {
                    polls.forget(&auth.id);
                    Ok(PollOutcome::Denied)
                }
                AuthorizationState::Redeemed => Ok(PollOutcome::InvalidGrant(
                    "the device code has already been used",
                )),
            }
        }
    }
}

async fn redeem(
    store: &dyn Store,
    keys: &Keys,
    config: &Config,
    now: Timestamp,
    client: &Client,
    auth: &DeviceAuthorization,
) -> Result<PollOutcome, PollError> {
    let account = match &auth.account_id {
        Some(id) => store.get_account(id).await?,
        None => None,
    };
    let Some(account) = account.filter(|a| !a.disabled) else {
        return Ok(PollOutcome::InvalidGrant(
            "the approving account no longer exists",
        ));
    };
    let device = LinkedDevice {
        id: random_secret(16),
        account_id: account.id.clone(),
        client_id: client.client_id.clone(),
        app_name: client.name.clone(),
        label: auth
            .device_name
            .clone()
            .unwrap_or_else(|| client.name.clone()),
        scope: auth.scope.clone(),
        linked_at: now,
        linked_ip: auth.requested_ip.clone(),
        last_refresh_at: None,
        revoked_at: None,
    };
    let refresh_secret = scopes::contains(&auth.scope, "offline_access").then(|| random_secret(32));
    let refresh_token = refresh_secret.as_ref().map(|secret| RefreshToken {
        token_hash: secret_hash(secret),
        device_id: device.id.clone(),
        scope: auth.scope.clone(),
        created_at: now,
        expires_at: now + i64::from(config.refresh_idle_lifetime),
        rotated_at: None,
    });
    // Sign before the state change so a signing failure cannot leave a
    // redeemed code whose tokens were never handed out.
    let grant = Grant {
        account: &account,
        device: &device,
        scope: &auth.scope,
        auth_time: auth.decided_at.unwrap_or(now),
    };
    let tokens = mint(keys, config, now, &grant, refresh_secret)?;
    let redemption = Redemption {
        device,
        refresh_token,
    };
    if store
        .redeem_device_authorization(&auth.id, now, &redemption)
        .await?
    {
        crate::telemetry::authorization("redeemed");
        Ok(PollOutcome::Tokens(Box::new(tokens)))
    } else {
        // Another poll redeemed it between our read and our update.
        Ok(PollOutcome::InvalidGrant(
            "the device code has already been used",
        ))
    }
}

/// Why a code a person typed cannot be confirmed.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("malformed code: {0}")]
    Malformed(#[from] CodeError),
    #[error("no such code")]
    NotFound,
    #[error("the code has expired")]
    Expired,
    #[error("the code has already been used")]
    AlreadyUsed,
    /// Older than the server's maximum approval age: more likely a lure
    /// than a device in front of the person.
    #[error("the code is too old to approve")]
    TooOld,
    /// The operator turned the device flow off for this app.
    #[error("this app may not link devices")]
    AppDisabled,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A pending authorization the person may approve, with its app.
pub struct PendingAuthorization {
    pub auth: DeviceAuthorization,
    pub client: Client,
    pub user_code: UserCode,
}

/// Finds the pending authorization behind a code a person typed, if it
/// may still be approved: not expired, not older than `max_age` seconds,
/// and its app still allowed to link devices.
pub async fn find_pending(
    store: &dyn Store,
    input: &str,
    now: Timestamp,
    max_age: i64,
) -> Result<PendingAuthorization, LookupError> {
    let user_code = UserCode::parse(input)?;
    let auth = store
        .get_device_authorization_by_user_code(user_code.as_str())
        .await?
        .ok_or(LookupError::NotFound)?;
    if auth.state != AuthorizationState::Pending {
        return Err(LookupError::AlreadyUsed);
    }
    if auth.expires_at <= now {
        return Err(LookupError::Expired);
    }
    if now - auth.created_at > max_age {
        return Err(LookupError::TooOld);
    }
    let client = store
        .get_client(&auth.client_id)
        .await?
        .ok_or(LookupError::NotFound)?;
    if !client.device_flow_enabled {
        return Err(LookupError::AppDisabled);
    }
    Ok(PendingAuthorization {
        auth,
        client,
        user_code,
    })
}

/// Records the person's decision, and notes it in their activity. Exactly
/// one decision wins; a second one, or one after the deadline, finds the
/// code no longer pending.
pub async fn decide(
    store: &dyn Store,
    input: &str,
    approve: bool,
    account_id: &str,
    ip: &str,
    now: Timestamp,
    max_age: i64,
) -> Result<PendingAuthorization, LookupError> {
    let pending = find_pending(store, input, now, max_age).await?;
    if store
        .decide_device_authorization(&pending.auth.id, approve, account_id, now)
        .await?
    {
        store
            .insert_activity(&Activity {
                account_id: account_id.to_string(),
                kind: if approve {
                    ActivityKind::Linked
                } else {
                    ActivityKind::Denied
                },
                client_id: pending.client.client_id.clone(),
                app_name: pending.client.name.clone(),
                device: pending.auth.device_name.clone(),
                ip: ip.to_string(),
                at: now,
            })
            .await?;
        crate::telemetry::authorization(if approve { "approved" } else { "denied" });
        // The decision is committed. Events only wake waiters up, so a lost
        // one delays the device to its next poll and must not turn the
        // person's success into an error page.
        if let Err(e) = store
            .publish(Event::Decided {
                authorization_id: pending.auth.id.clone(),
            })
            .await
        {
            tracing::warn!(error = %e, "could not publish a decision");
        }
        Ok(pending)
    } else {
        // Lost a race with another decision or the deadline; say which.
        match find_pending(store, input, now, max_age).await {
            Err(e) => Err(e),
            Ok(_) => Err(LookupError::AlreadyUsed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(interval: i64) -> PolledAuthorization {
        PolledAuthorization {
            id: "a".into(),
            client_id: String::new(),
            state: AuthorizationState::Pending,
            expires_at: 600,
            interval,
        }
    }

    #[test]
    fn slow_down_grows_interval_by_five_seconds() {
        let polls = PollTracker::new(0);
        let a = auth(5);
        assert_eq!(polls.check(&a, 0), Ok(()));
        assert_eq!(polls.check(&a, 5_000), Ok(()));
        assert_eq!(polls.check(&a, 6_000), Err(10));
        // The grown interval now applies: 5 s is too soon, 10 s is fine.
        assert_eq!(polls.check(&a, 11_000), Err(15));
        assert_eq!(polls.check(&a, 26_000), Ok(()));
        polls.sweep(600);
        assert!(polls.is_empty());
    }

    /// A poll's first read saw the approval; the read of the whole row
    /// before redeeming may come from an older snapshot (the SQLite
    /// store's readers keep one up to 2 ms). That row's state decides: the
    /// code stays pending for this poll rather than being refused.
    #[tokio::test]
    async fn the_row_to_redeem_decides_the_state() {
        use crate::store::sqlite::fixtures::{authorization, client, store_with_client};
        let (_dir, store) = store_with_client().await;
        // Pending in the store, approved in what the poll read first.
        store
            .insert_device_authorization(&authorization(0))
            .await
            .unwrap();
        let seen = PolledAuthorization {
            id: "id-0".into(),
            client_id: "tv".into(),
            state: AuthorizationState::Approved,
            ..auth(5)
        };
        let keys =
            Keys::from_stored(&[crate::tokens::generate_signing_key(0).unwrap()], 0, 3600).unwrap();
        let (config, polls, client) = (Config::defaults(), PollTracker::new(0), client("openid"));
        let poll_at = |hash| {
            let code = PolledCode {
                hash,
                auth: Some(seen.clone()),
            };
            poll(&store, &polls, &keys, &config, 1_000, &client, code)
        };
        let outcome = poll_at("hash-0").await.unwrap();
        assert!(matches!(outcome, PollOutcome::Pending), "{outcome:?}");
        // Gone by the second read: as for any code no longer known.
        let outcome = poll_at("hash-none").await.unwrap();
        assert!(
            matches!(
                outcome,
                PollOutcome::InvalidGrant("the device code is not known")
            ),
            "{outcome:?}"
        );
    }

    #[test]
    fn device_names_are_cleaned() {
        assert_eq!(
            clean_device_name(Some("  Living room TV\n")).as_deref(),
            Some("Living room TV")
        );
        assert_eq!(clean_device_name(Some("\u{0}\u{7}")), None);
        assert_eq!(
            clean_device_name(Some(&"x".repeat(100))).unwrap().len(),
            MAX_DEVICE_NAME_CHARS
        );
    }
}

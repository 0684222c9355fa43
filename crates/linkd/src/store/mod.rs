//! The one seam between linkd and its database: the [`Store`] trait, the
//! records it reads and writes, and its one SQL implementation for both
//! SQLite (the embedded default) and PostgreSQL (several instances).
//! Nothing outside this module writes SQL.
//!
//! Every query is written once (`db.rs` runs it on either driver), in one
//! file per aggregate; what truly differs between the databases lives in
//! `sqlite/` and `postgres.rs`, each with its reason (docs/architecture.md,
//! "Storage", lists them).
//!
//! Every state change on a device authorization or a refresh token is a
//! single conditional update, so racing requests resolve to one winner.

mod accounts;
mod activity;
mod authorization_codes;
mod authorizations;
mod clients;
mod db;
mod devices;
mod identities;
mod keys;
mod links;
mod outbox;
mod passkeys;
mod poll_cache;
pub use poll_cache::PollReads;
pub mod postgres;
mod purge;
mod reports;
mod rows;
mod sql;
pub mod sqlite;
mod sync;

pub use sql::SqlStore;

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

mod records;
pub use records::*;

/// Everything linkd keeps, behind one seam.
///
/// Read consistency: every write is committed when its method returns.
/// A read that starts after that sees the write, on the instance that
/// made it and on every other instance sharing the database (PostgreSQL
/// reads the latest committed rows at each statement). The one bounded
/// exception is SQLite's hot-path readers (`sqlite/direct.rs`: polls, app
/// and code lookups), which keep a snapshot for up to 2 ms: they see every
/// write made through this store, and writes by another process (the
/// `linkd` CLI) within those 2 ms. Two reads are not one snapshot: a caller
/// that must act on what it read acts through a conditional write, which
/// decides on the row it changes (`decide_device_authorization`,
/// `redeem_device_authorization`, `rotate_refresh_token`, `sync_write`).
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

    /// Whether this store counts the security limits for every instance
    /// sharing it ([`Store::tally_limits`]). PostgreSQL does; SQLite
    /// serves one instance, which counts them in memory.
    fn shares_limits(&self) -> bool {
        false
    }

    /// Applies `ops` in order as one atomic step, in one round trip, and
    /// returns per step 0 (done) or the seconds to wait (refused). A
    /// refused step other than a `Try` undoes the ones before it and ends
    /// the list (the later entries are 0 and were not applied).
    async fn tally_limits(&self, ops: &[LimitOp<'_>], now: Timestamp) -> StoreResult<Vec<i64>> {
        let _ = (ops, now);
        Err(StoreError::Unavailable(
            "this store does not count limits; they are counted in memory".into(),
        ))
    }
    /// [`Store::tally_limits`], and in the same round trip what the shared
    /// counters `read` (name, key) held just before `ops`: the count and
    /// when its window ends, or `None` for a counter with nothing in a
    /// live window. Pages use it to say how many tries are left.
    async fn tally_and_read_limits(
        &self,
        ops: &[LimitOp<'_>],
        read: &[(&str, &str)],
        now: Timestamp,
    ) -> StoreResult<(Vec<i64>, Vec<Option<(i64, Timestamp)>>)> {
        let _ = (ops, read, now);
        Err(StoreError::Unavailable(
            "this store does not count limits; they are counted in memory".into(),
        ))
    }
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
        changes: &ClientChanges<'_>,
    ) -> StoreResult<bool>;
    /// Removes a client; true when it existed.
    async fn delete_client(&self, client_id: &str) -> StoreResult<bool>;

    async fn insert_account(&self, account: &Account) -> StoreResult<()>;
    /// A new account with its verification link and the mail that carries
    /// it, in one transaction (`Conflict` when the address is taken).
    async fn insert_account_with_link(
        &self,
        account: &Account,
        link: &AccountLink,
        outbox: &[OutboxMessage],
    ) -> StoreResult<()>;
    /// Sets a new password hash (`activity.account_id`), ends every
    /// session but `keep_session`, voids unused reset links, records
    /// `activity` and queues `outbox`, in one transaction.
    async fn change_password(
        &self,
        password_hash: &str,
        keep_session: &str,
        activity: &Activity,
        outbox: &[OutboxMessage],
    ) -> StoreResult<()>;
    /// Ends every session of `activity.account_id` but `keep` and records
    /// it; how many ended.
    async fn delete_other_sessions(&self, keep: &str, activity: &Activity) -> StoreResult<u64>;
    /// Looks an account up by email, ignoring ASCII case.
    async fn get_account_by_email(&self, email: &str) -> StoreResult<Option<Account>>;
    async fn get_account(&self, id: &str) -> StoreResult<Option<Account>>;
    async fn list_accounts(&self) -> StoreResult<Vec<Account>>;
    /// True when the account existed.
    async fn set_account_disabled(&self, id: &str, disabled: bool) -> StoreResult<bool>;
    /// Remembers the time zone the person's browser reported.
    async fn set_account_time_zone(&self, id: &str, zone: &str) -> StoreResult<()>;
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
    /// Marks the key revoked at `now`; false when no unrevoked key has
    /// that id.
    async fn revoke_signing_key(&self, kid: &str, now: Timestamp) -> StoreResult<bool>;

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
    /// What a token poll reads at `now`. A pending code is answered from
    /// memory that the database's own record of changes keeps true
    /// (`poll_cache`), so polls of a pending code cost it nothing.
    async fn poll_device_authorization_at(
        &self,
        device_code_hash: &str,
        _now: Timestamp,
    ) -> StoreResult<Option<(PolledAuthorization, std::sync::Arc<Client>)>> {
        self.poll_device_authorization(device_code_hash).await
    }
    /// Drops what the poll cache holds past its deadline (see
    /// [`Store::poll_device_authorization_at`]).
    fn sweep_polls(&self, _now: Timestamp) {}
    /// How token polls found their codes (the poll cache's counts).
    fn poll_reads(&self) -> PollReads {
        PollReads::default()
    }
    async fn get_device_authorization_by_user_code(
        &self,
        user_code: &str,
    ) -> StoreResult<Option<DeviceAuthorization>>;
    /// One authorization by its record id (the number-matching page names
    /// it so that its address does not carry the code).
    async fn get_device_authorization(&self, id: &str) -> StoreResult<Option<DeviceAuthorization>>;
    /// pending → approved or denied, only while pending and before the
    /// deadline. True for the one caller that made the change.
    async fn decide_device_authorization(
        &self,
        id: &str,
        approve: bool,
        account_id: &str,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// The same decision, written in one transaction with what it causes
    /// (`record`: the activity entry, and after an approval the "This
    /// wasn't me" link and its notice). Nothing of `record` is written
    /// for a caller that did not make the change.
    async fn decide_device_authorization_recorded(
        &self,
        id: &str,
        approve: bool,
        account_id: &str,
        now: Timestamp,
        record: &DecisionRecord,
    ) -> StoreResult<bool>;
    /// "I didn't start this": the code denied as
    /// [`Store::decide_device_authorization_recorded`] denies it, with
    /// `record`, and the report stored with it; when the report is the
    /// one that makes the requesting network cross `report.rule`'s
    /// threshold, the network is blocked in the same transaction, its
    /// pending codes denied and the block's event written. `None` (nothing
    /// written) when the code was no longer pending.
    async fn report_device_authorization(
        &self,
        id: &str,
        account_id: &str,
        now: Timestamp,
        record: &DecisionRecord,
        report: &LinkReport<'_>,
    ) -> StoreResult<Option<ReportOutcome>>;
    /// The network blocks in force at `now`.
    async fn network_blocks(&self, now: Timestamp) -> StoreResult<Vec<NetworkBlock>>;
    /// Until when `network` is blocked at `now`, if it is.
    async fn network_blocked_until(
        &self,
        network: &str,
        now: Timestamp,
    ) -> StoreResult<Option<Timestamp>>;
    /// approved → redeemed, deciding on the row it updates: only while it
    /// is approved and its deadline is after `deadline_after` (the caller
    /// allows an approved code a grace period past its deadline), for the
    /// one caller that wins.
    /// `prepare` is handed that row and its approving account (read in the
    /// same transaction) and answers what to write with it, the linked
    /// device and its first refresh token; `None` declines and leaves the
    /// code as it was. Otherwise it reports what it found instead.
    async fn redeem_device_authorization(
        &self,
        id: &str,
        deadline_after: Timestamp,
        prepare: &mut PrepareRedemption<'_>,
    ) -> StoreResult<RedeemOutcome>;

    async fn insert_authorization_code(&self, code: &AuthorizationCode) -> StoreResult<()>;
    /// Stores a code with what its approval causes (`record`), in one
    /// transaction.
    async fn insert_authorization_code_recorded(
        &self,
        code: &AuthorizationCode,
        record: &DecisionRecord,
    ) -> StoreResult<()>;
    /// issued → redeemed, deciding on the row it updates: only for this
    /// app, while not redeemed and before its deadline, for the one caller
    /// that wins. `prepare` is handed the code and its account and answers
    /// what to write (the linked device and its first refresh token, whose
    /// id is noted on the code); `None` declines and leaves the code as it
    /// was. Otherwise it reports the row it found instead, if any.
    async fn redeem_authorization_code(
        &self,
        code_hash: &str,
        client_id: &str,
        now: Timestamp,
        prepare: &mut PrepareCodeRedemption<'_>,
    ) -> StoreResult<CodeRedeemOutcome>;
    /// Whether the person consented to this app asking for exactly this
    /// scope set (sorted, space-separated).
    async fn has_consent(
        &self,
        account_id: &str,
        client_id: &str,
        scope: &str,
    ) -> StoreResult<bool>;
    async fn grant_consent(
        &self,
        account_id: &str,
        client_id: &str,
        scope: &str,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Withdraws every consent the person gave the app; how many there were.
    async fn withdraw_consents(&self, account_id: &str, client_id: &str) -> StoreResult<u64>;

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
    /// Unlinks a device: marks it revoked, which ends its refresh token
    /// family, in one transaction with `outbox` (what the unlink causes),
    /// added only if this caller unlinked it. True for the one caller
    /// that did.
    async fn revoke_linked_device(
        &self,
        id: &str,
        now: Timestamp,
        outbox: &[OutboxMessage],
    ) -> StoreResult<bool>;
    /// Notes a DPoP proof's id (a hash of its key and `jti`) until
    /// `expires_at`; false when it was noted already (a replay, RFC 9449
    /// §11.1), by this instance or another.
    async fn note_dpop_proof(&self, id: &str, expires_at: Timestamp) -> StoreResult<bool>;
    /// The linked device behind an access token, if the device is still
    /// linked and the token (by `jti`) was not revoked: the check every
    /// Bearer request makes.
    async fn active_device_for_token(
        &self,
        device_id: &str,
        jti: &str,
    ) -> StoreResult<Option<LinkedDevice>>;

    /// Moves the device's refresh token from generation `from` to the
    /// next: the current hash becomes the previous one, `token_hash` and
    /// `expires_at` are the new token's, and the refresh is noted at
    /// `now`. One conditional update of the device's row, only while it
    /// is linked and at generation `from`: true for the one caller that
    /// moved it.
    async fn rotate_refresh_token(
        &self,
        device_id: &str,
        from: i64,
        token_hash: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool>;
    /// A refresh token issued before migration 0028, by its hash.
    async fn get_legacy_refresh_token(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<LegacyRefreshToken>>;
    /// Trades the unrotated old-form token `legacy_hash` of a device for
    /// the device's first token of the new form (generation 1,
    /// `token_hash`, `expires_at`): marks the old one rotated and sets the
    /// device's state, in one transaction, only if the device is linked
    /// and has no state yet and the old token was not rotated. True for
    /// the one caller that did.
    async fn upgrade_legacy_refresh_token(
        &self,
        legacy_hash: &str,
        device_id: &str,
        token_hash: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool>;

    /// Denies an access token by `jti` until it would have expired anyway.
    async fn revoke_access_token(&self, jti: &str, expires_at: Timestamp) -> StoreResult<()>;

    async fn insert_activity(&self, activity: &Activity) -> StoreResult<()>;
    /// The account's most recent activity, newest first.
    async fn list_activity(&self, account_id: &str, limit: i64) -> StoreResult<Vec<Activity>>;

    /// Stores a sign-in at an OpenID provider in progress.
    async fn insert_upstream_login(&self, login: &UpstreamLogin) -> StoreResult<()>;
    /// Deletes and returns the sign-in whose `state` hashes to
    /// `state_hash`, unless it expired at `now`; one caller gets it.
    async fn take_upstream_login(
        &self,
        state_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<UpstreamLogin>>;
    /// Stores an identity waiting to be joined to an account.
    async fn insert_pending_join(&self, join: &PendingJoin) -> StoreResult<()>;
    /// Deletes and returns the join offered under `secret_hash`, unless it
    /// expired at `now`; one caller gets it.
    async fn take_pending_join(
        &self,
        secret_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<PendingJoin>>;
    async fn get_identity(&self, issuer: &str, subject: &str) -> StoreResult<Option<Identity>>;
    /// The account's identities, oldest first.
    async fn list_identities(&self, account_id: &str) -> StoreResult<Vec<Identity>>;
    /// Joins an identity to its account and records `activity`, in one
    /// transaction; Conflict when the identity is joined already.
    async fn join_identity(&self, identity: &Identity, activity: &Activity) -> StoreResult<()>;
    /// Creates an account with its first identity (and `activity`) in one
    /// transaction; Conflict when the email or the identity is taken.
    async fn insert_account_with_identity(
        &self,
        account: &Account,
        identity: &Identity,
        email_verified_at: Option<Timestamp>,
        activity: &Activity,
    ) -> StoreResult<()>;
    /// Notes a sign-in with the identity and the email it came with.
    async fn touch_identity(
        &self,
        issuer: &str,
        subject: &str,
        email: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<()>;
    /// Removes an identity of `activity.account_id` and records it, unless
    /// it is the last way in (the password counts when `password_counts`).
    async fn remove_identity(
        &self,
        issuer: &str,
        subject: &str,
        password_counts: bool,
        activity: &Activity,
    ) -> StoreResult<IdentityRemoval>;

    /// Stores a passkey ceremony in progress.
    async fn insert_passkey_challenge(&self, challenge: &PasskeyChallenge) -> StoreResult<()>;
    /// Deletes and returns the ceremony with this challenge, purpose and
    /// binding unless it expired at `now`: one caller gets it, and a
    /// browser other than the one that asked gets nothing (and leaves it).
    async fn take_passkey_challenge(
        &self,
        challenge: &str,
        purpose: &str,
        binding: &str,
        now: Timestamp,
    ) -> StoreResult<Option<PasskeyChallenge>>;
    /// Adds a passkey and records `activity`, in one transaction;
    /// Conflict when the credential id is stored already.
    async fn insert_passkey(&self, passkey: &Passkey, activity: &Activity) -> StoreResult<()>;
    async fn get_passkey(&self, id: &str) -> StoreResult<Option<Passkey>>;
    /// The account's passkeys, oldest first.
    async fn list_passkeys(&self, account_id: &str) -> StoreResult<Vec<Passkey>>;
    /// Notes a sign-in with a passkey: its new signature counter and
    /// flags, when; and records `activity`. False when the passkey is
    /// gone, or its counter moved past `sign_count` meanwhile (of two
    /// racing sign-ins with one assertion, one wins).
    async fn use_passkey(
        &self,
        passkey: &Passkey,
        previous_sign_count: i64,
        activity: &Activity,
    ) -> StoreResult<bool>;
    /// Renames a passkey of `account_id`; false when it has none by `id`.
    async fn rename_passkey(&self, account_id: &str, id: &str, name: &str) -> StoreResult<bool>;
    /// Removes a passkey of `activity.account_id` and records it; false
    /// when it has none by `id`.
    async fn remove_passkey(&self, id: &str, activity: &Activity) -> StoreResult<bool>;

    /// Stores a mailed single-use link with the mail that carries it, in
    /// one transaction.
    async fn insert_account_link(
        &self,
        link: &AccountLink,
        outbox: &[OutboxMessage],
    ) -> StoreResult<()>;
    /// A link of `purpose` by the hash of its secret, if unused and
    /// unexpired at `now`.
    async fn get_account_link(
        &self,
        token_hash: &str,
        purpose: LinkPurpose,
        now: Timestamp,
    ) -> StoreResult<Option<AccountLink>>;
    /// Uses a password-reset link of `activity.account_id` (at
    /// `activity.at`) and, in the same transaction, sets the new password
    /// hash, ends every session of the account, voids its other reset
    /// links, records `activity` and queues `outbox`. True for the one
    /// caller that used the link; false changes nothing.
    async fn reset_password(
        &self,
        token_hash: &str,
        password_hash: &str,
        activity: &Activity,
        outbox: &[OutboxMessage],
    ) -> StoreResult<bool>;

    /// Uses a verification link of `activity.account_id` and, in the same
    /// transaction, makes `address` the account's verified address, voids
    /// its other verification links and records `activity`. True for the
    /// one caller that used the link; `Conflict` when another account has
    /// the address.
    async fn verify_email(
        &self,
        token_hash: &str,
        address: &str,
        activity: &Activity,
    ) -> StoreResult<bool>;
    /// The operator's `linkd user verify-email`: marks the account's
    /// current address verified and records `activity`; its verification
    /// links stop working. False when it was verified already.
    async fn mark_email_verified(&self, activity: &Activity) -> StoreResult<bool>;
    /// Writes an activity entry with its link and mail in one transaction.
    async fn insert_record(&self, record: &DecisionRecord) -> StoreResult<()>;
    /// Carries out "This wasn't me" (see [`NotMeReport`]). True for the
    /// one caller that used the link; false changes nothing.
    async fn report_not_me(&self, report: &NotMeReport<'_>) -> StoreResult<bool>;

    /// Adds messages to the outbox on their own, in one transaction. A
    /// message caused by another write goes in with it instead, through
    /// that write's method (docs/architecture.md, "The outbox").
    async fn enqueue(&self, messages: &[OutboxMessage]) -> StoreResult<()>;
    /// Claims up to `limit` messages of `kind` due at `now` for `lease`
    /// until `lease_until`, counting an attempt on each. Of several
    /// workers claiming at once, each message goes to one.
    async fn claim_outbox(
        &self,
        kind: OutboxKind,
        lease: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
    ) -> StoreResult<Vec<OutboxMessage>>;
    /// Deletes a delivered message; false when `lease` no longer holds it.
    async fn outbox_delivered(&self, id: &str, lease: &str) -> StoreResult<bool>;
    /// Replaces a message `lease` holds with `messages`, in one
    /// transaction (a webhook event becomes one message per endpoint).
    async fn outbox_expand(
        &self,
        id: &str,
        lease: &str,
        messages: &[OutboxMessage],
    ) -> StoreResult<bool>;
    /// Gives a message back to be tried again at `next_attempt_at`.
    async fn outbox_retry(
        &self,
        id: &str,
        lease: &str,
        next_attempt_at: Timestamp,
        error: &str,
    ) -> StoreResult<bool>;
    /// Marks a message failed for good; it stays until `keep_until`.
    async fn outbox_failed(
        &self,
        id: &str,
        lease: &str,
        now: Timestamp,
        keep_until: Timestamp,
        error: &str,
    ) -> StoreResult<bool>;
    /// Every message still in the outbox (to send or failed), oldest first.
    async fn list_outbox(&self) -> StoreResult<Vec<OutboxMessage>>;

    /// A document or its tombstone.
    async fn sync_get(
        &self,
        account_id: &str,
        namespace: &str,
        collection: &str,
        key: &str,
    ) -> StoreResult<Option<SyncDocument>>;
    /// Applies a write or delete in one transaction: bumps the account's
    /// sequence (which serialises the account's writes), lets
    /// `crate::sync::decide_write` judge the precondition and the document
    /// limit against the current row, and writes with a conditional
    /// statement, so of two racing writers with the same precondition
    /// exactly one wins.
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
    /// The highest sequence number of a tombstone purged from the account
    /// (0 when none was): changes after a lower cursor are incomplete.
    async fn sync_purged_through(&self, account_id: &str) -> StoreResult<i64>;
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
        Ok(Arc::new(sqlite::open(database_url).await?))
    } else if database_url.starts_with("postgres://") || database_url.starts_with("postgresql://") {
        Ok(Arc::new(postgres::open(database_url).await?))
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

/// Applies the migrations `linkd` was built with that `to` lacks.
pub(crate) async fn run_migrations<'a, A>(migrations: EmbeddedMigrations, to: A) -> StoreResult<()>
where
    A: sqlx::Acquire<'a>,
    <A::Connection as std::ops::Deref>::Target: sqlx::migrate::Migrate,
{
    let migrator = sqlx::migrate::Migrator::new(migrations)
        .await
        .map_err(|e| StoreError::Unavailable(e.to_string()))?;
    migrator
        .run(to)
        .await
        .map_err(|e| StoreError::Unavailable(format!("migration failed: {e}")))
}

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

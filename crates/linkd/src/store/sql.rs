//! [`SqlStore`]: the one implementation of [`Store`], for both databases.
//! This file is its table of contents: each method hands over to the
//! aggregate's file, where its SQL is written once.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::broadcast;

use super::db::{Db, q};
use super::*;

impl SqlStore {
    /// This instance's own decision leaves the poll cache at once; the
    /// database tells the others, and this one again (PostgreSQL's
    /// events of migration 0027, SQLite's `poll_changes` of 0029).
    fn forget_polled(&self, id: &str, decided: bool) {
        if decided {
            self.db.polls().forget(id);
        }
    }

    /// This instance's own change to an app leaves the poll cache at once
    /// (the cached polls hold the app); the database tells the others.
    fn forget_client_polls(&self, changed: bool) {
        if changed {
            self.db.polls().clear();
        }
    }
}

/// The store on SQLite or PostgreSQL (see [`super::open`]).
pub struct SqlStore {
    pub(crate) db: Db,
    /// Events from every instance sharing the database (see `publish`).
    pub(crate) events: broadcast::Sender<Event>,
}

#[async_trait]
impl Store for SqlStore {
    async fn migrate(&self) -> StoreResult<()> {
        match &self.db {
            Db::Sqlite(s) => sqlite::migrate(s).await,
            Db::Postgres(p) => postgres::migrate(p).await,
        }
    }

    async fn publish(&self, event: Event) -> StoreResult<()> {
        match &self.db {
            // One SQLite file serves one linkd process: events stay in
            // memory. No subscriber is not an error: nobody was waiting.
            Db::Sqlite(_) => {
                let _ = self.events.send(event);
                Ok(())
            }
            // Other instances hear it through LISTEN/NOTIFY, this one too.
            Db::Postgres(p) => postgres::publish(p, &event).await,
        }
    }

    fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    async fn ping(&self) -> StoreResult<()> {
        self.db
            .fetch_one::<i64>(q("SELECT 1 AS v", &[]))
            .await
            .map(drop)
    }

    async fn migrations_applied(&self) -> StoreResult<bool> {
        // Every version, not only the newest: migrations are numbered when
        // they are written and may land out of order, so a database can
        // hold the newest and still lack one below it.
        let applied: Vec<i64> = self
            .db
            .fetch_all(q(
                "SELECT version AS v FROM _sqlx_migrations WHERE success",
                &[],
            ))
            .await?;
        Ok(self
            .db
            .dialect()
            .migrations
            .iter()
            .all(|(version, ..)| applied.contains(version)))
    }

    async fn backup(&self, path: &std::path::Path) -> StoreResult<()> {
        match &self.db {
            Db::Sqlite(s) => sqlite::backup(s, path).await,
            // A consistent copy of a live PostgreSQL database is pg_dump's
            // job; it needs no help from linkd.
            Db::Postgres(_) => Err(StoreError::Unavailable(
                "linkd backs up only its SQLite store; back up PostgreSQL with pg_dump".into(),
            )),
        }
    }

    async fn count_pending(&self, now: Timestamp) -> StoreResult<i64> {
        authorizations::count_pending(&self.db, now).await
    }

    fn shares_limits(&self) -> bool {
        matches!(self.db, Db::Postgres(_))
    }

    async fn tally_limits(&self, ops: &[LimitOp<'_>], now: Timestamp) -> StoreResult<Vec<i64>> {
        match &self.db {
            // One instance: `limits.rs` counts in memory, more cheaply
            // than any table could.
            Db::Sqlite(_) => Err(StoreError::Unavailable(
                "SQLite serves one instance; its limits are counted in memory".into(),
            )),
            Db::Postgres(p) => postgres::tally_limits(p, ops, now).await,
        }
    }

    async fn tally_and_read_limits(
        &self,
        ops: &[LimitOp<'_>],
        read: &[(&str, &str)],
        now: Timestamp,
    ) -> StoreResult<(Vec<i64>, Vec<Option<(i64, Timestamp)>>)> {
        match &self.db {
            Db::Sqlite(_) => Err(StoreError::Unavailable(
                "SQLite serves one instance; its limits are counted in memory".into(),
            )),
            Db::Postgres(p) => postgres::tally_and_read_limits(p, ops, read, now).await,
        }
    }

    async fn purge(&self, before: &PurgeBefore, limit: i64) -> StoreResult<u64> {
        purge::purge(&self.db, before, limit).await
    }

    fn pool_stats(&self) -> Vec<(&'static str, u32, usize)> {
        match &self.db {
            Db::Sqlite(s) => s.pool_stats(),
            Db::Postgres(p) => p.pool_stats(),
        }
    }

    async fn insert_client(&self, client: &Client) -> StoreResult<()> {
        clients::insert(&self.db, client).await
    }

    async fn get_client(&self, client_id: &str) -> StoreResult<Option<Client>> {
        clients::get(&self.db, client_id).await
    }

    async fn list_clients(&self) -> StoreResult<Vec<Client>> {
        clients::list(&self.db).await
    }

    async fn update_client(
        &self,
        client_id: &str,
        changes: &ClientChanges<'_>,
    ) -> StoreResult<bool> {
        let changed = clients::update(&self.db, client_id, changes).await?;
        self.forget_client_polls(changed);
        Ok(changed)
    }

    async fn delete_client(&self, client_id: &str) -> StoreResult<bool> {
        let deleted = clients::delete(&self.db, client_id).await?;
        self.forget_client_polls(deleted);
        Ok(deleted)
    }

    async fn set_client_secret(&self, client_id: &str, secret_hash: &str) -> StoreResult<bool> {
        let changed = clients::set_secret(&self.db, client_id, secret_hash).await?;
        self.forget_client_polls(changed);
        Ok(changed)
    }

    async fn insert_account(&self, account: &Account) -> StoreResult<()> {
        accounts::insert(&self.db, account).await
    }

    async fn insert_account_with_link(
        &self,
        account: &Account,
        link: &AccountLink,
        outbox: &[OutboxMessage],
    ) -> StoreResult<()> {
        accounts::insert_with_link(&self.db, account, link, outbox).await
    }

    async fn change_password(
        &self,
        password_hash: &str,
        keep_session: &str,
        activity: &Activity,
        outbox: &[OutboxMessage],
    ) -> StoreResult<()> {
        accounts::change_password(&self.db, password_hash, keep_session, activity, outbox).await
    }

    async fn delete_other_sessions(&self, keep: &str, activity: &Activity) -> StoreResult<u64> {
        accounts::delete_other_sessions(&self.db, keep, activity).await
    }

    async fn get_account_by_email(&self, email: &str) -> StoreResult<Option<Account>> {
        accounts::by_email(&self.db, email).await
    }

    async fn get_account(&self, id: &str) -> StoreResult<Option<Account>> {
        accounts::get(&self.db, id).await
    }

    async fn list_accounts(&self) -> StoreResult<Vec<Account>> {
        accounts::list(&self.db).await
    }

    async fn set_account_disabled(&self, id: &str, disabled: bool) -> StoreResult<bool> {
        accounts::set_disabled(&self.db, id, disabled).await
    }

    async fn set_account_time_zone(&self, id: &str, zone: &str) -> StoreResult<()> {
        accounts::set_time_zone(&self.db, id, zone).await
    }

    async fn delete_account(&self, id: &str) -> StoreResult<bool> {
        accounts::delete(&self.db, id).await
    }

    async fn delete_sessions(&self, account_id: &str) -> StoreResult<()> {
        accounts::delete_sessions(&self.db, account_id).await
    }

    async fn insert_session(&self, session: &Session) -> StoreResult<()> {
        accounts::insert_session(&self.db, session).await
    }

    async fn get_session(&self, id_hash: &str, now: Timestamp) -> StoreResult<Option<Session>> {
        accounts::get_session(&self.db, id_hash, now).await
    }

    async fn delete_session(&self, id_hash: &str) -> StoreResult<()> {
        accounts::delete_session(&self.db, id_hash).await
    }

    async fn insert_signing_key(&self, key: &SigningKey) -> StoreResult<()> {
        keys::insert(&self.db, key).await
    }

    async fn insert_first_signing_key(&self, key: &SigningKey) -> StoreResult<bool> {
        keys::insert_first(&self.db, key).await
    }

    async fn list_signing_keys(&self) -> StoreResult<Vec<SigningKey>> {
        keys::list(&self.db).await
    }

    async fn revoke_signing_key(&self, kid: &str, now: Timestamp) -> StoreResult<bool> {
        keys::revoke(&self.db, kid, now).await
    }

    async fn insert_device_authorizations(
        &self,
        auths: &[DeviceAuthorization],
    ) -> StoreResult<Vec<bool>> {
        authorizations::insert_many(&self.db, auths).await
    }

    async fn get_device_authorization_by_code_hash(
        &self,
        device_code_hash: &str,
    ) -> StoreResult<Option<DeviceAuthorization>> {
        authorizations::by_code_hash(&self.db, device_code_hash).await
    }

    async fn poll_device_authorization(
        &self,
        device_code_hash: &str,
    ) -> StoreResult<Option<(PolledAuthorization, Arc<Client>)>> {
        authorizations::poll(&self.db, device_code_hash).await
    }

    async fn poll_device_authorization_at(
        &self,
        device_code_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<(PolledAuthorization, Arc<Client>)>> {
        let polls = self.db.polls();
        if let Some(found) = polls.get(device_code_hash, now) {
            return Ok(Some(found));
        }
        let ticket = polls.ticket();
        let found = authorizations::poll(&self.db, device_code_hash).await?;
        if let Some(found) = &found {
            polls.put(ticket, device_code_hash, now, found);
        }
        Ok(found)
    }

    fn sweep_polls(&self, now: Timestamp) {
        self.db.polls().sweep(now);
    }

    fn poll_reads(&self) -> PollReads {
        self.db.polls().reads()
    }

    async fn get_device_authorization(&self, id: &str) -> StoreResult<Option<DeviceAuthorization>> {
        authorizations::by_id(&self.db, id).await
    }

    async fn get_device_authorization_by_user_code(
        &self,
        user_code: &str,
    ) -> StoreResult<Option<DeviceAuthorization>> {
        authorizations::by_user_code(&self.db, user_code).await
    }

    async fn decide_device_authorization(
        &self,
        id: &str,
        approve: bool,
        account_id: &str,
        now: Timestamp,
    ) -> StoreResult<bool> {
        let decided = authorizations::decide(&self.db, id, approve, account_id, now).await?;
        self.forget_polled(id, decided);
        Ok(decided)
    }

    async fn decide_device_authorization_recorded(
        &self,
        id: &str,
        approve: bool,
        account_id: &str,
        now: Timestamp,
        record: &DecisionRecord,
    ) -> StoreResult<bool> {
        let decided =
            authorizations::decide_recorded(&self.db, id, approve, account_id, now, record).await?;
        self.forget_polled(id, decided);
        Ok(decided)
    }

    async fn report_device_authorization(
        &self,
        id: &str,
        account_id: &str,
        now: Timestamp,
        record: &DecisionRecord,
        report: &LinkReport<'_>,
    ) -> StoreResult<Option<ReportOutcome>> {
        let outcome = reports::report(&self.db, id, account_id, now, record, report).await?;
        if let Some(outcome) = &outcome {
            self.forget_polled(id, true);
            for denied in &outcome.denied {
                self.forget_polled(denied, true);
            }
        }
        Ok(outcome)
    }

    async fn network_blocks(&self, now: Timestamp) -> StoreResult<Vec<NetworkBlock>> {
        reports::active_blocks(&self.db, now).await
    }

    async fn network_blocked_until(
        &self,
        network: &str,
        now: Timestamp,
    ) -> StoreResult<Option<Timestamp>> {
        reports::blocked_until(&self.db, network, now).await
    }

    async fn redeem_device_authorization(
        &self,
        id: &str,
        deadline_after: Timestamp,
        prepare: &mut PrepareRedemption<'_>,
    ) -> StoreResult<RedeemOutcome> {
        authorizations::redeem(&self.db, id, deadline_after, prepare).await
    }

    async fn get_linked_device(&self, id: &str) -> StoreResult<Option<LinkedDevice>> {
        devices::get(&self.db, id).await
    }

    async fn list_linked_devices(&self, account_id: &str) -> StoreResult<Vec<LinkedDevice>> {
        devices::list(&self.db, account_id).await
    }

    async fn rename_linked_device(
        &self,
        id: &str,
        account_id: &str,
        label: &str,
    ) -> StoreResult<bool> {
        devices::rename(&self.db, id, account_id, label).await
    }

    async fn insert_authorization_code(&self, code: &AuthorizationCode) -> StoreResult<()> {
        authorization_codes::insert(&self.db, code).await
    }

    async fn insert_authorization_code_recorded(
        &self,
        code: &AuthorizationCode,
        record: &DecisionRecord,
    ) -> StoreResult<()> {
        authorization_codes::insert_recorded(&self.db, code, record).await
    }

    async fn redeem_authorization_code(
        &self,
        code_hash: &str,
        client_id: &str,
        now: Timestamp,
        prepare: &mut PrepareCodeRedemption<'_>,
    ) -> StoreResult<CodeRedeemOutcome> {
        authorization_codes::redeem(&self.db, code_hash, client_id, now, prepare).await
    }

    async fn has_consent(
        &self,
        account_id: &str,
        client_id: &str,
        scope: &str,
    ) -> StoreResult<bool> {
        authorization_codes::has_consent(&self.db, account_id, client_id, scope).await
    }

    async fn grant_consent(
        &self,
        account_id: &str,
        client_id: &str,
        scope: &str,
        now: Timestamp,
    ) -> StoreResult<()> {
        authorization_codes::grant_consent(&self.db, account_id, client_id, scope, now).await
    }

    async fn withdraw_consents(&self, account_id: &str, client_id: &str) -> StoreResult<u64> {
        authorization_codes::withdraw_consents(&self.db, account_id, client_id).await
    }

    async fn revoke_linked_device(
        &self,
        id: &str,
        now: Timestamp,
        outbox: &[OutboxMessage],
    ) -> StoreResult<bool> {
        devices::revoke(&self.db, id, now, outbox).await
    }

    async fn note_dpop_proof(&self, id: &str, expires_at: Timestamp) -> StoreResult<bool> {
        devices::note_dpop_proof(&self.db, id, expires_at).await
    }

    async fn active_device_for_token(
        &self,
        device_id: &str,
        jti: &str,
    ) -> StoreResult<Option<LinkedDevice>> {
        devices::active_for_token(&self.db, device_id, jti).await
    }

    async fn rotate_refresh_token(
        &self,
        device_id: &str,
        from: i64,
        token_hash: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool> {
        devices::rotate_refresh_token(&self.db, device_id, from, token_hash, expires_at, now).await
    }

    async fn get_legacy_refresh_token(
        &self,
        token_hash: &str,
    ) -> StoreResult<Option<LegacyRefreshToken>> {
        devices::get_legacy_refresh_token(&self.db, token_hash).await
    }

    async fn upgrade_legacy_refresh_token(
        &self,
        legacy_hash: &str,
        device_id: &str,
        token_hash: &str,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> StoreResult<bool> {
        devices::upgrade_legacy_refresh_token(
            &self.db,
            legacy_hash,
            device_id,
            token_hash,
            expires_at,
            now,
        )
        .await
    }

    async fn revoke_access_token(&self, jti: &str, expires_at: Timestamp) -> StoreResult<()> {
        devices::revoke_access_token(&self.db, jti, expires_at).await
    }

    async fn insert_activity(&self, activity: &Activity) -> StoreResult<()> {
        activity::insert(&self.db, activity).await
    }

    async fn list_activity(&self, account_id: &str, limit: i64) -> StoreResult<Vec<Activity>> {
        activity::list(&self.db, account_id, limit).await
    }

    async fn insert_passkey_challenge(&self, challenge: &PasskeyChallenge) -> StoreResult<()> {
        passkeys::insert_challenge(&self.db, challenge).await
    }

    async fn take_passkey_challenge(
        &self,
        challenge: &str,
        purpose: &str,
        binding: &str,
        now: Timestamp,
    ) -> StoreResult<Option<PasskeyChallenge>> {
        passkeys::take_challenge(&self.db, challenge, purpose, binding, now).await
    }

    async fn insert_passkey(&self, passkey: &Passkey, activity: &Activity) -> StoreResult<()> {
        passkeys::insert(&self.db, passkey, activity).await
    }

    async fn get_passkey(&self, id: &str) -> StoreResult<Option<Passkey>> {
        passkeys::by_id(&self.db, id).await
    }

    async fn list_passkeys(&self, account_id: &str) -> StoreResult<Vec<Passkey>> {
        passkeys::for_account(&self.db, account_id).await
    }

    async fn use_passkey(
        &self,
        passkey: &Passkey,
        previous_sign_count: i64,
        activity: &Activity,
    ) -> StoreResult<bool> {
        passkeys::used(&self.db, passkey, previous_sign_count, activity).await
    }

    async fn rename_passkey(&self, account_id: &str, id: &str, name: &str) -> StoreResult<bool> {
        passkeys::rename(&self.db, account_id, id, name).await
    }

    async fn remove_passkey(&self, id: &str, activity: &Activity) -> StoreResult<bool> {
        passkeys::remove(&self.db, id, activity).await
    }

    async fn insert_upstream_login(&self, login: &UpstreamLogin) -> StoreResult<()> {
        identities::insert_login(&self.db, login).await
    }

    async fn take_upstream_login(
        &self,
        state_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<UpstreamLogin>> {
        identities::take_login(&self.db, state_hash, now).await
    }

    async fn insert_pending_join(&self, join: &PendingJoin) -> StoreResult<()> {
        identities::insert_pending_join(&self.db, join).await
    }

    async fn take_pending_join(
        &self,
        secret_hash: &str,
        now: Timestamp,
    ) -> StoreResult<Option<PendingJoin>> {
        identities::take_pending_join(&self.db, secret_hash, now).await
    }

    async fn get_identity(&self, issuer: &str, subject: &str) -> StoreResult<Option<Identity>> {
        identities::by_subject(&self.db, issuer, subject).await
    }

    async fn list_identities(&self, account_id: &str) -> StoreResult<Vec<Identity>> {
        identities::for_account(&self.db, account_id).await
    }

    async fn join_identity(&self, identity: &Identity, activity: &Activity) -> StoreResult<()> {
        identities::join(&self.db, identity, activity).await
    }

    async fn insert_account_with_identity(
        &self,
        account: &Account,
        identity: &Identity,
        email_verified_at: Option<Timestamp>,
        activity: &Activity,
    ) -> StoreResult<()> {
        identities::insert_account_with_identity(
            &self.db,
            account,
            identity,
            email_verified_at,
            activity,
        )
        .await
    }

    async fn touch_identity(
        &self,
        issuer: &str,
        subject: &str,
        email: Option<&str>,
        now: Timestamp,
    ) -> StoreResult<()> {
        identities::touch(&self.db, issuer, subject, email, now).await
    }

    async fn remove_identity(
        &self,
        issuer: &str,
        subject: &str,
        password_counts: bool,
        activity: &Activity,
    ) -> StoreResult<IdentityRemoval> {
        identities::remove(&self.db, issuer, subject, password_counts, activity).await
    }

    async fn insert_account_link(
        &self,
        link: &AccountLink,
        outbox: &[OutboxMessage],
    ) -> StoreResult<()> {
        links::insert(&self.db, link, outbox).await
    }

    async fn get_account_link(
        &self,
        token_hash: &str,
        purpose: LinkPurpose,
        now: Timestamp,
    ) -> StoreResult<Option<AccountLink>> {
        links::get_usable(&self.db, token_hash, purpose, now).await
    }

    async fn reset_password(
        &self,
        token_hash: &str,
        password_hash: &str,
        activity: &Activity,
        outbox: &[OutboxMessage],
    ) -> StoreResult<bool> {
        links::reset_password(&self.db, token_hash, password_hash, activity, outbox).await
    }

    async fn mark_email_verified(&self, activity: &Activity) -> StoreResult<bool> {
        links::mark_email_verified(&self.db, activity).await
    }

    async fn verify_email(
        &self,
        token_hash: &str,
        address: &str,
        activity: &Activity,
    ) -> StoreResult<bool> {
        links::verify_email(&self.db, token_hash, address, activity).await
    }

    async fn insert_record(&self, record: &DecisionRecord) -> StoreResult<()> {
        links::insert_record(&self.db, record).await
    }

    async fn report_not_me(&self, report: &NotMeReport<'_>) -> StoreResult<bool> {
        links::report_not_me(&self.db, report).await
    }

    async fn enqueue(&self, messages: &[OutboxMessage]) -> StoreResult<()> {
        outbox::enqueue(&self.db, messages).await
    }

    async fn claim_outbox(
        &self,
        kind: OutboxKind,
        lease: &str,
        now: Timestamp,
        lease_until: Timestamp,
        limit: i64,
    ) -> StoreResult<Vec<OutboxMessage>> {
        outbox::claim(&self.db, kind, lease, now, lease_until, limit).await
    }

    async fn outbox_delivered(&self, id: &str, lease: &str) -> StoreResult<bool> {
        outbox::delivered(&self.db, id, lease).await
    }

    async fn outbox_expand(
        &self,
        id: &str,
        lease: &str,
        messages: &[OutboxMessage],
    ) -> StoreResult<bool> {
        outbox::expand(&self.db, id, lease, messages).await
    }

    async fn outbox_retry(
        &self,
        id: &str,
        lease: &str,
        next_attempt_at: Timestamp,
        error: &str,
    ) -> StoreResult<bool> {
        outbox::retry(&self.db, id, lease, next_attempt_at, error).await
    }

    async fn outbox_failed(
        &self,
        id: &str,
        lease: &str,
        now: Timestamp,
        keep_until: Timestamp,
        error: &str,
    ) -> StoreResult<bool> {
        outbox::failed(&self.db, id, lease, now, keep_until, error).await
    }

    async fn list_outbox(&self) -> StoreResult<Vec<OutboxMessage>> {
        outbox::list(&self.db).await
    }

    async fn sync_get(
        &self,
        account_id: &str,
        namespace: &str,
        collection: &str,
        key: &str,
    ) -> StoreResult<Option<SyncDocument>> {
        sync::get(&self.db, account_id, namespace, collection, key).await
    }

    async fn sync_write(&self, write: &SyncWrite) -> StoreResult<SyncWriteOutcome> {
        sync::write(&self.db, write).await
    }

    async fn sync_changes(
        &self,
        account_id: &str,
        namespaces: &[&str],
        collection: Option<&str>,
        since: i64,
        limit: i64,
    ) -> StoreResult<Vec<SyncDocument>> {
        sync::changes(&self.db, account_id, namespaces, collection, since, limit).await
    }

    async fn sync_head(&self, account_id: &str) -> StoreResult<i64> {
        sync::head(&self.db, account_id).await
    }

    async fn sync_purged_through(&self, account_id: &str) -> StoreResult<i64> {
        sync::purged_through(&self.db, account_id).await
    }

    async fn sync_usage(&self, account_id: &str) -> StoreResult<Vec<SyncUsage>> {
        sync::usage(&self.db, account_id).await
    }

    async fn sync_delete_collection(
        &self,
        account_id: &str,
        namespace: &str,
        collection: &str,
        now: Timestamp,
    ) -> StoreResult<u64> {
        sync::delete_collection(&self.db, account_id, namespace, collection, now).await
    }
}

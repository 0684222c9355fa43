//! Device authorizations (RFC 8628): pending → approved → redeemed, or
//! pending → denied; every step one conditional update.

use std::sync::Arc;

use super::db::{Db, q};
use super::{
    Account, AuthorizationState, Client, DecisionRecord, DeviceAuthorization, PolledAuthorization,
    PrepareRedemption, RedeemOutcome, StoreResult, Timestamp, postgres, sqlite,
};

/// The whole row by device-code hash; also what the SQLite hot-path
/// readers run.
pub(crate) const BY_CODE_HASH: &str =
    "SELECT * FROM device_authorizations WHERE device_code_hash = $1";

/// What a poll reads of its authorization, by device-code hash (the SQLite
/// hot-path readers read this and the app apart, see `sqlite/direct.rs`).
pub(crate) const POLLED: &str = concat!(
    "SELECT ",
    super::rows::polled_columns!(""),
    " FROM device_authorizations WHERE device_code_hash = $1"
);

/// What every poll reads: its authorization's poll columns joined with its
/// app, whose columns are renamed where the names clash.
const POLL: &str = concat!(
    "SELECT ",
    super::rows::polled_columns!("a."),
    ", c.name AS c_name,
     c.secret_hash AS c_secret_hash, c.scopes AS c_scopes,
     c.device_flow_enabled AS c_device_flow_enabled, c.redirect_uris AS c_redirect_uris,
     c.code_flow_enabled AS c_code_flow_enabled, c.refresh_enabled AS c_refresh_enabled,
     c.require_dpop AS c_require_dpop,
     c.prefilled_links AS c_prefilled_links, c.same_network_v4 AS c_same_network_v4,
     c.same_network_v6 AS c_same_network_v6, c.created_at AS c_created_at
     FROM device_authorizations a JOIN clients c ON c.client_id = a.client_id
     WHERE a.device_code_hash = $1"
);

/// Columns of a new device authorization, in the order rows are bound.
pub(crate) const COLUMNS: &str = "id, device_code_hash, user_code, client_id, scope, state,
     account_id, requested_ip, device_name, created_at, expires_at, interval_secs, decided_at,
     user_agent";

pub(super) async fn insert_many(db: &Db, auths: &[DeviceAuthorization]) -> StoreResult<Vec<bool>> {
    if auths.is_empty() {
        return Ok(Vec::new());
    }
    // The batch insert is per backend: PostgreSQL takes the whole group as
    // arrays in one statement, SQLite (no arrays) a statement per chunk.
    let inserted = match db {
        Db::Sqlite(s) => sqlite::insert_authorizations(s, auths).await?,
        Db::Postgres(p) => postgres::insert_authorizations(p, auths).await?,
    };
    Ok(auths.iter().map(|a| inserted.contains(&a.id)).collect())
}

pub(super) async fn by_code_hash(
    db: &Db,
    device_code_hash: &str,
) -> StoreResult<Option<DeviceAuthorization>> {
    if let Some(direct) = db.direct() {
        return direct.read(|reader| reader.authorization(device_code_hash));
    }
    db.fetch_optional(q(BY_CODE_HASH, &[device_code_hash.into()]))
        .await
}

pub(super) async fn poll(
    db: &Db,
    device_code_hash: &str,
) -> StoreResult<Option<(PolledAuthorization, Arc<Client>)>> {
    if let Some(direct) = db.direct() {
        // Two reads in one snapshot rather than the join: the app mostly
        // comes from the reader's copy (`Reader::client`), and the poll
        // costs one indexed read of its code.
        return direct.read(|reader| {
            let Some(auth) = reader.polled(device_code_hash)? else {
                return Ok(None);
            };
            Ok(reader.client(&auth.client_id)?.map(|client| (auth, client)))
        });
    }
    db.fetch_optional(q(POLL, &[device_code_hash.into()])).await
}

pub(super) async fn by_id(db: &Db, id: &str) -> StoreResult<Option<DeviceAuthorization>> {
    db.fetch_optional(q(
        "SELECT * FROM device_authorizations WHERE id = $1",
        &[id.into()],
    ))
    .await
}

pub(super) async fn by_user_code(
    db: &Db,
    user_code: &str,
) -> StoreResult<Option<DeviceAuthorization>> {
    db.fetch_optional(q(
        "SELECT * FROM device_authorizations WHERE user_code = $1",
        &[user_code.into()],
    ))
    .await
}

pub(super) async fn count_pending(db: &Db, now: Timestamp) -> StoreResult<i64> {
    db.fetch_one(q(
        "SELECT COUNT(*) AS v FROM device_authorizations
         WHERE state = 'pending' AND expires_at > $1",
        &[now.into()],
    ))
    .await
}

pub(super) async fn decide(
    db: &Db,
    id: &str,
    approve: bool,
    account_id: &str,
    now: Timestamp,
) -> StoreResult<bool> {
    // One statement: SQLite's one writer runs it alone; under PostgreSQL's
    // READ COMMITTED a racing update waits for the row lock, then re-checks
    // the WHERE clause against the committed row. One winner either way.
    let done = db
        .execute(q(DECIDE, &decide_args(id, approve, account_id, &now)))
        .await?;
    Ok(done == 1)
}

pub(super) const DECIDE: &str =
    "UPDATE device_authorizations SET state = $1, account_id = $2, decided_at = $3
     WHERE id = $4 AND state = 'pending' AND expires_at > $3";

pub(super) fn decide_args<'a>(
    id: &'a str,
    approve: bool,
    account_id: &'a str,
    now: &Timestamp,
) -> [super::db::Arg<'a>; 4] {
    let state = if approve {
        AuthorizationState::Approved
    } else {
        AuthorizationState::Denied
    };
    [
        state.as_str().into(),
        account_id.into(),
        (*now).into(),
        id.into(),
    ]
}

/// The decision and what it causes, in one transaction: the update
/// decides as in [`decide`], and only its winner writes `record`.
pub(super) async fn decide_recorded(
    db: &Db,
    id: &str,
    approve: bool,
    account_id: &str,
    now: Timestamp,
    record: &DecisionRecord,
) -> StoreResult<bool> {
    let mut tx = db.begin().await?;
    let done = tx
        .execute(q(DECIDE, &decide_args(id, approve, account_id, &now)))
        .await?;
    if done != 1 {
        return Ok(false);
    }
    super::links::write_record(&mut tx, record).await?;
    tx.commit().await?;
    Ok(true)
}

pub(super) async fn redeem(
    db: &Db,
    id: &str,
    deadline_after: Timestamp,
    prepare: &mut PrepareRedemption<'_>,
) -> StoreResult<RedeemOutcome> {
    let mut tx = db.begin().await?;
    // The row this update changes is the one decided on: RETURNING hands
    // it back, so no earlier read (possibly of an older snapshot) matters.
    let updated: Option<DeviceAuthorization> = tx
        .fetch_optional(q(
            "UPDATE device_authorizations SET state = 'redeemed'
             WHERE id = $1 AND state = 'approved' AND expires_at > $2
             RETURNING *",
            &[id.into(), deadline_after.into()],
        ))
        .await?;
    let Some(auth) = updated else {
        let found: Option<DeviceAuthorization> = tx
            .fetch_optional(q(
                "SELECT * FROM device_authorizations WHERE id = $1",
                &[id.into()],
            ))
            .await?;
        return Ok(RedeemOutcome::NotRedeemable(
            found.map(|a| (a.state, a.expires_at)),
        ));
    };
    let account: Option<Account> = match &auth.account_id {
        Some(account_id) => {
            tx.fetch_optional(q(
                "SELECT * FROM accounts WHERE id = $1",
                &[account_id.into()],
            ))
            .await?
        }
        None => None,
    };
    // Declined: the rollback (dropping the transaction) undoes the update.
    let Some(redemption) = prepare(&auth, account.as_ref()) else {
        return Ok(RedeemOutcome::Declined);
    };
    super::devices::insert(&mut tx, &redemption.device).await?;
    super::outbox::insert(&mut tx, &redemption.outbox).await?;
    tx.commit().await?;
    Ok(RedeemOutcome::Redeemed)
}

//! "I didn't start this" (issue 22): a report denies its code, is kept for
//! a while, and when reports from enough distinct accounts name one
//! requesting network, that network is blocked: its pending codes are
//! denied and new ones refused until the block ends.

use super::authorizations::{DECIDE, decide_args};
use super::db::{Db, Tx, q};
use super::{
    DecisionRecord, DeviceAuthorization, LinkReport, NetworkBlock, ReportOutcome, StoreResult,
    Timestamp,
};

/// The report in one transaction with the denial of code `id` (as
/// `decide_recorded` denies it, with `record`). `None` when the code was
/// no longer pending: nothing is written.
///
/// Reports on one network are counted one after another, and so are one
/// account's: each transaction takes the network's `network_blocks` row
/// and the account's row (PostgreSQL holds the row locks to the commit;
/// SQLite has one writer). So of a burst of reports the one that crosses
/// the threshold sees all before it, and a network is blocked once; the
/// reports queued behind it find their codes denied by the block.
pub(super) async fn report(
    db: &Db,
    id: &str,
    account_id: &str,
    now: Timestamp,
    record: &DecisionRecord,
    report: &LinkReport<'_>,
) -> StoreResult<Option<ReportOutcome>> {
    let mut tx = db.begin().await?;
    let rule = report.rule;
    let network = report.network;
    // The network's row first, before any code's: a block denies the
    // network's pending codes, so a report holding its own code's row
    // while it waits here would deadlock with the report that blocks.
    tx.execute(q(
        "INSERT INTO network_blocks (network, reports, blocked_at, expires_at)
         VALUES ($1, 0, 0, 0)
         ON CONFLICT (network) DO UPDATE SET reports = network_blocks.reports",
        &[network.into()],
    ))
    .await?;
    let denied = tx
        .execute(q(DECIDE, &decide_args(id, false, account_id, &now)))
        .await?;
    if denied != 1 {
        return Ok(None);
    }
    super::links::write_record(&mut tx, record).await?;
    // An update that changes nothing still takes the row's lock (and on
    // PostgreSQL checks no foreign key: the key is unchanged). Taken
    // after the network's: a transaction never waits for a second
    // network, so the two locks cannot wait on each other in a circle.
    tx.execute(q(
        "UPDATE accounts SET id = id WHERE id = $1",
        &[account_id.into()],
    ))
    .await?;
    let since = now - rule.window;
    // The account's allowance is in networks: more reports on a network
    // it already counts for change nothing (accounts are counted once).
    let other_networks: i64 = tx
        .fetch_one(q(
            "SELECT COUNT(DISTINCT network) AS v FROM link_reports
             WHERE account_id = $1 AND counted AND at > $2 AND network <> $3",
            &[account_id.into(), since.into(), network.into()],
        ))
        .await?;
    let counted =
        report.eligible && rule.threshold > 0 && other_networks < i64::from(rule.per_account);
    tx.execute(q(
        "INSERT INTO link_reports
             (network, account_id, client_id, reporting_ip, counted, at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        &[
            network.into(),
            account_id.into(),
            report.client_id.into(),
            report.reporting_ip.into(),
            counted.into(),
            now.into(),
            (now + rule.window).into(),
        ],
    ))
    .await?;
    let mut outcome = ReportOutcome {
        counted,
        ..ReportOutcome::default()
    };
    if counted {
        outcome.blocked = block_if_due(&mut tx, report, now).await?;
        if let Some(block) = &outcome.blocked {
            outcome.denied = deny_pending(&mut tx, report, now).await?;
            let event = (report.blocked_event)(block.reports, block.until);
            super::outbox::insert(&mut tx, std::slice::from_ref(&event)).await?;
        }
    }
    tx.commit().await?;
    Ok(Some(outcome))
}

/// Blocks the network when distinct accounts' reports since its last
/// block (and within the window) reach the threshold and it is not
/// blocked already; the block, if this call made it.
async fn block_if_due(
    tx: &mut Tx<'_>,
    report: &LinkReport<'_>,
    now: Timestamp,
) -> StoreResult<Option<NetworkBlock>> {
    let rule = report.rule;
    let network = report.network;
    // Reports from before the last block led to it: they start no second
    // one (and with `block_secs >= window` they have expired by its end).
    let accounts: i64 = tx
        .fetch_one(q(
            "SELECT COUNT(DISTINCT account_id) AS v FROM link_reports
             WHERE network = $1 AND counted AND at > $2
               AND at > (SELECT blocked_at FROM network_blocks WHERE network = $1)",
            &[network.into(), (now - rule.window).into()],
        ))
        .await?;
    if accounts < i64::from(rule.threshold) {
        return Ok(None);
    }
    let until = now + rule.block_secs;
    let started = tx
        .execute(q(
            "UPDATE network_blocks SET reports = $2, blocked_at = $3, expires_at = $4
             WHERE network = $1 AND expires_at <= $3",
            &[network.into(), accounts.into(), now.into(), until.into()],
        ))
        .await?;
    Ok((started == 1).then(|| NetworkBlock {
        network: network.to_string(),
        reports: accounts,
        blocked_at: now,
        until,
    }))
}

/// Denies the network's pending codes; their ids. Pending codes are few
/// (each lives minutes, and devices are limited per network), and a block
/// is rare, so they are read and matched here rather than indexed by
/// network.
async fn deny_pending(
    tx: &mut Tx<'_>,
    report: &LinkReport<'_>,
    now: Timestamp,
) -> StoreResult<Vec<String>> {
    let pending: Vec<DeviceAuthorization> = tx
        .fetch_all(q(
            "SELECT * FROM device_authorizations WHERE state = 'pending' AND expires_at > $1",
            &[now.into()],
        ))
        .await?;
    let mut denied = Vec::new();
    for auth in pending
        .into_iter()
        .filter(|a| (report.in_network)(&a.requested_ip))
    {
        let done = tx
            .execute(q(
                "UPDATE device_authorizations SET state = 'denied', decided_at = $2
                 WHERE id = $1 AND state = 'pending'",
                &[auth.id.as_str().into(), now.into()],
            ))
            .await?;
        if done == 1 {
            denied.push(auth.id);
        }
    }
    Ok(denied)
}

/// The blocks in force at `now`.
pub(super) async fn active_blocks(db: &Db, now: Timestamp) -> StoreResult<Vec<NetworkBlock>> {
    db.fetch_all(q(
        "SELECT * FROM network_blocks WHERE expires_at > $1",
        &[now.into()],
    ))
    .await
}

/// The end of `network`'s block in force at `now`, if any.
pub(super) async fn blocked_until(
    db: &Db,
    network: &str,
    now: Timestamp,
) -> StoreResult<Option<Timestamp>> {
    db.fetch_optional(q(
        "SELECT expires_at AS v FROM network_blocks WHERE network = $1 AND expires_at > $2",
        &[network.into(), now.into()],
    ))
    .await
}

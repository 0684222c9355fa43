//! The poll cache on SQLite: pending polls from memory, and every way a
//! code leaves `pending` reaching them, from this process at once and
//! from another within the watch's period.

use std::time::{Duration, Instant};

use super::super::fixtures::*;
use crate::store::{AuthorizationState, PollReads, SqlStore, Store};

const NOW: i64 = 100;

/// A store whose watch has read `poll_changes` once (before that nothing
/// is cached), with pending code 0 polled once so it is held.
async fn watching() -> (tempfile::TempDir, SqlStore) {
    let (dir, store) = store_with_client().await;
    store
        .insert_device_authorization(&authorization(0))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        store
            .poll_device_authorization_at("hash-0", NOW)
            .await
            .unwrap();
        if store.poll_reads().held == 1 {
            return (dir, store);
        }
        assert!(Instant::now() < deadline, "the watch never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Another connection to the same file, as the `linkd` CLI or an
/// operator's sqlite3 would be.
fn elsewhere(dir: &tempfile::TempDir) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(dir.path().join("linkd.db")).unwrap();
    conn.busy_timeout(Duration::from_secs(5)).unwrap();
    conn
}

/// Polls code 0 until `done` holds of what it reads, for at most a second
/// (ten watch periods); returns how long that took.
async fn until(
    store: &SqlStore,
    done: impl Fn(
        Option<&(
            crate::store::PolledAuthorization,
            std::sync::Arc<crate::store::Client>,
        )>,
    ) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let found = store
            .poll_device_authorization_at("hash-0", NOW)
            .await
            .unwrap();
        if done(found.as_ref()) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "still {found:?} after a second"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn reads(store: &SqlStore) -> PollReads {
    store.poll_reads()
}

#[tokio::test]
async fn pending_polls_are_answered_from_memory() {
    let (_dir, store) = watching().await;
    let before = reads(&store);
    for _ in 0..50 {
        let (auth, _) = store
            .poll_device_authorization_at("hash-0", NOW)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(auth.state, AuthorizationState::Pending);
    }
    let after = reads(&store);
    assert_eq!(after.from_memory, before.from_memory + 50);
    assert_eq!(after.from_database, before.from_database);
    // Past its deadline a code is read again (the database answers
    // expired_token), and so is an unknown one.
    store
        .poll_device_authorization_at("hash-0", i64::MAX)
        .await
        .unwrap();
    assert!(
        store
            .poll_device_authorization_at("hash-x", NOW)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(reads(&store).from_database, after.from_database + 2);
}

#[tokio::test]
async fn this_process_decisions_reach_the_next_poll_at_once() {
    let (_dir, store) = watching().await;
    insert_account(&store).await;
    assert!(
        store
            .decide_device_authorization("id-0", true, "acct", NOW)
            .await
            .unwrap()
    );
    let (auth, _) = store
        .poll_device_authorization_at("hash-0", NOW)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(auth.state, AuthorizationState::Approved);
    // An app changed here: the next poll reads it, not the old copy.
    store
        .update_client(
            "tv",
            &crate::store::ClientChanges {
                device_flow_enabled: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let (_, client) = store
        .poll_device_authorization_at("hash-0", NOW)
        .await
        .unwrap()
        .unwrap();
    assert!(!client.device_flow_enabled);
}

#[tokio::test]
async fn another_process_decision_reaches_polls_within_the_watch_period() {
    let (dir, store) = watching().await;
    elsewhere(&dir)
        .execute(
            "UPDATE device_authorizations SET state = 'denied' WHERE id = 'id-0'",
            [],
        )
        .unwrap();
    let took = until(&store, |found| {
        found.is_some_and(|(auth, _)| auth.state == AuthorizationState::Denied)
    })
    .await;
    eprintln!("a decision elsewhere reached the poll in {took:?}");
}

#[tokio::test]
async fn another_process_deleting_a_pending_code_reaches_polls() {
    let (dir, store) = watching().await;
    elsewhere(&dir)
        .execute("DELETE FROM device_authorizations WHERE id = 'id-0'", [])
        .unwrap();
    until(&store, |found| found.is_none()).await;
}

#[tokio::test]
async fn another_process_changing_the_app_reaches_polls() {
    let (dir, store) = watching().await;
    elsewhere(&dir)
        .execute(
            "UPDATE clients SET device_flow_enabled = 0 WHERE client_id = 'tv'",
            [],
        )
        .unwrap();
    until(&store, |found| {
        found.is_some_and(|(_, client)| !client.device_flow_enabled)
    })
    .await;
    // Deleted with its codes: the poll finds nothing.
    elsewhere(&dir)
        .execute("DELETE FROM clients WHERE client_id = 'tv'", [])
        .unwrap();
    until(&store, |found| found.is_none()).await;
}

/// Rows are kept a minute for every process watching, then trimmed.
#[tokio::test]
async fn old_changes_are_trimmed() {
    let (dir, store) = watching().await;
    let conn = elsewhere(&dir);
    conn.execute(
        "INSERT INTO poll_changes (authorization_id, at)
         VALUES ('old', CAST(strftime('%s', 'now') AS INTEGER) - 120),
                ('new', CAST(strftime('%s', 'now') AS INTEGER))",
        [],
    )
    .unwrap();
    let left = |conn: &rusqlite::Connection| -> Vec<String> {
        let mut statement = conn
            .prepare("SELECT authorization_id FROM poll_changes ORDER BY seq")
            .unwrap();
        statement
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while left(&conn) != ["new"] {
        assert!(Instant::now() < deadline, "left: {:?}", left(&conn));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(store);
}

//! The hot-path readers' snapshots, app copies and checkpoints.

use super::super::fixtures::*;
use super::*;
use crate::store::Store;

/// The direct readers keep their snapshot between reads; every write
/// through the store must still be seen by the very next read, and a
/// write by another process within the snapshot's age limit.
#[tokio::test]
async fn direct_reads_see_every_committed_write() {
    let (dir, store) = store_with_client().await;
    assert!(
        store.db.direct().is_some(),
        "a file database reads directly"
    );
    for n in 0..200 {
        // Reads in between, so the readers hold a snapshot.
        assert!(
            store
                .poll_device_authorization(&format!("hash-{n}"))
                .await
                .unwrap()
                .is_none()
        );
        store
            .insert_device_authorization(&authorization(n))
            .await
            .unwrap();
        let (auth, client) = store
            .poll_device_authorization(&format!("hash-{n}"))
            .await
            .unwrap()
            .expect("the row written just before");
        assert_eq!(
            (auth.id.as_str(), client.name.as_str()),
            (&*format!("id-{n}"), "TV")
        );
        let scopes = format!("openid s{n}");
        store
            .update_client(
                "tv",
                &crate::store::ClientChanges {
                    scopes: Some(&scopes),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        assert_eq!(
            store.get_client("tv").await.unwrap().unwrap().scopes,
            scopes
        );
        // The poll's read of the app comes from the reader's copy when
        // one is there: it must not outlive the write.
        let (_, client) = store
            .poll_device_authorization(&format!("hash-{n}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(client.scopes, scopes);
    }

    // Another process's write (here: another connection) is not
    // counted; it shows once the snapshot is older than its limit.
    let other = rusqlite::Connection::open(dir.path().join("linkd.db")).unwrap();
    other
        .execute(
            "UPDATE clients SET name = 'Elsewhere' WHERE client_id = 'tv'",
            [],
        )
        .unwrap();
    tokio::time::sleep(SNAPSHOT_MAX_AGE * 5).await;
    assert_eq!(
        store.get_client("tv").await.unwrap().unwrap().name,
        "Elsewhere"
    );
    let (_, client) = store
        .poll_device_authorization("hash-0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(client.name, "Elsewhere");
}

/// A reader answers from its copy of an app until its snapshot goes.
#[tokio::test]
async fn a_readers_app_copy_lasts_as_long_as_its_snapshot() {
    let (dir, store) = store_with_client().await;
    let direct = direct_readers(&store);
    let mut reader = Reader {
        conn: direct.open().unwrap(),
        snapshot: None,
        clients: Vec::new(),
    };
    reader.refresh(0).unwrap();
    assert_eq!(reader.client("tv").unwrap().unwrap().name, "TV");
    assert!(reader.client("nobody").unwrap().is_none());
    assert_eq!(reader.clients.len(), 1);
    let other = rusqlite::Connection::open(dir.path().join("linkd.db")).unwrap();
    other
        .execute("UPDATE clients SET name = 'Renamed'", [])
        .unwrap();
    // Still the snapshot's app: the copy is what a read would see.
    assert_eq!(reader.client("tv").unwrap().unwrap().name, "TV");
    reader.release().unwrap();
    assert!(reader.clients.is_empty());
    assert_eq!(reader.client("tv").unwrap().unwrap().name, "Renamed");
}

/// Within one snapshot, polls of many codes read their app once; the
/// copy answers exactly what the join did.
#[tokio::test]
async fn polls_share_their_app_within_a_snapshot() {
    let (_dir, store) = store_with_client().await;
    for n in 0..3 {
        store
            .insert_device_authorization(&authorization(n))
            .await
            .unwrap();
    }
    let read = store
        .poll_device_authorization("hash-0")
        .await
        .unwrap()
        .unwrap();
    for n in 0..3 {
        let (auth, client) = store
            .poll_device_authorization(&format!("hash-{n}"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(auth.id, format!("id-{n}"));
        assert_eq!(client, read.1);
    }
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
        .poll_device_authorization("hash-1")
        .await
        .unwrap()
        .unwrap();
    assert!(!client.device_flow_enabled, "a write ends the copies");
    assert!(
        store
            .poll_device_authorization("hash-none")
            .await
            .unwrap()
            .is_none()
    );
}

/// The background checkpoint keeps one connection from round to round
/// and copies every committed frame back into the database file.
#[tokio::test]
async fn checkpoints_reuse_their_connection() {
    let (_dir, store) = store_with_client().await;
    let direct = direct_readers(&store);
    let mut conn = None;
    for n in 0..3 {
        store
            .insert_device_authorization(&authorization(n))
            .await
            .unwrap();
        let (direct, mut slot) = (direct.clone(), conn.take());
        conn = tokio::task::spawn_blocking(move || {
            direct.checkpoint(&mut slot).unwrap();
            slot
        })
        .await
        .unwrap();
        let kept = conn.as_ref().expect("the connection is kept");
        let (frames, copied): (i64, i64) = kept
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| {
                Ok((r.get(1)?, r.get(2)?))
            })
            .unwrap();
        assert_eq!(frames, copied, "round {n}: every frame checkpointed");
    }
}

/// Idle readers let their snapshots go, so a checkpoint can copy every
/// committed page back into the database file.
#[tokio::test]
async fn idle_readers_release_their_snapshots() {
    let (_dir, store) = store_with_client().await;
    store.get_client("tv").await.unwrap();
    let direct = store.db.direct().unwrap();
    let holding = |direct: &Direct| {
        direct
            .idle
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.snapshot.is_some())
            .count()
    };
    assert_eq!(holding(direct), 1);
    std::thread::sleep(SNAPSHOT_MAX_AGE * 2);
    direct.release_idle();
    assert_eq!(holding(direct), 0);
}

/// The WAL starts over from its beginning after a restart, with an idle
/// reader holding the newest snapshot (which a restart must end, or it
/// waits in vain), and nothing is lost. (Under load a PASSIVE round alone
/// never let the writer rewind it, since some reader always read the WAL;
/// the bench shows that, BENCH.md. The background rounds run here too,
/// so each step is checked several times.)
#[tokio::test]
async fn the_wal_starts_over_while_readers_hold_snapshots() {
    let (_dir, store) = store_with_client().await;
    let crate::store::sqlite::Db::Sqlite(sqlite) = &store.db else {
        unreachable!("a SQLite store");
    };
    let direct = sqlite.direct.clone().expect("a file database");
    let wal = |direct: &std::sync::Arc<Direct>| {
        let mut conn = None;
        direct.checkpoint(&mut conn).unwrap()
    };
    let mut n = 0;
    for round in 0..5 {
        for _ in 0..50 {
            store
                .insert_device_authorization(&authorization(n))
                .await
                .unwrap();
            n += 1;
        }
        // An idle reader now holds the newest snapshot.
        store
            .poll_device_authorization(&format!("hash-{}", n - 1))
            .await
            .unwrap()
            .expect("just written");
        let done = restart(&direct, &sqlite.write).await.unwrap();
        assert!(
            !done.busy,
            "round {round}: the reader was waited out: {done:?}"
        );
        assert_eq!(done.frames, done.copied, "round {round}: all copied");
        assert!(!direct.restarting.load(Ordering::Acquire));
        store
            .insert_device_authorization(&authorization(n))
            .await
            .unwrap();
        n += 1;
        let after = wal(&direct);
        assert!(
            after.frames < 20,
            "round {round}: the next write starts the WAL over: {after:?}"
        );
    }
    // Nothing was lost on the way.
    for k in 0..n {
        assert!(
            store
                .poll_device_authorization(&format!("hash-{k}"))
                .await
                .unwrap()
                .is_some(),
            "code {k}"
        );
    }
}

//! A pending poll costs the database nothing: each instance answers polls
//! for pending codes from memory, which every decision, made on any
//! instance, ends within one polling interval, even when the instance's
//! event listener is cut in the middle.

use std::time::{Duration, Instant};

use linkd::clock::Clock;
use linkd::store::PollReads;
use reqwest::StatusCode;
use sqlx::Connection;

use crate::helpers::*;

/// RFC 8628 §3.2's default, which linkd tells devices.
const INTERVAL: Duration = Duration::from_secs(5);

/// One poll of B as a well-behaved device makes it: its clock moves on by
/// the interval first, so slow_down stays out of the way.
async fn poll_b(apps: [&TestApp; 2], device_code: &str) -> Reply {
    for app in apps {
        app.clock.advance_secs(INTERVAL.as_secs() as i64);
    }
    apps[1].poll(device_code).await
}

/// Polls B, with real pauses, until it answers something other than
/// authorization_pending; fails unless that comes within one interval of
/// real time after the decision.
async fn answer_within_interval(apps: [&TestApp; 2], device_code: &str) -> Reply {
    let decided = Instant::now();
    loop {
        let reply = poll_b(apps, device_code).await;
        if reply.status == StatusCode::OK || reply.error() != "authorization_pending" {
            eprintln!(
                "B answered {} {:?} after the decision",
                reply.status,
                decided.elapsed()
            );
            return reply;
        }
        assert!(
            decided.elapsed() < INTERVAL,
            "B still said authorization_pending {:?} after the decision",
            decided.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Ends B's (and A's) event listener connections from the database side,
/// as a restarted connection pooler or a network cut would.
async fn cut_listeners(db: &TestDatabase) -> u64 {
    let mut admin = sqlx::PgConnection::connect(db.url()).await.unwrap();
    let cut: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()
           AND query ILIKE 'LISTEN%'",
    )
    .fetch_all(&mut admin)
    .await
    .unwrap();
    cut.len() as u64
}

async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(Instant::now() < deadline, "{what} never happened");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_polls_are_answered_from_memory_and_decisions_reach_every_instance() {
    let db = TestDatabase::postgres().await;
    // A code lives long enough for 200 polls an interval apart.
    let options = || Options {
        configure: Box::new(|c: &mut linkd::Config| {
            c.code_lifetime = 1800;
            c.max_approval_age = 1800;
        }),
        ..Default::default()
    };
    let a = spawn_on(db.clone(), options()).await;
    let b = spawn_on(db.clone(), options()).await;
    a.clock.advance_ms(b.clock.now_ms() - a.clock.now_ms());
    let apps = [&a, &b];
    let reads = || b.state.store.poll_reads();
    let browser = a.signed_in_browser("polls@example.com").await;

    // Approval on A while the device polls B. The first poll reads the
    // code from the database; the next 200 cost it nothing.
    let auth = a.start_device("openid").await;
    assert_eq!(
        poll_b(apps, &auth.device_code).await.error(),
        "authorization_pending"
    );
    let before = reads();
    for _ in 0..200 {
        assert_eq!(
            poll_b(apps, &auth.device_code).await.error(),
            "authorization_pending"
        );
    }
    let after = reads();
    eprintln!("200 pending polls: {before:?} -> {after:?}");
    assert_eq!(after.from_database, before.from_database, "{after:?}");
    assert_eq!(after.from_memory, before.from_memory + 200);
    let done = browser.approve(&auth.user_code).await;
    assert!(done.contains("is now linked"), "{}", done.body);
    let tokens = answer_within_interval(apps, &auth.device_code).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.json);

    // Denial on A with B's listener cut in the middle: B forgets what it
    // held, and learns of the denial from the database.
    let auth = a.start_device("openid").await;
    for _ in 0..3 {
        poll_b(apps, &auth.device_code).await;
    }
    assert_eq!(reads().held, 1);
    assert!(cut_listeners(&db).await >= 2);
    wait_for("B forgetting its codes", || reads().held == 0).await;
    let page = browser.deny(&auth.user_code).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert_eq!(
        answer_within_interval(apps, &auth.device_code)
            .await
            .error(),
        "access_denied"
    );

    // Once B listens again it caches again, and hears decisions again.
    let auth = a.start_device("openid").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while reads().held == 0 {
        assert!(Instant::now() < deadline, "B never cached again");
        poll_b(apps, &auth.device_code).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let done = browser.approve(&auth.user_code).await;
    assert!(done.contains("is now linked"), "{}", done.body);
    let tokens = answer_within_interval(apps, &auth.device_code).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.json);

    // Expiry: no event; the entry ends at the code's deadline.
    let auth = a.start_device("openid").await;
    poll_b(apps, &auth.device_code).await;
    poll_b(apps, &auth.device_code).await;
    assert_eq!(reads().held, 1);
    for app in apps {
        app.clock.advance_secs(auth.expires_in);
    }
    assert_eq!(b.poll(&auth.device_code).await.error(), "expired_token");
    b.state.store.sweep_polls(b.clock.now());
    assert_eq!(reads().held, 0);

    // An app deleted on A (its pending codes go with it): B forgets them
    // and its credentials at once.
    a.add_client("gone-tv", "openid", None).await;
    let started = b
        .device_authorization(&[("client_id", "gone-tv"), ("scope", "openid")])
        .await;
    let code = started.json["device_code"].as_str().unwrap().to_string();
    let form = [
        ("grant_type", DEVICE_GRANT),
        ("client_id", "gone-tv"),
        ("device_code", code.as_str()),
    ];
    let gone_poll = || b.post_form("/oauth/token", &form);
    assert_eq!(gone_poll().await.error(), "authorization_pending");
    assert_eq!(reads().held, 1);
    assert!(a.state.store.delete_client("gone-tv").await.unwrap());
    wait_for("B forgetting the app's codes", || reads().held == 0).await;
    assert_eq!(gone_poll().await.error(), "invalid_client");

    let PollReads {
        from_memory,
        from_database,
        ..
    } = reads();
    eprintln!("B's polls in all: {from_memory} from memory, {from_database} from the database");
}

//! Two instances on one PostgreSQL database count every security limit
//! once between them: requests taking turns between the instances, and
//! bursts split across both, from several source addresses, get no more
//! through than one instance would let through (SECURITY.md, "Several
//! instances"). What reached the guarded work is counted where it
//! happens: code lookups, password hashes, stored device authorizations.

use std::net::IpAddr;
use std::sync::atomic::Ordering;

use linkd::clock::Clock;
use linkd::store::PurgeBefore;
use sqlx::Connection;

use crate::burst::{self, Answer, count, loopback};
use crate::helpers::*;

/// Two instances on one fresh PostgreSQL database, their clocks together.
async fn pair() -> (TestApp, TestApp) {
    let db = TestDatabase::postgres().await;
    let configure = || Options {
        configure: Box::new(|c: &mut linkd::Config| {
            c.code_failures_per_session = 6;
            c.code_failures_per_network = 100;
            c.device_authorizations_per_network = 5;
            c.device_authorizations_per_client = 14;
            c.sign_in_free_failures = 3;
            c.sign_in_failing_networks = 2;
        }),
        ..Default::default()
    };
    let a = spawn_on(db.clone(), configure()).await;
    let b = spawn_on(db, configure()).await;
    a.clock.advance_ms(b.clock.now_ms() - a.clock.now_ms());
    (a, b)
}

fn advance(apps: [&TestApp; 2], secs: i64) {
    for app in apps {
        app.clock.advance_secs(secs);
    }
}

fn lookups(apps: [&TestApp; 2]) -> u64 {
    apps.iter()
        .map(|app| app.state.limits.code_lookups.load(Ordering::Relaxed))
        .sum()
}

fn hashes(apps: [&TestApp; 2]) -> u64 {
    apps.iter()
        .map(|app| app.state.limits.hashing.started())
        .sum()
}

/// A burst whose requests go to A and B in turn, all released together.
async fn split_burst(apps: [&TestApp; 2], requests: Vec<(Option<IpAddr>, Vec<u8>)>) -> Vec<Answer> {
    let n = requests.len();
    let mut armed = Vec::with_capacity(n);
    for (i, (source, request)) in requests.into_iter().enumerate() {
        armed.push(burst::arm(apps[i % 2], source, request).await);
    }
    let mut rx = burst::fire(armed).await;
    burst::collect(&mut rx, n).await
}

/// The same requests one at a time, to A and B in turn.
async fn in_turns(apps: [&TestApp; 2], requests: Vec<(Option<IpAddr>, Vec<u8>)>) -> Vec<Answer> {
    let mut answers = Vec::new();
    for (i, (source, request)) in requests.into_iter().enumerate() {
        answers.extend(burst::burst(apps[i % 2], vec![(source, request)]).await);
    }
    answers
}

async fn limit_rows(app: &TestApp, name: &str) -> i64 {
    let mut conn = sqlx::PgConnection::connect(app.db.url()).await.unwrap();
    let rows = sqlx::query_scalar("SELECT count(*) FROM limit_counts WHERE name = $1")
        .bind(name)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    rows
}

async fn pending(app: &TestApp) -> i64 {
    app.state
        .store
        .count_pending(app.state.clock.now())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_count_each_limit_once() {
    let (a, b) = pair().await;
    let both = [&a, &b];

    // Code guessing (RFC 8628 §5.1): a session's six wrong codes, whichever
    // instance each lookup reaches.
    let turns = burst::session(&a, "turns@example.com", true).await;
    // Signed in once from 127.0.0.1 on A: a network the account is known
    // from, on every instance.
    burst::session(&a, "turns@example.com", false).await;
    let before = lookups(both);
    let requests = wrong_codes(10)
        .iter()
        .map(|code| {
            (
                loopback(2),
                burst::get(&format!("/link?code={code}"), &turns, ""),
            )
        })
        .collect();
    let answers = in_turns(both, requests).await;
    assert_eq!(count(&answers, 404), 6, "wrong codes looked up");
    assert_eq!(count(&answers, 429), 4);
    assert!(answers[6..].iter().all(|a| a.status == 429));
    assert_eq!(lookups(both) - before, 6);

    // A burst split across both instances from ten addresses: still six.
    let burst_session = burst::session(&b, "burst@example.com", true).await;
    let before = lookups(both);
    let requests = wrong_codes(60)
        .iter()
        .enumerate()
        .map(|(i, code)| {
            let path = format!("/link?code={code}");
            (
                loopback(10 + (i % 10) as u8),
                burst::get(&path, &burst_session, ""),
            )
        })
        .collect();
    let answers = split_burst(both, requests).await;
    assert_eq!(count(&answers, 404), 6);
    assert_eq!(count(&answers, 429), 54);
    assert_eq!(lookups(both) - before, 6);
    // The server-wide budget counted all twelve wrong codes in one row.
    assert_eq!(limit_rows(&a, "code_server").await, 1);

    // Device authorizations: five per network, fourteen for the app.
    let ask = || {
        burst::post(
            "/oauth/device_authorization",
            "",
            &[("client_id", "demo-tv")],
        )
    };
    let answers = in_turns(both, (0..8).map(|_| (loopback(20), ask())).collect()).await;
    assert_eq!(
        answers.iter().map(|a| a.status).collect::<Vec<_>>(),
        [200, 200, 200, 200, 200, 429, 429, 429]
    );
    let answers = split_burst(both, (0..30).map(|_| (loopback(21), ask())).collect()).await;
    assert_eq!(count(&answers, 200), 5);
    assert_eq!(count(&answers, 429), 25);
    // From eight more networks, two each: the app has four left of 14.
    let answers = split_burst(
        both,
        (30u8..38)
            .flat_map(|n| [n, n])
            .map(|n| (loopback(n), ask()))
            .collect(),
    )
    .await;
    assert_eq!(count(&answers, 200), 4);
    assert_eq!(count(&answers, 429), 12);
    assert_eq!(pending(&a).await, 14, "device authorizations stored");

    // Sign-in: three free failures per account and network, whichever
    // instance checks the password.
    let signin = burst::AccountForm::get(&a, "/signin").await;
    let form = |email: &str, password: &str| signin.request(email, password);
    let before = hashes(both);
    let answers = in_turns(
        both,
        (0..5)
            .map(|_| (loopback(40), form("turns@example.com", "wrong password")))
            .collect(),
    )
    .await;
    assert_eq!(
        answers.iter().map(|a| a.status).collect::<Vec<_>>(),
        [401, 401, 401, 429, 429]
    );
    let answers = split_burst(
        both,
        (0..12)
            .map(|_| (loopback(41), form("burst@example.com", "wrong password")))
            .collect(),
    )
    .await;
    assert_eq!(count(&answers, 401), 3);
    assert_eq!(count(&answers, 429), 9);
    // At most two networks failing on one account at once: of six new
    // networks bursting on both instances, two get in, once each here.
    let answers = split_burst(
        both,
        (50u8..56)
            .map(|n| (loopback(n), form("turns@example.com", "wrong password")))
            .collect(),
    )
    .await;
    // 127.0.0.40 still holds one of the two places.
    assert_eq!(count(&answers, 401), 1);
    assert_eq!(count(&answers, 429), 5);
    assert_eq!(hashes(both) - before, 3 + 3 + 1, "passwords checked");
    // What was typed as an email is counted under its hash, not kept.
    let typed = burst::burst(&a, vec![(loopback(42), form("my secret passphrase", "x"))]).await;
    assert_eq!(typed[0].status, 401);
    assert!(!a.db.holds("my secret passphrase").await);
    // The owner on a network that signed in before is not held by the cap.
    let owner = burst::burst(
        &b,
        vec![(None, form("turns@example.com", "correct horse battery"))],
    )
    .await;
    assert_eq!(owner[0].status, 303, "{}", owner[0].body);

    // Windows end for every instance at once: after ten minutes the first
    // session may look up again, on either instance.
    advance(both, 601);
    let code = &wrong_codes(1)[0];
    for app in both {
        let answer = burst::burst(
            app,
            vec![(
                loopback(2),
                burst::get(&format!("/link?code={code}"), &turns, ""),
            )],
        )
        .await;
        assert_eq!(answer[0].status, 404);
    }
    // An hour on, the device authorization windows are over: the purge job
    // deletes their rows, and the network may ask again.
    advance(both, 3600);
    assert!(limit_rows(&a, "device_authorization_network").await > 0);
    let before = PurgeBefore {
        now: a.state.clock.now(),
        codes: 0,
        refresh_tokens: 0,
        tombstones: 0,
    };
    while a.state.store.purge(&before, 100).await.unwrap() > 0 {}
    assert_eq!(limit_rows(&a, "device_authorization_network").await, 0);
    assert_eq!(limit_rows(&a, "code_session").await, 0);
    let answers = in_turns(both, (0..2).map(|_| (loopback(20), ask())).collect()).await;
    assert_eq!(count(&answers, 200), 2);

    // The counters fail while the rest of the database answers: a limit
    // that cannot be checked refuses, as an outage does, and lets nothing
    // through (no lookup, no password check, no authorization).
    let mut conn = sqlx::PgConnection::connect(a.db.url()).await.unwrap();
    sqlx::query("ALTER TABLE limit_counts RENAME TO limit_counts_away")
        .execute(&mut conn)
        .await
        .unwrap();
    let before = (lookups(both), hashes(both), pending(&a).await);
    let answers = split_burst(
        both,
        vec![
            (
                loopback(60),
                burst::get(&format!("/link?code={code}"), &turns, ""),
            ),
            (
                loopback(60),
                burst::get(&format!("/link?code={code}"), &turns, ""),
            ),
            (
                loopback(61),
                form("turns@example.com", "correct horse battery"),
            ),
            (
                loopback(61),
                form("turns@example.com", "correct horse battery"),
            ),
            (loopback(62), ask()),
            (loopback(62), ask()),
        ],
    )
    .await;
    for answer in &answers[..4] {
        assert_eq!(answer.status, 503, "{}", answer.body);
        assert!(
            answer.body.contains("Temporarily unavailable"),
            "{}",
            answer.body
        );
        assert!(!answer.sets_cookie("linkd_session"));
    }
    for answer in &answers[4..] {
        assert_eq!(answer.status, 503, "{}", answer.body);
        assert!(
            answer.body.contains("temporarily_unavailable"),
            "{}",
            answer.body
        );
    }
    assert_eq!(before, (lookups(both), hashes(both), pending(&a).await));
    sqlx::query("ALTER TABLE limit_counts_away RENAME TO limit_counts")
        .execute(&mut conn)
        .await
        .unwrap();
    let _ = conn.close().await;
    let answers = split_burst(both, vec![(loopback(62), ask()), (loopback(62), ask())]).await;
    assert_eq!(count(&answers, 200), 2);
}

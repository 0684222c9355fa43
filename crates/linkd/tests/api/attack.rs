//! Limits under attack: bursts sent truly in parallel (see `burst.rs`),
//! from one or many source addresses, counting how many attempts reached
//! the work each limit guards (code lookups, password hashes, stored
//! records) against the configured numbers.

use std::sync::atomic::Ordering;

use reqwest::StatusCode;

use crate::burst::{self, Answer, count, loopback};
use crate::helpers::*;

fn lookups(app: &TestApp) -> u64 {
    app.state.limits.code_lookups.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_wrong_codes_from_one_session_gets_the_session_limit_of_lookups() {
    let app = spawn_app_with(with(|c| {
        c.code_failures_per_session = 5;
        c.code_failures_per_network = 20;
    }))
    .await;
    let cookie = burst::session(&app, "guesser@example.com", true).await;
    let before = lookups(&app);
    let requests = wrong_codes(300)
        .iter()
        .map(|code| (None, burst::get(&format!("/link?code={code}"), &cookie, "")))
        .collect();
    let answers = burst::burst(&app, requests).await;
    assert_eq!(count(&answers, 404), 5, "wrong codes looked up");
    assert_eq!(count(&answers, 429), 295);
    assert_eq!(lookups(&app) - before, 5);
    let paused = answers.iter().find(|a| a.status == 429).unwrap();
    assert!(
        paused.body.contains("Too many wrong codes"),
        "{}",
        paused.body
    );
    assert!(paused.header("retry-after").is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_wrong_codes_from_one_network_gets_the_network_limit_of_lookups() {
    let app = spawn_app_with(with(|c| {
        c.code_failures_per_session = 100;
        c.code_failures_per_network = 20;
        c.sign_ups_per_network = 0;
    }))
    .await;
    let mut sessions = Vec::new();
    for i in 0..10 {
        sessions.push(burst::session(&app, &format!("net{i}@example.com"), true).await);
    }
    let before = lookups(&app);
    let requests = wrong_codes(300)
        .iter()
        .enumerate()
        .map(|(i, code)| {
            let cookie = &sessions[i % sessions.len()];
            (None, burst::get(&format!("/link?code={code}"), cookie, ""))
        })
        .collect();
    let answers = burst::burst(&app, requests).await;
    assert_eq!(count(&answers, 404), 20);
    assert_eq!(count(&answers, 429), 280);
    assert_eq!(lookups(&app) - before, 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mixed_burst_of_wrong_and_live_codes_gets_no_more_wrong_lookups_than_the_limit() {
    let app = spawn_app_with(with(|c| {
        c.code_failures_per_session = 5;
        c.device_authorizations_per_network = 0;
    }))
    .await;
    let mut live = Vec::new();
    for _ in 0..55 {
        live.push(app.start_device("openid").await.user_code);
    }
    let cookie = burst::session(&app, "mixed@example.com", true).await;
    let wrong = wrong_codes(55);
    let mut requests = Vec::new();
    for (w, l) in wrong.iter().zip(&live) {
        requests.push((None, burst::get(&format!("/link?code={w}"), &cookie, "")));
        requests.push((None, burst::get(&format!("/link?code={l}"), &cookie, "")));
    }
    let answers = burst::burst(&app, requests).await;
    let wrong_answers: Vec<&Answer> = answers.iter().step_by(2).collect();
    let looked_up_wrong = wrong_answers.iter().filter(|a| a.status == 404).count();
    assert!(
        looked_up_wrong <= 5,
        "{looked_up_wrong} wrong codes were looked up"
    );
    assert!(
        wrong_answers
            .iter()
            .all(|a| a.status == 404 || a.status == 429),
        "wrong codes answer 404 or 429"
    );
    // Live codes give their slot back; while they are being looked up they
    // hold it, so a wrong code of the burst may find all five taken. A
    // live code in the address (not typed on the page) is shown by way of
    // number matching: 303 to its matching page.
    for a in answers.iter().skip(1).step_by(2) {
        assert!(a.status == 303 || a.status == 429, "{}", a.status);
    }
    // Whatever the burst's interleaving, the session has exactly what the
    // burst left of its five: wrong codes one at a time are looked up until
    // the five are spent, then the session is paused, for live codes too.
    let mut after = 0;
    for code in wrong_codes(6) {
        let answer = one(&app, &format!("/link?code={code}"), &cookie).await;
        if answer.status == 429 {
            break;
        }
        assert_eq!(answer.status, 404);
        after += 1;
    }
    assert_eq!(looked_up_wrong + after, 5);
    let next = one(&app, &format!("/link?code={}", live[0]), &cookie).await;
    assert_eq!(next.status, 429);
}

async fn one(app: &TestApp, path: &str, cookie: &str) -> Answer {
    burst::burst(app, vec![(None, burst::get(path, cookie, ""))])
        .await
        .remove(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn during_an_attack_from_many_networks_a_person_on_their_own_network_gets_through() {
    let app = spawn_app_with(with(|c| {
        c.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
        c.code_failures_per_session = 5;
        c.code_failures_per_network = 5;
        c.code_failures_per_minute = 20;
        c.sign_ups_per_network = 0;
    }))
    .await;
    // The person signed in before the attack, at home.
    let person = app.signed_in_browser("person@example.com").await;
    // 39 attackers, each on its own network with its own session.
    let attacker = burst::session(&app, "attacker@example.com", true).await;
    let mut sessions = vec![attacker];
    for _ in 1..39 {
        sessions.push(burst::session(&app, "attacker@example.com", false).await);
    }
    let before = lookups(&app);
    let mut requests = Vec::new();
    for (n, cookie) in (2u8..=40).zip(&sessions) {
        for code in wrong_codes(8) {
            requests.push((
                loopback(n),
                burst::get(&format!("/link?code={code}"), cookie, ""),
            ));
        }
    }
    let answers = burst::burst(&app, requests).await;
    // The server-wide budget let exactly 20 wrong codes be answered; the
    // rest of the attack got the pause.
    assert_eq!(count(&answers, 404), 20);
    assert_eq!(count(&answers, 429), 39 * 8 - 20);
    // Each network got at most its own 5 lookups.
    assert!(lookups(&app) - before <= 39 * 5);

    // The person's TV asks for a code from home; the person types it on
    // their phone on the same home network, and gets through.
    let tv = app.start_device_from("198.51.100.7").await;
    let confirm = person.type_code_from(&tv.user_code, "198.51.100.7").await;
    assert_eq!(confirm.status, StatusCode::OK, "{}", confirm.body);
    let done = person
        .client
        .post(app.url("/link/decide"))
        .header("x-forwarded-for", "198.51.100.7")
        .form(&[
            ("csrf", confirm.csrf().as_str()),
            ("code", tv.user_code.as_str()),
            ("decision", "approve"),
        ])
        .send()
        .await
        .unwrap();
    let done = page(done).await;
    assert!(done.contains("is now linked"), "{}", done.body);
    assert_eq!(app.poll(&tv.device_code).await.status, StatusCode::OK);

    // While the budget is spent, a code from another network is not shown
    // (that is what an attacker would be guessing), to anyone.
    let other = app.start_device_from("203.0.113.9").await;
    let elsewhere = person
        .type_code_from(&other.user_code, "198.51.100.7")
        .await;
    assert_eq!(elsewhere.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        elsewhere.contains("If your device is on the same Wi-Fi or network"),
        "{}",
        elsewhere.body
    );
    assert_eq!(elsewhere.headers["retry-after"], "60");
    // A minute later the budget is back for everyone.
    app.clock.advance_secs(60);
    let later = app.signed_in_browser("later@example.com").await;
    let fresh = app.start_device_from("203.0.113.9").await;
    assert_eq!(
        later
            .type_code_from(&fresh.user_code, "192.0.2.44")
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_wrong_passwords_with_the_right_one_last_gets_no_session() {
    let app = spawn_app_with(with(|c| c.sign_in_free_failures = 3)).await;
    burst::session(&app, "owner@example.com", true).await;
    let signin = burst::AccountForm::get(&app, "/signin").await;
    let form = |password: &str| signin.request("owner@example.com", password);
    let hashes = app.state.limits.hashing.started();
    let wrong = burst::arm_all(
        &app,
        (0..199).map(|_| (None, form("wrong password"))).collect(),
    )
    .await;
    let right = burst::arm(&app, None, form("correct horse battery")).await;
    let mut rx = burst::fire(wrong).await;
    // The right password goes out while the wrong ones are in flight,
    // once the server has refused one of them.
    let mut answers = Vec::new();
    loop {
        let (_, answer) = rx.recv().await.unwrap();
        let refused = answer.status == 429;
        answers.push(answer);
        if refused {
            break;
        }
    }
    let mut right_rx = burst::fire(vec![right]).await;
    answers.extend(burst::collect(&mut rx, 199 - answers.len()).await);
    let right = burst::collect(&mut right_rx, 1).await.remove(0);
    assert_eq!(count(&answers, 401), 3, "wrong passwords checked");
    assert_eq!(count(&answers, 429), 196);
    assert_eq!(right.status, 429, "{}", right.body);
    assert!(right.body.contains("Too many attempts"), "{}", right.body);
    assert!(
        answers
            .iter()
            .chain([&right])
            .all(|a| !a.sets_cookie("linkd_session"))
    );
    assert_eq!(app.state.limits.hashing.started() - hashes, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_sign_ins_for_unknown_emails_hashes_at_most_n_at_once() {
    let app = spawn_app_with(with(|c| {
        c.password_hashes_at_once = 2;
        c.password_hash_wait_ms = 2000;
        c.sign_in_free_failures = 1000;
    }))
    .await;
    let form = burst::AccountForm::get(&app, "/signin").await;
    let hashes = app.state.limits.hashing.started();
    let requests = (0..60)
        .map(|i| {
            (
                None,
                form.request(&format!("nobody{i}@example.com"), "any password"),
            )
        })
        .collect();
    let answers = burst::burst(&app, requests).await;
    let checked = count(&answers, 401);
    // Unknown emails cost a hash like known ones (no timing oracle), in
    // the same pool: every 401 was hashed, never more than two at once.
    assert_eq!(checked + count(&answers, 429), 60);
    assert!(checked > 0);
    assert_eq!(app.state.limits.hashing.started() - hashes, checked as u64);
    assert_eq!(app.state.limits.hashing.most_at_once(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_signs_in_from_another_network_after_someone_elses_failures() {
    let app = spawn_app_with(with(|c| {
        c.sign_in_free_failures = 3;
        c.sign_in_failing_networks = 5;
    }))
    .await;
    burst::session(&app, "owner@example.com", true).await;
    // The owner signed in from home (127.0.0.1) before.
    burst::session(&app, "owner@example.com", false).await;
    let signin = burst::AccountForm::get(&app, "/signin").await;
    let form = |password: &str| signin.request("owner@example.com", password);
    // Someone on another network gets four wrong passwords in.
    let first = burst::burst(
        &app,
        (0..4)
            .map(|_| (loopback(2), form("wrong password")))
            .collect(),
    )
    .await;
    assert_eq!(count(&first, 401), 3);
    assert_eq!(count(&first, 429), 1);
    // The owner, travelling (a network the account has not seen), is not
    // held by that.
    let owner = burst::burst(&app, vec![(loopback(50), form("correct horse battery"))]).await;
    assert_eq!(owner[0].status, 303, "{}", owner[0].body);
    assert!(owner[0].sets_cookie("linkd_session"));

    // Now an attack from 39 networks: only 5 networks may be failing on
    // the account at once, each with its 3 free tries.
    let hashes = app.state.limits.hashing.started();
    let attack = burst::burst(
        &app,
        (2u8..=40)
            .flat_map(|n| (0..4).map(move |_| n))
            .map(|n| (loopback(n), form("wrong password")))
            .collect(),
    )
    .await;
    // 127.0.0.2 is still failing from before (3 failures, then waits) and
    // holds one of the 5 places: 4 more networks get their 3 tries.
    assert_eq!(count(&attack, 401), 4 * 3);
    assert_eq!(count(&attack, 401) + count(&attack, 429), 39 * 4);
    assert_eq!(
        app.state.limits.hashing.started() - hashes,
        count(&attack, 401) as u64
    );
    // The owner at home, and on the network they signed in from today,
    // still gets in; a network new to the account waits out the attack.
    for n in [1, 50] {
        let home = burst::burst(&app, vec![(loopback(n), form("correct horse battery"))]).await;
        assert_eq!(home[0].status, 303, "127.0.0.{n}: {}", home[0].body);
    }
    let new = burst::burst(&app, vec![(loopback(60), form("correct horse battery"))]).await;
    assert_eq!(new[0].status, 429);
    app.clock.advance_secs(900);
    let new = burst::burst(&app, vec![(loopback(60), form("correct horse battery"))]).await;
    assert_eq!(new[0].status, 303);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_sign_ups_from_one_network_creates_the_limit_of_accounts() {
    let app = spawn_app_with(with(|c| c.sign_ups_per_network = 5)).await;
    let form = burst::AccountForm::get(&app, "/signup").await;
    let hashes = app.state.limits.hashing.started();
    let requests = (0..40)
        .map(|i| {
            (
                None,
                form.request(&format!("new{i}@example.com"), "long enough password"),
            )
        })
        .collect();
    let answers = burst::burst(&app, requests).await;
    assert_eq!(count(&answers, 303), 5);
    assert_eq!(count(&answers, 429), 35);
    assert_eq!(app.state.limits.hashing.started() - hashes, 5);
    assert_eq!(app.state.store.list_accounts().await.unwrap().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_device_authorizations_gets_the_network_and_app_limits() {
    let app = spawn_app_with(with(|c| {
        c.device_authorizations_per_network = 10;
        c.device_authorizations_per_client = 25;
    }))
    .await;
    let ask = || {
        burst::post(
            "/oauth/device_authorization",
            "",
            &[("client_id", "demo-tv")],
        )
    };
    // One network.
    let answers = burst::burst(&app, (0..50).map(|_| (loopback(2), ask())).collect()).await;
    assert_eq!(count(&answers, 200), 10);
    assert_eq!(count(&answers, 429), 40);
    // The app, from many networks: 15 more fit under its 25.
    let answers = burst::burst(
        &app,
        (3u8..=22)
            .flat_map(|n| [n, n])
            .map(|n| (loopback(n), ask()))
            .collect(),
    )
    .await;
    assert_eq!(count(&answers, 200), 15);
    assert_eq!(count(&answers, 429), 25);
    assert_eq!(
        app.state
            .store
            .count_pending(app.state.clock.now())
            .await
            .unwrap(),
        25
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_token_polls_gets_the_network_limit() {
    let app = spawn_app_with(with(|c| c.token_polls_per_network = 10)).await;
    let auth = app.start_device("openid").await;
    let poll = || {
        burst::post(
            "/oauth/token",
            "",
            &[
                ("grant_type", DEVICE_GRANT),
                ("client_id", "demo-tv"),
                ("device_code", auth.device_code.as_str()),
            ],
        )
    };
    let answers = burst::burst(&app, (0..60).map(|_| (loopback(2), poll())).collect()).await;
    let slow: Vec<&Answer> = answers
        .iter()
        .filter(|a| a.body.contains("\"slow_down\"") && a.header("retry-after").is_some())
        .collect();
    assert_eq!(slow.len(), 50, "refused by the network ceiling");
}

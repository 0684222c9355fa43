//! "I didn't start this" (issue 22): a report denies the code, shows in
//! the person's activity and in metrics and reaches the operator's
//! webhook; reports from enough distinct accounts block the requesting
//! network (its pending codes denied, new ones refused, others untouched)
//! until the block ends, across a restart, and a burst blocks it once.
//!
//! Devices ask from 127.0.N.1 (the network 127.0.N.0/24) and people report
//! from 127.0.0.1, another network as far as linkd can tell.

use std::net::IpAddr;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use linkd::clock::Clock;

use crate::burst::{self, count};
use crate::helpers::*;
use crate::telemetry::{metrics, sample};
use crate::webhooks::{Received, Receiver, SECRET_A};

/// The app with every webhook event sent to `receiver`, and a block
/// after `threshold` accounts' reports.
fn reporting(receiver: &Receiver, threshold: u32) -> Options {
    let url = receiver.url();
    Options {
        configure: Box::new(move |c| {
            c.network_block_reports = threshold;
            c.webhooks = vec![linkd::webhooks::WebhookEndpoint {
                url,
                secret: SECRET_A.into(),
                events: linkd::webhooks::EventType::ALL.to_vec(),
            }];
        }),
        ..Options::default()
    }
}

/// A device on the network 127.0.`net`.0/24 asks for a code (from
/// 127.0.`net`.`host`): the answer.
async fn ask_from(app: &TestApp, net: u8, host: u8) -> Reply {
    let http = reqwest::Client::builder()
        .local_address(IpAddr::from([127, 0, net, host]))
        .build()
        .unwrap();
    post_form(
        &http,
        &app.url("/oauth/device_authorization"),
        &[("client_id", "demo-tv"), ("scope", "openid")],
    )
    .await
}

/// A code from a device on 127.0.`net`.0/24.
async fn device_on(app: &TestApp, net: u8) -> DeviceAuth {
    let reply = ask_from(app, net, 1).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    serde_json::from_value(reply.json).unwrap()
}

fn of_type(received: &[Received], kind: &str) -> Vec<Value> {
    received
        .iter()
        .filter(|r| r.event["type"] == kind)
        .map(|r| r.event.clone())
        .collect()
}

/// Waits until the outbox has sent everything, so that a count of what
/// the receiver got is final.
async fn outbox_drained(app: &TestApp) {
    for _ in 0..200 {
        if app.state.store.list_outbox().await.unwrap().is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the outbox kept {:?}", app.state.store.list_outbox().await);
}

#[tokio::test]
async fn a_report_denies_the_code_and_is_recorded_counted_and_sent() {
    let receiver = Receiver::start(SECRET_A).await;
    let app = spawn_app_with(reporting(&receiver, 3)).await;
    let before = metrics(&app).await;
    let auth = device_on(&app, 7).await;
    let browser = app.signed_in_browser("report@example.com").await;

    // The button sits beside Approve, in the same form.
    let confirm = browser.type_code(&auth.user_code).await;
    assert!(confirm.contains("value=\"approve\" class=\"primary\""));
    assert!(
        confirm.contains("value=\"report\" class=\"report\">I didn't start this</button>"),
        "{}",
        confirm.body
    );
    let done = browser
        .post(
            "/link/decide",
            &[
                ("csrf", confirm.csrf().as_str()),
                ("code", auth.user_code.as_str()),
                ("decision", "report"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::OK);
    assert!(
        done.contains("Reported: Demo TV was not linked"),
        "{}",
        done.body
    );
    assert!(done.contains("don't follow their instructions"));
    assert_eq!(app.poll(&auth.device_code).await.error(), "access_denied");

    let account = browser.get("/account").await;
    assert!(
        account.contains("Reported Demo TV: you didn't start it (asked from 127.0.7.1)"),
        "{}",
        account.body
    );

    let got = receiver.wait_for(1).await;
    let reported = &of_type(&got, "link.reported")[0];
    assert_eq!(reported["data"]["client_id"], "demo-tv");
    assert_eq!(reported["data"]["app_name"], "Demo TV");
    assert_eq!(reported["data"]["via"], "confirmation");
    assert_eq!(reported["data"]["requesting_ip"], "127.0.7.1");
    assert_eq!(reported["data"]["requesting_network"], "127.0.7.0/24");
    assert_eq!(reported["data"]["reporting_ip"], "127.0.0.1");
    assert_eq!(reported["data"]["reporting_network"], "127.0.0.0/24");
    assert!(reported["data"]["account_id"].as_str().is_some());

    // On the number-matching page of a prefilled link it is there too.
    let second = device_on(&app, 7).await;
    let first = browser.get(&second.verification_uri_complete).await;
    let matching = browser.get(first.location()).await;
    assert!(matching.contains("value=\"report\""), "{}", matching.body);
    let done = browser
        .post(
            "/link/pick",
            &[
                ("csrf", matching.csrf().as_str()),
                ("ref", hidden_field(&matching.body, "ref").unwrap().as_str()),
                ("decision", "report"),
            ],
        )
        .await;
    assert!(
        done.contains("Reported: Demo TV was not linked"),
        "{}",
        done.body
    );
    assert_eq!(app.poll(&second.device_code).await.error(), "access_denied");
    receiver.wait_for(2).await;

    let after = metrics(&app).await;
    let series = "linkd_link_reports_total{via=\"confirmation\",counted=\"true\"}";
    let grew = sample(&after, series) - sample(&before, series);
    assert!(grew >= 2.0, "{series} grew by {grew}:\n{after}");
}

/// `count` people each report one code from 127.0.`net`.0/24.
async fn reports_on(app: &TestApp, net: u8, people: std::ops::Range<usize>) {
    for n in people {
        let auth = device_on(app, net).await;
        let browser = app
            .signed_in_browser(&format!("reporter{n}@example.com"))
            .await;
        let done = browser.decide(&auth.user_code, "report").await;
        assert!(done.contains("Reported: Demo TV"), "{}", done.body);
    }
}

#[tokio::test]
async fn reports_from_three_accounts_block_the_network_until_the_block_ends() {
    let receiver = Receiver::start(SECRET_A).await;
    let app = spawn_app_with(reporting(&receiver, 3)).await;
    let waiting = device_on(&app, 8).await;
    let elsewhere = device_on(&app, 9).await;
    reports_on(&app, 8, 0..2).await;
    // Two accounts are not enough.
    assert_eq!(ask_from(&app, 8, 1).await.status, StatusCode::OK);
    assert_eq!(
        app.poll(&waiting.device_code).await.error(),
        "authorization_pending"
    );

    reports_on(&app, 8, 2..3).await;
    // The network's pending code is refused; its device hears it.
    assert_eq!(
        app.poll(&waiting.device_code).await.error(),
        "access_denied"
    );
    let person = app.signed_in_browser("victim@example.com").await;
    let page = person.type_code(&waiting.user_code).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
    assert!(
        page.contains("Codes from this network are stopped for now"),
        "{}",
        page.body
    );
    // New codes from anywhere in it are refused until the block ends.
    for host in [1, 200] {
        let refused = ask_from(&app, 8, host).await;
        assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.error(), "slow_down");
        assert!(
            refused.json["error_description"]
                .as_str()
                .unwrap()
                .contains("reported codes from this network"),
            "{}",
            refused.json
        );
    }
    // Other networks are untouched.
    assert_eq!(
        app.poll(&elsewhere.device_code).await.error(),
        "authorization_pending"
    );
    assert_eq!(ask_from(&app, 9, 1).await.status, StatusCode::OK);
    assert_eq!(ask_from(&app, 0, 1).await.status, StatusCode::OK);
    let done = person.approve(&elsewhere.user_code).await;
    assert!(done.contains("is now linked"), "{}", done.body);

    outbox_drained(&app).await;
    let got = receiver.received();
    assert_eq!(of_type(&got, "link.reported").len(), 3);
    let blocked = of_type(&got, "network.blocked");
    assert_eq!(blocked.len(), 1, "{got:?}");
    assert_eq!(blocked[0]["data"]["network"], "127.0.8.0/24");
    assert_eq!(blocked[0]["data"]["reports"], 3);
    let now = app.clock.now();
    assert_eq!(blocked[0]["data"]["blocked_until"], now + 3600);

    // An hour later the block is over, and the reports behind it start
    // no second one.
    app.clock.advance_secs(3600);
    assert_eq!(ask_from(&app, 8, 1).await.status, StatusCode::OK);
    reports_on(&app, 8, 3..4).await;
    assert_eq!(ask_from(&app, 8, 1).await.status, StatusCode::OK);
}

#[tokio::test]
async fn one_account_cannot_block_a_network_or_many() {
    let receiver = Receiver::start(SECRET_A).await;
    let app = spawn_app_with(reporting(&receiver, 2)).await;
    let browser = app.signed_in_browser("eager@example.com").await;
    // One account reporting many codes of one network counts once.
    for _ in 0..4 {
        let auth = device_on(&app, 10).await;
        browser.decide(&auth.user_code, "report").await;
    }
    assert_eq!(ask_from(&app, 10, 1).await.status, StatusCode::OK);
    // Its reports count for three networks an hour (10 above, 11 and 12);
    // its report of a fourth counts for nothing.
    for net in [11, 12, 13] {
        let auth = device_on(&app, net).await;
        browser.decide(&auth.user_code, "report").await;
    }
    reports_on(&app, 13, 0..1).await;
    assert_eq!(
        ask_from(&app, 13, 1).await.status,
        StatusCode::OK,
        "the eager account's fourth network did not count"
    );
    // Its third did: one more account blocks it.
    reports_on(&app, 12, 5..6).await;
    assert_eq!(
        ask_from(&app, 12, 1).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // A report from the device's own network does not count either.
    let near = Browser {
        base: app.base.clone(),
        client: reqwest::Client::builder()
            .cookie_store(true)
            .local_address(IpAddr::from([127, 0, 13, 9]))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    };
    near.sign_up("neighbour@example.com", "correct horse battery", "/")
        .await;
    let auth = device_on(&app, 13).await;
    let done = near.decide(&auth.user_code, "report").await;
    assert!(done.contains("Reported: Demo TV"), "{}", done.body);
    assert_eq!(app.poll(&auth.device_code).await.error(), "access_denied");
    assert_eq!(ask_from(&app, 13, 1).await.status, StatusCode::OK);
    // A second account from elsewhere makes two: blocked.
    reports_on(&app, 13, 1..2).await;
    assert_eq!(
        ask_from(&app, 13, 1).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    outbox_drained(&app).await;
    let mut blocked: Vec<String> = of_type(&receiver.received(), "network.blocked")
        .iter()
        .map(|b| b["data"]["network"].as_str().unwrap().to_string())
        .collect();
    blocked.sort();
    assert_eq!(blocked, ["127.0.12.0/24", "127.0.13.0/24"]);
}

#[tokio::test]
async fn with_blocking_off_reports_only_deny_their_codes() {
    let receiver = Receiver::start(SECRET_A).await;
    let app = spawn_app_with(reporting(&receiver, 0)).await;
    reports_on(&app, 14, 0..4).await;
    assert_eq!(ask_from(&app, 14, 1).await.status, StatusCode::OK);
    outbox_drained(&app).await;
    let got = receiver.received();
    assert_eq!(of_type(&got, "link.reported").len(), 4);
    assert!(of_type(&got, "network.blocked").is_empty());
}

#[tokio::test]
async fn a_burst_of_reports_blocks_the_network_once() {
    let receiver = Receiver::start(SECRET_A).await;
    let app = spawn_app_with(reporting(&receiver, 3)).await;
    let waiting = device_on(&app, 15).await;
    let mut requests = Vec::new();
    for n in 0..8 {
        let auth = device_on(&app, 15).await;
        let cookie = burst::session(&app, &format!("burst{n}@example.com"), true).await;
        let get = |path: String| {
            let request = app.http.get(app.url(&path)).header("cookie", &cookie);
            async move { request.send().await.unwrap().text().await.unwrap() }
        };
        let form = get("/link".into()).await;
        let typed = hidden_field(&form, "typed").unwrap();
        let confirm = get(format!(
            "/link?code={}&typed={}",
            auth.user_code,
            urlencode(&typed)
        ))
        .await;
        let csrf = hidden_field(&confirm, "csrf").unwrap();
        requests.push((
            None,
            burst::post(
                "/link/decide",
                &cookie,
                &[
                    ("csrf", csrf.as_str()),
                    ("code", auth.user_code.as_str()),
                    ("decision", "report"),
                ],
            ),
        ));
    }
    let answers = burst::burst(&app, requests).await;
    // Three reports count, the third blocks, and the block denies the
    // codes the other five were reporting: their pages say why.
    assert_eq!(count(&answers, 200), 3, "{answers:?}");
    assert_eq!(count(&answers, 403), 5, "{answers:?}");
    for answer in &answers {
        assert!(
            answer.body.contains("Reported: Demo TV")
                || answer
                    .body
                    .contains("Codes from this network are stopped for now"),
            "{answer:?}"
        );
    }
    assert_eq!(
        app.poll(&waiting.device_code).await.error(),
        "access_denied"
    );
    assert_eq!(
        ask_from(&app, 15, 1).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    receiver.wait_for(4).await;
    outbox_drained(&app).await;
    let got = receiver.received();
    assert_eq!(of_type(&got, "link.reported").len(), 3);
    let blocked = of_type(&got, "network.blocked");
    assert_eq!(blocked.len(), 1, "{got:?}");
    assert_eq!(blocked[0]["data"]["reports"], 3);
}

#[tokio::test]
async fn a_block_holds_across_a_restart() {
    let receiver = Receiver::start(SECRET_A).await;
    let db = TestDatabase::new().await;
    let first = spawn_on(db.clone(), reporting(&receiver, 3)).await;
    reports_on(&first, 16, 0..3).await;
    assert_eq!(
        ask_from(&first, 16, 1).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    first.stop().await;

    let second = spawn_on(db, reporting(&receiver, 3)).await;
    let refused = ask_from(&second, 16, 1).await;
    assert_eq!(refused.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(ask_from(&second, 17, 1).await.status, StatusCode::OK);
}

#[tokio::test]
async fn this_wasnt_me_in_the_mail_tells_the_operator_too() {
    let smtp = crate::mail::SmtpServer::start().await;
    let receiver = Receiver::start(SECRET_A).await;
    let (mail, hooks) = (crate::mail::with_smtp(&smtp), reporting(&receiver, 3));
    let app = spawn_app_with(Options {
        configure: Box::new(move |c| {
            (mail.configure)(c);
            (hooks.configure)(c);
        }),
        ..Options::default()
    })
    .await;
    let before = metrics(&app).await;
    let (browser, _tokens) = app.link_device("mailed@example.com", "openid").await;
    let got = smtp.wait_for_about(1, "New device linked").await;
    let notice = crate::link_notice::mail_to(&got, "mailed@example.com", "New device linked");
    let link = crate::link_notice::not_me_link(notice, &app.base);
    let done = crate::link_notice::report(&browser, &link).await;
    assert_eq!(done.status, StatusCode::OK, "{}", done.body);
    outbox_drained(&app).await;
    let got = receiver.received();
    let reported = of_type(&got, "link.reported");
    assert_eq!(reported.len(), 1, "{got:?}");
    assert_eq!(reported[0]["data"]["via"], "mail");
    assert_eq!(reported[0]["data"]["client_id"], "demo-tv");
    assert_eq!(reported[0]["data"]["requesting_ip"], "127.0.0.1");
    assert_eq!(reported[0]["data"]["requesting_network"], "127.0.0.0/24");
    let after = metrics(&app).await;
    let series = "linkd_link_reports_total{via=\"mail\",counted=\"false\"}";
    assert!(sample(&after, series) - sample(&before, series) >= 1.0);
}

#[tokio::test]
async fn a_code_made_before_another_instance_heard_of_the_block_is_refused() {
    let receiver = Receiver::start(SECRET_A).await;
    let db = TestDatabase::new().await;
    let one = spawn_on(db.clone(), reporting(&receiver, 3)).await;
    let two = spawn_on(db, reporting(&receiver, 3)).await;
    reports_on(&one, 18, 0..3).await;
    // A code the second instance made on the network while it had not
    // re-read the blocks yet (it re-reads every few seconds).
    let client = two
        .state
        .store
        .get_client("demo-tv")
        .await
        .unwrap()
        .unwrap();
    let state = &two.state;
    let late = linkd::device_flow::start(
        &state.ctx(),
        &state.inserter,
        &client,
        linkd::device_flow::DeviceRequest {
            scope: Some("openid"),
            device_name: None,
            user_agent: None,
            ip: "127.0.18.1",
        },
    )
    .await
    .unwrap();
    // Nobody can approve it, on either instance.
    for (n, app) in [&one, &two].into_iter().enumerate() {
        let person = app.signed_in_browser(&format!("late{n}@example.com")).await;
        let page = person.type_code(&late.user_code.display()).await;
        assert_eq!(page.status, StatusCode::FORBIDDEN, "{}", page.body);
        assert!(page.contains("Codes from this network are stopped for now"));
    }
}

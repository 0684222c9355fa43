//! Webhooks to a receiver this test runs (a real HTTP server in the test
//! process that checks every signature): events written with their cause,
//! filtered per endpoint, retried while the receiver is down, delivered
//! once across a linkd restart and two instances.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use hmac::{Hmac, Mac};
use reqwest::StatusCode as Status;
use serde_json::Value;
use sha2::Sha256;
use tokio::process::Command;

use crate::helpers::*;

pub const SECRET_A: &str = "whsec-a-0123456789abcdef";
const SECRET_B: &str = "whsec-b-fedcba9876543210";

/// One request the receiver took.
#[derive(Debug, Clone)]
pub struct Received {
    pub event: Value,
    pub id_header: String,
    pub type_header: String,
    pub timestamp: i64,
}

/// A webhook receiver as an operator would write one: it checks the
/// signature over `<t>.<body>` with its secret and answers 401 when it
/// does not match.
pub struct Receiver {
    port: u16,
    secret: &'static str,
    got: Arc<Mutex<Vec<Received>>>,
    refused: Arc<Mutex<usize>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Receiver {
    pub async fn start(secret: &'static str) -> Receiver {
        let mut r = Receiver {
            port: 0,
            secret,
            got: Arc::default(),
            refused: Arc::default(),
            server: None,
        };
        r.run().await;
        r
    }

    async fn run(&mut self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind the receiver");
        self.port = listener.local_addr().unwrap().port();
        let (secret, got, refused) = (self.secret, self.got.clone(), self.refused.clone());
        let app = axum::Router::new().route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| async move {
                match verify(secret, &headers, &body) {
                    Some(received) => {
                        got.lock().unwrap().push(received);
                        StatusCode::NO_CONTENT
                    }
                    None => {
                        *refused.lock().unwrap() += 1;
                        StatusCode::UNAUTHORIZED
                    }
                }
            }),
        );
        self.server = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
    }

    /// Listens again on the same port, keeping what it received.
    pub async fn start_again(&mut self) {
        self.run().await;
    }

    /// Stops listening: the port refuses connections.
    pub async fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            server.abort();
            let _ = server.await;
        }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        for _ in 0..200 {
            if self.received().len() >= n {
                return self.received();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {n} webhooks, got {:?}", self.received());
    }
}

/// The receiver's check, written from docs/webhooks.md.
fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> Option<Received> {
    let header = headers.get("linkd-signature")?.to_str().ok()?;
    let mut timestamp = None;
    let mut signature = None;
    for part in header.split(',') {
        match part.split_once('=')? {
            ("t", t) => timestamp = t.parse::<i64>().ok(),
            ("v1", v) => signature = Some(v.to_string()),
            _ => {}
        }
    }
    let (timestamp, signature) = (timestamp?, signature?);
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    let expected: Vec<u8> = (0..signature.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(signature.get(i..i + 2)?, 16).ok())
        .collect::<Option<_>>()?;
    mac.verify_slice(&expected).ok()?;
    Some(Received {
        event: serde_json::from_slice(body).ok()?,
        id_header: headers.get("linkd-event-id")?.to_str().ok()?.into(),
        type_header: headers.get("linkd-event-type")?.to_str().ok()?.into(),
        timestamp,
    })
}

fn with_webhooks(a: &Receiver, b: &Receiver) -> Options {
    let (a, b) = (a.url(), b.url());
    Options {
        configure: Box::new(move |c| {
            c.webhooks = vec![
                linkd::webhooks::WebhookEndpoint {
                    url: a,
                    secret: SECRET_A.into(),
                    events: linkd::webhooks::EventType::ALL.to_vec(),
                },
                linkd::webhooks::WebhookEndpoint {
                    url: b,
                    secret: SECRET_B.into(),
                    events: vec![linkd::webhooks::EventType::DeviceUnlinked],
                },
            ];
        }),
        ..Options::default()
    }
}

fn types(received: &[Received]) -> Vec<String> {
    let mut t: Vec<String> = received
        .iter()
        .map(|r| r.event["type"].as_str().unwrap().to_string())
        .collect();
    t.sort();
    t
}

async fn outbox_until(
    app: &TestApp,
    what: &str,
    check: impl Fn(&[linkd::store::OutboxMessage]) -> bool,
) {
    for _ in 0..200 {
        if check(&app.state.store.list_outbox().await.unwrap()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "outbox never {what}: {:?}",
        app.state.store.list_outbox().await.unwrap()
    );
}

#[tokio::test]
async fn events_reach_each_endpoint_once_across_an_outage_and_a_restart() {
    let mut a = Receiver::start(SECRET_A).await;
    a.stop().await;
    let b = Receiver::start(SECRET_B).await;
    let db = TestDatabase::new().await;
    let first = spawn_on(db.clone(), with_webhooks(&a, &b)).await;

    // A link, then a stolen refresh token used after the device's own
    // refresh: reuse, and the unlink it causes.
    let (_browser, tokens) = first
        .link_device("wh@example.com", "openid offline_access")
        .await;
    let stolen = tokens["refresh_token"].as_str().unwrap();
    assert_eq!(first.refresh(stolen, None).await.status, Status::OK);
    let reuse = first.refresh(stolen, None).await;
    assert_eq!(reuse.error(), "invalid_grant");

    // B wants unlinks only: it gets the one, signed with its secret.
    let got_b = b.wait_for(1).await;
    assert_eq!(types(&got_b), ["device.unlinked"]);
    let unlinked = &got_b[0].event;
    assert_eq!(unlinked["data"]["reason"], "refresh_token_reuse");
    assert_eq!(unlinked["data"]["client_id"], "demo-tv");
    assert_eq!(got_b[0].id_header, unlinked["id"].as_str().unwrap());
    assert_eq!(got_b[0].type_header, "device.unlinked");

    // A is down: its three are tried, fail and wait for their retry.
    outbox_until(&first, "tried A's three", |o| {
        o.len() == 3
            && o.iter().all(|m| {
                m.kind == linkd::store::OutboxKind::Webhook
                    && m.attempts == 1
                    && m.lease.is_none()
                    && m.failed_at.is_none()
                    && m.last_error.as_deref().is_some_and(|e| e.contains("/hook"))
            })
    })
    .await;
    first.stop().await;

    // A comes back; linkd starts again as two instances on the one
    // database. Nothing before the retry is due, then each event once.
    a.start_again().await;
    let one = spawn_on(db.clone(), with_webhooks(&a, &b)).await;
    let two = spawn_on(db, with_webhooks(&a, &b)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(a.received().is_empty(), "{:?}", a.received());
    for app in [&one, &two] {
        app.clock.advance_secs(linkd::outbox::backoff(1));
    }
    let got_a = a.wait_for(3).await;
    outbox_until(&one, "emptied", |o| o.is_empty()).await;
    for app in [&one, &two] {
        app.clock.advance_secs(3600);
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(a.received().len(), 3, "{:?}", a.received());
    assert_eq!(b.received().len(), 1, "{:?}", b.received());
    assert_eq!(*a.refused.lock().unwrap(), 0);
    assert_eq!(*b.refused.lock().unwrap(), 0);
    assert_eq!(
        types(&got_a),
        ["device.linked", "device.unlinked", "refresh_token.reused"]
    );
    // The same event, with the same id, reached both endpoints.
    let a_unlinked = got_a
        .iter()
        .find(|r| r.event["type"] == "device.unlinked")
        .unwrap();
    assert_eq!(a_unlinked.event, *unlinked);
    let linked = &got_a
        .iter()
        .find(|r| r.event["type"] == "device.linked")
        .unwrap()
        .event;
    assert_eq!(linked["data"]["device_id"], unlinked["data"]["device_id"]);
    assert_eq!(linked["data"]["ip"], "127.0.0.1");
    assert!(linked["id"].as_str().unwrap().starts_with("evt_"));
    // Signed when sent (after the retry wait), not when made.
    for r in &got_a {
        assert!(r.timestamp >= r.event["created_at"].as_i64().unwrap() + 30);
    }
    let metrics = one
        .http
        .get(one.url("/metrics"))
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for counter in [
        "linkd_outbox_sent_total{kind=\"webhook\"}",
        "linkd_outbox_retried_total{kind=\"webhook\"}",
    ] {
        assert!(metrics.contains(counter), "{counter} in {metrics}");
    }
}

#[tokio::test]
async fn a_receiver_refusing_the_signature_is_retried_and_unlinks_are_sent() {
    // The receiver holds another secret: it refuses, linkd keeps the
    // message for a retry instead of dropping it.
    let wrong = Receiver::start(SECRET_B).await;
    let app = spawn_app_with(Options {
        configure: Box::new({
            let url = wrong.url();
            move |c| {
                c.webhooks = vec![linkd::webhooks::WebhookEndpoint {
                    url,
                    secret: SECRET_A.into(),
                    events: vec![linkd::webhooks::EventType::DeviceUnlinked],
                }];
            }
        }),
        ..Options::default()
    })
    .await;
    let (browser, tokens) = app.link_device("ww@example.com", "openid").await;
    let device_id = jwt_claims(tokens["access_token"].as_str().unwrap())["sid"]
        .as_str()
        .unwrap()
        .to_string();
    let page = browser.get(&format!("/devices/{device_id}/unlink")).await;
    let done = browser
        .post(
            &format!("/devices/{device_id}/unlink"),
            &[("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(done.status, Status::SEE_OTHER, "{}", done.body);
    outbox_until(&app, "retried the refused one", |o| {
        o.len() == 1
            && o[0].attempts == 1
            && o[0].lease.is_none()
            && o[0]
                .last_error
                .as_deref()
                .is_some_and(|e| e.contains("401"))
    })
    .await;
    assert_eq!(*wrong.refused.lock().unwrap(), 1);
    assert!(wrong.received().is_empty());
}

#[tokio::test]
async fn endpoints_come_from_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("linkd.toml");
    let check = |text: &str| {
        std::fs::write(&file, text).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_linkd"));
        cmd.args(["config", "check", "--config"]).arg(&file);
        cmd.output()
    };
    let out = check(
        "poll_interval = 7\n\
         [[webhooks]]\nurl = \"https://ops.example/linkd\"\nsecret = \"s3cret-0123456789ab\"\n\
         events = [\"device.linked\", \"link.reported\"]\n\
         [[webhooks]]\nurl = \"https://siem.example/in\"\nsecret = \"s3cret-0123456789ab\"\n",
    )
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains(
            "webhooks = \"https://ops.example/linkd (device.linked, link.reported); \
             https://siem.example/in (device.linked, device.unlinked, refresh_token.reused, \
             link.reported, network.blocked)\""
        ),
        "{text}"
    );
    assert!(!text.contains("s3cret"), "the secret is not shown: {text}");
    for (bad, says) in [
        (
            "[[webhooks]]\nurl = \"https://a.example/\"\nsecret = \"s3cret-0123456789ab\"\nevents = [\"device.linkd\"]\n",
            "device.linkd",
        ),
        (
            "[[webhooks]]\nurl = \"https://a.example/\"\nsecret = \"short\"\n",
            "at least 16",
        ),
        (
            "[[webhooks]]\nurl = \"https://a.example/\"\nsecret = \"s3cret-0123456789ab\"\ncolour = 1\n",
            "colour",
        ),
        ("[[webhooks]]\nsecret = \"s3cret-0123456789ab\"\n", "url"),
    ] {
        let out = check(bad).await.unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{bad} was accepted");
        assert!(err.contains(says), "{says} in {err}");
    }
}

//! Several linkd instances behind one address, sharing one PostgreSQL
//! database: whichever instance a request reaches, the device, the person
//! and the tokens see one service. These tests need PostgreSQL whatever
//! `LINKD_TEST_BACKEND` says.

use std::process::Stdio;
use std::time::{Duration, Instant};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use linkd::store::Event;
use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};

use crate::helpers::*;

mod limits;
mod polls;

/// The one address people and devices use; the load balancer in front of
/// the instances would answer there.
const PUBLIC_URL: &str = "http://link.example.test";

/// A `linkd serve` process.
struct Instance {
    /// Where this instance listens (behind the load balancer).
    base: String,
    http: reqwest::Client,
    child: Child,
}

impl Instance {
    /// Starts `linkd serve` on a free port; does not wait for it.
    fn spawn(database_url: &str) -> Instance {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_linkd"))
            .args(["serve", "--listen", &listen, "--public-url", PUBLIC_URL])
            .env("LINKD_DATABASE_URL", database_url)
            .env("LINKD_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn linkd serve");
        Instance {
            base: format!("http://{listen}"),
            http: reqwest::Client::new(),
            child,
        }
    }

    async fn wait_until_healthy(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = self.http.get(self.url("/healthz")).send().await
                && r.status() == StatusCode::OK
            {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                let log = self.stderr().await;
                panic!("linkd at {} exited: {status}: {log}", self.base);
            }
            assert!(
                Instant::now() < deadline,
                "linkd at {} never answered",
                self.base
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the process and returns what it logged.
    async fn stderr(&mut self) -> String {
        let _ = self.child.start_kill();
        let _ = self.child.wait().await;
        let mut text = String::new();
        if let Some(mut err) = self.child.stderr.take() {
            let _ = err.read_to_string(&mut text).await;
        }
        text
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> Reply {
        post_form(&self.http, &self.url(path), form).await
    }

    async fn poll(&self, device_code: &str) -> Reply {
        poll(&self.http, &self.base, device_code).await
    }

    async fn jwks(&self) -> Value {
        self.http
            .get(self.url("/oauth/jwks"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// This instance's browser view, sharing `browser`'s cookies: cookies
    /// do not tell ports apart, as they would not tell instances apart
    /// behind one address.
    fn as_seen_by(&self, browser: &Browser) -> Browser {
        Browser {
            base: self.base.clone(),
            client: browser.client.clone(),
        }
    }
}

/// Verifies an RS256 JWT against a published JWK set, as a resource server
/// would.
fn verify(jwks: &Value, token: &str, audience: &str) -> Result<Value, String> {
    let kid = jsonwebtoken::decode_header(token)
        .map_err(|e| e.to_string())?
        .kid
        .ok_or("no kid")?;
    let jwk = jwks["keys"]
        .as_array()
        .and_then(|keys| keys.iter().find(|k| k["kid"] == kid.as_str()))
        .ok_or_else(|| format!("kid {kid} is not in the JWKS"))?;
    let key = DecodingKey::from_rsa_components(
        jwk["n"].as_str().unwrap_or_default(),
        jwk["e"].as_str().unwrap_or_default(),
    )
    .map_err(|e| e.to_string())?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[PUBLIC_URL]);
    validation.set_audience(&[audience]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .map(|t| t.claims)
        .map_err(|e| e.to_string())
}

fn kids(jwks: &Value) -> Vec<String> {
    let mut kids: Vec<String> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect();
    kids.sort();
    kids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_behind_one_address_serve_one_device_flow() {
    let db = TestDatabase::postgres().await;
    // Both start at once on an empty database: they race to migrate, to
    // make the first signing key and to register the demo app.
    let mut a = Instance::spawn(db.url());
    let mut b = Instance::spawn(db.url());
    tokio::join!(a.wait_until_healthy(), b.wait_until_healthy());

    // One service: the same metadata, and one shared signing key.
    let meta = |i: &Instance| {
        let url = i.url("/.well-known/openid-configuration");
        async move {
            reqwest::get(url)
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let (meta_a, meta_b) = tokio::join!(meta(&a), meta(&b));
    assert_eq!(meta_a, meta_b);
    assert_eq!(meta_a["issuer"], PUBLIC_URL);
    let (jwks_a, jwks_b) = tokio::join!(a.jwks(), b.jwks());
    assert_eq!(kids(&jwks_a).len(), 1, "one first key: {jwks_a}");
    assert_eq!(kids(&jwks_a), kids(&jwks_b));

    // The device gets its code from A and polls B.
    let started = a
        .post_form(
            "/oauth/device_authorization",
            &[("client_id", "demo-tv"), ("scope", "openid offline_access")],
        )
        .await;
    assert_eq!(started.status, StatusCode::OK, "{}", started.json);
    let auth: DeviceAuth = serde_json::from_value(started.json).unwrap();
    assert_eq!(auth.verification_uri, format!("{PUBLIC_URL}/link"));
    assert_eq!(
        b.poll(&auth.device_code).await.error(),
        "authorization_pending"
    );

    // RFC 8628 §3.5 slow_down, when the device alternates instances: the
    // poll-rate bookkeeping is per instance, so each instance lets one
    // poll per interval through (the bound the README documents), then
    // slows the device down.
    assert_eq!(
        a.poll(&auth.device_code).await.error(),
        "authorization_pending"
    );
    assert_eq!(b.poll(&auth.device_code).await.error(), "slow_down");
    assert_eq!(a.poll(&auth.device_code).await.error(), "slow_down");

    // The person signs up on B, opens the confirmation page on A and
    // approves there: sessions and CSRF tokens live in the database.
    let on_b = Browser {
        base: b.base.clone(),
        client: reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    };
    let signed_up = on_b
        .sign_up("multi@example.com", "correct horse battery", "/")
        .await;
    assert_eq!(
        signed_up.status,
        StatusCode::SEE_OTHER,
        "{}",
        signed_up.body
    );
    let on_a = a.as_seen_by(&on_b);
    let done = on_a.approve(&auth.user_code).await;
    assert!(done.contains("is now linked"), "{}", done.body);

    // B hands out the tokens within one polling interval: B answers
    // pending polls from memory until the approval's event, announced on
    // A's commit, reaches it. That takes milliseconds, unless the machine
    // is busy enough to delay B's listener past the device's next poll;
    // then the device waits its interval, as RFC 8628 §3.5 has it, and
    // the next poll must succeed.
    let mut tokens = b.poll(&auth.device_code).await;
    if tokens.status != StatusCode::OK {
        assert!(
            ["authorization_pending", "slow_down"].contains(&tokens.error()),
            "{}",
            tokens.json
        );
        tokio::time::sleep(Duration::from_millis(5_500)).await;
        tokens = b.poll(&auth.device_code).await;
    }
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.json);
    let from_b = tokens.json["access_token"].as_str().unwrap().to_string();
    let refresh = tokens.json["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(a.poll(&auth.device_code).await.error(), "invalid_grant");

    // A token minted by A (a refresh there) and one minted by B verify
    // against either JWKS, and linkd itself accepts each on the other.
    let refreshed = a
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "refresh_token"),
                ("client_id", "demo-tv"),
                ("refresh_token", &refresh),
            ],
        )
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.json);
    let from_a = refreshed.json["access_token"].as_str().unwrap().to_string();
    let id_from_a = refreshed.json["id_token"].as_str().unwrap().to_string();
    let (jwks_a, jwks_b) = tokio::join!(a.jwks(), b.jwks());
    for jwks in [&jwks_a, &jwks_b] {
        for token in [&from_a, &from_b] {
            verify(jwks, token, PUBLIC_URL).unwrap();
        }
        let id = verify(jwks, &id_from_a, "demo-tv").unwrap();
        assert_eq!(id["sub"], jwt_claims(&from_b)["sub"]);
    }
    for (instance, token) in [(&a, &from_b), (&b, &from_a)] {
        let me = instance
            .http
            .get(instance.url("/api/v1/device"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(me.status(), StatusCode::OK);
    }

    // A second device: of many concurrent polls spread over both
    // instances, exactly one gets tokens.
    let second = b
        .post_form(
            "/oauth/device_authorization",
            &[("client_id", "demo-tv"), ("scope", "openid")],
        )
        .await;
    let second: DeviceAuth = serde_json::from_value(second.json).unwrap();
    let done = b.as_seen_by(&on_b).approve(&second.user_code).await;
    assert!(done.contains("is now linked"), "{}", done.body);
    let polls = (0..24).map(|i| {
        let instance = if i % 2 == 0 { &a } else { &b };
        instance.poll(&second.device_code)
    });
    let replies = futures::future::join_all(polls).await;
    let winners: Vec<&Reply> = replies
        .iter()
        .filter(|r| r.status == StatusCode::OK)
        .collect();
    assert_eq!(winners.len(), 1);
    for r in replies.iter().filter(|r| r.status != StatusCode::OK) {
        assert_eq!(r.error(), "invalid_grant", "{}", r.json);
    }
    let token = winners[0].json["access_token"].as_str().unwrap();
    verify(&jwks_a, token, PUBLIC_URL).unwrap();
    verify(&jwks_b, token, PUBLIC_URL).unwrap();

    // Neither process complained on the way.
    for instance in [&mut a, &mut b] {
        let log = instance.stderr().await;
        assert!(!log.contains("panicked"), "{log}");
        assert!(!log.contains("ERROR"), "{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_on_one_instance_wakes_waiters_on_the_other() {
    let db = TestDatabase::postgres().await;
    let a = spawn_on(db.clone(), Options::default()).await;
    let b = spawn_on(db.clone(), Options::default()).await;
    let browser = a.signed_in_browser("wake@example.com").await;

    for decision in ["approve", "deny"] {
        let auth = a.start_device("openid").await;
        let id = a
            .state
            .store
            .get_device_authorization_by_user_code(&auth.user_code.replace('-', ""))
            .await
            .unwrap()
            .unwrap()
            .id;
        // A waiter on B, as a long poll there would wait.
        let mut events = b.state.store.subscribe();
        let waiter = tokio::spawn(async move {
            loop {
                match events.recv().await.unwrap() {
                    Event::Decided { authorization_id } if authorization_id == id => {
                        return Instant::now();
                    }
                    _ => continue,
                }
            }
        });
        let confirm = browser.type_code(&auth.user_code).await;
        let csrf = confirm.csrf();
        let sent = Instant::now();
        let page = browser
            .post(
                "/link/decide",
                &[
                    ("csrf", &csrf),
                    ("code", &auth.user_code),
                    ("decision", decision),
                ],
            )
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let woke = tokio::time::timeout(Duration::from_secs(1), waiter)
            .await
            .expect("B hears of the decision within a second")
            .unwrap();
        let latency = woke.duration_since(sent);
        eprintln!("{decision} on A reached a waiter on B in {latency:?}");
        // Far below the 5 s poll interval a device would otherwise wait.
        assert!(latency < Duration::from_secs(1), "{latency:?}");
        // And B then answers the device from the store.
        let outcome = b.poll(&auth.device_code).await;
        match decision {
            "approve" => assert_eq!(outcome.status, StatusCode::OK, "{}", outcome.json),
            _ => assert_eq!(outcome.error(), "access_denied"),
        }
    }

    // Settings changes travel the same way (for sync's change streams), to
    // every instance, the publisher's included.
    let mut on_a = a.state.store.subscribe();
    let mut on_b = b.state.store.subscribe();
    let mut latencies = Vec::new();
    for i in 0..20 {
        let changed = Event::SettingsChanged {
            account_id: format!("acct-{i}"),
        };
        let sent = Instant::now();
        a.state.store.publish(changed.clone()).await.unwrap();
        for events in [&mut on_b, &mut on_a] {
            // The decisions above may still be on their way to A's
            // subscribers; only settings events count here.
            let got = tokio::time::timeout(Duration::from_secs(1), async {
                loop {
                    match events.recv().await.unwrap() {
                        Event::Decided { .. } => continue,
                        other => return other,
                    }
                }
            })
            .await
            .expect("every instance hears it");
            assert_eq!(got, changed);
        }
        latencies.push(sent.elapsed());
    }
    latencies.sort();
    eprintln!(
        "publish on A to both instances' subscribers: median {:?}, max {:?}",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
}

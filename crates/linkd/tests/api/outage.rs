//! PostgreSQL going away while linkd runs. linkd reaches the database
//! through a TCP proxy in the test, which can cut every connection and
//! refuse new ones, as a restarting server does, without disturbing other
//! tests on the shared server. Needs PostgreSQL whatever
//! `LINKD_TEST_BACKEND` says.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use linkd::store::Event;
use reqwest::StatusCode;
use sqlx::Connection;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

use crate::helpers::*;

/// Forwards connections on a local port to the PostgreSQL server.
struct Proxy {
    addr: SocketAddr,
    upstream: String,
    accepting: Option<AbortHandle>,
    pipes: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut proxy = Proxy {
            addr: listener.local_addr().unwrap(),
            upstream,
            accepting: None,
            pipes: Arc::default(),
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&mut self, listener: TcpListener) {
        let upstream = self.upstream.clone();
        let pipes = self.pipes.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let upstream = upstream.clone();
                let pipe = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                pipes.lock().unwrap().push(pipe.abort_handle());
            }
        });
        self.accepting = Some(task.abort_handle());
    }

    /// New connections are refused; open ones still carry data.
    fn stop_accepting(&mut self) {
        if let Some(accepting) = self.accepting.take() {
            accepting.abort();
        }
    }

    /// The database is gone: open connections drop, new ones are refused.
    fn close(&mut self) {
        self.stop_accepting();
        for pipe in self.pipes.lock().unwrap().drain(..) {
            pipe.abort();
        }
    }

    /// The database is back on the same address.
    async fn reopen(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(listener) => break listener,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("rebinding {}: {e}", self.addr);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot reopen the proxy on {}: {e}", self.addr),
            }
        };
        self.serve(listener);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.close();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_outage_gets_503s_and_linkd_recovers_by_itself() {
    let db = TestDatabase::postgres().await;
    let mut url = reqwest::Url::parse(db.url()).unwrap();
    let upstream = format!("{}:{}", url.host_str().unwrap(), url.port().unwrap_or(5432));
    let mut proxy = Proxy::start(upstream).await;
    url.set_port(Some(proxy.addr.port())).unwrap();
    let through_proxy = url.to_string();
    let app = spawn_on(
        db.clone(),
        Options {
            configure: Box::new(move |c| c.database_url = through_proxy),
            ..Default::default()
        },
    )
    .await;

    // Before: a linked device, a code approved but not yet redeemed, and
    // one still pending.
    let (browser, linked) = app
        .link_device("outage@example.com", "openid offline_access")
        .await;
    let approved = app.start_device("openid").await;
    assert!(
        browser
            .approve(&approved.user_code)
            .await
            .contains("is now linked")
    );
    let pending = app.start_device("openid").await;
    // The code as typed on the link page, whose form is read before the outage.
    let link_page = browser.typed_path(&pending.user_code).await;
    let mut events = app.state.store.subscribe();

    // PostgreSQL shuts down: it ends every session with "terminating
    // connection due to administrator command", then stops listening.
    proxy.stop_accepting();
    let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
        .await
        .unwrap();
    let name = url.path().trim_start_matches('/').to_string();
    let ended: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = $1 AND pid <> pg_backend_pid()) t",
    )
    .bind(&name)
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert!(ended >= 2, "linkd's pool and its listener: {ended}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    proxy.close();

    // During the outage: the RFC 6749 JSON error on OAuth endpoints, a
    // page for people, and the process keeps serving.
    let outage_started = Instant::now();
    let (poll, start, page, health, ready) = tokio::join!(
        app.poll(&pending.device_code),
        app.device_authorization(&[("client_id", "demo-tv")]),
        browser.get(&link_page),
        app.http.get(app.url("/healthz")).send(),
        app.http.get(app.url("/readyz")).send(),
    );
    for reply in [&poll, &start] {
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            reply.json
        );
        assert_eq!(reply.error(), "temporarily_unavailable");
        assert_eq!(reply.headers["retry-after"], "5");
        assert_eq!(reply.headers["cache-control"], "no-store");
    }
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(page.contains("Temporarily unavailable"), "{}", page.body);
    assert!(
        page.contains("Please try again in a minute"),
        "{}",
        page.body
    );
    assert_eq!(health.unwrap().status(), StatusCode::OK);
    // The load balancer's readiness check says so too.
    assert_eq!(ready.unwrap().status(), StatusCode::SERVICE_UNAVAILABLE);
    eprintln!("outage answers took {:?}", outage_started.elapsed());

    // The database is back; nobody restarts linkd.
    proxy.reopen().await;
    let back = Instant::now();
    let first_ok = loop {
        let reply = app.poll(&pending.device_code).await;
        if reply.status != StatusCode::SERVICE_UNAVAILABLE {
            assert_eq!(reply.error(), "authorization_pending", "{}", reply.json);
            break back.elapsed();
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "linkd did not recover"
        );
    };
    eprintln!("requests succeed again {first_ok:?} after the database is back");
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);

    // The event listener reconnects by itself: an event published now
    // reaches subscribers (one published while it reconnects is lost, so
    // keep publishing until one arrives).
    let probe = Event::SettingsChanged {
        account_id: "probe".into(),
    };
    let heard = loop {
        app.state.store.publish(probe.clone()).await.unwrap();
        match tokio::time::timeout(Duration::from_millis(200), events.recv()).await {
            Ok(Ok(event)) if event == probe => break back.elapsed(),
            Ok(Ok(_)) | Err(_) => {}
            Ok(Err(e)) => panic!("{e}"),
        }
        assert!(
            back.elapsed() < Duration::from_secs(30),
            "no events after the outage"
        );
    };
    eprintln!("events flow again {heard:?} after the database is back");

    // Nothing committed before the outage is lost.
    let tokens = app.poll(&approved.device_code).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.json);
    let refreshed = app
        .refresh(linked["refresh_token"].as_str().unwrap(), None)
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.json);
    let devices = browser.get("/devices").await;
    assert_eq!(devices.status, StatusCode::OK);
    assert!(devices.contains("Demo TV"), "{}", devices.body);

    // And a decision now wakes waiters again.
    assert!(
        browser
            .deny(&pending.user_code)
            .await
            .contains("was not linked")
    );
    let woke = tokio::time::timeout(Duration::from_secs(1), async {
        loop {
            if let Ok(Event::Decided { .. }) = events.recv().await {
                return;
            }
        }
    })
    .await;
    assert!(
        woke.is_ok(),
        "the decision was not published after recovery"
    );
}

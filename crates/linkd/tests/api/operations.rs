//! What operators do to a running linkd: admin commands, readiness, and
//! backups taken while it serves.

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use sqlx::Connection;
use tokio::process::Command;

use crate::helpers::*;

async fn linkd(db: &TestDatabase, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_linkd"))
        .args(args)
        .env("LINKD_DATABASE_URL", db.url())
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn disabling_a_person_cuts_their_devices_off_at_once() {
    let app = spawn_app().await;
    let (browser, tokens) = app
        .link_device("ops-a@example.com", "openid offline_access")
        .await;
    let access = tokens["access_token"].as_str().unwrap();
    let (ok, out, err) = linkd(&app.db, &["devices", "list", "--user", "ops-a@example.com"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("Demo TV"), "{out}");

    let (ok, out, err) = linkd(&app.db, &["user", "disable", "ops-a@example.com"]).await;
    assert!(ok, "{err}");
    assert!(out.contains("1 device(s) unlinked"), "{out}");
    assert_eq!(app.introspect(access).await["active"], false);
    assert_eq!(
        app.refresh(tokens["refresh_token"].as_str().unwrap(), None)
            .await
            .error(),
        "invalid_grant"
    );
    // The browser session ended too.
    assert_eq!(browser.get("/devices").await.status, StatusCode::SEE_OTHER);

    let (ok, _, _) = linkd(&app.db, &["user", "delete", "ops-a@example.com"]).await;
    assert!(ok);
    assert!(
        app.state
            .store
            .get_account_by_email("ops-a@example.com")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn operators_unlink_single_devices_and_rotate_secrets() {
    let app = spawn_app().await;
    let (_, tokens) = app.link_device("ops-b@example.com", "openid").await;
    let access = tokens["access_token"].as_str().unwrap();
    let device_id = jwt_claims(access)["sid"].as_str().unwrap().to_string();
    let (ok, out, err) = linkd(&app.db, &["devices", "unlink", &device_id]).await;
    assert!(ok, "{err}");
    assert!(out.contains("unlinked"));
    assert_eq!(app.introspect(access).await["active"], false);
    let (ok, _, err) = linkd(&app.db, &["devices", "unlink", &device_id]).await;
    assert!(!ok && err.contains("no linked device"), "{err}");
    // Earlier releases made ids that could start with `-`; the command
    // still takes one as an id, not as an option.
    let (ok, _, err) = linkd(&app.db, &["devices", "unlink", "-RxY2"]).await;
    assert!(!ok && err.contains("no linked device"), "{err}");

    app.add_client("tv-pro", "openid", Some("old-secret")).await;
    let (ok, out, err) = linkd(&app.db, &["client", "rotate-secret", "tv-pro"]).await;
    assert!(ok, "{err}");
    let secret = out.rsplit(": ").next().unwrap().trim().to_string();
    let old = app
        .device_authorization(&[("client_id", "tv-pro"), ("client_secret", "old-secret")])
        .await;
    assert_eq!(old.error(), "invalid_client");
    let new = app
        .device_authorization(&[("client_id", "tv-pro"), ("client_secret", &secret)])
        .await;
    assert_eq!(new.status, StatusCode::OK, "{}", new.json);
    let (ok, _, err) = linkd(&app.db, &["client", "rotate-secret", "demo-tv"]).await;
    assert!(!ok && err.contains("public client"), "{err}");
}

#[tokio::test]
async fn readyz_and_healthz_answer_separately() {
    let app = spawn_app().await;
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::OK);
    assert_eq!(ready.text().await.unwrap(), "ready");
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );

    // A database that holds the newest migration but lacks one below it
    // (migrations are numbered when written and can land out of order) is
    // not ready.
    let forget = "DELETE FROM _sqlx_migrations WHERE version = 2";
    match &*app.db {
        TestDatabase::Sqlite { url, .. } => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            sqlx::query(forget).execute(&mut conn).await.unwrap();
        }
        TestDatabase::Postgres { url, .. } => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            sqlx::query(forget).execute(&mut conn).await.unwrap();
        }
    }
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(ready.text().await.unwrap(), "migrations pending");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_concurrent_writes_restores_every_acknowledged_write() {
    if backend() == Backend::Postgres {
        // PostgreSQL has its own tools for consistent copies; linkd says so.
        let app = spawn_app().await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("backup.db");
        let (ok, _, err) = linkd(&app.db, &["backup", file.to_str().unwrap()]).await;
        assert!(!ok && err.contains("pg_dump"), "{err}");
        assert!(!file.exists());
        return;
    }
    let app = spawn_app_with(Options {
        configure: Box::new(|c| {
            c.device_authorizations_per_network = 0;
            c.device_authorizations_per_client = 0;
        }),
        ..Default::default()
    })
    .await;
    let app = Arc::new(app);
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::default();
    let writer = {
        let (app, acknowledged) = (app.clone(), acknowledged.clone());
        tokio::spawn(async move {
            for _ in 0..400 {
                let auth = app.start_device("openid").await;
                acknowledged.lock().unwrap().push(auth.device_code);
            }
        })
    };
    while acknowledged.lock().unwrap().len() < 50 {
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let before_backup = acknowledged.lock().unwrap().clone();
    let dir = tempfile::tempdir().unwrap();
    let backup = dir.path().join("backup.db");
    let (ok, out, err) = linkd(&app.db, &["backup", backup.to_str().unwrap()]).await;
    assert!(ok, "{err}");
    assert!(out.contains("backed up"));
    let during = acknowledged.lock().unwrap().len();
    writer.await.unwrap();
    assert!(
        during > before_backup.len(),
        "writes went on while the backup ran"
    );
    let (ok, _, err) = linkd(&app.db, &["backup", backup.to_str().unwrap()]).await;
    assert!(!ok && err.contains("already exists"), "{err}");

    // Restore: a server started on the copy knows every code acknowledged
    // before the backup began, and the copy passes SQLite's own check.
    let check: String = {
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", backup.display()))
            .await
            .unwrap();
        sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    };
    assert_eq!(check, "ok");
    let restored = spawn_on(TestDatabase::sqlite_file(dir, backup), Options::default()).await;
    for code in &before_backup {
        assert_eq!(
            restored.poll(code).await.error(),
            "authorization_pending",
            "lost {code}"
        );
    }
}

#[tokio::test]
async fn configuration_comes_from_flags_then_environment_then_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("linkd.toml");
    std::fs::write(
        &file,
        "code_lifetime = 300\npoll-interval = 7\ndatabase_url = \"postgres://linkd:hunter2@db/linkd\"\ntrusted_proxies = [\"10.0.0.0/8\"]\n",
    )
    .unwrap();
    let check = |env: Vec<(&'static str, &'static str)>, extra: Vec<&'static str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_linkd"));
        cmd.args(["config", "check", "--config"])
            .arg(&file)
            .args(extra)
            .env_remove("LINKD_DATABASE_URL");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output()
    };
    let out = check(vec![], vec![]).await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "code_lifetime = \"300\"",
        "poll_interval = \"7\"",
        "trusted_proxies = \"10.0.0.0/8\"",
        "postgres://linkd:***@db/linkd",
    ] {
        assert!(text.contains(line), "{line} in {text}");
    }
    assert!(!text.contains("hunter2"), "secrets are redacted");
    let env = check(vec![("LINKD_CODE_LIFETIME", "120")], vec![])
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&env.stdout).contains("code_lifetime = \"120\""));
    let flag = check(
        vec![("LINKD_CODE_LIFETIME", "120")],
        vec!["--code-lifetime", "90"],
    )
    .await
    .unwrap();
    assert!(String::from_utf8_lossy(&flag.stdout).contains("code_lifetime = \"90\""));

    std::fs::write(&file, "bogus_setting = 1\n").unwrap();
    let unknown = check(vec![], vec![]).await.unwrap();
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown setting \"bogus_setting\""));
    std::fs::write(&file, "code_lifetime = \"soon\"\n").unwrap();
    let bad = check(vec![], vec![]).await.unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--code-lifetime"),
        "names the setting"
    );
    std::fs::write(&file, "code_lifetime = 5\n").unwrap();
    let range = check(vec![], vec![]).await.unwrap();
    assert!(!range.status.success(), "below the 30 s minimum");
}

/// Starts the real binary on `db` (with `public_url` as its address when
/// given, as behind one load balancer); returns it and its base URL once
/// it answers.
async fn serve_binary(
    db: &std::path::Path,
    public_url: Option<&str>,
) -> (tokio::process::Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let listen = format!("127.0.0.1:{port}");
    let public_url = public_url.unwrap_or(&base).to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_linkd"))
        .args(["serve", "--listen", &listen, "--public-url", &public_url])
        .args(["--poll-interval", "1", "--shutdown-timeout", "10"])
        .env("LINKD_DATABASE_URL", format!("sqlite://{}", db.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let http = reqwest::Client::new();
    for _ in 0..150 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            return (child, base);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("linkd did not start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_an_open_event_stream_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("linkd.db");
    let (mut server, base) = serve_binary(&db, None).await;
    let http = reqwest::Client::new();
    let auth: serde_json::Value = http
        .post(format!("{base}/oauth/device_authorization"))
        .form(&[("client_id", "demo-tv"), ("scope", "openid sync")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let browser = Browser {
        base: base.clone(),
        client: reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
    };
    browser
        .sign_up("term@example.com", "long enough password", "/")
        .await;
    browser.approve(auth["user_code"].as_str().unwrap()).await;
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let tokens: serde_json::Value = http
        .post(format!("{base}/oauth/token"))
        .form(&[
            ("grant_type", DEVICE_GRANT),
            ("client_id", "demo-tv"),
            ("device_code", auth["device_code"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = tokens["access_token"].as_str().expect("tokens").to_string();
    let written = http
        .put(format!("{base}/api/v1/sync/prefs/language"))
        .bearer_auth(&token)
        .header("if-none-match", "*")
        .header("content-type", "application/json")
        .body("\"de\"")
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), StatusCode::CREATED);

    let mut stream = http
        .get(format!("{base}/api/v1/sync/events"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), StatusCode::OK);
    let pid = server.id().unwrap().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap()
            .success()
    );

    // The open stream ends by itself, well before the drain timeout.
    let ended = tokio::time::timeout(std::time::Duration::from_secs(8), async {
        while let Ok(Some(_)) = stream.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the event stream ended on shutdown");
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), server.wait())
        .await
        .expect("exits")
        .unwrap();
    assert!(status.success(), "{status}");

    // Nothing acknowledged was lost.
    let (_again, again) = serve_binary(&db, Some(&base)).await;
    let read = http
        .get(format!("{again}/api/v1/sync/prefs/language"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(read.text().await.unwrap(), "\"de\"");
}

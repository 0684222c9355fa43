//! What operators do to a running linkd: admin commands, readiness, and
//! backups taken while it serves.

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use reqwest::StatusCode;
use tokio::process::Command;

use crate::helpers::*;

async fn linkd(db: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_linkd"))
        .args(args)
        .env("LINKD_DATABASE_URL", format!("sqlite://{}", db.display()))
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
    let (ok, out, err) = linkd(
        &app.db_path,
        &["devices", "list", "--user", "ops-a@example.com"],
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("Demo TV"), "{out}");

    let (ok, out, err) = linkd(&app.db_path, &["user", "disable", "ops-a@example.com"]).await;
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

    let (ok, _, _) = linkd(&app.db_path, &["user", "delete", "ops-a@example.com"]).await;
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
    let (ok, out, err) = linkd(&app.db_path, &["devices", "unlink", &device_id]).await;
    assert!(ok, "{err}");
    assert!(out.contains("unlinked"));
    assert_eq!(app.introspect(access).await["active"], false);
    let (ok, _, err) = linkd(&app.db_path, &["devices", "unlink", &device_id]).await;
    assert!(!ok && err.contains("no linked device"), "{err}");

    app.add_client("tv-pro", "openid", Some("old-secret")).await;
    let (ok, out, err) = linkd(&app.db_path, &["client", "rotate-secret", "tv-pro"]).await;
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
    let (ok, _, err) = linkd(&app.db_path, &["client", "rotate-secret", "demo-tv"]).await;
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_under_concurrent_writes_restores_every_acknowledged_write() {
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
    let (ok, out, err) = linkd(&app.db_path, &["backup", backup.to_str().unwrap()]).await;
    assert!(ok, "{err}");
    assert!(out.contains("backed up"));
    let during = acknowledged.lock().unwrap().len();
    writer.await.unwrap();
    assert!(
        during > before_backup.len(),
        "writes went on while the backup ran"
    );
    let (ok, _, err) = linkd(&app.db_path, &["backup", backup.to_str().unwrap()]).await;
    assert!(!ok && err.contains("already exists"), "{err}");

    // Restore: a server started on the copy knows every code acknowledged
    // before the backup began, and the copy passes SQLite's own check.
    let check: String = {
        use sqlx::Connection;
        let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", backup.display()))
            .await
            .unwrap();
        sqlx::query_scalar("PRAGMA integrity_check")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    };
    assert_eq!(check, "ok");
    let restored = spawn_on(dir, backup, Options::default()).await;
    for code in &before_backup {
        assert_eq!(
            restored.poll(code).await.error(),
            "authorization_pending",
            "lost {code}"
        );
        restored.clock.advance_secs(10);
    }
}

//! The `linkd` binary's admin commands and its terminal device, run as a
//! person would run them.

use std::process::Stdio;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use crate::helpers::*;

fn linkd(db: &TestDatabase) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_linkd"));
    cmd.env("LINKD_DATABASE_URL", db.url())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

pub(crate) async fn run(db: &TestDatabase, args: &[&str], stdin: &str) -> (bool, String, String) {
    let mut child = linkd(db).args(args).spawn().expect("spawn linkd");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    let out = child.wait_with_output().await.unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn admin_commands_register_apps_and_people_the_server_then_uses() {
    let db = TestDatabase::new().await;

    let (ok, out, err) = run(&db, &["migrate"], "").await;
    assert!(ok, "{err}");
    assert!(out.contains("up to date"));

    let (ok, out, err) = run(
        &db,
        &[
            "client",
            "add",
            "--id",
            "kiosk",
            "--name",
            "Lobby Kiosk",
            "--scope",
            "openid",
            "--confidential",
        ],
        "",
    )
    .await;
    assert!(ok, "{err}");
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("client secret (shown once, store it now): "))
        .expect("secret printed")
        .to_string();
    let (ok, _, err) = run(
        &db,
        &["client", "add", "--id", "kiosk", "--name", "Again"],
        "",
    )
    .await;
    assert!(!ok && err.contains("already exists"), "{err}");
    let (ok, _, err) = run(
        &db,
        &[
            "client", "add", "--id", "x", "--name", "X", "--scope", "admin",
        ],
        "",
    )
    .await;
    assert!(!ok && err.contains("unknown scope"), "{err}");

    let (ok, out, _) = run(&db, &["client", "list"], "").await;
    assert!(
        ok && out.contains("kiosk\tLobby Kiosk\tconfidential\topenid"),
        "{out}"
    );

    let (ok, out, err) = run(
        &db,
        &["user", "add", "--email", "pat@example.com"],
        "a long password\n",
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("added account pat@example.com"));
    let (ok, out, err) = run(&db, &["user", "list"], "").await;
    assert!(
        ok && out.contains("pat@example.com") && out.contains("active"),
        "{ok} {out:?} {err:?}"
    );

    // The server on the same database knows both.
    let app = spawn_on(db.clone(), Options::default()).await;
    let reply = app
        .device_authorization(&[("client_id", "kiosk"), ("client_secret", &secret)])
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.json);
    let signed = app
        .browser()
        .sign_in("pat@example.com", "a long password", "/")
        .await;
    assert_eq!(signed.status, StatusCode::SEE_OTHER);

    // A disabled person can no longer sign in.
    let (ok, _, err) = run(&db, &["user", "disable", "pat@example.com"], "").await;
    assert!(ok, "{err}");
    let refused = app
        .browser()
        .sign_in("pat@example.com", "a long password", "/")
        .await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);

    let (ok, out, err) = run(
        &db,
        &["client", "update", "kiosk", "--device-flow", "off"],
        "",
    )
    .await;
    assert!(ok, "{err}");
    assert!(out.contains("device flow off"), "{out}");
    let barred = app
        .device_authorization(&[("client_id", "kiosk"), ("client_secret", &secret)])
        .await;
    assert_eq!(barred.error(), "unauthorized_client");
    let (ok, _, err) = run(&db, &["client", "update", "kiosk"], "").await;
    assert!(!ok && err.contains("nothing to change"), "{err}");

    let (ok, _, _) = run(&db, &["client", "remove", "kiosk"], "").await;
    assert!(ok);
    let gone = app
        .device_authorization(&[("client_id", "kiosk"), ("client_secret", &secret)])
        .await;
    assert_eq!(gone.error(), "invalid_client");
}

#[tokio::test]
async fn keys_rotate_adds_a_signing_key() {
    let db = TestDatabase::new().await;
    let app = spawn_on(db.clone(), Options::default()).await;
    let before = app.state.keys().signing_kid().to_string();
    let (ok, out, err) = run(&db, &["keys", "rotate"], "").await;
    assert!(ok, "{err}");
    let (ok, list, _) = run(&db, &["keys", "list"], "").await;
    assert!(ok);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    // The new key is published first and signs a few minutes later.
    assert!(lines[0].contains("next: signs from"), "{list}");
    assert!(
        lines[1].starts_with(&before) && lines[1].ends_with("signing"),
        "{list}"
    );
    assert!(out.contains("published now, signs from"), "{out}");
}

#[tokio::test]
async fn keys_revoke_drops_a_key_everywhere_and_signing_moves_at_once() {
    let db = TestDatabase::new().await;
    let app = spawn_on(db.clone(), Options::default()).await;
    // A second instance behind the same public address: one issuer.
    let public = app.base.clone();
    let other = spawn_on(
        db.clone(),
        Options {
            configure: Box::new(move |c| c.public_url = Some(public)),
            ..Options::default()
        },
    )
    .await;
    let (_, tokens) = app
        .link_device("keys@example.com", "openid offline_access")
        .await;
    let stolen = app.state.keys().signing_kid().to_string();
    let old_token = tokens["access_token"].as_str().unwrap();
    let kid_of = |jwt: &str| jsonwebtoken::decode_header(jwt).unwrap().kid.unwrap();
    assert_eq!(kid_of(old_token), stolen);
    // A rotation had published the next key, which would sign only later.
    let (ok, _, err) = run(&db, &["keys", "rotate"], "").await;
    assert!(ok, "{err}");

    let (ok, out, err) = run(&db, &["keys", "revoke", &stolen], "").await;
    assert!(ok, "{err}");
    let (ok, list, _) = run(&db, &["keys", "list"], "").await;
    assert!(ok);
    let lines: Vec<&str> = list.lines().collect();
    assert_eq!(lines.len(), 2, "{list}");
    let next = lines[0].split('\t').next().unwrap();
    assert!(
        lines[0].ends_with("signing"),
        "at once, not in minutes: {list}"
    );
    assert!(
        lines[1].starts_with(&stolen) && lines[1].contains("revoked"),
        "{list}"
    );
    assert!(out.contains(&format!("sign with {next}")), "{out}");

    // Every instance, at its next key reload (every 30 s).
    for instance in [&app, &other] {
        instance.state.reload_keys().await.unwrap();
        let jwks: Value = instance
            .http
            .get(instance.url("/oauth/jwks"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, [next], "only the key left is published");
        let refused = instance.get_bearer("/api/v1/device", old_token).await;
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(instance.introspect(old_token).await["active"], false);
    }
    // The device's refresh token still works (it is not signed); its new
    // access token is signed with the key left.
    let refreshed = other
        .refresh(tokens["refresh_token"].as_str().unwrap(), None)
        .await;
    assert_eq!(refreshed.status, StatusCode::OK, "{}", refreshed.json);
    let new_token = refreshed.json["access_token"].as_str().unwrap();
    assert_eq!(kid_of(new_token), next);
    let fine = app.get_bearer("/api/v1/device", new_token).await;
    assert_eq!(fine.status(), StatusCode::OK);

    // Revoking the only key left makes a new one first.
    let (ok, _, err) = run(&db, &["keys", "revoke", next], "").await;
    assert!(ok, "{err}");
    app.state.reload_keys().await.unwrap();
    assert_ne!(app.state.keys().signing_kid(), next);
    assert_ne!(app.state.keys().signing_kid(), stolen);
    // An unknown or already revoked id is an error that says so.
    let (ok, _, err) = run(&db, &["keys", "revoke", &stolen], "").await;
    assert!(!ok);
    assert!(
        err.contains(&format!("no unrevoked signing key {stolen}")),
        "{err}"
    );
}

#[tokio::test]
async fn the_terminal_device_shows_a_code_and_reports_who_linked_it() {
    let app = spawn_app_with(Options {
        real_clock: true,
        configure: Box::new(|c| {
            c.poll_interval = 1;
            c.product_name = "Acme Link".into();
            c.support_url = Some("https://help.example.com/link".into());
        }),
    })
    .await;
    let tokens_dir = tempfile::tempdir().unwrap();
    let token_file = tokens_dir.path().join("device.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_linkd"))
        .args([
            "device",
            "--server",
            &app.base,
            "--client",
            "demo-tv",
            "--name",
            "Test terminal",
            "--token-file",
        ])
        .arg(&token_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let code = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            seen.push(line.clone());
            let t = line.trim();
            if t.len() == 9 && t.as_bytes()[4] == b'-' {
                return t.to_string();
            }
        }
        panic!("no code printed: {seen:?}");
    })
    .await
    .expect("code within 30 s");
    assert!(
        seen.iter().any(|l| l.contains(&app.url("/link"))),
        "{seen:?}"
    );
    // The terminal speaks in the operator's brand, like the pages.
    assert!(
        seen.iter()
            .any(|l| l == "To link this device to your Acme Link account, open"),
        "{seen:?}"
    );

    let browser = app.signed_in_browser("quinn@example.com").await;
    let confirm = browser.type_code(&code).await;
    assert!(confirm.contains("Test terminal"));
    browser.approve(&code).await;

    let rest = tokio::time::timeout(Duration::from_secs(30), async {
        let mut rest = Vec::new();
        while let Some(line) = lines.next_line().await.unwrap() {
            rest.push(line);
        }
        rest
    })
    .await
    .expect("device finishes");
    assert!(
        rest.iter()
            .any(|l| l == "Linked to quinn@example.com on Acme Link."),
        "{rest:?}"
    );
    assert!(
        rest.iter()
            .any(|l| l == "Need help? https://help.example.com/link"),
        "{rest:?}"
    );
    // The QR code was drawn with block characters.
    assert!(
        rest.iter()
            .chain(seen.iter())
            .any(|l| l.contains('█') || l.contains('▀')),
        "{rest:?}"
    );
    assert!(child.wait().await.unwrap().success());

    // The tokens were saved privately; status and unlink use them.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // DPoP by default: the key is kept with the tokens, which are bound to
    // it, and status and unlink below sign proofs with it.
    let saved: Value = serde_json::from_slice(&std::fs::read(&token_file).unwrap()).unwrap();
    let key = linkd_device::DpopKey::from_secret(saved["dpop_key"].as_str().unwrap()).unwrap();
    let access = saved["access_token"].as_str().unwrap();
    assert_eq!(jwt_claims(access)["cnf"]["jkt"], key.thumbprint().as_str());
    assert_eq!(
        app.get_bearer("/api/v1/device", access).await.status(),
        StatusCode::UNAUTHORIZED,
        "a copy of the token is worthless as Bearer"
    );
    let device_cmd = |sub: &'static str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_linkd"));
        cmd.args([
            "device",
            sub,
            "--server",
            &app.base,
            "--client",
            "demo-tv",
            "--token-file",
        ])
        .arg(&token_file)
        .kill_on_drop(true);
        cmd
    };
    let status = device_cmd("status").output().await.unwrap();
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(
        text.contains("Linked to quinn@example.com as \"Test terminal\" (Demo TV)"),
        "{text}"
    );
    let unlink = device_cmd("unlink").output().await.unwrap();
    assert!(
        unlink.status.success(),
        "{}",
        String::from_utf8_lossy(&unlink.stderr)
    );
    assert!(!token_file.exists());
    assert!(
        browser
            .get("/devices")
            .await
            .contains("No devices are linked")
    );
    let again = device_cmd("status").output().await.unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not linked"));
}

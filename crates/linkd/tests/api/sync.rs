//! Settings sync: conditional writes, the change feed, the event stream,
//! who may see what, limits, the account page and durability.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

const SCOPE: &str = "openid offline_access sync";

/// A linked device as the tests drive it.
struct Dev {
    token: String,
}

impl Dev {
    fn from_tokens(tokens: &Value) -> Dev {
        Dev {
            token: tokens["access_token"].as_str().unwrap().to_string(),
        }
    }

    fn id(&self) -> String {
        jwt_claims(&self.token)["sid"].as_str().unwrap().to_string()
    }

    async fn get(&self, app: &TestApp, path: &str) -> reqwest::Response {
        app.http
            .get(app.url(&format!("/api/v1/sync/{path}")))
            .bearer_auth(&self.token)
            .send()
            .await
            .unwrap()
    }

    async fn put(
        &self,
        app: &TestApp,
        path: &str,
        precondition: (&str, &str),
        body: &str,
    ) -> reqwest::Response {
        app.http
            .put(app.url(&format!("/api/v1/sync/{path}")))
            .bearer_auth(&self.token)
            .header(precondition.0, precondition.1)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap()
    }

    async fn create(&self, app: &TestApp, path: &str, body: Value) -> String {
        let r = self
            .put(app, path, ("if-none-match", "*"), &body.to_string())
            .await;
        assert_eq!(
            r.status(),
            StatusCode::CREATED,
            "{}",
            r.text().await.unwrap()
        );
        etag(&r)
    }

    async fn update(&self, app: &TestApp, path: &str, tag: &str, body: Value) -> String {
        let r = self
            .put(app, path, ("if-match", tag), &body.to_string())
            .await;
        assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
        etag(&r)
    }

    async fn delete(&self, app: &TestApp, path: &str, tag: &str) -> reqwest::Response {
        app.http
            .delete(app.url(&format!("/api/v1/sync/{path}")))
            .bearer_auth(&self.token)
            .header("if-match", tag)
            .send()
            .await
            .unwrap()
    }

    async fn stream(&self, app: &TestApp, last_event_id: Option<&str>) -> Events {
        let mut request = app
            .http
            .get(app.url("/api/v1/sync/events"))
            .bearer_auth(&self.token);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        Events {
            response,
            buffer: String::new(),
        }
    }
}

fn etag(r: &reqwest::Response) -> String {
    r.headers()["etag"].to_str().unwrap().to_string()
}

/// Reads server-sent events: `id:` and `data:` lines, a blank line ends one.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

#[derive(Debug)]
enum Next {
    Event { id: String, data: Value },
    Quiet,
    Ended,
}

impl Events {
    async fn next(&mut self, wait: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut data) = (None, None);
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_string());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data = Some(serde_json::from_str(v.trim()).unwrap());
                    }
                }
                if let (Some(id), Some(data)) = (id, data) {
                    return Next::Event { id, data };
                }
                // A keep-alive comment.
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Err(_) => return Next::Quiet,
                Ok(Ok(Some(bytes))) => self.buffer.push_str(std::str::from_utf8(&bytes).unwrap()),
                Ok(Ok(None)) | Ok(Err(_)) => return Next::Ended,
            }
        }
    }

    async fn event(&mut self) -> (String, Value) {
        match self.next(Duration::from_secs(5)).await {
            Next::Event { id, data } => (id, data),
            other => panic!("expected an event, got {other:?}"),
        }
    }
}

/// A second demo-tv device linked to the account `browser` is signed in to.
async fn link_another(app: &TestApp, browser: &Browser, scope: &str) -> Dev {
    let auth = app.start_device(scope).await;
    assert!(
        browser
            .approve(&auth.user_code)
            .await
            .contains("is now linked")
    );
    Dev::from_tokens(&app.poll(&auth.device_code).await.json)
}

/// A device of another app (`client_id`) on the same account.
async fn link_other_app(app: &TestApp, browser: &Browser, client_id: &str) -> Dev {
    app.add_client(client_id, SCOPE, None).await;
    let auth = app
        .device_authorization(&[("client_id", client_id), ("scope", SCOPE)])
        .await;
    let code = auth.json["user_code"].as_str().unwrap();
    assert!(browser.approve(code).await.contains("is now linked"));
    let tokens = app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", DEVICE_GRANT),
                ("client_id", client_id),
                ("device_code", auth.json["device_code"].as_str().unwrap()),
            ],
        )
        .await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.json);
    Dev::from_tokens(&tokens.json)
}

async fn two_devices(app: &TestApp, email: &str) -> (Browser, Dev, Dev) {
    let (browser, tokens) = app.link_device(email, SCOPE).await;
    let second = link_another(app, &browser, SCOPE).await;
    (browser, Dev::from_tokens(&tokens), second)
}

#[tokio::test]
async fn a_write_on_one_device_reaches_the_others_stream() {
    let app = spawn_app().await;
    let (_, tv, phone) = two_devices(&app, "ada@example.com").await;
    let mut stream = phone.stream(&app, None).await;

    let started = Instant::now();
    let tag = tv
        .create(&app, "prefs/language", json!({"lang": "fr"}))
        .await;
    let (id, change) = stream.event().await;
    let latency = started.elapsed();
    eprintln!("write-to-event latency: {latency:?}");
    assert!(latency < Duration::from_secs(1), "{latency:?}");
    assert_eq!(id, tag.trim_matches('"'));
    assert_eq!(change["collection"], "prefs");
    assert_eq!(change["key"], "language");
    assert_eq!(change["etag"], tag);
    assert_eq!(change["deleted"], false);
    assert_eq!(change["value"], json!({"lang": "fr"}));

    // The other device reads it with its version, and 304 when unchanged.
    let read = phone.get(&app, "prefs/language").await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(etag(&read), tag);
    assert_eq!(read.headers()["content-type"], "application/json");
    assert_eq!(read.json::<Value>().await.unwrap(), json!({"lang": "fr"}));
    let same = app
        .http
        .get(app.url("/api/v1/sync/prefs/language"))
        .bearer_auth(&phone.token)
        .header("if-none-match", &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), StatusCode::NOT_MODIFIED);

    // Updates and deletions arrive too, in order. The stream sends each
    // document's latest state, so an update deleted before the stream
    // reads it arrives as the deletion alone: the update is awaited first.
    let tag2 = phone
        .update(&app, "prefs/language", &tag, json!({"lang": "de"}))
        .await;
    let (_, update) = stream.event().await;
    assert_eq!(update["value"], json!({"lang": "de"}));
    let deleted = tv.delete(&app, "prefs/language", &tag2).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    let (_, gone) = stream.event().await;
    assert_eq!(
        (gone["deleted"].clone(), gone["value"].clone()),
        (json!(true), json!(null))
    );
    assert_eq!(
        phone.get(&app, "prefs/language").await.status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn racing_writes_have_exactly_one_winner() {
    let app = spawn_app().await;
    let (_, tv, phone) = two_devices(&app, "bo@example.com").await;

    // Two creates at once.
    let (a, b) = tokio::join!(
        tv.put(&app, "show/position", ("if-none-match", "*"), r#"{"t":1}"#),
        phone.put(&app, "show/position", ("if-none-match", "*"), r#"{"t":2}"#),
    );
    let mut statuses = [a.status(), b.status()];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::CREATED, StatusCode::PRECONDITION_FAILED]
    );
    let (winner, loser) = if a.status() == StatusCode::CREATED {
        (a, b)
    } else {
        (b, a)
    };
    let tag = etag(&winner);
    let conflict: Value = loser.json().await.unwrap();
    assert_eq!(conflict["error"], "precondition_failed");
    assert_eq!(conflict["current"]["etag"], tag);

    // Two updates from the same version at once, many times over.
    let mut tag = tag;
    for round in 0..10 {
        let (tv_body, phone_body) = (
            format!(r#"{{"tv":{round}}}"#),
            format!(r#"{{"phone":{round}}}"#),
        );
        let (a, b) = tokio::join!(
            tv.put(&app, "show/position", ("if-match", &tag), &tv_body),
            phone.put(&app, "show/position", ("if-match", &tag), &phone_body),
        );
        let (winner, loser) = match (a.status(), b.status()) {
            (StatusCode::OK, StatusCode::PRECONDITION_FAILED) => (a, b),
            (StatusCode::PRECONDITION_FAILED, StatusCode::OK) => (b, a),
            other => panic!("round {round}: {other:?}"),
        };
        tag = etag(&winner);
        assert_eq!(etag(&loser), tag, "412 carries the winner's ETag");
        let conflict: Value = loser.json().await.unwrap();
        assert_eq!(conflict["current"]["etag"], tag);
        let stored: Value = tv.get(&app, "show/position").await.json().await.unwrap();
        assert_eq!(conflict["current"]["value"], stored);
    }

    // A stale version is refused; the loser merges and retries.
    let stale = tv
        .put(&app, "show/position", ("if-match", "\"1\""), "{}")
        .await;
    assert_eq!(stale.status(), StatusCode::PRECONDITION_FAILED);
    tv.update(&app, "show/position", &tag, json!({"merged": true}))
        .await;
}

#[tokio::test]
async fn a_resumed_stream_misses_nothing_and_repeats_nothing() {
    let app = spawn_app().await;
    let (_, tv, phone) = two_devices(&app, "cy@example.com").await;
    let mut stream = phone.stream(&app, None).await;
    tv.create(&app, "watch/one", json!(1)).await;
    let (last_id, _) = stream.event().await;
    drop(stream);

    // While the phone is away: three writes.
    for key in ["two", "three", "four"] {
        tv.create(&app, &format!("watch/{key}"), json!(key)).await;
    }
    let mut resumed = phone.stream(&app, Some(&last_id)).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        let (id, change) = resumed.event().await;
        seen.push((id, change["key"].as_str().unwrap().to_string()));
    }
    let keys: Vec<&str> = seen.iter().map(|(_, k)| k.as_str()).collect();
    assert_eq!(keys, ["two", "three", "four"]);
    let ids: Vec<i64> = seen.iter().map(|(id, _)| id.parse().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    assert!(matches!(
        resumed.next(Duration::from_millis(300)).await,
        Next::Quiet
    ));
    // Live changes keep coming on the resumed stream.
    tv.create(&app, "watch/five", json!(5)).await;
    assert_eq!(resumed.event().await.1["key"], "five");

    // The change feed pages through the same history.
    let page: Value = phone
        .get(&app, "watch?since=0&limit=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(page["more"], true);
    assert_eq!(page["changes"].as_array().unwrap().len(), 2);
    let next = page["next"].as_i64().unwrap();
    let rest: Value = phone
        .get(&app, &format!("watch?since={next}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(rest["more"], false);
    let keys: Vec<&str> = rest["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["three", "four", "five"]);
}

#[tokio::test]
async fn other_accounts_other_apps_and_unlinked_devices_are_refused() {
    let app = spawn_app().await;
    let (browser, tv, phone) = two_devices(&app, "di@example.com").await;
    tv.create(&app, "prefs/theme", json!("dark")).await;
    tv.create(&app, "account/avatar", json!({"url": "a.png"}))
        .await;

    // Another person's device sees nothing of it.
    let (_, stranger) = app.link_device("eve@example.com", SCOPE).await;
    let stranger = Dev::from_tokens(&stranger);
    assert_eq!(
        stranger.get(&app, "prefs/theme").await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        stranger.get(&app, "account/avatar").await.status(),
        StatusCode::NOT_FOUND
    );
    // Writing there lands in the stranger's own account.
    stranger.create(&app, "prefs/theme", json!("light")).await;
    let mine: Value = tv.get(&app, "prefs/theme").await.json().await.unwrap();
    assert_eq!(mine, json!("dark"));

    // Another app of the same person: only the shared collection.
    let radio = link_other_app(&app, &browser, "radio").await;
    assert_eq!(
        radio.get(&app, "prefs/theme").await.status(),
        StatusCode::NOT_FOUND
    );
    let avatar: Value = radio
        .get(&app, "account/avatar")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(avatar, json!({"url": "a.png"}));
    let mut radio_stream = radio.stream(&app, Some("0")).await;
    let (_, first) = radio_stream.event().await;
    assert_eq!(first["collection"], "account", "{first}");

    // Without the sync scope: 403 insufficient_scope.
    let plain = link_another(&app, &browser, "openid offline_access").await;
    let refused = plain.get(&app, "prefs/theme").await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error"],
        "insufficient_scope"
    );

    // Unlinking cuts the device off at once, open stream included.
    let mut stream = phone.stream(&app, None).await;
    let page = browser
        .get(&format!("/devices/{}/unlink", phone.id()))
        .await;
    let unlinked = browser
        .post(
            &format!("/devices/{}/unlink", phone.id()),
            &[("csrf", &page.csrf())],
        )
        .await;
    assert_eq!(unlinked.status, StatusCode::SEE_OTHER);
    let started = Instant::now();
    assert!(matches!(
        stream.next(Duration::from_secs(3)).await,
        Next::Ended
    ));
    eprintln!("unlink-to-stream-end: {:?}", started.elapsed());
    assert_eq!(
        phone.get(&app, "prefs/theme").await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        phone
            .put(&app, "prefs/theme", ("if-none-match", "*"), "1")
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.get_bearer("/api/v1/sync/events", &phone.token)
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn limits_and_bad_input_get_clear_errors() {
    let app = spawn_app_with(Options {
        configure: Box::new(|c| {
            c.sync_max_document_bytes = 100;
            c.sync_max_documents = 3;
            c.sync_writes_per_device = 8;
        }),
        ..Options::default()
    })
    .await;
    let (_, tokens) = app.link_device("fa@example.com", SCOPE).await;
    let tv = Dev::from_tokens(&tokens);
    let expect = |status: StatusCode, error: &'static str| {
        move |(got, body): (StatusCode, Value)| {
            assert_eq!(
                (got, body["error"].as_str().unwrap()),
                (status, error),
                "{body}"
            );
            assert!(body["error_description"].is_string());
        }
    };
    async fn answer(r: reqwest::Response) -> (StatusCode, Value) {
        let status = r.status();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: {text}"));
        (status, body)
    }

    expect(StatusCode::PRECONDITION_REQUIRED, "precondition_required")(
        answer(
            app.http
                .put(app.url("/api/v1/sync/prefs/a"))
                .bearer_auth(&tv.token)
                .body("1")
                .send()
                .await
                .unwrap(),
        )
        .await,
    );
    let bad = StatusCode::BAD_REQUEST;
    for path in [
        "Prefs/a",
        "events/a",
        "prefs/a~b",
        "prefs/a%20b",
        "prefs/%C3%A9",
    ] {
        expect(bad, "invalid_request")(
            answer(tv.put(&app, path, ("if-none-match", "*"), "1").await).await,
        );
    }
    expect(bad, "invalid_request")(
        answer(
            tv.put(&app, "prefs/a", ("if-none-match", "*"), "{not json")
                .await,
        )
        .await,
    );
    expect(bad, "invalid_request")(
        answer(tv.put(&app, "prefs/a", ("if-match", "7"), "1").await).await,
    );
    expect(bad, "invalid_request")(answer(tv.get(&app, "prefs?since=-1").await).await);
    expect(StatusCode::PAYLOAD_TOO_LARGE, "document_too_large")(
        answer(
            tv.put(
                &app,
                "prefs/a",
                ("if-none-match", "*"),
                &format!("\"{}\"", "x".repeat(200)),
            )
            .await,
        )
        .await,
    );
    // 64 KiB + more: still a JSON 413, not the server-wide form limit.
    expect(StatusCode::PAYLOAD_TOO_LARGE, "document_too_large")(
        answer(
            tv.put(
                &app,
                "prefs/a",
                ("if-none-match", "*"),
                &format!("\"{}\"", "x".repeat(70_000)),
            )
            .await,
        )
        .await,
    );
    expect(StatusCode::PRECONDITION_FAILED, "precondition_failed")(
        answer(tv.delete(&app, "prefs/nothing", "\"1\"").await).await,
    );

    // Three documents fit; the fourth does not, until one is deleted.
    let mut tags = Vec::new();
    for key in ["a", "b", "c"] {
        tags.push(tv.create(&app, &format!("prefs/{key}"), json!(key)).await);
    }
    expect(StatusCode::CONFLICT, "too_many_documents")(
        answer(tv.put(&app, "prefs/d", ("if-none-match", "*"), "1").await).await,
    );
    assert_eq!(
        tv.delete(&app, "prefs/a", &tags[0]).await.status(),
        StatusCode::NO_CONTENT
    );
    tv.create(&app, "prefs/d", json!("d")).await;

    // 8 writes per minute per device (refused writes that reached the
    // store count too): write until refused.
    let mut tag = tags[1].clone();
    let refused = loop {
        let r = tv.put(&app, "prefs/b", ("if-match", &tag), "2").await;
        if r.status() != StatusCode::OK {
            break r;
        }
        tag = etag(&r);
    };
    assert!(refused.headers().contains_key("retry-after"));
    expect(StatusCode::TOO_MANY_REQUESTS, "slow_down")(answer(refused).await);
    // Reads are not rate limited, and the window reopens.
    assert_eq!(tv.get(&app, "prefs/b").await.status(), StatusCode::OK);
    app.clock.advance_secs(61);
    tv.update(&app, "prefs/b", &tag, json!(3)).await;
}

#[tokio::test]
async fn settings_survive_a_restart() {
    let db = TestDatabase::new().await;
    let app = spawn_on(db.clone(), Options::default()).await;
    let (_, tokens) = app.link_device("gu@example.com", SCOPE).await;
    let tv = Dev::from_tokens(&tokens);
    let tag = tv
        .create(&app, "watch/last", json!({"show": "x", "at": 1234}))
        .await;
    // A second server on the same file, with its own connections: it sees
    // only what was committed to the file.
    // Same public URL, so the device's token is still for this issuer.
    let issuer = app.base.clone();
    let again = spawn_on(
        db,
        Options {
            configure: Box::new(move |c| c.public_url = Some(issuer)),
            ..Options::default()
        },
    )
    .await;
    let read = tv.get(&again, "watch/last").await;
    assert_eq!(read.status(), StatusCode::OK);
    assert_eq!(etag(&read), tag);
    assert_eq!(
        read.json::<Value>().await.unwrap(),
        json!({"show": "x", "at": 1234})
    );
    // The sequence carries on: the next version is newer.
    let next = tv.update(&again, "watch/last", &tag, json!({})).await;
    let n = |t: &str| t.trim_matches('"').parse::<i64>().unwrap();
    assert!(n(&next) > n(&tag));
}

#[tokio::test]
async fn the_account_page_shows_and_deletes_what_apps_store() {
    let app = spawn_app().await;
    let (browser, tv, phone) = two_devices(&app, "hu@example.com").await;
    tv.create(&app, "watch/a", json!({"ep": 1})).await;
    tv.create(&app, "watch/b", json!({"ep": 2})).await;
    tv.create(&app, "account/language", json!("fr")).await;

    let page = browser.get("/account").await;
    for text in [
        "Settings kept in sync",
        "Settings kept in sync for Demo TV",
        "2 settings (watch, ",
        "Settings kept in sync for all your apps",
        "1 setting (account, ",
        "Last changed",
    ] {
        assert!(
            page.contains(text),
            "account page lacks {text:?}: {}",
            page.body
        );
    }

    let mut stream = phone.stream(&app, None).await;
    let wrong = browser
        .post(
            "/account/sync/delete",
            &[
                ("csrf", "nope"),
                ("app", "demo-tv"),
                ("collection", "watch"),
            ],
        )
        .await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let done = browser
        .post(
            "/account/sync/delete",
            &[
                ("csrf", &page.csrf()),
                ("app", "demo-tv"),
                ("collection", "watch"),
            ],
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER);
    let after = browser.get("/account").await;
    assert!(!after.contains("2 settings (watch, "), "{}", after.body);
    assert!(after.contains("1 setting (account, "));
    // Devices see the deletions.
    for _ in 0..2 {
        let (_, change) = stream.event().await;
        assert_eq!(
            (change["collection"].clone(), change["deleted"].clone()),
            (json!("watch"), json!(true))
        );
    }
    assert_eq!(
        phone.get(&app, "watch/a").await.status(),
        StatusCode::NOT_FOUND
    );
    assert!(
        app.get_bearer("/.well-known/openid-configuration", "")
            .await
            .json::<Value>()
            .await
            .unwrap()["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("sync"))
    );
}

/// A token file for the terminal device (`linkd device --token-file`),
/// in a directory that lives as long as the returned guard.
fn token_file(app: &TestApp, tokens: &Value) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("device.json");
    let tokens: linkd_device::Tokens = serde_json::from_value(tokens.clone()).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    linkd_device::SavedTokens::new(&app.base, "demo-tv", &tokens, now)
        .save(&file)
        .unwrap();
    (dir, file)
}

#[tokio::test]
async fn the_device_library_and_terminal_device_sync() {
    use linkd_device::{SyncPrecondition, SyncWrite};
    use tokio::io::AsyncBufReadExt;

    let app = spawn_app().await;
    let (browser, tokens) = app.link_device("iv@example.com", SCOPE).await;
    let other = link_another(&app, &browser, SCOPE).await;
    let device = linkd_device::Device::discover(&app.base, "demo-tv")
        .await
        .unwrap();
    let token = tokens["access_token"].as_str().unwrap();

    // The library: create, conflict with the winner's version, changes.
    let created = device
        .sync_put(
            token,
            "prefs",
            "volume",
            &json!(3),
            SyncPrecondition::Create,
        )
        .await
        .unwrap();
    let SyncWrite::Written { etag: first } = created else {
        panic!("{created:?}")
    };
    let newer = other.update(&app, "prefs/volume", &first, json!(7)).await;
    let conflict = device
        .sync_put(
            token,
            "prefs",
            "volume",
            &json!(4),
            SyncPrecondition::Match(&first),
        )
        .await
        .unwrap();
    match conflict {
        SyncWrite::Conflict { current: Some(c) } => {
            assert_eq!((c.etag, c.value), (newer.clone(), json!(7)));
        }
        other => panic!("{other:?}"),
    }
    let read = device
        .sync_get(token, "prefs", "volume")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((read.etag.as_str(), read.value), (newer.as_str(), json!(7)));
    let changes = device.sync_changes(token, "prefs", 0).await.unwrap();
    assert_eq!(changes.changes.len(), 1);
    assert!(!changes.more);
    let mut watch = device.sync_watch(token, Some(0)).await.unwrap();
    assert_eq!(watch.next().await.unwrap().unwrap().etag, newer);

    // The terminal device, with a saved token file.
    let (_dir, file) = token_file(&app, &tokens);
    let cli = |args: &[&str]| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_linkd"));
        cmd.args(["device", "--server", &app.base, "--token-file"])
            .arg(&file)
            .args(["sync"])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        cmd
    };
    let mut watcher = cli(&["watch"]).spawn().unwrap();
    let mut lines = tokio::io::BufReader::new(watcher.stdout.take().unwrap()).lines();
    // Give the watcher time to connect; it starts from now.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let put = cli(&["put", "prefs", "volume", "9"])
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&put.stdout);
    assert!(
        put.status.success(),
        "{said} {}",
        String::from_utf8_lossy(&put.stderr)
    );
    assert!(said.contains("stored prefs/volume"), "{said}");
    let get = cli(&["get", "prefs", "volume"]).output().await.unwrap();
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "9");
    let stale = cli(&["put", "prefs", "volume", "10", "--if-match", &first])
        .output()
        .await
        .unwrap();
    assert!(!stale.status.success());
    assert!(String::from_utf8_lossy(&stale.stderr).contains("changed meanwhile"));

    let line = tokio::time::timeout(Duration::from_secs(5), lines.next_line())
        .await
        .expect("watch prints the change")
        .unwrap()
        .unwrap();
    let change: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (change["key"].clone(), change["value"].clone()),
        (json!("volume"), json!(9))
    );
}

/// A change-feed or event-stream answer that must be the 410 telling the
/// device to read everything again.
async fn assert_resync_required(r: reqwest::Response) {
    assert_eq!(r.status(), StatusCode::GONE);
    assert_eq!(r.headers()["cache-control"], "no-store");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "resync_required", "{body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(description.contains("since=0"), "{description}");
}

/// The keys (and whether deleted) of a feed page, in order.
async fn feed(dev: &Dev, app: &TestApp, since: i64) -> Vec<(String, bool)> {
    let r = dev.get(app, &format!("prefs?since={since}")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let body: Value = r.json().await.unwrap();
    body["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["key"].as_str().unwrap().to_string(),
                c["deleted"].as_bool().unwrap(),
            )
        })
        .collect()
}

fn keys(list: &[(&str, bool)]) -> Vec<(String, bool)> {
    list.iter().map(|(k, d)| (k.to_string(), *d)).collect()
}

/// An event stream request that must be refused.
async fn stream_from(dev: &Dev, app: &TestApp, last_event_id: &str) -> reqwest::Response {
    app.http
        .get(app.url("/api/v1/sync/events"))
        .bearer_auth(&dev.token)
        .header("last-event-id", last_event_id)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn deletions_make_room_and_an_older_cursor_must_resync() {
    let app = spawn_app_with(Options {
        configure: Box::new(|c| c.sync_max_documents = 3),
        ..Options::default()
    })
    .await;
    let (_, tokens) = app.link_device("tomb@example.com", SCOPE).await;
    let tv = Dev::from_tokens(&tokens);
    // seq 1-3: a, b, c; seq 4, 5: a and b deleted. Three rows: the limit.
    let a = tv.create(&app, "prefs/a", json!(1)).await;
    let b = tv.create(&app, "prefs/b", json!(2)).await;
    tv.create(&app, "prefs/c", json!(3)).await;
    for (key, tag) in [("a", &a), ("b", &b)] {
        let r = tv.delete(&app, &format!("prefs/{key}"), tag).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT);
    }
    assert_eq!(feed(&tv, &app, 3).await, keys(&[("a", true), ("b", true)]));

    // A new document needs room: a's tombstone (seq 4) goes, atomically.
    assert_eq!(tv.create(&app, "prefs/d", json!(4)).await, "\"6\"");
    assert_eq!(
        feed(&tv, &app, 0).await,
        keys(&[("c", false), ("b", true), ("d", false)])
    );
    // A device that had read up to seq 3 never heard of a's deletion.
    assert_resync_required(tv.get(&app, "prefs?since=3").await).await;
    assert_resync_required(stream_from(&tv, &app, "3").await).await;
    // One that read seq 4 did, and goes on.
    assert_eq!(feed(&tv, &app, 4).await, keys(&[("b", true), ("d", false)]));
    assert_eq!(stream_from(&tv, &app, "4").await.status(), StatusCode::OK);

    // Reviving b's tombstone reuses its row: nothing is purged.
    assert_eq!(tv.create(&app, "prefs/b", json!(5)).await, "\"7\"");
    assert_eq!(
        feed(&tv, &app, 4).await,
        keys(&[("d", false), ("b", false)])
    );
    // Three live documents: the limit refuses, tombstones or not.
    let r = tv.put(&app, "prefs/e", ("if-none-match", "*"), "1").await;
    assert_eq!(r.status(), StatusCode::CONFLICT);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "too_many_documents");

    // Delete all three, then fill up again: each creation purges the
    // oldest tombstone, so rows never pass the limit.
    for (key, tag) in [("c", "\"3\""), ("d", "\"6\""), ("b", "\"7\"")] {
        let r = tv.delete(&app, &format!("prefs/{key}"), tag).await;
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "{key}");
    }
    for key in ["x", "y"] {
        tv.create(&app, &format!("prefs/{key}"), json!(key)).await;
    }
    // seq 8-10 deleted c, d, b; x (11) purged c, y (12) purged d.
    assert_eq!(
        feed(&tv, &app, 0).await,
        keys(&[("b", true), ("x", false), ("y", false)])
    );
    assert_resync_required(tv.get(&app, "prefs?since=8").await).await;
    assert_eq!(
        feed(&tv, &app, 9).await,
        keys(&[("b", true), ("x", false), ("y", false)])
    );
    // The person's page counts live documents only.
    let usage = app
        .state
        .store
        .sync_usage(jwt_claims(&tv.token)["sub"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(usage[0].documents, 2);
}

#[tokio::test]
async fn old_tombstones_are_purged_and_the_device_library_resyncs() {
    use tokio::io::AsyncBufReadExt;

    let app = spawn_app_with(Options {
        configure: Box::new(|c| c.sync_tombstone_retention = 100),
        ..Options::default()
    })
    .await;
    let (_, tokens) = app.link_device("old@example.com", SCOPE).await;
    let tv = Dev::from_tokens(&tokens);
    let a = tv.create(&app, "prefs/a", json!(1)).await;
    let b = tv.create(&app, "prefs/b", json!(2)).await;
    assert_eq!(
        tv.delete(&app, "prefs/a", &a).await.status(),
        StatusCode::NO_CONTENT
    );
    app.clock.advance_secs(50);
    assert_eq!(
        tv.delete(&app, "prefs/b", &b).await.status(),
        StatusCode::NO_CONTENT
    );
    tv.create(&app, "prefs/c", json!(3)).await;

    // Younger than the retention: kept.
    linkd::jobs::purge_now(&app.state).await.unwrap();
    assert_eq!(
        feed(&tv, &app, 2).await,
        keys(&[("a", true), ("b", true), ("c", false)])
    );
    // a's tombstone (seq 3) is 101 s old, b's (seq 4) 51 s.
    app.clock.advance_secs(51);
    linkd::jobs::purge_now(&app.state).await.unwrap();
    assert_resync_required(tv.get(&app, "prefs?since=2").await).await;
    assert_eq!(feed(&tv, &app, 3).await, keys(&[("b", true), ("c", false)]));
    app.clock.advance_secs(50);
    linkd::jobs::purge_now(&app.state).await.unwrap();
    assert_resync_required(tv.get(&app, "prefs?since=3").await).await;
    assert_resync_required(stream_from(&tv, &app, "3").await).await;
    assert_eq!(feed(&tv, &app, 0).await, keys(&[("c", false)]));

    // The device library: a typed error, and 0 works.
    let device = linkd_device::Device::discover(&app.base, "demo-tv")
        .await
        .unwrap();
    let token = tokens["access_token"].as_str().unwrap();
    assert!(matches!(
        device.sync_changes(token, "prefs", 3).await,
        Err(linkd_device::Error::ResyncRequired)
    ));
    assert!(matches!(
        device.sync_watch(token, Some(3)).await.err(),
        Some(linkd_device::Error::ResyncRequired)
    ));
    let all = device.sync_changes(token, "prefs", 0).await.unwrap();
    assert_eq!(all.changes.len(), 1);
    assert_eq!(all.next, 5);

    // The terminal device told to resync reads everything again from 0.
    let (_dir, file) = token_file(&app, &tokens);
    let mut watcher = tokio::process::Command::new(env!("CARGO_BIN_EXE_linkd"))
        .args(["device", "--server", &app.base, "--token-file"])
        .arg(&file)
        .args(["sync", "watch", "--since", "3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(watcher.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("watch reads everything again")
        .unwrap()
        .unwrap();
    let change: Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (change["seq"].clone(), change["key"].clone()),
        (json!(5), json!("c"))
    );
}

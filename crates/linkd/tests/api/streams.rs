//! Caps on open settings event streams (streams.rs): per device and per
//! account, taken atomically so a burst gets no more than the cap, and
//! given back when a stream closes.

use std::time::{Duration, Instant};

use futures::future::join_all;
use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::connections::connect_from;
use crate::helpers::*;

const SCOPE: &str = "openid offline_access sync";

/// Reads a response head, and the body when it is a JSON error.
async fn answer(stream: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&seen);
        if text.starts_with("HTTP/1.1 200") && text.contains("\r\n\r\n") || text.ends_with('}') {
            return text.into_owned();
        }
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf))
            .await
            .expect("an answer within 10 s")
            .unwrap_or(0);
        if n == 0 {
            return text.into_owned();
        }
        seen.extend_from_slice(&buf[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_capped_per_device_and_per_account() {
    let app = spawn_app_with(Options {
        configure: Box::new(|c| {
            c.max_streams_per_device = 2;
            c.max_streams_per_account = 3;
        }),
        ..Default::default()
    })
    .await;
    let server = app.state.config.listen;
    let (browser, tokens) = app.link_device("streams@example.com", SCOPE).await;
    let tv = tokens["access_token"].as_str().unwrap().to_string();
    let auth = app.start_device(SCOPE).await;
    assert!(
        browser
            .approve(&auth.user_code)
            .await
            .contains("is now linked")
    );
    let phone = app.poll(&auth.device_code).await.json["access_token"]
        .as_str()
        .unwrap()
        .to_string();

    // 40 opens on one token from four addresses, every request held back
    // by its last byte, then released together.
    let request = format!(
        "GET /api/v1/sync/events HTTP/1.1\r\nHost: linkd\r\nAuthorization: Bearer {tv}\r\n\r\n"
    );
    let (most, last) = request.as_bytes().split_at(request.len() - 1);
    let mut burst = Vec::new();
    for i in 0..40u8 {
        let mut stream = connect_from([127, 0, 0, 50 + i % 4], server).await;
        stream.write_all(most).await.unwrap();
        burst.push(stream);
    }
    join_all(burst.iter_mut().map(|s| s.write_all(last))).await;
    let answers = join_all(burst.iter_mut().map(answer)).await;
    let opened = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 200"))
        .count();
    let refused: Vec<&String> = answers
        .iter()
        .filter(|a| a.starts_with("HTTP/1.1 429"))
        .collect();
    assert_eq!((opened, refused.len()), (2, 38), "{answers:?}");
    assert!(
        refused[0].contains(
            r#""error":"too_many_streams","error_description":"this device already has 2 open event streams; close one before opening another""#
        ),
        "{}",
        refused[0]
    );
    let mut open: Vec<TcpStream> = burst
        .into_iter()
        .zip(&answers)
        .filter(|(_, a)| a.starts_with("HTTP/1.1 200"))
        .map(|(s, _)| s)
        .collect();

    // The account's third stream is the phone's; its fourth is refused.
    let first = app.get_bearer("/api/v1/sync/events", &phone).await;
    assert_eq!(first.status(), StatusCode::OK);
    let over = reply(app.get_bearer("/api/v1/sync/events", &phone).await).await;
    assert_eq!(
        (over.status, over.error()),
        (StatusCode::TOO_MANY_REQUESTS, "too_many_streams")
    );
    assert_eq!(
        over.json["error_description"],
        "this account's devices already have 3 open event streams; close one before opening another"
    );

    // A closed stream gives its place back.
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let again = app.get_bearer("/api/v1/sync/events", &phone).await;
        if again.status() == StatusCode::OK {
            break;
        }
        assert_eq!(again.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(
            Instant::now() < deadline,
            "the closed stream kept its place"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(first);
}

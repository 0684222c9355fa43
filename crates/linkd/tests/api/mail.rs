//! Mail through the outbox to a real SMTP server (npm `smtp-server`,
//! `tests/smtp/server.mjs`, installed by scripts/test) that these tests
//! start, stop and read from: every message arrives exactly once, across
//! an SMTP outage, a linkd restart and several instances.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use linkd::i18n::{Lang, Text};
use linkd::mail::Mail;
use linkd::store::OutboxMessage;
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::*;

/// The test SMTP server: a node process writing each accepted message to
/// a JSON file in its own directory.
pub struct SmtpServer {
    dir: tempfile::TempDir,
    pub port: u16,
    child: Option<Child>,
}

fn script_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/smtp")
}

impl SmtpServer {
    pub async fn start() -> SmtpServer {
        let mut server = SmtpServer {
            dir: tempfile::tempdir().expect("mail dir"),
            port: 0,
            child: None,
        };
        server.run().await;
        server
    }

    async fn run(&mut self) {
        let dir = script_dir();
        assert!(
            dir.join("node_modules/smtp-server/package.json").exists(),
            "the test SMTP server is not installed: run `npm ci` in {} (scripts/test does)",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg(dir.join("server.mjs"))
            .arg(self.dir.path())
            .arg(self.port.to_string())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run node (is it on PATH?): {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("the SMTP server starts within 20 s")
            .expect("read its stdout")
            .expect("it says where it listens");
        self.port = line
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        self.child = Some(child);
    }

    /// Stops the server; its port then refuses connections.
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().await.expect("stop the SMTP server");
        }
    }

    /// Starts it again on the same port, keeping what it received.
    pub async fn start_again(&mut self) {
        self.run().await;
    }

    /// `--smtp-url` for this server, with the login it accepts.
    pub fn url(&self) -> String {
        format!("smtp://user:secret@127.0.0.1:{}", self.port)
    }

    /// Every message received so far, oldest first.
    pub fn messages(&self) -> Vec<Value> {
        let mut names: Vec<_> = std::fs::read_dir(self.dir.path())
            .expect("read mail dir")
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|p| serde_json::from_slice(&std::fs::read(p).expect("read mail")).expect("json"))
            .collect()
    }

    /// The messages whose subject starts with `subject`, oldest first
    /// (accounts made by signing up get a verification mail too).
    pub fn messages_about(&self, subject: &str) -> Vec<Value> {
        self.messages()
            .into_iter()
            .filter(|m| m["subject"].as_str().unwrap_or("").starts_with(subject))
            .collect()
    }

    /// Waits (10 s at most) until at least `n` messages whose subject
    /// starts with `subject` arrived; returns those.
    pub async fn wait_for_about(&self, n: usize, subject: &str) -> Vec<Value> {
        for _ in 0..200 {
            let got = self.messages_about(subject);
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "expected {n} messages about {subject:?}, got {:?}",
            self.messages()
        );
    }

    /// Waits (10 s at most) until at least `n` messages arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Value> {
        for _ in 0..200 {
            let got = self.messages();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "expected {n} messages, got {}: {:?}",
            self.messages().len(),
            self.messages()
        );
    }
}

/// An app that sends mail through `smtp`.
pub fn with_smtp(smtp: &SmtpServer) -> Options {
    let url = smtp.url();
    Options {
        configure: Box::new(move |c| {
            c.smtp_url = Some(url);
            c.mail_from = Some("Acme Link <no-reply@acme.test>".into());
        }),
        ..Options::default()
    }
}

fn test_mail(app: &TestApp, to: &str, n: usize) -> OutboxMessage {
    Mail {
        to: to.into(),
        lang: Lang::En,
        subject: Text::Plain(format!("Message {n}")),
        lines: vec![Text::Plain(format!("Body of message {n} <b>"))],
        action: Some((Text::Plain("Open".into()), format!("{}/x?n={n}", app.base))),
        footer: None,
    }
    .to_outbox(&app.state.brand, app.state.clock.now())
}

async fn enqueue(app: &TestApp, messages: &[OutboxMessage]) {
    app.state.store.enqueue(messages).await.unwrap();
    app.state.outbox.wake();
}

/// The outbox ids of the received messages (from their Message-ID).
fn received_ids(messages: &[Value]) -> Vec<String> {
    messages
        .iter()
        .map(|m| {
            let id = m["messageId"].as_str().expect("a Message-ID");
            id.trim_start_matches('<')
                .split('@')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

/// Waits (10 s at most) until `check` holds of the outbox.
async fn outbox_until(app: &TestApp, what: &str, check: impl Fn(&[OutboxMessage]) -> bool) {
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
async fn queued_mail_is_sent_with_text_html_and_the_login() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(with_smtp(&smtp)).await;
    let messages: Vec<_> = (0..3)
        .map(|n| test_mail(&app, "ada@example.com", n))
        .collect();
    enqueue(&app, &messages).await;

    let got = smtp.wait_for(3).await;
    assert_eq!(got.len(), 3);
    let first = &got
        .iter()
        .find(|m| m["subject"] == "Message 0")
        .expect("message 0");
    assert_eq!(first["from"], "no-reply@acme.test");
    assert_eq!(first["to"], serde_json::json!(["ada@example.com"]));
    assert_eq!(first["user"], "user", "sent after logging in");
    let text = first["text"].as_str().unwrap();
    assert!(text.contains("Body of message 0 <b>"), "{text}");
    assert!(text.contains(&format!("{}/x?n=0", app.base)), "{text}");
    let html = first["html"].as_str().unwrap();
    assert!(html.contains("Body of message 0 &lt;b&gt;"), "{html}");
    let mut ids = received_ids(&got);
    ids.sort();
    let mut sent: Vec<String> = messages.iter().map(|m| m.id.clone()).collect();
    sent.sort();
    assert_eq!(ids, sent, "one mail per outbox message, named by its id");
    outbox_until(&app, "emptied", |o| o.is_empty()).await;
}

#[tokio::test]
async fn an_smtp_outage_and_a_restart_lose_nothing_and_send_once() {
    let mut smtp = SmtpServer::start().await;
    smtp.stop().await;
    let db = TestDatabase::new().await;
    let first = spawn_on(db.clone(), with_smtp(&smtp)).await;
    let messages: Vec<_> = (0..5)
        .map(|n| test_mail(&first, &format!("p{n}@example.com"), n))
        .collect();
    enqueue(&first, &messages).await;

    // Each is tried, fails (nobody listens) and waits for its retry.
    outbox_until(&first, "tried every message", |o| {
        o.len() == 5
            && o.iter().all(|m| {
                m.attempts == 1
                    && m.lease.is_none()
                    && m.last_error.is_some()
                    && m.failed_at.is_none()
            })
    })
    .await;
    let now = first.state.clock.now();
    for m in first.state.store.list_outbox().await.unwrap() {
        assert_eq!(m.next_attempt_at, now + linkd::outbox::backoff(1));
    }

    // linkd stops while the mail is queued, SMTP comes back, linkd starts
    // again: the retries come due and every message arrives once.
    first.stop().await;
    smtp.start_again().await;
    let second = spawn_on(db, with_smtp(&smtp)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        smtp.messages().is_empty(),
        "nothing before the retry is due"
    );
    second.clock.advance_secs(linkd::outbox::backoff(1));
    let got = smtp.wait_for(5).await;
    outbox_until(&second, "emptied", |o| o.is_empty()).await;
    // More worker rounds change nothing.
    second.clock.advance_secs(3600);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got_later = smtp.messages();
    assert_eq!(got_later.len(), 5, "{got:?}");
    let ids: HashSet<String> = received_ids(&got_later).into_iter().collect();
    let sent: HashSet<String> = messages.iter().map(|m| m.id.clone()).collect();
    assert_eq!(ids, sent);
}

#[tokio::test]
async fn two_instances_send_each_message_once() {
    let smtp = SmtpServer::start().await;
    let db = TestDatabase::new().await;
    let one = spawn_on(db.clone(), with_smtp(&smtp)).await;
    let two = spawn_on(db, with_smtp(&smtp)).await;
    let messages: Vec<_> = (0..60)
        .map(|n| test_mail(&one, "ada@example.com", n))
        .collect();
    one.state.store.enqueue(&messages).await.unwrap();
    // Both workers go at once.
    one.state.outbox.wake();
    two.state.outbox.wake();
    smtp.wait_for(60).await;
    outbox_until(&one, "emptied", |o| o.is_empty()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = smtp.messages();
    let ids: Vec<String> = received_ids(&got);
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), 60, "no message twice");
    assert_eq!(unique.len(), 60);
}

#[tokio::test]
async fn a_refused_recipient_fails_for_good_without_retries() {
    let smtp = SmtpServer::start().await;
    let app = spawn_app_with(with_smtp(&smtp)).await;
    let refused = test_mail(&app, "refused@example.com", 1);
    let fine = test_mail(&app, "ada@example.com", 2);
    enqueue(&app, &[refused.clone(), fine]).await;
    smtp.wait_for(1).await;
    outbox_until(&app, "marked the refused message failed", |o| {
        o.len() == 1 && o[0].id == refused.id && o[0].failed_at.is_some()
    })
    .await;
    let failed = &app.state.store.list_outbox().await.unwrap()[0];
    assert_eq!(failed.attempts, 1);
    assert!(
        failed.last_error.as_deref().unwrap_or("").contains("550"),
        "{failed:?}"
    );
    // The purge takes it once the operator had time to look.
    app.clock.advance_secs(linkd::outbox::KEEP_FAILED_SECS + 1);
    linkd::jobs::purge_now(&app.state).await.unwrap();
    assert!(app.state.store.list_outbox().await.unwrap().is_empty());
    assert_eq!(smtp.messages().len(), 1);
}

#[tokio::test]
async fn without_smtp_mail_waits_in_the_outbox() {
    let app = spawn_app().await;
    assert!(!app.state.outbox.sends(linkd::store::OutboxKind::Mail));
    let m = test_mail(&app, "ada@example.com", 1);
    enqueue(&app, std::slice::from_ref(&m)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let left = app.state.store.list_outbox().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].attempts, 0);
}

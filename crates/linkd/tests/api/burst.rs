//! Requests sent the way an attacker sends them: every connection opened
//! first (each from its own source address in 127.0.0.0/8 if asked), all
//! of each request but its last byte written, then the last bytes released
//! together, so the server sees one burst rather than a sequence.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

use crate::helpers::{TestApp, hidden_field};

/// One answer as read off the wire.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    /// The raw header block, lower-cased names.
    pub head: String,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| {
            let (n, v) = line.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }

    /// Whether the answer sets a cookie called `name` to a non-empty value.
    pub fn sets_cookie(&self, name: &str) -> bool {
        self.head.lines().any(|line| {
            line.split_once(':').is_some_and(|(n, v)| {
                n.eq_ignore_ascii_case("set-cookie")
                    && v.trim().starts_with(&format!("{name}="))
                    && !v.trim().starts_with(&format!("{name}=;"))
            })
        })
    }
}

/// A connection with all of its request written but the last byte.
pub struct Armed {
    stream: TcpStream,
    last: u8,
}

/// Opens a connection to `app` (from `source` if given) and writes all
/// of `request` but its last byte.
pub async fn arm(app: &TestApp, source: Option<IpAddr>, request: Vec<u8>) -> Armed {
    // A server reached as `localhost` (passkeys need a domain) listens
    // on 127.0.0.1 all the same.
    let server: SocketAddr = app
        .base
        .trim_start_matches("http://")
        .replace("localhost", "127.0.0.1")
        .parse()
        .unwrap();
    let socket = TcpSocket::new_v4().unwrap();
    if let Some(source) = source {
        socket.bind(SocketAddr::new(source, 0)).unwrap();
    }
    let mut stream = socket.connect(server).await.unwrap();
    let (last, head) = request.split_last().unwrap();
    stream.write_all(head).await.unwrap();
    Armed {
        stream,
        last: *last,
    }
}

/// Arms one connection per request, `(source, request)`.
pub async fn arm_all(app: &TestApp, requests: Vec<(Option<IpAddr>, Vec<u8>)>) -> Vec<Armed> {
    let mut armed = Vec::with_capacity(requests.len());
    for (source, request) in requests {
        armed.push(arm(app, source, request).await);
    }
    armed
}

/// Releases every last byte together; answers arrive on the channel as
/// `(index, answer)` in the order they come.
pub async fn fire(armed: Vec<Armed>) -> mpsc::UnboundedReceiver<(usize, Answer)> {
    let (tx, rx) = mpsc::unbounded_channel();
    let gate = std::sync::Arc::new(tokio::sync::Barrier::new(armed.len() + 1));
    for (i, Armed { mut stream, last }) in armed.into_iter().enumerate() {
        let tx = tx.clone();
        let gate = gate.clone();
        tokio::spawn(async move {
            gate.wait().await;
            stream.write_all(&[last]).await.unwrap();
            let _ = tx.send((i, read_answer(stream).await));
        });
    }
    gate.wait().await;
    rx
}

/// Fires a burst and waits for all its answers, in request order.
pub async fn burst(app: &TestApp, requests: Vec<(Option<IpAddr>, Vec<u8>)>) -> Vec<Answer> {
    let n = requests.len();
    let mut rx = fire(arm_all(app, requests).await).await;
    collect(&mut rx, n).await
}

/// The next `n` answers from a fired burst, in request order.
pub async fn collect(rx: &mut mpsc::UnboundedReceiver<(usize, Answer)>, n: usize) -> Vec<Answer> {
    let mut got: Vec<(usize, Answer)> = Vec::with_capacity(n);
    for _ in 0..n {
        got.push(rx.recv().await.expect("an answer"));
    }
    got.sort_by_key(|(i, _)| *i);
    got.into_iter().map(|(_, a)| a).collect()
}

async fn read_answer(mut stream: TcpStream) -> Answer {
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut raw))
        .await
        .expect("an answer within a minute")
        .expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    Answer {
        status,
        head: head.to_string(),
        body: body.to_string(),
    }
}

/// How many answers have each status.
pub fn count(answers: &[Answer], status: u16) -> usize {
    answers.iter().filter(|a| a.status == status).count()
}

/// The source address 127.0.0.`n`.
pub fn loopback(n: u8) -> Option<IpAddr> {
    Some(IpAddr::from([127, 0, 0, n]))
}

/// A GET, closing the connection after the answer.
pub fn get(path: &str, cookie: &str, extra: &str) -> Vec<u8> {
    format!(
        "GET {path} HTTP/1.1\r\nHost: linkd.test\r\nCookie: {cookie}\r\n{extra}Connection: close\r\n\r\n"
    )
    .into_bytes()
}

/// A form POST, closing the connection after the answer.
pub fn post(path: &str, cookie: &str, form: &[(&str, &str)]) -> Vec<u8> {
    let body: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    format!(
        "POST {path} HTTP/1.1\r\nHost: linkd.test\r\nCookie: {cookie}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The value a response's `Set-Cookie` gives `name`.
fn cookie_value(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| {
            v.strip_prefix(&format!("{name}="))
                .map(|rest| rest.split(';').next().unwrap_or("").to_string())
        })
}

/// A visitor's CSRF cookie (as a `Cookie` header value) and the matching
/// form token, from the page at `path`.
pub async fn anonymous_form(app: &TestApp, path: &str) -> (String, String) {
    let response = app.http.get(app.url(path)).send().await.unwrap();
    let value = cookie_value(&response, "linkd_csrf").expect("a CSRF cookie");
    let body = response.text().await.unwrap();
    let csrf = hidden_field(&body, "csrf").expect("a CSRF field");
    (format!("linkd_csrf={value}"), csrf)
}

/// Signs in (or up, with `sign_up`) and returns the session as a `Cookie`
/// header value, with the session's CSRF token for its forms.
pub async fn session(app: &TestApp, email: &str, sign_up: bool) -> String {
    let path = if sign_up { "/signup" } else { "/signin" };
    let (cookie, csrf) = anonymous_form(app, path).await;
    let response = app
        .http
        .post(app.url(path))
        .header("cookie", &cookie)
        .form(&[
            ("csrf", csrf.as_str()),
            ("email", email),
            ("password", "correct horse battery"),
            ("next", "/"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303, "{email}");
    let value = cookie_value(&response, "linkd_session").expect("a session cookie");
    format!("linkd_session={value}")
}

/// The sign-in or sign-up form as a visitor got it, ready to be posted
/// many times with the same CSRF cookie and token.
pub struct AccountForm {
    path: &'static str,
    cookie: String,
    csrf: String,
}

impl AccountForm {
    pub async fn get(app: &TestApp, path: &'static str) -> Self {
        let (cookie, csrf) = anonymous_form(app, path).await;
        AccountForm { path, cookie, csrf }
    }

    /// The form posted with `email` and `password`.
    pub fn request(&self, email: &str, password: &str) -> Vec<u8> {
        post(
            self.path,
            &self.cookie,
            &[
                ("csrf", self.csrf.as_str()),
                ("email", email),
                ("password", password),
                ("next", "/"),
            ],
        )
    }
}

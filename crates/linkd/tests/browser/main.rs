//! The person's pages in a real headless Chromium, at a phone's size and
//! a desktop's: each flow end to end, with and without JavaScript, in the
//! default theme and in an operator's brand and German.
//!
//! Every page is checked as it arrives: no console error, no failed
//! request, nothing fetched from another site, no serious axe-core
//! violation; a screenshot of it goes to `test-artifacts/browser/`, with a
//! `report.txt` of what was seen. One browser session serves every
//! scenario, each against its own server and database.

#![allow(clippy::unwrap_used)]

#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;
mod passkeys;
mod people;
mod phishing;
mod upstream;
mod webdriver;

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::FutureExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

use helpers::*;
use webdriver::{Chrome, Element};

struct Viewport {
    name: &'static str,
    width: u32,
    height: u32,
    mobile: bool,
}

const PHONE: Viewport = Viewport {
    name: "phone",
    width: 390,
    height: 844,
    mobile: true,
};
const DESKTOP: Viewport = Viewport {
    name: "desktop",
    width: 1280,
    height: 800,
    mobile: false,
};

/// axe-core rule sets checked on every page: WCAG 2.0-2.2 A and AA, and
/// axe's best practices (heading order, landmarks).
const AXE_TAGS: &[&str] = &[
    "wcag2a",
    "wcag2aa",
    "wcag21a",
    "wcag21aa",
    "wcag22aa",
    "best-practice",
];

/// Impacts that fail the suite. Minor findings are reported only.
const FAILING_IMPACTS: &[&str] = &["critical", "serious", "moderate"];

/// The browser and what the scenarios saw in it.
struct Suite {
    chrome: Chrome,
    axe_source: String,
    artifacts: PathBuf,
    viewport: Cell<&'static Viewport>,
    /// "default", "no-js" or "acme-de": screenshots and axe runs are per
    /// variant.
    variant: Cell<&'static str>,
    shots: Cell<usize>,
    problems: RefCell<Vec<String>>,
    report: RefCell<Vec<String>>,
    axe_checked: RefCell<HashSet<String>>,
}

impl Suite {
    fn problem(&self, what: String) {
        eprintln!("PROBLEM {what}");
        self.problems.borrow_mut().push(what);
    }

    async fn set_viewport(&self, viewport: &'static Viewport) {
        self.chrome
            .cdp(
                "Emulation.setDeviceMetricsOverride",
                json!({
                    "width": viewport.width,
                    "height": viewport.height,
                    "deviceScaleFactor": 1,
                    "mobile": viewport.mobile,
                }),
            )
            .await
            .unwrap();
        self.viewport.set(viewport);
    }

    async fn set_language(&self, accept_language: Option<&str>) {
        let headers = match accept_language {
            Some(value) => json!({ "Accept-Language": value }),
            None => json!({}),
        };
        self.chrome
            .cdp("Network.setExtraHTTPHeaders", json!({ "headers": headers }))
            .await
            .unwrap();
    }

    async fn set_javascript(&self, enabled: bool) {
        self.chrome
            .cdp(
                "Emulation.setScriptExecutionDisabled",
                json!({ "value": !enabled }),
            )
            .await
            .unwrap();
    }
}

/// One scenario's view of the browser, against one server.
struct Visit<'a> {
    suite: &'a Suite,
    app: &'a TestApp,
    scenario: &'static str,
}

impl Visit<'_> {
    fn chrome(&self) -> &Chrome {
        &self.suite.chrome
    }

    fn label(&self, page: &str) -> String {
        format!(
            "{}/{}/{}/{page}",
            self.suite.viewport.get().name,
            self.suite.variant.get(),
            self.scenario
        )
    }

    /// Opens a path of the app (or a full URL) as if typed or scanned.
    async fn open(&self, target: &str, page: &str, status: u16) {
        let url = if target.starts_with("http") {
            target.to_string()
        } else {
            self.app.url(target)
        };
        self.chrome().goto(&url).await.unwrap();
        self.arrived(page, status).await;
    }

    /// Clicks something that loads a new page (a link or a submit button)
    /// and waits for that page.
    async fn click_to(&self, css: &str, page: &str, status: u16) {
        self.chrome()
            .execute("window.__linkdOldPage = true;", vec![])
            .await
            .unwrap();
        let element = self.chrome().find(css).await.unwrap();
        self.chrome().click(&element).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let state = self
                .chrome()
                .execute(
                    "return window.__linkdOldPage === true ? 'old' : document.readyState;",
                    vec![],
                )
                .await
                .unwrap_or(Value::Null);
            if state == "complete" {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{}: clicking {css} led to no new page",
                self.label(page)
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.arrived(page, status).await;
    }

    /// Types into a field, replacing what it held.
    async fn fill(&self, css: &str, text: &str) -> Element {
        let field = self.chrome().find(css).await.unwrap();
        self.chrome().clear(&field).await.unwrap();
        self.chrome().type_text(&field, text).await.unwrap();
        field
    }

    async fn value(&self, css: &str) -> String {
        let field = self.chrome().find(css).await.unwrap();
        let value = self.chrome().property(&field, "value").await.unwrap();
        value.as_str().unwrap_or("").to_string()
    }

    async fn text(&self, css: &str) -> String {
        let element = self.chrome().find(css).await.unwrap();
        self.chrome().text(&element).await.unwrap()
    }

    /// The page's error message (role=alert) contains `text`.
    async fn alert_says(&self, text: &str) {
        let alert = self.text("[role=alert]").await;
        assert!(alert.contains(text), "{alert}");
    }

    async fn heading(&self) -> String {
        self.text("h1").await
    }

    /// The current address without scheme and host.
    async fn path(&self) -> String {
        let url = self.chrome().current_url().await.unwrap();
        url.strip_prefix(&self.app.base).unwrap_or(&url).to_string()
    }

    /// Everything that is checked on each page as it arrives.
    async fn arrived(&self, page: &str, expected_status: u16) {
        let label = self.label(page);
        let ready = self
            .chrome()
            .execute("return document.readyState;", vec![])
            .await
            .unwrap();
        assert_eq!(ready, "complete", "{label}");
        let traffic = self.check_traffic(&label, expected_status).await;
        self.check_console(&label, expected_status).await;

        let n = self.suite.shots.get() + 1;
        self.suite.shots.set(n);
        let dir = self.suite.artifacts.join(self.suite.viewport.get().name);
        let file = dir.join(format!(
            "{n:02}-{}-{}-{page}.png",
            self.suite.variant.get(),
            self.scenario
        ));
        let png = self.chrome().screenshot().await.unwrap();
        std::fs::write(&file, png).unwrap();

        if self.suite.viewport.get().mobile {
            self.tap_targets_are_big_enough(&label).await;
        }
        let axe = self.check_accessibility(&label, page).await;
        let path = self.path().await;
        self.suite
            .report
            .borrow_mut()
            .push(format!("{label}: {path} {traffic}{axe}"));
    }

    /// Every link, button and field a finger can reach is at least 44 by
    /// 44 CSS pixels, measured as laid out (WCAG 2.5.5).
    async fn tap_targets_are_big_enough(&self, label: &str) {
        let small = self
            .chrome()
            .execute(
                "return [...document.querySelectorAll('a[href], button, input, select, textarea')]\n\
                   .map(e => [e, e.getBoundingClientRect()])\n\
                   .filter(([e, r]) => r.width > 0 && r.height > 0 && getComputedStyle(e).visibility !== 'hidden')\n\
                   .filter(([e, r]) => r.width < 44 || r.height < 44)\n\
                   .map(([e, r]) => e.tagName + ' ' + (e.id || e.getAttribute('href') || e.textContent.trim().slice(0, 30))\n\
                        + ' ' + Math.round(r.width) + 'x' + Math.round(r.height));",
                vec![],
            )
            .await
            .unwrap();
        for target in small.as_array().cloned().unwrap_or_default() {
            self.suite
                .problem(format!("{label}: tap target under 44 px: {target}"));
        }
    }

    /// Reads the DevTools network events since the last page: the page
    /// must have the expected status, everything it loads must succeed,
    /// and nothing may come from another host. Returns a summary for the
    /// report.
    async fn check_traffic(&self, label: &str, expected_status: u16) -> String {
        let mut documents = Vec::new();
        let mut bytes: HashMap<String, f64> = HashMap::new();
        let mut requests = 0;
        let mut urls: HashMap<String, String> = HashMap::new();
        for entry in self.chrome().logs("performance").await.unwrap() {
            let message: Value =
                serde_json::from_str(entry["message"].as_str().unwrap_or("{}")).unwrap();
            let method = message["message"]["method"].as_str().unwrap_or("");
            let params = &message["message"]["params"];
            let id = params["requestId"].as_str().unwrap_or("").to_string();
            match method {
                "Network.requestWillBeSent" => {
                    let url = params["request"]["url"].as_str().unwrap_or("");
                    if !url.starts_with("http") {
                        continue;
                    }
                    requests += 1;
                    let host = url
                        .split("://")
                        .nth(1)
                        .and_then(|rest| rest.split(['/', ':']).next())
                        .unwrap_or("");
                    if host != "127.0.0.1" && host != "localhost" {
                        self.suite
                            .problem(format!("{label}: request to another site: {url}"));
                    }
                    urls.insert(id, url.to_string());
                }
                "Network.responseReceived" => {
                    let url = params["response"]["url"].as_str().unwrap_or("");
                    if !url.starts_with("http") {
                        continue;
                    }
                    let status = params["response"]["status"].as_u64().unwrap_or(0);
                    if params["type"] == "Document" {
                        documents.push((url.to_string(), status));
                    } else if status >= 400 {
                        self.suite
                            .problem(format!("{label}: {url} answered {status}"));
                    }
                }
                "Network.loadingFailed" => {
                    if let Some(url) = urls.get(&id) {
                        self.suite.problem(format!(
                            "{label}: {url} failed: {}",
                            params["errorText"].as_str().unwrap_or("?")
                        ));
                    }
                }
                "Network.loadingFinished" if urls.contains_key(&id) => {
                    bytes.insert(id, params["encodedDataLength"].as_f64().unwrap_or(0.0));
                }
                _ => {}
            }
        }
        match documents.last() {
            Some((_, status)) if *status == u64::from(expected_status) => {}
            Some((url, status)) => self.suite.problem(format!(
                "{label}: {url} answered {status}, expected {expected_status}"
            )),
            None => self.suite.problem(format!("{label}: no page was loaded")),
        }
        let transferred: f64 = bytes.values().sum();
        format!("{requests} requests, {transferred:.0} bytes transferred")
    }

    /// Console errors fail the page, except the browser's own note that
    /// the page itself answered the error status the scenario expects.
    async fn check_console(&self, label: &str, expected_status: u16) {
        let page_url = self.chrome().current_url().await.unwrap();
        for entry in self.chrome().logs("browser").await.unwrap() {
            let level = entry["level"].as_str().unwrap_or("");
            let message = entry["message"].as_str().unwrap_or("");
            let expected_error_page = expected_status >= 400
                && entry["source"] == "network"
                && message.starts_with(&page_url)
                && message.contains(&format!("status of {expected_status}"));
            if level == "SEVERE" && !expected_error_page {
                self.suite
                    .problem(format!("{label}: console error: {message}"));
            } else if level == "WARNING" {
                self.suite
                    .report
                    .borrow_mut()
                    .push(format!("{label}: console warning: {message}"));
            }
        }
    }

    /// Runs axe-core once per page, viewport and variant. Not with scripts
    /// off: axe needs them, and those pages are the default run's.
    async fn check_accessibility(&self, label: &str, page: &str) -> String {
        if self.suite.variant.get() == "no-js" {
            return String::new();
        }
        let key = format!(
            "{}/{}/{page}",
            self.suite.viewport.get().name,
            self.suite.variant.get()
        );
        if !self.suite.axe_checked.borrow_mut().insert(key) {
            return String::new();
        }
        let chrome = self.chrome();
        let loaded = chrome
            .execute("return typeof window.axe === 'object';", vec![])
            .await
            .unwrap();
        // The suite has Chromium add it to every page; this covers a page
        // that loaded before that.
        if loaded != true {
            chrome
                .execute(&format!("{}\n;return true;", self.suite.axe_source), vec![])
                .await
                .unwrap();
        }
        let script = "const done = arguments[arguments.length - 1];\n\
            axe.run(document, { runOnly: { type: 'tag', values: arguments[0] },\n\
                                resultTypes: ['violations'] })\n\
              .then(r => done(r.violations.map(v => ({ id: v.id, impact: v.impact, help: v.help,\n\
                  nodes: v.nodes.map(n => n.target.join(' ') + ' ' + (n.failureSummary || '').replace(/\\s+/g, ' ')) }))))\n\
              .catch(e => done([{ id: 'axe-error', impact: 'critical', help: String(e), nodes: [] }]));";
        let violations = chrome
            .execute_async(script, vec![json!(AXE_TAGS)])
            .await
            .unwrap();
        let violations = violations.as_array().cloned().unwrap_or_default();
        for v in &violations {
            let impact = v["impact"].as_str().unwrap_or("?");
            let line = format!(
                "{label}: axe {impact} {}: {} at {}",
                v["id"].as_str().unwrap_or("?"),
                v["help"].as_str().unwrap_or(""),
                v["nodes"]
            );
            if FAILING_IMPACTS.contains(&impact) {
                self.suite.problem(line);
            } else {
                self.suite.report.borrow_mut().push(line);
            }
        }
        format!(", axe: {} violations", violations.len())
    }

    /// From the device's link (its QR code) to sign-in, on to "Create an
    /// account", back to the number-matching page, and with the device's
    /// code picked to the confirmation page with the code on it.
    async fn sign_up_from_the_device_link(&self, auth: &DeviceAuth, email: &str) {
        self.open(&auth.verification_uri_complete, "sign-in", 200)
            .await;
        let path = self.path().await;
        assert!(path.starts_with("/signin?next="), "{path}");
        self.click_to("a[href^='/signup']", "sign-up", 200).await;
        self.sign_up_here(email, "pick").await;
        self.pick(&auth.user_code, "confirm").await;
        let shown = self.text(".code").await;
        assert_eq!(shown, auth.user_code, "the code is pre-filled");
    }

    /// On the number-matching page: three codes, the address without the
    /// code; picks `code`.
    async fn pick(&self, code: &str, next_page: &str) {
        let path = self.path().await;
        assert!(path.starts_with("/link?match="), "{path}");
        assert!(!path.contains(&code.replace('-', "")), "{path}");
        let choices = self
            .chrome()
            .execute(
                "return document.querySelectorAll('button[name=pick]').length;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(choices, 3, "three codes to pick from");
        self.click_to(
            &format!("button[name=pick][value='{code}']"),
            next_page,
            200,
        )
        .await;
    }

    /// Fills in the sign-up form on this page and sends it.
    async fn sign_up_here(&self, email: &str, next_page: &str) {
        self.fill("#email", email).await;
        self.fill("#password", PASSWORD).await;
        self.click_to("form button[type=submit]", next_page, 200)
            .await;
    }

    /// Tabs through the page from the top: each element that takes focus
    /// must show a focus ring (WCAG 2.4.7).
    async fn focus_is_visible(&self, page: &str) {
        let chrome = self.chrome();
        chrome
            .execute(
                "if (document.activeElement) document.activeElement.blur(); window.scrollTo(0, 0);",
                vec![],
            )
            .await
            .unwrap();
        let mut seen = Vec::new();
        for _ in 0..30 {
            chrome.press("\u{E004}").await.unwrap();
            let focused = chrome
                .execute(
                    "const e = document.activeElement;\n\
                     if (!e || e === document.body) return null;\n\
                     const s = getComputedStyle(e);\n\
                     return { what: e.tagName + ' ' + (e.id || e.getAttribute('href') || e.textContent.trim().slice(0, 30)),\n\
                              style: s.outlineStyle, width: parseFloat(s.outlineWidth) };",
                    vec![],
                )
                .await
                .unwrap();
            if focused.is_null() {
                break;
            }
            let what = focused["what"].as_str().unwrap_or("?").to_string();
            if seen.contains(&what) {
                break;
            }
            let visible =
                focused["style"] != "none" && focused["width"].as_f64().unwrap_or(0.0) >= 2.0;
            if !visible {
                self.suite.problem(format!(
                    "{}: {what} shows no focus ring ({focused})",
                    self.label(page)
                ));
            }
            seen.push(what);
        }
        assert!(
            seen.len() >= 3,
            "{}: tabbing reached only {seen:?}",
            self.label(page)
        );
    }
}

const PASSWORD: &str = "correct horse battery";

/// A device asks for a code, the person opens `verification_uri_complete`
/// (the QR code), creates an account, approves, and the device gets its
/// tokens.
async fn code_link_with_a_new_account(v: Visit<'_>) {
    let auth = v.app.start_device("openid email offline_access").await;
    v.sign_up_from_the_device_link(&auth, "ana@example.com")
        .await;
    v.focus_is_visible("confirm").await;
    v.click_to("button[value=approve]", "approved", 200).await;
    let heading = v.heading().await;
    assert!(heading.contains("Demo TV"), "{heading}");
    let tokens = v.app.poll(&auth.device_code).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.json);
    assert!(tokens.json["access_token"].is_string());
}

/// The person signs up first, then types the code by hand, in lower case
/// and without its dash; with JavaScript the field shows it as XXXX-XXXX.
async fn code_typed_by_hand(v: Visit<'_>) {
    let auth = v.app.start_device("openid").await;
    v.open("/", "home", 200).await;
    v.click_to("a[href='/signup']", "sign-up", 200).await;
    v.sign_up_here("ben@example.com", "home-signed-in").await;
    v.click_to("main a[href='/link']", "link", 200).await;
    let typed = auth.user_code.replace('-', "").to_lowercase();
    v.fill("#code", &typed).await;
    let shown = v.value("#code").await;
    if v.suite.variant.get() == "no-js" {
        assert_eq!(
            shown, typed,
            "without JavaScript the field keeps what was typed"
        );
    } else {
        assert_eq!(shown, auth.user_code, "the script formats the code");
    }
    v.click_to("form button[type=submit]", "confirm", 200).await;
    assert_eq!(v.text(".code").await, auth.user_code);
    v.click_to("button[value=approve]", "approved", 200).await;
    let tokens = v.app.poll(&auth.device_code).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.json);
}

/// A wrong code, a malformed one and an expired one each get a page that
/// says what to do; so does an address that does not exist.
async fn wrong_and_expired_codes(v: Visit<'_>) {
    let auth = v.app.start_device("openid").await;
    let wrong = if auth.user_code == "BCDF-GHJK" {
        "ZXWV-TSRQ"
    } else {
        "BCDF-GHJK"
    };
    v.open("/signup", "sign-up", 200).await;
    v.sign_up_here("cy@example.com", "home-signed-in").await;
    v.open("/link", "link", 200).await;
    v.fill("#code", wrong).await;
    v.click_to("form button[type=submit]", "wrong-code", 404)
        .await;
    v.alert_says("couldn't find that code").await;
    assert_eq!(v.value("#code").await, wrong, "keeps what was typed");
    let field = v.chrome().find("#code").await.unwrap();
    assert_eq!(
        v.chrome()
            .attribute(&field, "aria-invalid")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );
    v.fill("#code", "hello").await;
    v.click_to("form button[type=submit]", "malformed-code", 400)
        .await;
    v.alert_says("character codes never use").await;

    v.app.clock.advance_secs(601);
    v.fill("#code", &auth.user_code).await;
    v.click_to("form button[type=submit]", "expired-code", 410)
        .await;
    assert_eq!(v.heading().await, "This code has expired");
    v.click_to("main a[href='/link']", "link-again", 200).await;
    v.open("/no/such/page", "not-found", 404).await;
    assert_eq!(v.heading().await, "Page not found");
}

/// A code requested minutes ago gets a warning (a phishing lure is
/// older than a code on a screen in front of you); the person denies and
/// the device is told so.
async fn deny(v: Visit<'_>) {
    let auth = v.app.start_device("openid").await;
    v.app.clock.advance_secs(200);
    v.sign_up_from_the_device_link(&auth, "dee@example.com")
        .await;
    assert!(v.text("#old-code").await.contains("3 minutes ago"));
    v.click_to("button[value=deny]", "denied", 200).await;
    assert!(v.heading().await.contains("was not linked"));
    assert_eq!(v.app.poll(&auth.device_code).await.error(), "access_denied");
}

/// Someone with an account signs in from the device's link and lands back
/// on the code; "Switch account" signs out and comes back to it too.
async fn sign_in_then_back_to_the_code(v: Visit<'_>) {
    v.app.signed_in_browser("eve@example.com").await;
    v.app.signed_in_browser("fay@example.com").await;
    let auth = v.app.start_device("openid email").await;
    v.open(&auth.verification_uri_complete, "sign-in", 200)
        .await;
    v.fill("#email", "eve@example.com").await;
    v.fill("#password", "not the password").await;
    v.click_to("form button[type=submit]", "sign-in-failed", 401)
        .await;
    v.alert_says("not right").await;
    v.fill("#password", PASSWORD).await;
    v.click_to("form button[type=submit]", "pick", 200).await;
    v.pick(&auth.user_code, "confirm").await;
    assert_eq!(v.text(".code").await, auth.user_code);
    v.click_to("form.switch button", "sign-in-again", 200).await;
    assert!(v.path().await.starts_with("/signin?signed_out=1&next="));
    assert_eq!(v.text("[role=status]").await, "You're signed out.");
    v.fill("#email", "fay@example.com").await;
    v.fill("#password", PASSWORD).await;
    v.click_to("form button[type=submit]", "pick-other", 200)
        .await;
    v.pick(&auth.user_code, "confirm-other").await;
    assert!(v.text("main").await.contains("fay@example.com"));
    v.click_to("button[value=approve]", "approved", 200).await;
    let tokens = v.app.poll(&auth.device_code).await;
    let claims = jwt_claims(tokens.json["id_token"].as_str().unwrap());
    assert_eq!(claims["email"], "fay@example.com");
}

/// Two devices of the same name read "1 of 2" and "2 of 2" in a compact
/// list; Edit renames on a page of its own and says it did; Unlink asks
/// first, then names the device it removed, and cuts it off.
async fn unlink_from_the_devices_page(v: Visit<'_>) {
    let auth = v.app.start_device("openid offline_access").await;
    v.sign_up_from_the_device_link(&auth, "gus@example.com")
        .await;
    v.click_to("button[value=approve]", "approved", 200).await;
    let tokens = v.app.poll(&auth.device_code).await;
    let refresh = tokens.json["refresh_token"].as_str().unwrap().to_string();
    v.app.clock.advance_secs(60);
    let second = v.app.start_device("openid").await;
    // A prefilled link: the device's code is picked out of three first.
    v.open(&second.verification_uri_complete, "pick-second", 200)
        .await;
    v.pick(&second.user_code, "confirm-second").await;
    v.click_to("button[value=approve]", "approved-second", 200)
        .await;
    assert_eq!(v.app.poll(&second.device_code).await.status, StatusCode::OK);
    v.click_to("header a[href='/devices']", "devices", 200)
        .await;
    let list = v.text("ul.devices").await;
    assert!(
        list.contains("Demo TV (1 of 2)") && list.contains("Demo TV (2 of 2)"),
        "{list}"
    );
    assert!(list.contains("TV, console or other device, linked with a code"));
    v.focus_is_visible("devices").await;
    // The newest first: the second Demo TV gets a name of its own.
    v.click_to("li.device a[href$='/edit']", "edit", 200).await;
    v.fill("#label", "Office TV").await;
    v.click_to("form button[type=submit]", "renamed", 200).await;
    assert_eq!(
        v.text("[role=status]").await,
        "Saved: this device is now called Office TV."
    );
    assert!(!v.text("ul.devices").await.contains("of 2"));
    v.click_to("a[aria-label='Unlink Demo TV']", "unlink-confirm", 200)
        .await;
    assert_eq!(v.heading().await, "Unlink Demo TV?");
    v.click_to("main button.danger", "devices-after-unlink", 200)
        .await;
    assert!(
        v.text("[role=status]")
            .await
            .starts_with("Removed Demo TV.")
    );
    assert_eq!(v.app.refresh(&refresh, None).await.error(), "invalid_grant");
    assert_eq!(v.text("li.device h2").await, "Office TV");
    v.click_to("header a[href='/account']", "account", 200)
        .await;
    assert!(v.text("main").await.contains("Unlinked Demo TV"));
}

/// A code that came in a link, and the person picks a code their device
/// does not show: the code is denied and the account page says so.
async fn wrong_pick(v: Visit<'_>) {
    v.app.signed_in_browser("jan@example.com").await;
    let auth = v.app.start_device("openid").await;
    v.open(&auth.verification_uri_complete, "sign-in", 200)
        .await;
    v.fill("#email", "jan@example.com").await;
    v.fill("#password", PASSWORD).await;
    v.click_to("form button[type=submit]", "pick", 200).await;
    assert!(
        v.text("main")
            .await
            .contains("Which code does your device show?")
    );
    v.tap_targets_are_big_enough("pick").await;
    v.click_to(
        &format!("button[name=pick]:not([value='{}'])", auth.user_code),
        "wrong-pick",
        200,
    )
    .await;
    assert_eq!(v.heading().await, "That wasn't the device's code");
    assert_eq!(v.app.poll(&auth.device_code).await.error(), "access_denied");
    v.click_to("header a[href='/account']", "account-after-wrong-pick", 200)
        .await;
    assert!(
        v.text("main")
            .await
            .contains("the code you picked was not the device's")
    );
}

/// A short link typed with a slip and a code typed with look-alike
/// characters (full-width letters, an en dash) reach the same code.
async fn short_link_and_look_alikes(v: Visit<'_>) {
    v.app.signed_in_browser("kim@example.com").await;
    let auth = v.app.start_device("openid").await;
    v.open("/Lnk/", "link-from-short-link", 200).await;
    assert_eq!(v.path().await, "/link");
    let (a, b) = auth.user_code.split_once('-').unwrap();
    let full_width: String = a
        .chars()
        .map(|c| char::from_u32(c as u32 + 0xFEE0).unwrap())
        .collect();
    v.fill(
        "#code",
        &format!("{full_width}\u{2013}{}", b.to_lowercase()),
    )
    .await;
    v.click_to("form button[type=submit]", "sign-in-look-alike", 200)
        .await;
    v.fill("#email", "kim@example.com").await;
    v.fill("#password", PASSWORD).await;
    // Typed before signing in, it is still a typed code: no number matching.
    v.click_to("form button[type=submit]", "confirm-look-alike", 200)
        .await;
    assert_eq!(v.text(".code").await, auth.user_code);
    v.click_to("button[value=approve]", "approved-look-alike", 200)
        .await;
    assert_eq!(v.app.poll(&auth.device_code).await.status, StatusCode::OK);
}

/// The lifetime a device is told is the window to approve in: approved
/// three seconds before it ends, the device still links. Opening the
/// link again says it is linked, not that the code failed; a form's
/// address opened as a link is a branded page that keeps the header.
async fn no_dead_ends(v: Visit<'_>) {
    let auth = v.app.start_device("openid").await;
    assert_eq!(auth.expires_in, 300, "the approval window");
    v.sign_up_from_the_device_link(&auth, "ida@example.com")
        .await;
    v.app.clock.advance_secs(auth.expires_in - 3);
    v.click_to("button[value=approve]", "approved-last-second", 200)
        .await;
    v.app.clock.advance_secs(5);
    let tokens = v.app.poll(&auth.device_code).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.json);
    v.open(&auth.verification_uri_complete, "approved-again", 200)
        .await;
    assert!(v.heading().await.contains("is now linked"));
    v.open("/link/decide", "decide-as-link", 405).await;
    assert_eq!(v.heading().await, "This page can't be opened this way");
    assert!(v.text("header").await.contains("ida@example.com"));
    v.click_to("main a[href='/link']", "link-from-405", 200)
        .await;
    v.open("/nowhere", "not-found-signed-in", 404).await;
    assert!(v.text("header").await.contains("ida@example.com"));
    // Signing out by its address asks first, with the button.
    v.open("/signout", "signout-as-link", 200).await;
    assert_eq!(v.heading().await, "Sign out?");
    v.click_to("main form button", "signed-out", 200).await;
    assert_eq!(v.text("[role=status]").await, "You're signed out.");
}

/// Signed out, a code is checked before sign-in: a code with a vowel at
/// once, wrong codes by lookup with the last tries counted down. The
/// lockout says until when and points to help, and the device's QR link
/// during it lands there too. Then, as a new visitor, a code pasted with
/// the words around it (with JavaScript) or typed with an en dash
/// (without) goes on to a sign-in page that says what it is for, and the
/// result names the device and its app.
async fn codes_checked_before_sign_in(v: Visit<'_>) {
    let no_js = v.suite.variant.get() == "no-js";
    let auth = v.app.start_device("openid").await;
    v.open("/link", "link-signed-out", 200).await;
    v.fill("#code", "BCDA-GHJK").await;
    v.click_to("form button[type=submit]", "vowel-code", 400)
        .await;
    v.alert_says("character codes never use").await;
    if !no_js {
        let wrong = [
            "BCDF-GHJK",
            "BCDF-GHJL",
            "BCDF-GHJM",
            "BCDF-GHJN",
            "BCDF-GHJP",
            "BCDF-GHJQ",
        ];
        let wrong: Vec<_> = wrong
            .iter()
            .filter(|c| **c != auth.user_code)
            .take(5)
            .collect();
        for (i, code) in wrong.iter().enumerate() {
            v.fill("#code", code).await;
            v.click_to("form button[type=submit]", &format!("wrong-{i}"), 404)
                .await;
        }
        v.alert_says("That was the last try: code entry is paused until ")
            .await;
        v.open(&auth.verification_uri_complete, "locked-qr", 429)
            .await;
        assert_eq!(v.heading().await, "Too many wrong codes");
        assert!(
            v.text("main")
                .await
                .contains("Try again in 10 minutes (at ")
        );
        v.click_to("main a[href='/help']", "help", 200).await;
        assert_eq!(v.heading().await, "Help with linking a device");
        v.suite.chrome.delete_cookies().await.unwrap();
    }
    let named = v
        .app
        .device_authorization(&[("client_id", "demo-tv"), ("device_name", "Office TV")])
        .await;
    let code = named.json["user_code"].as_str().unwrap().to_string();
    v.open("/link", "link-new-visitor", 200).await;
    if no_js {
        v.fill("#code", &code.replace('-', "\u{2013}")).await;
    } else {
        let field = v.chrome().find("#code").await.unwrap();
        v.chrome()
            .execute(
                "const data = new DataTransfer(); data.setData('text/plain', arguments[1]);\n\
                 arguments[0].focus();\n\
                 arguments[0].dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));",
                vec![field.to_json(), json!(format!("Code: {code}"))],
            )
            .await
            .unwrap();
        assert_eq!(
            v.value("#code").await,
            code,
            "the script takes the code out"
        );
    }
    v.click_to("form button[type=submit]", "sign-in-for-code", 200)
        .await;
    assert_eq!(
        v.text(".for-code").await,
        format!("Linking code {code}: sign in to continue.")
    );
    assert!(v.text("main").await.contains("Demo TV is asking"));
    v.click_to("a[href^='/signup']", "sign-up-for-code", 200)
        .await;
    assert!(v.text(".for-code").await.contains(&code));
    v.sign_up_here("jo@example.com", "confirm").await;
    v.click_to("button[value=approve]", "approved-named", 200)
        .await;
    assert_eq!(v.heading().await, "Your Office TV (Demo TV) is now linked");
}

/// The app's side of the authorization code flow: a page at a loopback
/// address (RFC 8252 §7.3) that answers every request, as a native app's
/// listener does, so the browser has somewhere real to land.
async fn app_callback_listener() -> (String, tokio::task::JoinHandle<()>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        const PAGE: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
            <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
            <title>Desktop app</title></head><body><main><h1>You can close this tab</h1>\
            </main></body></html>";
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut head = vec![0u8; 8192];
                let _ = stream.read(&mut head).await;
                let response = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: text/html; charset=utf-8\r\n\
                     content-length: {}\r\nconnection: close\r\n\r\n{PAGE}",
                    PAGE.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    (format!("http://127.0.0.1:{port}/callback"), task)
}

/// An app with a browser links by the authorization code flow with PKCE
/// (RFC 6749 §4.1, RFC 7636): from the app's request to sign-up, the same
/// confirmation page as for devices, and back to the app's loopback
/// address with the code, `state` and `iss`; the app redeems the code.
async fn app_links_with_a_code(v: Visit<'_>) {
    // A verifier and its S256 challenge (RFC 7636 §4.2), computed outside
    // linkd (Python's hashlib and base64).
    const VERIFIER: &str = "dBjftJeZ4CVP-mJ92IljmwWU5gzaKqg6ZkPHyAlUjH8";
    const CHALLENGE: &str = "IIIWBh3-J_sM1hp3ro4G6TSLlrRB56slFCGklDIbRzc";
    v.app
        .state
        .store
        .insert_client(&linkd::store::Client {
            client_id: "desktop".into(),
            name: "Desktop App".into(),
            secret_hash: None,
            scopes: "openid email offline_access".into(),
            device_flow_enabled: false,
            redirect_uris: "http://127.0.0.1/callback".into(),
            code_flow_enabled: true,
            refresh_enabled: true,
            require_dpop: false,
            prefilled_links: true,
            same_network: None,
            created_at: linkd::clock::Clock::now(v.app.clock.as_ref()),
        })
        .await
        .unwrap();
    let (redirect_uri, listener) = app_callback_listener().await;
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("client_id", "desktop"),
            ("response_type", "code"),
            ("redirect_uri", redirect_uri.as_str()),
            ("scope", "openid email offline_access"),
            ("state", "state-in-the-browser"),
            ("nonce", "nonce-in-the-browser"),
            ("code_challenge", CHALLENGE),
            ("code_challenge_method", "S256"),
        ])
        .finish();
    v.open(
        &format!("/oauth/authorize?{query}"),
        "authorize-sign-in",
        200,
    )
    .await;
    assert!(v.path().await.starts_with("/signin?next="));
    v.click_to("a[href^='/signup']", "authorize-sign-up", 200)
        .await;
    v.sign_up_here("app@example.com", "authorize-confirm").await;
    assert!(v.heading().await.contains("Desktop App"));
    assert!(v.text("main").await.contains("app@example.com"));
    v.focus_is_visible("authorize-confirm").await;
    v.click_to("button[value=approve]", "authorize-back-at-the-app", 200)
        .await;
    let url = v.chrome().current_url().await.unwrap();
    listener.abort();
    let back = url::Url::parse(&url).unwrap();
    assert!(url.starts_with(&format!("{redirect_uri}?")), "{url}");
    let params: HashMap<String, String> = back.query_pairs().into_owned().collect();
    assert_eq!(params["state"], "state-in-the-browser");
    assert_eq!(params["iss"], v.app.base);
    let tokens = v
        .app
        .post_form(
            "/oauth/token",
            &[
                ("grant_type", "authorization_code"),
                ("client_id", "desktop"),
                ("code", &params["code"]),
                ("redirect_uri", &redirect_uri),
                ("code_verifier", VERIFIER),
            ],
        )
        .await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.json);
    let claims = jwt_claims(tokens.json["id_token"].as_str().unwrap());
    assert_eq!(claims["nonce"], "nonce-in-the-browser");
    assert_eq!(claims["email"], "app@example.com");

    // Another day, signed out: the sign-in form leads through the
    // remembered consent straight back to the app, which the sign-in
    // page's form-action must allow for every hop.
    v.chrome().delete_cookies().await.unwrap();
    let (redirect_uri, listener) = app_callback_listener().await;
    let query = query.replace(
        &form_urlencoded::byte_serialize(params["state"].as_bytes()).collect::<String>(),
        "second-visit",
    );
    let old_port: String = url::Url::parse(&url).unwrap().port().unwrap().to_string();
    let new_port: String = url::Url::parse(&redirect_uri)
        .unwrap()
        .port()
        .unwrap()
        .to_string();
    let query = query.replace(
        &format!("127.0.0.1%3A{old_port}"),
        &format!("127.0.0.1%3A{new_port}"),
    );
    v.open(
        &format!("/oauth/authorize?{query}"),
        "authorize-sign-in-again",
        200,
    )
    .await;
    v.fill("#email", "app@example.com").await;
    v.fill("#password", PASSWORD).await;
    v.click_to("form button[type=submit]", "authorize-straight-back", 200)
        .await;
    let url = v.chrome().current_url().await.unwrap();
    listener.abort();
    assert!(url.starts_with(&format!("{redirect_uri}?")), "{url}");
    assert!(url.contains("state=second-visit"), "{url}");
}

/// The account page on a phone: a wrong current password is said next to
/// its form; the right one changes the password; other browsers are
/// signed out; the account is deleted after its confirmation page.
async fn account_page(v: Visit<'_>) {
    let auth = v.app.start_device("openid offline_access").await;
    v.sign_up_from_the_device_link(&auth, "kim@example.com")
        .await;
    v.click_to("button[value=approve]", "approved", 200).await;
    let tokens = v.app.poll(&auth.device_code).await;
    let refresh = tokens.json["refresh_token"].as_str().unwrap().to_string();
    v.click_to("header a[href='/account']", "account", 200)
        .await;
    v.fill("#current_password", "not my password").await;
    v.fill("#new_password", "a brand new passphrase").await;
    v.click_to(
        "form[action='/account/password'] button",
        "account-wrong-password",
        401,
    )
    .await;
    v.alert_says("not your current password").await;
    v.fill("#current_password", PASSWORD).await;
    v.fill("#new_password", "a brand new passphrase").await;
    v.click_to(
        "form[action='/account/password'] button",
        "account-password-changed",
        200,
    )
    .await;
    assert!(
        v.text("[role=status]")
            .await
            .contains("password was changed")
    );
    v.click_to(
        "form[action='/account/sessions'] button",
        "account-signed-out-elsewhere",
        200,
    )
    .await;
    assert!(v.text("main").await.contains("Signed out everywhere else"));
    v.click_to("a[href='/account/delete']", "account-delete", 200)
        .await;
    v.fill("#password", "a brand new passphrase").await;
    v.click_to("button.danger", "account-deleted", 200).await;
    assert_eq!(v.heading().await, "Your account was deleted");
    assert_eq!(v.app.refresh(&refresh, None).await.error(), "invalid_grant");
}

/// Runs one scenario against its own server, collecting its failure.
async fn run<'a, F, Fut>(suite: &'a Suite, name: &'static str, app: &'a TestApp, scenario: F)
where
    F: FnOnce(Visit<'a>) -> Fut,
    Fut: Future<Output = ()> + 'a,
{
    suite.chrome.delete_cookies().await.unwrap();
    let visit = Visit {
        suite,
        app,
        scenario: name,
    };
    let label = visit.label("");
    let started = Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(90),
        AssertUnwindSafe(scenario(visit)).catch_unwind(),
    )
    .await;
    let failure = match outcome {
        Ok(Ok(())) => None,
        Ok(Err(panic)) => Some(
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "panicked".into()),
        ),
        Err(_) => Some("timed out after 90 s".into()),
    };
    suite.report.borrow_mut().push(format!(
        "{label}: scenario took {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    if let Some(why) = failure {
        suite.problem(format!("{label} failed: {why}"));
        if let Ok(png) = suite.chrome.screenshot().await {
            let file = suite.artifacts.join(format!(
                "FAILED-{}-{}-{name}.png",
                suite.viewport.get().name,
                suite.variant.get()
            ));
            let _ = std::fs::write(file, png);
        }
    }
    // Drain what the failed page left behind so the next scenario starts clean.
    let _ = suite.chrome.logs("browser").await;
    let _ = suite.chrome.logs("performance").await;
}

/// The German, branded run of the main flow and the devices page.
async fn german_with_a_brand(v: Visit<'_>) {
    let auth = v.app.start_device("openid email offline_access").await;
    v.sign_up_from_the_device_link(&auth, "hans@example.com")
        .await;
    let title = v
        .chrome()
        .execute("return document.title;", vec![])
        .await
        .unwrap();
    assert_eq!(title, "Demo TV verbinden? · Acme Link");
    assert!(v.text("footer").await.contains("Support kontaktieren"));
    v.click_to("button[value=approve]", "approved", 200).await;
    assert_eq!(v.heading().await, "Demo TV ist jetzt verbunden");
    assert_eq!(v.app.poll(&auth.device_code).await.status, StatusCode::OK);
    v.click_to("header a[href='/devices']", "devices", 200)
        .await;
    v.click_to("header a[href='/account']", "account", 200)
        .await;
    v.open("/link?code=BCDF-GHJK", "wrong-code", 404).await;
    v.open("/nirgends", "not-found", 404).await;
    assert_eq!(v.heading().await, "Seite nicht gefunden");
}

#[tokio::test]
async fn the_pages_in_a_real_browser() {
    let started = Instant::now();
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let artifacts = workspace.join("test-artifacts/browser");
    let _ = std::fs::remove_dir_all(&artifacts);
    for viewport in [&PHONE, &DESKTOP] {
        std::fs::create_dir_all(artifacts.join(viewport.name)).unwrap();
    }
    let axe_source = webdriver::axe_source(&workspace).unwrap_or_else(|e| panic!("{e}"));
    let chrome = Chrome::start().await.unwrap_or_else(|e| panic!("{e}"));
    // axe-core is the test's, added to each page by the browser: linkd
    // never serves it, and the page's CSP does not apply to it.
    chrome
        .cdp(
            "Page.addScriptToEvaluateOnNewDocument",
            json!({ "source": axe_source }),
        )
        .await
        .unwrap();
    let suite = Suite {
        chrome,
        axe_source,
        artifacts: artifacts.clone(),
        viewport: Cell::new(&PHONE),
        variant: Cell::new("default"),
        shots: Cell::new(0),
        problems: RefCell::new(Vec::new()),
        report: RefCell::new(Vec::new()),
        axe_checked: RefCell::new(HashSet::new()),
    };
    let brand_dir = tempfile::tempdir().unwrap();

    for viewport in [&PHONE, &DESKTOP] {
        suite.set_viewport(viewport).await;

        // One server per viewport and variant; scenarios use accounts of
        // their own on it.
        suite.variant.set("default");
        let app = spawn_app().await;
        run(&suite, "code-link", &app, code_link_with_a_new_account).await;
        run(&suite, "typed-code", &app, code_typed_by_hand).await;
        run(&suite, "deny", &app, deny).await;
        run(&suite, "sign-in", &app, sign_in_then_back_to_the_code).await;
        run(&suite, "unlink", &app, unlink_from_the_devices_page).await;
        run(&suite, "no-dead-ends", &app, no_dead_ends).await;
        if viewport.mobile {
            run(&suite, "app-code", &app, app_links_with_a_code).await;
            run(&suite, "codes-first", &app, codes_checked_before_sign_in).await;
        }
        // Last on this server: it moves the server's clock past expiry.
        run(&suite, "bad-codes", &app, wrong_and_expired_codes).await;
        // Phishing defences, on a server of their own (its sign-up limit
        // per network is the other server's to spend).
        if viewport.mobile {
            let app = spawn_app().await;
            run(&suite, "wrong-pick", &app, wrong_pick).await;
            run(&suite, "short-link", &app, short_link_and_look_alikes).await;
            run(&suite, "report", &app, phishing::proximity_and_report).await;
            run(&suite, "prefilled-off", &app, phishing::prefilled_links_off).await;
            run(
                &suite,
                "same-network",
                &app,
                phishing::same_network_required,
            )
            .await;
        }

        // Its own server: its sign-up would pass the network's hourly
        // budget (--sign-ups-per-network) on the shared one.
        if viewport.mobile {
            let app = spawn_app().await;
            run(&suite, "account", &app, account_page).await;
            run(&suite, "people", &app, people::in_another_zone).await;
            let app = spawn_on_localhost().await;
            run(&suite, "passkeys", &app, passkeys::passkeys).await;
        }
        // Sign-in through an OpenID provider, on servers of its own.
        if viewport.mobile {
            upstream::scenarios(&suite).await;
        }

        // Every flow is a plain form: the same steps work with scripts off
        // (on a phone; the layout does not depend on scripts).
        if viewport.mobile {
            suite.variant.set("no-js");
            suite.set_javascript(false).await;
            let app = spawn_app().await;
            run(&suite, "typed-code", &app, code_typed_by_hand).await;
            run(&suite, "deny", &app, deny).await;
            run(&suite, "codes-first", &app, codes_checked_before_sign_in).await;
            suite.set_javascript(true).await;
        }

        suite.variant.set("acme-de");
        suite.set_language(Some("de-DE,de;q=0.9,en;q=0.5")).await;
        // Too light for white text: linkd darkens it.
        let app = spawn_app_with(acme_brand(brand_dir.path(), "#ff9f1c")).await;
        run(&suite, "brand", &app, german_with_a_brand).await;
        suite.set_language(None).await;
    }

    suite.chrome.quit().await;
    let elapsed = started.elapsed().as_secs_f64();
    let problems = suite.problems.into_inner();
    let mut report = suite.report.into_inner();
    report.push(format!(
        "{} pages, {} problems, {elapsed:.1} s",
        suite.shots.get(),
        problems.len()
    ));
    report.extend(problems.iter().map(|p| format!("PROBLEM {p}")));
    std::fs::write(artifacts.join("report.txt"), report.join("\n") + "\n").unwrap();
    println!(
        "browser suite: {} pages in {elapsed:.1} s; screenshots and report.txt in {}",
        suite.shots.get(),
        artifacts.display()
    );
    assert!(
        problems.is_empty(),
        "{} problems in the browser (see {}):\n{}",
        problems.len(),
        artifacts.join("report.txt").display(),
        problems.join("\n")
    );
}

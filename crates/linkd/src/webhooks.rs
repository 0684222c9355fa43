//! Webhooks: operators hear about what happens to their people's devices.
//! An [`Event`] is written to the outbox in the same transaction as its
//! cause, as one `webhook_event` message; a worker replaces it with one
//! `webhook` message per configured endpoint that wants its type (so a
//! writer, the CLI included, needs no endpoint list), and each of those is
//! POSTed as JSON, signed with HMAC-SHA256, and retried by the outbox until
//! the endpoint takes it. docs/webhooks.md is the receiver's side.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::clock::Clock;
use crate::outbox::{Deliver, Delivery};
use crate::store::{LinkedDevice, OutboxKind, OutboxMessage, Timestamp};

/// The header carrying the signature: `t=<unix seconds>,v1=<hex HMAC>`.
pub const SIGNATURE_HEADER: &str = "linkd-signature";
/// The event's id, also in the body: receivers de-duplicate by it.
pub const EVENT_ID_HEADER: &str = "linkd-event-id";
pub const EVENT_TYPE_HEADER: &str = "linkd-event-type";
/// Shortest secret accepted: 128 bits written as 32 hex digits or
/// 22 base64 characters is the floor; 16 characters leaves room for
/// passphrases without allowing a guessable word.
pub const MIN_SECRET_LEN: usize = 16;
/// How long one POST may take before it counts as failed and is retried
/// (well within the outbox lease).
const TIMEOUT: Duration = Duration::from_secs(15);

/// What happened. The wire names are stable: receivers switch on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    /// A device was linked to a person's account (device code redeemed, or
    /// an app's authorization code).
    #[serde(rename = "device.linked")]
    DeviceLinked,
    /// A device was unlinked; `data.reason` says by whom or why.
    #[serde(rename = "device.unlinked")]
    DeviceUnlinked,
    /// A rotated refresh token came back, or two refreshes raced with one
    /// (RFC 9700 §4.14.2): it leaked, and the device was unlinked.
    #[serde(rename = "refresh_token.reused")]
    RefreshTokenReused,
    /// A person said "I didn't start this" on the confirmation page.
    #[serde(rename = "link.reported")]
    LinkReported,
    /// Reports named one requesting network often enough that its codes
    /// are refused for a while.
    #[serde(rename = "network.blocked")]
    NetworkBlocked,
}

impl EventType {
    pub const ALL: &'static [EventType] = &[
        EventType::DeviceLinked,
        EventType::DeviceUnlinked,
        EventType::RefreshTokenReused,
        EventType::LinkReported,
        EventType::NetworkBlocked,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::DeviceLinked => "device.linked",
            Self::DeviceUnlinked => "device.unlinked",
            Self::RefreshTokenReused => "refresh_token.reused",
            Self::LinkReported => "link.reported",
            Self::NetworkBlocked => "network.blocked",
        }
    }
}

/// Why a device was unlinked (`data.reason` of `device.unlinked`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnlinkReason {
    /// The person, on their devices page.
    Person,
    /// The device itself (`DELETE /api/v1/device`).
    Device,
    /// The operator (`linkd devices unlink`).
    Operator,
    /// The operator disabled the account (`linkd user disable`).
    AccountDisabled,
    /// Its refresh token was revoked (RFC 7009).
    TokenRevoked,
    /// Its refresh token was used twice.
    RefreshTokenReuse,
    /// The authorization code that linked it was used twice (RFC 6749
    /// §4.1.2).
    AuthorizationCodeReuse,
    /// The person reported it with "This wasn't me" from the mail that
    /// told them it was linked.
    NotMe,
}

impl UnlinkReason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Person => "person",
            Self::Device => "device",
            Self::Operator => "operator",
            Self::AccountDisabled => "account_disabled",
            Self::TokenRevoked => "token_revoked",
            Self::RefreshTokenReuse => "refresh_token_reuse",
            Self::AuthorizationCodeReuse => "authorization_code_reuse",
            Self::NotMe => "not_me",
        }
    }
}

/// One event, as every receiver gets it (the request body).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unique per event and the same on every retry and every endpoint:
    /// receivers de-duplicate by it.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: EventType,
    /// When it happened, Unix seconds.
    pub created_at: Timestamp,
    /// What it is about; the fields per type are in docs/webhooks.md.
    pub data: Value,
}

/// Where a person said they did not start a link (`data.via`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportVia {
    /// "I didn't start this" on the confirmation page: the code is denied.
    Confirmation,
    /// "This wasn't me" in the mail that told them a device was linked:
    /// the device is unlinked.
    Mail,
}

impl ReportVia {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Confirmation => "confirmation",
            Self::Mail => "mail",
        }
    }
}

/// A "this wasn't me" report, for [`Event::link_reported`].
#[derive(Debug, Clone)]
pub struct Report<'a> {
    pub account_id: &'a str,
    pub client_id: &'a str,
    pub app_name: &'a str,
    /// The address the code was requested from, when known.
    pub requesting_ip: Option<&'a str>,
    /// Its network (`phishing::requesting_network`): what reports count
    /// against.
    pub requesting_network: Option<&'a str>,
    /// The address of the browser that reported it.
    pub reporting_ip: &'a str,
    pub via: ReportVia,
}

impl Event {
    fn new(kind: EventType, now: Timestamp, data: Value) -> Event {
        Event {
            id: format!(
                "evt_{}",
                crate::codes::sortable_id(now.saturating_mul(1000))
            ),
            kind,
            created_at: now,
            data,
        }
    }

    fn device_data(device: &LinkedDevice) -> serde_json::Map<String, Value> {
        let Value::Object(map) = json!({
            "account_id": device.account_id,
            "device_id": device.id,
            "client_id": device.client_id,
            "app_name": device.app_name,
            "label": device.label,
            "scope": device.scope,
            "linked_at": device.linked_at,
        }) else {
            unreachable!("a JSON object literal")
        };
        map
    }

    /// `device.linked`: `device` was just linked from `device.linked_ip`.
    pub fn device_linked(device: &LinkedDevice, now: Timestamp) -> Event {
        let mut data = Self::device_data(device);
        data.insert("ip".into(), device.linked_ip.clone().into());
        Event::new(EventType::DeviceLinked, now, Value::Object(data))
    }

    /// `device.unlinked`, from `ip` (or "admin" for the CLI).
    pub fn device_unlinked(
        device: &LinkedDevice,
        reason: UnlinkReason,
        ip: &str,
        now: Timestamp,
    ) -> Event {
        let mut data = Self::device_data(device);
        data.insert("reason".into(), reason.as_str().into());
        data.insert("ip".into(), ip.into());
        Event::new(EventType::DeviceUnlinked, now, Value::Object(data))
    }

    /// `refresh_token.reused`: an already rotated token of `device` came
    /// back from `ip`.
    pub fn refresh_token_reused(device: &LinkedDevice, ip: &str, now: Timestamp) -> Event {
        let mut data = Self::device_data(device);
        data.insert("ip".into(), ip.into());
        Event::new(EventType::RefreshTokenReused, now, Value::Object(data))
    }

    /// `link.reported`: a person said they did not start a link.
    pub fn link_reported(report: &Report<'_>, now: Timestamp) -> Event {
        let reporting_network = report
            .reporting_ip
            .parse()
            .map(crate::phishing::requesting_network)
            .ok();
        Event::new(
            EventType::LinkReported,
            now,
            json!({
                "account_id": report.account_id,
                "client_id": report.client_id,
                "app_name": report.app_name,
                "via": report.via.as_str(),
                "requesting_ip": report.requesting_ip,
                "requesting_network": report.requesting_network,
                "reporting_ip": report.reporting_ip,
                "reporting_network": reporting_network,
            }),
        )
    }

    /// `network.blocked`: `network` had `reports` reports and its codes are
    /// refused until `until`.
    pub fn network_blocked(network: &str, reports: i64, until: Timestamp, now: Timestamp) -> Event {
        Event::new(
            EventType::NetworkBlocked,
            now,
            json!({ "network": network, "reports": reports, "blocked_until": until }),
        )
    }

    /// The outbox message to write with the event's cause.
    pub fn to_outbox(&self) -> OutboxMessage {
        // Serialising a struct of strings, numbers and a JSON value cannot
        // fail.
        let body = serde_json::to_string(self).unwrap_or_default();
        crate::outbox::message(OutboxKind::WebhookEvent, body, self.created_at)
    }
}

/// One receiver, from the config file's `[[webhooks]]` tables.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpoint {
    /// Where events are POSTed (http or https). Also the endpoint's name:
    /// queued messages find their secret by it.
    pub url: String,
    /// The HMAC-SHA256 key, shared with the receiver.
    pub secret: String,
    /// The event types it gets; all when left out.
    #[serde(default = "all_events")]
    pub events: Vec<EventType>,
}

fn all_events() -> Vec<EventType> {
    EventType::ALL.to_vec()
}

impl std::fmt::Debug for WebhookEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookEndpoint")
            .field("url", &self.url)
            .field("secret", &"***")
            .field("events", &self.events)
            .finish()
    }
}

impl WebhookEndpoint {
    /// How `linkd config check` shows it, without the secret.
    pub fn describe(&self) -> String {
        let events: Vec<&str> = self.events.iter().map(|e| e.as_str()).collect();
        format!("{} ({})", self.url, events.join(", "))
    }
}

/// Reads the `webhooks` array of tables from a config file's table.
pub fn from_toml(value: &toml::Value) -> Result<Vec<WebhookEndpoint>, String> {
    value
        .clone()
        .try_into::<Vec<WebhookEndpoint>>()
        .map_err(|e| format!("webhooks: {}", e.message()))
}

/// Checks the endpoints at start-up: absolute http(s) URLs, each once,
/// secrets long enough, at least one event each.
pub fn validate(endpoints: &[WebhookEndpoint]) -> Result<(), String> {
    for (i, e) in endpoints.iter().enumerate() {
        let url = url::Url::parse(&e.url).map_err(|err| format!("webhook {:?}: {err}", e.url))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(format!(
                "webhook {:?}: the URL must be http:// or https:// with a host",
                e.url
            ));
        }
        if e.secret.chars().count() < MIN_SECRET_LEN {
            return Err(format!(
                "webhook {:?}: the secret must be at least {MIN_SECRET_LEN} characters",
                e.url
            ));
        }
        if e.events.is_empty() {
            return Err(format!(
                "webhook {:?}: `events` lists no event; leave it out for all",
                e.url
            ));
        }
        if endpoints[..i].iter().any(|other| other.url == e.url) {
            return Err(format!("webhook {:?} is configured twice", e.url));
        }
    }
    Ok(())
}

/// The signature of `body` sent at `timestamp`: hex HMAC-SHA256 with
/// `secret` over `"<timestamp>.<body>"`. Signing the time with the body
/// lets a receiver refuse an old request replayed to it.
pub fn sign(secret: &str, timestamp: Timestamp, body: &str) -> String {
    // HMAC takes a key of any length.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts any key length"));
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    mac.finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A `webhook` message: one event for one endpoint.
#[derive(Debug, Serialize, Deserialize)]
struct Addressed {
    url: String,
    /// The event's JSON exactly as first written, so every endpoint and
    /// every retry signs the same bytes.
    body: String,
}

/// Turns each `webhook_event` into one `webhook` per endpoint that wants
/// its type, in one transaction (`Delivery::Expand`); with no endpoint
/// the event is simply done.
pub struct FanOut {
    endpoints: Arc<[WebhookEndpoint]>,
}

impl FanOut {
    pub fn new(endpoints: &[WebhookEndpoint]) -> Self {
        FanOut {
            endpoints: endpoints.into(),
        }
    }
}

#[async_trait]
impl Deliver for FanOut {
    fn kind(&self) -> OutboxKind {
        OutboxKind::WebhookEvent
    }

    async fn deliver(&self, message: &OutboxMessage) -> Delivery {
        let event: Event = match serde_json::from_str(&message.payload) {
            Ok(e) => e,
            Err(e) => return Delivery::Rejected(format!("not a webhook event: {e}")),
        };
        let addressed = self
            .endpoints
            .iter()
            .filter(|e| e.events.contains(&event.kind))
            .map(|e| {
                let payload = Addressed {
                    url: e.url.clone(),
                    body: message.payload.clone(),
                };
                crate::outbox::message(
                    OutboxKind::Webhook,
                    serde_json::to_string(&payload).unwrap_or_default(),
                    message.created_at,
                )
            })
            .collect();
        Delivery::Expand(addressed)
    }
}

/// POSTs `webhook` messages to their endpoint, signed.
pub struct WebhookSender {
    endpoints: Arc<[WebhookEndpoint]>,
    http: reqwest::Client,
    clock: Arc<dyn Clock>,
}

impl WebhookSender {
    /// `None` without endpoints: `webhook` messages then wait for an
    /// instance that has them.
    pub fn new(
        endpoints: &[WebhookEndpoint],
        clock: Arc<dyn Clock>,
    ) -> Result<Option<Self>, String> {
        if endpoints.is_empty() {
            return Ok(None);
        }
        let http = reqwest::Client::builder()
            .timeout(TIMEOUT)
            // A receiver that moved is told by its operator's config, not
            // by a redirect that would carry the signature elsewhere.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("linkd/", env!("CARGO_PKG_VERSION"), " (webhooks)"))
            .build()
            .map_err(|e| format!("webhook HTTP client: {e}"))?;
        Ok(Some(WebhookSender {
            endpoints: endpoints.into(),
            http,
            clock,
        }))
    }
}

#[async_trait]
impl Deliver for WebhookSender {
    fn kind(&self) -> OutboxKind {
        OutboxKind::Webhook
    }

    async fn deliver(&self, message: &OutboxMessage) -> Delivery {
        let addressed: Addressed = match serde_json::from_str(&message.payload) {
            Ok(a) => a,
            Err(e) => return Delivery::Rejected(format!("not a webhook message: {e}")),
        };
        let Some(endpoint) = self.endpoints.iter().find(|e| e.url == addressed.url) else {
            return Delivery::Rejected(format!(
                "{} is no longer a configured webhook",
                addressed.url
            ));
        };
        // The id and type go in headers too, so a receiver can drop a
        // duplicate before parsing the body.
        let (id, kind) = match serde_json::from_str::<Event>(&addressed.body) {
            Ok(event) => (event.id, event.kind.as_str()),
            Err(e) => return Delivery::Rejected(format!("not a webhook event: {e}")),
        };
        let timestamp = self.clock.now();
        let signature = sign(&endpoint.secret, timestamp, &addressed.body);
        let sent = self
            .http
            .post(&endpoint.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, format!("t={timestamp},v1={signature}"))
            .header(EVENT_ID_HEADER, id)
            .header(EVENT_TYPE_HEADER, kind)
            .body(addressed.body)
            .send()
            .await;
        match sent {
            Ok(response) if response.status().is_success() => Delivery::Sent,
            // Any other answer may be a receiver being deployed or
            // misconfigured for a while: the outbox tries again with
            // backoff and gives up after its attempts.
            Ok(response) => Delivery::Retry(format!(
                "{} answered HTTP {}",
                endpoint.url,
                response.status()
            )),
            Err(e) => Delivery::Retry(format!("{}: {e}", endpoint.url)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_covers_time_and_body() {
        // RFC 4231 test case 2 checks the HMAC itself: key "Jefe".
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let a = sign("a-secret-of-16-chars", 1_700_000_000, "{}");
        assert_eq!(a.len(), 64);
        assert_ne!(a, sign("a-secret-of-16-chars", 1_700_000_001, "{}"));
        assert_ne!(a, sign("a-secret-of-16-chars", 1_700_000_000, "{ }"));
        assert_ne!(a, sign("another-secret-16ch", 1_700_000_000, "{}"));
    }

    #[test]
    fn endpoints_are_checked() {
        let ok = WebhookEndpoint {
            url: "https://ops.example/hooks".into(),
            secret: "0123456789abcdef".into(),
            events: all_events(),
        };
        assert_eq!(validate(std::slice::from_ref(&ok)), Ok(()));
        for (bad, says) in [
            (
                WebhookEndpoint {
                    url: "ftp://ops.example".into(),
                    ..ok.clone()
                },
                "http:// or https://",
            ),
            (
                WebhookEndpoint {
                    url: "not a url".into(),
                    ..ok.clone()
                },
                "webhook \"not a url\"",
            ),
            (
                WebhookEndpoint {
                    secret: "short".into(),
                    ..ok.clone()
                },
                "at least 16",
            ),
            (
                WebhookEndpoint {
                    events: vec![],
                    ..ok.clone()
                },
                "lists no event",
            ),
        ] {
            let err = validate(&[bad]).unwrap_err();
            assert!(err.contains(says), "{err}");
        }
        let err = validate(&[ok.clone(), ok.clone()]).unwrap_err();
        assert!(err.contains("twice"), "{err}");
        assert!(!format!("{ok:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn events_read_from_toml_and_unknown_ones_are_refused() {
        let table: toml::Table = toml::from_str(
            r#"
            [[webhooks]]
            url = "https://a.example/"
            secret = "0123456789abcdef"
            events = ["device.linked", "network.blocked"]

            [[webhooks]]
            url = "https://b.example/"
            secret = "0123456789abcdef"
            "#,
        )
        .unwrap();
        let endpoints = from_toml(&table["webhooks"]).unwrap();
        assert_eq!(
            endpoints[0].events,
            [EventType::DeviceLinked, EventType::NetworkBlocked]
        );
        assert_eq!(endpoints[1].events, EventType::ALL);
        let table: toml::Table = toml::from_str(
            "[[webhooks]]\nurl = \"https://a.example/\"\nsecret = \"0123456789abcdef\"\nevents = [\"device.linkd\"]\n",
        )
        .unwrap();
        let err = from_toml(&table["webhooks"]).unwrap_err();
        assert!(err.contains("device.linkd"), "{err}");
    }

    #[test]
    fn an_event_keeps_its_wire_names() {
        let e = Event::network_blocked("203.0.113.7", 3, 200, 100);
        let text = serde_json::to_string(&e).unwrap();
        assert!(text.contains("\"type\":\"network.blocked\""), "{text}");
        assert!(e.id.starts_with("evt_"));
        let back: Event = serde_json::from_str(&text).unwrap();
        assert_eq!(back, e);
    }
}

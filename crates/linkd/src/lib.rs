//! linkd: a self-hosted device linking service. A device without a keyboard
//! shows a code; a person enters it on `/link`, approves, and the device
//! gets tokens (OAuth 2.0 Device Authorization Grant, RFC 8628).

/// What a person changes on /account: password, address, sessions, deletion.
pub mod account_changes;
/// People: accounts, password hashes, browser sessions.
pub mod accounts;
/// The JSON API linked devices call with their access tokens.
pub mod api;
/// The router: every route and its handler, as one table.
pub mod app;
/// The operator's brand: product name, logo, accent colour, support link.
pub mod brand;
/// What each `linkd` command does.
pub mod cli;
/// The address a request came from, behind trusted proxies or not.
pub mod client_ip;
/// The injected time source.
pub mod clock;
/// Code entry on `/link`: the limits taken around each code lookup.
pub mod code_entry;
/// The authorization code grant with PKCE: requests, codes, redemption.
pub mod code_flow;
/// User codes, device codes and hashes of stored secrets.
pub mod codes;
/// Server configuration from flags and `LINKD_*` variables.
pub mod config;
/// Accepting connections: caps, timeouts, lingering close.
pub mod connections;
/// The context every domain function takes: store, keys, config, time.
pub mod ctx;
/// The device authorization grant: start, the person's decision, polls.
pub mod device_flow;
/// Linked devices: ownership, renaming, unlinking, their activity.
pub mod devices;
/// DPoP (RFC 9449): proofs of the key a device's tokens are bound to.
pub mod dpop;
/// At most N password hashes at once, server-wide.
pub mod hashing;
/// The words people read, per language, and the choice of language.
pub mod i18n;
/// Background jobs: purge, key reloads, store metrics, poll sweep.
pub mod jobs;
/// Rate limits and brute-force counters.
pub mod limits;
/// "A new device was linked" mails and their "This wasn't me" links.
pub mod link_notice;
/// Mail to people: composing it, and sending it over SMTP.
pub mod mail;
/// The layer around every request: ids, logs, headers, metrics.
pub mod middleware;
/// OAuth and OpenID endpoints, with RFC 6749 JSON errors.
pub mod oauth;
/// The outbox's sending side: workers, retries with backoff, per-kind senders.
pub mod outbox;
/// Passkeys: WebAuthn credentials added on the account page and signed in with.
pub mod passkeys;
/// Device-code phishing defences: number matching, proximity, reports.
pub mod phishing;
/// Password-reset links and the reset itself.
pub mod recovery;
/// The scopes linkd knows and their plain-words descriptions.
pub mod scopes;
/// Serving over plain HTTP or TLS, and graceful shutdown.
pub mod serve;
/// The state every handler shares, and how it is built at start-up.
pub mod state;
/// The `Store` trait and its SQLite and PostgreSQL implementations.
pub mod store;
/// Caps on open settings event streams.
pub mod streams;
/// Settings sync: versioned JSON documents shared by linked devices.
pub mod sync;
/// Metrics and the request middleware that records them.
pub mod telemetry;
/// Text from outside made safe to show: names without invisible characters.
pub mod text;
/// Every token rule: keys, minting, Bearer checks, revocation, refresh.
pub mod tokens;
/// Sign-in through the operator's OpenID providers; identities by (issuer, subject).
pub mod upstream;
/// Verified addresses: links mailed to confirm an address.
pub mod verification;
/// Devices waiting for a decision (the long poll).
pub mod waits;
/// The person's pages, with HTML errors, CSRF and security headers.
pub mod web;
/// Webhooks to the operator: events, their fan-out to endpoints, signed delivery.
pub mod webhooks;
/// The time zone a person reads times in, checked against the tz database.
pub mod zone;

pub use config::Config;

#[cfg(test)]
mod layout_tests;

//! linkd: a self-hosted device linking service. A device without a keyboard
//! shows a code; a person enters it on `/link`, approves, and the device
//! gets tokens (OAuth 2.0 Device Authorization Grant, RFC 8628).

/// People: accounts, password hashes, browser sessions.
pub mod accounts;
/// The JSON API linked devices call with their access tokens.
pub mod api;
/// The router and the state shared by every handler.
pub mod app;
/// The operator's brand: product name, logo, accent colour, support link.
pub mod brand;
/// What each `linkd` command does.
pub mod cli;
/// The injected time source.
pub mod clock;
/// User codes, device codes and hashes of stored secrets.
pub mod codes;
/// Server configuration from flags and `LINKD_*` variables.
pub mod config;
/// The device authorization state machine and token minting.
pub mod device_flow;
/// Linked devices: Bearer checks, refresh rotation, revocation, introspection.
pub mod devices;
/// The words people read, per language, and the choice of language.
pub mod i18n;
/// Rate limits and brute-force counters.
pub mod limits;
/// OAuth and OpenID endpoints, with RFC 6749 JSON errors.
pub mod oauth;
/// The scopes linkd knows and their plain-words descriptions.
pub mod scopes;
/// The `Store` trait and its SQLite and PostgreSQL implementations.
pub mod store;
/// Settings sync: versioned JSON documents shared by linked devices.
pub mod sync;
/// Metrics and the request middleware that records them.
pub mod telemetry;
/// Signing keys, JWT access tokens and ID tokens.
pub mod tokens;
/// Devices waiting for a decision (the long poll).
pub mod waits;
/// The person's pages, with HTML errors, CSRF and security headers.
pub mod web;

pub use config::Config;

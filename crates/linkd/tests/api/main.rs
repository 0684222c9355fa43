//! Black-box tests: each talks HTTP to the real server on a random port
//! with its own database.

#![allow(clippy::unwrap_used)]

mod burst;
mod helpers;

mod account_page;
mod attack;
mod authorize;
mod branding;
mod cli;
mod clients;
mod connections;
mod device_flow;
mod device_wait;
mod discovery;
mod dpop;
mod forwarded;
mod hardening;
mod hostile;
mod input;
mod oidc_provider;

mod instances;
mod languages;
mod lifecycle;
mod link_notice;
mod mail;
mod operations;
mod outage;
mod page_weight;
mod pages;
mod passkeys;
mod people;
mod phishing;
mod postgres_tls;
mod recovery;
mod refresh;
mod reports;
mod store;
mod streams;
mod sync;
mod telemetry;
mod upstream;
mod webhooks;

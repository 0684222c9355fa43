//! Black-box tests: each talks HTTP to the real server on a random port
//! with its own database.

#![allow(clippy::unwrap_used)]

mod helpers;

mod cli;
mod clients;
mod device_flow;
mod discovery;
mod hardening;
mod hostile;
mod instances;
mod lifecycle;
mod operations;
mod outage;
mod pages;
mod store;
mod sync;
mod telemetry;

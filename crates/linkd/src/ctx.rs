//! The context a domain function works in: the store, the signing keys,
//! the configuration, the limits and the time of the request, read once
//! per request from the shared state and passed as one value.

use std::sync::Arc;

use crate::Config;
use crate::brand::Brand;
use crate::limits::Limits;
use crate::store::{Store, Timestamp};
use crate::tokens::Keys;

pub struct Ctx<'a> {
    pub store: &'a dyn Store,
    /// The key set at the start of the request; a rotation during it
    /// applies from the next request on.
    pub keys: Arc<Keys>,
    pub config: &'a Config,
    /// The operator's brand, for the mail a domain function writes.
    pub brand: &'a Brand,
    pub limits: &'a Limits,
    /// Woken after a write that enqueued messages.
    pub outbox: &'a crate::outbox::Outbox,
    /// Seconds since the Unix epoch, from the server's clock.
    pub now: Timestamp,
    /// The same instant in milliseconds (the poll table's resolution).
    pub now_ms: i64,
}

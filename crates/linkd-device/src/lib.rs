//! A small client for the OAuth 2.0 Device Authorization Grant (RFC 8628),
//! for device developers. It speaks plain RFC 8628 to any compliant
//! server, linkd included, and has no server dependencies. With a
//! [`DpopKey`] ([`Device::with_dpop`]) its tokens are bound to the device's
//! key (RFC 9449) where the server supports it.
//!
//! ```no_run
//! # async fn run() -> Result<(), linkd_device::Error> {
//! let device = linkd_device::Device::discover("https://example.com", "my-tv").await?;
//! let auth = device.request_code(Some("openid offline_access"), Some("Living room TV")).await?;
//! println!("Go to {} and enter {}", auth.verification_uri, auth.user_code);
//! let tokens = device.wait_for_tokens(&auth).await?;
//! # Ok(()) }
//! ```

/// The device app: server endpoints and client authentication.
mod client;
/// DPoP (RFC 9449): the device's key and the proofs it signs.
mod dpop;
/// Errors, and RFC 6749 §5.2 error bodies read into them.
mod error;
/// The device authorization grant: code, waiting, tokens, refresh.
mod flow;
/// linkd's own device API: link info, unlink, brand.
mod linked;
/// Settings sync: documents, conditional writes, the change feed.
mod sync;
/// Tokens kept between runs, in an owner-only file.
mod token_file;
/// The live change stream (server-sent events), resumable.
mod watch;

pub use client::{Device, Endpoints};
pub use dpop::DpopKey;
pub use error::Error;
pub use flow::{DEVICE_CODE_GRANT, DeviceAuthorization, Poll, Tokens};
pub use linked::Brand;
pub use sync::{SyncChange, SyncChanges, SyncDocument, SyncPrecondition, SyncWrite};
pub use token_file::SavedTokens;
pub use watch::SyncWatch;

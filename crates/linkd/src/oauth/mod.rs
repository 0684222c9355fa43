//! The OAuth and OpenID endpoints devices and resource servers talk to.
//! Errors here are RFC 6749 §5.2 JSON bodies.

pub mod client_auth;
pub mod device_authorization;
pub mod discovery;
pub mod error;
pub mod form;
pub mod token;

pub use error::OAuthError;

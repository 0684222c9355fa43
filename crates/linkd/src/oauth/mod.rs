//! The OAuth and OpenID endpoints devices and resource servers talk to.
//! Errors here are RFC 6749 §5.2 JSON bodies.

pub mod bearer;
pub mod client_auth;
pub mod device_authorization;
pub mod device_wait;
pub mod discovery;
pub mod error;
pub mod form;
pub mod introspect;
pub mod revoke;
pub mod token;
pub mod userinfo;

pub use error::OAuthError;

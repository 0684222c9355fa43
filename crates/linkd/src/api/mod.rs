//! linkd's own JSON API for linked devices, authenticated with their
//! access tokens (RFC 6750 Bearer).

pub mod brand;
pub mod device;
pub mod sync;

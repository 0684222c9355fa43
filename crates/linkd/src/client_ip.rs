//! The address a request came from: the connection's peer, or behind a
//! configured trusted proxy, the address that proxy reports.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;

use crate::state::AppState;

/// The address of the person or device that sent the request: the
/// connection's peer, or, when the peer is a configured trusted proxy, the
/// address that proxy reports.
#[derive(Debug, Clone, Copy)]
pub struct ClientIp(pub IpAddr);

/// Walks a forwarding header from the right (the entry our proxy added)
/// past trusted proxies; the first untrusted address is the client.
/// Anything a client wrote further left is never believed.
pub fn client_ip(peer: IpAddr, header: Option<&str>, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    for entry in header.unwrap_or("").rsplit(',') {
        let entry = entry.trim();
        // Accept "for=" forms loosely and bracketed or port-suffixed IPv6/IPv4.
        let entry = entry.trim_start_matches("for=").trim_matches('"');
        let parsed = entry
            .parse::<IpAddr>()
            .or_else(|_| entry.parse::<SocketAddr>().map(|s| s.ip()))
            .or_else(|_| {
                entry
                    .trim_start_matches('[')
                    .split(']')
                    .next()
                    .unwrap_or("")
                    .parse::<IpAddr>()
            });
        let Ok(ip) = parsed else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

impl FromRequestParts<AppState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(addr)| addr.ip())
            .unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let config = &state.config;
        if config.trusted_proxies.is_empty() {
            return Ok(ClientIp(peer));
        }
        let header = parts
            .headers
            .get(config.client_ip_header.as_str())
            .and_then(|v| v.to_str().ok());
        Ok(ClientIp(client_ip(peer, header, &config.trusted_proxies)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> = vec!["10.0.0.0/8".parse().unwrap()];
        let proxy: IpAddr = "10.1.2.3".parse().unwrap();
        let stranger: IpAddr = "203.0.113.9".parse().unwrap();
        // A direct client cannot claim another address.
        assert_eq!(
            client_ip(stranger, Some("198.51.100.1"), &trusted),
            stranger
        );
        // Through the proxy: the rightmost untrusted entry; spoofed entries
        // to its left are ignored.
        assert_eq!(
            client_ip(proxy, Some("1.1.1.1, 198.51.100.1, 10.9.9.9"), &trusted),
            "198.51.100.1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(proxy, None, &trusted), proxy);
        assert_eq!(client_ip(proxy, Some("garbage"), &trusted), proxy);
        assert_eq!(
            client_ip(proxy, Some("[2001:db8::1]:443"), &trusted),
            "2001:db8::1".parse::<IpAddr>().unwrap()
        );
        assert_eq!(client_ip(proxy, Some("198.51.100.1"), &[]), proxy);
    }
}

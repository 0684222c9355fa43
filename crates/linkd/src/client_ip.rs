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

/// Walks the forwarding header from the right (the entry our own proxy
/// added) past trusted proxies; the first untrusted address is the client.
/// Anything a client wrote further left is never believed.
///
/// `lines` are the header's field lines in the order received, `None` for
/// a line that is not text. RFC 9110 §5.3: several lines of one field are
/// one comma-separated list, so a client cannot hide its own line behind
/// ours (`X-Forwarded-For: 6.6.6.6` sent by the client and the proxy's
/// line appended after it): the walk goes over all of them, last line
/// first. Empty list elements are ignored (RFC 9110 §5.6.1).
///
/// A malformed entry stops the walk, and the last address reached is
/// believed: the peer or the trusted proxy that passed the entry on. The
/// entries to its left were relayed by nobody we trust to have checked
/// them, and skipping the bad one would let a client that can make its own
/// entry unreadable choose any address further left. Believing the proxy
/// is the safe side: its requests share its limits.
pub fn client_ip<'a>(
    peer: IpAddr,
    lines: impl DoubleEndedIterator<Item = Option<&'a str>>,
    trusted: &[ipnet::IpNet],
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let mut client = peer;
    for line in lines.rev() {
        let Some(line) = line else { return client };
        for entry in line.rsplit(',').map(str::trim).filter(|e| !e.is_empty()) {
            let Some(ip) = forwarded_address(entry) else {
                return client;
            };
            client = ip;
            if !is_trusted(&ip) {
                return client;
            }
        }
    }
    client
}

/// One list entry: an address (`203.0.113.7`, `2001:db8::1`), with a port
/// (`203.0.113.7:443`, `[2001:db8::1]:443`), bracketed (`[2001:db8::1]`),
/// or an RFC 7239 `Forwarded` element (`for="[2001:db8::1]:443";proto=https`).
/// Obfuscated identifiers (`unknown`, `_hidden`) are not addresses.
fn forwarded_address(entry: &str) -> Option<IpAddr> {
    let value = if entry.contains('=') {
        entry.split(';').find_map(|pair| {
            let (key, value) = pair.split_once('=')?;
            key.trim().eq_ignore_ascii_case("for").then(|| value.trim())
        })?
    } else {
        entry
    };
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    value
        .parse::<IpAddr>()
        .or_else(|_| value.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .or_else(|| {
            value
                .strip_prefix('[')?
                .strip_suffix(']')?
                .parse::<std::net::Ipv6Addr>()
                .ok()
                .map(IpAddr::V6)
        })
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
        let lines = parts
            .headers
            .get_all(config.client_ip_header.as_str())
            .iter()
            .map(|v| v.to_str().ok());
        Ok(ClientIp(client_ip(peer, lines, &config.trusted_proxies)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    /// The client address behind `peer` for these header lines.
    fn from(peer: &str, lines: &[&str], trusted: &[&str]) -> IpAddr {
        let trusted: Vec<ipnet::IpNet> = trusted
            .iter()
            .map(|t| crate::config::parse_trusted_proxy(t).unwrap())
            .collect();
        client_ip(ip(peer), lines.iter().map(|l| Some(*l)), &trusted)
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted = ["10.0.0.0/8"];
        // A direct client cannot claim another address.
        assert_eq!(
            from("203.0.113.9", &["198.51.100.1"], &trusted),
            ip("203.0.113.9")
        );
        // Through the proxy: the rightmost untrusted entry; spoofed entries
        // to its left are ignored.
        assert_eq!(
            from("10.1.2.3", &["1.1.1.1, 198.51.100.1, 10.9.9.9"], &trusted),
            ip("198.51.100.1")
        );
        assert_eq!(from("10.1.2.3", &[], &trusted), ip("10.1.2.3"));
        assert_eq!(
            from("10.1.2.3", &["[2001:db8::1]:443"], &trusted),
            ip("2001:db8::1")
        );
        assert_eq!(from("10.1.2.3", &["198.51.100.1"], &[]), ip("10.1.2.3"));
    }

    #[test]
    fn several_lines_are_one_list_read_from_the_last_line() {
        let trusted = ["10.0.0.0/8"];
        // The client's own line first, the proxy's appended after it: the
        // proxy's entry is the client, however the lines are split.
        assert_eq!(
            from("10.1.2.3", &["6.6.6.6", "198.51.100.1"], &trusted),
            ip("198.51.100.1")
        );
        assert_eq!(
            from(
                "10.1.2.3",
                &["6.6.6.6", "198.51.100.1, 10.2.2.2", "10.3.3.3"],
                &trusted
            ),
            ip("198.51.100.1")
        );
        // A trusted hop in its own line is walked past into the earlier line.
        assert_eq!(
            from("10.1.2.3", &["6.6.6.6, 198.51.100.1", "10.2.2.2"], &trusted),
            ip("198.51.100.1")
        );
        // Empty elements and empty lines are ignored (RFC 9110 §5.6.1).
        assert_eq!(
            from("10.1.2.3", &["198.51.100.1,, ", ""], &trusted),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn a_single_address_is_a_trusted_proxy() {
        assert_eq!(
            from("127.0.0.1", &["198.51.100.1"], &["127.0.0.1"]),
            ip("198.51.100.1")
        );
        assert_eq!(from("::1", &["2001:db8::5"], &["::1"]), ip("2001:db8::5"));
        // Only that address: its neighbour is a stranger.
        assert_eq!(
            from("127.0.0.2", &["198.51.100.1"], &["127.0.0.1"]),
            ip("127.0.0.2")
        );
    }

    #[test]
    fn a_malformed_entry_stops_the_walk_at_the_last_trusted_hop() {
        let trusted = ["10.0.0.0/8"];
        // The proxy passed on an entry it could not vouch for: the proxy
        // is believed, never an address further left.
        assert_eq!(
            from("10.1.2.3", &["6.6.6.6, garbage"], &trusted),
            ip("10.1.2.3")
        );
        assert_eq!(
            from("10.1.2.3", &["6.6.6.6", "unknown, 10.2.2.2"], &trusted),
            ip("10.2.2.2")
        );
        assert_eq!(
            from("10.1.2.3", &["6.6.6.6", "1.2.3.4.5"], &trusted),
            ip("10.1.2.3")
        );
        // A line that is not text stops the walk too.
        let lines = [Some("6.6.6.6"), None];
        assert_eq!(
            client_ip(
                ip("10.1.2.3"),
                lines.into_iter(),
                &[trusted[0].parse().unwrap()]
            ),
            ip("10.1.2.3")
        );
        // Garbage left of the client's address does not matter.
        assert_eq!(
            from("10.1.2.3", &["garbage, 198.51.100.1"], &trusted),
            ip("198.51.100.1")
        );
    }

    #[test]
    fn forwarded_elements_and_ports_are_read() {
        let trusted = ["10.0.0.0/8"];
        assert_eq!(
            from(
                "10.1.2.3",
                &[
                    "for=6.6.6.6",
                    "for=\"[2001:db8::7]:443\";proto=https;by=10.0.0.1"
                ],
                &trusted
            ),
            ip("2001:db8::7")
        );
        assert_eq!(
            from("10.1.2.3", &["proto=https;For=198.51.100.3"], &trusted),
            ip("198.51.100.3")
        );
        assert_eq!(from("10.1.2.3", &["for=_hidden"], &trusted), ip("10.1.2.3"));
        assert_eq!(
            from("10.1.2.3", &["198.51.100.4:8080"], &trusted),
            ip("198.51.100.4")
        );
        assert_eq!(
            from("10.1.2.3", &["[2001:db8::9]"], &trusted),
            ip("2001:db8::9")
        );
    }
}

//! Who is asking: the client of a dashboard request, for the audit log and the per-address
//! sign-in limits. The extension reads it from the transaction's settings (`db::begin`).
//!
//! The client's address is the TCP peer's. Only when the peer is one of the trusted
//! proxies (`--trusted-proxies`) does `X-Forwarded-For` count: its addresses are walked
//! from the right, past trusted proxies, and the first that is not one is the client.
//! What lies left of it was written by the client itself, so it is never read.

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::USER_AGENT;
use axum::http::request::Parts;
use ipnet::IpNet;

use crate::db::RequestContext;
use crate::state::AppState;

/// The longest user agent passed on; the audit log keeps 500 characters of it.
const MAX_USER_AGENT_CHARS: usize = 500;

/// The proxies whose `X-Forwarded-For` is believed: addresses and CIDR ranges.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// A comma-separated list such as `127.0.0.1, 10.0.0.0/8, ::1`; empty trusts no one.
    /// The error is the item that is neither an address nor a range.
    pub fn parse(raw: &str) -> Result<Self, String> {
        raw.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                item.parse::<IpNet>()
                    .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| item.to_string())
            })
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer`, given the request's `X-Forwarded-For` (its lines joined
    /// by commas; `None` when a line is not text). A malformed header, or one sent by a
    /// peer that is not a trusted proxy, leaves the peer.
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        // A dual-stack listener sees IPv4 clients as ::ffff:a.b.c.d.
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let Some(header) = forwarded_for else {
            return peer;
        };
        let mut client = peer;
        for hop in header.split(',').rev() {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                return peer;
            };
            client = ip.to_canonical();
            if !self.trusts(client) {
                return client;
            }
        }
        // Every hop is a trusted proxy: the leftmost is as far as anyone can see.
        client
    }
}

/// The request's context for `db::begin`: the client's address and user agent, and the
/// dashboard's public address. It never refuses a request: what cannot be read is left out.
pub struct ClientContext(pub RequestContext);

impl FromRequestParts<AppState> for ClientContext {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let forwarded_for = parts
            .headers
            .get_all("x-forwarded-for")
            .iter()
            .map(|value| value.to_str().ok())
            .collect::<Option<Vec<_>>>()
            .map(|lines| lines.join(","));
        let client_ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(peer)| state.trusted_proxies().client_ip(peer.ip(), forwarded_for.as_deref()));
        let user_agent = parts
            .headers
            .get(USER_AGENT)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).chars().take(MAX_USER_AGENT_CHARS).collect());
        Ok(ClientContext(RequestContext { client_ip, user_agent, public_url: state.public_url().to_string() }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn proxies(list: &str) -> TrustedProxies {
        TrustedProxies::parse(list).unwrap()
    }

    #[test]
    fn addresses_and_ranges_parse_and_junk_is_named() {
        let trusted = proxies(" 127.0.0.1, 10.0.0.0/8 ,::1,fd00::/8,");
        for inside in ["127.0.0.1", "10.1.2.3", "::1", "fd12::1"] {
            assert!(trusted.trusts(ip(inside)), "{inside}");
        }
        for outside in ["127.0.0.2", "11.0.0.1", "::2", "203.0.113.7"] {
            assert!(!trusted.trusts(ip(outside)), "{outside}");
        }
        assert!(proxies("").0.is_empty());
        assert_eq!(TrustedProxies::parse("127.0.0.1, proxy.local").unwrap_err(), "proxy.local");
        assert_eq!(TrustedProxies::parse("10.0.0.0/33").unwrap_err(), "10.0.0.0/33");
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let none = TrustedProxies::default();
        assert_eq!(none.client_ip(ip("127.0.0.1"), Some("203.0.113.7")), ip("127.0.0.1"));
        let trusted = proxies("10.0.0.1");
        assert_eq!(trusted.client_ip(ip("198.51.100.9"), Some("203.0.113.7")), ip("198.51.100.9"));
    }

    #[test]
    fn behind_a_trusted_proxy_the_rightmost_untrusted_hop_is_the_client() {
        let trusted = proxies("127.0.0.1, 10.0.0.0/8");
        let peer = ip("127.0.0.1");
        assert_eq!(trusted.client_ip(peer, Some("203.0.113.7")), ip("203.0.113.7"));
        // A client that writes its own X-Forwarded-For cannot choose its address.
        assert_eq!(trusted.client_ip(peer, Some("198.51.100.1, 203.0.113.7")), ip("203.0.113.7"));
        // Trusted hops on the right are skipped.
        assert_eq!(trusted.client_ip(peer, Some("198.51.100.1,203.0.113.7, 10.0.0.5 ,10.2.0.1")), ip("203.0.113.7"));
        // Junk left of the client is never read.
        assert_eq!(trusted.client_ip(peer, Some("not an address, 203.0.113.7")), ip("203.0.113.7"));
        // Nothing but proxies: the leftmost.
        assert_eq!(trusted.client_ip(peer, Some("10.0.0.9, 10.0.0.5")), ip("10.0.0.9"));
        assert_eq!(trusted.client_ip(peer, Some("2001:db8::7")), ip("2001:db8::7"));
        // IPv4 seen through a dual-stack socket.
        assert_eq!(trusted.client_ip(ip("::ffff:127.0.0.1"), Some("::ffff:203.0.113.7")), ip("203.0.113.7"));
    }

    #[test]
    fn a_missing_or_malformed_header_leaves_the_peer() {
        let trusted = proxies("127.0.0.1");
        let peer = ip("127.0.0.1");
        for header in [None, Some(""), Some("   "), Some("203.0.113.7:4711"), Some("203.0.113.7,"), Some("unknown"), Some("[2001:db8::7]")] {
            assert_eq!(trusted.client_ip(peer, header), peer, "{header:?}");
        }
    }
}

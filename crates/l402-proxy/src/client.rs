//! Who the client is: its address (through trusted proxies, from `X-Forwarded-For`), and the prefix that
//! freebies and rate limits count by.
//!
//! Behind a load balancer every connection comes from the balancer, so the address it saw has to be taken
//! from `X-Forwarded-For`; but any client can send that header, so it is read only when the connection comes
//! from a configured trusted proxy, right to left, skipping the trusted hops: the first entry that is not
//! trusted is the client (what nginx's `real_ip_recursive on` does). An address the client chose itself (an
//! entry left of it) is never used.

use std::net::IpAddr;

use http::HeaderMap;
use ipnet::IpNet;

use crate::config::ConfigError;

/// What limits count by: an IPv4 address (/32) or an IPv6 /64 (one subscriber usually holds a whole /64, so
/// counting single IPv6 addresses would give each of them 2^64 identities).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientPrefix {
    /// An IPv4 address (IPv4-mapped IPv6 addresses count as IPv4).
    V4(u32),
    /// The first 64 bits of an IPv6 address.
    V6(u64),
}

impl ClientPrefix {
    /// The prefix `ip` belongs to.
    pub fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => ClientPrefix::V4(u32::from(v4)),
            IpAddr::V6(v6) => ClientPrefix::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

/// The configured trusted proxies (`trusted_proxies = ["10.0.0.0/8", ...]`).
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Parses CIDR blocks (a bare address is a /32 or /128).
    pub fn parse(blocks: &[String]) -> Result<Self, ConfigError> {
        let mut nets = Vec::with_capacity(blocks.len());
        for b in blocks {
            let net = b
                .parse::<IpNet>()
                .or_else(|_| b.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| ConfigError(format!("trusted_proxies: {b:?} is not an address or CIDR block")))?;
            nets.push(net);
        }
        Ok(Self(nets))
    }

    /// Whether `ip` is a trusted proxy.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client's address for a connection from `peer` carrying `headers`: `peer` itself unless it is
    /// trusted; then the right-most `X-Forwarded-For` entry that is not trusted. An entry that is not an
    /// address stops the walk (the hop right of it, trusted, is the client); if every entry is trusted, the
    /// left-most is.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if self.0.is_empty() || !self.contains(peer) {
            return peer;
        }
        let mut client = peer;
        let values: Vec<&[u8]> = headers.get_all("x-forwarded-for").iter().map(|v| v.as_bytes()).collect();
        for value in values.iter().rev() {
            for entry in value.rsplit(|&b| b == b',') {
                let Some(ip) = parse_entry(entry) else { return client };
                client = ip;
                if !self.contains(ip) {
                    return ip;
                }
            }
        }
        client
    }
}

/// One `X-Forwarded-For` entry: an address, optionally with a port (`1.2.3.4:80`, `[::1]:80`).
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let s = std::str::from_utf8(entry).ok()?.trim_matches([' ', '\t']);
    s.parse::<IpAddr>()
        .ok()
        .or_else(|| s.parse::<std::net::SocketAddr>().ok().map(|a| a.ip()))
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(xff: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in xff {
            h.append("x-forwarded-for", v.parse().expect("value"));
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn prefixes() {
        assert_eq!(ClientPrefix::of(ip("203.0.113.7")), ClientPrefix::V4(0xcb00_7107));
        assert_eq!(ClientPrefix::of(ip("::ffff:203.0.113.7")), ClientPrefix::of(ip("203.0.113.7")));
        assert_eq!(ClientPrefix::of(ip("2001:db8:1:2::1")), ClientPrefix::of(ip("2001:db8:1:2:ffff::9")));
        assert_ne!(ClientPrefix::of(ip("2001:db8:1:2::1")), ClientPrefix::of(ip("2001:db8:1:3::1")));
        assert_ne!(ClientPrefix::of(ip("10.0.0.1")), ClientPrefix::of(ip("10.0.0.2")));
    }

    #[test]
    fn forwarded_for_is_read_only_from_trusted_peers() {
        let t = TrustedProxies::parse(&["10.0.0.0/8".into(), "2001:db8::1".into()]).expect("parse");
        let h = headers(&["198.51.100.1, 203.0.113.9", "10.1.1.1"]);
        // Untrusted peer: its own address, whatever it sends.
        assert_eq!(t.client(ip("192.0.2.5"), &h), ip("192.0.2.5"));
        // Trusted peer: right to left, skipping trusted hops; the spoofable left-most entry is never used.
        assert_eq!(t.client(ip("10.0.0.2"), &h), ip("203.0.113.9"));
        assert_eq!(t.client(ip("::ffff:10.0.0.2"), &h), ip("203.0.113.9"));
        assert_eq!(t.client(ip("2001:db8::1"), &headers(&["[2001:db8::7]:443"])), ip("2001:db8::7"));
        // Garbage stops the walk at the last trusted hop; all trusted: the left-most.
        assert_eq!(t.client(ip("10.0.0.2"), &headers(&["203.0.113.9, junk, 10.3.3.3"])), ip("10.3.3.3"));
        assert_eq!(t.client(ip("10.0.0.2"), &headers(&["10.4.4.4, 10.3.3.3"])), ip("10.4.4.4"));
        assert_eq!(t.client(ip("10.0.0.2"), &headers(&[])), ip("10.0.0.2"));
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["nonsense".into()]).is_err());
        assert_eq!(TrustedProxies::default().client(ip("10.0.0.2"), &h), ip("10.0.0.2"));
    }
}

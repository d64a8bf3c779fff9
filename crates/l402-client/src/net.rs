//! Where the client may connect: any address, or public unicast addresses only (what an agent's tool wants,
//! so that a URL it was handed cannot reach the machine's own services or its private network).
//!
//! [`Destinations::PublicOnly`] is enforced on the addresses actually connected to, not on the name in the URL:
//! a host name is resolved by [`PublicResolver`], which hands the HTTP client only the addresses that pass,
//! so the connection goes to an address that was checked (a name that resolves to a public address when
//! looked at and to `127.0.0.1` when connected to, DNS rebinding, gets no second lookup to exploit). An IP
//! literal in a URL is never resolved, so [`Destinations::check_literal`] checks it before every request,
//! each redirect included. Proxies from the environment are not used under this policy: the address checked
//! must be the one connected to.
//!
//! Refused: unspecified (`0.0.0.0/8`, `::`), loopback (`127.0.0.0/8`, `::1`), private (`10/8`, `172.16/12`,
//! `192.168/16`), link-local (`169.254/16`, `fe80::/10`), unique-local (`fc00::/7`), CGNAT (`100.64/10`),
//! IETF protocol assignments (`192.0.0.0/24`), benchmarking (`198.18/15`), multicast, reserved (`240/4`,
//! broadcast included), site-local (`fec0::/10`), discard-only (`100::/64`), and IPv4 addresses embedded in
//! IPv6 (mapped `::ffff:0:0/96`, compatible `::/96`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) by the class of
//! the IPv4 address inside.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Which addresses a [`crate::Client`] may connect to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Destinations {
    /// Any address (the default for the library: its caller chose the URL).
    #[default]
    Any,
    /// Public unicast addresses only, plus the addresses in `except`.
    PublicOnly {
        /// Addresses allowed although not public (an operator's own service, a test server).
        except: Vec<IpAddr>,
    },
}

/// A connection refused by [`Destinations::PublicOnly`]: the host, the address it is (or resolved to) and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AddressRefused {
    /// The host as the URL named it.
    pub host: String,
    /// The address refused (the first one, if a name resolved to several).
    pub address: IpAddr,
    /// Its class (`loopback`, `private`, ...).
    pub class: &'static str,
}

impl std::fmt::Display for AddressRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host == self.address.to_string() || self.host.trim_matches(['[', ']']) == self.address.to_string() {
            write!(f, "{} is a {} address", self.address, self.class)
        } else {
            write!(f, "{} resolves to {}, a {} address", self.host, self.address, self.class)
        }
    }
}

impl std::error::Error for AddressRefused {}

/// The class of an IPv4 address that is not public unicast, if it is not.
fn ipv4_class(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        (0, ..) => "unspecified",
        (127, ..) => "loopback",
        (10, ..) | (172, 16..=31, _) | (192, 168, _) => "private",
        (169, 254, _) => "link-local",
        (100, 64..=127, _) => "CGNAT (shared)",
        (192, 0, 0) => "IETF protocol assignment",
        (198, 18..=19, _) => "benchmarking",
        (224..=239, ..) => "multicast",
        (240..=255, ..) => "reserved",
        _ => return None,
    })
}

/// The class of an IPv6 address that is not public unicast, if it is not.
fn ipv6_class(ip: Ipv6Addr) -> Option<&'static str> {
    let s = ip.segments();
    let embedded = |hi: u16, lo: u16| Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    match s {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated): judged by the IPv4 address.
        [0, 0, 0, 0, 0, 0xffff, hi, lo] | [0, 0, 0, 0, 0, 0, hi, lo] => return ipv4_class(embedded(hi, lo)),
        // NAT64 (64:ff9b::/96): the IPv4 address is reached through the translator.
        [0x64, 0xff9b, 0, 0, 0, 0, hi, lo] => return ipv4_class(embedded(hi, lo)),
        // 6to4 (2002:aabb:ccdd::/48).
        [0x2002, hi, lo, ..] => return ipv4_class(embedded(hi, lo)),
        [0x100, 0, 0, 0, ..] => return Some("discard-only"),
        _ => {}
    }
    Some(match s[0] {
        x if x & 0xfe00 == 0xfc00 => "unique-local",
        x if x & 0xffc0 == 0xfe80 => "link-local",
        x if x & 0xffc0 == 0xfec0 => "site-local",
        x if x & 0xff00 == 0xff00 => "multicast",
        _ => return None,
    })
}

/// The class of an address that is not public unicast (`loopback`, `private`, ...), or `None` if it is public.
pub fn non_public_class(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => ipv4_class(v4),
        IpAddr::V6(v6) => ipv6_class(v6),
    }
}

impl Destinations {
    /// Why `ip` may not be connected to under this policy, if it may not.
    pub fn refusal(&self, ip: IpAddr) -> Option<&'static str> {
        match self {
            Destinations::Any => None,
            Destinations::PublicOnly { except } if except.contains(&ip) => None,
            Destinations::PublicOnly { .. } => non_public_class(ip),
        }
    }

    /// Checks the host of `url` if it is an IP literal (a name is checked when it is resolved).
    pub fn check_literal(&self, url: &Url) -> Result<(), AddressRefused> {
        // The URL parser writes every IPv4 form (`2130706433`, `0x7f.1`) as dotted decimal and IPv6 in brackets.
        let host = url.host_str().unwrap_or_default();
        let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() else { return Ok(()) };
        match self.refusal(ip) {
            Some(class) => Err(AddressRefused { host: host.to_owned(), address: ip, class }),
            None => Ok(()),
        }
    }
}

/// A resolver that returns only the addresses [`Destinations`] allows (the system resolver underneath), and
/// refuses a name none of whose addresses is allowed.
#[derive(Debug)]
pub struct PublicResolver {
    policy: Arc<Destinations>,
}

impl PublicResolver {
    /// A resolver enforcing `policy`.
    pub fn new(policy: Destinations) -> Self {
        Self { policy: Arc::new(policy) }
    }
}

impl Resolve for PublicResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| match policy.refusal(a.ip()) {
                    None => true,
                    Some(class) => {
                        refused.get_or_insert(AddressRefused { host: host.clone(), address: a.ip(), class });
                        false
                    }
                })
                .collect();
            match (allowed.is_empty(), refused) {
                (false, _) => Ok(Box::new(allowed.into_iter()) as Addrs),
                (true, Some(r)) => Err(Box::new(r) as Box<dyn std::error::Error + Send + Sync>),
                (true, None) => Err(format!("{host} has no address").into()),
            }
        })
    }
}

/// The [`AddressRefused`] inside a transport error, if the resolver refused the connection.
pub(crate) fn refused_in(e: &(dyn std::error::Error + 'static)) -> Option<AddressRefused> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(r) = err.downcast_ref::<AddressRefused>() {
            return Some(r.clone());
        }
        cur = err.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_non_public_class_is_refused_and_public_addresses_pass() {
        let refused = [
            "0.0.0.0",
            "0.1.2.3",
            "127.0.0.1",
            "127.255.0.9",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.8",
            "198.18.0.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "100::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:c0a8:0101::1",
        ];
        for a in refused {
            let ip: IpAddr = a.parse().expect("address");
            assert!(non_public_class(ip).is_some(), "{a} must be refused");
        }
        let public = [
            "1.1.1.1",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "::ffff:1.1.1.1",
            "2002:0101:0101::1",
        ];
        for a in public {
            let ip: IpAddr = a.parse().expect("address");
            assert_eq!(non_public_class(ip), None, "{a} is public");
        }
        let policy = Destinations::PublicOnly { except: vec!["127.0.0.1".parse().expect("ip")] };
        assert_eq!(policy.refusal("127.0.0.1".parse().expect("ip")), None, "an exception");
        assert_eq!(policy.refusal("127.0.0.2".parse().expect("ip")), Some("loopback"));
        assert_eq!(Destinations::Any.refusal("127.0.0.1".parse().expect("ip")), None);
    }

    #[test]
    fn ip_literals_in_urls_are_checked_however_they_are_written() {
        let policy = Destinations::PublicOnly { except: vec![] };
        for u in [
            "http://127.0.0.1/",
            "http://2130706433/",
            "http://0x7f.1/",
            "http://[::ffff:7f00:1]/",
            "http://[::1]:8080/",
            "https://10.0.0.1/",
        ] {
            let url = Url::parse(u).expect("url");
            assert!(policy.check_literal(&url).is_err(), "{u}");
        }
        assert!(
            policy.check_literal(&Url::parse("http://example.com/").expect("url")).is_ok(),
            "names are resolved later"
        );
        assert!(policy.check_literal(&Url::parse("https://1.1.1.1/").expect("url")).is_ok());
    }
}

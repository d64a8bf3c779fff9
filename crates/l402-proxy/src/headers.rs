//! What of a client's request headers may reach the upstream.
//!
//! Dropped before forwarding, in every case (paid, free path, freebie, payment off):
//! - hop-by-hop headers (RFC 9110 7.6.1: `Connection` and the headers it names, `Keep-Alive`, `Proxy-*`,
//!   `TE` except `trailers`, `Trailer`, `Transfer-Encoding`, `Upgrade`);
//! - every `Authorization` value that carries an L402/LSAT credential anywhere the paywall would read one
//!   (comma-joined after another scheme, tab-separated, any case), and `Macaroon` /
//!   `Grpc-Metadata-Macaroon`: the upstream never sees a credential;
//! - every `X-L402-*` header: only the proxy sets those (`X-L402-Token-Id`, `X-L402-Service`), and only for a
//!   verified token, so an upstream may trust them.

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use l402_proto::Credential;

/// The prefix of the headers only the proxy sets.
pub const L402_HEADER_PREFIX: &str = "x-l402-";

const HOP_BY_HOP: [HeaderName; 8] = [
    http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    http::header::UPGRADE,
];
const MACAROON: HeaderName = HeaderName::from_static("macaroon");
const GRPC_MACAROON: HeaderName = HeaderName::from_static("grpc-metadata-macaroon");

/// Whether a request header may have to go: a hop-by-hop one, a credential, an `X-L402-*`, or one a
/// `Connection` header could name (any other than the common end-to-end ones).
fn suspect_in_request(name: &HeaderName) -> bool {
    suspect_in_response(name)
        || *name == http::header::AUTHORIZATION
        || *name == MACAROON
        || *name == GRPC_MACAROON
        || name.as_str().starts_with(L402_HEADER_PREFIX)
}

/// Whether a response header may have to go (hop-by-hop).
fn suspect_in_response(name: &HeaderName) -> bool {
    HOP_BY_HOP.contains(name)
}

/// Removes everything of a client's request that must not reach the upstream (see the module doc). Most
/// requests have none of it: one pass over the names tells, and only then are the headers looked up.
pub fn strip_request(headers: &mut HeaderMap) {
    if !headers.keys().any(suspect_in_request) {
        return;
    }
    strip_hop_by_hop(headers);
    strip_credentials(headers);
    strip_l402_headers(headers);
}

/// Removes hop-by-hop headers, keeping `TE: trailers` (gRPC needs it end to end).
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Without `Connection` nothing else can be named hop-by-hop: one pass over the names tells.
    if !headers.keys().any(suspect_in_response) {
        return;
    }
    let named: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    let trailers = headers
        .get_all(http::header::TE)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("trailers"))));
    for name in named {
        headers.remove(name);
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
    if trailers {
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Removes L402 credentials; `Authorization` values of other schemes pass.
pub fn strip_credentials(headers: &mut HeaderMap) {
    let auth = headers.get_all(http::header::AUTHORIZATION);
    if auth.iter().any(|v| Credential::names_l402_scheme(v.as_bytes())) {
        let keep: Vec<HeaderValue> =
            auth.iter().filter(|v| !Credential::names_l402_scheme(v.as_bytes())).cloned().collect();
        headers.remove(http::header::AUTHORIZATION);
        for v in keep {
            headers.append(http::header::AUTHORIZATION, v);
        }
    }
    headers.remove(MACAROON);
    headers.remove(GRPC_MACAROON);
}

/// Removes every `X-L402-*` header.
pub fn strip_l402_headers(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> =
        headers.keys().filter(|n| n.as_str().starts_with(L402_HEADER_PREFIX)).cloned().collect();
    for n in names {
        headers.remove(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use l402_proto::DecodeError;

    const CRED: &str = "AgEEbHNhdAJCAABjDc0pZsQzZpESVEi7sltP9BKknHMtssirwbhYG9cQ3aurq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urAAIOc2VydmljZXM9c3ZjOjAAAhFzdmNfY2FwYWJpbGl0aWVzPQACGnN2Y192YWxpZF91bnRpbD0xNzAwMDAwMDAwAAAGIG0V+aBA2vQcLxi+SKWqFqjWoKOMl3Al3o1qy4E5KVLj:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn an_l402_credential_is_stripped_wherever_the_paywall_would_read_it() {
        let forms = [
            format!("L402 {CRED}"),
            format!("lsat {CRED}"),
            format!("L402\t{CRED}"),
            format!("Basic dXNlcjpwYXNz, L402 {CRED}"),
            format!("Bearer x,L402\t{CRED}"),
            format!("Basic x, \tlSaT {CRED}"),
            format!("  L402 {CRED}  "),
            "L402".to_owned(),
            "Basic x, L402 garbage".to_owned(),
        ];
        for form in &forms {
            let mut h = HeaderMap::new();
            h.append(http::header::AUTHORIZATION, HeaderValue::from_static("Basic dXNlcjpwYXNz"));
            h.append(http::header::AUTHORIZATION, HeaderValue::from_str(form).expect("value"));
            // Whatever the paywall would read, it reads something here...
            let read = Credential::from_authorization(h.get_all("authorization").iter().map(|v| v.as_bytes()));
            assert!(!matches!(read, Err(DecodeError::NoCredential)), "{form}");
            strip_request(&mut h);
            // ...and nothing after stripping; the plain Basic value passes.
            let left: Vec<&[u8]> = h.get_all("authorization").iter().map(|v| v.as_bytes()).collect();
            assert_eq!(left, [b"Basic dXNlcjpwYXNz".as_slice()], "{form}");
            assert!(matches!(Credential::from_authorization(left), Err(DecodeError::NoCredential)));
        }
        // Scheme names that only look alike pass.
        for other in ["L4020 x", "Bearer L402", "LSATx y", "Basic bDQwMg=="] {
            assert!(!Credential::names_l402_scheme(other.as_bytes()), "{other}");
        }
    }

    #[test]
    fn client_sent_l402_headers_never_pass() {
        let mut h = HeaderMap::new();
        for (n, v) in [
            ("x-l402-token-id", "deadbeef"),
            ("X-L402-Service", "weather"),
            ("x-l402-anything", "x"),
            ("x-l402", "kept: no dash, not ours"),
            ("macaroon", "00"),
            ("grpc-metadata-macaroon", "00"),
            ("connection", "x-hop"),
            ("x-hop", "1"),
            ("te", "trailers, deflate"),
        ] {
            h.append(HeaderName::from_bytes(n.as_bytes()).expect("name"), HeaderValue::from_static(v));
        }
        strip_request(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, ["te", "x-l402"]);
        assert_eq!(h["te"], "trailers");
    }
}

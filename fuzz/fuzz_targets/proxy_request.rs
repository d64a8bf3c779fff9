//! The proxy's request path on hostile bytes: a request head parsed as the listener parses it (its own
//! HTTP/1.1: httparse, `http::Uri`, the body's framing), then the canonical path, routing patterns, the
//! client-address walk, the header stripping and the credential parsing. Invariants: a head taken is framed
//! one way only; the canonical path is a fixed point with no dot segment, no `//` and no `\`; after
//! stripping, no L402/LSAT credential and no `x-l402-*` header is left; nothing panics.
#![no_main]

use http::header::{AUTHORIZATION, CONTENT_LENGTH, TRANSFER_ENCODING};
use l402_proto::credential::MAX_CREDENTIAL_LEN;
use l402_proto::{Credential, DecodeError};
use l402_proxy::client::{ClientPrefix, TrustedProxies};
use l402_proxy::fuzzing::{BodyFraming, ParsedHead, parse_request_head};
use l402_proxy::headers::{L402_HEADER_PREFIX, strip_request};
use l402_proxy::routing::{canonical_path, glob, host_only};
use libfuzzer_sys::fuzz_target;

const PATTERNS: [&str; 5] = ["/weather/docs*", "/weather/*", "/*/admin/*", "*", "/a*b*c"];

fuzz_target!(|data: &[u8]| {
    // The listener's own parse: a head it takes is never framed two ways.
    let Ok(Some(ParsedHead { parts, body, len })) = parse_request_head(data, 64 * 1024) else { return };
    assert!(len <= data.len());
    let (cl, te) = (parts.headers.contains_key(CONTENT_LENGTH), parts.headers.contains_key(TRANSFER_ENCODING));
    assert!(!(cl && te), "Content-Length and Transfer-Encoding both taken");
    assert!(body != BodyFraming::Chunked || te, "chunked without Transfer-Encoding");
    assert!(!matches!(body, BodyFraming::Length(_)) || cl, "a length without Content-Length");
    let uri = parts.uri;
    let headers = parts.headers;

    if let Ok(c) = canonical_path(uri.path()) {
        assert!(c.starts_with('/'), "{c:?}");
        assert!(!c.contains("//") && !c.contains('\\'), "{c:?}");
        assert!(c.split('/').all(|s| s != "." && s != ".."), "{c:?}");
        assert_eq!(canonical_path(&c).as_deref(), Ok(c.as_str()), "not a fixed point");
        let lower = c.to_ascii_lowercase();
        for p in PATTERNS {
            let _ = glob(p, &c) || glob(p, &lower);
        }
    }

    if let Some(host) = headers.get(http::header::HOST).and_then(|h| h.to_str().ok()) {
        let _ = glob("*.example.com", &host_only(host));
    }
    let trusted = TrustedProxies::parse(&["127.0.0.0/8".into(), "::1".into(), "10.0.0.0/8".into()]).expect("cidrs");
    let client = trusted.client("127.0.0.1".parse().expect("ip"), &headers);
    let _ = ClientPrefix::of(client);

    // Every piece the paywall reads as an L402/LSAT credential, well formed or not, is in a value the stripper
    // recognises. (A non-UTF-8 or over-long value of another scheme also makes the paywall refuse, as
    // malformed, but it carries no credential.)
    let values = || headers.get_all(AUTHORIZATION).iter().map(|v| v.as_bytes());
    for v in values() {
        for piece in v.split(|&b| b == b',') {
            let readable = piece.len() <= MAX_CREDENTIAL_LEN && std::str::from_utf8(piece).is_ok();
            if readable && !matches!(Credential::parse(piece), Err(DecodeError::NoCredential)) {
                assert!(Credential::names_l402_scheme(v), "the paywall reads a credential the stripper misses");
            }
        }
    }
    let mut stripped = headers.clone();
    strip_request(&mut stripped);
    let left: Vec<&[u8]> = stripped.get_all(AUTHORIZATION).iter().map(|v| v.as_bytes()).collect();
    assert!(Credential::from_authorization(left.iter().copied()).is_err(), "a credential survived stripping");
    assert!(!left.iter().any(|v| Credential::names_l402_scheme(v)));
    assert!(stripped.get("macaroon").is_none() && stripped.get("grpc-metadata-macaroon").is_none());
    assert!(stripped.keys().all(|k| !k.as_str().starts_with(L402_HEADER_PREFIX)));
    // Values of other schemes pass untouched.
    let kept = values().filter(|v| !Credential::names_l402_scheme(v)).count();
    assert_eq!(left.len(), kept);
});

//! Authorization and Macaroon-header parsing, then verification of whatever parsed.
#![no_main]

use l402_proto::{Access, Credential, MacaroonKey, RootKey, verify};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let values = data.split(|&b| b == b'\n');
    let key = MacaroonKey::derive(&RootKey([0x11; 32]));
    let access = Access { service: "svc", capability: Some("read"), now_unix: 1 };
    if let Ok(c) = Credential::from_authorization(values) {
        let back = Credential::parse(c.header_value().as_bytes()).expect("formatted credential parses");
        assert_eq!(back.macaroon, c.macaroon);
        let _ = verify(&c.macaroon, &c.preimage, &key, &access);
    }
    if let Ok(c) = Credential::from_macaroon_header(data) {
        let _ = verify(&c.macaroon, &c.preimage, &key, &access);
    }
});

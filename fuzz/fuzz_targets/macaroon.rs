//! The V2 binary codec: parse, re-encode identically, attenuate, check the chain.
#![no_main]

use l402_proto::{Macaroon, MacaroonKey, RootKey};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Macaroon::from_bytes(data) {
        assert_eq!(m.as_bytes(), data, "parsing is canonical: re-encoding gives the same bytes");
        assert_eq!(Macaroon::from_base64(&m.to_base64()).expect("base64 round trip"), m);
        let _ = m.l402_identifier();
        let key = MacaroonKey::derive(&RootKey([0x11; 32]));
        let _ = m.signature_valid(&key);
        if m.caveat_count() < 60 {
            let more = m.with_caveat(b"services=svc:0");
            assert_eq!(more.caveat_count(), m.caveat_count() + 1);
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = Macaroon::from_base64(s);
        let _ = Macaroon::from_hex(s);
    }
});

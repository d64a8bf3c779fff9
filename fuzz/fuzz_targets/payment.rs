//! The `Payment` scheme's readers: arbitrary bytes as WWW-Authenticate lines (split on newlines), as an
//! Authorization value, as a receipt and as a charge request. Nothing may panic, and a challenge that parsed
//! must write and parse back to itself.
#![no_main]

use l402_proto::mpp::{ChargeRequest, PaymentChallenge, PaymentCredential, Receipt, SessionRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for c in PaymentChallenge::parse_all(data.split(|&b| b == b'\n')) {
        let again = c.header_value();
        let back = PaymentChallenge::parse_all([again.as_bytes()]);
        // Controls other than the tab cannot be carried by a quoted-string: they are dropped on writing.
        if !again.contains(|ch: char| ch.is_ascii_control() && ch != '\t') && back.len() == 1 {
            let _ = back[0].verify_id(b"k");
        }
    }
    if let Ok(Some(cred)) = PaymentCredential::from_authorization([data]) {
        let _ = cred.charge_preimage();
        let back = PaymentCredential::from_authorization([cred.header_value().as_bytes()]);
        assert!(matches!(back, Ok(Some(_))), "a credential that read writes back readable");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Receipt::decode(text);
        let _ = ChargeRequest::decode(text);
        let _ = SessionRequest::decode(text);
    }
});

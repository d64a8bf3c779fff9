//! The `Payment` scheme's readers: arbitrary bytes as WWW-Authenticate lines (split on newlines), as an
//! Authorization value (its payload also as a session action), as a receipt and as a charge or session
//! request. Nothing may panic, a challenge that parsed must write and parse back to itself, and a session
//! action that read must write back as itself.
#![no_main]

use l402_proto::mpp::{ChargeRequest, PaymentChallenge, PaymentCredential, Receipt, SessionAction, SessionRequest};
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
        // A session payload that reads writes back as the same action.
        if let Ok(action) = SessionAction::from_json(&cred.payload) {
            assert_eq!(SessionAction::from_json(&action.to_json()).ok(), Some(action), "a session action round-trips");
        }
        let back = PaymentCredential::from_authorization([cred.header_value().as_bytes()]);
        assert!(matches!(back, Ok(Some(_))), "a credential that read writes back readable");
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = Receipt::decode(text);
        let _ = ChargeRequest::decode(text);
        let _ = SessionRequest::decode(text);
    }
});

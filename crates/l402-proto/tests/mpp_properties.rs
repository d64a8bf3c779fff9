//! The `Payment` scheme's readers on hostile input: none panics, and what is written reads back the same.
#![allow(missing_docs)]

use l402_proto::Preimage;
use l402_proto::mpp::{ChargeRequest, PaymentChallenge, PaymentCredential, Receipt, SessionRequest, b64url_decode};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn no_reader_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let _ = PaymentChallenge::parse_all([bytes.as_slice()]);
        let _ = PaymentCredential::from_authorization([bytes.as_slice()]);
        let mut with_scheme = b"Payment ".to_vec();
        with_scheme.extend_from_slice(&bytes);
        let _ = PaymentCredential::from_authorization([with_scheme.as_slice()]);
        let _ = Receipt::decode(&text);
        let _ = ChargeRequest::decode(&text);
        let _ = SessionRequest::decode(&text);
        let _ = b64url_decode(&text);
    }

    #[test]
    fn no_reader_panics_on_base64url_of_arbitrary_json(json in "[{}\\[\\]\":,a-z0-9 .eE+-]{0,200}") {
        let token = l402_proto::mpp::b64url_encode(json.as_bytes());
        let _ = PaymentCredential::from_authorization([format!("Payment {token}").as_bytes()]);
        let _ = Receipt::decode(&token);
        let _ = ChargeRequest::decode(&token);
        let _ = SessionRequest::decode(&token);
    }

    #[test]
    fn a_charge_request_reads_back_as_written(
        amount in any::<u64>(),
        invoice in "[a-z0-9]{1,80}",
        network in "(mainnet|testnet|signet|regtest)",
        hash in any::<[u8; 32]>(),
        description in proptest::option::of("[ -~\u{e9}\u{3042}]{0,40}"),
    ) {
        let mut r = ChargeRequest::lightning(amount, &invoice, &network, hash);
        r.description = description;
        prop_assert_eq!(ChargeRequest::decode(&r.encode()).expect("reads"), r);
    }

    #[test]
    fn a_challenge_and_its_credential_read_back_as_written(
        realm in "[ -~\t\u{e9}]{1,40}",
        request in "[A-Za-z0-9_-]{1,60}",
        expires in proptest::option::of("[0-9TZ:-]{1,25}"),
        description in proptest::option::of("[ -~]{1,30}"),
        opaque in proptest::option::of("[A-Za-z0-9_-]{1,30}"),
        preimage in any::<[u8; 32]>(),
    ) {
        let mut c = PaymentChallenge::charge(b"k", &realm, &request, "x");
        c.expires = expires;
        c.description = description;
        c.opaque = opaque;
        c.id = c.expected_id(b"k");
        let parsed = PaymentChallenge::parse_all([c.header_value().as_bytes()]);
        prop_assert_eq!(&parsed, &vec![c.clone()]);
        let header = PaymentCredential::charge(c.clone(), &Preimage(preimage)).header_value();
        let cred = PaymentCredential::from_authorization([header.as_bytes()]).expect("reads").expect("payment");
        prop_assert!(cred.challenge.verify_id(b"k"));
        prop_assert_eq!(&cred.challenge, &c);
        prop_assert_eq!(cred.charge_preimage().expect("preimage").0, preimage);
    }
}

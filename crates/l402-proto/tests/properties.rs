//! Property tests: no parser panics on arbitrary input, and build-then-parse round-trips.

mod common;

use common::*;
use l402_proto::challenge::format_challenge;
use l402_proto::*;
use proptest::prelude::*;

fn caveat_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..80)
}

fn arb_macaroon() -> impl Strategy<Value = (RootKey, Identifier, Vec<Vec<u8>>)> {
    (any::<[u8; 32]>(), any::<[u8; 32]>(), any::<[u8; 32]>(), prop::collection::vec(caveat_bytes(), 0..8))
        .prop_map(|(k, h, t, c)| (RootKey(k), Identifier::new(PaymentHash(h), TokenId(t)), c))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn binary_parsers_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = Macaroon::from_bytes(&bytes);
        let _ = Identifier::decode(&bytes);
        let _ = Caveat::parse(&bytes);
        let _ = Credential::parse(&bytes);
        let _ = Credential::from_authorization([bytes.as_slice(), bytes.as_slice()]);
        let _ = Credential::from_macaroon_header(&bytes);
        let _ = Challenge::parse_all([bytes.as_slice()]);
    }

    #[test]
    fn text_parsers_never_panic(s in "\\PC{0,300}") {
        let _ = Macaroon::from_base64(&s);
        let _ = Macaroon::from_hex(&s);
        let _ = Credential::parse(s.as_bytes());
        let _ = Challenge::parse_all([s.as_bytes()]);
        let _ = invoice::decode_invoice(&s);
        let _ = Preimage::from_hex(&s);
    }

    /// Header-shaped noise: schemes, params, quotes, commas and base64 runs in random order.
    #[test]
    fn header_shaped_input_never_panics(parts in prop::collection::vec(prop_oneof![
        Just("L402 ".to_owned()), Just("LSAT".to_owned()), Just("macaroon=".to_owned()), Just("token=".to_owned()),
        Just("invoice=".to_owned()), Just("\"".to_owned()), Just("\\".to_owned()), Just(",".to_owned()),
        Just(" ".to_owned()), Just("=".to_owned()), Just(":".to_owned()), Just("version=\"0\"".to_owned()),
        "[A-Za-z0-9+/_-]{0,20}",
    ], 0..30)) {
        let s = parts.concat();
        let _ = Challenge::parse_all([s.as_bytes()]);
        let _ = Credential::from_authorization([s.as_bytes()]);
    }

    /// Verification of any parseable bytes with any preimage never panics and never accepts a macaroon not
    /// minted under the key.
    #[test]
    fn verify_of_garbage_refuses(bytes in prop::collection::vec(any::<u8>(), 0..300), p in any::<[u8; 32]>()) {
        if let Ok(m) = Macaroon::from_bytes(&bytes) {
            let key = MacaroonKey::derive(&vector_root_key());
            prop_assert!(verify(&m, &Preimage(p), &key, &access(0)).is_err());
        }
    }

    #[test]
    fn mint_then_parse_round_trips((root, id, caveats) in arb_macaroon()) {
        let m = Macaroon::mint(&root, &id, &caveats);
        prop_assert_eq!(Macaroon::from_bytes(m.as_bytes()).expect("parses"), m.clone());
        prop_assert_eq!(Macaroon::from_base64(&m.to_base64()).expect("b64"), m.clone());
        prop_assert_eq!(Macaroon::from_hex(&m.to_hex()).expect("hex"), m.clone());
        prop_assert_eq!(m.l402_identifier().expect("id"), id);
        prop_assert_eq!(m.caveats().map(<[u8]>::to_vec).collect::<Vec<_>>(), caveats.clone());
        prop_assert!(m.signature_valid(&MacaroonKey::derive(&root)));
        // Attenuating one by one gives the same macaroon as minting with all caveats.
        let mut step = Macaroon::mint::<&[u8]>(&root, &id, &[]);
        for c in &caveats {
            step = step.with_caveat(c);
        }
        prop_assert_eq!(step, m);
    }

    /// An independent implementation agrees on every macaroon: same signature, same bytes.
    #[test]
    fn libmacaroon_agrees((root, id, caveats) in arb_macaroon()) {
        use libmacaroon::{Macaroon as Lib, MacaroonKey as LibKey};
        let caveats: Vec<Vec<u8>> = caveats.into_iter().filter(|c| !c.is_empty()).collect();
        let ours = Macaroon::mint(&root, &id, &caveats);
        let mut theirs = Lib::create(Some("lsat"), &LibKey::generate(root.as_bytes()), id.to_bytes()).expect("create");
        for c in &caveats {
            theirs.add_first_party_caveat(c).expect("caveat");
        }
        let sig: &[u8; 32] = theirs.signature().as_ref();
        prop_assert_eq!(sig, ours.signature());
        let parsed = Lib::deserialize_binary(ours.as_bytes()).expect("libmacaroon parses ours");
        prop_assert_eq!(parsed.caveats().len(), caveats.len());
    }

    #[test]
    fn credential_round_trips((root, id, caveats) in arb_macaroon(), p in any::<[u8; 32]>(), lsat in any::<bool>()) {
        let scheme = if lsat { Scheme::Lsat } else { Scheme::L402 };
        let cred = Credential::new(scheme, Macaroon::mint(&root, &id, &caveats), Preimage(p));
        prop_assert_eq!(Credential::parse(cred.header_value().as_bytes()).expect("parses"), cred.clone());
        let header = Credential::from_macaroon_header(cred.macaroon_header_value().as_bytes()).expect("hex form");
        prop_assert_eq!(header.preimage, cred.preimage);
    }

    #[test]
    fn challenge_round_trips((root, id, caveats) in arb_macaroon(), invoice in "ln[a-z0-9]{1,200}", lsat in any::<bool>()) {
        let scheme = if lsat { Scheme::Lsat } else { Scheme::L402 };
        let m = Macaroon::mint(&root, &id, &caveats);
        let line = format_challenge(scheme, &m, &invoice);
        let c = Challenge::parse([line.as_bytes()]).expect("parses");
        prop_assert_eq!(c.scheme, scheme);
        prop_assert_eq!(c.macaroon, m);
        prop_assert_eq!(c.invoice, invoice);
    }

    #[test]
    fn caveats_round_trip(cond in "[a-z_]{1,20}", value in "[ -~]{0,40}") {
        let c = Caveat::new(&cond, &value);
        let back = Caveat::parse(c.to_string().as_bytes()).expect("parses");
        prop_assert_eq!(back.condition(), cond.as_str());
        prop_assert_eq!(back.value(), value.as_str());
    }

    #[test]
    fn identifier_round_trips(h in any::<[u8; 32]>(), t in any::<[u8; 32]>()) {
        let id = Identifier::new(PaymentHash(h), TokenId(t));
        prop_assert_eq!(Identifier::decode(&id.to_bytes()).expect("decodes"), id);
    }
}

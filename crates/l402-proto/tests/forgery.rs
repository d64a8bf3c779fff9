//! The forgery matrix: every way of tampering with a credential is refused, each with its own reason.

mod common;

use common::*;
use l402_proto::*;

const BEFORE: u64 = VECTOR_EXPIRY - 100;

fn key() -> MacaroonKey {
    MacaroonKey::derive(&vector_root_key())
}

/// Builds a macaroon from `caveats` whose signature field is `signature` (what an attacker can write).
fn with_signature(id: &[u8], caveats: &[Caveat], signature: &[u8; 32]) -> Macaroon {
    let other = MacaroonKey::derive(&RootKey([0x99; 32]));
    let m = Macaroon::mint_raw(&other, b"lsat", id, caveats);
    let mut raw = m.as_bytes().to_vec();
    let n = raw.len();
    raw[n - 32..].copy_from_slice(signature);
    Macaroon::from_bytes(&raw).expect("well-formed")
}

/// A token like the vector's but granting capabilities `read` and `list` on `svc`.
fn read_list_token() -> Macaroon {
    let id = Identifier::new(vector_preimage().payment_hash(), TokenId([0xab; 32]));
    let caveats = [
        Caveat::services(&[Service::new("svc")]),
        Caveat::capabilities("svc", &["read", "list"]),
        Caveat::valid_until("svc", VECTOR_EXPIRY),
    ];
    Macaroon::mint(&vector_root_key(), &id, &caveats)
}

fn check(m: &Macaroon, p: &Preimage, a: &Access<'_>) -> Result<Verified, VerifyError> {
    verify(m, p, &key(), a)
}

fn cases() -> Vec<(&'static str, Result<Verified, VerifyError>)> {
    let m = vector_macaroon();
    let p = vector_preimage();
    let a = access(BEFORE);
    let id = m.identifier().to_vec();
    let mut cases = vec![];

    cases.push(("wrong root key", verify(&m, &p, &MacaroonKey::derive(&RootKey([0x12; 32])), &a)));

    let mut fewer = vector_caveats();
    fewer.pop();
    cases.push(("caveat removed", check(&with_signature(&id, &fewer, m.signature()), &p, &a)));

    let mut edited = vector_caveats();
    edited[2] = Caveat::valid_until("svc", 1_800_000_000);
    cases.push(("caveat edited in place", check(&with_signature(&id, &edited, m.signature()), &p, &a)));

    let widened = m.with_caveat("services=svc:0,other:0");
    cases.push(("services added", check(&widened, &p, &a)));

    let later = m.with_caveat("svc_valid_until=1800000000");
    cases.push(("valid_until raised", check(&later, &p, &a)));

    let caps = read_list_token().with_caveat("svc_capabilities=read,write");
    cases.push(("capabilities widened", check(&caps, &p, &a)));

    let other = Preimage([0x55; 32]);
    cases.push(("preimage of another invoice", check(&m, &other, &a)));

    let short = format!("L402 {}:{}", m.to_base64(), "00".repeat(31));
    cases.push((
        "preimage not 32 bytes",
        Credential::parse(short.as_bytes()).map(|_| unreachable!()).map_err(VerifyError::from),
    ));

    let upper = format!("L402 {}:{}", m.to_base64(), p.to_hex().to_uppercase());
    cases.push((
        "uppercase preimage",
        Credential::parse(upper.as_bytes()).map(|_| unreachable!()).map_err(VerifyError::from),
    ));

    let nonhex = format!("L402 {}:{}", m.to_base64(), "zz".repeat(32));
    cases.push((
        "non-hex preimage",
        Credential::parse(nonhex.as_bytes()).map(|_| unreachable!()).map_err(VerifyError::from),
    ));

    let mut v1 = id.clone();
    v1[1] = 1;
    let m1 = Macaroon::mint_raw(&key(), b"lsat", &v1, &vector_caveats());
    cases.push(("unknown identifier version", check(&m1, &p, &a)));

    cases.push(("expired", check(&m, &p, &access(VECTOR_EXPIRY))));

    let read_only = read_list_token().with_caveat("svc_capabilities=read");
    let write = Access { service: "svc", capability: Some("write"), now_unix: BEFORE };
    cases.push(("capability not granted", check(&read_only, &p, &write)));

    let other_service = Access { service: "other", capability: None, now_unix: BEFORE };
    cases.push(("service not granted", check(&m, &p, &other_service)));

    cases.push(("unknown caveat", check(&m.with_caveat("ip=10.0.0.1"), &p, &a)));

    let relocated = Macaroon::mint_raw(&key(), b"lsaT", &id, &vector_caveats());
    cases.push(("location changed", check(&relocated, &p, &a)));

    cases.push(("malformed caveat value", check(&m.with_caveat("svc_valid_until=soon"), &p, &a)));
    cases
}

#[test]
fn every_forgery_is_refused_with_its_own_reason() {
    let expected = [
        ("wrong root key", "bad_signature"),
        ("caveat removed", "bad_signature"),
        ("caveat edited in place", "bad_signature"),
        ("services added", "caveat_widened"),
        ("valid_until raised", "caveat_widened"),
        ("capabilities widened", "caveat_widened"),
        ("preimage of another invoice", "preimage_mismatch"),
        ("preimage not 32 bytes", "bad_preimage"),
        ("uppercase preimage", "bad_preimage"),
        ("non-hex preimage", "bad_preimage"),
        ("unknown identifier version", "unknown_version"),
        ("expired", "expired"),
        ("capability not granted", "capability_not_granted"),
        ("service not granted", "service_not_granted"),
        ("unknown caveat", "unknown_caveat"),
        ("location changed", "location"),
        ("malformed caveat value", "invalid_caveat"),
    ];
    let got = cases();
    assert_eq!(got.len(), expected.len());
    for ((name, result), (ename, reason)) in got.iter().zip(expected) {
        assert_eq!(*name, ename);
        match result {
            Ok(_) => panic!("{name}: accepted"),
            Err(e) => assert_eq!(e.reason(), reason, "{name}: {e}"),
        }
    }
}

#[test]
fn preimage_errors_name_what_is_wrong() {
    let m = vector_macaroon().to_base64();
    let short = Credential::parse(format!("L402 {m}:{}", "ab".repeat(31)).as_bytes());
    assert_eq!(short, Err(DecodeError::HexLength { what: "preimage", len: 62 }));
    let upper = Credential::parse(format!("L402 {m}:{}", "AB".repeat(32)).as_bytes());
    assert_eq!(upper, Err(DecodeError::NotLowercaseHex { what: "preimage" }));
}

#[test]
fn the_untampered_token_is_accepted() {
    // The control for the matrix: the same inputs, untouched, verify.
    let ok = check(&vector_macaroon(), &vector_preimage(), &access(BEFORE)).expect("valid");
    assert_eq!(ok.payment_hash, vector_preimage().payment_hash());
    // Narrowing is allowed: fewer services, a capability subset, an earlier expiry.
    let narrowed = vector_macaroon()
        .with_caveat("services=svc:0")
        .with_caveat("svc_capabilities=")
        .with_caveat(format!("svc_valid_until={}", BEFORE + 1));
    let ok = check(&narrowed, &vector_preimage(), &access(BEFORE)).expect("narrowed is valid");
    assert_eq!(ok.valid_until, Some(BEFORE + 1));
    // Caveats of other services do not apply to this one.
    let other = vector_macaroon().with_caveat("other_valid_until=1").with_caveat("other_capabilities=x");
    check(&other, &vector_preimage(), &access(BEFORE)).expect("other services' caveats ignored");
}

#[test]
fn capabilities_are_enforced() {
    let p = vector_preimage();
    let read_only = read_list_token();
    for (cap, ok) in [(Some("read"), true), (Some("list"), true), (Some("write"), false), (None, true)] {
        let a = Access { service: "svc", capability: cap, now_unix: BEFORE };
        assert_eq!(check(&read_only, &p, &a).is_ok(), ok, "{cap:?}");
    }
    // Attenuated to `read`: `list` is gone.
    let narrowed = read_only.with_caveat("svc_capabilities=read");
    let list = Access { service: "svc", capability: Some("list"), now_unix: BEFORE };
    assert!(matches!(check(&narrowed, &p, &list), Err(VerifyError::CapabilityNotGranted { .. })));
    // The vector mints `svc_capabilities=` (empty): no capability is granted.
    let a = Access { service: "svc", capability: Some("read"), now_unix: BEFORE };
    assert!(matches!(check(&vector_macaroon(), &p, &a), Err(VerifyError::CapabilityNotGranted { .. })));
}

/// One byte flipped anywhere in the macaroon, with every single-bit mask and a full inversion: never accepted.
#[test]
fn every_flipped_byte_is_refused() {
    let m = vector_macaroon();
    let raw = m.as_bytes();
    let mut refused = 0;
    for i in 0..raw.len() {
        for mask in [1u8, 2, 4, 8, 16, 32, 64, 128, 0xff] {
            let mut bad = raw.to_vec();
            bad[i] ^= mask;
            let result = Macaroon::from_bytes(&bad)
                .map_err(VerifyError::from)
                .and_then(|bad| check(&bad, &vector_preimage(), &access(BEFORE)));
            assert!(result.is_err(), "byte {i} ^ {mask:#x} accepted");
            refused += 1;
        }
    }
    assert_eq!(refused, raw.len() * 9);
}

/// The same on the wire: any base64 character of the credential changed is refused (or decodes to nothing).
#[test]
fn every_changed_base64_character_is_refused() {
    let m = vector_macaroon().to_base64();
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for i in 0..m.len() {
        for &c in alphabet.iter().step_by(7) {
            if m.as_bytes()[i] == c {
                continue;
            }
            let mut bad = m.clone().into_bytes();
            bad[i] = c;
            let header = format!("L402 {}:{}", String::from_utf8(bad).expect("ascii"), vector_preimage().to_hex());
            let result = Credential::from_authorization([header.as_bytes()])
                .map_err(VerifyError::from)
                .and_then(|c| check(&c.macaroon, &c.preimage, &access(BEFORE)));
            assert!(result.is_err(), "char {i} -> {} accepted", c as char);
        }
    }
}

#[test]
fn errors_never_echo_the_credential() {
    let m = vector_macaroon();
    for (_, r) in cases() {
        let text = r.expect_err("refused").to_string();
        assert!(!text.contains(&m.to_base64()[..20]), "{text}");
        assert!(!text.contains(&vector_preimage().to_hex()[..16]), "{text}");
    }
    let junk = format!("L402 {}{}:{}", "A".repeat(40), "!", vector_preimage().to_hex());
    let text = Credential::parse(junk.as_bytes()).expect_err("junk").to_string();
    assert!(!text.contains(&vector_preimage().to_hex()[..16]) && !text.contains("AAAAAAAAAAAAAAAA"), "{text}");
}

/// `verify` checks services by name (as Aperture); `grants_tier` pins the tier, through attenuation too.
#[test]
fn a_token_grants_only_the_tier_it_was_minted_for() {
    let p = vector_preimage();
    let tier1 = Macaroon::mint(
        &vector_root_key(),
        &Identifier::new(p.payment_hash(), TokenId([0xab; 32])),
        &[Caveat::services(&[Service { name: "svc".into(), tier: 1 }, Service::new("other")])],
    );
    check(&tier1, &p, &access(BEFORE)).expect("verifies by name");
    assert!(grants_tier(&tier1, "svc", 1));
    assert!(!grants_tier(&tier1, "svc", 0));
    assert!(!grants_tier(&tier1, "svc", 2));
    assert!(grants_tier(&tier1, "other", 0));
    assert!(!grants_tier(&tier1, "nosuch", 0));
    // Narrowed to `other`: svc is gone at every tier.
    let narrowed = tier1.with_caveat("services=other:0");
    check(&narrowed, &p, &Access { service: "other", capability: None, now_unix: BEFORE }).expect("narrowed");
    assert!(!grants_tier(&narrowed, "svc", 1));
    assert!(grants_tier(&narrowed, "other", 0));
    assert!(grants_tier(&vector_macaroon(), "svc", 0));
}

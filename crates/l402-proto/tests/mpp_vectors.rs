//! Every vector group of Aperture's `mpp/testdata/vectors.json` (carried over as data into
//! `tests/data/mpp_vectors.json`), replayed against `l402_proto::mpp`: each test asserts every case of its
//! group and the count, so that a case the replay does not understand fails instead of passing unread.
#![allow(missing_docs)]

use l402_proto::mpp::{PaymentChallenge, PaymentCredential, Receipt, b64url_decode, b64url_encode, compute_id, jcs};
use serde_json::Value;

fn vectors() -> Value {
    serde_json::from_str(include_str!("data/mpp_vectors.json")).expect("vectors.json")
}

fn group(name: &str, expected: usize) -> Vec<Value> {
    let v = vectors();
    let cases = v[name].as_array().unwrap_or_else(|| panic!("group {name}")).clone();
    assert_eq!(cases.len(), expected, "{name}: the file has a different number of cases than this replay knows");
    cases
}

fn s<'a>(case: &'a Value, key: &str) -> &'a str {
    case[key].as_str().unwrap_or_else(|| panic!("{key} in {case}"))
}

fn is_error(case: &Value) -> bool {
    case["error"].as_bool() == Some(true)
}

fn secret() -> Vec<u8> {
    hex::decode(s(&vectors(), "hmacSecretHex")).expect("hex")
}

fn challenge_of(p: &Value) -> PaymentChallenge {
    let opt = |k: &str| p.get(k).and_then(Value::as_str).map(str::to_owned);
    PaymentChallenge {
        id: s(p, "id").into(),
        realm: s(p, "realm").into(),
        method: s(p, "method").into(),
        intent: s(p, "intent").into(),
        request: s(p, "request").into(),
        expires: opt("expires"),
        digest: opt("digest"),
        description: opt("description"),
        opaque: opt("opaque"),
    }
}

#[test]
fn canonicalization() {
    for case in group("canonicalization", 22) {
        let parsed = serde_json::from_str::<Value>(s(&case, "input"));
        if is_error(&case) {
            assert!(parsed.is_err(), "{}", case["name"]);
            continue;
        }
        let value = parsed.unwrap_or_else(|e| panic!("{}: {e}", case["name"]));
        assert_eq!(jcs(&value), s(&case, "canonical"), "{}", case["name"]);
    }
}

#[test]
fn base64url() {
    for case in group("base64url", 17) {
        let encoded = s(&case, "encoded");
        let name = &case["name"];
        if is_error(&case) {
            assert!(b64url_decode(encoded).is_err(), "{name}");
            continue;
        }
        let bytes = hex::decode(case["decodedHex"].as_str().unwrap_or("")).expect("hex");
        assert_eq!(b64url_decode(encoded).expect("decodes"), bytes, "{name}");
        if case["canonical"].as_bool() == Some(true) {
            assert_eq!(b64url_encode(&bytes), encoded, "{name}");
        } else {
            assert_ne!(b64url_encode(&bytes), encoded, "{name}: the padded form is read, never written");
        }
    }
}

#[test]
fn challenge_headers() {
    for case in group("challengeHeaders", 6) {
        let c = challenge_of(&case["params"]);
        let header = s(&case, "header");
        assert_eq!(c.header_value(), header, "{}", case["name"]);
        let parsed = PaymentChallenge::parse_all([header.as_bytes()]);
        assert_eq!(parsed, vec![c], "{} parses back", case["name"]);
    }
}

#[test]
fn challenge_lists() {
    for case in group("challengeLists", 11) {
        let parsed = PaymentChallenge::parse_all([s(&case, "header").as_bytes()]);
        if is_error(&case) {
            assert!(parsed.is_empty(), "{}: {parsed:?}", case["name"]);
            continue;
        }
        let expected: Vec<PaymentChallenge> =
            case["challenges"].as_array().expect("challenges").iter().map(challenge_of).collect();
        assert!(!expected.is_empty());
        assert_eq!(parsed, expected, "{}", case["name"]);
    }
}

#[test]
fn challenge_ids() {
    let secret = secret();
    for case in group("challengeIds", 4) {
        let c = challenge_of(&case["params"]);
        let id = compute_id(
            &secret,
            &c.realm,
            &c.method,
            &c.intent,
            &c.request,
            c.expires.as_deref(),
            c.digest.as_deref(),
            c.opaque.as_deref(),
        );
        assert_eq!(id, c.id, "{}", case["name"]);
        assert!(c.verify_id(&secret));
        // The HMAC input as the vector spells it.
        let slots = [&c.realm, &c.method, &c.intent, &c.request]
            .map(String::as_str)
            .into_iter()
            .chain([&c.expires, &c.digest, &c.opaque].map(|o| o.as_deref().unwrap_or("")))
            .collect::<Vec<_>>()
            .join("|");
        assert_eq!(slots, s(&case, "hmacInput"));
        // The description is not covered; every covered slot is.
        let mut other = c.clone();
        other.description = Some("changed".into());
        assert!(other.verify_id(&secret));
        other.request.push('x');
        assert!(!other.verify_id(&secret), "{}", case["name"]);
        assert!(!c.verify_id(b"another secret"));
    }
}

#[test]
fn credentials() {
    let mut accepted = 0;
    for case in group("credentials", 11) {
        let header = s(&case, "header");
        let name = &case["name"];
        let parsed = PaymentCredential::from_authorization([header.as_bytes()]);
        if is_error(&case) {
            assert!(!matches!(parsed, Ok(Some(_))), "{name}: {parsed:?}");
            continue;
        }
        let cred = parsed.unwrap_or_else(|e| panic!("{name}: {e}")).unwrap_or_else(|| panic!("{name}: none"));
        let json = s(&case, "credentialJson");
        assert_eq!(cred.to_json(), serde_json::from_str::<Value>(json).expect("json"), "{name}");
        // Written back: the same bytes, with the scheme as Aperture writes it.
        let token = header.split_once(' ').expect("scheme token").1;
        assert_eq!(cred.header_value(), format!("Payment {token}"), "{name}");
        assert_eq!(String::from_utf8(b64url_decode(token).expect("b64")).expect("utf-8"), json, "{name}");
        accepted += 1;
    }
    assert_eq!(accepted, 4);
}

#[test]
fn receipts() {
    let mut charge_receipts = 0;
    for case in group("receipts", 8) {
        let json = s(&case, "receiptJson");
        let header = s(&case, "header");
        assert_eq!(b64url_encode(json.as_bytes()), header, "{}", case["name"]);
        // Numbers past 2^53 are kept exactly.
        let value: Value = serde_json::from_slice(&b64url_decode(header).expect("b64")).expect("json");
        assert_eq!(value.to_string(), json, "{}", case["name"]);
        if value.get("challengeId").is_some() || value.as_object().is_some_and(|m| m.len() == 4) {
            let r = Receipt::decode(header).expect("a charge receipt");
            assert_eq!(r.encode(), header, "{}", case["name"]);
            charge_receipts += 1;
        }
    }
    assert_eq!(charge_receipts, 2, "the two charge receipts round-trip through Receipt");
}

/// The vectors MPP.md quotes (a subset of the file, checked on their own so a changed file cannot hide them).
#[test]
fn the_vectors_quoted_in_mpp_md() {
    let secret = b"mpp-test-vector-secret";
    assert_eq!(
        compute_id(secret, "api.example.com", "lightning", "charge", "eyJhbW91bnQiOiIxMDAifQ", None, None, None),
        "_9D0WlPoPRltxAd6AdpQd6auVOOeQGJ_J8BkGeBE_bU"
    );
    let collision = "hE7mzL8ATHSnNdtPSJsxCRkpoUjIlf1sQErzg-VsbAA";
    assert_eq!(compute_id(secret, "a|b", "lightning", "charge", "cQ", None, None, None), collision);
    assert_eq!(compute_id(secret, "a", "b|lightning", "charge", "cQ", None, None, None), collision);
    let receipt = Receipt::success("2026-03-10T21:00:00Z", "bc230847abcdef1234567890", "kM9xPqWvT2nJrHsY4aDfEb");
    assert_eq!(
        receipt.encode(),
        "eyJzdGF0dXMiOiJzdWNjZXNzIiwibWV0aG9kIjoibGlnaHRuaW5nIiwidGltZXN0YW1wIjoiMjAyNi0wMy0xMFQyMTowMDowMFoiLCJyZWZlcmVuY2UiOiJiYzIzMDg0N2FiY2RlZjEyMzQ1Njc4OTAiLCJjaGFsbGVuZ2VJZCI6ImtNOXhQcVd2VDJuSnJIc1k0YURmRWIifQ"
    );
    for refused in ["Bearer abc123", "Payment ", "Payment !!!invalid!!!", "Payment AB", "Payment e29vcHN9"] {
        assert!(!matches!(PaymentCredential::from_authorization([refused.as_bytes()]), Ok(Some(_))), "{refused}");
    }
}

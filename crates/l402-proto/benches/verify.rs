//! Verification cost beside its floor.
//!
//! `verify/header_3_caveats`: what a server does per request once it has the token's cached key: parse the
//! Authorization header, decode the macaroon, check the preimage hash, run the HMAC chain and check 3 caveats.
//! `floor/b64_sha256_5hmac`: the bare primitives the protocol forces on any verifier without a cache: one base64
//! decode, one sha256, five HMAC-SHA256 (key derivation, identifier, three caveats).
//! `verify/payment_charge`: the same for a `Payment` charge credential, everything but the node and the store
//! (which a charge needs and a token does not): parse the Authorization header (base64url, JSON), check the
//! challenge id (one HMAC-SHA256 over its parameters), read the expiry, decode the charge request (base64url,
//! JSON) and check the preimage against its payment hash.
#![allow(missing_docs)]

use std::hint::black_box;

use base64::Engine as _;
use criterion::{Criterion, criterion_group, criterion_main};
use hmac::{Hmac, Mac};
use l402_proto::*;
use sha2::{Digest, Sha256};

fn token() -> (String, RootKey) {
    let root = RootKey([0x11; 32]);
    let preimage = Preimage(std::array::from_fn(|i| i as u8));
    let id = Identifier::new(preimage.payment_hash(), TokenId([0xab; 32]));
    let caveats = [
        Caveat::services(&[Service::new("svc")]),
        Caveat::capabilities("svc", &["read"]),
        Caveat::valid_until("svc", 1_700_000_000),
    ];
    let mac = Macaroon::mint(&root, &id, &caveats);
    (Credential::new(Scheme::L402, mac, preimage).header_value(), root)
}

fn bench(c: &mut Criterion) {
    let (header, root) = token();
    let key = MacaroonKey::derive(&root);
    let access = Access { service: "svc", capability: Some("read"), now_unix: 1_600_000_000 };

    c.bench_function("verify/header_3_caveats", |b| {
        b.iter(|| {
            let cred = Credential::from_authorization([black_box(header.as_bytes())]).expect("parses");
            verify(&cred.macaroon, &cred.preimage, black_box(&key), &access).expect("valid")
        })
    });

    c.bench_function("verify/header_3_caveats_uncached_key", |b| {
        b.iter(|| {
            let cred = Credential::from_authorization([black_box(header.as_bytes())]).expect("parses");
            let key = MacaroonKey::derive(black_box(&root));
            verify(&cred.macaroon, &cred.preimage, &key, &access).expect("valid")
        })
    });

    let (b64, pre) = header[5..].split_once(':').expect("colon");
    let raw = base64::engine::general_purpose::STANDARD.decode(b64).expect("b64");
    let preimage = hex::decode(pre).expect("hex");
    let id = &raw[8..74];
    let caveats: [&[u8]; 3] = [b"services=svc:0", b"svc_capabilities=read", b"svc_valid_until=1700000000"];
    c.bench_function("floor/b64_sha256_5hmac", |b| {
        b.iter(|| {
            let decoded = base64::engine::general_purpose::STANDARD.decode(black_box(b64)).expect("b64");
            let hash = Sha256::digest(black_box(&preimage));
            let mut sig = hmac(b"macaroons-key-generator", black_box(&root.0));
            sig = hmac(&sig, id);
            for c in caveats {
                sig = hmac(&sig, c);
            }
            (decoded, hash, sig)
        })
    });
}

fn bench_charge(c: &mut Criterion) {
    use l402_proto::mpp::{ChargeRequest, PaymentChallenge, PaymentCredential};
    let secret = [0x42; 32];
    let preimage = Preimage(std::array::from_fn(|i| i as u8));
    // A real-sized regtest invoice string (the request carries it whole).
    let invoice = "lnbcrt10u1p5example".repeat(16);
    let request = ChargeRequest::lightning(1_000, &invoice, "regtest", preimage.payment_hash().0).description("svc");
    let challenge = PaymentChallenge::charge(&secret, "api.example.com", &request.encode(), "2030-01-01T00:00:00Z");
    let header = PaymentCredential::charge(challenge, &preimage).header_value();
    c.bench_function("verify/payment_charge", |b| {
        b.iter(|| {
            let cred = PaymentCredential::from_authorization([black_box(header.as_bytes())])
                .expect("parses")
                .expect("a Payment credential");
            assert!(cred.challenge.verify_id(black_box(&secret)));
            let expires = cred.challenge.expires.as_deref().and_then(l402_proto::rfc3339::parse).expect("expiry");
            let request = ChargeRequest::decode(&cred.challenge.request).expect("request");
            let preimage = cred.charge_preimage().expect("preimage");
            assert_eq!(preimage.payment_hash().0, request.method_details.payment_hash);
            (expires, request.amount)
        })
    });
}

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    m.update(msg);
    m.finalize().into_bytes().into()
}

criterion_group!(benches, bench, bench_charge);
criterion_main!(benches);

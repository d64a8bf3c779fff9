//! Verification cost beside its floor.
//!
//! `verify/header_3_caveats`: what a server does per request once it has the token's cached key: parse the
//! Authorization header, decode the macaroon, check the preimage hash, run the HMAC chain and check 3 caveats.
//! `floor/b64_sha256_5hmac`: the bare primitives the protocol forces on any verifier without a cache: one base64
//! decode, one sha256, five HMAC-SHA256 (key derivation, identifier, three caveats).
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

fn hmac(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("any key length");
    m.update(msg);
    m.finalize().into_bytes().into()
}

criterion_group!(benches, bench);
criterion_main!(benches);

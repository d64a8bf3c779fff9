//! The four vector sets of L402.md.

mod common;

use common::*;
use l402_proto::*;

/// Vector 1: libmacaroons' own example (key derivation and chain as libmacaroons does them).
#[test]
fn libmacaroons_vector() {
    let key = MacaroonKey::derive_from_bytes(b"this is our super secret key; only we should know it");
    let m = Macaroon::mint_raw::<&[u8]>(&key, b"http://mybank/", b"we used our secret key", &[]);
    assert_eq!(hex::encode(m.signature()), "e3d9e02908526c4c0039ae15114115d97fdd68bf2ba379b342aaf0f617d0552f");
    let m = m.with_caveat("account = 3735928559");
    assert_eq!(hex::encode(m.signature()), "1efe4763f290dbce0c1d08477367e11f4eee456a64933cf662d79772dbb82128");
    assert!(m.signature_valid(&key));
    assert_eq!(m.location(), b"http://mybank/");
}

/// Vector 2: minting with the L402 vector's inputs gives its credential byte for byte.
#[test]
fn l402_vector_mint_is_byte_identical() {
    let m = vector_macaroon();
    assert_eq!(hex::encode(m.identifier_hash()), "ff0f12f94919a9e62dc2d39727d6c376af4005dd631895e282c3dae8a7428c9b");
    assert_eq!(hex::encode(m.signature()), "6d15f9a040daf41c2f18be48a5aa16a8d6a0a38c977025de8d6acb81392952e3");
    assert_eq!(
        vector_preimage().payment_hash().to_hex(),
        "630dcd2966c4336691125448bbb25b4ff412a49c732db2c8abc1b8581bd710dd"
    );
    let cred = Credential::new(Scheme::L402, m, vector_preimage());
    assert_eq!(cred.header_value(), VECTOR_CREDENTIAL);
    assert!(cred.header_value().starts_with("L402 AgEEbHNhdAJCAA"));
}

/// Vector 2: verify accepts it before 1700000000 and refuses at and after.
#[test]
fn l402_vector_verifies_until_expiry() {
    let cred = Credential::from_authorization([VECTOR_CREDENTIAL.as_bytes()]).expect("parses");
    let key = MacaroonKey::derive(&vector_root_key());
    let ok = verify(&cred.macaroon, &cred.preimage, &key, &access(VECTOR_EXPIRY - 1)).expect("valid");
    assert_eq!(ok.token_id, TokenId([0xab; 32]));
    assert_eq!(ok.valid_until, Some(VECTOR_EXPIRY));
    for t in [VECTOR_EXPIRY, VECTOR_EXPIRY + 1, u64::MAX] {
        assert_eq!(
            verify(&cred.macaroon, &cred.preimage, &key, &access(t)),
            Err(VerifyError::Expired { service: "svc".into(), valid_until: VECTOR_EXPIRY })
        );
    }
}

/// Vector 2, checked by an independent implementation: the `libmacaroon` crate (byte-identical to go-macaroon)
/// deserializes our macaroon, verifies it under the root key, and serializes the same bytes.
#[test]
fn l402_vector_agrees_with_libmacaroon() {
    use libmacaroon::{Format, Macaroon as Lib, MacaroonKey as LibKey, Verifier};
    let ours = vector_macaroon();
    let theirs = Lib::deserialize_binary(ours.as_bytes()).expect("libmacaroon parses ours");
    let key = LibKey::generate(vector_root_key().as_bytes());
    let mut v = Verifier::default();
    v.satisfy_general(|_| true);
    v.verify(&theirs, &key, &[]).expect("libmacaroon verifies ours");
    let sig: &[u8; 32] = theirs.signature().as_ref();
    assert_eq!(sig, ours.signature());
    let mut minted = Lib::create(Some("lsat"), &key, ours.identifier()).expect("create");
    for c in vector_caveats() {
        minted.add_first_party_caveat(c.to_string()).expect("caveat");
    }
    let bytes = base64_decode_url(&minted.serialize(Format::V2).expect("serialize"));
    assert_eq!(bytes, ours.as_bytes(), "libmacaroon mints the same bytes");
}

fn base64_decode_url(s: &str) -> Vec<u8> {
    Macaroon::from_base64(s).expect("url-safe base64 accepted").as_bytes().to_vec()
}

/// Vector 3: a real Aperture challenge macaroon parses to its payment hash and caveats.
#[test]
fn aperture_challenge_macaroon_parses() {
    let m = Macaroon::from_base64(APERTURE_MACAROON).expect("parses");
    let id = m.l402_identifier().expect("version 0");
    assert_eq!(id.payment_hash.to_hex(), "30a47a6e9b0b3ab9f4280f08932cd7207b440f508580d3eb5563eb4a3d8009ff");
    let caveats: Vec<_> = m.caveats().map(|c| String::from_utf8(c.to_vec()).expect("utf8")).collect();
    assert_eq!(caveats, ["services=meme:0", "meme_capabilities="]);
    assert_eq!(m.location(), b"lsat");
    assert_eq!(m.to_base64(), APERTURE_MACAROON, "re-encodes byte for byte");
}

/// Vector 3 inside a real challenge line, with an invoice for its payment hash: a client finds the challenge,
/// and the invoice check confirms the hashes match.
#[test]
fn aperture_challenge_header_with_invoice() {
    let m = Macaroon::from_base64(APERTURE_MACAROON).expect("parses");
    let hash = m.l402_identifier().expect("id").payment_hash;
    let inv = invoice(lightning_invoice::Currency::Regtest, &hash, Some(10_000), 3600);
    let lsat = format!("LSAT macaroon=\"{APERTURE_MACAROON}\", invoice=\"{inv}\"");
    let l402 = format!("L402 macaroon=\"{APERTURE_MACAROON}\", invoice=\"{inv}\"");
    let c = Challenge::parse([lsat.as_bytes(), l402.as_bytes()]).expect("challenge");
    assert_eq!(c.scheme, Scheme::L402);
    assert_eq!(c.macaroon, m);
    let policy = InvoicePolicy {
        currency: lightning_invoice::Currency::Regtest,
        max_amount: Msat(10_000),
        expiry_margin: std::time::Duration::from_secs(30),
    };
    let (_, info) = invoice::check_invoice(&c.invoice, &hash, &policy, now()).expect("payable");
    assert_eq!(info.amount, Some(Msat(10_000)));
}

/// Vector 4: the BOLT-11 specification's invoices decode with the facts the specification gives.
#[test]
fn bolt11_spec_vectors() {
    let coffee = "lnbc2500u1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpu9qrsgquk0rl77nj30yxdy8j9vdx85fkpmdla2087ne0xh8nhedh8w27kyke0lp53ut353s06fv3qfegext0eh0ymjpf39tuven09sam30g4vgpfna3rh";
    let (_, info) = invoice::decode_invoice(coffee).expect("spec invoice");
    assert_eq!(info.amount, Some(Msat(250_000_000)));
    assert_eq!(info.description, "1 cup coffee");
    assert_eq!(info.created_at, 1_496_314_658);
    assert_eq!(info.expires_at, 1_496_314_658 + 60);
    assert_eq!(info.payment_hash.to_hex(), "0001020304050607080900010203040506070809000102030405060708090102");
    assert_eq!(info.payee, "03e7156ae33b0a208d0744199163177e909e80176e55d97a2f221ede0f934dd9ad");

    let donation = "lnbc1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpl2pkx2ctnv5sxxmmwwd5kgetjypeh2ursdae8g6twvus8g6rfwvs8qun0dfjkxaq9qrsgq357wnc5r2ueh7ck6q93dj32dlqnls087fxdwk8qakdyafkq3yap9us6v52vjjsrvywa6rt52cm9r9zqt8r2t7mlcwspyetp5h2tztugp9lfyql";
    let (_, info) = invoice::decode_invoice(donation).expect("spec invoice");
    assert_eq!(info.amount, None);

    let testnet = "lntb20m1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygshp58yjmdan79s6qqdhdzgynm4zwqd5d7xmw5fk98klysy043l2ahrqspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqfpp3x9et2e20v6pu37c5d9vax37wxq72un989qrsgqdj545axuxtnfemtpwkc45hx9d2ft7x04mt8q7y6t0k2dge9e7h8kpy9p34ytyslj3yu569aalz2xdk8xkd7ltxqld94u8h2esmsmacgpghe9k8";
    let (_, info) = invoice::decode_invoice(testnet).expect("spec invoice");
    assert_eq!(info.currency, lightning_invoice::Currency::BitcoinTestnet);
    assert_eq!(info.amount, Some(Msat(2_000_000_000)));

    // The specification's invalid invoices: a signature that does not match, a bad checksum, an unknown SI
    // prefix, an amount more precise than a millisatoshi. Each is refused as unparseable.
    for bad in [
        "lnbc2500u1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpusp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygs9qrsgqwgt7mcn5yqw3yx0w94pswkpq6j9uh6xfqqqtsk4tnarugeektd4hg5975x9am52rz4qskukxdmjemg92vvqz8nvmsye63r5ykel43pgz7zq0g2",
        "lnbc2500u1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdpquwpc4curk03c9wlrswe78q4eyqc7d8d0xqzpuyk0sg5g70me25alkluzd2x62aysf2pyy8edtjeevuv4p2d5p76r4zkmneet7uvyakky2zr4cusd45tftc9c5fh0nnqpnl2jfll544esqchsrnt",
        "lnbc2500x1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpusp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygs9qrsgqrrzc4cvfue4zp3hggxp47ag7xnrlr8vgcmkjxk3j5jqethnumgkpqp23z9jclu3v0a7e0aruz366e9wqdykw6dxhdzcjjhldxq0w6wgqcnu43j",
        "lnbc2500000001p1pvjluezpp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpusp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygs9qrsgq0lzc236j96a95uv0m3umg28gclm5lqxtqqwk32uuk4k6673k6n5kfvx3d2h8s295fad45fdhmusm8sjudfhlf6dcsxmfvkeywmjdkxcp99202x",
    ] {
        assert!(matches!(invoice::decode_invoice(bad), Err(InvoiceError::Parse(_))), "{bad}");
    }
}

//! WWW-Authenticate and Authorization, as real servers and clients write them.

mod common;

use common::*;
use l402_proto::challenge::{challenge_lines, format_challenge_v0};
use l402_proto::*;

const INV: &str = "lnbcrt1test";

fn parse(lines: &[&str]) -> Result<Vec<Challenge>, ChallengeError> {
    Challenge::parse_all(lines.iter().map(|l| l.as_bytes()))
}

#[test]
fn server_lines_are_lsat_then_l402_in_aperture_form() {
    let m = vector_macaroon();
    let [lsat, l402] = challenge_lines(&m, INV);
    assert_eq!(lsat, format!("LSAT macaroon=\"{}\", invoice=\"{INV}\"", m.to_base64()));
    assert_eq!(l402, format!("L402 macaroon=\"{}\", invoice=\"{INV}\"", m.to_base64()));
    let all = parse(&[&lsat, &l402]).expect("parses");
    assert_eq!(all.iter().map(|c| c.scheme).collect::<Vec<_>>(), [Scheme::Lsat, Scheme::L402]);
    assert_eq!(Challenge::parse([lsat.as_bytes(), l402.as_bytes()]).expect("one").scheme, Scheme::L402);
    assert_eq!(all[1].macaroon, m);
    assert_eq!(all[1].invoice, INV);
}

#[test]
fn spec_form_with_token_and_version() {
    let m = vector_macaroon();
    let line = format_challenge_v0(&m, INV);
    let c = Challenge::parse([line.as_bytes()]).expect("parses");
    assert_eq!(c.version.as_deref(), Some("0"));
    assert_eq!(c.macaroon, m);
    let v1 = line.replace("version=\"0\"", "version=\"1\"");
    assert_eq!(parse(&[&v1]), Err(ChallengeError::UnsupportedVersion("1".into())));
}

#[test]
fn tolerant_parsing() {
    let b64 = vector_macaroon().to_base64();
    let url = b64.replace('+', "-").replace('/', "_");
    let unpadded = b64.trim_end_matches('=').to_owned();
    for line in [
        format!("l402 macaroon=\"{b64}\", invoice=\"{INV}\""),
        format!("LsAt   macaroon = \"{b64}\" ,invoice=\"{INV}\""),
        format!("L402 invoice=\"{INV}\", foo=bar, macaroon=\"{b64}\", extra=\"x, y\""),
        format!("L402 MACAROON=\"{url}\", Invoice={INV}"),
        format!("L402 macaroon=\"{unpadded}\", invoice=\"{INV}\""),
        format!("Basic realm=\"x\", L402 macaroon=\"{b64}\", invoice=\"{INV}\""),
        format!("Bearer abc.def==, L402 token=\"{b64}\", invoice=\"{INV}\", Negotiate"),
        format!("L402 macaroon=\"{b64}\", invoice=\"{INV}\", Basic realm=\"a \\\"quoted\\\" realm\""),
        format!(", ,L402 macaroon=\"{b64}\",, invoice=\"{INV}\""),
    ] {
        let c = Challenge::parse([line.as_bytes()]).unwrap_or_else(|e| panic!("{line}: {e}"));
        assert_eq!(c.macaroon, vector_macaroon(), "{line}");
        assert_eq!(c.invoice, INV, "{line}");
    }
}

#[test]
fn several_challenges_in_one_line() {
    let b64 = vector_macaroon().to_base64();
    let line = format!("LSAT macaroon=\"{b64}\", invoice=\"{INV}\", L402 macaroon=\"{b64}\", invoice=\"{INV}\"");
    let all = parse(&[&line]).expect("parses");
    assert_eq!(all.len(), 2);
    assert_eq!((all[0].scheme, all[1].scheme), (Scheme::Lsat, Scheme::L402));
}

#[test]
fn challenge_refusals() {
    let b64 = vector_macaroon().to_base64();
    assert_eq!(parse(&["Basic realm=\"x\""]), Err(ChallengeError::NotFound));
    assert_eq!(parse(&[]), Err(ChallengeError::NotFound));
    assert_eq!(parse(&[&format!("L402 invoice=\"{INV}\"")]), Err(ChallengeError::MissingMacaroon));
    assert_eq!(parse(&[&format!("L402 macaroon=\"{b64}\"")]), Err(ChallengeError::MissingInvoice));
    assert_eq!(parse(&["L402 macaroon=\"unterminated"]), Err(ChallengeError::Syntax));
    assert!(matches!(
        parse(&[&format!("L402 macaroon=\"!!!!\", invoice=\"{INV}\"")]),
        Err(ChallengeError::Macaroon(DecodeError::Base64 { .. }))
    ));
    // A malformed line does not hide a good one on the next line.
    let good = format!("L402 macaroon=\"{b64}\", invoice=\"{INV}\"");
    assert_eq!(parse(&["L402 macaroon=\"oops", &good]).expect("good one").len(), 1);
    let huge = format!("L402 macaroon=\"{}\", invoice=\"x\"", "A".repeat(20_000));
    assert_eq!(parse(&[&huge]), Err(ChallengeError::TooLong));
}

#[test]
fn credential_round_trip_and_schemes() {
    let cred = Credential::new(Scheme::L402, vector_macaroon(), vector_preimage());
    assert_eq!(cred.header_value(), VECTOR_CREDENTIAL);
    let back = Credential::parse(VECTOR_CREDENTIAL.as_bytes()).expect("parses");
    assert_eq!(back, cred);
    for variant in [
        VECTOR_CREDENTIAL.replacen("L402", "lsat", 1),
        VECTOR_CREDENTIAL.replacen("L402", "l402 ", 1),
        format!("  {VECTOR_CREDENTIAL}  "),
        VECTOR_CREDENTIAL.replace('+', "-").replace('/', "_"),
    ] {
        let c = Credential::parse(variant.as_bytes()).unwrap_or_else(|e| panic!("{variant}: {e}"));
        assert_eq!(c.macaroon, cred.macaroon);
        assert_eq!(c.preimage, cred.preimage);
    }
}

#[test]
fn several_authorization_values_the_well_formed_l402_wins() {
    let lsat = VECTOR_CREDENTIAL.replacen("L402", "LSAT", 1);
    // Aperture's client: LSAT then L402. The L402 one is used.
    let c = Credential::from_authorization([lsat.as_bytes(), VECTOR_CREDENTIAL.as_bytes()]).expect("ok");
    assert_eq!(c.form, CredentialForm::Authorization(Scheme::L402));
    // A broken L402 value and a good LSAT one: the good one is used.
    let broken = "L402 AgEE:nothex";
    let c = Credential::from_authorization([broken.as_bytes(), lsat.as_bytes()]).expect("ok");
    assert_eq!(c.form, CredentialForm::Authorization(Scheme::Lsat));
    // Other schemes around it, and comma-joined values in one line.
    let joined = format!("Bearer xyz, {VECTOR_CREDENTIAL}");
    let c = Credential::from_authorization([b"Basic dXNlcjpwYXNz".as_slice(), joined.as_bytes()]).expect("ok");
    assert_eq!(c.preimage, vector_preimage());
    // Nothing usable.
    assert_eq!(Credential::from_authorization([b"Bearer xyz".as_slice()]), Err(DecodeError::NoCredential));
    assert_eq!(Credential::from_authorization(std::iter::empty()), Err(DecodeError::NoCredential));
    // The scheme alone is a malformed L402 credential, not the absence of one.
    assert_eq!(Credential::parse(b"L402 "), Err(DecodeError::Credential { reason: "empty credential" }));
    assert_eq!(
        Credential::from_authorization([broken.as_bytes()]),
        Err(DecodeError::HexLength { what: "preimage", len: 6 })
    );
}

#[test]
fn macaroon_header_form() {
    let cred = Credential::new(Scheme::L402, vector_macaroon(), vector_preimage());
    let hex = cred.macaroon_header_value();
    let back = Credential::from_macaroon_header(hex.as_bytes()).expect("parses");
    assert_eq!(back.form, CredentialForm::MacaroonHeader);
    assert_eq!(back.preimage, vector_preimage());
    // The preimage caveat is part of the chain and verifies.
    let key = MacaroonKey::derive(&vector_root_key());
    verify(&back.macaroon, &back.preimage, &key, &access(VECTOR_EXPIRY - 1)).expect("verifies");
    // Without the caveat there is no preimage.
    let bare = vector_macaroon().to_hex();
    assert!(matches!(Credential::from_macaroon_header(bare.as_bytes()), Err(DecodeError::Credential { .. })));
    // A preimage caveat that does not match the one presented is refused.
    let wrong = vector_macaroon().with_caveat(format!("preimage={}", "11".repeat(32)));
    let res = verify(&wrong, &vector_preimage(), &key, &access(VECTOR_EXPIRY - 1));
    assert_eq!(res, Err(VerifyError::PreimageMismatch));
}

#[test]
fn oversized_and_binary_values_are_refused_cleanly() {
    let big = format!("L402 {}:{}", "A".repeat(40_000), vector_preimage().to_hex());
    assert!(matches!(Credential::parse(big.as_bytes()), Err(DecodeError::TooLong { .. })));
    assert!(matches!(Credential::parse(&[0xff, 0xfe, b' ', b':']), Err(DecodeError::Credential { .. })));
    let truncated = &VECTOR_CREDENTIAL[..VECTOR_CREDENTIAL.find(':').expect("colon") - 7];
    let truncated = format!("{truncated}:{}", vector_preimage().to_hex());
    assert!(Credential::parse(truncated.as_bytes()).is_err());
}

/// Found by the `challenge` fuzz target: a quoted-pair invoice (`invoice="lnbca\"b"`) parsed, and its header
/// value, written back unescaped, no longer parsed. An invoice is bech32 text; anything else is refused.
#[test]
fn a_challenge_invoice_that_is_not_bech32_text_is_refused() {
    let b64 = vector_macaroon().to_base64();
    for invoice in [r#"lnbca\"b"#, r"lnbc\\x", "lnbc 1", "lnbc,1", "lnbc\u{e9}1"] {
        let line = format!("L402 macaroon=\"{b64}\", invoice=\"{invoice}\"");
        assert!(
            matches!(Challenge::parse([line.as_bytes()]), Err(ChallengeError::InvoiceCharacters)),
            "{invoice:?} was accepted"
        );
    }
    let ok = format!("L402 macaroon=\"{b64}\", invoice=\"{INV}\"");
    assert_eq!(Challenge::parse([ok.as_bytes()]).expect("bech32 invoice").invoice, INV);
}

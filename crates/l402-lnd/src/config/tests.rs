use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use l402_proto::{Identifier, Macaroon, PaymentHash, RootKey, TokenId};

use super::*;

fn cert() -> (String, Vec<u8>) {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).expect("cert");
    (cert.pem(), cert.der().to_vec())
}

fn macaroon() -> Vec<u8> {
    let id = Identifier::new(PaymentHash([1; 32]), TokenId([2; 32]));
    Macaroon::mint::<&str>(&RootKey([3; 32]), &id, &[]).as_bytes().to_vec()
}

fn kind_and_message(r: Result<Vec<u8>, LightningError>) -> (LightningErrorKind, String) {
    let e = r.expect_err("should fail");
    (e.kind, e.message)
}

#[test]
fn addresses_get_lnds_default_port_and_keep_ipv6_brackets() {
    assert_eq!(parse_address("127.0.0.1:10009").expect("ok"), "127.0.0.1:10009");
    assert_eq!(parse_address("mynode").expect("ok"), "mynode:10009");
    assert_eq!(parse_address("https://mynode:443/").expect("ok"), "mynode:443");
    assert_eq!(parse_address("[::1]:10010").expect("ok"), "[::1]:10010");
    assert_eq!(parse_address("[::1]").expect("ok"), "[::1]:10009");
    for bad in ["", "host:port", "host:0", "host:70000", "::1", ":10009"] {
        let e = parse_address(bad).expect_err(bad);
        assert_eq!(e.kind, LightningErrorKind::Config);
        assert!(e.message.starts_with("address"), "{}", e.message);
    }
}

#[test]
fn a_certificate_loads_from_pem_hex_base64_and_files() {
    let (pem, der) = cert();
    assert_eq!(load_cert(&pem).expect("pem"), der);
    assert_eq!(load_cert(&hex::encode(&der)).expect("hex"), der);
    assert_eq!(load_cert(&STANDARD.encode(&der)).expect("base64"), der);
    assert_eq!(load_cert(&URL_SAFE_NO_PAD.encode(&der)).expect("base64url"), der);
    let dir = tempfile::tempdir().expect("dir");
    let pem_path = dir.path().join("tls.cert");
    std::fs::write(&pem_path, &pem).expect("write");
    assert_eq!(load_cert(pem_path.to_str().expect("utf8")).expect("pem file"), der);
    let der_path = dir.path().join("tls.der");
    std::fs::write(&der_path, &der).expect("write");
    assert_eq!(load_cert(der_path.to_str().expect("utf8")).expect("der file"), der);
}

#[test]
fn a_bad_certificate_says_it_is_the_certificate_and_why() {
    let (k, m) = kind_and_message(load_cert("/no/such/dir/tls.cert"));
    assert_eq!(k, LightningErrorKind::Config);
    assert_eq!(m, "tls cert: no such file: /no/such/dir/tls.cert");
    let (_, m) = kind_and_message(load_cert("-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----"));
    assert!(m.starts_with("tls cert: the PEM text"), "{m}");
    let (_, m) = kind_and_message(load_cert("deadbeef"));
    assert_eq!(m, "tls cert: the value given is not a DER certificate");
    let (_, m) = kind_and_message(load_cert("not a cert!"));
    assert!(m.starts_with("tls cert: is neither"), "{m}");
    let dir = tempfile::tempdir().expect("dir");
    let path = dir.path().join("tls.cert");
    std::fs::write(&path, b"garbage").expect("write");
    let (_, m) = kind_and_message(load_cert(path.to_str().expect("utf8")));
    assert!(m.starts_with("tls cert: file") && m.contains("not a DER certificate"), "{m}");
}

#[test]
fn a_macaroon_loads_from_hex_base64_and_binary_or_hex_files() {
    let mac = macaroon();
    assert_eq!(load_macaroon(&hex::encode(&mac)).expect("hex"), mac);
    assert_eq!(load_macaroon(&STANDARD.encode(&mac)).expect("base64"), mac);
    assert_eq!(load_macaroon(&URL_SAFE_NO_PAD.encode(&mac)).expect("base64url"), mac);
    let dir = tempfile::tempdir().expect("dir");
    let bin = dir.path().join("admin.macaroon");
    std::fs::write(&bin, &mac).expect("write");
    assert_eq!(load_macaroon(bin.to_str().expect("utf8")).expect("binary file"), mac);
    let hex_file = dir.path().join("admin.macaroon.hex");
    std::fs::write(&hex_file, format!("{}\n", hex::encode(&mac))).expect("write");
    assert_eq!(load_macaroon(hex_file.to_str().expect("utf8")).expect("hex file"), mac);
}

#[test]
fn a_bad_macaroon_says_it_is_the_macaroon_and_never_echoes_it() {
    let (k, m) = kind_and_message(load_macaroon("/no/such/admin.macaroon"));
    assert_eq!(k, LightningErrorKind::Config);
    assert_eq!(m, "macaroon: no such file: /no/such/admin.macaroon");
    let secretish = "0301deadbeefcafebabe0011223344";
    let (_, m) = kind_and_message(load_macaroon(secretish));
    assert_eq!(m, "macaroon: the value given is not a binary V2 macaroon (LND's format)");
    let secretish = "this is !! not a macaroon";
    let (_, m) = kind_and_message(load_macaroon(secretish));
    assert!(m.starts_with("macaroon: is neither") && !m.contains(secretish), "{m}");
}

#[test]
fn lndconnect_uris_carry_address_certificate_and_macaroon() {
    let (_, der) = cert();
    let mac = macaroon();
    let uri = format!(
        "lndconnect://node.example:10011?cert={}&macaroon={}",
        URL_SAFE_NO_PAD.encode(&der),
        URL_SAFE_NO_PAD.encode(&mac)
    );
    let config = LndConfig::from_lndconnect(&uri).expect("valid");
    assert_eq!(config.address, "node.example:10011");
    assert_eq!(config.host(), "node.example");
    assert_eq!(config.tls_cert_der, der);
    assert_eq!(config.macaroon, mac);
    assert_eq!(config.call_timeout, DEFAULT_CALL_TIMEOUT);

    let no_port = format!(
        "lndconnect://10.0.0.1?macaroon={}&cert={}",
        URL_SAFE_NO_PAD.encode(&mac),
        URL_SAFE_NO_PAD.encode(&der)
    );
    assert_eq!(LndConfig::from_lndconnect(&no_port).expect("valid").address, "10.0.0.1:10009");
}

#[test]
fn a_bad_lndconnect_uri_says_which_part_is_wrong() {
    let (_, der) = cert();
    let mac = URL_SAFE_NO_PAD.encode(macaroon());
    let cert = URL_SAFE_NO_PAD.encode(&der);
    let cases = [
        ("https://x:1?cert=a&macaroon=b".to_owned(), "lndconnect URI: does not start with lndconnect://"),
        (format!("lndconnect://x:1?macaroon={mac}"), "lndconnect URI: has no cert= parameter"),
        (format!("lndconnect://x:1?cert={cert}"), "lndconnect URI: has no macaroon= parameter"),
        (format!("lndconnect://x:1?cert=!!!&macaroon={mac}"), "lndconnect URI: cert= is not base64url"),
        (format!("lndconnect://x:1?cert=AAAA&macaroon={mac}"), "lndconnect URI: cert= is not a DER certificate"),
        (format!("lndconnect://x:1?cert={cert}&macaroon=AAAA"), "lndconnect URI: macaroon= is not a binary V2"),
        (format!("lndconnect://x:port?cert={cert}&macaroon={mac}"), "lndconnect URI: address \"x:port\""),
    ];
    for (uri, expected) in cases {
        let e = LndConfig::from_lndconnect(&uri).expect_err(&uri);
        assert_eq!(e.kind, LightningErrorKind::Config);
        assert!(e.message.starts_with(expected), "{uri}: {}", e.message);
    }
}

#[test]
fn debug_never_shows_the_macaroon() {
    let config = LndConfig::from_parts("x:1".into(), vec![0x30, 0], macaroon());
    let shown = format!("{config:?}");
    assert!(shown.contains("<redacted>") && !shown.contains(&hex::encode(macaroon())[..16]), "{shown}");
}

//! The `l402` binary, run as a user runs it.
#![allow(missing_docs)]

use std::io::Write as _;
use std::process::{Command, Output, Stdio};

const CRED: &str = "L402 AgEEbHNhdAJCAABjDc0pZsQzZpESVEi7sltP9BKknHMtssirwbhYG9cQ3aurq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urAAIOc2VydmljZXM9c3ZjOjAAAhFzdmNfY2FwYWJpbGl0aWVzPQACGnN2Y192YWxpZF91bnRpbD0xNzAwMDAwMDAwAAAGIG0V+aBA2vQcLxi+SKWqFqjWoKOMl3Al3o1qy4E5KVLj:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const PREIMAGE: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const ROOT: &str = "1111111111111111111111111111111111111111111111111111111111111111";

fn l402(args: &[&str], stdin: Option<&str>, root: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_l402"));
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    cmd.env_remove("L402_ROOT_KEY");
    if let Some(k) = root {
        cmd.env("L402_ROOT_KEY", k);
    }
    let mut child = cmd.spawn().expect("l402 runs");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin.unwrap_or("").as_bytes()).expect("write stdin");
    drop(input);
    child.wait_with_output().expect("l402 finishes")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn decode_credential_json_shows_fields_but_no_secret() {
    let o = l402(&["decode", "--json", CRED], None, None);
    assert!(o.status.success(), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["kind"], "credential");
    assert_eq!(
        v["macaroon"]["identifier"]["payment_hash"],
        "630dcd2966c4336691125448bbb25b4ff412a49c732db2c8abc1b8581bd710dd"
    );
    assert_eq!(v["macaroon"]["identifier"]["token_id"], "ab".repeat(32));
    assert_eq!(v["macaroon"]["caveats"][2], "svc_valid_until=1700000000");
    assert_eq!(v["preimage_matches_payment_hash"], true);
    let all = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    assert!(!all.contains(PREIMAGE), "preimage echoed");
    assert!(!all.contains("bQV+aBA2vQ"), "signature echoed");
}

#[test]
fn decode_reads_stdin_and_header_names() {
    let o = l402(&["decode"], Some(&format!("Authorization: {CRED}\n")), None);
    assert!(o.status.success(), "{o:?}");
    assert!(stdout(&o).contains("kind: credential"));
    let mac = CRED[5..].split(':').next().expect("mac");
    let o = l402(&["decode", "--json", mac], None, None);
    assert_eq!(serde_json::from_slice::<serde_json::Value>(&o.stdout).expect("json")["kind"], "macaroon");
}

#[test]
fn decode_invoice_shows_amount_expiry_hash() {
    let inv = "lnbc2500u1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpu9qrsgquk0rl77nj30yxdy8j9vdx85fkpmdla2087ne0xh8nhedh8w27kyke0lp53ut353s06fv3qfegext0eh0ymjpf39tuven09sam30g4vgpfna3rh";
    let o = l402(&["decode", "--json", inv], None, None);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["invoice"]["amount_msat"], 250_000_000);
    assert_eq!(v["invoice"]["network"], "bitcoin");
    assert_eq!(v["invoice"]["expired"], true);
    assert_eq!(v["invoice"]["payment_hash"], "0001020304050607080900010203040506070809000102030405060708090102");
}

#[test]
fn decode_garbage_is_a_clear_error() {
    let o = l402(&["decode", "this is not a token"], None, None);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("not a challenge, credential, invoice or macaroon"));
}

#[test]
fn mint_reproduces_the_l402_vector() {
    let o = l402(
        &[
            "token",
            "mint",
            "--payment-hash",
            "630dcd2966c4336691125448bbb25b4ff412a49c732db2c8abc1b8581bd710dd",
            "--token-id",
            &"ab".repeat(32),
            "--service",
            "svc",
            "--capabilities",
            "svc=",
            "--valid-until",
            "svc=1700000000",
        ],
        None,
        Some(ROOT),
    );
    assert!(o.status.success(), "{o:?}");
    assert_eq!(stdout(&o).trim(), CRED[5..].split(':').next().expect("mac"));
}

#[test]
fn mint_without_a_root_key_says_how_to_give_one() {
    let o = l402(&["token", "mint", "--payment-hash", &"00".repeat(32)], None, None);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("L402_ROOT_KEY"));
}

#[test]
fn verify_accepts_before_expiry_and_refuses_after_with_the_reason() {
    let ok = l402(&["token", "verify", "--service", "svc", "--now", "1699999999"], Some(CRED), Some(ROOT));
    assert!(ok.status.success(), "{ok:?}");
    assert!(stdout(&ok).contains(&"ab".repeat(32)));

    let late = l402(&["token", "verify", "--service", "svc", "--now", "1700000000", "--json"], Some(CRED), Some(ROOT));
    assert_eq!(late.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&late.stdout).expect("json");
    assert_eq!(v["reason"], "expired");

    let other = l402(&["token", "verify", "--service", "other", "--now", "1"], Some(CRED), Some(ROOT));
    assert_eq!(other.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&other.stderr).contains("service_not_granted"));

    let wrong_key = l402(&["token", "verify", "--service", "svc", "--now", "1"], Some(CRED), Some(&"22".repeat(32)));
    assert_eq!(wrong_key.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&wrong_key.stderr).contains("bad_signature"));
    for o in [&ok, &late, &other, &wrong_key] {
        let all = format!("{}{}", stdout(o), String::from_utf8_lossy(&o.stderr));
        assert!(!all.contains(PREIMAGE) && !all.contains(ROOT), "secret echoed: {all}");
    }
}

#[test]
fn verify_refuses_an_uppercase_preimage() {
    let upper = format!("{}:{}", CRED.rsplit_once(':').expect("colon").0, PREIMAGE.to_uppercase());
    let o = l402(&["token", "verify", "--service", "svc", "--now", "1"], Some(&upper), Some(ROOT));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("lowercase hex"));
}

/// `l402 <args>` with no wallet or client settings from the environment.
fn l402_clean(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_l402"));
    cmd.args(args).stdin(Stdio::null());
    for (k, _) in std::env::vars() {
        if k.starts_with("L402_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("l402 runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A DER-shaped certificate and a V2-shaped macaroon: enough for the options to parse (nothing connects).
const CERT_HEX: &str = "3003020100";
const MACAROON_HEX: &str = "020101010101010101";
const LNDCONNECT: &str = "lndconnect://127.0.0.1:1?cert=MAMCAQA&macaroon=AgEBAQEBAQEB";

#[test]
fn secret_wallet_options_given_as_values_are_warned_about_and_have_file_alternatives() {
    let help = stdout(&l402_clean(&["fetch", "--help"], &[]));
    assert!(help.contains("--lndconnect-file"), "{help}");
    assert!(help.matches("show in `ps`").count() >= 3, "macaroon, lndconnect and RPC password warn: {help}");

    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let data = data.to_str().expect("utf8");
    let url = "http://127.0.0.1:1/free"; // refused at once: these runs only get as far as the request
    let lnd = ["--lnd-address", "127.0.0.1:1", "--lnd-tls-cert", CERT_HEX];
    let run = |extra: &[&str], env: &[(&str, &str)]| {
        l402_clean(&[&["fetch", url, "--data-dir", data][..], extra].concat(), env)
    };

    let o = run(&[&lnd[..], &["--lnd-macaroon", MACAROON_HEX]].concat(), &[]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("warning: --lnd-macaroon"), "{}", stderr(&o));
    assert!(!stderr(&o).contains(MACAROON_HEX), "the warning does not echo the secret");
    let o = run(&[&lnd[..], &[&format!("--lnd-macaroon={MACAROON_HEX}")]].concat(), &[]);
    assert!(stderr(&o).contains("warning: --lnd-macaroon"), "{}", stderr(&o));
    let o = run(&["--lndconnect", LNDCONNECT], &[]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("warning: --lndconnect"), "{}", stderr(&o));

    // The alternatives: a macaroon file, the environment, an lndconnect file. No warning.
    let mac_file = tmp.path().join("pay.macaroon");
    std::fs::write(&mac_file, hex_bytes(MACAROON_HEX)).expect("write");
    let uri_file = tmp.path().join("payer.lndconnect");
    std::fs::write(&uri_file, format!("{LNDCONNECT}\n")).expect("write");
    for o in [
        run(&[&lnd[..], &["--lnd-macaroon", mac_file.to_str().expect("utf8")]].concat(), &[]),
        run(&lnd, &[("L402_LND_MACAROON", MACAROON_HEX)]),
        run(&["--lndconnect-file", uri_file.to_str().expect("utf8")], &[]),
        run(&[], &[("L402_LNDCONNECT_FILE", uri_file.to_str().expect("utf8"))]),
    ] {
        assert_eq!(o.status.code(), Some(3), "the options were accepted: {}", stderr(&o));
        assert!(!stderr(&o).contains("warning"), "{}", stderr(&o));
    }
    std::fs::write(&uri_file, "not a uri").expect("write");
    let o = run(&["--lndconnect-file", uri_file.to_str().expect("utf8")], &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--lndconnect-file"), "{}", stderr(&o));
}

fn hex_bytes(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

#[test]
fn timeouts_too_large_for_the_clock_and_empty_caps_are_usage_errors_not_panics() {
    let url = "http://127.0.0.1:1/";
    for (args, flag) in [
        (vec!["fetch", url, "--payment-timeout", "18446744073709551615"], "--payment-timeout"),
        (vec!["fetch", url, "--recovery-timeout", "18446744073709551615"], "--recovery-timeout"),
        (vec!["fetch", url, "--read-timeout", "0"], "--read-timeout"),
        (vec!["fetch", url, "--max-body", "0"], "--max-body"),
        (vec!["mcp", "--read-timeout", "86401"], "--read-timeout"),
        (vec!["mcp", "--max-body", "0"], "--max-body"),
    ] {
        let o = l402_clean(&args, &[]);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains(flag), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn decode_shows_a_payment_challenge_and_credential_but_no_preimage() {
    use l402_proto::mpp::{ChargeRequest, PaymentChallenge, PaymentCredential};
    // The BOLT 11 spec's 2500u invoice: payment hash 0001..0102, 250,000 sat.
    let inv = "lnbc2500u1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpu9qrsgquk0rl77nj30yxdy8j9vdx85fkpmdla2087ne0xh8nhedh8w27kyke0lp53ut353s06fv3qfegext0eh0ymjpf39tuven09sam30g4vgpfna3rh";
    let mut hash = [0u8; 32];
    hex::decode_to_slice("0001020304050607080900010203040506070809000102030405060708090102", &mut hash).expect("hex");
    let request = ChargeRequest::lightning(250_000, inv, "mainnet", hash).description("weather");
    let challenge = PaymentChallenge::charge(b"k", "api.example.com", &request.encode(), "2030-01-01T00:00:00Z");
    let o = l402(&["decode", "--json", &format!("WWW-Authenticate: {}", challenge.header_value())], None, None);
    assert!(o.status.success(), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    let c = &v["challenges"][0];
    assert_eq!((c["scheme"].as_str(), c["intent"].as_str()), (Some("Payment"), Some("charge")));
    assert_eq!(c["request"]["amount_sat"], 250_000);
    assert_eq!(c["request"]["invoice_matches_request"], true);
    let preimage = l402_proto::Preimage::from_hex(PREIMAGE).expect("preimage");
    let cred = PaymentCredential::charge(challenge, &preimage).header_value();
    let o = l402(&["decode", "--json", &cred], None, None);
    assert!(o.status.success(), "{o:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!((v["kind"].as_str(), v["form"].as_str()), (Some("credential"), Some("Payment")));
    assert_eq!(v["preimage_matches_payment_hash"], false, "this preimage is not that invoice's");
    assert_eq!(v["payload"][0], "preimage");
    let all = format!("{}{}", stdout(&o), String::from_utf8_lossy(&o.stderr));
    assert!(!all.contains(PREIMAGE), "preimage echoed");
}

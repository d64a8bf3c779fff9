//! `l402 demo` runs the whole system on a fresh regtest network and ends cleanly.
#![allow(missing_docs)]

#[test]
fn the_demo_runs_every_step_and_exits_zero() {
    demo(&[]);
}

/// The same walkthrough with real LND on both sides; it also leaves no LND running.
#[test]
fn the_demo_on_real_lnd_runs_every_step_and_exits_zero() {
    let text = demo(&["--backend", "lnd"]);
    assert!(text.contains("operator's LND") && text.contains("pay-only macaroon"), "{text}");
    let left =
        std::process::Command::new("pgrep").args(["-f", "lnd --lnddir=/tmp/l402-demo-"]).output().expect("pgrep");
    assert!(left.stdout.is_empty(), "LND left running: {}", String::from_utf8_lossy(&left.stdout));
}

fn demo(extra: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_l402"))
        .args(["demo", "--lifetime", "3"])
        .args(extra)
        .output()
        .expect("l402 demo runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    for expected in [
        "← 402 Payment Required",
        "WWW-Authenticate: LSAT macaroon=\"AgEEbHNhdAJCAA",
        "payment succeeded",
        "sha256(preimage) = payment hash: true",
        "← 200 OK",
        "(paid this time: nothing)",
        "paid 1000 sat for a fresh token",
        "refused before paying",
        "(match: true)",
        "every process the demo started is stopped",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    text.into_owned()
}

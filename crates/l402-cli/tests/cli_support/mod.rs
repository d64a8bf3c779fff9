//! What the `l402` command's tests on real nodes share: an echoing upstream, `l402 fetch` with an LND wallet,
//! and reading a command's JSON and the client's ledger.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use l402_regtest::{Lnd, LndMacaroon};
use serde_json::Value;

/// An upstream on loopback that answers `upstream saw <path> with <n> bytes`.
pub async fn upstream() -> SocketAddr {
    let app = axum::Router::new().fallback(|uri: axum::http::Uri, body: axum::body::Bytes| async move {
        format!("upstream saw {} with {} bytes", uri.path(), body.len())
    });
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    addr
}

/// `l402 <args>` with `payer`'s LND as the wallet (its pay-only macaroon) and `data` as the data dir.
pub fn lnd_command(payer: &Lnd, data: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_l402"));
    cmd.args(args);
    if matches!(args.first(), Some(&"fetch" | &"mcp")) {
        cmd.arg("--allow-http"); // the servers under test are plain http on loopback
    }
    cmd.args(["--lnd-address", &payer.rpc_address(), "--lnd-tls-cert"])
        .arg(payer.tls_cert_path())
        .arg("--data-dir")
        .arg(data)
        .env("L402_LND_MACAROON", payer.macaroon_path(LndMacaroon::Pay))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Runs [`lnd_command`] to the end.
pub fn run_lnd(payer: &Lnd, data: &Path, args: &[&str]) -> Output {
    lnd_command(payer, data, args).output().expect("l402 runs")
}

/// The command's standard output as JSON; panics with its output if it failed.
pub fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", crate::support::describe(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", crate::support::describe(o)))
}

/// The client's ledger in `data` (`l402 spend --json`).
pub fn ledger(data: &Path) -> Vec<Value> {
    let o = Command::new(env!("CARGO_BIN_EXE_l402")).args(["spend", "--json", "--data-dir"]).arg(data).output();
    json(&o.expect("l402 spend"))["payments"].as_array().expect("payments").clone()
}

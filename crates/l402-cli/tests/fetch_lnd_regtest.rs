//! `l402 fetch` with an LND wallet (`--lnd-address`, `--lnd-tls-cert`, `--lnd-macaroon`): the project's LND
//! simulator (l402-testkit: LND's gRPC surface, TLS with an IsCA certificate, macaroons) in front of a real LDK
//! node on a regtest network, so every payment is a real Lightning payment; each injected LND failure gives the
//! documented retry behaviour and exit code.
#![allow(missing_docs)]

#[path = "../../l402-client/tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use l402_testkit::{Fault, LndSimulator};
use serde_json::Value;
use support::{Server, describe, network, node_payments};

struct Lnd {
    sim: LndSimulator,
    cert: PathBuf,
}

fn fetch(lnd: &Lnd, data: &Path, url: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_l402"))
        .args(["fetch", url, "--allow-http", "--lnd-address", &lnd.sim.address().to_string(), "--lnd-tls-cert"])
        .arg(&lnd.cert)
        .arg("--data-dir")
        .arg(data)
        .env("L402_LND_MACAROON", lnd.sim.macaroon_hex())
        .stdin(Stdio::null())
        .output()
        .expect("l402 runs")
}

fn ledger(data: &Path) -> Vec<Value> {
    let o = Command::new(env!("CARGO_BIN_EXE_l402")).args(["spend", "--json", "--data-dir"]).arg(data).output();
    let o = o.expect("l402 spend");
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    v["payments"].as_array().expect("payments").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fetch_pays_through_lnd_and_follows_the_retry_rules_for_each_lnd_failure() {
    let (net, server_node, payers) = network(&["lnd"]).await;
    let payer = payers[0].clone();
    let server = Server::start(server_node).await;
    let sim = LndSimulator::start(payer.clone()).await.expect("LND simulator over the payer's node");
    let tmp = tempfile::tempdir().expect("tmp");
    let cert = tmp.path().join("tls.cert");
    std::fs::write(&cert, sim.tls_cert_pem()).expect("write cert");
    let lnd = Lnd { sim, cert };

    // (name, fault, exit code, real payments made, fee limit of the last attempt if it succeeded)
    type Case = (&'static str, Option<Fault>, i32, u64, Option<u64>);
    let cases: [Case; 7] = [
        ("plain", None, 0, 1, Some(10_000)),
        ("no_route", Some(Fault::NoRoute), 0, 1, Some(20_000)),
        ("timeout", Some(Fault::Timeout), 0, 1, Some(10_000)),
        ("drop_stream", Some(Fault::DropStream), 0, 1, Some(10_000)),
        ("already_exists", Some(Fault::AlreadyExists), 0, 1, Some(10_000)),
        ("insufficient_balance", Some(Fault::InsufficientBalance), 20, 0, None),
        ("incorrect_details", Some(Fault::IncorrectPaymentDetails), 20, 0, None),
    ];
    let mut dirs = Vec::new();
    for (name, fault, code, payments, fee_limit) in cases {
        let data = tmp.path().join(name);
        dirs.push(data.clone());
        let url = server.url(&format!("/svc/{name}"));
        let before = lnd.sim.backend_payments();
        if let Some(f) = fault {
            lnd.sim.inject(f);
        }
        let o = fetch(&lnd, &data, &url);
        assert_eq!(o.status.code(), Some(code), "{name}: {}", describe(&o));
        assert_eq!(lnd.sim.backend_payments() - before, payments, "{name}: real payments made");
        let entries = ledger(&data);
        assert_eq!(entries.len(), 1, "{name}: one journaled payment: {entries:?}");
        match fee_limit {
            Some(limit) => {
                assert_eq!(entries[0]["state"], "succeeded", "{name}");
                assert_eq!(entries[0]["fee_limit_msat"], limit, "{name}: the fee limit of the last attempt");
                let v: Value = serde_json::from_slice(&o.stdout).expect("json");
                assert_eq!(v["status"], 200, "{name}");
            }
            None => {
                assert_eq!(entries[0]["state"], "failed", "{name}");
                assert_eq!(entries[0]["reserved_msat"], 0, "{name}: released");
                assert!(String::from_utf8_lossy(&o.stderr).contains("no money moved"), "{name}: {}", describe(&o));
            }
        }
    }

    // The ledgers match the node's own records (behind the simulator), to the msat.
    let mut ours = HashMap::new();
    for d in &dirs {
        for e in ledger(d) {
            if e["state"] == "succeeded" {
                let fee = e["fee_msat"].as_u64().expect("fee");
                ours.insert(
                    e["payment_hash"].as_str().expect("hash").to_owned(),
                    (e["amount_msat"].as_u64().expect("a"), fee),
                );
            }
        }
    }
    let theirs: HashMap<String, (u64, u64)> = node_payments(&payer).into_iter().map(|(h, a, f)| (h, (a, f))).collect();
    assert_eq!(ours, theirs);
    assert_eq!(theirs.len(), 5);
    drop(lnd);
    net.shutdown().await;
}

//! `l402 fetch` through the project's own reverse proxy (`l402-proxy`, configured by TOML, SQLite token store)
//! in front of a real upstream on loopback, paying over a real regtest Lightning channel with the CLI's embedded
//! LDK wallet; with a service offering L402 and the `Payment` charge, both preferences end to end.
#![allow(missing_docs)]

mod cli_support;
#[path = "../../l402-client/tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};

use l402_proxy::{Config, Proxy, open_store};
use serde_json::Value;
use support::{describe, network};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fetch_pays_the_project_proxy_and_reuses_its_token() {
    let (net, server_node, payers) = network(&["cli"]).await;
    payers[0].stop().await; // the CLI runs this wallet
    let wallet = net.root().join("ldk").join("cli");
    let up = format!("http://{}", cli_support::upstream().await);
    let tmp = tempfile::tempdir().expect("tmp");
    let config = format!(
        r#"
listen = "127.0.0.1:0"
store = {{ kind = "sqlite", path = "{db}" }}
lightning = {{ backend = "ldk", data_dir = "unused", network = "regtest", bitcoind_rpc = "x", bitcoind_user = "x" }}

[[service]]
name = "quotes"
path = "/quotes/*"
upstream = "{up}"
price_sat = 150

[[service]]
name = "charged"
path = "/charged/*"
upstream = "{up}"
price_sat = 40
schemes = ["l402", "payment"]
"#,
        db = tmp.path().join("proxy.sqlite3").display(),
    );
    let config = Config::parse(&config).expect("config");
    let store = open_store(&config.store).await.expect("store");
    let proxy = Proxy::start(&config, store, server_node.clone()).await.expect("proxy starts");
    let url = format!("http://{}/quotes/today", proxy.addr());

    let fetch_in = |data: &str, args: &[&str]| l402(&net, &wallet, &tmp.path().join(data), "fetch", args);
    let fetch = |args: &[&str]| fetch_in("client", args);

    let o = fetch(&["--dry-run", &url]);
    assert!(o.status.success(), "{}", describe(&o));
    let q: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(q["amount_msat"], 150_000);
    assert_eq!(q["service"], "quotes");

    let o = fetch(&[&url, "-d", "hello"]);
    assert!(o.status.success(), "{}", describe(&o));
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["body"], "upstream saw /quotes/today with 5 bytes");
    assert_eq!(v["payment"]["amount_msat"], 150_000);
    let token = v["token_id"].clone();

    let o = fetch(&[&server_url(&proxy, "/quotes/tomorrow")]);
    let v: Value = serde_json::from_slice(&o.stdout).expect("json");
    assert_eq!(v["status"], 200, "{}", describe(&o));
    assert!(v["payment"].is_null(), "the token is reused");
    assert_eq!(v["token_id"], token);

    // Both schemes offered: the L402 token by default (reused), a charge per request when preferred.
    let charged = server_url(&proxy, "/charged/a");
    let v: Value = serde_json::from_slice(&fetch(&[&charged]).stdout).expect("json");
    assert_eq!((v["status"].as_u64(), v["payment"]["scheme"].as_str()), (Some(200), Some("L402")), "{v}");
    let v: Value = serde_json::from_slice(&fetch(&[&charged]).stdout).expect("json");
    assert!(v["payment"].is_null() && v["token_id"].is_string(), "the token is reused: {v}");
    let prefer = |extra: &[&str]| {
        let o = fetch_in("charges", &[&["--prefer-scheme", "payment"], extra].concat());
        assert!(o.status.success(), "{}", describe(&o));
        serde_json::from_slice::<Value>(&o.stdout).expect("json")
    };
    let q = prefer(&["--dry-run", &charged]);
    assert_eq!((q["scheme"].as_str(), q["amount_msat"].as_u64()), (Some("Payment"), Some(40_000)), "{q}");
    let mut hashes = Vec::new();
    for _ in 0..2 {
        let v = prefer(&[&charged]);
        assert_eq!(v["status"], 200, "{v}");
        assert_eq!(v["body"], "upstream saw /charged/a with 0 bytes");
        let p = &v["payment"];
        assert_eq!((p["scheme"].as_str(), p["amount_msat"].as_u64()), (Some("Payment"), Some(40_000)), "{v}");
        assert_eq!(p["receipt"]["reference"], p["payment_hash"], "our proxy's receipt: {v}");
        assert_eq!(p["receipt"]["challenge_id"], p["challenge_id"], "{v}");
        hashes.push(p["payment_hash"].clone());
    }
    assert_ne!(hashes[0], hashes[1], "a charge per request");

    drop(proxy);
    let _held = l402_client::lock_exclusive(&wallet.join("l402-wallet.lock"), std::time::Duration::from_secs(60))
        .await
        .expect("wallet free");
    net.shutdown().await;
}

/// `l402 COMMAND --allow-http ARGS` (fetch) or `l402 COMMAND ARGS` with the data directory `data` and the
/// regtest wallet at `wallet`.
fn l402(
    net: &l402_regtest::Regtest,
    wallet: &std::path::Path,
    data: &std::path::Path,
    command: &str,
    args: &[&str],
) -> std::process::Output {
    let (user, password) = net.bitcoind().rpc_auth();
    let mut c = Command::new(env!("CARGO_BIN_EXE_l402"));
    c.arg(command);
    if command == "fetch" {
        c.arg("--allow-http");
    }
    c.args(args).arg("--data-dir").arg(data);
    if command == "fetch" {
        c.arg("--ldk-dir")
            .arg(wallet)
            .args(["--network", "regtest", "--bitcoind-rpc-user", user, "--bitcoind-rpc-port"])
            .arg(net.bitcoind().rpc_port().to_string())
            .env("L402_BITCOIND_RPC_PASSWORD", password);
    }
    c.stdin(Stdio::null()).output().expect("l402 runs")
}

/// A metered service (a bundle of 10,000 units at 1 msat) in front of a streaming chat upstream that reports
/// 4,000 completion tokens an answer: two answers use most of a bundle, the third does not fit what is left,
/// and the proxy's 402 says so; `l402 fetch` buys the next bundle on its own and the ledger shows each
/// bundle's balance as the server said it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fetch_buys_the_next_bundle_of_a_metered_service_and_the_ledger_shows_each_balance() {
    let (net, server_node, payers) = network(&["cli"]).await;
    payers[0].stop().await;
    let wallet = net.root().join("ldk").join("cli");
    let chat = l402_testkit::ChatUpstream::start(l402_testkit::ChatOptions {
        completion_tokens: 4_000,
        chunk_delay: std::time::Duration::ZERO,
        drop_after: None,
    })
    .await
    .expect("chat upstream");
    let tmp = tempfile::tempdir().expect("tmp");
    let config = format!(
        r#"
listen = "127.0.0.1:0"
store = {{ kind = "sqlite", path = "{db}" }}
lightning = {{ backend = "ldk", data_dir = "unused", network = "regtest", bitcoind_rpc = "x", bitcoind_user = "x" }}

[[service]]
name = "chat"
path = "/v1/*"
upstream = "{up}"
[service.metering]
bundle = 10000
input_msat_per_unit = 1
output_msat_per_unit = 1
"#,
        db = tmp.path().join("proxy.sqlite3").display(),
        up = chat.url(),
    );
    let config = Config::parse(&config).expect("config");
    let store = open_store(&config.store).await.expect("store");
    let proxy = Proxy::start(&config, store, server_node.clone()).await.expect("proxy starts");
    let url = format!("http://{}/v1/chat/completions", proxy.addr());
    let data = tmp.path().join("client");
    let body = r#"{"model":"m","stream":true,"max_tokens":4000,"messages":[{"role":"user","content":"count"}]}"#;
    let ask = || l402(&net, &wallet, &data, "fetch", &["-H", "content-type: application/json", "-d", body, &url]);

    let mut bought = Vec::new();
    for i in 0..3 {
        let o = ask();
        assert!(o.status.success(), "request {i}: {}", describe(&o));
        let v: Value = serde_json::from_slice(&o.stdout).expect("json");
        assert_eq!(v["status"], 200, "request {i}: {v}");
        if !v["payment"].is_null() {
            bought.push(i);
        }
    }
    assert_eq!(bought, vec![0, 2], "a bundle first, and the next one when the first was used up");
    let o = l402(&net, &wallet, &data, "spend", &["--json"]);
    assert!(o.status.success(), "{}", describe(&o));
    let spend: Value = serde_json::from_slice(&o.stdout).expect("json");
    let mut payments = spend["payments"].as_array().expect("payments").clone();
    payments.sort_by_key(|p| p["created_at"].as_u64());
    assert_eq!(payments.len(), 2, "{spend}");
    assert!(payments.iter().all(|p| p["amount_msat"] == 10_000 && p["state"] == "succeeded"), "{spend}");
    // The first bundle: used up, what was left when the proxy said so (10,000 less two answers of 4,001
    // units: prompt "count" is 1 unit, completion 4,000).
    assert_eq!(payments[0]["balance_msat"], 10_000 - 2 * 4_001, "{spend}");
    assert!(payments[0]["exhausted_at"].is_u64(), "{spend}");
    // The second: the balance its first request was admitted with (a whole bundle), not used up.
    assert_eq!(payments[1]["balance_msat"], 10_000, "{spend}");
    assert!(payments[1]["exhausted_at"].is_null(), "{spend}");
    let o = l402(&net, &wallet, &data, "spend", &[]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains("bundle: 1998 msat left (used up)"), "{text}");
    net.shutdown().await;
}

fn server_url(proxy: &Proxy, path: &str) -> String {
    format!("http://{}{path}", proxy.addr())
}

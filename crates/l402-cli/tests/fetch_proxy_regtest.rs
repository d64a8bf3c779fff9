//! `l402 fetch` through the project's own reverse proxy (`l402-proxy`, configured by TOML, SQLite token store)
//! in front of a real upstream on loopback, paying over a real regtest Lightning channel with the CLI's embedded
//! LDK wallet.
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
"#,
        db = tmp.path().join("proxy.sqlite3").display(),
    );
    let config = Config::parse(&config).expect("config");
    let store = open_store(&config.store).await.expect("store");
    let proxy = Proxy::start(&config, store, server_node.clone()).await.expect("proxy starts");
    let url = format!("http://{}/quotes/today", proxy.addr());

    let (user, password) = net.bitcoind().rpc_auth();
    let fetch = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_l402"))
            .args(["fetch", "--allow-http"])
            .args(args)
            .arg("--data-dir")
            .arg(tmp.path().join("client"))
            .arg("--ldk-dir")
            .arg(&wallet)
            .args(["--network", "regtest", "--bitcoind-rpc-user", user, "--bitcoind-rpc-port"])
            .arg(net.bitcoind().rpc_port().to_string())
            .env("L402_BITCOIND_RPC_PASSWORD", password)
            .stdin(Stdio::null())
            .output()
            .expect("l402 runs")
    };

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

    drop(proxy);
    let _held = l402_client::lock_exclusive(&wallet.join("l402-wallet.lock"), std::time::Duration::from_secs(60))
        .await
        .expect("wallet free");
    net.shutdown().await;
}

fn server_url(proxy: &Proxy, path: &str) -> String {
    format!("http://{}{path}", proxy.addr())
}

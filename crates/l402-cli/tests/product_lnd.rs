//! The whole product on real LND: `l402 proxy` as a process with an LND backend that holds only LND's
//! invoice macaroon, paid through another real LND node with a pay-only macaroon by `l402 fetch`, `l402 mcp`
//! and the library; a `l402 fetch` SIGKILLed at each payment stage never pays twice and recovers its token; and
//! the ledgers equal LND's own `ListPayments`, to the msat.
#![allow(missing_docs)]

mod cli_support;
#[path = "../../l402-client/tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cli_support::{json, ledger, lnd_command, run_lnd, upstream};
use l402_client::{Client, ClientConfig};
use l402_lightning::Payer;
use l402_proto::lightning_invoice::Currency;
use l402_regtest::{Lnd, LndMacaroon, Regtest};
use rmcp::ServiceExt as _;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};

/// `l402 proxy` as its own process, killed on drop.
struct ProxyProcess {
    child: Child,
    port: u16,
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_proxy(dir: &Path, operator: &Lnd, upstream: &str) -> ProxyProcess {
    let port = l402_regtest::free_port().expect("port");
    let config = dir.join("l402.toml");
    std::fs::write(
        &config,
        format!(
            r#"
listen = "127.0.0.1:{port}"
store = {{ kind = "sqlite", path = "{db}" }}
[lightning]
backend = "lnd"
address = "{address}"
tls_cert = "{cert}"
macaroon = "{mac}"
[[service]]
name = "weather"
path = "/weather/*"
upstream = "{upstream}"
price_sat = 10
"#,
            db = dir.join("proxy.sqlite3").display(),
            address = operator.rpc_address(),
            cert = operator.tls_cert_path().display(),
            mac = operator.macaroon_path(LndMacaroon::Invoice).display(),
        ),
    )
    .expect("config");
    let child = Command::new(env!("CARGO_BIN_EXE_l402"))
        .args(["proxy", "--config"])
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("l402 proxy starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
        assert!(Instant::now() < deadline, "l402 proxy never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ProxyProcess { child, port }
}

/// Succeeded payments as hash -> (amount msat, fee msat): from our ledgers, and from LND's ListPayments.
fn ours(dirs: &[PathBuf]) -> HashMap<String, (u64, u64)> {
    let mut all = HashMap::new();
    for d in dirs {
        for e in ledger(d).into_iter().filter(|e| e["state"] == "succeeded") {
            let fee = e["fee_msat"].as_u64().expect("fee");
            all.insert(
                e["payment_hash"].as_str().expect("hash").to_owned(),
                (e["amount_msat"].as_u64().expect("amount"), fee),
            );
        }
    }
    all
}

async fn lnds(lnd: &Lnd) -> HashMap<String, (u64, u64)> {
    let msat = |v: &Value| v.as_str().and_then(|s| s.parse::<u64>().ok()).expect("msat");
    lnd.payments()
        .await
        .expect("listpayments")
        .into_iter()
        .filter(|p| p["status"] == "SUCCEEDED")
        .map(|p| (p["payment_hash"].as_str().expect("hash").to_owned(), (msat(&p["value_msat"]), msat(&p["fee_msat"]))))
        .collect()
}

/// Runs `l402 fetch url` paused at `point` and SIGKILLs it there (for `payment_in_flight` and
/// `payment_succeeded`, once the proxy's node has settled the invoice).
async fn kill_at(payer: &Lnd, operator: &Lnd, data: &Path, url: &str, point: &str) {
    let mut cmd = lnd_command(payer, data, &["fetch", url]);
    cmd.env("L402_TEST_PAUSE_AT", point);
    let mut child = cmd.spawn().expect("spawn");
    let err = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut seen = String::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line.contains(&format!("test pause at {point}")) => break,
            Ok(line) => seen.push_str(&format!("{line}\n")),
            Err(_) => {
                assert!(Instant::now() < deadline, "never reached {point}: {seen}");
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("exited ({status}) before {point}: {seen}");
                }
            }
        }
    }
    if point != "journal_written" {
        let hash = ledger(data)[0]["payment_hash"].as_str().expect("journaled").to_owned();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = operator.lncli(&["lookupinvoice", &hash]).await.expect("lookupinvoice");
            if v["state"] == "SETTLED" {
                break;
            }
            assert!(Instant::now() < deadline, "{point}: the operator never settled: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_proxy_and_every_client_front_end_on_real_lnd_pay_once_and_agree_with_lnd() {
    let net = Regtest::start().await.expect("regtest");
    let operator = net.lnd_node("operator").await.expect("operator LND (scripts/install-peers.sh)");
    let payer = net.lnd_node("payer").await.expect("payer LND");
    net.fund_lnd(&payer, 2_000_000).await.expect("fund payer");
    net.open_channel_lnd_to_lnd(&payer, &operator, 1_000_000, 0, None, &[]).await.expect("payer -> operator");
    let up = format!("http://{}", upstream().await);
    let tmp = tempfile::tempdir().expect("tmp");
    let proxy = start_proxy(tmp.path(), &operator, &up).await;
    let url = |path: &str| format!("http://127.0.0.1:{}{path}", proxy.port);
    let mut dirs = Vec::new();

    // l402 fetch: 402, paid through LND, 200; then reused.
    let data = tmp.path().join("fetch");
    dirs.push(data.clone());
    let v = json(&run_lnd(&payer, &data, &["fetch", &url("/weather/today"), "-d", "hi"]));
    assert_eq!(
        (v["status"].as_u64(), v["body"].as_str()),
        (Some(200), Some("upstream saw /weather/today with 2 bytes"))
    );
    assert_eq!(v["payment"]["amount_msat"], 10_000, "{v}");
    let hash = v["payment"]["payment_hash"].as_str().expect("hash").to_owned();
    let invoice = operator.lncli(&["lookupinvoice", &hash]).await.expect("the operator's LND issued it");
    assert_eq!((invoice["state"].as_str(), invoice["amt_paid_msat"].as_str()), (Some("SETTLED"), Some("10000")));
    let v = json(&run_lnd(&payer, &data, &["fetch", &url("/weather/today")]));
    assert!(v["payment"].is_null(), "reused: {v}");

    // l402 mcp with the same LND wallet.
    let mcp_data = tmp.path().join("mcp");
    dirs.push(mcp_data.clone());
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_l402"));
    cmd.args(["mcp", "--allow-http", "--allow-private", "--max-cost", "50", "--lnd-address", &payer.rpc_address()])
        .arg("--lnd-tls-cert")
        .arg(payer.tls_cert_path())
        .arg("--data-dir")
        .arg(&mcp_data)
        .env("L402_LND_MACAROON", payer.macaroon_path(LndMacaroon::Pay));
    let mcp = ().serve(TokioChildProcess::new(cmd).expect("spawn")).await.expect("MCP handshake");
    let call = |a: Value| {
        let mcp = &mcp;
        async move {
            let args = a.as_object().expect("object").clone();
            let r = mcp.call_tool(CallToolRequestParams::new("fetch").with_arguments(args)).await.expect("call");
            let text: String = r.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect();
            assert_ne!(r.is_error, Some(true), "{text}");
            serde_json::from_str::<Value>(&text).expect("json")
        }
    };
    let v = call(json!({ "url": url("/weather/mcp"), "max_cost_sat": 20 })).await;
    assert_eq!((v["status"].as_u64(), v["payment"]["amount_msat"].as_u64()), (Some(200), Some(10_000)), "{v}");
    let v = call(json!({ "url": url("/weather/mcp"), "max_cost_sat": 20 })).await;
    assert!(v["payment"].is_null(), "{v}");
    mcp.cancel().await.expect("MCP closes");

    // The library with the LND wallet.
    let mut cfg = ClientConfig::new(tmp.path().join("library"));
    cfg.network = Some(Currency::Regtest);
    cfg.allow_http = true; // the proxy is plain http on loopback
    let wallet: Arc<dyn Payer> = Arc::new(payer.connect(LndMacaroon::Pay).await.expect("pay-only client"));
    let client = Client::new(wallet, cfg).expect("client");
    let get = || client.request(reqwest::Method::GET, &url("/weather/lib")).build().expect("request");
    let first = client.execute(get()).await.expect("paid");
    assert!(first.payment.is_some());
    assert_eq!(first.response.text().await.expect("body"), "upstream saw /weather/lib with 0 bytes");
    assert!(client.execute(get()).await.expect("reused").payment.is_none());
    let lib_hash = client.ledger(None).await.expect("ledger")[0].payment_hash.clone();
    let lib_fee = client.ledger(None).await.expect("ledger")[0].fee_msat;

    // lnget's credential form: `Authorization: L402 <the paid macaroon with an extra caveat preimage=<hex>>:
    // <hex>`. lnget itself cannot be built here (the Go module proxy refuses it), so the bytes are built as
    // lnget builds them (its client/l402 code, PEERS.md) and paid through the same real LND.
    let raw = reqwest::get(url("/weather/lnget")).await.expect("402");
    assert_eq!(raw.status(), 402);
    let lines: Vec<Vec<u8>> = raw.headers().get_all("www-authenticate").iter().map(|v| v.as_bytes().to_vec()).collect();
    let challenge = l402_proto::Challenge::parse(lines.iter().map(Vec::as_slice)).expect("challenge");
    let lnget_payer = payer.connect(LndMacaroon::Pay).await.expect("payer");
    let (_, paid) = l402_regtest::pay_challenge(&lnget_payer, lines.iter().map(Vec::as_slice)).await.expect("paid");
    let with_caveat = challenge.macaroon.with_caveat(format!("preimage={}", paid.preimage.to_hex()));
    let lnget_value = format!("L402 {}:{}", with_caveat.to_base64(), paid.preimage.to_hex());
    let served = reqwest::Client::new()
        .get(url("/weather/lnget"))
        .header("authorization", &lnget_value)
        .send()
        .await
        .expect("request");
    assert_eq!(served.status(), 200, "lnget's form is accepted");
    assert_eq!(served.text().await.expect("body"), "upstream saw /weather/lnget with 0 bytes");
    // A preimage= caveat that is not the preimage is refused (401), not served.
    let wrong = challenge.macaroon.with_caveat(format!("preimage={}", "00".repeat(32)));
    let refused = reqwest::Client::new()
        .get(url("/weather/lnget"))
        .header("authorization", format!("L402 {}:{}", wrong.to_base64(), paid.preimage.to_hex()))
        .send()
        .await
        .expect("request");
    assert_eq!(refused.status(), 401);
    let lnget_hash = paid.preimage.payment_hash().to_hex();

    // SIGKILL at each payment stage: the next run never pays twice and recovers the token.
    for (i, point) in ["journal_written", "payment_in_flight", "payment_succeeded"].into_iter().enumerate() {
        let data = tmp.path().join(point);
        dirs.push(data.clone());
        let u = url(&format!("/weather/crash/{i}"));
        kill_at(&payer, &operator, &data, &u, point).await;
        let entries = ledger(&data);
        assert_eq!((entries.len(), entries[0]["state"].as_str()), (1, Some("pending")), "{point}: {entries:?}");
        let journaled = entries[0]["payment_hash"].as_str().expect("hash").to_owned();
        let v = json(&run_lnd(&payer, &data, &["fetch", &u]));
        assert_eq!(v["status"], 200, "{point}");
        let entries = ledger(&data);
        let succeeded: Vec<&Value> = entries.iter().filter(|e| e["state"] == "succeeded").collect();
        assert_eq!(succeeded.len(), 1, "{point}: {entries:?}");
        if point == "journal_written" {
            assert_ne!(succeeded[0]["payment_hash"], journaled.as_str(), "{point}: never sent, a fresh challenge paid");
        } else {
            assert_eq!(
                (entries.len(), succeeded[0]["payment_hash"].as_str()),
                (1, Some(journaled.as_str())),
                "{point}"
            );
        }
        assert!(json(&run_lnd(&payer, &data, &["fetch", &u]))["payment"].is_null(), "{point}: token reused");
    }

    let mut ours = ours(&dirs);
    ours.insert(lib_hash, (10_000, lib_fee.unwrap_or(0)));
    ours.insert(lnget_hash, (10_000, 0));
    assert_eq!(ours, lnds(&payer).await, "every ledger together equals LND's ListPayments to the msat");
    assert_eq!(ours.len(), 7, "fetch, mcp, library, lnget's form and three crash runs: one payment each");
    drop((client, proxy, payer, operator));
    net.shutdown().await;
}

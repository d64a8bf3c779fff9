//! `l402 mcp` driven by a real MCP client (rmcp) over stdio: the handshake, the tool list, and a fetch that pays
//! a real L402 server over a regtest Lightning network, within a per-call maximum the agent cannot raise; the
//! server offers a `Payment` charge too, paid only when a call prefers it (`prefer_scheme`).
#![allow(missing_docs)]

#[path = "../../l402-client/tests/support/mod.rs"]
mod support;

use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};
use support::{Server, network, node_payments};

fn text(r: &CallToolResult) -> String {
    r.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect::<Vec<_>>().join("")
}

fn args(v: Value) -> serde_json::Map<String, Value> {
    v.as_object().expect("object").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_mcp_client_fetches_and_pays_within_the_per_call_cap() {
    let (net, server_node, payers) = network(&["agent"]).await;
    payers[0].stop().await; // `l402 mcp` runs this wallet
    let wallet = net.root().join("ldk").join("agent");
    let server = Server::start(server_node).await;
    server.offer(true, true); // L402 and a Payment charge
    let tmp = tempfile::tempdir().expect("tmp");

    let (user, password) = net.bitcoind().rpc_auth();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_l402"));
    // The test server is plain http on loopback: both are asked for explicitly.
    cmd.args(["mcp", "--allow-http", "--allow-private", "--max-cost", "150", "--network", "regtest"])
        .args(["--bitcoind-rpc-user", user])
        .arg("--bitcoind-rpc-port")
        .arg(net.bitcoind().rpc_port().to_string())
        .arg("--ldk-dir")
        .arg(&wallet)
        .arg("--data-dir")
        .arg(tmp.path().join("data"))
        .env("L402_BITCOIND_RPC_PASSWORD", password);
    let client = ().serve(TokioChildProcess::new(cmd).expect("spawn")).await.expect("MCP handshake");

    let tools: Vec<String> =
        client.list_all_tools().await.expect("tools/list").into_iter().map(|t| t.name.to_string()).collect();
    for name in ["fetch", "budget", "ledger"] {
        assert!(tools.contains(&name.to_owned()), "{tools:?}");
    }

    let url = server.url("/svc/agent");
    let call = |name: &'static str, a: Value| {
        let client = &client;
        async move { client.call_tool(CallToolRequestParams::new(name).with_arguments(args(a))).await.expect("tools/call") }
    };

    // Above the operator's cap: refused before any request.
    let before = server.requests();
    let r = call("fetch", json!({ "url": url, "max_cost_sat": 1_000 })).await;
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).starts_with("price_over_cap"), "{}", text(&r));
    assert_eq!(server.requests(), before, "nothing was requested");

    // Below the price (100 sat): refused before paying.
    let r = call("fetch", json!({ "url": url, "max_cost_sat": 50 })).await;
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).starts_with("price_over_cap"), "{}", text(&r));

    // A server that never answers: the call gives up after timeout_secs, and says so.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_url = format!("http://{}/svc/agent", silent.local_addr().expect("addr"));
    let r = call("fetch", json!({ "url": silent_url, "max_cost_sat": 150, "timeout_secs": 1 })).await;
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).starts_with("timeout: no complete answer within 1 s"), "{}", text(&r));

    // Within both: paid, served; the result names the payment but no secret.
    let r = call("fetch", json!({ "url": url, "max_cost_sat": 150 })).await;
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    let v: Value = serde_json::from_str(&text(&r)).expect("json");
    assert_eq!(v["status"], 200);
    assert!(v["body"].as_str().expect("body").starts_with("paid GET /svc/agent"));
    assert_eq!(v["payment"]["amount_msat"], 100_000);
    assert_eq!(v["payment"]["scheme"], "L402", "both offered: the L402 token by default");
    assert!(!text(&r).contains("preimage") && !text(&r).contains("AgEEbHNhdA"), "{}", text(&r));
    let fee = v["payment"]["fee_msat"].as_u64().expect("fee");

    // Again: the stored token, nothing paid.
    let r = call("fetch", json!({ "url": url, "max_cost_sat": 150 })).await;
    let v: Value = serde_json::from_str(&text(&r)).expect("json");
    assert!(v["payment"].is_null());

    // prefer_scheme "payment": a charge per call (another service, so that no token serves it).
    let other = server.url("/other/agent");
    let r = call("fetch", json!({ "url": other, "max_cost_sat": 150, "prefer_scheme": "lightning" })).await;
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).starts_with("request: prefer_scheme"), "{}", text(&r));
    let mut charges = Vec::new();
    for _ in 0..2 {
        let r = call("fetch", json!({ "url": other, "max_cost_sat": 150, "prefer_scheme": "payment" })).await;
        assert_ne!(r.is_error, Some(true), "{}", text(&r));
        let v: Value = serde_json::from_str(&text(&r)).expect("json");
        assert_eq!(v["status"], 200);
        assert_eq!((v["payment"]["scheme"].as_str(), v["payment"]["token_id"].is_null()), (Some("Payment"), true));
        assert_eq!(v["payment"]["receipt"]["reference"], v["payment"]["payment_hash"], "{v}");
        assert!(!text(&r).contains("preimage"), "{}", text(&r));
        charges.push(v["payment"]["payment_hash"].clone());
    }
    assert_ne!(charges[0], charges[1], "a charge is not reused");
    assert_eq!(server.charges_accepted().len(), 2);

    let r = call("ledger", json!({})).await;
    let v: Value = serde_json::from_str(&text(&r)).expect("json");
    let payments = v["payments"].as_array().expect("payments");
    assert_eq!(payments.len(), 3);
    assert!(payments.iter().all(|p| p["state"] == "succeeded"), "{v}");
    assert_eq!(payments.iter().filter(|p| p["scheme"] == "Payment" && p["charge_state"] == "spent").count(), 2);
    let r = call("budget", json!({})).await;
    let v: Value = serde_json::from_str(&text(&r)).expect("json");
    assert_eq!(v["counted_msat"]["total"], 3 * 100_000 + fee, "direct channel: the charges pay no fee either");
    assert_eq!(v["max_cost_sat_cap"], 150);

    client.cancel().await.expect("close");
    // Wait until the server process has stopped its wallet (it holds the wallet's lock until it exits).
    let lock = wallet.join("l402-wallet.lock");
    let _held = l402_client::lock_exclusive(&lock, std::time::Duration::from_secs(60)).await.expect("server exited");
    let node = l402_ldk::LdkNode::start(l402_ldk::LdkConfig {
        network: l402_ldk::Network::Regtest,
        data_dir: wallet,
        listen: None,
        chain: net.bitcoind().chain_source(),
        alias: None,
    })
    .await
    .expect("wallet");
    let paid = node_payments(&node);
    assert_eq!(paid.len(), 3, "one payment for the token, one per charge");
    assert!(paid.iter().all(|p| (p.1, p.2) == (100_000, fee)), "ledger == node: {paid:?}");
    node.stop().await;
    net.shutdown().await;
}

/// `l402 mcp` with no wallet (nothing here pays), the given options, and a fresh data directory.
async fn mcp_without_wallet(
    options: &[&str],
    data: &std::path::Path,
) -> rmcp::service::RunningService<rmcp::RoleClient, ()> {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_l402"));
    cmd.arg("mcp").args(options).arg("--data-dir").arg(data);
    ().serve(TokioChildProcess::new(cmd).expect("spawn")).await.expect("MCP handshake")
}

async fn fetch_tool(client: &rmcp::service::RunningService<rmcp::RoleClient, ()>, a: Value) -> CallToolResult {
    client.call_tool(CallToolRequestParams::new("fetch").with_arguments(args(a))).await.expect("tools/call")
}

#[tokio::test]
async fn mcp_fetch_refuses_loopback_and_private_addresses_unless_allowed() {
    let internal =
        support::RawServer::start("127.0.0.1", |_| support::http_response("200 OK", "", b"internal only")).await;
    let port = internal.addr.port();
    let tmp = tempfile::tempdir().expect("tmp");
    let strict = mcp_without_wallet(&[], &tmp.path().join("strict")).await;
    for url in [
        format!("http://127.0.0.1:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://[::ffff:127.0.0.1]:{port}/"),
        "http://10.0.0.1/".to_owned(),
        "http://192.168.1.1/".to_owned(),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://100.64.0.1/".to_owned(),
        "http://[fd00::1]/".to_owned(),
        "http://[fe80::1]/".to_owned(),
        "http://0.0.0.0/".to_owned(),
    ] {
        let r = fetch_tool(&strict, json!({ "url": url, "max_cost_sat": 1 })).await;
        assert_eq!(r.is_error, Some(true), "{url}: {}", text(&r));
        assert!(text(&r).starts_with("address_refused"), "{url}: {}", text(&r));
    }
    assert_eq!(internal.connections.load(std::sync::atomic::Ordering::SeqCst), 0, "nothing reached the server");
    strict.cancel().await.expect("close");

    let open = mcp_without_wallet(&["--allow-private"], &tmp.path().join("open")).await;
    let r = fetch_tool(&open, json!({ "url": format!("http://127.0.0.1:{port}/"), "max_cost_sat": 1 })).await;
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    let v: Value = serde_json::from_str(&text(&r)).expect("json");
    assert_eq!((v["status"].as_u64(), v["body"].as_str()), (Some(200), Some("internal only")));
    open.cancel().await.expect("close");
}

#[tokio::test]
async fn mcp_fetch_reads_at_most_max_body_and_gives_up_on_a_silent_server() {
    let server = support::RawServer::start("127.0.0.1", |req| match req.target() {
        "/big" => support::http_response("200 OK", "", &vec![b'x'; 4 << 20]),
        "/stall" => b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nthe start".to_vec(),
        _ => support::http_response("200 OK", "", b"small"),
    })
    .await;
    let tmp = tempfile::tempdir().expect("tmp");
    let mcp = mcp_without_wallet(&["--allow-private", "--max-body", "1000", "--read-timeout", "1"], tmp.path()).await;

    let r = fetch_tool(&mcp, json!({ "url": server.url("/big"), "max_cost_sat": 1 })).await;
    let v: Value = serde_json::from_str(&text(&r)).expect("json");
    assert_eq!(v["body"].as_str().map(str::len), Some(1000), "at most --max-body bytes");
    assert_eq!(v["body_truncated"], true);
    let r = fetch_tool(&mcp, json!({ "url": server.url("/small"), "max_cost_sat": 1 })).await;
    let v: Value = serde_json::from_str(&text(&r)).expect("json");
    assert_eq!((v["body"].as_str(), v["body_truncated"].as_bool()), (Some("small"), Some(false)));

    let started = std::time::Instant::now();
    let r = fetch_tool(&mcp, json!({ "url": server.url("/stall"), "max_cost_sat": 1, "timeout_secs": 60 })).await;
    assert_eq!(r.is_error, Some(true), "{}", text(&r));
    assert!(text(&r).starts_with("read_timeout"), "{}", text(&r));
    assert!(started.elapsed() < std::time::Duration::from_secs(30), "gave up after --read-timeout, not timeout_secs");
    mcp.cancel().await.expect("close");
}

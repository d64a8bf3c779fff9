//! `l402 mcp --admin` driven by a real MCP client (rmcp) over stdio, against a real proxy on loopback issuing
//! real regtest invoices: the tools list, a service added, repriced and deleted (each seen in the next 402's
//! invoice), a refusal carrying the API's status and reason, and a wrong token refused.
#![allow(missing_docs)]

use l402_proxy::{Config, Proxy, open_store};
use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::transport::TokioChildProcess;
use serde_json::{Value, json};

fn text(r: &CallToolResult) -> String {
    r.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect::<Vec<_>>().join("")
}

/// The 402's invoice amount for `url` (msat), or the status.
async fn price(url: &str) -> Result<u64, u16> {
    let r = reqwest::get(url).await.expect("request");
    if r.status() != 402 {
        return Err(r.status().as_u16());
    }
    let lines: Vec<Vec<u8>> = r.headers().get_all("www-authenticate").iter().map(|v| v.as_bytes().to_vec()).collect();
    let c = l402_proto::Challenge::parse(lines.iter().map(Vec::as_slice)).expect("challenge");
    Ok(l402_proto::invoice::decode_invoice(&c.invoice).expect("invoice").1.amount.expect("amount").0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_mcp_client_adds_reprices_and_deletes_a_service_through_the_admin_tools() {
    let net = l402_regtest::Regtest::start().await.expect("regtest (is bitcoind installed?)");
    let node = net.ldk_node("server").await.expect("ldk node");
    let dir = tempfile::tempdir().expect("tmp");
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, "the-admin-token-of-the-mcp-test").expect("token");
    let config = Config::parse(&format!(
        r#"listen = "127.0.0.1:0"
store = {{ kind = "sqlite", path = "{db}" }}
lightning = {{ backend = "ldk", data_dir = "unused", network = "regtest", bitcoind_rpc = "x", bitcoind_user = "x" }}
[admin]
listen = "127.0.0.1:0"
token_file = "{token}"
[[service]]
name = "api"
path = "/api*"
upstream = "http://127.0.0.1:1"
price_sat = 21
"#,
        db = dir.path().join("l402.db").display(),
        token = token_file.display(),
    ))
    .expect("config");
    let store = open_store(&config.store).await.expect("store");
    let proxy = Proxy::start(&config, store, node.clone()).await.expect("proxy");
    let admin_url = format!("http://{}", proxy.admin_addr().expect("admin"));
    let base = format!("http://{}", proxy.addr());

    let mcp = |token_file: &std::path::Path| {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_l402"));
        cmd.args(["mcp", "--admin", "--admin-url", &admin_url, "--admin-token-file"])
            .arg(token_file)
            .env_remove("L402_ADMIN_TOKEN");
        TokioChildProcess::new(cmd).expect("spawn")
    };
    let client = ().serve(mcp(&token_file)).await.expect("MCP handshake");
    let tools: Vec<String> =
        client.list_all_tools().await.expect("tools/list").into_iter().map(|t| t.name.to_string()).collect();
    for name in
        ["list_services", "add_service", "update_service", "delete_service", "list_tokens", "revoke_token", "revenue"]
    {
        assert!(tools.contains(&name.to_owned()), "{tools:?}");
    }
    let call = |name: &'static str, a: Value| {
        let client = &client;
        async move {
            let args = a.as_object().expect("object").clone();
            client.call_tool(CallToolRequestParams::new(name).with_arguments(args)).await.expect("tools/call")
        }
    };

    let service = json!({ "name": "agent", "path": "/agent*", "upstream": "http://127.0.0.1:1", "price_sat": 3 });
    let r = call("add_service", json!({ "service": service })).await;
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    assert_eq!(price(&format!("{base}/agent")).await, Ok(3_000));
    let repriced = json!({ "path": "/agent*", "upstream": "http://127.0.0.1:1", "price_sat": 4 });
    let r = call("update_service", json!({ "name": "agent", "service": repriced })).await;
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    assert_eq!(price(&format!("{base}/agent")).await, Ok(4_000));
    let r = call("list_services", json!({})).await;
    let list: Value = serde_json::from_str(&text(&r)).expect("JSON");
    let names: Vec<&str> = list.as_array().expect("array").iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["api", "agent"]);

    let bad = json!({ "name": "bad", "path": "/bad*", "upstream": "http://127.0.0.1:1", "price_sat": 0 });
    let r = call("add_service", json!({ "service": bad })).await;
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).starts_with("422: ") && text(&r).contains("price above 0"), "{}", text(&r));
    let r = call("revoke_token", json!({ "id": "zz" })).await;
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).starts_with("400: "), "{}", text(&r));
    for (tool, args) in [("list_tokens", json!({ "limit": 5 })), ("revenue", json!({}))] {
        let r = call(tool, args).await;
        assert_ne!(r.is_error, Some(true), "{tool}: {}", text(&r));
        assert!(serde_json::from_str::<Value>(&text(&r)).expect("JSON").is_array(), "{tool}");
    }

    let r = call("delete_service", json!({ "name": "agent" })).await;
    assert_ne!(r.is_error, Some(true), "{}", text(&r));
    assert_eq!(price(&format!("{base}/agent")).await, Err(404));
    client.cancel().await.expect("closed");

    // A wrong token: refused, and the token is not in the answer.
    let wrong = dir.path().join("wrong-token");
    std::fs::write(&wrong, "not-the-admin-token-at-all").expect("token");
    let client = ().serve(mcp(&wrong)).await.expect("MCP handshake");
    let r = client.call_tool(CallToolRequestParams::new("list_services")).await.expect("tools/call");
    assert_eq!(r.is_error, Some(true));
    assert!(text(&r).starts_with("401: ") && !text(&r).contains("not-the-admin"), "{}", text(&r));
    client.cancel().await.expect("closed");
    drop(proxy);
    net.shutdown().await;
}

//! `l402 fetch --prefer-scheme session` and `l402 session list|close` against `l402 proxy` (the real binary,
//! with its embedded LDK node) serving a `Payment` session service (10 sat a request, a 100 sat deposit),
//! paying over a real regtest channel with the CLI's embedded LDK wallet: one deposit serves ten requests, the
//! eleventh and twelfth (sent at once) top up once, the close refunds the balance to the wallet's own amountless
//! invoice, and the wallet's node shows it received; a closed session is not used again.
#![allow(missing_docs)]

mod cli_support;
#[path = "../../l402-client/tests/support/mod.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use l402_lightning::{InvoiceIssuer as _, InvoiceState};
use l402_proto::{Msat, PaymentHash};
use serde_json::Value;
use support::{describe, node_payments};

/// `l402 COMMAND ARGS` with the data directory `data` and the regtest wallet at `wallet` (fetch and session
/// close pay or check on it).
fn l402(
    net: &l402_regtest::Regtest,
    wallet: &std::path::Path,
    data: &std::path::Path,
    command: &[&str],
    args: &[&str],
) -> std::process::Output {
    let (user, password) = net.bitcoind().rpc_auth();
    let mut c = Command::new(env!("CARGO_BIN_EXE_l402"));
    c.args(command).args(args).arg("--data-dir").arg(data);
    if command == ["fetch"] || command == ["session", "close"] {
        c.arg("--allow-http")
            .arg("--ldk-dir")
            .arg(wallet)
            .args(["--network", "regtest", "--bitcoind-rpc-user", user, "--bitcoind-rpc-port"])
            .arg(net.bitcoind().rpc_port().to_string())
            .env("L402_BITCOIND_RPC_PASSWORD", password);
    }
    c.stdin(Stdio::null()).output().expect("l402 runs")
}

fn json_of(o: &std::process::Output) -> Value {
    assert!(o.status.success(), "{}", describe(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", describe(o)))
}

/// `l402 proxy`, stopped (SIGTERM, then waited for) when dropped, even by a failing assertion.
struct ProxyProcess(Child);

impl ProxyProcess {
    fn stop(&mut self) {
        if self.0.try_wait().ok().flatten().is_some() {
            return;
        }
        let _ = Command::new("kill").args(["-TERM", &self.0.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.0.try_wait().ok().flatten().is_none() {
            if Instant::now() >= deadline {
                let _ = self.0.kill();
                let _ = self.0.wait();
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_deposit_serves_ten_requests_tops_up_once_for_the_next_two_and_the_close_refunds_the_rest() {
    let net = l402_regtest::Regtest::start().await.expect("regtest starts (is bitcoind installed?)");
    let server = net.ldk_node("server").await.expect("server node");
    let cli = net.ldk_node("cli").await.expect("wallet node");
    net.fund(&cli, 1_000_000).await.expect("fund");
    // 200,000 sat of the channel are the server's: enough above its reserve to pay a refund back.
    net.open_channel(&cli, &server, 800_000, 200_000_000).await.expect("wallet -> server");
    let (server_config, wallet_config) = (server.config().clone(), cli.config().clone());
    server.stop().await; // `l402 proxy` runs this node
    cli.stop().await; // the CLI runs this wallet
    let wallet = wallet_config.data_dir.clone();
    let up = format!("http://{}", cli_support::upstream().await);
    let tmp = tempfile::tempdir().expect("tmp");
    let port = l402_regtest::free_port().expect("a free port");
    let (user, password) = net.bitcoind().rpc_auth();
    let config = format!(
        r#"
listen = "127.0.0.1:{port}"
store = {{ kind = "sqlite", path = "{db}" }}
[lightning]
backend = "ldk"
data_dir = "{ldk}"
network = "regtest"
listen = "{p2p}"
bitcoind_rpc = "127.0.0.1:{rpc}"
bitcoind_user = "{user}"
bitcoind_password = "{password}"

[[service]]
name = "weather"
path = "/weather/*"
upstream = "{up}"
schemes = ["l402", "payment"]
price_sat = 10
[service.session]
deposit_sat = 100
"#,
        db = tmp.path().join("proxy.sqlite3").display(),
        ldk = server_config.data_dir.display(),
        p2p = server_config.listen.expect("the server node listens"),
        rpc = net.bitcoind().rpc_port(),
    );
    let config_path = tmp.path().join("l402.toml");
    std::fs::write(&config_path, config).expect("write config");
    let check =
        Command::new(env!("CARGO_BIN_EXE_l402")).args(["proxy", "--check", "--config"]).arg(&config_path).output();
    let check = check.expect("runs");
    assert!(check.status.success(), "the config is valid: {}", describe(&check));
    let child = Command::new(env!("CARGO_BIN_EXE_l402"))
        .args(["proxy", "--config"])
        .arg(&config_path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("proxy starts");
    let mut proxy = ProxyProcess(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the proxy did not listen");
        assert!(proxy.0.try_wait().expect("wait").is_none(), "the proxy exited early");
        std::thread::sleep(Duration::from_millis(100));
    }
    let url = format!("http://127.0.0.1:{port}/weather/today");
    let data = tmp.path().join("client");
    let fetch = || json_of(&l402(&net, &wallet, &data, &["fetch"], &["--prefer-scheme", "session", &url]));

    // The dry run names the session offer and its deposit; nothing is paid.
    let q = json_of(&l402(&net, &wallet, &data, &["fetch"], &["--dry-run", "--prefer-scheme", "session", &url]));
    assert_eq!((q["scheme"].as_str(), q["amount_msat"].as_u64()), (Some("Session"), Some(100_000)), "{q}");
    assert_eq!(q["service"], "weather", "{q}");

    // The first request opens the session: one deposit of 100 sat, this request's 10 sat debited.
    let v = fetch();
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["body"], "upstream saw /weather/today with 0 bytes", "{v}");
    let p = &v["payment"];
    assert_eq!((p["scheme"].as_str(), p["intent"].as_str()), (Some("Payment"), Some("session")), "{v}");
    assert_eq!(p["amount_msat"], 100_000, "the deposit: {v}");
    let session_id = p["session_id"].as_str().expect("session id").to_owned();
    assert_eq!(p["payment_hash"].as_str(), Some(session_id.as_str()), "the session id is the deposit's hash");
    assert_eq!(v["session"]["session_id"].as_str(), Some(session_id.as_str()), "{v}");
    assert_eq!(v["session"]["balance_msat"], 90_000, "{v}");

    // Nine more requests draw the balance down to nothing and pay nothing more.
    for i in 1..10u64 {
        let v = fetch();
        assert_eq!(v["status"], 200, "request {i}: {v}");
        assert!(v["payment"].is_null(), "request {i} pays nothing: {v}");
        assert_eq!(v["session"]["session_id"].as_str(), Some(session_id.as_str()), "request {i}: {v}");
        assert_eq!(v["session"]["balance_msat"].as_u64(), Some(90_000 - i * 10_000), "request {i}: {v}");
    }

    // The eleventh and twelfth, at the same time, find the balance used up: one of them tops up (the deposit
    // amount again, under the session's lease), the other finds it topped up and pays nothing; both are served.
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(fetch);
        let b = scope.spawn(fetch);
        (a.join().expect("fetch"), b.join().expect("fetch"))
    });
    let mut paid: Vec<&Value> = [&a, &b].into_iter().filter(|v| !v["payment"].is_null()).collect();
    assert_eq!(paid.len(), 1, "one top-up for both: {a} {b}");
    let v = paid.remove(0);
    for v in [&a, &b] {
        assert_eq!(v["status"], 200, "{v}");
        assert_eq!(v["session"]["session_id"].as_str(), Some(session_id.as_str()), "{v}");
    }
    let mut balances = [&a, &b].map(|v| v["session"]["balance_msat"].as_u64());
    balances.sort();
    assert_eq!(balances, [Some(80_000), Some(90_000)], "{a} {b}");
    let p = &v["payment"];
    assert_eq!((p["intent"].as_str(), p["amount_msat"].as_u64()), (Some("session"), Some(100_000)), "{v}");
    assert_eq!(p["session_id"].as_str(), Some(session_id.as_str()), "the same session, topped up: {v}");
    assert_ne!(p["payment_hash"].as_str(), Some(session_id.as_str()), "a top-up invoice of its own");
    let topup_hash = p["payment_hash"].as_str().expect("hash").to_owned();

    let list = json_of(&l402(&net, &wallet, &data, &["session", "list"], &["--json"]));
    let sessions = list.as_array().expect("sessions");
    assert_eq!(sessions.len(), 1, "{list}");
    let s = &sessions[0];
    assert_eq!((s["state"].as_str(), s["service"].as_str()), (Some("open"), Some("weather")), "{list}");
    assert_eq!((s["deposit_msat"].as_u64(), s["topup_msat"].as_u64()), (Some(100_000), Some(100_000)), "{list}");
    let left = s["balance_msat"].as_u64().expect("a balance");
    assert!(
        (80_000..=90_000).contains(&left),
        "the balance last said (the two answers may be written in either order): {list}"
    );
    assert!(s.get("preimage").is_none(), "no secret listed: {list}");
    let table = l402(&net, &wallet, &data, &["session", "list"], &[]);
    let text = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(text.contains(&session_id[..16]) && text.contains("open"), "{text}");
    assert!(!text.contains(&session_id), "the id is shortened in the table: {text}");

    // A copy of the client's store from before the close: it still holds the session as open.
    let stale = tmp.path().join("stale");
    std::fs::create_dir_all(&stale).expect("mkdir");
    for f in std::fs::read_dir(&data).expect("data dir") {
        let f = f.expect("entry");
        if f.file_type().expect("type").is_file() {
            std::fs::copy(f.path(), stale.join(f.file_name())).expect("copy");
        }
    }

    // The close refunds the balance (90 sat) to the wallet's own invoice, and the wallet's node shows it.
    let closed = json_of(&l402(&net, &wallet, &data, &["session", "close"], &["--json", &session_id[..12]]));
    assert_eq!(closed["session_id"].as_str(), Some(session_id.as_str()), "{closed}");
    assert_eq!((closed["refund_msat"].as_u64(), closed["refund_status"].as_str()), (Some(80_000), Some("succeeded")));
    assert_eq!(closed["received_msat"], 80_000, "what the wallet's node received: {closed}");
    assert_eq!(closed["deposited_msat"], 200_000, "{closed}");
    let list = json_of(&l402(&net, &wallet, &data, &["session", "list"], &["--json"]));
    let s = &list[0];
    assert_eq!((s["state"].as_str(), s["refund_received_msat"].as_u64()), (Some("closed"), Some(80_000)), "{list}");
    let again = l402(&net, &wallet, &data, &["session", "close"], &[&session_id]);
    assert_eq!(again.status.code(), Some(2), "a closed session is not closed twice: {}", describe(&again));

    // The ledger credits the refund back: the deposit's row counts 10 sat now, the top-up 100 sat.
    let spend = json_of(&l402(&net, &wallet, &data, &["spend"], &["--json"]));
    let payments = spend["payments"].as_array().expect("payments");
    let deposit = payments.iter().find(|p| p["payment_hash"] == session_id.as_str()).expect("deposit row");
    assert_eq!((deposit["refunded_msat"].as_u64(), deposit["state"].as_str()), (Some(80_000), Some("succeeded")));
    let o = l402(&net, &wallet, &data, &["spend"], &[]);
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(text.contains(&format!("session deposit of {}; 80000 msat refunded", &session_id[..16])), "{text}");

    // The server refuses the closed session's bearer credential (401): the stale store marks it refused, pays
    // nothing (the node's records below show no fourth payment) and exits 22.
    let o = l402(&net, &wallet, &stale, &["fetch"], &["--prefer-scheme", "session", &url]);
    assert_eq!(o.status.code(), Some(22), "{}", describe(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains(&session_id), "{}", describe(&o));
    let stale_list = json_of(&l402(&net, &wallet, &stale, &["session", "list"], &["--json"]));
    assert_eq!(stale_list[0]["state"], "refused", "{stale_list}");

    // A closed session is not used again: the next request opens a new one (a new deposit).
    let v = fetch();
    assert_eq!(v["status"], 200, "{v}");
    let p = &v["payment"];
    assert_eq!((p["intent"].as_str(), p["amount_msat"].as_u64()), (Some("session"), Some(100_000)), "{v}");
    let second = p["session_id"].as_str().expect("session id").to_owned();
    assert_ne!(second, session_id, "a new session: {v}");
    assert_eq!(v["session"]["balance_msat"], 90_000, "{v}");

    // The wallet's node, by its own records: three payments of 100 sat (two deposits and a top-up), and the
    // refund of 90 sat received on the first session's return invoice.
    proxy.stop();
    let _held = l402_client::lock_exclusive(&wallet.join("l402-wallet.lock"), std::time::Duration::from_secs(60))
        .await
        .expect("wallet free");
    let node = l402_ldk::LdkNode::start(wallet_config).await.expect("the wallet's node starts again");
    let mut paid = node_payments(&node);
    paid.sort();
    let mut expected = vec![session_id.clone(), topup_hash.clone(), second.clone()];
    expected.sort();
    assert_eq!(paid.iter().map(|p| p.0.clone()).collect::<Vec<_>>(), expected, "{paid:?}");
    assert!(paid.iter().all(|p| p.1 == 100_000), "{paid:?}");
    let return_hash = list[0]["return_hash"].as_str().expect("return hash");
    match node.lookup_invoice(&PaymentHash::from_hex(return_hash).expect("hash")).await.expect("lookup") {
        InvoiceState::Settled(s) => assert_eq!(s.amount_received, Msat::from_sat(80), "the refund received"),
        other => panic!("the refund is not on the wallet's node: {other:?}"),
    }
    node.stop().await;

    // The server's node, by its own records: the deposit and the top-up of the first session, 100 sat each.
    let server_node = l402_ldk::LdkNode::start(server_config).await.expect("the server's node starts again");
    for hash in [&session_id, &topup_hash, &second] {
        let h = PaymentHash::from_hex(hash).expect("hash");
        match server_node.lookup_invoice(&h).await.expect("lookup") {
            InvoiceState::Settled(s) => assert_eq!(s.amount_received, Msat::from_sat(100)),
            other => panic!("{hash} not settled on the server: {other:?}"),
        }
    }
    server_node.stop().await;
    net.shutdown().await;
}

//! `l402 fetch`, `l402 token` and `l402 spend` as a user runs them, paying a real L402 server on loopback over a
//! real regtest Lightning network with the CLI's own embedded LDK wallet (a separate process).
#![allow(missing_docs)]

#[path = "../../l402-client/tests/support/mod.rs"]
mod support;

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::Duration;

use l402_ldk::{LdkConfig, LdkNode, Network};
use l402_regtest::Regtest;
use serde_json::Value;
use support::{Mode, Server, describe, network, node_payments};

/// A regtest network, the test server, and wallets (stopped in this process) for the CLI to run.
struct Env {
    net: Regtest,
    server: Server,
    server_node: Arc<LdkNode>,
    wallets: Vec<PathBuf>,
    tmp: tempfile::TempDir,
}

async fn env(wallets: &[&str]) -> Env {
    let (net, server_node, payers) = network(wallets).await;
    for p in &payers {
        p.stop().await; // the CLI runs this wallet from now on
    }
    let server = Server::start(server_node.clone()).await;
    let wallets = wallets.iter().map(|w| net.root().join("ldk").join(w)).collect();
    Env { net, server, server_node, wallets, tmp: tempfile::tempdir().expect("tmp") }
}

impl Env {
    fn data(&self, name: &str) -> PathBuf {
        self.tmp.path().join(name)
    }

    fn cmd(&self, wallet: usize, data: &Path, args: &[&str]) -> Command {
        self.cmd_http(wallet, data, args, true)
    }

    /// [`Env::cmd`], with `--allow-http` for `fetch` and `mcp` only if `allow_http` (the test server is plain
    /// http on loopback).
    fn cmd_http(&self, wallet: usize, data: &Path, args: &[&str], allow_http: bool) -> Command {
        let (user, password) = self.net.bitcoind().rpc_auth();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_l402"));
        cmd.args(args).arg("--data-dir").arg(data);
        if allow_http && matches!(args.first(), Some(&"fetch" | &"mcp")) {
            cmd.arg("--allow-http");
        }
        if matches!(args.first(), Some(&"fetch" | &"spend" | &"mcp")) {
            cmd.arg("--ldk-dir")
                .arg(&self.wallets[wallet])
                .args(["--network", "regtest", "--bitcoind-rpc-port"])
                .arg(self.net.bitcoind().rpc_port().to_string())
                .args(["--bitcoind-rpc-user", user])
                .env("L402_BITCOIND_RPC_PASSWORD", password);
        }
        cmd.env_remove("L402_TEST_PAUSE_AT").stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        cmd
    }

    fn run(&self, wallet: usize, data: &Path, args: &[&str]) -> Output {
        self.cmd(wallet, data, args).output().expect("l402 runs")
    }

    /// Starts a wallet in this process to read the node's own payment records.
    async fn node(&self, wallet: usize) -> Arc<LdkNode> {
        LdkNode::start(LdkConfig {
            network: Network::Regtest,
            data_dir: self.wallets[wallet].clone(),
            listen: None,
            chain: self.net.bitcoind().chain_source(),
            alias: None,
        })
        .await
        .expect("wallet starts")
    }
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("JSON ({e}): {}", describe(o)))
}

/// The preimage the store keeps for a token (read with the library: no command prints it).
fn stored_preimage(data: &Path, token_id: &str) -> l402_proto::Preimage {
    let store = l402_client::Store::open(data).expect("store");
    let found = store.blocking(|c| l402_client::tokens::find(c, token_id)).expect("find");
    found.first().expect("the token is stored").credential().expect("credential").preimage
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The succeeded payments of the ledgers in `dirs`, by hash: (amount, fee).
fn ledgers(env: &Env, dirs: &[PathBuf]) -> HashMap<String, (u64, u64)> {
    let mut all = HashMap::new();
    for d in dirs {
        let o = env.run(0, d, &["spend", "--json"]);
        assert!(o.status.success(), "{}", describe(&o));
        for p in json(&o)["payments"].as_array().expect("payments") {
            if p["state"] == "succeeded" {
                let h = p["payment_hash"].as_str().expect("hash").to_owned();
                all.insert(h, (p["amount_msat"].as_u64().expect("amount"), p["fee_msat"].as_u64().expect("fee")));
            }
        }
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fetch_pays_reuses_refuses_with_exit_codes_and_the_ledger_matches_the_node() {
    let env = env(&["cli"]).await;
    let url = env.server.url("/svc/data");
    let data = env.data("main");

    // Dry run: the facts, nothing paid.
    let o = env.run(0, &data, &["fetch", "--dry-run", &url, "--json"]);
    assert!(o.status.success(), "{}", describe(&o));
    let q = json(&o);
    assert_eq!(q["amount_msat"], 100_000);
    assert_eq!(q["would_pay"], true);
    assert_eq!(q["description"], "l402 test svc");
    assert_eq!(q["network"], "regtest");
    assert!(q["destination"].as_str().expect("destination").len() == 66);
    assert!(q["expires_at"].as_u64().expect("expiry") > support::now() + 500);
    let o = env.run(0, &data, &["fetch", "--dry-run", &url, "--raw"]);
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("price:       100 sat") && text.contains("would pay:   yes"), "{text}");

    // Pay: JSON (stdout is a pipe) with the payment, named by hash and token id; a progress line on stderr.
    let o = env.run(0, &data, &["fetch", &url]);
    assert!(o.status.success(), "{}", describe(&o));
    let v = json(&o);
    assert_eq!(v["status"], 200);
    assert!(v["body"].as_str().expect("body").starts_with("paid GET /svc/data"));
    let p = &v["payment"];
    assert_eq!(p["amount_msat"], 100_000);
    assert!(stderr(&o).contains("in flight"), "progress line: {}", stderr(&o));
    let token_id = v["token_id"].as_str().expect("token").to_owned();
    let preimage = stored_preimage(&data, &token_id);
    assert_eq!(preimage.payment_hash().to_hex(), p["payment_hash"].as_str().expect("hash"));
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(!all.contains(&preimage.to_hex()), "preimage printed: {all}");

    // Again: the stored token, no payment; --raw prints the body; -i the status line.
    let o = env.run(0, &data, &["fetch", &url, "--raw", "-i"]);
    assert!(o.status.success(), "{}", describe(&o));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("200 OK") && text.contains("paid GET /svc/data"), "{text}");
    let v = json(&env.run(0, &data, &["fetch", &url]));
    assert!(v["payment"].is_null());
    assert_eq!(v["token_id"], token_id);
    assert_eq!(env.server.challenges(), 3, "two dry runs and one paid request met a challenge");

    // -X, -d, -o.
    let out = env.tmp.path().join("body.txt");
    let o = env.run(0, &data, &["fetch", "-X", "PUT", "-d", "abc", "-o", out.to_str().expect("utf8"), &url, "--raw"]);
    assert!(o.status.success(), "{}", describe(&o));
    assert!(std::fs::read_to_string(&out).expect("body").starts_with("paid PUT /svc/data"));

    // token list/show: no secrets.
    let o = env.run(0, &data, &["token", "list", "--json"]);
    let tokens = json(&o)["tokens"].as_array().expect("tokens").clone();
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0]["token_id"], token_id.as_str());
    assert_eq!(tokens[0]["state"], "valid");
    let o = env.run(0, &data, &["token", "show", &token_id[..12]]);
    assert!(o.status.success(), "{}", describe(&o));
    for o in [&o, &env.run(0, &data, &["token", "list"]), &env.run(0, &data, &["spend"])] {
        let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(o));
        assert!(!all.contains(&preimage.to_hex()), "preimage printed: {all}");
        assert!(!all.contains("AgEEbHNhdA"), "macaroon printed: {all}");
    }

    // Refusals before paying, each with its own exit code.
    let refusals: [(Mode, &[&str], i32, &str); 5] = [
        (Mode::Normal, &["--max-cost", "50"], 10, "price_over_cap"),
        (Mode::Amountless, &[], 11, "amountless_invoice"),
        (Mode::WrongNetwork, &[], 12, "wrong_network"),
        (Mode::Expired, &[], 13, "invoice_expired"),
        (Mode::HashMismatch, &[], 14, "payment_hash_mismatch"),
    ];
    for (mode, extra, code, reason) in refusals {
        env.server.set_mode(mode);
        let fresh = env.data(&format!("{mode:?}-{code}"));
        let mut args = vec!["fetch", url.as_str()];
        args.extend_from_slice(extra);
        let o = env.run(0, &fresh, &args);
        assert_eq!(o.status.code(), Some(code), "{mode:?}: {}", describe(&o));
        assert!(stderr(&o).contains(reason) && stderr(&o).contains("nothing was paid"), "{}", stderr(&o));
    }
    env.server.set_mode(Mode::Normal);
    // Budgets: per origin (100 sat already spent here), global, and this command's --budget.
    let other = env.server.url("/other/x");
    let o = env.run(0, &data, &["spend", "--set-limit", "per-origin=150"]);
    assert!(o.status.success(), "{}", describe(&o));
    let o = env.run(0, &data, &["fetch", &other]);
    assert_eq!(o.status.code(), Some(15), "{}", describe(&o));
    assert!(stderr(&o).contains("per-origin limit"), "{}", stderr(&o));
    let o = env.run(0, &data, &["spend", "--set-limit", "per-origin=10000", "--set-limit", "total=150"]);
    assert!(o.status.success(), "{}", describe(&o));
    let o = env.run(0, &data, &["fetch", &other]);
    assert_eq!(o.status.code(), Some(15), "{}", describe(&o));
    assert!(stderr(&o).contains("total limit"), "{}", stderr(&o));
    let o = env.run(0, &env.data("session"), &["fetch", &other, "--budget", "50"]);
    assert_eq!(o.status.code(), Some(15), "{}", describe(&o));
    assert!(stderr(&o).contains("session limit"), "{}", stderr(&o));

    // Paid but refused: exit 22, the token kept (state refused), and no second payment.
    env.server.set_mode(Mode::RefuseValid);
    let refused = env.data("refused");
    let o = env.run(0, &refused, &["fetch", &url]);
    assert_eq!(o.status.code(), Some(22), "{}", describe(&o));
    assert!(stderr(&o).contains("paid but refused"), "{}", stderr(&o));
    let o = env.run(0, &refused, &["fetch", &url]);
    assert_eq!(o.status.code(), Some(22), "{}", describe(&o));
    let tokens = json(&env.run(0, &refused, &["token", "list", "--json"]))["tokens"].clone();
    assert_eq!(tokens.as_array().expect("tokens").len(), 1);
    assert_eq!(tokens[0]["state"], "refused");
    let rm = env.run(0, &refused, &["token", "rm", tokens[0]["token_id"].as_str().expect("id")]);
    assert_eq!(rm.status.code(), Some(2), "a refused token is not removed without --force");
    let rm = env.run(0, &refused, &["token", "rm", "--force", tokens[0]["token_id"].as_str().expect("id")]);
    assert!(rm.status.success(), "{}", describe(&rm));
    let left = json(&env.run(0, &refused, &["token", "list", "--json"]))["tokens"].clone();
    assert_eq!(left.as_array().map(Vec::len), Some(0));
    env.server.set_mode(Mode::Normal);

    // The ledgers match the wallet's own records of payments, to the msat.
    let dirs: Vec<PathBuf> = std::fs::read_dir(env.tmp.path())
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    let ours = ledgers(&env, &dirs);
    assert_eq!(ours.len(), 2, "the first payment and the refused one");
    let node = env.node(0).await;
    let theirs: HashMap<String, (u64, u64)> = node_payments(&node).into_iter().map(|(h, a, f)| (h, (a, f))).collect();
    assert_eq!(ours, theirs);
    node.stop().await;
    env.net.shutdown().await;
}

/// Runs `fetch` with `L402_TEST_PAUSE_AT=point`, waits until it reports the pause and (with `settled`) until
/// the server's node has settled the journaled payment and the payer's node has had time to persist its
/// channel state, and SIGKILLs it.
async fn kill_at(env: &Env, data: &Path, url: &str, point: &str, settled: bool) -> String {
    let mut cmd = env.cmd(0, data, &["fetch", url]);
    cmd.env("L402_TEST_PAUSE_AT", point);
    let mut child = cmd.spawn().expect("spawn");
    let err = child.stderr.take().expect("stderr");
    let mut seen = String::new();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines() {
            let Ok(line) = line else { break };
            let _ = tx.send(line);
        }
    });
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(&format!("test pause at {point}")) {
                    break;
                }
            }
            Err(_) if std::time::Instant::now() < deadline => {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!("exited ({status}) before {point}: {seen}");
                }
            }
            Err(_) => panic!("never reached {point}: {seen}"),
        }
    }
    if settled {
        let journal = json(&env.run(0, data, &["spend", "--json"]));
        let hash = journal["payments"][0]["payment_hash"].as_str().expect("journaled").to_owned();
        let hash = l402_proto::PaymentHash::from_hex(&hash).expect("hash");
        use l402_lightning::{InvoiceIssuer as _, InvoiceState};
        let state = env.server_node.wait_invoice(&hash, Duration::from_secs(60)).await.expect("lookup");
        assert!(matches!(state, InvoiceState::Settled(_)), "{point}: the payee settled: {state:?}");
        tokio::time::sleep(SETTLE_GRACE).await;
    }
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    seen
}

/// How long after the payee settled the paused client is left before the kill, so that its embedded LDK node
/// finishes the HTLC exchange and persists its channel state: ldk-node writes its ChannelManager
/// asynchronously, and an LDK node killed in the middle of an HTLC exchange finds it stale on restart and
/// force-closes the channel (the last case of the test below).
const SETTLE_GRACE: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_process_killed_at_any_point_never_pays_twice_and_the_token_is_recovered() {
    let env = env(&["cli"]).await;
    let mut dirs = Vec::new();
    let points = [("journal_written", false), ("payment_in_flight", true), ("payment_succeeded", true)];
    for (i, (point, settled)) in points.into_iter().enumerate() {
        let data = env.data(point);
        dirs.push(data.clone());
        let url = env.server.url(&format!("/svc/crash/{i}"));
        let served = env.server.served_paid();
        kill_at(&env, &data, &url, point, settled).await;

        // The journal has the payment, unresolved (the token was never stored).
        let ledger = json(&env.run(0, &data, &["spend", "--json"]));
        let entries = ledger["payments"].as_array().expect("payments").clone();
        assert_eq!(entries.len(), 1, "{point}: {ledger}");
        assert_eq!(entries[0]["state"], "pending", "{point}");
        let journaled = entries[0]["payment_hash"].as_str().expect("hash").to_owned();
        assert_eq!(json(&env.run(0, &data, &["token", "list", "--json"]))["tokens"].as_array().map(Vec::len), Some(0));

        // The next run finishes the job.
        let o = env.run(0, &data, &["fetch", &url]);
        assert!(o.status.success(), "{point}: {}", describe(&o));
        let v = json(&o);
        assert_eq!(v["status"], 200, "{point}");
        assert_eq!(env.server.served_paid(), served + 1, "{point}");
        let ledger = json(&env.run(0, &data, &["spend", "--json"]));
        let entries = ledger["payments"].as_array().expect("payments").clone();
        let succeeded: Vec<&Value> = entries.iter().filter(|e| e["state"] == "succeeded").collect();
        assert_eq!(succeeded.len(), 1, "{point}: exactly one payment succeeded: {ledger}");
        if point == "journal_written" {
            // Killed before the wallet was asked: that payment never happened; its reservation is released
            // and the next run paid (once) for a fresh challenge.
            let released = entries.iter().find(|e| e["payment_hash"] == journaled.as_str()).expect("journaled");
            assert_eq!(released["state"], "failed", "{ledger}");
            assert_eq!(released["reserved_msat"], 0);
            assert_ne!(v["payment"]["payment_hash"], journaled.as_str());
        } else {
            // The interrupted payment is found by hash; its token is recovered and nothing new is paid.
            assert_eq!(entries.len(), 1, "{point}: no second payment: {ledger}");
            assert_eq!(succeeded[0]["payment_hash"], journaled.as_str(), "{point}");
            assert_eq!(v["payment"]["payment_hash"], journaled.as_str(), "{point}: the recovered payment");
        }
        // And the token is reused from now on.
        let again = json(&env.run(0, &data, &["fetch", &url]));
        assert!(again["payment"].is_null(), "{point}");
    }

    // Killed the instant the payment is in flight: the embedded node may find its channel state stale on restart
    // and force-close the channel, leaving the HTLC to be settled on chain. Either way the next run never pays
    // again: it recovers the token, or reports the outcome as unknown (exit 21) with the reservation kept.
    let data = env.data("instant");
    dirs.push(data.clone());
    let url = env.server.url("/svc/crash/instant");
    kill_at(&env, &data, &url, "payment_in_flight", false).await;
    let journaled = json(&env.run(0, &data, &["spend", "--json"]))["payments"][0]["payment_hash"].clone();
    let o = env.run(0, &data, &["fetch", &url, "--recovery-timeout", "10"]);
    let entries = json(&env.run(0, &data, &["spend", "--json"]))["payments"].as_array().expect("payments").clone();
    assert_eq!(entries.len(), 1, "never a second payment: {entries:?}");
    assert_eq!(entries[0]["payment_hash"], journaled);
    match o.status.code() {
        Some(0) => assert_eq!(entries[0]["state"], "succeeded"),
        Some(21) => {
            assert_eq!(entries[0]["state"], "unknown");
            assert_eq!(entries[0]["reserved_msat"], 110_000, "amount + fee limit stay reserved");
            assert!(stderr(&o).contains("outcome unknown"), "{}", stderr(&o));
            let o = env.run(0, &data, &["fetch", &url, "--recovery-timeout", "2"]);
            assert_eq!(o.status.code(), Some(21), "still not paid again: {}", describe(&o));
        }
        _ => panic!("{}", describe(&o)),
    }

    let node = env.node(0).await;
    let theirs: HashMap<String, (u64, u64)> = node_payments(&node).into_iter().map(|(h, a, f)| (h, (a, f))).collect();
    assert_eq!(ledgers(&env, &dirs), theirs, "the ledgers match the node's payments to the msat");
    assert!(theirs.len() == 3 || theirs.len() == 4, "one payment per crash point: {theirs:?}");
    node.stop().await;
    env.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processes_sharing_a_data_dir_pay_once() {
    let env = env(&["cli1", "cli2"]).await;
    let data = env.data("shared");
    let url = env.server.url("/svc/shared");
    let a = env.cmd(0, &data, &["fetch", &url]).spawn().expect("first");
    let b = env.cmd(1, &data, &["fetch", &url]).spawn().expect("second");
    let (a, b) = (a.wait_with_output().expect("first"), b.wait_with_output().expect("second"));
    assert!(a.status.success(), "{}", describe(&a));
    assert!(b.status.success(), "{}", describe(&b));
    let paid = [json(&a), json(&b)].iter().filter(|v| !v["payment"].is_null()).count();
    assert_eq!(paid, 1, "one of the two processes paid");
    let ledger = json(&env.run(0, &data, &["spend", "--json"]));
    assert_eq!(ledger["payments"].as_array().map(Vec::len), Some(1), "{ledger}");
    assert_eq!(env.server.served_paid(), 2);
    let mut total = 0;
    for w in 0..2 {
        let node = env.node(w).await;
        total += node_payments(&node).len();
        node.stop().await;
    }
    assert_eq!(total, 1, "one payment across both wallets");
    env.net.shutdown().await;
}

/// `--max-time`: a server that never answers gives exit 28 with nothing paid; a server that takes the money and
/// then hangs on the paid request gives exit 28 with the token stored, and the next run uses that token
/// without paying again.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn max_time_stops_the_command_and_never_loses_a_payment() {
    let env = env(&["alice"]).await;
    let data = env.data("max-time");

    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind"); // accepts, never answers
    let silent_url = format!("http://{}/svc/data", silent.local_addr().expect("addr"));
    let started = std::time::Instant::now();
    let o = env.run(0, &data, &["fetch", "--json", "--max-time", "2", &silent_url]);
    assert_eq!(o.status.code(), Some(28), "{}", describe(&o));
    assert!(stderr(&o).contains("nothing was paid"), "{}", describe(&o));
    assert!(started.elapsed() < Duration::from_secs(30), "the command stopped (it would wait forever otherwise)");

    env.server.set_mode(Mode::HangPaid);
    let url = env.server.url("/svc/data");
    let o = env.run(0, &data, &["fetch", "--json", "--max-time", "20", &url]);
    assert_eq!(o.status.code(), Some(28), "{}", describe(&o));
    assert!(stderr(&o).contains("after paying"), "{}", describe(&o));
    assert_eq!(env.server.challenges(), 1);
    let tokens = json(&env.run(0, &data, &["token", "list", "--json"]))["tokens"].clone();
    assert_eq!(tokens.as_array().expect("tokens").len(), 1, "the token paid for is stored");
    assert_eq!(tokens[0]["state"], "valid");

    env.server.set_mode(Mode::Normal);
    let o = env.run(0, &data, &["fetch", "--json", &url]);
    assert!(o.status.success(), "{}", describe(&o));
    let v = json(&o);
    assert_eq!(v["status"], 200);
    assert!(v["payment"].is_null(), "no second payment: {v}");
    assert_eq!(v["token_id"], tokens[0]["token_id"]);
    assert_eq!(env.server.challenges(), 1);
    let node = env.node(0).await;
    assert_eq!(node_payments(&node).len(), 1, "one payment left the wallet");
    node.stop().await;
    env.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fetch_json_names_a_payment_by_hash_and_token_id_never_by_its_preimage() {
    let env = env(&["cli"]).await;
    let data = env.data("json");
    let o = env.run(0, &data, &["fetch", &env.server.url("/svc/data"), "--json", "-i"]);
    assert!(o.status.success(), "{}", describe(&o));
    let v = json(&o);
    let p = v["payment"].as_object().expect("a payment was made");
    assert!(!p.contains_key("preimage"), "the JSON carries a preimage: {v}");
    let token_id = v["token_id"].as_str().expect("token id");
    assert_eq!(p["token_id"].as_str(), Some(token_id));
    let preimage = stored_preimage(&data, token_id);
    assert_eq!(p["payment_hash"].as_str(), Some(preimage.payment_hash().to_hex().as_str()), "the payment, by hash");
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(!all.contains(&preimage.to_hex()), "preimage printed: {all}");
    env.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fetch_over_plain_http_pays_nothing_without_allow_http() {
    let env = env(&["cli"]).await;
    let data = env.data("strict");
    let url = env.server.url("/svc/data");

    let o = env.cmd_http(0, &data, &["fetch", &url], false).output().expect("l402 runs");
    assert_eq!(o.status.code(), Some(17), "{}", describe(&o));
    assert!(stderr(&o).contains("plain_http") && stderr(&o).contains("--allow-http"), "{}", stderr(&o));
    let o = env.cmd_http(0, &data, &["fetch", "--dry-run", "--json", &url], false).output().expect("l402 runs");
    assert_eq!(o.status.code(), Some(17), "{}", describe(&o));
    let q = json(&o);
    assert_eq!((q["would_pay"].as_bool(), q["refusal"]["reason"].as_str()), (Some(false), Some("plain_http")), "{q}");
    let ledger = json(&env.run(0, &data, &["spend", "--json"]));
    assert_eq!(ledger["payments"].as_array().map(Vec::len), Some(0), "nothing journaled: {ledger}");
    let node = env.node(0).await;
    assert_eq!(support::node_payment_count(&node), 0, "no payment attempted");
    node.stop().await;

    // A free page over http needs no permission; a payment with --allow-http goes through.
    let o = env.cmd_http(0, &data, &["fetch", &env.server.url("/free")], false).output().expect("l402 runs");
    assert!(o.status.success(), "{}", describe(&o));
    let v = json(&env.run(0, &data, &["fetch", &url]));
    assert_eq!(v["status"], 200);
    assert!(!v["payment"].is_null());
    env.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fetch_stops_at_max_body_and_read_timeout_and_keeps_the_paid_token() {
    let env = env(&["cli"]).await;
    let data = env.data("capped");

    // The body (1 MiB) is over --max-body: exit 23, after paying; the token is kept and reused.
    let o = env.run(0, &data, &["fetch", &env.server.url("/svc/big"), "--max-body", "1000"]);
    assert_eq!(o.status.code(), Some(23), "{}", describe(&o));
    assert!(stderr(&o).contains("body_too_large") && stderr(&o).contains("is stored"), "{}", stderr(&o));
    assert!(o.stdout.len() < 2_000, "the body was not printed whole");
    let tokens = json(&env.run(0, &data, &["token", "list", "--json"]))["tokens"].clone();
    assert_eq!(tokens.as_array().map(Vec::len), Some(1), "the token paid for is stored");
    assert_eq!(tokens[0]["state"], "valid");
    let v = json(&env.run(0, &data, &["fetch", &env.server.url("/svc/data")]));
    assert_eq!((v["status"].as_u64(), v["payment"].is_null()), (Some(200), true), "reused, not paid again: {v}");

    // Streamed to a file: cut at the cap, and the partial file removed.
    let out = env.tmp.path().join("big.out");
    let args = ["fetch", "--raw", "-o", out.to_str().expect("utf8"), "--max-body", "1000"];
    let o = env.run(0, &data, &[&args[..], &[env.server.url("/svc/big").as_str()]].concat());
    assert_eq!(o.status.code(), Some(23), "{}", describe(&o));
    assert!(!out.exists(), "no partial file left");
    // Within the cap, the whole body.
    let o = env.run(0, &data, &["fetch", "--raw", "-o", out.to_str().expect("utf8"), &env.server.url("/svc/big")]);
    assert!(o.status.success(), "{}", describe(&o));
    assert_eq!(std::fs::metadata(&out).expect("written").len(), 1 << 20);

    // A body that stops coming: exit 24 after --read-timeout, the token still valid.
    let started = std::time::Instant::now();
    let o = env.run(0, &data, &["fetch", &env.server.url("/svc/stall"), "--read-timeout", "1"]);
    assert_eq!(o.status.code(), Some(24), "{}", describe(&o));
    assert!(stderr(&o).contains("read_timeout"), "{}", stderr(&o));
    assert!(started.elapsed() < Duration::from_secs(60), "given up on");
    let tokens = json(&env.run(0, &data, &["token", "list", "--json"]))["tokens"].clone();
    assert_eq!(tokens[0]["state"], "valid");
    let node = env.node(0).await;
    assert_eq!(node_payments(&node).len(), 1, "one payment in all");
    node.stop().await;
    env.net.shutdown().await;
}

/// `--prefer-scheme payment` against a server offering an L402 token and a `Payment` charge: the dry run quotes
/// the charge, each fetch pays a charge of its own (never reused) and never the L402 offer, `spend` shows each
/// charge's scheme, challenge id and receipt; by default the L402 offer is paid. Hostile charge offers and a
/// refused charge exit with the L402 path's codes; a process killed after paying a charge leaves it in the
/// journal, and the next run completes it and presents it (nothing paid again).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fetch_prefer_scheme_payment_pays_one_charge_per_request_and_recovers_a_killed_one() {
    use support::mpp::ChargeMode;
    let env = env(&["cli"]).await;
    env.server.offer(true, true);
    let url = env.server.url("/svc/data");
    let data = env.data("charges");
    let pay = ["fetch", "--prefer-scheme", "payment"];

    let q = json(&env.run(0, &data, &[&pay[..], &["--dry-run", &url]].concat()));
    assert_eq!((q["scheme"].as_str(), q["would_pay"].as_bool()), (Some("Payment"), Some(true)), "{q}");
    assert_eq!(q["offers"], serde_json::json!(["L402", "Payment"]));
    assert_eq!((q["amount_msat"].as_u64(), q["service"].as_str()), (Some(100_000), Some("l402-test")), "{q}");
    assert!(q["challenge_id"].is_string(), "{q}");
    assert_eq!(json(&env.run(0, &data, &["fetch", "--dry-run", &url]))["scheme"], "L402", "the default");

    let mut hashes = Vec::new();
    for _ in 0..2 {
        let o = env.run(0, &data, &[&pay[..], &[url.as_str()]].concat());
        assert!(o.status.success(), "{}", describe(&o));
        let v = json(&o);
        assert_eq!(v["status"], 200);
        let p = &v["payment"];
        assert_eq!((p["scheme"].as_str(), p["token_id"].is_null()), (Some("Payment"), true), "{v}");
        assert_eq!(p["receipt"]["reference"], p["payment_hash"], "{v}");
        assert_eq!(p["receipt"]["challenge_id"], p["challenge_id"], "{v}");
        hashes.push(p["payment_hash"].as_str().expect("hash").to_owned());
    }
    assert_ne!(hashes[0], hashes[1], "the second request paid a charge of its own");
    assert_eq!(env.server.charges_accepted().len(), 2);
    assert_eq!(json(&env.run(0, &data, &["token", "list", "--json"]))["tokens"].as_array().map(Vec::len), Some(0));
    let ledger = json(&env.run(0, &data, &["spend", "--json"]));
    for e in ledger["payments"].as_array().expect("payments") {
        assert_eq!((e["scheme"].as_str(), e["charge_state"].as_str()), (Some("Payment"), Some("spent")), "{e}");
        assert_eq!(e["receipt_reference"], e["payment_hash"], "{e}");
        assert!(e["receipt_challenge_id"].is_string() && e["receipt_challenge_id"] == e["challenge_id"], "{e}");
    }
    let text = String::from_utf8_lossy(&env.run(0, &data, &["spend"]).stdout).into_owned();
    assert!(text.contains("charge spent, challenge") && text.contains("receipt success reference"), "{text}");

    // By default, the L402 offer (a token, reused).
    let l402 = env.data("l402");
    let v = json(&env.run(0, &l402, &["fetch", &url]));
    assert_eq!((v["payment"]["scheme"].as_str(), v["token_id"].is_string()), (Some("L402"), true), "{v}");
    assert!(json(&env.run(0, &l402, &["fetch", &url]))["payment"].is_null());

    // Hostile charges and a refused one: the L402 path's exit codes.
    for (mode, code, reason) in [
        (ChargeMode::AmountMismatch, 19, "amount_mismatch"),
        (ChargeMode::HashMismatch, 14, "payment_hash_mismatch"),
        (ChargeMode::StatedMainnet, 12, "wrong_network"),
        (ChargeMode::ExpiringChallenge, 13, "invoice_expired"),
        (ChargeMode::RefuseCharge, 22, "paid_but_refused"),
    ] {
        env.server.set_charge_mode(mode);
        let o = env.run(0, &env.data(&format!("{mode:?}")), &[&pay[..], &[url.as_str()]].concat());
        assert_eq!(o.status.code(), Some(code), "{mode:?}: {}", describe(&o));
        assert!(stderr(&o).contains(reason), "{mode:?}: {}", stderr(&o));
    }
    env.server.set_charge_mode(ChargeMode::Normal);

    // Killed after paying a charge, before recording it: the next run completes it and presents it.
    let killed = env.data("killed");
    let mut cmd = env.cmd(0, &killed, &[&pay[..], &[url.as_str()]].concat());
    cmd.env("L402_TEST_PAUSE_AT", "payment_succeeded");
    let mut child = cmd.spawn().expect("spawn");
    let mut err = BufReader::new(child.stderr.take().expect("stderr"));
    let mut line = String::new();
    while !line.contains("test pause at payment_succeeded") {
        line.clear();
        assert!(err.read_line(&mut line).expect("stderr") > 0, "exited before pausing");
    }
    tokio::time::sleep(SETTLE_GRACE).await;
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    let journal = json(&env.run(0, &killed, &["spend", "--json"]));
    assert_eq!(journal["payments"][0]["state"], "pending", "{journal}");
    let journaled = journal["payments"][0]["payment_hash"].clone();
    let accepted = env.server.charges_accepted().len();
    let v = json(&env.run(0, &killed, &[&pay[..], &[url.as_str()]].concat()));
    assert_eq!(v["status"], 200, "{v}");
    assert_eq!(v["payment"]["payment_hash"], journaled, "the killed run's charge, presented");
    assert_eq!(env.server.charges_accepted().len(), accepted + 1);
    let journal = json(&env.run(0, &killed, &["spend", "--json"]));
    assert_eq!(journal["payments"].as_array().map(Vec::len), Some(1), "nothing paid again: {journal}");
    assert_eq!(journal["payments"][0]["charge_state"], "spent");

    let node = env.node(0).await;
    let mut dirs = vec![data, l402, killed];
    dirs.push(env.data("RefuseCharge"));
    let theirs: HashMap<String, (u64, u64)> = node_payments(&node).into_iter().map(|(h, a, f)| (h, (a, f))).collect();
    assert_eq!(ledgers(&env, &dirs), theirs, "one payment per charge, the ledgers match the node");
    assert_eq!(theirs.len(), 5);
    node.stop().await;
    env.net.shutdown().await;
}

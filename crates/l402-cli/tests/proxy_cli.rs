//! `l402 proxy` as a process: config checked, an embedded LDK backend on a real regtest network, a real 402,
//! a clean shutdown on SIGTERM.
#![allow(missing_docs)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn l402() -> Command {
    Command::new(env!("CARGO_BIN_EXE_l402"))
}

#[test]
fn check_accepts_the_sample_and_names_errors() {
    let sample = concat!(env!("CARGO_MANIFEST_DIR"), "/../../l402.sample.toml");
    let ok = l402().args(["proxy", "--check", "--config", sample]).output().expect("runs");
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let dir = tempfile::tempdir().expect("tmp");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listen = \"127.0.0.1:0\"\nbogus = 1\n").expect("write");
    let out = l402().args(["proxy", "--check", "--config"]).arg(&bad).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn proxy_process_with_an_embedded_ldk_node_answers_a_real_challenge() {
    let dir = tempfile::tempdir().expect("tmp");
    let net = dir.path().join("net");
    let up = l402().args(["regtest", "up", "--dir"]).arg(&net).output().expect("runs");
    assert!(up.status.success(), "{}", String::from_utf8_lossy(&up.stderr));
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(net.join("state.json")).expect("state")).expect("json");
    let port = l402_regtest::free_port().expect("a free port");
    let config = dir.path().join("l402.toml");
    std::fs::write(
        &config,
        format!(
            r#"
listen = "127.0.0.1:{port}"
store = {{ kind = "sqlite", path = "{db}" }}
[lightning]
backend = "ldk"
data_dir = "{ldk}"
network = "regtest"
bitcoind_rpc = "127.0.0.1:{rpc}"
bitcoind_user = "{user}"
bitcoind_password = "{pass}"
[[service]]
name = "api"
path = "/*"
upstream = "http://127.0.0.1:1"
price_msat = 21000
"#,
            db = dir.path().join("l402.db").display(),
            ldk = dir.path().join("ldk").display(),
            rpc = state["bitcoind"]["rpc_port"],
            user = state["bitcoind"]["rpc_user"].as_str().expect("user"),
            pass = state["bitcoind"]["rpc_password"].as_str().expect("pass"),
        ),
    )
    .expect("write config");
    let mut proxy = l402()
        .args(["proxy", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("proxy starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "proxy did not listen");
        assert!(proxy.try_wait().expect("wait").is_none(), "proxy exited early");
        std::thread::sleep(Duration::from_millis(100));
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let (status, lines) = rt.block_on(async {
        let r = reqwest::get(format!("http://127.0.0.1:{port}/anything")).await.expect("request");
        let lines: Vec<Vec<u8>> =
            r.headers().get_all("www-authenticate").iter().map(|v| v.as_bytes().to_vec()).collect();
        (r.status().as_u16(), lines)
    });
    assert_eq!(status, 402);
    let c = l402_proto::Challenge::parse(lines.iter().map(Vec::as_slice)).expect("challenge");
    let (_, info) = l402_proto::invoice::decode_invoice(&c.invoice).expect("invoice");
    assert_eq!(l402_proto::invoice::network_name(&info.currency), "regtest");
    assert_eq!(info.amount, Some(l402_proto::Msat(21_000)));
    assert_eq!(info.payment_hash, c.macaroon.l402_identifier().expect("id").payment_hash);

    let killed = Command::new("kill").args(["-TERM", &proxy.id().to_string()]).status().expect("kill");
    assert!(killed.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let exit = loop {
        if let Some(s) = proxy.try_wait().expect("wait") {
            break s;
        }
        assert!(Instant::now() < deadline, "proxy did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(exit.success(), "clean exit on SIGTERM: {exit}");
    let down = l402().args(["regtest", "down", "--dir"]).arg(&net).output().expect("runs");
    assert!(down.status.success());
}

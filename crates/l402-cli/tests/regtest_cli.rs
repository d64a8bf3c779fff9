//! `l402 regtest up|status|down` against a real bitcoind and real LDK nodes.
#![allow(missing_docs)]

use std::process::Command;
use std::time::{Duration, Instant};

fn l402(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_l402")).args(args).output().expect("l402 runs")
}

fn alive(pid: u64) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && stat.split_whitespace().nth(2) != Some("Z")
}

#[test]
fn up_status_down_leaves_nothing_running() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("net");
    let dir = dir.to_str().expect("utf8");

    let up = l402(&["regtest", "up", "--dir", dir]);
    assert!(up.status.success(), "up: {}", String::from_utf8_lossy(&up.stderr));
    assert!(String::from_utf8_lossy(&up.stdout).contains("running"));

    let st = l402(&["regtest", "status", "--dir", dir, "--json"]);
    assert!(st.status.success());
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).expect("json");
    assert_eq!(v["running"], true);
    assert!(v["block_height"].as_u64().expect("height") >= 101 + 1 + 6, "funded and channel confirmed");
    assert_eq!(v["nodes"].as_array().expect("nodes").len(), 2);
    assert!(v["bitcoind"].get("rpc_password").is_none(), "status does not echo the RPC password");
    let server = v["pid"].as_u64().expect("pid");
    let bitcoind = v["bitcoind"]["pid"].as_u64().expect("bitcoind pid");
    assert!(alive(server) && alive(bitcoind));

    // A second `up` on a running network is refused, and leaves it running.
    let again = l402(&["regtest", "up", "--dir", dir]);
    assert_eq!(again.status.code(), Some(2));
    assert!(alive(server));

    let down = l402(&["regtest", "down", "--dir", dir]);
    assert!(down.status.success(), "down: {}", String::from_utf8_lossy(&down.stderr));
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(server) || alive(bitcoind) {
        assert!(Instant::now() < deadline, "processes left running");
        std::thread::sleep(Duration::from_millis(100));
    }
    let st = l402(&["regtest", "status", "--dir", dir]);
    assert_eq!(st.status.code(), Some(2), "no network after down");
}

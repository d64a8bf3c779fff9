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

#[test]
fn up_with_lnd_points_at_env_keeps_macaroons_off_the_terminal_and_down_stops_lnd() {
    let tmp = tempfile::tempdir().expect("tmp");
    let dir = tmp.path().join("net");
    let dir = dir.to_str().expect("utf8");
    let up = l402(&["regtest", "up", "--lnd", "--dir", dir]);
    let text = String::from_utf8_lossy(&up.stdout).into_owned();
    assert!(up.status.success(), "up: {}", String::from_utf8_lossy(&up.stderr));
    for expected in [
        "LND payer",
        "LND operator",
        "invoice.macaroon",
        "pay.macaroon",
        "sample API http://127.0.0.1:",
        &format!("l402 regtest env operator --dir {dir} > l402.toml"),
        &format!("eval \"$(l402 regtest env payer --dir {dir})\""),
        "l402 regtest pay payer",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
    assert!(!text.contains("lndconnect://") && !text.contains("AgEDbG5k"), "no macaroon on the terminal:\n{text}");

    let st = l402(&["regtest", "status", "--dir", dir, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).expect("json");
    let lnd = v["lnd"].as_array().expect("lnd nodes").clone();
    assert_eq!(lnd.len(), 2);
    assert!(!String::from_utf8_lossy(&st.stdout).contains("lndconnect://"), "status --json hides the URIs");
    let pids: Vec<u64> = lnd.iter().map(|n| n["pid"].as_u64().expect("pid")).collect();
    assert!(pids.iter().all(|p| alive(*p)), "LND runs");

    // The pay-only lndconnect URI kept in state.json (0600) reaches the payer's LND.
    use std::os::unix::fs::PermissionsExt as _;
    let state_file = std::path::Path::new(dir).join("state.json");
    // The directory is private: LND's own macaroons in it are readable by all.
    assert_eq!(std::fs::metadata(dir).expect("dir").permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(&state_file).expect("state").permissions().mode() & 0o777, 0o600);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state_file).expect("read")).expect("json");
    let payer = state["lnd"].as_array().expect("lnd").iter().find(|n| n["name"] == "payer").expect("payer").clone();
    // And in a file of its own (0600), for --lndconnect-file, which the status output points to.
    let pay_file = std::path::PathBuf::from(payer["lndconnect_pay_file"].as_str().expect("pay file"));
    assert_eq!(std::fs::metadata(&pay_file).expect("pay file").permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&pay_file).expect("read"), payer["lndconnect_pay"].as_str().expect("uri"));
    assert!(text.contains(&format!("pay.lndconnect    {}", pay_file.display())), "{text}");
    let config =
        l402_lnd::LndConfig::from_lndconnect(payer["lndconnect_pay"].as_str().expect("uri")).expect("uri parses");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    let info = rt.block_on(async {
        use l402_lightning::Node as _;
        l402_lnd::LndNode::connect(config).await.expect("connects").info().await.expect("GetInfo")
    });
    assert_eq!(info.pubkey, payer["pubkey"].as_str().expect("pubkey"));

    env_and_pay_refuse_what_they_cannot_do(dir, &state);

    let down = l402(&["regtest", "down", "--dir", dir]);
    assert!(down.status.success(), "down: {}", String::from_utf8_lossy(&down.stderr));
    assert!(pids.iter().all(|p| !alive(*p)), "down stopped LND");
}

#[test]
fn regtest_up_refuses_to_clear_a_directory_that_is_not_a_regtest_directory() {
    let tmp = tempfile::tempdir().expect("tmp");
    // Someone's data, passed as --dir by mistake: refused, untouched.
    let precious = tmp.path().join("home");
    std::fs::create_dir_all(precious.join("photos")).expect("dir");
    std::fs::write(precious.join("photos").join("cat.jpg"), b"meow").expect("write");
    std::fs::write(precious.join("notes.txt"), b"keep me").expect("write");
    let up = l402(&["regtest", "up", "--dir", precious.to_str().expect("utf8")]);
    assert_eq!(up.status.code(), Some(2), "{}", String::from_utf8_lossy(&up.stderr));
    assert!(String::from_utf8_lossy(&up.stderr).contains("not a regtest network's directory"));
    assert_eq!(std::fs::read(precious.join("notes.txt")).expect("still there"), b"keep me");
    assert_eq!(std::fs::read(precious.join("photos").join("cat.jpg")).expect("still there"), b"meow");
    // A file is refused too.
    let file = precious.join("notes.txt");
    let up = l402(&["regtest", "up", "--dir", file.to_str().expect("utf8")]);
    assert_eq!(up.status.code(), Some(2));
    assert_eq!(std::fs::read(&file).expect("still there"), b"keep me");

    // An empty directory is used, marked, and may be cleared by the next `up` once the network is down.
    let net = tmp.path().join("empty");
    std::fs::create_dir_all(&net).expect("dir");
    let dir = net.to_str().expect("utf8");
    for round in 0..2 {
        let up = l402(&["regtest", "up", "--dir", dir]);
        assert!(up.status.success(), "up {round}: {}", String::from_utf8_lossy(&up.stderr));
        assert!(net.join("l402-regtest.dir").is_file(), "marked");
        let down = l402(&["regtest", "down", "--dir", dir]);
        assert!(down.status.success(), "down {round}: {}", String::from_utf8_lossy(&down.stderr));
    }
}

/// A mainnet invoice (BOLT 11's own example: valid signature, long expired).
const MAINNET_INVOICE: &str = "lnbc2500u1pvjluezsp5zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zyg3zygspp5qqqsyqcyq5rqwzq\
fqqqsyqcyq5rqwzqfqqqsyqcyq5rqwzqfqypqdq5xysxxatsyp3k7enxv4jsxqzpu9qrsgquk0rl77nj30yxdy8j9vdx85fkpmdla2087ne0xh8nhedh8w27k\
yke0lp53ut353s06fv3qfegext0eh0ymjpf39tuven09sam30g4vgpfna3rh";

/// `regtest env` and `regtest pay` on a running network with LND: what they print names files only, and what
/// they cannot do is refused with exit 2, saying why, and pays nothing.
fn env_and_pay_refuse_what_they_cannot_do(dir: &str, state: &serde_json::Value) {
    let text = |o: &std::process::Output| {
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
    };
    // The payer's environment: paths, the pay-only macaroon, a data directory of the network's own.
    let payer = l402(&["regtest", "env", "payer", "--dir", dir]);
    assert!(payer.status.success(), "{}", text(&payer));
    let out = String::from_utf8_lossy(&payer.stdout);
    assert!(out.contains("export L402_LND_MACAROON=") && out.contains("pay.macaroon"), "{out}");
    assert!(out.contains(&format!("export L402_DATA_DIR={dir}/client")), "{out}");
    let operator = l402(&["regtest", "env", "operator", "--dir", dir, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&operator.stdout).expect("json");
    assert!(v["lightning"]["macaroon"].as_str().expect("path").ends_with("/invoice.macaroon"), "{v}");
    // The printed config is one `l402 proxy` accepts.
    let config = std::path::Path::new(dir).join("l402.toml");
    std::fs::write(&config, v["proxy_config"].as_str().expect("config")).expect("write");
    let check = l402(&["proxy", "--check", "--config", config.to_str().expect("utf8")]);
    assert!(check.status.success(), "{}", text(&check));
    for out in [&payer.stdout, &operator.stdout] {
        let out = String::from_utf8_lossy(out);
        assert!(!out.contains("AgEDbG5k") && !out.contains("lndconnect://"), "no macaroon printed: {out}");
    }

    // Nodes it does not have, or that no other program can use: refused, naming those it has.
    let unknown = l402(&["regtest", "env", "carol", "--dir", dir]);
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
    assert!(
        text(&unknown).contains("no node \"carol\"") && text(&unknown).contains("payer, operator"),
        "{}",
        text(&unknown)
    );
    let ldk = l402(&["regtest", "env", "alice", "--dir", dir]);
    assert_eq!(ldk.status.code(), Some(2));
    assert!(text(&ldk).contains("LDK node inside the network's own process"), "{}", text(&ldk));

    // Garbage, a mainnet invoice, an amountless one, nodes that cannot pay: exit 2, nothing paid.
    let lncli = |name: &str, args: &[&str]| -> serde_json::Value {
        let lnd = state["lnd"].as_array().expect("lnd").iter().find(|n| n["name"] == name).expect("node");
        let s = |k: &str| lnd[k].as_str().expect("field").to_owned();
        let out = Command::new(l402_regtest::lnd::find_peer("lncli", "L402_LNCLI").expect("lncli"))
            .arg(format!("--rpcserver={}", s("rpc_address")))
            .arg(format!("--tlscertpath={}", s("tls_cert")))
            .arg(format!("--macaroonpath={}", s("admin_macaroon")))
            .arg("--network=regtest")
            .args(args)
            .output()
            .expect("lncli");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("lncli {args:?}: {e}: {out:?}"))
    };
    let payments =
        || lncli("payer", &["listpayments", "--include_incomplete"])["payments"].as_array().map_or(0, Vec::len);
    let invoice = |args: &[&str]| {
        let mut all = vec!["addinvoice"];
        all.extend(args);
        lncli("operator", &all)["payment_request"].as_str().expect("invoice").to_owned()
    };
    let (priced, amountless) = (invoice(&["--amt", "10"]), invoice(&[]));
    let before = payments();
    for (node, invoice, says) in [
        ("payer", "not-an-invoice", "is not a BOLT11 invoice"),
        ("payer", "", "is not a BOLT11 invoice"),
        ("payer", MAINNET_INVOICE, "the invoice is for bitcoin, not regtest"),
        ("payer", &amountless, "the invoice names no amount"),
        ("alice", &priced, "LDK node inside the network's own process"),
        ("carol", &priced, "no node \"carol\""),
    ] {
        let out = l402(&["regtest", "pay", node, invoice, "--dir", dir]);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(says), "{says:?} in {}", text(&out));
        assert!(out.stdout.is_empty(), "nothing on stdout: {}", text(&out));
    }
    assert_eq!(payments(), before, "no payment was made");
}

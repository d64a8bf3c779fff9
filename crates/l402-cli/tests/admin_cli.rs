//! `l402 admin` against an `l402 proxy` process on a real regtest network: services listed, added, updated
//! and deleted (each seen in the next 402's invoice), refusals with the API's reason, tokens and revenue; and
//! SIGHUP reloading the config file's services: a good file applied, a bad one changing nothing and logged
//! without the file's text.
#![allow(missing_docs)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn l402() -> Command {
    Command::new(env!("CARGO_BIN_EXE_l402"))
}

fn describe(o: &Output) -> String {
    format!(
        "{}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The amount of the invoice in the 402 for `url`, or the status if it is not a 402.
fn price(url: &str) -> Result<u64, u16> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
    rt.block_on(async {
        let r = reqwest::get(url).await.expect("request");
        if r.status() != 402 {
            return Err(r.status().as_u16());
        }
        let lines: Vec<Vec<u8>> =
            r.headers().get_all("www-authenticate").iter().map(|v| v.as_bytes().to_vec()).collect();
        let c = l402_proto::Challenge::parse(lines.iter().map(Vec::as_slice)).expect("challenge");
        let (_, info) = l402_proto::invoice::decode_invoice(&c.invoice).expect("invoice");
        Ok(info.amount.expect("amount").0)
    })
}

/// Waits until `check` holds (a SIGHUP is applied asynchronously).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn write_config(path: &Path, head: &str, services: &str) {
    std::fs::write(path, format!("{head}{services}")).expect("write config");
}

#[test]
fn admin_commands_drive_a_running_proxy_and_sighup_reloads_its_services() {
    let dir = tempfile::tempdir().expect("tmp");
    let net = dir.path().join("net");
    let up = l402().args(["regtest", "up", "--dir"]).arg(&net).output().expect("runs");
    assert!(up.status.success(), "{}", describe(&up));
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(net.join("state.json")).expect("state")).expect("json");
    let port = l402_regtest::free_port().expect("a free port");
    let admin_port = l402_regtest::free_port().expect("a free port");
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, "the-admin-token-of-this-test\n").expect("token");
    std::fs::set_permissions(&token_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let head = format!(
        r#"listen = "127.0.0.1:{port}"
store = {{ kind = "sqlite", path = "{db}" }}
[admin]
listen = "127.0.0.1:{admin_port}"
token_file = "{token}"
[lightning]
backend = "ldk"
data_dir = "{ldk}"
network = "regtest"
bitcoind_rpc = "127.0.0.1:{rpc}"
bitcoind_user = "{user}"
bitcoind_password = "{pass}"
"#,
        db = dir.path().join("l402.db").display(),
        token = token_file.display(),
        ldk = dir.path().join("ldk").display(),
        rpc = state["bitcoind"]["rpc_port"],
        user = state["bitcoind"]["rpc_user"].as_str().expect("user"),
        pass = state["bitcoind"]["rpc_password"].as_str().expect("pass"),
    );
    let service = |name: &str, sat: u64| {
        format!(
            "\n[[service]]\nname = \"{name}\"\npath = \"/{name}*\"\nupstream = \"http://127.0.0.1:1\"\nprice_sat = {sat}\n"
        )
    };
    let config = dir.path().join("l402.toml");
    write_config(&config, &head, &service("api", 21));
    let log = dir.path().join("proxy.log");
    let mut proxy = l402()
        .args(["proxy", "--config"])
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log file"))
        .spawn()
        .expect("proxy starts");
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", admin_port)).is_err() {
        assert!(Instant::now() < deadline, "proxy did not listen");
        assert!(
            proxy.try_wait().expect("wait").is_none(),
            "proxy exited early: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let base = format!("http://127.0.0.1:{port}");
    let admin = |args: &[&str]| {
        l402()
            .arg("admin")
            .args(args)
            .args(["--url", &format!("http://127.0.0.1:{admin_port}"), "--token-file"])
            .arg(&token_file)
            .env_remove("L402_ADMIN_TOKEN")
            .output()
            .expect("l402 admin runs")
    };
    let names = |o: &Output| -> Vec<String> {
        assert!(o.status.success(), "{}", describe(o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
        v.as_array().expect("array").iter().map(|s| s["name"].as_str().expect("name").to_owned()).collect()
    };

    assert_eq!(names(&admin(&["services", "list"])), ["api"]);
    let extra = dir.path().join("extra.json");
    std::fs::write(&extra, r#"{"name": "extra", "path": "/extra*", "upstream": "http://127.0.0.1:1", "price_sat": 3}"#)
        .expect("json");
    let added = admin(&["services", "add", extra.to_str().expect("path")]);
    assert!(added.status.success(), "{}", describe(&added));
    assert_eq!(price(&format!("{base}/extra")), Ok(3_000));
    std::fs::write(&extra, r#"{"path": "/extra*", "upstream": "http://127.0.0.1:1", "price_sat": 4}"#).expect("json");
    let updated = admin(&["services", "update", "extra", extra.to_str().expect("path")]);
    assert!(updated.status.success(), "{}", describe(&updated));
    assert_eq!(price(&format!("{base}/extra")), Ok(4_000));
    assert_eq!(names(&admin(&["services", "list"])), ["api", "extra"]);

    // Refusals: the API's reason, exit 1, nothing changed.
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        r#"{"name": "bad", "path": "/bad*", "upstream": "http://127.0.0.1:1", "price_sat": 1, "bogus": 1}"#,
    )
    .expect("json");
    let refused = admin(&["services", "add", bad.to_str().expect("path")]);
    assert_eq!(refused.status.code(), Some(1), "{}", describe(&refused));
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("422 service: unknown field `bogus`"),
        "{}",
        describe(&refused)
    );
    let twice = admin(&["services", "add", extra.to_str().expect("path")]);
    assert_eq!(twice.status.code(), Some(1), "{}", describe(&twice));
    let wrong = l402()
        .args(["admin", "services", "list", "--url", &format!("http://127.0.0.1:{admin_port}")])
        .env("L402_ADMIN_TOKEN", "not-the-admin-token-at-all")
        .output()
        .expect("runs");
    assert_eq!(wrong.status.code(), Some(1), "{}", describe(&wrong));
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("401"), "{}", describe(&wrong));
    assert!(!String::from_utf8_lossy(&wrong.stderr).contains("not-the-admin-token"), "the token is never echoed");
    let none = l402().args(["admin", "services", "list"]).env_remove("L402_ADMIN_TOKEN").output().expect("runs");
    assert_eq!(none.status.code(), Some(2), "{}", describe(&none));
    assert_eq!(names(&admin(&["services", "list"])), ["api", "extra"]);

    let tokens = admin(&["tokens", "list", "--limit", "5"]);
    assert!(tokens.status.success(), "{}", describe(&tokens));
    assert!(serde_json::from_slice::<serde_json::Value>(&tokens.stdout).expect("JSON").is_array());
    let revenue = admin(&["revenue"]);
    assert!(revenue.status.success(), "{}", describe(&revenue));
    let revoke = admin(&["tokens", "revoke", "zz"]);
    assert_eq!(revoke.status.code(), Some(1), "{}", describe(&revoke));

    let deleted = admin(&["services", "delete", "extra"]);
    assert!(deleted.status.success(), "{}", describe(&deleted));
    assert_eq!(price(&format!("{base}/extra")), Err(404));

    // SIGHUP with a good file: its services are applied.
    let hup = || {
        let sent = Command::new("kill").args(["-HUP", &proxy.id().to_string()]).status().expect("kill");
        assert!(sent.success());
    };
    write_config(&config, &head, &format!("{}{}", service("api", 22), service("hup", 2)));
    hup();
    eventually("the good file applied", || price(&format!("{base}/hup")) == Ok(2_000));
    assert_eq!(price(&format!("{base}/api")), Ok(22_000));
    let logged = |needle: &str| std::fs::read_to_string(&log).unwrap_or_default().matches(needle).count();
    assert_eq!(logged("SIGHUP: services reloaded"), 1);

    // SIGHUP with bad files: nothing changes, the reason is logged, the file's text is not.
    let secret = "s3cret-value-in-the-file";
    write_config(&config, &format!("bogus = \"{secret}\"\n{head}"), &service("api", 30));
    hup();
    eventually("the unknown key logged", || logged("SIGHUP: the config file is not valid") == 1);
    write_config(&config, &head, &format!("{}{}", service("api", 31), service("api", 32)));
    hup();
    eventually("the duplicate name logged", || logged("SIGHUP: the config file is not valid") == 2);
    let text = std::fs::read_to_string(&log).expect("log");
    assert!(text.contains("unknown field `bogus`") && text.contains("already used"), "{text}");
    assert!(!text.contains(secret) && !text.contains("the-admin-token-of-this-test"), "no secret logged: {text}");
    assert_eq!(price(&format!("{base}/api")), Ok(22_000), "unchanged");
    assert_eq!(price(&format!("{base}/hup")), Ok(2_000), "unchanged");

    // A clean exit on SIGTERM is proxy_cli's to pin.
    proxy.kill().expect("kill");
    proxy.wait().expect("wait");
    let down = l402().args(["regtest", "down", "--dir"]).arg(&net).output().expect("runs");
    assert!(down.status.success());
}

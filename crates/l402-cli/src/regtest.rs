//! `l402 regtest up|status|env|pay|down`: a local regtest Lightning network that outlives the command.
//!
//! `up` starts `l402 regtest serve` in the background; it owns bitcoind, the LDK nodes (alice, funded, with a
//! channel to bob), a sample weather API ([`crate::sample_api`]) and, with `--lnd`, two real LND nodes
//! (`payer`, funded, with a channel to `operator`); it writes `state.json` (0600: it holds bitcoind's RPC
//! password) in the network's directory once everything is ready, and shuts everything down on SIGTERM or
//! SIGINT. `status` reads that file and asks bitcoind for its height; `down` sends SIGTERM and waits until the
//! server is gone. The directory is its owner's only (`0700`): LND writes some of its macaroons readable by
//! all.
//!
//! Other programs can use the LND nodes only: the LDK nodes live inside the server's process. `env` prints
//! what `l402 proxy` needs to issue invoices from the operator (a whole proxy config in front of the sample
//! API) or what `l402 fetch` needs to pay from the payer (environment variables: file paths, never a
//! macaroon); `pay` pays any regtest invoice from an LND node and prints the preimage, for trying other L402
//! clients ([`env`], [`pay`]).
//!
//! `up` starts from a clean directory: it deletes what an earlier network left there, but only in a directory
//! that is absent, empty, or marked as one of ours (the [`MARKER`] file `up` writes, or a `state.json`); any
//! other directory is refused untouched, so a mistyped `--dir` never deletes someone's data.

mod env;
mod pay;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use l402_regtest::Regtest;
use serde_json::{Value, json};

use crate::Failure;

#[derive(Subcommand, Debug)]
pub(crate) enum RegtestCommand {
    /// Start the network in the background: bitcoind, LDK nodes alice and bob (a funded channel alice -> bob)
    /// and a sample API; with --lnd also real LND nodes payer and operator (a funded channel payer ->
    /// operator), which l402 proxy and l402 fetch can use (see `l402 regtest env`).
    Up(UpArgs),
    /// Show the running network (processes, block height, nodes, the sample API) and how to connect to it.
    Status(StatusArgs),
    /// Print what l402 proxy or l402 fetch needs to use an LND node of the network (started with --lnd):
    /// for `operator`, a proxy config in front of the sample API; for `payer`, the environment l402 fetch
    /// reads (eval it). File paths only, never a macaroon.
    #[command(after_help = env::AFTER_HELP)]
    Env(env::EnvArgs),
    /// Pay a regtest BOLT11 invoice from an LND node of the network (started with --lnd) and print the
    /// preimage (hex) on stdout: for trying other L402 clients against l402 proxy.
    #[command(after_help = pay::AFTER_HELP)]
    Pay(pay::PayArgs),
    /// Stop the network and every process it started.
    Down(DirArgs),
    /// Run the network in the foreground until SIGTERM/SIGINT (what `up` starts).
    #[command(hide = true)]
    Serve(UpArgs),
}

#[derive(Args, Debug)]
pub(crate) struct UpArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// Also start two real LND nodes (built by scripts/install-peers.sh): `payer`, with a 1M sat channel to
    /// `operator`. Other programs (l402 proxy, l402 fetch) can use these; the LDK nodes live inside the
    /// network's own process.
    #[arg(long)]
    lnd: bool,
}

#[derive(Args, Debug)]
pub(crate) struct DirArgs {
    /// The network's directory (its data, log and state.json).
    #[arg(long, default_value_os_t = default_dir())]
    dir: PathBuf,
}

#[derive(Args, Debug)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    dir: DirArgs,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn default_dir() -> PathBuf {
    std::env::temp_dir().join("l402-regtest")
}

/// The file that marks a directory as a regtest network's (written by `up`).
pub(crate) const MARKER: &str = "l402-regtest.dir";

/// Whether `up` may clear `dir`: absent, empty, or holding our marker or state file.
fn clearable(dir: &Path) -> anyhow::Result<bool> {
    if !dir.exists() {
        return Ok(true);
    }
    if !dir.is_dir() {
        return Ok(false);
    }
    if dir.join(MARKER).is_file() || state_path(dir).is_file() {
        return Ok(true);
    }
    let mut entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    Ok(entries.next().is_none())
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("state.json")
}

fn read_state(dir: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(state_path(dir))
        .with_context(|| format!("no network running in {} (start one with `l402 regtest up`)", dir.display()))?;
    serde_json::from_str(&text).context("state.json")
}

fn alive(pid: u64) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && stat.split_whitespace().nth(2) != Some("Z")
}

pub(crate) fn run(cmd: RegtestCommand) -> Result<(), Failure> {
    match cmd {
        RegtestCommand::Up(a) => up(&a.dir.dir, a.lnd).map_err(Failure::Input),
        RegtestCommand::Status(a) => status(&a.dir.dir, a.json).map_err(Failure::Input),
        RegtestCommand::Env(a) => env::run(&a).map_err(Failure::Input),
        RegtestCommand::Pay(a) => pay::run(&a),
        RegtestCommand::Down(a) => down(&a.dir).map_err(Failure::Input),
        RegtestCommand::Serve(a) => serve(&a.dir.dir, a.lnd).map_err(Failure::Input),
    }
}

fn up(dir: &Path, lnd: bool) -> anyhow::Result<()> {
    if let Ok(state) = read_state(dir)
        && state["pid"].as_u64().is_some_and(alive)
    {
        bail!("a network is already running in {} (l402 regtest down first)", dir.display());
    }
    if !clearable(dir)? {
        bail!(
            "{} is not a regtest network's directory (no {MARKER}): refusing to delete what is in it; pass an \
             empty or new --dir",
            dir.display()
        );
    }
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Its owner's only: LND writes its macaroons (the invoice one, the read-only one) readable by all.
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("making {} private", dir.display()))?;
    }
    std::fs::write(
        dir.join(MARKER),
        "a local regtest network made by `l402 regtest up`; `up` may clear this directory\n",
    )
    .with_context(|| format!("marking {}", dir.display()))?;
    let log = std::fs::File::create(dir.join("serve.log")).context("creating serve.log")?;
    let exe = std::env::current_exe().context("finding the l402 executable")?;
    let mut child = Command::new(exe)
        .args(["regtest", "serve", "--dir"])
        .arg(dir)
        .args(lnd.then_some("--lnd"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().context("log")?)
        .stderr(log)
        .spawn()
        .context("starting the network server")?;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if state_path(dir).exists() {
            break;
        }
        if let Some(status) = child.try_wait().context("waiting for the network server")? {
            let log = std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default();
            bail!("the network server exited ({status}):\n{log}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("the network was not ready within 180 s (see {})", dir.join("serve.log").display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    status(dir, false)
}

fn status(dir: &Path, as_json: bool) -> anyhow::Result<()> {
    let mut state = read_state(dir)?;
    let pid = state["pid"].as_u64().unwrap_or(0);
    let running = alive(pid);
    let height = if running { block_height(&state).ok() } else { None };
    state["running"] = json!(running);
    state["block_height"] = json!(height);
    if let Some(b) = state["bitcoind"].as_object_mut() {
        b.remove("rpc_password");
    }
    // The lndconnect URIs carry macaroons: they stay in state.json (0600), never on the terminal.
    for n in state["lnd"].as_array_mut().into_iter().flatten() {
        if let Some(n) = n.as_object_mut() {
            n.remove("lndconnect_pay");
            n.remove("lndconnect_invoice");
        }
    }
    if as_json {
        println!("{}", serde_json::to_string_pretty(&state).map_err(|e| anyhow!(e))?);
        return Ok(());
    }
    println!("regtest network in {}: {}", dir.display(), if running { "running" } else { "NOT running" });
    println!("  server pid {pid}, bitcoind pid {}", state["bitcoind"]["pid"]);
    println!(
        "  bitcoind rpc 127.0.0.1:{}, block height {}",
        state["bitcoind"]["rpc_port"],
        height.map_or("-".into(), |h| h.to_string())
    );
    for node in state["nodes"].as_array().into_iter().flatten() {
        println!(
            "  {:<6} {} at {}",
            node["name"].as_str().unwrap_or("?"),
            node["node_id"].as_str().unwrap_or("?"),
            node["listen"].as_str().unwrap_or("?")
        );
    }
    for ch in state["channels"].as_array().into_iter().flatten() {
        println!(
            "  channel {} -> {}: {} sat",
            ch["from"].as_str().unwrap_or("?"),
            ch["to"].as_str().unwrap_or("?"),
            ch["sats"]
        );
    }
    if let Some(api) = state["sample_api"].as_str() {
        println!("  sample API {api} (GET /weather/today, /weather/premium)");
    }
    for node in state["lnd"].as_array().into_iter().flatten() {
        let s = |k: &str| node[k].as_str().unwrap_or("?").to_owned();
        println!("  LND {:<8} {} at {}, gRPC {}", s("name"), s("pubkey"), s("listen"), s("rpc_address"));
        println!("    tls.cert          {}", s("tls_cert"));
        println!("    invoice.macaroon  {}", s("invoice_macaroon"));
        println!("    pay.macaroon      {}  (pay-only: info:read offchain:read offchain:write)", s("pay_macaroon"));
        println!("    admin.macaroon    {}", s("admin_macaroon"));
        println!("    pay.lndconnect    {}  (for --lndconnect-file)", s("lndconnect_pay_file"));
    }
    let d = dir_flag(dir);
    if lnd_node(&state, "operator").is_some() && lnd_node(&state, "payer").is_some() {
        println!("\n  to use it, in two terminals:");
        println!("    l402 regtest env operator{d} > l402.toml && l402 proxy --config l402.toml");
        println!("    eval \"$(l402 regtest env payer{d})\" && l402 fetch --allow-http {}", env::SAMPLE_URL);
        println!(
            "  and to pay any regtest invoice from the payer (prints the preimage): l402 regtest pay payer{d} INVOICE"
        );
    } else {
        println!(
            "\n  alice and bob live inside the network's own process: no other program can use them. For nodes\n  \
             that l402 proxy and l402 fetch can use: l402 regtest down{d}, then l402 regtest up --lnd{d}"
        );
    }
    Ok(())
}

fn lnd_node<'a>(state: &'a Value, name: &str) -> Option<&'a Value> {
    state["lnd"].as_array()?.iter().find(|n| n["name"] == name)
}

/// The state of the network running in `dir`, or an error saying that none is.
fn running_state(dir: &Path) -> anyhow::Result<Value> {
    let state = if state_path(dir).exists() { Some(read_state(dir)?) } else { None };
    match state {
        Some(state) if state["pid"].as_u64().is_some_and(alive) => Ok(state),
        _ => bail!("no network running in {} (start one with `l402 regtest up --lnd{}`)", dir.display(), dir_flag(dir)),
    }
}

/// The LND node `name` of the network in `dir`, or an error that names the nodes it has and says which of them
/// other programs can use.
fn lnd_node_named<'a>(state: &'a Value, dir: &Path, name: &str) -> anyhow::Result<&'a Value> {
    if let Some(node) = lnd_node(state, name) {
        return Ok(node);
    }
    let names = |key: &str| -> Vec<&str> {
        state[key].as_array().into_iter().flatten().filter_map(|n| n["name"].as_str()).collect()
    };
    let (lnd, ldk) = (names("lnd"), names("nodes"));
    let usable = if lnd.is_empty() {
        format!("it has no LND node: for payer and operator, start it with `l402 regtest up --lnd{}`", dir_flag(dir))
    } else {
        format!("its LND nodes are {}", lnd.join(", "))
    };
    let shown: String = name.chars().take(40).collect();
    if ldk.contains(&name) {
        bail!("{shown} is an LDK node inside the network's own process: no other program can use it; {usable}");
    }
    bail!(
        "no node {shown:?} in the network in {}: {usable}{}",
        dir.display(),
        if ldk.is_empty() {
            String::new()
        } else {
            format!(" (and LDK nodes {}, held inside its process)", ldk.join(", "))
        }
    )
}

/// ` --dir DIR` for a command shown to the user, when `dir` is not the default one.
fn dir_flag(dir: &Path) -> String {
    if dir == default_dir() { String::new() } else { format!(" --dir {}", shell_quote(&dir.display().to_string())) }
}

/// `s` as one shell word (single-quoted where it needs to be).
fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-:@%+=,".contains(&b)) {
        return s.to_owned();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

fn block_height(state: &Value) -> anyhow::Result<u64> {
    let port = state["bitcoind"]["rpc_port"].as_u64().ok_or_else(|| anyhow!("no rpc port"))?;
    let user = state["bitcoind"]["rpc_user"].as_str().unwrap_or_default();
    let pass = state["bitcoind"]["rpc_password"].as_str().unwrap_or_default();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let body = json!({ "jsonrpc": "1.0", "id": "l402", "method": "getblockcount", "params": [] });
        let v: Value = reqwest::Client::new()
            .post(format!("http://127.0.0.1:{port}/"))
            .basic_auth(user, Some(pass))
            .json(&body)
            .timeout(Duration::from_secs(5))
            .send()
            .await?
            .json()
            .await?;
        v["result"].as_u64().ok_or_else(|| anyhow!("getblockcount: {v}"))
    })
}

fn down(dir: &Path) -> anyhow::Result<()> {
    let state = read_state(dir)?;
    let pid = state["pid"].as_u64().ok_or_else(|| anyhow!("state.json has no pid"))?;
    let bitcoind = state["bitcoind"]["pid"].as_u64();
    let lnds: Vec<u64> = state["lnd"].as_array().into_iter().flatten().filter_map(|n| n["pid"].as_u64()).collect();
    if alive(pid) {
        let ok = Command::new("kill").args(["-TERM", &pid.to_string()]).status().context("running kill")?;
        if !ok.success() {
            bail!("could not signal the network server (pid {pid})");
        }
        let deadline = Instant::now() + Duration::from_secs(90);
        while alive(pid) || bitcoind.is_some_and(alive) || lnds.iter().any(|p| alive(*p)) {
            if Instant::now() > deadline {
                bail!("the network server (pid {pid}) did not stop within 90 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let _ = std::fs::remove_file(state_path(dir));
    println!("regtest network in {} stopped", dir.display());
    Ok(())
}

/// Writes a file readable by its owner only (created `0600`).
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes).with_context(|| format!("writing {}", path.display()))
}

fn serve(dir: &Path, with_lnd: bool) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build()?;
    rt.block_on(async {
        let net = Regtest::start_in(dir).await?;
        let alice = net.ldk_node("alice").await?;
        let bob = net.ldk_node("bob").await?;
        net.fund(&alice, 2_000_000).await?;
        net.open_channel(&alice, &bob, 1_000_000, 0).await?;
        let (user, pass) = net.bitcoind().rpc_auth();
        let nodes: Vec<Value> = [("alice", &alice), ("bob", &bob)]
            .iter()
            .map(|(name, n)| {
                json!({
                    "name": name,
                    "node_id": n.node_id(),
                    "listen": n.config().listen.map(|a| a.to_string()),
                    "data_dir": n.config().data_dir,
                })
            })
            .collect();
        let sample_api = crate::sample_api::start().await?;
        let mut lnd = Vec::new();
        let mut channels = vec![json!({ "from": "alice", "to": "bob", "sats": 1_000_000 })];
        if with_lnd {
            let payer = net.lnd_node("payer").await?;
            let operator = net.lnd_node("operator").await?;
            net.fund_lnd(&payer, 2_000_000).await?;
            net.open_channel_lnd_to_lnd(&payer, &operator, 1_000_000, 0, None, &[]).await?;
            channels.push(json!({ "from": "payer", "to": "operator", "sats": 1_000_000 }));
            for n in [&payer, &operator] {
                use l402_regtest::LndMacaroon::{Admin, Invoice, Pay};
                // The URI carries the macaroon: a 0600 file for --lndconnect-file, never an argument.
                let pay_file = dir.join(format!("{}-pay.lndconnect", n.name()));
                write_private(&pay_file, n.lndconnect_uri(Pay)?.as_bytes())?;
                lnd.push(json!({
                    "name": n.name(),
                    "pubkey": n.pubkey(),
                    "pid": n.pid(),
                    "listen": n.peer_address().to_string(),
                    "rpc_address": n.rpc_address(),
                    "tls_cert": n.tls_cert_path(),
                    "admin_macaroon": n.macaroon_path(Admin),
                    "invoice_macaroon": n.macaroon_path(Invoice),
                    "pay_macaroon": n.macaroon_path(Pay),
                    "lndconnect_pay": n.lndconnect_uri(Pay)?,
                    "lndconnect_pay_file": pay_file,
                    "lndconnect_invoice": n.lndconnect_uri(Invoice)?,
                }));
            }
        }
        let state = json!({
            "pid": std::process::id(),
            "bitcoind": {
                "pid": net.bitcoind().pid(),
                "rpc_port": net.bitcoind().rpc_port(),
                "rpc_user": user,
                "rpc_password": pass,
                "datadir": net.bitcoind().datadir(),
            },
            "nodes": nodes,
            "lnd": lnd,
            "channels": channels,
            "sample_api": sample_api,
        });
        let tmp = dir.join("state.json.tmp");
        // It holds bitcoind's RPC password: readable by its owner only.
        write_private(&tmp, &serde_json::to_vec_pretty(&state)?)?;
        std::fs::rename(&tmp, state_path(dir))?;
        eprintln!("l402 regtest: ready");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        eprintln!("l402 regtest: shutting down");
        net.shutdown().await;
        let _ = std::fs::remove_file(state_path(dir));
        anyhow::Ok(())
    })
}

//! Real LND nodes on the network's bitcoind: started, synced, funded, with their TLS certificate,
//! macaroons (admin, invoice, and a baked pay-only one) and an `lndconnect://` URI; stopped on drop.
//!
//! LND is the real program, built from source by `scripts/install-peers.sh` (v0.21.2-beta with the
//! `signrpc walletrpc chainrpc invoicesrpc peersrpc` tags). It is found through `L402_LND` / `L402_LNCLI`,
//! then the project's `.tools/peers/bin`, then `PATH`; if it is not there, starting fails and says how to
//! build it. The harness drives LND with `lncli` (JSON output), so that what is under test, `l402-lnd`, is
//! never also the tool that sets the scene.
//!
//! What LND needs on regtest, as measured here: `--bitcoind.rpcpolling` (bitcoind runs without ZMQ),
//! `--noseedbackup` (the wallet is created and unlocked at start), `--bitcoin.defaultchanconfs=1`; the
//! macaroon files appear only once the wallet is unlocked, so readiness is a successful `getinfo`, then
//! `synced_to_chain` at bitcoind's height.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use l402_lightning::Node as _;
use l402_lnd::{LndConfig, LndNode};
use serde_json::Value;

use crate::bitcoind::{Bitcoind, spawn_watchdog};
use crate::error::RegtestError;
use crate::free_port;

const WAIT: Duration = Duration::from_secs(90);

/// Which of a node's macaroons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LndMacaroon {
    /// `admin.macaroon`: every permission.
    Admin,
    /// `invoice.macaroon`: invoices (read and write), addresses, on-chain reads; cannot pay.
    Invoice,
    /// `readonly.macaroon`.
    Readonly,
    /// Baked here with `lncli bakemacaroon info:read offchain:read offchain:write`: can pay and follow
    /// payments, cannot create or read invoices.
    Pay,
}

impl LndMacaroon {
    fn file(self) -> &'static str {
        match self {
            Self::Admin => "admin.macaroon",
            Self::Invoice => "invoice.macaroon",
            Self::Readonly => "readonly.macaroon",
            Self::Pay => "pay.macaroon",
        }
    }
}

/// Finds an LND program: `$env`, the project's `.tools/peers/bin/<name>`, then `PATH`.
pub fn find_peer(name: &str, env: &str) -> Result<PathBuf, RegtestError> {
    let missing = |why: String| RegtestError::PeerNotFound { name: name.to_owned(), why };
    if let Some(p) = std::env::var_os(env) {
        let p = PathBuf::from(p);
        return if p.is_file() { Ok(p) } else { Err(missing(format!("{env}={} is not a file", p.display()))) };
    }
    let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/peers/bin").join(name);
    if project.is_file() {
        return Ok(project);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join(name).is_file() {
                return Ok(dir.join(name));
            }
        }
    }
    Err(missing(format!("not in {env}, .tools/peers/bin or PATH")))
}

/// A running LND node of the network. Stopped (and its watchdog with it) when dropped.
pub struct Lnd {
    name: String,
    dir: PathBuf,
    lnd: PathBuf,
    lncli: PathBuf,
    args: Vec<String>,
    rpc_port: u16,
    peer_port: u16,
    pubkey: String,
    process: Mutex<(Option<Child>, Option<Child>)>,
    admin: Mutex<Option<LndNode>>,
}

impl std::fmt::Debug for Lnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lnd").field("name", &self.name).field("rpc_port", &self.rpc_port).finish_non_exhaustive()
    }
}

impl Lnd {
    /// Starts LND named `name` with its data in `dir`, following `bitcoind`, and waits until it is synced.
    pub(crate) async fn start(name: &str, dir: &Path, bitcoind: &Bitcoind) -> Result<Self, RegtestError> {
        let lnd = find_peer("lnd", "L402_LND")?;
        let lncli = find_peer("lncli", "L402_LNCLI")?;
        std::fs::create_dir_all(dir).map_err(|e| RegtestError::Io("creating the LND directory".into(), e))?;
        let (rpc_port, peer_port) = (free_port()?, free_port()?);
        let (user, password) = bitcoind.rpc_auth();
        let args = vec![
            format!("--lnddir={}", dir.display()),
            "--bitcoin.regtest".into(),
            "--bitcoin.node=bitcoind".into(),
            format!("--bitcoind.rpchost=127.0.0.1:{}", bitcoind.rpc_port()),
            format!("--bitcoind.rpcuser={user}"),
            format!("--bitcoind.rpcpass={password}"),
            "--bitcoind.rpcpolling".into(),
            "--bitcoind.blockpollinginterval=100ms".into(),
            "--bitcoind.txpollinginterval=100ms".into(),
            "--noseedbackup".into(),
            "--nobootstrap".into(),
            "--norest".into(),
            format!("--rpclisten=127.0.0.1:{rpc_port}"),
            format!("--listen=127.0.0.1:{peer_port}"),
            "--bitcoin.defaultchanconfs=1".into(),
            "--trickledelay=50".into(),
            "--gossip.sub-batch-delay=5ms".into(),
            "--db.batch-commit-interval=10ms".into(),
            "--maxpendingchannels=10".into(),
            "--accept-keysend".into(),
            format!("--alias={name}"),
            "--debuglevel=info".into(),
        ];
        let mut me = Self {
            name: name.to_owned(),
            dir: dir.to_owned(),
            lnd,
            lncli,
            args,
            rpc_port,
            peer_port,
            pubkey: String::new(),
            process: Mutex::new((None, None)),
            admin: Mutex::new(None),
        };
        me.spawn()?;
        me.wait_ready(bitcoind.block_count().await?).await?;
        me.pubkey = me.lncli(&["getinfo"]).await?["identity_pubkey"].as_str().unwrap_or_default().to_owned();
        let pay = me.macaroon_path(LndMacaroon::Pay);
        me.lncli(&[
            "bakemacaroon",
            "--save_to",
            &pay.display().to_string(),
            "info:read",
            "offchain:read",
            "offchain:write",
        ])
        .await?;
        restrict(&pay)?;
        Ok(me)
    }

    fn spawn(&self) -> Result<(), RegtestError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("stdout.log"))
            .map_err(|e| RegtestError::Io("creating the LND log".into(), e))?;
        let child = Command::new(&self.lnd)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| RegtestError::Io(format!("starting {}", self.lnd.display()), e))?;
        let watchdog = spawn_watchdog(child.id());
        if let Ok(mut p) = self.process.lock() {
            *p = (Some(child), watchdog);
        }
        if let Ok(mut admin) = self.admin.lock() {
            *admin = None;
        }
        Ok(())
    }

    /// Waits until `getinfo` answers and the node is synced to `height` or beyond.
    async fn wait_ready(&self, height: u32) -> Result<(), RegtestError> {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut last = String::new();
        loop {
            if let Some(status) = self.exited() {
                let log = std::fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(8).collect();
                return Err(RegtestError::Peer {
                    name: self.name.clone(),
                    message: format!("lnd exited with {status}: {}", tail.join(" | ")),
                });
            }
            if self.macaroon_path(LndMacaroon::Admin).is_file() {
                match self.lncli(&["getinfo"]).await {
                    Ok(info) => {
                        let synced = info["synced_to_chain"].as_bool() == Some(true);
                        if synced && info["block_height"].as_u64().unwrap_or(0) >= u64::from(height) {
                            return Ok(());
                        }
                        last = format!("synced_to_chain {synced}, height {}", info["block_height"]);
                    }
                    Err(e) => last = e.to_string(),
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RegtestError::Timeout(format!("LND {} to be ready ({last})", self.name)));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn exited(&self) -> Option<std::process::ExitStatus> {
        let mut p = self.process.lock().ok()?;
        p.0.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// The node's name (also its alias).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The node's public key, hex.
    pub fn pubkey(&self) -> &str {
        &self.pubkey
    }

    /// `127.0.0.1:<port>` of its gRPC interface.
    pub fn rpc_address(&self) -> String {
        format!("127.0.0.1:{}", self.rpc_port)
    }

    /// Its Lightning peer address.
    pub fn peer_address(&self) -> SocketAddr {
        ([127, 0, 0, 1], self.peer_port).into()
    }

    /// The `--lnddir`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The process id of LND, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.process.lock().ok().and_then(|p| p.0.as_ref().map(Child::id))
    }

    /// LND's own `tls.cert` (self-signed, IsCA).
    pub fn tls_cert_path(&self) -> PathBuf {
        self.dir.join("tls.cert")
    }

    /// The path of one of its macaroons.
    pub fn macaroon_path(&self, which: LndMacaroon) -> PathBuf {
        self.dir.join("data/chain/bitcoin/regtest").join(which.file())
    }

    /// The adapter's configuration for this node with `which` macaroon.
    pub fn config(&self, which: LndMacaroon) -> Result<LndConfig, RegtestError> {
        LndConfig::new(
            &self.rpc_address(),
            &self.tls_cert_path().display().to_string(),
            &self.macaroon_path(which).display().to_string(),
        )
        .map_err(RegtestError::Lightning)
    }

    /// An `l402-lnd` client of this node with `which` macaroon, connected (and checked with `GetInfo`,
    /// which needs `info:read`: every macaroon but the invoice one has it, so that one connects lazily).
    pub async fn connect(&self, which: LndMacaroon) -> Result<LndNode, RegtestError> {
        let config = self.config(which)?;
        if which == LndMacaroon::Invoice {
            return LndNode::connect_lazy(config).map_err(RegtestError::Lightning);
        }
        LndNode::connect(config).await.map_err(RegtestError::Lightning)
    }

    /// `lndconnect://127.0.0.1:<port>?cert=<base64url DER>&macaroon=<base64url>` with `which` macaroon.
    pub fn lndconnect_uri(&self, which: LndMacaroon) -> Result<String, RegtestError> {
        let config = self.config(which)?;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        Ok(format!(
            "lndconnect://{}?cert={}&macaroon={}",
            self.rpc_address(),
            b64.encode(&config.tls_cert_der),
            b64.encode(&config.macaroon)
        ))
    }

    /// Runs `lncli <args>` against this node with the admin macaroon and returns its JSON answer (a string
    /// for the few commands that answer in words).
    pub async fn lncli(&self, args: &[&str]) -> Result<Value, RegtestError> {
        let out = tokio::process::Command::new(&self.lncli)
            .arg(format!("--lnddir={}", self.dir.display()))
            .arg(format!("--rpcserver={}", self.rpc_address()))
            .arg("--network=regtest")
            .arg(format!("--macaroonpath={}", self.macaroon_path(LndMacaroon::Admin).display()))
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| RegtestError::Io(format!("running {}", self.lncli.display()), e))?;
        let command = args.first().copied().unwrap_or_default();
        if !out.status.success() {
            let text = String::from_utf8_lossy(if out.stderr.is_empty() { &out.stdout } else { &out.stderr });
            return Err(RegtestError::Peer {
                name: self.name.clone(),
                message: format!("lncli {command}: {}", text.trim()),
            });
        }
        if out.stdout.iter().all(u8::is_ascii_whitespace) {
            return Ok(Value::Null);
        }
        // A few commands (bakemacaroon, stop) answer in words, not JSON.
        Ok(serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&out.stdout).trim().to_owned())))
    }

    /// The block height LND has processed (through a kept admin connection: cheaper than `lncli`).
    pub async fn block_height(&self) -> Result<u32, RegtestError> {
        let admin = {
            let mut slot = self.admin.lock().map_err(|_| RegtestError::Timeout("a poisoned lock".into()))?;
            match slot.as_ref() {
                Some(node) => node.clone(),
                None => {
                    let node = LndNode::connect_lazy(self.config(LndMacaroon::Admin)?)?;
                    *slot = Some(node.clone());
                    node
                }
            }
        };
        Ok(admin.info().await?.block_height)
    }

    /// Waits until LND has processed block `height`.
    pub async fn wait_height(&self, height: u32) -> Result<(), RegtestError> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if matches!(self.block_height().await, Ok(h) if h >= height) {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RegtestError::Timeout(format!("LND {} to reach block {height}", self.name)));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The on-chain balance LND counts as confirmed, sat.
    pub async fn confirmed_balance(&self) -> Result<u64, RegtestError> {
        let v = self.lncli(&["walletbalance"]).await?;
        Ok(v["confirmed_balance"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0))
    }

    /// What LND can send over its channels right now, msat (`channelbalance`'s local balance).
    pub async fn outbound_msat(&self) -> Result<u64, RegtestError> {
        let v = self.lncli(&["channelbalance"]).await?;
        Ok(v["local_balance"]["msat"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0))
    }

    /// LND's own record of its payments (`listpayments --include_incomplete`).
    pub async fn payments(&self) -> Result<Vec<Value>, RegtestError> {
        let v = self.lncli(&["listpayments", "--include_incomplete", "--max_payments=10000"]).await?;
        Ok(v["payments"].as_array().cloned().unwrap_or_default())
    }

    /// Stops LND (`lncli stop`, then a kill if it lingers) and starts it again on the same data, waiting until
    /// it answers and is synced to `height`. Clients keep their address, certificate and macaroons.
    pub async fn restart(&self, height: u32) -> Result<(), RegtestError> {
        self.stop().await;
        self.spawn()?;
        self.wait_ready(height).await
    }

    /// Stops LND gracefully, or kills it after 20 s.
    pub async fn stop(&self) {
        let _ = self.lncli(&["stop"]).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.exited().is_none() && self.pid().is_some() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.kill();
    }

    /// Kills LND at once (SIGKILL), and its watchdog.
    pub fn kill(&self) {
        if let Ok(mut p) = self.process.lock() {
            if let Some(mut child) = p.0.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
            if let Some(mut w) = p.1.take() {
                let _ = w.kill();
                let _ = w.wait();
            }
        }
    }
}

impl Drop for Lnd {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Makes a secret file readable by its owner only.
fn restrict(path: &Path) -> Result<(), RegtestError> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| RegtestError::Io(format!("restricting {}", path.display()), e))
}

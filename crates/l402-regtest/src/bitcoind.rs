//! A regtest bitcoind child process and a small JSON-RPC client for it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::error::RegtestError;
use crate::free_port;

/// The wallet bitcoind mines into and pays from.
const MINER_WALLET: &str = "miner";

/// Finds a bitcoind: `L402_BITCOIND`, the project's `.tools/bitcoind/bin/bitcoind`, then `PATH`.
pub fn find_bitcoind() -> Result<PathBuf, RegtestError> {
    if let Some(p) = std::env::var_os("L402_BITCOIND") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(RegtestError::BitcoindNotFound(format!("L402_BITCOIND={} is not a file", p.display())))
        };
    }
    let project = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools/bitcoind/bin/bitcoind");
    if project.is_file() {
        return Ok(project);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("bitcoind");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    Err(RegtestError::BitcoindNotFound("not in L402_BITCOIND, .tools/bitcoind or PATH".into()))
}

/// A running regtest bitcoind. Killed when dropped; a watchdog also kills it if this process dies first.
pub struct Bitcoind {
    child: Option<Child>,
    watchdog: Option<Child>,
    rpc_port: u16,
    user: String,
    password: String,
    datadir: PathBuf,
    http: reqwest::Client,
    miner_address: String,
}

impl std::fmt::Debug for Bitcoind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bitcoind").field("rpc_port", &self.rpc_port).field("datadir", &self.datadir).finish()
    }
}

impl Bitcoind {
    /// Starts bitcoind with its data in `datadir`, RPC on a free loopback port, no P2P listener; creates the
    /// miner wallet and mines 101 blocks so its coinbase is spendable.
    pub async fn start(datadir: &Path) -> Result<Self, RegtestError> {
        let exe = find_bitcoind()?;
        std::fs::create_dir_all(datadir).map_err(|e| RegtestError::Io("creating bitcoind datadir".into(), e))?;
        let rpc_port = free_port()?;
        let user = "l402".to_owned();
        let password = random_hex(16);
        let log = std::fs::File::create(datadir.join("stdout.log"))
            .map_err(|e| RegtestError::Io("creating bitcoind log".into(), e))?;
        let child = Command::new(&exe)
            .arg("-regtest")
            .arg(format!("-datadir={}", datadir.display()))
            .arg(format!("-rpcport={rpc_port}"))
            .args(["-rpcbind=127.0.0.1", "-rpcallowip=127.0.0.1", "-listen=0", "-server=1", "-daemon=0"])
            .args(["-fallbackfee=0.0002", "-txindex=0", "-dbcache=16", "-printtoconsole=0", "-rpcworkqueue=64"])
            .args(["-disablewallet=0", "-corepolicy=1"])
            .arg(format!("-rpcuser={user}"))
            .arg(format!("-rpcpassword={password}"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| RegtestError::Io(format!("starting {}", exe.display()), e))?;
        let watchdog = spawn_watchdog(child.id());
        let mut me = Self {
            child: Some(child),
            watchdog,
            rpc_port,
            user,
            password,
            datadir: datadir.to_owned(),
            http: reqwest::Client::new(),
            miner_address: String::new(),
        };
        me.wait_ready().await?;
        me.rpc("createwallet", json!([MINER_WALLET])).await?;
        me.miner_address = me.wallet_rpc("getnewaddress", json!([])).await?.as_str().unwrap_or_default().to_owned();
        me.mine(101).await?;
        Ok(me)
    }

    async fn wait_ready(&mut self) -> Result<(), RegtestError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    let log = std::fs::read_to_string(self.datadir.join("regtest/debug.log")).unwrap_or_default();
                    let tail: Vec<&str> = log.lines().rev().take(5).collect();
                    return Err(RegtestError::Rpc {
                        method: "start".into(),
                        message: format!("bitcoind exited with {status}: {}", tail.join(" | ")),
                    });
                }
            }
            match self.rpc("getblockchaininfo", json!([])).await {
                Ok(_) => return Ok(()),
                Err(_) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The RPC port on 127.0.0.1.
    pub fn rpc_port(&self) -> u16 {
        self.rpc_port
    }

    /// The RPC user and password.
    pub fn rpc_auth(&self) -> (&str, &str) {
        (&self.user, &self.password)
    }

    /// The process id of bitcoind (while running).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The data directory.
    pub fn datadir(&self) -> &Path {
        &self.datadir
    }

    /// The chain source an LDK node uses to follow this bitcoind.
    pub fn chain_source(&self) -> l402_ldk::ChainSource {
        l402_ldk::ChainSource::BitcoindRpc {
            host: "127.0.0.1".into(),
            port: self.rpc_port,
            user: self.user.clone(),
            password: self.password.clone(),
        }
    }

    /// A node-level RPC call.
    pub async fn rpc(&self, method: &str, params: Value) -> Result<Value, RegtestError> {
        self.call("/", method, params).await
    }

    /// An RPC call on the miner wallet.
    pub async fn wallet_rpc(&self, method: &str, params: Value) -> Result<Value, RegtestError> {
        self.call(&format!("/wallet/{MINER_WALLET}"), method, params).await
    }

    async fn call(&self, path: &str, method: &str, params: Value) -> Result<Value, RegtestError> {
        let url = format!("http://127.0.0.1:{}{path}", self.rpc_port);
        let body = json!({ "jsonrpc": "1.0", "id": "l402", "method": method, "params": params });
        let rpc_err = |message: String| RegtestError::Rpc { method: method.into(), message };
        let resp = self
            .http
            .post(url)
            .basic_auth(&self.user, Some(&self.password))
            .json(&body)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            .map_err(|e| rpc_err(e.to_string()))?;
        let value: Value = resp.json().await.map_err(|e| rpc_err(e.to_string()))?;
        match value.get("error") {
            Some(e) if !e.is_null() => Err(rpc_err(e.to_string())),
            _ => Ok(value.get("result").cloned().unwrap_or(Value::Null)),
        }
    }

    /// Mines `n` blocks to the miner wallet.
    pub async fn mine(&self, n: u32) -> Result<(), RegtestError> {
        self.rpc("generatetoaddress", json!([n, self.miner_address])).await.map(drop)
    }

    /// The current block count.
    pub async fn block_count(&self) -> Result<u32, RegtestError> {
        let v = self.rpc("getblockcount", json!([])).await?;
        v.as_u64()
            .map(|h| h as u32)
            .ok_or_else(|| RegtestError::Rpc { method: "getblockcount".into(), message: v.to_string() })
    }

    /// Sends `sats` from the miner wallet to `address`; returns the txid.
    pub async fn send_to_address(&self, address: &str, sats: u64) -> Result<String, RegtestError> {
        let btc = format!("{}.{:08}", sats / 100_000_000, sats % 100_000_000);
        let v = self.wallet_rpc("sendtoaddress", json!([address, btc])).await?;
        Ok(v.as_str().unwrap_or_default().to_owned())
    }

    /// Waits until `txid` is in the mempool.
    pub async fn wait_in_mempool(&self, txid: &str, timeout: Duration) -> Result<(), RegtestError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if self.rpc("getmempoolentry", json!([txid])).await.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RegtestError::Timeout(format!("transaction {txid} in the mempool")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops bitcoind (RPC `stop`, then kill if it lingers) and waits for it to exit.
    pub async fn stop(&mut self) {
        let _ = self.rpc("stop", json!([])).await;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        if let Some(child) = self.child.as_mut() {
            while std::time::Instant::now() < deadline {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        self.kill();
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = w.kill();
            let _ = w.wait();
        }
    }
}

impl Drop for Bitcoind {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A shell loop that kills `child` once this process is gone, so a test killed without unwinding leaves no
/// bitcoind behind.
pub(crate) fn spawn_watchdog(child: u32) -> Option<Child> {
    let parent = std::process::id();
    let script = format!(
        "while kill -0 {parent} 2>/dev/null && kill -0 {child} 2>/dev/null; do sleep 1; done; kill -9 {child} 2>/dev/null"
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()
}

pub(crate) fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    // Only a test password and seed names: a failure of the OS RNG falls back to the time.
    if getrandom::fill(&mut buf).is_err() {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        buf.iter_mut().enumerate().for_each(|(i, b)| *b = (t >> (i % 16 * 8)) as u8);
    }
    hex::encode(buf)
}

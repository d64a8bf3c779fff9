//! The client's options shared by `fetch`, `token`, `spend` and `mcp`: where the store is, and which wallet
//! pays (an embedded LDK node, or LND over gRPC).
//!
//! The options become an [`l402_wallet::WalletConfig`]; the wallet itself ([`LazyWallet`], shared with the
//! Python package) is started lazily, on the first call that needs it: a request served with a stored token
//! never starts a Lightning node. An embedded LDK node's directory is locked (`l402-wallet.lock`, an `flock`)
//! for the life of the process, because two processes must never run the same node; a second `l402` using the
//! same `--ldk-dir` waits for the first to finish.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use l402_client::Store;
use l402_ldk::ChainSource;
use l402_proto::lightning_invoice::Currency;
pub(crate) use l402_wallet::LazyWallet;
use l402_wallet::WalletConfig;

/// Where the client keeps its tokens, ledger and journal.
#[derive(Args, Debug, Clone)]
pub(crate) struct StoreArgs {
    /// The client's data directory (tokens, ledger, payment journal); default: $L402_DATA_DIR,
    /// $XDG_DATA_HOME/l402 or ~/.local/share/l402.
    #[arg(long, value_name = "DIR", global = true)]
    pub(crate) data_dir: Option<PathBuf>,
}

impl StoreArgs {
    pub(crate) fn dir(&self) -> anyhow::Result<PathBuf> {
        self.data_dir
            .clone()
            .or_else(l402_client::default_data_dir)
            .ok_or_else(|| anyhow!("no data directory: pass --data-dir or set L402_DATA_DIR"))
    }

    pub(crate) fn open(&self) -> anyhow::Result<Store> {
        let dir = self.dir()?;
        Store::open(&dir).with_context(|| format!("opening the store in {}", dir.display()))
    }
}

/// Which wallet pays.
#[derive(Args, Debug, Clone)]
pub(crate) struct WalletArgs {
    /// The embedded LDK node's directory (its seed, channels and payment records).
    #[arg(long, env = "L402_LDK_DIR", value_name = "DIR")]
    pub(crate) ldk_dir: Option<PathBuf>,
    /// The Bitcoin network of the wallet: bitcoin, testnet, signet or regtest.
    #[arg(long, env = "L402_NETWORK", default_value = "bitcoin")]
    pub(crate) network: String,
    /// LDK chain source: bitcoind RPC host.
    #[arg(long, env = "L402_BITCOIND_RPC_HOST", default_value = "127.0.0.1")]
    pub(crate) bitcoind_rpc_host: String,
    /// LDK chain source: bitcoind RPC port.
    #[arg(long, env = "L402_BITCOIND_RPC_PORT")]
    pub(crate) bitcoind_rpc_port: Option<u16>,
    /// LDK chain source: bitcoind RPC user.
    #[arg(long, env = "L402_BITCOIND_RPC_USER")]
    pub(crate) bitcoind_rpc_user: Option<String>,
    /// LDK chain source: bitcoind RPC password (a secret: prefer the environment variable, arguments show in
    /// `ps`).
    #[arg(long, env = "L402_BITCOIND_RPC_PASSWORD", hide_env_values = true)]
    pub(crate) bitcoind_rpc_password: Option<String>,
    /// LDK chain source: an Esplora server URL (instead of bitcoind RPC).
    #[arg(long, env = "L402_ESPLORA_URL", conflicts_with = "bitcoind_rpc_port")]
    pub(crate) esplora_url: Option<String>,
    /// LND: gRPC address `host:port` (instead of the LDK node).
    #[arg(long, env = "L402_LND_ADDRESS", conflicts_with_all = ["ldk_dir", "lndconnect", "lndconnect_file"], requires_all = ["lnd_tls_cert", "lnd_macaroon"])]
    pub(crate) lnd_address: Option<String>,
    /// LND: the node's tls.cert (path, PEM, or DER as hex/base64); pinned.
    #[arg(long, env = "L402_LND_TLS_CERT", value_name = "PATH|PEM")]
    pub(crate) lnd_tls_cert: Option<String>,
    /// LND: a macaroon with offchain:read/write: a file path, or hex/base64 (a secret: give a value in
    /// L402_LND_MACAROON or as a file, not as an argument: arguments show in `ps`).
    #[arg(long, env = "L402_LND_MACAROON", value_name = "PATH|HEX", hide_env_values = true)]
    pub(crate) lnd_macaroon: Option<String>,
    /// LND: an lndconnect:// URI (address, certificate and macaroon in one). It carries the macaroon: prefer
    /// --lndconnect-file or the environment variable (arguments show in `ps`).
    #[arg(long, env = "L402_LNDCONNECT", hide_env_values = true, conflicts_with_all = ["ldk_dir", "lndconnect_file"])]
    pub(crate) lndconnect: Option<String>,
    /// LND: a file holding an lndconnect:// URI (what `l402 regtest status` points to).
    #[arg(long, env = "L402_LNDCONNECT_FILE", value_name = "PATH", conflicts_with = "ldk_dir")]
    pub(crate) lndconnect_file: Option<PathBuf>,
}

/// The secret options, and whether a file path given to one is not a secret on the command line.
const SECRET_FLAGS: [(&str, &str, bool); 3] = [
    ("--lnd-macaroon", "L402_LND_MACAROON (or a file path)", true),
    ("--lndconnect", "L402_LNDCONNECT or --lndconnect-file", false),
    ("--bitcoind-rpc-password", "L402_BITCOIND_RPC_PASSWORD", false),
];

/// The secret options given as values on this process's command line (what `ps` shows to every user), with
/// where the value should come from instead. A macaroon given as an existing file's path is not a secret.
pub(crate) fn secrets_on_command_line(argv: &[String]) -> Vec<(&'static str, &'static str)> {
    let mut found = Vec::new();
    for (i, arg) in argv.iter().enumerate() {
        for (flag, instead, path_ok) in SECRET_FLAGS {
            let value = match arg.strip_prefix(flag) {
                Some("") => argv.get(i + 1).map(String::as_str),
                Some(v) if v.starts_with('=') => Some(&v[1..]),
                _ => continue,
            };
            if path_ok && value.is_some_and(|v| std::path::Path::new(v).is_file()) {
                continue;
            }
            if !found.iter().any(|(f, _)| *f == flag) {
                found.push((flag, instead));
            }
        }
    }
    found
}

impl WalletArgs {
    /// The network the wallet pays on, as invoices name it (`None`: asked of the node).
    pub(crate) fn currency(&self) -> anyhow::Result<Option<Currency>> {
        if self.uses_lnd() {
            return Ok(None); // asked of the node
        }
        Ok(Some(l402_wallet::currency(l402_wallet::network(&self.network)?)))
    }

    fn uses_lnd(&self) -> bool {
        self.lnd_address.is_some() || self.lndconnect.is_some() || self.lndconnect_file.is_some()
    }

    /// Checks the options now (so usage errors come before any request); the wallet itself starts later.
    pub(crate) fn wallet(&self) -> anyhow::Result<Arc<LazyWallet>> {
        let argv: Vec<String> = std::env::args_os().map(|a| a.to_string_lossy().into_owned()).collect();
        for (flag, instead) in secrets_on_command_line(&argv) {
            eprintln!(
                "l402: warning: {flag} was given a secret on the command line, which other users of this machine \
                 can read (ps); use {instead} instead"
            );
        }
        let config = if let Some(uri) = &self.lndconnect {
            WalletConfig::Lnd(l402_lnd::LndConfig::from_lndconnect(uri).context("--lndconnect")?)
        } else if let Some(path) = &self.lndconnect_file {
            WalletConfig::Lnd(l402_wallet::lnd_from_lndconnect_file(path).context("--lndconnect-file")?)
        } else if let Some(address) = &self.lnd_address {
            let (Some(cert), Some(mac)) = (&self.lnd_tls_cert, &self.lnd_macaroon) else {
                bail!("--lnd-address needs --lnd-tls-cert and --lnd-macaroon");
            };
            WalletConfig::Lnd(l402_lnd::LndConfig::new(address, cert, mac).context("LND options")?)
        } else if let Some(dir) = &self.ldk_dir {
            let chain = if let Some(url) = &self.esplora_url {
                ChainSource::Esplora(url.clone())
            } else {
                let (Some(port), Some(user), Some(password)) =
                    (self.bitcoind_rpc_port, &self.bitcoind_rpc_user, &self.bitcoind_rpc_password)
                else {
                    bail!(
                        "the LDK wallet needs a chain source: --bitcoind-rpc-port, --bitcoind-rpc-user and \
                         --bitcoind-rpc-password (or L402_BITCOIND_RPC_*), or --esplora-url"
                    );
                };
                ChainSource::BitcoindRpc {
                    host: self.bitcoind_rpc_host.clone(),
                    port,
                    user: user.clone(),
                    password: password.clone(),
                }
            };
            WalletConfig::Ldk(l402_wallet::ldk(l402_wallet::network(&self.network)?, dir.clone(), chain))
        } else {
            WalletConfig::None
        };
        Ok(Arc::new(LazyWallet::new(config)))
    }
}

/// Logs (warnings by default; `RUST_LOG` to see more) go to stderr. Never a secret: token ids and hashes only.
pub(crate) fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

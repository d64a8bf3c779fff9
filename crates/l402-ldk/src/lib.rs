//! An LDK node embedded in the process (`ldk-node`), behind the `l402-lightning` traits.
//!
//! [`LdkNode::start`] builds and starts a node from an [`LdkConfig`] (network, data directory, listening
//! address, chain source) on the caller's tokio runtime, which must be multi-threaded: ldk-node's blocking
//! calls use `block_in_place`. One task drains the node's event queue ([`events`]) and turns events into
//! notifications the trait methods wait on; the node's own payment store stays the source of truth (it is
//! updated before an event is queued), so a missed notification only costs a re-check.
//!
//! ```no_run
//! # async fn f() -> Result<(), l402_lightning::LightningError> {
//! use l402_ldk::{ChainSource, LdkConfig, LdkNode};
//! let node = LdkNode::start(LdkConfig {
//!     network: l402_ldk::Network::Regtest,
//!     data_dir: "/tmp/alice".into(),
//!     listen: Some("127.0.0.1:9735".parse().unwrap()),
//!     chain: ChainSource::BitcoindRpc { host: "127.0.0.1".into(), port: 18443, user: "u".into(), password: "p".into() },
//!     alias: None,
//! }).await?;
//! # Ok(()) }
//! ```

mod convert;
pub mod events;
mod issuer;
mod payer;

use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt as _, PermissionsExt as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use l402_lightning::{ChannelBalance, LightningError, LightningErrorKind, Node as NodeTrait, NodeInfo};
use l402_proto::Msat;
pub use ldk_node;
pub use ldk_node::bitcoin::Network;
use ldk_node::lightning::ln::msgs::SocketAddress;

use crate::convert::currency;
use crate::events::Notifier;

/// Where the node learns about the chain.
#[derive(Clone, Debug)]
pub enum ChainSource {
    /// A bitcoind's JSON-RPC interface.
    BitcoindRpc {
        /// Host (no scheme), e.g. `127.0.0.1`.
        host: String,
        /// RPC port.
        port: u16,
        /// RPC user.
        user: String,
        /// RPC password.
        password: String,
    },
    /// An Esplora HTTP server.
    Esplora(String),
    /// An Electrum server.
    Electrum(String),
}

/// How to build an [`LdkNode`].
#[derive(Clone, Debug)]
pub struct LdkConfig {
    /// The Bitcoin network.
    pub network: Network,
    /// Where the node keeps its keys, channel state and logs (created `0700` if missing).
    pub data_dir: PathBuf,
    /// The address to accept Lightning peers on, if any.
    pub listen: Option<SocketAddr>,
    /// The chain source.
    pub chain: ChainSource,
    /// A public alias (needs `listen`); `None` for a private node.
    pub alias: Option<String>,
}

/// A running embedded LDK node.
pub struct LdkNode {
    node: Arc<ldk_node::Node>,
    config: LdkConfig,
    notifier: Arc<Notifier>,
    pump: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// One `pay` per payment hash at a time in this process; the node's own store dedups across restarts.
    paying: Mutex<std::collections::HashMap<l402_proto::PaymentHash, Arc<tokio::sync::Mutex<()>>>>,
}

impl std::fmt::Debug for LdkNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LdkNode")
            .field("node_id", &self.node.node_id())
            .field("data_dir", &self.config.data_dir)
            .finish()
    }
}

/// Creates the data directory (and missing parents) `0700`: it holds the node's seed and channel state. One
/// that already exists readable by others is used, with a warning.
fn private_dir(dir: &std::path::Path) -> Result<(), LightningError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| err(LightningErrorKind::Config, "creating the data directory", e))?;
    if std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
        tracing::warn!(dir = %dir.display(), "the LDK data directory is readable by others: chmod 700 it");
    }
    Ok(())
}

fn err(kind: LightningErrorKind, what: &str, e: impl std::fmt::Display) -> LightningError {
    LightningError::new(kind, format!("{what}: {e}"))
}

impl LdkNode {
    /// Builds and starts the node. Anchor channels are off (no on-chain reserve is needed to open or accept a
    /// channel); the seed lives in `data_dir/seed` (created on first start).
    pub async fn start(config: LdkConfig) -> Result<Arc<Self>, LightningError> {
        private_dir(&config.data_dir)?;
        let cfg = ldk_node::config::Config {
            network: config.network,
            storage_dir_path: config.data_dir.to_string_lossy().into_owned(),
            anchor_channels_config: None,
            listening_addresses: config.listen.map(|addr| vec![SocketAddress::from(addr)]),
            ..Default::default()
        };
        let mut builder = ldk_node::Builder::from_config(cfg);
        let seed = config.data_dir.join("seed");
        builder.set_entropy_seed_path(seed.to_string_lossy().into_owned());
        builder.set_custom_logger(Arc::new(FileLog::new(config.data_dir.join("ldk_node.log"))));
        if let Some(alias) = &config.alias {
            builder.set_node_alias(alias.clone()).map_err(|e| err(LightningErrorKind::Config, "node alias", e))?;
        }
        match &config.chain {
            ChainSource::BitcoindRpc { host, port, user, password } => {
                builder.set_chain_source_bitcoind_rpc(host.clone(), *port, user.clone(), password.clone());
            }
            ChainSource::Esplora(url) => {
                builder.set_chain_source_esplora(url.clone(), None);
            }
            ChainSource::Electrum(url) => {
                builder.set_chain_source_electrum(url.clone(), None);
            }
        }
        builder.set_runtime(tokio::runtime::Handle::current());
        let node = tokio::task::spawn_blocking(move || -> Result<ldk_node::Node, LightningError> {
            let node = builder.build().map_err(|e| err(LightningErrorKind::Config, "building the LDK node", e))?;
            node.start().map_err(|e| err(LightningErrorKind::Unavailable, "starting the LDK node", e))?;
            Ok(node)
        })
        .await
        .map_err(|e| err(LightningErrorKind::Internal, "LDK start task", e))??;
        // ldk-node writes the seed with the process umask; inside a 0700 directory, but keep it 0600 too.
        if let Err(e) = std::fs::set_permissions(&seed, std::fs::Permissions::from_mode(0o600)) {
            tracing::warn!(path = %seed.display(), error = %e, "could not make the seed file private");
        }
        let node = Arc::new(node);
        let notifier = Arc::new(Notifier::default());
        let pump = tokio::spawn(events::pump(node.clone(), notifier.clone()));
        tracing::info!(node_id = %node.node_id(), dir = %config.data_dir.display(), "LDK node started");
        Ok(Arc::new(Self { node, config, notifier, pump: Mutex::new(Some(pump)), paying: Mutex::default() }))
    }

    /// The ldk-node handle, for what the traits do not cover (channels, on-chain wallet).
    pub fn inner(&self) -> &ldk_node::Node {
        &self.node
    }

    /// A shared handle on the ldk-node, for blocking calls moved onto `spawn_blocking`.
    pub fn handle(&self) -> Arc<ldk_node::Node> {
        self.node.clone()
    }

    /// The configuration the node was started with.
    pub fn config(&self) -> &LdkConfig {
        &self.config
    }

    /// The node id, hex.
    pub fn node_id(&self) -> String {
        self.node.node_id().to_string()
    }

    /// Channel lifecycle notifications (pending, ready, closed), for harnesses that open channels.
    pub fn channel_events(&self) -> tokio::sync::broadcast::Receiver<events::ChannelEvent> {
        self.notifier.channels.subscribe()
    }

    /// Stops the node (idempotent). Waits for ldk-node to persist and shut down.
    pub async fn stop(&self) {
        let pump = self.pump.lock().map(|mut p| p.take()).unwrap_or(None);
        if let Some(p) = pump {
            p.abort();
        }
        let node = self.node.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if node.status().is_running {
                let _ = node.stop();
            }
        })
        .await;
    }
}

/// ldk-node's log, at Info and above, appended to a file. Unlike ldk-node's own file logger it never panics:
/// a log line that cannot be written (the directory was removed under a node still shutting down) is dropped.
struct FileLog {
    file: Mutex<Option<std::fs::File>>,
}

impl FileLog {
    fn new(path: PathBuf) -> Self {
        let file = std::fs::OpenOptions::new().create(true).append(true).open(path).ok();
        Self { file: Mutex::new(file) }
    }
}

impl ldk_node::logger::LogWriter for FileLog {
    fn log(&self, record: ldk_node::logger::LogRecord<'_>) {
        use std::io::Write as _;
        if record.level < ldk_node::logger::LogLevel::Info {
            return;
        }
        if let Ok(mut guard) = self.file.lock() {
            if let Some(f) = guard.as_mut() {
                let _ = writeln!(f, "{:?} {}:{} {}", record.level, record.module_path, record.line, record.args);
            }
        }
    }
}

#[async_trait]
impl NodeTrait for LdkNode {
    async fn info(&self) -> Result<NodeInfo, LightningError> {
        let status = self.node.status();
        Ok(NodeInfo {
            pubkey: self.node.node_id().to_string(),
            network: currency(self.config.network),
            block_height: status.current_best_block.height,
            alias: self.config.alias.clone().unwrap_or_default(),
        })
    }

    async fn channel_balance(&self) -> Result<ChannelBalance, LightningError> {
        let usable: Vec<_> = self.node.list_channels().into_iter().filter(|c| c.is_usable).collect();
        Ok(ChannelBalance {
            inbound: Msat(usable.iter().map(|c| c.inbound_capacity_msat).sum()),
            outbound: Msat(usable.iter().map(|c| c.outbound_capacity_msat).sum()),
        })
    }
}

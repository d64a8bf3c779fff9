//! The wallet a paying client uses, built from settings: LND over gRPC (address, certificate and macaroon,
//! or an lndconnect URI) or an LDK node embedded in the process. The `l402` command (`fetch`, `spend`, `mcp`)
//! and the Python package build theirs here, so both start and lock a wallet the same way.
//!
//! The wallet is started lazily, on the first call that needs it ([`LazyWallet`]): a request served with a
//! stored token never starts a Lightning node. An embedded LDK node's directory is locked
//! (`l402-wallet.lock`, an `flock`) for as long as the wallet lives, because two processes must never run the
//! same node; a second process using the same directory waits for the first to finish (at most
//! [`WALLET_LOCK_TIMEOUT`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use l402_ldk::{ChainSource, LdkConfig, LdkNode, Network};
use l402_lightning::{
    InvoiceIssuer, InvoiceRequest, InvoiceState, IssuedInvoice, LightningError, LightningErrorKind, Node, NodeInfo,
    PayError, PayRequest, Payer, PaymentEvent, PaymentStatus, PaymentSuccess, SettlementStream,
};
use l402_lnd::LndConfig;
use l402_proto::PaymentHash;
use l402_proto::lightning_invoice::Currency;
use tokio::sync::OnceCell;

/// How long to wait for another process using the same LDK directory.
pub const WALLET_LOCK_TIMEOUT: Duration = Duration::from_secs(300);
/// How long a freshly started LDK node may take to reconnect to its channel peers.
pub const CHANNELS_READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Which wallet pays.
#[derive(Clone)]
pub enum WalletConfig {
    /// An LDK node embedded in this process.
    Ldk(LdkConfig),
    /// LND over gRPC.
    Lnd(LndConfig),
    /// None: a client that only uses stored tokens (a payment fails with a configuration error).
    None,
}

impl std::fmt::Debug for WalletConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No field of either configuration is printed: they hold an RPC password or a macaroon.
        f.write_str(match self {
            WalletConfig::Ldk(_) => "WalletConfig::Ldk",
            WalletConfig::Lnd(_) => "WalletConfig::Lnd",
            WalletConfig::None => "WalletConfig::None",
        })
    }
}

fn config_error(message: String) -> LightningError {
    LightningError::new(LightningErrorKind::Config, message)
}

/// A Bitcoin network by name: `bitcoin` (or `mainnet`), `testnet`, `signet` or `regtest`.
pub fn network(name: &str) -> Result<Network, LightningError> {
    Ok(match name {
        "bitcoin" | "mainnet" => Network::Bitcoin,
        "testnet" => Network::Testnet,
        "signet" => Network::Signet,
        "regtest" => Network::Regtest,
        other => return Err(config_error(format!("unknown network {other:?} (bitcoin, testnet, signet or regtest)"))),
    })
}

/// LND from a file holding an lndconnect URI (what `l402 regtest status` points to).
pub fn lnd_from_lndconnect_file(path: &Path) -> Result<LndConfig, LightningError> {
    let uri = std::fs::read_to_string(path).map_err(|e| config_error(format!("reading {}: {e}", path.display())))?;
    LndConfig::from_lndconnect(uri.trim())
}

/// An embedded LDK node in `data_dir` on `network`, following the chain through `chain`.
pub fn ldk(network: Network, data_dir: PathBuf, chain: ChainSource) -> LdkConfig {
    LdkConfig { network, data_dir, listen: None, chain, alias: None }
}

/// The network as invoices name it.
pub fn currency(network: Network) -> Currency {
    match network {
        Network::Bitcoin => Currency::Bitcoin,
        Network::Regtest => Currency::Regtest,
        Network::Signet => Currency::Signet,
        _ => Currency::BitcoinTestnet,
    }
}

impl WalletConfig {
    /// The network invoices must be for, when known without asking the node (an LDK node's configured network);
    /// `None` for LND, which is asked.
    pub fn currency(&self) -> Option<Currency> {
        match self {
            WalletConfig::Ldk(c) => Some(currency(c.network)),
            WalletConfig::Lnd(_) | WalletConfig::None => None,
        }
    }
}

enum Started {
    Ldk { node: Arc<LdkNode>, _lock: std::fs::File },
    Lnd(Arc<l402_lnd::LndNode>),
}

/// A wallet started on first use, behind the [`Payer`] trait.
pub struct LazyWallet {
    config: WalletConfig,
    started: OnceCell<Started>,
}

impl std::fmt::Debug for LazyWallet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LazyWallet")
            .field("config", &self.config)
            .field("started", &self.started.initialized())
            .finish()
    }
}

fn unavailable(message: String) -> LightningError {
    LightningError::new(LightningErrorKind::Unavailable, message)
}

impl LazyWallet {
    /// A wallet that starts when first needed.
    pub fn new(config: WalletConfig) -> Self {
        Self { config, started: OnceCell::new() }
    }

    /// Its configuration.
    pub fn config(&self) -> &WalletConfig {
        &self.config
    }

    async fn get(&self) -> Result<Arc<dyn Payer>, LightningError> {
        let started = self.started.get_or_try_init(|| self.start()).await?;
        Ok(match started {
            Started::Ldk { node, .. } => node.clone(),
            Started::Lnd(node) => node.clone(),
        })
    }

    /// The same node as an invoice issuer (a session's refund invoice, and the check that the refund came).
    async fn issuer(&self) -> Result<Arc<dyn InvoiceIssuer>, LightningError> {
        let started = self.started.get_or_try_init(|| self.start()).await?;
        Ok(match started {
            Started::Ldk { node, .. } => node.clone(),
            Started::Lnd(node) => node.clone(),
        })
    }

    async fn start(&self) -> Result<Started, LightningError> {
        match &self.config {
            WalletConfig::None => Err(LightningError::new(
                LightningErrorKind::Config,
                "no wallet configured: an LDK node (its directory and a chain source) or LND (an address, or an \
                 lndconnect URI)",
            )),
            WalletConfig::Lnd(config) => {
                let node = l402_lnd::LndNode::connect(config.clone()).await?;
                Ok(Started::Lnd(Arc::new(node)))
            }
            WalletConfig::Ldk(config) => {
                std::fs::create_dir_all(&config.data_dir)
                    .map_err(|e| unavailable(format!("creating {}: {e}", config.data_dir.display())))?;
                let lock = lock_dir(&config.data_dir).await?;
                let node = LdkNode::start(config.clone()).await?;
                wait_channels(&node).await;
                Ok(Started::Ldk { node, _lock: lock })
            }
        }
    }

    /// Stops an embedded node (persisting its state). Safe to call when nothing was started.
    pub async fn shutdown(&self) {
        if let Some(Started::Ldk { node, .. }) = self.started.get() {
            node.stop().await;
        }
    }
}

async fn lock_dir(dir: &Path) -> Result<std::fs::File, LightningError> {
    l402_client::lock_exclusive(&dir.join("l402-wallet.lock"), WALLET_LOCK_TIMEOUT)
        .await
        .map_err(|e| unavailable(format!("the LDK wallet in {} is in use: {e}", dir.display())))
}

/// Waits (bounded) until every channel of a freshly started node is usable again (its peer reconnected).
async fn wait_channels(node: &LdkNode) {
    let deadline = tokio::time::Instant::now() + CHANNELS_READY_TIMEOUT;
    loop {
        let channels = node.inner().list_channels();
        if channels.is_empty() || channels.iter().all(|c| c.is_usable) {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            tracing::warn!("not every channel is usable yet; paying anyway");
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[async_trait]
impl Node for LazyWallet {
    async fn info(&self) -> Result<NodeInfo, LightningError> {
        self.get().await?.info().await
    }
}

#[async_trait]
impl Payer for LazyWallet {
    async fn pay(
        &self,
        request: &PayRequest,
        progress: &(dyn Fn(PaymentEvent) + Send + Sync),
    ) -> Result<PaymentSuccess, PayError> {
        self.get().await?.pay(request, progress).await
    }

    async fn pay_amountless(
        &self,
        request: &PayRequest,
        progress: &(dyn Fn(PaymentEvent) + Send + Sync),
    ) -> Result<PaymentSuccess, PayError> {
        self.get().await?.pay_amountless(request, progress).await
    }

    async fn payment_status(&self, payment_hash: &PaymentHash) -> Result<PaymentStatus, LightningError> {
        self.get().await?.payment_status(payment_hash).await
    }

    async fn track_payment(
        &self,
        payment_hash: &PaymentHash,
        timeout: Duration,
        progress: &(dyn Fn(PaymentEvent) + Send + Sync),
    ) -> Result<PaymentSuccess, PayError> {
        self.get().await?.track_payment(payment_hash, timeout, progress).await
    }
}

/// The wallet's node issues invoices too: a `Payment` session's amountless refund invoice, and the lookup that
/// checks the refund arrived. With LND this needs a macaroon that may create and read invoices (the pay-only
/// macaroon may not: opening a session then fails before anything is paid).
#[async_trait]
impl InvoiceIssuer for LazyWallet {
    async fn create_invoice(&self, request: &InvoiceRequest) -> Result<IssuedInvoice, LightningError> {
        self.issuer().await?.create_invoice(request).await
    }

    async fn lookup_invoice(&self, payment_hash: &PaymentHash) -> Result<InvoiceState, LightningError> {
        self.issuer().await?.lookup_invoice(payment_hash).await
    }

    async fn wait_invoice(
        &self,
        payment_hash: &PaymentHash,
        timeout: Duration,
    ) -> Result<InvoiceState, LightningError> {
        self.issuer().await?.wait_invoice(payment_hash, timeout).await
    }

    async fn subscribe_settlements(&self) -> Result<SettlementStream, LightningError> {
        self.issuer().await?.subscribe_settlements().await
    }
}

//! The network: one bitcoind, any number of LDK nodes, channels between them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use l402_ldk::events::ChannelEvent;
use l402_ldk::ldk_node::config::ChannelConfig;
use l402_ldk::ldk_node::lightning::ln::msgs::SocketAddress;
use l402_ldk::ldk_node::lightning::routing::gossip::NodeId;
use l402_ldk::{LdkConfig, LdkNode, Network};

use crate::bitcoind::Bitcoind;
use crate::error::RegtestError;
use crate::free_port;

/// What a node charges to forward a payment over a channel: `base_msat` plus `ppm` millionths of the amount.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ForwardingFee {
    /// The fixed part, msat.
    pub base_msat: u32,
    /// The proportional part, millionths of the amount forwarded.
    pub ppm: u32,
}

impl ForwardingFee {
    /// The fee for forwarding `amount_msat`, rounded down as BOLT 7 says.
    pub fn for_amount(self, amount_msat: u64) -> u64 {
        u64::from(self.base_msat) + amount_msat * u64::from(self.ppm) / 1_000_000
    }
}

const CHANNEL_CONFIRMATIONS: u32 = 6;
const WAIT: Duration = Duration::from_secs(90);

/// A running regtest network. Drop it (or better, [`Regtest::shutdown`] it) to stop everything.
pub struct Regtest {
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    bitcoind: Bitcoind,
    nodes: Mutex<Vec<Arc<LdkNode>>>,
    stopped: bool,
}

impl std::fmt::Debug for Regtest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Regtest").field("root", &self.root).field("bitcoind", &self.bitcoind).finish()
    }
}

impl Regtest {
    /// Starts bitcoind in a fresh temporary directory (removed on drop).
    pub async fn start() -> Result<Self, RegtestError> {
        let dir = tempfile::Builder::new()
            .prefix("l402-regtest-")
            .tempdir()
            .map_err(|e| RegtestError::Io("creating a temporary directory".into(), e))?;
        let root = dir.path().to_owned();
        let mut net = Self::start_in(&root).await?;
        net.dir = Some(dir);
        Ok(net)
    }

    /// Starts bitcoind with its data under `root` (kept after shutdown).
    pub async fn start_in(root: &Path) -> Result<Self, RegtestError> {
        let bitcoind = Bitcoind::start(&root.join("bitcoind")).await?;
        tracing::info!(rpc_port = bitcoind.rpc_port(), root = %root.display(), "regtest bitcoind ready");
        Ok(Self { dir: None, root: root.to_owned(), bitcoind, nodes: Mutex::new(Vec::new()), stopped: false })
    }

    /// The bitcoind.
    pub fn bitcoind(&self) -> &Bitcoind {
        &self.bitcoind
    }

    /// Where the network keeps its data.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The nodes started so far.
    pub fn nodes(&self) -> Vec<Arc<LdkNode>> {
        self.nodes.lock().map(|n| n.clone()).unwrap_or_default()
    }

    /// Starts an LDK node named `name`, listening on a free loopback port, following this bitcoind.
    pub async fn ldk_node(&self, name: &str) -> Result<Arc<LdkNode>, RegtestError> {
        let listen: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let node = LdkNode::start(LdkConfig {
            network: Network::Regtest,
            data_dir: self.root.join("ldk").join(name),
            listen: Some(listen),
            chain: self.bitcoind.chain_source(),
            // An alias lets the node open and accept announced channels (ldk-node forwards only over those).
            alias: Some(name.to_owned()),
        })
        .await?;
        self.wait_synced(&node).await?;
        if let Ok(mut nodes) = self.nodes.lock() {
            nodes.push(node.clone());
        }
        Ok(node)
    }

    /// Mines `n` blocks and waits until every node has seen them.
    pub async fn mine(&self, n: u32) -> Result<(), RegtestError> {
        self.bitcoind.mine(n).await?;
        for node in self.nodes() {
            self.wait_synced(&node).await?;
        }
        Ok(())
    }

    /// Waits until `node` has caught up with bitcoind's tip.
    pub async fn wait_synced(&self, node: &LdkNode) -> Result<(), RegtestError> {
        let target = self.bitcoind.block_count().await?;
        let deadline = tokio::time::Instant::now() + WAIT;
        while node.inner().status().current_best_block.height < target {
            if tokio::time::Instant::now() >= deadline {
                return Err(RegtestError::Timeout(format!("node {} to reach block {target}", node.node_id())));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Sends `sats` on-chain to `node`, confirms it, and waits until the node can spend it.
    pub async fn fund(&self, node: &LdkNode, sats: u64) -> Result<(), RegtestError> {
        let before = node.inner().list_balances().spendable_onchain_balance_sats;
        let address = node
            .inner()
            .onchain_payment()
            .new_address()
            .map_err(|e| RegtestError::Ldk("new address", e.to_string()))?;
        let txid = self.bitcoind.send_to_address(&address.to_string(), sats).await?;
        self.bitcoind.wait_in_mempool(&txid, WAIT).await?;
        self.mine(1).await?;
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let inner = node.handle();
            let _ = tokio::task::spawn_blocking(move || inner.sync_wallets()).await;
            if node.inner().list_balances().spendable_onchain_balance_sats >= before + sats {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RegtestError::Timeout(format!("{sats} sats spendable on node {}", node.node_id())));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Opens a channel of `sats` from `from` to `to` (pushing `push_msat` to `to`), confirms it, and waits
    /// until both sides can use it. Returns ldk-node's user channel id on `from`.
    pub async fn open_channel(
        &self,
        from: &LdkNode,
        to: &LdkNode,
        sats: u64,
        push_msat: u64,
    ) -> Result<u128, RegtestError> {
        self.open(from, to, sats, push_msat, None).await
    }

    /// Opens an announced channel of `sats` from `from` to `to`, over which `from` charges `fee` to forward,
    /// confirms it, and waits until it is usable and every node in `observers` has it, with that fee, in its
    /// network graph (from the gossip `from` sends). Payers route over it from the graph: ldk-node forwards
    /// only over announced channels, so a route through a third node needs one. Returns the user channel id.
    pub async fn open_announced_channel(
        &self,
        from: &LdkNode,
        to: &LdkNode,
        sats: u64,
        fee: ForwardingFee,
        observers: &[&LdkNode],
    ) -> Result<u128, RegtestError> {
        let ucid = self.open(from, to, sats, 0, Some(fee)).await?;
        let scid = from
            .inner()
            .list_channels()
            .iter()
            .find(|c| c.user_channel_id.0 == ucid)
            .and_then(|c| c.short_channel_id)
            .ok_or(RegtestError::Ldk("announced channel", "no short channel id".into()))?;
        let source = NodeId::from_pubkey(&from.inner().node_id());
        let deadline = tokio::time::Instant::now() + WAIT;
        for observer in observers {
            loop {
                let known = observer.inner().network_graph().channel(scid).and_then(|c| {
                    let update = if c.node_one == source { c.one_to_two } else { c.two_to_one };
                    update.map(|u| (u.fees.base_msat, u.fees.proportional_millionths, u.enabled))
                });
                if known == Some((fee.base_msat, fee.ppm, true)) {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(RegtestError::Timeout(format!(
                        "node {} to learn channel {scid} from gossip (it has {known:?})",
                        observer.node_id()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(ucid)
    }

    async fn open(
        &self,
        from: &LdkNode,
        to: &LdkNode,
        sats: u64,
        push_msat: u64,
        announce: Option<ForwardingFee>,
    ) -> Result<u128, RegtestError> {
        let addr = to.config().listen.ok_or(RegtestError::Ldk("open channel", "peer does not listen".into()))?;
        let mut events = from.channel_events();
        let peer = to.inner().node_id();
        let opener = from.handle();
        let push = (push_msat > 0).then_some(push_msat);
        let ucid = tokio::task::spawn_blocking(move || {
            let addr = SocketAddress::from(addr);
            match announce {
                None => opener.open_channel(peer, addr, sats, push, None),
                Some(fee) => {
                    let config = ChannelConfig {
                        forwarding_fee_base_msat: fee.base_msat,
                        forwarding_fee_proportional_millionths: fee.ppm,
                        ..ChannelConfig::default()
                    };
                    opener.open_announced_channel(peer, addr, sats, push, Some(config))
                }
            }
        })
        .await
        .map_err(|e| RegtestError::Ldk("open channel", e.to_string()))?
        .map_err(|e| RegtestError::Ldk("open channel", e.to_string()))?
        .0;
        let txid = tokio::time::timeout(WAIT, async {
            loop {
                match events.recv().await {
                    Ok(ChannelEvent::Pending { user_channel_id, funding_txid }) if user_channel_id == ucid => {
                        return Ok(funding_txid);
                    }
                    Ok(_) => {}
                    Err(e) => return Err(RegtestError::Ldk("channel events", e.to_string())),
                }
            }
        })
        .await
        .map_err(|_| RegtestError::Timeout("the channel's funding transaction".into()))??;
        self.bitcoind.wait_in_mempool(&txid, WAIT).await?;
        self.mine(CHANNEL_CONFIRMATIONS).await?;
        let from_id = from.inner().node_id();
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let out = from.inner().list_channels().iter().any(|c| c.user_channel_id.0 == ucid && c.is_usable);
            let inn = to.inner().list_channels().iter().any(|c| c.counterparty_node_id == from_id && c.is_usable);
            if out && inn {
                return Ok(ucid);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RegtestError::Timeout(format!("channel {ucid} to be usable on both sides")));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Starts nodes `from` and `to`, funds `from` with `fund_sats` on-chain and opens a channel of
    /// `channel_sats` from it to `to`, usable on both sides.
    pub async fn channel_pair(
        &self,
        from: &str,
        to: &str,
        fund_sats: u64,
        channel_sats: u64,
    ) -> Result<(Arc<LdkNode>, Arc<LdkNode>), RegtestError> {
        let a = self.ldk_node(from).await?;
        let b = self.ldk_node(to).await?;
        self.fund(&a, fund_sats).await?;
        self.open_channel(&a, &b, channel_sats, 0).await?;
        Ok((a, b))
    }

    /// Stops every node, then bitcoind. The temporary directory (if any) is removed when `self` drops.
    pub async fn shutdown(mut self) {
        for node in self.nodes() {
            node.stop().await;
        }
        if let Ok(mut nodes) = self.nodes.lock() {
            nodes.clear();
        }
        self.bitcoind.stop().await;
        self.stopped = true;
    }
}

impl Drop for Regtest {
    /// bitcoind is killed (by its own drop). Without a [`Regtest::shutdown`], nodes may still be running on
    /// this directory, so a temporary one is kept rather than pulled from under them; its path is printed for
    /// whoever is looking into the failure.
    fn drop(&mut self) {
        if !self.stopped {
            if let Some(dir) = self.dir.take() {
                let kept = dir.keep();
                eprintln!("l402-regtest: network dropped without shutdown; data kept in {}", kept.display());
            }
        }
    }
}

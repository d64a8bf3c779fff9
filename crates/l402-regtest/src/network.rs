//! The network: one bitcoind, any number of LDK and LND nodes, channels between them in every direction.

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
use crate::lnd::Lnd;

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
    lnds: Mutex<Vec<Arc<Lnd>>>,
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
        Ok(Self {
            dir: None,
            root: root.to_owned(),
            bitcoind,
            nodes: Mutex::new(Vec::new()),
            lnds: Mutex::new(Vec::new()),
            stopped: false,
        })
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

    /// The LND nodes started so far.
    pub fn lnd_nodes(&self) -> Vec<Arc<Lnd>> {
        self.lnds.lock().map(|n| n.clone()).unwrap_or_default()
    }

    /// Starts a real LND node named `name` on this bitcoind (see [`crate::lnd`]) and waits until it is synced.
    pub async fn lnd_node(&self, name: &str) -> Result<Arc<Lnd>, RegtestError> {
        let lnd = Arc::new(Lnd::start(name, &self.root.join("lnd").join(name), &self.bitcoind).await?);
        if let Ok(mut lnds) = self.lnds.lock() {
            lnds.push(lnd.clone());
        }
        Ok(lnd)
    }

    /// Mines `n` blocks and waits until every node, LDK and LND, has seen them.
    pub async fn mine(&self, n: u32) -> Result<(), RegtestError> {
        self.bitcoind.mine(n).await?;
        for node in self.nodes() {
            self.wait_synced(&node).await?;
        }
        let height = self.bitcoind.block_count().await?;
        for lnd in self.lnd_nodes() {
            lnd.wait_height(height).await?;
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

    /// Sends `sats` on-chain to the LND node, confirms it, and waits until LND counts it as confirmed.
    pub async fn fund_lnd(&self, lnd: &Lnd, sats: u64) -> Result<(), RegtestError> {
        let before = lnd.confirmed_balance().await?;
        let address = lnd.lncli(&["newaddress", "p2wkh"]).await?["address"].as_str().unwrap_or_default().to_owned();
        let txid = self.bitcoind.send_to_address(&address, sats).await?;
        self.bitcoind.wait_in_mempool(&txid, WAIT).await?;
        self.mine(1).await?;
        let deadline = tokio::time::Instant::now() + WAIT;
        while lnd.confirmed_balance().await? < before + sats {
            if tokio::time::Instant::now() >= deadline {
                return Err(RegtestError::Timeout(format!("{sats} sats confirmed on LND {}", lnd.name())));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// Opens a channel of `sats` from the LDK node `from` to the LND node `to` (pushing `push_msat` to it),
    /// confirms it, and waits until both sides can use it. Returns ldk-node's user channel id.
    pub async fn open_channel_to_lnd(
        &self,
        from: &LdkNode,
        to: &Lnd,
        sats: u64,
        push_msat: u64,
    ) -> Result<u128, RegtestError> {
        let peer = to.pubkey().parse().map_err(|_| RegtestError::Ldk("open channel", "LND's pubkey".into()))?;
        let ucid = self.ldk_open(from, peer, to.peer_address(), sats, push_msat, None).await?;
        let from_id = from.inner().node_id().to_string();
        self.until_usable(&format!("channel {ucid} to LND {}", to.name()), || async {
            let out = from.inner().list_channels().iter().any(|c| c.user_channel_id.0 == ucid && c.is_usable);
            Ok(out && lnd_has_active(to, &from_id).await?)
        })
        .await?;
        Ok(ucid)
    }

    /// Opens a private channel of `sats` from the LND node `from` to the LDK node `to` (pushing `push_sat`),
    /// confirms it (six blocks: ldk-node's minimum depth as the accepting side), and waits until both sides can
    /// use it. Private, because ldk-node refuses announced inbound channels unless it announces itself.
    pub async fn open_channel_from_lnd(
        &self,
        from: &Lnd,
        to: &LdkNode,
        sats: u64,
        push_sat: u64,
    ) -> Result<(), RegtestError> {
        let addr = to.config().listen.ok_or(RegtestError::Ldk("open channel", "peer does not listen".into()))?;
        let to_id = to.inner().node_id().to_string();
        self.lnd_open(from, &to_id, addr, sats, push_sat, true, None).await?;
        let from_id = from.pubkey().to_owned();
        self.until_usable(&format!("channel from LND {} to {to_id}", from.name()), || async {
            let inn =
                to.inner().list_channels().iter().any(|c| c.counterparty_node_id.to_string() == from_id && c.is_usable);
            Ok(inn && lnd_has_active(from, &to_id).await? && lnd_can_route(from, &to_id).await)
        })
        .await
    }

    /// Opens a channel of `sats` from the LND node `from` to the LND node `to` (pushing `push_sat`), confirms
    /// it and waits until both can use it. With `fee`, the channel is announced and `from` charges `fee` to
    /// forward over it; then every node in `observers` is waited for until its graph has that policy (a route
    /// through `from` needs it). Without, the channel is private.
    pub async fn open_channel_lnd_to_lnd(
        &self,
        from: &Lnd,
        to: &Lnd,
        sats: u64,
        push_sat: u64,
        fee: Option<ForwardingFee>,
        observers: &[&Lnd],
    ) -> Result<(), RegtestError> {
        self.lnd_open(from, to.pubkey(), to.peer_address(), sats, push_sat, fee.is_none(), fee).await?;
        self.until_usable(&format!("channel from LND {} to LND {}", from.name(), to.name()), || async {
            Ok(lnd_has_active(from, to.pubkey()).await?
                && lnd_has_active(to, from.pubkey()).await?
                && lnd_can_route(from, to.pubkey()).await)
        })
        .await?;
        let Some(fee) = fee else { return Ok(()) };
        // lncli 0.21 prints the 32-byte channel id as `chan_id`; the short channel id getchaninfo takes is `scid`.
        let channel = lnd_channel(from, to.pubkey()).await?;
        let chan_id = channel["scid"].as_str().unwrap_or_default().to_owned();
        let deadline = tokio::time::Instant::now() + WAIT;
        for observer in observers {
            loop {
                let info = observer.lncli(&["getchaninfo", "--chan_id", &chan_id]).await.unwrap_or_default();
                let policy = if info["node1_pub"].as_str() == Some(from.pubkey()) {
                    &info["node1_policy"]
                } else {
                    &info["node2_policy"]
                };
                let known = (policy["fee_base_msat"].as_str(), policy["fee_rate_milli_msat"].as_str());
                if known == (Some(fee.base_msat.to_string().as_str()), Some(fee.ppm.to_string().as_str())) {
                    break;
                }
                if tokio::time::Instant::now() >= deadline {
                    return Err(RegtestError::Timeout(format!(
                        "LND {} to learn channel {chan_id} from gossip (it has {known:?})",
                        observer.name()
                    )));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn lnd_open(
        &self,
        from: &Lnd,
        peer: &str,
        addr: SocketAddr,
        sats: u64,
        push_sat: u64,
        private: bool,
        fee: Option<ForwardingFee>,
    ) -> Result<(), RegtestError> {
        let target = format!("{peer}@{addr}");
        if let Err(e) = from.lncli(&["connect", &target]).await {
            if !e.to_string().contains("already connected") {
                return Err(e);
            }
        }
        let mut args = vec![
            "openchannel".to_owned(),
            format!("--node_key={peer}"),
            format!("--local_amt={sats}"),
            format!("--push_amt={push_sat}"),
        ];
        if private {
            args.push("--private".into());
        }
        if let Some(fee) = fee {
            args.push(format!("--base_fee_msat={}", fee.base_msat));
            args.push(format!("--fee_rate_ppm={}", fee.ppm));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let opened = from.lncli(&args).await?;
        let txid = opened["funding_txid"].as_str().unwrap_or_default().to_owned();
        self.bitcoind.wait_in_mempool(&txid, WAIT).await?;
        self.mine(CHANNEL_CONFIRMATIONS).await
    }

    async fn until_usable<F, Fut>(&self, what: &str, mut check: F) -> Result<(), RegtestError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<bool, RegtestError>>,
    {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if check().await? {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RegtestError::Timeout(format!("{what} to be usable on both sides")));
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
        let ucid = self.ldk_open(from, to.inner().node_id(), addr, sats, push_msat, announce).await?;
        let from_id = from.inner().node_id();
        self.until_usable(&format!("channel {ucid}"), || async {
            let out = from.inner().list_channels().iter().any(|c| c.user_channel_id.0 == ucid && c.is_usable);
            let inn = to.inner().list_channels().iter().any(|c| c.counterparty_node_id == from_id && c.is_usable);
            Ok(out && inn)
        })
        .await?;
        Ok(ucid)
    }

    /// Has the LDK node `from` open a channel to `peer` at `addr`, waits for its funding transaction and
    /// confirms it. Returns the user channel id.
    async fn ldk_open(
        &self,
        from: &LdkNode,
        peer: l402_ldk::ldk_node::bitcoin::secp256k1::PublicKey,
        addr: SocketAddr,
        sats: u64,
        push_msat: u64,
        announce: Option<ForwardingFee>,
    ) -> Result<u128, RegtestError> {
        let mut events = from.channel_events();
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
        Ok(ucid)
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
        for lnd in self.lnd_nodes() {
            lnd.stop().await;
        }
        if let Ok(mut lnds) = self.lnds.lock() {
            lnds.clear();
        }
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

/// LND's `listchannels` entry for its channel with `peer`, if it has one.
async fn lnd_channel(lnd: &Lnd, peer: &str) -> Result<serde_json::Value, RegtestError> {
    let channels = lnd.lncli(&["listchannels"]).await?;
    Ok(channels["channels"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["remote_pubkey"].as_str() == Some(peer)))
        .cloned()
        .unwrap_or_default())
}

/// Whether LND finds a route to `peer` for 1,000 sat. Right after a channel turns active LND may still give
/// it no bandwidth (its link is not up yet) and fail payments with INSUFFICIENT_BALANCE: measured on 0.21.
async fn lnd_can_route(lnd: &Lnd, peer: &str) -> bool {
    lnd.lncli(&["queryroutes", "--dest", peer, "--amt", "1000"])
        .await
        .is_ok_and(|v| v["routes"].as_array().is_some_and(|r| !r.is_empty()))
}

/// Whether LND has an active channel with `peer`.
async fn lnd_has_active(lnd: &Lnd, peer: &str) -> Result<bool, RegtestError> {
    Ok(lnd_channel(lnd, peer).await?["active"].as_bool() == Some(true))
}

//! The connection to one LND node: channel, macaroon interceptor, retries with backoff, `GetInfo`.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use l402_lightning::{ChannelBalance, LightningError, LightningErrorKind, Node, NodeInfo};
use l402_proto::lightning_invoice::Currency;
use tokio::time::Instant;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};

use crate::config::LndConfig;
use crate::error::from_status;
use crate::proto::invoicesrpc::invoices_client::InvoicesClient;
use crate::proto::lnrpc::lightning_client::LightningClient;
use crate::proto::lnrpc::{ChannelBalanceRequest, GetInfoRequest};
use crate::proto::routerrpc::router_client::RouterClient;
use crate::tls::PinnedConnector;

/// Adds `macaroon: <hex>` to every call, as LND expects (nothing when the configured macaroon is empty, for
/// an LND run with `--no-macaroons`). Its `Debug` never shows the macaroon.
#[derive(Clone)]
pub struct MacaroonInterceptor {
    value: Option<MetadataValue<Ascii>>,
}

impl fmt::Debug for MacaroonInterceptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacaroonInterceptor(<redacted>)")
    }
}

impl Interceptor for MacaroonInterceptor {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(value) = &self.value {
            request.metadata_mut().insert("macaroon", value.clone());
        }
        Ok(request)
    }
}

/// The channel every generated client shares, with the macaroon added.
pub type AuthedChannel = InterceptedService<Channel, MacaroonInterceptor>;

/// Exponential backoff: 100 ms doubling to 2 s.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
}

impl Backoff {
    const FIRST: Duration = Duration::from_millis(100);
    const MAX: Duration = Duration::from_secs(2);

    pub(crate) fn new() -> Self {
        Self { next: Self::FIRST }
    }

    /// The next pause (and doubles the one after).
    pub(crate) fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }

    /// Sleeps the next pause, or returns false without sleeping if that would pass `deadline`.
    pub(crate) async fn wait_until(&mut self, deadline: Instant) -> bool {
        let d = self.next_delay();
        if Instant::now() + d >= deadline {
            return false;
        }
        tokio::time::sleep(d).await;
        true
    }
}

/// An LND node over gRPC, implementing [`Node`], [`l402_lightning::InvoiceIssuer`] and
/// [`l402_lightning::Payer`]. Cheap to clone (one shared HTTP/2 connection, re-opened when it drops).
#[derive(Clone)]
pub struct LndNode {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: LndConfig,
    channel: AuthedChannel,
}

impl fmt::Debug for LndNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LndNode").field("address", &self.inner.config.address).finish_non_exhaustive()
    }
}

impl LndNode {
    /// Connects and checks the connection with `GetInfo`: a wrong certificate fails here with
    /// [`LightningErrorKind::TlsCertificate`], a refused macaroon with [`LightningErrorKind::Unauthenticated`].
    pub async fn connect(config: LndConfig) -> Result<Self, LightningError> {
        let node = Self::connect_lazy(config)?;
        node.info().await?;
        Ok(node)
    }

    /// Prepares the connection without opening it (it opens on the first call).
    pub fn connect_lazy(config: LndConfig) -> Result<Self, LightningError> {
        let config_err = |m: String| LightningError::new(LightningErrorKind::Config, m);
        let value: Option<MetadataValue<Ascii>> = if config.macaroon.is_empty() {
            None
        } else {
            let hex_mac = hex::encode(&config.macaroon);
            Some(hex_mac.parse().map_err(|_| config_err("macaroon: cannot be sent as metadata".to_owned()))?)
        };
        let connector =
            PinnedConnector::new(&config.address, config.host(), config.tls_cert_der.clone(), config.connect_timeout)
                .map_err(config_err)?;
        let endpoint = Endpoint::from_shared(format!("https://{}", config.address))
            .map_err(|e| config_err(format!("address {}: {e}", config.address)))?
            // LND (grpc-go) allows client pings every 5 s at most, and only while a call is open.
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_timeout(Duration::from_secs(20))
            .keep_alive_while_idle(false);
        let channel = endpoint.connect_with_connector_lazy(connector);
        let channel = InterceptedService::new(channel, MacaroonInterceptor { value });
        Ok(Self { inner: Arc::new(Inner { config, channel }) })
    }

    /// The configuration this node was connected with.
    pub fn config(&self) -> &LndConfig {
        &self.inner.config
    }

    /// A client of `lnrpc.Lightning` on this connection (for calls the traits do not cover).
    pub fn lightning(&self) -> LightningClient<AuthedChannel> {
        LightningClient::new(self.inner.channel.clone())
    }

    /// A client of `invoicesrpc.Invoices` on this connection.
    pub fn invoices(&self) -> InvoicesClient<AuthedChannel> {
        InvoicesClient::new(self.inner.channel.clone())
    }

    /// A client of `routerrpc.Router` on this connection.
    pub fn router(&self) -> RouterClient<AuthedChannel> {
        RouterClient::new(self.inner.channel.clone())
    }

    /// Runs a unary call (or opens a stream whose first message comes at once), bounded by the call timeout,
    /// retrying with backoff while the node is unavailable, for up to the reconnect timeout.
    ///
    /// Only for calls that are safe to repeat: every call this crate retries is a read, or `AddInvoice` (a
    /// repeat makes at most one more unpaid invoice).
    pub(crate) async fn call<T, F, Fut>(&self, method: &'static str, mut f: F) -> Result<T, LightningError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, Status>>,
    {
        let config = &self.inner.config;
        let deadline = Instant::now() + config.reconnect_timeout;
        let mut backoff = Backoff::new();
        loop {
            let status = match tokio::time::timeout(config.call_timeout, f()).await {
                Ok(Ok(response)) => return Ok(response.into_inner()),
                Ok(Err(status)) => status,
                Err(_) => {
                    return Err(LightningError::new(
                        LightningErrorKind::Timeout,
                        format!("{method}: no answer from LND within {:?}", config.call_timeout),
                    ));
                }
            };
            let err = from_status(method, &status);
            if err.kind != LightningErrorKind::Unavailable || !backoff.wait_until(deadline).await {
                return Err(err);
            }
            tracing::debug!(method, error = %err, "LND unavailable; retrying");
        }
    }
}

/// The network named by LND's `GetInfo` `chains[0].network`.
pub(crate) fn network_from_lnd(name: &str) -> Option<Currency> {
    Some(match name {
        "mainnet" | "bitcoin" => Currency::Bitcoin,
        "testnet" | "testnet3" | "testnet4" => Currency::BitcoinTestnet,
        "regtest" => Currency::Regtest,
        "simnet" => Currency::Simnet,
        "signet" => Currency::Signet,
        _ => return None,
    })
}

#[async_trait]
impl Node for LndNode {
    async fn info(&self) -> Result<NodeInfo, LightningError> {
        let info = self
            .call("GetInfo", || {
                let mut c = self.lightning();
                async move { c.get_info(GetInfoRequest {}).await }
            })
            .await?;
        let network_name = info.chains.first().map(|c| c.network.as_str()).unwrap_or("");
        let network = network_from_lnd(network_name).ok_or_else(|| {
            LightningError::new(LightningErrorKind::Internal, format!("GetInfo: unknown network {network_name:?}"))
        })?;
        Ok(NodeInfo { pubkey: info.identity_pubkey, network, block_height: info.block_height, alias: info.alias })
    }

    async fn channel_balance(&self) -> Result<ChannelBalance, LightningError> {
        let b = self
            .call("ChannelBalance", || {
                let mut c = self.lightning();
                async move { c.channel_balance(ChannelBalanceRequest {}).await }
            })
            .await?;
        let msat = |a: Option<crate::proto::lnrpc::Amount>| l402_proto::Msat(a.map_or(0, |a| a.msat));
        Ok(ChannelBalance { inbound: msat(b.remote_balance), outbound: msat(b.local_balance) })
    }
}

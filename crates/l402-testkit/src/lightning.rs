//! `lnrpc.Lightning` (GetInfo, ChannelBalance, AddInvoice, LookupInvoice, SubscribeInvoices, DecodePayReq) and
//! `invoicesrpc.Invoices` (SubscribeSingleInvoice) over the backend.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;
use l402_lightning::{InvoiceRequest, InvoiceState};
use l402_lnd::proto::invoicesrpc::{SubscribeSingleInvoiceRequest, invoices_server::Invoices};
use l402_lnd::proto::lnrpc::{
    self, AddInvoiceResponse, Amount, Chain, ChannelBalanceRequest, ChannelBalanceResponse, GetInfoRequest,
    GetInfoResponse, InvoiceSubscription, PayReq, PayReqString, lightning_server::Lightning,
};
use l402_proto::invoice::decode_invoice;
use l402_proto::lightning_invoice::{Bolt11Invoice, Currency};
use l402_proto::{Msat, PaymentHash};
use tokio::sync::{broadcast, mpsc};
use tonic::{Request, Response, Status};

use crate::auth::Permission;
use crate::sim::{Sim, backend_status, lock, make_hash};

/// A server stream of `T`.
pub(crate) type GrpcStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// LND's default invoice expiry, used when `expiry` is 0.
const DEFAULT_INVOICE_EXPIRY: i64 = 86_400;

/// A stream fed by a channel.
pub(crate) fn channel_stream<T: Send + 'static>(rx: mpsc::Receiver<Result<T, Status>>) -> GrpcStream<T> {
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) }))
}

/// LND's name for a network (btcd's chaincfg names, as in GetInfo and zpay32 errors).
pub(crate) fn lnd_network_name(c: &Currency) -> &'static str {
    match c {
        Currency::Bitcoin => "mainnet",
        Currency::BitcoinTestnet => "testnet",
        Currency::Regtest => "regtest",
        Currency::Simnet => "simnet",
        Currency::Signet => "signet",
    }
}

/// Decodes a payment request as LND's zpay32 does against its own network.
pub(crate) fn decode_for(network: &Currency, pay_req: &str) -> Result<(Bolt11Invoice, PayReq), Status> {
    let (parsed, info) = decode_invoice(pay_req).map_err(|e| Status::unknown(e.to_string()))?;
    if info.currency != *network {
        return Err(Status::unknown(format!("invoice not for current active network '{}'", lnd_network_name(network))));
    }
    let num_msat = info.amount.map(|a| i64::try_from(a.msat()).unwrap_or(i64::MAX)).unwrap_or(0);
    let (description, description_hash) = match info.description.strip_prefix("hash:") {
        Some(h) => (String::new(), h.to_owned()),
        None => (info.description.clone(), String::new()),
    };
    let pay_req = PayReq {
        destination: info.payee.clone(),
        payment_hash: info.payment_hash.to_hex(),
        num_satoshis: num_msat / 1000,
        timestamp: i64::try_from(info.created_at).unwrap_or(0),
        expiry: i64::try_from(parsed.expiry_time().as_secs()).unwrap_or(i64::MAX),
        description,
        description_hash,
        cltv_expiry: i64::try_from(parsed.min_final_cltv_expiry_delta()).unwrap_or(0),
        payment_addr: parsed.payment_secret().0.to_vec(),
        num_msat,
    };
    Ok((parsed, pay_req))
}

/// The `lnrpc.Lightning` service.
#[derive(Clone)]
pub(crate) struct LightningService {
    pub(crate) sim: Arc<Sim>,
}

#[tonic::async_trait]
impl Lightning for LightningService {
    async fn get_info(&self, request: Request<GetInfoRequest>) -> Result<Response<GetInfoResponse>, Status> {
        self.sim.macaroons.check(request.metadata(), Permission::InfoRead)?;
        let info = self.sim.backend.info().await.map_err(backend_status)?;
        Ok(Response::new(GetInfoResponse {
            identity_pubkey: info.pubkey,
            alias: info.alias,
            block_height: info.block_height,
            block_hash: String::new(),
            synced_to_chain: true,
            version: concat!("0.19.0-beta l402-testkit-", env!("CARGO_PKG_VERSION")).to_owned(),
            chains: vec![Chain { chain: "bitcoin".into(), network: lnd_network_name(&info.network).into() }],
        }))
    }

    async fn channel_balance(
        &self,
        request: Request<ChannelBalanceRequest>,
    ) -> Result<Response<ChannelBalanceResponse>, Status> {
        self.sim.macaroons.check(request.metadata(), Permission::OffchainRead)?;
        let b = self.sim.backend.channel_balance().await.map_err(backend_status)?;
        let amount = |m: Msat| Some(Amount { sat: m.0 / 1000, msat: m.0 });
        Ok(Response::new(ChannelBalanceResponse {
            local_balance: amount(b.outbound),
            remote_balance: amount(b.inbound),
        }))
    }

    async fn add_invoice(&self, request: Request<lnrpc::Invoice>) -> Result<Response<AddInvoiceResponse>, Status> {
        self.sim.macaroons.check(request.metadata(), Permission::InvoicesWrite)?;
        let invoice = request.into_inner();
        if invoice.value != 0 && invoice.value_msat != 0 {
            return Err(Status::unknown("sat and msat arguments are mutually exclusive"));
        }
        if invoice.value < 0 || invoice.value_msat < 0 {
            return Err(Status::unknown("amount cannot be negative"));
        }
        let value_msat = if invoice.value != 0 { invoice.value.saturating_mul(1000) } else { invoice.value_msat };
        let expiry = if invoice.expiry == 0 { DEFAULT_INVOICE_EXPIRY } else { invoice.expiry };
        let issued = self
            .sim
            .backend
            .create_invoice(&InvoiceRequest {
                amount: Msat(u64::try_from(value_msat).unwrap_or(0)),
                memo: invoice.memo.clone(),
                expiry: Duration::from_secs(u64::try_from(expiry).unwrap_or(0)),
            })
            .await
            .map_err(backend_status)?;
        let (parsed, decoded) = decode_for(&self.sim.network, &issued.bolt11)?;
        let record = lnrpc::Invoice {
            memo: invoice.memo,
            r_hash: issued.payment_hash.0.to_vec(),
            value: value_msat / 1000,
            value_msat,
            creation_date: decoded.timestamp,
            payment_request: issued.bolt11.clone(),
            expiry: decoded.expiry,
            payment_addr: parsed.payment_secret().0.to_vec(),
            ..Default::default()
        };
        let record = lock(&self.sim.invoices).add(issued.payment_hash, record);
        let _ = self.sim.invoice_events.send(record.clone());
        Ok(Response::new(AddInvoiceResponse {
            r_hash: record.r_hash,
            payment_request: record.payment_request,
            add_index: record.add_index,
            payment_addr: record.payment_addr,
        }))
    }

    async fn lookup_invoice(&self, request: Request<lnrpc::PaymentHash>) -> Result<Response<lnrpc::Invoice>, Status> {
        self.sim.macaroons.check(request.metadata(), Permission::InvoicesRead)?;
        let request = request.into_inner();
        let bytes = if request.r_hash_str.is_empty() {
            request.r_hash
        } else {
            hex::decode(&request.r_hash_str).map_err(|e| Status::unknown(format!("encoding/hex: {e}")))?
        };
        if bytes.len() != 32 {
            return Err(Status::unknown(format!("payment hash must be exactly 32 bytes, is {}", bytes.len())));
        }
        let hash = make_hash(&bytes)?;
        match self.sim.backend.lookup_invoice(&hash).await.map_err(backend_status)? {
            InvoiceState::NotFound => Err(Status::not_found("unable to locate invoice")),
            state => Ok(Response::new(self.sim.apply_invoice_state(hash, &state))),
        }
    }

    type SubscribeInvoicesStream = GrpcStream<lnrpc::Invoice>;

    async fn subscribe_invoices(
        &self,
        request: Request<InvoiceSubscription>,
    ) -> Result<Response<Self::SubscribeInvoicesStream>, Status> {
        self.sim.macaroons.check(request.metadata(), Permission::InvoicesRead)?;
        let InvoiceSubscription { add_index, settle_index } = request.into_inner();
        // Subscribe before reading the backlog, so nothing falls between the two.
        let mut live = self.sim.invoice_events.subscribe();
        let backlog = {
            let book = lock(&self.sim.invoices);
            let mut backlog = if add_index > 0 { book.added_after(add_index) } else { Vec::new() };
            if settle_index > 0 {
                backlog.extend(book.settled_after(settle_index));
            }
            backlog
        };
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(async move {
            for invoice in backlog {
                if tx.send(Ok(invoice)).await.is_err() {
                    return;
                }
            }
            loop {
                let event = tokio::select! {
                    e = live.recv() => e,
                    _ = tx.closed() => return,
                };
                match event {
                    Ok(invoice) => {
                        if tx.send(Ok(invoice)).await.is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "SubscribeInvoices subscriber lagged");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(channel_stream(rx)))
    }

    async fn decode_pay_req(&self, request: Request<PayReqString>) -> Result<Response<PayReq>, Status> {
        self.sim.macaroons.check(request.metadata(), Permission::OffchainRead)?;
        let (_, decoded) = decode_for(&self.sim.network, &request.into_inner().pay_req)?;
        Ok(Response::new(decoded))
    }
}

/// The `invoicesrpc.Invoices` service.
#[derive(Clone)]
pub(crate) struct InvoicesService {
    pub(crate) sim: Arc<Sim>,
}

/// How often a subscription to an invoice the backend does not know yet looks again (LND waits silently).
const UNKNOWN_INVOICE_POLL: Duration = Duration::from_millis(200);
/// How long one backend `wait_invoice` call may block inside a subscription.
const WAIT_SLICE: Duration = Duration::from_secs(5);

fn is_final(state: &InvoiceState) -> bool {
    matches!(state, InvoiceState::Settled(_) | InvoiceState::Canceled)
}

async fn follow_invoice(sim: Arc<Sim>, hash: PaymentHash, tx: mpsc::Sender<Result<lnrpc::Invoice, Status>>) {
    let mut last: Option<lnrpc::Invoice> = None;
    let mut first = true;
    loop {
        let state = if first {
            sim.backend.lookup_invoice(&hash).await
        } else {
            sim.backend.wait_invoice(&hash, WAIT_SLICE).await
        };
        first = false;
        let state = match state {
            Ok(state) => state,
            Err(e) => {
                let _ = tx.send(Err(backend_status(e))).await;
                return;
            }
        };
        if state == InvoiceState::NotFound {
            tokio::select! {
                _ = tokio::time::sleep(UNKNOWN_INVOICE_POLL) => {}
                _ = tx.closed() => return,
            }
            first = true;
            continue;
        }
        let record = sim.apply_invoice_state(hash, &state);
        if last.as_ref() != Some(&record) {
            if tx.send(Ok(record.clone())).await.is_err() {
                return;
            }
            last = Some(record);
        }
        if is_final(&state) || tx.is_closed() {
            return;
        }
    }
}

#[tonic::async_trait]
impl Invoices for InvoicesService {
    type SubscribeSingleInvoiceStream = GrpcStream<lnrpc::Invoice>;

    async fn subscribe_single_invoice(
        &self,
        request: Request<SubscribeSingleInvoiceRequest>,
    ) -> Result<Response<Self::SubscribeSingleInvoiceStream>, Status> {
        self.sim.macaroons.check(request.metadata(), Permission::InvoicesRead)?;
        let hash = make_hash(&request.into_inner().r_hash)?;
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(follow_invoice(self.sim.clone(), hash, tx));
        Ok(Response::new(channel_stream(rx)))
    }
}

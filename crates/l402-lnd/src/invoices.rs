//! The server side on LND: `AddInvoice`, `LookupInvoice`, `invoicesrpc.SubscribeSingleInvoice` and
//! `SubscribeInvoices`, each resumed after a dropped stream.

use std::collections::{HashSet, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use l402_lightning::{
    InvoiceIssuer, InvoiceRequest, InvoiceState, IssuedInvoice, LightningError, LightningErrorKind, Settlement,
    SettlementStream,
};
use l402_proto::{Msat, PaymentHash};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout_at};
use tonic::Code;

use crate::client::{Backoff, LndNode};
use crate::error::from_status;
use crate::proto::invoicesrpc::SubscribeSingleInvoiceRequest;
use crate::proto::lnrpc::{self, InvoiceSubscription, invoice::InvoiceState as LndState};

/// How often `wait_invoice` polls `LookupInvoice` when the node has no invoices sub-server.
const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How many settled hashes `subscribe_settlements` remembers to drop duplicates replayed after a resume.
const REMEMBERED_SETTLEMENTS: usize = 4096;

fn hash_from(method: &str, bytes: &[u8]) -> Result<PaymentHash, LightningError> {
    <[u8; 32]>::try_from(bytes).map(PaymentHash).map_err(|_| {
        LightningError::new(LightningErrorKind::Internal, format!("{method}: r_hash is {} bytes, not 32", bytes.len()))
    })
}

fn non_negative(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// What an `lnrpc.Invoice` says of its state.
pub(crate) fn invoice_state(hash: PaymentHash, invoice: &lnrpc::Invoice) -> InvoiceState {
    match invoice.state() {
        LndState::Open => InvoiceState::Open,
        LndState::Accepted => InvoiceState::Accepted,
        LndState::Canceled => InvoiceState::Canceled,
        LndState::Settled => InvoiceState::Settled(Settlement {
            payment_hash: hash,
            amount_received: Msat(non_negative(invoice.amt_paid_msat)),
            settled_at: non_negative(invoice.settle_date),
        }),
    }
}

fn is_final(state: &InvoiceState) -> bool {
    matches!(state, InvoiceState::Settled(_) | InvoiceState::Canceled | InvoiceState::NotFound)
}

impl LndNode {
    /// Polls `LookupInvoice` until the invoice is final or `deadline` passes (for nodes built without the
    /// invoices sub-server).
    async fn poll_invoice(&self, hash: &PaymentHash, deadline: Instant) -> Result<InvoiceState, LightningError> {
        loop {
            let state = self.lookup_invoice(hash).await?;
            if is_final(&state) || Instant::now() + POLL_INTERVAL >= deadline {
                return Ok(state);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

#[async_trait]
impl InvoiceIssuer for LndNode {
    async fn create_invoice(&self, request: &InvoiceRequest) -> Result<IssuedInvoice, LightningError> {
        let invalid = |m: String| LightningError::new(LightningErrorKind::InvalidRequest, m);
        // 0 is LND's amountless invoice: the payer chooses the amount.
        let value_msat = i64::try_from(request.amount.msat())
            .map_err(|_| invalid(format!("AddInvoice: amount {} does not fit an int64 msat", request.amount)))?;
        // An expiry of 0 would be LND's default (86400 s); ask for at least one second.
        let expiry = i64::try_from(request.expiry.as_secs().max(1)).unwrap_or(i64::MAX);
        let invoice = lnrpc::Invoice { memo: request.memo.clone(), value_msat, expiry, ..Default::default() };
        let added = self
            .call("AddInvoice", || {
                let (mut c, invoice) = (self.lightning(), invoice.clone());
                async move { c.add_invoice(invoice).await }
            })
            .await?;
        Ok(IssuedInvoice { bolt11: added.payment_request, payment_hash: hash_from("AddInvoice", &added.r_hash)? })
    }

    async fn lookup_invoice(&self, payment_hash: &PaymentHash) -> Result<InvoiceState, LightningError> {
        let request = lnrpc::PaymentHash { r_hash: payment_hash.0.to_vec(), ..Default::default() };
        match self
            .call("LookupInvoice", || {
                let (mut c, request) = (self.lightning(), request.clone());
                async move { c.lookup_invoice(request).await }
            })
            .await
        {
            Ok(invoice) => Ok(invoice_state(*payment_hash, &invoice)),
            Err(e) if e.kind == LightningErrorKind::NotFound => Ok(InvoiceState::NotFound),
            Err(e) => Err(e),
        }
    }

    async fn wait_invoice(
        &self,
        payment_hash: &PaymentHash,
        timeout: Duration,
    ) -> Result<InvoiceState, LightningError> {
        let deadline = Instant::now() + timeout;
        // LookupInvoice first: it answers NotFound for an unknown hash, where SubscribeSingleInvoice would
        // wait silently for an invoice that may never exist.
        let mut state = self.lookup_invoice(payment_hash).await?;
        let mut backoff = Backoff::new();
        while !is_final(&state) {
            let request = SubscribeSingleInvoiceRequest { r_hash: payment_hash.0.to_vec() };
            match timeout_at(deadline, self.invoices().subscribe_single_invoice(request)).await {
                Err(_) => return Ok(state),
                Ok(Ok(response)) => {
                    let mut stream = response.into_inner();
                    loop {
                        match timeout_at(deadline, stream.message()).await {
                            Err(_) => return Ok(state),
                            Ok(Ok(Some(invoice))) => {
                                backoff = Backoff::new();
                                state = invoice_state(*payment_hash, &invoice);
                                if is_final(&state) {
                                    return Ok(state);
                                }
                            }
                            Ok(Ok(None)) => break,
                            Ok(Err(status)) => {
                                tracing::debug!(%payment_hash, error = %status.message(), "invoice stream dropped");
                                break;
                            }
                        }
                    }
                }
                Ok(Err(status)) if status.code() == Code::Unimplemented => {
                    tracing::debug!("LND has no invoices sub-server; polling LookupInvoice");
                    return self.poll_invoice(payment_hash, deadline).await;
                }
                Ok(Err(status)) => {
                    let err = from_status("SubscribeSingleInvoice", &status);
                    if !err.is_retryable() {
                        return Err(err);
                    }
                }
            }
            // The stream dropped or could not open: a settlement may have happened in between.
            match self.lookup_invoice(payment_hash).await {
                Ok(now) => state = now,
                Err(e) if e.is_retryable() => {}
                Err(e) => return Err(e),
            }
            if is_final(&state) || !backoff.wait_until(deadline).await {
                return Ok(state);
            }
        }
        Ok(state)
    }

    async fn subscribe_settlements(&self) -> Result<SettlementStream, LightningError> {
        // Opening SubscribeInvoices returns nothing until the first event (LND sends no headers before it),
        // so check the connection and the macaroon (invoices:read) with a lookup that must say NotFound.
        self.lookup_invoice(&PaymentHash([0; 32])).await?;
        let (tx, rx) = mpsc::channel(64);
        tokio::spawn(follow_settlements(self.clone(), tx));
        Ok(Box::pin(futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|item| (item, rx)) })))
    }
}

/// Feeds `tx` with every settlement until the receiver is dropped, resuming after drops with the last
/// `settle_index` (and `add_index`, so that invoices added and settled during a drop are replayed even
/// before a first settlement gave us a settle index).
async fn follow_settlements(node: LndNode, tx: mpsc::Sender<Result<Settlement, LightningError>>) {
    let (mut add_index, mut settle_index) = (0u64, 0u64);
    let mut seen: (HashSet<PaymentHash>, VecDeque<PaymentHash>) = Default::default();
    let mut backoff = Backoff::new();
    loop {
        let request = InvoiceSubscription { add_index, settle_index };
        let mut lightning = node.lightning();
        let opened = tokio::select! {
            r = lightning.subscribe_invoices(request) => r,
            _ = tx.closed() => return,
        };
        match opened {
            Ok(response) => {
                let mut stream = response.into_inner();
                loop {
                    let message = tokio::select! {
                        m = stream.message() => m,
                        _ = tx.closed() => return,
                    };
                    let invoice = match message {
                        Ok(Some(invoice)) => invoice,
                        Ok(None) => break,
                        Err(status) => {
                            tracing::debug!(error = %status.message(), "SubscribeInvoices dropped; resuming");
                            break;
                        }
                    };
                    backoff = Backoff::new();
                    add_index = add_index.max(invoice.add_index);
                    if invoice.state() != LndState::Settled {
                        continue;
                    }
                    settle_index = settle_index.max(invoice.settle_index);
                    let Ok(hash) = hash_from("SubscribeInvoices", &invoice.r_hash) else { continue };
                    if !seen.0.insert(hash) {
                        continue;
                    }
                    seen.1.push_back(hash);
                    if seen.1.len() > REMEMBERED_SETTLEMENTS {
                        if let Some(old) = seen.1.pop_front() {
                            seen.0.remove(&old);
                        }
                    }
                    if let InvoiceState::Settled(settlement) = invoice_state(hash, &invoice) {
                        if tx.send(Ok(settlement)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            Err(status) => {
                let err = from_status("SubscribeInvoices", &status);
                if !err.is_retryable() {
                    let _ = tx.send(Err(err)).await;
                    return;
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = tx.closed() => return,
        }
    }
}

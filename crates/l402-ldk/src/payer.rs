//! The client side on LDK: paying invoices and finding payments again.
//!
//! ldk-node keeps one payment record per payment hash (its payment id for BOLT-11). Before sending, the record
//! is consulted: a payment that succeeded is returned as is, one in flight is followed, so paying the same hash
//! twice never sends twice; ldk-node itself refuses a second send as `DuplicatePayment`.

use std::time::Duration;

use async_trait::async_trait;
use l402_lightning::{
    LightningError, LightningErrorKind, PayError, PayRequest, Payer, PaymentEvent, PaymentFailure, PaymentStatus,
    PaymentSuccess,
};
use l402_proto::PaymentHash;
use ldk_node::NodeError;
use ldk_node::lightning::routing::router::RouteParametersConfig;
use ldk_node::lightning_invoice::Bolt11Invoice;
use ldk_node::payment::{PaymentDirection, PaymentStatus as LdkStatus};
use tokio::sync::broadcast;

use crate::LdkNode;
use crate::convert::{payment_id, success};
use crate::events::PaymentOutcome;

/// How long past the request's timeout a payment is followed before its outcome is called unknown.
const OUTCOME_MARGIN: Duration = Duration::from_secs(60);
const RECHECK: Duration = Duration::from_millis(200);

type Progress<'a> = &'a (dyn Fn(PaymentEvent) + Send + Sync);

impl LdkNode {
    /// The lock that serializes `pay` calls for one payment hash.
    fn pay_lock(&self, hash: &PaymentHash) -> std::sync::Arc<tokio::sync::Mutex<()>> {
        let mut map = self.paying.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(*hash).or_default().clone()
    }

    /// Follows a payment until the store says it succeeded or failed, or `deadline`. With `sent`, a payment
    /// not yet in the store is taken as being recorded (ldk-node writes its record after handing the payment
    /// to LDK); without, it is an error: there is nothing to follow.
    async fn await_outcome(
        &self,
        hash: &PaymentHash,
        mut rx: broadcast::Receiver<PaymentOutcome>,
        deadline: tokio::time::Instant,
        sent: bool,
        progress: Progress<'_>,
    ) -> Result<PaymentSuccess, PayError> {
        loop {
            match self.payment_status(hash).await? {
                PaymentStatus::Succeeded(s) => {
                    progress(PaymentEvent::Succeeded(s));
                    return Ok(s);
                }
                PaymentStatus::Failed(f) => {
                    progress(PaymentEvent::Failed(f.clone()));
                    return Err(PayError::Failed(f));
                }
                PaymentStatus::Unknown if sent => {}
                PaymentStatus::Unknown => {
                    return Err(PayError::Node(LightningError::new(
                        LightningErrorKind::NotFound,
                        format!("no payment to {hash} on this node"),
                    )));
                }
                PaymentStatus::InFlight => {}
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(PayError::OutcomeUnknown(format!("payment {hash} still in flight")));
            }
            // Wake on this payment's outcome, or re-check the store every RECHECK in case a notice was missed.
            let wake = (tokio::time::Instant::now() + RECHECK).min(deadline);
            while let Ok(Ok(PaymentOutcome(other))) = tokio::time::timeout_at(wake, rx.recv()).await {
                if other == *hash {
                    break;
                }
            }
        }
    }

    /// What the channels can send now, summed over usable channels (payments may be split across them).
    fn sendable_msat(&self) -> u64 {
        self.node.list_channels().iter().filter(|c| c.is_usable).map(|c| c.next_outbound_htlc_limit_msat).sum()
    }
}

impl LdkNode {
    /// Pays `invoice` (already checked against `request`): with `amountless`, `request.amount` is sent to an
    /// invoice that carries none.
    async fn send_checked(
        &self,
        invoice: Bolt11Invoice,
        request: &PayRequest,
        amountless: bool,
        progress: Progress<'_>,
    ) -> Result<PaymentSuccess, PayError> {
        let hash = request.payment_hash;
        if request.max_fee.0 == 0 {
            return Err(PayError::Rejected("fee limit must be positive".into()));
        }
        let lock = self.pay_lock(&hash);
        let _one_at_a_time = lock.lock().await;
        let deadline = tokio::time::Instant::now() + request.timeout + OUTCOME_MARGIN;
        let rx = self.notifier.payments.subscribe();
        match self.payment_status(&hash).await? {
            PaymentStatus::Succeeded(s) => {
                progress(PaymentEvent::Succeeded(s));
                return Ok(s);
            }
            PaymentStatus::InFlight => return self.await_outcome(&hash, rx, deadline, true, progress).await,
            PaymentStatus::Unknown | PaymentStatus::Failed(_) => {}
        }
        if self.sendable_msat() < request.amount.0 {
            let f = PaymentFailure::InsufficientBalance;
            progress(PaymentEvent::Failed(f.clone()));
            return Err(PayError::Failed(f));
        }
        progress(PaymentEvent::Initiated);
        let params = RouteParametersConfig::default().with_max_total_routing_fee_msat(request.max_fee.0);
        let node = self.node.clone();
        let amount = request.amount.0;
        let sent = tokio::task::spawn_blocking(move || {
            if amountless {
                node.bolt11_payment().send_using_amount(&invoice, amount, Some(params))
            } else {
                node.bolt11_payment().send(&invoice, Some(params))
            }
        })
        .await;
        match sent {
            Ok(Ok(_)) => {}
            Ok(Err(NodeError::DuplicatePayment)) => {
                return self.await_outcome(&hash, rx, deadline, true, progress).await;
            }
            Ok(Err(NodeError::PaymentSendingFailed)) => {
                // No route at send time: ldk-node records the payment as failed and emits no event.
                let f = PaymentFailure::NoRoute;
                self.notifier.record_failure(hash, f.clone());
                progress(PaymentEvent::Failed(f.clone()));
                return Err(PayError::Failed(f));
            }
            Ok(Err(NodeError::InvalidInvoice | NodeError::InvalidAmount)) => {
                return Err(PayError::Rejected("LDK refused the invoice".into()));
            }
            Ok(Err(e)) => {
                return Err(PayError::Node(LightningError::new(LightningErrorKind::Internal, format!("send: {e}"))));
            }
            Err(e) => return Err(PayError::OutcomeUnknown(format!("send task: {e}"))),
        }
        progress(PaymentEvent::InFlight);
        progress(PaymentEvent::Attempt { number: 1 });
        self.await_outcome(&hash, rx, deadline, true, progress).await
    }
}

/// Parses `request.bolt11` and checks that it pays `request.payment_hash`.
fn parse_for(request: &PayRequest) -> Result<Bolt11Invoice, PayError> {
    let invoice: Bolt11Invoice =
        request.bolt11.trim().parse().map_err(|e| PayError::Rejected(format!("invoice does not parse: {e}")))?;
    let hash = PaymentHash(*invoice.payment_hash().as_ref());
    if hash != request.payment_hash {
        return Err(PayError::Rejected(format!("invoice pays {hash}, not {}", request.payment_hash)));
    }
    Ok(invoice)
}

#[async_trait]
impl Payer for LdkNode {
    async fn pay(&self, request: &PayRequest, progress: Progress<'_>) -> Result<PaymentSuccess, PayError> {
        let invoice = parse_for(request)?;
        if invoice.amount_milli_satoshis() != Some(request.amount.0) {
            return Err(PayError::Rejected("invoice amount differs from the amount agreed".into()));
        }
        self.send_checked(invoice, request, false, progress).await
    }

    async fn pay_amountless(&self, request: &PayRequest, progress: Progress<'_>) -> Result<PaymentSuccess, PayError> {
        let invoice = parse_for(request)?;
        if invoice.amount_milli_satoshis().is_some() {
            return Err(PayError::Rejected("invoice carries an amount: pay it with pay".into()));
        }
        if request.amount.0 == 0 {
            return Err(PayError::Rejected("amount must be positive".into()));
        }
        self.send_checked(invoice, request, true, progress).await
    }

    async fn payment_status(&self, payment_hash: &PaymentHash) -> Result<PaymentStatus, LightningError> {
        let Some(details) = self.node.payment(&payment_id(payment_hash)) else { return Ok(PaymentStatus::Unknown) };
        if details.direction != PaymentDirection::Outbound {
            return Ok(PaymentStatus::Unknown);
        }
        Ok(match details.status {
            LdkStatus::Pending => PaymentStatus::InFlight,
            LdkStatus::Succeeded => success(&details).map_or(PaymentStatus::InFlight, PaymentStatus::Succeeded),
            LdkStatus::Failed => PaymentStatus::Failed(
                self.notifier.failure_of(payment_hash).unwrap_or(PaymentFailure::Other("failed".into())),
            ),
        })
    }

    async fn track_payment(
        &self,
        payment_hash: &PaymentHash,
        timeout: Duration,
        progress: Progress<'_>,
    ) -> Result<PaymentSuccess, PayError> {
        let rx = self.notifier.payments.subscribe();
        self.await_outcome(payment_hash, rx, tokio::time::Instant::now() + timeout, false, progress).await
    }
}

//! The server side on LDK: invoices issued by this node and their settlement.

use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt as _;
use l402_lightning::{
    InvoiceIssuer, InvoiceRequest, InvoiceState, IssuedInvoice, LightningError, LightningErrorKind, Settlement,
    SettlementStream,
};
use l402_proto::{Msat, PaymentHash};
use ldk_node::lightning_invoice::{Bolt11InvoiceDescription, Description};
use ldk_node::payment::{PaymentDirection, PaymentStatus};
use tokio::sync::broadcast::error::RecvError;

use crate::LdkNode;
use crate::convert::payment_id;

const RECHECK: Duration = Duration::from_millis(250);

#[async_trait]
impl InvoiceIssuer for LdkNode {
    async fn create_invoice(&self, request: &InvoiceRequest) -> Result<IssuedInvoice, LightningError> {
        if !self.node.status().is_running {
            return Err(LightningError::new(LightningErrorKind::Unavailable, "the LDK node is not running"));
        }
        let description = Description::new(request.memo.clone())
            .map_err(|e| LightningError::new(LightningErrorKind::InvalidRequest, format!("memo: {e}")))?;
        let expiry = u32::try_from(request.expiry.as_secs()).unwrap_or(u32::MAX);
        let description = Bolt11InvoiceDescription::Direct(description);
        let payments = self.node.bolt11_payment();
        // Zero asks for an amountless invoice: the payer chooses what to send.
        let invoice = if request.amount.0 == 0 {
            payments.receive_variable_amount(&description, expiry)
        } else {
            payments.receive(request.amount.0, &description, expiry)
        }
        .map_err(|e| LightningError::new(LightningErrorKind::Internal, format!("creating invoice: {e}")))?;
        let payment_hash = PaymentHash(*invoice.payment_hash().as_ref());
        Ok(IssuedInvoice { bolt11: invoice.to_string(), payment_hash })
    }

    async fn lookup_invoice(&self, payment_hash: &PaymentHash) -> Result<InvoiceState, LightningError> {
        let Some(details) = self.node.payment(&payment_id(payment_hash)) else { return Ok(InvoiceState::NotFound) };
        if details.direction != PaymentDirection::Inbound {
            return Ok(InvoiceState::NotFound);
        }
        Ok(match details.status {
            PaymentStatus::Pending => InvoiceState::Open,
            PaymentStatus::Failed => InvoiceState::Canceled,
            PaymentStatus::Succeeded => InvoiceState::Settled(Settlement {
                payment_hash: *payment_hash,
                amount_received: Msat(details.amount_msat.unwrap_or(0)),
                settled_at: details.latest_update_timestamp,
            }),
        })
    }

    async fn wait_invoice(
        &self,
        payment_hash: &PaymentHash,
        timeout: Duration,
    ) -> Result<InvoiceState, LightningError> {
        let mut rx = self.notifier.settlements.subscribe();
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let state = self.lookup_invoice(payment_hash).await?;
            if !matches!(state, InvoiceState::Open | InvoiceState::Accepted) || tokio::time::Instant::now() >= deadline
            {
                return Ok(state);
            }
            let wake = tokio::time::Instant::now() + RECHECK;
            let _ = tokio::time::timeout_at(wake.min(deadline), rx.recv()).await;
        }
    }

    async fn subscribe_settlements(&self) -> Result<SettlementStream, LightningError> {
        let rx = self.notifier.settlements.subscribe();
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            match rx.recv().await {
                Ok(s) => Some((Ok(s), rx)),
                Err(RecvError::Lagged(n)) => {
                    let e = LightningError::new(LightningErrorKind::Internal, format!("missed {n} settlements"));
                    Some((Err(e), rx))
                }
                Err(RecvError::Closed) => None,
            }
        });
        Ok(stream.boxed())
    }
}

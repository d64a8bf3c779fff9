//! Shared by the simulator tests that need no Lightning network.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use l402_lightning::{
    InvoiceIssuer, InvoiceRequest, InvoiceState, IssuedInvoice, LightningError, LightningErrorKind, Node, NodeInfo,
    PayError, PayRequest, Payer, PaymentEvent, PaymentStatus, PaymentSuccess, SettlementStream,
};
use l402_proto::PaymentHash;
use l402_proto::lightning_invoice::Currency;
use l402_testkit::LndSimulator;

/// A backend that makes NO payments and issues NO invoices: every such call fails. Only for tests that
/// assert TLS, authentication and connection behaviour of the simulator and the adapter; never for a
/// payment test (those run on the regtest network with real nodes).
pub struct NoPayments;

pub const NO_PAYMENTS_PUBKEY: &str = "02aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";

fn refused(what: &str) -> LightningError {
    LightningError::new(LightningErrorKind::Internal, format!("NoPayments backend: {what} is not available"))
}

#[async_trait]
impl Node for NoPayments {
    async fn info(&self) -> Result<NodeInfo, LightningError> {
        Ok(NodeInfo {
            pubkey: NO_PAYMENTS_PUBKEY.into(),
            network: Currency::Regtest,
            block_height: 101,
            alias: "no-payments".into(),
        })
    }
}

#[async_trait]
impl InvoiceIssuer for NoPayments {
    async fn create_invoice(&self, _: &InvoiceRequest) -> Result<IssuedInvoice, LightningError> {
        Err(refused("create_invoice"))
    }
    async fn lookup_invoice(&self, _: &PaymentHash) -> Result<InvoiceState, LightningError> {
        Ok(InvoiceState::NotFound)
    }
    async fn wait_invoice(&self, _: &PaymentHash, _: Duration) -> Result<InvoiceState, LightningError> {
        Ok(InvoiceState::NotFound)
    }
    async fn subscribe_settlements(&self) -> Result<SettlementStream, LightningError> {
        Ok(Box::pin(futures_util::stream::pending()))
    }
}

#[async_trait]
impl Payer for NoPayments {
    async fn pay(&self, _: &PayRequest, _: &(dyn Fn(PaymentEvent) + Send + Sync)) -> Result<PaymentSuccess, PayError> {
        Err(PayError::Node(refused("pay")))
    }
    async fn payment_status(&self, _: &PaymentHash) -> Result<PaymentStatus, LightningError> {
        Ok(PaymentStatus::Unknown)
    }
    async fn track_payment(
        &self,
        _: &PaymentHash,
        _: Duration,
        _: &(dyn Fn(PaymentEvent) + Send + Sync),
    ) -> Result<PaymentSuccess, PayError> {
        Err(PayError::Node(refused("track_payment")))
    }
}

/// A simulator over [`NoPayments`].
pub async fn no_payments_simulator() -> LndSimulator {
    LndSimulator::start(Arc::new(NoPayments)).await.expect("simulator starts")
}

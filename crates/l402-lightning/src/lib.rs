//! The Lightning interfaces the two sides of L402 need, and nothing more.
//!
//! A server issues invoices and learns that they settled ([`InvoiceIssuer`]); a client pays invoices within a
//! fee limit and a timeout, reporting progress, and finds an earlier payment again by its hash ([`Payer`]).
//! Both are implemented by every backend (LND over gRPC in `l402-lnd`, an embedded LDK node in `l402-ldk`), so
//! only the binary and tests name a concrete one.
//!
//! Errors say what a caller can do about them: [`LightningError::is_retryable`] for the connection to the
//! node, [`PaymentFailure::retry`] for a payment that definitely failed, and [`PayError::OutcomeUnknown`] for a
//! payment that may or may not have gone through, which must never be treated as failed (the money may be
//! gone).

mod error;
mod types;

use std::pin::Pin;
use std::time::Duration;

use async_trait::async_trait;
pub use error::{LightningError, LightningErrorKind, PayError, PaymentFailure, Retry};
use futures_core::Stream;
use l402_proto::PaymentHash;
pub use types::*;

/// A stream of settled invoices.
pub type SettlementStream = Pin<Box<dyn Stream<Item = Result<Settlement, LightningError>> + Send>>;

/// What every backend can say about its node.
#[async_trait]
pub trait Node: Send + Sync {
    /// The node's identity, network and height.
    async fn info(&self) -> Result<NodeInfo, LightningError>;

    /// What the node's channels can receive and send now, summed over its usable channels (for the
    /// operator's liquidity metrics). Backends that keep no channels (test doubles) answer an error.
    async fn channel_balance(&self) -> Result<ChannelBalance, LightningError> {
        Err(LightningError::new(LightningErrorKind::InvalidRequest, "this backend reports no channel balances"))
    }
}

/// The server side: issue invoices, learn they settled.
#[async_trait]
pub trait InvoiceIssuer: Node {
    /// Creates an invoice for `request.amount`, with a memo and an expiry; an amount of 0 creates an amountless
    /// invoice (the payer chooses the amount).
    async fn create_invoice(&self, request: &InvoiceRequest) -> Result<IssuedInvoice, LightningError>;

    /// Looks up an invoice this node issued.
    async fn lookup_invoice(&self, payment_hash: &PaymentHash) -> Result<InvoiceState, LightningError>;

    /// Waits until the invoice is settled or canceled, or `timeout` passes (then returns its state as it is).
    async fn wait_invoice(&self, payment_hash: &PaymentHash, timeout: Duration)
    -> Result<InvoiceState, LightningError>;

    /// Every invoice this node settles from now on.
    async fn subscribe_settlements(&self) -> Result<SettlementStream, LightningError>;
}

/// The client side: pay invoices, find payments again.
#[async_trait]
pub trait Payer: Node {
    /// Pays an invoice, reporting progress to `progress`, and returns the preimage once it succeeded.
    ///
    /// Paying a hash that is already paid or in flight sends nothing new: the backend follows the existing
    /// payment and returns its outcome. A payment whose outcome cannot be learned returns
    /// [`PayError::OutcomeUnknown`], never a failure.
    async fn pay(
        &self,
        request: &PayRequest,
        progress: &(dyn Fn(PaymentEvent) + Send + Sync),
    ) -> Result<PaymentSuccess, PayError>;

    /// Pays an invoice that carries no amount with exactly `request.amount` (a refund to a return invoice, a
    /// session's amountless invoice), with the guarantees of [`Payer::pay`]: one payment per hash, a fee limit
    /// that is never zero, the timeout. Refuses with [`PayError::Rejected`] an invoice that carries an amount
    /// (those are paid with [`Payer::pay`]), one whose hash is not `request.payment_hash`, and a zero amount.
    ///
    /// Backends that cannot pay amountless invoices keep this default, which refuses.
    async fn pay_amountless(
        &self,
        request: &PayRequest,
        progress: &(dyn Fn(PaymentEvent) + Send + Sync),
    ) -> Result<PaymentSuccess, PayError> {
        let _ = (request, progress);
        Err(PayError::Rejected("this backend cannot pay amountless invoices".into()))
    }

    /// What the node knows of a payment to this hash.
    async fn payment_status(&self, payment_hash: &PaymentHash) -> Result<PaymentStatus, LightningError>;

    /// Follows a payment already sent (after a crash or a lost connection) until it settles or fails, or
    /// `timeout` passes (then [`PayError::OutcomeUnknown`]).
    async fn track_payment(
        &self,
        payment_hash: &PaymentHash,
        timeout: Duration,
        progress: &(dyn Fn(PaymentEvent) + Send + Sync),
    ) -> Result<PaymentSuccess, PayError>;
}

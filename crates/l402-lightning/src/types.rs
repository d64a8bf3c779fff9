//! The values that cross the interfaces.

use std::time::Duration;

use l402_proto::lightning_invoice::Currency;
use l402_proto::{Msat, PaymentHash, Preimage};

use crate::error::PaymentFailure;

/// A node's identity and chain position.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's public key, hex.
    pub pubkey: String,
    /// The network it is on.
    pub network: Currency,
    /// The best block height it knows.
    pub block_height: u32,
    /// The node's alias, if it has one.
    pub alias: String,
}

/// A node's channel liquidity, summed over its channels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ChannelBalance {
    /// What the channels can receive (inbound liquidity).
    pub inbound: Msat,
    /// What the channels can send (outbound liquidity).
    pub outbound: Msat,
}

/// An invoice to issue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvoiceRequest {
    /// The amount to be paid. `Msat(0)` asks for an amountless (any-amount) invoice: the
    /// payer chooses what to send (a client's refund invoice). A server pricing a request must never pass 0.
    pub amount: Msat,
    /// The description shown to the payer.
    pub memo: String,
    /// How long the invoice can be paid.
    pub expiry: Duration,
}

/// An invoice the node issued.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IssuedInvoice {
    /// The BOLT-11 string.
    pub bolt11: String,
    /// Its payment hash.
    pub payment_hash: PaymentHash,
}

/// Where an issued invoice stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InvoiceState {
    /// Not paid yet.
    Open,
    /// HTLCs are held but not settled (hold invoices only).
    Accepted,
    /// Paid.
    Settled(Settlement),
    /// Canceled or expired unpaid.
    Canceled,
    /// The node does not know this invoice.
    NotFound,
}

/// A settled invoice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settlement {
    /// The invoice's payment hash.
    pub payment_hash: PaymentHash,
    /// What was received.
    pub amount_received: Msat,
    /// When it settled, Unix seconds.
    pub settled_at: u64,
}

/// An invoice to pay, already checked by the caller (see `l402_proto::invoice::check_invoice`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayRequest {
    /// The BOLT-11 string.
    pub bolt11: String,
    /// Its payment hash (the backend refuses to pay if the invoice says otherwise).
    pub payment_hash: PaymentHash,
    /// Its amount (the backend refuses to pay if the invoice says otherwise); for `Payer::pay_amountless`,
    /// the amount to send to an invoice that carries none.
    pub amount: Msat,
    /// The most to pay in routing fees. Never zero: backends refuse a zero fee limit (LND reads 0 as
    /// "zero-fee routes only" and every payment fails with no route).
    pub max_fee: Msat,
    /// After this long no new attempt is started (HTLCs already in flight continue).
    pub timeout: Duration,
}

/// A payment that succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PaymentSuccess {
    /// The proof of payment.
    pub preimage: Preimage,
    /// The amount delivered to the payee.
    pub amount: Msat,
    /// The routing fee paid.
    pub fee: Msat,
}

/// Progress of a payment, as the backend sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentEvent {
    /// Registered with the node; nothing is in flight yet.
    Initiated,
    /// HTLCs are in flight.
    InFlight,
    /// A route attempt was made (counting from 1).
    Attempt {
        /// The attempt number.
        number: u32,
    },
    /// The payment succeeded.
    Succeeded(PaymentSuccess),
    /// The payment failed, definitively.
    Failed(PaymentFailure),
}

/// What a node knows of a payment, by hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PaymentStatus {
    /// Never initiated from this node: safe to pay.
    Unknown,
    /// Initiated or in flight: do not pay again; track it.
    InFlight,
    /// Paid; the preimage is known.
    Succeeded(PaymentSuccess),
    /// Failed definitively; no money left the node for it.
    Failed(PaymentFailure),
}

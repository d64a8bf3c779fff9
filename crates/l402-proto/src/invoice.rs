//! The checks a client makes on a BOLT-11 invoice before paying it, refusing on any doubt.
//!
//! [`check_invoice`] parses the invoice (signature included), and refuses: another network, no amount, expired
//! or expiring within the margin, amount above the cap, and a payment hash other than the one the macaroon
//! commits to (a server that swaps invoices would otherwise take payment for a token it never unlocks).

use std::time::Duration;

use lightning_invoice::{Bolt11Invoice, Bolt11InvoiceDescriptionRef, Currency};
use thiserror::Error;

use crate::types::{Msat, PaymentHash};

/// Why an invoice was refused before paying.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum InvoiceError {
    /// Not a valid BOLT-11 invoice (bad encoding or signature).
    #[error("invoice does not parse: {0}")]
    Parse(String),
    /// The invoice is for another network.
    #[error("invoice is for {found}, expected {expected}")]
    WrongNetwork {
        /// The network expected.
        expected: String,
        /// The invoice's network.
        found: String,
    },
    /// The invoice has no amount (an amountless invoice lets the payer choose: never pay one for L402).
    #[error("invoice has no amount")]
    NoAmount,
    /// The invoice has expired, or expires within the safety margin.
    #[error("invoice expired or expires within {margin_secs} s (expiry at {expires_at})")]
    Expired {
        /// The invoice's expiry, Unix seconds.
        expires_at: u64,
        /// The margin required.
        margin_secs: u64,
    },
    /// The amount is above the cap.
    #[error("invoice amount {amount} is above the cap of {cap}")]
    OverCap {
        /// The invoice amount.
        amount: Msat,
        /// The cap.
        cap: Msat,
    },
    /// The invoice's payment hash is not the one the macaroon commits to.
    #[error("invoice payment hash {found} does not match the macaroon's {expected}")]
    HashMismatch {
        /// The macaroon's payment hash.
        expected: PaymentHash,
        /// The invoice's payment hash.
        found: PaymentHash,
    },
}

/// What a client requires of an invoice.
#[derive(Clone, Debug)]
pub struct InvoicePolicy {
    /// The network the wallet is on.
    pub currency: Currency,
    /// The most the client will pay for one token (the fee comes on top, capped separately).
    pub max_amount: Msat,
    /// How long before its expiry an invoice is no longer paid.
    pub expiry_margin: Duration,
}

/// The facts of an invoice a client shows and decides on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvoiceInfo {
    /// The network.
    pub currency: Currency,
    /// The amount, if any.
    pub amount: Option<Msat>,
    /// The payment hash.
    pub payment_hash: PaymentHash,
    /// Creation time, Unix seconds.
    pub created_at: u64,
    /// Expiry time, Unix seconds.
    pub expires_at: u64,
    /// The payee's node id (hex).
    pub payee: String,
    /// The description, or the hex description hash.
    pub description: String,
}

/// The network's common name (`bitcoin`, `testnet`, `regtest`, `signet`, `simnet`), not the invoice prefix.
pub fn network_name(currency: &Currency) -> &'static str {
    match currency {
        Currency::Bitcoin => "bitcoin",
        Currency::BitcoinTestnet => "testnet",
        Currency::Regtest => "regtest",
        Currency::Simnet => "simnet",
        Currency::Signet => "signet",
    }
}

/// Parses an invoice and reads the facts a client needs.
pub fn decode_invoice(invoice: &str) -> Result<(Bolt11Invoice, InvoiceInfo), InvoiceError> {
    let parsed: Bolt11Invoice = invoice.trim().parse().map_err(|e| InvoiceError::Parse(format!("{e}")))?;
    let created_at = parsed.duration_since_epoch().as_secs();
    let info = InvoiceInfo {
        currency: parsed.currency(),
        amount: parsed.amount_milli_satoshis().map(Msat),
        payment_hash: PaymentHash(*parsed.payment_hash().as_ref()),
        created_at,
        expires_at: created_at.saturating_add(parsed.expiry_time().as_secs()),
        payee: parsed.get_payee_pub_key().to_string(),
        description: match parsed.description() {
            Bolt11InvoiceDescriptionRef::Direct(d) => d.to_string(),
            Bolt11InvoiceDescriptionRef::Hash(h) => format!("hash:{}", h.0),
        },
    };
    Ok((parsed, info))
}

/// Checks an invoice against the policy and the macaroon's payment hash, at `now` (Unix time).
pub fn check_invoice(
    invoice: &str,
    expected_hash: &PaymentHash,
    policy: &InvoicePolicy,
    now: Duration,
) -> Result<(Bolt11Invoice, InvoiceInfo), InvoiceError> {
    let (parsed, info) = decode_invoice(invoice)?;
    if info.currency != policy.currency {
        return Err(InvoiceError::WrongNetwork {
            expected: network_name(&policy.currency).to_owned(),
            found: network_name(&info.currency).to_owned(),
        });
    }
    if info.payment_hash != *expected_hash {
        return Err(InvoiceError::HashMismatch { expected: *expected_hash, found: info.payment_hash });
    }
    let amount = info.amount.ok_or(InvoiceError::NoAmount)?;
    if amount.0 == 0 {
        return Err(InvoiceError::NoAmount);
    }
    if now.as_secs().saturating_add(policy.expiry_margin.as_secs()) >= info.expires_at {
        return Err(InvoiceError::Expired { expires_at: info.expires_at, margin_secs: policy.expiry_margin.as_secs() });
    }
    if amount > policy.max_amount {
        return Err(InvoiceError::OverCap { amount, cap: policy.max_amount });
    }
    Ok((parsed, info))
}

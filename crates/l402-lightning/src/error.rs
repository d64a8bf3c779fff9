//! Errors, typed by what the caller can do next.

use thiserror::Error;

/// A failure talking to the node (not a payment failure).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{kind}: {message}")]
pub struct LightningError {
    /// What went wrong.
    pub kind: LightningErrorKind,
    /// Detail for a human (never a secret).
    pub message: String,
}

impl LightningError {
    /// An error of `kind`.
    pub fn new(kind: LightningErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    /// Whether trying again later may succeed (the node was unreachable or busy).
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, LightningErrorKind::Unavailable | LightningErrorKind::Timeout)
    }
}

/// The kinds of [`LightningError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
#[non_exhaustive]
pub enum LightningErrorKind {
    /// The node cannot be reached, or is not ready.
    #[error("node unavailable")]
    Unavailable,
    /// A call took too long.
    #[error("timed out")]
    Timeout,
    /// The node's TLS certificate is not the one pinned.
    #[error("TLS certificate mismatch")]
    TlsCertificate,
    /// The credential (macaroon) was refused, or lacks a permission.
    #[error("authentication refused")]
    Unauthenticated,
    /// The node refused the request as invalid.
    #[error("invalid request")]
    InvalidRequest,
    /// The thing asked about does not exist.
    #[error("not found")]
    NotFound,
    /// The node is on another network than expected.
    #[error("wrong network")]
    WrongNetwork,
    /// Configuration (paths, URIs, keys) is wrong.
    #[error("configuration")]
    Config,
    /// Anything else the node reported.
    #[error("node error")]
    Internal,
}

/// Why a payment definitely failed (no money left the node for it).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PaymentFailure {
    /// No route with enough capacity within the fee limit.
    #[error("no route within the fee limit")]
    NoRoute,
    /// The payment timed out before a route succeeded.
    #[error("payment timed out")]
    Timeout,
    /// The node's channels do not hold enough to pay.
    #[error("insufficient balance")]
    InsufficientBalance,
    /// The payee refused the payment details (unknown hash, wrong amount, expired).
    #[error("incorrect payment details")]
    IncorrectPaymentDetails,
    /// The payment was canceled.
    #[error("canceled")]
    Canceled,
    /// The invoice expired before it could be paid.
    #[error("invoice expired")]
    InvoiceExpired,
    /// Another reason the node gave.
    #[error("payment failed: {0}")]
    Other(String),
}

/// What a client may do after a [`PaymentFailure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Never retry: it cannot succeed (or would overpay).
    Never,
    /// Retry once with a higher (still bounded) fee limit.
    WithHigherFee,
    /// Retry if the invoice is still valid.
    IfInvoiceValid,
}

impl PaymentFailure {
    /// The retry rule for this failure.
    pub fn retry(&self) -> Retry {
        match self {
            PaymentFailure::NoRoute => Retry::WithHigherFee,
            PaymentFailure::Timeout => Retry::IfInvoiceValid,
            _ => Retry::Never,
        }
    }

    /// A short stable name, for logs and exit messages.
    pub fn reason(&self) -> &'static str {
        match self {
            PaymentFailure::NoRoute => "no_route",
            PaymentFailure::Timeout => "timeout",
            PaymentFailure::InsufficientBalance => "insufficient_balance",
            PaymentFailure::IncorrectPaymentDetails => "incorrect_payment_details",
            PaymentFailure::Canceled => "canceled",
            PaymentFailure::InvoiceExpired => "invoice_expired",
            PaymentFailure::Other(_) => "other",
        }
    }
}

/// Why [`crate::Payer::pay`] did not return a preimage.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PayError {
    /// Refused before anything was sent (bad request, zero fee limit, amount mismatch).
    #[error("payment not sent: {0}")]
    Rejected(String),
    /// The payment definitely failed; no money moved.
    #[error(transparent)]
    Failed(#[from] PaymentFailure),
    /// The payment may be in flight or done: its outcome could not be learned. Track it by hash later;
    /// never pay this hash again until it is known to have failed.
    #[error("payment outcome unknown: {0}")]
    OutcomeUnknown(String),
    /// The node could not be asked to pay at all (nothing was sent).
    #[error(transparent)]
    Node(#[from] LightningError),
}

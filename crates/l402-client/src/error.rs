//! What can stop a request, typed by what the caller (or a script reading an exit code) can do about it.
//!
//! Refusals before paying ([`Error::Invoice`], [`Error::AmountMismatch`], [`Error::Budget`],
//! [`Error::NotReplayable`], [`Error::PlainHttp`], [`Error::AddressRefused`]) moved no money; a `Payment` charge
//! offer is refused for the same reasons, with the same errors, as an L402 one.
//! [`Error::PaymentFailed`] moved none either. [`Error::OutcomeUnknown`] may have: its budget reservation stays
//! in place and the next run looks the payment up by hash. [`Error::PaidButRefused`] means money moved and the
//! server did not honour the token: the token is kept with its preimage (the proof of payment);
//! [`Error::ChargeRefused`] is the same for a `Payment` charge (kept in the journal, challenge and preimage). A body too large
//! ([`Error::BodyTooLarge`]) or a server gone silent ([`Error::ReadTimeout`]) after paying leaves the token
//! stored and valid: the next request uses it.

use l402_lightning::{LightningError, PaymentFailure};
use l402_proto::{InvoiceError, Msat, PaymentHash, TokenId};
use thiserror::Error;

use crate::budget::LimitKind;

/// Why a request through the [`crate::Client`] did not produce a response.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// The request could not be built or the URL is not usable (no host, not http/https).
    #[error("invalid request: {0}")]
    Request(String),
    /// Talking to the server failed (after the retries the rules allow).
    #[error("HTTP: {0}")]
    Http(#[source] reqwest::Error),
    /// The server answered 402 without a usable L402 or `Payment` (Lightning charge) challenge (or with a
    /// macaroon that is not an L402 token, or a charge request that does not decode).
    #[error("402 without a usable L402 or Payment challenge: {0}")]
    Challenge(String),
    /// The invoice was refused before paying (over the price cap, amountless, wrong network, expired, or its
    /// payment hash is not the macaroon's).
    #[error("invoice refused before paying: {0}")]
    Invoice(#[from] InvoiceError),
    /// A `Payment` charge states one amount and its invoice asks for another; nothing was paid.
    #[error("charge refused before paying: it states {stated} but its invoice is for {invoice}")]
    AmountMismatch {
        /// The charge request's `amount`.
        stated: Msat,
        /// The invoice's amount.
        invoice: Msat,
    },
    /// Paying would exceed a budget limit; nothing was paid.
    #[error(
        "budget exhausted: {limit} limit of {limit_msat} msat, {spent_msat} msat spent or reserved, {needed_msat} msat needed"
    )]
    Budget {
        /// Which limit.
        limit: LimitKind,
        /// The limit (msat).
        limit_msat: u64,
        /// What is already spent or reserved in that limit's scope (msat).
        spent_msat: u64,
        /// What this payment needs (amount + fee limit, msat).
        needed_msat: u64,
    },
    /// The request body is a stream and cannot be sent again after paying; nothing was paid.
    #[error("the request body cannot be replayed after paying (a streaming body); nothing was paid")]
    NotReplayable,
    /// The payment definitely failed; no money moved. Its budget reservation was released.
    #[error("payment {payment_hash} failed: {failure}")]
    PaymentFailed {
        /// The payment hash.
        payment_hash: PaymentHash,
        /// Why, as the node reported it.
        failure: PaymentFailure,
    },
    /// The wallet refused to send the payment (nothing was sent).
    #[error("payment {payment_hash} not sent: {reason}")]
    PaymentRejected {
        /// The payment hash.
        payment_hash: PaymentHash,
        /// The wallet's reason.
        reason: String,
    },
    /// The payment may or may not have gone through. Its reservation is kept and it is never paid again: the
    /// next request to the same service (or `Client::recover`) looks it up by hash.
    #[error("payment {payment_hash} outcome unknown: {detail}")]
    OutcomeUnknown {
        /// The payment hash.
        payment_hash: PaymentHash,
        /// What is known.
        detail: String,
    },
    /// A paid token was refused by the server. It is kept, with its preimage, in state `refused`; no further
    /// payment is made to this origin and service until the user removes it.
    #[error("paid but refused: the server answered {status} to token {token_id} (kept as proof of payment)")]
    PaidButRefused {
        /// The token refused.
        token_id: TokenId,
        /// The HTTP status the server answered with.
        status: u16,
        /// What was paid for it (amount + fee).
        paid: Msat,
    },
    /// A paid `Payment` charge was refused by the server. The charge stays in the journal with its challenge
    /// and preimage (the proof of payment); it is not paid again in the same call.
    #[error(
        "paid but refused: the server answered {status} to the charge for payment {payment_hash} (challenge {challenge_id}; kept as proof of payment)"
    )]
    ChargeRefused {
        /// The charge's payment hash.
        payment_hash: PaymentHash,
        /// The charge's challenge id.
        challenge_id: String,
        /// The HTTP status the server answered with.
        status: u16,
        /// What was paid for it (amount + fee).
        paid: Msat,
    },
    /// The paywall refused a `Payment` session's credential (a challenge answered to it after the one top-up
    /// or challenge refresh allowed). What was paid into it stays in the journal; the session is marked
    /// `refused` and nothing more is paid in this call.
    #[error("paid but refused: the server answered {status} to session {session_id} (kept as proof of payment)")]
    SessionRefused {
        /// The session id (the deposit's payment hash, hex).
        session_id: String,
        /// The HTTP status the server answered with.
        status: u16,
    },
    /// The URL is `http://` and paying over plain http was not allowed ([`crate::ClientConfig::allow_http`]);
    /// nothing was paid.
    #[error("refusing to pay over plain http to {origin} (not allowed by the configuration); nothing was paid")]
    PlainHttp {
        /// The origin that asked for payment.
        origin: String,
    },
    /// The address is not one the client may connect to ([`crate::net::Destinations`]); nothing was sent.
    #[error("refusing to connect: {0}")]
    AddressRefused(crate::net::AddressRefused),
    /// A redirect that cannot be followed (too many, an unusable `Location`, a streaming body to resend).
    #[error("redirect: {0}")]
    Redirect(String),
    /// The response body is over the size cap; what was paid for is kept (the token stays stored).
    #[error("the response body is over the limit of {limit} bytes")]
    BodyTooLarge {
        /// The cap, bytes.
        limit: u64,
    },
    /// The server sent nothing for longer than the read timeout; what was paid for is kept.
    #[error("the server sent nothing within the read timeout")]
    ReadTimeout(#[source] reqwest::Error),
    /// The wallet (Lightning node) could not be used.
    #[error("wallet: {0}")]
    Wallet(#[from] LightningError),
    /// The local store (tokens, ledger, journal) failed.
    #[error("store: {0}")]
    Store(String),
    /// Waited too long for another request or process paying for the same service.
    #[error("timed out waiting for another payment to {0}")]
    LeaseTimeout(String),
}

impl Error {
    /// A short stable name for the error, for logs and JSON output.
    pub fn reason(&self) -> &'static str {
        match self {
            Error::Request(_) => "request",
            Error::Http(_) => "http",
            Error::Challenge(_) => "challenge",
            Error::Invoice(InvoiceError::OverCap { .. }) => "price_over_cap",
            Error::Invoice(InvoiceError::NoAmount) => "amountless_invoice",
            Error::Invoice(InvoiceError::WrongNetwork { .. }) => "wrong_network",
            Error::Invoice(InvoiceError::Expired { .. }) => "invoice_expired",
            Error::Invoice(InvoiceError::HashMismatch { .. }) => "payment_hash_mismatch",
            Error::Invoice(_) => "invoice_invalid",
            Error::AmountMismatch { .. } => "amount_mismatch",
            Error::Budget { .. } => "budget_exhausted",
            Error::NotReplayable => "not_replayable",
            Error::PaymentFailed { .. } => "payment_failed",
            Error::PaymentRejected { .. } => "payment_rejected",
            Error::OutcomeUnknown { .. } => "outcome_unknown",
            Error::PaidButRefused { .. } | Error::ChargeRefused { .. } | Error::SessionRefused { .. } => {
                "paid_but_refused"
            }
            Error::Wallet(_) => "wallet",
            Error::Store(_) => "store",
            Error::LeaseTimeout(_) => "lease_timeout",
            Error::PlainHttp { .. } => "plain_http",
            Error::AddressRefused(_) => "address_refused",
            Error::Redirect(_) => "redirect",
            Error::BodyTooLarge { .. } => "body_too_large",
            Error::ReadTimeout(_) => "read_timeout",
        }
    }

    /// The exit code `l402 fetch` exits with for this error (the README's list; the Python package's exceptions
    /// carry it too): 2 usage, 3 HTTP, 4 wallet, 5 challenge, 6 store; refused before paying: 10 price over the
    /// cap, 11 amountless invoice, 12 wrong network, 13 expired invoice (or charge challenge), 14 payment hash
    /// mismatch, 15 budget, 16 body not replayable, 17 plain http, 18 address refused, 19 a charge's amount not
    /// its invoice's; 20 payment failed, 21 outcome unknown, 22 paid but refused (token or charge); 23 body too
    /// large, 24 read timeout.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Request(_) => 2,
            Error::Http(_) | Error::Redirect(_) => 3,
            Error::Wallet(_) => 4,
            Error::Challenge(_) => 5,
            Error::Store(_) | Error::LeaseTimeout(_) => 6,
            Error::Invoice(InvoiceError::OverCap { .. }) => 10,
            Error::Invoice(InvoiceError::NoAmount) => 11,
            Error::Invoice(InvoiceError::WrongNetwork { .. }) => 12,
            Error::Invoice(InvoiceError::Expired { .. }) => 13,
            Error::Invoice(InvoiceError::HashMismatch { .. }) => 14,
            Error::Invoice(_) => 5,
            Error::Budget { .. } => 15,
            Error::NotReplayable => 16,
            Error::PlainHttp { .. } => 17,
            Error::AddressRefused(_) => 18,
            Error::AmountMismatch { .. } => 19,
            Error::BodyTooLarge { .. } => 23,
            Error::ReadTimeout(_) => 24,
            Error::PaymentFailed { .. } | Error::PaymentRejected { .. } => 20,
            Error::OutcomeUnknown { .. } => 21,
            Error::PaidButRefused { .. } | Error::ChargeRefused { .. } | Error::SessionRefused { .. } => 22,
        }
    }

    /// A transport error, typed: the resolver's refusal ([`Error::AddressRefused`]), a read timeout
    /// ([`Error::ReadTimeout`]; a connect timeout stays [`Error::Http`]), else [`Error::Http`].
    pub fn from_transport(e: reqwest::Error) -> Self {
        if let Some(refused) = crate::net::refused_in(&e) {
            return Error::AddressRefused(refused);
        }
        if e.is_timeout() && !e.is_connect() {
            return Error::ReadTimeout(e);
        }
        Error::Http(e)
    }
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Store(e.to_string())
    }
}

//! The `Payment` scheme's `session` intent (MPP, Aperture's wire): a deposit opens a balance that requests draw
//! on, top-ups add to it, and a close refunds what is left over Lightning.
//!
//! A service with a [`SessionSpec`] adds a `Payment ... intent="session"` line to its 402 (after the L402 and
//! charge lines): a deposit invoice of its own and the request `{amount, currency, depositAmount,
//! depositInvoice, description, paymentHash}` (`amount`: the price of one request, satoshis; `description`:
//! the service), its id an HMAC like a charge's ([`crate::charge`]), so the challenge is stored nowhere.
//!
//! The credential's payload is an action ([`l402_proto::mpp::SessionAction`]); its echoed challenge must be a
//! session challenge this server issued for this service (the HMAC id checked against every master key):
//! - `open {preimage, returnInvoice}`: the deposit's preimage; the node must say its invoice is settled; the
//!   return invoice must be an amountless invoice of this network that has not expired. The session (id = the
//!   deposit's payment hash) opens with the deposit as its balance, atomically with the deposit's credit (a
//!   payment is credited once, to one session). Presented again, an `open` is a `bearer`;
//! - `bearer {sessionId, preimage}`: sha256(preimage) must be the session id;
//! - `topUp {sessionId, topUpPreimage}`: the echoed challenge is the fresh one of a 402 (its invoice paid);
//!   credited once per payment hash, to one session;
//! - `close {sessionId, preimage, returnInvoice?}`: answered by the paywall itself, never forwarded. The balance
//!   becomes the refund owed, atomically (of racing closes one refunds), and is paid to the return invoice
//!   (a fresh `returnInvoice` replaces the stored one unless a refund to it may be under way) through the
//!   [`Refunder`]. A refund that fails for certain leaves the session `refund_failed`, the amount still
//!   owed: a close presented again tries again. One whose outcome is unknown stays `closing` and is tried
//!   again, on the same invoice (the node pays a hash once), after [`CLOSE_RETRY_AFTER`].
//!
//! Each request served (open, bearer, top-up) is debited the price of one request, at admission and atomically
//! (a balance never goes below zero, whatever the concurrency, on every instance sharing the store); a request
//! whose upstream cannot be reached gets it back ([`crate::store::TokenStore::undo_session_debit`]). A balance
//! that does not cover a request gets a 402 with fresh challenges (the session line's invoice is a top-up) and
//! the balance left. Unlike Aperture's, an `open` or `topUp` whose challenge expired is still accepted once its
//! invoice is settled (the money was paid), and `bearer` and `close` do not need an unexpired challenge.

use std::time::Duration;

use async_trait::async_trait;
use l402_lightning::{PayError, PayRequest, Payer};
use l402_proto::mpp::{PaymentChallenge, PaymentCredential, SessionAction, SessionRequest, b64url_encode, jcs};
use l402_proto::{Msat, PaymentHash, Preimage};
use serde_json::{Map, Value};
use std::sync::Arc;
use thiserror::Error;

/// The deposit, in requests, when a service names none (Aperture's multiplier).
pub const DEFAULT_DEPOSIT_REQUESTS: u64 = 20;
/// How long a close whose refund has an unknown outcome waits before a close presented again tries it again.
pub const CLOSE_RETRY_AFTER: Duration = Duration::from_secs(120);
/// The longest a refund payment is tried.
pub const REFUND_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest return invoice read (BOLT-11 strings of real invoices are well under 2,000 characters).
pub const MAX_RETURN_INVOICE: usize = 4096;

/// A service's session settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionSpec {
    /// The deposit (whole satoshis): what opening a session, and each top-up, costs.
    pub deposit: Msat,
}

impl SessionSpec {
    /// A deposit of `sat` satoshis.
    pub fn deposit_sat(sat: u64) -> Self {
        Self { deposit: Msat::from_sat(sat) }
    }
}

/// A session challenge offered in a 402.
#[derive(Clone, Debug)]
pub struct SessionOffer {
    /// The `WWW-Authenticate` value.
    pub header: String,
    /// Its deposit invoice's payment hash (the session id once paid and opened).
    pub payment_hash: PaymentHash,
    /// Its id (safe to log).
    pub challenge_id: String,
}

/// A request let through by a session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionPaid {
    /// The session id.
    pub id: PaymentHash,
    /// The service.
    pub service: String,
    /// Debited for this request.
    pub debited: Msat,
    /// The balance left after it.
    pub balance: Msat,
    /// What the request did besides: `open`, `bearer` or `topUp`.
    pub action: &'static str,
    /// The `Payment-Receipt` value for the response.
    pub receipt: String,
}

/// How a close's refund went (the receipt's `refundStatus`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefundStatus {
    /// Paid back.
    Succeeded,
    /// Not paid: still owed, a close presented again tries again.
    Failed,
    /// Nothing to refund.
    Skipped,
    /// The payment's outcome is not known yet: a close presented again reports it.
    Pending,
}

impl RefundStatus {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
            Self::Pending => "pending",
        }
    }
}

/// A session closed by its client: the paywall's answer (200, never forwarded).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionClosed {
    /// The session id.
    pub id: PaymentHash,
    /// The refund (owed, or paid).
    pub refund: Msat,
    /// How the refund went.
    pub status: RefundStatus,
    /// The `Payment-Receipt` value.
    pub receipt: String,
}

impl SessionClosed {
    /// The JSON body of the answer: `{"sessionId", "refundMsat", "refundStatus"}`.
    pub fn body(&self) -> String {
        serde_json::json!({
            "sessionId": hex::encode(self.id.0),
            "refundMsat": self.refund.0,
            "refundStatus": self.status.as_str(),
        })
        .to_string()
    }
}

/// Why a session credential was refused. [`crate::Refusal::status`] maps each to a status.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SessionRefusal {
    /// Not a Lightning session (another method or intent).
    #[error("not a lightning session")]
    NotASession,
    /// The challenge id is not one this server issued for these parameters.
    #[error("challenge id does not verify")]
    BadId,
    /// The request or the payload does not read.
    #[error("session credential: {0}")]
    Request(String),
    /// The challenge was issued for another service.
    #[error("session challenge was issued for another service")]
    WrongService,
    /// The preimage does not hash to the session id (or the invoice's payment hash).
    #[error("preimage does not match")]
    PreimageMismatch,
    /// The deposit or top-up invoice is not settled (yet).
    #[error("invoice not settled")]
    Unsettled,
    /// No session with this id is open for this service.
    #[error("unknown session")]
    UnknownSession,
    /// The session was closed.
    #[error("session closed")]
    Closed,
    /// The balance does not cover this request: top up.
    #[error("session balance {balance} does not cover {price}")]
    Insufficient {
        /// What is left.
        balance: Msat,
        /// The price of the request.
        price: Msat,
    },
    /// The payment was credited to another session.
    #[error("payment credited to another session")]
    Foreign,
    /// The return invoice cannot take a refund: it does not decode, carries an amount, is for another network,
    /// or expired.
    #[error("return invoice: {0}")]
    ReturnInvoice(String),
    /// A close of this session is under way.
    #[error("a close of this session is under way")]
    CloseUnderWay,
}

impl SessionRefusal {
    /// A short stable name, for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotASession => "session_not_lightning",
            Self::BadId => "session_bad_id",
            Self::Request(_) => "session_bad_request",
            Self::WrongService => "session_wrong_service",
            Self::PreimageMismatch => "session_preimage_mismatch",
            Self::Unsettled => "session_unsettled",
            Self::UnknownSession => "unknown_session",
            Self::Closed => "session_closed",
            Self::Insufficient { .. } => "session_insufficient",
            Self::Foreign => "session_foreign_payment",
            Self::ReturnInvoice(_) => "session_bad_return_invoice",
            Self::CloseUnderWay => "session_close_under_way",
        }
    }

    /// Whether the answer is a fresh 402: the balance is short (top up), or the invoice is not settled yet.
    pub fn wants_challenge(&self) -> bool {
        matches!(self, Self::Insufficient { .. } | Self::Unsettled | Self::NotASession | Self::WrongService)
    }

    /// Whether the answer is 400 (a request the client must change) rather than 401 (a credential refused).
    pub fn is_bad_request(&self) -> bool {
        matches!(self, Self::Request(_) | Self::ReturnInvoice(_))
    }

    /// Whether the answer is 409 (a close under way).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::CloseUnderWay)
    }
}

/// Pays refunds: an amount to an amountless invoice.
#[async_trait]
pub trait Refunder: Send + Sync {
    /// Pays `amount` to the amountless `bolt11` (payment hash `payment_hash`), within `max_fee`.
    async fn refund(
        &self,
        bolt11: &str,
        payment_hash: PaymentHash,
        amount: Msat,
        max_fee: Msat,
    ) -> Result<(), PayError>;
}

/// Refunds through a Lightning node ([`Payer::pay_amountless`]), trying for at most [`REFUND_TIMEOUT`].
pub struct PayerRefunder(pub Arc<dyn Payer>);

#[async_trait]
impl Refunder for PayerRefunder {
    async fn refund(
        &self,
        bolt11: &str,
        payment_hash: PaymentHash,
        amount: Msat,
        max_fee: Msat,
    ) -> Result<(), PayError> {
        let request = PayRequest { bolt11: bolt11.to_owned(), payment_hash, amount, max_fee, timeout: REFUND_TIMEOUT };
        self.0.pay_amountless(&request, &|_| {}).await.map(|_| ())
    }
}

/// The routing fee a refund may cost the server: 1% of it, at least 10 sat.
pub(crate) fn refund_max_fee(refund: Msat) -> Msat {
    Msat((refund.0 / 100).max(10_000))
}

/// The session request of a fresh challenge.
pub(crate) fn request_json(
    price_sat: u64,
    deposit_sat: u64,
    bolt11: &str,
    service: &str,
    hash: &PaymentHash,
) -> String {
    let mut m = Map::new();
    m.insert("amount".into(), Value::String(price_sat.to_string()));
    m.insert("currency".into(), Value::String(l402_proto::mpp::CURRENCY_SAT.into()));
    m.insert("depositAmount".into(), Value::String(deposit_sat.to_string()));
    m.insert("depositInvoice".into(), Value::String(bolt11.to_owned()));
    m.insert("description".into(), Value::String(service.to_owned()));
    m.insert("paymentHash".into(), Value::String(hex::encode(hash.0)));
    b64url_encode(jcs(&Value::Object(m)).as_bytes())
}

/// A session challenge for `request`, expiring at `expires` (RFC 3339), its id under `secret`.
pub(crate) fn challenge(secret: &[u8], realm: &str, request: &str, expires: &str) -> PaymentChallenge {
    let mut c = PaymentChallenge {
        realm: realm.to_owned(),
        method: l402_proto::mpp::METHOD_LIGHTNING.to_owned(),
        intent: l402_proto::mpp::INTENT_SESSION.to_owned(),
        request: request.to_owned(),
        expires: Some(expires.to_owned()),
        ..PaymentChallenge::default()
    };
    c.id = c.expected_id(secret);
    c
}

/// A session credential that passed the checks needing neither node nor store.
pub(crate) struct Prechecked {
    pub request: SessionRequest,
    pub action: SessionAction,
}

/// Method, intent, id (against every secret), the request for this service, the payload.
pub(crate) fn precheck(
    secrets: &[[u8; 32]],
    cred: &PaymentCredential,
    service: &str,
) -> Result<Prechecked, SessionRefusal> {
    let c = &cred.challenge;
    if c.method != l402_proto::mpp::METHOD_LIGHTNING || c.intent != l402_proto::mpp::INTENT_SESSION {
        return Err(SessionRefusal::NotASession);
    }
    if !secrets.iter().any(|s| c.verify_id(s)) {
        return Err(SessionRefusal::BadId);
    }
    let request = SessionRequest::decode(&c.request).map_err(|e| SessionRefusal::Request(e.to_string()))?;
    if request.description.as_deref() != Some(service) {
        return Err(SessionRefusal::WrongService);
    }
    let action = SessionAction::from_json(&cred.payload).map_err(|e| SessionRefusal::Request(e.to_string()))?;
    Ok(Prechecked { request, action })
}

/// A 64-hex-digit value (either case).
pub(crate) fn hex32(s: &str, what: &str) -> Result<[u8; 32], SessionRefusal> {
    let mut out = [0u8; 32];
    if s.len() != 64 || hex::decode_to_slice(s, &mut out).is_err() {
        return Err(SessionRefusal::Request(format!("{what} is not 64 hex digits")));
    }
    Ok(out)
}

/// A preimage that must hash to `expected`.
pub(crate) fn preimage_for(s: &str, expected: &PaymentHash) -> Result<Preimage, SessionRefusal> {
    let p = Preimage(hex32(s, "preimage")?);
    if p.payment_hash() != *expected {
        return Err(SessionRefusal::PreimageMismatch);
    }
    Ok(p)
}

/// Checks a return invoice: it decodes, has no amount, is for `currency`'s network, and has not expired at
/// `now`. Returns its payment hash.
pub(crate) fn check_return_invoice(
    bolt11: &str,
    currency: &l402_proto::lightning_invoice::Currency,
    now: u64,
) -> Result<PaymentHash, SessionRefusal> {
    if bolt11.len() > MAX_RETURN_INVOICE {
        return Err(SessionRefusal::ReturnInvoice("too long".into()));
    }
    let (_, info) = l402_proto::invoice::decode_invoice(bolt11)
        .map_err(|e| SessionRefusal::ReturnInvoice(format!("does not decode: {e}")))?;
    if info.amount.is_some() {
        return Err(SessionRefusal::ReturnInvoice("carries an amount: a refund needs an amountless invoice".into()));
    }
    if info.currency != *currency {
        return Err(SessionRefusal::ReturnInvoice("is for another network".into()));
    }
    if info.expires_at <= now {
        return Err(SessionRefusal::ReturnInvoice("expired".into()));
    }
    Ok(info.payment_hash)
}

/// A session receipt (Aperture's: `refundSats` and `refundStatus` on a close).
pub(crate) fn receipt(now: u64, id: &PaymentHash, challenge_id: &str, close: Option<(Msat, RefundStatus)>) -> String {
    let mut m = Map::new();
    m.insert("method".into(), Value::String(l402_proto::mpp::METHOD_LIGHTNING.into()));
    m.insert("reference".into(), Value::String(hex::encode(id.0)));
    m.insert("status".into(), Value::String("success".into()));
    m.insert("timestamp".into(), Value::String(l402_proto::rfc3339::format_utc(now)));
    match close {
        Some((refund, status)) => {
            m.insert("refundSats".into(), Value::from(refund.0 / 1000));
            m.insert("refundStatus".into(), Value::String(status.as_str().into()));
        }
        None => {
            m.insert("challengeId".into(), Value::String(challenge_id.to_owned()));
        }
    }
    b64url_encode(Value::Object(m).to_string().as_bytes())
}

//! The `Payment` scheme's Lightning charge (MPP, the `charge` intent), beside L402 on the same 402.
//!
//! A service with `Schemes { payment: true, .. }` adds a `Payment` line to its 402: an invoice of its own (the
//! service's price, in whole satoshis), the charge request (`amount`, `currency`, the invoice, its network and
//! payment hash; `description` names the service), an expiry ([`DEFAULT_CHARGE_EXPIRY`] from now) and an id
//! that is an HMAC over the challenge's parameters under a secret derived from the master key
//! ([`crate::secret::MasterKeys::payment_secrets`]), so the challenge itself is stored nowhere.
//!
//! A request presenting `Authorization: Payment <credential>` is checked, in this order: the method and
//! intent; the HMAC id (against every master key, so rotation keeps fresh challenges valid); the expiry; the
//! service it was issued for and its amount against this request's price; sha256(preimage) against the payment
//! hash; the invoice settled on the node; then, last and atomically, the payment hash recorded as spent
//! ([`crate::store::TokenStore::spend_charge`]): a charge pays for one request, even with two instances racing
//! on one PostgreSQL (on a metered service, `ServiceSpec::metered`, a charge is presented again until its
//! balance runs out: the metering decides). A credential refused for a reason the client can fix by paying gets a fresh 402; a
//! store or node failure refuses with 503. The 2xx carries a `Payment-Receipt`.

use std::time::Duration;

use l402_lightning::{InvoiceState, LightningError};
use l402_proto::mpp::{ChargeRequest, PaymentChallenge, PaymentCredential, Receipt};
use l402_proto::{Msat, PaymentHash, Preimage};
use thiserror::Error;

/// How long a `Payment` charge challenge can be paid and presented (Aperture's 15 minutes).
pub const DEFAULT_CHARGE_EXPIRY: Duration = Duration::from_secs(15 * 60);

/// The `Payment` scheme's settings: the realm its challenges name, the HMAC secrets of their ids (the first
/// issues, all verify), their expiry.
#[derive(Clone)]
pub struct PaymentScheme {
    pub(crate) realm: String,
    pub(crate) secrets: Vec<[u8; 32]>,
    pub(crate) expiry: Duration,
}

impl std::fmt::Debug for PaymentScheme {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaymentScheme")
            .field("realm", &self.realm)
            .field("expiry", &self.expiry)
            .finish_non_exhaustive()
    }
}

impl PaymentScheme {
    /// Challenges in `realm` with ids under `secrets` (at least one; the first issues).
    pub fn new(realm: impl Into<String>, secrets: Vec<[u8; 32]>) -> Option<Self> {
        (!secrets.is_empty()).then(|| Self { realm: realm.into(), secrets, expiry: DEFAULT_CHARGE_EXPIRY })
    }

    /// How long a challenge can be paid and presented.
    pub fn expiry(mut self, expiry: Duration) -> Self {
        self.expiry = expiry;
        self
    }
}

/// A `Payment` charge offered in a 402.
#[derive(Clone, Debug)]
pub struct ChargeOffer {
    /// The `WWW-Authenticate` value.
    pub header: String,
    /// Its invoice's payment hash.
    pub payment_hash: PaymentHash,
    /// Its id (safe to log).
    pub challenge_id: String,
}

/// A `Payment` charge accepted for a request, handed to the inner service as a request extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaidCharge {
    /// The payment hash (the receipt's reference).
    pub payment_hash: PaymentHash,
    /// The challenge id.
    pub challenge_id: String,
    /// The service paid for.
    pub service: String,
    /// The amount paid.
    pub amount: Msat,
    /// The `Payment-Receipt` value for the response.
    pub receipt: String,
}

/// Why a `Payment` credential was refused. Each is answered with a fresh 402 (as Aperture does), except where
/// [`crate::Refusal::status`] says otherwise.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ChargeRefusal {
    /// Not a Lightning charge (another method or intent).
    #[error("not a lightning charge: method {method:?}, intent {intent:?}")]
    NotACharge {
        /// The method named.
        method: String,
        /// The intent named.
        intent: String,
    },
    /// The challenge id is not one this server issued for these parameters.
    #[error("challenge id does not verify")]
    BadId,
    /// The challenge has no expiry, an unreadable one, or it passed.
    #[error("challenge expired")]
    Expired,
    /// The charge request does not decode.
    #[error("charge request: {0}")]
    Request(String),
    /// The charge was issued for another service, or for less than this request's price.
    #[error("charge was issued for another service or price")]
    WrongService,
    /// The preimage does not hash to the charge's payment hash.
    #[error("preimage does not match the payment hash")]
    PreimageMismatch,
    /// The node has not settled the invoice (yet): presenting the credential again once it has works.
    #[error("invoice not settled")]
    Unsettled,
    /// The charge paid for a request already.
    #[error("charge already spent")]
    Spent,
}

impl ChargeRefusal {
    /// A short stable name, for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            ChargeRefusal::NotACharge { .. } => "charge_not_lightning",
            ChargeRefusal::BadId => "charge_bad_id",
            ChargeRefusal::Expired => "charge_expired",
            ChargeRefusal::Request(_) => "charge_bad_request",
            ChargeRefusal::WrongService => "charge_wrong_service",
            ChargeRefusal::PreimageMismatch => "charge_preimage_mismatch",
            ChargeRefusal::Unsettled => "charge_unsettled",
            ChargeRefusal::Spent => "charge_spent",
        }
    }
}

/// The price of `service` in whole satoshis, as a charge carries it (rounded up).
pub(crate) fn price_sat(price: Msat) -> u64 {
    price.0.div_ceil(1000)
}

/// The network name a charge request carries for an invoice of this currency.
pub(crate) fn network_name(currency: &l402_proto::lightning_invoice::Currency) -> &'static str {
    use l402_proto::lightning_invoice::Currency as C;
    match currency {
        C::Bitcoin => "mainnet",
        C::BitcoinTestnet => "testnet",
        C::Regtest => "regtest",
        C::Simnet => "simnet",
        C::Signet => "signet",
    }
}

impl PaymentScheme {
    /// The challenge for a fresh invoice of `amount_sat` for `service`, expiring at `expires_at`.
    pub(crate) fn challenge(
        &self,
        service: &str,
        amount_sat: u64,
        bolt11: &str,
        network: &str,
        payment_hash: PaymentHash,
        expires_at: u64,
    ) -> ChargeOffer {
        let request = ChargeRequest::lightning(amount_sat, bolt11, network, payment_hash.0).description(service);
        let expires = l402_proto::rfc3339::format_utc(expires_at);
        let challenge = PaymentChallenge::charge(&self.secrets[0], &self.realm, &request.encode(), &expires);
        ChargeOffer { header: challenge.header_value(), payment_hash, challenge_id: challenge.id.clone() }
    }

    /// The checks that need neither the node nor the store: method, id, expiry, service and amount, preimage.
    /// Returns the payment hash, the amount and the challenge's expiry.
    pub(crate) fn precheck(
        &self,
        cred: &PaymentCredential,
        service: &str,
        price: Msat,
        now: u64,
    ) -> Result<(PaymentHash, Msat, u64), ChargeRefusal> {
        let c = &cred.challenge;
        if c.method != "lightning" || c.intent != "charge" {
            return Err(ChargeRefusal::NotACharge { method: c.method.clone(), intent: c.intent.clone() });
        }
        if !self.secrets.iter().any(|s| c.verify_id(s)) {
            return Err(ChargeRefusal::BadId);
        }
        let expires_at = c.expires.as_deref().and_then(l402_proto::rfc3339::parse).ok_or(ChargeRefusal::Expired)?;
        if now >= expires_at {
            return Err(ChargeRefusal::Expired);
        }
        let request = ChargeRequest::decode(&c.request).map_err(|e| ChargeRefusal::Request(e.to_string()))?;
        if request.description.as_deref() != Some(service) || request.amount < price_sat(price) {
            return Err(ChargeRefusal::WrongService);
        }
        let preimage: Preimage = cred.charge_preimage().map_err(|e| ChargeRefusal::Request(e.to_string()))?;
        let payment_hash = PaymentHash(request.method_details.payment_hash);
        if preimage.payment_hash() != payment_hash {
            return Err(ChargeRefusal::PreimageMismatch);
        }
        Ok((payment_hash, Msat::from_sat(request.amount), expires_at))
    }
}

/// Whether the node says the charge's invoice is settled.
pub(crate) fn settled(state: Result<InvoiceState, LightningError>) -> Result<bool, LightningError> {
    Ok(matches!(state?, InvoiceState::Settled(_)))
}

/// The receipt of an accepted charge, at `now`.
pub(crate) fn receipt(payment_hash: &PaymentHash, challenge_id: &str, now: u64) -> String {
    Receipt::success(&l402_proto::rfc3339::format_utc(now), &hex::encode(payment_hash.0), challenge_id).encode()
}

//! The paywall: mint and challenge, authenticate, revoke. Transport-free; [`crate::layer`] puts it in front
//! of a service.
//!
//! Authenticating a request never calls the Lightning node: parse the credential, check the token id against
//! the revocation set, find the token's root key, check the preimage, the HMAC chain and the caveats (the
//! service at its tier, the capability, the expiry). A store failure refuses the request (503): no request
//! passes unpaid because the store could not be asked.
//!
//! Two kinds of token:
//! - **stateless** (with [`PaywallBuilder::master_keys`]): the token id says it is stateless and which master
//!   key minted it, and its root key is derived from that key ([`crate::secret`]). An unpaid challenge writes
//!   nothing to the store and a verification reads nothing from it; the token is recorded once, when its
//!   payment is seen or when it is first used (by the recorder, off the request path), for the admin listing and the revenue;
//! - **stored** (the default, and every token minted before master keys were configured): the root key is
//!   written to the store at mint time and read (then cached) at verification. Such tokens keep working
//!   after master keys are configured.
//!
//! Revocation, for both kinds: refused at once by the instance that revoked, and by every instance sharing
//! the store within 2 × the revocation poll interval ([`crate::revocation`]; default 1 s, so 2 s).

mod sessions;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt as _;
use http::HeaderMap;
use l402_lightning::{InvoiceIssuer, InvoiceRequest, LightningError, LightningErrorKind};
use l402_proto::caveat::CAPABILITIES_SUFFIX;
use l402_proto::challenge::challenge_lines;
use l402_proto::{
    Access, Caveat, Credential, DecodeError, Identifier, Macaroon, MacaroonKey, Msat, PaymentHash, RootKey, Service,
    TokenId, VerifyError, grants_tier, verify,
};
use thiserror::Error;

use crate::cache::{
    Bounded, DEFAULT_KEY_CACHE_SIZE, DEFAULT_KEY_CACHE_TTL, DEFAULT_VERIFIED_STATELESS_SIZE, KeyCache, StatelessCache,
    VerifiedCache,
};
use crate::charge::{ChargeOffer, ChargeRefusal, PaidCharge, PaymentScheme};
use crate::metrics::{LightningOp, Metrics};
use crate::pricing::{Charge, ServiceSpec};
use crate::recorder::{DEFAULT_PENDING_SIZE, DEFAULT_RECORDED_SIZE, Recorder};
use crate::revocation::{DEFAULT_REVOCATION_POLL, Revocations};
use crate::secret::{MasterKeys, SecretError};
use crate::session::{Refunder, SessionClosed, SessionOffer, SessionPaid, SessionRefusal};
use crate::store::{KeyLookup, NewToken, SpentCharge, StoreError, TokenStore, UsedToken};

/// The time source: Unix seconds.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

/// The default expiry of challenge invoices.
pub const DEFAULT_INVOICE_EXPIRY: Duration = Duration::from_secs(600);

/// A verified token, handed to the inner service as a request extension.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L402Token {
    /// The token id (safe to log).
    pub token_id: TokenId,
    /// The payment hash it was paid under.
    pub payment_hash: PaymentHash,
    /// The service accessed.
    pub service: String,
    /// The capabilities it grants on that service (`None`: not restricted by capability).
    pub capabilities: Option<Vec<String>>,
    /// When it expires for that service.
    pub valid_until: Option<u64>,
}

/// A fresh challenge: what a 402 carries.
#[derive(Clone, Debug)]
pub struct Minted {
    /// The macaroon.
    pub macaroon: Macaroon,
    /// The invoice to pay.
    pub invoice: String,
    /// The token id.
    pub token_id: TokenId,
    /// The price.
    pub price: Msat,
}

impl Minted {
    /// The two `WWW-Authenticate` values, LSAT first (as Aperture sends them).
    pub fn header_values(&self) -> [String; 2] {
        challenge_lines(&self.macaroon, &self.invoice)
    }
}

/// What a 402 offers: an L402 token, a `Payment` charge, or both, as the service's schemes say.
#[derive(Clone, Debug)]
pub struct Offers {
    /// The L402 token minted (the `LSAT` and `L402` lines).
    pub l402: Option<Minted>,
    /// The `Payment` charge (its line comes after the L402 ones, as Aperture sends it).
    pub payment: Option<ChargeOffer>,
    /// The `Payment` session (its line comes last; on a request whose session ran short, a top-up).
    pub session: Option<SessionOffer>,
}

impl Offers {
    /// The `WWW-Authenticate` values, in order.
    pub fn header_values(&self) -> Vec<String> {
        let mut v: Vec<String> = self.l402.iter().flat_map(Minted::header_values).collect();
        v.extend(self.payment.iter().map(|p| p.header.clone()));
        v.extend(self.session.iter().map(|p| p.header.clone()));
        v
    }
}

/// A request let through: by an L402 token (reusable), or by a `Payment` charge (spent by this request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authorized {
    /// A verified L402 token.
    Token(L402Token),
    /// A charge, now spent.
    Charge(PaidCharge),
    /// A request drawn from a session's balance (opened or topped up by this request, maybe).
    Session(SessionPaid),
    /// A session closed: the paywall answers this request itself (200, never forwarded).
    SessionClosed(SessionClosed),
}

/// Why a request was not let through. Each maps to a status (see [`Refusal::status`]).
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Refusal {
    /// No credential: pay first (402, with a challenge).
    #[error("payment required")]
    PaymentRequired,
    /// The credential does not parse (401).
    #[error("malformed credential: {0}")]
    Malformed(DecodeError),
    /// The credential does not verify, or cannot grant this request (401, or 402 when a new token would).
    #[error("credential refused: {0}")]
    Invalid(VerifyError),
    /// The token was revoked (401).
    #[error("token revoked")]
    Revoked,
    /// No token with this identifier was minted here (401).
    #[error("unknown token")]
    UnknownToken,
    /// The capability required is not one this service's tokens grant: paying would not help (403).
    #[error("no token of this service grants capability {0:?}")]
    Forbidden(String),
    /// The store could not be asked (503; nothing passes).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No invoice could be created for a challenge, or a charge's invoice could not be looked up (503).
    #[error("lightning backend: {0}")]
    Lightning(LightningError),
    /// A `Payment` credential was refused (402 with a fresh challenge, or 401 when it is forged).
    #[error("payment credential refused: {0}")]
    Charge(ChargeRefusal),
    /// A `Payment` session credential was refused (402 when the balance is short, 400, 401 or 409).
    #[error("session credential refused: {0}")]
    Session(SessionRefusal),
    /// A refund could not be paid because this paywall has no [`Refunder`] (503).
    #[error("no refunder configured")]
    NoRefunder,
}

impl Refusal {
    /// A short stable name, for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::PaymentRequired => "payment_required",
            Refusal::Malformed(DecodeError::NoCredential) => "no_credential",
            Refusal::Malformed(DecodeError::HexLength { .. } | DecodeError::NotLowercaseHex { .. }) => "bad_preimage",
            Refusal::Malformed(_) => "malformed",
            Refusal::Invalid(e) => e.reason(),
            Refusal::Revoked => "revoked",
            Refusal::UnknownToken => "unknown_token",
            Refusal::Forbidden(_) => "forbidden",
            Refusal::Store(_) => "store_unavailable",
            Refusal::Lightning(_) => "lightning_unavailable",
            Refusal::Charge(c) => c.reason(),
            Refusal::Session(s) => s.reason(),
            Refusal::NoRefunder => "no_refunder",
        }
    }

    /// Whether the answer should be a fresh 402 challenge: no credential, or one that a new token would fix.
    pub fn wants_challenge(&self) -> bool {
        matches!(
            self,
            Refusal::PaymentRequired
                | Refusal::Invalid(
                    VerifyError::Expired { .. }
                        | VerifyError::ServiceNotGranted { .. }
                        | VerifyError::CapabilityNotGranted { .. }
                )
                | Refusal::Charge(
                    ChargeRefusal::Expired
                        | ChargeRefusal::WrongService
                        | ChargeRefusal::Unsettled
                        | ChargeRefusal::Spent
                        | ChargeRefusal::NotACharge { .. }
                )
        ) || matches!(self, Refusal::Session(s) if s.wants_challenge())
    }

    /// The HTTP status.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            _ if self.wants_challenge() => S::PAYMENT_REQUIRED,
            Refusal::Forbidden(_) => S::FORBIDDEN,
            Refusal::Store(_) | Refusal::Lightning(_) | Refusal::NoRefunder => S::SERVICE_UNAVAILABLE,
            Refusal::Session(s) if s.is_bad_request() => S::BAD_REQUEST,
            Refusal::Session(s) if s.is_conflict() => S::CONFLICT,
            _ => S::UNAUTHORIZED,
        }
    }
}

/// The paywall.
pub struct Paywall {
    store: Arc<dyn TokenStore>,
    issuer: Arc<dyn InvoiceIssuer>,
    cache: KeyCache,
    verified: VerifiedCache,
    /// Stateless tokens verified (compact: a working set of a million fits).
    seen: StatelessCache,
    metrics: Arc<Metrics>,
    clock: Clock,
    invoice_expiry: Duration,
    keys: Option<MasterKeys>,
    revocations: Arc<Revocations>,
    recorder: Recorder,
    /// The services of recent stored-token challenges, by payment hash: their settlement is counted for it.
    stored_pending: Bounded<PaymentHash, String>,
    payment: Option<PaymentScheme>,
    refunder: Option<Arc<dyn Refunder>>,
}

impl std::fmt::Debug for Paywall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paywall")
            .field("invoice_expiry", &self.invoice_expiry)
            .field("stateless", &self.keys.is_some())
            .finish_non_exhaustive()
    }
}

/// Builds a [`Paywall`].
pub struct PaywallBuilder {
    store: Arc<dyn TokenStore>,
    issuer: Arc<dyn InvoiceIssuer>,
    key_cache_ttl: Duration,
    key_cache_size: usize,
    clock: Clock,
    invoice_expiry: Duration,
    metrics: Arc<Metrics>,
    keys: Option<MasterKeys>,
    revocation_poll: Duration,
    recorded_size: usize,
    pending_size: usize,
    stateless_size: usize,
    payment: Option<PaymentScheme>,
    refunder: Option<Arc<dyn Refunder>>,
}

impl PaywallBuilder {
    /// Offer and accept the `Payment` scheme's Lightning charge on services whose schemes include it
    /// ([`crate::charge`]). Without it those services offer L402 only.
    pub fn payment_scheme(mut self, scheme: PaymentScheme) -> Self {
        self.payment = Some(scheme);
        self
    }

    /// Pay session refunds through `refunder` ([`crate::session`]). Without one, a close of a session with a
    /// balance is refused (503) and the session stays open.
    pub fn refunder(mut self, refunder: Arc<dyn Refunder>) -> Self {
        self.refunder = Some(refunder);
        self
    }

    /// Mint stateless tokens under these master keys (the first mints, all verify): challenges write nothing
    /// to the store and verifications read nothing from it. Tokens minted before, with their root key in the
    /// store, keep working. Without master keys every token is stored at mint time.
    pub fn master_keys(mut self, keys: MasterKeys) -> Self {
        self.keys = Some(keys);
        self
    }

    /// How often the revocation list is read from the store (default 1 s). A token revoked through another
    /// instance is refused here within twice this.
    pub fn revocation_poll_interval(mut self, interval: Duration) -> Self {
        self.revocation_poll = interval;
        self
    }

    /// How many stateless tokens are remembered as recorded (default 2,000,000, about 70 MB when full): keep
    /// it above the number of tokens in use, or tokens past it are written again (each write finds the record
    /// and changes nothing).
    pub fn recorded_tokens_size(mut self, n: usize) -> Self {
        self.recorded_size = n.max(1);
        self
    }

    /// How many recent challenges are remembered so that their settlement records the token (default
    /// 100,000). A token whose challenge was forgotten is recorded at its first use.
    pub fn pending_challenges_size(mut self, n: usize) -> Self {
        self.pending_size = n.max(1);
        self
    }

    /// How long a cached root key (of a stored token) is trusted without reading the store again; zero
    /// disables caching. Not a revocation bound: every verification checks the revocation set.
    pub fn key_cache_ttl(mut self, ttl: Duration) -> Self {
        self.key_cache_ttl = ttl;
        self
    }

    /// How many keys the cache holds (and how many tokens the verified-credential cache holds: one entry per
    /// token).
    pub fn key_cache_size(mut self, n: usize) -> Self {
        self.key_cache_size = n.max(1);
        self
    }

    /// How many stateless tokens the verified-stateless cache holds (about 100 bytes each, 200 MB for a million; a hit
    /// skips key derivation and the HMAC chain; 0: none, every stateless token is verified whole). A working set up to
    /// that size is held whole; when it is full, what was not used recently gives way. Default
    /// [`DEFAULT_VERIFIED_STATELESS_SIZE`]. Independent of [`PaywallBuilder::key_cache_ttl`], which is about stored
    /// tokens: nothing in this cache can go stale.
    pub fn verified_stateless_size(mut self, n: usize) -> Self {
        self.stateless_size = n;
        self
    }

    /// The clock (tests move time with it).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The expiry of challenge invoices.
    pub fn invoice_expiry(mut self, expiry: Duration) -> Self {
        self.invoice_expiry = expiry;
        self
    }

    /// Counters shared with another component (the proxy's `/metrics`).
    pub fn metrics(mut self, metrics: Arc<Metrics>) -> Self {
        self.metrics = metrics;
        self
    }

    /// The paywall.
    pub fn build(self) -> Arc<Paywall> {
        let recorder = Recorder::new(
            self.store.clone(),
            self.metrics.clone(),
            self.recorded_size,
            self.pending_size,
            self.invoice_expiry + Duration::from_secs(60),
        );
        Arc::new(Paywall {
            store: self.store,
            issuer: self.issuer,
            cache: KeyCache::new(self.key_cache_ttl, self.key_cache_size),
            verified: VerifiedCache::new(self.key_cache_ttl, self.key_cache_size),
            seen: StatelessCache::new(self.stateless_size),
            metrics: self.metrics,
            clock: self.clock,
            invoice_expiry: self.invoice_expiry,
            keys: self.keys,
            revocations: Arc::new(Revocations::new(self.revocation_poll)),
            recorder,
            stored_pending: Bounded::new(self.pending_size),
            payment: self.payment,
            refunder: self.refunder,
        })
    }
}

/// The capabilities a verified credential grants on `service` (its last `<service>_capabilities` caveat; the
/// verification checked that each one only narrows), `None` if none restricts it.
fn granted_capabilities(cred: &Credential, service: &str) -> Option<Vec<String>> {
    cred.macaroon
        .caveats()
        .filter_map(|c| std::str::from_utf8(c).ok())
        .filter_map(|c| c.split_once('='))
        .filter(|(cond, _)| cond.strip_suffix(CAPABILITIES_SUFFIX) == Some(service))
        .last()
        .map(|(_, v)| v.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect())
}

/// A service name as the stateless cache keeps it (a 64-bit SipHash under a fixed key: the names are the
/// operator's, a handful; a token verified for one service is only a hit for the same one).
fn service_tag(service: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    service.hash(&mut h);
    h.finish()
}

fn random32() -> Result<[u8; 32], Refusal> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).map_err(|e| Refusal::Store(StoreError(format!("no randomness: {e}"))))?;
    Ok(b)
}

impl Paywall {
    /// A paywall over a token store and an invoice issuer.
    pub fn builder(store: Arc<dyn TokenStore>, issuer: Arc<dyn InvoiceIssuer>) -> PaywallBuilder {
        PaywallBuilder {
            store,
            issuer,
            key_cache_ttl: DEFAULT_KEY_CACHE_TTL,
            key_cache_size: DEFAULT_KEY_CACHE_SIZE,
            clock: system_clock(),
            invoice_expiry: DEFAULT_INVOICE_EXPIRY,
            metrics: Arc::new(Metrics::default()),
            keys: None,
            revocation_poll: DEFAULT_REVOCATION_POLL,
            recorded_size: DEFAULT_RECORDED_SIZE,
            pending_size: DEFAULT_PENDING_SIZE,
            stateless_size: DEFAULT_VERIFIED_STATELESS_SIZE,
            payment: None,
            refunder: None,
        }
    }

    /// The counters.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn TokenStore> {
        &self.store
    }

    /// The current time, Unix seconds.
    pub fn now(&self) -> u64 {
        (self.clock)()
    }

    /// Mints a token for `charge` and creates its invoice. A stateless token is only remembered in memory
    /// (for its settlement); a stored one is written to the store.
    pub async fn mint(&self, charge: &Charge) -> Result<Minted, Refusal> {
        let spec: &ServiceSpec = &charge.service;
        let memo = format!("L402 token for {}", spec.name);
        let request = InvoiceRequest { amount: charge.price, memo, expiry: self.invoice_expiry };
        let invoice = self.priced_invoice(&request).await?;
        let now = self.now();
        let expires_at = spec.lifetime.map(|l| now.saturating_add(l.as_secs()));
        let (macaroon, token_id) = if let Some(keys) = &self.keys {
            let (macaroon, token_id) = mint_stateless(keys, invoice.payment_hash, spec, now).map_err(no_randomness)?;
            self.recorder.minted(invoice.payment_hash, token_id, &charge.service, charge.price, expires_at);
            (macaroon, token_id)
        } else {
            let token_id = TokenId(random32()?);
            let root_key = RootKey(random32()?);
            let id = Identifier::new(invoice.payment_hash, token_id);
            let macaroon = Macaroon::mint(&root_key, &id, &caveats(spec, now));
            let record = NewToken {
                id_hash: macaroon.identifier_hash(),
                token_id,
                payment_hash: invoice.payment_hash,
                service: spec.name.clone(),
                price: charge.price,
                root_key,
                created_at: now,
                expires_at,
            };
            self.store.insert(&record).await?;
            self.stored_pending.insert(invoice.payment_hash, spec.name.clone());
            (macaroon, token_id)
        };
        self.metrics.challenges_issued.fetch_add(1, Ordering::Relaxed);
        self.metrics.challenge(&spec.name, false);
        tracing::debug!(token_id = %token_id, service = %spec.name, price_msat = charge.price.0, "minted");
        Ok(Minted { macaroon, invoice: invoice.bolt11, token_id, price: charge.price })
    }

    /// Finds the credential in a request's headers: `Authorization` values first, then `Grpc-Metadata-Macaroon`
    /// and `Macaroon`. `Ok(None)` when there is none at all.
    pub fn credential(headers: &HeaderMap) -> Result<Option<Credential>, DecodeError> {
        let auth = headers.get_all(http::header::AUTHORIZATION);
        if auth.iter().next().is_some() {
            match Credential::from_authorization(auth.iter().map(http::HeaderValue::as_bytes)) {
                Ok(c) => return Ok(Some(c)),
                Err(DecodeError::NoCredential) => {}
                Err(e) => return Err(e),
            }
        }
        for name in ["grpc-metadata-macaroon", "macaroon"] {
            if let Some(v) = headers.get(name) {
                return Credential::from_macaroon_header(v.as_bytes()).map(Some);
            }
        }
        Ok(None)
    }

    /// What a 402 for `charge` offers: a token if the service takes L402, a charge if it takes the `Payment`
    /// scheme and this paywall has one ([`PaywallBuilder::payment_scheme`]).
    pub async fn offers(&self, charge: &Charge) -> Result<Offers, Refusal> {
        let schemes = charge.service.schemes;
        let payment = match (&self.payment, schemes.payment) {
            (Some(p), true) => Some(self.offer_charge(p, charge).await?),
            _ => None,
        };
        let session = match (&self.payment, &charge.service.session) {
            (Some(p), Some(spec)) => Some(self.offer_session(p, spec, charge).await?),
            _ => None,
        };
        let l402 = if schemes.l402 || (payment.is_none() && session.is_none()) {
            Some(self.mint(charge).await?)
        } else {
            None
        };
        if l402.is_none() {
            self.metrics.challenges_issued.fetch_add(1, Ordering::Relaxed);
        }
        if payment.is_some() || session.is_some() {
            self.metrics.challenge(&charge.service.name, true);
        }
        Ok(Offers { l402, payment, session })
    }

    /// A fresh `Payment` charge for `charge`: an invoice of its own, nothing written anywhere.
    async fn offer_charge(&self, scheme: &PaymentScheme, charge: &Charge) -> Result<ChargeOffer, Refusal> {
        let spec = &charge.service;
        let amount_sat = crate::charge::price_sat(charge.price);
        let memo = format!("Payment charge for {}", spec.name);
        let request = InvoiceRequest { amount: Msat::from_sat(amount_sat), memo, expiry: scheme.expiry };
        let invoice = self.priced_invoice(&request).await?;
        let network = l402_proto::invoice::decode_invoice(&invoice.bolt11)
            .map(|(_, info)| crate::charge::network_name(&info.currency))
            .map_err(|e| Refusal::Lightning(LightningError::new(LightningErrorKind::Internal, e.to_string())))?;
        let expires_at = self.now().saturating_add(scheme.expiry.as_secs());
        let offer =
            scheme.challenge(&spec.name, amount_sat, &invoice.bolt11, network, invoice.payment_hash, expires_at);
        tracing::debug!(challenge_id = %offer.challenge_id, service = %spec.name, "payment charge offered");
        Ok(offer)
    }

    /// Authorizes a request for `charge` by whichever scheme its credential is in: a `Payment` credential on
    /// a service that takes the scheme ([`crate::charge`]: spent by this request), else an L402 credential
    /// ([`Paywall::authenticate`]). A service that takes only the `Payment` scheme answers any other
    /// credential with a 402.
    pub async fn authorize(&self, headers: &HeaderMap, charge: &Charge) -> Result<Authorized, Refusal> {
        let schemes = charge.service.schemes;
        let sessions = charge.service.session.is_some();
        if let (Some(scheme), true) = (&self.payment, schemes.payment || sessions) {
            let values = headers.get_all(http::header::AUTHORIZATION);
            match l402_proto::mpp::PaymentCredential::from_authorization(values.iter().map(http::HeaderValue::as_bytes))
            {
                Ok(Some(cred)) if sessions && cred.challenge.intent == l402_proto::mpp::INTENT_SESSION => {
                    return self.check_session(scheme, &cred, charge).await;
                }
                Ok(Some(cred)) if schemes.payment => {
                    return self.check_charge(scheme, &cred, charge).await.map(Authorized::Charge);
                }
                Ok(Some(_)) => return Err(Refusal::Session(SessionRefusal::NotASession)),
                Ok(None) => {}
                Err(e) => return Err(Refusal::Charge(ChargeRefusal::Request(e.to_string()))),
            }
        }
        if !schemes.l402 {
            return Err(Refusal::PaymentRequired);
        }
        self.authenticate(headers, charge).await.map(Authorized::Token)
    }

    /// Checks a `Payment` charge credential and spends it ([`crate::charge`] lists the checks).
    async fn check_charge(
        &self,
        scheme: &PaymentScheme,
        cred: &l402_proto::mpp::PaymentCredential,
        charge: &Charge,
    ) -> Result<PaidCharge, Refusal> {
        let now = self.now();
        let service = &charge.service.name;
        let (payment_hash, amount, expires_at) =
            scheme.precheck(cred, service, charge.price, now).map_err(Refusal::Charge)?;
        let state = self.issuer.lookup_invoice(&payment_hash).await;
        if !crate::charge::settled(state).map_err(|e| self.lightning(LightningOp::LookupInvoice, e))? {
            return Err(Refusal::Charge(ChargeRefusal::Unsettled));
        }
        let challenge_id = cred.challenge.id.clone();
        let spent = SpentCharge {
            payment_hash,
            challenge_id: challenge_id.clone(),
            service: service.clone(),
            amount,
            consumed_at: now,
            expires_at,
        };
        if self.store.spend_charge(&spent).await? {
            self.metrics.charge_paid(service, amount);
            tracing::debug!(challenge_id = %challenge_id, service = %service, "payment charge spent");
        } else if !charge.service.metered {
            return Err(Refusal::Charge(ChargeRefusal::Spent));
        }
        let receipt = crate::charge::receipt(&payment_hash, &challenge_id, now);
        Ok(PaidCharge { payment_hash, challenge_id, service: service.clone(), amount, receipt })
    }

    /// Authenticates a request for `charge`: finds its credential ([`Paywall::credential`]) and checks it
    /// ([`Paywall::check`]).
    pub async fn authenticate(&self, headers: &HeaderMap, charge: &Charge) -> Result<L402Token, Refusal> {
        let cred = Self::credential(headers).map_err(Refusal::Malformed)?.ok_or(Refusal::PaymentRequired)?;
        self.check(&cred, charge).await
    }

    /// Whether a token verified earlier grants this request now: same service and tier, not expired, the
    /// capability (if one is required) among those it grants. Anything else takes the full path, which says
    /// why not.
    fn still_grants(&self, token: &L402Token, tier: u32, charge: &Charge) -> bool {
        token.service == charge.service.name
            && tier == charge.service.tier
            && token.valid_until.is_none_or(|t| self.now() < t)
            && match (&charge.capability, &token.capabilities) {
                (None, _) | (Some(_), None) => true,
                (Some(c), Some(granted)) => granted.iter().any(|g| g == c),
            }
    }

    /// Verifies a parsed credential for `charge`.
    ///
    /// The token id is checked against the revocation set first, always. A credential verified within the
    /// key-cache TTL (the same macaroon and preimage: one entry per token) then skips key derivation and the
    /// HMAC chain; its service, tier, expiry and capability are still checked against this request. A
    /// stateless token has a cache of its own, compact and with no TTL (nothing in it can go stale: see
    /// `StatelessCache`), which it enters once it is recorded.
    pub async fn check(&self, cred: &Credential, charge: &Charge) -> Result<L402Token, Refusal> {
        let id = cred.macaroon.l402_identifier().map_err(|e| Refusal::Invalid(e.into()))?;
        self.revocations.ensure_fresh(&self.store).await?;
        if self.revocations.contains(&id.token_id) {
            return Err(Refusal::Revoked);
        }
        if self.keys.is_some() {
            let service = &charge.service.name;
            let hit = self.seen.get(&id.token_id, &id.payment_hash, cred, |s| {
                (s.tier == charge.service.tier && s.service == service_tag(service)).then(|| s.valid_until())
            });
            if let Some(Some(valid_until)) = hit {
                let token = L402Token {
                    token_id: id.token_id,
                    payment_hash: id.payment_hash,
                    service: service.clone(),
                    capabilities: granted_capabilities(cred, service),
                    valid_until,
                };
                if self.still_grants(&token, charge.service.tier, charge) {
                    self.metrics.tokens_verified.inc();
                    self.metrics.verified_cache_hits.inc();
                    return Ok(token);
                }
            }
        }
        // A stored token's cache (the two hold different tokens: looked at second, as stateless tokens are the
        // usual ones where master keys are).
        if let Some(hit) = self.verified.get(&id.token_id, cred, |v| self.still_grants(&v.token, v.tier, charge)) {
            self.metrics.tokens_verified.inc();
            self.metrics.verified_cache_hits.inc();
            return Ok(hit);
        }
        let stateless = self.keys.as_ref().and_then(|k| k.root_key(&id.token_id));
        let (key, paid, key_until) = match &stateless {
            Some(root_key) => (MacaroonKey::derive(root_key), true, None),
            None => {
                let (key, paid, at) = self.stored_key(cred).await?;
                (key, paid, Some(at + self.cache.ttl()))
            }
        };
        let service = &charge.service.name;
        let access = Access { service, capability: charge.capability.as_deref(), now_unix: self.now() };
        let ok = match verify(&cred.macaroon, &cred.preimage, &key, &access) {
            Ok(ok) => ok,
            Err(VerifyError::CapabilityNotGranted { .. })
                if charge.capability.as_ref().is_some_and(|c| !charge.service.capabilities.contains(c)) =>
            {
                return Err(Refusal::Forbidden(charge.capability.clone().unwrap_or_default()));
            }
            Err(e) => return Err(Refusal::Invalid(e)),
        };
        if !grants_tier(&cred.macaroon, service, charge.service.tier) {
            // Bought for another tier of this service: a token for this one would do.
            return Err(Refusal::Invalid(VerifyError::ServiceNotGranted { service: service.clone() }));
        }
        // A stored token is cached from its first verification; a stateless one once it is recorded.
        let mut worth_caching = true;
        if stateless.is_some() {
            let now = self.now();
            worth_caching = false;
            self.recorder.used(&ok.token_id, &ok.payment_hash, self.cache.ttl(), |minted_here| {
                let fresh = UsedToken {
                    id_hash: cred.macaroon.identifier_hash(),
                    token_id: ok.token_id,
                    payment_hash: ok.payment_hash,
                    service: service.clone(),
                    price: charge.price,
                    created_at: MasterKeys::minted_at(&ok.token_id),
                    expires_at: ok.valid_until,
                    paid_at: now,
                    paid: charge.price,
                };
                // The preimage proves the payment now, if its settlement was not seen first.
                UsedToken { paid_at: now, ..minted_here.unwrap_or(fresh) }
            });
            if self.recorder.is_recorded(&ok.token_id) {
                self.seen.put(ok.token_id, cred, charge.service.tier, service_tag(service), ok.valid_until);
            }
        } else if !paid {
            // The preimage proves payment: record it (once) even if the settlement was not seen.
            if self.store.mark_paid(&ok.payment_hash, None, self.now()).await.unwrap_or(false) {
                self.stored_pending.remove(&ok.payment_hash);
                self.metrics.token_paid(Some(service.as_str()), charge.price);
            }
            let id_hash = cred.macaroon.identifier_hash();
            if let Some((key, _, at)) = self.cache.get(&id_hash) {
                self.cache.put(id_hash, key, true, at);
            }
        }
        self.metrics.tokens_verified.inc();
        let capabilities = granted_capabilities(cred, service);
        let token = L402Token {
            token_id: ok.token_id,
            payment_hash: ok.payment_hash,
            service: service.clone(),
            capabilities,
            valid_until: ok.valid_until,
        };
        if worth_caching {
            self.verified.put(cred, charge.service.tier, &token, key_until);
        }
        Ok(token)
    }

    /// The root key of a stored token (key cache, then store), whether it is recorded paid, and when the key
    /// was read from the store.
    async fn stored_key(&self, cred: &Credential) -> Result<(MacaroonKey, bool, std::time::Instant), Refusal> {
        let id_hash = cred.macaroon.identifier_hash();
        if let Some(hit) = self.cache.get(&id_hash) {
            return Ok(hit);
        }
        let at = std::time::Instant::now();
        match self.store.lookup(&id_hash).await? {
            KeyLookup::Active { root_key, paid } => {
                let key = MacaroonKey::derive(&root_key);
                self.cache.put(id_hash, key.clone(), paid, at);
                Ok((key, paid, at))
            }
            KeyLookup::Revoked => Err(Refusal::Revoked),
            KeyLookup::Unknown => Err(Refusal::UnknownToken),
        }
    }

    /// Reads the revocations made since the last read (every instance does this on its own every poll
    /// interval, and before its first verification); call it at startup to fail early when the store cannot
    /// be read.
    pub async fn refresh_revocations(&self) -> Result<(), StoreError> {
        self.revocations.refresh(self.store.as_ref()).await
    }

    /// The bound on a revocation made through another instance sharing the store (2 × the poll interval).
    pub fn revocation_bound(&self) -> Duration {
        self.revocations.bound()
    }

    /// How many tokens the verified-credential caches hold now (stored and stateless).
    pub fn verified_cache_len(&self) -> usize {
        self.verified.len() + self.seen.len()
    }

    /// Revokes a token: refused here at once, by every instance sharing the store within
    /// [`Paywall::revocation_bound`]. A stored token's root key is deleted; a stateless token of ours is
    /// listed revoked whether or not it was recorded. Returns whether a token was revoked (false: unknown or
    /// already revoked).
    pub async fn revoke(&self, token_id: &TokenId) -> Result<bool, StoreError> {
        let stateless = self.keys.as_ref().is_some_and(|k| k.minted_by(token_id).is_some());
        if stateless {
            // Refused here even if the store cannot be written (the call then fails).
            self.revocations.insert(*token_id);
        }
        let revoked =
            if stateless { self.store.revoke_id(token_id).await? } else { self.store.revoke(token_id).await? };
        if revoked {
            self.revocations.insert(*token_id);
        }
        Ok(revoked)
    }

    /// Follows the node's settlements and records them (revenue, metrics), until the task is aborted: a
    /// stateless token minted here is recorded paid, a stored one marked paid. Reconnects with backoff when
    /// the stream ends or fails.
    pub fn spawn_settlement_watcher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            loop {
                match me.issuer.subscribe_settlements().await {
                    Ok(mut stream) => {
                        backoff = Duration::from_millis(200);
                        while let Some(item) = stream.next().await {
                            let Ok(s) = item else {
                                me.metrics.lightning_error(LightningOp::SubscribeSettlements);
                                continue;
                            };
                            if me.recorder.settled(&s) {
                                // A stateless challenge minted here: recorded paid, off this task.
                                continue;
                            }
                            let service = me.stored_pending.remove(&s.payment_hash);
                            match me.store.mark_paid(&s.payment_hash, Some(s.amount_received), s.settled_at).await {
                                Ok(true) => me.metrics.token_paid(service.as_deref(), s.amount_received),
                                Ok(false) => {}
                                Err(e) => tracing::warn!(error = %e, "could not record a settlement"),
                            }
                        }
                    }
                    Err(e) => {
                        me.metrics.lightning_error(LightningOp::SubscribeSettlements);
                        tracing::warn!(error = %e, "settlement subscription failed");
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        })
    }
}

impl Paywall {
    /// The invoice of a challenge. A zero amount is refused before the node is asked: to a backend it means an
    /// amountless invoice, which a payer could settle with 1 msat (a `Pricing` or a `ServiceSpec` priced 0 is
    /// the embedding program's mistake: 503, nothing minted).
    pub(crate) async fn priced_invoice(
        &self,
        request: &InvoiceRequest,
    ) -> Result<l402_lightning::IssuedInvoice, Refusal> {
        if request.amount.0 == 0 {
            tracing::warn!(memo = %request.memo, "a challenge priced 0 is refused: price the service above 0");
            return Err(Refusal::Lightning(LightningError::new(
                LightningErrorKind::InvalidRequest,
                "a challenge priced 0 (an amountless invoice) is never issued",
            )));
        }
        self.issuer.create_invoice(request).await.map_err(|e| self.lightning(LightningOp::CreateInvoice, e))
    }

    /// A failed backend call: counted, and the refusal it makes.
    fn lightning(&self, op: LightningOp, e: LightningError) -> Refusal {
        self.metrics.lightning_error(op);
        Refusal::Lightning(e)
    }
}

fn no_randomness(e: SecretError) -> Refusal {
    Refusal::Store(StoreError(e.to_string()))
}

/// The caveats a token for `spec` minted at `now` carries: the service at its tier, its capabilities, its
/// expiry if it has a lifetime.
fn caveats(spec: &ServiceSpec, now: u64) -> Vec<Caveat> {
    let mut caveats = vec![
        Caveat::services(&[Service { name: spec.name.clone(), tier: spec.tier }]),
        Caveat::capabilities(&spec.name, &spec.capabilities),
    ];
    if let Some(l) = spec.lifetime {
        caveats.push(Caveat::valid_until(&spec.name, now.saturating_add(l.as_secs())));
    }
    caveats
}

/// Mints a stateless token for `spec` at `now` over `payment_hash`, as [`Paywall::mint`] does (benchmarks
/// and tools make tokens with it without an invoice; holding the preimage of `payment_hash` makes it paid).
pub fn mint_stateless(
    keys: &MasterKeys,
    payment_hash: PaymentHash,
    spec: &ServiceSpec,
    now: u64,
) -> Result<(Macaroon, TokenId), SecretError> {
    let token_id = keys.mint_token_id(now)?;
    let root_key = keys.root_key(&token_id).ok_or(SecretError::Empty)?;
    let macaroon = Macaroon::mint(&root_key, &Identifier::new(payment_hash, token_id), &caveats(spec, now));
    Ok((macaroon, token_id))
}

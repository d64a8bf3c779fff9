//! The paywall: mint and challenge, authenticate, revoke. Transport-free; [`crate::layer`] puts it in front
//! of a service.
//!
//! Authenticating a request never calls the Lightning node: parse the credential, look up the token's root key
//! (cache, then store), check the preimage, the HMAC chain and the caveats. A store failure refuses the request
//! (503): no request passes unpaid because the store could not be asked.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt as _;
use http::HeaderMap;
use l402_lightning::{InvoiceIssuer, InvoiceRequest, LightningError};
use l402_proto::caveat::CAPABILITIES_SUFFIX;
use l402_proto::challenge::challenge_lines;
use l402_proto::{
    Access, Caveat, Credential, DecodeError, Identifier, Macaroon, MacaroonKey, Msat, PaymentHash, RootKey, Service,
    TokenId, VerifyError, verify,
};
use thiserror::Error;

use crate::cache::{DEFAULT_KEY_CACHE_SIZE, DEFAULT_KEY_CACHE_TTL, KeyCache, VerifiedCache};
use crate::metrics::Metrics;
use crate::pricing::{Charge, ServiceSpec};
use crate::store::{KeyLookup, NewToken, StoreError, TokenStore};

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
    /// No invoice could be created for a challenge (503).
    #[error("lightning backend: {0}")]
    Lightning(LightningError),
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
        )
    }

    /// The HTTP status.
    pub fn status(&self) -> http::StatusCode {
        use http::StatusCode as S;
        match self {
            _ if self.wants_challenge() => S::PAYMENT_REQUIRED,
            Refusal::Forbidden(_) => S::FORBIDDEN,
            Refusal::Store(_) | Refusal::Lightning(_) => S::SERVICE_UNAVAILABLE,
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
    metrics: Arc<Metrics>,
    clock: Clock,
    invoice_expiry: Duration,
}

impl std::fmt::Debug for Paywall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Paywall").field("invoice_expiry", &self.invoice_expiry).finish_non_exhaustive()
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
}

impl PaywallBuilder {
    /// How long a cached root key is trusted (the revocation bound across instances); zero disables caching.
    pub fn key_cache_ttl(mut self, ttl: Duration) -> Self {
        self.key_cache_ttl = ttl;
        self
    }

    /// How many keys the cache holds.
    pub fn key_cache_size(mut self, n: usize) -> Self {
        self.key_cache_size = n.max(1);
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
        Arc::new(Paywall {
            store: self.store,
            issuer: self.issuer,
            cache: KeyCache::new(self.key_cache_ttl, self.key_cache_size),
            verified: VerifiedCache::new(self.key_cache_ttl, self.key_cache_size),
            metrics: self.metrics,
            clock: self.clock,
            invoice_expiry: self.invoice_expiry,
        })
    }
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

    /// Mints a token for `charge` and creates its invoice.
    pub async fn mint(&self, charge: &Charge) -> Result<Minted, Refusal> {
        let spec: &ServiceSpec = &charge.service;
        let memo = format!("L402 token for {}", spec.name);
        let request = InvoiceRequest { amount: charge.price, memo, expiry: self.invoice_expiry };
        let invoice = self.issuer.create_invoice(&request).await.map_err(Refusal::Lightning)?;
        let now = self.now();
        let token_id = TokenId(random32()?);
        let root_key = RootKey(random32()?);
        let id = Identifier::new(invoice.payment_hash, token_id);
        let mut caveats = vec![
            Caveat::services(&[Service { name: spec.name.clone(), tier: spec.tier }]),
            Caveat::capabilities(&spec.name, &spec.capabilities),
        ];
        let expires_at = spec.lifetime.map(|l| now.saturating_add(l.as_secs()));
        if let Some(t) = expires_at {
            caveats.push(Caveat::valid_until(&spec.name, t));
        }
        let macaroon = Macaroon::mint(&root_key, &id, &caveats);
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
        self.metrics.challenges_issued.fetch_add(1, Ordering::Relaxed);
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

    /// Authenticates a request for `charge`.
    ///
    /// A request with exactly one `Authorization` value that was verified within the key-cache TTL skips the
    /// decode and the HMAC chain (the same bound on revocation); its expiry, service and capability are still
    /// checked against this request.
    pub async fn authenticate(&self, headers: &HeaderMap, charge: &Charge) -> Result<L402Token, Refusal> {
        let mut values = headers.get_all(http::header::AUTHORIZATION).iter();
        let single = match (values.next(), values.next()) {
            (Some(v), None) => Some(v.as_bytes()),
            _ => None,
        };
        if let Some(hit) = single.and_then(|v| self.verified.get(v)) {
            if self.still_grants(&hit, charge) {
                self.metrics.tokens_verified.fetch_add(1, Ordering::Relaxed);
                return Ok(hit);
            }
        }
        let cred = Self::credential(headers).map_err(Refusal::Malformed)?.ok_or(Refusal::PaymentRequired)?;
        let token = self.check(&cred, charge).await?;
        if let Some(v) = single {
            self.verified.put(v, &token);
        }
        Ok(token)
    }

    /// Whether a token verified earlier grants this request now: same service, not expired, the capability
    /// (if one is required) among those it grants. Anything else takes the full path, which says why not.
    fn still_grants(&self, token: &L402Token, charge: &Charge) -> bool {
        token.service == charge.service.name
            && token.valid_until.is_none_or(|t| self.now() < t)
            && match (&charge.capability, &token.capabilities) {
                (None, _) | (Some(_), None) => true,
                (Some(c), Some(granted)) => granted.iter().any(|g| g == c),
            }
    }

    /// Verifies a parsed credential for `charge`.
    pub async fn check(&self, cred: &Credential, charge: &Charge) -> Result<L402Token, Refusal> {
        let id_hash = cred.macaroon.identifier_hash();
        let (key, paid) = match self.cache.get(&id_hash) {
            Some(hit) => hit,
            None => match self.store.lookup(&id_hash).await? {
                KeyLookup::Active { root_key, paid } => {
                    let key = MacaroonKey::derive(&root_key);
                    self.cache.put(id_hash, key.clone(), paid);
                    (key, paid)
                }
                KeyLookup::Revoked => return Err(Refusal::Revoked),
                KeyLookup::Unknown => {
                    // Say what is wrong with a malformed identifier rather than "unknown".
                    cred.macaroon.l402_identifier().map_err(|e| Refusal::Invalid(e.into()))?;
                    return Err(Refusal::UnknownToken);
                }
            },
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
        if !paid {
            // The preimage proves payment: record it (once) even if the settlement was not seen.
            if self.store.mark_paid(&ok.payment_hash, None, self.now()).await.unwrap_or(false) {
                self.metrics.invoices_settled.fetch_add(1, Ordering::Relaxed);
                self.metrics.revenue_msat.fetch_add(charge.price.0, Ordering::Relaxed);
            }
            self.cache.put(id_hash, key, true);
        }
        self.metrics.tokens_verified.fetch_add(1, Ordering::Relaxed);
        let capabilities = cred
            .macaroon
            .caveats()
            .filter_map(|c| std::str::from_utf8(c).ok())
            .filter_map(|c| c.split_once('='))
            .filter(|(cond, _)| cond.strip_suffix(CAPABILITIES_SUFFIX) == Some(service.as_str()))
            .last()
            .map(|(_, v)| v.split(',').filter(|s| !s.is_empty()).map(str::to_owned).collect());
        Ok(L402Token {
            token_id: ok.token_id,
            payment_hash: ok.payment_hash,
            service: service.clone(),
            capabilities,
            valid_until: ok.valid_until,
        })
    }

    /// Revokes a token (its root key is deleted; refused here at once, elsewhere within the cache TTL).
    pub async fn revoke(&self, token_id: &TokenId) -> Result<bool, StoreError> {
        let revoked = self.store.revoke(token_id).await?;
        self.cache.clear();
        self.verified.clear();
        Ok(revoked)
    }

    /// Follows the node's settlements and records them (revenue, metrics), until the task is aborted.
    /// Reconnects with backoff when the stream ends or fails.
    pub fn spawn_settlement_watcher(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(200);
            loop {
                match me.issuer.subscribe_settlements().await {
                    Ok(mut stream) => {
                        backoff = Duration::from_millis(200);
                        while let Some(item) = stream.next().await {
                            let Ok(s) = item else { continue };
                            match me.store.mark_paid(&s.payment_hash, Some(s.amount_received), s.settled_at).await {
                                Ok(true) => {
                                    me.metrics.invoices_settled.fetch_add(1, Ordering::Relaxed);
                                    me.metrics.revenue_msat.fetch_add(s.amount_received.0, Ordering::Relaxed);
                                }
                                Ok(false) => {}
                                Err(e) => tracing::warn!(error = %e, "could not record a settlement"),
                            }
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "settlement subscription failed"),
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        })
    }
}

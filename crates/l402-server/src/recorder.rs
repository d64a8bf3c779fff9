//! Recording stateless tokens when they are first paid or used, off the request path.
//!
//! A stateless challenge writes nothing; what the admin listing and the revenue need is written later, once
//! per token: when the settlement of its invoice is seen by the instance that minted it (it remembers its
//! recent challenges, [`Recorder::minted`]), or else when the token is first verified (the preimage proves
//! the payment; the price is the charge's). Requests hand the record to a background writer through a bounded
//! queue and never wait for it. A bounded set of tokens already recorded (sized for the tokens in use,
//! [`DEFAULT_RECORDED_SIZE`]) keeps a token that is used again from being written again, whatever the number
//! of tokens in rotation up to that size; past it, a token is at worst written again (an insert that finds
//! it and does nothing). The same set says when each token was last verified, so that only tokens in use
//! take a place in the verified-credential cache.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use l402_lightning::Settlement;
use l402_proto::identifier::identifier_hash;
use l402_proto::{Identifier, Msat, PaymentHash, TokenId};
use tokio::sync::mpsc;

use crate::cache::Bounded;
use crate::metrics::Metrics;
use crate::pricing::ServiceSpec;
use crate::secret::MasterKeys;
use crate::store::{TokenStore, UsedToken};

/// The default number of tokens remembered as recorded (about 70 MB when full).
pub const DEFAULT_RECORDED_SIZE: usize = 2_000_000;

/// The default number of recent challenges remembered for their settlement.
pub const DEFAULT_PENDING_SIZE: usize = 100_000;

/// Records waiting for the writer; past this, a record is dropped for now (and made again on the next use).
const QUEUE: usize = 65_536;

/// Records written per store call.
const BATCH: usize = 512;

/// A challenge minted here and not yet seen paid: what its record needs beyond the payment hash it is kept
/// under, in about 100 bytes (the identifier hash and the mint time follow from the ids; the service is
/// shared with every other challenge of its service). The pending table grows with the challenges issued (at
/// most the global challenge rate allows) up to its size, whatever the number of clients.
#[derive(Clone, Debug)]
pub(crate) struct Pending {
    pub(crate) token_id: TokenId,
    pub(crate) service: Arc<ServiceSpec>,
    pub(crate) price: Msat,
    pub(crate) expires_at: Option<u64>,
    /// When it was minted, seconds since the recorder's epoch.
    minted: u32,
}

impl Pending {
    /// The record of this challenge's token, paid `paid` at `paid_at`.
    fn record(self, payment_hash: PaymentHash, paid_at: u64, paid: Msat) -> UsedToken {
        UsedToken {
            id_hash: identifier_hash(&Identifier::new(payment_hash, self.token_id).to_bytes()),
            token_id: self.token_id,
            payment_hash,
            service: self.service.name.clone(),
            price: self.price,
            created_at: MasterKeys::minted_at(&self.token_id),
            expires_at: self.expires_at,
            paid_at,
            paid,
        }
    }
}

pub(crate) struct Recorder {
    store: Arc<dyn TokenStore>,
    metrics: Arc<Metrics>,
    /// Tokens recorded, by fingerprint, with when each was last verified (seconds since `epoch`).
    recorded: Arc<Bounded<u64, u32>>,
    epoch: Instant,
    pending: Bounded<PaymentHash, Pending>,
    pending_for: Duration,
    queue: OnceLock<mpsc::Sender<UsedToken>>,
}

/// The random part of a stateless token id (bytes 8..16; the first eight are the mint time).
fn fingerprint(id: &TokenId) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.0[8..16]);
    u64::from_le_bytes(b)
}

impl Recorder {
    pub(crate) fn new(
        store: Arc<dyn TokenStore>,
        metrics: Arc<Metrics>,
        recorded: usize,
        pending: usize,
        pending_for: Duration,
    ) -> Self {
        Self {
            store,
            metrics,
            recorded: Arc::new(Bounded::new(recorded)),
            epoch: Instant::now(),
            pending: Bounded::new(pending),
            pending_for,
            queue: OnceLock::new(),
        }
    }

    /// Remembers a challenge minted here (its token is recorded when the invoice is seen paid, or at its first
    /// use, whichever comes first).
    pub(crate) fn minted(
        &self,
        payment_hash: PaymentHash,
        token_id: TokenId,
        service: &Arc<ServiceSpec>,
        price: Msat,
        expires_at: Option<u64>,
    ) {
        let minted = self.epoch.elapsed().as_secs() as u32;
        self.pending.insert(payment_hash, Pending { token_id, service: service.clone(), price, expires_at, minted });
    }

    /// A settlement: if its invoice is one of the challenges minted here, the token is recorded as paid (the
    /// amount received, the settlement time). Whether it was.
    pub(crate) fn settled(&self, s: &Settlement) -> bool {
        let Some(p) = self.pending.remove(&s.payment_hash) else { return false };
        let age = self.epoch.elapsed().as_secs().saturating_sub(u64::from(p.minted));
        if age > self.pending_for.as_secs() {
            return false;
        }
        if self.recorded.insert_new(fingerprint(&p.token_id), 0) {
            self.send(p.record(s.payment_hash, s.settled_at, s.amount_received));
        }
        true
    }

    /// Whether a stateless token is recorded (or on its way to the store).
    pub(crate) fn is_recorded(&self, token_id: &TokenId) -> bool {
        self.recorded.get_with(&fingerprint(token_id), |_| ()).is_some()
    }

    /// A stateless token verified: recorded unless it already was. `make` builds the record from the
    /// challenge minted here, if remembered; it is not called for a token already recorded. Never waits.
    /// Returns whether the token is in use, verified here before within `within` (worth caching: a token
    /// seen once in a long rotation would only push others out of the cache).
    pub(crate) fn used(
        &self,
        token_id: &TokenId,
        payment_hash: &PaymentHash,
        within: Duration,
        make: impl FnOnce(Option<UsedToken>) -> UsedToken,
    ) -> bool {
        let now = self.epoch.elapsed().as_secs() as u32;
        match self.recorded.replace(fingerprint(token_id), now) {
            Some(seen) => u64::from(now.saturating_sub(seen)) <= within.as_secs().max(1),
            None if self.queue.get().is_some_and(|q| q.capacity() == 0) => {
                // The writer is behind (its queue full): this use is not recorded, a later one will be; no
                // record is made for nothing.
                self.recorded.remove(&fingerprint(token_id));
                false
            }
            None => {
                let minted_here = self.pending.remove(payment_hash).map(|p| {
                    let price = p.price;
                    p.record(*payment_hash, 0, price)
                });
                self.send(make(minted_here));
                false
            }
        }
    }

    fn send(&self, token: UsedToken) {
        let fp = fingerprint(&token.token_id);
        let queue = self.queue.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(write(rx, self.store.clone(), self.metrics.clone(), self.recorded.clone()));
            tx
        });
        if let Err(e) = queue.try_send(token) {
            // Full (or the writer is gone): forget it was recorded, so that the next use tries again.
            self.recorded.remove(&fp);
            tracing::debug!(token_id = %e.into_inner().token_id, "record queue full; recorded on a later use");
        }
    }
}

/// The writer: batches of records, one store call each. A batch that fails is forgotten as recorded (its
/// tokens are recorded on a later use).
async fn write(
    mut rx: mpsc::Receiver<UsedToken>,
    store: Arc<dyn TokenStore>,
    metrics: Arc<Metrics>,
    recorded: Arc<Bounded<u64, u32>>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        match store.record(&batch).await {
            Ok(done) => {
                for (t, new) in batch.iter().zip(done) {
                    if new {
                        metrics.token_paid(Some(&t.service), t.paid);
                        tracing::debug!(token_id = %t.token_id, service = %t.service, paid_msat = t.paid.0, "token recorded");
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, tokens = batch.len(), "could not record tokens; retried on their next use");
                for t in &batch {
                    recorded.remove(&fingerprint(&t.token_id));
                }
            }
        }
        batch.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paywall::mint_stateless;
    use crate::secret::MasterKey;

    #[test]
    fn a_pending_challenge_makes_the_record_of_the_token_it_minted() {
        let keys = MasterKeys::new(vec![MasterKey::generate().expect("key")]).expect("keys");
        let spec = Arc::new(ServiceSpec::new("weather", Msat(5_000)));
        let hash = PaymentHash([7; 32]);
        let (macaroon, token_id) = mint_stateless(&keys, hash, &spec, 1_700_000_000).expect("mint");
        let pending =
            Pending { token_id, service: spec.clone(), price: Msat(5_000), expires_at: Some(1_700_003_600), minted: 0 };
        let r = pending.record(hash, 1_700_000_100, Msat(6_000));
        // The identifier hash and the mint time are recomputed from the ids: the same as the token's own.
        assert_eq!(r.id_hash, macaroon.identifier_hash());
        assert_eq!(r.created_at, 1_700_000_000);
        assert_eq!((r.token_id, r.payment_hash, r.service.as_str()), (token_id, hash, "weather"));
        assert_eq!(
            (r.price, r.expires_at, r.paid_at, r.paid),
            (Msat(5_000), Some(1_700_003_600), 1_700_000_100, Msat(6_000))
        );
    }
}

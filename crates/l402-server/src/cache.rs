//! Bounded in-memory maps the paywall keeps so that verifying a token usually costs no store query and no
//! HMAC chain: root keys of tokens minted the old way ([`KeyCache`]) and credentials verified recently
//! ([`VerifiedCache`]), plus the sets [`crate::paywall`] uses to record each token once.
//!
//! Every map is a [`Bounded`]: shards (so that cores rarely wait on one another) of two generations each;
//! when the current generation of a shard is half the shard's share, it becomes the old one and the old one
//! is dropped. Memory is bounded by the size given, and what was used recently survives a rotation.
//!
//! Neither cache is a revocation bound: every verification, cache hit or not, checks the revocation set
//! first (see [`crate::Paywall`]). A cached root key is trusted for [`DEFAULT_KEY_CACHE_TTL`] (the bound for
//! an instance that does not follow the revocation list), and a verified credential never outlives the key it
//! was verified with.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use l402_proto::{Credential, MacaroonKey, TokenId};

use crate::paywall::L402Token;

/// The default time a cached key is trusted without asking the store again.
pub const DEFAULT_KEY_CACHE_TTL: Duration = Duration::from_secs(1);

/// The default number of root keys (and of recently verified tokens) cached.
pub const DEFAULT_KEY_CACHE_SIZE: usize = 100_000;

/// Stateless tokens the verified-stateless cache holds by default (about 90 MiB when full).
pub const DEFAULT_VERIFIED_STATELESS_SIZE: usize = 1_000_000;

const SHARDS: usize = 16;

/// A bounded map: [`SHARDS`] shards of two generations.
pub(crate) struct Bounded<K, V> {
    shards: Box<[Mutex<Generations<K, V>>]>,
    /// The most entries one shard holds (both generations).
    per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
}

struct Generations<K, V> {
    current: HashMap<K, V>,
    old: HashMap<K, V>,
}

impl<K: Hash + Eq, V> Bounded<K, V> {
    /// A map of at most about `max` entries.
    pub(crate) fn new(max: usize) -> Self {
        let per_shard = max.div_ceil(SHARDS).max(2);
        let shards = (0..SHARDS).map(|_| Mutex::new(Generations { current: HashMap::new(), old: HashMap::new() }));
        Self { shards: shards.collect(), per_shard, hasher: Default::default() }
    }

    fn shard(&self, key: &K) -> std::sync::MutexGuard<'_, Generations<K, V>> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        // A panic while holding a shard cannot leave a map half-updated in a way that matters here.
        self.shards[i].lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies `f` to the entry, if there is one (an entry of the old generation moves to the current one).
    pub(crate) fn get_with<R>(&self, key: &K, f: impl FnOnce(&V) -> R) -> Option<R>
    where
        K: Clone,
    {
        let mut g = self.shard(key);
        if let Some(v) = g.current.get(key) {
            return Some(f(v));
        }
        let v = g.old.remove(key)?;
        let r = f(&v);
        g.insert(key.clone(), v, self.per_shard);
        Some(r)
    }

    /// Inserts or replaces the entry.
    pub(crate) fn insert(&self, key: K, value: V) {
        self.shard(&key).insert(key, value, self.per_shard);
    }

    /// Inserts the entry unless there is one; whether it was inserted.
    pub(crate) fn insert_new(&self, key: K, value: V) -> bool
    where
        K: Clone,
    {
        let mut g = self.shard(&key);
        if g.current.contains_key(&key) {
            return false;
        }
        if let Some(v) = g.old.remove(&key) {
            g.insert(key, v, self.per_shard);
            return false;
        }
        g.insert(key, value, self.per_shard);
        true
    }

    /// Sets the entry, returning the one it replaces (if any).
    pub(crate) fn replace(&self, key: K, value: V) -> Option<V>
    where
        K: Clone,
    {
        let mut g = self.shard(&key);
        if let Some(v) = g.current.get_mut(&key) {
            return Some(std::mem::replace(v, value));
        }
        let old = g.old.remove(&key);
        g.insert(key, value, self.per_shard);
        old
    }

    /// Removes and returns the entry.
    pub(crate) fn remove(&self, key: &K) -> Option<V> {
        let mut g = self.shard(key);
        g.current.remove(key).or_else(|| g.old.remove(key))
    }

    /// The number of entries.
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let g = s.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                g.current.len() + g.old.len()
            })
            .sum()
    }
}

impl<K: Hash + Eq, V> Generations<K, V> {
    fn insert(&mut self, key: K, value: V, per_shard: usize) {
        if self.current.len() >= per_shard / 2 && !self.current.contains_key(&key) {
            self.old = std::mem::take(&mut self.current);
        }
        self.current.insert(key, value);
    }
}

/// Root keys of tokens minted the old way (root key in the store), by identifier hash.
pub(crate) struct KeyCache {
    ttl: Duration,
    map: Bounded<[u8; 32], (MacaroonKey, bool, Instant)>,
}

impl KeyCache {
    pub(crate) fn new(ttl: Duration, max: usize) -> Self {
        Self { ttl, map: Bounded::new(max) }
    }

    /// The cached key, paid flag and when the key was read from the store, if fresh.
    pub(crate) fn get(&self, id_hash: &[u8; 32]) -> Option<(MacaroonKey, bool, Instant)> {
        if self.ttl.is_zero() {
            return None;
        }
        self.map.get_with(id_hash, |(key, paid, at)| (at.elapsed() < self.ttl).then(|| (key.clone(), *paid, *at)))?
    }

    /// Caches a key read from the store at `at`.
    pub(crate) fn put(&self, id_hash: [u8; 32], key: MacaroonKey, paid: bool, at: Instant) {
        if !self.ttl.is_zero() {
            self.map.insert(id_hash, (key, paid, at));
        }
    }

    pub(crate) fn ttl(&self) -> Duration {
        self.ttl
    }
}

/// Tokens verified recently, ONE entry per token id, so that a token reused in a burst costs a decode and a
/// map lookup instead of key derivation and an HMAC chain. A hit needs the same signature and preimage as
/// the credential verified: the signature commits to the identifier and every caveat, so any other caveat
/// list, or another encoding of the same credential, lands on the same entry (and a credential that is not
/// the one verified takes the full path). One paid token can therefore hold one entry, whatever it sends.
pub(crate) struct VerifiedCache {
    ttl: Duration,
    map: Bounded<TokenId, Verified>,
}

/// A verified credential: what it was, what it grants, until when it is trusted.
pub(crate) struct Verified {
    signature: [u8; 32],
    preimage: [u8; 32],
    /// The tier of the service it was verified for.
    pub(crate) tier: u32,
    pub(crate) token: L402Token,
    until: Instant,
}

impl VerifiedCache {
    pub(crate) fn new(ttl: Duration, max: usize) -> Self {
        Self { ttl, map: Bounded::new(max) }
    }

    /// The token `cred` was verified as, if it is the credential verified and still trusted; `grants`
    /// decides whether it grants this request.
    pub(crate) fn get(
        &self,
        token_id: &TokenId,
        cred: &Credential,
        grants: impl FnOnce(&Verified) -> bool,
    ) -> Option<L402Token> {
        if self.ttl.is_zero() {
            return None;
        }
        self.map.get_with(token_id, |v| {
            let same = v.signature == *cred.macaroon.signature() && v.preimage == cred.preimage.0;
            (same && Instant::now() < v.until && grants(v)).then(|| v.token.clone())
        })?
    }

    /// Remembers a verified credential, trusted for the TTL but never past `key_until` (when the key it was
    /// verified with stops being trusted).
    pub(crate) fn put(&self, cred: &Credential, tier: u32, token: &L402Token, key_until: Option<Instant>) {
        if self.ttl.is_zero() {
            return;
        }
        let until = Instant::now() + self.ttl;
        let until = key_until.map_or(until, |k| k.min(until));
        let entry = Verified {
            signature: *cred.macaroon.signature(),
            preimage: cred.preimage.0,
            tier,
            token: token.clone(),
            until,
        };
        self.map.insert(token.token_id, entry);
    }

    /// The number of tokens cached.
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }
}

/// Stateless tokens verified, one compact entry each (about 90 bytes with the map's own), so that a working
/// set of a million tokens is held in about 100 MiB: the signature of the credential verified, the service,
/// tier and expiry it was verified with. A hit needs the same signature (which commits to the identifier, so to the
/// payment hash, and to every caveat) and a preimage that hashes to the payment hash: exactly the credential
/// verified. Nothing in an entry goes stale: the key it was verified with is derived from a master key, not
/// read from a store, revocation is checked before any lookup, and expiry, service, tier and capability are
/// checked against each request. A token enters once it is recorded (so that a cache hit never skips the
/// recording of its first use); old entries give way two generations at a time.
pub(crate) struct StatelessCache {
    /// `None`: off (a size of 0).
    map: Option<Bounded<TokenId, Seen>>,
}

/// A stateless credential verified.
pub(crate) struct Seen {
    signature: [u8; 32],
    pub(crate) tier: u32,
    /// The service it was verified for (`paywall::service_tag`).
    pub(crate) service: u64,
    /// `u64::MAX`: no expiry.
    valid_until: u64,
}

impl Seen {
    pub(crate) fn valid_until(&self) -> Option<u64> {
        (self.valid_until != u64::MAX).then_some(self.valid_until)
    }
}

impl StatelessCache {
    /// A cache of `max` tokens (0: none kept, every stateless token is verified whole).
    pub(crate) fn new(max: usize) -> Self {
        Self { map: (max > 0).then(|| Bounded::new(max)) }
    }

    /// What `cred` (of token `token_id`, for `payment_hash`) was verified with, if it is the credential
    /// verified: `f` reads it.
    pub(crate) fn get<R>(
        &self,
        token_id: &TokenId,
        payment_hash: &l402_proto::PaymentHash,
        cred: &Credential,
        f: impl FnOnce(&Seen) -> R,
    ) -> Option<R> {
        let map = self.map.as_ref()?;
        let seen = map.get_with(token_id, |v| (v.signature == *cred.macaroon.signature()).then(|| f(v)))??;
        (cred.preimage.payment_hash() == *payment_hash).then_some(seen)
    }

    pub(crate) fn put(&self, token_id: TokenId, cred: &Credential, tier: u32, service: u64, valid_until: Option<u64>) {
        let seen =
            Seen { signature: *cred.macaroon.signature(), tier, service, valid_until: valid_until.unwrap_or(u64::MAX) };
        if let Some(map) = &self.map {
            map.insert(token_id, seen);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.as_ref().map_or(0, Bounded::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_keeps_at_most_its_size_and_what_was_used_recently() {
        let m: Bounded<u64, u64> = Bounded::new(1_600);
        m.insert(0, 0);
        for i in 1..100_000u64 {
            m.insert(i, i);
            // Touching 0 keeps it in the current generation of its shard.
            assert_eq!(m.get_with(&0, |v| *v), Some(0), "at {i}");
        }
        assert!(m.len() <= 1_600, "{}", m.len());
        assert!(m.len() >= 800, "{}", m.len());
        assert!(m.insert_new(1_000_000, 1));
        assert!(!m.insert_new(1_000_000, 2));
        assert_eq!(m.replace(1_000_000, 3), Some(1));
        assert_eq!(m.remove(&1_000_000), Some(3));
        assert_eq!(m.remove(&1_000_000), None);
    }
}

//! Bounded in-memory maps the paywall keeps so that verifying a token usually costs no store query and no
//! HMAC chain: root keys of tokens minted the old way ([`KeyCache`]) and credentials verified recently
//! ([`VerifiedCache`]), plus the sets [`crate::paywall`] uses to record each token once.
//!
//! Every map is a [`Bounded`]: shards (so that cores rarely wait on one another), each a map of at most its
//! share of the size whose entries carry the time of their last use (counted in the shard's insertions). A
//! working set that fits is held whole, and a lookup never moves, copies or reallocates anything. When a
//! shard is full, a sequential sweep drops what was not used within its last half-share of insertions (less,
//! if that would not make room for a quarter): memory is bounded by the size given, what was used most
//! recently survives, and a sweep comes at most once per quarter of a share of insertions.
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

/// Stateless tokens the verified-stateless cache holds by default (about 200 MiB when full).
pub const DEFAULT_VERIFIED_STATELESS_SIZE: usize = 1_000_000;

const SHARDS: usize = 16;

/// A bounded map: [`SHARDS`] shards, each of at most `per_shard` entries stamped with their last use.
pub(crate) struct Bounded<K, V> {
    shards: Box<[Mutex<Shard<K, V>>]>,
    /// The most entries one shard holds.
    per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
}

struct Shard<K, V> {
    map: HashMap<K, Stamped<V>>,
    /// The shard's insertions so far (wrapping): an entry's stamp is its value at the entry's last use.
    clock: u32,
}

struct Stamped<V> {
    value: V,
    used: u32,
}

impl<K: Hash + Eq, V> Shard<K, V> {
    /// The entry, stamped as used now.
    fn touch(&mut self, key: &K) -> Option<&mut V> {
        let now = self.clock;
        let e = self.map.get_mut(key)?;
        e.used = now;
        Some(&mut e.value)
    }

    /// Inserts or replaces. A full shard first drops what was not used within its last `per_shard / 2`
    /// insertions; if that would keep more than three quarters of it (a working set larger than the map),
    /// the window is halved until it does not. So a pass makes room for a quarter of the share at least, and
    /// what was used most recently stays.
    fn insert(&mut self, key: K, value: V, per_shard: usize) -> Option<V> {
        if self.map.len() >= per_shard && !self.map.contains_key(&key) {
            let now = self.clock;
            let mut window = u32::try_from(per_shard / 2).unwrap_or(u32::MAX);
            loop {
                self.map.retain(|_, e| now.wrapping_sub(e.used) < window);
                if self.map.len() <= per_shard / 4 * 3 || window == 0 {
                    break;
                }
                window /= 2;
            }
        }
        self.clock = self.clock.wrapping_add(1);
        let used = self.clock;
        self.map.insert(key, Stamped { value, used }).map(|e| e.value)
    }
}

impl<K: Hash + Eq, V> Bounded<K, V> {
    /// A map of at most about `max` entries.
    pub(crate) fn new(max: usize) -> Self {
        let per_shard = max.div_ceil(SHARDS).max(2);
        let shards = (0..SHARDS).map(|_| Mutex::new(Shard { map: HashMap::new(), clock: 0 }));
        Self { shards: shards.collect(), per_shard, hasher: Default::default() }
    }

    fn shard(&self, key: &K) -> std::sync::MutexGuard<'_, Shard<K, V>> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        // A panic while holding a shard cannot leave a map half-updated in a way that matters here.
        self.shards[i].lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Applies `f` to the entry, if there is one (stamped as used).
    pub(crate) fn get_with<R>(&self, key: &K, f: impl FnOnce(&V) -> R) -> Option<R> {
        self.shard(key).touch(key).map(|v| f(v))
    }

    /// Inserts or replaces the entry.
    pub(crate) fn insert(&self, key: K, value: V) {
        self.shard(&key).insert(key, value, self.per_shard);
    }

    /// Inserts the entry unless there is one (which is stamped as used); whether it was inserted.
    pub(crate) fn insert_new(&self, key: K, value: V) -> bool {
        let mut g = self.shard(&key);
        if g.touch(&key).is_some() {
            return false;
        }
        g.insert(key, value, self.per_shard);
        true
    }

    /// Sets the entry, returning the one it replaces (if any).
    pub(crate) fn replace(&self, key: K, value: V) -> Option<V> {
        let mut g = self.shard(&key);
        if let Some(v) = g.touch(&key) {
            return Some(std::mem::replace(v, value));
        }
        g.insert(key, value, self.per_shard)
    }

    /// Removes and returns the entry.
    pub(crate) fn remove(&self, key: &K) -> Option<V> {
        self.shard(key).map.remove(key).map(|e| e.value)
    }

    /// The number of entries.
    pub(crate) fn len(&self) -> usize {
        self.shards.iter().map(|s| s.lock().unwrap_or_else(std::sync::PoisonError::into_inner).map.len()).sum()
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

/// Stateless tokens verified, one compact entry each (about 100 bytes with the map's own, up to twice that as the map
/// grows by doubling: a million tokens take about 200 MiB): the signature of the credential verified, the service, tier
/// and expiry it was verified with. A hit needs the same signature (which commits to the identifier, so to the payment
/// hash, and to every caveat) and a preimage that hashes to the payment hash: exactly the credential verified. Nothing
/// in an entry goes stale: the key it was verified with is derived from a master key, not read from a store, revocation
/// is checked before any lookup, and expiry, service, tier and capability are checked against each request. A token
/// enters once it is recorded (so that a cache hit never skips the recording of its first use); when full, what was not
/// used recently gives way (see [`Bounded`]).
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
            // Touching 0 keeps it among the recently used of its shard.
            assert_eq!(m.get_with(&0, |v| *v), Some(0), "at {i}");
        }
        assert!(m.len() <= 1_600, "{}", m.len());
        assert!(m.len() >= 800, "{}", m.len());
        // The most recent insertions are all there.
        assert!((99_000..100_000u64).rev().take(200).all(|k| m.get_with(&k, |_| ()).is_some()));
        assert!(m.insert_new(1_000_000, 1));
        assert!(!m.insert_new(1_000_000, 2));
        assert_eq!(m.replace(1_000_000, 3), Some(1));
        assert_eq!(m.remove(&1_000_000), Some(3));
        assert_eq!(m.remove(&1_000_000), None);
    }

    #[test]
    fn a_rotation_that_fits_is_held_whole_and_never_evicted() {
        // 10,000 keys in turn, over and over, in a map of 16,000 (no shard is filled): every lookup after the
        // first round hits, which two generations of half the size each could not promise.
        let m: Bounded<u64, u64> = Bounded::new(16_000);
        for k in 0..10_000u64 {
            m.insert(k, k);
        }
        for round in 0..5 {
            for k in 0..10_000u64 {
                assert_eq!(m.get_with(&k, |v| *v), Some(k), "key {k} in round {round}");
            }
        }
        assert_eq!(m.len(), 10_000);
    }
}

//! Freebies (N free requests per client prefix), token-bucket rate limits, and the challenge limiter that
//! always applies. Every table here has a fixed bound on what it holds.
//!
//! A [`Table`] is split into shards, each behind its own lock, and each shard keeps two generations: entries
//! are written to the current one; when it is full it becomes the previous one and the older generation is
//! dropped whole; an entry found in the previous generation moves to the current one. So a lookup costs one
//! lock and two hash probes at most, nothing ever scans a table, and a table holds at most its capacity. The
//! price: a key not seen for a generation is forgotten (a forgotten client starts with a full burst, or its
//! freebies again); the global challenge limit bounds what an attacker with many prefixes gains by that.
//!
//! Instances sharing a PostgreSQL store share their freebies and rate limits (see [`crate::shared`]): each
//! entry counts its uses not yet written (`pending`), the table lists the entries that have some, and the
//! sync task writes them in one batch and learns everyone's totals. Decisions stay local: no request waits
//! for the store.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use l402_proto::TokenId;

use crate::client::ClientPrefix;

/// How many shards a table is split into (fewer for a small capacity).
const SHARDS: usize = 64;

/// A bounded map from keys to small states.
#[derive(Debug)]
pub(crate) struct Table<K, V> {
    shards: Box<[Mutex<Shard<K, V>>]>,
    /// Entries per generation per shard.
    generation: usize,
    hasher: RandomState,
}

#[derive(Debug)]
struct Shard<K, V> {
    current: HashMap<K, V>,
    previous: HashMap<K, V>,
    /// Keys with uses not yet shared (at most a generation of them).
    dirty: Vec<K>,
}

/// What an entry knows of its uses on every instance (shared limits only).
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Synced {
    /// Everyone's uses, as the store last said.
    pub(crate) seen: u64,
    /// Uses here not yet written.
    pub(crate) pending: u32,
    /// Uses here being written now.
    pub(crate) inflight: u32,
    /// Whether the key is in its shard's dirty list.
    marked: bool,
}

impl Synced {
    /// Every use known here: everyone's as last seen, and this instance's since.
    fn used(&self) -> u64 {
        self.seen + u64::from(self.pending) + u64::from(self.inflight)
    }
}

/// A limit entry that can be shared.
pub(crate) trait Shares {
    fn synced(&mut self) -> &mut Synced;
    /// Others used `n` more than this entry knew of.
    fn others_used(&mut self, n: u64);
}

impl<K: Hash + Eq, V> Table<K, V> {
    /// A table holding at most `capacity` entries (at least one per shard).
    pub(crate) fn new(capacity: usize) -> Self {
        let shards = SHARDS.min(capacity / 128).max(1);
        let generation = (capacity / shards / 2).max(1);
        let shards = (0..shards)
            .map(|_| Mutex::new(Shard { current: HashMap::new(), previous: HashMap::new(), dirty: Vec::new() }))
            .collect::<Vec<_>>()
            .into_boxed_slice();
        Self { shards, generation, hasher: RandomState::new() }
    }

    fn shard(&self, key: &K) -> MutexGuard<'_, Shard<K, V>> {
        let i = (self.hasher.hash_one(key) % self.shards.len() as u64) as usize;
        // A panic while holding the lock leaves plain counters behind: keep using them.
        self.shards[i].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The entry for `key` in `shard`, created by `init` if it has none (or forgot it).
    fn entry<'a>(
        current: &'a mut HashMap<K, V>,
        previous: &mut HashMap<K, V>,
        generation: usize,
        key: K,
        init: impl FnOnce() -> V,
    ) -> &'a mut V {
        if current.contains_key(&key) {
            return current.get_mut(&key).expect("present");
        }
        let v = previous.remove(&key).unwrap_or_else(init);
        if current.len() >= generation {
            *previous = std::mem::take(current);
        }
        current.entry(key).or_insert(v)
    }

    /// Runs `f` on the entry for `key`, created by `init` if the table has none (or forgot it).
    pub(crate) fn with<R>(&self, key: K, init: impl FnOnce() -> V, f: impl FnOnce(&mut V) -> R) -> R {
        let mut guard = self.shard(&key);
        let shard = &mut *guard;
        f(Self::entry(&mut shard.current, &mut shard.previous, self.generation, key, init))
    }

    /// How many entries the table holds now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap_or_else(|p| p.into_inner());
                s.current.len() + s.previous.len()
            })
            .sum()
    }

    /// The most entries the table can hold.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.shards.len() * self.generation * 2
    }
}

impl<K: Hash + Eq + Copy, V: Shares> Table<K, V> {
    /// Like [`Table::with`], under the same lock: when `f` says a use was taken, it is counted to share and
    /// the key listed for [`Table::take_pending`] (if `share`; otherwise it is only counted).
    pub(crate) fn with_use(
        &self,
        key: K,
        share: bool,
        init: impl FnOnce() -> V,
        f: impl FnOnce(&mut V) -> bool,
    ) -> bool {
        let mut guard = self.shard(&key);
        let shard = &mut *guard;
        let v = Self::entry(&mut shard.current, &mut shard.previous, self.generation, key, init);
        if !f(v) {
            return false;
        }
        let s = v.synced();
        s.pending = s.pending.saturating_add(1);
        if share && !s.marked && shard.dirty.len() < self.generation {
            s.marked = true;
            shard.dirty.push(key);
        }
        true
    }

    /// The uses not yet shared, by key (each moved from pending to in flight).
    pub(crate) fn take_pending(&self, out: &mut Vec<(K, u32)>) {
        for shard in self.shards.iter() {
            let mut guard = shard.lock().unwrap_or_else(|p| p.into_inner());
            let shard = &mut *guard;
            for key in std::mem::take(&mut shard.dirty) {
                if let Some(v) = shard.current.get_mut(&key).or_else(|| shard.previous.get_mut(&key)) {
                    let s = v.synced();
                    s.marked = false;
                    if s.pending > 0 {
                        out.push((key, s.pending));
                        s.inflight = s.pending;
                        s.pending = 0;
                    }
                }
            }
        }
    }

    /// What became of uses taken by [`Table::take_pending`]: written, with everyone's total now (`Some`), or
    /// not (`None`: they are pending again).
    pub(crate) fn written(&self, key: K, total: Option<u64>) {
        let mut guard = self.shard(&key);
        let shard = &mut *guard;
        let Some(v) = shard.current.get_mut(&key).or_else(|| shard.previous.get_mut(&key)) else { return };
        let s = v.synced();
        let inflight = std::mem::take(&mut s.inflight);
        match total {
            Some(total) => {
                let others = total.saturating_sub(s.seen + u64::from(inflight));
                s.seen = s.seen.max(total);
                v.others_used(others);
            }
            None => {
                s.pending = s.pending.saturating_add(inflight);
                if !s.marked && shard.dirty.len() < self.generation {
                    s.marked = true;
                    shard.dirty.push(key);
                }
            }
        }
    }

    /// Another instance wrote `key`'s total: what this entry did not know of counts here too (an entry is
    /// made by `init` if the table has none, so a client met elsewhere first is known here).
    pub(crate) fn learned(&self, key: K, total: u64, init: impl FnOnce() -> V) {
        self.with(key, init, |v| {
            let s = v.synced();
            let others = total.saturating_sub(s.seen + u64::from(s.inflight));
            if total > s.seen {
                s.seen = total;
            }
            v.others_used(others);
        });
    }
}

/// Counts free requests per client prefix.
#[derive(Debug)]
pub(crate) struct Freebies {
    limit: u32,
    pub(crate) used: Table<ClientPrefix, Synced>,
    /// Whether its uses are shared with other instances.
    shared: bool,
}

impl Shares for Synced {
    fn synced(&mut self) -> &mut Synced {
        self
    }
    fn others_used(&mut self, _: u64) {}
}

impl Freebies {
    pub(crate) fn new(limit: u32, capacity: usize, shared: bool) -> Self {
        Self { limit, used: Table::new(if limit == 0 { 1 } else { capacity }), shared }
    }

    /// Takes one free request for `client`, if any is left.
    pub(crate) fn take(&self, client: ClientPrefix) -> bool {
        if self.limit == 0 {
            return false;
        }
        let limit = u64::from(self.limit);
        // Counted as a use to share (pending) by `with_use`: the entry's total is everyone's.
        self.used.with_use(client, self.shared, Synced::default, |s| s.used() < limit)
    }

    /// The limit (0: none).
    pub(crate) fn limit(&self) -> u32 {
        self.limit
    }
}

/// One token bucket.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Bucket {
    tokens: f64,
    at: Instant,
    /// Its uses on every instance (shared limits only).
    synced: Synced,
    burst: f64,
}

impl Shares for Bucket {
    fn synced(&mut self) -> &mut Synced {
        &mut self.synced
    }
    /// Tokens others took come out of this bucket too (down to a burst's debt, repaid by the refill).
    fn others_used(&mut self, n: u64) {
        self.tokens = (self.tokens - n as f64).max(-self.burst);
    }
}

/// A bucket's rule: refill rate and size.
#[derive(Clone, Copy, Debug)]
struct Rate {
    per_second: f64,
    burst: f64,
}

impl Rate {
    fn new(per_second: f64, burst: u32) -> Self {
        // Config checks keep per_second finite and positive; these bounds keep the arithmetic finite anyway.
        let per_second = if per_second.is_finite() { per_second.clamp(0.001, 1e9) } else { 0.001 };
        Self { per_second, burst: f64::from(burst.max(1)) }
    }

    fn full(self, now: Instant) -> Bucket {
        Bucket { tokens: self.burst, at: now, synced: Synced::default(), burst: self.burst }
    }

    /// Takes a token from `b`; when empty, how long until one is available.
    fn take(self, b: &mut Bucket, now: Instant) -> Result<(), Duration> {
        let refill = now.saturating_duration_since(b.at).as_secs_f64() * self.per_second;
        b.tokens = (b.tokens + refill).min(self.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            // At most 1000 s (per_second >= 0.001), never negative: from_secs_f64 cannot panic.
            Err(Duration::from_secs_f64(((1.0 - b.tokens) / self.per_second).clamp(0.0, 1e6)))
        }
    }
}

/// What a per-service rate limit counts by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum LimitKey {
    /// A verified token.
    Token(TokenId),
    /// A client prefix.
    Client(ClientPrefix),
}

/// A token bucket per key, in a bounded table.
#[derive(Debug)]
pub(crate) struct RateLimiter<K> {
    rate: Rate,
    pub(crate) buckets: Table<K, Bucket>,
    /// Whether its uses are shared with other instances.
    shared: bool,
}

impl<K: Hash + Eq + Copy> RateLimiter<K> {
    pub(crate) fn new(per_second: f64, burst: u32, capacity: usize, shared: bool) -> Self {
        Self { rate: Rate::new(per_second, burst), buckets: Table::new(capacity), shared }
    }

    /// Takes a token for `key`; when empty, how long until one is available.
    pub(crate) fn check(&self, key: K) -> Result<(), Duration> {
        let now = Instant::now();
        let rate = self.rate;
        if !self.shared {
            return self.buckets.with(key, || rate.full(now), |b| rate.take(b, now));
        }
        let mut wait = Duration::ZERO;
        let took = self.buckets.with_use(
            key,
            true,
            || rate.full(now),
            |b| match rate.take(b, now) {
                Ok(()) => true,
                Err(w) => {
                    wait = w;
                    false
                }
            },
        );
        if took { Ok(()) } else { Err(wait) }
    }

    /// Another instance wrote `key`'s total (see [`Table::learned`]).
    pub(crate) fn learned(&self, key: K, total: u64) {
        let rate = self.rate;
        self.buckets.learned(key, total, || rate.full(Instant::now()));
    }
}

/// The limit on challenges: one bucket per client prefix and one for everyone, both always on.
#[derive(Debug)]
pub(crate) struct ChallengeLimiter {
    per_client: RateLimiter<ClientPrefix>,
    global_rate: Rate,
    global: Mutex<Bucket>,
}

impl ChallengeLimiter {
    pub(crate) fn new(c: &crate::config::ChallengeLimitConfig, capacity: usize) -> Self {
        let global_rate = Rate::new(c.global_per_second, c.global_burst);
        Self {
            per_client: RateLimiter::new(c.per_client_per_second, c.per_client_burst, capacity, false),
            global_rate,
            global: Mutex::new(global_rate.full(Instant::now())),
        }
    }

    /// Takes a challenge for `client`: its own bucket first (a client over its limit spends nothing of the
    /// global one), then the global bucket.
    pub(crate) fn check(&self, client: ClientPrefix) -> Result<(), Duration> {
        self.per_client.check(client)?;
        let mut g = self.global.lock().unwrap_or_else(|p| p.into_inner());
        self.global_rate.take(&mut g, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_stay_within_their_capacity() {
        for capacity in [1, 10, 1000, 100_000] {
            let t: Table<u64, u32> = Table::new(capacity);
            for k in 0..(capacity as u64 * 5 + 100) {
                t.with(k, || 0, |v| *v += 1);
            }
            assert!(t.len() <= t.capacity(), "{} > {}", t.len(), t.capacity());
            assert!(t.capacity() <= capacity.max(2), "capacity {capacity} -> {}", t.capacity());
        }
    }

    #[test]
    fn a_recent_key_survives_a_generation_change() {
        let t: Table<u64, u32> = Table::new(1000);
        t.with(7, || 0, |v| *v = 42);
        // Touch key 7 after every few new keys: it keeps moving into the current generation.
        for k in 100..10_000u64 {
            t.with(k, || 0, |_| ());
            if k % 50 == 0 {
                assert_eq!(t.with(7, || 0, |v| *v), 42);
            }
        }
    }

    #[test]
    fn freebies_are_counted_per_prefix() {
        let f = Freebies::new(2, 1000, false);
        let a = ClientPrefix::of("2001:db8:0:1::1".parse().expect("ip"));
        let b = ClientPrefix::of("2001:db8:0:1::2".parse().expect("ip"));
        assert!(f.take(a) && f.take(b));
        assert!(!f.take(a), "two addresses of one /64 share its freebies");
        assert!(!Freebies::new(0, 1000, false).take(a));
    }

    /// Two tables standing for two instances, and a total standing for the store.
    #[test]
    fn shared_freebies_and_buckets_count_what_the_other_instance_admitted() {
        let a = ClientPrefix::V4(1);
        let (x, y) = (Freebies::new(3, 1000, true), Freebies::new(3, 1000, true));
        let mut store = 0u64;
        let sync = |f: &Freebies, store: &mut u64| {
            let mut out = Vec::new();
            f.used.take_pending(&mut out);
            for (k, n) in out {
                *store += u64::from(n);
                f.used.written(k, Some(*store));
            }
        };
        assert!(x.take(a) && x.take(a));
        sync(&x, &mut store);
        // y learns x's two uses from the store (the poll): one freebie is left, on either instance.
        y.used.learned(a, store, Synced::default);
        assert!(y.take(a));
        assert!(!y.take(a), "3 used in all");
        sync(&y, &mut store);
        assert_eq!(store, 3);
        x.used.learned(a, store, Synced::default);
        assert!(!x.take(a), "x knows of y's use");
        // A failed write keeps the uses pending: they are written next time.
        let z = Freebies::new(5, 1000, true);
        assert!(z.take(a));
        let mut out = Vec::new();
        z.used.take_pending(&mut out);
        assert_eq!(out, vec![(a, 1)]);
        z.used.written(a, None);
        out.clear();
        z.used.take_pending(&mut out);
        assert_eq!(out, vec![(a, 1)], "pending again after a failed write");

        // Buckets: what the other instance took comes out of this one's.
        let (p, q) = (RateLimiter::new(0.001, 4, 100, true), RateLimiter::new(0.001, 4, 100, true));
        for _ in 0..3 {
            assert!(p.check(7u8).is_ok());
        }
        let mut out = Vec::new();
        p.buckets.take_pending(&mut out);
        assert_eq!(out, vec![(7u8, 3)]);
        p.buckets.written(7, Some(3));
        q.learned(7, 3);
        assert!(q.check(7u8).is_ok(), "one of the burst of 4 is left");
        assert!(q.check(7u8).is_err());
        // q's write returns a total counting a use of p it had not read: p's bucket pays for q's use.
        q.buckets.take_pending(&mut out);
        q.buckets.written(7, Some(4));
        p.learned(7, 4);
        assert!(p.check(7u8).is_err(), "4 taken in all");
    }

    #[test]
    fn buckets_refill_and_say_when() {
        let r = RateLimiter::new(10.0, 2, 100, false);
        assert!(r.check(1u8).is_ok() && r.check(1u8).is_ok());
        let wait = r.check(1u8).expect_err("empty");
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100), "{wait:?}");
        assert!(r.check(2u8).is_ok(), "another key has its own bucket");
        // Absurd rates stay finite.
        for per_second in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e300] {
            let r = RateLimiter::new(per_second, 1, 10, false);
            let _ = r.check(0u8);
            let _ = r.check(0u8);
        }
    }
}

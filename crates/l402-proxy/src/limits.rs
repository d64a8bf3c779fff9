//! Freebies (N free requests per client prefix), token-bucket rate limits, and the challenge limiter that
//! always applies. Every table here has a fixed bound on what it holds.
//!
//! A [`Table`] is split into shards, each behind its own lock, and each shard keeps two generations: entries
//! are written to the current one; when it is full it becomes the previous one and the older generation is
//! dropped whole; an entry found in the previous generation moves to the current one. So a lookup costs one
//! lock and two hash probes at most, nothing ever scans a table, and a table holds at most its capacity. The
//! price: a key not seen for a generation is forgotten (a forgotten client starts with a full burst, or its
//! freebies again); the global challenge limit bounds what an attacker with many prefixes gains by that.

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
}

impl<K: Hash + Eq, V> Table<K, V> {
    /// A table holding at most `capacity` entries (at least one per shard).
    pub(crate) fn new(capacity: usize) -> Self {
        let shards = SHARDS.min(capacity / 128).max(1);
        let generation = (capacity / shards / 2).max(1);
        let shards = (0..shards)
            .map(|_| Mutex::new(Shard { current: HashMap::new(), previous: HashMap::new() }))
            .collect::<Vec<_>>()
            .into_boxed_slice();
        Self { shards, generation, hasher: RandomState::new() }
    }

    fn shard(&self, key: &K) -> MutexGuard<'_, Shard<K, V>> {
        let i = (self.hasher.hash_one(key) % self.shards.len() as u64) as usize;
        // A panic while holding the lock leaves plain counters behind: keep using them.
        self.shards[i].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Runs `f` on the entry for `key`, created by `init` if the table has none (or forgot it).
    pub(crate) fn with<R>(&self, key: K, init: impl FnOnce() -> V, f: impl FnOnce(&mut V) -> R) -> R {
        let mut guard = self.shard(&key);
        let shard = &mut *guard;
        if let Some(v) = shard.current.get_mut(&key) {
            return f(v);
        }
        let v = shard.previous.remove(&key).unwrap_or_else(init);
        if shard.current.len() >= self.generation {
            shard.previous = std::mem::take(&mut shard.current);
        }
        f(shard.current.entry(key).or_insert(v))
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

/// Counts free requests per client prefix.
#[derive(Debug)]
pub(crate) struct Freebies {
    limit: u32,
    used: Table<ClientPrefix, u32>,
}

impl Freebies {
    pub(crate) fn new(limit: u32, capacity: usize) -> Self {
        Self { limit, used: Table::new(if limit == 0 { 1 } else { capacity }) }
    }

    /// Takes one free request for `client`, if any is left.
    pub(crate) fn take(&self, client: ClientPrefix) -> bool {
        if self.limit == 0 {
            return false;
        }
        let limit = self.limit;
        self.used.with(
            client,
            || 0,
            |n| {
                if *n < limit {
                    *n += 1;
                    true
                } else {
                    false
                }
            },
        )
    }
}

/// One token bucket.
#[derive(Clone, Copy, Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
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
        Bucket { tokens: self.burst, at: now }
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
    buckets: Table<K, Bucket>,
}

impl<K: Hash + Eq> RateLimiter<K> {
    pub(crate) fn new(per_second: f64, burst: u32, capacity: usize) -> Self {
        Self { rate: Rate::new(per_second, burst), buckets: Table::new(capacity) }
    }

    /// Takes a token for `key`; when empty, how long until one is available.
    pub(crate) fn check(&self, key: K) -> Result<(), Duration> {
        let now = Instant::now();
        let rate = self.rate;
        self.buckets.with(key, || rate.full(now), |b| rate.take(b, now))
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
            per_client: RateLimiter::new(c.per_client_per_second, c.per_client_burst, capacity),
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
        let f = Freebies::new(2, 1000);
        let a = ClientPrefix::of("2001:db8:0:1::1".parse().expect("ip"));
        let b = ClientPrefix::of("2001:db8:0:1::2".parse().expect("ip"));
        assert!(f.take(a) && f.take(b));
        assert!(!f.take(a), "two addresses of one /64 share its freebies");
        assert!(!Freebies::new(0, 1000).take(a));
    }

    #[test]
    fn buckets_refill_and_say_when() {
        let r = RateLimiter::new(10.0, 2, 100);
        assert!(r.check(1u8).is_ok() && r.check(1u8).is_ok());
        let wait = r.check(1u8).expect_err("empty");
        assert!(wait > Duration::ZERO && wait <= Duration::from_millis(100), "{wait:?}");
        assert!(r.check(2u8).is_ok(), "another key has its own bucket");
        // Absurd rates stay finite.
        for per_second in [0.0, -1.0, f64::NAN, f64::INFINITY, 1e300] {
            let r = RateLimiter::new(per_second, 1, 10);
            let _ = r.check(0u8);
            let _ = r.check(0u8);
        }
    }
}

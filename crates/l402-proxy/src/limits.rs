//! Freebies (N free requests per client address) and token-bucket rate limits.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Counts free requests per address.
#[derive(Debug)]
pub(crate) struct Freebies {
    limit: u32,
    used: Mutex<HashMap<IpAddr, u32>>,
}

impl Freebies {
    pub(crate) fn new(limit: u32) -> Self {
        Self { limit, used: Mutex::new(HashMap::new()) }
    }

    /// Takes one free request for `addr`, if any is left.
    pub(crate) fn take(&self, addr: IpAddr) -> bool {
        if self.limit == 0 {
            return false;
        }
        let Ok(mut used) = self.used.lock() else { return false };
        let n = used.entry(addr).or_default();
        if *n < self.limit {
            *n += 1;
            true
        } else {
            false
        }
    }
}

/// A token bucket per key.
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl RateLimiter {
    pub(crate) fn new(per_second: f64, burst: u32) -> Self {
        Self { rate: per_second.max(0.001), burst: f64::from(burst.max(1)), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes a token for `key`; when empty, how long until one is available.
    pub(crate) fn check(&self, key: &str) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else { return Ok(()) };
        if buckets.len() > 100_000 {
            let burst = self.burst;
            let rate = self.rate;
            buckets.retain(|_, (tokens, at)| *tokens + at.elapsed().as_secs_f64() * rate < burst);
        }
        let (tokens, at) = buckets.entry(key.to_owned()).or_insert((self.burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.rate))
        }
    }
}

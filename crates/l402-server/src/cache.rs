//! A small in-memory cache of derived macaroon keys, so that verifying a token usually costs no store query.
//!
//! The bound on revocation: a token revoked through this paywall is refused at once (the cache is cleared);
//! revoked through another instance sharing the store, it is refused at most [`KeyCache::ttl`] later. The
//! default TTL is [`DEFAULT_KEY_CACHE_TTL`]. The same TTL bounds [`VerifiedCache`], the cache of credentials
//! verified recently.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use l402_proto::MacaroonKey;

use crate::paywall::L402Token;

/// The default time a cached key is trusted without asking the store again.
pub const DEFAULT_KEY_CACHE_TTL: Duration = Duration::from_secs(1);

/// The default number of keys cached; when full, entries past their TTL are dropped, then the cache is cleared.
pub const DEFAULT_KEY_CACHE_SIZE: usize = 100_000;

pub(crate) struct KeyCache {
    ttl: Duration,
    max: usize,
    map: Mutex<HashMap<[u8; 32], (MacaroonKey, bool, Instant)>>,
}

impl KeyCache {
    pub(crate) fn new(ttl: Duration, max: usize) -> Self {
        Self { ttl, max, map: Mutex::new(HashMap::new()) }
    }

    /// The cached key and paid flag, if fresh.
    pub(crate) fn get(&self, id_hash: &[u8; 32]) -> Option<(MacaroonKey, bool)> {
        if self.ttl.is_zero() {
            return None;
        }
        let map = self.map.lock().ok()?;
        let (key, paid, at) = map.get(id_hash)?;
        (at.elapsed() < self.ttl).then(|| (key.clone(), *paid))
    }

    pub(crate) fn put(&self, id_hash: [u8; 32], key: MacaroonKey, paid: bool) {
        if self.ttl.is_zero() {
            return;
        }
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= self.max {
                let ttl = self.ttl;
                map.retain(|_, (_, _, at)| at.elapsed() < ttl);
                if map.len() >= self.max {
                    map.clear();
                }
            }
            map.insert(id_hash, (key, paid, Instant::now()));
        }
    }

    pub(crate) fn clear(&self) {
        if let Ok(mut map) = self.map.lock() {
            map.clear();
        }
    }
}

/// Credentials verified recently, by their exact `Authorization` bytes, so that a token reused in a burst
/// costs one map lookup instead of a base64 decode and an HMAC chain. Trusted for the same TTL as the key
/// cache (so the revocation bound is unchanged) and cleared with it; expiry, service and capability are
/// checked again on every hit by the caller.
pub(crate) struct VerifiedCache {
    ttl: Duration,
    max: usize,
    map: Mutex<HashMap<Box<[u8]>, Verified>>,
}

/// A verified token and when it was verified.
type Verified = (L402Token, Instant);

/// Credentials longer than this are not cached (they are verified every time).
const MAX_CACHED_CREDENTIAL: usize = 4096;

impl VerifiedCache {
    pub(crate) fn new(ttl: Duration, max: usize) -> Self {
        Self { ttl, max, map: Mutex::new(HashMap::new()) }
    }

    pub(crate) fn get(&self, credential: &[u8]) -> Option<L402Token> {
        if self.ttl.is_zero() || credential.len() > MAX_CACHED_CREDENTIAL {
            return None;
        }
        let map = self.map.lock().ok()?;
        let (token, at) = map.get(credential)?;
        (at.elapsed() < self.ttl).then(|| token.clone())
    }

    pub(crate) fn put(&self, credential: &[u8], token: &L402Token) {
        if self.ttl.is_zero() || credential.len() > MAX_CACHED_CREDENTIAL {
            return;
        }
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= self.max {
                let ttl = self.ttl;
                map.retain(|_, (_, at)| at.elapsed() < ttl);
                if map.len() >= self.max {
                    map.clear();
                }
            }
            map.insert(credential.into(), (token.clone(), Instant::now()));
        }
    }

    pub(crate) fn clear(&self) {
        if let Ok(mut map) = self.map.lock() {
            map.clear();
        }
    }
}

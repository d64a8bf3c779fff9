//! Freebies and rate limits shared by the instances on one PostgreSQL store.
//!
//! Every instance decides from its own tables (no request waits for the store). Each entry counts the uses
//! it admitted that no other instance knows of yet; every `[shared_limits] sync_ms` one task per instance
//! writes them in one batch ([`TokenStore::add_usage`], which returns everyone's totals) and reads the totals
//! the others wrote since ([`TokenStore::usage_since`]). A use counted on one instance is known to all within
//! **2 × `sync_ms`**: it is written within one interval and read within the next. A client spreading its
//! requests over several instances gets, beyond its limit, at most what the others admit within that bound;
//! then every instance refuses it. A freebie taken elsewhere counts against the client here; a rate-limit
//! token taken elsewhere comes out of this instance's bucket too (down to a burst's debt, repaid by the
//! refill), so the instances together keep one rate per key.
//!
//! The store keeps a total per limit and key; a total not written for `retention_secs` is pruned (a client
//! forgotten there starts again, as when an instance's own table forgets it). If the store cannot be
//! reached, the uses stay pending and each instance goes on alone until it can.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use l402_proto::TokenId;
use l402_server::store::{TokenStore, UsageAdd};

use crate::client::ClientPrefix;
use crate::config::SharedLimitsConfig;
use crate::limits::LimitKey;
use crate::proxy::Service;
use crate::services::Registry;

/// How often pruning runs, at most.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The store's key for a client prefix: a kind byte, then the address bits.
pub(crate) fn prefix_key(p: &ClientPrefix, out: &mut Vec<u8>) {
    match p {
        ClientPrefix::V4(a) => {
            out.push(4);
            out.extend_from_slice(&a.to_be_bytes());
        }
        ClientPrefix::V6(a) => {
            out.push(6);
            out.extend_from_slice(&a.to_be_bytes());
        }
    }
}

fn parse_prefix(b: &[u8]) -> Option<ClientPrefix> {
    match b {
        [4, rest @ ..] => Some(ClientPrefix::V4(u32::from_be_bytes(rest.try_into().ok()?))),
        [6, rest @ ..] => Some(ClientPrefix::V6(u64::from_be_bytes(rest.try_into().ok()?))),
        _ => None,
    }
}

/// The store's key for a rate limit's key: a token (`t` and its id) or a client prefix.
pub(crate) fn limit_key(k: &LimitKey) -> Vec<u8> {
    let mut out = Vec::with_capacity(33);
    match k {
        LimitKey::Token(id) => {
            out.push(b't');
            out.extend_from_slice(&id.0);
        }
        LimitKey::Client(p) => prefix_key(p, &mut out),
    }
    out
}

fn parse_limit_key(b: &[u8]) -> Option<LimitKey> {
    match b {
        [b't', rest @ ..] => Some(LimitKey::Token(TokenId(rest.try_into().ok()?))),
        _ => parse_prefix(b).map(LimitKey::Client),
    }
}

const FREEBIES: &str = "freebies/";
const RATE: &str = "rate/";

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// A use batch being written: which table each add came from.
enum From {
    Freebies(Arc<Service>, ClientPrefix),
    Rate(Arc<Service>, LimitKey),
}

/// Writes this instance's pending uses; returns how many totals were written.
async fn write(registry: &Registry, store: &dyn TokenStore) -> Result<usize, String> {
    let table = registry.current();
    let mut adds = Vec::new();
    let mut from = Vec::new();
    let mut prefixes = Vec::new();
    let mut keys = Vec::new();
    for s in &table.services {
        if s.freebies.limit() > 0 {
            prefixes.clear();
            s.freebies.used.take_pending(&mut prefixes);
            for &(p, n) in &prefixes {
                let mut key = Vec::with_capacity(9);
                prefix_key(&p, &mut key);
                adds.push(UsageAdd { scope: format!("{FREEBIES}{}", s.spec.name), key, delta: u64::from(n) });
                from.push(From::Freebies(s.clone(), p));
            }
        }
        if let Some((_, limiter)) = &s.limiter {
            keys.clear();
            limiter.buckets.take_pending(&mut keys);
            for &(k, n) in &keys {
                adds.push(UsageAdd {
                    scope: format!("{RATE}{}", s.spec.name),
                    key: limit_key(&k),
                    delta: u64::from(n),
                });
                from.push(From::Rate(s.clone(), k));
            }
        }
    }
    if adds.is_empty() {
        return Ok(0);
    }
    let result = store.add_usage(&adds, now_secs()).await;
    let totals: Vec<Option<u64>> = match &result {
        Ok(t) => t.iter().map(|&t| Some(t)).collect(),
        Err(_) => vec![None; from.len()],
    };
    for (f, total) in from.into_iter().zip(totals) {
        match f {
            From::Freebies(s, p) => s.freebies.used.written(p, total),
            From::Rate(s, k) => {
                if let Some((_, l)) = &s.limiter {
                    l.buckets.written(k, total);
                }
            }
        }
    }
    result.map(|_| adds.len()).map_err(|e| e.to_string())
}

/// Reads the totals written since `after` and applies them; returns the last version read.
async fn read(registry: &Registry, store: &dyn TokenStore, after: u64) -> Result<u64, String> {
    let rows = store.usage_since(after).await.map_err(|e| e.to_string())?;
    let Some(last) = rows.last().map(|r| r.version) else { return Ok(after) };
    let table = registry.current();
    let by_name: HashMap<&str, &Arc<Service>> = table.services.iter().map(|s| (s.spec.name.as_str(), s)).collect();
    for r in &rows {
        if let Some(name) = r.scope.strip_prefix(FREEBIES) {
            if let (Some(s), Some(p)) = (by_name.get(name), parse_prefix(&r.key)) {
                s.freebies.used.learned(p, r.used, Default::default);
            }
        } else if let Some(name) = r.scope.strip_prefix(RATE) {
            if let (Some(Some((_, l))), Some(k)) = (by_name.get(name).map(|s| &s.limiter), parse_limit_key(&r.key)) {
                l.learned(k, r.used);
            }
        }
    }
    Ok(last)
}

/// Shares the registry's freebies and rate limits through `store` until the registry is gone.
pub(crate) fn spawn(
    registry: &Arc<Registry>,
    store: Arc<dyn TokenStore>,
    config: SharedLimitsConfig,
) -> tokio::task::JoinHandle<()> {
    let me: Weak<Registry> = Arc::downgrade(registry);
    let interval = Duration::from_millis(config.sync_ms.max(1));
    tokio::spawn(async move {
        // What was written before this instance started matters only for keys it meets: their first write
        // returns their totals. So following starts at the newest version.
        let mut seen = store.usage_version().await.unwrap_or(0);
        let mut failing = false;
        let mut pruned = Instant::now();
        loop {
            tokio::time::sleep(interval).await;
            let Some(r) = me.upgrade() else { return };
            let outcome = async {
                write(&r, store.as_ref()).await?;
                seen = read(&r, store.as_ref(), seen).await?;
                if pruned.elapsed() >= PRUNE_EVERY {
                    pruned = Instant::now();
                    let before = now_secs().saturating_sub(config.retention_secs);
                    let n = store.prune_usage(before).await.map_err(|e| e.to_string())?;
                    if n > 0 {
                        tracing::debug!(forgotten = n, "shared limits: old totals pruned");
                    }
                }
                Ok::<_, String>(())
            }
            .await;
            match outcome {
                Ok(()) if failing => {
                    failing = false;
                    tracing::info!("shared limits: the store can be written again");
                }
                Ok(()) => {}
                Err(e) if !failing => {
                    failing = true;
                    tracing::warn!(error = %e, "shared limits: the store cannot be written; limits are counted here alone");
                }
                Err(_) => {}
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_keys_read_back_as_what_they_were_written_from() {
        for k in [
            LimitKey::Client(ClientPrefix::V4(0xc000_0201)),
            LimitKey::Client(ClientPrefix::V6(0x2001_0db8_0000_0001)),
            LimitKey::Token(TokenId([9; 32])),
        ] {
            assert_eq!(parse_limit_key(&limit_key(&k)), Some(k));
        }
        for bad in [&b""[..], b"\x04\x01", b"\x06\x01\x02", b"t\x01", b"x\x00\x00\x00\x00"] {
            assert_eq!(parse_limit_key(bad), None, "{bad:?}");
        }
    }
}

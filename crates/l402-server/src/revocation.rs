//! The revocation set: every revoked token id, held in memory by every instance and checked on every
//! verification (cache hits included), so that refusing a revoked token costs a hash lookup and no store read.
//!
//! The store lists revocations by sequence number (`l402_revocations`); each instance reads the new ones
//! every poll interval (a background task, started with the first verification) and on its first
//! verification reads them all, so a token revoked before a restart stays refused.
//!
//! The bound: a token revoked through one instance is refused by that instance at once, and by every other
//! instance sharing the store within **2 × the poll interval** (default [`DEFAULT_REVOCATION_POLL`]: 2 s).
//! It holds even when the store cannot be read: an instance whose last successful read started longer ago
//! than that reads again before verifying, and refuses (503) if it cannot.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use l402_proto::TokenId;

use crate::store::{StoreError, TokenStore};

/// The default interval between two reads of the revocation list.
pub const DEFAULT_REVOCATION_POLL: Duration = Duration::from_secs(1);

/// Revocations read per query.
const PAGE: u32 = 10_000;

pub(crate) struct Revocations {
    set: RwLock<HashSet<TokenId>>,
    /// The size of `set`, so that the common case (nothing revoked) takes no lock.
    count: AtomicUsize,
    /// The last sequence number read, behind the lock that makes reads one at a time.
    last_seq: tokio::sync::Mutex<u64>,
    /// When the last successful read started, in ms since `epoch`, plus one (0: never).
    fresh_at: AtomicU64,
    epoch: Instant,
    interval: Duration,
    poller: AtomicBool,
}

impl Revocations {
    pub(crate) fn new(interval: Duration) -> Self {
        Self {
            set: RwLock::default(),
            count: AtomicUsize::new(0),
            last_seq: tokio::sync::Mutex::new(0),
            fresh_at: AtomicU64::new(0),
            epoch: Instant::now(),
            interval: interval.max(Duration::from_millis(10)),
            poller: AtomicBool::new(false),
        }
    }

    /// The bound on a revocation made through another instance.
    pub(crate) fn bound(&self) -> Duration {
        self.interval * 2
    }

    pub(crate) fn contains(&self, id: &TokenId) -> bool {
        self.count.load(Ordering::Acquire) > 0
            && self.set.read().unwrap_or_else(std::sync::PoisonError::into_inner).contains(id)
    }

    /// Adds a revocation made here (refused here from now on).
    pub(crate) fn insert(&self, id: TokenId) {
        let mut set = self.set.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        set.insert(id);
        self.count.store(set.len(), Ordering::Release);
    }

    fn ms_since_epoch(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_millis() as u64 + 1
    }

    fn is_fresh(&self) -> bool {
        let at = self.fresh_at.load(Ordering::Acquire);
        at != 0 && self.ms_since_epoch(Instant::now()).saturating_sub(at) <= self.bound().as_millis() as u64
    }

    /// Reads the revocations made since the last read. Reads are one at a time; a caller that waited for
    /// another's read that started after it asked takes that one.
    pub(crate) async fn refresh(&self, store: &dyn TokenStore) -> Result<(), StoreError> {
        let asked = self.ms_since_epoch(Instant::now());
        let mut last = self.last_seq.lock().await;
        if self.fresh_at.load(Ordering::Acquire) >= asked {
            return Ok(());
        }
        let started = self.ms_since_epoch(Instant::now());
        loop {
            let page = store.revocations_since(*last, PAGE).await?;
            if !page.is_empty() {
                let mut set = self.set.write().unwrap_or_else(std::sync::PoisonError::into_inner);
                set.extend(page.iter().map(|r| r.token_id));
                self.count.store(set.len(), Ordering::Release);
            }
            if let Some(r) = page.last() {
                *last = r.seq;
            }
            if page.len() < PAGE as usize {
                break;
            }
        }
        self.fresh_at.fetch_max(started, Ordering::AcqRel);
        Ok(())
    }

    /// Makes sure the set is within its bound before a verification: starts the poller the first time, and
    /// reads the store here only if the set is older than the bound (never read, or the poller is failing).
    pub(crate) async fn ensure_fresh(self: &Arc<Self>, store: &Arc<dyn TokenStore>) -> Result<(), StoreError> {
        // A load first: the swap is a write, and every request of every core passes here.
        if !self.poller.load(Ordering::Acquire) && !self.poller.swap(true, Ordering::AcqRel) {
            tokio::spawn(poll(Arc::downgrade(self), store.clone()));
        }
        if self.is_fresh() {
            return Ok(());
        }
        self.refresh(store.as_ref()).await.map_err(|e| StoreError(format!("cannot read the revocation list: {}", e.0)))
    }
}

/// Reads the list every interval until the paywall is gone.
async fn poll(me: Weak<Revocations>, store: Arc<dyn TokenStore>) {
    let mut failing = false;
    loop {
        let Some(interval) = me.upgrade().map(|r| r.interval) else { return };
        tokio::time::sleep(interval).await;
        let Some(r) = me.upgrade() else { return };
        match r.refresh(store.as_ref()).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("the revocation list can be read again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot read the revocation list; tokens are refused once it is stale");
            }
            Err(_) => {}
        }
    }
}

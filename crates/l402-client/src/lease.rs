//! One payment per origin and service at a time, across tasks and processes.
//!
//! Two layers: a tokio mutex per key inside the process (so fifty tasks queue without touching the file
//! system), then an exclusive `flock` on `locks/<sha256(origin NUL service)>.lock` in the data directory (so
//! processes sharing the directory queue too). The kernel drops an `flock` when its holder dies, SIGKILL
//! included, so a crashed process never leaves a stale lease. Whoever holds the lease re-reads the store
//! before paying: a waiter usually finds the token the previous holder bought and pays nothing.

use std::collections::HashMap;
use std::fs::{File, TryLockError};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::Error;
use crate::store::{create_private_dir, create_private_file};

const POLL: Duration = Duration::from_millis(25);

/// Leases for one data directory.
#[derive(Debug, Default)]
pub(crate) struct Leases {
    dir: PathBuf,
    local: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A held lease; dropping it releases both layers.
#[derive(Debug)]
pub(crate) struct Lease {
    _file: File,
    _local: tokio::sync::OwnedMutexGuard<()>,
}

impl Leases {
    pub(crate) fn new(data_dir: &std::path::Path) -> Self {
        Self { dir: data_dir.join("locks"), local: Mutex::default() }
    }

    /// Waits (up to `timeout`) for the lease of `origin` + `service`.
    pub(crate) async fn acquire(&self, origin: &str, service: &str, timeout: Duration) -> Result<Lease, Error> {
        let key = hex::encode(Sha256::digest(format!("{origin}\0{service}")));
        let what = || format!("{origin} (service {service:?})");
        let local = {
            let mut map = self.local.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            map.entry(key.clone()).or_default().clone()
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let guard =
            tokio::time::timeout_at(deadline, local.lock_owned()).await.map_err(|_| Error::LeaseTimeout(what()))?;
        create_private_dir(&self.dir)?;
        let file = create_private_file(&self.dir.join(format!("{key}.lock")))?;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(Lease { _file: file, _local: guard }),
                Err(TryLockError::WouldBlock) => {}
                Err(TryLockError::Error(e)) => return Err(Error::Store(format!("locking {}: {e}", what()))),
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::LeaseTimeout(what()));
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Takes an exclusive `flock` on `path` (created `0600` if missing), waiting up to `timeout`. The lock lasts as
/// long as the returned file is open, and the kernel drops it if the process dies. (The command line uses it to
/// keep two processes from running the same embedded wallet.)
pub async fn lock_exclusive(path: &std::path::Path, timeout: Duration) -> Result<File, Error> {
    let file = create_private_file(path)?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(file),
            Err(TryLockError::WouldBlock) if tokio::time::Instant::now() < deadline => tokio::time::sleep(POLL).await,
            Err(TryLockError::WouldBlock) => return Err(Error::LeaseTimeout(path.display().to_string())),
            Err(TryLockError::Error(e)) => return Err(Error::Store(format!("locking {}: {e}", path.display()))),
        }
    }
}

//! The embedded default: one SQLite file in WAL mode, created (and migrated) on first start.
//!
//! The file is created `0600` (SQLite gives its `-wal` and `-shm` files the database file's mode) in a
//! directory created `0700`: it holds root keys. An existing file readable by others is used, with a warning.
//!
//! Calls run on tokio's blocking pool over one connection; SQLite serializes writers anyway, and a root-key
//! lookup is a primary-key read that takes microseconds.

use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use l402_proto::{Msat, PaymentHash, RootKey, TokenId};
use rusqlite::{Connection, OptionalExtension as _, params};

use super::migrations::SQLITE;
use super::sqlite_sessions as sessions;
use super::{
    Balance, BalanceKey, KeyLookup, NewSession, NewToken, Reserve, Revenue, Revocation, SessionClose, SessionCredit,
    SessionDebit, SessionInfo, SessionOpen, SpentCharge, StoreError, StoredService, TokenInfo, TokenQuery, TokenStore,
    Usage, UsageAdd, UsedToken,
};

/// A [`TokenStore`] in a SQLite file.
#[derive(Clone)]
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteStore")
    }
}

fn bytes32(v: Vec<u8>) -> Result<[u8; 32], StoreError> {
    v.try_into().map_err(|_| StoreError("stored value is not 32 bytes".into()))
}

/// How long a statement waits for another connection's lock (and an open for another instance's setup).
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether SQLite refused because another connection holds a lock.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(StoreError::from_display)?;
        }
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)
            .map_err(StoreError::from_display)?;
        if file.metadata().is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
            tracing::warn!(path = %path.display(), "the token store is readable by others: chmod 600 it (and its -wal, -shm)");
        }
        drop(file);
        // Instances starting together on one new file: switching it to WAL can be refused as busy without
        // SQLite's busy handler being asked, so a busy or locked database is retried for a while.
        let started = std::time::Instant::now();
        loop {
            match Connection::open(path).and_then(Self::init) {
                Ok(conn) => return Ok(Self { conn: Arc::new(Mutex::new(conn)) }),
                Err(e) if is_busy(&e) && started.elapsed() < BUSY_TIMEOUT => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => return Err(StoreError::from_display(e)),
            }
        }
    }

    /// An in-memory database (tests).
    pub fn in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory().and_then(Self::init).map_err(StoreError::from_display)?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    fn init(mut conn: Connection) -> Result<Connection, rusqlite::Error> {
        conn.busy_timeout(BUSY_TIMEOUT)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS l402_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
        )?;
        for (version, sql) in SQLITE {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let done: Option<i64> = tx
                .query_row("SELECT version FROM l402_migrations WHERE version = ?1", [version], |r| r.get(0))
                .optional()?;
            if done.is_none() {
                tx.execute_batch(sql)?;
                tx.execute(
                    "INSERT INTO l402_migrations (version, applied_at) VALUES (?1, strftime('%s','now'))",
                    [version],
                )?;
            }
            tx.commit()?;
        }
        Ok(conn)
    }

    async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().map_err(|_| StoreError("connection lock poisoned".into()))?;
            f(&mut guard).map_err(StoreError::from_display)
        })
        .await
        .map_err(StoreError::from_display)?
    }
}

#[async_trait]
impl TokenStore for SqliteStore {
    async fn insert(&self, t: &NewToken) -> Result<(), StoreError> {
        let t = t.clone();
        self.with(move |c| {
            c.execute(
                "INSERT INTO l402_tokens (id_hash, token_id, payment_hash, service, price_msat, root_key, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    &t.id_hash[..],
                    &t.token_id.0[..],
                    &t.payment_hash.0[..],
                    t.service,
                    t.price.0 as i64,
                    &t.root_key.0[..],
                    t.created_at as i64,
                    t.expires_at.map(|e| e as i64)
                ],
            )
            .map(drop)
        })
        .await
    }

    async fn lookup(&self, id_hash: &[u8; 32]) -> Result<KeyLookup, StoreError> {
        let id = *id_hash;
        let row = self
            .with(move |c| {
                c.query_row(
                    "SELECT root_key, paid_at, revoked_at FROM l402_tokens WHERE id_hash = ?1",
                    [&id[..]],
                    |r| Ok((r.get::<_, Option<Vec<u8>>>(0)?, r.get::<_, Option<i64>>(1)?, r.get::<_, Option<i64>>(2)?)),
                )
                .optional()
            })
            .await?;
        Ok(match row {
            None => KeyLookup::Unknown,
            Some((None, _, Some(_))) => KeyLookup::Revoked,
            // A stateless token's record: no root key here.
            Some((None, _, None)) => KeyLookup::Unknown,
            Some((Some(key), paid, _)) => KeyLookup::Active { root_key: RootKey(bytes32(key)?), paid: paid.is_some() },
        })
    }

    async fn revoke(&self, token_id: &TokenId) -> Result<bool, StoreError> {
        let id = token_id.0;
        self.with(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let n = tx.execute(
                "UPDATE l402_tokens SET root_key = NULL, revoked_at = strftime('%s','now') WHERE token_id = ?1 AND revoked_at IS NULL",
                [&id[..]],
            )?;
            if n > 0 {
                tx.execute(
                    "INSERT OR IGNORE INTO l402_revocations (token_id, revoked_at) VALUES (?1, strftime('%s','now'))",
                    [&id[..]],
                )?;
            }
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }

    async fn revoke_id(&self, token_id: &TokenId) -> Result<bool, StoreError> {
        let id = token_id.0;
        self.with(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let n = tx.execute(
                "INSERT OR IGNORE INTO l402_revocations (token_id, revoked_at) VALUES (?1, strftime('%s','now'))",
                [&id[..]],
            )?;
            tx.execute(
                "UPDATE l402_tokens SET root_key = NULL, revoked_at = COALESCE(revoked_at, strftime('%s','now')) WHERE token_id = ?1",
                [&id[..]],
            )?;
            tx.commit()?;
            Ok(n > 0)
        })
        .await
    }

    async fn revocations_since(&self, after: u64, limit: u32) -> Result<Vec<Revocation>, StoreError> {
        let rows = self
            .with(move |c| {
                let mut st = c.prepare_cached(
                    "SELECT seq, token_id FROM l402_revocations WHERE seq > ?1 ORDER BY seq LIMIT ?2",
                )?;
                let rows =
                    st.query_map(params![after as i64, limit], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
                rows.collect::<Result<Vec<_>, _>>()
            })
            .await?;
        rows.into_iter().map(|(seq, id)| Ok(Revocation { seq: seq as u64, token_id: TokenId(bytes32(id)?) })).collect()
    }

    async fn record(&self, tokens: &[UsedToken]) -> Result<Vec<bool>, StoreError> {
        let tokens = tokens.to_vec();
        self.with(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut done = Vec::with_capacity(tokens.len());
            {
                let mut st = tx.prepare_cached(
                    "INSERT OR IGNORE INTO l402_tokens
                     (id_hash, token_id, payment_hash, service, price_msat, created_at, expires_at, paid_at, paid_msat, revoked_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, (SELECT revoked_at FROM l402_revocations WHERE token_id = ?2))",
                )?;
                for t in &tokens {
                    let n = st.execute(params![
                        &t.id_hash[..],
                        &t.token_id.0[..],
                        &t.payment_hash.0[..],
                        t.service,
                        t.price.0 as i64,
                        t.created_at as i64,
                        t.expires_at.map(|e| e as i64),
                        t.paid_at as i64,
                        t.paid.0 as i64
                    ])?;
                    done.push(n > 0);
                }
            }
            tx.commit()?;
            Ok(done)
        })
        .await
    }

    async fn mark_paid(&self, payment_hash: &PaymentHash, amount: Option<Msat>, at: u64) -> Result<bool, StoreError> {
        let h = payment_hash.0;
        self.with(move |c| {
            c.execute(
                "UPDATE l402_tokens SET paid_at = ?2, paid_msat = COALESCE(?3, price_msat) WHERE payment_hash = ?1 AND paid_at IS NULL",
                params![&h[..], at as i64, amount.map(|a| a.0 as i64)],
            )
            .map(|n| n > 0)
        })
        .await
    }

    async fn list(&self, query: &TokenQuery) -> Result<Vec<TokenInfo>, StoreError> {
        let limit = query.limit;
        let service = query.service.clone();
        let (after_at, after_id) = match query.after {
            Some(c) => (Some(c.created_at as i64), Some(c.token_id.0.to_vec())),
            None => (None, None),
        };
        let rows = self
            .with(move |c| {
                let mut st = c.prepare_cached(
                    "SELECT token_id, payment_hash, service, price_msat, created_at, expires_at, paid_at, revoked_at
                     FROM l402_tokens
                     WHERE (?2 IS NULL OR service = ?2) AND (?3 IS NULL OR (created_at, token_id) < (?3, ?4))
                     ORDER BY created_at DESC, token_id DESC LIMIT ?1",
                )?;
                let rows = st.query_map(params![limit, service, after_at, after_id], |r| {
                    Ok((
                        r.get::<_, Vec<u8>>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, i64>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                        r.get::<_, Option<i64>>(6)?,
                        r.get::<_, Option<i64>>(7)?,
                    ))
                })?;
                rows.collect::<Result<Vec<_>, _>>()
            })
            .await?;
        rows.into_iter()
            .map(|(id, hash, service, price, created, expires, paid, revoked)| {
                Ok(TokenInfo {
                    token_id: TokenId(bytes32(id)?),
                    payment_hash: PaymentHash(bytes32(hash)?),
                    service,
                    price: Msat(price as u64),
                    created_at: created as u64,
                    expires_at: expires.map(|v| v as u64),
                    paid_at: paid.map(|v| v as u64),
                    revoked_at: revoked.map(|v| v as u64),
                })
            })
            .collect()
    }

    async fn revenue(&self) -> Result<Vec<Revenue>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare(
                "SELECT service, SUM(tokens), SUM(charges), SUM(amount) FROM (
                     SELECT service, COUNT(*) AS tokens, 0 AS charges, COALESCE(SUM(paid_msat), 0) AS amount
                     FROM l402_tokens WHERE paid_at IS NOT NULL GROUP BY service
                     UNION ALL
                     SELECT service, 0, COUNT(*), SUM(amount_msat) FROM l402_charges GROUP BY service
                 ) GROUP BY service ORDER BY service",
            )?;
            let rows = st.query_map([], |r| {
                Ok(Revenue {
                    service: r.get(0)?,
                    tokens_paid: r.get::<_, i64>(1)? as u64,
                    charges_paid: r.get::<_, i64>(2)? as u64,
                    amount: Msat(r.get::<_, i64>(3)? as u64),
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn spend_charge(&self, charge: &SpentCharge) -> Result<bool, StoreError> {
        let c = charge.clone();
        self.with(move |conn| {
            conn.execute(
                "INSERT INTO l402_charges (payment_hash, challenge_id, service, amount_msat, consumed_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (payment_hash) DO NOTHING",
                params![
                    &c.payment_hash.0[..],
                    c.challenge_id,
                    c.service,
                    c.amount.0 as i64,
                    c.consumed_at as i64,
                    c.expires_at as i64
                ],
            )
            .map(|n| n > 0)
        })
        .await
    }

    async fn add_usage(&self, adds: &[UsageAdd], at: u64) -> Result<Vec<u64>, StoreError> {
        if adds.is_empty() {
            return Ok(Vec::new());
        }
        let adds = adds.to_vec();
        self.with(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let version: i64 =
                tx.query_row("SELECT COALESCE(MAX(version), 0) + 1 FROM l402_usage", [], |r| r.get(0))?;
            let mut totals = Vec::with_capacity(adds.len());
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO l402_usage (scope, key, used, version, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (scope, key) DO UPDATE SET used = used + excluded.used, version = excluded.version,
                         updated_at = excluded.updated_at
                     RETURNING used",
                )?;
                for a in &adds {
                    let delta = i64::try_from(a.delta).unwrap_or(i64::MAX);
                    let used: i64 = st.query_row(params![a.scope, a.key, delta, version, at as i64], |r| r.get(0))?;
                    totals.push(used.max(0) as u64);
                }
            }
            tx.commit()?;
            Ok(totals)
        })
        .await
    }

    async fn usage_since(&self, after: u64) -> Result<Vec<Usage>, StoreError> {
        self.with(move |c| {
            let mut st = c.prepare_cached(
                "SELECT scope, key, used, version FROM l402_usage WHERE version > ?1 ORDER BY version, scope, key",
            )?;
            let rows = st.query_map(params![after as i64], |r| {
                Ok(Usage {
                    scope: r.get(0)?,
                    key: r.get(1)?,
                    used: r.get::<_, i64>(2)?.max(0) as u64,
                    version: r.get::<_, i64>(3)? as u64,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn usage_version(&self) -> Result<u64, StoreError> {
        self.with(|c| c.query_row("SELECT COALESCE(MAX(version), 0) FROM l402_usage", [], |r| r.get::<_, i64>(0)))
            .await
            .map(|v| v as u64)
    }

    async fn prune_usage(&self, before: u64) -> Result<u64, StoreError> {
        self.with(move |c| c.execute("DELETE FROM l402_usage WHERE updated_at < ?1", params![before as i64]))
            .await
            .map(|n| n as u64)
    }

    async fn put_service(&self, name: &str, config: Option<&str>) -> Result<u64, StoreError> {
        let (name, config) = (name.to_owned(), config.map(str::to_owned));
        self.with(move |c| {
            let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let version: i64 =
                tx.query_row("SELECT COALESCE(MAX(version), 0) + 1 FROM l402_services", [], |r| r.get(0))?;
            tx.execute(
                "INSERT INTO l402_services (name, config, created, version, updated_at)
                 VALUES (?1, ?2, ?3, ?3, strftime('%s','now'))
                 ON CONFLICT (name) DO UPDATE SET config = excluded.config, version = excluded.version,
                     updated_at = excluded.updated_at",
                params![name, config, version],
            )?;
            tx.commit()?;
            Ok(version as u64)
        })
        .await
    }

    async fn services(&self) -> Result<Vec<StoredService>, StoreError> {
        self.with(|c| {
            let mut st = c.prepare_cached("SELECT name, config, version FROM l402_services ORDER BY created, name")?;
            let rows = st.query_map([], |r| {
                Ok(StoredService { name: r.get(0)?, config: r.get(1)?, version: r.get::<_, i64>(2)? as u64 })
            })?;
            rows.collect()
        })
        .await
    }

    async fn services_version(&self) -> Result<u64, StoreError> {
        self.with(|c| {
            c.query_row("SELECT COALESCE(MAX(version), 0) FROM l402_services", [], |r| r.get::<_, i64>(0))
                .map(|v| v as u64)
        })
        .await
    }

    async fn open_balance(&self, key: &BalanceKey, service: &str, bundle: Msat, at: u64) -> Result<bool, StoreError> {
        let (kind, id, service) = (key.kind(), *key.id(), service.to_owned());
        self.with(move |c| {
            c.execute(
                "INSERT INTO l402_balances (kind, id, service, bundle_msat, balance_msat, opened_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?5) ON CONFLICT (kind, id) DO NOTHING",
                params![kind, &id[..], service, bundle.0 as i64, at as i64],
            )
            .map(|n| n > 0)
        })
        .await
    }

    async fn reserve(&self, key: &BalanceKey, amount: Msat) -> Result<Reserve, StoreError> {
        let (kind, id) = (key.kind(), *key.id());
        self.with(move |c| {
            let a = amount.0 as i64;
            let reserved: Option<i64> = c
                .query_row(
                    "UPDATE l402_balances SET reserved_msat = reserved_msat + ?3
                     WHERE kind = ?1 AND id = ?2 AND balance_msat - reserved_msat >= ?3
                     RETURNING balance_msat - reserved_msat + ?3",
                    params![kind, &id[..], a],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(available) = reserved {
                return Ok(Reserve::Reserved { available: Msat(available as u64) });
            }
            let left: Option<i64> = c
                .query_row(
                    "SELECT balance_msat - reserved_msat FROM l402_balances WHERE kind = ?1 AND id = ?2",
                    params![kind, &id[..]],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(match left {
                Some(v) => Reserve::Insufficient { available: Msat(v.max(0) as u64) },
                None => Reserve::Missing,
            })
        })
        .await
    }

    async fn settle(&self, key: &BalanceKey, reserved: Msat, debit: Msat, at: u64) -> Result<Msat, StoreError> {
        let (kind, id) = (key.kind(), *key.id());
        self.with(move |c| {
            c.query_row(
                "UPDATE l402_balances SET reserved_msat = MAX(reserved_msat - ?3, 0),
                     balance_msat = balance_msat - MIN(balance_msat, ?4),
                     debited_msat = debited_msat + MIN(balance_msat, ?4),
                     requests = requests + 1, updated_at = ?5
                 WHERE kind = ?1 AND id = ?2 RETURNING balance_msat",
                params![kind, &id[..], reserved.0 as i64, debit.0 as i64, at as i64],
                |r| r.get::<_, i64>(0),
            )
            .map(|v| Msat(v as u64))
        })
        .await
    }

    async fn balance(&self, key: &BalanceKey) -> Result<Option<Balance>, StoreError> {
        let (kind, id) = (key.kind(), *key.id());
        self.with(move |c| {
            c.query_row(
                "SELECT service, bundle_msat, balance_msat, reserved_msat, debited_msat, requests
                 FROM l402_balances WHERE kind = ?1 AND id = ?2",
                params![kind, &id[..]],
                |r| {
                    Ok(Balance {
                        service: r.get(0)?,
                        bundle: Msat(r.get::<_, i64>(1)? as u64),
                        balance: Msat(r.get::<_, i64>(2)? as u64),
                        reserved: Msat(r.get::<_, i64>(3)? as u64),
                        debited: Msat(r.get::<_, i64>(4)? as u64),
                        requests: r.get::<_, i64>(5)? as u64,
                    })
                },
            )
            .optional()
        })
        .await
    }
    async fn open_session(&self, session: &NewSession) -> Result<SessionOpen, StoreError> {
        let s = session.clone();
        self.with(move |c| sessions::open(c, &s)).await
    }

    async fn session(&self, id: &PaymentHash) -> Result<Option<SessionInfo>, StoreError> {
        let id = *id;
        self.with(move |c| sessions::get(c, &id)).await
    }

    async fn debit_session(
        &self,
        id: &PaymentHash,
        service: &str,
        amount: Msat,
        at: u64,
    ) -> Result<SessionDebit, StoreError> {
        let (id, service) = (*id, service.to_owned());
        self.with(move |c| sessions::debit(c, &id, &service, amount, at)).await
    }

    async fn undo_session_debit(&self, id: &PaymentHash, amount: Msat, at: u64) -> Result<(), StoreError> {
        let id = *id;
        self.with(move |c| sessions::undo_debit(c, &id, amount, at)).await
    }

    async fn credit_session(
        &self,
        id: &PaymentHash,
        payment_hash: &PaymentHash,
        amount: Msat,
        at: u64,
    ) -> Result<SessionCredit, StoreError> {
        let (id, ph) = (*id, *payment_hash);
        self.with(move |c| sessions::credit(c, &id, &ph, amount, at)).await
    }

    async fn begin_close(
        &self,
        id: &PaymentHash,
        return_invoice: Option<&str>,
        at: u64,
        stale_before: u64,
    ) -> Result<SessionClose, StoreError> {
        let (id, inv) = (*id, return_invoice.map(str::to_owned));
        self.with(move |c| sessions::begin_close(c, &id, inv.as_deref(), at, stale_before)).await
    }

    async fn finish_close(&self, id: &PaymentHash, refunded: Option<Msat>, at: u64) -> Result<(), StoreError> {
        let id = *id;
        self.with(move |c| sessions::finish_close(c, &id, refunded, at)).await
    }

    async fn sessions(&self, limit: u32) -> Result<Vec<SessionInfo>, StoreError> {
        self.with(move |c| sessions::list(c, limit)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Proxy instances starting together on one new database file all open it.
    #[test]
    fn simultaneous_first_opens_all_succeed() {
        for _ in 0..10 {
            let dir = tempfile::tempdir().expect("tmp");
            let path = dir.path().join("l402.db");
            for opened in l402_regtest::at_once(8, move || SqliteStore::open(&path).map(drop)) {
                opened.expect("opened");
            }
        }
    }
}

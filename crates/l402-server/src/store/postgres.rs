//! PostgreSQL, for several proxy instances sharing one set of tokens: a token minted by one is accepted by
//! the others, and a revocation on one is seen by all (each instance follows `l402_revocations`, see
//! [`crate::Paywall`] for the bound). TLS is asked for in the connection string, as with libpq
//! (`sslmode=verify-full sslrootcert=...`, see `pg_tls`).

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use l402_proto::{Msat, PaymentHash, RootKey, TokenId};

use super::migrations::POSTGRES;
use super::pg_tls;
use super::postgres_sessions as sessions;
use super::{
    Balance, BalanceKey, KeyLookup, NewSession, NewToken, Reserve, Revenue, Revocation, SessionClose, SessionCredit,
    SessionDebit, SessionInfo, SessionOpen, SpentCharge, StoreError, StoredService, TokenInfo, TokenQuery, TokenStore,
    Usage, UsageAdd, UsedToken,
};

/// A [`TokenStore`] in PostgreSQL.
#[derive(Clone)]
pub struct PostgresStore {
    pool: Pool,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PostgresStore")
    }
}

fn bytes32(v: Vec<u8>) -> Result<[u8; 32], StoreError> {
    v.try_into().map_err(|_| StoreError("stored value is not 32 bytes".into()))
}

/// Serializes concurrent migrations of several instances starting at once.
const MIGRATION_LOCK: i64 = 0x4c34_3032;

/// Serializes revocations, so that their sequence numbers are handed out in commit order (see the migration).
const REVOCATION_LOCK: i64 = 0x4c34_3033;

/// Serializes service writes, so that their versions are handed out in commit order.
const SERVICES_LOCK: i64 = 0x4c34_3034;
/// Serializes shared-limit writes, so that their versions are handed out in commit order.
const USAGE_LOCK: i64 = 0x4c34_3035;

const NOW: &str = "extract(epoch from now())::bigint";

impl PostgresStore {
    /// Connects (a pool of up to `max_connections`) with a libpq-style connection string, e.g.
    /// `host=127.0.0.1 port=5432 user=l402 dbname=l402`, or with TLS
    /// `host=db.internal user=l402 dbname=l402 sslmode=verify-full sslrootcert=/etc/l402/db-ca.pem`, and
    /// applies pending migrations. Without `sslmode` (or with `prefer`) the connection is plaintext.
    pub async fn connect(conn: &str, max_connections: usize) -> Result<Self, StoreError> {
        let (config, tls) = pg_tls::configure(conn)?;
        let manager = Manager::from_config(config, tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
        let pool = Pool::builder(manager).max_size(max_connections).build().map_err(StoreError::from_display)?;
        let store = Self { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.pool.get().await.map_err(StoreError::from_display)
    }

    async fn migrate(&self) -> Result<(), StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(StoreError::from_display)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK]).await.map_err(StoreError::from_display)?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS l402_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
        )
        .await
        .map_err(StoreError::from_display)?;
        for (version, sql) in POSTGRES {
            let done = tx
                .query_opt("SELECT version FROM l402_migrations WHERE version = $1", &[version])
                .await
                .map_err(StoreError::from_display)?;
            if done.is_none() {
                tx.batch_execute(sql).await.map_err(StoreError::from_display)?;
                tx.execute(
                    "INSERT INTO l402_migrations (version, applied_at) VALUES ($1, extract(epoch from now())::bigint)",
                    &[version],
                )
                .await
                .map_err(StoreError::from_display)?;
            }
        }
        tx.commit().await.map_err(StoreError::from_display)
    }
}

#[async_trait]
impl TokenStore for PostgresStore {
    async fn insert(&self, t: &NewToken) -> Result<(), StoreError> {
        let c = self.client().await?;
        c.execute(
            "INSERT INTO l402_tokens (id_hash, token_id, payment_hash, service, price_msat, root_key, created_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            &[
                &&t.id_hash[..],
                &&t.token_id.0[..],
                &&t.payment_hash.0[..],
                &t.service,
                &(t.price.0 as i64),
                &&t.root_key.0[..],
                &(t.created_at as i64),
                &t.expires_at.map(|e| e as i64),
            ],
        )
        .await
        .map(drop)
        .map_err(StoreError::from_display)
    }

    async fn lookup(&self, id_hash: &[u8; 32]) -> Result<KeyLookup, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_opt("SELECT root_key, paid_at, revoked_at FROM l402_tokens WHERE id_hash = $1", &[&&id_hash[..]])
            .await
            .map_err(StoreError::from_display)?;
        Ok(match row {
            None => KeyLookup::Unknown,
            Some(r) => match (r.get::<_, Option<Vec<u8>>>(0), r.get::<_, Option<i64>>(2)) {
                (None, Some(_)) => KeyLookup::Revoked,
                // A stateless token's record: no root key here.
                (None, None) => KeyLookup::Unknown,
                (Some(key), _) => {
                    KeyLookup::Active { root_key: RootKey(bytes32(key)?), paid: r.get::<_, Option<i64>>(1).is_some() }
                }
            },
        })
    }

    async fn revoke(&self, token_id: &TokenId) -> Result<bool, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(StoreError::from_display)?;
        let id = &token_id.0[..];
        let n = tx
            .execute(
                &format!(
                    "UPDATE l402_tokens SET root_key = NULL, revoked_at = {NOW} WHERE token_id = $1 AND revoked_at IS NULL"
                ),
                &[&id],
            )
            .await
            .map_err(StoreError::from_display)?;
        if n > 0 {
            list_revocation(&tx, id).await?;
        }
        tx.commit().await.map_err(StoreError::from_display)?;
        Ok(n > 0)
    }

    async fn revoke_id(&self, token_id: &TokenId) -> Result<bool, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(StoreError::from_display)?;
        let id = &token_id.0[..];
        let listed = list_revocation(&tx, id).await?;
        tx.execute(
            &format!(
                "UPDATE l402_tokens SET root_key = NULL, revoked_at = COALESCE(revoked_at, {NOW}) WHERE token_id = $1"
            ),
            &[&id],
        )
        .await
        .map_err(StoreError::from_display)?;
        tx.commit().await.map_err(StoreError::from_display)?;
        Ok(listed)
    }

    async fn revocations_since(&self, after: u64, limit: u32) -> Result<Vec<Revocation>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT seq, token_id FROM l402_revocations WHERE seq > $1 ORDER BY seq LIMIT $2",
                &[&(after as i64), &i64::from(limit)],
            )
            .await
            .map_err(StoreError::from_display)?;
        rows.into_iter()
            .map(|r| Ok(Revocation { seq: r.get::<_, i64>(0) as u64, token_id: TokenId(bytes32(r.get(1))?) }))
            .collect()
    }

    async fn record(&self, tokens: &[UsedToken]) -> Result<Vec<bool>, StoreError> {
        if tokens.is_empty() {
            return Ok(Vec::new());
        }
        let col = |f: fn(&UsedToken) -> Vec<u8>| tokens.iter().map(f).collect::<Vec<_>>();
        let int = |f: fn(&UsedToken) -> Option<i64>| tokens.iter().map(f).collect::<Vec<_>>();
        let id_hash = col(|t| t.id_hash.to_vec());
        let token_id = col(|t| t.token_id.0.to_vec());
        let payment_hash = col(|t| t.payment_hash.0.to_vec());
        let service: Vec<&str> = tokens.iter().map(|t| t.service.as_str()).collect();
        let price = int(|t| Some(t.price.0 as i64));
        let created = int(|t| Some(t.created_at as i64));
        let expires = int(|t| t.expires_at.map(|e| e as i64));
        let paid_at = int(|t| Some(t.paid_at as i64));
        let paid = int(|t| Some(t.paid.0 as i64));
        let c = self.client().await?;
        // One statement for the whole batch; the rows it inserted come back.
        let rows = c
            .query(
                "INSERT INTO l402_tokens
                 (id_hash, token_id, payment_hash, service, price_msat, created_at, expires_at, paid_at, paid_msat, revoked_at)
                 SELECT u.id_hash, u.token_id, u.payment_hash, u.service, u.price, u.created, u.expires, u.paid_at,
                        u.paid, r.revoked_at
                 FROM unnest($1::bytea[], $2::bytea[], $3::bytea[], $4::text[], $5::int8[], $6::int8[], $7::int8[],
                             $8::int8[], $9::int8[])
                      AS u(id_hash, token_id, payment_hash, service, price, created, expires, paid_at, paid)
                 LEFT JOIN l402_revocations r ON r.token_id = u.token_id
                 ON CONFLICT DO NOTHING
                 RETURNING token_id",
                &[&id_hash, &token_id, &payment_hash, &service, &price, &created, &expires, &paid_at, &paid],
            )
            .await
            .map_err(StoreError::from_display)?;
        let inserted: std::collections::HashSet<Vec<u8>> = rows.into_iter().map(|r| r.get(0)).collect();
        let mut seen = std::collections::HashSet::new();
        Ok(tokens.iter().map(|t| inserted.contains(&t.token_id.0[..]) && seen.insert(t.token_id)).collect())
    }

    async fn mark_paid(&self, payment_hash: &PaymentHash, amount: Option<Msat>, at: u64) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let n = c
            .execute(
                "UPDATE l402_tokens SET paid_at = $2, paid_msat = COALESCE($3, price_msat) WHERE payment_hash = $1 AND paid_at IS NULL",
                &[&&payment_hash.0[..], &(at as i64), &amount.map(|a| a.0 as i64)],
            )
            .await
            .map_err(StoreError::from_display)?;
        Ok(n > 0)
    }

    async fn list(&self, query: &TokenQuery) -> Result<Vec<TokenInfo>, StoreError> {
        let c = self.client().await?;
        let after_at = query.after.map(|a| a.created_at as i64);
        let after_id = query.after.map(|a| a.token_id.0.to_vec());
        let rows = c
            .query(
                "SELECT token_id, payment_hash, service, price_msat, created_at, expires_at, paid_at, revoked_at
                 FROM l402_tokens
                 WHERE ($2::text IS NULL OR service = $2)
                   AND ($3::bigint IS NULL OR (created_at, token_id) < ($3::bigint, $4::bytea))
                 ORDER BY created_at DESC, token_id DESC LIMIT $1",
                &[&i64::from(query.limit), &query.service, &after_at, &after_id],
            )
            .await
            .map_err(StoreError::from_display)?;
        rows.into_iter()
            .map(|r| {
                Ok(TokenInfo {
                    token_id: TokenId(bytes32(r.get(0))?),
                    payment_hash: PaymentHash(bytes32(r.get(1))?),
                    service: r.get(2),
                    price: Msat(r.get::<_, i64>(3) as u64),
                    created_at: r.get::<_, i64>(4) as u64,
                    expires_at: r.get::<_, Option<i64>>(5).map(|v| v as u64),
                    paid_at: r.get::<_, Option<i64>>(6).map(|v| v as u64),
                    revoked_at: r.get::<_, Option<i64>>(7).map(|v| v as u64),
                })
            })
            .collect()
    }

    async fn revenue(&self) -> Result<Vec<Revenue>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT service, SUM(tokens)::bigint, SUM(charges)::bigint, SUM(amount)::bigint FROM (
                     SELECT service, COUNT(*) AS tokens, 0 AS charges, COALESCE(SUM(paid_msat), 0) AS amount
                     FROM l402_tokens WHERE paid_at IS NOT NULL GROUP BY service
                     UNION ALL
                     SELECT service, 0, COUNT(*), SUM(amount_msat) FROM l402_charges GROUP BY service
                 ) AS r GROUP BY service ORDER BY service",
                &[],
            )
            .await
            .map_err(StoreError::from_display)?;
        Ok(rows
            .into_iter()
            .map(|r| Revenue {
                service: r.get(0),
                tokens_paid: r.get::<_, i64>(1) as u64,
                charges_paid: r.get::<_, i64>(2) as u64,
                amount: Msat(r.get::<_, i64>(3) as u64),
            })
            .collect())
    }

    async fn spend_charge(&self, charge: &SpentCharge) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let n = c
            .execute(
                "INSERT INTO l402_charges (payment_hash, challenge_id, service, amount_msat, consumed_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (payment_hash) DO NOTHING",
                &[
                    &&charge.payment_hash.0[..],
                    &charge.challenge_id,
                    &charge.service,
                    &(charge.amount.0 as i64),
                    &(charge.consumed_at as i64),
                    &(charge.expires_at as i64),
                ],
            )
            .await
            .map_err(StoreError::from_display)?;
        Ok(n > 0)
    }

    async fn add_usage(&self, adds: &[UsageAdd], at: u64) -> Result<Vec<u64>, StoreError> {
        if adds.is_empty() {
            return Ok(Vec::new());
        }
        let scope: Vec<&str> = adds.iter().map(|a| a.scope.as_str()).collect();
        let key: Vec<&[u8]> = adds.iter().map(|a| a.key.as_slice()).collect();
        let delta: Vec<i64> = adds.iter().map(|a| i64::try_from(a.delta).unwrap_or(i64::MAX)).collect();
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(StoreError::from_display)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&USAGE_LOCK]).await.map_err(StoreError::from_display)?;
        let version: i64 = tx
            .query_one("SELECT COALESCE(MAX(version), 0)::bigint + 1 FROM l402_usage", &[])
            .await
            .map_err(StoreError::from_display)?
            .get(0);
        let rows = tx
            .query(
                "INSERT INTO l402_usage (scope, key, used, version, updated_at)
                 SELECT s, k, d, $4, $5 FROM UNNEST($1::text[], $2::bytea[], $3::bigint[]) AS u(s, k, d)
                 ON CONFLICT (scope, key) DO UPDATE SET used = l402_usage.used + excluded.used,
                     version = excluded.version, updated_at = excluded.updated_at
                 RETURNING scope, key, used",
                &[&scope, &key, &delta, &version, &(at as i64)],
            )
            .await
            .map_err(StoreError::from_display)?;
        tx.commit().await.map_err(StoreError::from_display)?;
        // RETURNING does not promise input order: match the totals back by key.
        let mut by_key = std::collections::HashMap::with_capacity(rows.len());
        for r in &rows {
            let (s, k, used): (&str, &[u8], i64) = (r.get(0), r.get(1), r.get(2));
            by_key.insert((s, k), used.max(0) as u64);
        }
        Ok(adds.iter().map(|a| by_key.get(&(a.scope.as_str(), a.key.as_slice())).copied().unwrap_or(0)).collect())
    }

    async fn usage_since(&self, after: u64) -> Result<Vec<Usage>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT scope, key, used, version FROM l402_usage WHERE version > $1 ORDER BY version, scope, key",
                &[&(after as i64)],
            )
            .await
            .map_err(StoreError::from_display)?;
        Ok(rows
            .into_iter()
            .map(|r| Usage {
                scope: r.get(0),
                key: r.get(1),
                used: r.get::<_, i64>(2).max(0) as u64,
                version: r.get::<_, i64>(3) as u64,
            })
            .collect())
    }

    async fn usage_version(&self) -> Result<u64, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_one("SELECT COALESCE(MAX(version), 0)::bigint FROM l402_usage", &[])
            .await
            .map_err(StoreError::from_display)?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn prune_usage(&self, before: u64) -> Result<u64, StoreError> {
        let c = self.client().await?;
        c.execute("DELETE FROM l402_usage WHERE updated_at < $1", &[&(before as i64)])
            .await
            .map_err(StoreError::from_display)
    }

    async fn put_service(&self, name: &str, config: Option<&str>) -> Result<u64, StoreError> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(StoreError::from_display)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SERVICES_LOCK]).await.map_err(StoreError::from_display)?;
        let version: i64 = tx
            .query_one("SELECT COALESCE(MAX(version), 0)::bigint + 1 FROM l402_services", &[])
            .await
            .map_err(StoreError::from_display)?
            .get(0);
        tx.execute(
            &format!(
                "INSERT INTO l402_services (name, config, created, version, updated_at) VALUES ($1, $2, $3, $3, {NOW})
                 ON CONFLICT (name) DO UPDATE SET config = excluded.config, version = excluded.version,
                     updated_at = excluded.updated_at"
            ),
            &[&name, &config, &version],
        )
        .await
        .map_err(StoreError::from_display)?;
        tx.commit().await.map_err(StoreError::from_display)?;
        Ok(version as u64)
    }

    async fn services(&self) -> Result<Vec<StoredService>, StoreError> {
        let c = self.client().await?;
        let rows = c
            .query("SELECT name, config, version FROM l402_services ORDER BY created, name", &[])
            .await
            .map_err(StoreError::from_display)?;
        Ok(rows
            .into_iter()
            .map(|r| StoredService { name: r.get(0), config: r.get(1), version: r.get::<_, i64>(2) as u64 })
            .collect())
    }

    async fn services_version(&self) -> Result<u64, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_one("SELECT COALESCE(MAX(version), 0)::bigint FROM l402_services", &[])
            .await
            .map_err(StoreError::from_display)?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn open_session(&self, session: &NewSession) -> Result<SessionOpen, StoreError> {
        sessions::open(&mut self.client().await?, session).await
    }

    async fn session(&self, id: &PaymentHash) -> Result<Option<SessionInfo>, StoreError> {
        sessions::get(&self.client().await?, id).await
    }

    async fn debit_session(
        &self,
        id: &PaymentHash,
        service: &str,
        amount: Msat,
        at: u64,
    ) -> Result<SessionDebit, StoreError> {
        sessions::debit(&self.client().await?, id, service, amount, at).await
    }

    async fn undo_session_debit(&self, id: &PaymentHash, amount: Msat, at: u64) -> Result<(), StoreError> {
        sessions::undo_debit(&self.client().await?, id, amount, at).await
    }

    async fn credit_session(
        &self,
        id: &PaymentHash,
        payment_hash: &PaymentHash,
        amount: Msat,
        at: u64,
    ) -> Result<SessionCredit, StoreError> {
        sessions::credit(&mut self.client().await?, id, payment_hash, amount, at).await
    }

    async fn begin_close(
        &self,
        id: &PaymentHash,
        return_invoice: Option<&str>,
        at: u64,
        stale_before: u64,
    ) -> Result<SessionClose, StoreError> {
        sessions::begin_close(&self.client().await?, id, return_invoice, at, stale_before).await
    }

    async fn finish_close(&self, id: &PaymentHash, refunded: Option<Msat>, at: u64) -> Result<(), StoreError> {
        sessions::finish_close(&self.client().await?, id, refunded, at).await
    }

    async fn sessions(&self, limit: u32) -> Result<Vec<SessionInfo>, StoreError> {
        sessions::list(&self.client().await?, limit).await
    }

    async fn open_balance(&self, key: &BalanceKey, service: &str, bundle: Msat, at: u64) -> Result<bool, StoreError> {
        let c = self.client().await?;
        let n = c
            .execute(
                "INSERT INTO l402_balances (kind, id, service, bundle_msat, balance_msat, opened_at, updated_at)
                 VALUES ($1, $2, $3, $4, $4, $5, $5) ON CONFLICT (kind, id) DO NOTHING",
                &[&key.kind(), &&key.id()[..], &service, &(bundle.0 as i64), &(at as i64)],
            )
            .await
            .map_err(StoreError::from_display)?;
        Ok(n > 0)
    }

    async fn reserve(&self, key: &BalanceKey, amount: Msat) -> Result<Reserve, StoreError> {
        let c = self.client().await?;
        let a = amount.0 as i64;
        // One conditional UPDATE: the row lock serializes concurrent reservations on every instance.
        let row = c
            .query_opt(
                "UPDATE l402_balances SET reserved_msat = reserved_msat + $3
                 WHERE kind = $1 AND id = $2 AND balance_msat - reserved_msat >= $3
                 RETURNING balance_msat - reserved_msat + $3",
                &[&key.kind(), &&key.id()[..], &a],
            )
            .await
            .map_err(StoreError::from_display)?;
        if let Some(r) = row {
            return Ok(Reserve::Reserved { available: Msat(r.get::<_, i64>(0) as u64) });
        }
        let left = c
            .query_opt(
                "SELECT balance_msat - reserved_msat FROM l402_balances WHERE kind = $1 AND id = $2",
                &[&key.kind(), &&key.id()[..]],
            )
            .await
            .map_err(StoreError::from_display)?;
        Ok(match left {
            Some(r) => Reserve::Insufficient { available: Msat(r.get::<_, i64>(0).max(0) as u64) },
            None => Reserve::Missing,
        })
    }

    async fn settle(&self, key: &BalanceKey, reserved: Msat, debit: Msat, at: u64) -> Result<Msat, StoreError> {
        let c = self.client().await?;
        let r = c
            .query_one(
                "UPDATE l402_balances SET reserved_msat = GREATEST(reserved_msat - $3, 0),
                     balance_msat = balance_msat - LEAST(balance_msat, $4),
                     debited_msat = debited_msat + LEAST(balance_msat, $4),
                     requests = requests + 1, updated_at = $5
                 WHERE kind = $1 AND id = $2 RETURNING balance_msat",
                &[&key.kind(), &&key.id()[..], &(reserved.0 as i64), &(debit.0 as i64), &(at as i64)],
            )
            .await
            .map_err(StoreError::from_display)?;
        Ok(Msat(r.get::<_, i64>(0) as u64))
    }

    async fn balance(&self, key: &BalanceKey) -> Result<Option<Balance>, StoreError> {
        let c = self.client().await?;
        let row = c
            .query_opt(
                "SELECT service, bundle_msat, balance_msat, reserved_msat, debited_msat, requests
                 FROM l402_balances WHERE kind = $1 AND id = $2",
                &[&key.kind(), &&key.id()[..]],
            )
            .await
            .map_err(StoreError::from_display)?;
        Ok(row.map(|r| Balance {
            service: r.get(0),
            bundle: Msat(r.get::<_, i64>(1) as u64),
            balance: Msat(r.get::<_, i64>(2) as u64),
            reserved: Msat(r.get::<_, i64>(3) as u64),
            debited: Msat(r.get::<_, i64>(4) as u64),
            requests: r.get::<_, i64>(5) as u64,
        }))
    }
}

/// Lists a revocation (once) under the revocation lock; whether it was new.
async fn list_revocation(tx: &deadpool_postgres::Transaction<'_>, id: &[u8]) -> Result<bool, StoreError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&REVOCATION_LOCK]).await.map_err(StoreError::from_display)?;
    let n = tx
        .execute(
            &format!("INSERT INTO l402_revocations (token_id, revoked_at) VALUES ($1, {NOW}) ON CONFLICT DO NOTHING"),
            &[&id],
        )
        .await
        .map_err(StoreError::from_display)?;
    Ok(n > 0)
}

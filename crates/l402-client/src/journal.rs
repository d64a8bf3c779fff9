//! The write-ahead payment journal, which is also the spend ledger (`payments` in [`crate::store`]).
//!
//! A row is written, with its budget reservation, in the same transaction that checks the budget, *before*
//! the wallet is asked to pay. Whatever happens next (success, failure, a crash, a timeout, a lost connection),
//! the row says a payment to this hash may exist, so nothing pays for that challenge again until the wallet
//! has been asked what became of it ([`crate::Client::recover`]).

use l402_lightning::PaymentSuccess;
use l402_proto::{Macaroon, Msat, PaymentHash};
use rusqlite::{Connection, OptionalExtension as _, Row, Transaction, params};
use serde::Serialize;

use crate::budget::{self, Limits};
use crate::error::Error;
use crate::tokens::{self, NewToken};

/// One row of the ledger. Shows no secret (the preimage stays in the database).
#[derive(Clone, Debug, Serialize)]
pub struct LedgerEntry {
    /// The payment hash (hex).
    pub payment_hash: String,
    /// `scheme://host:port` paid.
    pub origin: String,
    /// The service paid for.
    pub service: String,
    /// The request path that met the challenge.
    pub path: String,
    /// The invoice amount, msat.
    pub amount_msat: u64,
    /// The fee limit of the last attempt, msat.
    pub fee_limit_msat: u64,
    /// What is reserved while pending or unknown, msat.
    pub reserved_msat: u64,
    /// `pending`, `succeeded`, `failed` or `unknown`.
    pub state: String,
    /// The routing fee actually paid, msat (on success).
    pub fee_msat: Option<u64>,
    /// Why it failed.
    pub failure: Option<String>,
    /// The token it bought (hex id).
    pub token_id: Option<String>,
    /// When it was journaled (Unix seconds).
    pub created_at: u64,
    /// When it last changed (Unix seconds).
    pub updated_at: u64,
}

impl LedgerEntry {
    /// What this entry counts against the budgets now (msat).
    pub fn counted_msat(&self) -> u64 {
        match self.state.as_str() {
            "succeeded" => self.amount_msat.saturating_add(self.fee_msat.unwrap_or(0)),
            "pending" | "unknown" => self.reserved_msat,
            _ => 0,
        }
    }

    /// The payment hash, parsed.
    pub fn hash(&self) -> Result<PaymentHash, Error> {
        PaymentHash::from_hex(&self.payment_hash).map_err(|e| Error::Store(format!("journal hash: {e}")))
    }
}

const COLUMNS: &str = "payment_hash, origin, service, path, amount_msat, fee_limit_msat, reserved_msat, state, \
                       fee_msat, failure, token_id, created_at, updated_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<LedgerEntry> {
    let u = |i: usize| -> rusqlite::Result<u64> { r.get::<_, i64>(i).map(|v| u64::try_from(v).unwrap_or(0)) };
    Ok(LedgerEntry {
        payment_hash: r.get(0)?,
        origin: r.get(1)?,
        service: r.get(2)?,
        path: r.get(3)?,
        amount_msat: u(4)?,
        fee_limit_msat: u(5)?,
        reserved_msat: u(6)?,
        state: r.get(7)?,
        fee_msat: r.get::<_, Option<i64>>(8)?.map(|v| u64::try_from(v).unwrap_or(0)),
        failure: r.get(9)?,
        token_id: r.get(10)?,
        created_at: u(11)?,
        updated_at: u(12)?,
    })
}

/// A payment about to be sent.
pub(crate) struct NewPayment {
    pub(crate) payment_hash: PaymentHash,
    pub(crate) origin: String,
    pub(crate) service: String,
    pub(crate) path: String,
    pub(crate) scheme: String,
    pub(crate) macaroon: Macaroon,
    pub(crate) invoice: String,
    pub(crate) amount: Msat,
    pub(crate) fee_limit: Msat,
}

/// Checks the budgets and journals the payment with its reservation, in the caller's `BEGIN IMMEDIATE`
/// transaction. A hash already journaled and not failed is refused (it must be recovered, never paid twice).
pub(crate) fn reserve(tx: &Transaction<'_>, limits: &Limits, p: &NewPayment, now: u64) -> Result<(), Error> {
    let needed = p.amount.checked_add(p.fee_limit).ok_or(Error::Budget {
        limit: budget::LimitKind::PerRequest,
        limit_msat: limits.per_request,
        spent_msat: 0,
        needed_msat: u64::MAX,
    })?;
    let hash = p.payment_hash.to_hex();
    match get(tx, &hash)?.map(|e| e.state) {
        None => {}
        // A payment that definitely failed may be sent again (as LND allows): the row is reused.
        Some(state) if state == "failed" => {
            budget::check(tx, limits, &p.origin, needed.0, now, &hash)?;
            tx.execute(
                "UPDATE payments SET state = 'pending', fee_limit_msat = ?2, reserved_msat = ?3, failure = NULL, \
                 created_at = ?4, updated_at = ?4 WHERE payment_hash = ?1",
                params![hash, p.fee_limit.0 as i64, needed.0 as i64, now as i64],
            )?;
            return Ok(());
        }
        Some(state) => return Err(Error::Store(format!("payment {hash} is already in the journal ({state})"))),
    }
    budget::check(tx, limits, &p.origin, needed.0, now, &hash)?;
    tx.execute(
        "INSERT INTO payments (payment_hash, origin, service, path, scheme, macaroon, invoice, amount_msat, \
         fee_limit_msat, reserved_msat, state, created_at, updated_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'pending', ?11, ?11)",
        params![
            hash,
            p.origin,
            p.service,
            p.path,
            p.scheme,
            p.macaroon.to_base64(),
            p.invoice,
            p.amount.0 as i64,
            p.fee_limit.0 as i64,
            needed.0 as i64,
            now as i64
        ],
    )?;
    Ok(())
}

/// Raises a pending payment's fee limit (and its reservation), checking the budgets again.
pub(crate) fn raise_fee_limit(
    tx: &Transaction<'_>,
    limits: &Limits,
    hash: &PaymentHash,
    fee_limit: Msat,
    now: u64,
) -> Result<(), Error> {
    let entry = get(tx, &hash.to_hex())?.ok_or_else(|| Error::Store(format!("payment {hash} not journaled")))?;
    let needed = entry.amount_msat.saturating_add(fee_limit.0);
    budget::check(tx, limits, &entry.origin, needed, now, &entry.payment_hash)?;
    tx.execute(
        "UPDATE payments SET fee_limit_msat = ?2, reserved_msat = ?3, updated_at = ?4 WHERE payment_hash = ?1",
        params![entry.payment_hash, fee_limit.0 as i64, needed as i64, now as i64],
    )?;
    Ok(())
}

/// One journal entry.
pub(crate) fn get(conn: &Connection, hash: &str) -> Result<Option<LedgerEntry>, Error> {
    let sql = format!("SELECT {COLUMNS} FROM payments WHERE payment_hash = ?1");
    Ok(conn.query_row(&sql, [hash], from_row).optional()?)
}

/// The journaled challenge of a payment: scheme, macaroon and path.
pub(crate) fn challenge_of(conn: &Connection, hash: &str) -> Result<(String, Macaroon, String), Error> {
    let (scheme, mac, path): (String, String, String) =
        conn.query_row("SELECT scheme, macaroon, path FROM payments WHERE payment_hash = ?1", [hash], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?;
    let mac = Macaroon::from_base64(&mac).map_err(|e| Error::Store(format!("journaled macaroon: {e}")))?;
    Ok((scheme, mac, path))
}

/// Records a success and stores the token it bought, in one transaction. Idempotent.
pub(crate) fn succeed(
    tx: &Transaction<'_>,
    hash: &PaymentHash,
    paid: &PaymentSuccess,
    now: u64,
) -> Result<l402_proto::TokenId, Error> {
    let h = hash.to_hex();
    let entry = get(tx, &h)?.ok_or_else(|| Error::Store(format!("payment {h} not journaled")))?;
    let (scheme, macaroon, path) = challenge_of(tx, &h)?;
    let token_id = tokens::insert(
        tx,
        &NewToken {
            origin: &entry.origin,
            path: &path,
            scheme: &scheme,
            macaroon: &macaroon,
            payment_hash: hash,
            paid,
        },
        now,
    )?;
    tx.execute(
        "UPDATE payments SET state = 'succeeded', amount_msat = ?2, fee_msat = ?3, preimage = ?4, token_id = ?5, \
         reserved_msat = 0, failure = NULL, updated_at = ?6 WHERE payment_hash = ?1",
        params![h, paid.amount.0 as i64, paid.fee.0 as i64, paid.preimage.to_hex(), token_id.to_hex(), now as i64],
    )?;
    Ok(token_id)
}

/// Records a definite failure (no money moved) and releases the reservation. A success is never overwritten.
pub(crate) fn fail(conn: &Connection, hash: &PaymentHash, why: &str, now: u64) -> Result<(), Error> {
    conn.execute(
        "UPDATE payments SET state = 'failed', failure = ?2, reserved_msat = 0, updated_at = ?3 \
         WHERE payment_hash = ?1 AND state != 'succeeded'",
        params![hash.to_hex(), why, now as i64],
    )?;
    Ok(())
}

/// Records that the outcome is unknown (the reservation stays).
pub(crate) fn unknown(conn: &Connection, hash: &PaymentHash, why: &str, now: u64) -> Result<(), Error> {
    conn.execute(
        "UPDATE payments SET state = 'unknown', failure = ?2, updated_at = ?3 \
         WHERE payment_hash = ?1 AND state IN ('pending', 'unknown')",
        params![hash.to_hex(), why, now as i64],
    )?;
    Ok(())
}

/// Journal entries not yet resolved (`pending` or `unknown`), of one origin and service or of all.
pub(crate) fn unresolved(conn: &Connection, key: Option<(&str, &str)>) -> Result<Vec<LedgerEntry>, Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM payments WHERE state IN ('pending', 'unknown') AND \
         (?1 IS NULL OR (origin = ?1 AND service = ?2)) ORDER BY created_at"
    );
    let mut stmt = conn.prepare(&sql)?;
    let (o, s) = key.map_or((None, None), |(o, s)| (Some(o), Some(s)));
    let rows = stmt.query_map(params![o, s], from_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The ledger, newest first; `since` (Unix seconds) to cut it.
pub fn ledger(conn: &Connection, since: Option<u64>) -> Result<Vec<LedgerEntry>, Error> {
    let sql = format!("SELECT {COLUMNS} FROM payments WHERE created_at >= ?1 ORDER BY created_at DESC, rowid DESC");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([since.unwrap_or(0) as i64], from_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

//! The write-ahead payment journal, which is also the spend ledger (`payments` in [`crate::store`]).
//!
//! A row is written, with its budget reservation, in the same transaction that checks the budget, *before*
//! the wallet is asked to pay. Whatever happens next (success, failure, a crash, a timeout, a lost connection),
//! the row says a payment to this hash may exist, so nothing pays for that challenge again until the wallet
//! has been asked what became of it ([`crate::Client::recover`]).
//!
//! A `Payment` charge is journaled the same way, with its echoed challenge instead of a macaroon. It buys one
//! request, so a success stores no token: the row itself (challenge + preimage) is the credential, in
//! `charge_state` `unspent` until the server accepts it (`spent`, with its `Payment-Receipt` if it sent one) or
//! refuses it (`refused`). A charge left `unspent` (the request failed after paying, or the process died) is
//! presented again by the next request it fits (`unspent_charge`); one whose challenge expired meanwhile is
//! `expired`.

use l402_lightning::PaymentSuccess;
use l402_proto::{Macaroon, Msat, PaymentHash, Preimage};
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
    /// The token it bought (hex id; none for a `Payment` charge).
    pub token_id: Option<String>,
    /// The scheme of the offer paid: `L402` or `LSAT` (a token), `Payment` (a charge).
    pub scheme: String,
    /// A charge's challenge id (as the server issued it).
    pub challenge_id: Option<String>,
    /// A paid charge's state: `unspent` (not yet accepted by the server), `spent`, `refused` or `expired`.
    pub charge_state: Option<String>,
    /// The `Payment-Receipt` status, if the server sent one (`success`).
    pub receipt_status: Option<String>,
    /// The receipt's reference (Aperture: the payment hash).
    pub receipt_reference: Option<String>,
    /// The challenge id the receipt names.
    pub receipt_challenge_id: Option<String>,
    /// The receipt's timestamp (RFC 3339, as sent).
    pub receipt_timestamp: Option<String>,
    /// A metered bundle: its balance as the server last said it (`X-L402-Balance-Msat`, before that
    /// request's own debit), msat; what was used is the amount less it.
    pub balance_msat: Option<u64>,
    /// When the balance was last said (Unix seconds).
    pub balance_at: Option<u64>,
    /// When the server said the bundle was used up (a fresh 402 with the balance left), Unix seconds.
    pub exhausted_at: Option<u64>,
    /// The `Payment` session this paid into (a deposit, whose hash is the session id, or a top-up).
    pub session_id: Option<String>,
    /// What the session's refund gave back, as the wallet node received it (on the deposit's row), msat; it
    /// no longer counts against the budgets.
    pub refunded_msat: Option<u64>,
    /// When it was journaled (Unix seconds).
    pub created_at: u64,
    /// When it last changed (Unix seconds).
    pub updated_at: u64,
}

impl LedgerEntry {
    /// What this entry counts against the budgets now (msat).
    pub fn counted_msat(&self) -> u64 {
        match self.state.as_str() {
            "succeeded" => self
                .amount_msat
                .saturating_add(self.fee_msat.unwrap_or(0))
                .saturating_sub(self.refunded_msat.unwrap_or(0)),
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
                       fee_msat, failure, token_id, created_at, updated_at, scheme, challenge_id, charge_state, \
                       receipt_status, receipt_reference, receipt_challenge_id, receipt_timestamp, balance_msat, \
                       balance_at, exhausted_at, session_id, refunded_msat";

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
        scheme: r.get(13)?,
        challenge_id: r.get(14)?,
        charge_state: r.get(15)?,
        receipt_status: r.get(16)?,
        receipt_reference: r.get(17)?,
        receipt_challenge_id: r.get(18)?,
        receipt_timestamp: r.get(19)?,
        balance_msat: r.get::<_, Option<i64>>(20)?.map(|v| u64::try_from(v).unwrap_or(0)),
        balance_at: r.get::<_, Option<i64>>(21)?.map(|v| u64::try_from(v).unwrap_or(0)),
        exhausted_at: r.get::<_, Option<i64>>(22)?.map(|v| u64::try_from(v).unwrap_or(0)),
        session_id: r.get(23)?,
        refunded_msat: r.get::<_, Option<i64>>(24)?.map(|v| u64::try_from(v).unwrap_or(0)),
    })
}

/// The scheme of a `Payment` charge in the journal's `scheme` column.
pub(crate) const CHARGE_SCHEME: &str = "Payment";

/// The scheme of a `Payment` session's deposit or top-up in the journal's `scheme` column.
pub(crate) const SESSION_SCHEME: &str = "Session";

/// What a payment buys, as journaled.
pub(crate) enum Purchase {
    /// An L402 token: the challenge's scheme (`L402` or `LSAT`) and macaroon.
    Token {
        /// `L402` or `LSAT`.
        scheme: String,
        /// The macaroon the payment unlocks.
        macaroon: Macaroon,
    },
    /// A `Payment` charge: the challenge as received (its header value), to echo back in the credential.
    Charge {
        /// `PaymentChallenge::header_value()` of the offer paid.
        challenge: String,
        /// Its id.
        challenge_id: String,
    },
    /// A `Payment` session's deposit (its hash is `session_id`) or a top-up of it: the session challenge whose
    /// invoice is paid, as received.
    Session {
        /// `PaymentChallenge::header_value()` of the session offer paid.
        challenge: String,
        /// Its id.
        challenge_id: String,
        /// The session (the deposit's payment hash, hex).
        session_id: String,
    },
}

/// A payment about to be sent.
pub(crate) struct NewPayment {
    pub(crate) payment_hash: PaymentHash,
    pub(crate) origin: String,
    pub(crate) service: String,
    pub(crate) path: String,
    pub(crate) purchase: Purchase,
    pub(crate) invoice: String,
    pub(crate) amount: Msat,
    pub(crate) fee_limit: Msat,
}

impl NewPayment {
    /// The `scheme`, `macaroon`, `challenge` and `challenge_id` columns.
    fn offer_columns(&self) -> (String, String, Option<String>, Option<String>) {
        match &self.purchase {
            Purchase::Token { scheme, macaroon } => (scheme.clone(), macaroon.to_base64(), None, None),
            Purchase::Charge { challenge, challenge_id } => {
                (CHARGE_SCHEME.to_owned(), String::new(), Some(challenge.clone()), Some(challenge_id.clone()))
            }
            Purchase::Session { challenge, challenge_id, .. } => {
                (SESSION_SCHEME.to_owned(), String::new(), Some(challenge.clone()), Some(challenge_id.clone()))
            }
        }
    }

    /// The `session_id` column.
    fn session_id(&self) -> Option<String> {
        match &self.purchase {
            Purchase::Session { session_id, .. } => Some(session_id.clone()),
            _ => None,
        }
    }
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
    let (scheme, macaroon, challenge, challenge_id) = p.offer_columns();
    match get(tx, &hash)?.map(|e| e.state) {
        None => {}
        // A payment that definitely failed may be sent again (as LND allows): the row is reused, for the offer
        // now being paid.
        Some(state) if state == "failed" => {
            budget::check(tx, limits, &p.origin, needed.0, now, &hash)?;
            tx.execute(
                "UPDATE payments SET state = 'pending', fee_limit_msat = ?2, reserved_msat = ?3, failure = NULL, \
                 created_at = ?4, updated_at = ?4, origin = ?5, service = ?6, path = ?7, scheme = ?8, \
                 macaroon = ?9, challenge = ?10, challenge_id = ?11, charge_state = NULL, session_id = ?12 \
                 WHERE payment_hash = ?1",
                params![
                    hash,
                    p.fee_limit.0 as i64,
                    needed.0 as i64,
                    now as i64,
                    p.origin,
                    p.service,
                    p.path,
                    scheme,
                    macaroon,
                    challenge,
                    challenge_id,
                    p.session_id()
                ],
            )?;
            return Ok(());
        }
        Some(state) => return Err(Error::Store(format!("payment {hash} is already in the journal ({state})"))),
    }
    budget::check(tx, limits, &p.origin, needed.0, now, &hash)?;
    tx.execute(
        "INSERT INTO payments (payment_hash, origin, service, path, scheme, macaroon, invoice, amount_msat, \
         fee_limit_msat, reserved_msat, state, created_at, updated_at, challenge, challenge_id, session_id) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, 'pending', ?11, ?11, ?12, ?13, ?14)",
        params![
            hash,
            p.origin,
            p.service,
            p.path,
            scheme,
            macaroon,
            p.invoice,
            p.amount.0 as i64,
            p.fee_limit.0 as i64,
            needed.0 as i64,
            now as i64,
            challenge,
            challenge_id,
            p.session_id()
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

/// Records a success and stores the token it bought, in one transaction; returns the token's id. For a
/// `Payment` charge there is no token: the charge becomes `unspent` (`None`). Idempotent.
pub(crate) fn succeed(
    tx: &Transaction<'_>,
    hash: &PaymentHash,
    paid: &PaymentSuccess,
    now: u64,
) -> Result<Option<l402_proto::TokenId>, Error> {
    let h = hash.to_hex();
    let entry = get(tx, &h)?.ok_or_else(|| Error::Store(format!("payment {h} not journaled")))?;
    if entry.scheme == CHARGE_SCHEME {
        tx.execute(
            "UPDATE payments SET state = 'succeeded', amount_msat = ?2, fee_msat = ?3, preimage = ?4, \
             reserved_msat = 0, failure = NULL, updated_at = ?5, charge_state = COALESCE(charge_state, 'unspent') \
             WHERE payment_hash = ?1",
            params![h, paid.amount.0 as i64, paid.fee.0 as i64, paid.preimage.to_hex(), now as i64],
        )?;
        return Ok(None);
    }
    if entry.scheme == SESSION_SCHEME {
        // A deposit or top-up: the preimage is kept (a deposit's is the session's bearer secret); a top-up is
        // `unspent` until the server credits it. Counted into the session once, on the first success.
        tx.execute(
            "UPDATE payments SET state = 'succeeded', amount_msat = ?2, fee_msat = ?3, preimage = ?4, \
             reserved_msat = 0, failure = NULL, updated_at = ?5, charge_state = COALESCE(charge_state, 'unspent') \
             WHERE payment_hash = ?1",
            params![h, paid.amount.0 as i64, paid.fee.0 as i64, paid.preimage.to_hex(), now as i64],
        )?;
        if entry.state != "succeeded"
            && let Some(session) = &entry.session_id
        {
            crate::sessions::paid_into(tx, session, &h, paid, now)?;
        }
        return Ok(None);
    }
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
    Ok(Some(token_id))
}

/// A paid `Payment` charge not yet accepted by the server: what its credential is rebuilt from. `Debug` shows
/// no preimage.
#[derive(Clone)]
pub(crate) struct PaidCharge {
    pub(crate) payment_hash: PaymentHash,
    /// The challenge as received (`PaymentChallenge::header_value()`).
    pub(crate) challenge: String,
    pub(crate) challenge_id: String,
    pub(crate) preimage: Preimage,
    pub(crate) amount: Msat,
    pub(crate) fee: Msat,
}

impl std::fmt::Debug for PaidCharge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PaidCharge")
            .field("payment_hash", &self.payment_hash)
            .field("challenge_id", &self.challenge_id)
            .finish_non_exhaustive()
    }
}

/// The oldest `unspent` charge of `origin` + `service` (the realm) paid for `path`, if any.
pub(crate) fn unspent_charge(
    conn: &Connection,
    origin: &str,
    service: &str,
    path: &str,
) -> Result<Option<PaidCharge>, Error> {
    let row = conn
        .prepare_cached(
            "SELECT payment_hash, challenge, challenge_id, preimage, amount_msat, fee_msat FROM payments \
             WHERE origin = ?1 AND service = ?2 AND scheme = ?3 AND path = ?4 AND state = 'succeeded' \
             AND charge_state = 'unspent' ORDER BY created_at, rowid LIMIT 1",
        )?
        .query_row(params![origin, service, CHARGE_SCHEME, path], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, Option<String>>(1)?,
                r.get::<_, Option<String>>(2)?,
                r.get::<_, Option<String>>(3)?,
                r.get::<_, i64>(4)?,
                r.get::<_, Option<i64>>(5)?,
            ))
        })
        .optional()?;
    let Some((hash, challenge, challenge_id, preimage, amount, fee)) = row else { return Ok(None) };
    let bad = |what: &str| Error::Store(format!("journaled charge {hash}: {what}"));
    let payment_hash = PaymentHash::from_hex(&hash).map_err(|_| bad("payment hash"))?;
    let preimage = Preimage::from_hex(preimage.as_deref().unwrap_or("")).map_err(|_| bad("preimage"))?;
    Ok(Some(PaidCharge {
        payment_hash,
        challenge: challenge.ok_or_else(|| bad("no challenge"))?,
        challenge_id: challenge_id.unwrap_or_default(),
        preimage,
        amount: Msat(u64::try_from(amount).unwrap_or(0)),
        fee: Msat(fee.and_then(|f| u64::try_from(f).ok()).unwrap_or(0)),
    }))
}

/// What the server did with a charge credential, and its receipt if it sent one.
pub(crate) enum ChargeOutcome {
    /// It answered (not with a refusal): the charge is spent.
    Spent(Option<l402_proto::mpp::Receipt>),
    /// The paywall refused it, with this status.
    Refused(u16),
    /// Its challenge expired before it could be presented.
    Expired,
}

/// Records what became of an `unspent` charge (a charge in any other state is left as it is).
pub(crate) fn charge_outcome(
    conn: &Connection,
    hash: &PaymentHash,
    outcome: ChargeOutcome,
    now: u64,
) -> Result<(), Error> {
    let h = hash.to_hex();
    let sql_tail = "updated_at = ?2 WHERE payment_hash = ?1 AND charge_state = 'unspent'";
    match outcome {
        ChargeOutcome::Spent(receipt) => {
            let r = receipt.as_ref().map(|r| (&r.status, &r.reference, &r.challenge_id, &r.timestamp));
            conn.execute(
                &format!(
                    "UPDATE payments SET charge_state = 'spent', receipt_status = ?3, receipt_reference = ?4, \
                     receipt_challenge_id = ?5, receipt_timestamp = ?6, {sql_tail}"
                ),
                params![h, now as i64, r.map(|r| r.0), r.map(|r| r.1), r.map(|r| r.2), r.map(|r| r.3)],
            )?;
        }
        ChargeOutcome::Refused(status) => {
            conn.execute(
                &format!("UPDATE payments SET charge_state = 'refused', failure = ?3, {sql_tail}"),
                params![h, now as i64, format!("charge refused by the server ({status})")],
            )?;
        }
        ChargeOutcome::Expired => {
            conn.execute(
                &format!("UPDATE payments SET charge_state = 'expired', failure = ?3, {sql_tail}"),
                params![h, now as i64, "the charge's challenge expired before the server accepted it"],
            )?;
        }
    }
    Ok(())
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

/// Journal entries not yet resolved (`pending` or `unknown`), of one origin, service and kind (charges or
/// tokens), or of all.
pub(crate) fn unresolved(conn: &Connection, key: Option<(&str, &str, bool)>) -> Result<Vec<LedgerEntry>, Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM payments WHERE state IN ('pending', 'unknown') AND \
         (?1 IS NULL OR (origin = ?1 AND service = ?2 AND (scheme = ?4) = ?3)) ORDER BY created_at"
    );
    let mut stmt = conn.prepare(&sql)?;
    let (o, s, charge) = key.map_or((None, None, None), |(o, s, c)| (Some(o), Some(s), Some(c)));
    let rows = stmt.query_map(params![o, s, charge, CHARGE_SCHEME], from_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The ledger, newest first; `since` (Unix seconds) to cut it.
pub fn ledger(conn: &Connection, since: Option<u64>) -> Result<Vec<LedgerEntry>, Error> {
    let sql = format!("SELECT {COLUMNS} FROM payments WHERE created_at >= ?1 ORDER BY created_at DESC, rowid DESC");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map([since.unwrap_or(0) as i64], from_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Notes a metered bundle's balance as the server said it (the payment that bought `payment_hash`).
pub(crate) fn note_balance(conn: &Connection, payment_hash: &str, balance: u64, now: u64) -> Result<(), Error> {
    conn.prepare_cached("UPDATE payments SET balance_msat = ?2, balance_at = ?3 WHERE payment_hash = ?1")?
        .execute(params![payment_hash, i64::try_from(balance).unwrap_or(i64::MAX), now as i64])?;
    Ok(())
}

/// Notes that the server said the bundle bought by `payment_hash` is used up, with `balance` left.
pub(crate) fn note_exhausted(conn: &Connection, payment_hash: &str, balance: u64, now: u64) -> Result<(), Error> {
    conn.execute(
        "UPDATE payments SET balance_msat = ?2, balance_at = ?3, exhausted_at = ?3 WHERE payment_hash = ?1",
        params![payment_hash, i64::try_from(balance).unwrap_or(i64::MAX), now as i64],
    )?;
    Ok(())
}

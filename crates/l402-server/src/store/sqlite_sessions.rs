//! The SQLite store's sessions ([`super::TokenStore::open_session`] and the rest). One connection serializes
//! every call, so each is a transaction without contention; the conditions in the statements are what keep
//! a balance from going below zero and a payment from being credited twice.

use l402_proto::{Msat, PaymentHash};
use rusqlite::{Connection, OptionalExtension as _, Row, params};

use super::{NewSession, SessionClose, SessionCredit, SessionDebit, SessionInfo, SessionOpen, SessionState};

/// The columns [`info`] reads, in order.
pub(super) const COLUMNS: &str = "session_id, service, deposit_msat, credited_msat, balance_msat, spent_msat, \
     requests, return_invoice, state, refund_msat, refunded_msat, opened_at, updated_at";

fn msat(r: &Row<'_>, i: usize) -> rusqlite::Result<Msat> {
    Ok(Msat(r.get::<_, i64>(i)?.max(0) as u64))
}

fn hash(r: &Row<'_>, i: usize) -> rusqlite::Result<PaymentHash> {
    let v: Vec<u8> = r.get(i)?;
    let b: [u8; 32] = v
        .try_into()
        .map_err(|_| rusqlite::Error::InvalidColumnType(i, "session_id".into(), rusqlite::types::Type::Blob))?;
    Ok(PaymentHash(b))
}

fn state(r: &Row<'_>, i: usize) -> rusqlite::Result<SessionState> {
    let s: String = r.get(i)?;
    SessionState::parse(&s)
        .ok_or_else(|| rusqlite::Error::InvalidColumnType(i, "state".into(), rusqlite::types::Type::Text))
}

/// A row of [`COLUMNS`].
pub(super) fn info(r: &Row<'_>) -> rusqlite::Result<SessionInfo> {
    Ok(SessionInfo {
        id: hash(r, 0)?,
        service: r.get(1)?,
        deposit: msat(r, 2)?,
        credited: msat(r, 3)?,
        balance: msat(r, 4)?,
        spent: msat(r, 5)?,
        requests: r.get::<_, i64>(6)?.max(0) as u64,
        return_invoice: r.get(7)?,
        state: state(r, 8)?,
        refund: msat(r, 9)?,
        refunded: msat(r, 10)?,
        opened_at: r.get::<_, i64>(11)?.max(0) as u64,
        updated_at: r.get::<_, i64>(12)?.max(0) as u64,
    })
}

/// A session's state and balance (only if it is of `service`, when given).
fn state_of(c: &Connection, id: &[u8], service: Option<&str>) -> rusqlite::Result<Option<(SessionState, Msat)>> {
    c.query_row(
        "SELECT state, balance_msat FROM l402_sessions WHERE session_id = ?1 AND (?2 IS NULL OR service = ?2)",
        params![id, service],
        |r| Ok((state(r, 0)?, msat(r, 1)?)),
    )
    .optional()
}

/// The session credited with this payment, if any.
fn credited_to(c: &Connection, payment_hash: &[u8]) -> rusqlite::Result<Option<Vec<u8>>> {
    c.query_row("SELECT session_id FROM l402_session_credits WHERE payment_hash = ?1", [payment_hash], |r| r.get(0))
        .optional()
}

pub(super) fn open(c: &mut Connection, s: &NewSession) -> rusqlite::Result<SessionOpen> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let id = &s.id.0[..];
    let (dep, at) = (s.deposit.0 as i64, s.at as i64);
    let n = tx.execute(
        "INSERT INTO l402_session_credits (payment_hash, session_id, amount_msat, credited_at)
         VALUES (?1, ?1, ?2, ?3) ON CONFLICT (payment_hash) DO NOTHING",
        params![id, dep, at],
    )?;
    if n == 0 {
        let owner = credited_to(&tx, id)?;
        return Ok(if owner.as_deref() == Some(id) { SessionOpen::Exists } else { SessionOpen::Foreign });
    }
    tx.execute(
        "INSERT INTO l402_sessions (session_id, service, deposit_msat, credited_msat, balance_msat, return_invoice,
             state, opened_at, updated_at)
         VALUES (?1, ?2, ?3, ?3, ?3, ?4, 'open', ?5, ?5)",
        params![id, s.service, dep, s.return_invoice, at],
    )?;
    tx.commit()?;
    Ok(SessionOpen::Opened)
}

pub(super) fn debit(
    c: &mut Connection,
    id: &PaymentHash,
    service: &str,
    amount: Msat,
    at: u64,
) -> rusqlite::Result<SessionDebit> {
    let left: Option<i64> = c
        .query_row(
            "UPDATE l402_sessions SET balance_msat = balance_msat - ?2, spent_msat = spent_msat + ?2,
                 requests = requests + 1, updated_at = ?3
             WHERE session_id = ?1 AND service = ?4 AND state = 'open' AND balance_msat >= ?2
             RETURNING balance_msat",
            params![&id.0[..], amount.0 as i64, at as i64, service],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(left) = left {
        return Ok(SessionDebit::Debited(Msat(left.max(0) as u64)));
    }
    Ok(match state_of(c, &id.0, Some(service))? {
        Some((SessionState::Open, balance)) => SessionDebit::Insufficient(balance),
        other => SessionDebit::NotOpen(other.map(|(s, _)| s)),
    })
}

pub(super) fn undo_debit(c: &mut Connection, id: &PaymentHash, amount: Msat, at: u64) -> rusqlite::Result<()> {
    c.execute(
        "UPDATE l402_sessions SET balance_msat = balance_msat + ?2, spent_msat = MAX(spent_msat - ?2, 0),
             requests = MAX(requests - 1, 0), updated_at = ?3
         WHERE session_id = ?1 AND state = 'open'",
        params![&id.0[..], amount.0 as i64, at as i64],
    )?;
    Ok(())
}

pub(super) fn credit(
    c: &mut Connection,
    id: &PaymentHash,
    payment_hash: &PaymentHash,
    amount: Msat,
    at: u64,
) -> rusqlite::Result<SessionCredit> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    match state_of(&tx, &id.0, None)? {
        Some((SessionState::Open, _)) => {}
        other => return Ok(SessionCredit::NotOpen(other.map(|(s, _)| s))),
    }
    let n = tx.execute(
        "INSERT INTO l402_session_credits (payment_hash, session_id, amount_msat, credited_at)
         VALUES (?1, ?2, ?3, ?4) ON CONFLICT (payment_hash) DO NOTHING",
        params![&payment_hash.0[..], &id.0[..], amount.0 as i64, at as i64],
    )?;
    if n == 0 {
        let owner = credited_to(&tx, &payment_hash.0)?;
        if owner.as_deref() != Some(&id.0[..]) {
            return Ok(SessionCredit::Foreign);
        }
        let balance = state_of(&tx, &id.0, None)?.map_or(Msat(0), |(_, b)| b);
        return Ok(SessionCredit::Replayed(balance));
    }
    let balance: i64 = tx.query_row(
        "UPDATE l402_sessions SET balance_msat = balance_msat + ?2, credited_msat = credited_msat + ?2,
             updated_at = ?3
         WHERE session_id = ?1 RETURNING balance_msat",
        params![&id.0[..], amount.0 as i64, at as i64],
        |r| r.get(0),
    )?;
    tx.commit()?;
    Ok(SessionCredit::Applied(Msat(balance.max(0) as u64)))
}

pub(super) fn begin_close(
    c: &mut Connection,
    id: &PaymentHash,
    return_invoice: Option<&str>,
    at: u64,
    stale_before: u64,
) -> rusqlite::Result<SessionClose> {
    let row: Option<(i64, String)> = c
        .query_row(
            "UPDATE l402_sessions SET
                 refund_msat = CASE WHEN state = 'open' THEN balance_msat ELSE refund_msat END,
                 balance_msat = 0,
                 return_invoice = CASE WHEN state IN ('open', 'refund_failed') AND ?2 IS NOT NULL THEN ?2
                                       ELSE return_invoice END,
                 state = 'closing', updated_at = ?3
             WHERE session_id = ?1
               AND (state IN ('open', 'refund_failed') OR (state = 'closing' AND updated_at < ?4))
             RETURNING refund_msat, return_invoice",
            params![&id.0[..], return_invoice, at as i64, stale_before as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(match row {
        Some((refund, return_invoice)) => SessionClose::Refund { refund: Msat(refund.max(0) as u64), return_invoice },
        None => SessionClose::NotClosable(state_of(c, &id.0, None)?.map(|(s, _)| s)),
    })
}

pub(super) fn finish_close(
    c: &mut Connection,
    id: &PaymentHash,
    refunded: Option<Msat>,
    at: u64,
) -> rusqlite::Result<()> {
    match refunded {
        Some(r) => c.execute(
            "UPDATE l402_sessions SET state = 'closed', refunded_msat = refunded_msat + ?2, updated_at = ?3
             WHERE session_id = ?1 AND state = 'closing'",
            params![&id.0[..], r.0 as i64, at as i64],
        )?,
        None => c.execute(
            "UPDATE l402_sessions SET state = 'refund_failed', updated_at = ?2
             WHERE session_id = ?1 AND state = 'closing'",
            params![&id.0[..], at as i64],
        )?,
    };
    Ok(())
}

pub(super) fn get(c: &mut Connection, id: &PaymentHash) -> rusqlite::Result<Option<SessionInfo>> {
    c.query_row(&format!("SELECT {COLUMNS} FROM l402_sessions WHERE session_id = ?1"), [&id.0[..]], info).optional()
}

pub(super) fn list(c: &mut Connection, limit: u32) -> rusqlite::Result<Vec<SessionInfo>> {
    let mut st =
        c.prepare(&format!("SELECT {COLUMNS} FROM l402_sessions ORDER BY opened_at DESC, session_id LIMIT ?1"))?;
    let rows = st.query_map([i64::from(limit)], info)?;
    rows.collect()
}

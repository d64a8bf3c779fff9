//! The PostgreSQL store's sessions. Every instance sharing the database may act on one session at once: the
//! conditional `UPDATE`s take the session's row lock, and the credit table's primary key decides which of two
//! racing credits of one payment counts.

use deadpool_postgres::Object;
use l402_proto::{Msat, PaymentHash};
use tokio_postgres::Row;

use super::{
    NewSession, SessionClose, SessionCredit, SessionDebit, SessionInfo, SessionOpen, SessionState, StoreError,
};

type Result<T> = std::result::Result<T, StoreError>;

fn e(err: tokio_postgres::Error) -> StoreError {
    StoreError::from_display(err)
}

fn msat(r: &Row, i: usize) -> Msat {
    Msat(r.get::<_, i64>(i).max(0) as u64)
}

fn state(r: &Row, i: usize) -> Result<SessionState> {
    let s: &str = r.get(i);
    SessionState::parse(s).ok_or_else(|| StoreError(format!("unknown session state {s:?}")))
}

fn info(r: &Row) -> Result<SessionInfo> {
    let id: &[u8] = r.get(0);
    Ok(SessionInfo {
        id: PaymentHash(id.try_into().map_err(|_| StoreError("session id is not 32 bytes".into()))?),
        service: r.get(1),
        deposit: msat(r, 2),
        credited: msat(r, 3),
        balance: msat(r, 4),
        spent: msat(r, 5),
        requests: r.get::<_, i64>(6).max(0) as u64,
        return_invoice: r.get(7),
        state: state(r, 8)?,
        refund: msat(r, 9),
        refunded: msat(r, 10),
        opened_at: r.get::<_, i64>(11).max(0) as u64,
        updated_at: r.get::<_, i64>(12).max(0) as u64,
    })
}

/// A session's state and balance (only if it is of `service`, when given).
async fn state_of(
    c: &impl deadpool_postgres::GenericClient,
    id: &[u8],
    service: Option<&str>,
) -> Result<Option<(SessionState, Msat)>> {
    let row = c
        .query_opt(
            "SELECT state, balance_msat FROM l402_sessions WHERE session_id = $1 AND ($2::TEXT IS NULL OR service = $2)",
            &[&id, &service],
        )
        .await
        .map_err(e)?;
    row.map(|r| Ok((state(&r, 0)?, msat(&r, 1)))).transpose()
}

async fn credited_to(c: &impl deadpool_postgres::GenericClient, payment_hash: &[u8]) -> Result<Option<Vec<u8>>> {
    let row = c
        .query_opt("SELECT session_id FROM l402_session_credits WHERE payment_hash = $1", &[&payment_hash])
        .await
        .map_err(e)?;
    Ok(row.map(|r| r.get(0)))
}

pub(super) async fn open(c: &mut Object, s: &NewSession) -> Result<SessionOpen> {
    let tx = c.transaction().await.map_err(e)?;
    let id = &s.id.0[..];
    let (dep, at) = (s.deposit.0 as i64, s.at as i64);
    let n = tx
        .execute(
            "INSERT INTO l402_session_credits (payment_hash, session_id, amount_msat, credited_at)
             VALUES ($1, $1, $2, $3) ON CONFLICT (payment_hash) DO NOTHING",
            &[&id, &dep, &at],
        )
        .await
        .map_err(e)?;
    if n == 0 {
        let owner = credited_to(&tx, id).await?;
        return Ok(if owner.as_deref() == Some(id) { SessionOpen::Exists } else { SessionOpen::Foreign });
    }
    tx.execute(
        "INSERT INTO l402_sessions (session_id, service, deposit_msat, credited_msat, balance_msat, return_invoice,
             state, opened_at, updated_at)
         VALUES ($1, $2, $3, $3, $3, $4, 'open', $5, $5)",
        &[&id, &s.service, &dep, &s.return_invoice, &at],
    )
    .await
    .map_err(e)?;
    tx.commit().await.map_err(e)?;
    Ok(SessionOpen::Opened)
}

pub(super) async fn debit(c: &Object, id: &PaymentHash, service: &str, amount: Msat, at: u64) -> Result<SessionDebit> {
    let row = c
        .query_opt(
            "UPDATE l402_sessions SET balance_msat = balance_msat - $2, spent_msat = spent_msat + $2,
                 requests = requests + 1, updated_at = $3
             WHERE session_id = $1 AND service = $4 AND state = 'open' AND balance_msat >= $2
             RETURNING balance_msat",
            &[&&id.0[..], &(amount.0 as i64), &(at as i64), &service],
        )
        .await
        .map_err(e)?;
    if let Some(r) = row {
        return Ok(SessionDebit::Debited(msat(&r, 0)));
    }
    Ok(match state_of(c, &id.0, Some(service)).await? {
        Some((SessionState::Open, balance)) => SessionDebit::Insufficient(balance),
        other => SessionDebit::NotOpen(other.map(|(s, _)| s)),
    })
}

pub(super) async fn undo_debit(c: &Object, id: &PaymentHash, amount: Msat, at: u64) -> Result<()> {
    c.execute(
        "UPDATE l402_sessions SET balance_msat = balance_msat + $2, spent_msat = GREATEST(spent_msat - $2, 0),
             requests = GREATEST(requests - 1, 0), updated_at = $3
         WHERE session_id = $1 AND state = 'open'",
        &[&&id.0[..], &(amount.0 as i64), &(at as i64)],
    )
    .await
    .map_err(e)?;
    Ok(())
}

pub(super) async fn credit(
    c: &mut Object,
    id: &PaymentHash,
    payment_hash: &PaymentHash,
    amount: Msat,
    at: u64,
) -> Result<SessionCredit> {
    let tx = c.transaction().await.map_err(e)?;
    let n = tx
        .execute(
            "INSERT INTO l402_session_credits (payment_hash, session_id, amount_msat, credited_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT (payment_hash) DO NOTHING",
            &[&&payment_hash.0[..], &&id.0[..], &(amount.0 as i64), &(at as i64)],
        )
        .await
        .map_err(e)?;
    if n == 0 {
        let owner = credited_to(&tx, &payment_hash.0).await?;
        if owner.as_deref() != Some(&id.0[..]) {
            return Ok(SessionCredit::Foreign);
        }
        return Ok(match state_of(&tx, &id.0, None).await? {
            Some((SessionState::Open, balance)) => SessionCredit::Replayed(balance),
            other => SessionCredit::NotOpen(other.map(|(s, _)| s)),
        });
    }
    let row = tx
        .query_opt(
            "UPDATE l402_sessions SET balance_msat = balance_msat + $2, credited_msat = credited_msat + $2,
                 updated_at = $3
             WHERE session_id = $1 AND state = 'open' RETURNING balance_msat",
            &[&&id.0[..], &(amount.0 as i64), &(at as i64)],
        )
        .await
        .map_err(e)?;
    match row {
        Some(r) => {
            let balance = msat(&r, 0);
            tx.commit().await.map_err(e)?;
            Ok(SessionCredit::Applied(balance))
        }
        // Not open (or unknown): the credit row goes with the transaction.
        None => Ok(SessionCredit::NotOpen(state_of(&tx, &id.0, None).await?.map(|(s, _)| s))),
    }
}

pub(super) async fn begin_close(
    c: &Object,
    id: &PaymentHash,
    return_invoice: Option<&str>,
    at: u64,
    stale_before: u64,
) -> Result<SessionClose> {
    let row = c
        .query_opt(
            "UPDATE l402_sessions SET
                 refund_msat = CASE WHEN state = 'open' THEN balance_msat ELSE refund_msat END,
                 balance_msat = 0,
                 return_invoice = CASE WHEN state IN ('open', 'refund_failed') AND $2::TEXT IS NOT NULL THEN $2::TEXT
                                       ELSE return_invoice END,
                 state = 'closing', updated_at = $3
             WHERE session_id = $1
               AND (state IN ('open', 'refund_failed') OR (state = 'closing' AND updated_at < $4))
             RETURNING refund_msat, return_invoice",
            &[&&id.0[..], &return_invoice, &(at as i64), &(stale_before as i64)],
        )
        .await
        .map_err(e)?;
    Ok(match row {
        Some(r) => SessionClose::Refund { refund: msat(&r, 0), return_invoice: r.get(1) },
        None => SessionClose::NotClosable(state_of(c, &id.0, None).await?.map(|(s, _)| s)),
    })
}

pub(super) async fn finish_close(c: &Object, id: &PaymentHash, refunded: Option<Msat>, at: u64) -> Result<()> {
    match refunded {
        Some(r) => c
            .execute(
                "UPDATE l402_sessions SET state = 'closed', refunded_msat = refunded_msat + $2, updated_at = $3
                 WHERE session_id = $1 AND state = 'closing'",
                &[&&id.0[..], &(r.0 as i64), &(at as i64)],
            )
            .await
            .map_err(e)?,
        None => c
            .execute(
                "UPDATE l402_sessions SET state = 'refund_failed', updated_at = $2
                 WHERE session_id = $1 AND state = 'closing'",
                &[&&id.0[..], &(at as i64)],
            )
            .await
            .map_err(e)?,
    };
    Ok(())
}

pub(super) async fn get(c: &Object, id: &PaymentHash) -> Result<Option<SessionInfo>> {
    let sql = format!("SELECT {} FROM l402_sessions WHERE session_id = $1", super::sqlite_sessions::COLUMNS);
    let row = c.query_opt(&sql, &[&&id.0[..]]).await.map_err(e)?;
    row.as_ref().map(info).transpose()
}

pub(super) async fn list(c: &Object, limit: u32) -> Result<Vec<SessionInfo>> {
    let sql = format!(
        "SELECT {} FROM l402_sessions ORDER BY opened_at DESC, session_id LIMIT $1",
        super::sqlite_sessions::COLUMNS
    );
    c.query(&sql, &[&i64::from(limit)]).await.map_err(e)?.iter().map(info).collect()
}

//! Stored `Payment` sessions (the `sessions` table of [`crate::store`]): what the client keeps of each session
//! it opened, to reuse it for the origin and service it was opened with, top it up, and close it.
//!
//! A session is written `opening` before its deposit is paid (with the refund invoice already made), gets its
//! deposit's preimage when the payment succeeds (in the journal's transaction: [`paid_into`]), becomes `open`
//! when the server accepts the `open` credential, `closing` while a close is sent, and `closed` with what the
//! server said it refunded and what the wallet node received. One the server refuses (a `401` to its bearer
//! credential) is `refused`. The preimage is a secret, like a token's: it stays in the database (0600) and no
//! `Debug` or listing shows it.

use l402_lightning::PaymentSuccess;
use l402_proto::{Msat, Preimage};
use rusqlite::{Connection, OptionalExtension as _, Row, Transaction, params};
use serde::Serialize;

use crate::error::Error;
use crate::journal::SESSION_SCHEME;

/// A session as stored. `Debug` and `Serialize` leave out the preimage.
#[derive(Clone, Serialize)]
pub struct StoredSession {
    /// The session id: the deposit's payment hash, hex.
    pub session_id: String,
    /// `scheme://host:port` it was opened with (the only origin it is sent to).
    pub origin: String,
    /// The service (the session request's description, else the challenge's realm).
    pub service: String,
    /// The URL it was last used with.
    pub url: String,
    /// The session challenge echoed in its credentials (`PaymentChallenge::header_value()`).
    pub challenge: String,
    /// The deposit's preimage (the bearer secret), once paid.
    #[serde(skip)]
    pub preimage: Option<Preimage>,
    /// The price per request, msat.
    pub price_msat: u64,
    /// The deposit, msat.
    pub deposit_msat: u64,
    /// The top-ups paid, msat in all.
    pub topup_msat: u64,
    /// How many top-ups were paid.
    pub topups: u64,
    /// The balance as the server last said it (`X-L402-Balance-Msat`), msat.
    pub balance_msat: Option<u64>,
    /// The amountless invoice the refund is paid to.
    pub return_invoice: String,
    /// Its payment hash, hex.
    pub return_hash: String,
    /// `opening`, `open`, `closing`, `closed` or `refused`.
    pub state: String,
    /// What the server said of the refund: `succeeded`, `failed` or `skipped`.
    pub refund_status: Option<String>,
    /// What the server said it refunded, msat.
    pub refund_msat: Option<u64>,
    /// What the wallet node says it received on the return invoice, msat.
    pub refund_received_msat: Option<u64>,
    /// When it was written (Unix seconds).
    pub created_at: u64,
    /// When it last changed (Unix seconds).
    pub updated_at: u64,
}

impl std::fmt::Debug for StoredSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSession")
            .field("session_id", &self.session_id)
            .field("origin", &self.origin)
            .field("service", &self.service)
            .field("state", &self.state)
            .field("balance_msat", &self.balance_msat)
            .finish_non_exhaustive()
    }
}

impl StoredSession {
    /// What was paid into the session, deposit and top-ups, msat.
    pub fn deposited_msat(&self) -> u64 {
        self.deposit_msat.saturating_add(self.topup_msat)
    }

    /// Whether the server has accepted its `open` credential (else `open` is sent, not `bearer`).
    pub fn is_open(&self) -> bool {
        self.state == "open"
    }
}

const COLUMNS: &str = "session_id, origin, service, url, challenge, preimage, price_msat, deposit_msat, topup_msat, \
                       topups, balance_msat, return_invoice, return_hash, state, refund_status, refund_msat, \
                       refund_received_msat, created_at, updated_at";

fn from_row(r: &Row<'_>) -> rusqlite::Result<StoredSession> {
    let u = |i: usize| -> rusqlite::Result<u64> { r.get::<_, i64>(i).map(|v| u64::try_from(v).unwrap_or(0)) };
    let opt = |i: usize| -> rusqlite::Result<Option<u64>> {
        r.get::<_, Option<i64>>(i).map(|v| v.map(|v| u64::try_from(v).unwrap_or(0)))
    };
    Ok(StoredSession {
        session_id: r.get(0)?,
        origin: r.get(1)?,
        service: r.get(2)?,
        url: r.get(3)?,
        challenge: r.get(4)?,
        preimage: r.get::<_, Option<String>>(5)?.and_then(|p| Preimage::from_hex(&p).ok()),
        price_msat: u(6)?,
        deposit_msat: u(7)?,
        topup_msat: u(8)?,
        topups: u(9)?,
        balance_msat: opt(10)?,
        return_invoice: r.get(11)?,
        return_hash: r.get(12)?,
        state: r.get(13)?,
        refund_status: r.get(14)?,
        refund_msat: opt(15)?,
        refund_received_msat: opt(16)?,
        created_at: u(17)?,
        updated_at: u(18)?,
    })
}

/// A session about to be opened (its deposit not yet paid).
pub(crate) struct NewSession {
    pub(crate) session_id: String,
    pub(crate) origin: String,
    pub(crate) service: String,
    pub(crate) url: String,
    pub(crate) challenge: String,
    pub(crate) price: Msat,
    pub(crate) deposit: Msat,
    pub(crate) return_invoice: String,
    pub(crate) return_hash: String,
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Writes a session `opening` (before its deposit is paid).
pub(crate) fn insert_opening(conn: &Connection, s: &NewSession, now: u64) -> Result<(), Error> {
    conn.execute(
        "INSERT INTO sessions (session_id, origin, service, url, challenge, price_msat, deposit_msat, return_invoice, \
         return_hash, state, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'opening', ?10, ?10)",
        params![
            s.session_id,
            s.origin,
            s.service,
            s.url,
            s.challenge,
            i(s.price.0),
            i(s.deposit.0),
            s.return_invoice,
            s.return_hash,
            i(now)
        ],
    )?;
    Ok(())
}

/// Records a payment into `session_id` that just succeeded (called once, in the journal's transaction): the
/// deposit (its hash is the session id) gives the session its preimage; a top-up adds to the top-ups.
pub(crate) fn paid_into(
    tx: &Transaction<'_>,
    session_id: &str,
    payment_hash: &str,
    paid: &PaymentSuccess,
    now: u64,
) -> Result<(), Error> {
    if session_id == payment_hash {
        tx.execute(
            "UPDATE sessions SET preimage = ?2, deposit_msat = ?3, updated_at = ?4 WHERE session_id = ?1",
            params![session_id, paid.preimage.to_hex(), i(paid.amount.0), i(now)],
        )?;
    } else {
        tx.execute(
            "UPDATE sessions SET topup_msat = topup_msat + ?2, topups = topups + 1, updated_at = ?3 \
             WHERE session_id = ?1",
            params![session_id, i(paid.amount.0), i(now)],
        )?;
    }
    Ok(())
}

/// Removes a session still `opening` whose deposit was never paid (the payment failed or was refused).
pub(crate) fn forget_unpaid(conn: &Connection, session_id: &str) -> Result<(), Error> {
    conn.execute(
        "DELETE FROM sessions WHERE session_id = ?1 AND state = 'opening' AND preimage IS NULL",
        [session_id],
    )?;
    Ok(())
}

/// One session by id.
pub(crate) fn get(conn: &Connection, session_id: &str) -> Result<Option<StoredSession>, Error> {
    let sql = format!("SELECT {COLUMNS} FROM sessions WHERE session_id = ?1");
    Ok(conn.query_row(&sql, [session_id], from_row).optional()?)
}

/// The newest usable session (paid; `opening` or `open`) of `origin` for `service`.
pub(crate) fn usable_for_service(
    conn: &Connection,
    origin: &str,
    service: &str,
) -> Result<Option<StoredSession>, Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM sessions WHERE origin = ?1 AND service = ?2 AND state IN ('opening', 'open') \
         AND preimage IS NOT NULL ORDER BY created_at DESC, rowid DESC LIMIT 1"
    );
    Ok(conn.prepare_cached(&sql)?.query_row(params![origin, service], from_row).optional()?)
}

/// The usable session to send to `origin` + `path`: the one of the service that path was learned to charge
/// for, else the newest one last used at this very URL path.
pub(crate) fn select(conn: &Connection, origin: &str, path: &str) -> Result<Option<StoredSession>, Error> {
    let service: Option<String> = conn
        .prepare_cached("SELECT service FROM routes WHERE origin = ?1 AND path = ?2")?
        .query_row(params![origin, path], |r| r.get(0))
        .optional()?;
    if let Some(service) = service {
        return usable_for_service(conn, origin, &service);
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM sessions WHERE origin = ?1 AND state IN ('opening', 'open') AND preimage IS NOT NULL \
         ORDER BY updated_at DESC, rowid DESC"
    );
    let rows = conn.prepare_cached(&sql)?.query_map([origin], from_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows.into_iter().find(|s| reqwest::Url::parse(&s.url).is_ok_and(|u| u.path() == path)))
}

/// Records a request the server served on the session: it is `open`, was last used at `url`, has `balance`
/// left (if the server said), and echoes `challenge` from now on (if given: a fresher one).
pub(crate) fn served(
    conn: &Connection,
    session_id: &str,
    url: &str,
    balance: Option<u64>,
    challenge: Option<&str>,
    now: u64,
) -> Result<(), Error> {
    conn.execute(
        "UPDATE sessions SET state = CASE WHEN state = 'opening' THEN 'open' ELSE state END, url = ?2, \
         balance_msat = COALESCE(?3, balance_msat), challenge = COALESCE(?4, challenge), updated_at = ?5 \
         WHERE session_id = ?1",
        params![session_id, url, balance.map(i), challenge, i(now)],
    )?;
    Ok(())
}

/// Notes the balance the server said (a `402` that asks for a top-up).
pub(crate) fn note_balance(conn: &Connection, session_id: &str, balance: u64, now: u64) -> Result<(), Error> {
    conn.execute(
        "UPDATE sessions SET balance_msat = ?2, updated_at = ?3 WHERE session_id = ?1",
        params![session_id, i(balance), i(now)],
    )?;
    Ok(())
}

/// Sets a session's state (`closing`, `refused`, ...).
pub(crate) fn set_state(conn: &Connection, session_id: &str, state: &str, now: u64) -> Result<(), Error> {
    conn.execute(
        "UPDATE sessions SET state = ?2, updated_at = ?3 WHERE session_id = ?1",
        params![session_id, state, i(now)],
    )?;
    Ok(())
}

/// Records a close the server answered: the refund it reports, and what the wallet node received (credited
/// back in the ledger on the session's payments, so the budgets no longer count it). `done`: the server has
/// nothing more to refund (the session is `closed`); else it stays `closing`.
pub(crate) fn closed(
    tx: &Transaction<'_>,
    session_id: &str,
    refund_status: &str,
    refund: Msat,
    received: Option<Msat>,
    done: bool,
    now: u64,
) -> Result<(), Error> {
    tx.execute(
        "UPDATE sessions SET state = ?6, refund_status = ?2, refund_msat = ?3, refund_received_msat = ?4, \
         balance_msat = 0, updated_at = ?5 WHERE session_id = ?1",
        params![
            session_id,
            refund_status,
            i(refund.0),
            received.map(|m| i(m.0)),
            i(now),
            if done { "closed" } else { "closing" }
        ],
    )?;
    if let Some(received) = received {
        // Credited to the session's payments in the order they were made (the deposit first), each at most what
        // it cost, so that no credit is lost to a payment smaller than the refund.
        let rows = tx
            .prepare(
                "SELECT payment_hash, amount_msat + COALESCE(fee_msat, 0) FROM payments WHERE session_id = ?1 \
                 AND scheme = ?2 AND state = 'succeeded' ORDER BY payment_hash != ?1, created_at, rowid",
            )?
            .query_map(params![session_id, SESSION_SCHEME], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        let mut left = received.0;
        for (hash, cost) in rows {
            let credit = left.min(u64::try_from(cost).unwrap_or(0));
            left -= credit;
            tx.execute(
                "UPDATE payments SET refunded_msat = ?2, updated_at = ?3 WHERE payment_hash = ?1",
                params![hash, i(credit), i(now)],
            )?;
        }
    }
    Ok(())
}

/// A paid top-up the server has not credited yet (the request that carried it got no answer): its hash,
/// challenge and preimage, to present again instead of paying another.
#[derive(Clone)]
pub(crate) struct UnspentTopUp {
    pub(crate) payment_hash: String,
    pub(crate) challenge: String,
    pub(crate) preimage: Preimage,
}

/// The oldest paid top-up of `session_id` not yet credited, if any.
pub(crate) fn unspent_topup(conn: &Connection, session_id: &str) -> Result<Option<UnspentTopUp>, Error> {
    let row = conn
        .query_row(
            "SELECT payment_hash, challenge, preimage FROM payments WHERE session_id = ?1 AND payment_hash != ?1 \
             AND scheme = ?2 AND state = 'succeeded' AND charge_state = 'unspent' ORDER BY created_at, rowid LIMIT 1",
            params![session_id, SESSION_SCHEME],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, Option<String>>(1)?, r.get::<_, Option<String>>(2)?)),
        )
        .optional()?;
    let Some((payment_hash, challenge, preimage)) = row else { return Ok(None) };
    let bad = |what: &str| Error::Store(format!("journaled top-up {payment_hash}: {what}"));
    let preimage = Preimage::from_hex(preimage.as_deref().unwrap_or("")).map_err(|_| bad("preimage"))?;
    let challenge = challenge.ok_or_else(|| bad("no challenge"))?;
    Ok(Some(UnspentTopUp { payment_hash, challenge, preimage }))
}

/// Every session, newest first.
pub fn list(conn: &Connection) -> Result<Vec<StoredSession>, Error> {
    let sql = format!("SELECT {COLUMNS} FROM sessions ORDER BY created_at DESC, rowid DESC");
    let rows = conn.prepare(&sql)?.query_map([], from_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The sessions whose id starts with `prefix` (hex, case-insensitive).
pub fn find(conn: &Connection, prefix: &str) -> Result<Vec<StoredSession>, Error> {
    let prefix = prefix.trim().to_ascii_lowercase();
    if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(Vec::new());
    }
    let sql =
        format!("SELECT {COLUMNS} FROM sessions WHERE substr(session_id, 1, length(?1)) = ?1 ORDER BY created_at");
    let rows = conn.prepare(&sql)?.query_map([&prefix], from_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use l402_lightning::PaymentSuccess;
    use l402_proto::{Msat, PaymentHash, Preimage};

    use super::*;
    use crate::budget::{Limits, Usage};
    use crate::journal::{self, NewPayment, Purchase};
    use crate::store::Store;
    use crate::tokens;

    const ORIGIN: &str = "http://127.0.0.1:8402";

    /// Journals and pays (in the store only) a payment of `sat` into `session`; returns its hash.
    fn paid(tx: &Transaction<'_>, session: &str, preimage: Preimage, sat: u64, now: u64) -> PaymentHash {
        let hash = preimage.payment_hash();
        let entry = NewPayment {
            payment_hash: hash,
            origin: ORIGIN.into(),
            service: "weather".into(),
            path: "/weather/today".into(),
            purchase: Purchase::Session {
                challenge: "Payment id=\"x\"".into(),
                challenge_id: "x".into(),
                session_id: session.into(),
            },
            invoice: "lnbcrt1".into(),
            amount: Msat::from_sat(sat),
            fee_limit: Msat::from_sat(10),
        };
        journal::reserve(tx, &Limits::default(), &entry, now).expect("reserve");
        let success = PaymentSuccess { preimage, amount: Msat::from_sat(sat), fee: Msat(1_000) };
        journal::succeed(tx, &hash, &success, now).expect("succeed");
        journal::succeed(tx, &hash, &success, now).expect("idempotent");
        hash
    }

    /// A session opened, topped up and closed in the store: the deposit gives it its preimage, a top-up is counted
    /// once however often its success is recorded, the refund the node received is credited back to the
    /// session's payments (deposit first, each at most what it cost) and the budgets count the rest; neither
    /// `Debug` nor the JSON listing shows the preimage; a closed session is not selected again.
    #[test]
    fn a_session_in_the_store_is_credited_once_refunded_into_the_ledger_and_never_shows_its_secret() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = Store::open(dir.path()).expect("store");
        let deposit = Preimage([0x5e; 32]);
        let id = deposit.payment_hash().to_hex();
        store
            .blocking(|c| {
                tokens::learn_route(c, ORIGIN, "/weather/today", "weather", 1)?;
                insert_opening(
                    c,
                    &NewSession {
                        session_id: id.clone(),
                        origin: ORIGIN.into(),
                        service: "weather".into(),
                        url: format!("{ORIGIN}/weather/today"),
                        challenge: "Payment id=\"x\"".into(),
                        price: Msat::from_sat(10),
                        deposit: Msat::from_sat(100),
                        return_invoice: "lnbcrt1refund".into(),
                        return_hash: "11".repeat(32),
                    },
                    1,
                )?;
                assert!(select(c, ORIGIN, "/weather/today")?.is_none(), "not usable before the deposit is paid");
                let tx = c.transaction()?;
                paid(&tx, &id, deposit, 100, 2);
                paid(&tx, &id, Preimage([0x70; 32]), 100, 3);
                tx.commit()?;
                let s = select(c, ORIGIN, "/weather/today")?.expect("usable once paid");
                assert_eq!((s.deposit_msat, s.topup_msat, s.topups), (100_000, 100_000, 1));
                assert_eq!(s.preimage, Some(deposit));
                assert!(!s.is_open(), "open only once the server accepted it");
                served(c, &id, &s.url, Some(90_000), None, 4)?;
                for shown in [format!("{s:?}"), serde_json::to_string(&list(c)?).expect("json")] {
                    assert!(!shown.contains(&deposit.to_hex()), "{shown}");
                }
                // 150 sat back: the deposit's 100 sat + 1 sat fee, then 49 sat of the top-up.
                let tx = c.transaction()?;
                closed(&tx, &id, "succeeded", Msat::from_sat(150), Some(Msat::from_sat(150)), true, 5)?;
                tx.commit()?;
                let ledger = journal::ledger(c, None)?;
                let credit: Vec<_> = ledger.iter().map(|e| (e.payment_hash == id, e.refunded_msat)).collect();
                assert!(
                    credit.contains(&(true, Some(101_000))) && credit.contains(&(false, Some(49_000))),
                    "{credit:?}"
                );
                assert_eq!(ledger.iter().map(|e| e.counted_msat()).sum::<u64>(), 52_000);
                assert_eq!(Usage::read(c, ORIGIN, 6, "")?.origin, 52_000, "the budgets count what was not refunded");
                let s = get(c, &id)?.expect("kept");
                assert_eq!((s.state.as_str(), s.refund_received_msat), ("closed", Some(150_000)));
                assert!(select(c, ORIGIN, "/weather/today")?.is_none(), "a closed session is not used again");
                Ok(())
            })
            .expect("store");
    }
}

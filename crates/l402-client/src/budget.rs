//! Budget limits, checked fail-closed before every payment, against the ledger every process shares.
//!
//! A payment first *reserves* its amount plus its fee limit; on success the reservation becomes the actual
//! amount plus the actual fee, on a definite failure it is released, and while the outcome is unknown it keeps
//! counting. The check and the reservation happen in one `BEGIN IMMEDIATE` transaction (see
//! [`crate::store`]), so two processes sharing a data directory cannot both spend the last of a limit.
//!
//! Windows: `per_hour` and `per_day` are rolling (the last 3,600 / 86,400 seconds, by the time a payment was
//! reserved), `per_origin` and `total` count everything in the ledger. Any amount that would overflow is
//! refused.

use std::fmt;

use rusqlite::{OptionalExtension as _, Transaction, params};

use crate::error::Error;

/// Default [`Limits::per_request`]: 1,000 sat (amount + fee).
pub const DEFAULT_PER_REQUEST_MSAT: u64 = 1_000_000;
/// Default [`Limits::per_origin`]: 10,000 sat.
pub const DEFAULT_PER_ORIGIN_MSAT: u64 = 10_000_000;
/// Default [`Limits::per_hour`]: 10,000 sat.
pub const DEFAULT_PER_HOUR_MSAT: u64 = 10_000_000;
/// Default [`Limits::per_day`]: 50,000 sat.
pub const DEFAULT_PER_DAY_MSAT: u64 = 50_000_000;
/// Default [`Limits::total`]: 100,000 sat.
pub const DEFAULT_TOTAL_MSAT: u64 = 100_000_000;

/// Which limit refused a payment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// One payment (amount + fee limit).
    PerRequest,
    /// Everything paid to one origin.
    PerOrigin,
    /// The last hour.
    PerHour,
    /// The last 24 hours.
    PerDay,
    /// Everything in the ledger.
    Total,
    /// This client's session budget (`l402 fetch --budget`).
    Session,
}

impl LimitKind {
    /// The name used in settings and messages.
    pub fn name(self) -> &'static str {
        match self {
            LimitKind::PerRequest => "per-request",
            LimitKind::PerOrigin => "per-origin",
            LimitKind::PerHour => "per-hour",
            LimitKind::PerDay => "per-day",
            LimitKind::Total => "total",
            LimitKind::Session => "session",
        }
    }

    /// The kinds stored in the `limits` table.
    pub const STORED: [LimitKind; 5] =
        [LimitKind::PerRequest, LimitKind::PerOrigin, LimitKind::PerHour, LimitKind::PerDay, LimitKind::Total];

    /// Parses [`LimitKind::name`].
    pub fn from_name(name: &str) -> Option<Self> {
        Self::STORED.into_iter().chain([LimitKind::Session]).find(|k| k.name() == name)
    }
}

impl fmt::Display for LimitKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Spending limits, in msat of amount + fee. See the module doc for the windows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The most one payment may reserve (amount + fee limit).
    pub per_request: u64,
    /// The most spent on one origin.
    pub per_origin: u64,
    /// The most spent in any rolling hour.
    pub per_hour: u64,
    /// The most spent in any rolling 24 hours.
    pub per_day: u64,
    /// The most spent in total.
    pub total: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            per_request: DEFAULT_PER_REQUEST_MSAT,
            per_origin: DEFAULT_PER_ORIGIN_MSAT,
            per_hour: DEFAULT_PER_HOUR_MSAT,
            per_day: DEFAULT_PER_DAY_MSAT,
            total: DEFAULT_TOTAL_MSAT,
        }
    }
}

impl Limits {
    /// The limit of `kind` (`u64::MAX` for [`LimitKind::Session`], which is not stored here).
    pub fn get(&self, kind: LimitKind) -> u64 {
        match kind {
            LimitKind::PerRequest => self.per_request,
            LimitKind::PerOrigin => self.per_origin,
            LimitKind::PerHour => self.per_hour,
            LimitKind::PerDay => self.per_day,
            LimitKind::Total => self.total,
            LimitKind::Session => u64::MAX,
        }
    }

    /// Sets the limit of `kind` (ignored for [`LimitKind::Session`]).
    pub fn set(&mut self, kind: LimitKind, msat: u64) {
        match kind {
            LimitKind::PerRequest => self.per_request = msat,
            LimitKind::PerOrigin => self.per_origin = msat,
            LimitKind::PerHour => self.per_hour = msat,
            LimitKind::PerDay => self.per_day = msat,
            LimitKind::Total => self.total = msat,
            LimitKind::Session => {}
        }
    }

    /// The limits stored in the data directory, defaults for the ones never set.
    pub fn load(tx: &rusqlite::Connection) -> Result<Self, Error> {
        let mut limits = Limits::default();
        for kind in LimitKind::STORED {
            let v: Option<i64> =
                tx.query_row("SELECT msat FROM limits WHERE name = ?1", [kind.name()], |r| r.get(0)).optional()?;
            if let Some(v) = v {
                limits.set(kind, u64::try_from(v).unwrap_or(0));
            }
        }
        Ok(limits)
    }

    /// Stores one limit for every process using the data directory.
    pub fn save(tx: &rusqlite::Connection, kind: LimitKind, msat: u64) -> Result<(), Error> {
        let v = i64::try_from(msat).map_err(|_| Error::Store("limit too large".into()))?;
        tx.execute(
            "INSERT INTO limits (name, msat) VALUES (?1, ?2) ON CONFLICT(name) DO UPDATE SET msat = excluded.msat",
            params![kind.name(), v],
        )?;
        Ok(())
    }
}

/// What the ledger counts against the limits: committed spend plus open reservations.
const COUNTED: &str = "COALESCE(SUM(CASE state \
     WHEN 'succeeded' THEN MAX(0, amount_msat + COALESCE(fee_msat, 0) - COALESCE(refunded_msat, 0)) \
     WHEN 'pending' THEN reserved_msat \
     WHEN 'unknown' THEN reserved_msat \
     ELSE 0 END), 0)";

/// Spend and reservations in each scope, as counted against the limits.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// Counted for the origin.
    pub origin: u64,
    /// Counted in the last hour.
    pub hour: u64,
    /// Counted in the last 24 hours.
    pub day: u64,
    /// Counted in total.
    pub total: u64,
}

impl Usage {
    /// Reads the usage at `now`, for `origin` (or none), leaving out the payment `except` (a reservation being
    /// raised is checked without counting itself twice).
    pub fn read(tx: &rusqlite::Connection, origin: &str, now: u64, except: &str) -> Result<Self, Error> {
        let q = |cond: &str, p: &[&dyn rusqlite::ToSql]| -> Result<u64, Error> {
            let sql = format!("SELECT {COUNTED} FROM payments WHERE payment_hash != ?1 AND {cond}");
            let v: i64 = tx.query_row(&sql, p, |r| r.get(0))?;
            Ok(u64::try_from(v).unwrap_or(u64::MAX))
        };
        let hour = now.saturating_sub(3_600) as i64;
        let day = now.saturating_sub(86_400) as i64;
        Ok(Usage {
            origin: q("origin = ?2", &[&except, &origin])?,
            hour: q("created_at > ?2", &[&except, &hour])?,
            day: q("created_at > ?2", &[&except, &day])?,
            total: q("1 = 1", &[&except])?,
        })
    }
}

/// Checks that reserving `needed` msat keeps every limit (fail closed on overflow).
pub(crate) fn check(
    tx: &Transaction<'_>,
    limits: &Limits,
    origin: &str,
    needed: u64,
    now: u64,
    except: &str,
) -> Result<(), Error> {
    let refuse = |limit: LimitKind, spent: u64| Error::Budget {
        limit,
        limit_msat: limits.get(limit),
        spent_msat: spent,
        needed_msat: needed,
    };
    if needed > limits.per_request {
        return Err(refuse(LimitKind::PerRequest, 0));
    }
    let usage = Usage::read(tx, origin, now, except)?;
    for (kind, spent) in [
        (LimitKind::PerOrigin, usage.origin),
        (LimitKind::PerHour, usage.hour),
        (LimitKind::PerDay, usage.day),
        (LimitKind::Total, usage.total),
    ] {
        match spent.checked_add(needed) {
            Some(after) if after <= limits.get(kind) => {}
            _ => return Err(refuse(kind, spent)),
        }
    }
    Ok(())
}

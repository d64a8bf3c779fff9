//! Paid tokens: storing them, choosing the one to send, and marking the ones a server refused.
//!
//! A request to `origin` + `path` is sent with: the newest valid token of the service that path was last seen
//! to charge for (the `routes` table, learned from challenges), else the newest valid token bought at a path
//! prefix of it. Tokens whose `valid_until` caveat has passed are deleted when met (an expired token is worth
//! nothing: the server answers a fresh 402). A token the server refuses is never deleted by the client: it is
//! kept, preimage included, in state `refused`, and only `l402 token rm` removes it.

use l402_lightning::PaymentSuccess;
use l402_proto::caveat::{SERVICES, VALID_UNTIL_SUFFIX, parse_services};
use l402_proto::{Credential, Macaroon, Msat, PaymentHash, Preimage, Scheme, TokenId};
use rusqlite::{Connection, OptionalExtension as _, Row, params};
use serde::Serialize;

use crate::error::Error;

/// A token in the store. `Debug` and `Serialize` show no secret: the macaroon and preimage are only reachable
/// through [`StoredToken::credential`].
#[derive(Clone, Serialize)]
pub struct StoredToken {
    /// The token id (hex).
    pub token_id: String,
    /// `scheme://host:port` it was bought from.
    pub origin: String,
    /// The service it was bought for (first of the `services` caveat; empty if the token names none).
    pub service: String,
    /// Every service it grants, comma-separated.
    pub services: String,
    /// The path prefix it was bought under.
    pub path_prefix: String,
    /// The scheme the server challenged with (`L402` or `LSAT`).
    pub scheme: String,
    /// The payment hash (hex).
    pub payment_hash: String,
    /// The amount paid, msat.
    pub amount_msat: u64,
    /// The routing fee paid, msat.
    pub fee_msat: u64,
    /// Expiry from the token's `<service>_valid_until` caveat (Unix seconds), if any.
    pub valid_until: Option<u64>,
    /// `valid` or `refused`.
    pub state: String,
    /// When the server refused it (Unix seconds).
    pub refused_at: Option<u64>,
    /// The HTTP status of the refusal.
    pub refused_status: Option<u16>,
    /// When it was stored (Unix seconds).
    pub created_at: u64,
    /// When it was last sent (Unix seconds).
    pub last_used_at: Option<u64>,
    #[serde(skip)]
    macaroon: String,
    #[serde(skip)]
    preimage: String,
}

impl std::fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredToken")
            .field("token_id", &self.token_id)
            .field("origin", &self.origin)
            .field("services", &self.services)
            .field("path_prefix", &self.path_prefix)
            .field("state", &self.state)
            .field("valid_until", &self.valid_until)
            .finish_non_exhaustive()
    }
}

impl StoredToken {
    /// The token id.
    pub fn id(&self) -> Result<TokenId, Error> {
        TokenId::from_hex(&self.token_id).map_err(|e| Error::Store(format!("token id: {e}")))
    }

    /// The credential to present (a secret: never log it).
    pub fn credential(&self) -> Result<Credential, Error> {
        let mac = Macaroon::from_base64(&self.macaroon).map_err(|e| Error::Store(format!("stored macaroon: {e}")))?;
        let preimage = Preimage::from_hex(&self.preimage).map_err(|e| Error::Store(format!("stored preimage: {e}")))?;
        let scheme = Scheme::from_name(&self.scheme).unwrap_or(Scheme::L402);
        Ok(Credential::new(scheme, mac, preimage))
    }

    /// Whether the token grants `service` (a token naming no service is taken to grant any).
    pub fn grants(&self, service: &str) -> bool {
        self.services.is_empty() || self.services.split(',').any(|s| s == service)
    }

    /// Amount plus fee.
    pub fn paid(&self) -> Msat {
        Msat(self.amount_msat.saturating_add(self.fee_msat))
    }
}

const COLUMNS: &str = "token_id, origin, service, services, path_prefix, scheme, payment_hash, amount_msat, fee_msat, \
     valid_until, state, refused_at, refused_status, created_at, last_used_at, macaroon, preimage";

fn from_row(r: &Row<'_>) -> rusqlite::Result<StoredToken> {
    let u = |i: usize| -> rusqlite::Result<u64> { r.get::<_, i64>(i).map(|v| u64::try_from(v).unwrap_or(0)) };
    let ou = |i: usize| -> rusqlite::Result<Option<u64>> {
        r.get::<_, Option<i64>>(i).map(|v| v.map(|v| u64::try_from(v).unwrap_or(0)))
    };
    Ok(StoredToken {
        token_id: r.get(0)?,
        origin: r.get(1)?,
        service: r.get(2)?,
        services: r.get(3)?,
        path_prefix: r.get(4)?,
        scheme: r.get(5)?,
        payment_hash: r.get(6)?,
        amount_msat: u(7)?,
        fee_msat: u(8)?,
        valid_until: ou(9)?,
        state: r.get(10)?,
        refused_at: ou(11)?,
        refused_status: r.get::<_, Option<i64>>(12)?.map(|v| u16::try_from(v).unwrap_or(0)),
        created_at: u(13)?,
        last_used_at: ou(14)?,
        macaroon: r.get(15)?,
        preimage: r.get(16)?,
    })
}

/// What a macaroon's caveats say about where a token applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenScope {
    /// The services granted (from the last `services` caveat; empty if none).
    pub services: Vec<String>,
    /// The earliest `<service>_valid_until` for the first service.
    pub valid_until: Option<u64>,
}

impl TokenScope {
    /// Reads the scope from a macaroon's caveats (malformed caveats are skipped: the server decides).
    pub fn of(mac: &Macaroon) -> Self {
        let mut services = Vec::new();
        for caveat in mac.caveats() {
            let Ok(text) = std::str::from_utf8(caveat) else { continue };
            if let Some(list) = text.strip_prefix(SERVICES).and_then(|r| r.strip_prefix('=')).and_then(parse_services) {
                services = list.into_iter().map(|s| s.name).collect();
            }
        }
        let mut valid_until: Option<u64> = None;
        if let Some(first) = services.first() {
            let prefix = format!("{first}{VALID_UNTIL_SUFFIX}=");
            for caveat in mac.caveats() {
                let Ok(text) = std::str::from_utf8(caveat) else { continue };
                if let Some(t) = text.strip_prefix(&prefix).and_then(|t| t.parse::<u64>().ok()) {
                    valid_until = Some(valid_until.map_or(t, |v| v.min(t)));
                }
            }
        }
        Self { services, valid_until }
    }

    /// The service a payment for this token is keyed by (the first granted; empty if none is named).
    pub fn service(&self) -> &str {
        self.services.first().map_or("", String::as_str)
    }
}

/// The directory part of a path, the prefix a token bought there is offered for: `/a/b` -> `/a/`.
pub(crate) fn path_prefix(path: &str) -> String {
    match path.rfind('/') {
        Some(i) => path[..=i].to_owned(),
        None => "/".to_owned(),
    }
}

/// Deletes tokens of `origin` whose `valid_until` has passed; returns their ids (for the log). Looks first, so
/// that the usual case (nothing expired) is a read, not a write transaction on every request.
fn drop_expired(conn: &Connection, origin: &str, now: u64) -> Result<Vec<String>, Error> {
    let any: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM tokens WHERE origin = ?1 AND state = 'valid' AND valid_until IS NOT NULL \
             AND valid_until <= ?2)",
        )?
        .query_row(params![origin, now as i64], |r| r.get(0))?;
    if !any {
        return Ok(Vec::new());
    }
    let mut stmt = conn.prepare_cached(
        "DELETE FROM tokens WHERE origin = ?1 AND state = 'valid' AND valid_until IS NOT NULL AND valid_until <= ?2 \
         RETURNING token_id",
    )?;
    let ids = stmt.query_map(params![origin, now as i64], |r| r.get(0))?.collect::<Result<Vec<String>, _>>()?;
    Ok(ids)
}

/// Chooses the token to send to `origin` + `path` (see the module doc).
pub(crate) fn select(conn: &Connection, origin: &str, path: &str, now: u64) -> Result<Option<StoredToken>, Error> {
    for id in drop_expired(conn, origin, now)? {
        tracing::info!(token_id = %id, origin, "expired token dropped");
    }
    let service: Option<String> = conn
        .prepare_cached("SELECT service FROM routes WHERE origin = ?1 AND path = ?2")?
        .query_row(params![origin, path], |r| r.get(0))
        .optional()?;
    if let Some(service) = service {
        return valid_for_service(conn, origin, &service);
    }
    let sql = format!(
        "SELECT {COLUMNS} FROM tokens WHERE origin = ?1 AND state = 'valid' AND substr(?2, 1, length(path_prefix)) = \
         path_prefix ORDER BY length(path_prefix) DESC, created_at DESC LIMIT 1"
    );
    Ok(conn.prepare_cached(&sql)?.query_row(params![origin, path], from_row).optional()?)
}

/// The newest valid token of `origin` granting `service`.
pub(crate) fn valid_for_service(conn: &Connection, origin: &str, service: &str) -> Result<Option<StoredToken>, Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM tokens WHERE origin = ?1 AND state = 'valid' AND \
         (services = '' OR instr(',' || services || ',', ',' || ?2 || ',') > 0) ORDER BY created_at DESC LIMIT 1"
    );
    Ok(conn.prepare_cached(&sql)?.query_row(params![origin, service], from_row).optional()?)
}

/// The newest refused token of `origin` granting `service`, if any.
pub(crate) fn refused_for_service(
    conn: &Connection,
    origin: &str,
    service: &str,
) -> Result<Option<StoredToken>, Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM tokens WHERE origin = ?1 AND state = 'refused' AND \
         (services = '' OR instr(',' || services || ',', ',' || ?2 || ',') > 0) ORDER BY created_at DESC LIMIT 1"
    );
    Ok(conn.query_row(&sql, params![origin, service], from_row).optional()?)
}

/// How many learned routes are kept per origin (the most recently learned). A route forgotten costs at most
/// one extra 402 round trip: the client then finds its token by the service the challenge names.
pub const MAX_ROUTES_PER_ORIGIN: usize = 1_000;

/// Records which service `path` of `origin` charges for, and forgets the oldest routes of `origin` beyond
/// [`MAX_ROUTES_PER_ORIGIN`] (an API with an id in its paths would otherwise grow the table without end).
pub(crate) fn learn_route(conn: &Connection, origin: &str, path: &str, service: &str, now: u64) -> Result<(), Error> {
    conn.execute(
        "INSERT INTO routes (origin, path, service, updated_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT(origin, path) DO UPDATE SET service = excluded.service, updated_at = excluded.updated_at",
        params![origin, path, service, now as i64],
    )?;
    conn.execute(
        "DELETE FROM routes WHERE origin = ?1 AND rowid NOT IN \
         (SELECT rowid FROM routes WHERE origin = ?1 ORDER BY updated_at DESC, rowid DESC LIMIT ?2)",
        params![origin, MAX_ROUTES_PER_ORIGIN as i64],
    )?;
    Ok(())
}

/// What is needed to store the token a payment bought.
pub(crate) struct NewToken<'a> {
    pub(crate) origin: &'a str,
    pub(crate) path: &'a str,
    pub(crate) scheme: &'a str,
    pub(crate) macaroon: &'a Macaroon,
    pub(crate) payment_hash: &'a PaymentHash,
    pub(crate) paid: &'a PaymentSuccess,
}

/// Stores a paid token (idempotent: a token already stored is left as it is). Returns its id.
pub(crate) fn insert(conn: &Connection, t: &NewToken<'_>, now: u64) -> Result<TokenId, Error> {
    let id = t.macaroon.l402_identifier().map_err(|e| Error::Store(format!("journaled macaroon: {e}")))?;
    let scope = TokenScope::of(t.macaroon);
    conn.execute(
        "INSERT INTO tokens (token_id, origin, service, services, path_prefix, scheme, macaroon, preimage, \
         payment_hash, amount_msat, fee_msat, valid_until, state, created_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, 'valid', ?13) ON CONFLICT(token_id) DO NOTHING",
        params![
            id.token_id.to_hex(),
            t.origin,
            scope.service(),
            scope.services.join(","),
            path_prefix(t.path),
            t.scheme,
            t.macaroon.to_base64(),
            t.paid.preimage.to_hex(),
            t.payment_hash.to_hex(),
            t.paid.amount.0 as i64,
            t.paid.fee.0 as i64,
            scope.valid_until.map(|v| v as i64),
            now as i64,
        ],
    )?;
    Ok(id.token_id)
}

/// Marks a token refused by the server (kept, with its preimage).
pub(crate) fn mark_refused(conn: &Connection, token_id: &str, status: u16, now: u64) -> Result<(), Error> {
    conn.execute(
        "UPDATE tokens SET state = 'refused', refused_at = ?2, refused_status = ?3 WHERE token_id = ?1",
        params![token_id, now as i64, status],
    )?;
    Ok(())
}

/// Notes that a token was used.
pub(crate) fn touch(conn: &Connection, token_id: &str, now: u64) -> Result<(), Error> {
    conn.prepare_cached("UPDATE tokens SET last_used_at = ?2 WHERE token_id = ?1")?
        .execute(params![token_id, now as i64])?;
    Ok(())
}

/// Every token, newest first (optionally of one origin).
pub fn list(conn: &Connection, origin: Option<&str>) -> Result<Vec<StoredToken>, Error> {
    let sql = format!("SELECT {COLUMNS} FROM tokens WHERE (?1 IS NULL OR origin = ?1) ORDER BY created_at DESC");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![origin], from_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// The tokens whose id starts with `prefix` (hex).
pub fn find(conn: &Connection, prefix: &str) -> Result<Vec<StoredToken>, Error> {
    let sql = format!("SELECT {COLUMNS} FROM tokens WHERE substr(token_id, 1, length(?1)) = ?1");
    let mut stmt = conn.prepare(&sql)?;
    let rows = stmt.query_map(params![prefix.to_ascii_lowercase()], from_row)?.collect::<Result<Vec<_>, _>>()?;
    Ok(rows)
}

/// Deletes one token by its full id. Returns whether it existed.
pub fn remove(conn: &Connection, token_id: &str) -> Result<bool, Error> {
    Ok(conn.execute("DELETE FROM tokens WHERE token_id = ?1", [token_id])? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn learned_routes_are_bounded_per_origin_oldest_forgotten_first() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = crate::Store::open(dir.path()).expect("store");
        store
            .blocking(|c| {
                for i in 0..MAX_ROUTES_PER_ORIGIN + 5 {
                    learn_route(c, "http://a:80", &format!("/item/{i}"), "svc", 1_000 + i as u64)?;
                }
                for i in 0..3 {
                    learn_route(c, "http://b:80", &format!("/x/{i}"), "other", 1)?;
                }
                // Learned again: it is now the newest, and survives the next pruning.
                learn_route(c, "http://a:80", "/item/5", "svc", 1_000_000)?;
                learn_route(c, "http://a:80", "/new", "svc", 1_000_001)?;
                let count = |origin: &str| -> Result<i64, Error> {
                    Ok(c.query_row("SELECT count(*) FROM routes WHERE origin = ?1", [origin], |r| r.get(0))?)
                };
                assert_eq!(count("http://a:80")?, MAX_ROUTES_PER_ORIGIN as i64);
                assert_eq!(count("http://b:80")?, 3, "another origin's routes are its own");
                let has = |path: &str| -> Result<bool, Error> {
                    Ok(c.query_row("SELECT 1 FROM routes WHERE origin = 'http://a:80' AND path = ?1", [path], |_| {
                        Ok(())
                    })
                    .optional()?
                    .is_some())
                };
                for gone in 0..5 {
                    assert!(!has(&format!("/item/{gone}"))?, "/item/{gone} was among the oldest");
                }
                assert!(!has("/item/6")?, "pushed out by /new");
                assert!(has("/item/5")? && has("/new")? && has("/item/7")?);
                Ok(())
            })
            .expect("routes");
    }

    #[test]
    fn debug_and_json_show_no_secret() {
        let t = StoredToken {
            token_id: "ab".repeat(32),
            origin: "http://127.0.0.1:1".into(),
            service: "svc".into(),
            services: "svc".into(),
            path_prefix: "/".into(),
            scheme: "L402".into(),
            payment_hash: "00".repeat(32),
            amount_msat: 1,
            fee_msat: 0,
            valid_until: None,
            state: "valid".into(),
            refused_at: None,
            refused_status: None,
            created_at: 0,
            last_used_at: None,
            macaroon: "AgEEbHNhdAJCAAsecret".into(),
            preimage: "5ec4e7".repeat(10),
        };
        for shown in [format!("{t:?}"), serde_json::to_string(&t).expect("json")] {
            assert!(!shown.contains("AgEEbHNhdA") && !shown.contains("5ec4e7"), "{shown}");
        }
    }

    #[test]
    fn path_prefix_is_the_directory() {
        assert_eq!(path_prefix("/a/b"), "/a/");
        assert_eq!(path_prefix("/a/"), "/a/");
        assert_eq!(path_prefix("/paid"), "/");
        assert_eq!(path_prefix(""), "/");
    }
}

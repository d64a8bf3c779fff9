//! The client's SQLite database: tokens, the payment journal (which is also the spend ledger), learned routes
//! and budget limits, in one file shared by every process that uses the same data directory.
//!
//! The directory is created `0700` and the database `0600` (SQLite gives its `-wal` and `-shm` files the
//! database's mode). WAL mode; every write that decides something (reserve a budget, record a payment's
//! outcome) runs in a `BEGIN IMMEDIATE` transaction, which takes SQLite's write lock up front, so two processes
//! never both read "enough budget left" and both spend it. A busy database is waited on (up to
//! [`BUSY_TIMEOUT`]), never reported as an error at once.
//!
//! The connection is used from `spawn_blocking` ([`Store::call`]) so a wait for the write lock never stalls the
//! async runtime.
//!
//! # Schema (version 4)
//! - `payments`: one row per payment hash, written *before* the payment is sent (the write-ahead journal) and
//!   updated with its outcome; `state` is `pending` (journaled, maybe sent), `succeeded`, `failed` (no money
//!   moved) or `unknown` (the wallet could not tell). Budgets count `reserved_msat` of `pending`/`unknown`
//!   rows and `amount_msat + fee_msat` of `succeeded` rows. It keeps the macaroon and invoice of the challenge
//!   so a payment found to have succeeded after a crash still yields its token. A `Payment` charge (scheme
//!   `Payment`, no macaroon) keeps the echoed challenge instead (`challenge`, `challenge_id`), so that its
//!   credential can be rebuilt from the challenge and the preimage; `charge_state` is `unspent` (paid, not yet
//!   accepted by the server: presented again by the next request it fits), `spent`, `refused` or `expired`, and
//!   `receipt_*` hold the server's `Payment-Receipt` (version 2 added these columns).
//! - `tokens`: paid tokens with their preimage, per origin, the services they grant and the path they were
//!   bought at; `state` is `valid` or `refused` (the server did not honour it; kept as proof of payment).
//! - `routes`: which service a path of an origin asked to be paid for (learned from challenges), so the right
//!   token is sent first time.
//! - `limits`: budget limits set with `l402 spend --set-limit`, shared by every process.
//! - `sessions` (version 4): `Payment` sessions ([`crate::sessions`]): the deposit's preimage (the session's
//!   bearer secret, kept like a token's), the echoed challenge, the deposit and top-ups, the balance the server
//!   last said, the refund invoice and what the close refunded. A deposit or top-up is journaled in `payments`
//!   like any payment (scheme `Session`, `session_id` set); a refund checked against the wallet node is written
//!   to the deposit's `refunded_msat`, which the budgets deduct. Version 3 added a metered bundle's balance
//!   (`balance_msat`, `balance_at`, `exhausted_at`).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use crate::error::Error;

/// How long a write waits for another process's write lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The database's file name inside the data directory.
pub const DB_FILE: &str = "l402-client.sqlite3";

const SCHEMA_VERSION: i64 = 4;

/// What version 2 added to a version 1 database (and, after [`SCHEMA`], to a new one): the `Payment` charge.
const MIGRATE_TO_2: &str = "
ALTER TABLE payments ADD COLUMN challenge TEXT;
ALTER TABLE payments ADD COLUMN challenge_id TEXT;
ALTER TABLE payments ADD COLUMN charge_state TEXT CHECK (charge_state IN ('unspent', 'spent', 'refused', 'expired'));
ALTER TABLE payments ADD COLUMN receipt_status TEXT;
ALTER TABLE payments ADD COLUMN receipt_reference TEXT;
ALTER TABLE payments ADD COLUMN receipt_challenge_id TEXT;
ALTER TABLE payments ADD COLUMN receipt_timestamp TEXT;
CREATE INDEX IF NOT EXISTS payments_unspent_charges ON payments (origin, service, charge_state);
";

/// What version 3 added: a metered bundle's balance as the server last said it (`X-L402-Balance-Msat`), and
/// when the server said the bundle was used up.
const MIGRATE_TO_3: &str = "
ALTER TABLE payments ADD COLUMN balance_msat INTEGER;
ALTER TABLE payments ADD COLUMN balance_at INTEGER;
ALTER TABLE payments ADD COLUMN exhausted_at INTEGER;
";

/// What version 4 added: `Payment` sessions (the `sessions` table), the session a payment paid into (a
/// deposit or a top-up: `payments.session_id`), and what a session's refund gave back to that payment's count
/// against the budgets (`payments.refunded_msat`, on the deposit's row).
const MIGRATE_TO_4: &str = "
ALTER TABLE payments ADD COLUMN session_id TEXT;
ALTER TABLE payments ADD COLUMN refunded_msat INTEGER;
CREATE TABLE IF NOT EXISTS sessions (
    session_id           TEXT PRIMARY KEY,
    origin               TEXT NOT NULL,
    service              TEXT NOT NULL,
    url                  TEXT NOT NULL,
    challenge            TEXT NOT NULL,
    preimage             TEXT,
    price_msat           INTEGER NOT NULL,
    deposit_msat         INTEGER NOT NULL,
    topup_msat           INTEGER NOT NULL DEFAULT 0,
    topups               INTEGER NOT NULL DEFAULT 0,
    balance_msat         INTEGER,
    return_invoice       TEXT NOT NULL,
    return_hash          TEXT NOT NULL,
    state                TEXT NOT NULL CHECK (state IN ('opening', 'open', 'closing', 'closed', 'refused')),
    refund_status        TEXT,
    refund_msat          INTEGER,
    refund_received_msat INTEGER,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_origin ON sessions (origin, service, state);
";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS payments (
    payment_hash   TEXT PRIMARY KEY,
    origin         TEXT NOT NULL,
    service        TEXT NOT NULL,
    path           TEXT NOT NULL,
    scheme         TEXT NOT NULL,
    macaroon       TEXT NOT NULL,
    invoice        TEXT NOT NULL,
    amount_msat    INTEGER NOT NULL,
    fee_limit_msat INTEGER NOT NULL,
    reserved_msat  INTEGER NOT NULL,
    state          TEXT NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed', 'unknown')),
    fee_msat       INTEGER,
    preimage       TEXT,
    failure        TEXT,
    token_id       TEXT,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS payments_by_key ON payments (origin, service, state);
CREATE INDEX IF NOT EXISTS payments_by_time ON payments (created_at);
CREATE TABLE IF NOT EXISTS tokens (
    token_id       TEXT PRIMARY KEY,
    origin         TEXT NOT NULL,
    service        TEXT NOT NULL,
    services       TEXT NOT NULL,
    path_prefix    TEXT NOT NULL,
    scheme         TEXT NOT NULL,
    macaroon       TEXT NOT NULL,
    preimage       TEXT NOT NULL,
    payment_hash   TEXT NOT NULL,
    amount_msat    INTEGER NOT NULL,
    fee_msat       INTEGER NOT NULL,
    valid_until    INTEGER,
    state          TEXT NOT NULL CHECK (state IN ('valid', 'refused')),
    refused_at     INTEGER,
    refused_status INTEGER,
    created_at     INTEGER NOT NULL,
    last_used_at   INTEGER
);
CREATE INDEX IF NOT EXISTS tokens_by_origin ON tokens (origin, state);
CREATE TABLE IF NOT EXISTS routes (
    origin     TEXT NOT NULL,
    path       TEXT NOT NULL,
    service    TEXT NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (origin, path)
);
CREATE TABLE IF NOT EXISTS limits (
    name TEXT PRIMARY KEY,
    msat INTEGER NOT NULL
);
";

/// Unix seconds now.
pub(crate) fn now_unix() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// The default data directory: `$L402_DATA_DIR`, else `$XDG_DATA_HOME/l402`, else `~/.local/share/l402`.
pub fn default_data_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("L402_DATA_DIR").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("l402"));
    }
    std::env::var_os("HOME").filter(|d| !d.is_empty()).map(|h| PathBuf::from(h).join(".local/share/l402"))
}

/// Creates `dir` (and parents) with mode 0700 for the parts it creates.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), Error> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| Error::Store(format!("creating {}: {e}", dir.display())))
}

/// Creates (if missing) a file with mode 0600.
pub(crate) fn create_private_file(path: &Path) -> Result<std::fs::File, Error> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| Error::Store(format!("opening {}: {e}", path.display())))
}

/// The client's database. Cheap to clone; every clone shares one connection.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
    dir: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.dir).finish()
    }
}

/// Whether SQLite refused because another connection holds a lock.
fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked))
}

/// Opens the database, sets it up and brings its schema up to date. The outer error is SQLite's (maybe busy);
/// the inner one a database this program must not use.
fn connect(path: &Path) -> Result<Result<Connection, Error>, rusqlite::Error> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    {
        let tx = Transaction::new_unchecked(&conn, TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Ok(Err(Error::Store(format!(
                "{} has schema version {version}, newer than this program's {SCHEMA_VERSION}",
                path.display()
            ))));
        }
        tx.execute_batch(SCHEMA)?;
        if version < 2 {
            tx.execute_batch(MIGRATE_TO_2)?;
        }
        if version < 3 {
            tx.execute_batch(MIGRATE_TO_3)?;
        }
        if version < 4 {
            tx.execute_batch(MIGRATE_TO_4)?;
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
    }
    Ok(Ok(conn))
}

impl Store {
    /// Opens (creating if needed) the store in `dir`. Processes opening one directory at the same moment wait
    /// for each other: switching a new database to WAL can be refused as busy without SQLite's busy handler
    /// being asked, so a busy or locked database is retried here, up to [`BUSY_TIMEOUT`].
    pub fn open(dir: &Path) -> Result<Self, Error> {
        create_private_dir(dir)?;
        let path = dir.join(DB_FILE);
        drop(create_private_file(&path)?);
        let started = std::time::Instant::now();
        let conn = loop {
            match connect(&path) {
                Ok(Ok(conn)) => break conn,
                Ok(Err(refused)) => return Err(refused),
                Err(e) if is_busy(&e) && started.elapsed() < BUSY_TIMEOUT => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e.into()),
            }
        };
        Ok(Self { conn: Arc::new(Mutex::new(conn)), dir: dir.to_owned() })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Runs `f` on the connection on a blocking thread.
    pub(crate) async fn call<R, F>(&self, f: F) -> Result<R, Error>
    where
        R: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<R, Error> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut guard)
        })
        .await
        .map_err(|e| Error::Store(format!("store task: {e}")))?
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction on a blocking thread; commits if it returns `Ok`.
    pub(crate) async fn write<R, F>(&self, f: F) -> Result<R, Error>
    where
        R: Send + 'static,
        F: FnOnce(&Transaction<'_>) -> Result<R, Error> + Send + 'static,
    {
        self.call(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })
        .await
    }

    /// Runs `f` synchronously (for the command line, outside a runtime).
    pub fn blocking<R>(&self, f: impl FnOnce(&mut Connection) -> Result<R, Error>) -> Result<R, Error> {
        let mut guard = self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut guard)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version 1 database (before the `Payment` charge) is brought to version 2 in place: its payments stay,
    /// as L402 entries with no charge columns set, and the ledger reads them.
    #[test]
    fn a_version_1_database_is_migrated_and_keeps_its_payments() {
        let dir = tempfile::tempdir().expect("tmp");
        {
            let conn = Connection::open(dir.path().join(DB_FILE)).expect("open");
            conn.execute_batch(SCHEMA).expect("v1 schema");
            conn.execute(
                "INSERT INTO payments (payment_hash, origin, service, path, scheme, macaroon, invoice, amount_msat, \
                 fee_limit_msat, reserved_msat, state, created_at, updated_at) \
                 VALUES (?1, 'https://a:443', 'svc', '/x', 'L402', 'AgE=', 'lnbcrt1', 1000, 10, 0, 'failed', 1, 1)",
                ["ab".repeat(32)],
            )
            .expect("row");
            conn.pragma_update(None, "user_version", 1).expect("v1");
        }
        let store = Store::open(dir.path()).expect("migrated");
        let (version, ledger) = store
            .blocking(|c| {
                let v: i64 = c.query_row("PRAGMA user_version", [], |r| r.get(0))?;
                Ok((v, crate::journal::ledger(c, None)?))
            })
            .expect("read");
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(ledger.len(), 1);
        assert_eq!((ledger[0].scheme.as_str(), ledger[0].charge_state.as_deref()), ("L402", None));
        drop(store);
        Store::open(dir.path()).expect("opens again without migrating twice");
    }

    /// Many processes (here threads, each with its own connection) opening a new data directory at the same
    /// moment all get the store: none is turned away with "database is locked".
    #[test]
    fn simultaneous_first_opens_all_succeed() {
        for _ in 0..10 {
            let dir = tempfile::tempdir().expect("tmp");
            let data = dir.path().join("l402");
            let versions = l402_regtest::at_once(8, move || {
                Store::open(&data)?.blocking(|c| Ok(c.query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))?))
            });
            for v in versions {
                assert_eq!(v.expect("opened"), SCHEMA_VERSION);
            }
        }
    }
}

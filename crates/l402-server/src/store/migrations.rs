//! The schema, as ordered migrations: each store applies the ones it has not applied yet, in one transaction
//! each, and records them in `l402_migrations`.

/// SQLite migrations, by version.
pub(crate) const SQLITE: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE l402_tokens (
        id_hash      BLOB PRIMARY KEY,
        token_id     BLOB NOT NULL UNIQUE,
        payment_hash BLOB NOT NULL,
        service      TEXT NOT NULL,
        price_msat   INTEGER NOT NULL,
        root_key     BLOB,
        created_at   INTEGER NOT NULL,
        expires_at   INTEGER,
        paid_at      INTEGER,
        paid_msat    INTEGER,
        revoked_at   INTEGER
    );
    CREATE INDEX l402_tokens_payment_hash ON l402_tokens (payment_hash);
    CREATE INDEX l402_tokens_created_at ON l402_tokens (created_at);",
    ),
    (2, SQLITE_REVOCATIONS),
    (3, SQLITE_CHARGES),
    (4, SQLITE_SERVICES),
    (5, SQLITE_BALANCES),
    (6, SQLITE_USAGE),
    (7, SQLITE_SESSIONS),
];

/// Version 2: revocations by sequence, so that every instance can hold the set in memory and follow it (a
/// stateless token has no root key to delete). Tokens revoked before are carried over.
const SQLITE_REVOCATIONS: &str = "CREATE TABLE l402_revocations (
        seq        INTEGER PRIMARY KEY AUTOINCREMENT,
        token_id   BLOB NOT NULL UNIQUE,
        revoked_at INTEGER NOT NULL
    );
    INSERT INTO l402_revocations (token_id, revoked_at)
        SELECT token_id, revoked_at FROM l402_tokens WHERE revoked_at IS NOT NULL ORDER BY revoked_at, token_id;";

/// PostgreSQL migrations, by version.
pub(crate) const POSTGRES: &[(i64, &str)] = &[
    (
        1,
        "CREATE TABLE l402_tokens (
        id_hash      BYTEA PRIMARY KEY,
        token_id     BYTEA NOT NULL UNIQUE,
        payment_hash BYTEA NOT NULL,
        service      TEXT NOT NULL,
        price_msat   BIGINT NOT NULL,
        root_key     BYTEA,
        created_at   BIGINT NOT NULL,
        expires_at   BIGINT,
        paid_at      BIGINT,
        paid_msat    BIGINT,
        revoked_at   BIGINT
    );
    CREATE INDEX l402_tokens_payment_hash ON l402_tokens (payment_hash);
    CREATE INDEX l402_tokens_created_at ON l402_tokens (created_at);",
    ),
    (2, POSTGRES_REVOCATIONS),
    (3, POSTGRES_CHARGES),
    (4, POSTGRES_SERVICES),
    (5, POSTGRES_BALANCES),
    (6, POSTGRES_USAGE),
    (7, POSTGRES_SESSIONS),
];

/// Version 2 (see [`SQLITE_REVOCATIONS`]). Revocations are inserted under an advisory lock held until commit,
/// so sequence order is commit order and a reader following `seq > last` misses none.
const POSTGRES_REVOCATIONS: &str = "CREATE TABLE l402_revocations (
        seq        BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        token_id   BYTEA NOT NULL UNIQUE,
        revoked_at BIGINT NOT NULL
    );
    INSERT INTO l402_revocations (token_id, revoked_at)
        SELECT token_id, revoked_at FROM l402_tokens WHERE revoked_at IS NOT NULL ORDER BY revoked_at, token_id;";

/// Version 3: `Payment` charges, one row per payment hash. The primary key is what makes a charge credential
/// single-use: the first request to insert its hash is served, every later one (on any instance) is refused.
/// The rows are kept: they are the revenue of the `Payment` scheme.
const SQLITE_CHARGES: &str = "CREATE TABLE l402_charges (
        payment_hash BLOB PRIMARY KEY,
        challenge_id TEXT NOT NULL,
        service      TEXT NOT NULL,
        amount_msat  INTEGER NOT NULL,
        consumed_at  INTEGER NOT NULL,
        expires_at   INTEGER NOT NULL
    );
    CREATE INDEX l402_charges_consumed_at ON l402_charges (consumed_at);";

/// Version 3 (see [`SQLITE_CHARGES`]).
const POSTGRES_CHARGES: &str = "CREATE TABLE l402_charges (
        payment_hash BYTEA PRIMARY KEY,
        challenge_id TEXT NOT NULL,
        service      TEXT NOT NULL,
        amount_msat  BIGINT NOT NULL,
        consumed_at  BIGINT NOT NULL,
        expires_at   BIGINT NOT NULL
    );
    CREATE INDEX l402_charges_consumed_at ON l402_charges (consumed_at);";

/// Version 4: services defined at runtime (the proxy's admin API), one row per name: its configuration as
/// JSON, or NULL for a service deleted (a tombstone, so that a deleted service of the config file stays
/// deleted). `version` is taken from one counter over the table at each write (under a lock), so every
/// instance can tell by `MAX(version)` whether the set changed; `created` (the version of the first write)
/// keeps the order services were added in.
const SQLITE_SERVICES: &str = "CREATE TABLE l402_services (
        name       TEXT PRIMARY KEY,
        config     TEXT,
        created    INTEGER NOT NULL,
        version    INTEGER NOT NULL UNIQUE,
        updated_at INTEGER NOT NULL
    );";

/// Version 4 (see [`SQLITE_SERVICES`]).
const POSTGRES_SERVICES: &str = "CREATE TABLE l402_services (
        name       TEXT PRIMARY KEY,
        config     TEXT,
        created    BIGINT NOT NULL,
        version    BIGINT NOT NULL UNIQUE,
        updated_at BIGINT NOT NULL
    );";

/// Version 5: balances of metered services, one row per payment (an L402 token by its id, or a `Payment`
/// charge by its payment hash). `balance_msat` is what is left; `reserved_msat` the estimates of requests in
/// flight; `debited_msat` what requests were charged in total. A reservation is taken only while
/// `balance_msat - reserved_msat` covers it (one conditional UPDATE), so concurrent requests never overdraw.
const SQLITE_BALANCES: &str = "CREATE TABLE l402_balances (
        kind          TEXT NOT NULL,
        id            BLOB NOT NULL,
        service       TEXT NOT NULL,
        bundle_msat   INTEGER NOT NULL,
        balance_msat  INTEGER NOT NULL CHECK (balance_msat >= 0),
        reserved_msat INTEGER NOT NULL DEFAULT 0 CHECK (reserved_msat >= 0),
        debited_msat  INTEGER NOT NULL DEFAULT 0,
        requests      INTEGER NOT NULL DEFAULT 0,
        opened_at     INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL,
        PRIMARY KEY (kind, id)
    );";

/// Version 5 (see [`SQLITE_BALANCES`]).
const POSTGRES_BALANCES: &str = "CREATE TABLE l402_balances (
        kind          TEXT NOT NULL,
        id            BYTEA NOT NULL,
        service       TEXT NOT NULL,
        bundle_msat   BIGINT NOT NULL,
        balance_msat  BIGINT NOT NULL CHECK (balance_msat >= 0),
        reserved_msat BIGINT NOT NULL DEFAULT 0 CHECK (reserved_msat >= 0),
        debited_msat  BIGINT NOT NULL DEFAULT 0,
        requests      BIGINT NOT NULL DEFAULT 0,
        opened_at     BIGINT NOT NULL,
        updated_at    BIGINT NOT NULL,
        PRIMARY KEY (kind, id)
    );";

/// Version 6: what the proxy's freebies and rate limits have used, shared by the instances on one store: a
/// total per limit (`scope`, e.g. `freebies/<service>`) and key (a client prefix or a token id). `version`
/// is the write that last changed a row (all rows of one write share it), so an instance follows the others
/// by reading the rows above the version it has seen.
const SQLITE_USAGE: &str = "CREATE TABLE l402_usage (
        scope      TEXT NOT NULL,
        key        BLOB NOT NULL,
        used       INTEGER NOT NULL,
        version    INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (scope, key)
    );
    CREATE INDEX l402_usage_version ON l402_usage (version);
    CREATE INDEX l402_usage_updated_at ON l402_usage (updated_at);";

/// Version 6 (see [`SQLITE_USAGE`]). Writes take an advisory lock held until commit, so version order is
/// commit order and a reader following `version > last` misses none.
const POSTGRES_USAGE: &str = "CREATE TABLE l402_usage (
        scope      TEXT NOT NULL,
        key        BYTEA NOT NULL,
        used       BIGINT NOT NULL,
        version    BIGINT NOT NULL,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (scope, key)
    );
    CREATE INDEX l402_usage_version ON l402_usage (version);
    CREATE INDEX l402_usage_updated_at ON l402_usage (updated_at);";

/// Version 7: sessions of the `Payment` scheme's `session` intent ([`crate::session`]). A session is keyed by
/// its deposit's payment hash; every payment credited to one (the deposit and each top-up) is a row of
/// `l402_session_credits`, keyed by its payment hash, so that a payment is credited once, to one session.
/// `state`: `open`, `closing` (its balance moved to `refund_msat`, the refund under way), `closed` or
/// `refund_failed` (the refund did not go through: `refund_msat` is still owed, a close retries it).
const SQLITE_SESSIONS: &str = "CREATE TABLE l402_sessions (
        session_id     BLOB PRIMARY KEY,
        service        TEXT NOT NULL,
        deposit_msat   INTEGER NOT NULL,
        credited_msat  INTEGER NOT NULL,
        balance_msat   INTEGER NOT NULL CHECK (balance_msat >= 0),
        spent_msat     INTEGER NOT NULL DEFAULT 0,
        requests       INTEGER NOT NULL DEFAULT 0,
        return_invoice TEXT NOT NULL,
        state          TEXT NOT NULL,
        refund_msat    INTEGER NOT NULL DEFAULT 0,
        refunded_msat  INTEGER NOT NULL DEFAULT 0,
        opened_at      INTEGER NOT NULL,
        updated_at     INTEGER NOT NULL
    );
    CREATE TABLE l402_session_credits (
        payment_hash BLOB PRIMARY KEY,
        session_id   BLOB NOT NULL,
        amount_msat  INTEGER NOT NULL,
        credited_at  INTEGER NOT NULL
    );";

/// Version 7 (see [`SQLITE_SESSIONS`]).
const POSTGRES_SESSIONS: &str = "CREATE TABLE l402_sessions (
        session_id     BYTEA PRIMARY KEY,
        service        TEXT NOT NULL,
        deposit_msat   BIGINT NOT NULL,
        credited_msat  BIGINT NOT NULL,
        balance_msat   BIGINT NOT NULL CHECK (balance_msat >= 0),
        spent_msat     BIGINT NOT NULL DEFAULT 0,
        requests       BIGINT NOT NULL DEFAULT 0,
        return_invoice TEXT NOT NULL,
        state          TEXT NOT NULL,
        refund_msat    BIGINT NOT NULL DEFAULT 0,
        refunded_msat  BIGINT NOT NULL DEFAULT 0,
        opened_at      BIGINT NOT NULL,
        updated_at     BIGINT NOT NULL
    );
    CREATE TABLE l402_session_credits (
        payment_hash BYTEA PRIMARY KEY,
        session_id   BYTEA NOT NULL,
        amount_msat  BIGINT NOT NULL,
        credited_at  BIGINT NOT NULL
    );";

//! The schema, as ordered migrations: each store applies the ones it has not applied yet, in one transaction
//! each, and records them in `l402_migrations`.

/// SQLite migrations, by version.
pub(crate) const SQLITE: &[(i64, &str)] = &[(
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
)];

/// PostgreSQL migrations, by version.
pub(crate) const POSTGRES: &[(i64, &str)] = &[(
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
)];

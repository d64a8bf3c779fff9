//! Where a server keeps its tokens' root keys: one record per minted token, keyed by sha256 of the token
//! identifier (as Aperture keys its secrets). Deleting a root key revokes the token.
//!
//! Two implementations share the [`TokenStore`] trait and the same schema, kept by ordered migrations:
//! [`SqliteStore`] (the default: one file, WAL, created on first start) and [`PostgresStore`] (for several
//! proxy instances sharing tokens).

mod migrations;
mod postgres;
mod sqlite;

use async_trait::async_trait;
use l402_proto::{Msat, PaymentHash, RootKey, TokenId};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
use thiserror::Error;

/// A token to record at mint time.
#[derive(Clone, Debug)]
pub struct NewToken {
    /// sha256 of the macaroon identifier: the lookup key.
    pub id_hash: [u8; 32],
    /// The token id.
    pub token_id: TokenId,
    /// The invoice's payment hash.
    pub payment_hash: PaymentHash,
    /// The service it was minted for.
    pub service: String,
    /// Its price.
    pub price: Msat,
    /// The root key.
    pub root_key: RootKey,
    /// Mint time, Unix seconds.
    pub created_at: u64,
    /// Expiry, Unix seconds, if it has one.
    pub expires_at: Option<u64>,
}

/// What a lookup by identifier hash finds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyLookup {
    /// The token exists and is not revoked.
    Active {
        /// Its root key.
        root_key: RootKey,
        /// Whether its payment has been recorded.
        paid: bool,
    },
    /// The token existed and was revoked (its root key is gone).
    Revoked,
    /// No token with this identifier was minted here.
    Unknown,
}

/// A token as the admin API lists it (no secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenInfo {
    /// The token id.
    pub token_id: TokenId,
    /// The payment hash.
    pub payment_hash: PaymentHash,
    /// The service.
    pub service: String,
    /// The price.
    pub price: Msat,
    /// Mint time.
    pub created_at: u64,
    /// Expiry.
    pub expires_at: Option<u64>,
    /// When its payment was recorded.
    pub paid_at: Option<u64>,
    /// When it was revoked.
    pub revoked_at: Option<u64>,
}

/// Revenue of one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revenue {
    /// The service.
    pub service: String,
    /// Tokens paid for.
    pub tokens_paid: u64,
    /// The amount received.
    pub amount: Msat,
}

/// A store failure. The layer answers 503 and lets no request through (fail closed).
#[derive(Debug, Error)]
#[error("token store: {0}")]
pub struct StoreError(pub String);

impl StoreError {
    pub(crate) fn from_display(e: impl std::fmt::Display) -> Self {
        Self(e.to_string())
    }
}

/// A store of tokens and their root keys.
#[async_trait]
pub trait TokenStore: Send + Sync + 'static {
    /// Records a freshly minted token.
    async fn insert(&self, token: &NewToken) -> Result<(), StoreError>;
    /// Finds a token's root key by identifier hash.
    async fn lookup(&self, id_hash: &[u8; 32]) -> Result<KeyLookup, StoreError>;
    /// Revokes a token: its root key is deleted. Returns whether an active token was revoked.
    async fn revoke(&self, token_id: &TokenId) -> Result<bool, StoreError>;
    /// Records that a token's invoice was paid (idempotent), for `amount` (default: its price). Returns whether
    /// this call recorded it.
    async fn mark_paid(&self, payment_hash: &PaymentHash, amount: Option<Msat>, at: u64) -> Result<bool, StoreError>;
    /// The most recent tokens, newest first.
    async fn list(&self, limit: u32) -> Result<Vec<TokenInfo>, StoreError>;
    /// Revenue per service, from tokens whose payment was recorded.
    async fn revenue(&self) -> Result<Vec<Revenue>, StoreError>;
}

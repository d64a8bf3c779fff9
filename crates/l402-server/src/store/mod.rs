//! Where a server keeps its tokens: one record per token, keyed by sha256 of the token identifier (as
//! Aperture keys its secrets), and the list of revocations.
//!
//! A token minted the old way has its root key here from mint time on; deleting it revokes the token. A
//! stateless token (root key derived from the paywall's master key, see [`crate::secret`]) is recorded, with
//! no root key, only when it is first paid or used ([`TokenStore::record`]), so that unpaid challenges cost
//! the store nothing. Revocations of either kind are kept by sequence ([`TokenStore::revocations_since`]) so
//! that every instance holds them in memory and follows new ones.
//!
//! Two implementations share the [`TokenStore`] trait and the same schema, kept by ordered migrations:
//! [`SqliteStore`] (the default: one file, WAL, created on first start) and [`PostgresStore`] (for several
//! proxy instances sharing tokens).
//!
//! The store also keeps the services defined at runtime through the proxy's admin API
//! ([`TokenStore::put_service`]), so that they survive a restart and reach every instance sharing it.

mod migrations;
mod pg_tls;
mod postgres;
mod postgres_sessions;
mod sqlite;
mod sqlite_sessions;

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

/// A stateless token to record when it is first paid or used (it has no root key to keep).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsedToken {
    /// sha256 of the macaroon identifier.
    pub id_hash: [u8; 32],
    /// The token id.
    pub token_id: TokenId,
    /// The payment hash.
    pub payment_hash: PaymentHash,
    /// The service it was minted for.
    pub service: String,
    /// Its price.
    pub price: Msat,
    /// Mint time, Unix seconds.
    pub created_at: u64,
    /// Expiry, Unix seconds, if it has one.
    pub expires_at: Option<u64>,
    /// When its payment was seen (the settlement, or the first request that proved it with the preimage).
    pub paid_at: u64,
    /// The amount received (the price when only the preimage was seen).
    pub paid: Msat,
}

/// Uses of a shared limit to add: `delta` more uses of `key` under `scope` (see [`TokenStore::add_usage`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageAdd {
    /// The limit, e.g. `freebies/<service>`.
    pub scope: String,
    /// What it counts by (a client prefix or a token id, as bytes).
    pub key: Vec<u8>,
    /// Uses to add.
    pub delta: u64,
}

/// A shared limit's stored total (see [`TokenStore::usage_since`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Usage {
    /// The limit.
    pub scope: String,
    /// The key.
    pub key: Vec<u8>,
    /// Every use recorded, by every instance.
    pub used: u64,
    /// The write that last changed it.
    pub version: u64,
}

/// A `Payment` charge credential, recorded as spent when it is first accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpentCharge {
    /// The payment hash of the charge's invoice: what makes it single-use.
    pub payment_hash: PaymentHash,
    /// The challenge id (the HMAC the server issued; safe to log).
    pub challenge_id: String,
    /// The service it paid for.
    pub service: String,
    /// The amount of the charge.
    pub amount: Msat,
    /// When it was spent, Unix seconds.
    pub consumed_at: u64,
    /// When its challenge expired (or expires), Unix seconds.
    pub expires_at: u64,
}

/// A revocation, in the order they were made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Revocation {
    /// Its sequence number: increasing, in commit order.
    pub seq: u64,
    /// The token revoked.
    pub token_id: TokenId,
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

/// Which tokens [`TokenStore::list`] returns: newest first, at most `limit`, only those after `after` (the
/// last token of the previous page) and, if set, only those of `service`. Pages are keyed by
/// (mint time, token id), so tokens minted while paging neither repeat nor shift a page.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenQuery {
    /// The most tokens to return.
    pub limit: u32,
    /// Continue after this token.
    pub after: Option<TokenCursor>,
    /// Only this service's tokens.
    pub service: Option<String>,
}

impl TokenQuery {
    /// The newest `limit` tokens.
    pub fn newest(limit: u32) -> Self {
        Self { limit, ..Self::default() }
    }
}

/// Where a page of [`TokenStore::list`] ended: the last token's mint time and id. Written `<created_at>.<hex id>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenCursor {
    /// The token's mint time.
    pub created_at: u64,
    /// The token's id.
    pub token_id: TokenId,
}

impl TokenCursor {
    /// The cursor after `token`.
    pub fn after(token: &TokenInfo) -> Self {
        Self { created_at: token.created_at, token_id: token.token_id }
    }

    /// Reads `<created_at>.<64 hex digits>`; `None` if it is not that.
    pub fn parse(s: &str) -> Option<Self> {
        let (at, id) = s.split_once('.')?;
        if at.is_empty() || !at.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Self { created_at: at.parse().ok()?, token_id: TokenId::from_hex(id).ok()? })
    }
}

impl std::fmt::Display for TokenCursor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.created_at, self.token_id.to_hex())
    }
}

/// Revenue of one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revenue {
    /// The service.
    pub service: String,
    /// Tokens paid for.
    pub tokens_paid: u64,
    /// `Payment` charges spent (one request each).
    pub charges_paid: u64,
    /// The amount received (tokens and charges).
    pub amount: Msat,
}

/// A service defined at runtime, as the store keeps it (see [`TokenStore::put_service`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredService {
    /// The service name.
    pub name: String,
    /// Its configuration (JSON, the keys of a `[[service]]` table), or `None`: deleted.
    pub config: Option<String>,
    /// The write's version: increasing over the whole table, in commit order.
    pub version: u64,
}

/// What a metered balance belongs to: the payment that bought its bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BalanceKey {
    /// An L402 token, by token id.
    Token(TokenId),
    /// A `Payment` charge, by payment hash.
    Charge(PaymentHash),
}

impl BalanceKey {
    /// The `kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            BalanceKey::Token(_) => "token",
            BalanceKey::Charge(_) => "charge",
        }
    }

    /// The `id` column.
    pub fn id(&self) -> &[u8; 32] {
        match self {
            BalanceKey::Token(t) => &t.0,
            BalanceKey::Charge(h) => &h.0,
        }
    }
}

/// What [`TokenStore::reserve`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reserve {
    /// Reserved; `available` was the balance less the other reservations, before this one.
    Reserved {
        /// Balance minus reservations in flight, before this reservation.
        available: Msat,
    },
    /// Not enough left: nothing reserved.
    Insufficient {
        /// Balance minus reservations in flight.
        available: Msat,
    },
    /// No balance is open for this key ([`TokenStore::open_balance`] first).
    Missing,
}

/// A metered balance as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Balance {
    /// The service.
    pub service: String,
    /// What the bundle was worth.
    pub bundle: Msat,
    /// What is left (reservations not deducted).
    pub balance: Msat,
    /// Reservations of requests in flight.
    pub reserved: Msat,
    /// Debited in total.
    pub debited: Msat,
    /// Requests settled.
    pub requests: u64,
}

/// A session to open ([`TokenStore::open_session`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSession {
    /// The session id: the deposit's payment hash.
    pub id: PaymentHash,
    /// The service it pays for.
    pub service: String,
    /// The deposit (the opening balance).
    pub deposit: Msat,
    /// The amountless invoice the unspent balance is refunded to.
    pub return_invoice: String,
    /// Unix seconds.
    pub at: u64,
}

/// Where a session stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Open: requests draw on its balance.
    Open,
    /// Closed by its client; the refund is under way (its balance moved to `refund`).
    Closing,
    /// Closed and refunded (or there was nothing to refund).
    Closed,
    /// Closed, but the refund did not go through: `refund` is still owed, and a close tries again.
    RefundFailed,
}

impl SessionState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closing => "closing",
            Self::Closed => "closed",
            Self::RefundFailed => "refund_failed",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "open" => Self::Open,
            "closing" => Self::Closing,
            "closed" => Self::Closed,
            "refund_failed" => Self::RefundFailed,
            _ => return None,
        })
    }
}

/// A session as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionInfo {
    /// Its id (the deposit's payment hash).
    pub id: PaymentHash,
    /// The service.
    pub service: String,
    /// The deposit.
    pub deposit: Msat,
    /// Everything credited: the deposit and every top-up.
    pub credited: Msat,
    /// What is left to spend.
    pub balance: Msat,
    /// Spent by requests.
    pub spent: Msat,
    /// Requests served.
    pub requests: u64,
    /// The refund's invoice.
    pub return_invoice: String,
    /// Where it stands.
    pub state: SessionState,
    /// Owed back once closed (while `Closing` or `RefundFailed`), or what the refund was (`Closed`).
    pub refund: Msat,
    /// Refunded (paid back over Lightning).
    pub refunded: Msat,
    /// Unix seconds.
    pub opened_at: u64,
    /// Unix seconds of the last change.
    pub updated_at: u64,
}

/// What [`TokenStore::open_session`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionOpen {
    /// Opened now, with the deposit as its balance.
    Opened,
    /// It was open already (or closed since): nothing changed.
    Exists,
    /// The deposit's payment was credited to another session (as a top-up): nothing changed.
    Foreign,
}

/// What [`TokenStore::debit_session`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionDebit {
    /// Debited; the balance left.
    Debited(Msat),
    /// The balance (given) does not cover it: nothing debited.
    Insufficient(Msat),
    /// No such session, or it is not open.
    NotOpen(Option<SessionState>),
}

/// What [`TokenStore::credit_session`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionCredit {
    /// Credited; the new balance.
    Applied(Msat),
    /// This payment was credited to this session before: nothing more (the balance is given).
    Replayed(Msat),
    /// This payment was credited to another session: nothing.
    Foreign,
    /// No such session, or it is not open: nothing.
    NotOpen(Option<SessionState>),
}

/// What [`TokenStore::begin_close`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionClose {
    /// The session is now `Closing`: refund `refund` to `return_invoice`, then [`TokenStore::finish_close`].
    Refund {
        /// What is owed.
        refund: Msat,
        /// Where to pay it.
        return_invoice: String,
    },
    /// It cannot be closed now (unknown, closed, or a refund under way): its state, if it exists.
    NotClosable(Option<SessionState>),
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
    /// Revokes a token recorded here: its root key is deleted and the revocation listed. Returns whether an
    /// active token was revoked.
    async fn revoke(&self, token_id: &TokenId) -> Result<bool, StoreError>;
    /// Lists the revocation of a token id whether or not it is recorded here (a stateless token the paywall
    /// vouches for), and marks its record revoked if there is one. Returns whether it was not revoked before.
    async fn revoke_id(&self, token_id: &TokenId) -> Result<bool, StoreError>;
    /// Revocations with a sequence number above `after`, in order, at most `limit`.
    async fn revocations_since(&self, after: u64, limit: u32) -> Result<Vec<Revocation>, StoreError>;
    /// Records stateless tokens on their first payment or use, each unless already recorded (then it is left
    /// as it is). Returns, for each, whether this call recorded it.
    async fn record(&self, tokens: &[UsedToken]) -> Result<Vec<bool>, StoreError>;
    /// Records that a token's invoice was paid (idempotent), for `amount` (default: its price). Returns whether
    /// this call recorded it.
    async fn mark_paid(&self, payment_hash: &PaymentHash, amount: Option<Msat>, at: u64) -> Result<bool, StoreError>;
    /// Tokens newest first (by mint time, then token id), one page as `query` says.
    async fn list(&self, query: &TokenQuery) -> Result<Vec<TokenInfo>, StoreError>;
    /// Revenue per service, from tokens whose payment was recorded and from spent `Payment` charges.
    async fn revenue(&self) -> Result<Vec<Revenue>, StoreError>;
    /// Records a `Payment` charge as spent, atomically: `true` if this call recorded it, `false` if its payment
    /// hash was spent before (by this instance or any other sharing the store).
    async fn spend_charge(&self, charge: &SpentCharge) -> Result<bool, StoreError>;
    /// Opens a metered balance worth `bundle` for `key` unless one is open (then it is left as it is, spent or
    /// not). Returns whether this call opened it.
    async fn open_balance(&self, key: &BalanceKey, service: &str, bundle: Msat, at: u64) -> Result<bool, StoreError> {
        let _ = (key, service, bundle, at);
        Err(StoreError("this store keeps no metered balances".into()))
    }
    /// Reserves `amount` from `key`'s balance, atomically, only if the balance less the reservations in flight
    /// covers it (never overdrawn, whatever the concurrency, on every instance sharing the store).
    async fn reserve(&self, key: &BalanceKey, amount: Msat) -> Result<Reserve, StoreError> {
        let _ = (key, amount);
        Err(StoreError("this store keeps no metered balances".into()))
    }
    /// Releases a reservation of `reserved` and debits `debit` (at most what is left: a balance never goes
    /// below zero). Returns the balance left.
    async fn settle(&self, key: &BalanceKey, reserved: Msat, debit: Msat, at: u64) -> Result<Msat, StoreError> {
        let _ = (key, reserved, debit, at);
        Err(StoreError("this store keeps no metered balances".into()))
    }
    /// The balance of `key`, if one is open.
    async fn balance(&self, key: &BalanceKey) -> Result<Option<Balance>, StoreError> {
        let _ = key;
        Err(StoreError("this store keeps no metered balances".into()))
    }
    /// Adds uses to shared limits in one write (keys unique within `adds`) and returns each one's new total,
    /// in order. The write gets a version above every earlier one, in commit order.
    async fn add_usage(&self, adds: &[UsageAdd], at: u64) -> Result<Vec<u64>, StoreError> {
        let _ = (adds, at);
        Err(StoreError("this store keeps no shared limits".into()))
    }
    /// The shared-limit totals written after version `after`, by version.
    async fn usage_since(&self, after: u64) -> Result<Vec<Usage>, StoreError> {
        let _ = after;
        Err(StoreError("this store keeps no shared limits".into()))
    }
    /// The version of the last shared-limit write (0: none).
    async fn usage_version(&self) -> Result<u64, StoreError> {
        Err(StoreError("this store keeps no shared limits".into()))
    }
    /// Forgets the shared-limit totals not written since `before` (Unix seconds). Returns how many.
    async fn prune_usage(&self, before: u64) -> Result<u64, StoreError> {
        let _ = before;
        Err(StoreError("this store keeps no shared limits".into()))
    }
    /// Opens a session, atomically with the credit of its deposit's payment (a payment is credited once, to
    /// one session).
    async fn open_session(&self, session: &NewSession) -> Result<SessionOpen, StoreError> {
        let _ = session;
        Err(no_sessions())
    }
    /// A session, if it exists.
    async fn session(&self, id: &PaymentHash) -> Result<Option<SessionInfo>, StoreError> {
        let _ = id;
        Err(no_sessions())
    }
    /// Debits `amount` from an open session of `service`, atomically, only if its balance covers it (never below zero,
    /// whatever the concurrency, on every instance sharing the store).
    async fn debit_session(
        &self,
        id: &PaymentHash,
        service: &str,
        amount: Msat,
        at: u64,
    ) -> Result<SessionDebit, StoreError> {
        let _ = (id, service, amount, at);
        Err(no_sessions())
    }
    /// Gives back a debit whose request was never served (the upstream could not be reached).
    async fn undo_session_debit(&self, id: &PaymentHash, amount: Msat, at: u64) -> Result<(), StoreError> {
        let _ = (id, amount, at);
        Err(no_sessions())
    }
    /// Credits a top-up payment to an open session, once per payment hash (atomically).
    async fn credit_session(
        &self,
        id: &PaymentHash,
        payment_hash: &PaymentHash,
        amount: Msat,
        at: u64,
    ) -> Result<SessionCredit, StoreError> {
        let _ = (id, payment_hash, amount, at);
        Err(no_sessions())
    }
    /// Starts closing a session: from `Open` (its balance becomes the refund owed, the balance 0), from
    /// `RefundFailed` (the refund is tried again; `return_invoice` may replace the stored one only then), or
    /// from a `Closing` not updated since `stale_before` (a refund interrupted; tried again on the same
    /// invoice, which the node pays at most once). Atomic: of racing closes, one gets the refund.
    async fn begin_close(
        &self,
        id: &PaymentHash,
        return_invoice: Option<&str>,
        at: u64,
        stale_before: u64,
    ) -> Result<SessionClose, StoreError> {
        let _ = (id, return_invoice, at, stale_before);
        Err(no_sessions())
    }
    /// Ends a close: `refunded` paid back (`Closed`), or the refund failed for certain (`RefundFailed`, the
    /// amount still owed). A refund whose outcome is unknown stays `Closing`.
    async fn finish_close(&self, id: &PaymentHash, refunded: Option<Msat>, at: u64) -> Result<(), StoreError> {
        let _ = (id, refunded, at);
        Err(no_sessions())
    }
    /// Sessions, newest first, at most `limit`.
    async fn sessions(&self, limit: u32) -> Result<Vec<SessionInfo>, StoreError> {
        let _ = limit;
        Err(no_sessions())
    }
    /// Writes a service defined at runtime: its configuration (JSON), or `None` to record it deleted. Returns
    /// the write's version, above every version before it.
    async fn put_service(&self, name: &str, config: Option<&str>) -> Result<u64, StoreError>;
    /// Every service written by [`TokenStore::put_service`] (deleted ones included), in the order they were
    /// first written.
    async fn services(&self) -> Result<Vec<StoredService>, StoreError>;
    /// The version of the last service write (0: none): a cheap way to know whether the services changed.
    async fn services_version(&self) -> Result<u64, StoreError>;
}

fn no_sessions() -> StoreError {
    StoreError("this store keeps no sessions".into())
}

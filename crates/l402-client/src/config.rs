//! What a [`crate::Client`] may pay and how it behaves, with the defaults as named constants.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use l402_lightning::PaymentEvent;
use l402_proto::lightning_invoice::Currency;
use l402_proto::{Msat, PaymentHash};

use crate::net::Destinations;
use crate::retry::RetryPolicy;

/// Default [`ClientConfig::max_price`]: 1,000 sat.
pub const DEFAULT_MAX_PRICE: Msat = Msat::from_sat(1_000);
/// Default [`ClientConfig::max_fee`]: 50 sat.
pub const DEFAULT_MAX_FEE: Msat = Msat::from_sat(50);
/// The first attempt's fee limit is this share of the amount (parts per million)...
pub const DEFAULT_FEE_PPM: u64 = 10_000;
/// ...but at least this much (a tight limit makes every payment fail with "no route").
pub const DEFAULT_MIN_FEE: Msat = Msat::from_sat(10);
/// Default [`ClientConfig::expiry_margin`]: an invoice expiring within 30 s is not paid.
pub const DEFAULT_EXPIRY_MARGIN: Duration = Duration::from_secs(30);
/// Default [`ClientConfig::payment_timeout`].
pub const DEFAULT_PAYMENT_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`ClientConfig::lease_timeout`].
pub const DEFAULT_LEASE_TIMEOUT: Duration = Duration::from_secs(300);
/// Default [`ClientConfig::recovery_timeout`].
pub const DEFAULT_RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`ClientConfig::read_timeout`]: a server that sends nothing for 60 s is given up on.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Default [`ClientConfig::max_redirects`].
pub const DEFAULT_MAX_REDIRECTS: usize = 10;
/// The longest payment, recovery, lease or read timeout a client accepts: one day. A longer one is refused by
/// [`crate::Client::new`] (a deadline that far ahead would overflow the clock's arithmetic).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(86_400);

/// Which offer to pay when a `402` offers several: an L402 token, a `Payment` charge, a `Payment` session
/// (either way, one offer of a `402` is paid, never two; when only one is offered, that one is used).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum PreferScheme {
    /// The L402 token (the default): it is reusable, so one payment serves every request until it expires.
    #[default]
    L402,
    /// The `Payment` scheme's Lightning charge: one payment buys exactly one request.
    Payment,
    /// The `Payment` scheme's Lightning session: a deposit opens a balance that requests draw down (topped up
    /// when it runs out); what is left is refunded when the session is closed. An open session of the origin
    /// and service is reused.
    Session,
}

impl PreferScheme {
    /// The name used on the command line and in the Python package: `l402`, `payment` or `session`.
    pub fn name(self) -> &'static str {
        match self {
            PreferScheme::L402 => "l402",
            PreferScheme::Payment => "payment",
            PreferScheme::Session => "session",
        }
    }

    /// Parses [`PreferScheme::name`] (case-insensitively).
    pub fn from_name(name: &str) -> Option<Self> {
        [PreferScheme::L402, PreferScheme::Payment, PreferScheme::Session]
            .into_iter()
            .find(|p| p.name().eq_ignore_ascii_case(name.trim()))
    }
}

/// A named point of the payment procedure, for crash tests (see [`ClientConfig::checkpoint`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Checkpoint {
    /// The payment is journaled and its budget reserved; the wallet has not been asked yet.
    JournalWritten,
    /// The wallet reports the payment in flight.
    PaymentInFlight,
    /// The wallet reported success; the outcome and token are not stored yet.
    PaymentSucceeded,
}

impl Checkpoint {
    /// The name used by `L402_TEST_PAUSE_AT`.
    pub fn name(self) -> &'static str {
        match self {
            Checkpoint::JournalWritten => "journal_written",
            Checkpoint::PaymentInFlight => "payment_in_flight",
            Checkpoint::PaymentSucceeded => "payment_succeeded",
        }
    }
}

/// The test hook every front end (`l402 fetch`, the Python package) installs as [`ClientConfig::checkpoint`]:
/// with `L402_TEST_PAUSE_AT=journal_written|payment_in_flight|payment_succeeded` set, the process prints
/// `l402: test pause at <name>` on stderr at that point and stops there (crash tests SIGKILL it). `None` when
/// the variable is unset.
pub fn pause_hook_from_env() -> Option<CheckpointFn> {
    let at = std::env::var("L402_TEST_PAUSE_AT").ok().filter(|s| !s.is_empty())?;
    Some(Arc::new(move |c: Checkpoint| {
        if c.name() == at {
            eprintln!("l402: test pause at {}", c.name());
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }))
}

/// What the client reports while it works (for a progress line; never a secret).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Progress {
    /// Waiting for another request or process paying the same service.
    WaitingForLease {
        /// The origin.
        origin: String,
        /// The service.
        service: String,
    },
    /// A payment is about to be sent.
    Paying {
        /// The payment hash.
        payment_hash: PaymentHash,
        /// The invoice amount.
        amount: Msat,
        /// The fee limit of this attempt.
        fee_limit: Msat,
        /// The origin paid.
        origin: String,
    },
    /// The wallet's report on the payment.
    Payment {
        /// The payment hash.
        payment_hash: PaymentHash,
        /// The event.
        event: PaymentEvent,
    },
    /// A journaled payment is being looked up after an interruption.
    Recovering {
        /// The payment hash.
        payment_hash: PaymentHash,
    },
}

/// A progress callback.
pub type ProgressFn = Arc<dyn Fn(&Progress) + Send + Sync>;
/// A checkpoint callback (tests use it to stop the process at a named point).
pub type CheckpointFn = Arc<dyn Fn(Checkpoint) + Send + Sync>;

/// How a [`crate::Client`] behaves. Start from [`ClientConfig::new`] and change fields.
#[derive(Clone)]
pub struct ClientConfig {
    /// The data directory (token store, ledger, journal, locks).
    pub data_dir: PathBuf,
    /// The most one token or charge may cost (invoice amount; the fee is capped separately). Over it: refused.
    pub max_price: Msat,
    /// The most one payment may spend on routing fees (all attempts' limits are within it). Never zero.
    pub max_fee: Msat,
    /// An invoice expiring within this margin is not paid.
    pub expiry_margin: Duration,
    /// The network the wallet is on; `None` asks the wallet.
    pub network: Option<Currency>,
    /// The payment timeout handed to the wallet.
    pub payment_timeout: Duration,
    /// How long to wait for another request or process paying the same service.
    pub lease_timeout: Duration,
    /// How long to follow an in-flight payment found in the journal before calling its outcome unknown.
    pub recovery_timeout: Duration,
    /// A budget for this client's life (amount + fees), on top of the shared limits.
    pub session_budget: Option<Msat>,
    /// The HTTP retry policy.
    pub retry: RetryPolicy,
    /// Pay again for a service whose token the server refused (default false: a refusing server gets no
    /// more money until the refused token is removed).
    pub repay_after_refusal: bool,
    /// Pay over plain `http://` (default false: a challenge from an http URL is refused before anything is
    /// paid, [`crate::Error::PlainHttp`]; anyone on the path could take the credential). Local tests and
    /// demos on loopback turn it on. Tokens are kept per origin, scheme included: one bought over https is
    /// never sent over http.
    pub allow_http: bool,
    /// Which addresses may be connected to (default any; an agent's tool wants
    /// [`Destinations::PublicOnly`]). Enforced on resolved addresses and on every redirect.
    pub destinations: Destinations,
    /// The longest the server may send nothing while a response (head or body) is read.
    pub read_timeout: Duration,
    /// How many redirects are followed (0: none, the `3xx` is returned); one more is
    /// [`crate::Error::Redirect`]. The client follows them itself: a token is only ever sent to the origin
    /// (scheme, host, port) it was bought from, and `Authorization`/`Cookie` headers are dropped when a
    /// redirect leaves the origin.
    pub max_redirects: usize,
    /// Which offer to pay when a `402` offers both schemes (default [`PreferScheme::L402`]; per request:
    /// [`crate::Client::execute_with`]).
    pub prefer_scheme: PreferScheme,
    /// Called with progress.
    pub progress: Option<ProgressFn>,
    /// Called at each [`Checkpoint`].
    pub checkpoint: Option<CheckpointFn>,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field("data_dir", &self.data_dir)
            .field("max_price", &self.max_price)
            .field("max_fee", &self.max_fee)
            .field("expiry_margin", &self.expiry_margin)
            .field("network", &self.network)
            .field("payment_timeout", &self.payment_timeout)
            .field("session_budget", &self.session_budget)
            .field("retry", &self.retry)
            .field("allow_http", &self.allow_http)
            .field("destinations", &self.destinations)
            .field("read_timeout", &self.read_timeout)
            .field("max_redirects", &self.max_redirects)
            .field("prefer_scheme", &self.prefer_scheme)
            .finish_non_exhaustive()
    }
}

impl ClientConfig {
    /// The defaults, with the store in `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            max_price: DEFAULT_MAX_PRICE,
            max_fee: DEFAULT_MAX_FEE,
            expiry_margin: DEFAULT_EXPIRY_MARGIN,
            network: None,
            payment_timeout: DEFAULT_PAYMENT_TIMEOUT,
            lease_timeout: DEFAULT_LEASE_TIMEOUT,
            recovery_timeout: DEFAULT_RECOVERY_TIMEOUT,
            session_budget: None,
            retry: RetryPolicy::default(),
            repay_after_refusal: false,
            allow_http: false,
            destinations: Destinations::Any,
            read_timeout: DEFAULT_READ_TIMEOUT,
            max_redirects: DEFAULT_MAX_REDIRECTS,
            prefer_scheme: PreferScheme::L402,
            progress: None,
            checkpoint: None,
        }
    }

    /// Checks the settings a client cannot work with: a zero fee limit, a timeout of zero or over
    /// [`MAX_TIMEOUT`].
    pub fn validate(&self) -> Result<(), crate::Error> {
        if self.max_fee.0 == 0 {
            return Err(crate::Error::Request(
                "max_fee must be positive (a zero fee limit only finds zero-fee routes)".into(),
            ));
        }
        for (name, t) in [
            ("payment_timeout", self.payment_timeout),
            ("recovery_timeout", self.recovery_timeout),
            ("lease_timeout", self.lease_timeout),
            ("read_timeout", self.read_timeout),
        ] {
            if t.is_zero() || t > MAX_TIMEOUT {
                return Err(crate::Error::Request(format!(
                    "{name} must be positive and at most {} s, not {:?}",
                    MAX_TIMEOUT.as_secs(),
                    t
                )));
            }
        }
        Ok(())
    }

    /// The first attempt's fee limit for `amount`: 1% of it, at least 10 sat, at most [`Self::max_fee`], and
    /// never zero.
    pub fn initial_fee_limit(&self, amount: Msat) -> Msat {
        let share = amount.0.saturating_mul(DEFAULT_FEE_PPM) / 1_000_000;
        Msat(share.max(DEFAULT_MIN_FEE.0).min(self.max_fee.0).max(1))
    }

    /// The fee limit of the one retry after "no route": twice the first, at most [`Self::max_fee`]. `None` if
    /// that is no higher.
    pub fn raised_fee_limit(&self, first: Msat) -> Option<Msat> {
        let raised = first.0.saturating_mul(2).min(self.max_fee.0);
        (raised > first.0).then_some(Msat(raised))
    }
}

//! The server side of L402: put a Lightning price on any HTTP or gRPC service.
//!
//! - [`Paywall`] mints tokens (a fresh invoice, a token id, a root key, caveats per service), answers
//!   challenges, and authenticates credentials with no call to the Lightning node. With master keys
//!   ([`secret`]) tokens are stateless: a challenge writes nothing to the store, a verification reads nothing
//!   from it, and a token is recorded once, when first paid or used;
//! - [`L402Layer`] is the tower layer that puts it in front of any axum, hyper or tonic service, handing the
//!   verified [`L402Token`] to the inner service as a request extension (and to axum handlers as an extractor);
//! - [`store`] keeps tokens and revocations: SQLite by default, PostgreSQL for several instances sharing
//!   tokens. Every instance holds the revocation set in memory and follows it ([`revocation`]).
//!
//! Answers: no credential, an expired token, or one for another service (or another tier of it) or lacking a capability the service
//! grants: 402 with a fresh challenge (both `WWW-Authenticate` lines, LSAT first, as Aperture). A credential
//! that is malformed or forged, or a revoked or unknown token: 401 with the reason (minting an invoice for
//! every forged request would only feed whoever sends them). A capability the service never grants: 403.
//! Store or Lightning backend unavailable: 503, and nothing passes unpaid.
//!
//! ```no_run
//! # async fn f(issuer: std::sync::Arc<dyn l402_lightning::InvoiceIssuer>) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use l402_server::{L402Layer, L402Token, Paywall, ServiceSpec, StaticPrice, store::SqliteStore};
//!
//! let store = Arc::new(SqliteStore::open("l402.db".as_ref())?);
//! let paywall = Paywall::builder(store, issuer).build();
//! let spec = Arc::new(ServiceSpec::new("weather", l402_proto::Msat::from_sat(10)));
//! let app: axum::Router = axum::Router::new()
//!     .route("/forecast", axum::routing::get(|t: L402Token| async move { format!("paid by {}", t.token_id) }))
//!     .layer(L402Layer::new(paywall, StaticPrice(spec)));
//! # Ok(()) }
//! ```

mod cache;
pub mod charge;
#[cfg(feature = "axum")]
mod extract;
pub mod layer;
pub mod metrics;
pub mod paywall;
pub mod pricing;
mod recorder;
pub mod response;
pub mod revocation;
pub mod secret;
pub mod session;
pub mod store;

pub use cache::{DEFAULT_KEY_CACHE_SIZE, DEFAULT_KEY_CACHE_TTL, DEFAULT_VERIFIED_STATELESS_SIZE};
pub use charge::{PaidCharge, PaymentScheme};
#[cfg(feature = "axum")]
pub use extract::MissingL402Token;
pub use layer::{L402Body, L402Layer, L402Service};
pub use metrics::Metrics;
pub use paywall::{
    Authorized, Clock, L402Token, Minted, Offers, Paywall, PaywallBuilder, Refusal, mint_stateless, system_clock,
};
pub use pricing::{Charge, Pricing, RequestInfo, Schemes, ServiceSpec, StaticPrice};
pub use recorder::{DEFAULT_PENDING_SIZE, DEFAULT_RECORDED_SIZE};
pub use revocation::DEFAULT_REVOCATION_POLL;
pub use secret::{MasterKey, MasterKeys, SecretError};
pub use session::{PayerRefunder, Refunder, SessionClosed, SessionPaid, SessionSpec};

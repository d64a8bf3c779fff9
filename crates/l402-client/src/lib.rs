//! The paying side of L402: an HTTP client (over reqwest) that meets `402 Payment Required` by itself, safely
//! enough to hand to a script or an AI agent.
//!
//! [`Client::execute`] sends a request with the stored token that fits it (or none); on a 402 it reads the
//! challenge and, before paying, refuses on any doubt: the invoice must parse, be for the wallet's network, not
//! expire within a margin, carry an amount, cost no more than [`ClientConfig::max_price`], and pay the payment
//! hash the macaroon commits to ([`l402_proto::invoice::check_invoice`]); the budgets ([`Limits`]) must allow
//! amount + fee limit; the request body must be replayable; the URL must not be plain http (unless allowed).
//! Then it pays through an [`l402_lightning::Payer`] with a non-zero fee limit and a timeout, stores the token,
//! and sends the request again with `Authorization: <scheme the server used> <macaroon>:<preimage>`.
//!
//! The `Payment` HTTP authentication scheme's Lightning charge (MPP, as Aperture sends it beside L402) is
//! understood too. A `402` offering both is answered with one offer, never two: the L402 token by default (it
//! is reusable), the charge with [`PreferScheme::Payment`] ([`ClientConfig::prefer_scheme`],
//! [`Client::execute_with`]); a `402` offering one scheme is answered with that one. A charge gets every check an
//! L402 invoice gets, with the same errors, and more (its invoice's hash and amount must be the ones it states,
//! its network the wallet's, its challenge unexpired: the `offer` module). It is journaled with its echoed
//! challenge, so a charge paid whose request then failed is presented again by the next request for that path
//! (never paid twice); it buys one request, so it is never stored as a token nor reused; the server's
//! `Payment-Receipt` goes into the ledger ([`LedgerEntry`]).
//!
//! The `Payment` session (the Lightning `session` intent) is answered with [`PreferScheme::Session`] (or when a
//! `402` offers nothing else): a deposit opens a balance on the server that later requests draw down with a
//! bearer credential, topped up when the server says it ran out, refunded to an amountless invoice of the
//! wallet's own node when closed ([`Client::close_session`]); the deposit and top-ups get every check a charge
//! gets (the `session` module) and count against the budgets, the refund the node received is credited back.
//! Opening one needs the wallet's node as an invoice issuer ([`Client::with_invoice_issuer`]). Sessions are
//! stored in [`sessions`], and sent only to the origin they were opened with.
//!
//! How the pieces relate:
//! - [`store`]: one SQLite file per data directory, shared by every process using it: [`tokens`] (paid tokens,
//!   chosen by service and path), [`journal`] (the write-ahead payment journal, which is also the ledger) and
//!   [`budget`] (limits checked and reserved in one `BEGIN IMMEDIATE` transaction, fail closed);
//! - the lease (`lease` module): one payment per origin and service at a time, across tasks (a tokio mutex)
//!   and processes (an `flock` the kernel releases if the holder dies); whoever gets it second finds the
//!   token the first one bought and pays nothing;
//! - [`Client::recover`]: after a crash, a timeout or a lost connection, every journaled payment is looked
//!   up by hash in the wallet: completed ones yield their token, failed or never-sent ones release their
//!   reservation, the rest stay `unknown` (never reported as failed, never paid again);
//! - redirects are followed by the client, not by reqwest: each hop is a request of its own, sent with the
//!   token of its own origin and paid (if it asks) under its own origin, so a token is only ever sent to the
//!   origin (scheme, host, port) it was bought from; `303` becomes `GET`; `Authorization` and `Cookie` are
//!   dropped when a hop leaves the origin; at most [`ClientConfig::max_redirects`];
//! - [`net`]: which addresses may be connected to ([`Destinations::PublicOnly`] for an agent's tool: checked
//!   on the resolved addresses, which are the ones connected to, and on every redirect);
//! - [`body`]: response bodies read with a size cap, each read bounded by [`ClientConfig::read_timeout`];
//! - [`retry`]: HTTP retries (connection errors, 502/503/504, 429 with `Retry-After`; a non-idempotent method
//!   only after a connection error, when nothing was sent); payment retries follow
//!   [`l402_lightning::PaymentFailure::retry`] (no route: once, with a bounded higher fee limit; timeout: once,
//!   if the invoice is still valid; never after insufficient balance or incorrect payment details).
//!
//! Nothing is paid over plain `http://` unless [`ClientConfig::allow_http`] says so ([`Error::PlainHttp`]).
//!
//! A token the paywall refuses (a `WWW-Authenticate: L402 error=...`, or a fresh challenge for the token's own
//! service) is kept, with its preimage, as `refused` ([`Error::PaidButRefused`]), and that origin and service
//! get no more money until the user removes it. Any other `401` or `402` (the API behind the paywall speaking)
//! is returned to the caller and the token stays valid. Logs name token ids and payment hashes,
//! never a preimage, a macaroon or a credential.
//!
//! ```no_run
//! # async fn f(payer: std::sync::Arc<dyn l402_lightning::Payer>) -> Result<(), l402_client::Error> {
//! use l402_client::{Client, ClientConfig};
//! let mut config = ClientConfig::new("/home/me/.local/share/l402");
//! config.max_price = l402_proto::Msat::from_sat(100);
//! let client = Client::new(payer, config)?;
//! let request = client.request(reqwest::Method::GET, "https://api.example/quote").build().map_err(l402_client::Error::Http)?;
//! let answer = client.execute(request).await?;
//! if let Some(p) = answer.payment {
//!     println!("paid {} + {} fee ({})", p.amount, p.fee, p.scheme());
//! }
//! # Ok(()) }
//! ```

pub mod body;
pub mod budget;
mod charge;
mod client;
pub mod config;
mod error;
pub mod journal;
mod lease;
pub mod net;
mod offer;
mod pay;
mod redirect;
mod refusal;
pub mod retry;
mod session;
pub mod sessions;
pub mod store;
pub mod tokens;

pub use budget::{LimitKind, Limits, Usage};
pub use client::{
    ChargeInfo, ChargeReceipt, Client, L402Response, Payment, PaymentQuote, Quote, SessionUse, origin_of,
};
pub use config::{Checkpoint, ClientConfig, PreferScheme, Progress};
pub use error::Error;
pub use journal::LedgerEntry;
pub use lease::lock_exclusive;
pub use net::Destinations;
pub use pay::Recovery;
pub use reqwest;
pub use session::{REFUND_WAIT, RETURN_INVOICE_EXPIRY, SessionClose};
pub use sessions::StoredSession;
pub use store::{Store, default_data_dir};
pub use tokens::{StoredToken, TokenScope};

//! LND over gRPC behind the `l402-lightning` traits: [`LndNode`] is a [`l402_lightning::Node`], an
//! [`l402_lightning::InvoiceIssuer`] (the L402 server side) and a [`l402_lightning::Payer`] (the client side).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use l402_lightning::{Node, Payer, PayRequest};
//! use l402_lnd::{LndConfig, LndNode};
//!
//! let config = LndConfig::new("127.0.0.1:10009", "~/.lnd/tls.cert", "~/.lnd/data/chain/bitcoin/regtest/admin.macaroon")?;
//! let node = LndNode::connect(config).await?; // checks the pinned certificate and the macaroon
//! println!("{:?}", node.info().await?);
//! # Ok(()) }
//! ```
//!
//! How the pieces relate: [`config`] turns paths, PEM/hex/base64 strings or an `lndconnect://` URI into an
//! [`LndConfig`]; [`LndNode`] opens one HTTP/2 connection through a TLS connector pinned to the node's
//! `tls.cert` and adds the macaroon to every call; the `invoices` and `pay` modules implement the traits; the
//! generated code is in [`proto`] (with the `server` feature, also the server traits the test kit's LND
//! simulator implements).
//!
//! # LND behaviour this crate relies on
//!
//! Each item names where LND documents it (the comments of `lnrpc/lightning.proto`,
//! `lnrpc/routerrpc/router.proto`, `lnrpc/invoicesrpc/invoices.proto`, and the docs.lightning.engineering
//! pages "Macaroons", "Payments" and "Invoices"); where LND documents nothing, its source is named.
//!
//! Connection and authentication
//! - gRPC over TLS with a self-signed certificate whose basic constraints say `IsCA: true` (lnd#5450): rustls
//!   refuses it as an end-entity certificate, so the exact DER is pinned and handshake signatures are still
//!   checked (the `tls` module). grpc-go requires ALPN `h2`; the connector offers it.
//! - The macaroon travels as metadata `macaroon: <hex>` on every call ("Macaroons"). LND refuses a wrong or
//!   missing one with code `Unknown` and texts such as "verification failed: signature mismatch after caveat
//!   verification" or "expected 1 macaroon, got 0" (`macaroons/service.go`), and a missing permission with
//!   "permission denied"; these become [`l402_lightning::LightningErrorKind::Unauthenticated`].
//! - The server enforces a minimum client ping interval (5 s) and by default refuses pings without an open
//!   call (`lnd.go`, `grpc.client-ping-min-wait`): this client pings every 30 s, and only while a call is open.
//! - `GetInfo.chains[0].network` names the network (`mainnet`, `testnet`, `testnet4`, `signet`, `regtest`,
//!   `simnet`).
//!
//! Invoices (server side)
//! - `AddInvoice` takes `value_msat` (exclusive with `value`), `memo`, `expiry` in seconds (0 means LND's
//!   default of 86400) and returns `r_hash` (32 bytes) and `payment_request` (lightning.proto).
//! - `LookupInvoice` by `r_hash` answers `NotFound` for an unknown hash (`rpcserver.go`); `state` is OPEN,
//!   SETTLED, CANCELED or ACCEPTED; `amt_paid_msat` and `settle_date` are set once settled.
//! - `invoicesrpc.SubscribeSingleInvoice` sends the current state first, then each change, and closes after a
//!   final state (invoices.proto). For an unknown hash it sends nothing and waits, hence the lookup first. The
//!   sub-server exists only in builds with the `invoicesrpc` tag: on `Unimplemented` this crate polls
//!   `LookupInvoice`.
//! - `SubscribeInvoices` streams add and settle events; given `settle_index`/`add_index` it first replays
//!   the events after them; with both 0 it sends only new events (lightning.proto). LND sends no response
//!   headers before the first event, so opening the stream can block: it is never put under a call timeout.
//!
//! Payments (client side)
//! - `DecodePayReq` decodes against the node's own network and gives `payment_hash` as hex and `num_msat`;
//!   the adapter refuses to pay when either differs from the [`l402_lightning::PayRequest`].
//! - `SendPaymentV2` (router.proto): `fee_limit_sat`/`fee_limit_msat` are exclusive and a zero limit means
//!   "zero-fee routes only" (the RPC's own comment warns of it), so a zero `max_fee` is refused before
//!   anything is sent; `timeout_seconds` (0 means 60) stops new attempts only, HTLCs in flight continue;
//!   `cancelable` is left false, so closing the stream never cancels the payment. `max_parts` unset means 16
//!   in lnd 0.21 (`routerrpc/router_backend.go`): the adapter sends [`config::DEFAULT_MAX_PARTS`] (one) unless
//!   configured otherwise, because with a fee limit under the route's fee a multi-part payment sends a shard
//!   that fits and waits IN_FLIGHT for the payee's MPP timeout instead of failing (measured on real LND).
//! - It streams `lnrpc.Payment`: `status` INITIATED=4, IN_FLIGHT=1, SUCCEEDED=2, FAILED=3 (UNKNOWN=0 is
//!   deprecated), `htlcs` (one entry per attempt, keyed by `attempt_id`), `payment_preimage` as a hex
//!   STRING, `value_msat`, `fee_msat`, and `failure_reason` (TIMEOUT=1, NO_ROUTE=2, ERROR=3,
//!   INCORRECT_PAYMENT_DETAILS=4, INSUFFICIENT_BALANCE=5, CANCELED=6).
//! - A second `SendPaymentV2` for a hash that is initiated, in flight or paid fails before any stream with
//!   `AlreadyExists` ("payment already exists", "payment is in transition", "invoice is already paid";
//!   `routerrpc/router_server.go`, `payments/db/payment_status.go`); a FAILED hash may be paid again. So
//!   re-sending after a lost connection never pays twice.
//! - `TrackPaymentV2` first sends the payment's current state, then each change until it is final
//!   (`routing/control_tower.go`); for a hash never initiated it fails with `NotFound` ("payment isn't
//!   initiated"), which is the only answer that makes paying again safe. With `no_inflight_updates` it holds
//!   back INITIATED/IN_FLIGHT states, so [`LndNode`]'s `payment_status` does not set it.
//! - `SendPaymentSync` was removed in lnd 0.21 and is not used.
//!
//! What the adapter does with these: a stream that drops mid-payment is resumed with `TrackPaymentV2` (with
//! backoff) and never reported as failed; if no final state is learned within the payment's timeout plus
//! [`LndConfig::resume_margin`], `pay` returns [`l402_lightning::PayError::OutcomeUnknown`]. Reads retry on
//! `Unavailable` with backoff for up to [`LndConfig::reconnect_timeout`]. The macaroon is never logged.

mod client;
pub mod config;
mod error;
mod invoices;
mod pay;
pub mod proto;
mod tls;

pub use client::{AuthedChannel, LndNode, MacaroonInterceptor};
pub use config::LndConfig;

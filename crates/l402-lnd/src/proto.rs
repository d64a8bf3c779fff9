//! The generated gRPC code for LND's `lnrpc`, `invoicesrpc` and `routerrpc` packages (the subset in `proto/`).
//!
//! Exposed for callers who need a call the traits do not cover, and (with the `server` feature) for
//! `l402-testkit`'s LND simulator, which implements the generated server traits.

/// LND's main service (`lnrpc.Lightning`) and the messages shared by the other packages.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod lnrpc {
    tonic::include_proto!("lnrpc");
}

/// LND's invoices sub-server (`invoicesrpc.Invoices`).
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod invoicesrpc {
    tonic::include_proto!("invoicesrpc");
}

/// LND's router sub-server (`routerrpc.Router`).
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod routerrpc {
    tonic::include_proto!("routerrpc");
}

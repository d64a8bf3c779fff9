//! A local regtest Lightning network: a real bitcoind and real LDK nodes, on loopback, in a temporary
//! directory, torn down when dropped.
//!
//! Tests, benchmarks and the demo all stand on it, so every payment the project makes in its own checks is a
//! real Lightning payment: real BOLT-8 transport, real channels funded on a real (regtest) chain, real HTLCs.
//!
//! ```no_run
//! # async fn f() -> Result<(), l402_regtest::RegtestError> {
//! let net = l402_regtest::Regtest::start().await?;
//! let alice = net.ldk_node("alice").await?;
//! let bob = net.ldk_node("bob").await?;
//! net.fund(&alice, 1_000_000).await?;
//! net.open_channel(&alice, &bob, 500_000, 0).await?;
//! // alice can now pay bob's invoices.
//! net.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! bitcoind is found through `L402_BITCOIND`, then the project's own install (`.tools/bitcoind`, made by
//! `scripts/install-bitcoind.sh`), then `PATH`. If none is there, starting fails with a message saying how to
//! install it: a test that needs the network never passes by skipping.

mod bitcoind;
mod error;
mod network;
pub mod postgres;

pub use bitcoind::{Bitcoind, find_bitcoind};
pub use error::RegtestError;
pub use network::Regtest;
pub use postgres::Postgres;

/// A free TCP port on 127.0.0.1 (bound, read and released; another process could take it in between, which on
/// a test machine is rare enough).
pub fn free_port() -> Result<u16, RegtestError> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| RegtestError::Io("binding a port".into(), e))?;
    listener.local_addr().map(|a| a.port()).map_err(|e| RegtestError::Io("reading a port".into(), e))
}

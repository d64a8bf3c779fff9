//! What can go wrong starting or driving the network.

use l402_lightning::LightningError;
use thiserror::Error;

/// An error of the regtest harness.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum RegtestError {
    /// No bitcoind could be found.
    #[error("bitcoind not found ({0}); install it with scripts/install-bitcoind.sh or set L402_BITCOIND")]
    BitcoindNotFound(String),
    /// A peer program (LND, lncli, Aperture) could not be found.
    #[error("{name} not found ({why}); build it with scripts/install-peers.sh")]
    PeerNotFound {
        /// The program.
        name: String,
        /// Where it was looked for.
        why: String,
    },
    /// A peer program (LND, lncli, Aperture) failed or answered with an error.
    #[error("{name}: {message}")]
    Peer {
        /// The node or program.
        name: String,
        /// What it said.
        message: String,
    },
    /// A file or process operation failed.
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    /// bitcoind answered a call with an error.
    #[error("bitcoind {method}: {message}")]
    Rpc {
        /// The RPC method.
        method: String,
        /// bitcoind's message.
        message: String,
    },
    /// Something did not happen in time.
    #[error("timed out waiting for {0}")]
    Timeout(String),
    /// A Lightning node failed.
    #[error(transparent)]
    Lightning(#[from] LightningError),
    /// An LDK node call failed.
    #[error("LDK {0}: {1}")]
    Ldk(&'static str, String),
}

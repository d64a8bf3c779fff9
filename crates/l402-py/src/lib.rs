//! The native half of the Python package `l402` (`l402._native`): the paying client of `l402-client`, with
//! the wallets of the `l402` command (`l402-wallet`), for Python. The pure-Python half (`python/l402`) wraps
//! what this module returns in typed objects, and holds the exception classes, the httpx transport and the
//! requests adapter.
//!
//! - [`wallet::Wallet`]: which wallet pays (LND by paths or lndconnect, or an embedded LDK node); started on the
//!   first payment, as in the CLI.
//! - [`client::Client`]: `request` (blocking, the GIL released while Rust works) and `request_async` (a Python
//!   awaitable, on the same tokio runtime), `spend`, `tokens`, `recover`, `close`.
//! - [`errors`]: every [`l402_client::Error`] becomes an instance of the matching class of `l402.errors`,
//!   carrying what `l402 fetch`'s exit code carries (the exit code itself, the reason, the typed fields).
//!
//! Nothing here returns or logs a preimage or a macaroon: a payment is named by its hash and token id.

use std::sync::OnceLock;

use pyo3::prelude::*;

mod client;
mod errors;
mod wallet;

/// The one tokio runtime of the process: the blocking calls `block_on` it (with the GIL released), and the
/// async ones are spawned on it by pyo3-async-runtimes. An LND connection lives on the runtime it was made
/// on, so there is only one.
pub(crate) fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .thread_name("l402-tokio")
            .enable_all()
            .build()
            .unwrap_or_else(|e| panic!("starting the tokio runtime: {e}"))
    })
}

/// The module `l402._native`.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Ignored if already set (a second import in one process).
    let _ = pyo3_async_runtimes::tokio::init_with_runtime(runtime());
    m.add_class::<wallet::Wallet>()?;
    m.add_class::<client::Client>()?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}

//! `l402.Wallet`: which wallet pays, built by `l402-wallet` as the `l402` command builds it. The options are
//! checked (files read, the URI parsed) when the wallet is made; the node is only started by the first
//! payment. Its `repr` names the kind only: the configuration holds a macaroon or an RPC password.

use std::path::PathBuf;

use l402_ldk::ChainSource;
use l402_lnd::LndConfig;
use l402_wallet::WalletConfig;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

/// Which wallet pays: LND over gRPC or an embedded LDK node. Make one with a static method.
#[pyclass(frozen, module = "l402._native")]
pub(crate) struct Wallet {
    pub(crate) config: WalletConfig,
}

fn config_err(e: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(e.to_string())
}

#[pymethods]
impl Wallet {
    /// LND at `address` (`host:port`), its `tls.cert` (a path or PEM) pinned, paying with `macaroon` (a path, or
    /// hex/base64; a pay-only macaroon is enough).
    #[staticmethod]
    fn lnd(address: &str, tls_cert: &str, macaroon: &str) -> PyResult<Self> {
        Ok(Self { config: WalletConfig::Lnd(LndConfig::new(address, tls_cert, macaroon).map_err(config_err)?) })
    }

    /// LND from an `lndconnect://` URI (address, certificate and macaroon in one).
    #[staticmethod]
    fn lndconnect(uri: &str) -> PyResult<Self> {
        Ok(Self { config: WalletConfig::Lnd(LndConfig::from_lndconnect(uri).map_err(config_err)?) })
    }

    /// LND from a file holding an `lndconnect://` URI.
    #[staticmethod]
    fn lndconnect_file(path: PathBuf) -> PyResult<Self> {
        Ok(Self { config: WalletConfig::Lnd(l402_wallet::lnd_from_lndconnect_file(&path).map_err(config_err)?) })
    }

    /// An LDK node embedded in this process, its state in `data_dir`, following the chain through a bitcoind's
    /// RPC (`bitcoind_rpc_port`, `_user`, `_password`, `_host`) or an Esplora server (`esplora_url`).
    #[staticmethod]
    #[pyo3(signature = (data_dir, network="bitcoin", bitcoind_rpc_host="127.0.0.1", bitcoind_rpc_port=None,
        bitcoind_rpc_user=None, bitcoind_rpc_password=None, esplora_url=None))]
    fn ldk(
        data_dir: PathBuf,
        network: &str,
        bitcoind_rpc_host: &str,
        bitcoind_rpc_port: Option<u16>,
        bitcoind_rpc_user: Option<String>,
        bitcoind_rpc_password: Option<String>,
        esplora_url: Option<String>,
    ) -> PyResult<Self> {
        let chain = match (esplora_url, bitcoind_rpc_port, bitcoind_rpc_user, bitcoind_rpc_password) {
            (Some(url), None, _, _) => ChainSource::Esplora(url),
            (None, Some(port), Some(user), Some(password)) => {
                ChainSource::BitcoindRpc { host: bitcoind_rpc_host.to_owned(), port, user, password }
            }
            _ => {
                return Err(PyValueError::new_err(
                    "the LDK wallet needs one chain source: bitcoind_rpc_port, bitcoind_rpc_user and \
                     bitcoind_rpc_password, or esplora_url",
                ));
            }
        };
        let network = l402_wallet::network(network).map_err(config_err)?;
        Ok(Self { config: WalletConfig::Ldk(l402_wallet::ldk(network, data_dir, chain)) })
    }

    /// `"lnd"` or `"ldk"`.
    #[getter]
    fn kind(&self) -> &'static str {
        match self.config {
            WalletConfig::Ldk(_) => "ldk",
            WalletConfig::Lnd(_) => "lnd",
            WalletConfig::None => "none",
        }
    }

    fn __repr__(&self) -> String {
        format!("Wallet({})", self.kind())
    }
}

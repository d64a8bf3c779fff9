//! `l402._native.Client`: an [`l402_client::Client`] with its wallet, and the calls the Python package makes.
//!
//! A request returns a plain tuple `(status, url, headers, body, token_id, payment)` that `l402.Response`
//! wraps: `headers` a list of `(name, value bytes)`, `body` bytes (read whole, at most `max_body`), `payment`
//! `(payment_hash, amount_msat, fee_msat, token_id, scheme, challenge_id, receipt_reference, receipt_challenge_id)`
//! or `None` (`token_id` `None` for a `Payment` charge; the last three only for a charge). The blocking calls run on the process's tokio
//! runtime with the GIL released; `request_async` hands back an asyncio awaitable of the same tuple.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use l402_client::reqwest::Method;
use l402_client::{ClientConfig, Destinations, Error, LimitKind, Limits, Payment, PreferScheme, Usage, tokens};
use l402_proto::Msat;
use l402_wallet::{LazyWallet, WalletConfig};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::errors::{Failure, to_pyerr};
use crate::runtime;
use crate::wallet::Wallet;

/// Default `max_body`: 64 MiB, as `l402 fetch --max-body`.
const DEFAULT_MAX_BODY: u64 = 64 << 20;

/// A payment as Python receives it (never the preimage): payment hash, amount msat, fee msat, token id, scheme,
/// and for a charge its challenge id, receipt reference and receipt challenge id.
type PaymentTuple = (String, u64, u64, Option<String>, &'static str, Option<String>, Option<String>, Option<String>);
/// The spend view as Python receives it: stored limits by name, counted `(hour, day, total)`, the ledger JSON.
type SpendTuple = (Vec<(String, u64)>, (u64, u64, u64), String);
/// A response as Python receives it.
type ResponseTuple =
    (u16, String, Vec<(String, Cow<'static, [u8]>)>, Cow<'static, [u8]>, Option<String>, Option<PaymentTuple>);

struct Inner {
    client: l402_client::Client,
    wallet: Arc<LazyWallet>,
    max_body: u64,
}

/// The paying client (see the Python `l402.Client` for the documented API).
#[pyclass(frozen, module = "l402._native")]
pub(crate) struct Client {
    inner: Arc<Inner>,
}

fn seconds(name: &str, secs: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(secs).map_err(|_| PyValueError::new_err(format!("{name} must be a positive number")))
}

fn sat(n: u64) -> Msat {
    Msat::from_sat(n)
}

/// A request's parts, owned (so the future can outlive the call).
struct Parts {
    method: Method,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
}

impl Parts {
    fn new(method: &str, url: String, headers: Vec<(String, String)>, body: Option<&[u8]>) -> PyResult<Self> {
        let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| PyValueError::new_err(format!("not an HTTP method: {method:?}")))?;
        Ok(Self { method, url, headers, body: body.map(<[u8]>::to_vec) })
    }
}

async fn fetch(inner: Arc<Inner>, parts: Parts) -> Result<ResponseTuple, Failure> {
    let mut builder = inner.client.request(parts.method, &parts.url);
    for (name, value) in &parts.headers {
        builder = builder.header(name.as_str(), value.as_str());
    }
    if let Some(body) = parts.body {
        builder = builder.body(body);
    }
    let req = builder.build().map_err(|e| Error::Request(format!("{}: {e}", parts.url)))?;
    let mut answer = inner.client.execute(req).await?;
    let token_id = answer.token_id;
    let with_token = |error: Error| Failure { error, token_id };
    l402_client::body::check_declared(&answer.response, inner.max_body).map_err(with_token)?;
    let status = answer.response.status().as_u16();
    let url = answer.response.url().to_string();
    let headers = answer
        .response
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), Cow::Owned(v.as_bytes().to_vec())))
        .collect();
    let mut body = Vec::new();
    while let Some(chunk) = l402_client::body::next_chunk(&mut answer.response).await.map_err(with_token)? {
        if (body.len() + chunk.len()) as u64 > inner.max_body {
            return Err(with_token(Error::BodyTooLarge { limit: inner.max_body }));
        }
        body.extend_from_slice(&chunk);
    }
    let payment = answer.payment.as_ref().map(payment_tuple);
    Ok((status, url, headers, Cow::Owned(body), token_id.map(|t| t.to_hex()), payment))
}

fn payment_tuple(p: &Payment) -> PaymentTuple {
    let receipt = p.charge.as_ref().and_then(|c| c.receipt.as_ref());
    (
        p.payment_hash.to_hex(),
        p.amount.0,
        p.fee.0,
        p.token_id.map(|t| t.to_hex()),
        p.scheme(),
        p.charge.as_ref().map(|c| c.challenge_id.clone()),
        receipt.map(|r| r.reference.clone()),
        receipt.map(|r| r.challenge_id.clone()),
    )
}

impl Client {
    /// Runs a client future on the runtime with the GIL released.
    fn block<T: Send>(
        &self,
        py: Python<'_>,
        f: impl std::future::Future<Output = Result<T, Failure>> + Send,
    ) -> PyResult<T> {
        py.detach(|| runtime().block_on(f)).map_err(|f| to_pyerr(py, &f))
    }
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (wallet=None, data_dir=None, max_cost_sat=1_000, max_fee_sat=50, session_budget_sat=None,
        budgets=None, allow_http=false, public_only=false, payment_timeout=60.0, read_timeout=60.0,
        max_body=DEFAULT_MAX_BODY, max_redirects=10, prefer_scheme="l402"))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        wallet: Option<PyRef<'_, Wallet>>,
        data_dir: Option<PathBuf>,
        max_cost_sat: u64,
        max_fee_sat: u64,
        session_budget_sat: Option<u64>,
        budgets: Option<HashMap<String, u64>>,
        allow_http: bool,
        public_only: bool,
        payment_timeout: f64,
        read_timeout: f64,
        max_body: u64,
        max_redirects: usize,
        prefer_scheme: &str,
    ) -> PyResult<Self> {
        let dir = data_dir
            .or_else(l402_client::default_data_dir)
            .ok_or_else(|| PyValueError::new_err("no data directory: pass data_dir or set L402_DATA_DIR"))?;
        if max_fee_sat == 0 {
            return Err(PyValueError::new_err("max_fee_sat must be at least 1 (a zero fee limit finds no route)"));
        }
        let config_wallet = wallet.map_or(WalletConfig::None, |w| w.config.clone());
        let mut config = ClientConfig::new(dir);
        config.network = config_wallet.currency();
        config.max_price = sat(max_cost_sat);
        config.max_fee = sat(max_fee_sat);
        config.session_budget = session_budget_sat.map(sat);
        config.allow_http = allow_http;
        if public_only {
            config.destinations = Destinations::PublicOnly { except: Vec::new() };
        }
        config.payment_timeout = seconds("payment_timeout", payment_timeout)?;
        config.recovery_timeout = config.payment_timeout;
        config.read_timeout = seconds("read_timeout", read_timeout)?;
        config.max_redirects = max_redirects;
        // Sessions need the wallet as an invoice issuer and a way to close them: not offered here (yet).
        config.prefer_scheme =
            PreferScheme::from_name(prefer_scheme).filter(|p| *p != PreferScheme::Session).ok_or_else(|| {
                PyValueError::new_err(format!("prefer_scheme must be \"l402\" or \"payment\", not {prefer_scheme:?}"))
            })?;
        config.checkpoint = l402_client::config::pause_hook_from_env();
        let mut limits = Vec::new();
        for (name, value) in budgets.unwrap_or_default() {
            let kind = LimitKind::from_name(&name.replace('_', "-")).filter(|k| *k != LimitKind::Session).ok_or_else(
                || {
                    PyValueError::new_err(format!(
                        "unknown budget {name:?} (per_request, per_origin, per_hour, per_day, total; this \
                         client's own: session_budget_sat)"
                    ))
                },
            )?;
            limits.push((kind, value.saturating_mul(1000)));
        }
        let wallet = Arc::new(LazyWallet::new(config_wallet));
        let payer: Arc<dyn l402_lightning::Payer> = wallet.clone();
        // Opening the store and building the reqwest client need the runtime (its DNS resolver, timers).
        let client = py
            .detach(|| {
                let _guard = runtime().enter();
                let client = l402_client::Client::new(payer, config)?;
                for (kind, msat) in limits {
                    client.store().blocking(|c| Limits::save(c, kind, msat))?;
                }
                Ok::<_, Error>(client)
            })
            .map_err(|e| to_pyerr(py, &e.into()))?;
        Ok(Self { inner: Arc::new(Inner { client, wallet, max_body }) })
    }

    /// Sends a request, paying a 402 within the caps and budgets; blocks with the GIL released.
    #[pyo3(signature = (method, url, headers=Vec::new(), body=None))]
    fn request(
        &self,
        py: Python<'_>,
        method: &str,
        url: String,
        headers: Vec<(String, String)>,
        body: Option<&[u8]>,
    ) -> PyResult<ResponseTuple> {
        let parts = Parts::new(method, url, headers, body)?;
        self.block(py, fetch(self.inner.clone(), parts))
    }

    /// The same as `request`, as an asyncio awaitable.
    #[pyo3(signature = (method, url, headers=Vec::new(), body=None))]
    fn request_async<'py>(
        &self,
        py: Python<'py>,
        method: &str,
        url: String,
        headers: Vec<(String, String)>,
        body: Option<&[u8]>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let parts = Parts::new(method, url, headers, body)?;
        let inner = self.inner.clone();
        pyo3_async_runtimes::tokio::future_into_py(py, async move {
            fetch(inner, parts).await.map_err(|f| Python::attach(|py| to_pyerr(py, &f)))
        })
    }

    /// `(limits, counted, ledger_json)`: the stored limits by name (msat), what counts against them now
    /// (`hour`, `day`, `total`, msat), and the ledger as `l402 spend --json` prints its `payments`.
    #[pyo3(signature = (since=None))]
    fn spend(&self, py: Python<'_>, since: Option<u64>) -> PyResult<SpendTuple> {
        let inner = self.inner.clone();
        self.block(py, async move {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
            let limits = inner.client.limits().await?;
            let usage: Usage = inner.client.usage("").await?;
            let ledger = inner.client.ledger(since.map(|s| now.saturating_sub(s))).await?;
            let json = serde_json::to_string(&ledger).map_err(|e| Error::Store(e.to_string()))?;
            let limits = LimitKind::STORED.iter().map(|k| (k.name().to_owned(), limits.get(*k))).collect();
            Ok((limits, (usage.hour, usage.day, usage.total), json))
        })
    }

    /// The stored tokens as `l402 token list --json` prints them (no macaroon, no preimage), as JSON.
    #[pyo3(signature = (origin=None))]
    fn tokens(&self, py: Python<'_>, origin: Option<String>) -> PyResult<String> {
        let listed = py.detach(|| {
            let all = self.inner.client.store().blocking(|c| tokens::list(c, origin.as_deref()))?;
            serde_json::to_string(&all).map_err(|e| Error::Store(e.to_string()))
        });
        listed.map_err(|e| to_pyerr(py, &e.into()))
    }

    /// Resolves interrupted payments with the wallet: `(completed, released, unknown)` payment hashes.
    fn recover(&self, py: Python<'_>) -> PyResult<(Vec<String>, Vec<String>, Vec<String>)> {
        let inner = self.inner.clone();
        self.block(py, async move {
            let r = inner.client.recover().await?;
            let hex = |v: Vec<l402_proto::PaymentHash>| v.iter().map(|h| h.to_hex()).collect::<Vec<_>>();
            Ok((hex(r.completed), hex(r.released), hex(r.unknown)))
        })
    }

    /// Stops an embedded LDK node, if one was started (its state persisted). The client stays usable.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let wallet = self.inner.wallet.clone();
        self.block(py, async move {
            wallet.shutdown().await;
            Ok(())
        })
    }

    /// The data directory.
    #[getter]
    fn data_dir(&self) -> PathBuf {
        self.inner.client.config().data_dir.clone()
    }

    fn __repr__(&self) -> String {
        format!("Client(data_dir={:?})", self.inner.client.config().data_dir)
    }
}

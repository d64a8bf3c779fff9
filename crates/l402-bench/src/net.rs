//! The regtest network every benchmark stands on, the LND simulator in front of the server's node, the
//! upstream "hello" service, and paying a 402 challenge from alice.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use l402_ldk::LdkNode;
use l402_lightning::Payer;
use l402_regtest::Regtest;
use l402_testkit::LndSimulator;

use crate::output::note;

/// bitcoind, the server's LDK node and (optionally) alice, a payer with a channel to the server.
pub(crate) struct Net {
    /// The network (shut it down with [`Net::shutdown`]).
    pub(crate) regtest: Regtest,
    /// The node that issues invoices (directly, or behind the LND simulator).
    pub(crate) server: Arc<LdkNode>,
    /// The payer, with a channel of [`CHANNEL_SATS`] to the server.
    pub(crate) alice: Option<Arc<LdkNode>>,
}

/// The channel alice opens to the server.
pub(crate) const CHANNEL_SATS: u64 = 1_500_000;

impl Net {
    /// Starts bitcoind and the server's node; with `payer`, also alice, funded, with a usable channel.
    pub(crate) async fn start(payer: bool) -> Result<Self> {
        note("starting the regtest network (bitcoind + LDK nodes)");
        let regtest = Regtest::start().await.context("regtest (is bitcoind installed? scripts/install-deps.sh)")?;
        let result = async {
            let server = regtest.ldk_node("server").await?;
            let alice = if payer {
                let alice = regtest.ldk_node("alice").await?;
                regtest.fund(&alice, 2_000_000).await?;
                regtest.open_channel(&alice, &server, CHANNEL_SATS, 0).await?;
                Some(alice)
            } else {
                None
            };
            Ok::<_, l402_regtest::RegtestError>((server, alice))
        }
        .await;
        match result {
            Ok((server, alice)) => Ok(Self { regtest, server, alice }),
            Err(e) => {
                regtest.shutdown().await;
                Err(e).context("setting up the network")
            }
        }
    }

    /// Alice (started with `payer`).
    pub(crate) fn alice(&self) -> Result<&Arc<LdkNode>> {
        self.alice.as_ref().context("no payer node in this network")
    }

    /// Stops the nodes and bitcoind.
    pub(crate) async fn shutdown(self) {
        note("stopping the regtest network");
        self.regtest.shutdown().await;
    }
}

/// LND's files as an operator would point the proxy at them.
pub(crate) struct LndFiles {
    /// `host:port` of the simulator's gRPC.
    pub(crate) address: String,
    /// `tls.cert` (PEM).
    pub(crate) tls_cert: PathBuf,
    /// `invoice.macaroon` (binary, like LND's).
    pub(crate) macaroon: PathBuf,
}

/// Starts an LND simulator in front of `node` and writes its certificate and invoice macaroon under `dir`.
pub(crate) async fn lnd_simulator(node: &Arc<LdkNode>, dir: &Path) -> Result<(LndSimulator, LndFiles)> {
    let sim = LndSimulator::start(node.clone()).await.context("starting the LND simulator")?;
    let tls_cert = dir.join("tls.cert");
    let macaroon = dir.join("invoice.macaroon");
    std::fs::write(&tls_cert, sim.tls_cert_pem()).context("writing tls.cert")?;
    std::fs::write(&macaroon, hex::decode(sim.invoice_macaroon_hex()).context("macaroon hex")?)
        .context("writing invoice.macaroon")?;
    let files = LndFiles { address: sim.address().to_string(), tls_cert, macaroon };
    Ok((sim, files))
}

/// The upstream: `hello` for every request, on 127.0.0.1. Serves until the runtime stops.
pub(crate) async fn upstream() -> Result<SocketAddr> {
    let app = axum::Router::new().fallback(|| async { "hello" });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.context("binding the upstream")?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok(addr)
}

/// Asks `url` without a credential, pays the 402's invoice from `payer` over Lightning (checked and paid by
/// [`l402_regtest::pay_challenge`]), and returns the `Authorization` value (the credential) with the time the
/// payment took.
pub(crate) async fn buy_token(http: &reqwest::Client, url: &str, payer: &dyn Payer) -> Result<(String, Duration)> {
    let resp = http.get(url).send().await.context("asking for a challenge")?;
    anyhow::ensure!(resp.status() == 402, "expected 402 from {url}, got {}", resp.status());
    let lines: Vec<Vec<u8>> =
        resp.headers().get_all("www-authenticate").iter().map(|v| v.as_bytes().to_vec()).collect();
    let started = std::time::Instant::now();
    let (credential, _) = l402_regtest::pay_challenge(payer, lines.iter().map(Vec::as_slice))
        .await
        .with_context(|| format!("paying the challenge of {url} over Lightning"))?;
    Ok((credential, started.elapsed()))
}

/// GETs `url` (with an `Authorization` value if given) and checks the status and body.
pub(crate) async fn expect_ok(http: &reqwest::Client, url: &str, auth: Option<&str>) -> Result<()> {
    let mut req = http.get(url);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    let resp = req.send().await.with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    anyhow::ensure!(status == 200 && body == "hello", "GET {url}: expected 200 hello, got {status} {body:?}");
    Ok(())
}

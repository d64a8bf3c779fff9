//! `l402 proxy --config l402.toml`: runs the reverse proxy until SIGTERM/SIGINT; SIGHUP reloads the file's
//! `[[service]]` tables (the rest of the file is read at start only).
//!
//! This is where the config's `[lightning]` section becomes a concrete backend: LND over gRPC (an invoice
//! macaroon is enough: the connection is checked with a lookup, not GetInfo) or an LDK node embedded here.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use l402_ldk::{ChainSource, LdkConfig, LdkNode, Network};
use l402_lightning::{InvoiceIssuer, Payer};
use l402_proxy::{Config, LightningConfig, Proxy, open_store};

use crate::Failure;

#[derive(Args, Debug)]
pub(crate) struct ProxyArgs {
    /// The configuration file (see l402.sample.toml).
    #[arg(long, short = 'c', default_value = "l402.toml")]
    config: PathBuf,
    /// Log as JSON lines instead of text.
    #[arg(long)]
    log_json: bool,
    /// Check the configuration and exit.
    #[arg(long)]
    check: bool,
}

pub(crate) fn run(args: ProxyArgs) -> Result<(), Failure> {
    let config = Config::load(&args.config).map_err(|e| Failure::Input(anyhow!(e)))?;
    if args.check {
        println!("{}: ok, {} service(s)", args.config.display(), config.services.len());
        return Ok(());
    }
    init_logging(args.log_json);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    rt.block_on(serve(config, &args.config)).map_err(Failure::Input)
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,ldk_node=warn,lightning=warn,h2=warn,hyper=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}

/// The configured node: as an invoice issuer, as the payer of session refunds, and the LDK node if it is one.
type Nodes = (Arc<dyn InvoiceIssuer>, Arc<dyn Payer>, Option<Arc<LdkNode>>);

/// Builds the configured invoice issuer (the same node pays session refunds).
pub(crate) async fn issuer(config: &LightningConfig) -> anyhow::Result<Nodes> {
    match config {
        LightningConfig::Lnd { address, tls_cert, macaroon } => {
            let cfg = l402_lnd::LndConfig::new(address, tls_cert, macaroon).context("LND configuration")?;
            let node = Arc::new(l402_lnd::LndNode::connect_lazy(cfg).context("LND")?);
            Ok((node.clone(), node, None))
        }
        LightningConfig::Ldk {
            data_dir,
            network,
            listen,
            bitcoind_rpc,
            bitcoind_user,
            bitcoind_password,
            bitcoind_password_env,
        } => {
            let network = match network.as_str() {
                "bitcoin" | "mainnet" => Network::Bitcoin,
                "testnet" => Network::Testnet,
                "signet" => Network::Signet,
                "regtest" => Network::Regtest,
                other => bail!("lightning.network {other:?}: bitcoin, testnet, signet or regtest"),
            };
            let (host, port) =
                bitcoind_rpc.rsplit_once(':').ok_or_else(|| anyhow!("lightning.bitcoind_rpc must be host:port"))?;
            let password = match (bitcoind_password, bitcoind_password_env) {
                (Some(p), None) => p.clone(),
                (None, Some(var)) => std::env::var(var).with_context(|| format!("{var} is not set"))?,
                _ => bail!("lightning: give bitcoind_password or bitcoind_password_env"),
            };
            let node = LdkNode::start(LdkConfig {
                network,
                data_dir: data_dir.clone(),
                listen: *listen,
                chain: ChainSource::BitcoindRpc {
                    host: host.to_owned(),
                    port: port.parse().context("lightning.bitcoind_rpc port")?,
                    user: bitcoind_user.clone(),
                    password,
                },
                alias: None,
            })
            .await
            .context("starting the embedded LDK node")?;
            Ok((node.clone(), node.clone(), Some(node)))
        }
    }
}

async fn serve(config: Config, path: &std::path::Path) -> anyhow::Result<()> {
    let (issuer, payer, ldk) = issuer(&config.lightning).await?;
    let store = open_store(&config.store).await?;
    let refunder = Arc::new(l402_proxy::PayerRefunder(payer));
    let mut proxy = Proxy::start_with_refunder(&config, store, issuer, Some(refunder)).await?;
    eprintln!("l402 proxy: listening on {}", proxy.addr());
    if let Some(a) = proxy.admin_addr() {
        eprintln!("l402 proxy: metrics and admin on {a}");
    }
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = hup.recv() => reload(&proxy, path).await,
        }
    }
    eprintln!("l402 proxy: shutting down");
    proxy.stop();
    if let Some(node) = ldk {
        node.stop().await;
    }
    Ok(())
}

/// SIGHUP: the file's services again, checked as at start (the whole file must be valid) and with the
/// store's; a bad file changes nothing and the reason is logged (the error names a key or a line, never the
/// line's text).
async fn reload(proxy: &Proxy, path: &std::path::Path) {
    let config = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "SIGHUP: the config file is not valid; services unchanged");
            return;
        }
    };
    match proxy.reload_services(config.services).await {
        Ok(n) => tracing::info!(path = %path.display(), services = n, "SIGHUP: services reloaded"),
        Err(e) => tracing::warn!(path = %path.display(), error = %e, "SIGHUP: services not reloaded; unchanged"),
    }
}

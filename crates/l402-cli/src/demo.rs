//! `l402 demo`: the whole system doing its job for real, with nothing to configure.
//!
//! A local regtest network (bitcoind, two embedded LDK nodes, a funded channel), `l402 proxy` with its SQLite
//! store in front of a small weather API, and the paying client with a wallet on the other node. Then, step by
//! step: the request, the 402 and its price, the invoice paid over Lightning, the preimage and the
//! Authorization header (shortened: they are secrets, even on regtest), the 200 and its body, the token reused
//! without paying, the token's lifetime ending and a fresh payment, a payment refused over the client's cap,
//! and the spend ledger. It stops every process it started and exits 0.
//!
//! `--backend lnd` runs the same walkthrough with real LND on both sides (built by `scripts/install-peers.sh`):
//! the operator's LND mints the invoices, and the proxy holds only its invoice macaroon; the agent pays through
//! its own LND with a pay-only macaroon; the ledger is checked against the agent's LND `ListPayments`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use l402_client::{Client, ClientConfig, Error as ClientError, Progress};
use l402_lightning::PaymentEvent;
use l402_proto::{Challenge, Msat};
use l402_proxy::{Config, Proxy, open_store};
use l402_regtest::Regtest;

use crate::Failure;

#[derive(Args, Debug)]
pub(crate) struct DemoArgs {
    /// Seconds a token lives (the demo waits for it to end).
    #[arg(long, default_value_t = 6)]
    lifetime: u64,
    /// The Lightning nodes: embedded LDK nodes, or real LND nodes (scripts/install-peers.sh builds LND).
    #[arg(long, value_enum, default_value_t = Backend::Ldk)]
    backend: Backend,
}

/// Which Lightning nodes the demo runs.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    /// Two LDK nodes embedded in the demo's process.
    Ldk,
    /// Two real LND nodes, driven over gRPC.
    Lnd,
}

/// The two sides' Lightning: what the proxy mints with, what the client pays with, and how to read the
/// paying node's own record of what it sent.
struct Sides {
    issuer: Arc<dyn l402_lightning::InvoiceIssuer>,
    payer: Arc<dyn l402_lightning::Payer>,
    ldk_wallet: Option<Arc<l402_ldk::LdkNode>>,
    lnd_wallet: Option<Arc<l402_regtest::Lnd>>,
}

impl Sides {
    /// msat that left the paying node in succeeded Lightning payments (amount + fee), by its own record.
    async fn node_sent(&self) -> anyhow::Result<u64> {
        if let Some(lnd) = &self.lnd_wallet {
            let msat = |v: &serde_json::Value| v.as_str().and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
            return Ok(lnd
                .payments()
                .await?
                .iter()
                .filter(|p| p["status"] == "SUCCEEDED")
                .map(|p| msat(&p["value_msat"]) + msat(&p["fee_msat"]))
                .sum());
        }
        let wallet = self.ldk_wallet.as_ref().context("no wallet")?;
        Ok(wallet
            .inner()
            .list_payments_with_filter(|p| {
                p.direction == l402_ldk::ldk_node::payment::PaymentDirection::Outbound
                    && p.status == l402_ldk::ldk_node::payment::PaymentStatus::Succeeded
                    && matches!(p.kind, l402_ldk::ldk_node::payment::PaymentKind::Bolt11 { .. })
            })
            .iter()
            .map(|p| p.amount_msat.unwrap_or(0) + p.fee_paid_msat.unwrap_or(0))
            .sum())
    }
}

async fn sides(net: &Regtest, backend: Backend) -> anyhow::Result<Sides> {
    match backend {
        Backend::Ldk => {
            let server_node = net.ldk_node("api-operator").await?;
            let wallet = net.ldk_node("agent-wallet").await?;
            println!("   operator's LDK node {}", short(&server_node.node_id(), 20));
            println!("   agent's wallet      {}", short(&wallet.node_id(), 20));
            net.fund(&wallet, 1_000_000).await?;
            net.open_channel(&wallet, &server_node, 500_000, 0).await?;
            println!(
                "   funded the wallet with 1,000,000 sat on-chain and opened a 500,000 sat channel to the operator"
            );
            Ok(Sides { issuer: server_node, payer: wallet.clone(), ldk_wallet: Some(wallet), lnd_wallet: None })
        }
        Backend::Lnd => {
            use l402_regtest::LndMacaroon;
            let operator = net.lnd_node("api-operator").await.context("starting LND (scripts/install-peers.sh)")?;
            let wallet = net.lnd_node("agent-wallet").await?;
            println!("   operator's LND {} (gRPC {})", short(operator.pubkey(), 20), operator.rpc_address());
            println!("   agent's LND    {} (gRPC {})", short(wallet.pubkey(), 20), wallet.rpc_address());
            net.fund_lnd(&wallet, 1_000_000).await?;
            net.open_channel_lnd_to_lnd(&wallet, &operator, 500_000, 0, None, &[]).await?;
            println!(
                "   funded the agent's LND with 1,000,000 sat on-chain and opened a 500,000 sat channel to the operator"
            );
            let issuer = operator.connect(LndMacaroon::Invoice).await?;
            let payer = wallet.connect(LndMacaroon::Pay).await?;
            println!("   the proxy holds the operator's invoice.macaroon; the client a pay-only macaroon");
            Ok(Sides { issuer: Arc::new(issuer), payer: Arc::new(payer), ldk_wallet: None, lnd_wallet: Some(wallet) })
        }
    }
}

const PRICE_SAT: u64 = 1_000;
const CAP_SAT: u64 = 5_000;
const PREMIUM_SAT: u64 = 50_000;

fn step(n: u32, title: &str) {
    println!("\n\x1b[1m{n}. {title}\x1b[0m");
}

/// The first `n` characters of `s` (a header value may hold any UTF-8: cut on a character, never inside one).
fn short(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((cut, _)) => format!("{}…", &s[..cut]),
        None => s.to_owned(),
    }
}

pub(crate) fn run(args: DemoArgs) -> Result<(), Failure> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().context("runtime")?;
    rt.block_on(demo(args)).map_err(Failure::Input)
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = tempfile::Builder::new().prefix("l402-demo-").tempdir()?;
    step(0, "Setting up: a regtest Lightning network, the proxy, the paying client");
    let net =
        Regtest::start_in(&dir.path().join("net")).await.context("starting bitcoind (scripts/install-bitcoind.sh)")?;
    let result = run_steps(&net, dir.path(), args.lifetime, args.backend).await;
    net.shutdown().await;
    if result.is_ok() {
        println!("\nAll done in {:.1} s; every process the demo started is stopped.", started.elapsed().as_secs_f64());
    }
    result
}

async fn run_steps(net: &Regtest, dir: &std::path::Path, lifetime: u64, backend: Backend) -> anyhow::Result<()> {
    println!("   bitcoind (regtest) on 127.0.0.1:{}", net.bitcoind().rpc_port());
    let sides = sides(net, backend).await?;

    let upstream = crate::sample_api::start().await?;
    let config = Config::parse(&format!(
        r#"
listen = "127.0.0.1:0"
store = {{ kind = "sqlite", path = "{db}" }}
lightning = {{ backend = "ldk", data_dir = "(the demo's own node, given below)", network = "regtest", bitcoind_rpc = "-", bitcoind_user = "-" }}
[[service]]
name = "weather"
path = "/weather/today"
upstream = "{upstream}"
price_sat = {PRICE_SAT}
lifetime_secs = {lifetime}
[[service]]
name = "premium"
path = "/weather/premium"
upstream = "{upstream}"
price_sat = {PREMIUM_SAT}
"#,
        db = dir.join("proxy.db").display()
    ))?;
    let store = open_store(&config.store).await?;
    let proxy = Proxy::start(&config, store, sides.issuer.clone()).await?;
    let base = format!("http://{}", proxy.addr());
    println!("   l402 proxy on {base} (SQLite store), in front of the weather API at {upstream}");
    println!("   services: weather {PRICE_SAT} sat per token, valid {lifetime} s; premium {PREMIUM_SAT} sat");

    let mut cfg = ClientConfig::new(dir.join("client"));
    cfg.max_price = Msat::from_sat(CAP_SAT);
    // The proxy listens on loopback without TLS: paying over plain http is asked for explicitly.
    cfg.allow_http = true;
    cfg.progress = Some(Arc::new(|p: &Progress| match p {
        Progress::Paying { amount, fee_limit, payment_hash, .. } => {
            println!(
                "   ⚡ paying {amount} (fee limit {fee_limit}) for payment hash {}",
                short(&payment_hash.to_hex(), 16)
            );
        }
        Progress::Payment { event: PaymentEvent::InFlight, .. } => println!("   ⚡ payment in flight…"),
        Progress::Payment { event: PaymentEvent::Succeeded(s), .. } => {
            println!("   ⚡ payment succeeded: {} delivered, fee {}", s.amount, s.fee)
        }
        _ => {}
    }));
    let client = Client::new(sides.payer.clone(), cfg)?;
    // Budgets, fail closed: each payment reserves price + fee limit against every one of them.
    client.store().blocking(|c| {
        l402_client::Limits::save(c, l402_client::LimitKind::PerRequest, Msat::from_sat(CAP_SAT + 100).0)?;
        l402_client::Limits::save(c, l402_client::LimitKind::PerOrigin, Msat::from_sat(20_000).0)?;
        l402_client::Limits::save(c, l402_client::LimitKind::PerDay, Msat::from_sat(50_000).0)
    })?;
    println!("   client: pays on its own up to {CAP_SAT} sat per token, 20,000 sat per origin, 50,000 sat a day");
    println!("   client store and ledger in {}", dir.join("client").display());

    let url = format!("{base}/weather/today");
    step(1, &format!("GET {url} with no token"));
    let raw = reqwest::get(&url).await?;
    println!("   ← {} {}", raw.status().as_u16(), raw.status().canonical_reason().unwrap_or(""));
    let lines: Vec<Vec<u8>> = raw.headers().get_all("www-authenticate").iter().map(|v| v.as_bytes().to_vec()).collect();
    for l in &lines {
        println!("   ← WWW-Authenticate: {}", short(&String::from_utf8_lossy(l), 70));
    }
    let challenge = Challenge::parse(lines.iter().map(Vec::as_slice))?;
    let (_, info) = l402_proto::invoice::decode_invoice(&challenge.invoice)?;
    let hash = challenge.macaroon.l402_identifier()?.payment_hash;
    println!(
        "   the price: {} (invoice on {}, expires in {} s, payment hash {} = the macaroon's: {})",
        info.amount.unwrap_or_default(),
        l402_proto::invoice::network_name(&info.currency),
        info.expires_at.saturating_sub(now()),
        short(&info.payment_hash.to_hex(), 16),
        info.payment_hash == hash
    );

    step(2, "The client meets the 402, checks the invoice, pays it over Lightning, retries");
    let answer = client.execute(client.request(reqwest::Method::GET, &url).build()?).await?;
    let paid = answer.payment.context("the client should have paid")?;
    println!(
        "   preimage   {} (32 bytes; sha256(preimage) = payment hash: {})",
        short(&paid.preimage.to_hex(), 16),
        paid.preimage.payment_hash() == paid.payment_hash
    );
    let stored = client.store().blocking(|c| l402_client::tokens::list(c, None))?;
    let token = stored.iter().find(|t| t.id().ok() == paid.token_id).context("token stored")?;
    let header = token.credential()?.header_value();
    let (scheme_mac, pre) = header.rsplit_once(':').unwrap_or((&header, ""));
    println!(
        "   Authorization: {}:{}   (shortened; token id {})",
        short(scheme_mac, 30),
        short(pre, 12),
        short(&paid.token_id.map(|t| t.to_hex()).unwrap_or_default(), 16)
    );
    let status = answer.response.status();
    println!("   ← {} {}  {}", status.as_u16(), status.canonical_reason().unwrap_or(""), answer.response.text().await?);

    step(3, "The same token again: no payment");
    let again = client.execute(client.request(reqwest::Method::GET, &url).build()?).await?;
    println!(
        "   ← {} (paid this time: {})",
        again.response.status().as_u16(),
        again.payment.as_ref().map_or("nothing".into(), |p| p.amount.to_string())
    );
    if again.payment.is_some() {
        bail!("a reused token should not pay");
    }

    step(4, &format!("Waiting {lifetime} s for the token's lifetime to end"));
    tokio::time::sleep(Duration::from_secs(lifetime + 1)).await;
    let fresh = client.execute(client.request(reqwest::Method::GET, &url).build()?).await?;
    match fresh.payment {
        Some(p) => println!(
            "   the server answered 402 again; the client paid {} for a fresh token {}",
            p.amount,
            short(&p.token_id.map(|t| t.to_hex()).unwrap_or_default(), 16)
        ),
        None => bail!("an expired token should have needed a fresh payment"),
    }
    println!("   ← {}", fresh.response.status().as_u16());

    step(
        5,
        &format!(
            "A payment the client refuses: the premium forecast costs {PREMIUM_SAT} sat, over its {CAP_SAT} sat cap"
        ),
    );
    let premium = format!("{base}/weather/premium");
    match client.execute(client.request(reqwest::Method::GET, &premium).build()?).await {
        Err(e @ ClientError::Invoice(_)) => {
            println!("   refused before paying: {e}");
            println!("   nothing was sent over Lightning; `l402 fetch` exits with code 10 (price over cap) here");
        }
        Err(other) => bail!("unexpected error: {other}"),
        Ok(r) => bail!("the premium request should have been refused, got {}", r.response.status()),
    }

    step(6, "The spend ledger");
    let ledger = client.ledger(None).await?;
    let mut total = 0u64;
    for e in &ledger {
        println!(
            "   {}  {:<9} {:>8} msat + fee {:>4} msat  token {}",
            short(&e.payment_hash, 12),
            e.state,
            e.amount_msat,
            e.fee_msat.unwrap_or(0),
            e.token_id.as_deref().map_or("-".into(), |t| short(t, 12))
        );
        total += e.counted_msat();
    }
    let node_sent = sides.node_sent().await?;
    println!(
        "   total spent {total} msat; the wallet node's own record of Lightning payments: {node_sent} msat (match: {})",
        total == node_sent
    );
    let m = proxy.metrics().paywall.clone();
    println!(
        "   proxy: {} challenges, {} paid requests, revenue {} msat",
        m.challenges_issued.load(std::sync::atomic::Ordering::Relaxed),
        m.tokens_verified.get(),
        m.revenue_msat.load(std::sync::atomic::Ordering::Relaxed)
    );
    if total != node_sent || ledger.len() != 2 {
        bail!("the ledger does not match the node's record of payments");
    }
    drop(proxy);
    Ok(())
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

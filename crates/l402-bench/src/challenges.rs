//! `l402-bench challenges`: challenges per second through the [`Paywall`] (mint: invoice, token id, root key,
//! caveats, store insert; then the two `WWW-Authenticate` lines), with the embedded LDK node and with
//! LND-sim (`l402_lnd::LndNode` over gRPC/TLS with an invoice macaroon -> the simulator -> the same LDK node).
//! Sequential and with `--concurrency` tasks; beside each, the bare `create_invoice` of the same backend; then
//! the same with both schemes on (a stateless L402 token and a `Payment` charge, two invoices per 402).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use l402_lightning::{InvoiceIssuer, InvoiceRequest};
use l402_proto::Msat;
use l402_server::store::SqliteStore;
use l402_server::{Charge, MasterKey, MasterKeys, PaymentScheme, Paywall, Schemes, ServiceSpec};
use serde_json::json;

use crate::net::Net;
use crate::output::{emit, median, micros, note, percentile, round};
use crate::sys::{self, Snapshot};

/// Options of `l402-bench challenges`.
#[derive(Args, Debug)]
pub(crate) struct ChallengeArgs {
    /// Challenges per measurement.
    #[arg(long, default_value_t = 300)]
    count: usize,
    /// Concurrent tasks in the concurrent measurement.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
}

/// Runs the challenge benchmark.
pub(crate) async fn run(args: ChallengeArgs) -> Result<()> {
    let net = Net::start(false).await?;
    let result = measure(&args, &net).await;
    net.shutdown().await;
    result
}

async fn measure(args: &ChallengeArgs, net: &Net) -> Result<()> {
    let dir = tempfile::Builder::new().prefix("l402-bench-challenges-").tempdir()?;
    let tick = sys::clock_tick_us().await;
    let (sim, lnd_files) = crate::net::lnd_simulator(&net.server, dir.path()).await?;
    let lnd_config = l402_lnd::LndConfig::new(
        &lnd_files.address,
        &lnd_files.tls_cert.display().to_string(),
        &lnd_files.macaroon.display().to_string(),
    )?;
    let lnd = Arc::new(l402_lnd::LndNode::connect_lazy(lnd_config)?);
    let backends: [(&str, &str, Arc<dyn InvoiceIssuer>); 2] = [
        ("ldk", "embedded LDK node", net.server.clone()),
        ("lnd_sim", "LND-sim (gRPC client -> simulator -> LDK)", lnd),
    ];
    for (key, label, issuer) in backends {
        note(&format!("challenges with {label}"));
        let store = Arc::new(SqliteStore::open(&dir.path().join(format!("{key}.db")))?);
        let paywall = Paywall::builder(store.clone(), issuer.clone()).build();
        let charge = Charge::of(&Arc::new(ServiceSpec::new("api", Msat::from_sat(10))));
        for _ in 0..10 {
            challenge(&paywall, &charge).await?; // warm-up: connections, caches
        }

        let mut invoice_only = Vec::with_capacity(args.count);
        let request =
            InvoiceRequest { amount: Msat::from_sat(10), memo: "bench".into(), expiry: Duration::from_secs(600) };
        let machine = Snapshot::take(tick);
        let t = Instant::now();
        for _ in 0..args.count {
            let s = Instant::now();
            issuer.create_invoice(&request).await.context("create_invoice")?;
            invoice_only.push(s.elapsed());
        }
        report(
            &format!("challenges.{key}.invoice_only"),
            &format!("{label}, create_invoice alone, sequential"),
            &invoice_only,
            t.elapsed(),
            1,
            &machine,
            tick,
        );

        let keys = MasterKeys::single(MasterKey::generate()?);
        let scheme = PaymentScheme::new("bench", keys.payment_secrets()).context("a payment secret")?;
        let both = Paywall::builder(store, issuer.clone()).master_keys(keys).payment_scheme(scheme).build();
        let both_charge = Charge::of(&Arc::new(ServiceSpec::new("api", Msat::from_sat(10)).schemes(Schemes::BOTH)));
        let variants = [
            ("", "challenges", &paywall, &charge),
            (
                "both_schemes.",
                "challenges with both schemes (stateless L402 + a Payment charge: two invoices)",
                &both,
                &both_charge,
            ),
        ];
        for (prefix, what, paywall, charge) in variants {
            let mut sequential = Vec::with_capacity(args.count);
            let machine = Snapshot::take(tick);
            let t = Instant::now();
            for _ in 0..args.count {
                let s = Instant::now();
                challenge(paywall, charge).await?;
                sequential.push(s.elapsed());
            }
            report(
                &format!("challenges.{key}.{prefix}sequential"),
                &format!("{label}, {what}, sequential"),
                &sequential,
                t.elapsed(),
                1,
                &machine,
                tick,
            );

            let per_task = args.count.div_ceil(args.concurrency);
            let machine = Snapshot::take(tick);
            let t = Instant::now();
            let mut tasks = Vec::new();
            for _ in 0..args.concurrency {
                let (paywall, charge) = (paywall.clone(), charge.clone());
                tasks.push(tokio::spawn(async move {
                    let mut lat = Vec::with_capacity(per_task);
                    for _ in 0..per_task {
                        let s = Instant::now();
                        challenge(&paywall, &charge).await?;
                        lat.push(s.elapsed());
                    }
                    Ok::<_, anyhow::Error>(lat)
                }));
            }
            let mut concurrent = Vec::new();
            for task in tasks {
                concurrent.extend(task.await??);
            }
            let wall = t.elapsed();
            report(
                &format!("challenges.{key}.{prefix}concurrent"),
                &format!("{label}, {what}, {} concurrent tasks", args.concurrency),
                &concurrent,
                wall,
                args.concurrency,
                &machine,
                tick,
            );
        }
    }
    drop(sim);
    Ok(())
}

/// One challenge as the proxy makes it: what the service's schemes offer (an L402 token: invoice, token,
/// store or nothing; a Payment charge: another invoice) and the header lines.
async fn challenge(paywall: &Paywall, charge: &Charge) -> Result<()> {
    let offers = paywall.offers(charge).await.map_err(|e| anyhow::anyhow!("offers: {e}"))?;
    std::hint::black_box(offers.header_values());
    Ok(())
}

fn report(
    figure: &str,
    what: &str,
    latencies: &[Duration],
    wall: Duration,
    concurrency: usize,
    machine: &Snapshot,
    tick: f64,
) {
    let now = Snapshot::take(tick);
    let (foreign, iowait) = (now.foreign_since(machine), now.iowait_since(machine));
    let us = micros(latencies);
    let per_sec = latencies.len() as f64 / wall.as_secs_f64();
    let (p50, p99) = (median(&us), percentile(&us, 99.0));
    emit(
        figure,
        json!({ "per_sec": round(per_sec, 1), "median_us": round(p50, 1), "p99_us": round(p99, 1),
                "count": latencies.len(), "concurrency": concurrency,
                "foreign_cpu": foreign.map(|f| round(f, 3)), "iowait": iowait.map(|f| round(f, 3)) }),
        &format!(
            "{what}: {per_sec:.0}/s, median {:.2} ms, p99 {:.2} ms over {}",
            p50 / 1e3,
            p99 / 1e3,
            latencies.len()
        ),
    );
}

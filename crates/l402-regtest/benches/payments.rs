//! Regtest figures: time to start the network and open a channel, and payment latency (median of 50).
//!
//! `cargo bench -p l402-regtest --bench payments` (set `L402_BENCH_PAYMENTS` for another count). Prints one line
//! per figure; a benchmark, not a test: nothing here asserts a speed.
#![allow(missing_docs)]

use std::time::{Duration, Instant};

use l402_lightning::{InvoiceIssuer, InvoiceRequest, PayRequest, Payer};
use l402_proto::Msat;
use l402_regtest::Regtest;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let n: usize = std::env::var("L402_BENCH_PAYMENTS").ok().and_then(|s| s.parse().ok()).unwrap_or(50);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("runtime");
    rt.block_on(async {
        let t0 = Instant::now();
        let net = Regtest::start().await.expect("regtest");
        let alice = net.ldk_node("alice").await.expect("alice");
        let bob = net.ldk_node("bob").await.expect("bob");
        let started = t0.elapsed();
        net.fund(&alice, 2_000_000).await.expect("fund");
        let t1 = Instant::now();
        net.open_channel(&alice, &bob, 1_000_000, 0).await.expect("channel");
        let channel = t1.elapsed();
        println!("regtest/start_bitcoind_and_2_ldk_nodes: {:.2} s", started.as_secs_f64());
        println!("regtest/open_channel_until_usable (6 blocks): {:.2} s", channel.as_secs_f64());
        println!("regtest/total_to_first_payable_channel: {:.2} s", t0.elapsed().as_secs_f64());

        let mut latencies = Vec::with_capacity(n);
        for i in 0..n {
            let req = InvoiceRequest {
                amount: Msat::from_sat(1_000),
                memo: format!("bench {i}"),
                expiry: Duration::from_secs(600),
            };
            let inv = bob.create_invoice(&req).await.expect("invoice");
            let pay = PayRequest {
                bolt11: inv.bolt11,
                payment_hash: inv.payment_hash,
                amount: req.amount,
                max_fee: Msat(10_000),
                timeout: Duration::from_secs(30),
            };
            let t = Instant::now();
            alice.pay(&pay, &|_| {}).await.expect("paid");
            latencies.push(t.elapsed());
        }
        let min = latencies.iter().min().copied().unwrap_or_default();
        let max = latencies.iter().max().copied().unwrap_or_default();
        println!(
            "payments/ldk_to_ldk: median {:.1} ms over {n} (min {:.1} ms, max {:.1} ms)",
            median(latencies).as_secs_f64() * 1e3,
            min.as_secs_f64() * 1e3,
            max.as_secs_f64() * 1e3
        );
        net.shutdown().await;
    });
}

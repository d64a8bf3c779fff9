//! Regtest figures: time to start the network and open a channel, and payment latency (median of 50).
//!
//! `cargo bench -p l402-regtest --bench payments` (set `L402_BENCH_PAYMENTS` for another count). Prints one line
//! per figure; a benchmark, not a test: nothing here asserts a speed.
#![allow(missing_docs)]

use std::time::Instant;

use l402_regtest::Regtest;
use l402_regtest::payments::{latency_summary, timed_payments};

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

        let latencies = timed_payments(bob.as_ref(), alice.as_ref(), n).await;
        println!("payments/ldk_to_ldk: {}", latency_summary(&latencies));
        net.shutdown().await;
    });
}

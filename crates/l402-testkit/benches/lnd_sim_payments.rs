//! Payment latency through the LND adapter and simulator on both ends (LND-sim -> LND-sim), median of 50,
//! on a real regtest network: `cargo bench -p l402-testkit --bench lnd_sim_payments` (set
//! `L402_BENCH_PAYMENTS` for another count). The payee's invoice comes from `AddInvoice`, the payer pays with
//! `SendPaymentV2`; each simulator is backed by an LDK node. A benchmark, not a test: nothing is asserted
//! about speed.
#![allow(missing_docs)]

use l402_regtest::Regtest;
use l402_regtest::payments::{latency_summary, timed_payments};
use l402_testkit::LndSimulator;

fn main() {
    let n: usize = std::env::var("L402_BENCH_PAYMENTS").ok().and_then(|s| s.parse().ok()).unwrap_or(50);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(4).enable_all().build().expect("runtime");
    rt.block_on(async {
        let net = Regtest::start().await.expect("regtest");
        let alice = net.ldk_node("alice").await.expect("alice");
        let bob = net.ldk_node("bob").await.expect("bob");
        net.fund(&alice, 2_000_000).await.expect("fund");
        net.open_channel(&alice, &bob, 1_000_000, 0).await.expect("channel");
        let sim_alice = LndSimulator::start(alice.clone()).await.expect("sim alice");
        let sim_bob = LndSimulator::start(bob.clone()).await.expect("sim bob");
        let payer = sim_alice.connect().await.expect("lnd alice");
        let payee = sim_bob.connect().await.expect("lnd bob");

        let latencies = timed_payments(&payee, &payer, n).await;
        println!(
            "payments/lnd_sim_to_lnd_sim: {} (DecodePayReq + SendPaymentV2 stream to SUCCEEDED)",
            latency_summary(&latencies)
        );
        drop((payer, payee, sim_alice, sim_bob, alice, bob));
        net.shutdown().await;
    });
}

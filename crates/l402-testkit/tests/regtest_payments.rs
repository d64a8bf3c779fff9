//! The LND adapter (`l402-lnd`) through the LND simulator, for what real LND cannot be made to show on demand
//! (each test says why); everything else is tested on real LND in `l402-lnd/tests/real_lnd.rs`. Each simulator
//! is backed by an LDK node on a regtest network of real bitcoind, so every payment here still moves real
//! HTLCs over a real channel.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use l402_ldk::LdkNode;
use l402_lightning::{InvoiceIssuer, InvoiceState, PayError, Payer, PaymentEvent, PaymentFailure, PaymentStatus};
use l402_lnd::LndNode;
use l402_regtest::Regtest;
use l402_regtest::payments::{events_of, invoice, outbound_payments_to, pay_request, recorder};
use l402_testkit::{Fault, LndSimulator};

/// alice and bob, an LDK node each, with a 1M sat channel alice -> bob (300k pushed to bob so both can pay),
/// an LND simulator over each, and an `l402-lnd` client of each simulator.
struct Net {
    net: Regtest,
    alice: Arc<LdkNode>,
    bob: Arc<LdkNode>,
    sim_alice: LndSimulator,
    sim_bob: LndSimulator,
    lnd_alice: LndNode,
    lnd_bob: LndNode,
}

async fn network() -> Net {
    let net = Regtest::start().await.expect("regtest starts (is bitcoind installed? scripts/install-bitcoind.sh)");
    let alice = net.ldk_node("alice").await.expect("alice");
    let bob = net.ldk_node("bob").await.expect("bob");
    net.fund(&alice, 2_000_000).await.expect("fund alice");
    net.open_channel(&alice, &bob, 1_000_000, 300_000_000).await.expect("channel");
    let sim_alice = LndSimulator::start(alice.clone()).await.expect("simulator over alice");
    let sim_bob = LndSimulator::start(bob.clone()).await.expect("simulator over bob");
    let lnd_alice = sim_alice.connect().await.expect("l402-lnd connects to alice's simulator");
    let lnd_bob = sim_bob.connect().await.expect("l402-lnd connects to bob's simulator");
    Net { net, alice, bob, sim_alice, sim_bob, lnd_alice, lnd_bob }
}

impl Net {
    async fn shutdown(self) {
        drop((self.lnd_alice, self.lnd_bob, self.sim_alice, self.sim_bob, self.alice, self.bob));
        self.net.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payment_timeout_is_its_own_typed_error_and_moves_no_money() {
    // Why the simulator: real LND reports FAILURE_REASON_TIMEOUT only when no route attempt succeeds within
    // `timeout_seconds` while routes keep failing, which cannot be made to happen on demand. Every other LND
    // failure (NO_ROUTE, INSUFFICIENT_BALANCE, INCORRECT_PAYMENT_DETAILS, AlreadyExists, a long IN_FLIGHT, a
    // zero fee limit) is tested on real LND in `l402-lnd/tests/real_lnd.rs`.
    let n = network().await;
    let (bolt11, hash) = invoice(n.bob.as_ref(), 5_000).await;
    n.sim_alice.inject(Fault::Timeout);
    let (events, progress) = recorder();
    let err = n.lnd_alice.pay(&pay_request(&bolt11, hash, 5_000), &progress).await.expect_err("injected");
    assert_eq!(err, PayError::Failed(PaymentFailure::Timeout));
    assert_eq!(events_of(&events).last(), Some(&PaymentEvent::Failed(PaymentFailure::Timeout)));
    assert_eq!(
        n.lnd_alice.payment_status(&hash).await.expect("status"),
        PaymentStatus::Failed(PaymentFailure::Timeout)
    );
    assert_eq!(n.bob.lookup_invoice(&hash).await.expect("lookup"), InvoiceState::Open, "no money moved");
    assert_eq!(outbound_payments_to(&n.alice, &hash), 0, "nothing left alice's node");
    assert_eq!(n.sim_alice.backend_payments(), 0);
    // A timed-out hash may be paid again (LND allows it for FAILED payments): now it really is.
    let paid = n.lnd_alice.pay(&pay_request(&bolt11, hash, 5_000), &|_| {}).await.expect("retry pays");
    assert_eq!(paid.preimage.payment_hash(), hash);
    assert_eq!(n.sim_alice.backend_payments(), 1);
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_stream_is_resumed_and_an_interrupted_payment_is_found_again() {
    // Why the simulator: these cut the gRPC stream, or make the node unreachable, while LND itself keeps
    // running and the payment keeps going; real LND cannot be made to drop one stream on demand. The real-LND
    // counterparts (the paying client killed mid-payment, LND restarted with the HTLC held) are in
    // `l402-lnd/tests/real_lnd.rs`.
    let n = network().await;

    // The SendPaymentV2 stream drops mid-payment: the adapter resumes with TrackPaymentV2 and reports the
    // real outcome, not a failure.
    let (bolt11, hash) = invoice(n.bob.as_ref(), 7_000).await;
    n.sim_alice.inject(Fault::DropStream);
    let (events, progress) = recorder();
    let paid = n.lnd_alice.pay(&pay_request(&bolt11, hash, 7_000), &progress).await.expect("resumed, not failed");
    assert_eq!(n.sim_alice.connection_cuts(), 1, "the stream really was cut");
    assert_eq!(paid.preimage.payment_hash(), hash);
    let seen = events_of(&events);
    assert!(seen.contains(&PaymentEvent::InFlight), "{seen:?}");
    assert_eq!(seen.iter().filter(|e| matches!(e, PaymentEvent::Succeeded(_))).count(), 1, "{seen:?}");
    assert_eq!((n.sim_alice.backend_payments(), outbound_payments_to(&n.alice, &hash)), (1, 1));

    // The client dies mid-payment (its task is dropped after the stream broke); a new client finds the
    // payment by hash and recovers its preimage.
    let (bolt11, hash) = invoice(n.bob.as_ref(), 8_000).await;
    n.sim_alice.inject(Fault::DropStream);
    let (events, progress) = recorder();
    let payer = n.lnd_alice.clone();
    let request = pay_request(&bolt11, hash, 8_000);
    let task = tokio::spawn(async move { payer.pay(&request, &progress).await });
    let deadline = Instant::now() + Duration::from_secs(10);
    while !events_of(&events).contains(&PaymentEvent::InFlight) || n.sim_alice.connection_cuts() < 2 {
        assert!(Instant::now() < deadline, "payment never went in flight, or its stream was never cut");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.abort();
    let fresh = n.sim_alice.connect().await.expect("a new client");
    let found = fresh.track_payment(&hash, Duration::from_secs(30), &|_| {}).await.expect("found by hash");
    assert_eq!(found.preimage.payment_hash(), hash, "preimage recovered");
    assert_eq!(fresh.payment_status(&hash).await.expect("status"), PaymentStatus::Succeeded(found));
    assert_eq!(outbound_payments_to(&n.alice, &hash), 1);

    // The node becomes unreachable while a payment is held in flight, then comes back: the adapter
    // reconnects with backoff and still reports the real outcome.
    let (bolt11, hash) = invoice(n.bob.as_ref(), 9_000).await;
    n.sim_alice.inject(Fault::InFlightFor(Duration::from_secs(2)));
    let payer = n.lnd_alice.clone();
    let request = pay_request(&bolt11, hash, 9_000);
    let task = tokio::spawn(async move { payer.pay(&request, &|_| {}).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    n.sim_alice.inject_always(Fault::Unreachable);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    n.sim_alice.clear_faults();
    let paid = task.await.expect("join").expect("paid across the outage");
    assert_eq!(paid.preimage.payment_hash(), hash);
    assert_eq!(n.sim_alice.backend_payments(), 3);
    n.shutdown().await;
}

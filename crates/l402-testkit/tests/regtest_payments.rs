//! Real Lightning payments through the LND adapter (`l402-lnd`) and the LND simulator, on a regtest network
//! of real bitcoind and real LDK nodes: each simulator is backed by an LDK node, so every payment here moves
//! real HTLCs over a real channel.
#![allow(missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use l402_ldk::LdkNode;
use l402_lightning::{InvoiceIssuer, InvoiceState, Node, PayError, Payer, PaymentEvent, PaymentFailure, PaymentStatus};
use l402_lnd::LndNode;
use l402_proto::{Msat, PaymentHash};
use l402_regtest::payments::{invoice, ldk_fee, outbound_payments_to, pay_request};
use l402_regtest::{ForwardingFee, Regtest};
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

type Events = Arc<Mutex<Vec<PaymentEvent>>>;

fn recorder() -> (Events, impl Fn(PaymentEvent) + Send + Sync + 'static) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    (events, move |e| sink.lock().expect("lock").push(e))
}

fn events_of(events: &Events) -> Vec<PaymentEvent> {
    events.lock().expect("lock").clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_pairing_pays_for_real_and_the_payee_sees_it_within_a_second() {
    let n = network().await;

    // LND-sim -> LDK: alice pays through her simulator; bob (plain LDK) issued the invoice.
    let (bolt11, hash) = invoice(n.bob.as_ref(), 21_000).await;
    let mut bob_settlements = n.bob.subscribe_settlements().await.expect("subscribe");
    let (events, progress) = recorder();
    let paid = n.lnd_alice.pay(&pay_request(&bolt11, hash, 21_000), &progress).await.expect("LND-sim -> LDK");
    let paid_at = Instant::now();
    assert_eq!(paid.preimage.payment_hash(), hash, "the preimage proves payment of this invoice");
    assert_eq!(paid.amount, Msat::from_sat(21_000));
    assert_eq!(Some(paid.fee.0), ldk_fee(&n.alice, &hash), "the fee LND reports is the paying node's record");
    let seen = events_of(&events);
    assert_eq!(seen.first(), Some(&PaymentEvent::Initiated), "{seen:?}");
    assert!(seen.contains(&PaymentEvent::InFlight) && seen.contains(&PaymentEvent::Attempt { number: 1 }), "{seen:?}");
    assert_eq!(seen.last(), Some(&PaymentEvent::Succeeded(paid)));
    let settled = tokio::time::timeout(Duration::from_secs(1), bob_settlements.next())
        .await
        .expect("bob sees the settlement within 1 s")
        .expect("stream open")
        .expect("settlement");
    assert_eq!((settled.payment_hash, settled.amount_received), (hash, Msat::from_sat(21_000)));
    println!("LND-sim -> LDK: settlement seen {:?} after the payer's success", paid_at.elapsed());

    // LDK -> LND-sim: bob's simulator issues the invoice (AddInvoice), alice pays it with plain LDK.
    let (bolt11, hash) = invoice(&n.lnd_bob, 22_000).await;
    let (_, decoded) = l402_proto::invoice::decode_invoice(&bolt11).expect("decodes");
    assert_eq!(decoded.payee, n.bob.info().await.expect("info").pubkey, "the invoice is bob's node's");
    assert_eq!(n.lnd_bob.lookup_invoice(&hash).await.expect("lookup"), InvoiceState::Open);
    let mut lnd_settlements = n.lnd_bob.subscribe_settlements().await.expect("SubscribeInvoices");
    let paid = n.alice.pay(&pay_request(&bolt11, hash, 22_000), &|_| {}).await.expect("LDK -> LND-sim");
    let paid_at = Instant::now();
    assert_eq!(paid.preimage.payment_hash(), hash);
    let settled = tokio::time::timeout(Duration::from_secs(1), lnd_settlements.next())
        .await
        .expect("SubscribeInvoices reports the settlement within 1 s")
        .expect("stream open")
        .expect("settlement");
    assert_eq!((settled.payment_hash, settled.amount_received), (hash, Msat::from_sat(22_000)));
    println!("LDK -> LND-sim: settlement seen {:?} after the payer's success", paid_at.elapsed());
    match n.lnd_bob.lookup_invoice(&hash).await.expect("LookupInvoice") {
        InvoiceState::Settled(s) => assert_eq!(s.amount_received, Msat::from_sat(22_000)),
        other => panic!("expected settled, got {other:?}"),
    }

    // A settlement during an outage of bob's node is not lost: SubscribeInvoices resumes from the last
    // settle_index and wait_invoice (SubscribeSingleInvoice) resumes, after the node comes back.
    let (bolt11, hash) = invoice(&n.lnd_bob, 22_500).await;
    let waiter = {
        let payee = n.lnd_bob.clone();
        tokio::spawn(async move { payee.wait_invoice(&hash, Duration::from_secs(60)).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    n.sim_bob.inject_always(Fault::Unreachable);
    n.alice.pay(&pay_request(&bolt11, hash, 22_500), &|_| {}).await.expect("paid during the outage");
    tokio::time::sleep(Duration::from_millis(500)).await;
    n.sim_bob.clear_faults();
    let settled = tokio::time::timeout(Duration::from_secs(10), lnd_settlements.next())
        .await
        .expect("the settlement is replayed after the outage")
        .expect("stream open")
        .expect("settlement");
    assert_eq!(settled.payment_hash, hash);
    let state = tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("waiter ends").expect("join");
    assert!(matches!(state.expect("wait_invoice"), InvoiceState::Settled(_)));

    // LND-sim -> LND-sim, both ways: the payee waits with SubscribeSingleInvoice.
    for (payer, payer_ldk, payee, sats) in
        [(&n.lnd_alice, &n.alice, &n.lnd_bob, 23_000), (&n.lnd_bob, &n.bob, &n.lnd_alice, 24_000)]
    {
        let (bolt11, hash) = invoice(payee, sats).await;
        let waiter = {
            let payee = payee.clone();
            tokio::spawn(async move {
                let state = payee.wait_invoice(&hash, Duration::from_secs(60)).await;
                (state, Instant::now())
            })
        };
        let paid = payer.pay(&pay_request(&bolt11, hash, sats), &|_| {}).await.expect("LND-sim -> LND-sim");
        let paid_at = Instant::now();
        assert_eq!(paid.preimage.payment_hash(), hash);
        assert_eq!(paid.amount, Msat::from_sat(sats));
        assert_eq!(Some(paid.fee.0), ldk_fee(payer_ldk, &hash));
        let (state, seen_at) =
            tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("waiter ends").expect("join");
        match state.expect("wait_invoice") {
            InvoiceState::Settled(s) => assert_eq!(s.amount_received, Msat::from_sat(sats)),
            other => panic!("expected settled, got {other:?}"),
        }
        let lag = seen_at.saturating_duration_since(paid_at);
        assert!(lag <= Duration::from_secs(1), "settlement seen {lag:?} after the payment");
        println!("LND-sim -> LND-sim ({sats} sat): settlement seen {lag:?} after the payer's success");
    }
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn each_injected_failure_is_its_own_typed_error_and_moves_no_money() {
    let n = network().await;
    let cases = [
        (Fault::NoRoute, PaymentFailure::NoRoute),
        (Fault::Timeout, PaymentFailure::Timeout),
        (Fault::InsufficientBalance, PaymentFailure::InsufficientBalance),
        (Fault::IncorrectPaymentDetails, PaymentFailure::IncorrectPaymentDetails),
    ];
    let mut last = None;
    for (fault, expected) in cases {
        let (bolt11, hash) = invoice(n.bob.as_ref(), 5_000).await;
        n.sim_alice.inject(fault.clone());
        let (events, progress) = recorder();
        let err = n.lnd_alice.pay(&pay_request(&bolt11, hash, 5_000), &progress).await.expect_err("injected");
        assert_eq!(err, PayError::Failed(expected.clone()), "{fault:?}");
        assert_eq!(events_of(&events).last(), Some(&PaymentEvent::Failed(expected.clone())));
        assert_eq!(n.lnd_alice.payment_status(&hash).await.expect("status"), PaymentStatus::Failed(expected));
        assert_eq!(n.bob.lookup_invoice(&hash).await.expect("lookup"), InvoiceState::Open, "no money moved");
        assert_eq!(outbound_payments_to(&n.alice, &hash), 0, "nothing left alice's node");
        last = Some((bolt11, hash));
    }
    assert_eq!(n.sim_alice.backend_payments(), 0);

    // LND lets a FAILED hash be paid again: now it really is.
    let (bolt11, hash) = last.expect("cases ran");
    let paid = n.lnd_alice.pay(&pay_request(&bolt11, hash, 5_000), &|_| {}).await.expect("retry pays");
    assert_eq!(paid.preimage.payment_hash(), hash);
    assert_eq!(n.sim_alice.backend_payments(), 1);

    // Refused before anything is sent: zero fee limit, wrong amount, wrong hash.
    let (bolt11, hash) = invoice(n.bob.as_ref(), 6_000).await;
    let mut zero_fee = pay_request(&bolt11, hash, 6_000);
    zero_fee.max_fee = Msat(0);
    assert!(matches!(n.lnd_alice.pay(&zero_fee, &|_| {}).await, Err(PayError::Rejected(m)) if m.contains("zero fee")));
    let wrong_amount = pay_request(&bolt11, hash, 7_000);
    assert!(
        matches!(n.lnd_alice.pay(&wrong_amount, &|_| {}).await, Err(PayError::Rejected(m)) if m.contains("amount"))
    );
    let wrong_hash = pay_request(&bolt11, PaymentHash([7; 32]), 6_000);
    assert!(matches!(n.lnd_alice.pay(&wrong_hash, &|_| {}).await, Err(PayError::Rejected(m)) if m.contains("hash")));
    assert_eq!(n.lnd_alice.payment_status(&hash).await.expect("status"), PaymentStatus::Unknown, "nothing sent");
    assert_eq!(n.sim_alice.backend_payments(), 1);

    // Held IN_FLIGHT for 2 s: reported in flight meanwhile, then really paid.
    n.sim_alice.inject(Fault::InFlightFor(Duration::from_secs(2)));
    let (events, progress) = recorder();
    let started = Instant::now();
    let payer = n.lnd_alice.clone();
    let request = pay_request(&bolt11, hash, 6_000);
    let task = tokio::spawn(async move { payer.pay(&request, &progress).await });
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(n.lnd_alice.payment_status(&hash).await.expect("status"), PaymentStatus::InFlight);
    assert!(events_of(&events).contains(&PaymentEvent::InFlight));
    let paid = task.await.expect("join").expect("paid after the hold");
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(paid.preimage.payment_hash(), hash);
    assert_eq!(n.lnd_alice.payment_status(&hash).await.expect("status"), PaymentStatus::Succeeded(paid));
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_dropped_stream_is_resumed_and_an_interrupted_payment_is_found_again() {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paying_the_same_hash_twice_sends_one_payment() {
    let n = network().await;

    // One after the other: the second SendPaymentV2 gets AlreadyExists and follows the first.
    let (bolt11, hash) = invoice(&n.lnd_bob, 10_000).await;
    let request = pay_request(&bolt11, hash, 10_000);
    let first = n.lnd_alice.pay(&request, &|_| {}).await.expect("first");
    let second = n.lnd_alice.pay(&request, &|_| {}).await.expect("second returns the first's outcome");
    assert_eq!(first.preimage, second.preimage);
    assert_eq!((n.sim_alice.backend_payments(), outbound_payments_to(&n.alice, &hash)), (1, 1));

    // At the same time, while the first is in flight.
    let (bolt11, hash) = invoice(&n.lnd_bob, 11_000).await;
    let request = pay_request(&bolt11, hash, 11_000);
    n.sim_alice.inject(Fault::InFlightFor(Duration::from_secs(1)));
    let (a, b) = tokio::join!(n.lnd_alice.pay(&request, &|_| {}), async {
        tokio::time::sleep(Duration::from_millis(200)).await;
        n.lnd_alice.pay(&request, &|_| {}).await
    });
    let (a, b) = (a.expect("first"), b.expect("second"));
    assert_eq!(a.preimage, b.preimage);
    assert_eq!(a.preimage.payment_hash(), hash);
    assert_eq!((n.sim_alice.backend_payments(), outbound_payments_to(&n.alice, &hash)), (2, 1));

    // AlreadyExists straight away (an earlier process started the payment): tracked, not paid again.
    let (bolt11, hash) = invoice(&n.lnd_bob, 12_000).await;
    n.sim_alice.inject(Fault::AlreadyExists);
    let paid = n.lnd_alice.pay(&pay_request(&bolt11, hash, 12_000), &|_| {}).await.expect("tracked");
    assert_eq!(paid.preimage.payment_hash(), hash);
    assert_eq!((n.sim_alice.backend_payments(), outbound_payments_to(&n.alice, &hash)), (3, 1));
    match n.lnd_bob.lookup_invoice(&hash).await.expect("lookup") {
        InvoiceState::Settled(s) => assert_eq!(s.amount_received, Msat::from_sat(12_000), "paid exactly once"),
        other => panic!("expected settled, got {other:?}"),
    }
    n.shutdown().await;
}

/// alice -> bob -> carol, bob charging 15 sat + 0.1% over an announced channel, paid through LND's gRPC
/// (`l402-lnd` -> simulator -> alice's LDK node): `fee_limit_msat` one under bob's fee is NO_ROUTE and moves
/// nothing; exactly his fee pays, and `Payment.fee_msat` (in the payment stream and in TrackPaymentV2) is his
/// fee to the msat.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_routed_payment_through_lnd_reports_the_hops_fee_and_keeps_to_the_limit() {
    let n = network().await;
    let carol = n.net.ldk_node("carol").await.expect("carol");
    n.net.fund(&n.bob, 1_000_000).await.expect("fund bob");
    let fee = ForwardingFee { base_msat: 15_000, ppm: 1_000 };
    n.net.open_announced_channel(&n.bob, &carol, 500_000, fee, &[&n.alice]).await.expect("bob -> carol");

    let sats = 20_000;
    let hop_fee = fee.for_amount(sats * 1_000);
    let (bolt11, hash) = invoice(carol.as_ref(), sats).await;
    let capacity = n.alice.inner().list_channels()[0].outbound_capacity_msat;

    let mut req = pay_request(&bolt11, hash, sats);
    req.max_fee = Msat(hop_fee - 1);
    let r = n.lnd_alice.pay(&req, &|_| {}).await;
    assert_eq!(r, Err(PayError::Failed(PaymentFailure::NoRoute)), "bob's fee is over the limit");
    assert_eq!(n.alice.inner().list_channels()[0].outbound_capacity_msat, capacity, "no money moved");
    assert_eq!(carol.lookup_invoice(&hash).await.expect("lookup"), InvoiceState::Open);

    req.max_fee = Msat(hop_fee);
    let paid = n.lnd_alice.pay(&req, &|_| {}).await.expect("paid through bob");
    assert_eq!(paid.preimage.payment_hash(), hash);
    assert_eq!(paid.amount, Msat::from_sat(sats));
    assert_eq!(paid.fee, Msat(hop_fee), "LND's fee_msat is bob's fee, to the msat");
    assert_eq!(ldk_fee(&n.alice, &hash), Some(hop_fee), "and the node under the simulator agrees");
    match n.lnd_alice.payment_status(&hash).await.expect("status") {
        PaymentStatus::Succeeded(s) => assert_eq!(s, paid, "TrackPaymentV2 reports the same payment"),
        other => panic!("not succeeded: {other:?}"),
    }
    match carol.wait_invoice(&hash, Duration::from_secs(5)).await.expect("wait") {
        InvoiceState::Settled(s) => assert_eq!(s.amount_received, Msat::from_sat(sats)),
        other => panic!("not settled: {other:?}"),
    }
    drop(carol);
    n.shutdown().await;
}

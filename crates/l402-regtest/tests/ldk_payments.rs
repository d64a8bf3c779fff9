//! Real Lightning payments between embedded LDK nodes on a real regtest bitcoind.
#![allow(missing_docs)]

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use l402_ldk::LdkNode;
use l402_lightning::{
    InvoiceIssuer, InvoiceState, PayError, Payer, PaymentEvent, PaymentFailure, PaymentStatus, Retry,
};
use l402_proto::{Msat, PaymentHash};
use l402_regtest::payments::{amountless_invoice, invoice, ldk_fee, outbound_payments_to, pay_request};
use l402_regtest::{ForwardingFee, Regtest};

/// A network with alice -> bob, 500k sats.
async fn alice_bob() -> (Regtest, Arc<LdkNode>, Arc<LdkNode>) {
    let net = Regtest::start().await.expect("regtest starts (is bitcoind installed? scripts/install-bitcoind.sh)");
    let (alice, bob) = net.channel_pair("alice", "bob", 1_000_000, 500_000).await.expect("alice -> bob");
    (net, alice, bob)
}

fn recorder() -> (Arc<Mutex<Vec<PaymentEvent>>>, impl Fn(PaymentEvent) + Send + Sync) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    (events, move |e| sink.lock().expect("lock").push(e))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ldk_to_ldk_payment_returns_the_preimage_and_settles() {
    let (net, alice, bob) = alice_bob().await;
    let (bolt11, hash) = invoice(bob.as_ref(), 20_000).await;
    assert_eq!(bob.lookup_invoice(&hash).await.expect("lookup"), InvoiceState::Open);
    let mut settlements = bob.subscribe_settlements().await.expect("subscribe");

    let (events, progress) = recorder();
    let paid = alice.pay(&pay_request(&bolt11, hash, 20_000), &progress).await.expect("paid");
    let paid_at = Instant::now();
    assert_eq!(paid.preimage.payment_hash(), hash, "the preimage proves payment of this invoice");
    assert_eq!(paid.amount, Msat::from_sat(20_000));
    assert_eq!(Some(paid.fee.0), ldk_fee(&alice, &hash), "the fee reported is the node's record of it");
    let seen = events.lock().expect("lock").clone();
    assert_eq!(seen.first(), Some(&PaymentEvent::Initiated));
    assert!(seen.contains(&PaymentEvent::InFlight));
    assert_eq!(seen.last(), Some(&PaymentEvent::Succeeded(paid)));

    // The issuing side sees the settlement, by event, within a second of the payment.
    let settled = tokio::time::timeout(Duration::from_secs(1), settlements.next())
        .await
        .expect("settlement within a second")
        .expect("stream open")
        .expect("settlement");
    assert!(paid_at.elapsed() <= Duration::from_secs(1));
    assert_eq!(settled.payment_hash, hash);
    assert_eq!(settled.amount_received, Msat::from_sat(20_000));
    // And by lookup.
    match bob.wait_invoice(&hash, Duration::from_secs(1)).await.expect("wait") {
        InvoiceState::Settled(s) => assert_eq!(s.amount_received, Msat::from_sat(20_000)),
        other => panic!("not settled: {other:?}"),
    }
    assert!(matches!(alice.payment_status(&hash).await.expect("status"), PaymentStatus::Succeeded(s) if s == paid));
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paying_the_same_hash_twice_sends_one_payment() {
    let (net, alice, bob) = alice_bob().await;
    let (bolt11, hash) = invoice(bob.as_ref(), 15_000).await;
    let req = pay_request(&bolt11, hash, 15_000);
    let before = alice.inner().list_channels()[0].outbound_capacity_msat;

    // Concurrently, then once more after it settled.
    let (a, b) = tokio::join!(alice.pay(&req, &|_| {}), alice.pay(&req, &|_| {}));
    let first = a.expect("first");
    assert_eq!(b.expect("second").preimage, first.preimage);
    let again = alice.pay(&req, &|_| {}).await.expect("third");
    assert_eq!(again.preimage, first.preimage);

    assert_eq!(outbound_payments_to(&alice, &hash), 1, "one payment record");
    let after = alice.inner().list_channels()[0].outbound_capacity_msat;
    assert_eq!(before - after, 15_000_000, "the channel moved the amount once");
    match bob.lookup_invoice(&hash).await.expect("lookup") {
        InvoiceState::Settled(s) => assert_eq!(s.amount_received, Msat::from_sat(15_000)),
        other => panic!("{other:?}"),
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_interrupted_payment_is_found_again_by_hash() {
    let (net, alice, bob) = alice_bob().await;
    let (bolt11, hash) = invoice(bob.as_ref(), 12_000).await;
    let req = pay_request(&bolt11, hash, 12_000);

    // The paying task is dropped as soon as the payment is in flight (a crash or lost connection of the caller).
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let tx = Mutex::new(Some(tx));
    let payer = alice.clone();
    let task = tokio::spawn(async move {
        let progress = move |e: PaymentEvent| {
            if e == PaymentEvent::InFlight {
                if let Some(tx) = tx.lock().expect("lock").take() {
                    let _ = tx.send(());
                }
            }
        };
        payer.pay(&req, &progress).await
    });
    rx.await.expect("payment went in flight");
    task.abort();
    let _ = task.await;

    // Found again by hash: tracking recovers the preimage, and no second payment is sent.
    let found = alice.track_payment(&hash, Duration::from_secs(30), &|_| {}).await.expect("tracked");
    assert_eq!(found.preimage.payment_hash(), hash);
    assert_eq!(outbound_payments_to(&alice, &hash), 1);
    let unknown = PaymentHash([7; 32]);
    assert_eq!(alice.payment_status(&unknown).await.expect("status"), PaymentStatus::Unknown);
    assert!(matches!(alice.track_payment(&unknown, Duration::from_secs(1), &|_| {}).await, Err(PayError::Node(_))));
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn failures_are_typed_and_move_no_money() {
    let (net, alice, bob) = alice_bob().await;
    let carol = net.ldk_node("carol").await.expect("carol");
    let capacity = alice.inner().list_channels()[0].outbound_capacity_msat;

    // More than the channel holds: insufficient balance, nothing sent.
    let (big, big_hash) = invoice(bob.as_ref(), 600_000).await;
    let r = alice.pay(&pay_request(&big, big_hash, 600_000), &|_| {}).await;
    assert_eq!(r, Err(PayError::Failed(PaymentFailure::InsufficientBalance)));
    assert_eq!(PaymentFailure::InsufficientBalance.retry(), Retry::Never);
    assert_eq!(alice.payment_status(&big_hash).await.expect("status"), PaymentStatus::Unknown);

    // No channel to carol: no route.
    let (to_carol, carol_hash) = invoice(carol.as_ref(), 1_000).await;
    let r = alice.pay(&pay_request(&to_carol, carol_hash, 1_000), &|_| {}).await;
    assert_eq!(r, Err(PayError::Failed(PaymentFailure::NoRoute)));
    assert_eq!(PaymentFailure::NoRoute.retry(), Retry::WithHigherFee);

    // The payee refuses the payment (a hold invoice, which LdkNode fails back): incorrect payment details.
    use l402_ldk::ldk_node::lightning_invoice::{Bolt11InvoiceDescription, Description};
    use l402_ldk::ldk_node::lightning_types::payment::PaymentHash as LdkHash;
    let forgotten = LdkHash([0x42; 32]);
    let desc = Bolt11InvoiceDescription::Direct(Description::new("gone".into()).expect("desc"));
    let inv = bob.inner().bolt11_payment().receive_for_hash(5_000_000, &desc, 600, forgotten).expect("invoice");
    let r = alice.pay(&pay_request(&inv.to_string(), PaymentHash(forgotten.0), 5_000), &|_| {}).await;
    assert_eq!(r, Err(PayError::Failed(PaymentFailure::IncorrectPaymentDetails)));

    // Refused before sending: a zero fee limit, an amount or hash that differ from the invoice's.
    let (ok, ok_hash) = invoice(bob.as_ref(), 1_000).await;
    let mut zero_fee = pay_request(&ok, ok_hash, 1_000);
    zero_fee.max_fee = Msat(0);
    assert!(matches!(alice.pay(&zero_fee, &|_| {}).await, Err(PayError::Rejected(_))));
    assert!(matches!(alice.pay(&pay_request(&ok, ok_hash, 999), &|_| {}).await, Err(PayError::Rejected(_))));
    assert!(matches!(
        alice.pay(&pay_request(&ok, PaymentHash([1; 32]), 1_000), &|_| {}).await,
        Err(PayError::Rejected(_))
    ));

    assert_eq!(alice.inner().list_channels()[0].outbound_capacity_msat, capacity, "no money moved");
    net.shutdown().await;
}

/// An amountless invoice (what a session client hands the server for its refund) is paid with the amount the
/// payer chooses, and the payee's node records exactly that amount; `pay` keeps refusing it, and
/// `pay_amountless` refuses an invoice that names an amount.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_amountless_invoice_is_paid_with_the_amount_chosen() {
    let (net, alice, bob) = alice_bob().await;
    let (bolt11, hash) = amountless_invoice(bob.as_ref()).await;
    let (_, decoded) = l402_proto::invoice::decode_invoice(&bolt11).expect("decodes");
    assert_eq!(decoded.amount, None, "the invoice carries no amount");
    assert_eq!(decoded.payment_hash, hash);
    let capacity = alice.inner().list_channels()[0].outbound_capacity_msat;

    // `pay` refuses it before sending: an amountless invoice lets the payer choose, never for a price.
    let r = alice.pay(&pay_request(&bolt11, hash, 12_345), &|_| {}).await;
    assert!(matches!(r, Err(PayError::Rejected(_))), "{r:?}");
    assert_eq!(alice.payment_status(&hash).await.expect("status"), PaymentStatus::Unknown, "nothing sent");
    // And `pay_amountless` refuses a zero amount or another hash.
    let zero = pay_request(&bolt11, hash, 0);
    assert!(matches!(alice.pay_amountless(&zero, &|_| {}).await, Err(PayError::Rejected(_))));
    let wrong_hash = pay_request(&bolt11, PaymentHash([3; 32]), 12_345);
    assert!(matches!(alice.pay_amountless(&wrong_hash, &|_| {}).await, Err(PayError::Rejected(_))));

    let mut chosen = pay_request(&bolt11, hash, 0);
    chosen.amount = Msat(12_345_678);
    let paid = alice.pay_amountless(&chosen, &|_| {}).await.expect("paid with the amount chosen");
    assert_eq!(paid.preimage.payment_hash(), hash, "the preimage proves payment of this invoice");
    assert_eq!(paid.amount, Msat(12_345_678));
    match bob.wait_invoice(&hash, Duration::from_secs(5)).await.expect("wait") {
        InvoiceState::Settled(s) => assert_eq!(s.amount_received, Msat(12_345_678), "bob received what was sent"),
        other => panic!("not settled: {other:?}"),
    }
    // Idempotent per hash: again, nothing new is sent.
    let again = alice.pay_amountless(&chosen, &|_| {}).await.expect("the first payment's outcome");
    assert_eq!(again.preimage, paid.preimage);
    assert_eq!(outbound_payments_to(&alice, &hash), 1, "one payment record");
    let expected = capacity - 12_345_678 - paid.fee.0;
    assert_eq!(settled_capacity(&alice, expected).await, expected, "alice paid the amount chosen (and the fee)");

    // `pay_amountless` refuses an invoice that names an amount, before sending.
    let (priced, priced_hash) = invoice(bob.as_ref(), 1_000).await;
    let r = alice.pay_amountless(&pay_request(&priced, priced_hash, 1_000), &|_| {}).await;
    assert!(matches!(r, Err(PayError::Rejected(_))), "{r:?}");
    assert_eq!(alice.payment_status(&priced_hash).await.expect("status"), PaymentStatus::Unknown, "nothing sent");
    assert_eq!(bob.lookup_invoice(&priced_hash).await.expect("lookup"), InvoiceState::Open);
    net.shutdown().await;
}

/// Alice's outbound capacity on her one channel, once it stops moving (an HTLC's removal finishes a moment
/// after the payer learns the preimage).
async fn settled_capacity(node: &LdkNode, expected: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = node.inner().list_channels()[0].outbound_capacity_msat;
        if now == expected || Instant::now() >= deadline {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// alice -> bob -> carol, bob charging 15 sat + 0.1% to forward over an announced channel: a fee limit one msat
/// under his fee finds no route and moves nothing; a limit of exactly his fee pays it, to the msat, and no more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_routed_payment_pays_the_hops_fee_and_never_more_than_the_limit() {
    let (net, alice, bob) = alice_bob().await;
    let carol = net.ldk_node("carol").await.expect("carol");
    net.fund(&bob, 1_000_000).await.expect("fund bob");
    let fee = ForwardingFee { base_msat: 15_000, ppm: 1_000 };
    net.open_announced_channel(&bob, &carol, 500_000, fee, &[&alice]).await.expect("bob -> carol, gossiped");

    let sats = 20_000;
    let hop_fee = fee.for_amount(sats * 1_000);
    assert_eq!(hop_fee, 35_000);
    let (bolt11, hash) = invoice(carol.as_ref(), sats).await;
    let capacity = alice.inner().list_channels()[0].outbound_capacity_msat;

    let mut req = pay_request(&bolt11, hash, sats);
    req.max_fee = Msat(hop_fee - 1);
    let r = alice.pay(&req, &|_| {}).await;
    assert_eq!(r, Err(PayError::Failed(PaymentFailure::NoRoute)), "bob's fee is over the limit");
    assert_eq!(carol.lookup_invoice(&hash).await.expect("lookup"), InvoiceState::Open);
    assert_eq!(alice.inner().list_channels()[0].outbound_capacity_msat, capacity, "no money moved");

    // The same hash again, with the limit raised to bob's fee (what the client's one retry does).
    req.max_fee = Msat(hop_fee);
    let paid = alice.pay(&req, &|_| {}).await.expect("paid through bob");
    assert_eq!(paid.preimage.payment_hash(), hash);
    assert_eq!(paid.amount, Msat::from_sat(sats));
    assert_eq!(paid.fee, Msat(hop_fee), "the fee is bob's policy for this amount, to the msat");
    assert_eq!(ldk_fee(&alice, &hash), Some(hop_fee), "the node's own record says the same");
    match carol.wait_invoice(&hash, Duration::from_secs(5)).await.expect("wait") {
        InvoiceState::Settled(s) => assert_eq!(s.amount_received, Msat::from_sat(sats), "carol got the price"),
        other => panic!("not settled: {other:?}"),
    }
    let expected = capacity - sats * 1_000 - hop_fee;
    assert_eq!(settled_capacity(&alice, expected).await, expected, "alice paid the price plus bob's fee");
    net.shutdown().await;
}

#[test]
fn no_bitcoind_is_left_behind_even_when_a_test_panics() {
    let pid = Arc::new(Mutex::new(None));
    let seen = pid.clone();
    let crashed = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
        rt.block_on(async move {
            let net = Regtest::start().await.expect("regtest");
            *seen.lock().expect("lock") = net.bitcoind().pid();
            panic!("a test failing half way");
        });
    })
    .join();
    assert!(crashed.is_err(), "the thread panicked");
    let pid = pid.lock().expect("lock").expect("bitcoind had started");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if state.split_whitespace().nth(2) == Some("Z") {
            break; // reaped by nobody yet, but dead
        }
        assert!(Instant::now() < deadline, "bitcoind {pid} still running");
        std::thread::sleep(Duration::from_millis(100));
    }
}

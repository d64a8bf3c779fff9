//! The LND adapter against real LND (v0.21.2-beta, built by `scripts/install-peers.sh`) on a regtest network of
//! real bitcoind, real LND and real LDK nodes: every payment here moves real HTLCs over real channels, and
//! every claim is checked against what LND itself records (`lncli listpayments`, `lookupinvoice`).
//!
//! Each test that a simulator test (`l402-testkit/tests/regtest_payments.rs`, `tls_auth.rs`) makes with an
//! injected fault is made here with the real cause: a hold invoice for a long IN_FLIGHT, an LND restart for a
//! stream cut, an aborted task and a fresh connection for a killed payer, an invoice larger than the channel for
//! INSUFFICIENT_BALANCE, a fee-charging LND hop for NO_ROUTE.
#![allow(missing_docs)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use l402_ldk::LdkNode;
use l402_lightning::{
    InvoiceIssuer, InvoiceState, LightningErrorKind, Node, PayError, Payer, PaymentEvent, PaymentFailure, PaymentStatus,
};
use l402_lnd::{LndConfig, LndNode};
use l402_proto::{Msat, PaymentHash};
use l402_regtest::payments::{amountless_invoice, events_of, invoice, pay_request, recorder};
use l402_regtest::{ForwardingFee, Lnd, LndMacaroon, Regtest};
use serde_json::Value;

/// ldk (an LDK node), alice and bob (LND), with channels LDK -> alice (1M, 300k pushed), alice -> LDK (500k,
/// 100k pushed) and alice -> bob (1M, 300k pushed).
struct Net {
    net: Regtest,
    ldk: Arc<LdkNode>,
    alice: Arc<Lnd>,
    bob: Arc<Lnd>,
}

async fn network() -> Net {
    let net = Regtest::start().await.expect("regtest starts (is bitcoind installed? scripts/install-bitcoind.sh)");
    let ldk = net.ldk_node("ldk").await.expect("ldk");
    let alice = net.lnd_node("alice").await.expect("LND alice starts (built by scripts/install-peers.sh?)");
    let bob = net.lnd_node("bob").await.expect("LND bob");
    net.fund(&ldk, 2_000_000).await.expect("fund ldk");
    net.fund_lnd(&alice, 3_000_000).await.expect("fund alice");
    net.open_channel_to_lnd(&ldk, &alice, 1_000_000, 300_000_000).await.expect("LDK -> LND channel");
    net.open_channel_from_lnd(&alice, &ldk, 500_000, 100_000).await.expect("LND -> LDK channel");
    net.open_channel_lnd_to_lnd(&alice, &bob, 1_000_000, 300_000, None, &[]).await.expect("LND -> LND channel");
    Net { net, ldk, alice, bob }
}

impl Net {
    async fn shutdown(self) {
        drop((self.ldk, self.alice, self.bob));
        self.net.shutdown().await;
    }
}

/// LND's own records of its payments to `hash`.
async fn lnd_payments_to(lnd: &Lnd, hash: &PaymentHash) -> Vec<Value> {
    let hex = hex::encode(hash.0);
    lnd.payments().await.expect("listpayments").into_iter().filter(|p| p["payment_hash"] == hex.as_str()).collect()
}

fn msat_of(v: &Value) -> u64 {
    v.as_str().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("not a msat string: {v}"))
}

/// A hold invoice of `sats` on `lnd` for a fresh preimage: its BOLT-11 string, hash and preimage (hex).
async fn hold_invoice(lnd: &Lnd, sats: u64) -> (String, PaymentHash, String) {
    let mut preimage = [0u8; 32];
    getrandom::fill(&mut preimage).expect("random");
    let hash = l402_proto::Preimage(preimage).payment_hash();
    let v =
        lnd.lncli(&["addholdinvoice", &hex::encode(hash.0), &format!("--amt={sats}")]).await.expect("addholdinvoice");
    (v["payment_request"].as_str().expect("payment_request").to_owned(), hash, hex::encode(preimage))
}

async fn wait_status(node: &LndNode, hash: &PaymentHash, want: fn(&PaymentStatus) -> bool) -> PaymentStatus {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = node.payment_status(hash).await.expect("payment_status");
        if want(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "payment status stayed {status:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the hold invoice of `lnd` for `hash` holds the HTLC (state ACCEPTED).
async fn wait_held(lnd: &Lnd, hash: &PaymentHash) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = lnd.lncli(&["lookupinvoice", &hex::encode(hash.0)]).await.expect("lookupinvoice");
        if v["state"] == "ACCEPTED" {
            return;
        }
        assert!(Instant::now() < deadline, "the hold invoice never held the HTLC: {}", v["state"]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn settled_amount(issuer: &dyn InvoiceIssuer, hash: &PaymentHash) -> Msat {
    match issuer.lookup_invoice(hash).await.expect("lookup") {
        InvoiceState::Settled(s) => s.amount_received,
        other => panic!("expected settled, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_direction_pays_on_real_lnd_and_the_payee_sees_it_within_a_second() {
    let n = network().await;
    let alice_pay = n.alice.connect(LndMacaroon::Pay).await.expect("alice, pay-only macaroon");
    let alice_inv = n.alice.connect(LndMacaroon::Invoice).await.expect("alice, invoice macaroon");
    let bob_pay = n.bob.connect(LndMacaroon::Pay).await.expect("bob, pay-only macaroon");
    let bob_inv = n.bob.connect(LndMacaroon::Invoice).await.expect("bob, invoice macaroon");
    let info = alice_pay.info().await.expect("GetInfo");
    assert_eq!(
        (info.pubkey.as_str(), info.network),
        (n.alice.pubkey(), l402_proto::lightning_invoice::Currency::Regtest)
    );

    // LND -> LDK.
    let (bolt11, hash) = invoice(n.ldk.as_ref(), 21_000).await;
    let mut ldk_settlements = n.ldk.subscribe_settlements().await.expect("subscribe");
    let (events, progress) = recorder();
    let paid = alice_pay.pay(&pay_request(&bolt11, hash, 21_000), &progress).await.expect("LND -> LDK");
    assert_eq!(paid.preimage.payment_hash(), hash, "the preimage proves payment of this invoice");
    assert_eq!(paid.amount, Msat::from_sat(21_000));
    let record = lnd_payments_to(&n.alice, &hash).await;
    assert_eq!(record.len(), 1, "LND records one payment: {record:?}");
    assert_eq!(record[0]["status"], "SUCCEEDED");
    assert_eq!(paid.fee, Msat(msat_of(&record[0]["fee_msat"])), "the fee is LND's own record");
    assert_eq!(record[0]["payment_preimage"], hex::encode(paid.preimage.0).as_str());
    let seen = events_of(&events);
    assert!(seen.contains(&PaymentEvent::InFlight) && seen.contains(&PaymentEvent::Attempt { number: 1 }), "{seen:?}");
    assert_eq!(seen.last(), Some(&PaymentEvent::Succeeded(paid)), "{seen:?}");
    println!("LND -> LDK: events {seen:?}");
    let settled = tokio::time::timeout(Duration::from_secs(1), ldk_settlements.next())
        .await
        .expect("the LDK payee sees the settlement within 1 s")
        .expect("stream open")
        .expect("settlement");
    assert_eq!((settled.payment_hash, settled.amount_received), (hash, Msat::from_sat(21_000)));

    // LDK -> LND: alice issues the invoice (AddInvoice with the invoice macaroon), LDK pays.
    let (bolt11, hash) = invoice(&alice_inv, 22_000).await;
    let (_, decoded) = l402_proto::invoice::decode_invoice(&bolt11).expect("decodes");
    assert_eq!(decoded.payee, n.alice.pubkey(), "the invoice is alice's node's");
    assert_eq!(decoded.amount, Some(Msat::from_sat(22_000)));
    assert_eq!(alice_inv.lookup_invoice(&hash).await.expect("lookup"), InvoiceState::Open);
    let mut lnd_settlements = alice_inv.subscribe_settlements().await.expect("SubscribeInvoices");
    let paid = n.ldk.pay(&pay_request(&bolt11, hash, 22_000), &|_| {}).await.expect("LDK -> LND");
    assert_eq!(paid.preimage.payment_hash(), hash);
    let settled = tokio::time::timeout(Duration::from_secs(1), lnd_settlements.next())
        .await
        .expect("SubscribeInvoices reports the settlement within 1 s")
        .expect("stream open")
        .expect("settlement");
    assert_eq!((settled.payment_hash, settled.amount_received), (hash, Msat::from_sat(22_000)));
    assert_eq!(settled_amount(&alice_inv, &hash).await, Msat::from_sat(22_000));

    // LND -> LND, both ways; the payee waits with SubscribeSingleInvoice.
    for (payer, payer_lnd, payee, sats) in
        [(&alice_pay, &n.alice, &bob_inv, 23_000), (&bob_pay, &n.bob, &alice_inv, 24_000)]
    {
        let (bolt11, hash) = invoice(payee, sats).await;
        let waiter = {
            let payee = payee.clone();
            tokio::spawn(async move {
                let state = payee.wait_invoice(&hash, Duration::from_secs(60)).await;
                (state, Instant::now())
            })
        };
        tokio::time::sleep(Duration::from_millis(200)).await;
        let paid = payer.pay(&pay_request(&bolt11, hash, sats), &|_| {}).await.expect("LND -> LND");
        let paid_at = Instant::now();
        assert_eq!(paid.preimage.payment_hash(), hash);
        assert_eq!(paid.amount, Msat::from_sat(sats));
        let record = lnd_payments_to(payer_lnd, &hash).await;
        assert_eq!((record.len(), paid.fee), (1, Msat(msat_of(&record[0]["fee_msat"]))));
        let (state, seen_at) =
            tokio::time::timeout(Duration::from_secs(5), waiter).await.expect("waiter ends").expect("join");
        match state.expect("wait_invoice") {
            InvoiceState::Settled(s) => assert_eq!(s.amount_received, Msat::from_sat(sats)),
            other => panic!("expected settled, got {other:?}"),
        }
        let lag = seen_at.saturating_duration_since(paid_at);
        assert!(lag <= Duration::from_secs(1), "settlement seen {lag:?} after the payment");
        println!("LND -> LND ({sats} sat): settlement seen {lag:?} after the payer's success");
    }

    // A settlement stream survives the payee's LND restarting: it resumes from its last indexes and reports
    // the next settlement exactly once.
    let height = n.net.bitcoind().block_count().await.expect("height");
    n.alice.restart(height).await.expect("alice restarts");
    let (bolt11, hash) = invoice(&alice_inv, 25_000).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    let paid = loop {
        // Right after a restart alice reconnects to bob (a persistent peer); until then bob's channel is
        // inactive and the payment finds no usable channel.
        match bob_pay.pay(&pay_request(&bolt11, hash, 25_000), &|_| {}).await {
            Ok(paid) => break paid,
            Err(e) if Instant::now() < deadline => {
                println!("bob -> restarted alice: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(e) => panic!("bob never paid the restarted alice: {e}"),
        }
    };
    assert_eq!(paid.preimage.payment_hash(), hash);
    // The stream still holds the 24,000 sat settlement from before the restart; then ours comes, and nothing
    // is reported twice.
    let mut seen = Vec::new();
    while !seen.contains(&hash) {
        let settled = tokio::time::timeout(Duration::from_secs(30), lnd_settlements.next())
            .await
            .expect("the resumed stream reports the settlement")
            .expect("stream open")
            .expect("settlement");
        assert!(!seen.contains(&settled.payment_hash), "reported twice: {}", settled.payment_hash);
        seen.push(settled.payment_hash);
    }
    assert_eq!(seen.len(), 2, "the one before the restart and ours: {seen:?}");
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn interrupted_and_held_payments_on_real_lnd_are_followed_to_their_real_outcome() {
    let n = network().await;
    let alice_pay = n.alice.connect(LndMacaroon::Pay).await.expect("alice, pay-only macaroon");

    // A long IN_FLIGHT: bob holds the HTLC (a hold invoice). The payer's task is killed mid-payment; a new
    // client on a new connection finds the payment in flight by hash, and once bob settles, TrackPaymentV2
    // gives the preimage.
    let (bolt11, hash, preimage) = hold_invoice(&n.bob, 7_000).await;
    let (events, progress) = recorder();
    let payer = alice_pay.clone();
    let request = pay_request(&bolt11, hash, 7_000);
    let task = tokio::spawn(async move { payer.pay(&request, &progress).await });
    let fresh = n.alice.connect(LndMacaroon::Pay).await.expect("a second client");
    assert_eq!(wait_status(&fresh, &hash, |s| *s == PaymentStatus::InFlight).await, PaymentStatus::InFlight);
    wait_held(&n.bob, &hash).await;
    task.abort();
    assert!(events_of(&events).contains(&PaymentEvent::InFlight), "{:?}", events_of(&events));
    drop(alice_pay);
    let again = n.alice.connect(LndMacaroon::Pay).await.expect("a client after the payer died");
    assert_eq!(again.payment_status(&hash).await.expect("status"), PaymentStatus::InFlight, "still held");
    // Paying it again is AlreadyExists at LND: followed, not sent twice.
    let second = {
        let again = again.clone();
        let request = pay_request(&bolt11, hash, 7_000);
        tokio::spawn(async move { again.pay(&request, &|_| {}).await })
    };
    let tracker = {
        let again = again.clone();
        tokio::spawn(async move { again.track_payment(&hash, Duration::from_secs(60), &|_| {}).await })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    n.bob.lncli(&["settleinvoice", &preimage]).await.expect("settleinvoice");
    let tracked = tracker.await.expect("join").expect("TrackPaymentV2 follows it to success");
    assert_eq!(hex::encode(tracked.preimage.0), preimage, "the preimage recovered");
    assert_eq!(second.await.expect("join").expect("the second pay follows the first"), tracked);
    assert_eq!(lnd_payments_to(&n.alice, &hash).await.len(), 1, "one payment");
    assert_eq!(
        msat_of(&n.bob.lncli(&["lookupinvoice", &hex::encode(hash.0)]).await.expect("lookup")["amt_paid_msat"]),
        7_000_000
    );

    // A stream cut: the payer's LND is restarted while the HTLC is held. `pay` keeps following the payment
    // across the restart (TrackPaymentV2 after reconnecting) and returns its real outcome once bob settles.
    let (bolt11, hash, preimage) = hold_invoice(&n.bob, 8_000).await;
    let mut config = n.alice.config(LndMacaroon::Pay).expect("config");
    config.reconnect_timeout = Duration::from_secs(60);
    let payer = LndNode::connect(config).await.expect("alice");
    let task = {
        let payer = payer.clone();
        let request = pay_request(&bolt11, hash, 8_000);
        tokio::spawn(async move { payer.pay(&request, &|_| {}).await })
    };
    wait_held(&n.bob, &hash).await;
    let height = n.net.bitcoind().block_count().await.expect("height");
    let cut = Instant::now();
    n.alice.restart(height).await.expect("alice restarts mid-payment");
    println!("alice restarted in {:?} with the HTLC held", cut.elapsed());
    assert!(!task.is_finished(), "the payment is not reported failed when its stream is cut");
    assert_eq!(wait_status(&payer, &hash, |s| *s == PaymentStatus::InFlight).await, PaymentStatus::InFlight);
    n.bob.lncli(&["settleinvoice", &preimage]).await.expect("settleinvoice");
    let paid = tokio::time::timeout(Duration::from_secs(90), task)
        .await
        .expect("pay ends once bob settles")
        .expect("join")
        .expect("paid across the restart");
    assert_eq!(hex::encode(paid.preimage.0), preimage);
    assert_eq!(lnd_payments_to(&n.alice, &hash).await.len(), 1);

    // Held for longer than the payer waits: OutcomeUnknown (never Failed), and the payment stays in flight.
    let (bolt11, hash, preimage) = hold_invoice(&n.bob, 9_000).await;
    let mut config = n.alice.config(LndMacaroon::Pay).expect("config");
    config.resume_margin = Duration::from_secs(2);
    let impatient = LndNode::connect(config).await.expect("alice");
    let mut request = pay_request(&bolt11, hash, 9_000);
    request.timeout = Duration::from_secs(2);
    let r = impatient.pay(&request, &|_| {}).await;
    assert!(matches!(r, Err(PayError::OutcomeUnknown(_))), "{r:?}");
    wait_held(&n.bob, &hash).await;
    assert_eq!(impatient.payment_status(&hash).await.expect("status"), PaymentStatus::InFlight);
    n.bob.lncli(&["settleinvoice", &preimage]).await.expect("settleinvoice");
    let status = wait_status(&impatient, &hash, |s| matches!(s, PaymentStatus::Succeeded(_))).await;
    assert!(matches!(status, PaymentStatus::Succeeded(s) if hex::encode(s.preimage.0) == preimage));
    n.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn real_lnd_refusals_are_typed_and_move_no_money() {
    let n = network().await;
    let alice_pay = n.alice.connect(LndMacaroon::Pay).await.expect("alice, pay-only macaroon");
    let bob_inv = n.bob.connect(LndMacaroon::Invoice).await.expect("bob, invoice macaroon");

    // Paying the same hash twice, one after the other, then at the same time: one payment.
    let (bolt11, hash) = invoice(&bob_inv, 10_000).await;
    let request = pay_request(&bolt11, hash, 10_000);
    let first = alice_pay.pay(&request, &|_| {}).await.expect("first");
    let second = alice_pay.pay(&request, &|_| {}).await.expect("second returns the first's outcome");
    assert_eq!(first.preimage, second.preimage);
    assert_eq!(lnd_payments_to(&n.alice, &hash).await.len(), 1);
    let (bolt11, hash) = invoice(&bob_inv, 11_000).await;
    let request = pay_request(&bolt11, hash, 11_000);
    let other_client = n.alice.connect(LndMacaroon::Pay).await.expect("another client");
    let (a, b) = tokio::join!(alice_pay.pay(&request, &|_| {}), other_client.pay(&request, &|_| {}));
    let (a, b) = (a.expect("first"), b.expect("second"));
    assert_eq!((a.preimage, a.preimage.payment_hash()), (b.preimage, hash));
    assert_eq!(lnd_payments_to(&n.alice, &hash).await.len(), 1, "LND sent one payment");
    assert_eq!(settled_amount(&bob_inv, &hash).await, Msat::from_sat(11_000), "bob was paid exactly once");

    // INSUFFICIENT_BALANCE: more than alice holds in all her channels together. (More than one channel holds
    // but less than all of them is NO_ROUTE on LND, with one part per payment.)
    let outbound = n.alice.outbound_msat().await.expect("channelbalance");
    let sats = outbound / 1_000 + 100_000;
    let (bolt11, hash) = invoice(&bob_inv, sats).await;
    let r = alice_pay.pay(&pay_request(&bolt11, hash, sats), &|_| {}).await;
    println!("paying {sats} sat with {outbound} msat outbound: {r:?}");
    assert_eq!(r, Err(PayError::Failed(PaymentFailure::InsufficientBalance)));
    assert_eq!(n.alice.outbound_msat().await.expect("channelbalance"), outbound, "no money moved");
    assert_eq!(bob_inv.lookup_invoice(&hash).await.expect("lookup"), InvoiceState::Open);
    assert_eq!(
        alice_pay.payment_status(&hash).await.expect("status"),
        PaymentStatus::Failed(PaymentFailure::InsufficientBalance)
    );

    // INCORRECT_PAYMENT_DETAILS: bob canceled the invoice; his node fails the HTLC back.
    let (bolt11, hash) = invoice(&bob_inv, 4_000).await;
    n.bob.lncli(&["cancelinvoice", &hex::encode(hash.0)]).await.expect("cancelinvoice");
    let before = n.alice.outbound_msat().await.expect("channelbalance");
    let r = alice_pay.pay(&pay_request(&bolt11, hash, 4_000), &|_| {}).await;
    assert_eq!(r, Err(PayError::Failed(PaymentFailure::IncorrectPaymentDetails)));
    assert_eq!(n.alice.outbound_msat().await.expect("channelbalance"), before, "the HTLC came back");

    // Refused before anything is sent: zero fee limit, wrong amount, wrong hash.
    let (bolt11, hash) = invoice(&bob_inv, 6_000).await;
    let mut zero_fee = pay_request(&bolt11, hash, 6_000);
    zero_fee.max_fee = Msat(0);
    assert!(matches!(alice_pay.pay(&zero_fee, &|_| {}).await, Err(PayError::Rejected(m)) if m.contains("zero fee")));
    let wrong_amount = pay_request(&bolt11, hash, 7_000);
    assert!(matches!(alice_pay.pay(&wrong_amount, &|_| {}).await, Err(PayError::Rejected(m)) if m.contains("amount")));
    let wrong_hash = pay_request(&bolt11, PaymentHash([7; 32]), 6_000);
    assert!(matches!(alice_pay.pay(&wrong_hash, &|_| {}).await, Err(PayError::Rejected(m)) if m.contains("hash")));
    assert_eq!(alice_pay.payment_status(&hash).await.expect("status"), PaymentStatus::Unknown, "nothing sent");

    // TLS: LND's real IsCA certificate pinned works (above); bob's certificate is refused for alice's address.
    let wrong_cert = LndConfig::new(
        &n.alice.rpc_address(),
        &n.bob.tls_cert_path().display().to_string(),
        &n.alice.macaroon_path(LndMacaroon::Admin).display().to_string(),
    )
    .expect("config");
    let err = LndNode::connect(wrong_cert).await.expect_err("another node's certificate is refused");
    assert_eq!(err.kind, LightningErrorKind::TlsCertificate, "{err}");

    // Macaroons: the invoice macaroon cannot pay, the pay-only macaroon cannot mint, bob's macaroon is not
    // alice's.
    let alice_inv = n.alice.connect(LndMacaroon::Invoice).await.expect("alice, invoice macaroon");
    let (bolt11, hash) = invoice(&bob_inv, 5_000).await;
    let r = alice_inv.pay(&pay_request(&bolt11, hash, 5_000), &|_| {}).await;
    assert!(matches!(&r, Err(PayError::Node(e)) if e.kind == LightningErrorKind::Unauthenticated), "{r:?}");
    let req =
        l402_lightning::InvoiceRequest { amount: Msat::from_sat(1), memo: "x".into(), expiry: Duration::from_secs(60) };
    let err = alice_pay.create_invoice(&req).await.expect_err("the pay-only macaroon cannot mint");
    assert_eq!(err.kind, LightningErrorKind::Unauthenticated, "{err}");
    let foreign = LndConfig::new(
        &n.alice.rpc_address(),
        &n.alice.tls_cert_path().display().to_string(),
        &n.bob.macaroon_path(LndMacaroon::Admin).display().to_string(),
    )
    .expect("config");
    let err = LndNode::connect(foreign).await.expect_err("bob's macaroon is refused by alice");
    assert_eq!(err.kind, LightningErrorKind::Unauthenticated, "{err}");
    assert_eq!(bob_inv.lookup_invoice(&hash).await.expect("lookup"), InvoiceState::Open, "nothing was paid");

    // The lndconnect URI carries the certificate and the macaroon.
    let uri = n.alice.lndconnect_uri(LndMacaroon::Pay).expect("uri");
    let by_uri = LndNode::connect(LndConfig::from_lndconnect(&uri).expect("parses")).await.expect("connects");
    assert_eq!(by_uri.info().await.expect("GetInfo").pubkey, n.alice.pubkey());
    n.shutdown().await;
}

/// An amountless invoice from LND (`AddInvoice` with value 0) is paid by LND (`SendPaymentV2` with
/// `amt_msat`) with the amount chosen, and the payee's LND records exactly that; `pay` keeps refusing it and
/// `pay_amountless` refuses an invoice that names an amount.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_amountless_lnd_invoice_is_paid_with_the_amount_chosen() {
    let net = Regtest::start().await.expect("regtest");
    let alice = net.lnd_node("alice").await.expect("LND alice starts (built by scripts/install-peers.sh?)");
    let bob = net.lnd_node("bob").await.expect("LND bob");
    net.fund_lnd(&alice, 2_000_000).await.expect("fund alice");
    net.open_channel_lnd_to_lnd(&alice, &bob, 1_000_000, 0, None, &[]).await.expect("LND -> LND channel");
    let alice_pay = alice.connect(LndMacaroon::Pay).await.expect("alice, pay-only macaroon");
    let bob_inv = bob.connect(LndMacaroon::Invoice).await.expect("bob, invoice macaroon");

    let (bolt11, hash) = amountless_invoice(&bob_inv).await;
    let (_, decoded) = l402_proto::invoice::decode_invoice(&bolt11).expect("decodes");
    assert_eq!((decoded.amount, decoded.payment_hash), (None, hash), "an amountless invoice of this hash");
    let looked_up = bob.lncli(&["lookupinvoice", &hex::encode(hash.0)]).await.expect("lookupinvoice");
    assert_eq!(looked_up["value_msat"], "0", "LND holds it as amountless: {looked_up}");

    let r = alice_pay.pay(&pay_request(&bolt11, hash, 7_000), &|_| {}).await;
    assert!(matches!(&r, Err(PayError::Rejected(m)) if m.contains("amount")), "{r:?}");
    let zero = pay_request(&bolt11, hash, 0);
    assert!(matches!(alice_pay.pay_amountless(&zero, &|_| {}).await, Err(PayError::Rejected(_))));
    let wrong_hash = pay_request(&bolt11, PaymentHash([9; 32]), 7_000);
    let r = alice_pay.pay_amountless(&wrong_hash, &|_| {}).await;
    assert!(matches!(&r, Err(PayError::Rejected(m)) if m.contains("hash")), "{r:?}");
    assert_eq!(alice_pay.payment_status(&hash).await.expect("status"), PaymentStatus::Unknown, "nothing sent");

    let mut chosen = pay_request(&bolt11, hash, 0);
    chosen.amount = Msat(7_654_321);
    let paid = alice_pay.pay_amountless(&chosen, &|_| {}).await.expect("paid with the amount chosen");
    assert_eq!(paid.preimage.payment_hash(), hash, "the preimage proves payment of this invoice");
    assert_eq!(paid.amount, Msat(7_654_321));
    assert_eq!(settled_amount(&bob_inv, &hash).await, Msat(7_654_321), "bob's LND received what was sent");
    let again = alice_pay.pay_amountless(&chosen, &|_| {}).await.expect("the first payment's outcome");
    assert_eq!(again.preimage, paid.preimage);
    let record = lnd_payments_to(&alice, &hash).await;
    assert_eq!(record.len(), 1, "LND sent one payment: {record:?}");
    assert_eq!(msat_of(&record[0]["value_msat"]), 7_654_321, "LND's own record of the amount");

    let (priced, priced_hash) = invoice(&bob_inv, 3_000).await;
    let r = alice_pay.pay_amountless(&pay_request(&priced, priced_hash, 3_000), &|_| {}).await;
    assert!(matches!(&r, Err(PayError::Rejected(m)) if m.contains("amount")), "{r:?}");
    assert_eq!(alice_pay.payment_status(&priced_hash).await.expect("status"), PaymentStatus::Unknown);
    assert_eq!(bob_inv.lookup_invoice(&priced_hash).await.expect("lookup"), InvoiceState::Open, "nothing paid");
    drop((alice_pay, bob_inv, alice, bob));
    net.shutdown().await;
}

/// alice -> bob -> carol, all LND, bob charging 15 sat + 0.1% over an announced channel: `fee_limit_msat` one
/// under bob's fee is NO_ROUTE and moves nothing; exactly his fee pays, and `Payment.fee_msat` (in the payment
/// stream and in TrackPaymentV2) is his fee to the msat, as LND records it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_routed_payment_through_a_fee_charging_lnd_hop_keeps_to_the_limit() {
    let net = Regtest::start().await.expect("regtest");
    let alice = net.lnd_node("alice").await.expect("alice");
    let bob = net.lnd_node("bob").await.expect("bob");
    let carol = net.lnd_node("carol").await.expect("carol");
    net.fund_lnd(&alice, 2_000_000).await.expect("fund alice");
    net.fund_lnd(&bob, 2_000_000).await.expect("fund bob");
    let fee = ForwardingFee { base_msat: 15_000, ppm: 1_000 };
    net.open_channel_lnd_to_lnd(&alice, &bob, 1_000_000, 0, None, &[]).await.expect("alice -> bob");
    net.open_channel_lnd_to_lnd(&bob, &carol, 500_000, 0, Some(fee), &[&alice]).await.expect("bob -> carol");

    let alice_pay = alice.connect(LndMacaroon::Pay).await.expect("alice");
    let carol_inv = carol.connect(LndMacaroon::Invoice).await.expect("carol");
    let sats = 20_000;
    let hop_fee = fee.for_amount(sats * 1_000);
    let (bolt11, hash) = invoice(&carol_inv, sats).await;
    let outbound = alice.outbound_msat().await.expect("channelbalance");

    let mut req = pay_request(&bolt11, hash, sats);
    req.max_fee = Msat(hop_fee - 1);
    let (events, progress) = recorder();
    let r = alice_pay.pay(&req, &progress).await;
    let record = lnd_payments_to(&alice, &hash).await;
    assert_eq!(
        r,
        Err(PayError::Failed(PaymentFailure::NoRoute)),
        "bob's fee is over the limit; events {:?}; LND's record {record:?}",
        events_of(&events)
    );
    assert_eq!(alice.outbound_msat().await.expect("channelbalance"), outbound, "no money moved");
    assert_eq!(carol_inv.lookup_invoice(&hash).await.expect("lookup"), InvoiceState::Open);

    req.max_fee = Msat(hop_fee);
    let paid = alice_pay.pay(&req, &|_| {}).await.expect("paid through bob");
    assert_eq!(paid.preimage.payment_hash(), hash);
    assert_eq!(paid.amount, Msat::from_sat(sats));
    assert_eq!(paid.fee, Msat(hop_fee), "LND's fee_msat is bob's fee, to the msat");
    let record = lnd_payments_to(&alice, &hash).await;
    let succeeded: Vec<_> = record.iter().filter(|p| p["status"] == "SUCCEEDED").collect();
    assert_eq!(succeeded.len(), 1, "{record:?}");
    assert_eq!(msat_of(&succeeded[0]["fee_msat"]), hop_fee);
    match alice_pay.payment_status(&hash).await.expect("status") {
        PaymentStatus::Succeeded(s) => assert_eq!(s, paid, "TrackPaymentV2 reports the same payment"),
        other => panic!("not succeeded: {other:?}"),
    }
    assert_eq!(settled_amount(&carol_inv, &hash).await, Msat::from_sat(sats));
    drop((alice_pay, carol_inv, alice, bob, carol));
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_balance_is_what_real_lnd_reports_and_a_macaroon_without_offchain_read_is_refused_typed() {
    let net = Regtest::start().await.expect("regtest starts (is bitcoind installed? scripts/install-bitcoind.sh)");
    let alice = net.lnd_node("alice").await.expect("LND alice starts (built by scripts/install-peers.sh?)");
    let bob = net.lnd_node("bob").await.expect("LND bob");
    net.fund_lnd(&alice, 2_000_000).await.expect("fund alice");
    net.open_channel_lnd_to_lnd(&alice, &bob, 1_000_000, 300_000, None, &[]).await.expect("LND -> LND channel");
    let readonly = alice.connect(LndMacaroon::Readonly).await.expect("alice, readonly macaroon");
    let b = readonly.channel_balance().await.expect("ChannelBalance");
    let lncli = alice.lncli(&["channelbalance"]).await.expect("lncli channelbalance");
    assert_eq!(b.outbound, Msat(msat_of(&lncli["local_balance"]["msat"])), "{lncli}");
    assert_eq!(b.inbound, Msat(msat_of(&lncli["remote_balance"]["msat"])), "{lncli}");
    assert_eq!(b.inbound, Msat::from_sat(300_000), "bob's side is the 300k pushed: {lncli}");
    assert!(b.outbound.0 > 0 && b.outbound < Msat::from_sat(700_000), "alice's side less fees: {lncli}");
    let invoice_only = alice.connect(LndMacaroon::Invoice).await.expect("alice, invoice macaroon");
    let e = invoice_only.channel_balance().await.expect_err("the invoice macaroon has no offchain:read");
    assert_eq!(e.kind, LightningErrorKind::Unauthenticated, "{e}");
    drop((readonly, invoice_only, alice, bob));
    net.shutdown().await;
}

//! The `Payment` scheme's Lightning charge beside L402, against the test server on loopback (which speaks the
//! charge from its wire format, not through the client's code), paying real regtest invoices: the choice of one
//! offer per 402, every check before paying a charge (each hostile offer refused with the L402 path's error and
//! nothing paid), single use, receipts in the ledger, a refused charge, and a charge paid whose request got no
//! answer (presented again, never paid again); with a scripted wallet, a charge whose payment outcome was
//! unknown, completed from the journal and presented.
#![allow(missing_docs)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use l402_client::{Client, ClientConfig, Error, LimitKind, Limits, PreferScheme};
use l402_lightning::{PayError, Payer};
use l402_proto::{InvoiceError, Msat};
use reqwest::Method;
use support::mpp::ChargeMode;
use support::{FakeLightning, Server, loopback_config, network, node_payment_count, node_payments};

fn client(payer: Arc<dyn Payer>, dir: &std::path::Path, tweak: impl FnOnce(&mut ClientConfig)) -> Client {
    let mut cfg = loopback_config(dir);
    tweak(&mut cfg);
    Client::new(payer, cfg).expect("client")
}

fn preferring_payment(cfg: &mut ClientConfig) {
    cfg.prefer_scheme = PreferScheme::Payment;
}

async fn get(c: &Client, url: &str) -> Result<l402_client::L402Response, Error> {
    c.execute(c.request(Method::GET, url).build().expect("request")).await
}

fn tokens(c: &Client) -> Vec<l402_client::StoredToken> {
    c.store().blocking(|conn| l402_client::tokens::list(conn, None)).expect("tokens")
}

/// Each hostile charge offer is refused before paying, with the error (and exit code) the L402 path gives for
/// the same fault; nothing reaches the node, nothing is journaled. The invoices are real and payable wherever
/// the fault allows, so a missing check would show as a payment.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_hostile_charge_offer_is_refused_before_paying_with_the_l402_error() {
    let (net, server_node, payers) = network(&["alice"]).await;
    let alice = payers[0].clone();
    let server = Server::start(server_node.clone()).await;
    server.offer(false, true); // the charge alone: the client uses it whatever it prefers
    let url = server.url("/svc/data");
    let dir = tempfile::tempdir().expect("tmp");
    let c = client(alice.clone(), dir.path(), |_| {});

    type Is = fn(&Error) -> bool;
    let cases: [(ChargeMode, Is, u8); 6] = [
        (ChargeMode::HashMismatch, |e| matches!(e, Error::Invoice(InvoiceError::HashMismatch { .. })), 14),
        (
            ChargeMode::AmountMismatch,
            |e| {
                matches!(e, Error::AmountMismatch { stated, invoice }
                    if *stated == Msat::from_sat(99) && *invoice == Msat::from_sat(100))
            },
            19,
        ),
        (
            ChargeMode::StatedMainnet,
            |e| matches!(e, Error::Invoice(InvoiceError::WrongNetwork { found, .. }) if found == "mainnet"),
            12,
        ),
        (ChargeMode::MainnetInvoice, |e| matches!(e, Error::Invoice(InvoiceError::WrongNetwork { .. })), 12),
        (ChargeMode::ExpiredInvoice, |e| matches!(e, Error::Invoice(InvoiceError::Expired { .. })), 13),
        (
            ChargeMode::ExpiringChallenge,
            |e| {
                matches!(e, Error::Invoice(InvoiceError::Expired { expires_at, margin_secs: 30 })
                    if *expires_at <= support::now() + 5)
            },
            13,
        ),
    ];
    for (mode, is, code) in cases {
        server.set_charge_mode(mode);
        let e = get(&c, &url).await.expect_err("refused");
        assert!(is(&e), "{mode:?}: {e}");
        assert_eq!(e.exit_code(), code, "{mode:?}: {e}");
        // The dry run says the same, and pays nothing either.
        let q = c.quote(c.request(Method::GET, &url).build().expect("req")).await.expect("quote");
        let l402_client::Quote::Payment(q) = q else { panic!("{mode:?}: {q:?}") };
        assert_eq!(q.scheme, "Payment");
        assert_eq!(q.refusal.as_ref().map(Error::exit_code), Some(code), "{mode:?}: {:?}", q.refusal);
    }

    // Over the price cap (an honest offer, a lower cap).
    server.set_charge_mode(ChargeMode::Normal);
    let capped = client(alice.clone(), &dir.path().join("capped"), |cfg| cfg.max_price = Msat::from_sat(50));
    let e = get(&capped, &url).await.expect_err("over cap");
    assert!(matches!(e, Error::Invoice(InvoiceError::OverCap { .. })), "{e}");
    assert_eq!(e.exit_code(), 10);

    // Both schemes offered, the charge preferred and hostile: refused, and the L402 offer is not paid instead.
    server.offer(true, true);
    server.set_charge_mode(ChargeMode::HashMismatch);
    let p = client(alice.clone(), &dir.path().join("both"), preferring_payment);
    let e = get(&p, &url).await.expect_err("refused");
    assert!(matches!(e, Error::Invoice(InvoiceError::HashMismatch { .. })), "{e}");

    assert_eq!(node_payment_count(&alice), 0, "no payment was even attempted");
    for cl in [&c, &capped, &p] {
        assert!(cl.ledger(None).await.expect("ledger").is_empty(), "nothing journaled");
    }
    assert!(server.charges_accepted().is_empty());
    net.shutdown().await;
}

/// A 402 with both schemes: by default the L402 offer is paid (once; the token serves the next request);
/// preferring payment, the charge is paid (once) and never reused: the next request pays a charge of its own,
/// within the budget, which then refuses a third. Each charge's receipt lands in the ledger. A 402 with one
/// scheme gets that one, whatever the preference.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_offer_per_402_l402_by_default_a_charge_when_preferred_and_never_reused() {
    let (net, server_node, payers) = network(&["alice"]).await;
    let alice = payers[0].clone();
    let server = Server::start(server_node.clone()).await;
    server.offer(true, true);
    server.set_charge_mode(ChargeMode::Normal);
    let url = server.url("/svc/data");
    let dir = tempfile::tempdir().expect("tmp");

    // Default: the L402 token.
    let d = client(alice.clone(), &dir.path().join("default"), |_| {});
    let r = get(&d, &url).await.expect("paid");
    assert_eq!(r.response.status(), 200);
    let paid = r.payment.expect("a payment");
    assert_eq!(paid.scheme(), "L402");
    assert!(paid.charge.is_none() && paid.token_id.is_some());
    assert_eq!(server.state.last_scheme.lock().expect("lock").as_deref(), Some("L402"));
    assert_eq!(node_payments(&alice).len(), 1, "one offer paid");
    assert!(get(&d, &url).await.expect("reused").payment.is_none(), "the token is reused");
    assert_eq!(node_payments(&alice).len(), 1);
    assert!(server.charges_accepted().is_empty(), "the charge was not paid");

    // Preferring payment: the charge, once per request, within the budget (300 sat: two charges of 100 sat,
    // each reserving 110 sat with its fee limit; a third would need 310).
    let p = client(alice.clone(), &dir.path().join("payment"), preferring_payment);
    p.store().blocking(|conn| Limits::save(conn, LimitKind::Total, 300_000)).expect("limit");
    let mut charges = Vec::new();
    for round in 0..2 {
        let r = get(&p, &url).await.expect("paid by a charge");
        assert_eq!(r.response.status(), 200, "round {round}");
        assert!(r.token_id.is_none(), "no token was sent");
        let paid = r.payment.expect("a payment");
        assert_eq!(paid.scheme(), "Payment");
        assert_eq!(paid.token_id, None);
        assert!(r.response.text().await.expect("body").ends_with("by charge"));
        charges.push(paid);
    }
    assert_eq!(server.state.last_scheme.lock().expect("lock").as_deref(), Some("Payment"));
    assert_eq!(node_payments(&alice).len(), 3, "each charge paid once, the L402 offer never");
    let accepted = server.charges_accepted();
    assert_eq!(accepted.len(), 2);
    assert_ne!(accepted[0], accepted[1], "a new charge for the second request");
    assert_ne!(charges[0].payment_hash, charges[1].payment_hash);
    assert!(tokens(&p).is_empty(), "a charge is not a token");
    let e = get(&p, &url).await.expect_err("the third charge is over the budget");
    assert!(matches!(e, Error::Budget { limit: LimitKind::Total, .. }), "{e}");
    assert_eq!(node_payments(&alice).len(), 3);

    // The receipts, in the ledger and in the payment.
    let ledger = p.ledger(None).await.expect("ledger");
    assert_eq!(ledger.len(), 2);
    for (entry, paid) in ledger.iter().rev().zip(&charges) {
        let charge = paid.charge.as_ref().expect("a charge");
        let receipt = charge.receipt.as_ref().expect("the server sent a receipt");
        assert_eq!(receipt.reference, paid.payment_hash.to_hex());
        assert_eq!(receipt.challenge_id, charge.challenge_id);
        assert_eq!(entry.payment_hash, paid.payment_hash.to_hex());
        assert_eq!(entry.scheme, "Payment");
        assert_eq!(entry.state, "succeeded");
        assert_eq!(entry.charge_state.as_deref(), Some("spent"));
        assert_eq!(entry.challenge_id.as_deref(), Some(charge.challenge_id.as_str()));
        assert_eq!(entry.receipt_status.as_deref(), Some("success"));
        assert_eq!(entry.receipt_reference.as_deref(), Some(entry.payment_hash.as_str()));
        assert_eq!(entry.receipt_challenge_id.as_deref(), Some(charge.challenge_id.as_str()));
        assert_eq!(entry.token_id, None);
        let (_, amount, fee) =
            node_payments(&alice).into_iter().find(|(h, ..)| *h == entry.payment_hash).expect("on the node");
        assert_eq!((entry.amount_msat, entry.fee_msat), (amount, Some(fee)), "the ledger matches the node");
    }

    // One scheme offered: that one, whatever the preference.
    server.offer(false, true);
    let only_charge = client(alice.clone(), &dir.path().join("only-charge"), |_| {});
    let r = get(&only_charge, &url).await.expect("paid");
    assert_eq!(r.payment.expect("paid").scheme(), "Payment");
    server.offer(true, false);
    let only_l402 = client(alice.clone(), &dir.path().join("only-l402"), preferring_payment);
    let r = get(&only_l402, &url).await.expect("paid");
    assert_eq!(r.payment.expect("paid").scheme(), "L402");
    assert_eq!(node_payments(&alice).len(), 5);

    // No receipt: the charge is still spent, with none recorded.
    server.offer(false, true);
    server.set_charge_mode(ChargeMode::NoReceipt);
    let r = get(&only_charge, &url).await.expect("paid");
    assert_eq!(r.response.status(), 200);
    assert_eq!(r.payment.expect("paid").charge.expect("charge").receipt, None);
    let last = only_charge.ledger(None).await.expect("ledger").remove(0);
    assert_eq!((last.charge_state.as_deref(), last.receipt_reference), (Some("spent"), None));
    net.shutdown().await;
}

/// A server that takes a charge's money and answers a fresh 402: paid but refused (exit 22), the charge kept
/// with its challenge and preimage, and nothing more paid in that call.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refused_charge_is_paid_but_refused_and_not_paid_again_in_the_call() {
    let (net, server_node, payers) = network(&["alice"]).await;
    let alice = payers[0].clone();
    let server = Server::start(server_node.clone()).await;
    server.offer(true, true);
    server.set_charge_mode(ChargeMode::RefuseCharge);
    let dir = tempfile::tempdir().expect("tmp");
    let c = client(alice.clone(), dir.path(), preferring_payment);
    let e = get(&c, &server.url("/svc/data")).await.expect_err("paid but refused");
    let Error::ChargeRefused { payment_hash, status, paid, ref challenge_id } = e else { panic!("{e}") };
    assert_eq!(status, 402);
    assert_eq!(paid, Msat::from_sat(100), "amount + fee (a direct channel: no fee)");
    assert_eq!((e.exit_code(), e.reason()), (22, "paid_but_refused"));
    assert_eq!(node_payments(&alice).len(), 1, "one payment, not a second one");
    let ledger = c.ledger(None).await.expect("ledger");
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].payment_hash, payment_hash.to_hex());
    assert_eq!(ledger[0].charge_state.as_deref(), Some("refused"));
    assert_eq!(ledger[0].challenge_id.as_deref(), Some(challenge_id.as_str()));
    assert!(tokens(&c).is_empty());
    // The proof of payment is kept: the preimage in the journal hashes to the charge's payment hash.
    let preimage: String = c
        .store()
        .blocking(|conn| {
            Ok(conn.query_row(
                "SELECT preimage FROM payments WHERE payment_hash = ?1",
                [payment_hash.to_hex()],
                |r| r.get(0),
            )?)
        })
        .expect("preimage kept");
    assert_eq!(l402_proto::Preimage::from_hex(&preimage).expect("hex").payment_hash(), payment_hash);
    net.shutdown().await;
}

/// A charge paid whose request got no answer (the server went silent before answering) is not lost: the next
/// request for that path presents it again and pays nothing, even preferring L402 with both offered (a paid
/// charge costs nothing more), and the server accepts it (it never spent it).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_charge_paid_whose_request_got_no_answer_is_presented_again_and_not_paid_again() {
    let (net, server_node, payers) = network(&["alice"]).await;
    let alice = payers[0].clone();
    let server = Server::start(server_node.clone()).await;
    server.offer(true, true);
    server.set_charge_mode(ChargeMode::HangOnce);
    let url = server.url("/svc/data");
    let dir = tempfile::tempdir().expect("tmp");
    let c = client(alice.clone(), dir.path(), |cfg| {
        cfg.prefer_scheme = PreferScheme::Payment;
        cfg.read_timeout = Duration::from_secs(2);
    });
    let e = get(&c, &url).await.expect_err("no answer");
    assert!(matches!(e, Error::ReadTimeout(_)), "{e}");
    let ledger = c.ledger(None).await.expect("ledger");
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].charge_state.as_deref(), Some("unspent"), "paid, not yet accepted");
    assert_eq!(node_payments(&alice).len(), 1);

    let again = client(alice.clone(), dir.path(), |_| {}); // the same data directory, preferring L402
    let r = get(&again, &url).await.expect("served");
    assert_eq!(r.response.status(), 200);
    let paid = r.payment.expect("the charge presented");
    assert_eq!(paid.payment_hash.to_hex(), ledger[0].payment_hash, "the charge paid before");
    assert_eq!(node_payments(&alice).len(), 1, "nothing paid again");
    assert_eq!(server.charges_accepted().len(), 1);
    let ledger = again.ledger(None).await.expect("ledger");
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].charge_state.as_deref(), Some("spent"));
    assert!(ledger[0].receipt_reference.is_some());
    assert!(tokens(&again).is_empty(), "the L402 offer was not paid");
    net.shutdown().await;
}

/// A charge whose payment outcome was unknown is never paid again while the wallet cannot say; once the wallet
/// knows it succeeded, the next request completes it from the journal (challenge + preimage) and presents it.
#[tokio::test]
async fn a_charge_whose_outcome_was_unknown_is_completed_from_the_journal_and_presented() {
    let fake = Arc::new(FakeLightning::default());
    let server = Server::start(fake.clone()).await;
    server.offer(false, true);
    let url = server.url("/svc/x");
    let dir = tempfile::tempdir().expect("tmp");
    let c = client(fake.clone(), dir.path(), |_| {});
    fake.script([Err(PayError::OutcomeUnknown("stream dropped".into()))]);
    let e = get(&c, &url).await.expect_err("unknown");
    let Error::OutcomeUnknown { payment_hash, .. } = e else { panic!("{e}") };
    assert_eq!(c.ledger(None).await.expect("ledger")[0].state, "unknown");

    let e = get(&c, &url).await.expect_err("still unknown");
    assert!(matches!(e, Error::OutcomeUnknown { payment_hash: h, .. } if h == payment_hash), "{e}");
    assert_eq!(fake.calls().len(), 1, "never paid twice");

    fake.settle(&payment_hash);
    let r = get(&c, &url).await.expect("completed and presented");
    assert_eq!(r.response.status(), 200);
    assert_eq!(r.payment.map(|p| p.payment_hash), Some(payment_hash), "the charge paid before");
    assert_eq!(fake.calls().len(), 1);
    assert_eq!(server.charges_accepted().len(), 1);
    let entry = c.ledger(None).await.expect("ledger").remove(0);
    assert_eq!((entry.state.as_str(), entry.charge_state.as_deref()), ("succeeded", Some("spent")));
}

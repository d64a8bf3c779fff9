//! The client against a real L402 server on loopback, paying real Lightning invoices on a regtest network.
#![allow(missing_docs)]

mod support;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;

use l402_client::{Client, ClientConfig, Error, LimitKind, Limits};
use l402_lightning::Payer;
use l402_proto::{InvoiceError, Msat};
use reqwest::Method;
use support::{Mode, Server, network, node_payment_count, node_payments};

fn client(payer: Arc<dyn Payer>, dir: &std::path::Path) -> Client {
    Client::new(payer, support::loopback_config(dir)).expect("client")
}

async fn get(c: &Client, url: &str) -> Result<l402_client::L402Response, Error> {
    c.execute(c.request(Method::GET, url).build().expect("request")).await
}

/// The ledger's successful payments equal the node's own records, to the msat.
fn assert_ledger_matches_node(c: &Client, node: &l402_ldk::LdkNode) {
    let ledger = c.store().blocking(|conn| l402_client::journal::ledger(conn, None)).expect("ledger");
    let ours: HashMap<String, (u64, u64)> = ledger
        .iter()
        .filter(|e| e.state == "succeeded")
        .map(|e| (e.payment_hash.clone(), (e.amount_msat, e.fee_msat.expect("fee recorded"))))
        .collect();
    let theirs: HashMap<String, (u64, u64)> = node_payments(node).into_iter().map(|(h, a, f)| (h, (a, f))).collect();
    assert_eq!(ours, theirs, "ledger == node's payment records");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pays_once_reuses_the_token_replays_bodies_and_matches_the_ledger() {
    let (net, server_node, payers) = network(&["alice"]).await;
    let alice = payers[0].clone();
    let server = Server::start(server_node.clone()).await;
    let dir = tempfile::tempdir().expect("tmp");
    let data = dir.path().join("l402");
    let c = client(alice.clone(), &data);

    // First request: 402, pay, retry with the credential, 200.
    let r = get(&c, &server.url("/svc/data")).await.expect("paid request");
    assert_eq!(r.response.status(), 200);
    let paid = r.payment.expect("a payment was made");
    assert!(paid.token_id.is_some(), "an L402 payment buys a token");
    assert_eq!(paid.amount, Msat::from_sat(100));
    assert_eq!(paid.preimage.payment_hash(), paid.payment_hash);
    assert_eq!(r.token_id, paid.token_id);
    assert!(r.response.text().await.expect("body").contains("paid GET /svc/data for svc"));
    assert_eq!(server.challenges(), 1);
    assert_eq!(server.state.last_scheme.lock().expect("lock").as_deref(), Some("L402"), "the server's scheme");

    // Same service, another path: the stored token is sent first time; no new challenge, no payment.
    let r = get(&c, &server.url("/svc/more")).await.expect("token reused");
    assert_eq!(r.response.status(), 200);
    assert!(r.payment.is_none());
    assert_eq!(r.token_id, paid.token_id);
    assert_eq!(server.challenges(), 1);
    let free = get(&c, &server.url("/free")).await.expect("free");
    assert_eq!(free.response.status(), 200);
    assert!(free.payment.is_none());

    // Another service: a second token; a POST body is replayed after paying.
    let req = c.request(Method::POST, &server.url("/other/x")).body("hello body").build().expect("req");
    let r = c.execute(req).await.expect("other service");
    assert_eq!(r.response.status(), 200);
    assert!(r.payment.is_some());
    assert_eq!(server.state.last_body.lock().expect("lock").as_slice(), b"hello body");
    // And the first service still uses its own token.
    assert!(get(&c, &server.url("/svc/data")).await.expect("svc").payment.is_none());
    assert_eq!(server.challenges(), 2);

    // Transient failures are retried: 503 then 429 with Retry-After, then the paid answer.
    server.fail_next(503, None);
    server.fail_next(429, Some("1"));
    let before = server.requests();
    let r = get(&c, &server.url("/svc/data")).await.expect("after retries");
    assert_eq!(r.response.status(), 200);
    assert_eq!(server.requests() - before, 3);

    // The store is private; the ledger matches the node.
    let mode = |p: &std::path::Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join(l402_client::store::DB_FILE)), 0o600);
    for entry in std::fs::read_dir(&data).expect("dir") {
        let p = entry.expect("entry").path();
        if p.is_file() {
            assert_eq!(mode(&p), 0o600, "{}", p.display());
        }
    }
    assert_ledger_matches_node(&c, &alice);
    let usage = c.usage("").await.expect("usage");
    let spent: u64 = node_payments(&alice).iter().map(|(_, a, f)| a + f).sum();
    assert_eq!(usage.total, spent);

    // Old and new servers: LSAT-only and the specification's token= form; the credential uses their scheme.
    for (mode, scheme) in [(Mode::LsatOnly, "LSAT"), (Mode::SpecV0, "L402")] {
        server.set_mode(mode);
        let fresh = client(alice.clone(), &dir.path().join(format!("{mode:?}")));
        let r = get(&fresh, &server.url("/svc/data")).await.expect("paid");
        assert_eq!(r.response.status(), 200);
        assert!(r.payment.is_some());
        assert_eq!(server.state.last_scheme.lock().expect("lock").as_deref(), Some(scheme));
    }
    server.set_mode(Mode::Normal);

    // 50 concurrent requests to a fresh paid endpoint: one payment.
    let many = Arc::new(client(alice.clone(), &dir.path().join("many")));
    let before_node = node_payments(&alice).len();
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let c = many.clone();
            let url = server.url(&format!("/svc/item/{i}"));
            tokio::spawn(
                async move { get(&c, &url).await.map(|r| (r.response.status().as_u16(), r.payment.is_some())) },
            )
        })
        .collect();
    let mut payments = 0;
    for t in tasks {
        let (status, paid) = t.await.expect("task").expect("request");
        assert_eq!(status, 200);
        payments += usize::from(paid);
    }
    assert_eq!(payments, 1, "one of the fifty paid");
    assert_eq!(node_payments(&alice).len(), before_node + 1, "one payment left the node");
    let ledger = many.ledger(None).await.expect("ledger");
    assert_eq!(ledger.len(), 1);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refuses_before_paying_and_keeps_refused_tokens() {
    let (net, server_node, payers) = network(&["alice"]).await;
    let alice = payers[0].clone();
    let server = Server::start(server_node.clone()).await;
    let dir = tempfile::tempdir().expect("tmp");
    let url = server.url("/svc/data");

    // Each bad invoice is refused with its own reason; nothing is paid or journaled.
    type Is = fn(&Error) -> bool;
    let cases: [(Mode, Is); 4] = [
        (Mode::WrongNetwork, |e| matches!(e, Error::Invoice(InvoiceError::WrongNetwork { .. }))),
        (Mode::Amountless, |e| matches!(e, Error::Invoice(InvoiceError::NoAmount))),
        (Mode::Expired, |e| matches!(e, Error::Invoice(InvoiceError::Expired { .. }))),
        (Mode::HashMismatch, |e| matches!(e, Error::Invoice(InvoiceError::HashMismatch { .. }))),
    ];
    let c = client(alice.clone(), &dir.path().join("a"));
    for (mode, is) in cases {
        server.set_mode(mode);
        let e = get(&c, &url).await.expect_err("refused");
        assert!(is(&e), "{mode:?}: {e}");
    }
    server.set_mode(Mode::Normal);

    // Over the price cap.
    let mut cfg = support::loopback_config(dir.path().join("a"));
    cfg.max_price = Msat::from_sat(50);
    let capped = Client::new(alice.clone(), cfg).expect("client");
    let e = get(&capped, &url).await.expect_err("over cap");
    assert!(matches!(e, Error::Invoice(InvoiceError::OverCap { .. })), "{e}");
    assert_eq!(e.reason(), "price_over_cap");

    // Budgets: per origin, then total (stored limits, shared by every process on this data directory).
    c.store().blocking(|conn| Limits::save(conn, LimitKind::PerOrigin, 50_000)).expect("set limit");
    let e = get(&c, &url).await.expect_err("per-origin budget");
    assert!(matches!(e, Error::Budget { limit: LimitKind::PerOrigin, .. }), "{e}");
    c.store().blocking(|conn| Limits::save(conn, LimitKind::PerOrigin, 100_000_000)).expect("set");
    c.store().blocking(|conn| Limits::save(conn, LimitKind::Total, 100_000)).expect("set");
    let e = get(&c, &url).await.expect_err("total budget (price + fee limit > 100 sat)");
    assert!(matches!(e, Error::Budget { limit: LimitKind::Total, .. }), "{e}");
    // A session budget.
    let mut cfg = support::loopback_config(dir.path().join("b"));
    cfg.session_budget = Some(Msat::from_sat(50));
    let e = get(&Client::new(alice.clone(), cfg).expect("client"), &url).await.expect_err("session budget");
    assert!(matches!(e, Error::Budget { limit: LimitKind::Session, .. }), "{e}");

    // A body that cannot be replayed: refused before paying.
    let stream = futures_util::stream::iter(vec![Ok::<_, std::io::Error>("chunk")]);
    let req = c.request(Method::POST, &url).body(reqwest::Body::wrap_stream(stream)).build().expect("req");
    let fresh = client(alice.clone(), &dir.path().join("c"));
    let e = fresh.execute(req).await.expect_err("not replayable");
    assert!(matches!(e, Error::NotReplayable), "{e}");

    assert_eq!(node_payment_count(&alice), 0, "no payment was even attempted");
    assert!(c.ledger(None).await.expect("ledger").is_empty());

    // A server that takes the money and refuses the token: reported, the token kept with its preimage, and no
    // second payment to that service.
    server.set_mode(Mode::RefuseValid);
    let d = client(alice.clone(), &dir.path().join("d"));
    let e = get(&d, &url).await.expect_err("paid but refused");
    let Error::PaidButRefused { token_id, status, paid } = e else { panic!("{e}") };
    assert_eq!(status, 402);
    assert!(paid.0 >= 100_000);
    let kept = d.store().blocking(|conn| l402_client::tokens::find(conn, &token_id.to_hex())).expect("find");
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].state, "refused");
    let cred = kept[0].credential().expect("credential kept");
    assert_eq!(cred.preimage.payment_hash().to_hex(), kept[0].payment_hash, "the proof of payment is kept");
    let e = get(&d, &url).await.expect_err("no second payment");
    assert!(matches!(e, Error::PaidButRefused { .. }), "{e}");
    assert_eq!(node_payments(&alice).len(), 1);
    assert_ledger_matches_node(&d, &alice);

    // A server that says a bundle is used up before it served anything: that token is refused too, not a
    // reason to buy another bundle.
    server.set_mode(Mode::ClaimUsedUp);
    let f = client(alice.clone(), &dir.path().join("f"));
    let e = get(&f, &url).await.expect_err("paid, never served");
    assert!(matches!(e, Error::PaidButRefused { status: 402, .. }), "{e}");
    let e = get(&f, &url).await.expect_err("no second bundle");
    assert!(matches!(e, Error::PaidButRefused { .. }), "{e}");
    assert_eq!(node_payments(&alice).len(), 2, "one bundle bought, none after it");
    let ledger = f.store().blocking(|conn| l402_client::journal::ledger(conn, None)).expect("ledger");
    assert_eq!(ledger.iter().filter(|e| e.state == "succeeded").count(), 1);
    net.shutdown().await;
}

/// payer -> bob -> server, bob charging 15 sat + 0.1% to forward. For a 100-sat price the client's first fee
/// limit is 10 sat: no route. Its one retry, at twice that (20 sat, within `max_fee`), pays bob's fee, and the
/// ledger, the budget and the node agree on it to the msat. With `max_fee` under bob's fee, both attempts find
/// no route: the payment fails and nothing moves.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn routing_fees_are_capped_retried_once_and_recorded() {
    let net = l402_regtest::Regtest::start().await.expect("regtest starts");
    let server_node = net.ldk_node("server").await.expect("server node");
    let bob = net.ldk_node("bob").await.expect("bob");
    let alice = net.ldk_node("alice").await.expect("alice");
    net.fund(&alice, 1_000_000).await.expect("fund alice");
    net.open_channel(&alice, &bob, 500_000, 0).await.expect("alice -> bob");
    net.fund(&bob, 1_000_000).await.expect("fund bob");
    let fee = l402_regtest::ForwardingFee { base_msat: 15_000, ppm: 1_000 };
    net.open_announced_channel(&bob, &server_node, 500_000, fee, &[&alice]).await.expect("bob -> server");
    let server = Server::start(server_node.clone()).await;
    let price = Msat::from_sat(100);
    let hop_fee = fee.for_amount(price.0);
    let dir = tempfile::tempdir().expect("tmp");

    let limits_tried = |cfg: &mut ClientConfig| {
        let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        cfg.progress = Some(Arc::new(move |p: &l402_client::Progress| {
            if let l402_client::Progress::Paying { fee_limit, .. } = p {
                sink.lock().expect("lock").push(fee_limit.0);
            }
        }));
        seen
    };

    // Capped: first limit 10 sat, the retry 12 sat (max_fee), both under bob's 15.1 sat.
    let mut cfg = support::loopback_config(dir.path().join("capped"));
    cfg.max_fee = Msat::from_sat(12);
    let tried = limits_tried(&mut cfg);
    let capped = Client::new(alice.clone(), cfg).expect("client");
    match get(&capped, &server.url("/svc/data")).await {
        Err(Error::PaymentFailed { failure: l402_lightning::PaymentFailure::NoRoute, .. }) => {}
        other => panic!("expected no route, got {:?}", other.map(|r| r.response.status())),
    }
    assert_eq!(*tried.lock().expect("lock"), vec![10_000, 12_000], "one retry, capped at max_fee");
    assert!(node_payments(&alice).is_empty(), "nothing paid");
    assert_eq!(capped.usage("").await.expect("usage").total, 0, "the reservation was released");
    let ledger = capped.ledger(None).await.expect("ledger");
    assert_eq!(ledger.iter().map(|e| e.state.as_str()).collect::<Vec<_>>(), vec!["failed"]);

    // Defaults (max_fee 50 sat): 10 sat finds no route, the retry at 20 sat pays bob's fee.
    let mut cfg = support::loopback_config(dir.path().join("paid"));
    let tried = limits_tried(&mut cfg);
    let c = Client::new(alice.clone(), cfg).expect("client");
    let r = get(&c, &server.url("/svc/data")).await.expect("paid through bob");
    assert_eq!(r.response.status(), 200);
    let paid = r.payment.expect("a payment");
    assert_eq!(*tried.lock().expect("lock"), vec![10_000, 20_000]);
    assert_eq!(paid.amount, price);
    assert_eq!(paid.fee, Msat(hop_fee), "bob's fee, to the msat");
    assert_ledger_matches_node(&c, &alice);
    assert_eq!(c.usage("").await.expect("usage").total, price.0 + hop_fee, "the budget counts price + fee");
    net.shutdown().await;
}

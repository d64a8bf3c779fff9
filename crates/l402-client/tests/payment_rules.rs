//! The payment retry rules and the handling of an unknown outcome, with a scripted wallet (each failure a real
//! wallet reports, injected) against the test server over real HTTP.
#![allow(missing_docs)]

mod support;

use std::sync::Arc;

use l402_client::{Client, Error};
use l402_lightning::{PayError, PaymentFailure};
use l402_proto::Msat;
use reqwest::Method;
use support::{FAKE_FEE_MSAT, FakeLightning, Server};

struct Case {
    fake: Arc<FakeLightning>,
    server: Server,
    dir: tempfile::TempDir,
}

async fn case() -> Case {
    let fake = Arc::new(FakeLightning::default());
    let server = Server::start(fake.clone()).await;
    Case { fake, server, dir: tempfile::tempdir().expect("tmp") }
}

impl Case {
    fn client(&self, max_fee_sat: u64) -> Client {
        let mut cfg = support::loopback_config(self.dir.path());
        cfg.max_fee = Msat::from_sat(max_fee_sat);
        Client::new(self.fake.clone(), cfg).expect("client")
    }

    async fn get(&self, c: &Client) -> Result<l402_client::L402Response, Error> {
        c.execute(c.request(Method::GET, &self.server.url("/svc/x")).build().expect("req")).await
    }
}

fn failed(f: PaymentFailure) -> Result<(), PayError> {
    Err(PayError::Failed(f))
}

#[tokio::test]
async fn no_route_is_retried_once_with_a_higher_bounded_fee_limit() {
    let k = case().await;
    k.fake.script([failed(PaymentFailure::NoRoute)]);
    let c = k.client(50);
    let r = k.get(&c).await.expect("second attempt succeeds");
    assert_eq!(r.response.status(), 200);
    let calls = k.fake.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].max_fee, Msat::from_sat(10), "first: 1% of 100 sat, at least 10 sat");
    assert_eq!(calls[1].max_fee, Msat::from_sat(20), "then twice that, within --max-fee");
    let ledger = c.ledger(None).await.expect("ledger");
    assert_eq!(ledger[0].state, "succeeded");
    assert_eq!(ledger[0].fee_limit_msat, 20_000);
    assert_eq!(ledger[0].fee_msat, Some(FAKE_FEE_MSAT));

    // No route twice: one retry only, then failed and released.
    let k = case().await;
    k.fake.script([failed(PaymentFailure::NoRoute), failed(PaymentFailure::NoRoute)]);
    let c = k.client(50);
    let e = k.get(&c).await.expect_err("fails");
    assert!(matches!(e, Error::PaymentFailed { failure: PaymentFailure::NoRoute, .. }), "{e}");
    assert_eq!(k.fake.calls().len(), 2);
    assert_eq!(c.usage("").await.expect("usage").total, 0, "the reservation is released");

    // A fee limit that cannot be raised (--max-fee already at the first limit): no retry.
    let k = case().await;
    k.fake.script([failed(PaymentFailure::NoRoute)]);
    let e = k.get(&k.client(10)).await.expect_err("fails");
    assert!(matches!(e, Error::PaymentFailed { .. }), "{e}");
    assert_eq!(k.fake.calls().len(), 1);
}

#[tokio::test]
async fn timeout_is_retried_once_while_the_invoice_is_valid_and_nothing_else_is_retried() {
    let k = case().await;
    k.fake.script([failed(PaymentFailure::Timeout)]);
    let c = k.client(50);
    assert_eq!(k.get(&c).await.expect("retried").response.status(), 200);
    let calls = k.fake.calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].max_fee, calls[1].max_fee, "same fee limit");

    for f in [
        PaymentFailure::InsufficientBalance,
        PaymentFailure::IncorrectPaymentDetails,
        PaymentFailure::Canceled,
        PaymentFailure::InvoiceExpired,
    ] {
        let k = case().await;
        k.fake.script([failed(f.clone())]);
        let c = k.client(50);
        let e = k.get(&c).await.expect_err("not retried");
        assert!(matches!(&e, Error::PaymentFailed { failure, .. } if *failure == f), "{e}");
        assert_eq!(k.fake.calls().len(), 1, "{f:?} is never retried");
        assert_eq!(c.ledger(None).await.expect("ledger")[0].state, "failed");
        assert_eq!(c.usage("").await.expect("usage").total, 0);
    }

    // Refused by the wallet before sending: nothing sent, released.
    let k = case().await;
    k.fake.script([Err(PayError::Rejected("zero fee limit".into()))]);
    let c = k.client(50);
    let e = k.get(&c).await.expect_err("rejected");
    assert!(matches!(e, Error::PaymentRejected { .. }), "{e}");
    assert_eq!(c.usage("").await.expect("usage").total, 0);
}

#[tokio::test]
async fn an_unknown_outcome_keeps_its_reservation_is_never_paid_again_and_is_recovered_later() {
    let k = case().await;
    k.fake.script([Err(PayError::OutcomeUnknown("stream dropped".into()))]);
    let c = k.client(50);
    let e = k.get(&c).await.expect_err("unknown");
    let Error::OutcomeUnknown { payment_hash, .. } = e else { panic!("{e}") };
    assert_eq!(e_reason(&c).await, "unknown");
    assert_eq!(c.usage("").await.expect("usage").total, 110_000, "amount + fee limit stay reserved");

    // The next request does not pay again while the wallet cannot say.
    let e = k.get(&c).await.expect_err("still unknown");
    assert!(matches!(e, Error::OutcomeUnknown { .. }), "{e}");
    assert_eq!(k.fake.calls().len(), 1, "never paid twice");

    // The wallet learns it succeeded: the next request recovers the token, pays nothing.
    k.fake.settle(&payment_hash);
    let r = k.get(&c).await.expect("recovered");
    assert_eq!(r.response.status(), 200);
    assert_eq!(r.payment.map(|p| p.payment_hash), Some(payment_hash), "the recovered payment");
    assert_eq!(k.fake.calls().len(), 1);
    assert_eq!(e_reason(&c).await, "succeeded");
    assert_eq!(c.usage("").await.expect("usage").total, 100_000 + FAKE_FEE_MSAT, "amount + actual fee");

    // Recovery without a request: an unknown payment found failed releases its reservation.
    let k = case().await;
    k.fake.script([Err(PayError::OutcomeUnknown("lost".into()))]);
    let c = k.client(50);
    let Err(Error::OutcomeUnknown { payment_hash, .. }) = k.get(&c).await else { panic!("unknown expected") };
    k.fake
        .statuses
        .lock()
        .expect("lock")
        .insert(payment_hash, l402_lightning::PaymentStatus::Failed(PaymentFailure::Timeout));
    let rec = c.recover().await.expect("recover");
    assert_eq!(rec.released, vec![payment_hash]);
    assert_eq!(c.usage("").await.expect("usage").total, 0);
}

async fn e_reason(c: &Client) -> String {
    c.ledger(None).await.expect("ledger")[0].state.clone()
}

#[tokio::test]
async fn budgets_are_shared_by_every_client_of_a_data_directory() {
    // Two clients, each with its own connection to the store (as two processes would have), pay two services
    // at once (two leases: nothing serializes them but the budget transaction). The total allows one payment.
    let k = case().await;
    let a = k.client(50);
    a.store().blocking(|c| l402_client::Limits::save(c, l402_client::LimitKind::Total, 150_000)).expect("limit");
    let b = k.client(50);
    let (ra, rb) = tokio::join!(
        a.execute(a.request(Method::GET, &k.server.url("/svc/a")).build().expect("req")),
        b.execute(b.request(Method::GET, &k.server.url("/other/b")).build().expect("req")),
    );
    let results = [ra, rb];
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let refused =
        results.iter().filter(|r| matches!(r, Err(Error::Budget { limit: l402_client::LimitKind::Total, .. }))).count();
    assert_eq!((ok, refused), (1, 1), "{results:?}");
    assert_eq!(k.fake.calls().len(), 1, "one payment");
    assert_eq!(a.usage("").await.expect("usage").total, 100_000 + FAKE_FEE_MSAT);
}

#[tokio::test]
async fn a_payment_that_failed_may_be_paid_again_when_the_server_repeats_its_challenge() {
    use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
    use axum::response::IntoResponse;
    use l402_lightning::{InvoiceIssuer, InvoiceRequest};
    use l402_proto::*;

    let fake = Arc::new(FakeLightning::default());
    let req = InvoiceRequest {
        amount: Msat::from_sat(100),
        memo: "same".into(),
        expiry: std::time::Duration::from_secs(600),
    };
    let issued = fake.create_invoice(&req).await.expect("invoice");
    let root = RootKey([9; 32]);
    let mac = Macaroon::mint(
        &root,
        &Identifier::new(issued.payment_hash, TokenId([1; 32])),
        &[Caveat::services(&[Service::new("svc")])],
    );
    let line = challenge::format_challenge(Scheme::L402, &mac, &issued.bolt11);
    let app = axum::Router::new().fallback(move |headers: HeaderMap| {
        let (line, root) = (line.clone(), root.clone());
        async move {
            let values = headers.get_all(header::AUTHORIZATION).iter().map(|v| v.as_bytes());
            if let Ok(c) = Credential::from_authorization(values) {
                let access = Access { service: "svc", capability: None, now_unix: support::now() };
                if verify(&c.macaroon, &c.preimage, &MacaroonKey::derive(&root), &access).is_ok() {
                    return (StatusCode::OK, "served").into_response();
                }
            }
            let mut r = StatusCode::PAYMENT_REQUIRED.into_response();
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_str(&line).expect("header"));
            r
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/svc", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let dir = tempfile::tempdir().expect("tmp");
    let c = Client::new(fake.clone(), support::loopback_config(dir.path())).expect("client");
    fake.script([failed(PaymentFailure::InsufficientBalance)]);
    let e = c.execute(c.request(Method::GET, &url).build().expect("req")).await.expect_err("fails");
    assert!(matches!(e, Error::PaymentFailed { .. }), "{e}");
    // The same challenge again (same hash): the failed journal entry is reused and paid.
    let r = c.execute(c.request(Method::GET, &url).build().expect("req")).await.expect("paid");
    assert_eq!(r.response.status(), 200);
    assert_eq!(fake.calls().len(), 2);
    let ledger = c.ledger(None).await.expect("ledger");
    assert_eq!(ledger.len(), 1);
    assert_eq!(ledger[0].state, "succeeded");
}

#[tokio::test]
async fn an_expired_token_is_dropped_and_paid_for_again_within_the_budget() {
    let k = case().await;
    k.server.state.valid_secs.store(2, std::sync::atomic::Ordering::SeqCst);
    let c = k.client(50);
    let first = k.get(&c).await.expect("paid");
    let first_token = first.token_id.expect("token");
    assert!(k.get(&c).await.expect("reused").payment.is_none());
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let again = k.get(&c).await.expect("paid again");
    assert!(again.payment.is_some(), "the expired token was not sent; a new one was bought");
    assert_ne!(again.token_id, Some(first_token));
    let tokens = c.store().blocking(|conn| l402_client::tokens::list(conn, None)).expect("tokens");
    assert_eq!(tokens.len(), 1, "the expired token was dropped");
    assert_eq!(c.ledger(None).await.expect("ledger").len(), 2, "both payments stay in the ledger");
}

//! The `Payment` scheme's Lightning charge beside L402, with real payments over a real regtest channel and a
//! real store: the 402 carries both, a paid charge opens one request and gets a receipt, and every way to
//! reuse, forge or stretch a charge is refused. Two instances on one PostgreSQL spend a charge once.
#![allow(missing_docs)]

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::Extension;
use axum::routing::get;
use l402_proto::Msat;
use l402_proto::mpp::{ChargeRequest, PaymentChallenge, PaymentCredential, Receipt};
use l402_server::store::{PostgresStore, Revenue, SqliteStore, TokenStore};
use l402_server::{
    Charge, L402Layer, L402Token, MasterKey, MasterKeys, PaidCharge, PaymentScheme, Paywall, RequestInfo, Schemes,
    ServiceSpec,
};
use support::{Counting, Net};

fn keys(seed: u8) -> MasterKeys {
    MasterKeys::single(MasterKey::from_bytes(&[seed; 32]))
}

fn paywall(store: Arc<dyn TokenStore>, net: &Net, keys: MasterKeys) -> Arc<Paywall> {
    let scheme = PaymentScheme::new("api.test", keys.payment_secrets()).expect("a secret");
    Paywall::builder(store, net.server.clone()).master_keys(keys).payment_scheme(scheme).build()
}

/// `weather` (1000 sat, both schemes) on /weather, `maps` (2000 sat, both) on /maps, `cheap` (10 sat, both)
/// on /cheap, `only-payment` (1000 sat, Payment only) on /only-payment, `tokens` (1000 sat, L402 only).
struct App {
    base: String,
    paywall: Arc<Paywall>,
    http: reqwest::Client,
}

async fn serve(paywall: Arc<Paywall>) -> App {
    let spec =
        |name: &str, sat: u64, schemes: Schemes| Arc::new(ServiceSpec::new(name, Msat::from_sat(sat)).schemes(schemes));
    let services = [
        ("/weather", spec("weather", 1_000, Schemes::BOTH)),
        ("/maps", spec("maps", 2_000, Schemes::BOTH)),
        ("/cheap", spec("cheap", 10, Schemes::BOTH)),
        ("/only-payment", spec("only-payment", 1_000, Schemes { l402: false, payment: true })),
        ("/tokens", spec("tokens", 1_000, Schemes::default())),
    ];
    let pricing = move |r: &RequestInfo<'_>| -> Option<Charge> {
        services.iter().find(|(p, _)| *p == r.uri.path()).map(|(_, s)| Charge::of(s))
    };
    let handler = |charge: Option<Extension<PaidCharge>>, token: Option<Extension<L402Token>>| async move {
        match (charge, token) {
            (Some(Extension(c)), _) => format!("{} paid by charge {}", c.service, c.challenge_id),
            (_, Some(Extension(t))) => format!("{} paid by token {}", t.service, t.token_id),
            _ => "free".to_owned(),
        }
    };
    let mut app = Router::new();
    for p in ["/weather", "/maps", "/cheap", "/only-payment", "/tokens"] {
        app = app.route(p, get(handler));
    }
    let app = app.layer(L402Layer::new(paywall.clone(), pricing));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    App { base, paywall, http: reqwest::Client::new() }
}

impl App {
    async fn get(&self, path: &str, auth: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send().await.expect("request")
    }
}

fn lines(resp: &reqwest::Response) -> Vec<String> {
    resp.headers().get_all("www-authenticate").iter().map(|v| v.to_str().expect("ascii").to_owned()).collect()
}

/// Pays the Payment charge of a 402 from alice; returns the Authorization value.
async fn pay_charge(net: &Net, resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), 402);
    let values = lines(&resp);
    l402_regtest::pay_payment_challenge(net.alice.as_ref(), values.iter().map(|v| v.as_bytes()))
        .await
        .expect("paid the charge")
        .0
}

fn sqlite(dir: &tempfile::TempDir) -> Arc<Counting> {
    Counting::new(SqliteStore::open(&dir.path().join("l402.db")).expect("sqlite"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_402_offers_l402_then_a_payment_charge_with_its_own_invoice() {
    let net = Net::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = sqlite(&dir);
    let app = serve(paywall(store.clone(), &net, keys(1))).await;
    let r = app.get("/weather", None).await;
    assert_eq!(r.status(), 402);
    let values = lines(&r);
    assert_eq!(values.len(), 3, "{values:?}");
    assert!(values[0].starts_with("LSAT ") && values[1].starts_with("L402 ") && values[2].starts_with("Payment "));
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["access-control-expose-headers"], "WWW-Authenticate, Payment-Receipt");
    let offers = PaymentChallenge::parse_all(values.iter().map(|v| v.as_bytes()));
    assert_eq!(offers.len(), 1);
    let c = &offers[0];
    assert_eq!((c.realm.as_str(), c.method.as_str(), c.intent.as_str()), ("api.test", "lightning", "charge"));
    let expires = l402_proto::rfc3339::parse(c.expires.as_deref().expect("expires")).expect("rfc 3339");
    let now = app.paywall.now();
    assert!((now + 890..=now + 901).contains(&expires), "15 minutes from now");
    let request = ChargeRequest::decode(&c.request).expect("request");
    assert_eq!((request.amount, request.currency.as_str()), (1_000, "sat"));
    assert_eq!(request.method_details.network, "regtest");
    assert_eq!(request.description.as_deref(), Some("weather"));
    let (_, invoice) = l402_proto::invoice::decode_invoice(&request.method_details.invoice).expect("bolt11");
    assert_eq!(invoice.payment_hash.0, request.method_details.payment_hash, "the invoice pays the charge's hash");
    assert_eq!(invoice.amount, Some(Msat::from_sat(1_000)));
    let l402 = l402_proto::Challenge::parse(values.iter().map(|v| v.as_bytes())).expect("L402 challenge");
    assert_ne!(l402.invoice, request.method_details.invoice, "the charge has an invoice of its own");
    assert!(c.verify_id(&keys(1).payment_secrets()[0]), "the id is the HMAC under the paywall's secret");
    assert_eq!(store.writes(), 0, "a challenge writes nothing, for either scheme");
    // An L402-only service offers what it did before; a Payment-only one no token.
    let r = app.get("/tokens", None).await;
    assert_eq!(lines(&r).len(), 2);
    assert_eq!(r.headers()["content-type"], "application/json");
    let only = lines(&app.get("/only-payment", None).await);
    assert_eq!(only.len(), 1, "{only:?}");
    assert!(only[0].starts_with("Payment "));
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paid_charge_opens_one_request_with_a_receipt_and_is_then_spent() {
    let net = Net::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = sqlite(&dir);
    let app = serve(paywall(store.clone(), &net, keys(1))).await;
    let auth = pay_charge(&net, app.get("/weather", None).await).await;
    let cred = PaymentCredential::from_authorization([auth.as_bytes()]).expect("parses").expect("a Payment credential");
    let r = app.get("/weather", Some(&auth)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["cache-control"], "private");
    let receipt = Receipt::decode(r.headers()["payment-receipt"].to_str().expect("ascii")).expect("receipt");
    let request = ChargeRequest::decode(&cred.challenge.request).expect("request");
    assert_eq!(receipt.reference, hex::encode(request.method_details.payment_hash));
    assert_eq!(receipt.challenge_id, cred.challenge.id);
    assert_eq!((receipt.status.as_str(), receipt.method.as_str()), ("success", "lightning"));
    assert!(l402_proto::rfc3339::parse(&receipt.timestamp).is_some());
    assert_eq!(r.text().await.expect("body"), format!("weather paid by charge {}", cred.challenge.id));
    // Spent: the same credential again gets a fresh 402 (paying again would be a new charge), with the same
    // scheme lowercased too.
    let lower = auth.replacen("Payment", "payment", 1);
    for again in [&auth, &lower] {
        let r = app.get("/weather", Some(again)).await;
        assert_eq!(r.status(), 402);
        assert_eq!(lines(&r).len(), 3);
    }
    assert_eq!(app.paywall.metrics().charges_paid.load(Ordering::SeqCst), 1);
    assert_eq!(app.paywall.metrics().refusals().get("charge_spent"), Some(&2));
    assert_eq!(
        store.revenue().await.expect("revenue"),
        vec![Revenue { service: "weather".into(), tokens_paid: 0, charges_paid: 1, amount: Msat::from_sat(1_000) }]
    );
    // The spend survives a restart: a new paywall on the same file refuses it.
    let app2 = serve(paywall(sqlite(&dir), &net, keys(1))).await;
    assert_eq!(app2.get("/weather", Some(&auth)).await.status(), 402);
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_charge_bought_for_a_cheap_service_does_not_open_a_dearer_one() {
    let net = Net::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let app = serve(paywall(sqlite(&dir), &net, keys(1))).await;
    let cheap = pay_charge(&net, app.get("/cheap", None).await).await;
    let r = app.get("/weather", Some(&cheap)).await;
    assert_eq!(r.status(), 402, "10 sat do not buy a 1000 sat request");
    assert_eq!(app.paywall.metrics().refusals().get("charge_wrong_service"), Some(&1));
    // Bought for weather (1000 sat), it does not open maps (2000 sat) nor, priced alike, another service.
    let weather = pay_charge(&net, app.get("/weather", None).await).await;
    assert_eq!(app.get("/maps", Some(&weather)).await.status(), 402);
    assert_eq!(app.get("/only-payment", Some(&weather)).await.status(), 402);
    // Refusals spent nothing: the charge still opens the request it was bought for, once.
    assert_eq!(app.get("/weather", Some(&weather)).await.status(), 200);
    assert_eq!(app.get("/cheap", Some(&cheap)).await.status(), 200);
    // A charge does not open an L402-only service.
    let tokens_charge = pay_charge(&net, app.get("/weather", None).await).await;
    assert_eq!(app.get("/tokens", Some(&tokens_charge)).await.status(), 402);
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn forged_and_expired_charges_are_refused_and_spend_nothing() {
    let net = Net::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = sqlite(&dir);
    let app = serve(paywall(store.clone(), &net, keys(1))).await;
    let auth = pay_charge(&net, app.get("/weather", None).await).await;
    let cred = PaymentCredential::from_authorization([auth.as_bytes()]).expect("parses").expect("credential");
    let preimage = cred.charge_preimage().expect("preimage");
    let with = |c: PaymentChallenge| PaymentCredential::charge(c, &preimage).header_value();
    // A challenge id under another secret (another server's, or made up).
    let other = keys(2).payment_secrets()[0];
    let forged_id = PaymentChallenge::charge(
        &other,
        &cred.challenge.realm,
        &cred.challenge.request,
        cred.challenge.expires.as_deref().expect("expires"),
    );
    // A request with a lower amount, the id left as it was.
    let mut request = ChargeRequest::decode(&cred.challenge.request).expect("request");
    request.amount = 1;
    let cheaper = PaymentChallenge { request: request.encode(), ..cred.challenge.clone() };
    // The expiry pushed out, the id left as it was.
    let later = PaymentChallenge { expires: Some("2099-01-01T00:00:00Z".into()), ..cred.challenge.clone() };
    // The right challenge with someone else's preimage.
    let wrong_preimage =
        PaymentCredential::charge(cred.challenge.clone(), &l402_proto::Preimage([7; 32])).header_value();
    for (what, bad, status) in [
        ("id under another secret", with(forged_id), 401),
        ("amount lowered", with(cheaper), 401),
        ("expiry pushed out", with(later), 401),
        ("preimage of another payment", wrong_preimage, 401),
        ("not base64url", "Payment !!!invalid!!!".to_owned(), 401),
        ("empty", "Payment ".to_owned(), 401),
    ] {
        let r = app.get("/weather", Some(&bad)).await;
        assert_eq!(r.status(), status, "{what}");
    }
    assert_eq!(store.count("spend_charge"), 0, "nothing forged reached the store");
    // Still good after all that, once.
    assert_eq!(app.get("/weather", Some(&auth)).await.status(), 200);
    // Past its expiry, a paid charge that was never used is refused with a fresh challenge.
    let late = pay_charge(&net, app.get("/weather", None).await).await;
    let clock_base = app.paywall.now();
    let scheme = PaymentScheme::new("api.test", keys(1).payment_secrets()).expect("secret");
    let moved: l402_server::Clock = Arc::new(move || clock_base + 901);
    let app_late = serve(
        Paywall::builder(store.clone(), net.server.clone())
            .master_keys(keys(1))
            .payment_scheme(scheme)
            .clock(moved)
            .build(),
    )
    .await;
    assert_eq!(app_late.get("/weather", Some(&late)).await.status(), 402);
    assert_eq!(app_late.paywall.metrics().refusals().get("charge_expired"), Some(&1));
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_postgres_racing_spend_a_charge_once() {
    let pg = l402_regtest::Postgres::start().await.expect("postgres (apt-get install postgresql)");
    let net = Net::start().await;
    let mut apps = Vec::new();
    for _ in 0..2 {
        let store = PostgresStore::connect(&pg.connection_string(), 8).await.expect("connect");
        apps.push(serve(paywall(Arc::new(store), &net, keys(9))).await);
    }
    for round in 0..3 {
        let auth = pay_charge(&net, apps[round % 2].get("/weather", None).await).await;
        let sends = (0..8).map(|i| {
            let (app, auth) = (&apps[i % 2], auth.clone());
            async move { app.get("/weather", Some(&auth)).await.status().as_u16() }
        });
        let mut statuses = futures_util::future::join_all(sends).await;
        statuses.sort_unstable();
        assert_eq!(statuses, [200, 402, 402, 402, 402, 402, 402, 402], "round {round}: served once");
    }
    let store = PostgresStore::connect(&pg.connection_string(), 1).await.expect("connect");
    let revenue = store.revenue().await.expect("revenue");
    assert_eq!(revenue[0].charges_paid, 3);
    assert_eq!(revenue[0].amount, Msat::from_sat(3_000));
    net.net.shutdown().await;
}

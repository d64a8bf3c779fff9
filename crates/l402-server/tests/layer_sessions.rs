//! Sessions through the tower layer (an axum service, no proxy): the inner service sees the session it was
//! paid from, the response carries the balance and a receipt, a close is answered by the layer with the refund
//! paid over a real regtest channel, and a paywall that cannot pay refunds refuses the close (503) and leaves
//! the session open with its balance.
#![allow(missing_docs)]

use std::sync::Arc;

use axum::Router;
use axum::extract::Extension;
use axum::routing::get;
use l402_lightning::{InvoiceIssuer as _, InvoiceRequest, InvoiceState, PayRequest, Payer as _};
use l402_proto::mpp::{PaymentChallenge, PaymentCredential, SessionAction, SessionRequest};
use l402_proto::{Msat, PaymentHash};
use l402_server::store::SqliteStore;
use l402_server::{
    Charge, L402Layer, MasterKey, MasterKeys, PayerRefunder, PaymentScheme, Paywall, RequestInfo, ServiceSpec,
    SessionPaid, SessionSpec,
};

struct Net {
    _net: l402_regtest::Regtest,
    alice: Arc<l402_ldk::LdkNode>,
    server: Arc<l402_ldk::LdkNode>,
}

/// alice with a channel to the server of which 200,000 sat are the server's (so that it can refund).
async fn network() -> Net {
    let net = l402_regtest::Regtest::start().await.expect("regtest (is bitcoind installed?)");
    let alice = net.ldk_node("alice").await.expect("alice");
    let server = net.ldk_node("server").await.expect("server");
    net.fund(&alice, 1_000_000).await.expect("fund");
    net.open_channel(&alice, &server, 800_000, 200_000_000).await.expect("channel");
    Net { _net: net, alice, server }
}

async fn serve(net: &Net, refunds: bool) -> (String, Arc<Paywall>) {
    let keys = MasterKeys::single(MasterKey::from_bytes(&[3; 32]));
    let scheme = PaymentScheme::new("layer.test", keys.payment_secrets()).expect("secret");
    let store = Arc::new(SqliteStore::in_memory().expect("store"));
    let mut b = Paywall::builder(store, net.server.clone()).master_keys(keys).payment_scheme(scheme);
    if refunds {
        b = b.refunder(Arc::new(PayerRefunder(net.server.clone())));
    }
    let paywall = b.build();
    let spec = Arc::new(ServiceSpec::new("weather", Msat::from_sat(10)).session(SessionSpec::deposit_sat(30)));
    let pricing = move |_: &RequestInfo<'_>| -> Option<Charge> { Some(Charge::of(&spec)) };
    let handler = |s: Option<Extension<SessionPaid>>| async move {
        match s {
            Some(Extension(s)) => format!("{} by session {} ({})", s.service, hex::encode(s.id.0), s.action),
            None => "not by a session".to_owned(),
        }
    };
    let app = Router::new().route("/weather", get(handler)).layer(L402Layer::new(paywall.clone(), pricing));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}/weather", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, paywall)
}

async fn fetch(url: &str, auth: Option<&str>) -> reqwest::Response {
    let mut req = reqwest::Client::new().get(url);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send().await.expect("request")
}

/// Opens a session on `url` from alice: the challenge, the session id, the deposit's preimage, the return
/// invoice's payment hash, and the open's response.
async fn open(net: &Net, url: &str) -> (PaymentChallenge, String, String, PaymentHash, reqwest::Response) {
    let r = fetch(url, None).await;
    assert_eq!(r.status(), 402);
    let offer = PaymentChallenge::parse_all(r.headers().get_all("www-authenticate").iter().map(|v| v.as_bytes()))
        .into_iter()
        .find(|c| c.intent == "session")
        .expect("a session line");
    let req = SessionRequest::decode(&offer.request).expect("request");
    let bolt11 = req.deposit_invoice.clone().expect("deposit invoice");
    let pay = PayRequest {
        bolt11,
        payment_hash: PaymentHash(req.payment_hash),
        amount: Msat::from_sat(req.deposit_amount.expect("deposit")),
        max_fee: Msat(10_000),
        timeout: std::time::Duration::from_secs(30),
    };
    let pre = hex::encode(net.alice.pay(&pay, &|_| {}).await.expect("deposit paid").preimage.0);
    let ret = net
        .alice
        .create_invoice(&InvoiceRequest {
            amount: Msat(0),
            memo: "refund".into(),
            expiry: std::time::Duration::from_secs(3600),
        })
        .await
        .expect("return invoice");
    let action = SessionAction::Open { preimage: pre.clone(), return_invoice: ret.bolt11 };
    let cred = PaymentCredential { challenge: offer.clone(), source: None, payload: action.to_json() }.header_value();
    let r = fetch(url, Some(&cred)).await;
    (offer, hex::encode(req.payment_hash), pre, ret.payment_hash, r)
}

fn close(offer: &PaymentChallenge, sid: &str, pre: &str) -> String {
    let action = SessionAction::Close { session_id: sid.to_owned(), preimage: pre.to_owned() };
    PaymentCredential { challenge: offer.clone(), source: None, payload: action.to_json() }.header_value()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_layer_serves_a_session_and_answers_its_close_with_a_refund() {
    let net = network().await;
    let (url, _) = serve(&net, true).await;
    let (offer, sid, pre, ret_hash, r) = open(&net, &url).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-l402-balance-msat"], "20000");
    assert!(r.headers().contains_key("payment-receipt"));
    assert_eq!(r.text().await.expect("body"), format!("weather by session {sid} (open)"));

    let r = fetch(&url, Some(&close(&offer, &sid, &pre))).await;
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body, serde_json::json!({"sessionId": sid, "refundMsat": 20_000, "refundStatus": "succeeded"}));
    match net.alice.lookup_invoice(&ret_hash).await.expect("lookup") {
        InvoiceState::Settled(s) => assert_eq!(s.amount_received, Msat(20_000)),
        other => panic!("no refund: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paywall_without_a_refunder_refuses_a_close_and_keeps_the_session_open() {
    let net = network().await;
    let (url, paywall) = serve(&net, false).await;
    let (offer, sid, pre, _, r) = open(&net, &url).await;
    assert_eq!(r.status(), 200);
    let r = fetch(&url, Some(&close(&offer, &sid, &pre))).await;
    assert_eq!(r.status(), 503);
    let id = PaymentHash(hex::decode(&sid).expect("hex").try_into().expect("32"));
    let info = paywall.store().session(&id).await.expect("store").expect("session");
    assert_eq!((info.state, info.balance), (l402_server::store::SessionState::Open, Msat(20_000)));
    let bearer = SessionAction::Bearer { session_id: sid.clone(), preimage: pre.clone() };
    let cred = PaymentCredential { challenge: offer, source: None, payload: bearer.to_json() }.header_value();
    let r = fetch(&url, Some(&cred)).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-l402-balance-msat"], "10000");
}

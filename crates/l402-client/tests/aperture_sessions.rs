//! The session intent on the wire against the real Aperture (v0.5.0, `authenticator.enablesessions`), backed by
//! real LND, paid from an embedded LDK node over a regtest channel: Aperture's session line reads with our
//! `SessionRequest` (the fields our server sends too), a deposit paid and an `open` built with
//! `l402_proto::mpp` are accepted, `bearer` requests are served, and a `close` refunds the unspent balance to
//! the amountless return invoice, as the payer's node sees it.
#![allow(missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use l402_lightning::{InvoiceIssuer as _, InvoiceRequest, InvoiceState, PayRequest, Payer as _};
use l402_proto::mpp::{PaymentChallenge, PaymentCredential, SessionAction, SessionRequest, b64url_decode};
use l402_proto::{Msat, PaymentHash};
use l402_regtest::{Aperture, ApertureService, Regtest};

async fn upstream() -> SocketAddr {
    let app =
        axum::Router::new().fallback(|uri: axum::http::Uri| async move { format!("upstream saw {}", uri.path()) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

fn session_line(r: &reqwest::Response) -> PaymentChallenge {
    PaymentChallenge::parse_all(r.headers().get_all("www-authenticate").iter().map(|v| v.as_bytes()))
        .into_iter()
        .find(|c| c.intent == "session")
        .unwrap_or_else(|| panic!("no session line in {:?}", r.headers()))
}

fn cred(challenge: &PaymentChallenge, action: &SessionAction) -> String {
    PaymentCredential { challenge: challenge.clone(), source: None, payload: action.to_json() }.header_value()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn aperture_sessions_speak_our_session_wire_and_refund_the_rest_on_close() {
    let net = Regtest::start().await.expect("regtest");
    let operator = net.lnd_node("operator").await.expect("operator LND (scripts/install-peers.sh)");
    let agent = net.ldk_node("agent").await.expect("agent LDK");
    net.fund(&agent, 2_000_000).await.expect("fund agent");
    // Pushed to the operator: room for it to refund.
    net.open_channel_to_lnd(&agent, &operator, 1_000_000, 200_000_000).await.expect("agent -> operator");
    let services = [ApertureService {
        name: "weather".into(),
        path_regexp: "^/weather/.*$".into(),
        upstream: upstream().await,
        price_sat: 10,
    }];
    let aperture = Aperture::start_with_sessions(&net.root().join("aperture"), &operator, &services)
        .await
        .expect("Aperture starts with sessions on");
    let url = aperture.url("/weather/today");
    let http = reqwest::Client::new();
    let get = |auth: Option<String>| {
        let mut req = http.get(&url);
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        async move { req.send().await.expect("Aperture answers") }
    };

    let r = get(None).await;
    assert_eq!(r.status(), 402);
    let offer = session_line(&r);
    let raw: serde_json::Value =
        serde_json::from_slice(&b64url_decode(&offer.request).expect("base64url")).expect("json");
    println!("Aperture's session request: {raw}");
    let req = SessionRequest::decode(&offer.request).expect("our SessionRequest reads Aperture's");
    assert_eq!((req.amount, req.currency.as_str(), req.deposit_amount), (10, "sat", Some(200)));
    let deposit = req.deposit_invoice.clone().expect("a deposit invoice");
    let (_, info) = l402_proto::invoice::decode_invoice(&deposit).expect("invoice");
    assert_eq!((info.payment_hash.0, info.amount), (req.payment_hash, Some(Msat::from_sat(200))));

    let paid = agent
        .pay(
            &PayRequest {
                bolt11: deposit,
                payment_hash: info.payment_hash,
                amount: Msat::from_sat(200),
                max_fee: Msat(10_000),
                timeout: Duration::from_secs(30),
            },
            &|_| {},
        )
        .await
        .expect("deposit paid");
    let pre = hex::encode(paid.preimage.0);
    let sid = hex::encode(req.payment_hash);
    let ret = agent
        .create_invoice(&InvoiceRequest { amount: Msat(0), memo: "refund".into(), expiry: Duration::from_secs(3600) })
        .await
        .expect("amountless return invoice");

    let r = get(Some(cred(&offer, &SessionAction::Open { preimage: pre.clone(), return_invoice: ret.bolt11 }))).await;
    assert_eq!(r.status(), 200, "Aperture accepts our open");
    println!("Aperture's open answer headers: {:?}", r.headers());
    assert_eq!(r.text().await.expect("body"), "upstream saw /weather/today");
    for _ in 0..3 {
        let r = get(Some(cred(&offer, &SessionAction::Bearer { session_id: sid.clone(), preimage: pre.clone() }))).await;
        assert_eq!(r.status(), 200, "Aperture serves our bearer");
    }

    let r = get(Some(cred(&offer, &SessionAction::Close { session_id: sid.clone(), preimage: pre.clone() }))).await;
    assert_eq!(r.status(), 200, "Aperture accepts our close");
    let receipt = r.headers().get("payment-receipt").map(|v| v.to_str().expect("ascii").to_owned());
    let body = r.text().await.expect("body");
    let receipt: Option<serde_json::Value> =
        receipt.map(|v| serde_json::from_slice(&b64url_decode(&v).expect("b64")).expect("receipt json"));
    println!("Aperture's close: body {body:?}, receipt {receipt:?}");
    // Aperture refunds after answering (in the background): the payer's node is where it shows.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let received = loop {
        match agent.lookup_invoice(&PaymentHash(ret.payment_hash.0)).await.expect("lookup") {
            InvoiceState::Settled(s) => break s.amount_received,
            _ if tokio::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(200)).await,
            other => panic!("Aperture's refund never arrived: {other:?}"),
        }
    };
    // 200 deposited; Aperture charged the bearers (not the open): 3 × 10 sat.
    println!("refund received: {received}");
    assert_eq!(received, Msat::from_sat(200 - 30), "the unspent balance, refunded");
    drop(aperture);
    net.shutdown().await;
}

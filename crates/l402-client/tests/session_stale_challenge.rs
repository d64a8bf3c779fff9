//! A `Payment` session against a server that, like Aperture, refuses a bearer credential whose echoed challenge
//! has expired (a fresh 402, no balance header): the client opens the session once (one real deposit payment
//! over a regtest channel), and when the echoed challenge has expired it sends the same bearer credential again
//! echoing the fresh challenge, paying nothing. A hostile session line (its invoice pays another hash, or is not
//! for the stated deposit) is refused before anything is paid. The server here speaks the session from its wire
//! format, with a real LDK node issuing the deposit invoices and checking they settled.
#![allow(missing_docs)]

mod support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use l402_client::{Client, Error, PreferScheme};
use l402_ldk::LdkNode;
use l402_lightning::{InvoiceIssuer, InvoiceRequest, InvoiceState};
use l402_proto::mpp::{
    INTENT_SESSION, METHOD_LIGHTNING, PaymentChallenge, PaymentCredential, SessionAction, SessionRequest,
    b64url_encode, jcs,
};
use l402_proto::{InvoiceError, Msat, PaymentHash, Preimage};
use reqwest::Method;
use support::{loopback_config, network, node_payment_count};

const SECRET: &[u8] = b"session test secret";
/// How long a challenge is good for: short, so that the test can see one expire.
const CHALLENGE_SECS: u64 = 5;

/// How the server words its session line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Line {
    Honest,
    /// The deposit invoice pays another hash than the line's `paymentHash`.
    HashMismatch,
    /// The deposit invoice is for more than the line's `depositAmount`.
    AmountMismatch,
}

struct State {
    node: Arc<LdkNode>,
    line: Line,
    /// Open sessions: id (hex) to balance, msat.
    sessions: HashMap<String, u64>,
    /// Bearer credentials refused because their echoed challenge had expired.
    expired_bearers: usize,
}

type Shared = Arc<Mutex<State>>;

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
}

async fn challenge(state: &Shared) -> Response {
    let (node, line) = {
        let s = state.lock().expect("lock");
        (s.node.clone(), s.line)
    };
    let sats = if line == Line::AmountMismatch { 150 } else { 100 };
    let req = InvoiceRequest { amount: Msat::from_sat(sats), memo: "deposit".into(), expiry: Duration::from_secs(600) };
    let invoice = node.create_invoice(&req).await.expect("invoice");
    let stated = if line == Line::HashMismatch { PaymentHash([9; 32]) } else { invoice.payment_hash };
    let request = serde_json::json!({
        "amount": "10",
        "currency": "sat",
        "depositAmount": "100",
        "depositInvoice": invoice.bolt11,
        "description": "svc",
        "paymentHash": stated.to_hex(),
    });
    let mut c = PaymentChallenge {
        realm: "test".into(),
        method: METHOD_LIGHTNING.into(),
        intent: INTENT_SESSION.into(),
        request: b64url_encode(jcs(&request).as_bytes()),
        expires: Some(l402_proto::rfc3339::format_utc(now() + CHALLENGE_SECS)),
        ..PaymentChallenge::default()
    };
    c.id = c.expected_id(SECRET);
    let mut resp = StatusCode::PAYMENT_REQUIRED.into_response();
    resp.headers_mut().append("www-authenticate", HeaderValue::from_str(&c.header_value()).expect("header"));
    resp
}

fn served(balance: u64) -> Response {
    let mut resp = (StatusCode::OK, "served").into_response();
    resp.headers_mut().insert("x-l402-balance-msat", HeaderValue::from(balance));
    resp
}

async fn handle(state: Shared, headers: HeaderMap) -> Response {
    let values = headers.get_all("authorization").iter().map(HeaderValue::as_bytes);
    let Ok(Some(cred)) = PaymentCredential::from_authorization(values) else { return challenge(&state).await };
    let c = &cred.challenge;
    let action = SessionAction::from_json(&cred.payload).expect("a session action");
    if !c.verify_id(SECRET) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let expired = c.expires.as_deref().and_then(l402_proto::rfc3339::parse).is_none_or(|t| t <= now());
    if expired {
        if matches!(action, SessionAction::Bearer { .. }) {
            state.lock().expect("lock").expired_bearers += 1;
        }
        return challenge(&state).await;
    }
    let request = SessionRequest::decode(&c.request).expect("our request");
    let hash_of = |hex: &str| Preimage::from_hex(hex).expect("preimage").payment_hash();
    match action {
        SessionAction::Open { preimage, return_invoice } => {
            let hash = hash_of(&preimage);
            assert_eq!(hash.0, request.payment_hash, "the deposit's preimage");
            let (_, info) = l402_proto::invoice::decode_invoice(&return_invoice).expect("return invoice");
            assert_eq!(info.amount, None, "the return invoice is amountless");
            let node = state.lock().expect("lock").node.clone();
            assert!(matches!(node.lookup_invoice(&hash).await, Ok(InvoiceState::Settled(_))), "the deposit settled");
            let balance = 100_000 - 10_000;
            state.lock().expect("lock").sessions.insert(hash.to_hex(), balance);
            served(balance)
        }
        SessionAction::Bearer { session_id, preimage } => {
            assert_eq!(hash_of(&preimage).to_hex(), session_id);
            let mut s = state.lock().expect("lock");
            let Some(balance) = s.sessions.get_mut(&session_id) else {
                return StatusCode::UNAUTHORIZED.into_response();
            };
            *balance -= 10_000;
            served(*balance)
        }
        other => panic!("not expected here: {other:?}"),
    }
}

async fn start(node: Arc<LdkNode>, line: Line) -> (String, Shared) {
    let state = Arc::new(Mutex::new(State { node, line, sessions: HashMap::new(), expired_bearers: 0 }));
    let s = state.clone();
    let app = axum::Router::new().fallback(move |headers: HeaderMap| handle(s.clone(), headers));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(l, app).await;
    });
    (format!("http://{addr}/svc/data"), state)
}

fn client(payer: &Arc<LdkNode>, dir: &std::path::Path) -> Client {
    let mut cfg = loopback_config(dir);
    cfg.prefer_scheme = PreferScheme::Session;
    cfg.expiry_margin = Duration::from_secs(1); // the challenges here live for seconds
    Client::new(payer.clone(), cfg).expect("client").with_invoice_issuer(payer.clone())
}

async fn get(c: &Client, url: &str) -> Result<l402_client::L402Response, Error> {
    c.execute(c.request(Method::GET, url).build().expect("request")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_expired_echoed_challenge_is_refreshed_once_paying_nothing_and_hostile_lines_are_refused() {
    let (net, server_node, payers) = network(&["alice"]).await;
    let alice = payers[0].clone();

    // Hostile lines first: refused before paying, with the charge's errors; nothing leaves alice's node.
    for (line, code) in [(Line::HashMismatch, 14), (Line::AmountMismatch, 19)] {
        let (url, _) = start(server_node.clone(), line).await;
        let dir = tempfile::tempdir().expect("tmp");
        let e = get(&client(&alice, dir.path()), &url).await.expect_err("refused");
        match (line, &e) {
            (Line::HashMismatch, Error::Invoice(InvoiceError::HashMismatch { .. })) => {}
            (Line::AmountMismatch, Error::AmountMismatch { stated, invoice })
                if *stated == Msat::from_sat(100) && *invoice == Msat::from_sat(150) => {}
            _ => panic!("{line:?}: {e:?}"),
        }
        assert_eq!(e.exit_code(), code, "{e}");
        assert_eq!(node_payment_count(&alice), 0, "{line:?}: nothing paid");
    }

    let (url, state) = start(server_node.clone(), Line::Honest).await;
    let dir = tempfile::tempdir().expect("tmp");
    let c = client(&alice, dir.path());
    let first = get(&c, &url).await.expect("opened");
    assert_eq!(first.response.status(), 200);
    let deposit = first.payment.expect("the deposit");
    assert_eq!((deposit.amount, deposit.intent()), (Msat::from_sat(100), Some("session")));
    let session = first.session.expect("a session");
    assert_eq!(
        (session.session_id.as_str(), session.balance_msat),
        (deposit.payment_hash.to_hex().as_str(), Some(90_000))
    );

    // The echoed challenge expires; the next request is refused once, then served on the fresh one.
    tokio::time::sleep(Duration::from_secs(CHALLENGE_SECS + 1)).await;
    let second = get(&c, &url).await.expect("served after one refresh");
    assert_eq!(second.response.status(), 200);
    assert!(second.payment.is_none(), "nothing paid for a refresh");
    assert_eq!(second.session.expect("session").balance_msat, Some(80_000));
    assert_eq!(state.lock().expect("lock").expired_bearers, 1, "one bearer with the expired challenge");
    // The fresh challenge is kept: the next request is served at once.
    let third = get(&c, &url).await.expect("served");
    assert_eq!((third.response.status().as_u16(), third.payment.is_none()), (200, true));
    assert_eq!(state.lock().expect("lock").expired_bearers, 1);
    assert_eq!(node_payment_count(&alice), 1, "one payment in all: the deposit");
    net.shutdown().await;
}

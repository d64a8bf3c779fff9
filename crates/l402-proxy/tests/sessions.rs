//! `l402 proxy` with sessions (the `Payment` scheme's `session` intent), paid over a real regtest channel: a
//! deposit opens a session, each request draws the service's price from it (seen in `X-L402-Balance-Msat`), a
//! short balance gets a 402 whose session line is a top-up, a top-up is credited once however often it is
//! presented, the balance outlives a restart, concurrent requests never overdraw it, and a close refunds the
//! rest to the client's amountless return invoice over Lightning (checked on the client's node). Forged,
//! mismatched and hostile credentials are refused with a typed reason and move no money.
#![allow(missing_docs)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use l402_lightning::{InvoiceIssuer as _, InvoiceRequest, InvoiceState, PayRequest, Payer as _};
use l402_proto::mpp::{PaymentChallenge, PaymentCredential, Receipt, SessionAction, SessionRequest, b64url_decode};
use l402_proto::{Msat, PaymentHash, Preimage};
use l402_proxy::{Config, Proxy, open_store};
use l402_server::session::PayerRefunder;
use support::{Net, Raw, http_get, preamble};

/// An upstream that counts what reaches it and echoes the session header it was given.
async fn counting_upstream() -> (String, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let h = h.clone();
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            let session = req.headers().get("x-l402-session-id").map(|v| v.to_str().unwrap_or("").to_owned());
            axum::Json(serde_json::json!({ "session": session }))
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), hits)
}

/// bitcoind, and alice with a channel to the server's node of which 200,000 sat are the server's: it can pay
/// refunds back (a node that has only received a few deposits is under its channel reserve).
async fn network() -> Net {
    let net =
        l402_regtest::Regtest::start().await.expect("regtest (is bitcoind installed? scripts/install-bitcoind.sh)");
    let alice = net.ldk_node("alice").await.expect("alice");
    let server = net.ldk_node("server").await.expect("server");
    net.fund(&alice, 1_000_000).await.expect("fund alice");
    net.open_channel(&alice, &server, 800_000, 200_000_000).await.expect("alice -> server");
    Net { net, alice, server }
}

fn config(dir: &std::path::Path, upstream: &str, session: &str) -> String {
    format!(
        r#"{}
[payment]
realm = "proxy.test"

[[service]]
name = "weather"
path = "/weather*"
upstream = "{upstream}"
price_sat = 10

[service.session]
{session}

[[service]]
name = "news"
path = "/news*"
upstream = "{upstream}"
price_sat = 10

[service.session]
deposit_sat = 1000
"#,
        preamble(dir)
    )
}

async fn start(text: &str, server: &Arc<l402_ldk::LdkNode>) -> Proxy {
    let config = Config::parse(text).expect("config");
    let store = open_store(&config.store).await.expect("store");
    let refunder = Arc::new(PayerRefunder(server.clone()));
    Proxy::start_with_refunder(&config, store, server.clone(), Some(refunder)).await.expect("proxy starts")
}

/// The session line of a 402.
fn session_offer(r: &Raw) -> (PaymentChallenge, SessionRequest) {
    assert_eq!(r.status, 402, "{r:?}");
    let c = PaymentChallenge::parse_all(r.all("www-authenticate"))
        .into_iter()
        .find(|c| c.intent == "session")
        .unwrap_or_else(|| panic!("no session line: {r:?}"));
    let req = SessionRequest::decode(&c.request).expect("session request");
    (c, req)
}

/// Pays an invoice from `payer`: its preimage.
async fn pay(payer: &l402_ldk::LdkNode, bolt11: &str) -> Preimage {
    let (_, info) = l402_proto::invoice::decode_invoice(bolt11).expect("invoice");
    let request = PayRequest {
        bolt11: bolt11.to_owned(),
        payment_hash: info.payment_hash,
        amount: info.amount.expect("an amount"),
        max_fee: Msat(10_000),
        timeout: std::time::Duration::from_secs(30),
    };
    payer.pay(&request, &|_| {}).await.expect("paid").preimage
}

fn credential(challenge: &PaymentChallenge, action: &SessionAction) -> String {
    PaymentCredential { challenge: challenge.clone(), source: None, payload: action.to_json() }.header_value()
}

async fn get(p: &Proxy, path: &str, auth: &str) -> Raw {
    http_get(p.addr(), path, &[&format!("Authorization: {auth}")]).await
}

fn balance(r: &Raw) -> u64 {
    r.header("x-l402-balance-msat").and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("no balance: {r:?}"))
}

fn reason(r: &Raw) -> String {
    r.json()["reason"].as_str().unwrap_or_default().to_owned()
}

/// An amountless invoice of `node`, for refunds.
async fn return_invoice(node: &l402_ldk::LdkNode) -> (String, PaymentHash) {
    let req = InvoiceRequest {
        amount: Msat(0),
        memo: "session refund".into(),
        expiry: std::time::Duration::from_secs(24 * 3600),
    };
    let inv = node.create_invoice(&req).await.expect("amountless invoice");
    (inv.bolt11, inv.payment_hash)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_session_is_opened_by_its_deposit_drawn_per_request_topped_up_once_and_refunded_on_close() {
    let n = network().await;
    let (up, hits) = counting_upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let text = config(dir.path(), &up, "deposit_sat = 35");
    let p = start(&text, &n.server).await;

    // The 402 offers L402 and a session: a deposit of 35 sat, 10 sat a request, for this service.
    let r = http_get(p.addr(), "/weather", &[]).await;
    let lines = r.all("www-authenticate");
    assert_eq!(lines.len(), 3, "{r:?}");
    assert!(lines[0].starts_with(b"LSAT ") && lines[1].starts_with(b"L402 "));
    assert_eq!(r.header("content-type"), Some("application/problem+json"));
    let (offer, req) = session_offer(&r);
    assert_eq!((req.amount, req.deposit_amount, req.description.as_deref()), (10, Some(35), Some("weather")));
    assert_eq!(offer.realm, "proxy.test");
    let id = PaymentHash(req.payment_hash);
    let sid = hex::encode(id.0);

    // An open with a preimage that is not the deposit's: 401, nothing opened.
    let (ret, ret_hash) = return_invoice(&n.alice).await;
    let unpaid = SessionAction::Open { preimage: hex::encode([7u8; 32]), return_invoice: ret.clone() };
    let r = get(&p, "/weather", &credential(&offer, &unpaid)).await;
    assert_eq!((r.status, reason(&r)), (401, "session_preimage_mismatch".into()), "{r:?}");

    let deposit = pay(&n.alice, req.deposit_invoice.as_deref().expect("deposit invoice")).await;
    let pre = hex::encode(deposit.0);

    // A return invoice with an amount cannot take a refund: 400, and no session opens.
    let with_amount = n
        .alice
        .create_invoice(&InvoiceRequest {
            amount: Msat(1_000),
            memo: "x".into(),
            expiry: std::time::Duration::from_secs(600),
        })
        .await
        .expect("invoice");
    let bad = SessionAction::Open { preimage: pre.clone(), return_invoice: with_amount.bolt11 };
    let r = get(&p, "/weather", &credential(&offer, &bad)).await;
    assert_eq!((r.status, reason(&r)), (400, "session_bad_return_invoice".into()), "{r:?}");
    let r = get(
        &p,
        "/weather",
        &credential(&offer, &SessionAction::Bearer { session_id: sid.clone(), preimage: pre.clone() }),
    )
    .await;
    assert_eq!((r.status, reason(&r)), (401, "unknown_session".into()), "{r:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 0);

    // Open: the deposit, less this request.
    let open = SessionAction::Open { preimage: pre.clone(), return_invoice: ret.clone() };
    let r = get(&p, "/weather", &credential(&offer, &open)).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(balance(&r), 25_000);
    assert_eq!(r.json()["session"], sid, "the upstream is told the session");
    let receipt = Receipt::decode(r.header("payment-receipt").expect("receipt")).expect("receipt");
    assert_eq!((receipt.reference.as_str(), receipt.challenge_id.as_str()), (sid.as_str(), offer.id.as_str()));

    // Bearer requests draw 10 sat each; the open presented again is one too.
    let bearer = credential(&offer, &SessionAction::Bearer { session_id: sid.clone(), preimage: pre.clone() });
    assert_eq!(balance(&get(&p, "/weather", &bearer).await), 15_000);
    assert_eq!(balance(&get(&p, "/weather", &credential(&offer, &open)).await), 5_000);
    assert_eq!(hits.load(Ordering::SeqCst), 3);

    // Hostile: a wrong preimage, a tampered request (a price of 0 under the old id), another service's
    // session: refused, nothing debited, nothing forwarded.
    let wrong =
        credential(&offer, &SessionAction::Bearer { session_id: sid.clone(), preimage: hex::encode([1u8; 32]) });
    let r = get(&p, "/weather", &wrong).await;
    assert_eq!((r.status, reason(&r)), (401, "session_preimage_mismatch".into()));
    let mut tampered = offer.clone();
    let mut json: serde_json::Value =
        serde_json::from_slice(&b64url_decode(&offer.request).expect("b64")).expect("json");
    json["amount"] = "0".into();
    tampered.request = l402_proto::mpp::b64url_encode(l402_proto::mpp::jcs(&json).as_bytes());
    let r = get(
        &p,
        "/weather",
        &credential(&tampered, &SessionAction::Bearer { session_id: sid.clone(), preimage: pre.clone() }),
    )
    .await;
    assert_eq!((r.status, reason(&r)), (401, "session_bad_id".into()));
    let r = get(&p, "/news", &bearer).await;
    assert_eq!(r.status, 402, "a weather challenge is no credential for news: {r:?}");
    let (news_offer, _) = session_offer(&r);
    let cross = credential(&news_offer, &SessionAction::Bearer { session_id: sid.clone(), preimage: pre.clone() });
    let r = get(&p, "/news", &cross).await;
    assert_eq!((r.status, reason(&r)), (401, "unknown_session".into()), "a weather session does not pay for news");
    assert_eq!(hits.load(Ordering::SeqCst), 3);

    // The balance outlives a restart.
    drop(p);
    let p = start(&text, &n.server).await;

    // 5 sat left: the next request gets a 402 whose session line is a top-up, and the balance.
    let r = get(&p, "/weather", &bearer).await;
    assert_eq!(balance(&r), 5_000);
    let (top_offer, top_req) = session_offer(&r);
    assert_ne!(top_req.payment_hash, id.0, "a fresh invoice");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    let top_pre = pay(&n.alice, top_req.deposit_invoice.as_deref().expect("invoice")).await;
    let top_up = credential(
        &top_offer,
        &SessionAction::TopUp { session_id: sid.clone(), top_up_preimage: hex::encode(top_pre.0) },
    );
    let r = get(&p, "/weather", &top_up).await;
    assert_eq!((r.status, balance(&r)), (200, 5_000 + 35_000 - 10_000), "{r:?}");
    // Presented again: credited once, so it is one more request drawn.
    let r = get(&p, "/weather", &top_up).await;
    assert_eq!((r.status, balance(&r)), (200, 20_000));
    assert_eq!(hits.load(Ordering::SeqCst), 5);
    let info = p_session(&p, &id).await;
    assert_eq!((info.credited, info.spent, info.requests), (Msat(70_000), Msat(50_000), 5));

    // Close: answered by the proxy (not forwarded), the 20 sat left refunded to alice's return invoice.
    let close = credential(&offer, &SessionAction::Close { session_id: sid.clone(), preimage: pre.clone() });
    let r = get(&p, "/weather", &close).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json(), serde_json::json!({"sessionId": sid, "refundMsat": 20_000, "refundStatus": "succeeded"}));
    let receipt: serde_json::Value =
        serde_json::from_slice(&b64url_decode(r.header("payment-receipt").expect("receipt")).expect("b64"))
            .expect("json");
    assert_eq!((receipt["refundSats"].as_u64(), receipt["refundStatus"].as_str()), (Some(20), Some("succeeded")));
    assert_eq!(hits.load(Ordering::SeqCst), 5);
    match n.alice.lookup_invoice(&ret_hash).await.expect("lookup") {
        InvoiceState::Settled(s) => assert_eq!(s.amount_received, Msat(20_000), "alice's node received the refund"),
        other => panic!("the refund did not arrive: {other:?}"),
    }

    // Closed: no more requests; a close presented again gets the same answer and refunds nothing more.
    let r = get(&p, "/weather", &bearer).await;
    assert_eq!((r.status, reason(&r)), (401, "session_closed".into()));
    let r = get(&p, "/weather", &close).await;
    assert_eq!(r.json()["refundMsat"], 20_000);
    let info = p_session(&p, &id).await;
    assert_eq!((info.refunded, info.balance), (Msat(20_000), Msat(0)));
    assert_eq!(hits.load(Ordering::SeqCst), 5);
}

async fn p_session(p: &Proxy, id: &PaymentHash) -> l402_server::store::SessionInfo {
    p.paywall().store().session(id).await.expect("store").expect("session")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_never_overdraw_a_session() {
    let n = network().await;
    let (up, hits) = counting_upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let p = Arc::new(start(&config(dir.path(), &up, "deposit_sat = 35"), &n.server).await);
    let (offer, req) = session_offer(&http_get(p.addr(), "/weather", &[]).await);
    let pre = hex::encode(pay(&n.alice, req.deposit_invoice.as_deref().expect("invoice")).await.0);
    let (ret, _) = return_invoice(&n.alice).await;
    let sid = hex::encode(req.payment_hash);
    let open = credential(&offer, &SessionAction::Open { preimage: pre.clone(), return_invoice: ret });
    let bearer = credential(&offer, &SessionAction::Bearer { session_id: sid, preimage: pre });
    // 35 sat covers 3 requests of 10: of 12 at once (opens and bearers mixed), exactly 3 pass.
    let mut tasks = Vec::new();
    for i in 0..12 {
        let (p, auth) = (p.clone(), if i % 3 == 0 { open.clone() } else { bearer.clone() });
        tasks.push(tokio::spawn(async move { get(&p, "/weather", &auth).await.status }));
    }
    let mut statuses = Vec::new();
    for t in tasks {
        statuses.push(t.await.expect("task"));
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(ok, 3, "{statuses:?}");
    assert!(statuses.iter().all(|s| *s == 200 || *s == 402 || *s == 401), "{statuses:?}");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    let info = p.paywall().store().session(&PaymentHash(req.payment_hash)).await.expect("store").expect("session");
    assert_eq!((info.balance, info.requests), (Msat(5_000), 3));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_settings_that_cannot_work_are_configuration_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let base = |extra: &str, session: &str| {
        format!(
            "{}\n[[service]]\nname = \"w\"\npath = \"/w*\"\nupstream = \"http://127.0.0.1:1\"\n{extra}\n[service.session]\n{session}\n",
            preamble(dir.path())
        )
    };
    for (extra, session, why) in [
        ("price_sat = 10", "deposit_sat = 5", "less than one request"),
        ("price_sat = 10", "deposit_sat = 50\ndeposit_requests = 3", "not both"),
        ("price_sat = 10", "deposit_requests = 0", "at least 1"),
        ("price_msat = 10500", "deposit_sat = 50", "whole satoshis"),
        ("price_sat = 10\npayment = false", "deposit_sat = 50", "payment = true"),
        ("price_sat = 10", "deposit = 50", "unknown field"),
    ] {
        let err = Config::parse(&base(extra, session)).expect_err(why).to_string();
        assert!(err.contains(why), "{why}: {err}");
    }
    // Stored tokens have no master key to key the challenge ids: refused at start.
    let (_net, server) = support::invoicing_node().await;
    let text = format!("{}\n[tokens]\nstored = true\n", base("price_sat = 10", "deposit_sat = 50"));
    let config = Config::parse(&text).expect("parses");
    let store = open_store(&config.store).await.expect("store");
    let refunder = Arc::new(PayerRefunder(server.clone()));
    let Err(err) = Proxy::start_with_refunder(&config, store.clone(), server.clone(), Some(refunder)).await else {
        panic!("refused")
    };
    assert!(err.to_string().contains("master key"), "{err}");
    // And a proxy that cannot pay refunds cannot offer sessions.
    let config = Config::parse(&base("price_sat = 10", "deposit_sat = 50")).expect("parses");
    let Err(err) = Proxy::start(&config, store, server.clone()).await else { panic!("refused") };
    assert!(err.to_string().contains("cannot pay"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refund_that_fails_stays_owed_and_a_close_with_a_fresh_return_invoice_pays_it() {
    let n = network().await;
    // Carol has no channel: nothing can reach her invoice.
    let carol = n.net.ldk_node("carol").await.expect("carol");
    let (up, _) = counting_upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let p = start(&config(dir.path(), &up, "deposit_sat = 35"), &n.server).await;
    let (offer, req) = session_offer(&http_get(p.addr(), "/weather", &[]).await);
    let pre = hex::encode(pay(&n.alice, req.deposit_invoice.as_deref().expect("invoice")).await.0);
    let sid = hex::encode(req.payment_hash);
    let (unreachable, _) = return_invoice(&carol).await;
    let open = credential(&offer, &SessionAction::Open { preimage: pre.clone(), return_invoice: unreachable });
    assert_eq!(balance(&get(&p, "/weather", &open).await), 25_000);

    let close = SessionAction::Close { session_id: sid.clone(), preimage: pre.clone() };
    let r = get(&p, "/weather", &credential(&offer, &close)).await;
    assert_eq!(
        r.json(),
        serde_json::json!({"sessionId": sid, "refundMsat": 25_000, "refundStatus": "failed"}),
        "{r:?}"
    );
    let info = p_session(&p, &PaymentHash(req.payment_hash)).await;
    assert_eq!(
        (info.state, info.refund, info.refunded),
        (l402_server::store::SessionState::RefundFailed, Msat(25_000), Msat(0))
    );
    // Still owed, and the session takes no more requests.
    let bearer = credential(&offer, &SessionAction::Bearer { session_id: sid.clone(), preimage: pre.clone() });
    assert_eq!(reason(&get(&p, "/weather", &bearer).await), "session_closed");

    // A close with a fresh return invoice (alice's, reachable) pays it.
    let (fresh, fresh_hash) = return_invoice(&n.alice).await;
    let mut payload = close_payload(&sid, &pre);
    payload["returnInvoice"] = fresh.into();
    let cred = PaymentCredential { challenge: offer.clone(), source: None, payload }.header_value();
    let r = get(&p, "/weather", &cred).await;
    assert_eq!(r.json()["refundStatus"], "succeeded", "{r:?}");
    match n.alice.lookup_invoice(&fresh_hash).await.expect("lookup") {
        InvoiceState::Settled(s) => assert_eq!(s.amount_received, Msat(25_000)),
        other => panic!("the refund did not arrive: {other:?}"),
    }
    // A close with a return invoice carrying an amount, or garbage, is a 400 before anything moves.
    let mut payload = close_payload(&sid, &pre);
    payload["returnInvoice"] = "lnbcrt1garbage".into();
    let cred = PaymentCredential { challenge: offer.clone(), source: None, payload }.header_value();
    let r = get(&p, "/weather", &cred).await;
    assert_eq!((r.status, reason(&r)), (400, "session_bad_return_invoice".into()));
    let info = p_session(&p, &PaymentHash(req.payment_hash)).await;
    assert_eq!((info.state, info.refunded), (l402_server::store::SessionState::Closed, Msat(25_000)));
}

fn close_payload(sid: &str, pre: &str) -> serde_json::Value {
    SessionAction::Close { session_id: sid.to_owned(), preimage: pre.to_owned() }.to_json()
}

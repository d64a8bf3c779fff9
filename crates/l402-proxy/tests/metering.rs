//! Metered services through `l402 proxy`, paid over a real regtest channel, in front of the test kit's streaming
//! OpenAI-compatible upstream: each request is debited exactly what the upstream reported using (to the msat,
//! seen in `X-L402-Balance-Msat`), SSE chunks pass through as they are sent, a cut stream or a client that
//! hangs up costs its estimate, an exhausted bundle gets a fresh 402 and the next payment a fresh bundle,
//! balances outlive a restart, concurrent requests never overdraw (on one instance, and over two sharing PostgreSQL, which share balances),
//! and a `Payment` charge buys a bundle too.
#![allow(missing_docs)]

mod support;

use std::time::Duration;

use l402_proto::Msat;
use l402_proxy::{Config, Proxy};
use l402_server::store::BalanceKey;
use l402_testkit::{ChatOptions, ChatUpstream};
use serde_json::{Value, json};
use support::{network, pay, preamble, proxy};

/// A bundle of 1000 units at 2 msat a prompt unit and 3 msat a completion unit: 3000 msat (3 sat).
const BUNDLE_MSAT: u64 = 3_000;
const COMPLETION_TOKENS: u64 = 8;

fn config(dir: &std::path::Path, upstream: &str, schemes: &str) -> String {
    format!(
        r#"{}
[[service]]
name = "chat"
path = "/v1/*"
upstream = "{upstream}"
schemes = {schemes}
max_body_bytes = 4096

[service.metering]
bundle = 1000
input_msat_per_unit = 2
output_msat_per_unit = 3
default_estimate = 50
"#,
        preamble(dir)
    )
}

/// The network, the chat upstream, the store's directory and the proxy's configuration for `schemes`.
async fn setup(schemes: &str) -> (support::Net, ChatUpstream, tempfile::TempDir, String) {
    let n = network().await;
    let up = ChatUpstream::start(ChatOptions { completion_tokens: COMPLETION_TOKENS, ..ChatOptions::default() })
        .await
        .expect("upstream");
    let dir = tempfile::tempdir().expect("tmp");
    let text = config(dir.path(), &up.url(), schemes);
    (n, up, dir, text)
}

fn body(words: &str, max_tokens: u64, extra: Value) -> Vec<u8> {
    let mut v = json!({"model": "m", "stream": true, "max_tokens": max_tokens,
                       "messages": [{"role": "user", "content": words}]});
    if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
        o.extend(e.clone());
    }
    serde_json::to_vec(&v).expect("json")
}

/// The proxy's documented estimate for a body: a prompt unit per 4 bytes, plus `max_tokens` completion units.
fn estimate(body: &[u8], max_tokens: u64) -> u64 {
    body.len().div_ceil(4) as u64 * 2 + max_tokens * 3
}

/// What the upstream reports a request used, priced.
fn cost(words: &str, max_tokens: u64) -> u64 {
    words.split_whitespace().count() as u64 * 2 + max_tokens.min(COMPLETION_TOKENS) * 3
}

async fn post(p: &Proxy, auth: Option<&str>, body: Vec<u8>) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("http://{}/v1/chat/completions", p.addr()))
        .header("content-type", "application/json")
        .body(body);
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    tokio::time::timeout(Duration::from_secs(60), req.send()).await.expect("answered in time").expect("sent")
}

fn balance_header(r: &reqwest::Response) -> u64 {
    r.headers()
        .get("x-l402-balance-msat")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no X-L402-Balance-Msat: {r:?}"))
}

fn challenge_lines(r: &reqwest::Response) -> Vec<Vec<u8>> {
    r.headers().get_all("www-authenticate").iter().map(|v| v.as_bytes().to_vec()).collect()
}

/// Asks without a credential and pays the 402's L402 challenge: the Authorization value and the balance key.
async fn buy_token(p: &Proxy, alice: &l402_ldk::LdkNode) -> (String, BalanceKey) {
    let r = post(p, None, body("hi", 1, json!({}))).await;
    assert_eq!(r.status(), 402);
    pay_402(alice, &r).await
}

async fn pay_402(alice: &l402_ldk::LdkNode, r: &reqwest::Response) -> (String, BalanceKey) {
    let lines = challenge_lines(r);
    let auth = pay(alice, lines.iter().map(Vec::as_slice)).await;
    let cred = l402_proto::Credential::from_authorization([auth.as_bytes()]).expect("credential");
    let id = cred.macaroon.l402_identifier().expect("identifier").token_id;
    (auth, BalanceKey::Token(id))
}

async fn read_all(r: reqwest::Response) -> Result<String, reqwest::Error> {
    let bytes = tokio::time::timeout(Duration::from_secs(60), r.bytes()).await.expect("body in time")?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_bundle_is_debited_each_requests_reported_usage_streamed_as_sent_and_kept_across_a_restart() {
    let (n, up, _dir, text) = setup(r#"["l402"]"#).await;
    let mut p = proxy(&text, &n.server).await;
    let (auth, key) = buy_token(&p, &n.alice).await;
    let mut expected = BUNDLE_MSAT;

    // Streamed, held by the upstream's gate after its first chunk: the first chunk reaches the client while
    // the upstream has sent nothing else (the proxy buffers nothing).
    let words = "tell me three things";
    let b = body(words, 5, json!({"x_gate": true}));
    let mut r = post(&p, Some(&auth), b.clone()).await;
    assert_eq!(r.status(), 200);
    assert_eq!(balance_header(&r), expected);
    assert_eq!(r.headers()["x-l402-reserved-msat"].to_str().expect("ascii"), estimate(&b, 5).to_string());
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let first = tokio::time::timeout(Duration::from_secs(30), r.chunk()).await.expect("first chunk").expect("read");
    let first = String::from_utf8(first.expect("a chunk").to_vec()).expect("utf-8");
    assert!(first.starts_with("data: ") && first.contains("tok0"), "{first}");
    assert_eq!(up.chunks_sent(), 1, "the client has the first chunk before the upstream sent the second");
    up.release(5); // the other completion chunks and the usage chunk: no permit is left over
    let mut rest = String::new();
    while let Some(c) = tokio::time::timeout(Duration::from_secs(30), r.chunk()).await.expect("in time").expect("read")
    {
        rest.push_str(&String::from_utf8_lossy(&c));
    }
    assert!(rest.contains("\"prompt_tokens\":4") && rest.ends_with("data: [DONE]\n\n"), "{rest}");
    expected -= cost(words, 5);

    // More completion asked than the upstream gives: debited what it reported, not the estimate.
    let words = "one two three four five";
    let r = post(&p, Some(&auth), body(words, 20, json!({}))).await;
    assert_eq!(balance_header(&r), expected);
    read_all(r).await.expect("whole");
    expected -= cost(words, 20);

    // Not streamed: the JSON body's usage.
    let words = "json please";
    let r = post(&p, Some(&auth), body(words, 4, json!({"stream": false}))).await;
    assert_eq!(balance_header(&r), expected);
    assert!(read_all(r).await.expect("whole").contains("\"usage\""));
    expected -= cost(words, 4);

    // Cut midway (no usage): debited the estimate.
    let b = body("cut me off", 6, json!({"x_drop_after": 2}));
    let r = post(&p, Some(&auth), b.clone()).await;
    assert_eq!(balance_header(&r), expected);
    assert!(read_all(r).await.is_err(), "the client sees the stream cut");
    expected -= estimate(&b, 6);

    // The client goes away after the first chunk (the upstream holds the rest): debited the estimate, once
    // the proxy has seen the connection go.
    let store = p.paywall().store().clone();
    let b = body("i will hang up", 7, json!({"x_gate": true}));
    let mut r = post(&p, Some(&auth), b.clone()).await;
    assert_eq!(balance_header(&r), expected);
    let first = tokio::time::timeout(Duration::from_secs(30), r.chunk()).await.expect("first chunk").expect("read");
    assert!(first.is_some());
    drop(r);
    expected -= estimate(&b, 7);
    let settled = async {
        loop {
            let bal = store.balance(&key).await.expect("store").expect("open");
            if bal.reserved == Msat(0) {
                return bal;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let bal = tokio::time::timeout(Duration::from_secs(30), settled).await.expect("settled after the hang-up");
    assert_eq!(bal.balance, Msat(expected));

    // A restart (same store): the balance is where it was.
    let kept = store.balance(&key).await.expect("store").expect("open");
    assert_eq!((kept.balance, kept.reserved, kept.requests), (Msat(expected), Msat(0), 5));
    assert_eq!(kept.debited, Msat(BUNDLE_MSAT - expected));
    p.stop();
    drop(p);
    drop(store);
    let p = proxy(&text, &n.server).await;
    let words = "after the restart";
    let r = post(&p, Some(&auth), body(words, 3, json!({}))).await;
    assert_eq!(balance_header(&r), expected);
    read_all(r).await.expect("whole");
    expected -= cost(words, 3);

    // More than a whole bundle could pay: 400, nothing reserved.
    let r = post(&p, Some(&auth), body("x", 1_000, json!({}))).await;
    assert_eq!(r.status(), 400);
    assert!(read_all(r).await.expect("body").contains("estimate_over_bundle"));

    // An estimate over what is left: a fresh 402, and its payment opens a fresh bundle.
    let big = 960;
    assert!(
        expected < estimate(&body("x", big, json!({})), big)
            && estimate(&body("x", big, json!({})), big) <= BUNDLE_MSAT
    );
    let r = post(&p, Some(&auth), body("x", big, json!({}))).await;
    assert_eq!(r.status(), 402, "exhausted");
    assert_eq!(balance_header(&r), expected, "the 402 of a used-up bundle says what is left");
    assert_eq!(challenge_lines(&r).len(), 2, "LSAT and L402");
    let (auth2, key2) = pay_402(&n.alice, &r).await;
    assert_ne!(key2, key);
    let r = post(&p, Some(&auth2), body("x", big, json!({}))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(balance_header(&r), BUNDLE_MSAT);
    read_all(r).await.expect("whole");
    let left = p.paywall().store().balance(&key2).await.expect("store").expect("open");
    assert_eq!(left.balance, Msat(BUNDLE_MSAT - cost("x", big)));
    // The old token's balance is untouched by all this.
    let old = p.paywall().store().balance(&key).await.expect("store").expect("open");
    assert_eq!(old.balance, Msat(expected));
    n.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_requests_never_overdraw_a_bundle() {
    let (n, up, _dir, text) = setup(r#"["l402"]"#).await;
    let p = proxy(&text, &n.server).await;
    let (auth, key) = buy_token(&p, &n.alice).await;
    race(&[&p], &up, &auth, key).await;
    n.net.shutdown().await;
}

/// `total` requests at once, spread over `proxies`, against a fresh bundle that fits only some of their
/// estimates: each admitted one is held by the gate after its first chunk (its reservation in flight) until
/// all have been answered, so exactly those that fit are admitted; then each is debited its usage.
async fn race(proxies: &[&Proxy], up: &ChatUpstream, auth: &str, key: BalanceKey) {
    let words = "race";
    let b = body(words, 200, json!({"x_gate": true}));
    let each = estimate(&b, 200);
    let fits = (BUNDLE_MSAT / each) as usize;
    let total = 10;
    assert!(fits >= 2 && fits < total, "estimate {each}");
    let before = up.requests();
    let mut tasks = Vec::new();
    for i in 0..total {
        let (addr, auth, b) = (proxies[i % proxies.len()].addr(), auth.to_owned(), b.clone());
        tasks.push(tokio::spawn(async move {
            reqwest::Client::new()
                .post(format!("http://{addr}/v1/chat/completions"))
                .header("authorization", auth)
                .body(b)
                .send()
                .await
                .expect("sent")
        }));
    }
    let mut admitted = Vec::new();
    let mut refused = 0;
    for t in tasks {
        let r = tokio::time::timeout(Duration::from_secs(60), t).await.expect("answered").expect("task");
        match r.status().as_u16() {
            200 => admitted.push(r),
            402 => refused += 1,
            s => panic!("status {s}"),
        }
    }
    assert_eq!((admitted.len(), refused), (fits, total - fits));
    assert_eq!(up.requests() - before, fits, "the refused never reached the upstream");
    let store = proxies[0].paywall().store();
    let bal = store.balance(&key).await.expect("store").expect("open");
    assert_eq!(bal.reserved, Msat(each * fits as u64));
    up.release(1_000);
    for r in admitted {
        read_all(r).await.expect("whole");
    }
    let bal = store.balance(&key).await.expect("store").expect("open");
    assert_eq!((bal.reserved, bal.balance), (Msat(0), Msat(BUNDLE_MSAT - cost(words, 200) * fits as u64)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_proxies_on_one_postgres_share_a_balance() {
    let (n, up, dir, _) = setup(r#"["l402"]"#).await;
    let pg = l402_regtest::Postgres::start().await.expect("postgres (apt-get install postgresql)");
    let master = dir.path().join("master.key");
    let text = config(dir.path(), &up.url(), r#"["l402"]"#)
        .replace(
            &format!("store = {{ kind = \"sqlite\", path = \"{}\" }}", dir.path().join("l402.db").display()),
            &format!("store = {{ kind = \"postgres\", url = \"{}\" }}", pg.connection_string()),
        )
        .replace(
            "[[service]]",
            &format!("tokens = {{ master_key_files = [\"{}\"] }}\n\n[[service]]", master.display()),
        );
    assert!(text.contains("postgres") && text.contains("master.key"), "{text}");
    let a = proxy(&text, &n.server).await;
    let b = proxy(&text, &n.server).await;
    let (auth, key) = buy_token(&a, &n.alice).await;
    // Alternating instances: each sees the other's debits.
    let mut expected = BUNDLE_MSAT;
    for (p, words, max) in [(&a, "on a", 2), (&b, "then on b", 7), (&a, "back on a again", 30)] {
        let r = post(p, Some(&auth), body(words, max, json!({}))).await;
        assert_eq!(r.status(), 200);
        assert_eq!(balance_header(&r), expected);
        read_all(r).await.expect("whole");
        expected -= cost(words, max);
    }
    // A fresh token raced over both instances: never overdrawn.
    let (auth, key2) = buy_token(&b, &n.alice).await;
    race(&[&a, &b], &up, &auth, key2).await;
    assert_eq!(b.paywall().store().balance(&key).await.expect("store").expect("open").balance, Msat(expected));
    n.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_payment_charge_buys_a_bundle_that_it_draws_down_when_presented_again() {
    let (n, _up, _dir, text) = setup(r#"["payment"]"#).await;
    let p = proxy(&text, &n.server).await;
    let r = post(&p, None, body("hi", 1, json!({}))).await;
    assert_eq!(r.status(), 402);
    let lines = challenge_lines(&r);
    let (auth, paid) =
        l402_regtest::pay_payment_challenge(&*n.alice, lines.iter().map(Vec::as_slice)).await.expect("paid");
    let key = BalanceKey::Charge(paid.preimage.payment_hash());
    let mut expected = BUNDLE_MSAT;
    for (words, max) in [("first request", 3), ("the second one here", 9), ("third", 1)] {
        let r = post(&p, Some(&auth), body(words, max, json!({}))).await;
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("payment-receipt").is_some());
        assert_eq!(balance_header(&r), expected);
        read_all(r).await.expect("whole");
        expected -= cost(words, max);
    }
    // Hostile bodies: one over max_body_bytes is a 413, nothing reserved or debited...
    let r = post(&p, Some(&auth), vec![b'x'; 5_000]).await;
    assert_eq!(r.status(), 413);
    // ...one that is not JSON has no max_tokens to read (default_estimate), and its answer (the upstream's
    // 400) no usage: it costs the estimate.
    let junk = b"{not json".to_vec();
    let r = post(&p, Some(&auth), junk.clone()).await;
    assert_eq!(r.status(), 400);
    assert_eq!(balance_header(&r), expected);
    read_all(r).await.expect("whole");
    expected -= junk.len().div_ceil(4) as u64 * 2 + 50 * 3;
    let bal = p.paywall().store().balance(&key).await.expect("store").expect("open");
    assert_eq!((bal.balance, bal.reserved, bal.requests, bal.service.as_str()), (Msat(expected), Msat(0), 4, "chat"));
    n.net.shutdown().await;
}

#[test]
fn metering_settings_that_cannot_work_are_configuration_errors() {
    let dir = tempfile::tempdir().expect("tmp");
    let with = |service: &str, metering: &str| {
        format!(
            "{}[[service]]\nname = \"c\"\npath = \"/v1/*\"\nupstream = \"http://127.0.0.1:1\"\n{service}\n[service.metering]\n{metering}\n",
            preamble(dir.path())
        )
    };
    for (what, text, says) in [
        ("a zero bundle", with("", "bundle = 0\noutput_msat_per_unit = 1"), "bundle"),
        ("no price", with("", "bundle = 10"), "give input_msat_per_unit"),
        ("both kinds", with("", "bundle = 10\nper_request_msat = 5\ninput_msat_per_unit = 1"), "give input"),
        ("zero prices", with("", "bundle = 10\ninput_msat_per_unit = 0\noutput_msat_per_unit = 0"), "above 0"),
        ("an overflow", with("", "bundle = 9223372036854775807\noutput_msat_per_unit = 3"), "over"),
        ("over 21 million", with("", "bundle = 2100000000000000001\nper_request_msat = 1"), "over"),
        ("a price too", with("price_sat = 1", "bundle = 10\noutput_msat_per_unit = 1"), "remove price"),
        ("no payment", with("payment = false", "bundle = 10\noutput_msat_per_unit = 1"), "payment = true"),
        ("zero default", with("", "bundle = 10\noutput_msat_per_unit = 1\ndefault_estimate = 0"), "default_estimate"),
        ("an unknown key", with("", "bundle = 10\noutput_msat_per_unit = 1\nbundles = 2"), "unknown field"),
        (
            "a pricer with a flat price",
            with("", "bundle = 10\nper_request_msat = 7\npricer_url = \"http://127.0.0.1:1/\""),
            "give unit prices",
        ),
        (
            "a pricer not over http",
            with("", "bundle = 10\noutput_msat_per_unit = 1\npricer_url = \"ftp://x/\""),
            "http://",
        ),
        ("a pricer url", with("", "bundle = 10\noutput_msat_per_unit = 1\npricer_url = \"not a url\""), "pricer_url"),
        (
            "a pricer timeout of 0",
            with(
                "",
                "bundle = 10\noutput_msat_per_unit = 1\npricer_url = \"http://127.0.0.1:1/\"\npricer_timeout_ms = 0",
            ),
            "pricer_timeout_ms",
        ),
        (
            "part of a satoshi with the Payment scheme",
            with("schemes = [\"payment\"]", "bundle = 3\noutput_msat_per_unit = 1"),
            "whole satoshis",
        ),
    ] {
        let e = Config::parse(&text).expect_err(what);
        assert!(e.0.contains(says), "{what}: {e}");
    }
    let ok = Config::parse(&with("", "bundle = 10\nper_request_msat = 7")).expect("flat");
    assert_eq!(ok.services[0].price().expect("price"), 70);
    let ok = Config::parse(&with("", "bundle = 10\ninput_msat_per_unit = 2\noutput_msat_per_unit = 5")).expect("units");
    assert_eq!(ok.services[0].price().expect("price"), 50, "the bundle at the higher unit price");
}

/// A pricer on loopback that answers as `mode` says, and keeps what it was asked.
struct PricerServer {
    url: String,
    mode: std::sync::Arc<std::sync::atomic::AtomicU8>,
    asked: std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, Value)>>>,
}

const PRICE_OK: u8 = 0;
const PRICE_500: u8 = 1;
const PRICE_GARBAGE: u8 = 2;
const PRICE_SLOW: u8 = 3;
const PRICE_HUGE: u8 = 4;
const PRICE_NEGATIVE: u8 = 5;

async fn pricer() -> PricerServer {
    use axum::response::IntoResponse;
    use std::sync::atomic::Ordering;
    let mode = std::sync::Arc::new(std::sync::atomic::AtomicU8::new(PRICE_OK));
    let asked = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (m, a) = (mode.clone(), asked.clone());
    let app = axum::Router::new().route(
        "/price",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let (m, a) = (m.clone(), a.clone());
            async move {
                let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                a.lock().expect("lock").push((headers, v.clone()));
                match m.load(Ordering::SeqCst) {
                    PRICE_OK => {
                        let c = v["completion_tokens"].as_u64().unwrap_or(0);
                        axum::Json(json!({"msat": 100 + c})).into_response()
                    }
                    PRICE_500 => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "no").into_response(),
                    PRICE_GARBAGE => "msat: lots".into_response(),
                    PRICE_SLOW => {
                        tokio::time::sleep(Duration::from_secs(3)).await;
                        axum::Json(json!({"msat": 1})).into_response()
                    }
                    PRICE_HUGE => format!("{{\"msat\": 1, \"pad\": \"{}\"}}", "x".repeat(10_000)).into_response(),
                    _ => axum::Json(json!({"msat": -5})).into_response(),
                }
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}/price", l.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(l, app).await.expect("pricer") });
    PricerServer { url, mode, asked }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_pricer_prices_reported_usage_and_the_unit_prices_stand_in_when_it_fails() {
    use std::sync::atomic::Ordering;
    let (n, _up, _dir, text) = setup(r#"["l402"]"#).await;
    let pr = pricer().await;
    let text = format!("{text}pricer_url = \"{}\"\npricer_timeout_ms = 300\n", pr.url);
    let p = proxy(&text, &n.server).await;
    let (auth, key) = buy_token(&p, &n.alice).await;
    let store = p.paywall().store().clone();
    let balance = || async { store.balance(&key).await.expect("store").expect("open").balance.0 };
    let mut expected = BUNDLE_MSAT;

    // The pricer's price: 100 msat + 1 a completion token, not the unit prices.
    let words = "price this for me";
    let r = post(&p, Some(&auth), body(words, 5, json!({}))).await;
    assert_eq!(r.status(), 200);
    read_all(r).await.expect("whole");
    expected -= 100 + 5;
    assert_eq!(balance().await, expected, "debited the pricer's price");
    let (headers, asked) = pr.asked.lock().expect("lock").last().cloned().expect("the pricer was asked");
    let token_id = match key {
        BalanceKey::Token(id) => id.to_hex(),
        other => panic!("an L402 token, not {other:?}"),
    };
    assert_eq!(
        asked,
        json!({"service": "chat", "id": token_id, "prompt_tokens": 4, "completion_tokens": 5, "total_tokens": 9})
    );
    assert!(headers.get("authorization").is_none(), "the pricer never sees a credential");
    assert!(!asked.to_string().contains(auth.trim_start_matches("L402 ").split(':').next().expect("macaroon")));

    // Every way the pricer can fail: the unit prices, and the request is served all the same.
    for (mode, what) in [
        (PRICE_500, "a 500"),
        (PRICE_GARBAGE, "not JSON"),
        (PRICE_SLOW, "past the timeout"),
        (PRICE_HUGE, "an answer over 4 KiB"),
        (PRICE_NEGATIVE, "a negative price"),
    ] {
        pr.mode.store(mode, Ordering::SeqCst);
        let words = "and this one";
        let asked_before = pr.asked.lock().expect("lock").len();
        let r = post(&p, Some(&auth), body(words, 3, json!({}))).await;
        assert_eq!(r.status(), 200, "{what}");
        read_all(r).await.expect("whole");
        expected -= cost(words, 3);
        assert_eq!(balance().await, expected, "{what}: the unit prices");
        assert_eq!(pr.asked.lock().expect("lock").len(), asked_before + 1, "{what}: the pricer was asked");
    }
    n.net.shutdown().await;
}

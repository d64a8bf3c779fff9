//! The layer in front of a real axum app on loopback, with real invoices paid over a real regtest channel.
#![allow(missing_docs)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use l402_ldk::LdkNode;
use l402_proto::{Credential, Msat, Scheme};
use l402_regtest::Regtest;
use l402_server::store::{NewToken, Revenue, SqliteStore, TokenQuery, TokenStore};
use l402_server::{Charge, L402Layer, L402Token, Paywall, RequestInfo, ServiceSpec};
use support::Counting;

struct Fixture {
    net: Regtest,
    alice: Arc<LdkNode>,
    server: Arc<LdkNode>,
    paywall: Arc<Paywall>,
    store: Arc<Counting>,
    clock: Arc<AtomicU64>,
    base: String,
    http: reqwest::Client,
}

/// Services: `weather` (1000 sat, 1 h lifetime, capability `read`) on /weather/*, `maps` (2000 sat) on /maps,
/// /free costs nothing; /weather/admin requires `admin`, which weather tokens never grant.
async fn fixture() -> Fixture {
    let net = Regtest::start().await.expect("regtest (is bitcoind installed? scripts/install-bitcoind.sh)");
    let (alice, server) = net.channel_pair("alice", "server", 1_000_000, 800_000).await.expect("alice -> server");

    let store = Counting::new(SqliteStore::in_memory().expect("sqlite"));
    let clock = Arc::new(AtomicU64::new(1_800_000_000));
    let c = clock.clone();
    let paywall =
        Paywall::builder(store.clone(), server.clone()).clock(Arc::new(move || c.load(Ordering::SeqCst))).build();
    let weather = Arc::new(
        ServiceSpec::new("weather", Msat::from_sat(1_000)).lifetime(Duration::from_secs(3600)).capabilities(["read"]),
    );
    let maps = Arc::new(ServiceSpec::new("maps", Msat::from_sat(2_000)));
    let svc = Arc::new(ServiceSpec::new("svc", Msat::from_sat(1)));
    let pricing = move |r: &RequestInfo<'_>| -> Option<Charge> {
        let path = r.uri.path();
        if path == "/weather/admin" {
            Some(Charge::of(&weather).requiring("admin"))
        } else if path.starts_with("/weather") {
            Some(Charge::of(&weather).requiring("read"))
        } else if path.starts_with("/maps") {
            Some(Charge::of(&maps))
        } else if path.starts_with("/svc") {
            Some(Charge::of(&svc))
        } else {
            None
        }
    };
    let app = Router::new()
        .route("/weather/today", get(|t: L402Token| async move { format!("sunny for {}", t.token_id) }))
        .route("/weather/admin", get(|| async { "admin" }))
        .route("/maps", get(|t: L402Token| async move { format!("map for {}", t.token_id) }))
        .route("/svc", get(|t: L402Token| async move { format!("svc {}", t.token_id) }))
        .route("/free", get(|t: Option<L402Token>| async move { format!("free, token: {}", t.is_some()) }))
        .layer(L402Layer::new(paywall.clone(), pricing));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Fixture { net, alice, server, paywall, store, clock, base, http: reqwest::Client::new() }
}

impl Fixture {
    async fn get(&self, path: &str, auth: Option<&str>) -> reqwest::Response {
        let mut req = self.http.get(format!("{}{path}", self.base));
        if let Some(a) = auth {
            req = req.header("authorization", a);
        }
        req.send().await.expect("request")
    }

    /// Pays the challenge of a 402 and returns the Authorization value.
    async fn pay(&self, resp: reqwest::Response) -> String {
        assert_eq!(resp.status(), 402);
        let lines: Vec<&[u8]> = resp.headers().get_all("www-authenticate").iter().map(|v| v.as_bytes()).collect();
        l402_regtest::pay_challenge(self.alice.as_ref(), lines).await.expect("paid over lightning").0
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pay_reuse_expire_scope_revoke() {
    let f = fixture().await;

    // 402: both lines, LSAT first, no-store, CORS exposes the header; the body names the price.
    let first = f.get("/weather/today", None).await;
    assert_eq!(first.status(), 402);
    let lines: Vec<String> =
        first.headers().get_all("www-authenticate").iter().map(|v| v.to_str().expect("ascii").to_owned()).collect();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with("LSAT macaroon=\"AgEEbHNhdAJCAA") && lines[1].starts_with("L402 macaroon=\""));
    assert_eq!(first.headers()["cache-control"], "no-store");
    assert_eq!(first.headers()["access-control-expose-headers"], "WWW-Authenticate, Payment-Receipt");
    let auth = f.pay(first).await;
    assert!(auth.starts_with("L402 "), "answers in the scheme the server prefers");

    // 200 with the token handed to the handler; reused without paying again.
    let ok = f.get("/weather/today", Some(&auth)).await;
    assert_eq!(ok.status(), 200);
    let body = ok.text().await.expect("body");
    assert!(body.starts_with("sunny for "), "{body}");
    for _ in 0..3 {
        assert_eq!(f.get("/weather/today", Some(&auth)).await.status(), 200);
    }
    let m = f.paywall.metrics();
    assert_eq!(m.challenges_issued.load(Ordering::SeqCst), 1, "one challenge, one payment");
    assert_eq!(m.tokens_verified.get(), 4);
    // The payment is recorded once: by the settlement or by the first verified request.
    let revenue = f.store.revenue().await.expect("revenue");
    assert_eq!(
        revenue,
        vec![Revenue { service: "weather".into(), tokens_paid: 1, charges_paid: 0, amount: Msat::from_sat(1_000) }]
    );

    // Free route: no token needed, none given.
    let free = f.get("/free", None).await;
    assert_eq!(free.status(), 200);
    assert_eq!(free.text().await.expect("body"), "free, token: false");

    // A capability the service never grants: 403, paying would not help.
    assert_eq!(f.get("/weather/admin", Some(&auth)).await.status(), 403);

    // A token for weather is refused on maps: a fresh 402 for maps.
    let other = f.get("/maps", Some(&auth)).await;
    assert_eq!(other.status(), 402);
    let maps_auth = f.pay(other).await;
    assert_eq!(f.get("/maps", Some(&maps_auth)).await.status(), 200);
    assert_eq!(f.get("/weather/today", Some(&maps_auth)).await.status(), 402, "and the other way round");

    // The lifetime ends: a fresh 402.
    f.clock.fetch_add(3601, Ordering::SeqCst);
    let expired = f.get("/weather/today", Some(&auth)).await;
    assert_eq!(expired.status(), 402);
    assert_eq!(f.paywall.metrics().refusals().get("expired"), Some(&1));
    let auth2 = f.pay(expired).await;
    assert_eq!(f.get("/weather/today", Some(&auth2)).await.status(), 200);

    // Revoked: refused at once with its reason.
    let listed = f.store.list(&TokenQuery::newest(10)).await.expect("list");
    let maps_token = listed.iter().find(|t| t.service == "maps").expect("maps token").token_id;
    assert!(f.paywall.revoke(&maps_token).await.expect("revoke"));
    let revoked = f.get("/maps", Some(&maps_auth)).await;
    assert_eq!(revoked.status(), 401);
    assert!(revoked.text().await.expect("body").contains("\"reason\":\"revoked\""));
    f.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_input_never_gets_a_5xx_nor_an_echo() {
    let f = fixture().await;
    let auth = f.pay(f.get("/weather/today", None).await).await;
    let (mac, pre) = auth[5..].split_once(':').expect("colon");
    let other_pre = "11".repeat(32);
    let mut flipped = mac.as_bytes().to_vec();
    flipped[40] = if flipped[40] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).expect("ascii");
    let cases: Vec<(String, u16)> = vec![
        (format!("L402 {mac}:{other_pre}"), 401),    // preimage of another invoice
        (format!("L402 {mac}:{}", &pre[..62]), 401), // preimage not 32 bytes
        (format!("L402 {mac}:{}", pre.to_uppercase()), 401), // uppercase preimage
        (format!("L402 {mac}:{}", "zz".repeat(32)), 401), // non-hex preimage
        (format!("L402 {flipped}:{pre}"), 401),      // a flipped byte
        (format!("L402 {}:{pre}", &mac[..mac.len() / 2]), 401), // truncated base64
        (format!("L402 {mac}"), 401),                // no preimage
        ("L402 ".to_owned(), 401),
        ("Bearer something".to_owned(), 402), // not ours: a challenge
    ];
    for (value, status) in &cases {
        let r = f.get("/weather/today", Some(value)).await;
        assert_eq!(r.status().as_u16(), *status, "{value}");
        let body = r.text().await.expect("body");
        assert!(!body.contains(pre) && !body.contains(&mac[..30]), "echoed: {body}");
    }
    // Several Authorization values: the well-formed L402 one wins.
    let lsat_broken = format!("LSAT {mac}:{}", "00".repeat(31));
    let r = f
        .http
        .get(format!("{}/weather/today", f.base))
        .header("authorization", lsat_broken)
        .header("authorization", &auth)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    // Many Authorization values, an oversized one, and invalid UTF-8.
    let mut req = f.http.get(format!("{}/weather/today", f.base));
    for i in 0..50 {
        req = req.header("authorization", format!("L402 junk{i}:{}", "0".repeat(64)));
    }
    assert_eq!(req.send().await.expect("request").status(), 401);
    let huge = format!("L402 {}:{pre}", "A".repeat(30_000));
    let r = f.get("/weather/today", Some(&huge)).await.status().as_u16();
    assert!(r == 401 || r == 431, "oversized: {r}");
    let raw = reqwest::header::HeaderValue::from_bytes(b"L402 \xff\xfe:00").expect("opaque bytes");
    let r = f.http.get(format!("{}/weather/today", f.base)).header("authorization", raw).send().await.expect("req");
    assert_eq!(r.status(), 401);
    f.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn faults_fail_closed_and_paid_tokens_survive_a_lightning_outage() {
    let f = fixture().await;
    let auth = f.pay(f.get("/weather/today", None).await).await;
    assert_eq!(f.get("/weather/today", Some(&auth)).await.status(), 200);

    // The Aperture-format credential of L402.md, with its root key placed in the store, is accepted.
    let vector = "L402 AgEEbHNhdAJCAABjDc0pZsQzZpESVEi7sltP9BKknHMtssirwbhYG9cQ3aurq6urq6urq6urq6urq6urq6urq6urq6urq6urq6urAAIOc2VydmljZXM9c3ZjOjAAAhFzdmNfY2FwYWJpbGl0aWVzPQACGnN2Y192YWxpZF91bnRpbD0xNzAwMDAwMDAwAAAGIG0V+aBA2vQcLxi+SKWqFqjWoKOMl3Al3o1qy4E5KVLj:000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    let cred = Credential::parse(vector.as_bytes()).expect("vector");
    let id = cred.macaroon.l402_identifier().expect("id");
    f.store
        .insert(&NewToken {
            id_hash: cred.macaroon.identifier_hash(),
            token_id: id.token_id,
            payment_hash: id.payment_hash,
            service: "svc".into(),
            price: Msat(1_000),
            root_key: l402_proto::RootKey([0x11; 32]),
            created_at: 1_600_000_000,
            expires_at: Some(1_700_000_000),
        })
        .await
        .expect("insert");
    f.clock.store(1_699_999_999, Ordering::SeqCst);
    assert_eq!(f.get("/svc", Some(vector)).await.status(), 200, "Aperture's credential accepted");
    assert_eq!(cred.form, l402_proto::CredentialForm::Authorization(Scheme::L402));
    f.clock.store(1_800_000_000, Ordering::SeqCst);

    // Store down: 503, and nothing passes unpaid, not even a token verified a moment ago once its cache entry is
    // gone (a fresh key lookup fails closed).
    tokio::time::sleep(Duration::from_millis(1100)).await; // past the key cache TTL
    f.store.down.store(true, Ordering::SeqCst);
    assert_eq!(f.get("/weather/today", None).await.status(), 503);
    let r = f.get("/weather/today", Some(&auth)).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "1");
    f.store.down.store(false, Ordering::SeqCst);
    assert_eq!(f.get("/weather/today", Some(&auth)).await.status(), 200);

    // Lightning backend down: new challenges get 503, paid tokens keep working.
    f.server.stop().await;
    let r = f.get("/weather/today", None).await;
    assert_eq!(r.status(), 503);
    assert!(r.text().await.expect("body").contains("lightning_unavailable"));
    assert_eq!(f.get("/weather/today", Some(&auth)).await.status(), 200);

    // gRPC requests get the trailers-only challenge shape.
    let grpc =
        f.http.get(format!("{}/maps", f.base)).header("content-type", "application/grpc").send().await.expect("req");
    assert_eq!(grpc.status(), 200);
    assert_eq!(grpc.headers()["grpc-status"], "14", "lightning is down: unavailable");
    f.net.shutdown().await;
}

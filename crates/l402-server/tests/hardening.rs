//! Findings of issue 10 on the paywall's side, each pinned by a test that failed before its fix: tiers, the
//! verified-credential cache (its size per token, its revocation bound), and files created private. Real
//! payments over a real regtest channel, real SQLite files, the layer on a real loopback server.
#![allow(missing_docs)]

mod support;

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Arc;
use std::time::Duration;

use l402_proto::{Credential, Msat, Scheme};
use l402_server::Paywall;
use l402_server::store::{NewToken, SqliteStore, TokenStore};
use support::{Net, serve, token_id};

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tier_0_token_does_not_open_tier_1_of_the_same_service() {
    let net = Net::start().await;
    let app =
        serve(Paywall::builder(Arc::new(SqliteStore::in_memory().expect("sqlite")), net.server.clone()).build()).await;
    let basic = net.pay(app.get("/weather", None).await).await;
    assert_eq!(app.status("/weather", Some(&basic)).await, 200);
    // `weather` tier 1 is the same service name at a dearer tier: a fresh challenge, for tier 1.
    let r = app.get("/weather-pro", Some(&basic)).await;
    assert_eq!(r.status(), 402, "a tier 0 token opened tier 1");
    let challenge = l402_proto::Challenge::parse(r.headers().get_all("www-authenticate").iter().map(|v| v.as_bytes()))
        .expect("challenge");
    assert!(challenge.macaroon.caveats().any(|c| c == b"services=weather:1"), "minted for tier 1");
    let pro = net.pay(r).await;
    assert_eq!(app.status("/weather-pro", Some(&pro)).await, 200);
    // Cached or not, each token opens its own tier only.
    for _ in 0..3 {
        assert_eq!(app.status("/weather-pro", Some(&basic)).await, 402);
        assert_eq!(app.status("/weather", Some(&basic)).await, 200);
        assert_eq!(app.status("/weather-pro", Some(&pro)).await, 200);
    }
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_paid_token_cannot_fill_the_verified_cache() {
    let net = Net::start().await;
    let paywall = Paywall::builder(Arc::new(SqliteStore::in_memory().expect("sqlite")), net.server.clone())
        .key_cache_size(16)
        .key_cache_ttl(Duration::from_secs(60))
        .build();
    let app = serve(paywall).await;
    let hits = || app.paywall.metrics().verified_cache_hits.get();
    let victim = net.pay(app.get("/weather", None).await).await;
    assert_eq!(app.status("/weather", Some(&victim)).await, 200);
    assert_eq!(app.status("/weather", Some(&victim)).await, 200);
    assert_eq!(hits(), 1, "the second request is answered from the cache");

    // One paid token, 300 distinct credentials: scheme case, blanks, appended caveats that change nothing.
    let attacker = net.pay(app.get("/weather", None).await).await;
    let cred = Credential::parse(attacker.as_bytes()).expect("credential");
    let pre = support::parts(&attacker).1;
    for i in 0..300u32 {
        let scheme = ["L402", "l402", "LSAT", "lsat", "LsAt"][i as usize % 5];
        let blanks = " ".repeat(1 + (i as usize / 5) % 4);
        let mac = cred.macaroon.with_caveat(format!("other_valid_until={i}")).to_base64();
        let value = format!("{scheme}{blanks}{mac}:{pre}");
        assert_eq!(app.status("/weather", Some(&value)).await, 200, "{value}");
    }
    let before = hits();
    assert_eq!(app.status("/weather", Some(&victim)).await, 200);
    assert_eq!(hits(), before + 1, "the victim's entry was evicted by one token's variants");
    assert!(app.paywall.verified_cache_len() <= 2, "{} entries for two tokens", app.paywall.verified_cache_len());
    // The untouched attacker credential is not a hit of some variant's entry, but it verifies.
    assert_eq!(
        app.status(
            "/weather",
            Some(&Credential::new(Scheme::L402, cred.macaroon.clone(), cred.preimage).header_value())
        )
        .await,
        200
    );
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_verified_cache_does_not_stretch_a_revocation_past_its_bound() {
    let net = Net::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("l402.db");
    // Two instances sharing one store; the bound on a revocation made through the other is 2 s (the key
    // cache TTL, and twice the revocation poll interval).
    let bound = Duration::from_secs(2);
    let a = serve(
        Paywall::builder(Arc::new(SqliteStore::open(&file).expect("a")), net.server.clone())
            .key_cache_ttl(bound)
            .build(),
    )
    .await;
    let b = serve(
        Paywall::builder(Arc::new(SqliteStore::open(&file).expect("b")), net.server.clone())
            .key_cache_ttl(bound)
            .build(),
    )
    .await;
    let auth = net.pay(a.get("/weather", None).await).await;
    let (mac, pre) = support::parts(&auth);
    let other_encoding = format!("LSAT {mac}:{pre}");
    let t0 = tokio::time::Instant::now();
    assert_eq!(b.status("/weather", Some(&auth)).await, 200, "B reads the key");
    assert!(a.paywall.revoke(&token_id(&auth)).await.expect("revoke"));
    let revoked = tokio::time::Instant::now();
    assert_eq!(a.status("/weather", Some(&auth)).await, 401, "refused at once where it was revoked");
    // Just before B's cached key expires, the same token in another encoding (accepted or not: the key was
    // still trusted) ...
    tokio::time::sleep_until(t0 + bound - Duration::from_millis(300)).await;
    let _ = b.status("/weather", Some(&other_encoding)).await;
    // ... must not be trusted past the bound.
    tokio::time::sleep_until(revoked + bound + Duration::from_millis(300)).await;
    for enc in [&other_encoding, &auth] {
        assert_eq!(b.status("/weather", Some(enc)).await, 401, "trusted {:?} after the revocation", revoked.elapsed());
    }
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_store_and_its_wal_are_created_private() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("state").join("l402.db");
    let store = SqliteStore::open(&path).expect("open");
    store
        .insert(&NewToken {
            id_hash: [1; 32],
            token_id: l402_proto::TokenId([2; 32]),
            payment_hash: l402_proto::PaymentHash([3; 32]),
            service: "svc".into(),
            price: Msat(1),
            root_key: l402_proto::RootKey([4; 32]),
            created_at: 1,
            expires_at: None,
        })
        .await
        .expect("a write, so that the WAL exists");
    assert_eq!(mode(&path), 0o600, "database");
    assert_eq!(mode(&dir.path().join("state/l402.db-wal")), 0o600, "WAL");
    assert_eq!(mode(&dir.path().join("state/l402.db-shm")), 0o600, "shared memory");
    assert_eq!(mode(&dir.path().join("state")), 0o700, "its directory");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_ldk_data_directory_is_created_private() {
    let net = l402_regtest::Regtest::start().await.expect("regtest");
    let node = net.ldk_node("solo").await.expect("node");
    let dir = net.root().join("ldk").join("solo");
    assert_eq!(mode(&dir), 0o700, "data directory");
    assert_eq!(mode(&net.root().join("ldk")), 0o700, "the parent it created");
    assert_eq!(mode(&dir.join("seed")), 0o600, "seed");
    node.stop().await;
    net.shutdown().await;
}

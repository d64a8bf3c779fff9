//! Stateless tokens, with real payments over a real regtest channel and a real SQLite file: challenges write
//! nothing, verifications read nothing, a token is recorded once when paid or used, revocation holds across
//! a restart, master keys rotate, and tokens minted the old way keep working.
#![allow(missing_docs)]

mod support;

use std::sync::Arc;
use std::time::Duration;

use l402_proto::Msat;
use l402_server::store::{Revenue, SqliteStore, TokenQuery, TokenStore};
use l402_server::{MasterKey, MasterKeys, Paywall};
use support::{Counting, Net, eventually, serve, token_id};

fn keys(seed: u8) -> MasterKeys {
    MasterKeys::single(MasterKey::from_bytes(&[seed; 32]))
}

fn sqlite(dir: &tempfile::TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("l402.db")).expect("sqlite")
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unpaid_challenge_writes_nothing_to_the_store() {
    let net = Net::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = Counting::new(sqlite(&dir));
    let app = serve(Paywall::builder(store.clone(), net.server.clone()).master_keys(keys(1)).build()).await;
    for _ in 0..50 {
        let r = app.get("/weather", None).await;
        assert_eq!(r.status(), 402);
        assert_eq!(r.headers().get_all("www-authenticate").iter().count(), 2);
    }
    assert_eq!(app.paywall.metrics().challenges_issued.load(std::sync::atomic::Ordering::SeqCst), 50);
    assert_eq!(store.writes(), 0, "50 challenges, no write");
    assert!(store.list(&TokenQuery::newest(100)).await.expect("list").is_empty());
    // The same, straight from the file another process would read.
    let file = sqlite(&dir);
    assert!(file.list(&TokenQuery::newest(100)).await.expect("list").is_empty());
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn verifying_a_stateless_token_reads_nothing_and_records_it_once() {
    let net = Net::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = Counting::new(sqlite(&dir));
    let poll = Duration::from_millis(300);
    let paywall =
        Paywall::builder(store.clone(), net.server.clone()).master_keys(keys(1)).revocation_poll_interval(poll).build();
    let app = serve(paywall).await;
    let before = now();
    let started = tokio::time::Instant::now();
    let auth = net.pay(app.get("/weather", None).await).await;
    let (mac, pre) = support::parts(&auth);
    // The same token in other encodings: LSAT, lowercase scheme, extra blanks.
    let variants = [auth.clone(), format!("LSAT {mac}:{pre}"), format!("l402   {mac}:{pre}")];
    for i in 0..200 {
        let v = &variants[i % variants.len()];
        assert_eq!(app.status("/weather", Some(v)).await, 200, "{i}");
    }
    assert_eq!(store.count("lookup"), 0, "no root key read");
    assert_eq!(store.count("insert"), 0);
    eventually("the token recorded", || async { store.count("record") == 1 }).await;
    // Read only by the revocation follower: a few times a second, not per request.
    let polls = store.count("revocations_since");
    let most = (started.elapsed().as_millis() / poll.as_millis()) as usize + 2;
    assert!(polls <= most, "{polls} revocation reads in {:?}", started.elapsed());

    let listed = store.list(&TokenQuery::newest(10)).await.expect("list");
    assert_eq!(listed.len(), 1, "{listed:?}");
    let t = &listed[0];
    assert_eq!((t.token_id, t.service.as_str(), t.price), (token_id(&auth), "weather", Msat::from_sat(1_000)));
    assert!((before..=now()).contains(&t.created_at), "{t:?}");
    assert_eq!(t.expires_at, Some(t.created_at + 3600));
    assert!(t.paid_at.is_some_and(|p| p >= t.created_at) && t.revoked_at.is_none(), "{t:?}");
    assert_eq!(
        store.revenue().await.expect("revenue"),
        vec![Revenue { service: "weather".into(), tokens_paid: 1, charges_paid: 0, amount: Msat::from_sat(1_000) }]
    );
    let m = app.paywall.metrics();
    assert_eq!(m.revenue_msat.load(std::sync::atomic::Ordering::SeqCst), 1_000_000);

    // The store goes away: the token is still served while the revocation set is within its bound, then
    // refused (503) rather than trusted past it; served again once the store is back.
    store.set_down(true);
    let down_at = tokio::time::Instant::now();
    let mut served = 0;
    loop {
        let s = app.status("/weather", Some(&auth)).await;
        if s == 503 {
            break;
        }
        assert_eq!(s, 200);
        served += 1;
        assert!(down_at.elapsed() <= app.paywall.revocation_bound() + poll, "trusted past the bound");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served > 0, "a store outage does not refuse paid tokens at once");
    store.set_down(false);
    eventually("served again", || async { app.status("/weather", Some(&auth)).await == 200 }).await;
    assert_eq!(store.count("lookup"), 0);
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_settlement_records_a_token_paid_but_never_used() {
    let net = Net::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let store = Counting::new(sqlite(&dir));
    let paywall = Paywall::builder(store.clone(), net.server.clone()).master_keys(keys(1)).build();
    let watcher = paywall.spawn_settlement_watcher();
    let app = serve(paywall).await;
    let auth = net.pay(app.get("/maps", None).await).await;
    eventually("the settlement recorded", || async {
        store.list(&TokenQuery::newest(10)).await.expect("list").iter().any(|t| t.paid_at.is_some())
    })
    .await;
    let listed = store.list(&TokenQuery::newest(10)).await.expect("list");
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].token_id, listed[0].service.as_str()), (token_id(&auth), "maps"));
    assert_eq!(store.revenue().await.expect("revenue")[0].amount, Msat::from_sat(2_000), "the amount received");
    // Its first use does not record it again.
    assert_eq!(app.status("/maps", Some(&auth)).await, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.list(&TokenQuery::newest(10)).await.expect("list").len(), 1);
    assert_eq!(store.count("record"), 1);
    watcher.abort();
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_revoked_stateless_token_is_refused_and_stays_refused_after_a_restart() {
    let net = Net::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    let app = serve(Paywall::builder(Arc::new(sqlite(&dir)), net.server.clone()).master_keys(keys(1)).build()).await;
    let used = net.pay(app.get("/weather", None).await).await;
    let unused = net.pay(app.get("/weather", None).await).await;
    assert_eq!(app.status("/weather", Some(&used)).await, 200);
    // Revoked: refused at once with its reason, cache hit or not; the unused one never was recorded.
    assert!(app.paywall.revoke(&token_id(&used)).await.expect("revoke"));
    assert!(app.paywall.revoke(&token_id(&unused)).await.expect("revoke an unrecorded token"));
    assert!(!app.paywall.revoke(&token_id(&used)).await.expect("again"), "already revoked");
    assert!(!app.paywall.revoke(&l402_proto::TokenId([9; 32])).await.expect("not ours"), "unknown");
    for auth in [&used, &unused] {
        let r = app.get("/weather", Some(auth)).await;
        assert_eq!(r.status(), 401);
        assert!(r.text().await.expect("body").contains("\"reason\":\"revoked\""));
    }
    // A restart: a new paywall over the same file refuses both from its first request.
    let again = serve(Paywall::builder(Arc::new(sqlite(&dir)), net.server.clone()).master_keys(keys(1)).build()).await;
    for auth in [&used, &unused] {
        assert_eq!(again.status("/weather", Some(auth)).await, 401);
    }
    let listed = sqlite(&dir).list(&TokenQuery::newest(10)).await.expect("list");
    assert_eq!(listed.len(), 1, "the used one is listed, revoked");
    assert!(listed[0].revoked_at.is_some());
    // Another, unrevoked token still works on the restarted instance.
    let fresh = net.pay(again.get("/weather", None).await).await;
    assert_eq!(again.status("/weather", Some(&fresh)).await, 200);
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rotated_master_keys_verify_old_tokens_and_stored_tokens_keep_working() {
    let net = Net::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    // Before master keys: a token stored the old way.
    let old = serve(Paywall::builder(Arc::new(sqlite(&dir)), net.server.clone()).build()).await;
    let stored = net.pay(old.get("/weather", None).await).await;
    assert_eq!(old.status("/weather", Some(&stored)).await, 200);
    // With key 1: new tokens are stateless, the stored one still works (through the store).
    let store = Counting::new(sqlite(&dir));
    let one = serve(Paywall::builder(store.clone(), net.server.clone()).master_keys(keys(1)).build()).await;
    assert_eq!(one.status("/weather", Some(&stored)).await, 200);
    assert_eq!(store.count("lookup"), 1, "a stored token is looked up");
    let stateless = net.pay(one.get("/weather", None).await).await;
    assert_eq!(one.status("/weather", Some(&stateless)).await, 200);
    assert_eq!(store.count("insert"), 0);
    // Rotated: key 2 mints, key 1 still verifies.
    let k2 = MasterKey::from_bytes(&[2; 32]);
    let rotated = MasterKeys::new(vec![k2.clone(), MasterKey::from_bytes(&[1; 32])]).expect("keys");
    let two = serve(Paywall::builder(Arc::new(sqlite(&dir)), net.server.clone()).master_keys(rotated).build()).await;
    assert_eq!(two.status("/weather", Some(&stateless)).await, 200, "minted by the retired key");
    assert_eq!(two.status("/weather", Some(&stored)).await, 200);
    let newer = net.pay(two.get("/weather", None).await).await;
    assert_eq!(two.status("/weather", Some(&newer)).await, 200);
    assert_eq!(one.status("/weather", Some(&newer)).await, 401, "key 1 alone does not know key 2's tokens");
    // Key 1 retired for good: its tokens are unknown.
    let only2 =
        serve(Paywall::builder(Arc::new(sqlite(&dir)), net.server.clone()).master_keys(MasterKeys::single(k2)).build())
            .await;
    let r = only2.get("/weather", Some(&stateless)).await;
    assert_eq!(r.status(), 401);
    assert!(r.text().await.expect("body").contains("unknown_token"));
    assert_eq!(only2.status("/weather", Some(&newer)).await, 200);
    net.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_recorded_stateless_token_is_verified_from_its_cache_and_only_as_what_it_was() {
    let net = Net::start().await;
    let dir = tempfile::tempdir().expect("tmp");
    // The stored-token caches off: every hit below is the stateless cache's, which has no TTL.
    let paywall =
        Paywall::builder(Arc::new(sqlite(&dir)), net.server.clone()).master_keys(keys(1)).key_cache_ttl(Duration::ZERO);
    let app = serve(paywall.build()).await;
    let hits = || app.paywall.metrics().verified_cache_hits.get();
    let auth = net.pay(app.get("/weather", None).await).await;
    assert_eq!(app.status("/weather", Some(&auth)).await, 200, "first use: verified whole, recorded");
    assert_eq!(hits(), 0);
    for i in 1..=3 {
        assert_eq!(app.status("/weather", Some(&auth)).await, 200);
        assert_eq!(hits(), i, "use {i} after the first: from the cache");
    }
    assert_eq!(app.paywall.verified_cache_len(), 1);

    // The same macaroon with another preimage: never a hit, refused.
    let (mac, pre) = support::parts(&auth);
    let mut wrong = pre.to_owned().into_bytes();
    wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
    let forged = format!("L402 {mac}:{}", String::from_utf8(wrong).expect("hex"));
    assert_eq!(app.status("/weather", Some(&forged)).await, 401, "a wrong preimage with a cached macaroon");
    // Another service (another spec, tier and price) with the same token: not a hit of its entry.
    let before = hits();
    assert_ne!(app.status("/weather-pro", Some(&auth)).await, 200, "a weather token does not open weather-pro");
    assert_eq!(hits(), before, "a token cached for one service is no hit for another");
    // An appended caveat is another signature: verified whole (a narrowing caveat that holds), then cached.
    // Narrowing: 10 minutes from now is within the token's own hour however slowly the machine got here (an
    // hour from now is later than the token's expiry once a second has passed since it was minted, and a
    // caveat may not widen it).
    let cred = l402_proto::Credential::parse(auth.as_bytes()).expect("credential");
    let narrowed = l402_proto::Credential::new(
        l402_proto::Scheme::L402,
        cred.macaroon.with_caveat(format!("weather_valid_until={}", now() + 600)),
        cred.preimage,
    )
    .header_value();
    let before = hits();
    assert_eq!(app.status("/weather", Some(&narrowed)).await, 200);
    assert_eq!(hits(), before, "a new signature is verified, not looked up");
    assert_eq!(app.paywall.verified_cache_len(), 1, "still one entry for one token");
    // Revoked: refused at once, cached or not.
    assert!(app.paywall.revoke(&token_id(&auth)).await.expect("revoke"));
    assert_eq!(app.status("/weather", Some(&auth)).await, 401);
    assert_eq!(app.status("/weather", Some(&narrowed)).await, 401);

    // Size 0: no stateless token is kept, each use is verified whole.
    let off =
        Paywall::builder(Arc::new(SqliteStore::open(&dir.path().join("off.db")).expect("sqlite")), net.server.clone())
            .master_keys(keys(2))
            .verified_stateless_size(0)
            .build();
    let app = serve(off).await;
    let auth = net.pay(app.get("/weather", None).await).await;
    for _ in 0..3 {
        assert_eq!(app.status("/weather", Some(&auth)).await, 200);
    }
    assert_eq!(app.paywall.metrics().verified_cache_hits.get(), 0);
    assert_eq!(app.paywall.verified_cache_len(), 0);
    net.net.shutdown().await;
}

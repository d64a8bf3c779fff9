//! Freebies and rate limits shared by two proxies on one PostgreSQL store (`[shared_limits]`): a client
//! spreading its requests over both gets one set of freebies and one rate, each instance learning the
//! other's uses within the stated bound (2 × `sync_ms`), and no more than that bound's worth beyond the limit
//! when it hits both at once. Clients are told apart by `X-Forwarded-For` from a trusted loopback balancer.
#![allow(missing_docs)]

mod support;

use std::time::Duration;

use support::{http_get, invoicing_node, proxy, upstream};

const SYNC_MS: u64 = 100;

fn config(store: &str, up: &str, sync_ms: u64) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
store = {store}
lightning = {{ backend = "ldk", data_dir = "unused", network = "regtest", bitcoind_rpc = "x", bitcoind_user = "x" }}
trusted_proxies = ["127.0.0.0/8"]
[shared_limits]
sync_ms = {sync_ms}

[[service]]
name = "maps"
path = "/maps*"
upstream = "{up}"
price_sat = 5
freebies = 3

[[service]]
name = "search"
path = "/search*"
upstream = "{up}"
payment = false
rate_limit = {{ per = "address", per_second = 0.001, burst = 4 }}
"#
    )
}

async fn get(p: &l402_proxy::Proxy, path: &str, client: &str) -> u16 {
    http_get(p.addr(), path, &[&format!("X-Forwarded-For: {client}")]).await.status
}

/// Two proxies on one new PostgreSQL, in front of one upstream, with the parts they need.
async fn two_proxies(
    sync_ms: u64,
) -> ((l402_regtest::Postgres, l402_regtest::Regtest, support::Upstream), l402_proxy::Proxy, l402_proxy::Proxy) {
    let pg = l402_regtest::Postgres::start().await.expect("postgres (apt-get install postgresql)");
    let (net, node) = invoicing_node().await;
    let up = upstream().await;
    let store = format!("{{ kind = \"postgres\", url = \"{}\" }}", pg.connection_string());
    let a = proxy(&config(&store, &up.url, sync_ms), &node).await;
    let b = proxy(&config(&store, &up.url, sync_ms), &node).await;
    ((pg, net, up), a, b)
}

/// Longer than the bound: a use on one instance is known to the other after it.
fn settle() -> Duration {
    Duration::from_millis(2 * SYNC_MS + 150)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn freebies_and_rate_limits_are_shared_by_two_proxies_on_one_postgres() {
    let (_parts, a, b) = two_proxies(SYNC_MS).await;

    // Freebies: 3 in all, whichever instance serves them.
    let c = "203.0.113.10";
    for (i, p) in [&a, &b, &a].into_iter().enumerate() {
        assert_eq!(get(p, "/maps/x", c).await, 200, "freebie {}", i + 1);
        tokio::time::sleep(settle()).await;
    }
    assert_eq!(get(&b, "/maps/x", c).await, 402, "b knows of the 2 taken on a");
    assert_eq!(get(&a, "/maps/x", c).await, 402, "a knows of the 1 taken on b");
    // A client met first on b, after using everything on a: b knows it already.
    let d = "2001:db8:77::1";
    for _ in 0..3 {
        assert_eq!(get(&a, "/maps/x", d).await, 200);
    }
    tokio::time::sleep(settle()).await;
    assert_eq!(get(&b, "/maps/x", "2001:db8:77::2").await, 402, "the same /64, never seen on b");

    // Rate limit: one bucket of 4 (no refill to speak of) over both instances.
    let e = "198.51.100.20";
    for (i, p) in [&a, &b, &b, &a].into_iter().enumerate() {
        assert_eq!(get(p, "/search?q=1", e).await, 200, "request {}", i + 1);
        tokio::time::sleep(settle()).await;
    }
    assert_eq!(get(&a, "/search?q=1", e).await, 429);
    assert_eq!(get(&b, "/search?q=1", e).await, 429);

    // Both at once, within one interval: each instance may admit what it knows is left, no more; once the
    // bound has passed, both refuse.
    let f = "198.51.100.30";
    let mut admitted = 0;
    for _ in 0..5 {
        for p in [&a, &b] {
            if get(p, "/maps/x", f).await == 200 {
                admitted += 1;
            }
        }
    }
    assert!((3..=6).contains(&admitted), "each instance gives at most the 3 it knows of: {admitted}");
    tokio::time::sleep(settle()).await;
    assert_eq!(get(&a, "/maps/x", f).await, 402);
    assert_eq!(get(&b, "/maps/x", f).await, 402);
    _parts.1.shutdown().await;
}

/// The same two instances with `sync_ms = 0`: each counts alone, so the test above could not pass by
/// accident of the setup.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn without_sharing_each_proxy_counts_its_own_freebies() {
    let (_parts, a, b) = two_proxies(0).await;
    let c = "203.0.113.11";
    for _ in 0..3 {
        assert_eq!(get(&a, "/maps/x", c).await, 200);
    }
    tokio::time::sleep(settle()).await;
    assert_eq!(get(&a, "/maps/x", c).await, 402);
    assert_eq!(get(&b, "/maps/x", c).await, 200, "b never hears of a's freebies");
    _parts.1.shutdown().await;
}

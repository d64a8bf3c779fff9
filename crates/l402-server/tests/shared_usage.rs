//! Shared-limit totals in both stores: adds return the new totals, every write gets a version above the last
//! (so an instance following `version > seen` misses none, even with two PostgreSQL handles writing at once),
//! and totals not written for a while are pruned.
#![allow(missing_docs)]

use std::sync::Arc;

use l402_regtest::Postgres;
use l402_server::store::{PostgresStore, SqliteStore, TokenStore, UsageAdd};

fn add(scope: &str, key: &[u8], delta: u64) -> UsageAdd {
    UsageAdd { scope: scope.into(), key: key.to_vec(), delta }
}

async fn contract(a: &dyn TokenStore, b: &dyn TokenStore) {
    assert_eq!(a.usage_version().await.expect("version"), 0);
    assert_eq!(a.add_usage(&[], 10).await.expect("nothing"), Vec::<u64>::new());
    let t = a.add_usage(&[add("freebies/w", b"\x04\x01\x02\x03\x04", 2), add("rate/w", b"k", 5)], 10).await;
    assert_eq!(t.expect("add"), vec![2, 5]);
    let v1 = a.usage_version().await.expect("version");
    assert!(v1 > 0);
    // Another instance adds to one of them: the total is everyone's.
    let t = b.add_usage(&[add("rate/w", b"k", 1), add("freebies/w", b"\x04\x01\x02\x03\x04", 1)], 20).await;
    assert_eq!(t.expect("add"), vec![6, 3]);
    let v2 = b.usage_version().await.expect("version");
    assert!(v2 > v1, "{v2} > {v1}");
    // Following from v1 gives only the second write's rows, with their totals.
    let rows = a.usage_since(v1).await.expect("since");
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.version == v2));
    let rate = rows.iter().find(|r| r.scope == "rate/w").expect("rate row");
    assert_eq!((rate.key.as_slice(), rate.used), (&b"k"[..], 6));
    assert_eq!(a.usage_since(v2).await.expect("since").len(), 0);
    assert_eq!(a.usage_since(0).await.expect("since").len(), 2);
    // A scope is part of the key: the same bytes under another scope count apart.
    assert_eq!(a.add_usage(&[add("freebies/x", b"k", 1)], 30).await.expect("add"), vec![1]);
    // Pruning forgets what was not written since: the rows of time 20, not the one of time 30.
    assert_eq!(a.prune_usage(25).await.expect("prune"), 2);
    let rows = b.usage_since(0).await.expect("since");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].scope, "freebies/x");
    // A forgotten total starts again.
    assert_eq!(b.add_usage(&[add("rate/w", b"k", 1)], 40).await.expect("add"), vec![1]);
}

/// `n` writes at once from two handles: every use is counted, and the versions seen in order cover them all.
async fn race(stores: [Arc<dyn TokenStore>; 2], n: u64) {
    let start = stores[0].usage_version().await.expect("version");
    let mut tasks = Vec::new();
    for i in 0..n {
        let s = stores[(i % 2) as usize].clone();
        tasks.push(tokio::spawn(async move {
            s.add_usage(&[add("race", b"k", 1), add("race", &i.to_be_bytes(), 1)], 50).await.expect("add")
        }));
    }
    let mut totals = Vec::new();
    for t in tasks {
        totals.push(t.await.expect("task")[0]);
    }
    totals.sort_unstable();
    assert_eq!(totals, (1..=n).collect::<Vec<_>>(), "each write saw its own total");
    let rows = stores[1].usage_since(start).await.expect("since");
    assert_eq!(rows.len() as u64, n + 1, "the shared key and one key per write");
    let shared = rows.iter().find(|r| r.key == b"k").expect("shared");
    assert_eq!(shared.used, n);
    assert_eq!(shared.version, stores[0].usage_version().await.expect("version"), "the last write holds it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_shared_usage_totals_are_exact_and_followed_by_version() {
    let pg = Postgres::start().await.expect("postgres (apt-get install postgresql)");
    let a: Arc<dyn TokenStore> = Arc::new(PostgresStore::connect(&pg.connection_string(), 8).await.expect("a"));
    let b: Arc<dyn TokenStore> = Arc::new(PostgresStore::connect(&pg.connection_string(), 8).await.expect("b"));
    contract(a.as_ref(), b.as_ref()).await;
    race([a, b], 40).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_shared_usage_totals_are_exact_and_followed_by_version() {
    let dir = tempfile::tempdir().expect("dir");
    let a: Arc<dyn TokenStore> = Arc::new(SqliteStore::open(&dir.path().join("s.db")).expect("a"));
    contract(a.as_ref(), a.as_ref()).await;
    race([a.clone(), a], 20).await;
}

//! Metered balances in both stores: opened once per payment, reservations that never overdraw under
//! concurrent requests (two PostgreSQL handles racing stand for two proxy instances), settling that releases the
//! reservation and debits at most what is left, and balances that outlive the store handle.
#![allow(missing_docs)]

use std::sync::Arc;

use l402_proto::{Msat, PaymentHash, TokenId};
use l402_regtest::Postgres;
use l402_server::store::{BalanceKey, PostgresStore, Reserve, SqliteStore, TokenStore};

async fn contract(a: &dyn TokenStore, b: &dyn TokenStore) {
    let key = BalanceKey::Token(TokenId([7; 32]));
    assert_eq!(a.reserve(&key, Msat(1)).await.expect("reserve"), Reserve::Missing);
    assert!(a.open_balance(&key, "chat", Msat(10_000), 100).await.expect("open"));
    assert!(!b.open_balance(&key, "chat", Msat(99_999), 101).await.expect("open again"), "opened once");
    assert_eq!(b.reserve(&key, Msat(4_000)).await.expect("r"), Reserve::Reserved { available: Msat(10_000) });
    assert_eq!(a.reserve(&key, Msat(4_000)).await.expect("r"), Reserve::Reserved { available: Msat(6_000) });
    assert_eq!(a.reserve(&key, Msat(4_000)).await.expect("r"), Reserve::Insufficient { available: Msat(2_000) });
    // Settled below the estimate: the rest of the reservation comes back.
    assert_eq!(a.settle(&key, Msat(4_000), Msat(1_234), 102).await.expect("settle"), Msat(8_766));
    assert_eq!(a.reserve(&key, Msat(4_000)).await.expect("r"), Reserve::Reserved { available: Msat(4_766) });
    // A debit over what is left takes what is left, never below zero.
    assert_eq!(b.settle(&key, Msat(4_000), Msat(1_000_000), 103).await.expect("settle"), Msat(0));
    let bal = a.balance(&key).await.expect("balance").expect("open");
    assert_eq!((bal.balance, bal.reserved, bal.debited, bal.requests), (Msat(0), Msat(4_000), Msat(10_000), 2));
    assert_eq!(a.settle(&key, Msat(4_000), Msat(4_000), 104).await.expect("settle"), Msat(0));
    let bal = a.balance(&key).await.expect("balance").expect("open");
    assert_eq!(
        (bal.reserved, bal.debited, bal.bundle, bal.service.as_str()),
        (Msat(0), Msat(10_000), Msat(10_000), "chat")
    );
    // A charge's balance is another row, even with the same 32 bytes.
    let charge = BalanceKey::Charge(PaymentHash([7; 32]));
    assert_eq!(a.balance(&charge).await.expect("balance"), None);
    assert!(a.open_balance(&charge, "chat", Msat(5), 105).await.expect("open"));
}

/// `n` reservations of `each` at once against a balance that fits `fits` of them: exactly `fits` succeed.
async fn race(stores: [Arc<dyn TokenStore>; 2], key: BalanceKey, n: usize, each: u64) -> usize {
    let mut tasks = Vec::new();
    for i in 0..n {
        let s = stores[i % 2].clone();
        tasks.push(tokio::spawn(async move { s.reserve(&key, Msat(each)).await.expect("reserve") }));
    }
    let mut ok = 0;
    for t in tasks {
        if matches!(t.await.expect("task"), Reserve::Reserved { .. }) {
            ok += 1;
        }
    }
    ok
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_balances_are_shared_and_never_overdrawn_by_two_instances() {
    let pg = Postgres::start().await.expect("postgres (apt-get install postgresql)");
    let a: Arc<dyn TokenStore> = Arc::new(PostgresStore::connect(&pg.connection_string(), 8).await.expect("a"));
    let b: Arc<dyn TokenStore> = Arc::new(PostgresStore::connect(&pg.connection_string(), 8).await.expect("b"));
    contract(a.as_ref(), b.as_ref()).await;
    let key = BalanceKey::Charge(PaymentHash([9; 32]));
    a.open_balance(&key, "chat", Msat(7 * 300 + 299), 1).await.expect("open");
    assert_eq!(race([a.clone(), b.clone()], key, 40, 300).await, 7);
    let bal = b.balance(&key).await.expect("balance").expect("open");
    assert_eq!(bal.reserved, Msat(2_100));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_balances_are_never_overdrawn_and_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("l402.db");
    let a = SqliteStore::open(&path).expect("open");
    contract(&a, &a.clone()).await;
    let key = BalanceKey::Token(TokenId([9; 32]));
    a.open_balance(&key, "chat", Msat(5 * 1_000), 1).await.expect("open");
    let stores: [Arc<dyn TokenStore>; 2] = [Arc::new(a.clone()), Arc::new(SqliteStore::open(&path).expect("second"))];
    assert_eq!(race(stores, key, 20, 1_000).await, 5);
    a.settle(&key, Msat(1_000), Msat(600), 2).await.expect("settle");
    drop(a);
    let again = SqliteStore::open(&path).expect("reopen");
    let bal = again.balance(&key).await.expect("balance").expect("kept");
    assert_eq!((bal.balance, bal.reserved, bal.debited), (Msat(4_400), Msat(4_000), Msat(600)));
}

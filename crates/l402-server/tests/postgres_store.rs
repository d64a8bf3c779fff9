//! The PostgreSQL store against a real PostgreSQL server: migrations, the store contract, two stores sharing
//! one database, and a failure when the server goes away.
#![allow(missing_docs)]

use l402_proto::{Msat, PaymentHash, RootKey, TokenId};
use l402_regtest::Postgres;
use l402_server::store::{KeyLookup, NewToken, PostgresStore, Revenue, SqliteStore, TokenStore};

fn token(n: u8, service: &str) -> NewToken {
    NewToken {
        id_hash: [n; 32],
        token_id: TokenId([n.wrapping_add(100); 32]),
        payment_hash: PaymentHash([n.wrapping_add(200); 32]),
        service: service.into(),
        price: Msat(1_000 * u64::from(n)),
        root_key: RootKey([n; 32]),
        created_at: 1_700_000_000 + u64::from(n),
        expires_at: Some(1_800_000_000),
    }
}

/// The same contract, whatever the store.
async fn contract(a: &dyn TokenStore, b: &dyn TokenStore) {
    a.insert(&token(1, "weather")).await.expect("insert");
    a.insert(&token(2, "maps")).await.expect("insert");
    assert!(a.insert(&token(1, "weather")).await.is_err(), "an id is minted once");
    // Seen through the other handle (another proxy instance).
    assert_eq!(
        b.lookup(&[1; 32]).await.expect("lookup"),
        KeyLookup::Active { root_key: RootKey([1; 32]), paid: false }
    );
    assert_eq!(b.lookup(&[9; 32]).await.expect("lookup"), KeyLookup::Unknown);
    // Paid once, by whichever instance sees it first.
    assert!(a.mark_paid(&PaymentHash([201; 32]), None, 1_700_000_500).await.expect("paid"));
    assert!(!b.mark_paid(&PaymentHash([201; 32]), Some(Msat(5)), 1_700_000_600).await.expect("again"));
    assert_eq!(b.lookup(&[1; 32]).await.expect("lookup"), KeyLookup::Active { root_key: RootKey([1; 32]), paid: true });
    assert_eq!(
        b.revenue().await.expect("revenue"),
        vec![Revenue { service: "weather".into(), tokens_paid: 1, amount: Msat(1_000) }]
    );
    // Revoked on one, refused by both.
    assert!(b.revoke(&TokenId([101; 32])).await.expect("revoke"));
    assert!(!a.revoke(&TokenId([101; 32])).await.expect("revoke again"));
    assert_eq!(a.lookup(&[1; 32]).await.expect("lookup"), KeyLookup::Revoked);
    let list = a.list(10).await.expect("list");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].service, "maps", "newest first");
    assert!(list[1].revoked_at.is_some() && list[1].paid_at == Some(1_700_000_500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_contract_across_two_instances() {
    let mut pg = Postgres::start().await.expect("postgres (apt-get install postgresql)");
    let a = PostgresStore::connect(&pg.connection_string(), 4).await.expect("connect a");
    let b = PostgresStore::connect(&pg.connection_string(), 4).await.expect("connect b (migrations are idempotent)");
    contract(&a, &b).await;
    // The server goes away: a clear error, not a hang or a panic.
    pg.kill();
    let err = a.lookup(&[2; 32]).await.expect_err("server gone");
    assert!(err.to_string().starts_with("token store:"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_store_contract_and_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("l402.db");
    let a = SqliteStore::open(&path).expect("open");
    let b = a.clone();
    contract(&a, &b).await;
    drop((a, b));
    let again = SqliteStore::open(&path).expect("reopen: migrations already applied");
    assert_eq!(again.list(10).await.expect("list").len(), 2);
    assert_eq!(std::fs::read(dir.path().join("l402.db")).map(|b| !b.is_empty()).ok(), Some(true));
}

//! The PostgreSQL store against a real PostgreSQL server: migrations, the store contract, two stores sharing
//! one database, and a failure when the server goes away.
#![allow(missing_docs)]

use l402_proto::{Msat, PaymentHash, RootKey, TokenId};
use l402_regtest::Postgres;
use l402_server::store::{
    KeyLookup, NewToken, PostgresStore, Revenue, SqliteStore, TokenCursor, TokenQuery, TokenStore, UsedToken,
};

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
        vec![Revenue { service: "weather".into(), tokens_paid: 1, charges_paid: 0, amount: Msat(1_000) }]
    );
    // Revoked on one, refused by both.
    assert!(b.revoke(&TokenId([101; 32])).await.expect("revoke"));
    assert!(!a.revoke(&TokenId([101; 32])).await.expect("revoke again"));
    assert_eq!(a.lookup(&[1; 32]).await.expect("lookup"), KeyLookup::Revoked);
    let list = a.list(&TokenQuery::newest(10)).await.expect("list");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].service, "maps", "newest first");
    assert!(list[1].revoked_at.is_some() && list[1].paid_at == Some(1_700_000_500));
    stateless(a, b).await;
}

/// Stateless tokens: recorded once whoever records first, revoked whether recorded or not, revocations
/// listed in order.
async fn stateless(a: &dyn TokenStore, b: &dyn TokenStore) {
    let used = UsedToken {
        id_hash: [40; 32],
        token_id: TokenId([41; 32]),
        payment_hash: PaymentHash([42; 32]),
        service: "maps".into(),
        price: Msat(2_000),
        created_at: 1_700_000_040,
        expires_at: Some(1_700_003_640),
        paid_at: 1_700_000_050,
        paid: Msat(2_500),
    };
    assert_eq!(a.record(&[used.clone(), used.clone()]).await.expect("record"), vec![true, false]);
    assert_eq!(b.record(std::slice::from_ref(&used)).await.expect("again"), vec![false], "recorded once");
    assert_eq!(b.record(&[]).await.expect("nothing"), Vec::<bool>::new());
    assert_eq!(b.lookup(&[40; 32]).await.expect("lookup"), KeyLookup::Unknown, "no root key kept");
    let maps = TokenQuery { limit: 1, service: Some("maps".into()), ..TokenQuery::default() };
    let t = b.list(&maps).await.expect("list").remove(0);
    assert_eq!((t.token_id, t.price, t.created_at), (used.token_id, Msat(2_000), 1_700_000_040));
    assert_eq!((t.expires_at, t.paid_at, t.revoked_at), (Some(1_700_003_640), Some(1_700_000_050), None));
    assert!(b.revenue().await.expect("revenue").contains(&Revenue {
        service: "maps".into(),
        tokens_paid: 1,
        charges_paid: 0,
        amount: Msat(2_500)
    }));
    // The stored token revoked above is listed first; then an unrecorded stateless id, then a recorded one.
    let before = b.revocations_since(0, 100).await.expect("revocations");
    assert_eq!(before.iter().map(|r| r.token_id).collect::<Vec<_>>(), vec![TokenId([101; 32])]);
    assert!(a.revoke_id(&TokenId([77; 32])).await.expect("revoke unrecorded"));
    assert!(!b.revoke_id(&TokenId([77; 32])).await.expect("again"));
    assert!(b.revoke_id(&used.token_id).await.expect("revoke recorded"));
    assert!(!a.revoke(&used.token_id).await.expect("already"), "revoked through either call");
    let after = a.revocations_since(before[0].seq, 1).await.expect("page of one");
    assert_eq!(after.iter().map(|r| r.token_id).collect::<Vec<_>>(), vec![TokenId([77; 32])]);
    let rest = a.revocations_since(after[0].seq, 100).await.expect("the rest");
    assert_eq!(rest.iter().map(|r| r.token_id).collect::<Vec<_>>(), vec![used.token_id]);
    assert!(rest[0].seq > after[0].seq && after[0].seq > before[0].seq);
    assert!(a.list(&maps).await.expect("list")[0].revoked_at.is_some());
    // A stateless token recorded after its revocation is recorded revoked.
    let late = UsedToken { id_hash: [50; 32], token_id: TokenId([77; 32]), ..used };
    assert_eq!(a.record(&[late]).await.expect("record"), vec![true]);
    let all = a.list(&TokenQuery::newest(100)).await.expect("list");
    assert!(all.iter().find(|t| t.token_id == TokenId([77; 32])).is_some_and(|t| t.revoked_at.is_some()));
}

/// Paging through the list: every token exactly once, newest first (ties on mint time broken by token id),
/// by service, and a token minted while paging does not shift a page.
async fn paging(s: &dyn TokenStore) {
    let mut minted = Vec::new();
    for n in 10..22u8 {
        let mut t = token(n, if n % 3 == 0 { "maps" } else { "weather" });
        t.created_at = 1_750_000_000 + u64::from(n / 2); // pairs share a mint second
        s.insert(&t).await.expect("insert");
        minted.push((t.created_at, t.token_id));
    }
    minted.sort_by_key(|&(at, id)| std::cmp::Reverse((at, id.0)));
    let mut seen = Vec::new();
    let mut query = TokenQuery { limit: 5, ..TokenQuery::default() };
    loop {
        let page = s.list(&query).await.expect("page");
        assert!(page.len() <= 5);
        if seen.is_empty() {
            // A token minted after the first page was read: newer than everything, so on no later page.
            s.insert(&token(30, "weather")).await.expect("insert while paging");
        }
        seen.extend(page.iter().map(|t| (t.created_at, t.token_id)));
        match page.last() {
            Some(last) if page.len() == 5 => query.after = Some(TokenCursor::after(last)),
            _ => break,
        }
    }
    let expected: Vec<_> = minted.iter().copied().filter(|(at, _)| *at >= 1_750_000_000).collect();
    let ours: Vec<_> = seen.iter().copied().filter(|(at, _)| *at >= 1_750_000_000).collect();
    assert_eq!(ours, expected, "each once, newest first, ties by token id");
    let maps = s
        .list(&TokenQuery { limit: 100, service: Some("maps".into()), ..TokenQuery::default() })
        .await
        .expect("by service");
    assert!(maps.iter().all(|t| t.service == "maps"));
    assert_eq!(maps.iter().filter(|t| t.created_at >= 1_750_000_000).count(), 4, "12, 15, 18, 21");
    let cursor = TokenCursor::after(&maps[0]);
    assert_eq!(TokenCursor::parse(&cursor.to_string()), Some(cursor));
    for bad in ["", "1", "x.00", "1.zz", "-1.00", &format!("1.{}", "0".repeat(63))] {
        assert_eq!(TokenCursor::parse(bad), None, "{bad:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_store_contract_across_two_instances() {
    let mut pg = Postgres::start().await.expect("postgres (apt-get install postgresql)");
    let a = PostgresStore::connect(&pg.connection_string(), 4).await.expect("connect a");
    let b = PostgresStore::connect(&pg.connection_string(), 4).await.expect("connect b (migrations are idempotent)");
    contract(&a, &b).await;
    paging(&a).await;
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
    paging(&a).await;
    drop((a, b));
    let again = SqliteStore::open(&path).expect("reopen: migrations already applied");
    assert_eq!(again.list(&TokenQuery::newest(100)).await.expect("list").len(), 2 + 2 + 12 + 1);
    assert_eq!(std::fs::read(dir.path().join("l402.db")).map(|b| !b.is_empty()).ok(), Some(true));
}

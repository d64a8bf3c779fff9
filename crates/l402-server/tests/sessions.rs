//! Sessions in both stores: opened once with the deposit's credit, debits that never go below zero under
//! concurrent requests (two PostgreSQL handles racing stand for two proxy instances), a top-up credited once
//! per payment and to one session, closes of which one refunds, refunds that fail and are tried again, and
//! sessions that outlive the store handle.
#![allow(missing_docs)]

use std::sync::Arc;

use l402_proto::{Msat, PaymentHash};
use l402_regtest::Postgres;
use l402_server::store::{
    NewSession, PostgresStore, SessionClose, SessionCredit, SessionDebit, SessionOpen, SessionState, SqliteStore,
    TokenStore,
};

fn new(id: u8, deposit: u64) -> NewSession {
    NewSession {
        id: PaymentHash([id; 32]),
        service: "chat".into(),
        deposit: Msat(deposit),
        return_invoice: format!("lnbcrt-return-{id}"),
        at: 100,
    }
}

async fn contract(a: &dyn TokenStore, b: &dyn TokenStore) {
    let s = new(1, 10_000);
    let id = s.id;
    assert_eq!(a.debit_session(&id, "chat", Msat(1), 100).await.expect("debit"), SessionDebit::NotOpen(None));
    assert_eq!(a.open_session(&s).await.expect("open"), SessionOpen::Opened);
    assert_eq!(
        b.open_session(&NewSession { deposit: Msat(99_999), ..s.clone() }).await.expect("again"),
        SessionOpen::Exists
    );
    assert_eq!(b.debit_session(&id, "chat", Msat(4_000), 101).await.expect("d"), SessionDebit::Debited(Msat(6_000)));
    // Another service cannot draw on it.
    assert_eq!(b.debit_session(&id, "other", Msat(1), 101).await.expect("d"), SessionDebit::NotOpen(None));
    assert_eq!(a.debit_session(&id, "chat", Msat(4_000), 102).await.expect("d"), SessionDebit::Debited(Msat(2_000)));
    assert_eq!(
        a.debit_session(&id, "chat", Msat(4_000), 103).await.expect("d"),
        SessionDebit::Insufficient(Msat(2_000))
    );
    // A request never served gets its debit back.
    a.undo_session_debit(&id, Msat(4_000), 104).await.expect("undo");
    let info = a.session(&id).await.expect("session").expect("exists");
    assert_eq!((info.balance, info.spent, info.requests), (Msat(6_000), Msat(4_000), 1));

    // A top-up: credited once, to one session.
    let top = PaymentHash([2; 32]);
    assert_eq!(a.credit_session(&id, &top, Msat(10_000), 105).await.expect("c"), SessionCredit::Applied(Msat(16_000)));
    assert_eq!(b.credit_session(&id, &top, Msat(10_000), 106).await.expect("c"), SessionCredit::Replayed(Msat(16_000)));
    let other = new(3, 1_000);
    assert_eq!(a.open_session(&other).await.expect("open"), SessionOpen::Opened);
    assert_eq!(a.credit_session(&other.id, &top, Msat(10_000), 107).await.expect("c"), SessionCredit::Foreign);
    // A session's deposit cannot be a top-up of another, nor a top-up the deposit of a new session.
    assert_eq!(a.credit_session(&other.id, &id, Msat(10_000), 107).await.expect("c"), SessionCredit::Foreign);
    assert_eq!(a.open_session(&new(2, 10_000)).await.expect("open"), SessionOpen::Foreign);
    assert_eq!(
        a.credit_session(&PaymentHash([9; 32]), &PaymentHash([8; 32]), Msat(1), 107).await.expect("c"),
        SessionCredit::NotOpen(None)
    );
    let info = b.session(&id).await.expect("session").expect("exists");
    assert_eq!((info.deposit, info.credited, info.balance), (Msat(10_000), Msat(20_000), Msat(16_000)));

    // Close: the balance becomes the refund owed; a second close while it is under way gets nothing.
    let close = a.begin_close(&id, Some("lnbcrt-fresh"), 108, 0).await.expect("close");
    assert_eq!(close, SessionClose::Refund { refund: Msat(16_000), return_invoice: "lnbcrt-fresh".into() });
    assert_eq!(
        b.begin_close(&id, None, 109, 0).await.expect("close"),
        SessionClose::NotClosable(Some(SessionState::Closing))
    );
    assert_eq!(
        b.debit_session(&id, "chat", Msat(1), 109).await.expect("d"),
        SessionDebit::NotOpen(Some(SessionState::Closing))
    );
    assert_eq!(
        b.credit_session(&id, &PaymentHash([4; 32]), Msat(1), 109).await.expect("c"),
        SessionCredit::NotOpen(Some(SessionState::Closing))
    );
    // A refund whose outcome is unknown stays Closing; past the staleness bound it is tried again, on the same
    // invoice (a replacement is refused while a payment to the old one may be under way).
    let again = b.begin_close(&id, Some("lnbcrt-other"), 200, 150).await.expect("close");
    assert_eq!(again, SessionClose::Refund { refund: Msat(16_000), return_invoice: "lnbcrt-fresh".into() });
    // It failed for certain: still owed, and the next close may name a new invoice.
    a.finish_close(&id, None, 201).await.expect("finish");
    let info = a.session(&id).await.expect("session").expect("exists");
    assert_eq!((info.state, info.refund, info.balance), (SessionState::RefundFailed, Msat(16_000), Msat(0)));
    let retry = a.begin_close(&id, Some("lnbcrt-new"), 202, 0).await.expect("close");
    assert_eq!(retry, SessionClose::Refund { refund: Msat(16_000), return_invoice: "lnbcrt-new".into() });
    b.finish_close(&id, Some(Msat(16_000)), 203).await.expect("finish");
    let info = b.session(&id).await.expect("session").expect("exists");
    assert_eq!((info.state, info.refunded), (SessionState::Closed, Msat(16_000)));
    assert_eq!(
        a.begin_close(&id, None, 204, 300).await.expect("close"),
        SessionClose::NotClosable(Some(SessionState::Closed))
    );
    assert_eq!(a.open_session(&s).await.expect("open"), SessionOpen::Exists, "a closed session does not reopen");
    let list = a.sessions(10).await.expect("list");
    assert_eq!(list.len(), 2);
}

/// `n` debits of `each` at once against a balance that covers `fits` of them: exactly `fits` succeed.
async fn race(stores: [Arc<dyn TokenStore>; 2], id: PaymentHash, n: usize, each: u64) -> usize {
    let mut tasks = Vec::new();
    for i in 0..n {
        let s = stores[i % 2].clone();
        tasks.push(tokio::spawn(async move { s.debit_session(&id, "chat", Msat(each), 1).await.expect("debit") }));
    }
    let mut ok = 0;
    for t in tasks {
        if matches!(t.await.expect("task"), SessionDebit::Debited(_)) {
            ok += 1;
        }
    }
    ok
}

/// The same top-up presented `n` times at once, and closes racing: credited once, refunded once.
async fn credit_and_close_race(stores: [Arc<dyn TokenStore>; 2], id: PaymentHash) -> (usize, usize) {
    let mut credits = Vec::new();
    for i in 0..20 {
        let s = stores[i % 2].clone();
        credits.push(tokio::spawn(async move {
            s.credit_session(&id, &PaymentHash([0xee; 32]), Msat(5_000), 2).await.expect("credit")
        }));
    }
    let mut applied = 0;
    for t in credits {
        if matches!(t.await.expect("task"), SessionCredit::Applied(_)) {
            applied += 1;
        }
    }
    let mut closes = Vec::new();
    for i in 0..10 {
        let s = stores[i % 2].clone();
        closes.push(tokio::spawn(async move { s.begin_close(&id, None, 3, 0).await.expect("close") }));
    }
    let mut refunds = 0;
    for t in closes {
        if matches!(t.await.expect("task"), SessionClose::Refund { .. }) {
            refunds += 1;
        }
    }
    (applied, refunds)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_sessions_are_shared_never_overdrawn_credited_once_and_refunded_once() {
    let pg = Postgres::start().await.expect("postgres (apt-get install postgresql)");
    let a: Arc<dyn TokenStore> = Arc::new(PostgresStore::connect(&pg.connection_string(), 8).await.expect("a"));
    let b: Arc<dyn TokenStore> = Arc::new(PostgresStore::connect(&pg.connection_string(), 8).await.expect("b"));
    contract(a.as_ref(), b.as_ref()).await;
    let s = new(9, 7 * 300 + 299);
    a.open_session(&s).await.expect("open");
    assert_eq!(race([a.clone(), b.clone()], s.id, 40, 300).await, 7);
    let info = b.session(&s.id).await.expect("session").expect("exists");
    assert_eq!((info.balance, info.requests), (Msat(299), 7));
    assert_eq!(credit_and_close_race([a.clone(), b.clone()], s.id).await, (1, 1));
    let info = a.session(&s.id).await.expect("session").expect("exists");
    assert_eq!((info.refund, info.state), (Msat(5_299), SessionState::Closing));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sessions_are_never_overdrawn_credited_once_and_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("l402.db");
    let a = SqliteStore::open(&path).expect("open");
    contract(&a, &a.clone()).await;
    let s = new(9, 5 * 1_000);
    a.open_session(&s).await.expect("open");
    let stores: [Arc<dyn TokenStore>; 2] = [Arc::new(a.clone()), Arc::new(SqliteStore::open(&path).expect("second"))];
    assert_eq!(race(stores.clone(), s.id, 20, 1_000).await, 5);
    assert_eq!(credit_and_close_race(stores, s.id).await, (1, 1));
    drop(a);
    let again = SqliteStore::open(&path).expect("reopen");
    let info = again.session(&s.id).await.expect("session").expect("kept");
    assert_eq!(
        (info.refund, info.spent, info.credited, info.state),
        (Msat(5_000), Msat(5_000), Msat(10_000), SessionState::Closing)
    );
}

//! A challenge priced 0 would be an amountless invoice, which a payer could settle with 1 msat: the paywall
//! refuses it (503) before asking the node, for a token, a `Payment` charge and a session deposit alike. Run
//! against a real LDK node, whose invoices are counted.
#![allow(missing_docs)]

use std::sync::Arc;

use l402_proto::Msat;
use l402_server::store::SqliteStore;
use l402_server::{Charge, MasterKey, MasterKeys, PaymentScheme, Paywall, Refusal, Schemes, ServiceSpec, SessionSpec};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_priced_zero_is_refused_before_any_invoice_is_made() {
    let net = l402_regtest::Regtest::start().await.expect("regtest (is bitcoind installed?)");
    let node = net.ldk_node("server").await.expect("ldk node");
    let keys = MasterKeys::single(MasterKey::from_bytes(&[5; 32]));
    let scheme = PaymentScheme::new("zero.test", keys.payment_secrets()).expect("secret");
    let store = Arc::new(SqliteStore::in_memory().expect("store"));
    let paywall = Paywall::builder(store, node.clone()).master_keys(keys).payment_scheme(scheme).build();
    let invoices = || node.inner().list_payments().len();

    let cases = [
        ("a token", ServiceSpec::new("free", Msat(0))),
        ("a charge", ServiceSpec::new("free", Msat(0)).schemes(Schemes { l402: false, payment: true })),
        ("a session deposit", ServiceSpec::new("cheap", Msat::from_sat(1)).session(SessionSpec::deposit_sat(0))),
    ];
    for (what, spec) in cases {
        let spec = Arc::new(spec);
        match paywall.offers(&Charge::of(&spec)).await {
            Err(e @ Refusal::Lightning(_)) => assert_eq!(e.status(), 503, "{what}"),
            other => panic!("{what} priced 0 was offered: {other:?}"),
        }
        assert_eq!(invoices(), 0, "{what}: the node was not asked");
    }
    // Priced above 0, the same paywall makes its invoice (the count above can see one).
    let priced = Arc::new(ServiceSpec::new("paid", Msat::from_sat(1)));
    paywall.offers(&Charge::of(&priced)).await.expect("offered");
    assert_eq!(invoices(), 1);
    net.shutdown().await;
}

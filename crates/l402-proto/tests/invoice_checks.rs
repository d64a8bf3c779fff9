//! The checks a client makes before paying: each refusal has its own error.

mod common;

use std::time::Duration;

use common::*;
use l402_proto::invoice::check_invoice;
use l402_proto::lightning_invoice::Currency;
use l402_proto::*;

fn policy() -> InvoicePolicy {
    InvoicePolicy { currency: Currency::Regtest, max_amount: Msat(50_000), expiry_margin: Duration::from_secs(30) }
}

#[test]
fn a_good_invoice_passes() {
    let hash = vector_preimage().payment_hash();
    let inv = invoice(Currency::Regtest, &hash, Some(50_000), 600);
    let (_, info) = check_invoice(&inv, &hash, &policy(), now()).expect("payable");
    assert_eq!(info.amount, Some(Msat(50_000)));
    assert_eq!(info.description, "l402 test");
}

#[test]
fn each_doubt_is_its_own_refusal() {
    let hash = vector_preimage().payment_hash();
    let other = PaymentHash([9; 32]);
    let t = now();
    let r = |inv: String| check_invoice(&inv, &hash, &policy(), t);

    assert!(matches!(r(invoice(Currency::Regtest, &hash, Some(50_001), 600)), Err(InvoiceError::OverCap { .. })));
    assert_eq!(r(invoice(Currency::Regtest, &hash, None, 600)), Err(InvoiceError::NoAmount));
    assert!(matches!(r(invoice(Currency::Bitcoin, &hash, Some(1000), 600)), Err(InvoiceError::WrongNetwork { .. })));
    assert!(matches!(r(invoice(Currency::Regtest, &other, Some(1000), 600)), Err(InvoiceError::HashMismatch { .. })));
    let old = invoice_at(Currency::Regtest, &hash, Some(1000), 600, t - Duration::from_secs(3600));
    assert!(matches!(r(old), Err(InvoiceError::Expired { .. })));
    // Expiring inside the margin counts as expired.
    assert!(matches!(r(invoice(Currency::Regtest, &hash, Some(1000), 20)), Err(InvoiceError::Expired { .. })));
    assert!(matches!(r("lnbcrt1garbage".into()), Err(InvoiceError::Parse(_))));
}

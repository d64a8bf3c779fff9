//! The session offer: read from a `402` beside the other offers, chosen by preference, and checked before
//! anything is paid.

use std::time::Duration;

use bitcoin::hashes::Hash as _;
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use l402_proto::lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};
use l402_proto::mpp::{ChargeRequest, INTENT_SESSION, METHOD_LIGHTNING, PaymentChallenge, b64url_encode, jcs};
use l402_proto::{InvoiceError, Msat, PaymentHash};
use reqwest::header::{HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use serde_json::json;

use super::check_session_offer;
use crate::config::PreferScheme;
use crate::error::Error;
use crate::offer::{Offer, Offers};

const NOW: u64 = 1_900_000_000;
const MARGIN: Duration = Duration::from_secs(30);

fn invoice(currency: Currency, hash: [u8; 32], amount_msat: u64) -> String {
    let secp = Secp256k1::new();
    let key = SecretKey::from_slice(&[0x42; 32]).expect("key");
    InvoiceBuilder::new(currency)
        .description("session deposit".into())
        .payment_hash(bitcoin::hashes::sha256::Hash::from_byte_array(hash))
        .payment_secret(PaymentSecret([7; 32]))
        .duration_since_epoch(Duration::from_secs(NOW))
        .min_final_cltv_expiry_delta(18)
        .expiry_time(Duration::from_secs(900))
        .amount_milli_satoshis(amount_msat)
        .build_signed(|m| secp.sign_ecdsa_recoverable(m, &key))
        .expect("invoice")
        .to_string()
}

/// A session line: `price` sat per request, a deposit of `deposit` sat stated, its invoice as given.
fn session_line(price: u64, deposit: u64, invoice: &str, hash: [u8; 32], expires: &str) -> String {
    let request = json!({
        "amount": price.to_string(),
        "currency": "sat",
        "depositAmount": deposit.to_string(),
        "depositInvoice": invoice,
        "description": "weather",
        "paymentHash": hex::encode(hash),
    });
    let mut c = PaymentChallenge {
        realm: "127.0.0.1".into(),
        method: METHOD_LIGHTNING.into(),
        intent: INTENT_SESSION.into(),
        request: b64url_encode(jcs(&request).as_bytes()),
        expires: Some(expires.into()),
        ..PaymentChallenge::default()
    };
    c.id = c.expected_id(b"secret");
    c.header_value()
}

fn charge_line(hash: [u8; 32]) -> String {
    let inv = invoice(Currency::Regtest, hash, 10_000);
    let request = ChargeRequest::lightning(10, &inv, "regtest", hash);
    PaymentChallenge::charge(b"secret", "127.0.0.1", &request.encode(), &later()).header_value()
}

/// An hour after [`NOW`], as a challenge's `expires`.
fn later() -> String {
    l402_proto::rfc3339::format_utc(NOW + 3_600)
}

fn headers(lines: &[String]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for l in lines {
        h.append(WWW_AUTHENTICATE, HeaderValue::from_str(l).expect("header"));
    }
    h
}

fn offers_of(lines: &[String]) -> Offers {
    Offers::read(&headers(lines))
}

#[test]
fn a_session_line_is_read_beside_a_charge_and_chosen_only_when_preferred_or_alone() {
    let hash = [5; 32];
    let session = session_line(10, 100, &invoice(Currency::Regtest, hash, 100_000), hash, &later());
    let both = || offers_of(&[charge_line([6; 32]), session.clone()]);
    let o = both();
    assert_eq!(o.offered(), vec!["Payment", "Session"]);
    let s = o.usable_session().expect("session offer");
    assert_eq!((s.request.amount, s.request.deposit_amount, s.service()), (10, Some(100), "weather".to_owned()));
    assert!(matches!(both().choose(PreferScheme::Session), Ok(Offer::Session(_))));
    assert!(matches!(both().choose(PreferScheme::Payment), Ok(Offer::Charge(_))));
    assert!(matches!(both().choose(PreferScheme::L402), Ok(Offer::Charge(_))), "the charge before a session");
    // Alone, the session is the one offer, whatever the preference.
    for prefer in [PreferScheme::L402, PreferScheme::Payment, PreferScheme::Session] {
        assert!(
            matches!(offers_of(std::slice::from_ref(&session)).choose(prefer), Ok(Offer::Session(_))),
            "{prefer:?}"
        );
    }
    // A charge alone is not a session.
    assert!(matches!(offers_of(&[charge_line([6; 32])]).choose(PreferScheme::Session), Ok(Offer::Charge(_))));
}

#[test]
fn a_session_line_that_does_not_decode_is_not_usable_and_says_why() {
    let bad = session_line(10, 100, "lnbcrt1", [5; 32], &later()).replace("request=\"", "request=\"x");
    let o = offers_of(&[bad]);
    assert!(o.usable_session().is_none());
    match o.choose(PreferScheme::Session) {
        Err(Error::Challenge(m)) => assert!(m.contains("session"), "{m}"),
        other => panic!("expected a challenge error, got {other:?}"),
    }
    assert_eq!(PreferScheme::from_name("Session"), Some(PreferScheme::Session));
    assert_eq!(PreferScheme::Session.name(), "session");
}

fn checked(line: &str, cap: Msat) -> Result<super::CheckedSession, Error> {
    let o = offers_of(&[line.to_owned()]);
    let offer = o.usable_session().expect("usable").clone();
    check_session_offer(&offer, &Currency::Regtest, cap, MARGIN, NOW)
}

#[test]
fn a_session_offer_is_checked_like_a_charge_before_anything_is_paid() {
    let hash = [5; 32];
    let cap = Msat::from_sat(1_000);
    let good = invoice(Currency::Regtest, hash, 100_000);
    let c = checked(&session_line(10, 100, &good, hash, &later()), cap).expect("a sound offer");
    assert_eq!((c.amount, c.price, c.payment_hash), (Msat::from_sat(100), Msat::from_sat(10), PaymentHash(hash)));
    assert_eq!(c.expires_at, NOW + 900, "the invoice expires before the challenge");

    // The invoice pays another hash than the one stated (the session id would not be the deposit's).
    let r = checked(&session_line(10, 100, &invoice(Currency::Regtest, [9; 32], 100_000), hash, &later()), cap);
    assert!(matches!(r, Err(Error::Invoice(InvoiceError::HashMismatch { .. }))), "{r:?}");
    // The invoice is for more than the deposit stated.
    let r = checked(&session_line(10, 100, &invoice(Currency::Regtest, hash, 150_000), hash, &later()), cap);
    assert!(
        matches!(r, Err(Error::AmountMismatch { stated, invoice }) if stated == Msat::from_sat(100) && invoice == Msat::from_sat(150)),
        "{r:?}"
    );
    // Another network.
    let r = checked(&session_line(10, 100, &invoice(Currency::Bitcoin, hash, 100_000), hash, &later()), cap);
    assert!(matches!(r, Err(Error::Invoice(InvoiceError::WrongNetwork { .. }))), "{r:?}");
    // Over the price cap.
    let r = checked(&session_line(10, 100, &good, hash, &later()), Msat::from_sat(99));
    assert!(matches!(r, Err(Error::Invoice(InvoiceError::OverCap { .. }))), "{r:?}");
    // The challenge expires within the margin.
    let soon = l402_proto::rfc3339::format_utc(NOW + 10);
    let r = checked(&session_line(10, 100, &good, hash, &soon), cap);
    assert!(matches!(r, Err(Error::Invoice(InvoiceError::Expired { .. }))), "{r:?}");
    // A price per request above the deposit (it could never serve), or zero.
    let r = checked(&session_line(101, 100, &good, hash, &later()), cap);
    assert!(matches!(r, Err(Error::Challenge(_))), "{r:?}");
    let r = checked(&session_line(0, 100, &good, hash, &later()), cap);
    assert!(matches!(r, Err(Error::Challenge(_))), "{r:?}");
}

//! The `Payment` scheme's Lightning charge as the test server speaks it, written from the draft and Aperture's
//! wire format (MPP.md) and independent of `l402-proto`, so the client is tested against the wire and not
//! against itself: the challenge line (`request` = base64url of the JCS request JSON, `expires` RFC 3339), the
//! credential (`Authorization: Payment <base64url JSON>`), the `Payment-Receipt`.
//!
//! [`ChargeMode`] makes the server's charge offer hostile in one way at a time.
#![allow(dead_code, unreachable_pub, missing_docs)]

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use l402_proto::{PaymentHash, Preimage};

/// How the server's `Payment` line misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChargeMode {
    /// Like Aperture (with a receipt on success).
    Normal,
    /// The stated `paymentHash` is not the invoice's (the invoice is a real, payable one).
    HashMismatch,
    /// The stated `amount` is one sat less than the invoice's (a real, payable invoice).
    AmountMismatch,
    /// The stated `network` is `mainnet`; the invoice is a real regtest one.
    StatedMainnet,
    /// The invoice is a mainnet one (stated `mainnet` too).
    MainnetInvoice,
    /// The invoice expired (a foreign one: it cannot be paid either way).
    ExpiredInvoice,
    /// The challenge's `expires` is 5 s away (inside the client's 30 s margin); the invoice is real and fresh.
    ExpiringChallenge,
    /// A valid charge credential is answered with a fresh 402 (takes the money, never serves).
    RefuseCharge,
    /// The first valid charge credential is answered after an hour (not spent); later ones normally.
    HangOnce,
    /// Success without a `Payment-Receipt`.
    NoReceipt,
}

/// A charge the server issued.
#[derive(Clone, Debug)]
pub struct Issued {
    /// The `request` parameter as sent.
    pub request: String,
    /// The payment hash it states.
    pub stated_hash: PaymentHash,
    /// Unix seconds.
    pub expires: u64,
    pub consumed: bool,
}

pub fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Unix seconds as RFC 3339 UTC (`2026-03-15T12:05:00Z`).
pub fn rfc3339(unix: u64) -> String {
    l402_proto::rfc3339::format_utc(unix)
}

/// The charge request in its JCS form (keys sorted, no whitespace; these values need no escaping), base64url.
pub fn charge_request(amount_sat: u64, invoice: &str, network: &str, hash: &PaymentHash) -> String {
    let json = format!(
        r#"{{"amount":"{amount_sat}","currency":"sat","methodDetails":{{"invoice":"{invoice}","network":"{network}","paymentHash":"{}"}}}}"#,
        hash.to_hex()
    );
    b64url(json.as_bytes())
}

/// The `WWW-Authenticate` value of a charge challenge, in Aperture's parameter order.
pub fn challenge_line(id: &str, realm: &str, request: &str, expires: &str) -> String {
    format!(
        r#"Payment id="{id}", realm="{realm}", method="lightning", intent="charge", request="{request}", expires="{expires}""#
    )
}

/// The echoed challenge id and request, and the preimage, of an `Authorization: Payment` value.
pub fn parse_credential(value: &str) -> Option<(String, String, Preimage)> {
    let (scheme, token) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("Payment") {
        return None;
    }
    let json: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(token.trim()).ok()?).ok()?;
    let challenge = json.get("challenge")?;
    let id = challenge.get("id")?.as_str()?.to_owned();
    let request = challenge.get("request")?.as_str()?.to_owned();
    let method = challenge.get("method")?.as_str()?;
    let intent = challenge.get("intent")?.as_str()?;
    if method != "lightning" || intent != "charge" {
        return None;
    }
    let preimage = Preimage::from_hex(json.get("payload")?.get("preimage")?.as_str()?).ok()?;
    Some((id, request, preimage))
}

/// A `Payment-Receipt` value, as Aperture makes it (reference: the payment hash).
pub fn receipt(hash: &PaymentHash, challenge_id: &str, now: u64) -> String {
    let json = format!(
        r#"{{"status":"success","method":"lightning","timestamp":"{}","reference":"{}","challengeId":"{challenge_id}"}}"#,
        rfc3339(now),
        hash.to_hex()
    );
    b64url(json.as_bytes())
}

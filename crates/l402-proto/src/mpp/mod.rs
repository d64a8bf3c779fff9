//! The `Payment` HTTP authentication scheme (MPP, `draft-ryan-httpauth-payment`) with the Lightning method,
//! byte-compatible with Aperture and lnget.
//!
//! A 402 offers a [`PaymentChallenge`] (`WWW-Authenticate: Payment id=.., realm=.., method="lightning",
//! intent="charge", request=.., expires=..`) beside or instead of L402's. Its `request` is base64url of the
//! [`jcs`] form of a [`ChargeRequest`] (the amount, an invoice of its own, its network and payment hash). Its
//! `id` is an HMAC under the server's secret over the other parameters ([`compute_id`]), so a server checks a
//! challenge it issued without having stored it. The client pays the invoice and answers with a
//! [`PaymentCredential`]: the challenge echoed whole and `{"preimage": ..}`, base64url of JSON. A 2xx carries a
//! [`Receipt`]. The `session` intent's forms are in [`SessionRequest`] and [`SessionAction`].
//!
//! Where Aperture (what clients meet) and the drafts differ, this follows Aperture and its vectors
//! (`mpp/testdata/vectors.json`, replayed in `tests/mpp_vectors.rs`): the id's seven `|`-joined slots (the
//! pipe is not escaped; the known collision is pinned), the credential's key order, no HTML escaping, a strict
//! base64url reader, a repeated challenge parameter keeping its first occurrence.
//!
//! ```
//! use l402_proto::Preimage;
//! use l402_proto::mpp::{ChargeRequest, PaymentChallenge, PaymentCredential};
//!
//! let secret = b"server secret";
//! let preimage = Preimage([7; 32]);
//! let request = ChargeRequest::lightning(100, "lnbcrt1u1p...", "regtest", preimage.payment_hash().0);
//! let challenge = PaymentChallenge::charge(secret, "api.example.com", &request.encode(), "2030-01-01T00:00:00Z");
//! let www_authenticate = challenge.header_value();
//!
//! // The client: parse the offer, pay its invoice, answer.
//! let offer = PaymentChallenge::parse_all([www_authenticate.as_bytes()]).remove(0);
//! assert_eq!(ChargeRequest::decode(&offer.request).unwrap().amount, 100);
//! let authorization = PaymentCredential::charge(offer, &preimage).header_value();
//!
//! // The server: read it, check the id and the preimage.
//! let cred = PaymentCredential::from_authorization([authorization.as_bytes()]).unwrap().unwrap();
//! assert!(cred.challenge.verify_id(secret));
//! let paid = ChargeRequest::decode(&cred.challenge.request).unwrap();
//! assert_eq!(cred.charge_preimage().unwrap().payment_hash().0, paid.method_details.payment_hash);
//! ```

mod b64;
mod challenge;
mod credential;
mod jcs;
mod receipt;
mod request;
mod session;

pub use b64::{b64url_decode, b64url_encode};
pub use challenge::{INTENT_CHARGE, INTENT_SESSION, METHOD_LIGHTNING, PaymentChallenge, SCHEME, compute_id};
pub use credential::{MAX_CREDENTIAL_TOKEN, PaymentCredential};
pub use jcs::jcs;
pub use receipt::{PAYMENT_RECEIPT_HEADER, Receipt};
pub use request::{CURRENCY_SAT, ChargeRequest, MethodDetails};
pub use session::{SessionAction, SessionRequest};

/// The body of a 402 that carries a `Payment` challenge (`Content-Type: application/problem+json`), as
/// Aperture sends it.
pub const PROBLEM_PAYMENT_REQUIRED: &str = r#"{"type":"https://paymentauth.org/problems/payment-required","title":"Payment Required","status":402,"detail":"Payment required for access."}"#;

/// Why a `Payment` value does not read. Messages never carry the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MppError {
    /// Not strict base64url.
    #[error("not base64url")]
    Base64,
    /// Not a JSON object.
    #[error("not a JSON object")]
    Json,
    /// The credential token is empty.
    #[error("empty credential")]
    Empty,
    /// The credential token is over [`MAX_CREDENTIAL_TOKEN`].
    #[error("credential too large")]
    TooLarge,
    /// A required field is missing (or not a string).
    #[error("credential without {0}")]
    Missing(&'static str),
    /// The payload has no 64-hex-digit preimage.
    #[error("payload without a 64-hex-digit preimage")]
    Preimage,
    /// The request does not read.
    #[error("request: {0}")]
    Request(String),
    /// The receipt does not read.
    #[error("receipt: {0}")]
    Receipt(String),
}

//! The L402 protocol core: everything both sides agree on, and nothing else.
//!
//! This crate is pure: no I/O, no clock, no randomness, no async runtime, no HTTP types. A server and a client
//! pass in what they read from the world (header bytes, the time, random token ids and root keys) and get back
//! typed values or typed refusals. Keeping it that way keeps it fuzzable, and `cargo tree -p l402-proto -e
//! normal` free of tokio, hyper, tonic and reqwest (CI checks it).
//!
//! How the pieces relate:
//! - an [`Identifier`] (version, payment hash, token id) is the identifier of a [`Macaroon`], minted under a
//!   per-token [`RootKey`] with [`Caveat`]s that scope it;
//! - a server sends the macaroon and an invoice as a [`Challenge`]; the client checks the invoice
//!   ([`invoice::check_invoice`]), pays it, and presents a [`Credential`] (macaroon and [`Preimage`]);
//! - the server [`verify`]s the credential under the token's [`MacaroonKey`] for an [`Access`].
//!
//! Tokens, challenges and credentials are byte-compatible with Aperture (Lightning Labs' Go proxy) and its
//! clients.
//!
//! ```
//! use l402_proto::*;
//!
//! let root_key = RootKey([0x11; 32]);
//! let preimage = Preimage(std::array::from_fn(|i| i as u8));
//! let id = Identifier::new(preimage.payment_hash(), TokenId([0xab; 32]));
//! let mac = Macaroon::mint(&root_key, &id, &[
//!     Caveat::services(&[Service::new("svc")]),
//!     Caveat::capabilities::<&str>("svc", &[]),
//!     Caveat::valid_until("svc", 1_700_000_000),
//! ]);
//! let header = Credential::new(Scheme::L402, mac, preimage).header_value();
//!
//! let cred = Credential::from_authorization([header.as_bytes()]).unwrap();
//! let access = Access { service: "svc", capability: None, now_unix: 1_699_999_999 };
//! let ok = verify(&cred.macaroon, &cred.preimage, &MacaroonKey::derive(&root_key), &access).unwrap();
//! assert_eq!(ok.token_id, TokenId([0xab; 32]));
//! ```

mod auth_params;
pub mod caveat;
pub mod challenge;
pub mod credential;
pub mod error;
pub mod identifier;
pub mod invoice;
pub mod macaroon;
pub mod mpp;
pub mod rfc3339;
pub mod types;
pub mod verify;

pub use caveat::{Caveat, Service};
pub use challenge::{Challenge, ChallengeError, Scheme};
pub use credential::{Credential, CredentialForm};
pub use error::{DecodeError, MacaroonFormat};
pub use identifier::Identifier;
pub use invoice::{InvoiceError, InvoiceInfo, InvoicePolicy};
pub use lightning_invoice;
pub use macaroon::{Macaroon, MacaroonKey};
pub use types::{Msat, PaymentHash, Preimage, RootKey, TokenId};
pub use verify::{Access, Verified, VerifyError, grants_tier, verify};

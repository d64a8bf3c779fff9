//! Newtypes for the protocol's values, parsed once at the edge.
//!
//! Secrets ([`Preimage`], [`RootKey`]) have a redacted `Debug` and no `Display`: printing one takes an explicit
//! call to [`Preimage::to_hex`], so a stray `{:?}` in a log line cannot leak it.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::error::DecodeError;

/// Decodes exactly 64 lowercase hex digits into 32 bytes.
///
/// Uppercase is refused on purpose: Aperture's credential grammar is `[a-f0-9]{64}`, and a credential that one
/// verifier accepts and another refuses is a way to make a user pay and get nothing.
pub(crate) fn decode_hex32(what: &'static str, s: &[u8]) -> Result<[u8; 32], DecodeError> {
    if s.len() != 64 {
        return Err(DecodeError::HexLength { what, len: s.len() });
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        let hi = lower_hex_digit(pair[0]).ok_or(DecodeError::NotLowercaseHex { what })?;
        let lo = lower_hex_digit(pair[1]).ok_or(DecodeError::NotLowercaseHex { what })?;
        out[i] = (hi << 4) | lo;
    }
    Ok(out)
}

fn lower_hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// 32 bytes as 64 lowercase hex digits, through a table (`hex::encode` goes a char at a time; a token id is
/// written out for every paid request).
fn hex32(bytes: &[u8; 32]) -> String {
    let mut out = [0u8; 64];
    // Cannot fail: 64 places for 32 bytes, and the digits are ASCII.
    let _ = hex::encode_to_slice(bytes, &mut out);
    String::from_utf8(out.to_vec()).unwrap_or_default()
}

macro_rules! public_hash32 {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; 32]);

        impl $name {
            /// The 32 bytes.
            pub fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Parses 64 lowercase hex digits.
            pub fn from_hex(s: &str) -> Result<Self, DecodeError> {
                decode_hex32($what, s.as_bytes()).map(Self)
            }

            /// 64 lowercase hex digits.
            pub fn to_hex(&self) -> String {
                hex32(&self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for b in &self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({self})", stringify!($name))
            }
        }
    };
}

public_hash32!(
    /// The sha256 of a [`Preimage`]; an invoice's payment hash, committed to by the token identifier.
    PaymentHash,
    "payment hash"
);
public_hash32!(
    /// The random 32-byte identifier of one token; what logs and admin tools name a token by.
    TokenId,
    "token id"
);

/// The proof of payment: 32 bytes whose sha256 is the invoice's payment hash. A secret.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Preimage(pub [u8; 32]);

impl Preimage {
    /// Parses 64 lowercase hex digits (the only form the credential grammar allows).
    pub fn from_hex(s: &str) -> Result<Self, DecodeError> {
        decode_hex32("preimage", s.as_bytes()).map(Self)
    }

    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// 64 lowercase hex digits. Explicit on purpose: a preimage is a bearer secret.
    pub fn to_hex(&self) -> String {
        hex32(&self.0)
    }

    /// The payment hash this preimage proves payment of.
    pub fn payment_hash(&self) -> PaymentHash {
        PaymentHash(Sha256::digest(self.0).into())
    }
}

impl fmt::Debug for Preimage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Preimage(<redacted>)")
    }
}

/// The 32-byte secret a server keeps per token; the macaroon's HMAC chain starts from it. Deleting it revokes
/// the token.
#[derive(Clone, PartialEq, Eq)]
pub struct RootKey(pub [u8; 32]);

impl RootKey {
    /// The 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses 64 hex digits (either case: this comes from an operator, not from the wire).
    pub fn from_hex(s: &str) -> Result<Self, DecodeError> {
        decode_hex32("root key", s.to_ascii_lowercase().as_bytes()).map(Self)
    }
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RootKey(<redacted>)")
    }
}

/// An amount in millisatoshis.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Msat(pub u64);

impl Msat {
    /// An amount of whole satoshis.
    pub const fn from_sat(sat: u64) -> Self {
        Self(sat.saturating_mul(1000))
    }

    /// The amount in millisatoshis.
    pub const fn msat(self) -> u64 {
        self.0
    }

    /// Adds, or `None` on overflow (a budget must never wrap).
    pub fn checked_add(self, other: Msat) -> Option<Msat> {
        self.0.checked_add(other.0).map(Msat)
    }
}

impl fmt::Display for Msat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 % 1000 == 0 { write!(f, "{} sat", self.0 / 1000) } else { write!(f, "{} msat", self.0) }
    }
}

/// Quotes at most a short prefix of untrusted input for an error message, so that an error never echoes a
/// credential back.
pub(crate) fn short(input: &[u8]) -> String {
    const MAX: usize = 12;
    let shown: String =
        input.iter().take(MAX).map(|&b| if b.is_ascii_graphic() || b == b' ' { b as char } else { '?' }).collect();
    if input.len() > MAX { format!("{shown}…") } else { shown }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_of_32_bytes_is_lowercase_and_round_trips() {
        let mut b = [0u8; 32];
        for (i, x) in b.iter_mut().enumerate() {
            *x = u8::try_from(i * 37 % 256).unwrap_or(0) ^ 0xa5;
        }
        for id in [TokenId(b), TokenId([0; 32]), TokenId([0xff; 32])] {
            let hex = id.to_hex();
            assert_eq!(hex, hex::encode(id.0));
            assert_eq!(hex, id.to_string());
            assert_eq!(TokenId::from_hex(&hex).ok(), Some(id));
        }
        assert_eq!(Preimage(b).to_hex(), hex::encode(b));
    }
}

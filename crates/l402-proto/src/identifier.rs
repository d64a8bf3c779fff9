//! The token identifier: `version: u16 | payment_hash: [u8; 32] | token_id: [u8; 32]`, big-endian, 66 bytes.
//!
//! It is the macaroon's identifier, so the HMAC chain commits to the payment hash: a preimage for that hash is
//! what turns the macaroon into a paid credential. Only version 0 exists; any other is refused, never guessed at.

use sha2::{Digest, Sha256};

use crate::error::DecodeError;
use crate::types::{PaymentHash, TokenId};

/// The only identifier version defined (by Aperture and the L402 specification).
pub const IDENTIFIER_VERSION_0: u16 = 0;

/// The encoded length of a version-0 identifier.
pub const IDENTIFIER_LEN: usize = 2 + 32 + 32;

/// A decoded token identifier.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Identifier {
    /// The payment hash of the invoice that pays for this token.
    pub payment_hash: PaymentHash,
    /// The random id of this token.
    pub token_id: TokenId,
}

impl Identifier {
    /// A version-0 identifier.
    pub fn new(payment_hash: PaymentHash, token_id: TokenId) -> Self {
        Self { payment_hash, token_id }
    }

    /// The 66-byte encoding.
    pub fn to_bytes(&self) -> [u8; IDENTIFIER_LEN] {
        let mut out = [0u8; IDENTIFIER_LEN];
        out[..2].copy_from_slice(&IDENTIFIER_VERSION_0.to_be_bytes());
        out[2..34].copy_from_slice(&self.payment_hash.0);
        out[34..].copy_from_slice(&self.token_id.0);
        out
    }

    /// Decodes an identifier, refusing unknown versions and any length but 66.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() < 2 {
            return Err(DecodeError::IdentifierLength { len: bytes.len() });
        }
        let version = u16::from_be_bytes([bytes[0], bytes[1]]);
        if version != IDENTIFIER_VERSION_0 {
            return Err(DecodeError::UnknownVersion { version });
        }
        if bytes.len() != IDENTIFIER_LEN {
            return Err(DecodeError::IdentifierLength { len: bytes.len() });
        }
        let mut payment_hash = [0u8; 32];
        let mut token_id = [0u8; 32];
        payment_hash.copy_from_slice(&bytes[2..34]);
        token_id.copy_from_slice(&bytes[34..66]);
        Ok(Self { payment_hash: PaymentHash(payment_hash), token_id: TokenId(token_id) })
    }
}

/// The key under which a server stores a token's root key: sha256 of the encoded identifier (as Aperture does).
pub fn identifier_hash(identifier: &[u8]) -> [u8; 32] {
    Sha256::digest(identifier).into()
}

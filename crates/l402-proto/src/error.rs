//! Errors of decoding: what was malformed, named without echoing more than a short prefix of the input.

use thiserror::Error;

/// Why bytes or text from the wire could not be decoded into a protocol value.
///
/// Every variant names what was wrong; none carries the whole untrusted input (at most a 12-character prefix),
/// so these can be logged and returned to a client without leaking a credential.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Not valid base64 in either the standard or the URL-safe alphabet.
    #[error("{what} is not valid base64")]
    Base64 {
        /// What was being decoded.
        what: &'static str,
    },
    /// Not valid hex.
    #[error("{what} is not valid hex")]
    Hex {
        /// What was being decoded.
        what: &'static str,
    },
    /// A 32-byte value did not have 64 hex digits.
    #[error("{what} must be 64 hex digits (32 bytes), got {len} characters")]
    HexLength {
        /// What was being decoded.
        what: &'static str,
        /// The number of characters found.
        len: usize,
    },
    /// A 32-byte value had characters other than `0-9a-f`.
    #[error("{what} must be lowercase hex (0-9, a-f)")]
    NotLowercaseHex {
        /// What was being decoded.
        what: &'static str,
    },
    /// The macaroon is not in the libmacaroons V2 binary format.
    #[error("macaroon is not libmacaroons V2: {reason}")]
    Macaroon {
        /// What was wrong with the encoding.
        reason: MacaroonFormat,
    },
    /// The token identifier has the wrong length for its version.
    #[error("token identifier must be 66 bytes, got {len}")]
    IdentifierLength {
        /// The length found.
        len: usize,
    },
    /// The token identifier's version is not one this implementation knows.
    #[error("unknown token identifier version {version}")]
    UnknownVersion {
        /// The version found.
        version: u16,
    },
    /// No `Authorization` value (or `Macaroon` header) carries an L402 or LSAT credential.
    #[error("no L402 credential")]
    NoCredential,
    /// An L402/LSAT credential is not of the form `<macaroon>:<preimage>`.
    #[error("malformed credential: {reason}")]
    Credential {
        /// What was wrong.
        reason: &'static str,
    },
    /// A header value is longer than this implementation accepts.
    #[error("{what} header is longer than {max} bytes")]
    TooLong {
        /// Which header.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// A caveat is not of the form `condition=value`.
    #[error("caveat {prefix:?} is not of the form condition=value")]
    Caveat {
        /// A short prefix of the caveat.
        prefix: String,
    },
}

/// What was wrong with a macaroon's binary encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MacaroonFormat {
    /// Empty input.
    #[error("empty")]
    Empty,
    /// The first byte is not 2 (V1 and JSON macaroons are not L402 tokens).
    #[error("version byte {0} is not 2")]
    Version(u8),
    /// The input ends inside a field.
    #[error("truncated")]
    Truncated,
    /// A field length is not a valid varint, or does not fit.
    #[error("bad field length")]
    Length,
    /// A field appeared where another was required.
    #[error("unexpected field type {found} (expected {expected})")]
    Field {
        /// The field type found.
        found: u8,
        /// The field type required there.
        expected: u8,
    },
    /// A caveat carries a location or verification id (a third-party caveat); L402 tokens have none.
    #[error("third-party caveats and caveat locations are not supported")]
    ThirdParty,
    /// The signature field is not 32 bytes.
    #[error("signature must be 32 bytes")]
    SignatureLength,
    /// Bytes follow the signature.
    #[error("trailing bytes after the signature")]
    Trailing,
    /// More caveats than this implementation accepts.
    #[error("more than {} caveats", crate::macaroon::MAX_CAVEATS)]
    TooManyCaveats,
}

impl From<MacaroonFormat> for DecodeError {
    fn from(reason: MacaroonFormat) -> Self {
        DecodeError::Macaroon { reason }
    }
}

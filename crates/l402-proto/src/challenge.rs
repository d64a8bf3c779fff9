//! The challenge a server sends with `402 Payment Required` (`WWW-Authenticate`), built and parsed.
//!
//! Built the way Aperture sends it, one line per scheme, LSAT first so that old clients reading only the first
//! line still work: `LSAT macaroon="<base64>", invoice="<bolt11>"` then the same with `L402`. Parsed tolerantly:
//! either scheme in any case, `macaroon=` or `token=`, `version="0"`, unknown parameters ignored, other schemes
//! skipped, several lines and several challenges per line.

use std::fmt;

use thiserror::Error;

use crate::auth_params::parse_challenges;
use crate::error::DecodeError;
use crate::macaroon::Macaroon;

/// The largest `WWW-Authenticate` value parsed (bytes).
pub const MAX_CHALLENGE_LEN: usize = 16 * 1024;

/// The two scheme names of the protocol (`LSAT` is its former name; both mean the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `L402`.
    L402,
    /// `LSAT`.
    Lsat,
}

impl Scheme {
    /// Recognizes a scheme name, case-insensitively (RFC 9110).
    pub fn from_name(name: &str) -> Option<Self> {
        if name.eq_ignore_ascii_case("L402") {
            Some(Scheme::L402)
        } else if name.eq_ignore_ascii_case("LSAT") {
            Some(Scheme::Lsat)
        } else {
            None
        }
    }

    /// The canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::L402 => "L402",
            Scheme::Lsat => "LSAT",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An L402 challenge: a macaroon committing to an invoice's payment hash, and the invoice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    /// The scheme the server used (a client answers in the same one).
    pub scheme: Scheme,
    /// The macaroon to present once paid.
    pub macaroon: Macaroon,
    /// The BOLT-11 invoice, unchecked (see [`crate::invoice`] before paying it).
    pub invoice: String,
    /// The `version` parameter, if the server sent one.
    pub version: Option<String>,
}

/// Why no usable challenge was found.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ChallengeError {
    /// No `WWW-Authenticate` challenge has the L402 or LSAT scheme.
    #[error("no L402 or LSAT challenge in WWW-Authenticate")]
    NotFound,
    /// A header line does not follow the RFC 9110 challenge grammar.
    #[error("WWW-Authenticate is not a valid challenge list")]
    Syntax,
    /// A header line is too long to parse.
    #[error("WWW-Authenticate is longer than {MAX_CHALLENGE_LEN} bytes")]
    TooLong,
    /// An L402 challenge has no `macaroon` or `token` parameter.
    #[error("L402 challenge has no macaroon")]
    MissingMacaroon,
    /// An L402 challenge has no `invoice` parameter.
    #[error("L402 challenge has no invoice")]
    MissingInvoice,
    /// An L402 challenge's invoice holds a character no BOLT-11 invoice has (bech32 is ASCII letters and
    /// digits): refused here, so that what parsed always formats back to the same challenge.
    #[error("L402 challenge invoice is not bech32 text")]
    InvoiceCharacters,
    /// An L402 challenge names a protocol version other than 0.
    #[error("L402 challenge has unsupported version {0:?}")]
    UnsupportedVersion(String),
    /// An L402 challenge's macaroon does not decode.
    #[error("L402 challenge macaroon: {0}")]
    Macaroon(DecodeError),
}

impl Challenge {
    /// The header value in Aperture's form: `<scheme> macaroon="<base64>", invoice="<bolt11>"`.
    pub fn header_value(&self) -> String {
        format_challenge(self.scheme, &self.macaroon, &self.invoice)
    }

    /// Parses every `WWW-Authenticate` value of a response and returns its L402/LSAT challenges, in order.
    ///
    /// Lines that are not valid challenge lists and challenges of other schemes are skipped. If no L402/LSAT
    /// challenge is usable, the error says why the first one that was found was not (or that none was found).
    pub fn parse_all<'a, I>(values: I) -> Result<Vec<Challenge>, ChallengeError>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let mut found = Vec::new();
        let mut first_error = None;
        for value in values {
            if value.len() > MAX_CHALLENGE_LEN {
                first_error.get_or_insert(ChallengeError::TooLong);
                continue;
            }
            let Ok(text) = std::str::from_utf8(value) else {
                first_error.get_or_insert(ChallengeError::Syntax);
                continue;
            };
            let Ok(raws) = parse_challenges(text) else {
                first_error.get_or_insert(ChallengeError::Syntax);
                continue;
            };
            for raw in raws {
                let Some(scheme) = Scheme::from_name(raw.scheme) else { continue };
                match Self::from_params(scheme, &raw) {
                    Ok(c) => found.push(c),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        if found.is_empty() { Err(first_error.unwrap_or(ChallengeError::NotFound)) } else { Ok(found) }
    }

    /// Parses the response's challenges and picks the one to answer: L402 over LSAT, else the first.
    pub fn parse<'a, I>(values: I) -> Result<Challenge, ChallengeError>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let all = Self::parse_all(values)?;
        let pick = all.iter().position(|c| c.scheme == Scheme::L402).unwrap_or(0);
        all.into_iter().nth(pick).ok_or(ChallengeError::NotFound)
    }

    fn from_params(scheme: Scheme, raw: &crate::auth_params::RawChallenge<'_>) -> Result<Self, ChallengeError> {
        let version = raw.param("version").map(str::to_owned);
        if let Some(v) = &version {
            if v != "0" {
                return Err(ChallengeError::UnsupportedVersion(crate::types::short(v.as_bytes())));
            }
        }
        let mac = raw.param("macaroon").or_else(|| raw.param("token")).ok_or(ChallengeError::MissingMacaroon)?;
        let invoice = raw.param("invoice").ok_or(ChallengeError::MissingInvoice)?;
        if invoice.is_empty() {
            return Err(ChallengeError::MissingInvoice);
        }
        if !invoice.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ChallengeError::InvoiceCharacters);
        }
        let macaroon = Macaroon::from_base64(mac).map_err(ChallengeError::Macaroon)?;
        Ok(Self { scheme, macaroon, invoice: invoice.to_owned(), version })
    }
}

/// One challenge line in Aperture's form.
pub fn format_challenge(scheme: Scheme, macaroon: &Macaroon, invoice: &str) -> String {
    format!("{scheme} macaroon=\"{}\", invoice=\"{invoice}\"", macaroon.to_base64())
}

/// One challenge line in the 2026 specification's form: `L402 version="0", token="…", invoice="…"`.
pub fn format_challenge_v0(macaroon: &Macaroon, invoice: &str) -> String {
    format!("L402 version=\"0\", token=\"{}\", invoice=\"{invoice}\"", macaroon.to_base64())
}

/// The two lines a server sends, LSAT first (as Aperture does).
pub fn challenge_lines(macaroon: &Macaroon, invoice: &str) -> [String; 2] {
    [format_challenge(Scheme::Lsat, macaroon, invoice), format_challenge(Scheme::L402, macaroon, invoice)]
}

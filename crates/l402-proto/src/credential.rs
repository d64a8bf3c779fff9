//! The credential a client presents once paid (`Authorization`), built and parsed.
//!
//! `Authorization: L402 <base64 macaroon>:<64 lowercase hex preimage>` (or `LSAT`, any case). Strict about
//! the preimage, tolerant about which of several values is well formed: Aperture's own client sends two
//! `Authorization` headers (LSAT, then L402), so every value is looked at and a well-formed L402 one wins over
//! a well-formed LSAT one. gRPC clients may instead send the macaroon as hex in `Macaroon` or
//! `Grpc-Metadata-Macaroon`, with the preimage as an extra caveat `preimage=<hex>`.

use crate::challenge::Scheme;
use crate::error::DecodeError;
use crate::macaroon::{MAX_MACAROON_LEN, Macaroon};
use crate::types::Preimage;

/// The largest `Authorization` (or `Macaroon`) value parsed, in bytes.
pub const MAX_CREDENTIAL_LEN: usize = 2 * MAX_MACAROON_LEN + 128;

/// How a credential was presented.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CredentialForm {
    /// `Authorization: L402 …` or `LSAT …`.
    Authorization(Scheme),
    /// Hex macaroon with a `preimage=` caveat in `Macaroon` / `Grpc-Metadata-Macaroon`.
    MacaroonHeader,
}

/// A parsed (not yet verified) credential. `Debug` shows no secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// How it was presented.
    pub form: CredentialForm,
    /// The macaroon.
    pub macaroon: Macaroon,
    /// The preimage (proof of payment).
    pub preimage: Preimage,
}

/// The comma-separated pieces of one header value. The usual value has no comma: that is found by a vectorized
/// search, instead of splitting the whole credential byte by byte.
fn pieces(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let split = value.contains(&b',').then(|| value.split(|&b| b == b','));
    let whole = split.is_none().then_some(value);
    whole.into_iter().chain(split.into_iter().flatten())
}

impl Credential {
    /// A credential to send with `scheme`.
    pub fn new(scheme: Scheme, macaroon: Macaroon, preimage: Preimage) -> Self {
        Self { form: CredentialForm::Authorization(scheme), macaroon, preimage }
    }

    /// The `Authorization` value: `<scheme> <base64 macaroon>:<hex preimage>`. A secret: never log it.
    pub fn header_value(&self) -> String {
        let scheme = match self.form {
            CredentialForm::Authorization(s) => s,
            CredentialForm::MacaroonHeader => Scheme::L402,
        };
        format!("{scheme} {}:{}", self.macaroon.to_base64(), self.preimage.to_hex())
    }

    /// Parses one `Authorization` value.
    pub fn parse(value: &[u8]) -> Result<Self, DecodeError> {
        if value.len() > MAX_CREDENTIAL_LEN {
            return Err(DecodeError::TooLong { what: "Authorization", max: MAX_CREDENTIAL_LEN });
        }
        let text = std::str::from_utf8(value).map_err(|_| DecodeError::Credential { reason: "not UTF-8" })?;
        let text = text.trim_matches(|c| c == ' ' || c == '\t');
        if Scheme::from_name(text).is_some() {
            return Err(DecodeError::Credential { reason: "empty credential" });
        }
        let (scheme, rest) = text.split_once([' ', '\t']).ok_or(DecodeError::NoCredential)?;
        let scheme = Scheme::from_name(scheme).ok_or(DecodeError::NoCredential)?;
        let rest = rest.trim_start_matches([' ', '\t']);
        let (mac, preimage) =
            rest.rsplit_once(':').ok_or(DecodeError::Credential { reason: "expected <macaroon>:<preimage>" })?;
        let preimage = Preimage::from_hex(preimage)?;
        if mac.is_empty() {
            return Err(DecodeError::Credential { reason: "empty macaroon" });
        }
        let macaroon = Macaroon::from_base64(mac)?;
        Ok(Self { form: CredentialForm::Authorization(scheme), macaroon, preimage })
    }

    /// Whether one `Authorization` value holds anything [`Credential::from_authorization`] reads as an L402
    /// or LSAT credential, well formed or not: a comma-separated piece whose first word (after blanks) is
    /// `L402` or `LSAT`, any case. Whatever the paywall would accept as a credential makes this true; a proxy
    /// drops such values before forwarding (the upstream must never see a credential).
    pub fn names_l402_scheme(value: &[u8]) -> bool {
        let names = |piece: &[u8]| {
            let start = piece.iter().position(|&b| b != b' ' && b != b'\t').unwrap_or(piece.len());
            let word = &piece[start..];
            let end = word.iter().position(|&b| b == b' ' || b == b'\t').unwrap_or(word.len());
            std::str::from_utf8(&word[..end]).ok().and_then(Scheme::from_name).is_some()
        };
        pieces(value).any(names)
    }

    /// Picks the credential from every `Authorization` value of a request (each may hold comma-joined
    /// values): the first well-formed L402 one, else the first well-formed LSAT one. If none is well formed,
    /// the error is that of the first L402/LSAT value, or [`DecodeError::NoCredential`].
    pub fn from_authorization<'a, I>(values: I) -> Result<Self, DecodeError>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        let mut lsat = None;
        let mut first_error = None;
        for value in values {
            for piece in pieces(value) {
                match Self::parse(piece) {
                    Ok(c) if c.form == CredentialForm::Authorization(Scheme::L402) => return Ok(c),
                    Ok(c) => {
                        lsat.get_or_insert(c);
                    }
                    Err(DecodeError::NoCredential) => {}
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
        }
        lsat.ok_or(first_error.unwrap_or(DecodeError::NoCredential))
    }

    /// Parses the hex macaroon of a `Macaroon` / `Grpc-Metadata-Macaroon` header; the preimage is taken from
    /// its `preimage=` caveat (exactly one is required).
    pub fn from_macaroon_header(value: &[u8]) -> Result<Self, DecodeError> {
        if value.len() > MAX_CREDENTIAL_LEN {
            return Err(DecodeError::TooLong { what: "Macaroon", max: MAX_CREDENTIAL_LEN });
        }
        let text = std::str::from_utf8(value).map_err(|_| DecodeError::Hex { what: "macaroon" })?;
        let macaroon = Macaroon::from_hex(text)?;
        let mut preimage = None;
        for caveat in macaroon.caveats() {
            if let Some(hex) = caveat.strip_prefix(b"preimage=") {
                if preimage.is_some() {
                    return Err(DecodeError::Credential { reason: "more than one preimage caveat" });
                }
                let hex = std::str::from_utf8(hex).map_err(|_| DecodeError::NotLowercaseHex { what: "preimage" })?;
                preimage = Some(Preimage::from_hex(hex)?);
            }
        }
        let preimage = preimage.ok_or(DecodeError::Credential { reason: "macaroon has no preimage caveat" })?;
        Ok(Self { form: CredentialForm::MacaroonHeader, macaroon, preimage })
    }

    /// The `Macaroon` header form of this credential: the macaroon with a `preimage=` caveat added, as hex.
    pub fn macaroon_header_value(&self) -> String {
        self.macaroon.with_caveat(format!("preimage={}", self.preimage.to_hex())).to_hex()
    }
}

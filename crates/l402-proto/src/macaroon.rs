//! Macaroons in the libmacaroons V2 binary format, minted and verified byte-for-byte as go-macaroon (and so
//! Aperture) does.
//!
//! The codec is written here rather than taken from a macaroon crate because verification is the server's hot
//! path: a [`Macaroon`] is one validated byte buffer with offsets into it (one allocation), and a
//! [`MacaroonKey`] holds the keyed HMAC state derived from a root key, so a cached key skips both the
//! libmacaroons key derivation and HMAC key setup. The `libmacaroon` crate is used in this crate's tests as an
//! independent check that the bytes are identical.
//!
//! Layout: `0x02 | [0x01 varint "location"] | 0x02 varint id | 0x00 | (0x02 varint caveat 0x00)* | 0x00 | 0x06
//! 0x20 signature`. Signature: `k = HMAC(key = "macaroons-key-generator", root_key)`, `sig = HMAC(k, id)`, then
//! `sig = HMAC(sig, caveat)` for each caveat.
//!
//! Only what L402 uses is accepted: first-party caveats without a location. Neither the location nor a caveat's
//! location is covered by the signature, so accepting them would let a flipped byte pass verification.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::error::{DecodeError, MacaroonFormat};
use crate::identifier::{Identifier, identifier_hash};
use crate::types::RootKey;

type HmacSha256 = Hmac<Sha256>;

/// The location every L402 macaroon carries (so every Aperture token's base64 starts `AgEEbHNhdAJCAA`).
pub const L402_LOCATION: &str = "lsat";

/// The most caveats a macaroon may carry; more is refused as malformed (a bound on verification work).
pub const MAX_CAVEATS: usize = 64;

/// The largest encoded macaroon accepted (bytes); a bound on work and memory per request.
pub const MAX_MACAROON_LEN: usize = 8 * 1024;

const FIELD_EOS: u8 = 0;
const FIELD_LOCATION: u8 = 1;
const FIELD_IDENTIFIER: u8 = 2;
const FIELD_VID: u8 = 4;
const FIELD_SIGNATURE: u8 = 6;
const KEY_GENERATOR: &[u8] = b"macaroons-key-generator";

/// The keyed HMAC state a macaroon's chain starts from, derived from a root key as libmacaroons does.
///
/// Deriving costs an HMAC; a server caches one of these per root key and clones its state for each
/// verification.
#[derive(Clone)]
pub struct MacaroonKey {
    mac: HmacSha256,
}

impl MacaroonKey {
    /// Derives the key: `HMAC-SHA256(key = "macaroons-key-generator", msg = root_key)`.
    pub fn derive(root_key: &RootKey) -> Self {
        Self::derive_from_bytes(root_key.as_bytes())
    }

    /// Derives the key from root key bytes of any length (libmacaroons' `generate`).
    pub fn derive_from_bytes(root_key: &[u8]) -> Self {
        let derived = hmac32(KEY_GENERATOR, root_key);
        Self { mac: keyed(&derived) }
    }

    /// The first signature of the chain: `HMAC(k, identifier)`.
    fn sign_identifier(&self, identifier: &[u8]) -> [u8; 32] {
        let mut mac = self.mac.clone();
        mac.update(identifier);
        mac.finalize().into_bytes().into()
    }
}

impl fmt::Debug for MacaroonKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MacaroonKey(<redacted>)")
    }
}

fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length; this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

fn hmac32(key: &[u8], msg: &[u8]) -> [u8; 32] {
    let mut mac = keyed(key);
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// One link of the chain: the next signature over a caveat.
pub(crate) fn chain(sig: &[u8; 32], caveat: &[u8]) -> [u8; 32] {
    hmac32(sig, caveat)
}

/// A macaroon: a validated V2 encoding with offsets to its parts.
///
/// Cloning copies the buffer. `Debug` shows the identifier and caveats but never the signature (a macaroon
/// with its signature is half a credential).
#[derive(Clone, PartialEq, Eq)]
pub struct Macaroon {
    raw: Vec<u8>,
    location: (u32, u32),
    identifier: (u32, u32),
    caveats: (u32, u32),
    n_caveats: u32,
    signature: [u8; 32],
}

impl Macaroon {
    /// Mints a macaroon for an L402 identifier with location `lsat` and the given first-party caveats.
    pub fn mint<C: AsRef<[u8]>>(root_key: &RootKey, identifier: &Identifier, caveats: &[C]) -> Self {
        Self::mint_raw(&MacaroonKey::derive(root_key), L402_LOCATION.as_bytes(), &identifier.to_bytes(), caveats)
    }

    /// Mints a macaroon over any identifier and location (the libmacaroons test vectors use this).
    pub fn mint_raw<C: AsRef<[u8]>>(key: &MacaroonKey, location: &[u8], identifier: &[u8], caveats: &[C]) -> Self {
        let mut sig = key.sign_identifier(identifier);
        for c in caveats {
            sig = chain(&sig, c.as_ref());
        }
        let mut raw = Vec::with_capacity(
            8 + location.len() + identifier.len() + caveats.iter().map(|c| c.as_ref().len() + 4).sum::<usize>() + 40,
        );
        raw.push(2);
        if !location.is_empty() {
            push_field(&mut raw, FIELD_LOCATION, location);
        }
        push_field(&mut raw, FIELD_IDENTIFIER, identifier);
        raw.push(FIELD_EOS);
        for c in caveats {
            push_field(&mut raw, FIELD_IDENTIFIER, c.as_ref());
            raw.push(FIELD_EOS);
        }
        raw.push(FIELD_EOS);
        push_field(&mut raw, FIELD_SIGNATURE, &sig);
        // The encoding was just written by the rules it is parsed with.
        Self::from_bytes(&raw).unwrap_or_else(|e| unreachable!("minted macaroon does not parse: {e}"))
    }

    /// Appends a first-party caveat (attenuation): anyone holding the macaroon can do this without the root
    /// key, and verification makes sure it can only narrow access.
    pub fn with_caveat(&self, caveat: impl AsRef<[u8]>) -> Self {
        let caveat = caveat.as_ref();
        let sig = chain(&self.signature, caveat);
        let sig_field = self.raw.len() - 34;
        let mut raw = Vec::with_capacity(self.raw.len() + caveat.len() + 8);
        // Everything up to (not including) the EOS that ends the caveats.
        raw.extend_from_slice(&self.raw[..sig_field - 1]);
        push_field(&mut raw, FIELD_IDENTIFIER, caveat);
        raw.push(FIELD_EOS);
        raw.push(FIELD_EOS);
        push_field(&mut raw, FIELD_SIGNATURE, &sig);
        Self::from_bytes(&raw).unwrap_or_else(|e| unreachable!("attenuated macaroon does not parse: {e}"))
    }

    /// Parses the V2 binary encoding, strictly (see the module doc).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::parse(bytes.to_vec())
    }

    fn parse(raw: Vec<u8>) -> Result<Self, DecodeError> {
        let mut r = Reader { buf: &raw, pos: 0 };
        match r.byte()? {
            2 => {}
            v => return Err(MacaroonFormat::Version(v).into()),
        }
        let mut field = r.byte()?;
        let mut location = (1, 1);
        if field == FIELD_LOCATION {
            location = r.data()?;
            field = r.byte()?;
        }
        if field != FIELD_IDENTIFIER {
            return Err(MacaroonFormat::Field { found: field, expected: FIELD_IDENTIFIER }.into());
        }
        let identifier = r.data()?;
        r.expect(FIELD_EOS)?;
        let caveats_start = r.pos;
        let mut n_caveats = 0u32;
        loop {
            match r.byte()? {
                FIELD_EOS => break,
                FIELD_IDENTIFIER => {
                    r.data()?;
                    match r.byte()? {
                        FIELD_EOS => {}
                        FIELD_LOCATION | FIELD_VID => return Err(MacaroonFormat::ThirdParty.into()),
                        found => return Err(MacaroonFormat::Field { found, expected: FIELD_EOS }.into()),
                    }
                    n_caveats += 1;
                    if n_caveats as usize > MAX_CAVEATS {
                        return Err(MacaroonFormat::TooManyCaveats.into());
                    }
                }
                FIELD_LOCATION | FIELD_VID => return Err(MacaroonFormat::ThirdParty.into()),
                found => return Err(MacaroonFormat::Field { found, expected: FIELD_IDENTIFIER }.into()),
            }
        }
        let caveats_end = (r.pos - 1) as u32;
        r.expect(FIELD_SIGNATURE)?;
        let (s, e) = r.data()?;
        if e - s != 32 {
            return Err(MacaroonFormat::SignatureLength.into());
        }
        if r.pos != raw.len() {
            return Err(MacaroonFormat::Trailing.into());
        }
        let mut signature = [0u8; 32];
        signature.copy_from_slice(&raw[s as usize..e as usize]);
        Ok(Self { raw, location, identifier, caveats: (caveats_start as u32, caveats_end), n_caveats, signature })
    }

    /// Decodes base64 (standard or URL-safe alphabet, padded or not) and parses.
    pub fn from_base64(s: &str) -> Result<Self, DecodeError> {
        let s = s.trim();
        if s.len() > MAX_MACAROON_LEN * 4 / 3 + 4 {
            return Err(DecodeError::Base64 { what: "macaroon" });
        }
        Self::parse(decode_base64_any(s.as_bytes()).ok_or(DecodeError::Base64 { what: "macaroon" })?)
    }

    /// Decodes hex (the `Macaroon` / `Grpc-Metadata-Macaroon` header form) and parses.
    pub fn from_hex(s: &str) -> Result<Self, DecodeError> {
        let s = s.trim();
        if s.len() > MAX_MACAROON_LEN * 2 {
            return Err(DecodeError::Hex { what: "macaroon" });
        }
        Self::parse(hex::decode(s).map_err(|_| DecodeError::Hex { what: "macaroon" })?)
    }

    /// The V2 binary encoding.
    pub fn as_bytes(&self) -> &[u8] {
        &self.raw
    }

    /// Standard base64 with padding: the form Aperture sends and accepts.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(&self.raw)
    }

    /// Hex of the binary encoding (the `Macaroon` header form).
    pub fn to_hex(&self) -> String {
        hex::encode(&self.raw)
    }

    /// The location (not covered by the signature; `lsat` for L402 tokens).
    pub fn location(&self) -> &[u8] {
        &self.raw[self.location.0 as usize..self.location.1 as usize]
    }

    /// The raw identifier bytes.
    pub fn identifier(&self) -> &[u8] {
        &self.raw[self.identifier.0 as usize..self.identifier.1 as usize]
    }

    /// Decodes the identifier as an L402 token identifier.
    pub fn l402_identifier(&self) -> Result<Identifier, DecodeError> {
        Identifier::decode(self.identifier())
    }

    /// sha256 of the identifier: the key a server stores the root key under.
    pub fn identifier_hash(&self) -> [u8; 32] {
        identifier_hash(self.identifier())
    }

    /// The number of caveats.
    pub fn caveat_count(&self) -> usize {
        self.n_caveats as usize
    }

    /// The caveats, in order, as raw bytes.
    pub fn caveats(&self) -> CaveatIter<'_> {
        CaveatIter { r: Reader { buf: &self.raw[..self.caveats.1 as usize], pos: self.caveats.0 as usize } }
    }

    /// The signature. Keep it to yourself: with the preimage it is the credential.
    pub fn signature(&self) -> &[u8; 32] {
        &self.signature
    }

    /// Recomputes the HMAC chain under `key` and compares it with the signature in constant time.
    pub fn signature_valid(&self, key: &MacaroonKey) -> bool {
        let mut sig = key.sign_identifier(self.identifier());
        for c in self.caveats() {
            sig = chain(&sig, c);
        }
        constant_time_eq(&sig, &self.signature)
    }
}

impl fmt::Debug for Macaroon {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Macaroon");
        d.field("location", &String::from_utf8_lossy(self.location()));
        match self.l402_identifier() {
            Ok(id) => d.field("token_id", &id.token_id).field("payment_hash", &id.payment_hash),
            Err(_) => d.field("identifier", &hex::encode(self.identifier())),
        };
        let caveats: Vec<_> = self.caveats().map(String::from_utf8_lossy).collect();
        d.field("caveats", &caveats).finish_non_exhaustive()
    }
}

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    // black_box keeps the compiler from turning the fold into an early-exit comparison.
    std::hint::black_box(diff) == 0
}

/// Decodes base64 in the standard or URL-safe alphabet, with or without padding.
pub(crate) fn decode_base64_any(s: &[u8]) -> Option<Vec<u8>> {
    let url = s.iter().any(|&c| c == b'-' || c == b'_');
    let padded = s.len() % 4 == 0;
    let engine = match (url, padded) {
        (false, true) => &STANDARD,
        (false, false) => &base64::engine::general_purpose::STANDARD_NO_PAD,
        (true, true) => &URL_SAFE,
        (true, false) => &URL_SAFE_NO_PAD,
    };
    engine.decode(s).ok()
}

/// Iterator over a macaroon's caveats (raw bytes, in order).
#[derive(Clone, Debug)]
pub struct CaveatIter<'a> {
    r: Reader<'a>,
}

impl<'a> Iterator for CaveatIter<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        // The region was validated at parse time: FIELD_IDENTIFIER varint data FIELD_EOS, repeated.
        if self.r.pos >= self.r.buf.len() {
            return None;
        }
        self.r.pos += 1;
        let (s, e) = self.r.data().ok()?;
        self.r.pos += 1;
        Some(&self.r.buf[s as usize..e as usize])
    }
}

fn push_field(out: &mut Vec<u8>, kind: u8, data: &[u8]) {
    out.push(kind);
    let mut n = data.len() as u64;
    loop {
        let b = (n & 0x7f) as u8;
        n >>= 7;
        if n == 0 {
            out.push(b);
            break;
        }
        out.push(b | 0x80);
    }
    out.extend_from_slice(data);
}

#[derive(Clone, Debug)]
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn byte(&mut self) -> Result<u8, MacaroonFormat> {
        let b = *self.buf.get(self.pos).ok_or(MacaroonFormat::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn expect(&mut self, kind: u8) -> Result<(), MacaroonFormat> {
        match self.byte()? {
            k if k == kind => Ok(()),
            found => Err(MacaroonFormat::Field { found, expected: kind }),
        }
    }

    /// A varint length then that many bytes; returns their offsets.
    fn data(&mut self) -> Result<(u32, u32), MacaroonFormat> {
        let mut len: u64 = 0;
        let mut shift = 0;
        loop {
            let b = self.byte()?;
            if shift >= 28 {
                return Err(MacaroonFormat::Length);
            }
            len |= u64::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                // A non-minimal varint (a trailing zero group) would give one macaroon two encodings.
                if b == 0 && shift > 7 {
                    return Err(MacaroonFormat::Length);
                }
                break;
            }
        }
        let start = self.pos;
        let end = start.checked_add(len as usize).ok_or(MacaroonFormat::Length)?;
        if end > self.buf.len() || end > MAX_MACAROON_LEN {
            return Err(MacaroonFormat::Truncated);
        }
        self.pos = end;
        Ok((start as u32, end as u32))
    }
}

//! `Authorization: Payment <base64url(JSON)>`: the challenge echoed, who pays (optional), and the proof.

use serde_json::{Map, Value, json};

use super::MppError;
use super::b64::{b64url_decode, b64url_encode};
use super::challenge::{PaymentChallenge, SCHEME};
use crate::Preimage;

/// The largest credential token read (base64url of 64 KiB, as Aperture).
pub const MAX_CREDENTIAL_TOKEN: usize = (64 * 1024usize).div_ceil(3) * 4;

/// A `Payment` credential.
#[derive(Clone, Debug, PartialEq)]
pub struct PaymentCredential {
    /// The challenge it answers, as the server sent it.
    pub challenge: PaymentChallenge,
    /// Who pays (a DID, say), if given.
    pub source: Option<Value>,
    /// The method's proof: for a Lightning charge `{"preimage": "<hex>"}`; for a session an action
    /// ([`super::SessionAction`]).
    pub payload: Value,
}

impl PaymentCredential {
    /// The credential for a paid Lightning charge.
    pub fn charge(challenge: PaymentChallenge, preimage: &Preimage) -> Self {
        Self { challenge, source: None, payload: json!({ "preimage": hex::encode(preimage.0) }) }
    }

    /// The JSON, keys in Aperture's order: challenge {id, realm, method, intent, request, expires?,
    /// description?, opaque?, digest?}, source?, payload.
    pub fn to_json(&self) -> Value {
        let c = &self.challenge;
        let mut ch = Map::new();
        for (k, v) in
            [("id", &c.id), ("realm", &c.realm), ("method", &c.method), ("intent", &c.intent), ("request", &c.request)]
        {
            ch.insert(k.into(), Value::String(v.clone()));
        }
        for (k, v) in
            [("expires", &c.expires), ("description", &c.description), ("opaque", &c.opaque), ("digest", &c.digest)]
        {
            if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                ch.insert(k.into(), Value::String(v.clone()));
            }
        }
        let mut m = Map::new();
        m.insert("challenge".into(), Value::Object(ch));
        if let Some(s) = &self.source {
            m.insert("source".into(), s.clone());
        }
        m.insert("payload".into(), self.payload.clone());
        Value::Object(m)
    }

    /// The `Authorization` value.
    pub fn header_value(&self) -> String {
        format!("{SCHEME} {}", b64url_encode(self.to_json().to_string().as_bytes()))
    }

    /// Reads one `Authorization` value in the `Payment` scheme (the name case-insensitive). `Ok(None)` when it
    /// is in another scheme.
    pub fn parse(value: &[u8]) -> Result<Option<Self>, MppError> {
        let Ok(text) = std::str::from_utf8(value) else { return Ok(None) };
        let (scheme, token) = text.split_once(' ').unwrap_or((text, ""));
        if !scheme.eq_ignore_ascii_case(SCHEME) {
            return Ok(None);
        }
        let token = token.trim_matches(' ');
        if token.is_empty() {
            return Err(MppError::Empty);
        }
        if token.len() > MAX_CREDENTIAL_TOKEN {
            return Err(MppError::TooLarge);
        }
        let bytes = b64url_decode(token)?;
        let Ok(Value::Object(mut m)) = serde_json::from_slice::<Value>(&bytes) else { return Err(MppError::Json) };
        let Some(Value::Object(ch)) = m.remove("challenge") else { return Err(MppError::Missing("challenge")) };
        let text = |k: &'static str| match ch.get(k) {
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(_)) => Ok(None),
            Some(_) => Err(MppError::Missing(k)),
        };
        let need = |k: &'static str| text(k)?.ok_or(MppError::Missing(k));
        let challenge = PaymentChallenge {
            id: need("id")?,
            realm: need("realm")?,
            method: need("method")?,
            intent: need("intent")?,
            request: need("request")?,
            expires: text("expires")?,
            digest: text("digest")?,
            description: text("description")?,
            opaque: text("opaque")?,
        };
        let payload = match m.remove("payload") {
            None | Some(Value::Null) => return Err(MppError::Missing("payload")),
            Some(p) => p,
        };
        Ok(Some(Self { challenge, source: m.remove("source").filter(|s| !s.is_null()), payload }))
    }

    /// The first `Payment` credential among `Authorization` values: `Ok(None)` if none is in that scheme, an
    /// error if the first that is does not read.
    pub fn from_authorization<'a, I: IntoIterator<Item = &'a [u8]>>(values: I) -> Result<Option<Self>, MppError> {
        for v in values {
            if let Some(c) = Self::parse(v)? {
                return Ok(Some(c));
            }
        }
        Ok(None)
    }

    /// The preimage of a Lightning charge payload (64 hex digits, either case).
    pub fn charge_preimage(&self) -> Result<Preimage, MppError> {
        match self.payload.get("preimage") {
            Some(Value::String(s)) => {
                super::request::hash32(s, "preimage").map(Preimage).map_err(|_| MppError::Preimage)
            }
            _ => Err(MppError::Preimage),
        }
    }
}

//! `Payment-Receipt`: what a 2xx paid by a charge carries.

use serde_json::{Map, Value};

use super::MppError;
use super::b64::{b64url_decode, b64url_encode};

/// The header a paid response carries.
pub const PAYMENT_RECEIPT_HEADER: &str = "Payment-Receipt";

/// A charge's receipt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Receipt {
    /// `success`.
    pub status: String,
    /// `lightning`.
    pub method: String,
    /// When the server accepted the payment (RFC 3339).
    pub timestamp: String,
    /// The payment's reference (a Lightning charge's payment hash, hex).
    pub reference: String,
    /// The id of the challenge paid (empty: not given; omitted on the wire).
    pub challenge_id: String,
}

impl Receipt {
    /// A successful Lightning receipt.
    pub fn success(timestamp: &str, reference: &str, challenge_id: &str) -> Self {
        Self {
            status: "success".into(),
            method: super::METHOD_LIGHTNING.into(),
            timestamp: timestamp.into(),
            reference: reference.into(),
            challenge_id: challenge_id.into(),
        }
    }

    /// The JSON, keys in Aperture's order (status, method, timestamp, reference, challengeId).
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (k, v) in [
            ("status", &self.status),
            ("method", &self.method),
            ("timestamp", &self.timestamp),
            ("reference", &self.reference),
        ] {
            m.insert(k.into(), Value::String(v.clone()));
        }
        if !self.challenge_id.is_empty() {
            m.insert("challengeId".into(), Value::String(self.challenge_id.clone()));
        }
        Value::Object(m)
    }

    /// The header value: base64url of the JSON.
    pub fn encode(&self) -> String {
        b64url_encode(self.to_json().to_string().as_bytes())
    }

    /// Reads a header value (strict base64url; `status`, `method`, `timestamp`, `reference` required).
    pub fn decode(value: &str) -> Result<Self, MppError> {
        let bytes = b64url_decode(value.trim())?;
        let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(&bytes) else { return Err(MppError::Json) };
        let get = |k: &str| match m.get(k) {
            Some(Value::String(s)) => Ok(s.clone()),
            None if k == "challengeId" => Ok(String::new()),
            _ => Err(MppError::Receipt(format!("no {k}"))),
        };
        Ok(Self {
            status: get("status")?,
            method: get("method")?,
            timestamp: get("timestamp")?,
            reference: get("reference")?,
            challenge_id: get("challengeId")?,
        })
    }
}

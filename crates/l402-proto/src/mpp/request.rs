//! What a Lightning challenge asks for: the `request` parameter, decoded.

use serde_json::{Map, Value, json};

use super::MppError;
use super::b64::{b64url_decode, b64url_encode};
use super::jcs::jcs;

/// The only currency of the Lightning method.
pub const CURRENCY_SAT: &str = "sat";

/// A Lightning charge's `methodDetails`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MethodDetails {
    /// The BOLT 11 invoice to pay.
    pub invoice: String,
    /// The network (`mainnet`, `testnet`, `signet`, `regtest`).
    pub network: String,
    /// The invoice's payment hash.
    pub payment_hash: [u8; 32],
}

/// The request of a Lightning `charge` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChargeRequest {
    /// The amount, satoshis (a decimal string on the wire).
    pub amount: u64,
    /// The currency (`sat`).
    pub currency: String,
    /// The invoice, its network and payment hash.
    pub method_details: MethodDetails,
    /// What is being paid for (covered by the id, unlike the challenge's own `description`).
    pub description: Option<String>,
    /// Who is paid.
    pub recipient: Option<String>,
    /// The merchant's reference.
    pub external_id: Option<String>,
}

fn text<'a>(m: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, MppError> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(MppError::Request(format!("{key} is not a string"))),
    }
}

fn required<'a>(m: &'a Map<String, Value>, key: &str) -> Result<&'a str, MppError> {
    text(m, key)?.ok_or_else(|| MppError::Request(format!("no {key}")))
}

/// A decimal amount: digits only, no sign, at most u64.
pub(crate) fn decimal(s: &str, what: &str) -> Result<u64, MppError> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(MppError::Request(format!("{what} is not a decimal amount")));
    }
    s.parse().map_err(|_| MppError::Request(format!("{what} is too large")))
}

/// 64 hex digits (either case, as Aperture reads them).
pub(crate) fn hash32(s: &str, what: &str) -> Result<[u8; 32], MppError> {
    let mut out = [0u8; 32];
    if s.len() != 64 || hex::decode_to_slice(s, &mut out).is_err() {
        return Err(MppError::Request(format!("{what} is not 64 hex digits")));
    }
    Ok(out)
}

/// Decodes a `request` parameter into its JSON object.
pub(crate) fn decode_object(encoded: &str) -> Result<Map<String, Value>, MppError> {
    let bytes = b64url_decode(encoded)?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(MppError::Request("not a JSON object".into())),
        Err(_) => Err(MppError::Json),
    }
}

impl ChargeRequest {
    /// A charge of `amount_sat` paid by `invoice` (on `network`, for `payment_hash`).
    pub fn lightning(amount_sat: u64, invoice: &str, network: &str, payment_hash: [u8; 32]) -> Self {
        Self {
            amount: amount_sat,
            currency: CURRENCY_SAT.to_owned(),
            method_details: MethodDetails { invoice: invoice.to_owned(), network: network.to_owned(), payment_hash },
            description: None,
            recipient: None,
            external_id: None,
        }
    }

    /// With a description.
    pub fn description(mut self, description: &str) -> Self {
        self.description = Some(description.to_owned());
        self
    }

    /// The request JSON.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "amount": self.amount.to_string(),
            "currency": self.currency,
            "methodDetails": {
                "invoice": self.method_details.invoice,
                "network": self.method_details.network,
                "paymentHash": hex::encode(self.method_details.payment_hash),
            },
        });
        if let Value::Object(m) = &mut v {
            for (k, o) in
                [("description", &self.description), ("recipient", &self.recipient), ("externalId", &self.external_id)]
            {
                if let Some(s) = o {
                    m.insert(k.to_owned(), Value::String(s.clone()));
                }
            }
        }
        v
    }

    /// The `request` parameter: base64url of the JCS form.
    pub fn encode(&self) -> String {
        b64url_encode(jcs(&self.to_json()).as_bytes())
    }

    /// Reads a `request` parameter: a JSON object with a decimal `amount`, `currency` `sat` and
    /// `methodDetails` with `invoice`, `network` and a 64-hex-digit `paymentHash`.
    pub fn decode(encoded: &str) -> Result<Self, MppError> {
        let m = decode_object(encoded)?;
        let currency = required(&m, "currency")?;
        if currency != CURRENCY_SAT {
            return Err(MppError::Request(format!("currency {currency:?} is not sat")));
        }
        let Some(Value::Object(d)) = m.get("methodDetails") else {
            return Err(MppError::Request("no methodDetails".into()));
        };
        Ok(Self {
            amount: decimal(required(&m, "amount")?, "amount")?,
            currency: currency.to_owned(),
            method_details: MethodDetails {
                invoice: required(d, "invoice")?.to_owned(),
                network: required(d, "network")?.to_owned(),
                payment_hash: hash32(required(d, "paymentHash")?, "paymentHash")?,
            },
            description: text(&m, "description")?.map(str::to_owned),
            recipient: text(&m, "recipient")?.map(str::to_owned),
            external_id: text(&m, "externalId")?.map(str::to_owned),
        })
    }
}

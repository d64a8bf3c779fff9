//! The `session` intent's wire forms (Aperture's): the session request a challenge carries, and the actions a
//! credential's payload takes. Encoding only; what a server does with them is elsewhere.

use serde_json::{Map, Value};

use super::MppError;
use super::request::{decimal, decode_object, hash32};

/// The request of a Lightning `session` challenge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRequest {
    /// The price per request (unit), satoshis.
    pub amount: u64,
    /// `sat`.
    pub currency: String,
    /// What is sold.
    pub description: Option<String>,
    /// The unit (`token`, `request`).
    pub unit_type: Option<String>,
    /// The invoice that opens the session.
    pub deposit_invoice: Option<String>,
    /// The deposit's payment hash (the session id once paid).
    pub payment_hash: [u8; 32],
    /// The deposit, satoshis.
    pub deposit_amount: Option<u64>,
    /// Seconds of inactivity before the server closes the session.
    pub idle_timeout: Option<u64>,
}

impl SessionRequest {
    /// Reads a session `request` parameter.
    pub fn decode(encoded: &str) -> Result<Self, MppError> {
        let m = decode_object(encoded)?;
        let s = |k: &str| match m.get(k) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(MppError::Request(format!("{k} is not a string"))),
        };
        let need = |k: &str| s(k)?.ok_or_else(|| MppError::Request(format!("no {k}")));
        Ok(Self {
            amount: decimal(need("amount")?, "amount")?,
            currency: need("currency")?.to_owned(),
            description: s("description")?.map(str::to_owned),
            unit_type: s("unitType")?.map(str::to_owned),
            deposit_invoice: s("depositInvoice")?.map(str::to_owned),
            payment_hash: hash32(need("paymentHash")?, "paymentHash")?,
            deposit_amount: s("depositAmount")?.map(|v| decimal(v, "depositAmount")).transpose()?,
            idle_timeout: s("idleTimeout")?.map(|v| decimal(v, "idleTimeout")).transpose()?,
        })
    }
}

/// A session credential's payload.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionAction {
    /// Opens the session with the deposit's preimage; the unspent balance is refunded to `return_invoice`.
    Open {
        /// The deposit's preimage (hex).
        preimage: String,
        /// An amountless invoice for the refund.
        return_invoice: String,
    },
    /// A request drawn from the balance.
    Bearer {
        /// The session (the deposit's payment hash, hex).
        session_id: String,
        /// The deposit's preimage (hex): the bearer secret.
        preimage: String,
    },
    /// Credits a top-up payment.
    TopUp {
        /// The session.
        session_id: String,
        /// The top-up invoice's preimage (hex).
        top_up_preimage: String,
    },
    /// Closes the session (and refunds).
    Close {
        /// The session.
        session_id: String,
        /// The deposit's preimage (hex).
        preimage: String,
    },
}

impl SessionAction {
    /// The payload JSON (`action` first, Aperture's field names).
    pub fn to_json(&self) -> Value {
        let fields: (&str, [(&str, &String); 2]) = match self {
            Self::Open { preimage, return_invoice } => {
                ("open", [("preimage", preimage), ("returnInvoice", return_invoice)])
            }
            Self::Bearer { session_id, preimage } => ("bearer", [("sessionId", session_id), ("preimage", preimage)]),
            Self::TopUp { session_id, top_up_preimage } => {
                ("topUp", [("sessionId", session_id), ("topUpPreimage", top_up_preimage)])
            }
            Self::Close { session_id, preimage } => ("close", [("sessionId", session_id), ("preimage", preimage)]),
        };
        let mut m = Map::new();
        m.insert("action".into(), Value::String(fields.0.into()));
        for (k, v) in fields.1 {
            m.insert(k.into(), Value::String(v.clone()));
        }
        Value::Object(m)
    }

    /// Reads a payload.
    pub fn from_json(v: &Value) -> Result<Self, MppError> {
        let get = |k: &str| match v.get(k) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            _ => Err(MppError::Request(format!("session payload without {k}"))),
        };
        match v.get("action").and_then(Value::as_str) {
            Some("open") => Ok(Self::Open { preimage: get("preimage")?, return_invoice: get("returnInvoice")? }),
            Some("bearer") => Ok(Self::Bearer { session_id: get("sessionId")?, preimage: get("preimage")? }),
            Some("topUp") => Ok(Self::TopUp { session_id: get("sessionId")?, top_up_preimage: get("topUpPreimage")? }),
            Some("close") => Ok(Self::Close { session_id: get("sessionId")?, preimage: get("preimage")? }),
            _ => Err(MppError::Request("unknown session action".into())),
        }
    }
}

//! TEMPORARY stand-in for `crate::mpp_shim::mpp` and `crate::mpp_shim::rfc3339` (being written on main, same names),
//! removed when main is merged.
#![allow(dead_code, missing_docs, unreachable_pub)]

pub(crate) mod mpp {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::{Value, json};

    pub const PAYMENT_RECEIPT_HEADER: &str = "Payment-Receipt";

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct MppError(pub String);
    impl std::fmt::Display for MppError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct PaymentChallenge {
        pub id: String,
        pub realm: String,
        pub method: String,
        pub intent: String,
        pub request: String,
        pub expires: Option<String>,
        pub digest: Option<String>,
        pub description: Option<String>,
        pub opaque: Option<String>,
    }

    fn quote(s: &str) -> String {
        format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
    }

    /// (scheme, params) of each challenge in a value.
    fn challenges(s: &str) -> Vec<(String, Vec<(String, String)>)> {
        let b = s.as_bytes();
        let mut i = 0;
        let mut out: Vec<(String, Vec<(String, String)>)> = Vec::new();
        let tchar = |c: u8| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c);
        loop {
            while i < b.len() && matches!(b[i], b' ' | b'\t' | b',') {
                i += 1;
            }
            if i >= b.len() {
                return out;
            }
            let start = i;
            while i < b.len() && tchar(b[i]) {
                i += 1;
            }
            if start == i {
                return out;
            }
            let name = s[start..i].to_owned();
            let mut j = i;
            while j < b.len() && matches!(b[j], b' ' | b'\t') {
                j += 1;
            }
            if j < b.len() && b[j] == b'=' && !out.is_empty() {
                j += 1;
                while j < b.len() && matches!(b[j], b' ' | b'\t') {
                    j += 1;
                }
                let value = if j < b.len() && b[j] == b'"' {
                    j += 1;
                    let mut v = String::new();
                    while j < b.len() && b[j] != b'"' {
                        if b[j] == b'\\' && j + 1 < b.len() {
                            j += 1;
                        }
                        v.push(b[j] as char);
                        j += 1;
                    }
                    j += 1;
                    v
                } else {
                    let vs = j;
                    while j < b.len() && tchar(b[j]) {
                        j += 1;
                    }
                    s[vs..j].to_owned()
                };
                out.last_mut().expect("one").1.push((name, value));
                i = j;
            } else {
                out.push((name, Vec::new()));
            }
        }
    }

    impl PaymentChallenge {
        pub fn parse_all<'a, I: IntoIterator<Item = &'a [u8]>>(values: I) -> Vec<PaymentChallenge> {
            let mut found = Vec::new();
            for v in values {
                let Ok(text) = std::str::from_utf8(v) else { continue };
                for (scheme, params) in challenges(text) {
                    if !scheme.eq_ignore_ascii_case("Payment") {
                        continue;
                    }
                    let get = |n: &str| params.iter().find(|(k, _)| k.eq_ignore_ascii_case(n)).map(|(_, v)| v.clone());
                    let (Some(id), Some(realm), Some(method), Some(intent), Some(request)) =
                        (get("id"), get("realm"), get("method"), get("intent"), get("request"))
                    else {
                        continue;
                    };
                    found.push(PaymentChallenge {
                        id,
                        realm,
                        method,
                        intent,
                        request,
                        expires: get("expires"),
                        digest: get("digest"),
                        description: get("description"),
                        opaque: get("opaque"),
                    });
                }
            }
            found
        }

        pub fn header_value(&self) -> String {
            let mut s = format!(
                "Payment id={}, realm={}, method={}, intent={}, request={}",
                quote(&self.id),
                quote(&self.realm),
                quote(&self.method),
                quote(&self.intent),
                quote(&self.request)
            );
            for (n, v) in [
                ("expires", &self.expires),
                ("digest", &self.digest),
                ("description", &self.description),
                ("opaque", &self.opaque),
            ] {
                if let Some(v) = v {
                    s.push_str(&format!(", {n}={}", quote(v)));
                }
            }
            s
        }
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct MethodDetails {
        pub invoice: String,
        pub network: String,
        pub payment_hash: [u8; 32],
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ChargeRequest {
        pub amount: u64,
        pub currency: String,
        pub method_details: MethodDetails,
        pub description: Option<String>,
    }

    fn json_of(s: &str) -> Result<Value, MppError> {
        let bytes = URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).map_err(|e| MppError(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| MppError(e.to_string()))
    }

    impl ChargeRequest {
        pub fn decode(s: &str) -> Result<Self, MppError> {
            let v = json_of(s)?;
            let str_of = |v: &Value, k: &str| {
                v.get(k).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| MppError(format!("no {k}")))
            };
            let amount = str_of(&v, "amount")?.parse::<u64>().map_err(|_| MppError("amount".into()))?;
            let md = v.get("methodDetails").ok_or_else(|| MppError("no methodDetails".into()))?;
            let hash = hex::decode(str_of(md, "paymentHash")?).map_err(|_| MppError("paymentHash".into()))?;
            Ok(Self {
                amount,
                currency: str_of(&v, "currency")?,
                method_details: MethodDetails {
                    invoice: str_of(md, "invoice")?,
                    network: str_of(md, "network")?,
                    payment_hash: hash.try_into().map_err(|_| MppError("paymentHash".into()))?,
                },
                description: v.get("description").and_then(Value::as_str).map(str::to_owned),
            })
        }
    }

    pub struct PaymentCredential {
        challenge: PaymentChallenge,
        preimage: String,
    }

    impl PaymentCredential {
        pub fn charge(challenge: PaymentChallenge, preimage: &l402_proto::Preimage) -> Self {
            Self { challenge, preimage: preimage.to_hex() }
        }

        pub fn header_value(&self) -> String {
            let c = &self.challenge;
            let mut ch = serde_json::Map::new();
            for (k, v) in [
                ("id", Some(&c.id)),
                ("realm", Some(&c.realm)),
                ("method", Some(&c.method)),
                ("intent", Some(&c.intent)),
                ("request", Some(&c.request)),
                ("expires", c.expires.as_ref()),
                ("description", c.description.as_ref()),
                ("opaque", c.opaque.as_ref()),
                ("digest", c.digest.as_ref()),
            ] {
                if let Some(v) = v {
                    ch.insert(k.into(), json!(v));
                }
            }
            let v = json!({ "challenge": ch, "payload": { "preimage": self.preimage } });
            format!("Payment {}", URL_SAFE_NO_PAD.encode(v.to_string()))
        }
    }

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Receipt {
        pub status: String,
        pub method: String,
        pub timestamp: String,
        pub reference: String,
        pub challenge_id: String,
    }

    impl Receipt {
        pub fn decode(s: &str) -> Result<Self, MppError> {
            let v = json_of(s)?;
            let g = |k: &str| {
                v.get(k).and_then(Value::as_str).map(str::to_owned).ok_or_else(|| MppError(format!("no {k}")))
            };
            Ok(Self {
                status: g("status")?,
                method: g("method")?,
                timestamp: g("timestamp")?,
                reference: g("reference")?,
                challenge_id: g("challengeId")?,
            })
        }
    }
}

pub(crate) mod rfc3339 {
    pub fn parse(s: &str) -> Option<u64> {
        let b = s.as_bytes();
        if b.len() < 20 {
            return None;
        }
        let n = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
        let (y, mo, d, h, mi, sec) = (n(0..4)?, n(5..7)?, n(8..10)?, n(11..13)?, n(14..16)?, n(17..19)?);
        let mut rest = &s[19..];
        if let Some(r) = rest.strip_prefix('.') {
            rest = r.trim_start_matches(|c: char| c.is_ascii_digit());
        }
        let offset = if rest.eq_ignore_ascii_case("z") {
            0
        } else {
            let sign = if rest.starts_with('+') {
                1
            } else if rest.starts_with('-') {
                -1
            } else {
                return None;
            };
            let oh = rest.get(1..3)?.parse::<i64>().ok()?;
            let om = rest.get(4..6)?.parse::<i64>().ok()?;
            sign * (oh * 3600 + om * 60)
        };
        let (y2, m2) = if mo <= 2 { (y - 1, mo + 9) } else { (y, mo - 3) };
        let era = y2.div_euclid(400);
        let yoe = y2 - era * 400;
        let doy = (153 * m2 + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        u64::try_from(days * 86_400 + h * 3600 + mi * 60 + sec - offset).ok()
    }
}

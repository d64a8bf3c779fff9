//! The `Payment` challenge: its parameters, its id, and its `WWW-Authenticate` form.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::b64::b64url_encode;
use crate::auth_params::parse_challenges;

/// The scheme name.
pub const SCHEME: &str = "Payment";
/// The Lightning payment method.
pub const METHOD_LIGHTNING: &str = "lightning";
/// The one-payment-per-request intent.
pub const INTENT_CHARGE: &str = "charge";
/// The prepaid-session intent.
pub const INTENT_SESSION: &str = "session";

/// One `Payment` challenge (what a 402 offers; echoed whole in the credential). Values are as on the wire,
/// unquoted; absent optional parameters are `None`.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct PaymentChallenge {
    /// The id: an HMAC over the other parameters (except `description`) under the server's secret.
    pub id: String,
    /// The protection space (Aperture: its listen address unless configured).
    pub realm: String,
    /// The payment method (`lightning`).
    pub method: String,
    /// The intent (`charge`, `session`).
    pub intent: String,
    /// base64url of the JCS form of the method's request JSON ([`super::ChargeRequest`]).
    pub request: String,
    /// When the challenge expires (RFC 3339).
    pub expires: Option<String>,
    /// A digest of the request body it is bound to.
    pub digest: Option<String>,
    /// A human-readable description (not covered by the id).
    pub description: Option<String>,
    /// Server-defined correlation data (covered by the id).
    pub opaque: Option<String>,
}

type HmacSha256 = Hmac<Sha256>;

/// The challenge id for these parameters: base64url (no padding) of HMAC-SHA256 under `secret` over
/// `realm|method|intent|request|expires|digest|opaque`, absent ones empty (the `|` is not escaped: Aperture's
/// construction, pinned by its vectors).
#[allow(clippy::too_many_arguments)]
pub fn compute_id(
    secret: &[u8],
    realm: &str,
    method: &str,
    intent: &str,
    request: &str,
    expires: Option<&str>,
    digest: Option<&str>,
    opaque: Option<&str>,
) -> String {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!("any key length"));
    let slots = [realm, method, intent, request, expires.unwrap_or(""), digest.unwrap_or(""), opaque.unwrap_or("")];
    for (i, s) in slots.iter().enumerate() {
        if i > 0 {
            mac.update(b"|");
        }
        mac.update(s.as_bytes());
    }
    b64url_encode(&mac.finalize().into_bytes())
}

/// RFC 9110 quoted-string: `\` and `"` escaped, other controls but the tab dropped (they cannot be carried).
fn quote(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' | '"' => {
                out.push('\\');
                out.push(c);
            }
            '\t' => out.push(c),
            c if c.is_ascii_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
}

fn optional(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|v| !v.is_empty())
}

impl PaymentChallenge {
    /// A Lightning charge challenge for the encoded `request`, expiring at `expires` (RFC 3339), its id
    /// computed under `secret`.
    pub fn charge(secret: &[u8], realm: &str, request: &str, expires: &str) -> Self {
        let mut c = Self {
            realm: realm.to_owned(),
            method: METHOD_LIGHTNING.to_owned(),
            intent: INTENT_CHARGE.to_owned(),
            request: request.to_owned(),
            expires: Some(expires.to_owned()),
            ..Self::default()
        };
        c.id = c.expected_id(secret);
        c
    }

    /// The id these parameters have under `secret`.
    pub fn expected_id(&self, secret: &[u8]) -> String {
        compute_id(
            secret,
            &self.realm,
            &self.method,
            &self.intent,
            &self.request,
            self.expires.as_deref(),
            self.digest.as_deref(),
            self.opaque.as_deref(),
        )
    }

    /// Whether the id is the one these parameters have under `secret` (constant time in the id's bytes).
    pub fn verify_id(&self, secret: &[u8]) -> bool {
        let expected = self.expected_id(secret);
        let (a, b) = (expected.as_bytes(), self.id.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }

    /// The `WWW-Authenticate` value, as Aperture writes it: `Payment id=".."`, then realm, method, intent,
    /// request, and the optional expires, digest, description, opaque when present.
    pub fn header_value(&self) -> String {
        let mut out = String::with_capacity(64 + self.request.len());
        out.push_str(SCHEME);
        let params = [
            ("id", Some(self.id.as_str())),
            ("realm", Some(self.realm.as_str())),
            ("method", Some(self.method.as_str())),
            ("intent", Some(self.intent.as_str())),
            ("request", Some(self.request.as_str())),
            ("expires", optional(&self.expires)),
            ("digest", optional(&self.digest)),
            ("description", optional(&self.description)),
            ("opaque", optional(&self.opaque)),
        ];
        let mut first = true;
        for (name, value) in params {
            let Some(value) = value else { continue };
            out.push_str(if first { " " } else { ", " });
            first = false;
            out.push_str(name);
            out.push('=');
            quote(&mut out, value);
        }
        out
    }

    /// Every complete `Payment` challenge among `WWW-Authenticate` values, in order. Values may hold several
    /// challenges and other schemes' (skipped, their parameters never attributed to ours); a challenge missing
    /// `id`, `realm`, `method`, `intent` or `request` is skipped; a repeated parameter keeps its first
    /// occurrence; names are case-insensitive. A value that does not parse is skipped whole.
    pub fn parse_all<'a, I: IntoIterator<Item = &'a [u8]>>(values: I) -> Vec<PaymentChallenge> {
        let mut out = Vec::new();
        for value in values {
            let Ok(text) = std::str::from_utf8(value) else { continue };
            let Ok(challenges) = parse_challenges(text) else { continue };
            for raw in challenges.iter().filter(|c| c.scheme.eq_ignore_ascii_case(SCHEME)) {
                let get = |n: &str| raw.param(n).map(str::to_owned);
                let (Some(id), Some(realm), Some(method), Some(intent), Some(request)) =
                    (get("id"), get("realm"), get("method"), get("intent"), get("request"))
                else {
                    continue;
                };
                out.push(PaymentChallenge {
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
        out
    }
}

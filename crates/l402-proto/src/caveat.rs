//! First-party caveats (`condition=value`, split on the first `=`) and the L402 conditions.
//!
//! - `services=<name>:<tier>[,<name>:<tier>...]`: the services the token grants.
//! - `<service>_capabilities=<csv>`: the capabilities granted on that service. An empty value grants none; a
//!   token with no such caveat is not restricted by capability (caveats only ever take access away).
//! - `<service>_valid_until=<unix seconds>`: the token is valid for that service while `now < value`.
//!
//! Attenuation: anyone may append caveats, so a later caveat of a condition may only narrow the earlier one
//! (services and capabilities a subset, valid_until not later). A later caveat that widens is refused outright,
//! as Aperture does, rather than silently ignored.
//!
//! Conditions this crate does not know are refused (fail closed): a holder who appended a caveat expected it to
//! restrict the token, and ignoring it would grant more than they meant. Aperture ignores them; no Aperture
//! minted token carries one. The exceptions are `_capabilities` and `_valid_until` caveats of other services
//! (they do not apply to this request) and `preimage`, the caveat of the `Macaroon` header form.

use std::fmt;

use crate::error::DecodeError;
use crate::types::short;

/// The `services` condition.
pub const SERVICES: &str = "services";
/// The suffix of the per-service capabilities condition.
pub const CAPABILITIES_SUFFIX: &str = "_capabilities";
/// The suffix of the per-service expiry condition.
pub const VALID_UNTIL_SUFFIX: &str = "_valid_until";
/// The condition that carries the preimage in the `Macaroon` header form.
pub const PREIMAGE: &str = "preimage";

/// A first-party caveat, `condition=value`, kept in its encoded form.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Caveat {
    raw: String,
    eq: usize,
}

impl Caveat {
    /// A caveat from its two parts. The condition must not contain `=` (it would not parse back).
    pub fn new(condition: &str, value: &str) -> Self {
        Self { raw: format!("{condition}={value}"), eq: condition.len() }
    }

    /// `services=name:tier,...`.
    pub fn services(services: &[Service]) -> Self {
        let value = services.iter().map(|s| format!("{}:{}", s.name, s.tier)).collect::<Vec<_>>().join(",");
        Self::new(SERVICES, &value)
    }

    /// `<service>_capabilities=a,b,...` (an empty list grants no capability).
    pub fn capabilities<S: AsRef<str>>(service: &str, capabilities: &[S]) -> Self {
        let value = capabilities.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(",");
        Self::new(&format!("{service}{CAPABILITIES_SUFFIX}"), &value)
    }

    /// `<service>_valid_until=<unix seconds>`.
    pub fn valid_until(service: &str, unix_secs: u64) -> Self {
        Self::new(&format!("{service}{VALID_UNTIL_SUFFIX}"), &unix_secs.to_string())
    }

    /// Parses `condition=value` from a macaroon's caveat bytes.
    pub fn parse(raw: &[u8]) -> Result<Self, DecodeError> {
        let (c, v) = split(raw)?;
        Ok(Self::new(c, v))
    }

    /// The condition (left of the first `=`).
    pub fn condition(&self) -> &str {
        &self.raw[..self.eq]
    }

    /// The value (right of the first `=`; may be empty).
    pub fn value(&self) -> &str {
        &self.raw[self.eq + 1..]
    }
}

impl fmt::Display for Caveat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl AsRef<[u8]> for Caveat {
    fn as_ref(&self) -> &[u8] {
        self.raw.as_bytes()
    }
}

/// Splits a caveat into condition and value (UTF-8, non-empty condition, split on the first `=`).
pub(crate) fn split(raw: &[u8]) -> Result<(&str, &str), DecodeError> {
    let bad = || DecodeError::Caveat { prefix: short(raw) };
    let s = std::str::from_utf8(raw).map_err(|_| bad())?;
    let (c, v) = s.split_once('=').ok_or_else(bad)?;
    if c.is_empty() || c.bytes().any(|b| b.is_ascii_whitespace() || b.is_ascii_control()) {
        return Err(bad());
    }
    Ok((c, v))
}

/// A service a token grants, with its tier.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Service {
    /// The service name (as configured on the server).
    pub name: String,
    /// The pricing tier (Aperture uses 0).
    pub tier: u32,
}

impl Service {
    /// A service at tier 0.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), tier: 0 }
    }
}

/// Iterates `name:tier` pairs of a `services` value without allocating; `None` items are malformed entries.
pub(crate) fn services(value: &str) -> impl Iterator<Item = Option<(&str, u32)>> {
    value.split(',').map(|entry| {
        let (name, tier) = entry.split_once(':')?;
        if name.is_empty() {
            return None;
        }
        Some((name, tier.parse().ok()?))
    })
}

/// Parses a whole `services` value.
pub fn parse_services(value: &str) -> Option<Vec<Service>> {
    services(value).map(|s| s.map(|(n, t)| Service { name: n.to_owned(), tier: t })).collect()
}

//! Verifying a paid token: what a server does on every request, with no call to the Lightning node.
//!
//! [`verify`] checks, in order: the location is `lsat`; the identifier decodes (version 0); the preimage hashes
//! to the payment hash in the identifier; the HMAC chain verifies under the token's root key; every caveat holds
//! for the [`Access`] asked for. Each refusal is its own [`VerifyError`] variant. The clock is passed in.

use thiserror::Error;

use crate::caveat::{self, CAPABILITIES_SUFFIX, PREIMAGE, SERVICES, VALID_UNTIL_SUFFIX};
use crate::error::DecodeError;
use crate::macaroon::{L402_LOCATION, Macaroon, MacaroonKey};
use crate::types::{PaymentHash, Preimage, TokenId, decode_hex32, short};

/// What a request asks of a token.
#[derive(Clone, Copy, Debug)]
pub struct Access<'a> {
    /// The service being accessed.
    pub service: &'a str,
    /// The capability the route requires, if any.
    pub capability: Option<&'a str>,
    /// The current time, in Unix seconds.
    pub now_unix: u64,
}

/// A token that passed verification.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The token's id (safe to log).
    pub token_id: TokenId,
    /// The payment hash the token was paid under.
    pub payment_hash: PaymentHash,
    /// When the token stops being valid for the service accessed, if it expires.
    pub valid_until: Option<u64>,
}

/// Why a credential was refused. Messages never contain the credential.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The macaroon or identifier could not be decoded.
    #[error(transparent)]
    Malformed(#[from] DecodeError),
    /// The macaroon's location is not `lsat`.
    #[error("macaroon location is not \"lsat\"")]
    Location,
    /// sha256(preimage) is not the payment hash in the token.
    #[error("preimage does not match the token's payment hash")]
    PreimageMismatch,
    /// The HMAC chain does not verify: wrong root key, or the macaroon was altered.
    #[error("macaroon signature is invalid")]
    BadSignature,
    /// The token has expired for this service.
    #[error("token expired for service {service:?} at {valid_until}")]
    Expired {
        /// The service accessed.
        service: String,
        /// The expiry (Unix seconds).
        valid_until: u64,
    },
    /// The token does not grant the service.
    #[error("token does not grant service {service:?}")]
    ServiceNotGranted {
        /// The service accessed.
        service: String,
    },
    /// The token does not grant the capability the route requires.
    #[error("token does not grant capability {capability:?} on service {service:?}")]
    CapabilityNotGranted {
        /// The service accessed.
        service: String,
        /// The capability required.
        capability: String,
    },
    /// A later caveat tries to widen what an earlier one granted.
    #[error("caveat {condition:?} widens an earlier one")]
    CaveatWidened {
        /// The caveat's condition.
        condition: String,
    },
    /// A caveat of a known condition has a malformed value.
    #[error("caveat {condition:?} has a malformed value")]
    InvalidCaveat {
        /// The caveat's condition (truncated).
        condition: String,
    },
    /// A caveat's condition is not one this verifier knows (refused: fail closed).
    #[error("unknown caveat condition {condition:?}")]
    UnknownCaveat {
        /// The condition (truncated).
        condition: String,
    },
}

impl VerifyError {
    /// A short stable name for the reason, for metrics labels and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            VerifyError::Malformed(DecodeError::UnknownVersion { .. }) => "unknown_version",
            VerifyError::Malformed(DecodeError::HexLength { .. } | DecodeError::NotLowercaseHex { .. }) => {
                "bad_preimage"
            }
            VerifyError::Malformed(_) => "malformed",
            VerifyError::Location => "location",
            VerifyError::PreimageMismatch => "preimage_mismatch",
            VerifyError::BadSignature => "bad_signature",
            VerifyError::Expired { .. } => "expired",
            VerifyError::ServiceNotGranted { .. } => "service_not_granted",
            VerifyError::CapabilityNotGranted { .. } => "capability_not_granted",
            VerifyError::CaveatWidened { .. } => "caveat_widened",
            VerifyError::InvalidCaveat { .. } => "invalid_caveat",
            VerifyError::UnknownCaveat { .. } => "unknown_caveat",
        }
    }
}

/// Verifies a macaroon and preimage under the token's key for one access. See the module doc for the order.
pub fn verify(
    macaroon: &Macaroon,
    preimage: &Preimage,
    key: &MacaroonKey,
    access: &Access<'_>,
) -> Result<Verified, VerifyError> {
    if macaroon.location() != L402_LOCATION.as_bytes() {
        return Err(VerifyError::Location);
    }
    let id = macaroon.l402_identifier()?;
    if preimage.payment_hash() != id.payment_hash {
        return Err(VerifyError::PreimageMismatch);
    }
    if !macaroon.signature_valid(key) {
        return Err(VerifyError::BadSignature);
    }
    let valid_until = check_caveats(macaroon.caveats(), preimage, access)?;
    Ok(Verified { token_id: id.token_id, payment_hash: id.payment_hash, valid_until })
}

/// Checks every caveat for `access`, in order, enforcing attenuation. Returns the effective expiry.
pub fn check_caveats<'m>(
    caveats: impl Iterator<Item = &'m [u8]>,
    preimage: &Preimage,
    access: &Access<'_>,
) -> Result<Option<u64>, VerifyError> {
    let mut granted_services: Option<&str> = None;
    let mut granted_caps: Option<&str> = None;
    let mut valid_until: Option<u64> = None;
    let invalid = |condition: &str| VerifyError::InvalidCaveat { condition: short(condition.as_bytes()) };
    let widened = |condition: &str| VerifyError::CaveatWidened { condition: short(condition.as_bytes()) };

    for raw in caveats {
        let (condition, value) = caveat::split(raw)?;
        if condition == SERVICES {
            if value.is_empty() || caveat::services(value).any(|s| s.is_none()) {
                return Err(invalid(condition));
            }
            if let Some(prev) = granted_services {
                // Each service named again must have been granted before, at the same tier.
                let narrows =
                    caveat::services(value).flatten().all(|s| caveat::services(prev).flatten().any(|p| p == s));
                if !narrows {
                    return Err(widened(condition));
                }
            }
            granted_services = Some(value);
        } else if let Some(service) = condition.strip_suffix(CAPABILITIES_SUFFIX) {
            if service != access.service {
                continue;
            }
            if let Some(prev) = granted_caps {
                if !list(value).all(|c| list(prev).any(|p| p == c)) {
                    return Err(widened(condition));
                }
            }
            granted_caps = Some(value);
        } else if let Some(service) = condition.strip_suffix(VALID_UNTIL_SUFFIX) {
            let until: u64 = value.parse().map_err(|_| invalid(condition))?;
            if service != access.service {
                continue;
            }
            if valid_until.is_some_and(|prev| until > prev) {
                return Err(widened(condition));
            }
            valid_until = Some(until);
        } else if condition == PREIMAGE {
            let claimed = decode_hex32("preimage caveat", value.as_bytes()).map_err(|_| invalid(condition))?;
            if claimed != preimage.0 {
                return Err(VerifyError::PreimageMismatch);
            }
        } else {
            return Err(VerifyError::UnknownCaveat { condition: short(condition.as_bytes()) });
        }
    }

    let service_granted =
        granted_services.is_some_and(|s| caveat::services(s).flatten().any(|(name, _)| name == access.service));
    if !service_granted {
        return Err(VerifyError::ServiceNotGranted { service: short(access.service.as_bytes()) });
    }
    if let (Some(required), Some(caps)) = (access.capability, granted_caps) {
        if !list(caps).any(|c| c == required) {
            return Err(VerifyError::CapabilityNotGranted {
                service: short(access.service.as_bytes()),
                capability: short(required.as_bytes()),
            });
        }
    }
    if let Some(until) = valid_until {
        if access.now_unix >= until {
            return Err(VerifyError::Expired { service: short(access.service.as_bytes()), valid_until: until });
        }
    }
    Ok(valid_until)
}

/// Whether a macaroon grants `service` at exactly `tier`. Call it after [`verify`], which checks that each
/// `services` caveat only narrows the one before: the last one is then what the token grants. A server whose
/// services have tiers checks this too, so that a token bought for one tier does not open another tier of
/// the same service ([`verify`] checks the service by name, as Aperture does).
pub fn grants_tier(macaroon: &Macaroon, service: &str, tier: u32) -> bool {
    macaroon
        .caveats()
        .filter_map(|c| caveat::split(c).ok())
        .filter(|(condition, _)| *condition == SERVICES)
        .last()
        .is_some_and(|(_, value)| caveat::services(value).flatten().any(|(name, t)| name == service && t == tier))
}

/// The entries of a comma-separated list; an empty value is the empty list.
fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

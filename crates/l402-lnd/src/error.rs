//! How LND's gRPC statuses become [`LightningError`]s that say what is wrong.
//!
//! LND reports most failures with the gRPC code `Unknown` and a Go error string; the codes it does use are
//! `NotFound` (unknown invoice or payment), `AlreadyExists` (a payment to this hash exists), `InvalidArgument`
//! (some request checks) and, from grpc-go, `Unavailable` (no connection) and `Unimplemented` (a sub-server not
//! compiled in). Macaroon refusals come as `Unknown` with texts like "verification failed: signature mismatch
//! after caveat verification", "expected 1 macaroon, got 0", "cannot get macaroon: root key with id … doesn't
//! exist" or "permission denied"; proxies in front of LND may use `Unauthenticated`/`PermissionDenied`.

use l402_lightning::{LightningError, LightningErrorKind};
use tonic::{Code, Status};

use crate::tls::{CONNECT_FAILED, NO_KEY, NOT_PINNED};

/// Texts of LND's macaroon refusals (all sent with code `Unknown`).
const MACAROON_REFUSALS: &[&str] = &[
    "verification failed",
    "expected 1 macaroon",
    "cannot get macaroon",
    "invalid macaroon",
    "unable to decode macaroon",
    "macaroon",
    "permission denied",
    "invalid id",
    "unknown macaroon version",
];

/// Texts LND answers with while it starts (`rpcperms/interceptor.go`: the wallet not unlocked yet, the RPC server
/// not ready), all with code `Unknown`: seen on real LND 0.21 in the seconds after a restart. They pass.
const STARTING_UP: &[&str] = &[
    "wallet locked, unlock it",
    "waiting to start, rpc services not available",
    "the rpc server is in the process of starting up",
    "server is still in the process of starting",
];

/// Whether the status says the request never left this process (no connection could be opened).
pub(crate) fn never_sent(status: &Status) -> bool {
    status.code() == Code::Unavailable && status.message().starts_with(CONNECT_FAILED)
}

/// Whether the status is tonic's report of a broken connection (code `Unknown`, source a transport error)
/// rather than an answer from LND.
fn is_transport_failure(status: &Status) -> bool {
    let mut source = std::error::Error::source(status);
    while let Some(s) = source {
        if s.is::<tonic::transport::Error>() {
            return true;
        }
        source = s.source();
    }
    false
}

fn is_macaroon_refusal(status: &Status) -> bool {
    let msg = status.message().to_ascii_lowercase();
    matches!(status.code(), Code::Unauthenticated | Code::PermissionDenied)
        || (status.code() == Code::Unknown && MACAROON_REFUSALS.iter().any(|m| msg.contains(m)))
}

/// The status's message and the chain of its sources, for a human.
fn describe(status: &Status) -> String {
    let mut text = status.message().to_owned();
    let mut source = std::error::Error::source(status);
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    if text.is_empty() { format!("{:?}", status.code()) } else { text }
}

/// Maps a status from `method` to an error of the right kind.
pub(crate) fn from_status(method: &str, status: &Status) -> LightningError {
    use LightningErrorKind as K;
    let detail = describe(status);
    if status.message().contains(NOT_PINNED) || status.message().contains(NO_KEY) {
        return LightningError::new(K::TlsCertificate, detail);
    }
    if is_macaroon_refusal(status) {
        let what = if detail.to_ascii_lowercase().contains("permission denied") {
            "the macaroon lacks a permission this call needs (use admin.macaroon, or one baked with \
             invoices:read/write and offchain:read/write)"
        } else {
            "LND refused the macaroon (wrong macaroon for this node, or not a macaroon)"
        };
        return LightningError::new(K::Unauthenticated, format!("{method}: {what}: {detail}"));
    }
    let lower = status.message().to_ascii_lowercase();
    if STARTING_UP.iter().any(|m| lower.contains(m)) {
        return LightningError::new(K::Unavailable, format!("{method}: LND is starting: {detail}"));
    }
    if is_transport_failure(status) {
        return LightningError::new(K::Unavailable, format!("{method}: connection to LND lost: {detail}"));
    }
    let kind = match status.code() {
        Code::Unavailable => K::Unavailable,
        Code::DeadlineExceeded => K::Timeout,
        Code::NotFound => K::NotFound,
        Code::InvalidArgument | Code::OutOfRange | Code::FailedPrecondition => K::InvalidRequest,
        Code::Unimplemented => {
            return LightningError::new(
                K::Internal,
                format!("{method}: this LND does not serve the call (sub-server not compiled in?): {detail}"),
            );
        }
        _ => K::Internal,
    };
    LightningError::new(kind, format!("{method}: {detail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn macaroon_refusals_are_unauthenticated() {
        for msg in [
            "verification failed: signature mismatch after caveat verification",
            "expected 1 macaroon, got 0",
            "permission denied",
        ] {
            let e = from_status("GetInfo", &Status::unknown(msg));
            assert_eq!(e.kind, LightningErrorKind::Unauthenticated, "{msg}");
            assert!(e.message.contains("macaroon"), "{}", e.message);
        }
        let e = from_status("GetInfo", &Status::permission_denied("nope"));
        assert_eq!(e.kind, LightningErrorKind::Unauthenticated);
    }

    /// Regression: a settlement stream ended for good when LND, restarting, answered "wallet locked" before
    /// its wallet was unlocked (real LND 0.21, `every_direction_pays_on_real_lnd...`).
    #[test]
    fn lnd_starting_up_is_unavailable_so_calls_are_retried() {
        for msg in [
            "wallet locked, unlock it to enable full RPC access",
            "waiting to start, RPC services not available",
            "the RPC server is in the process of starting up, but not yet ready to accept calls",
        ] {
            let e = from_status("SubscribeInvoices", &Status::unknown(msg));
            assert_eq!(e.kind, LightningErrorKind::Unavailable, "{msg}");
            assert!(e.is_retryable(), "{msg}");
        }
    }

    #[test]
    fn pin_mismatch_is_tls_certificate() {
        let s = Status::unavailable(format!("{CONNECT_FAILED} at x:1: the node's TLS certificate {NOT_PINNED}"));
        assert!(never_sent(&s));
        assert_eq!(from_status("GetInfo", &s).kind, LightningErrorKind::TlsCertificate);
    }

    #[test]
    fn codes_map_to_kinds() {
        assert_eq!(from_status("m", &Status::not_found("unable to locate invoice")).kind, LightningErrorKind::NotFound);
        assert_eq!(from_status("m", &Status::unavailable("reset")).kind, LightningErrorKind::Unavailable);
        assert!(!never_sent(&Status::unavailable("connection reset")));
        assert_eq!(from_status("m", &Status::unknown("invoice expired")).kind, LightningErrorKind::Internal);
        assert_eq!(from_status("m", &Status::invalid_argument("bad")).kind, LightningErrorKind::InvalidRequest);
    }
}

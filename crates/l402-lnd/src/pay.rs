//! The client side on LND: `DecodePayReq` checks, `routerrpc.SendPaymentV2`, and `TrackPaymentV2` to follow
//! a payment that already exists or whose stream dropped.
//!
//! The one rule: once a `SendPaymentV2` may have reached the node, the adapter reports either the node's
//! final word (SUCCEEDED with a preimage, FAILED with a reason) or [`PayError::OutcomeUnknown`], never a
//! failure it did not see. Re-sending is always safe because LND refuses a second payment to a hash that is
//! in flight or paid (`AlreadyExists`), and tracking says `NotFound` only for a hash never initiated.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use l402_lightning::{
    LightningError, LightningErrorKind, PayError, PayRequest, Payer, PaymentEvent, PaymentFailure, PaymentStatus,
    PaymentSuccess,
};
use l402_proto::{Msat, PaymentHash, Preimage};
use tokio::time::{Instant, timeout_at};
use tonic::Code;

use crate::client::{Backoff, LndNode};
use crate::error::{from_status, never_sent};
use crate::proto::lnrpc::payment::PaymentStatus as LndStatus;
use crate::proto::lnrpc::{self, PayReqString, PaymentFailureReason as Reason};
use crate::proto::routerrpc::{SendPaymentRequest, TrackPaymentRequest};

type Progress<'a> = &'a (dyn Fn(PaymentEvent) + Send + Sync);

/// LND's `failure_reason` as a [`PaymentFailure`].
pub(crate) fn failure_from(reason: Reason) -> PaymentFailure {
    match reason {
        Reason::FailureReasonTimeout => PaymentFailure::Timeout,
        Reason::FailureReasonNoRoute => PaymentFailure::NoRoute,
        Reason::FailureReasonIncorrectPaymentDetails => PaymentFailure::IncorrectPaymentDetails,
        Reason::FailureReasonInsufficientBalance => PaymentFailure::InsufficientBalance,
        Reason::FailureReasonCanceled => PaymentFailure::Canceled,
        Reason::FailureReasonError => {
            PaymentFailure::Other("LND: a non-recoverable error (FAILURE_REASON_ERROR)".into())
        }
        Reason::FailureReasonNone => PaymentFailure::Other("LND reported FAILED without a reason".into()),
    }
}

/// The preimage, amount and fee of a SUCCEEDED payment, checked against the hash.
pub(crate) fn success_from(hash: &PaymentHash, payment: &lnrpc::Payment) -> Result<PaymentSuccess, String> {
    let from_string = Preimage::from_hex(&payment.payment_preimage.to_ascii_lowercase()).ok();
    // Older nodes may leave the string empty; the settled HTLC attempt carries the preimage as bytes.
    let from_htlc =
        || payment.htlcs.iter().find_map(|h| <[u8; 32]>::try_from(h.preimage.as_slice()).ok().map(Preimage));
    let preimage = from_string.or_else(from_htlc).ok_or("LND reported SUCCEEDED without a readable preimage")?;
    if preimage.payment_hash() != *hash {
        return Err(format!("LND reported SUCCEEDED with a preimage that does not hash to {hash}"));
    }
    Ok(PaymentSuccess {
        preimage,
        amount: Msat(u64::try_from(payment.value_msat).unwrap_or(0)),
        fee: Msat(u64::try_from(payment.fee_msat).unwrap_or(0)),
    })
}

/// Turns the `lnrpc.Payment` updates of one payment (across resumed streams) into events, once each.
struct Follower<'a> {
    hash: PaymentHash,
    progress: Progress<'a>,
    initiated: bool,
    in_flight: bool,
    attempts: HashSet<u64>,
    last: &'static str,
}

impl<'a> Follower<'a> {
    fn new(hash: PaymentHash, progress: Progress<'a>) -> Self {
        Self { hash, progress, initiated: false, in_flight: false, attempts: HashSet::new(), last: "not seen" }
    }

    fn attempts(&mut self, payment: &lnrpc::Payment) {
        for htlc in &payment.htlcs {
            if self.attempts.insert(htlc.attempt_id) {
                let number = u32::try_from(self.attempts.len()).unwrap_or(u32::MAX);
                (self.progress)(PaymentEvent::Attempt { number });
            }
        }
    }

    /// Takes one update; returns the outcome once it is final.
    fn update(&mut self, payment: &lnrpc::Payment) -> Option<Result<PaymentSuccess, PayError>> {
        match payment.status() {
            LndStatus::Unknown => None,
            LndStatus::Initiated => {
                self.last = "INITIATED";
                if !self.initiated {
                    self.initiated = true;
                    (self.progress)(PaymentEvent::Initiated);
                }
                self.attempts(payment);
                None
            }
            LndStatus::InFlight => {
                self.last = "IN_FLIGHT";
                if !self.in_flight {
                    self.in_flight = true;
                    (self.progress)(PaymentEvent::InFlight);
                }
                self.attempts(payment);
                None
            }
            LndStatus::Succeeded => {
                self.attempts(payment);
                Some(match success_from(&self.hash, payment) {
                    Ok(success) => {
                        (self.progress)(PaymentEvent::Succeeded(success));
                        Ok(success)
                    }
                    Err(m) => Err(PayError::OutcomeUnknown(m)),
                })
            }
            LndStatus::Failed => {
                self.attempts(payment);
                let failure = failure_from(payment.failure_reason());
                (self.progress)(PaymentEvent::Failed(failure.clone()));
                Some(Err(PayError::Failed(failure)))
            }
        }
    }
}

fn rejected(e: LightningError) -> PayError {
    match e.kind {
        LightningErrorKind::Unavailable
        | LightningErrorKind::Timeout
        | LightningErrorKind::TlsCertificate
        | LightningErrorKind::Unauthenticated
        | LightningErrorKind::Config => PayError::Node(e),
        _ => PayError::Rejected(e.message),
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Call {
    Send,
    Track,
}

impl LndNode {
    /// Sends (if `send` is given) or tracks a payment until LND gives its final word or `deadline` passes.
    async fn drive(
        &self,
        send: Option<SendPaymentRequest>,
        follower: &mut Follower<'_>,
        deadline: Instant,
    ) -> Result<PaymentSuccess, PayError> {
        let hash = follower.hash;
        let started = Instant::now();
        let mut call = if send.is_some() { Call::Send } else { Call::Track };
        // Whether a SendPaymentV2 may have reached the node: from then on, only LND's final word or
        // OutcomeUnknown may be returned.
        let mut maybe_sent = send.is_none();
        let mut backoff = Backoff::new();
        let mut last_error = String::from("no answer from LND");
        loop {
            let opened = match (call, &send) {
                (Call::Send, Some(request)) => {
                    timeout_at(deadline, self.router().send_payment_v2(request.clone())).await
                }
                _ => {
                    let request = TrackPaymentRequest { payment_hash: hash.0.to_vec(), no_inflight_updates: false };
                    timeout_at(deadline, self.router().track_payment_v2(request)).await
                }
            };
            let method = if call == Call::Send { "SendPaymentV2" } else { "TrackPaymentV2" };
            let status = match opened {
                Err(_) => break,
                Ok(Ok(response)) => {
                    maybe_sent = true;
                    let mut stream = response.into_inner();
                    loop {
                        match timeout_at(deadline, stream.message()).await {
                            Err(_) => break,
                            Ok(Ok(Some(payment))) => {
                                backoff = Backoff::new();
                                if let Some(outcome) = follower.update(&payment) {
                                    return outcome;
                                }
                            }
                            Ok(Ok(None)) => {
                                last_error = format!("{method} stream ended before a final status");
                                break;
                            }
                            Ok(Err(status)) => {
                                last_error = format!("{method} stream dropped: {}", status.message());
                                break;
                            }
                        }
                    }
                    tracing::warn!(%hash, reason = %last_error, "payment stream lost; resuming with TrackPaymentV2");
                    call = Call::Track;
                    if !backoff.wait_until(deadline).await {
                        break;
                    }
                    continue;
                }
                Ok(Err(status)) => status,
            };
            match (call, status.code()) {
                (Call::Send, Code::AlreadyExists) => {
                    // In flight or already paid: follow that payment instead of paying again.
                    tracing::info!(%hash, lnd = %status.message(), "payment exists; tracking it");
                    maybe_sent = true;
                    call = Call::Track;
                    continue;
                }
                (Call::Track, Code::NotFound) if send.is_some() => {
                    // LND: never initiated. Safe to send (again); AlreadyExists would catch a race.
                    call = Call::Send;
                }
                (Call::Track, Code::NotFound) => {
                    return Err(PayError::Node(LightningError::new(
                        LightningErrorKind::NotFound,
                        format!("no payment to {hash} was ever initiated on this node"),
                    )));
                }
                _ => {
                    let err = from_status(method, &status);
                    last_error = err.to_string();
                    let transient = err.is_retryable();
                    if call == Call::Send && transient && !never_sent(&status) {
                        maybe_sent = true;
                    }
                    if !maybe_sent {
                        // Nothing reached the node: a refusal or an unreachable node is the caller's to see.
                        if !transient || started.elapsed() >= self.config().reconnect_timeout {
                            return Err(rejected(err));
                        }
                    }
                }
            }
            if !backoff.wait_until(deadline).await {
                break;
            }
        }
        Err(PayError::OutcomeUnknown(format!(
            "no final status for payment {hash} from LND in time (last seen: {}; last error: {last_error}); \
             track it by hash before paying again",
            follower.last
        )))
    }
}

impl LndNode {
    /// Checks `request` against LND's own decoding of the invoice, then sends it: with `amountless`, the
    /// invoice must carry no amount and `request.amount` is sent (`amt_msat`); otherwise its amount must be
    /// `request.amount`.
    async fn pay_checked(
        &self,
        request: &PayRequest,
        amountless: bool,
        progress: Progress<'_>,
    ) -> Result<PaymentSuccess, PayError> {
        if request.max_fee.msat() == 0 {
            return Err(PayError::Rejected(
                "max_fee is 0: LND reads a zero fee limit as \"zero-fee routes only\", which fails with no route"
                    .into(),
            ));
        }
        let fee_limit_msat = i64::try_from(request.max_fee.msat())
            .map_err(|_| PayError::Rejected(format!("max_fee {} does not fit LND's int64", request.max_fee)))?;
        let decode = PayReqString { pay_req: request.bolt11.clone() };
        let decoded = self
            .call("DecodePayReq", || {
                let (mut c, decode) = (self.lightning(), decode.clone());
                async move { c.decode_pay_req(decode).await }
            })
            .await
            .map_err(|e| match rejected(e) {
                PayError::Rejected(m) => PayError::Rejected(format!("LND cannot decode the invoice: {m}")),
                other => other,
            })?;
        let expected_hash = request.payment_hash.to_hex();
        if !decoded.payment_hash.eq_ignore_ascii_case(&expected_hash) {
            return Err(PayError::Rejected(format!(
                "LND decodes the invoice's payment hash as {}, not {expected_hash}",
                decoded.payment_hash
            )));
        }
        let amt_msat = if amountless {
            if decoded.num_msat != 0 {
                return Err(PayError::Rejected(format!(
                    "the invoice carries an amount ({} msat): pay it with pay, not pay_amountless",
                    decoded.num_msat
                )));
            }
            i64::try_from(request.amount.msat())
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| PayError::Rejected(format!("amount {} is not a positive int64 msat", request.amount)))?
        } else {
            if u64::try_from(decoded.num_msat).ok() != Some(request.amount.msat()) || decoded.num_msat == 0 {
                return Err(PayError::Rejected(format!(
                    "LND decodes the invoice's amount as {} msat, not {}",
                    decoded.num_msat,
                    request.amount.msat()
                )));
            }
            0
        };
        let mut timeout_seconds = request.timeout.as_secs();
        if request.timeout.subsec_nanos() > 0 || timeout_seconds == 0 {
            timeout_seconds += 1;
        }
        let timeout_seconds = i32::try_from(timeout_seconds).unwrap_or(i32::MAX);
        let send = SendPaymentRequest {
            payment_request: request.bolt11.clone(),
            amt_msat,
            fee_limit_msat,
            timeout_seconds,
            no_inflight_updates: false,
            max_parts: self.config().max_parts.max(1),
            ..Default::default()
        };
        debug_assert!(send.fee_limit_msat > 0 && send.fee_limit_sat == 0);
        let deadline = Instant::now()
            + Duration::from_secs(u64::try_from(timeout_seconds).unwrap_or(0))
            + self.config().resume_margin;
        let mut follower = Follower::new(request.payment_hash, progress);
        self.drive(Some(send), &mut follower, deadline).await
    }
}

#[async_trait]
impl Payer for LndNode {
    async fn pay(&self, request: &PayRequest, progress: Progress<'_>) -> Result<PaymentSuccess, PayError> {
        self.pay_checked(request, false, progress).await
    }

    async fn pay_amountless(&self, request: &PayRequest, progress: Progress<'_>) -> Result<PaymentSuccess, PayError> {
        self.pay_checked(request, true, progress).await
    }

    async fn payment_status(&self, payment_hash: &PaymentHash) -> Result<PaymentStatus, LightningError> {
        // no_inflight_updates=false on purpose: LND always sends the current state first, but with
        // no_inflight_updates=true it would hold back an INITIATED/IN_FLIGHT state until the payment ends.
        let request = TrackPaymentRequest { payment_hash: payment_hash.0.to_vec(), no_inflight_updates: false };
        let mut stream = match self
            .call("TrackPaymentV2", || {
                let (mut c, request) = (self.router(), request.clone());
                async move { c.track_payment_v2(request).await }
            })
            .await
        {
            Ok(stream) => stream,
            Err(e) if e.kind == LightningErrorKind::NotFound => return Ok(PaymentStatus::Unknown),
            Err(e) => return Err(e),
        };
        let first = tokio::time::timeout(self.config().call_timeout, stream.message()).await.map_err(|_| {
            LightningError::new(LightningErrorKind::Timeout, "TrackPaymentV2: no current state from LND in time")
        })?;
        let payment = match first {
            Ok(Some(payment)) => payment,
            Ok(None) => {
                return Err(LightningError::new(
                    LightningErrorKind::Unavailable,
                    "TrackPaymentV2: stream closed before the current state",
                ));
            }
            Err(status) => return Err(from_status("TrackPaymentV2", &status)),
        };
        Ok(match payment.status() {
            LndStatus::Unknown | LndStatus::Initiated | LndStatus::InFlight => PaymentStatus::InFlight,
            LndStatus::Succeeded => PaymentStatus::Succeeded(
                success_from(payment_hash, &payment)
                    .map_err(|m| LightningError::new(LightningErrorKind::Internal, m))?,
            ),
            LndStatus::Failed => PaymentStatus::Failed(failure_from(payment.failure_reason())),
        })
    }

    async fn track_payment(
        &self,
        payment_hash: &PaymentHash,
        timeout: Duration,
        progress: Progress<'_>,
    ) -> Result<PaymentSuccess, PayError> {
        let mut follower = Follower::new(*payment_hash, progress);
        self.drive(None, &mut follower, Instant::now() + timeout).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_reason_has_its_own_failure() {
        assert_eq!(failure_from(Reason::FailureReasonNoRoute), PaymentFailure::NoRoute);
        assert_eq!(failure_from(Reason::FailureReasonTimeout), PaymentFailure::Timeout);
        assert_eq!(failure_from(Reason::FailureReasonInsufficientBalance), PaymentFailure::InsufficientBalance);
        assert_eq!(failure_from(Reason::FailureReasonIncorrectPaymentDetails), PaymentFailure::IncorrectPaymentDetails);
        assert_eq!(failure_from(Reason::FailureReasonCanceled), PaymentFailure::Canceled);
        assert!(matches!(failure_from(Reason::FailureReasonError), PaymentFailure::Other(_)));
    }

    #[test]
    fn success_needs_the_preimage_of_the_hash() {
        let preimage = Preimage([7; 32]);
        let hash = preimage.payment_hash();
        let mut p = lnrpc::Payment {
            payment_preimage: preimage.to_hex().to_uppercase(),
            value_msat: 5_000,
            fee_msat: 12,
            status: LndStatus::Succeeded as i32,
            ..Default::default()
        };
        let ok = success_from(&hash, &p).expect("valid");
        assert_eq!((ok.preimage, ok.amount, ok.fee), (preimage, Msat(5_000), Msat(12)));
        p.payment_preimage = Preimage([8; 32]).to_hex();
        assert!(success_from(&hash, &p).is_err());
        p.payment_preimage.clear();
        assert!(success_from(&hash, &p).is_err());
    }

    #[test]
    fn follower_reports_each_attempt_once() {
        let events = std::sync::Mutex::new(Vec::new());
        let record = |e: PaymentEvent| events.lock().expect("lock").push(e);
        let mut f = Follower::new(PaymentHash([0; 32]), &record);
        let attempt = |id| lnrpc::HtlcAttempt { attempt_id: id, ..Default::default() };
        let mut p = lnrpc::Payment { status: LndStatus::Initiated as i32, ..Default::default() };
        assert!(f.update(&p).is_none());
        p.status = LndStatus::InFlight as i32;
        p.htlcs = vec![attempt(1)];
        assert!(f.update(&p).is_none());
        assert!(f.update(&p).is_none());
        p.htlcs.push(attempt(2));
        assert!(f.update(&p).is_none());
        p.status = LndStatus::Failed as i32;
        p.failure_reason = Reason::FailureReasonNoRoute as i32;
        assert_eq!(f.update(&p), Some(Err(PayError::Failed(PaymentFailure::NoRoute))));
        assert_eq!(
            *events.lock().expect("lock"),
            vec![
                PaymentEvent::Initiated,
                PaymentEvent::InFlight,
                PaymentEvent::Attempt { number: 1 },
                PaymentEvent::Attempt { number: 2 },
                PaymentEvent::Failed(PaymentFailure::NoRoute),
            ]
        );
    }
}

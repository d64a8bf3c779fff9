//! `routerrpc.Router`: SendPaymentV2 hands the payment to the backend and streams its progress as LND's
//! `lnrpc.Payment` updates; TrackPaymentV2 follows a payment by hash. Injected faults act here.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use l402_lightning::{PayError, PayRequest, PaymentEvent, PaymentStatus as BackendStatus};
use l402_lnd::proto::lnrpc::{self, PaymentFailureReason as Reason, payment::PaymentStatus};
use l402_lnd::proto::routerrpc::router_server::Router;
use l402_lnd::proto::routerrpc::{SendPaymentRequest, TrackPaymentRequest};
use l402_proto::{Msat, PaymentHash};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use crate::auth::Permission;
use crate::faults::PaymentFaults;
use crate::lightning::{GrpcStream, decode_for};
use crate::sim::{Sim, lock, make_hash, mark_failed, mark_succeeded, note_attempt, reason_for};

/// LND's `routerrpc.DefaultPaymentTimeout`, used when `timeout_seconds` is 0.
const DEFAULT_PAYMENT_TIMEOUT: i32 = 60;
/// How long a payment under [`crate::Fault::DropStream`] is held IN_FLIGHT before the backend pays it, so
/// that the drop comes first.
const DROP_HOLD: Duration = Duration::from_millis(500);
/// How long after the IN_FLIGHT update the connections are cut (time for the update to reach the client).
const DROP_DELAY: Duration = Duration::from_millis(100);

/// The `routerrpc.Router` service.
#[derive(Clone)]
pub(crate) struct RouterService {
    pub(crate) sim: Arc<Sim>,
}

/// Checks a SendPaymentV2 request as LND's `extractIntentFromSendRequest` does (for payment requests), and
/// builds the backend's request and LND's first record of the payment.
fn validate(sim: &Sim, r: &SendPaymentRequest) -> Result<(PaymentHash, PayRequest, lnrpc::Payment), Status> {
    if r.payment_request.is_empty() {
        return Err(Status::invalid_argument(
            "the l402-testkit LND simulator pays payment_request payments only (no dest/amt/keysend)",
        ));
    }
    if r.fee_limit_sat != 0 && r.fee_limit_msat != 0 {
        return Err(Status::unknown("sat and msat arguments are mutually exclusive"));
    }
    if r.amt < 0 || r.amt_msat < 0 || r.fee_limit_sat < 0 || r.fee_limit_msat < 0 {
        return Err(Status::unknown("amount cannot be negative"));
    }
    let (parsed, decoded) = decode_for(&sim.network, &r.payment_request)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    if parsed.would_expire(now) {
        let valid_until = decoded.timestamp.saturating_add(decoded.expiry);
        return Err(Status::unknown(format!("invoice expired. Valid until {valid_until} (unix)")));
    }
    let requested = if r.amt != 0 { r.amt.saturating_mul(1000) } else { r.amt_msat };
    let amount = match (decoded.num_msat, requested) {
        (0, 0) => return Err(Status::unknown("amount must be specified when paying a zero amount invoice")),
        (0, requested) => requested,
        (_, 0) => decoded.num_msat,
        _ => return Err(Status::unknown("amount must not be specified when paying a non-zero amount invoice")),
    };
    let fee_limit = if r.fee_limit_sat != 0 { r.fee_limit_sat.saturating_mul(1000) } else { r.fee_limit_msat };
    let timeout = if r.timeout_seconds <= 0 { DEFAULT_PAYMENT_TIMEOUT } else { r.timeout_seconds };
    let hash = PaymentHash::from_hex(&decoded.payment_hash).map_err(|e| Status::unknown(e.to_string()))?;
    let request = PayRequest {
        bolt11: r.payment_request.clone(),
        payment_hash: hash,
        amount: Msat(u64::try_from(amount).unwrap_or(0)),
        max_fee: Msat(u64::try_from(fee_limit).unwrap_or(0)),
        timeout: Duration::from_secs(u64::try_from(timeout).unwrap_or(60)),
    };
    let record = lnrpc::Payment {
        payment_hash: decoded.payment_hash,
        value_msat: amount,
        value_sat: amount / 1000,
        payment_request: r.payment_request.clone(),
        ..Default::default()
    };
    Ok((hash, request, record))
}

/// Runs one payment: injected failures, holds, then the backend's real payment, recording each step.
async fn run_payment(sim: Arc<Sim>, hash: PaymentHash, request: PayRequest, faults: PaymentFaults) {
    if let Some(reason) = faults.fail_with {
        sim.update_payment(&hash, |p| {
            // LND gives up on TIMEOUT and INCORRECT_PAYMENT_DETAILS after an HTLC went out and came back.
            if matches!(reason, Reason::FailureReasonTimeout | Reason::FailureReasonIncorrectPaymentDetails) {
                note_attempt(p, 1);
            }
            mark_failed(p, reason);
        });
        return;
    }
    if let Some(hold) = faults.hold.or(faults.drop_stream.then_some(DROP_HOLD)) {
        sim.update_payment(&hash, |p| {
            p.status = PaymentStatus::InFlight as i32;
            note_attempt(p, 1);
        });
        tokio::time::sleep(hold).await;
    }
    if request.max_fee == Msat(0) {
        // LND with a zero fee limit tries zero-fee routes only; the simulator does not route, and the
        // backends refuse a zero limit, so it reports what LND reports for any route that charges fees.
        sim.update_payment(&hash, |p| mark_failed(p, Reason::FailureReasonNoRoute));
        return;
    }
    sim.count_backend_payment();
    let progress = |event: PaymentEvent| sim.apply_event(&hash, &event);
    let mut result = sim.backend.pay(&request, &progress).await;
    while let Err(PayError::OutcomeUnknown(reason)) = &result {
        // The backend lost track; LND would keep the payment IN_FLIGHT until it learns the outcome.
        tracing::warn!(%hash, %reason, "backend does not know the outcome yet; tracking");
        tokio::time::sleep(Duration::from_secs(1)).await;
        result = sim.backend.track_payment(&hash, Duration::from_secs(60), &progress).await;
    }
    match result {
        Ok(success) => sim.update_payment(&hash, |p| mark_succeeded(p, &success)),
        Err(PayError::Failed(failure)) => sim.update_payment(&hash, |p| mark_failed(p, reason_for(&failure))),
        Err(other) => {
            tracing::warn!(%hash, error = %other, "backend refused the payment");
            sim.update_payment(&hash, |p| mark_failed(p, Reason::FailureReasonError));
        }
    }
}

/// A payment's updates as a gRPC stream; with `drop_stream`, every connection is cut once it is IN_FLIGHT.
fn payment_stream(
    sim: Arc<Sim>,
    rx: mpsc::UnboundedReceiver<lnrpc::Payment>,
    no_inflight_updates: bool,
    drop_stream: bool,
) -> GrpcStream<lnrpc::Payment> {
    let state = (rx, drop_stream);
    Box::pin(futures_util::stream::unfold(state, move |(mut rx, mut drop_pending)| {
        let sim = sim.clone();
        async move {
            loop {
                let payment = rx.recv().await?;
                let status = payment.status();
                if drop_pending && status == PaymentStatus::InFlight {
                    drop_pending = false;
                    let sim = sim.clone();
                    tokio::spawn(async move {
                        tokio::time::sleep(DROP_DELAY).await;
                        tracing::info!("fault: cutting every connection mid-payment");
                        sim.cut_connections();
                    });
                }
                if no_inflight_updates && matches!(status, PaymentStatus::Initiated | PaymentStatus::InFlight) {
                    continue;
                }
                return Some((Ok(payment), (rx, drop_pending)));
            }
        }
    }))
}

/// What the backend knows of a payment the simulator never saw, as LND's record.
async fn adopt_from_backend(sim: &Arc<Sim>, hash: PaymentHash) -> Result<(), Status> {
    let status = sim.backend.payment_status(&hash).await.map_err(crate::sim::backend_status)?;
    let mut record = lnrpc::Payment { payment_hash: hash.to_hex(), ..Default::default() };
    match status {
        BackendStatus::Unknown => return Err(Status::not_found("payment isn't initiated")),
        BackendStatus::InFlight => record.status = PaymentStatus::InFlight as i32,
        BackendStatus::Succeeded(s) => mark_succeeded(&mut record, &s),
        BackendStatus::Failed(f) => mark_failed(&mut record, reason_for(&f)),
    }
    let in_flight = record.status() == PaymentStatus::InFlight;
    sim.adopt_payment(hash, record);
    if in_flight {
        let sim = sim.clone();
        tokio::spawn(async move {
            let progress = |event: PaymentEvent| sim.apply_event(&hash, &event);
            match sim.backend.track_payment(&hash, Duration::from_secs(3600), &progress).await {
                Ok(s) => sim.update_payment(&hash, |p| mark_succeeded(p, &s)),
                Err(PayError::Failed(f)) => sim.update_payment(&hash, |p| mark_failed(p, reason_for(&f))),
                Err(e) => tracing::warn!(%hash, error = %e, "could not learn an adopted payment's outcome"),
            }
        });
    }
    Ok(())
}

#[tonic::async_trait]
impl Router for RouterService {
    type SendPaymentV2Stream = GrpcStream<lnrpc::Payment>;

    async fn send_payment_v2(
        &self,
        request: Request<SendPaymentRequest>,
    ) -> Result<Response<Self::SendPaymentV2Stream>, Status> {
        self.sim.macaroons.check(request.metadata(), Permission::OffchainWrite)?;
        let request = request.into_inner();
        let (hash, pay, record) = validate(&self.sim, &request)?;
        let faults = lock(&self.sim.faults).take_payment_faults();
        self.sim.begin_payment(hash, record)?;
        let rx = self.sim.subscribe_payment(&hash);
        tokio::spawn(run_payment(self.sim.clone(), hash, pay, faults.clone()));
        if faults.already_exists {
            return Err(Status::already_exists("payment is in transition"));
        }
        let rx = rx.ok_or_else(|| Status::internal("payment vanished"))?;
        Ok(Response::new(payment_stream(self.sim.clone(), rx, request.no_inflight_updates, faults.drop_stream)))
    }

    type TrackPaymentV2Stream = GrpcStream<lnrpc::Payment>;

    async fn track_payment_v2(
        &self,
        request: Request<TrackPaymentRequest>,
    ) -> Result<Response<Self::TrackPaymentV2Stream>, Status> {
        self.sim.macaroons.check(request.metadata(), Permission::OffchainRead)?;
        let request = request.into_inner();
        let hash = make_hash(&request.payment_hash)?;
        let rx = match self.sim.subscribe_payment(&hash) {
            Some(rx) => rx,
            None => {
                adopt_from_backend(&self.sim, hash).await?;
                self.sim.subscribe_payment(&hash).ok_or_else(|| Status::not_found("payment isn't initiated"))?
            }
        };
        Ok(Response::new(payment_stream(self.sim.clone(), rx, request.no_inflight_updates, false)))
    }
}

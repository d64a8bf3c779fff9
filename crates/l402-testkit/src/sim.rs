//! The simulator's shared state: the backend, macaroons, faults, and LND's invoice and payment books (the
//! indexes and per-payment subscriber queues LND keeps, which the backend traits do not have).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use l402_lightning::{
    InvoiceIssuer, InvoiceState, LightningError, LightningErrorKind, Payer, PaymentEvent, PaymentFailure,
    PaymentSuccess, Settlement,
};
use l402_lnd::proto::lnrpc::{
    self, HtlcAttempt, PaymentFailureReason as Reason, Route, htlc_attempt::HtlcStatus,
    invoice::InvoiceState as LndInvoiceState, payment::PaymentStatus,
};
use l402_proto::PaymentHash;
use l402_proto::lightning_invoice::Currency;
use tokio::sync::{broadcast, mpsc};
use tokio::task::AbortHandle;
use tonic::Status;

use crate::auth::Macaroons;
use crate::faults::FaultBook;

/// What the simulator needs of the node behind it: both sides of the `l402-lightning` traits. Implemented
/// for every type that has them (in tests, `l402_ldk::LdkNode`).
pub trait Backend: InvoiceIssuer + Payer {}

impl<T: InvoiceIssuer + Payer + ?Sized> Backend for T {}

/// Locks a mutex, recovering from poisoning (a panicked test thread must not wedge the simulator).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

pub(crate) fn now_secs() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0)
}

pub(crate) fn now_ns() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as i64).unwrap_or(0)
}

fn msat_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A backend error as the status LND would give for it.
pub(crate) fn backend_status(e: LightningError) -> Status {
    match e.kind {
        LightningErrorKind::Unavailable | LightningErrorKind::Timeout => Status::unavailable(e.message),
        LightningErrorKind::NotFound => Status::not_found(e.message),
        _ => Status::unknown(e.message),
    }
}

/// LND's `lntypes.MakeHash`.
pub(crate) fn make_hash(bytes: &[u8]) -> Result<PaymentHash, Status> {
    <[u8; 32]>::try_from(bytes)
        .map(PaymentHash)
        .map_err(|_| Status::unknown(format!("invalid hash length of {}, want 32", bytes.len())))
}

/// Invoices by hash, with LND's add and settle indexes.
#[derive(Default)]
pub(crate) struct InvoiceBook {
    by_hash: HashMap<PaymentHash, lnrpc::Invoice>,
    next_add: u64,
    next_settle: u64,
}

impl InvoiceBook {
    pub(crate) fn add(&mut self, hash: PaymentHash, mut invoice: lnrpc::Invoice) -> lnrpc::Invoice {
        self.next_add += 1;
        invoice.add_index = self.next_add;
        self.by_hash.insert(hash, invoice.clone());
        invoice
    }

    pub(crate) fn added_after(&self, index: u64) -> Vec<lnrpc::Invoice> {
        let mut v: Vec<_> = self.by_hash.values().filter(|i| i.add_index > index).cloned().collect();
        v.sort_by_key(|i| i.add_index);
        v
    }

    pub(crate) fn settled_after(&self, index: u64) -> Vec<lnrpc::Invoice> {
        let mut v: Vec<_> = self.by_hash.values().filter(|i| i.settle_index > index).cloned().collect();
        v.sort_by_key(|i| i.settle_index);
        v
    }
}

/// One payment: LND's current record of it and the streams following it.
struct PaymentEntry {
    current: lnrpc::Payment,
    subscribers: Vec<mpsc::UnboundedSender<lnrpc::Payment>>,
}

/// Payments by hash.
#[derive(Default)]
pub(crate) struct PaymentBook {
    by_hash: HashMap<PaymentHash, PaymentEntry>,
    next_index: u64,
}

pub(crate) fn is_final(p: &lnrpc::Payment) -> bool {
    matches!(p.status(), PaymentStatus::Succeeded | PaymentStatus::Failed)
}

/// A [`PaymentFailure`] as LND's failure reason.
pub(crate) fn reason_for(failure: &PaymentFailure) -> Reason {
    match failure {
        PaymentFailure::NoRoute => Reason::FailureReasonNoRoute,
        PaymentFailure::Timeout => Reason::FailureReasonTimeout,
        PaymentFailure::InsufficientBalance => Reason::FailureReasonInsufficientBalance,
        PaymentFailure::IncorrectPaymentDetails => Reason::FailureReasonIncorrectPaymentDetails,
        PaymentFailure::Canceled => Reason::FailureReasonCanceled,
        _ => Reason::FailureReasonError,
    }
}

fn attempt(id: u64) -> HtlcAttempt {
    HtlcAttempt { attempt_id: id, status: HtlcStatus::InFlight as i32, attempt_time_ns: now_ns(), ..Default::default() }
}

/// Records an HTLC attempt (earlier ones still in flight are taken as failed: the backend moved on).
pub(crate) fn note_attempt(p: &mut lnrpc::Payment, id: u64) {
    if p.htlcs.iter().any(|h| h.attempt_id == id) {
        return;
    }
    for h in p.htlcs.iter_mut().filter(|h| h.status() == HtlcStatus::InFlight) {
        h.status = HtlcStatus::Failed as i32;
        h.resolve_time_ns = now_ns();
    }
    p.htlcs.push(attempt(id));
}

/// Marks a payment SUCCEEDED as LND reports it: preimage as hex, amounts and fees, the settled HTLC.
pub(crate) fn mark_succeeded(p: &mut lnrpc::Payment, s: &PaymentSuccess) {
    p.status = PaymentStatus::Succeeded as i32;
    p.payment_preimage = s.preimage.to_hex();
    p.value_msat = msat_i64(s.amount.msat());
    p.value_sat = p.value_msat / 1000;
    p.fee_msat = msat_i64(s.fee.msat());
    p.fee_sat = p.fee_msat / 1000;
    p.failure_reason = Reason::FailureReasonNone as i32;
    if p.htlcs.is_empty() {
        p.htlcs.push(attempt(1));
    }
    if let Some(last) = p.htlcs.last_mut() {
        last.status = HtlcStatus::Succeeded as i32;
        last.resolve_time_ns = now_ns();
        last.preimage = s.preimage.0.to_vec();
        last.route = Some(Route {
            total_fees_msat: p.fee_msat,
            total_amt_msat: p.value_msat + p.fee_msat,
            ..Default::default()
        });
    }
}

/// Marks a payment FAILED with `reason`; attempts still in flight fail with it.
pub(crate) fn mark_failed(p: &mut lnrpc::Payment, reason: Reason) {
    p.status = PaymentStatus::Failed as i32;
    p.failure_reason = reason as i32;
    for h in p.htlcs.iter_mut().filter(|h| h.status() == HtlcStatus::InFlight) {
        h.status = HtlcStatus::Failed as i32;
        h.resolve_time_ns = now_ns();
    }
}

/// Everything the services share.
pub(crate) struct Sim {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) network: Currency,
    pub(crate) macaroons: Macaroons,
    pub(crate) faults: Mutex<FaultBook>,
    pub(crate) invoices: Mutex<InvoiceBook>,
    pub(crate) invoice_events: broadcast::Sender<lnrpc::Invoice>,
    payments: Mutex<PaymentBook>,
    pub(crate) connections: Mutex<HashMap<u64, AbortHandle>>,
    pub(crate) backend_payments: AtomicU64,
    pub(crate) connection_cuts: AtomicU64,
}

impl Sim {
    pub(crate) fn new(backend: Arc<dyn Backend>, network: Currency, macaroons: Macaroons) -> Self {
        Self {
            backend,
            network,
            macaroons,
            faults: Mutex::default(),
            invoices: Mutex::default(),
            invoice_events: broadcast::channel(1024).0,
            payments: Mutex::default(),
            connections: Mutex::default(),
            backend_payments: AtomicU64::new(0),
            connection_cuts: AtomicU64::new(0),
        }
    }

    /// Cuts every open connection (their streams end with a transport error on the client).
    pub(crate) fn cut_connections(&self) {
        self.connection_cuts.fetch_add(1, Ordering::SeqCst);
        for (_, handle) in lock(&self.connections).drain() {
            handle.abort();
        }
    }

    /// Brings the invoice book in line with what the backend says of an invoice, and returns LND's record.
    /// A new settlement gets the next settle index and goes to `SubscribeInvoices` streams.
    pub(crate) fn apply_invoice_state(&self, hash: PaymentHash, state: &InvoiceState) -> lnrpc::Invoice {
        let mut book = lock(&self.invoices);
        if !book.by_hash.contains_key(&hash) {
            // An invoice the backend issued without us: LND would know it; give it an add index.
            let bare = lnrpc::Invoice { r_hash: hash.0.to_vec(), creation_date: now_secs(), ..Default::default() };
            book.add(hash, bare);
        }
        let mut settled_now = false;
        let next_settle = book.next_settle + 1;
        let record = book.by_hash.get_mut(&hash).unwrap_or_else(|| unreachable!("inserted above"));
        match state {
            InvoiceState::Settled(s) if record.state() != LndInvoiceState::Settled => {
                settle(record, s, next_settle);
                settled_now = true;
            }
            InvoiceState::Accepted if record.state() == LndInvoiceState::Open => {
                record.state = LndInvoiceState::Accepted as i32;
            }
            InvoiceState::Canceled if record.state() != LndInvoiceState::Settled => {
                record.state = LndInvoiceState::Canceled as i32;
            }
            _ => {}
        }
        let record = record.clone();
        if settled_now {
            book.next_settle = next_settle;
            let _ = self.invoice_events.send(record.clone());
        }
        record
    }

    /// A settlement reported by the backend's settlement stream.
    pub(crate) fn on_settlement(&self, s: &Settlement) {
        self.apply_invoice_state(s.payment_hash, &InvoiceState::Settled(s.clone()));
    }

    /// Registers a new payment (INITIATED), or refuses as LND does when one to this hash exists and has not
    /// failed.
    pub(crate) fn begin_payment(&self, hash: PaymentHash, mut template: lnrpc::Payment) -> Result<(), Status> {
        let mut book = lock(&self.payments);
        if let Some(existing) = book.by_hash.get(&hash) {
            let message = match existing.current.status() {
                PaymentStatus::Failed => None,
                PaymentStatus::Succeeded => Some("invoice is already paid"),
                PaymentStatus::InFlight => Some("payment is in transition"),
                _ => Some("payment already exists"),
            };
            if let Some(message) = message {
                return Err(Status::already_exists(message));
            }
        }
        book.next_index += 1;
        template.payment_index = book.next_index;
        template.status = PaymentStatus::Initiated as i32;
        template.creation_time_ns = now_ns();
        book.by_hash.insert(hash, PaymentEntry { current: template, subscribers: Vec::new() });
        Ok(())
    }

    /// Adopts a payment the backend made on its own (LND would know every payment of its node).
    pub(crate) fn adopt_payment(&self, hash: PaymentHash, payment: lnrpc::Payment) {
        let mut book = lock(&self.payments);
        if book.by_hash.contains_key(&hash) {
            return;
        }
        book.next_index += 1;
        let mut payment = payment;
        payment.payment_index = book.next_index;
        book.by_hash.insert(hash, PaymentEntry { current: payment, subscribers: Vec::new() });
    }

    /// Changes a payment's record (unless it is already final) and sends the new state to its followers.
    pub(crate) fn update_payment(&self, hash: &PaymentHash, change: impl FnOnce(&mut lnrpc::Payment)) {
        let mut book = lock(&self.payments);
        let Some(entry) = book.by_hash.get_mut(hash) else { return };
        if is_final(&entry.current) {
            return;
        }
        let before = entry.current.clone();
        change(&mut entry.current);
        if entry.current == before {
            return;
        }
        let current = entry.current.clone();
        entry.subscribers.retain(|s| s.send(current.clone()).is_ok());
        if is_final(&current) {
            entry.subscribers.clear();
        }
    }

    /// A payment's progress event from the backend, as LND would record it.
    pub(crate) fn apply_event(&self, hash: &PaymentHash, event: &PaymentEvent) {
        self.update_payment(hash, |p| match event {
            PaymentEvent::Initiated => {}
            PaymentEvent::InFlight => p.status = PaymentStatus::InFlight as i32,
            PaymentEvent::Attempt { number } => {
                p.status = PaymentStatus::InFlight as i32;
                note_attempt(p, u64::from(*number));
            }
            PaymentEvent::Succeeded(s) => mark_succeeded(p, s),
            PaymentEvent::Failed(f) => mark_failed(p, reason_for(f)),
        });
    }

    /// A queue with the payment's current state first, then every change until it is final (LND's control
    /// tower subscription). `None` if the simulator knows no payment to this hash.
    pub(crate) fn subscribe_payment(&self, hash: &PaymentHash) -> Option<mpsc::UnboundedReceiver<lnrpc::Payment>> {
        let mut book = lock(&self.payments);
        let entry = book.by_hash.get_mut(hash)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(entry.current.clone());
        if !is_final(&entry.current) {
            entry.subscribers.push(tx);
        }
        Some(rx)
    }

    pub(crate) fn count_backend_payment(&self) {
        self.backend_payments.fetch_add(1, Ordering::SeqCst);
    }
}

fn settle(record: &mut lnrpc::Invoice, s: &Settlement, settle_index: u64) {
    record.state = LndInvoiceState::Settled as i32;
    record.settled = true;
    record.settle_index = settle_index;
    record.settle_date = i64::try_from(s.settled_at).unwrap_or(0);
    record.amt_paid_msat = msat_i64(s.amount_received.msat());
    record.amt_paid_sat = record.amt_paid_msat / 1000;
}

//! What tests and benchmarks that pay on the network keep needing: an invoice, a payment request with the
//! usual limits, what an LDK node recorded of a payment, and a timed run of payments.

use std::time::{Duration, Instant};

use l402_ldk::LdkNode;
use l402_lightning::{InvoiceIssuer, InvoiceRequest, PayRequest, Payer};
use l402_proto::{Msat, PaymentHash};

/// An invoice of `sats` from `issuer` (ten minutes of expiry): its BOLT-11 string and payment hash. Panics if
/// the issuer refuses (a test or benchmark cannot go on).
pub async fn invoice(issuer: &dyn InvoiceIssuer, sats: u64) -> (String, PaymentHash) {
    let req =
        InvoiceRequest { amount: Msat::from_sat(sats), memo: "l402 test".into(), expiry: Duration::from_secs(600) };
    let inv = issuer.create_invoice(&req).await.expect("invoice");
    (inv.bolt11, inv.payment_hash)
}

/// An amountless invoice from `issuer` (any amount; ten minutes of expiry): its BOLT-11 string and payment
/// hash. Panics if the issuer refuses.
pub async fn amountless_invoice(issuer: &dyn InvoiceIssuer) -> (String, PaymentHash) {
    let req = InvoiceRequest { amount: Msat(0), memo: "l402 test refund".into(), expiry: Duration::from_secs(600) };
    let inv = issuer.create_invoice(&req).await.expect("amountless invoice");
    (inv.bolt11, inv.payment_hash)
}

/// A request to pay `bolt11` (for `sats`), with a 10-sat fee limit and a 30 s timeout.
pub fn pay_request(bolt11: &str, hash: PaymentHash, sats: u64) -> PayRequest {
    PayRequest {
        bolt11: bolt11.into(),
        payment_hash: hash,
        amount: Msat::from_sat(sats),
        max_fee: Msat(10_000),
        timeout: Duration::from_secs(30),
    }
}

/// How many outbound payments to `hash` the LDK node has on record (what really left it).
pub fn outbound_payments_to(node: &LdkNode, hash: &PaymentHash) -> usize {
    use l402_ldk::ldk_node::payment::{PaymentDirection, PaymentKind};
    node.inner()
        .list_payments_with_filter(|p| {
            p.direction == PaymentDirection::Outbound
                && matches!(&p.kind, PaymentKind::Bolt11 { hash: h, .. } if h.0 == hash.0)
        })
        .len()
}

/// The routing fee the LDK node recorded for its payment to `hash`, msat.
pub fn ldk_fee(node: &LdkNode, hash: &PaymentHash) -> Option<u64> {
    node.inner()
        .payment(&l402_ldk::ldk_node::lightning::ln::channelmanager::PaymentId(hash.0))
        .and_then(|p| p.fee_paid_msat)
}

/// Pays `n` fresh 1,000-sat invoices of `payee` from `payer`, one after the other, and returns how long each
/// payment took (invoice creation not counted), shortest first. Panics on a failed payment.
pub async fn timed_payments(payee: &dyn InvoiceIssuer, payer: &dyn Payer, n: usize) -> Vec<Duration> {
    let mut latencies = Vec::with_capacity(n);
    for _ in 0..n {
        let (bolt11, hash) = invoice(payee, 1_000).await;
        let t = Instant::now();
        payer.pay(&pay_request(&bolt11, hash, 1_000), &|_| {}).await.expect("paid");
        latencies.push(t.elapsed());
    }
    latencies.sort();
    latencies
}

/// `median M ms over N (min A ms, max B ms)` for latencies sorted shortest first.
pub fn latency_summary(sorted: &[Duration]) -> String {
    let ms = |d: Option<&Duration>| d.map_or(0.0, |d| d.as_secs_f64() * 1e3);
    format!(
        "median {:.1} ms over {} (min {:.1} ms, max {:.1} ms)",
        ms(sorted.get(sorted.len() / 2)),
        sorted.len(),
        ms(sorted.first()),
        ms(sorted.last())
    )
}

/// Where a recorder (see [`recorder`]) keeps the progress events of a payment.
pub type Events = std::sync::Arc<std::sync::Mutex<Vec<l402_lightning::PaymentEvent>>>;

/// A progress callback for [`Payer::pay`] that records every event, and the record.
pub fn recorder() -> (Events, impl Fn(l402_lightning::PaymentEvent) + Send + Sync + 'static) {
    let events = Events::default();
    let sink = events.clone();
    (events, move |e| sink.lock().map(|mut v| v.push(e)).unwrap_or_default())
}

/// The events recorded so far.
pub fn events_of(events: &Events) -> Vec<l402_lightning::PaymentEvent> {
    events.lock().map(|v| v.clone()).unwrap_or_default()
}

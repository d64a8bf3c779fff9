//! The proxy's metrics for `/metrics`: the paywall's (challenges, payments, revenue and refusals by service,
//! Lightning backend errors), the requests by outcome, the upstream and store latencies, the node probe
//! (reachability, channel liquidity) and the build.
//!
//! Every counter a request touches is sharded by thread ([`l402_server::metrics::Counter`],
//! [`Histogram`]): no shared atomic on the hot path.

use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::services::Registry;
use async_trait::async_trait;
use l402_lightning::{InvoiceIssuer, LightningErrorKind};
use l402_proto::{Msat, PaymentHash, TokenId};
use l402_server::Metrics;
use l402_server::metrics::{Counter, Histogram, LightningOp, family};
use l402_server::store::{
    Balance, BalanceKey, KeyLookup, NewSession, NewToken, Reserve, Revenue, Revocation, SessionClose, SessionCredit,
    SessionDebit, SessionInfo, SessionOpen, SpentCharge, StoreError, StoredService, TokenInfo, TokenQuery, TokenStore,
    Usage, UsageAdd, UsedToken,
};

/// Upstream latency bounds, microseconds (1 ms to 30 s).
static UPSTREAM_BOUNDS_US: [u64; 12] =
    [1_000, 2_000, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 5_000_000, 30_000_000];

/// Store latency bounds, microseconds (100 µs to 5 s).
static STORE_BOUNDS_US: [u64; 15] = [
    100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000,
    5_000_000,
];

/// The store calls, as the `operation` label names them.
#[derive(Clone, Copy, Debug)]
enum StoreOp {
    Insert,
    Lookup,
    Revoke,
    RevokeId,
    RevocationsSince,
    Record,
    MarkPaid,
    List,
    Revenue,
    SpendCharge,
    OpenBalance,
    Reserve,
    Settle,
    Balance,
    PutService,
    Services,
    ServicesVersion,
    AddUsage,
    UsageSince,
    UsageVersion,
    PruneUsage,
    OpenSession,
    Session,
    DebitSession,
    UndoSessionDebit,
    CreditSession,
    BeginClose,
    FinishClose,
    Sessions,
}

const STORE_OPS: [&str; 29] = [
    "insert",
    "lookup",
    "revoke",
    "revoke_id",
    "revocations_since",
    "record",
    "mark_paid",
    "list",
    "revenue",
    "spend_charge",
    "open_balance",
    "reserve",
    "settle",
    "balance",
    "put_service",
    "services",
    "services_version",
    "add_usage",
    "usage_since",
    "usage_version",
    "prune_usage",
    "open_session",
    "session",
    "debit_session",
    "undo_session_debit",
    "credit_session",
    "begin_close",
    "finish_close",
    "sessions",
];

/// What the last probes of the node found.
#[derive(Debug, Default)]
struct NodeGauges {
    up: AtomicU64,
    last_ok: AtomicU64,
    block_height: AtomicU64,
    balance_known: AtomicBool,
    balance_refused: AtomicBool,
    inbound_msat: AtomicU64,
    outbound_msat: AtomicU64,
}

/// The proxy's metrics.
#[derive(Debug)]
pub struct ProxyMetrics {
    /// The paywall's counters (challenges, payments, refusals, revenue, backend errors).
    pub paywall: Arc<Metrics>,
    /// Upstream latency.
    pub upstream_latency: Histogram,
    outcomes: [Counter; OUTCOMES.len()],
    store_latency: [Histogram; STORE_OPS.len()],
    store_errors: [Counter; STORE_OPS.len()],
    node: NodeGauges,
    started_at: f64,
    /// The live services, for their paid-request counters (weak: the registry's store holds these metrics).
    services: std::sync::OnceLock<std::sync::Weak<Registry>>,
}

impl Default for ProxyMetrics {
    fn default() -> Self {
        Self {
            paywall: Arc::default(),
            upstream_latency: Histogram::new(&UPSTREAM_BOUNDS_US),
            outcomes: Default::default(),
            store_latency: std::array::from_fn(|_| Histogram::new(&STORE_BOUNDS_US)),
            store_errors: Default::default(),
            node: NodeGauges::default(),
            started_at: unix_now().as_secs_f64(),
            services: std::sync::OnceLock::new(),
        }
    }
}

fn unix_now() -> Duration {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
}

/// What happened to a request (one counter each; no lock on the request path).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Forwarded,
    Challenged,
    Refused,
    RateLimited,
    UpstreamError,
    NoRoute,
    /// Refused by the proxy itself before the paywall: a path without a canonical form (400), a method no
    /// route allows (405), a body over the limit (413).
    BadRequest,
}

const OUTCOMES: [&str; 7] =
    ["forwarded", "challenged", "refused", "rate_limited", "upstream_error", "no_route", "bad_request"];

/// How long a probe call may take before the node counts as unreachable.
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

impl ProxyMetrics {
    pub(crate) fn count(&self, outcome: Outcome) {
        self.outcomes[outcome as usize].inc();
    }

    /// Renders the paid requests of these services (the proxy's live table).
    pub(crate) fn serve_services(&self, services: &Arc<Registry>) {
        let _ = self.services.set(Arc::downgrade(services));
    }

    /// Probes the node once: `info` (reachability, height), then its channel balances.
    pub async fn probe(&self, node: &dyn InvoiceIssuer) {
        let n = &self.node;
        match tokio::time::timeout(PROBE_TIMEOUT, node.info()).await {
            Ok(Ok(info)) => {
                n.up.store(1, Ordering::Relaxed);
                n.last_ok.store(unix_now().as_secs(), Ordering::Relaxed);
                n.block_height.store(u64::from(info.block_height), Ordering::Relaxed);
            }
            Ok(Err(e)) => {
                n.up.store(0, Ordering::Relaxed);
                self.paywall.lightning_error(LightningOp::Info);
                tracing::warn!(error = %e, "node probe: the Lightning node does not answer");
                return;
            }
            Err(_) => {
                n.up.store(0, Ordering::Relaxed);
                self.paywall.lightning_error(LightningOp::Info);
                tracing::warn!("node probe: the Lightning node did not answer in time");
                return;
            }
        }
        match tokio::time::timeout(PROBE_TIMEOUT, node.channel_balance()).await {
            Ok(Ok(b)) => {
                n.inbound_msat.store(b.inbound.0, Ordering::Relaxed);
                n.outbound_msat.store(b.outbound.0, Ordering::Relaxed);
                n.balance_known.store(true, Ordering::Relaxed);
            }
            // A backend that keeps no balances, or a macaroon without `offchain:read`: no liquidity gauges,
            // said once, not counted as a failure every probe.
            Ok(Err(e))
                if matches!(e.kind, LightningErrorKind::Unauthenticated | LightningErrorKind::InvalidRequest) =>
            {
                if !n.balance_refused.swap(true, Ordering::Relaxed) {
                    tracing::warn!(error = %e, "node probe: channel balances not readable (no liquidity metrics)");
                }
            }
            Ok(Err(e)) => {
                self.paywall.lightning_error(LightningOp::ChannelBalance);
                tracing::warn!(error = %e, "node probe: channel balances failed");
            }
            Err(_) => self.paywall.lightning_error(LightningOp::ChannelBalance),
        }
    }

    /// The channel liquidity the last probe found (inbound, outbound), if any probe found it.
    pub fn liquidity(&self) -> Option<(Msat, Msat)> {
        let n = &self.node;
        n.balance_known
            .load(Ordering::Relaxed)
            .then(|| (Msat(n.inbound_msat.load(Ordering::Relaxed)), Msat(n.outbound_msat.load(Ordering::Relaxed))))
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.paywall.render(&mut out);
        family(&mut out, "l402_proxy_requests_total", "counter", "Requests by outcome.");
        for (i, name) in OUTCOMES.iter().enumerate() {
            let _ = writeln!(out, "l402_proxy_requests_total{{outcome=\"{name}\"}} {}", self.outcomes[i].get());
        }
        family(
            &mut out,
            "l402_paid_requests_total",
            "counter",
            "Requests forwarded on a token or a charge, by service.",
        );
        if let Some(registry) = self.services.get().and_then(std::sync::Weak::upgrade) {
            for service in &registry.current().services {
                let name = l402_server::metrics::label_value(&service.spec.name);
                let _ = writeln!(out, "l402_paid_requests_total{{service=\"{name}\"}} {}", service.paid_requests.get());
            }
        }
        let h = "l402_proxy_upstream_latency_seconds";
        family(&mut out, h, "histogram", "Time to the upstream's response headers, seconds.");
        self.upstream_latency.render(h, "", &mut out);
        let h = "l402_store_latency_seconds";
        family(&mut out, h, "histogram", "Time of token store calls, seconds, by operation.");
        for (i, op) in STORE_OPS.iter().enumerate() {
            if self.store_latency[i].count() > 0 {
                self.store_latency[i].render(h, &format!("operation=\"{op}\","), &mut out);
            }
        }
        family(&mut out, "l402_store_errors_total", "counter", "Failed token store calls, by operation.");
        for (i, op) in STORE_OPS.iter().enumerate() {
            if self.store_latency[i].count() > 0 {
                let _ = writeln!(out, "l402_store_errors_total{{operation=\"{op}\"}} {}", self.store_errors[i].get());
            }
        }
        let n = &self.node;
        let gauge = |out: &mut String, name: &str, help: &str, v: u64| {
            family(out, name, "gauge", help);
            let _ = writeln!(out, "{name} {v}");
        };
        gauge(
            &mut out,
            "l402_node_up",
            "1 if the last probe of the Lightning node succeeded, else 0.",
            n.up.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "l402_node_last_probe_success_timestamp_seconds",
            "When the Lightning node last answered a probe, Unix seconds (0: never).",
            n.last_ok.load(Ordering::Relaxed),
        );
        gauge(
            &mut out,
            "l402_node_block_height",
            "The best block height the Lightning node reported.",
            n.block_height.load(Ordering::Relaxed),
        );
        if let Some((inbound, outbound)) = self.liquidity() {
            gauge(
                &mut out,
                "l402_channel_inbound_liquidity_msat",
                "What the node's usable channels can receive, in millisatoshis.",
                inbound.0,
            );
            gauge(
                &mut out,
                "l402_channel_outbound_liquidity_msat",
                "What the node's usable channels can send, in millisatoshis.",
                outbound.0,
            );
        }
        family(&mut out, "l402_build_info", "gauge", "The running l402 proxy's version (always 1).");
        let _ = writeln!(out, "l402_build_info{{version=\"{}\"}} 1", env!("CARGO_PKG_VERSION"));
        family(&mut out, "process_start_time_seconds", "gauge", "When the proxy started, Unix seconds.");
        let _ = writeln!(out, "process_start_time_seconds {}", self.started_at);
        out
    }
}

/// Probes the node every `every` (the first probe at once) until aborted.
pub(crate) fn spawn_node_probe(
    node: Arc<dyn InvoiceIssuer>,
    metrics: Arc<ProxyMetrics>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            metrics.probe(node.as_ref()).await;
        }
    })
}

/// The token store, each call timed into `l402_store_latency_seconds` and its failures counted. Every method of
/// [`TokenStore`] is passed on, the defaulted ones too (a default here would answer for the real store).
pub(crate) struct TimedStore {
    inner: Arc<dyn TokenStore>,
    metrics: Arc<ProxyMetrics>,
}

impl TimedStore {
    pub(crate) fn wrap(inner: Arc<dyn TokenStore>, metrics: Arc<ProxyMetrics>) -> Arc<dyn TokenStore> {
        Arc::new(Self { inner, metrics })
    }

    async fn time<T>(&self, op: StoreOp, call: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
        let started = Instant::now();
        let r = call.await;
        self.metrics.store_latency[op as usize].observe(started.elapsed());
        if r.is_err() {
            self.metrics.store_errors[op as usize].inc();
        }
        r
    }
}

#[async_trait]
impl TokenStore for TimedStore {
    async fn insert(&self, token: &NewToken) -> Result<(), StoreError> {
        self.time(StoreOp::Insert, self.inner.insert(token)).await
    }
    async fn lookup(&self, id_hash: &[u8; 32]) -> Result<KeyLookup, StoreError> {
        self.time(StoreOp::Lookup, self.inner.lookup(id_hash)).await
    }
    async fn revoke(&self, token_id: &TokenId) -> Result<bool, StoreError> {
        self.time(StoreOp::Revoke, self.inner.revoke(token_id)).await
    }
    async fn revoke_id(&self, token_id: &TokenId) -> Result<bool, StoreError> {
        self.time(StoreOp::RevokeId, self.inner.revoke_id(token_id)).await
    }
    async fn revocations_since(&self, after: u64, limit: u32) -> Result<Vec<Revocation>, StoreError> {
        self.time(StoreOp::RevocationsSince, self.inner.revocations_since(after, limit)).await
    }
    async fn record(&self, tokens: &[UsedToken]) -> Result<Vec<bool>, StoreError> {
        self.time(StoreOp::Record, self.inner.record(tokens)).await
    }
    async fn mark_paid(&self, payment_hash: &PaymentHash, amount: Option<Msat>, at: u64) -> Result<bool, StoreError> {
        self.time(StoreOp::MarkPaid, self.inner.mark_paid(payment_hash, amount, at)).await
    }
    async fn list(&self, query: &TokenQuery) -> Result<Vec<TokenInfo>, StoreError> {
        self.time(StoreOp::List, self.inner.list(query)).await
    }
    async fn revenue(&self) -> Result<Vec<Revenue>, StoreError> {
        self.time(StoreOp::Revenue, self.inner.revenue()).await
    }
    async fn spend_charge(&self, charge: &SpentCharge) -> Result<bool, StoreError> {
        self.time(StoreOp::SpendCharge, self.inner.spend_charge(charge)).await
    }
    async fn open_balance(&self, key: &BalanceKey, service: &str, bundle: Msat, at: u64) -> Result<bool, StoreError> {
        self.time(StoreOp::OpenBalance, self.inner.open_balance(key, service, bundle, at)).await
    }
    async fn reserve(&self, key: &BalanceKey, amount: Msat) -> Result<Reserve, StoreError> {
        self.time(StoreOp::Reserve, self.inner.reserve(key, amount)).await
    }
    async fn settle(&self, key: &BalanceKey, reserved: Msat, debit: Msat, at: u64) -> Result<Msat, StoreError> {
        self.time(StoreOp::Settle, self.inner.settle(key, reserved, debit, at)).await
    }
    async fn balance(&self, key: &BalanceKey) -> Result<Option<Balance>, StoreError> {
        self.time(StoreOp::Balance, self.inner.balance(key)).await
    }
    async fn put_service(&self, name: &str, config: Option<&str>) -> Result<u64, StoreError> {
        self.time(StoreOp::PutService, self.inner.put_service(name, config)).await
    }
    async fn services(&self) -> Result<Vec<StoredService>, StoreError> {
        self.time(StoreOp::Services, self.inner.services()).await
    }
    async fn services_version(&self) -> Result<u64, StoreError> {
        self.time(StoreOp::ServicesVersion, self.inner.services_version()).await
    }
    async fn add_usage(&self, adds: &[UsageAdd], at: u64) -> Result<Vec<u64>, StoreError> {
        self.time(StoreOp::AddUsage, self.inner.add_usage(adds, at)).await
    }
    async fn usage_since(&self, after: u64) -> Result<Vec<Usage>, StoreError> {
        self.time(StoreOp::UsageSince, self.inner.usage_since(after)).await
    }
    async fn usage_version(&self) -> Result<u64, StoreError> {
        self.time(StoreOp::UsageVersion, self.inner.usage_version()).await
    }
    async fn prune_usage(&self, before: u64) -> Result<u64, StoreError> {
        self.time(StoreOp::PruneUsage, self.inner.prune_usage(before)).await
    }
    async fn open_session(&self, session: &NewSession) -> Result<SessionOpen, StoreError> {
        self.time(StoreOp::OpenSession, self.inner.open_session(session)).await
    }
    async fn session(&self, id: &PaymentHash) -> Result<Option<SessionInfo>, StoreError> {
        self.time(StoreOp::Session, self.inner.session(id)).await
    }
    async fn debit_session(
        &self,
        id: &PaymentHash,
        service: &str,
        amount: Msat,
        at: u64,
    ) -> Result<SessionDebit, StoreError> {
        self.time(StoreOp::DebitSession, self.inner.debit_session(id, service, amount, at)).await
    }
    async fn undo_session_debit(&self, id: &PaymentHash, amount: Msat, at: u64) -> Result<(), StoreError> {
        self.time(StoreOp::UndoSessionDebit, self.inner.undo_session_debit(id, amount, at)).await
    }
    async fn credit_session(
        &self,
        id: &PaymentHash,
        payment_hash: &PaymentHash,
        amount: Msat,
        at: u64,
    ) -> Result<SessionCredit, StoreError> {
        self.time(StoreOp::CreditSession, self.inner.credit_session(id, payment_hash, amount, at)).await
    }
    async fn begin_close(
        &self,
        id: &PaymentHash,
        return_invoice: Option<&str>,
        at: u64,
        stale_before: u64,
    ) -> Result<SessionClose, StoreError> {
        self.time(StoreOp::BeginClose, self.inner.begin_close(id, return_invoice, at, stale_before)).await
    }
    async fn finish_close(&self, id: &PaymentHash, refunded: Option<Msat>, at: u64) -> Result<(), StoreError> {
        self.time(StoreOp::FinishClose, self.inner.finish_close(id, refunded, at)).await
    }
    async fn sessions(&self, limit: u32) -> Result<Vec<SessionInfo>, StoreError> {
        self.time(StoreOp::Sessions, self.inner.sessions(limit)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sharded_histogram_and_counters_sum_every_thread_and_stay_cumulative() {
        let m = Arc::new(ProxyMetrics::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = m.clone();
                std::thread::spawn(move || {
                    for ms in [0u64, 1, 3, 30, 40_000] {
                        m.upstream_latency.observe(Duration::from_millis(ms));
                        m.count(Outcome::Forwarded);
                    }
                    m.count(Outcome::NoRoute);
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a counting thread");
        }
        let out = m.render();
        let line =
            |prefix: &str| out.lines().find(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("{prefix}: {out}"));
        let h = "l402_proxy_upstream_latency_seconds";
        assert_eq!(line(&format!("{h}_bucket{{le=\"0.001\"}}")), format!("{h}_bucket{{le=\"0.001\"}} 8"));
        assert_eq!(line(&format!("{h}_bucket{{le=\"0.002\"}}")), format!("{h}_bucket{{le=\"0.002\"}} 8"));
        assert_eq!(line(&format!("{h}_bucket{{le=\"0.005\"}}")), format!("{h}_bucket{{le=\"0.005\"}} 12"));
        assert_eq!(line(&format!("{h}_bucket{{le=\"0.05\"}}")), format!("{h}_bucket{{le=\"0.05\"}} 16"));
        assert_eq!(line(&format!("{h}_bucket{{le=\"30\"}}")), format!("{h}_bucket{{le=\"30\"}} 16"));
        assert_eq!(line(&format!("{h}_bucket{{le=\"+Inf\"}}")), format!("{h}_bucket{{le=\"+Inf\"}} 20"));
        assert_eq!(line(&format!("{h}_count")), format!("{h}_count 20"));
        assert_eq!(line(&format!("{h}_sum")), format!("{h}_sum {}", 4.0 * 40.034));
        assert!(out.contains("l402_proxy_requests_total{outcome=\"forwarded\"} 20\n"), "{out}");
        assert!(out.contains("l402_proxy_requests_total{outcome=\"no_route\"} 4\n"), "{out}");
    }

    /// A node whose answers the test sets: `info` fails while `down`; balances answered, refused or failing.
    struct FakeNode {
        down: AtomicBool,
        balances: std::sync::Mutex<Result<l402_lightning::ChannelBalance, LightningErrorKind>>,
    }

    #[async_trait]
    impl l402_lightning::Node for FakeNode {
        async fn info(&self) -> Result<l402_lightning::NodeInfo, l402_lightning::LightningError> {
            if self.down.load(Ordering::Relaxed) {
                return Err(l402_lightning::LightningError::new(LightningErrorKind::Unavailable, "down"));
            }
            Ok(l402_lightning::NodeInfo {
                pubkey: "02ab".into(),
                network: l402_proto::lightning_invoice::Currency::Regtest,
                block_height: 321,
                alias: String::new(),
            })
        }
        async fn channel_balance(&self) -> Result<l402_lightning::ChannelBalance, l402_lightning::LightningError> {
            let b = *self.balances.lock().expect("lock");
            b.map_err(|k| l402_lightning::LightningError::new(k, "no"))
        }
    }

    #[async_trait]
    impl InvoiceIssuer for FakeNode {
        async fn create_invoice(
            &self,
            _: &l402_lightning::InvoiceRequest,
        ) -> Result<l402_lightning::IssuedInvoice, l402_lightning::LightningError> {
            Err(l402_lightning::LightningError::new(LightningErrorKind::Internal, "not in this test"))
        }
        async fn lookup_invoice(
            &self,
            _: &PaymentHash,
        ) -> Result<l402_lightning::InvoiceState, l402_lightning::LightningError> {
            Ok(l402_lightning::InvoiceState::NotFound)
        }
        async fn wait_invoice(
            &self,
            _: &PaymentHash,
            _: Duration,
        ) -> Result<l402_lightning::InvoiceState, l402_lightning::LightningError> {
            Ok(l402_lightning::InvoiceState::NotFound)
        }
        async fn subscribe_settlements(
            &self,
        ) -> Result<l402_lightning::SettlementStream, l402_lightning::LightningError> {
            Err(l402_lightning::LightningError::new(LightningErrorKind::Internal, "not in this test"))
        }
    }

    fn sample<'a>(out: &'a str, name: &str) -> Option<&'a str> {
        out.lines().find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
    }

    #[tokio::test]
    async fn the_probe_reports_the_node_up_or_down_its_liquidity_and_counts_failed_calls() {
        let m = ProxyMetrics::default();
        let balance = l402_lightning::ChannelBalance { inbound: Msat(7_000_000), outbound: Msat(3_000) };
        let node = FakeNode { down: AtomicBool::new(false), balances: std::sync::Mutex::new(Ok(balance)) };
        let before = m.render();
        assert_eq!(sample(&before, "l402_node_up"), Some("0"), "not probed yet: not up");
        assert_eq!(sample(&before, "l402_channel_inbound_liquidity_msat"), None, "no liquidity before a probe");
        m.probe(&node).await;
        let out = m.render();
        assert_eq!(sample(&out, "l402_node_up"), Some("1"));
        assert_eq!(sample(&out, "l402_node_block_height"), Some("321"));
        assert_eq!(sample(&out, "l402_channel_inbound_liquidity_msat"), Some("7000000"));
        assert_eq!(sample(&out, "l402_channel_outbound_liquidity_msat"), Some("3000"));
        let last: u64 =
            sample(&out, "l402_node_last_probe_success_timestamp_seconds").expect("ts").parse().expect("int");
        assert!(last.abs_diff(unix_now().as_secs()) < 60);
        assert!(out.contains(&format!("l402_build_info{{version=\"{}\"}} 1\n", env!("CARGO_PKG_VERSION"))));

        // Down: 0, an info error counted; the last success and liquidity stay what they were.
        node.down.store(true, Ordering::Relaxed);
        m.probe(&node).await;
        let out = m.render();
        assert_eq!(sample(&out, "l402_node_up"), Some("0"));
        assert_eq!(sample(&out, "l402_lightning_errors_total{operation=\"info\"}"), Some("1"));
        assert_eq!(sample(&out, "l402_node_last_probe_success_timestamp_seconds"), Some(last.to_string().as_str()));

        // Balances refused (a macaroon without offchain:read): not a failure each probe; a failing call is.
        node.down.store(false, Ordering::Relaxed);
        *node.balances.lock().expect("lock") = Err(LightningErrorKind::Unauthenticated);
        m.probe(&node).await;
        m.probe(&node).await;
        *node.balances.lock().expect("lock") = Err(LightningErrorKind::Unavailable);
        m.probe(&node).await;
        let out = m.render();
        assert_eq!(sample(&out, "l402_node_up"), Some("1"));
        assert_eq!(sample(&out, "l402_lightning_errors_total{operation=\"channel_balance\"}"), Some("1"));
    }

    /// A store that is down: every call fails.
    struct DownStore;

    fn down<T>() -> Result<T, StoreError> {
        Err(StoreError("down".into()))
    }

    #[async_trait]
    impl TokenStore for DownStore {
        async fn insert(&self, _: &NewToken) -> Result<(), StoreError> {
            down()
        }
        async fn lookup(&self, _: &[u8; 32]) -> Result<KeyLookup, StoreError> {
            down()
        }
        async fn revoke(&self, _: &TokenId) -> Result<bool, StoreError> {
            down()
        }
        async fn revoke_id(&self, _: &TokenId) -> Result<bool, StoreError> {
            down()
        }
        async fn revocations_since(&self, _: u64, _: u32) -> Result<Vec<Revocation>, StoreError> {
            down()
        }
        async fn record(&self, _: &[UsedToken]) -> Result<Vec<bool>, StoreError> {
            down()
        }
        async fn mark_paid(&self, _: &PaymentHash, _: Option<Msat>, _: u64) -> Result<bool, StoreError> {
            down()
        }
        async fn list(&self, _: &TokenQuery) -> Result<Vec<TokenInfo>, StoreError> {
            down()
        }
        async fn revenue(&self) -> Result<Vec<Revenue>, StoreError> {
            down()
        }
        async fn spend_charge(&self, _: &SpentCharge) -> Result<bool, StoreError> {
            down()
        }
        async fn put_service(&self, _: &str, _: Option<&str>) -> Result<u64, StoreError> {
            down()
        }
        async fn services(&self) -> Result<Vec<StoredService>, StoreError> {
            down()
        }
        async fn services_version(&self) -> Result<u64, StoreError> {
            down()
        }
    }

    #[tokio::test]
    async fn a_failing_store_call_is_timed_and_counted_as_an_error_of_its_operation() {
        let m = Arc::new(ProxyMetrics::default());
        let store = TimedStore::wrap(Arc::new(DownStore), m.clone());
        assert!(store.lookup(&[7; 32]).await.is_err());
        assert!(store.lookup(&[7; 32]).await.is_err());
        assert!(store.services_version().await.is_err());
        let out = m.render();
        assert_eq!(sample(&out, "l402_store_latency_seconds_count{operation=\"lookup\"}"), Some("2"));
        assert_eq!(sample(&out, "l402_store_errors_total{operation=\"lookup\"}"), Some("2"));
        assert_eq!(sample(&out, "l402_store_errors_total{operation=\"services_version\"}"), Some("1"));
    }

    #[tokio::test]
    async fn the_timed_store_times_each_call_by_operation_and_every_family_is_declared() {
        let dir = tempfile::tempdir().expect("tmp");
        let inner: Arc<dyn TokenStore> =
            Arc::new(l402_server::store::SqliteStore::open(&dir.path().join("t.db")).expect("sqlite"));
        let m = Arc::new(ProxyMetrics::default());
        let store = TimedStore::wrap(inner, m.clone());
        assert_eq!(store.lookup(&[7; 32]).await.expect("lookup"), KeyLookup::Unknown);
        assert!(store.revocations_since(0, 10).await.expect("revocations").is_empty());
        assert!(store.revocations_since(0, 10).await.expect("revocations").is_empty());
        let out = m.render();
        assert_eq!(sample(&out, "l402_store_latency_seconds_count{operation=\"lookup\"}"), Some("1"));
        assert_eq!(sample(&out, "l402_store_latency_seconds_count{operation=\"revocations_since\"}"), Some("2"));
        assert_eq!(sample(&out, "l402_store_errors_total{operation=\"lookup\"}"), Some("0"));
        assert!(!out.contains("operation=\"insert\""), "an operation never called has no series");
        // Every sample's family is declared with HELP and TYPE first.
        let mut declared = std::collections::HashSet::new();
        for l in out.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap_or_default().to_owned());
            } else if let Some(rest) = l.strip_prefix("# HELP ") {
                assert!(!declared.contains(rest.split(' ').next().unwrap_or_default()), "HELP before TYPE: {l}");
            } else {
                let name = l.split(['{', ' ']).next().unwrap_or_default();
                let family = ["_bucket", "_sum", "_count"]
                    .iter()
                    .find_map(|s| name.strip_suffix(s))
                    .filter(|f| declared.contains(*f));
                assert!(declared.contains(name) || family.is_some(), "{name} without # TYPE");
            }
        }
    }
}

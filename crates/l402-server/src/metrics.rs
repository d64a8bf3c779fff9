//! Counters a paywall keeps, rendered in the Prometheus text format by whoever serves `/metrics`.
//!
//! What every request touches ([`Counter`], [`Histogram`]) is sharded by thread: each thread writes to its own
//! cache line, so the cores never fight over one; `/metrics` sums the shards. What happens once per challenge,
//! payment, refusal or backend error (each already costs an invoice, a store write or a refused request) is
//! kept by service and reason under a lock. No label ever holds a token id, a credential or anything a client
//! chose: services are the operator's names, reasons and operations fixed words.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use l402_proto::Msat;

/// Shards of the request-path counters.
const SHARDS: usize = 16;

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

fn shard<T>(shards: &[T; SHARDS]) -> &T {
    &shards[SHARD.with(|s| *s)]
}

#[derive(Debug, Default)]
#[repr(align(128))]
struct Cell(AtomicU64);

/// A counter each thread increments on its own cache line (one uncontended increment).
#[derive(Debug, Default)]
pub struct Counter {
    shards: [Cell; SHARDS],
}

impl Counter {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        shard(&self.shards).0.fetch_add(n, Ordering::Relaxed);
    }

    /// Adds one.
    pub fn inc(&self) {
        self.add(1);
    }

    /// The sum over every thread.
    pub fn get(&self) -> u64 {
        self.shards.iter().map(|s| s.0.load(Ordering::Relaxed)).sum()
    }
}

/// The most buckets a [`Histogram`] has (besides `+Inf`).
const MAX_BUCKETS: usize = 15;

/// One thread's share of a histogram: one count per bucket (the last is +Inf), made cumulative when rendered.
#[derive(Debug, Default)]
#[repr(align(128))]
struct HistogramShard {
    buckets: [AtomicU64; MAX_BUCKETS + 1],
    sum_us: AtomicU64,
}

/// A latency histogram, sharded by thread; bucket bounds in microseconds, rendered in seconds.
#[derive(Debug)]
pub struct Histogram {
    bounds_us: &'static [u64],
    shards: [HistogramShard; SHARDS],
}

impl Histogram {
    /// A histogram with these upper bounds (microseconds, ascending, at most 15).
    pub fn new(bounds_us: &'static [u64]) -> Self {
        assert!(bounds_us.len() <= MAX_BUCKETS && bounds_us.is_sorted(), "histogram bounds");
        Self { bounds_us, shards: Default::default() }
    }

    /// Records one observation: two uncontended increments.
    pub fn observe(&self, d: Duration) {
        let us = u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        let i = self.bounds_us.partition_point(|b| *b < us);
        let s = shard(&self.shards);
        s.buckets[i].fetch_add(1, Ordering::Relaxed);
        s.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.shards.iter().map(|s| s.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum::<u64>()).sum()
    }

    /// Appends this histogram's series of family `name` with `labels` (`key="value",` pairs, each followed by a
    /// comma, or empty). The family's `# HELP` and `# TYPE` are the caller's ([`family`]).
    pub fn render(&self, name: &str, labels: &str, out: &mut String) {
        let mut cumulative = 0u64;
        for (i, b) in self.bounds_us.iter().enumerate() {
            cumulative += self.shards.iter().map(|s| s.buckets[i].load(Ordering::Relaxed)).sum::<u64>();
            let _ = writeln!(out, "{name}_bucket{{{labels}le=\"{}\"}} {cumulative}", *b as f64 / 1e6);
        }
        let n = cumulative
            + self.shards.iter().map(|s| s.buckets[self.bounds_us.len()].load(Ordering::Relaxed)).sum::<u64>();
        let sum_us: u64 = self.shards.iter().map(|s| s.sum_us.load(Ordering::Relaxed)).sum();
        let braces = |labels: &str| {
            if labels.is_empty() { String::new() } else { format!("{{{}}}", labels.trim_end_matches(',')) }
        };
        let _ = writeln!(out, "{name}_bucket{{{labels}le=\"+Inf\"}} {n}");
        let _ = writeln!(out, "{name}_sum{} {}", braces(labels), sum_us as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{} {n}", braces(labels));
    }
}

/// Appends a family's `# HELP` and `# TYPE` lines.
pub fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A label value escaped as the text format wants it (`\`, `"` and newlines).
pub fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A Lightning backend call the paywall or the proxy makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LightningOp {
    /// Creating a challenge's invoice.
    CreateInvoice,
    /// Looking up a charge's invoice.
    LookupInvoice,
    /// Following settlements.
    SubscribeSettlements,
    /// The node's identity and height (the reachability probe).
    Info,
    /// The node's channel balances (the liquidity probe).
    ChannelBalance,
}

const LIGHTNING_OPS: [&str; 5] =
    ["create_invoice", "lookup_invoice", "subscribe_settlements", "info", "channel_balance"];

/// What is counted per service (rare events: each is a challenge's invoice or a payment).
#[derive(Clone, Copy, Debug, Default)]
struct PerService {
    challenges_l402: u64,
    challenges_payment: u64,
    tokens_paid: u64,
    charges_paid: u64,
    revenue_msat: u64,
}

/// The paywall's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// 402 challenges sent (each with a fresh invoice).
    pub challenges_issued: AtomicU64,
    /// Requests let through with a valid token.
    pub tokens_verified: Counter,
    /// Requests let through with a `Payment` charge (each charge once).
    pub charges_paid: AtomicU64,
    /// Requests let through without payment (free routes).
    pub free_requests: Counter,
    /// Tokens this instance recorded as paid (their invoice settled, or the preimage shown first).
    pub invoices_settled: AtomicU64,
    /// Revenue this instance recorded, msat.
    pub revenue_msat: AtomicU64,
    /// Requests whose credential the verified-credential cache answered (no key derivation, no HMAC chain).
    pub verified_cache_hits: Counter,
    services: Mutex<BTreeMap<String, PerService>>,
    refusals: Mutex<BTreeMap<String, BTreeMap<&'static str, u64>>>,
    lightning_errors: [AtomicU64; LIGHTNING_OPS.len()],
}

fn with_service(m: &Metrics, service: &str, f: impl FnOnce(&mut PerService)) {
    if let Ok(mut s) = m.services.lock() {
        match s.get_mut(service) {
            Some(p) => f(p),
            None => f(s.entry(service.to_owned()).or_default()),
        }
    }
}

impl Metrics {
    /// Counts a refusal by the service it was for and its reason ([`crate::Refusal::reason`]).
    pub fn refused(&self, service: &str, reason: &'static str) {
        if let Ok(mut r) = self.refusals.lock() {
            let by_reason = match r.get_mut(service) {
                Some(m) => m,
                None => r.entry(service.to_owned()).or_default(),
            };
            *by_reason.entry(reason).or_default() += 1;
        }
    }

    /// Refusals so far, by reason (summed over services).
    pub fn refusals(&self) -> BTreeMap<&'static str, u64> {
        let mut by_reason = BTreeMap::new();
        if let Ok(r) = self.refusals.lock() {
            for (reason, n) in r.values().flatten() {
                *by_reason.entry(*reason).or_default() += n;
            }
        }
        by_reason
    }

    /// Counts a challenge offered for `service` in one scheme (`payment`: the `Payment` scheme, else L402).
    pub(crate) fn challenge(&self, service: &str, payment: bool) {
        with_service(self, service, |p| {
            if payment {
                p.challenges_payment += 1;
            } else {
                p.challenges_l402 += 1;
            }
        });
    }

    /// A token recorded paid for the first time here, for `amount`.
    pub(crate) fn token_paid(&self, service: Option<&str>, amount: Msat) {
        self.invoices_settled.fetch_add(1, Ordering::Relaxed);
        self.revenue_msat.fetch_add(amount.0, Ordering::Relaxed);
        with_service(self, service.unwrap_or("unknown"), |p| {
            p.tokens_paid += 1;
            p.revenue_msat += amount.0;
        });
    }

    /// A `Payment` charge spent, for `amount`.
    pub(crate) fn charge_paid(&self, service: &str, amount: Msat) {
        self.charges_paid.fetch_add(1, Ordering::Relaxed);
        self.revenue_msat.fetch_add(amount.0, Ordering::Relaxed);
        with_service(self, service, |p| {
            p.charges_paid += 1;
            p.revenue_msat += amount.0;
        });
    }

    /// Counts a failed Lightning backend call.
    pub fn lightning_error(&self, op: LightningOp) {
        self.lightning_errors[op as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Failed Lightning backend calls of one kind so far.
    pub fn lightning_errors(&self, op: LightningOp) -> u64 {
        self.lightning_errors[op as usize].load(Ordering::Relaxed)
    }

    /// Appends the counters in the Prometheus text exposition format.
    pub fn render(&self, out: &mut String) {
        let services = self.services.lock().map(|s| s.clone()).unwrap_or_default();
        let per_service = |out: &mut String, name: &str, help: &str, v: fn(&PerService) -> u64| {
            family(out, name, "counter", help);
            for (s, p) in &services {
                let _ = writeln!(out, "{name}{{service=\"{}\"}} {}", label_value(s), v(p));
            }
        };
        family(out, "l402_challenges_issued_total", "counter", "402 challenges offered, by service and scheme.");
        for (s, p) in &services {
            let s = label_value(s);
            let _ =
                writeln!(out, "l402_challenges_issued_total{{service=\"{s}\",scheme=\"l402\"}} {}", p.challenges_l402);
            let _ = writeln!(
                out,
                "l402_challenges_issued_total{{service=\"{s}\",scheme=\"payment\"}} {}",
                p.challenges_payment
            );
        }
        per_service(out, "l402_tokens_paid_total", "L402 tokens recorded paid (once each), by service.", |p| {
            p.tokens_paid
        });
        per_service(out, "l402_charges_paid_total", "Payment charges spent (once each), by service.", |p| {
            p.charges_paid
        });
        per_service(out, "l402_revenue_msat_total", "Revenue recorded, in millisatoshis, by service.", |p| {
            p.revenue_msat
        });
        let c = |out: &mut String, name: &str, help: &str, v: u64| {
            family(out, name, "counter", help);
            let _ = writeln!(out, "{name} {v}");
        };
        c(out, "l402_tokens_verified_total", "Requests let through with a valid token.", self.tokens_verified.get());
        c(out, "l402_free_requests_total", "Requests let through without payment.", self.free_requests.get());
        c(
            out,
            "l402_verified_cache_hits_total",
            "Credentials verified from the cache of recently verified tokens.",
            self.verified_cache_hits.get(),
        );
        family(out, "l402_refusals_total", "counter", "Requests refused, by service and reason.");
        if let Ok(r) = self.refusals.lock() {
            for (service, reasons) in r.iter() {
                let service = label_value(service);
                for (reason, n) in reasons {
                    let _ = writeln!(out, "l402_refusals_total{{service=\"{service}\",reason=\"{reason}\"}} {n}");
                }
            }
        }
        family(out, "l402_lightning_errors_total", "counter", "Failed Lightning backend calls, by operation.");
        for (i, op) in LIGHTNING_OPS.iter().enumerate() {
            let n = self.lightning_errors[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "l402_lightning_errors_total{{operation=\"{op}\"}} {n}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rendering_has_help_and_type_for_every_family_and_counts_by_service_and_reason() {
        let m = Metrics::default();
        m.challenge("weather", false);
        m.challenge("weather", false);
        m.challenge("news \"daily\"", true);
        m.token_paid(Some("weather"), Msat(5_000));
        m.charge_paid("news \"daily\"", Msat(2_000));
        m.refused("weather", "revoked");
        m.refused("weather", "revoked");
        m.refused("news \"daily\"", "charge_spent");
        m.lightning_error(LightningOp::CreateInvoice);
        m.tokens_verified.inc();
        let mut out = String::new();
        m.render(&mut out);
        for line in [
            "l402_challenges_issued_total{service=\"weather\",scheme=\"l402\"} 2",
            "l402_challenges_issued_total{service=\"weather\",scheme=\"payment\"} 0",
            "l402_challenges_issued_total{service=\"news \\\"daily\\\"\",scheme=\"payment\"} 1",
            "l402_tokens_paid_total{service=\"weather\"} 1",
            "l402_tokens_paid_total{service=\"news \\\"daily\\\"\"} 0",
            "l402_charges_paid_total{service=\"news \\\"daily\\\"\"} 1",
            "l402_revenue_msat_total{service=\"weather\"} 5000",
            "l402_revenue_msat_total{service=\"news \\\"daily\\\"\"} 2000",
            "l402_refusals_total{service=\"weather\",reason=\"revoked\"} 2",
            "l402_lightning_errors_total{operation=\"create_invoice\"} 1",
            "l402_lightning_errors_total{operation=\"lookup_invoice\"} 0",
            "l402_tokens_verified_total 1",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} in:\n{out}");
        }
        assert_eq!(m.refusals().get("revoked"), Some(&2));
        assert_eq!(m.revenue_msat.load(Ordering::Relaxed), 7_000);
        // Every sample's family has its HELP and TYPE before it.
        let mut declared = std::collections::HashSet::new();
        for l in out.lines() {
            if let Some(rest) = l.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap_or_default().to_owned());
            } else if !l.starts_with('#') {
                let name = l.split(['{', ' ']).next().unwrap_or_default();
                assert!(declared.contains(name), "{name} without # TYPE");
            }
        }
        assert_eq!(out.matches("# HELP ").count(), out.matches("# TYPE ").count());
    }

    #[test]
    fn the_sharded_counter_and_histogram_sum_every_thread_and_stay_cumulative() {
        static BOUNDS: [u64; 3] = [1_000, 5_000, 50_000];
        let h = std::sync::Arc::new(Histogram::new(&BOUNDS));
        let c = std::sync::Arc::new(Counter::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (h, c) = (h.clone(), c.clone());
                std::thread::spawn(move || {
                    for us in [0u64, 1_000, 3_000, 60_000] {
                        h.observe(Duration::from_micros(us));
                        c.inc();
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("a counting thread");
        }
        let mut out = String::new();
        h.render("x_seconds", "operation=\"lookup\",", &mut out);
        assert_eq!(
            out,
            "x_seconds_bucket{operation=\"lookup\",le=\"0.001\"} 8\nx_seconds_bucket{operation=\"lookup\",le=\"0.005\"} 12\n\
             x_seconds_bucket{operation=\"lookup\",le=\"0.05\"} 12\nx_seconds_bucket{operation=\"lookup\",le=\"+Inf\"} 16\n\
             x_seconds_sum{operation=\"lookup\"} 0.256\nx_seconds_count{operation=\"lookup\"} 16\n"
        );
        assert_eq!((c.get(), h.count()), (16, 16));
    }
}

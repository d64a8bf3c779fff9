//! The proxy's counters and the upstream latency histogram, beside the paywall's, for `/metrics`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use l402_server::Metrics;

const BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000, 30000];

/// A latency histogram (milliseconds).
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; 12],
    count: AtomicU64,
    sum_us: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let ms = d.as_millis() as u64;
        for (i, b) in BUCKETS_MS.iter().enumerate() {
            if ms <= *b {
                self.counts[i].fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_us.fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, name: &str, out: &mut String) {
        let _ =
            writeln!(out, "# HELP {name} Time to the upstream's response headers, seconds.\n# TYPE {name} histogram");
        for (i, b) in BUCKETS_MS.iter().enumerate() {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{}\"}} {}",
                *b as f64 / 1000.0,
                self.counts[i].load(Ordering::Relaxed)
            );
        }
        let n = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(out, "{name}_sum {}", self.sum_us.load(Ordering::Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {n}");
    }
}

/// The proxy's metrics.
#[derive(Debug, Default)]
pub struct ProxyMetrics {
    /// The paywall's counters (challenges, verified tokens, refusals by reason, settlements, revenue).
    pub paywall: Arc<Metrics>,
    /// Upstream latency.
    pub upstream_latency: Histogram,
    outcomes: [AtomicU64; OUTCOMES.len()],
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

impl ProxyMetrics {
    pub(crate) fn count(&self, outcome: Outcome) {
        self.outcomes[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.paywall.render(&mut out);
        let _ = writeln!(
            out,
            "# HELP l402_proxy_requests_total Requests by outcome.\n# TYPE l402_proxy_requests_total counter"
        );
        for (name, n) in OUTCOMES.iter().zip(&self.outcomes) {
            let _ = writeln!(out, "l402_proxy_requests_total{{outcome=\"{name}\"}} {}", n.load(Ordering::Relaxed));
        }
        self.upstream_latency.render("l402_proxy_upstream_latency_seconds", &mut out);
        out
    }
}

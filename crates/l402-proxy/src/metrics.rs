//! The proxy's counters and the upstream latency histogram, beside the paywall's, for `/metrics`.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use l402_server::Metrics;

const BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 5000, 30000];

/// Shards of the request-path counters: each thread writes to its own (cache-line aligned), so the cores
/// never fight over one line; `/metrics` sums them.
const SHARDS: usize = 16;

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

fn shard<T>(shards: &[T; SHARDS]) -> &T {
    &shards[SHARD.with(|s| *s)]
}

/// One thread's share of a histogram: one count per bucket (the last is +Inf), made cumulative when rendered.
#[derive(Debug, Default)]
#[repr(align(128))]
struct HistogramShard {
    buckets: [AtomicU64; BUCKETS_MS.len() + 1],
    sum_us: AtomicU64,
}

/// A latency histogram (milliseconds).
#[derive(Debug, Default)]
pub struct Histogram {
    shards: [HistogramShard; SHARDS],
}

impl Histogram {
    /// Records one observation: two uncontended increments.
    pub fn observe(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let i = BUCKETS_MS.partition_point(|b| *b < ms);
        let s = shard(&self.shards);
        s.buckets[i].fetch_add(1, Ordering::Relaxed);
        s.sum_us.fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn render(&self, name: &str, out: &mut String) {
        let _ =
            writeln!(out, "# HELP {name} Time to the upstream's response headers, seconds.\n# TYPE {name} histogram");
        let mut cumulative = 0u64;
        for (i, b) in BUCKETS_MS.iter().enumerate() {
            cumulative += self.shards.iter().map(|s| s.buckets[i].load(Ordering::Relaxed)).sum::<u64>();
            let _ = writeln!(out, "{name}_bucket{{le=\"{}\"}} {cumulative}", *b as f64 / 1000.0);
        }
        let n =
            cumulative + self.shards.iter().map(|s| s.buckets[BUCKETS_MS.len()].load(Ordering::Relaxed)).sum::<u64>();
        let sum_us: u64 = self.shards.iter().map(|s| s.sum_us.load(Ordering::Relaxed)).sum();
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {n}");
        let _ = writeln!(out, "{name}_sum {}", sum_us as f64 / 1e6);
        let _ = writeln!(out, "{name}_count {n}");
    }
}

/// One thread's share of the outcome counters.
#[derive(Debug, Default)]
#[repr(align(128))]
struct OutcomeShard([AtomicU64; OUTCOMES.len()]);

/// The proxy's metrics.
#[derive(Debug, Default)]
pub struct ProxyMetrics {
    /// The paywall's counters (challenges, verified tokens, refusals by reason, settlements, revenue).
    pub paywall: Arc<Metrics>,
    /// Upstream latency.
    pub upstream_latency: Histogram,
    outcomes: [OutcomeShard; SHARDS],
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
        shard(&self.outcomes).0[outcome as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.paywall.render(&mut out);
        let _ = writeln!(
            out,
            "# HELP l402_proxy_requests_total Requests by outcome.\n# TYPE l402_proxy_requests_total counter"
        );
        for (i, name) in OUTCOMES.iter().enumerate() {
            let n: u64 = self.outcomes.iter().map(|s| s.0[i].load(Ordering::Relaxed)).sum();
            let _ = writeln!(out, "l402_proxy_requests_total{{outcome=\"{name}\"}} {n}");
        }
        self.upstream_latency.render("l402_proxy_upstream_latency_seconds", &mut out);
        out
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
}

//! Counters a paywall keeps, rendered in the Prometheus text format by whoever serves `/metrics`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// The paywall's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// 402 challenges sent (each with a fresh invoice).
    pub challenges_issued: AtomicU64,
    /// Requests let through with a valid token.
    pub tokens_verified: AtomicU64,
    /// Requests let through with a `Payment` charge (each charge once).
    pub charges_paid: AtomicU64,
    /// Requests let through without payment (free routes).
    pub free_requests: AtomicU64,
    /// Invoices this instance recorded as settled.
    pub invoices_settled: AtomicU64,
    /// Revenue this instance recorded, msat.
    pub revenue_msat: AtomicU64,
    /// Requests whose credential the verified-credential cache answered (no key derivation, no HMAC chain).
    pub verified_cache_hits: AtomicU64,
    refusals: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// Counts a refusal by its reason.
    pub fn refused(&self, reason: &'static str) {
        if let Ok(mut r) = self.refusals.lock() {
            *r.entry(reason).or_default() += 1;
        }
    }

    /// Refusals so far, by reason.
    pub fn refusals(&self) -> BTreeMap<&'static str, u64> {
        self.refusals.lock().map(|r| r.clone()).unwrap_or_default()
    }

    /// Appends the counters in the Prometheus text exposition format.
    pub fn render(&self, out: &mut String) {
        let c = |out: &mut String, name: &str, help: &str, v: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}");
        };
        c(out, "l402_challenges_issued_total", "402 challenges sent.", self.challenges_issued.load(Ordering::Relaxed));
        c(
            out,
            "l402_tokens_verified_total",
            "Requests let through with a valid token.",
            self.tokens_verified.load(Ordering::Relaxed),
        );
        c(
            out,
            "l402_charges_paid_total",
            "Requests let through with a Payment charge.",
            self.charges_paid.load(Ordering::Relaxed),
        );
        c(
            out,
            "l402_free_requests_total",
            "Requests let through without payment.",
            self.free_requests.load(Ordering::Relaxed),
        );
        c(
            out,
            "l402_invoices_settled_total",
            "Invoices recorded as settled.",
            self.invoices_settled.load(Ordering::Relaxed),
        );
        c(
            out,
            "l402_revenue_msat_total",
            "Revenue recorded, in millisatoshis.",
            self.revenue_msat.load(Ordering::Relaxed),
        );
        c(
            out,
            "l402_verified_cache_hits_total",
            "Credentials verified from the cache of recently verified tokens.",
            self.verified_cache_hits.load(Ordering::Relaxed),
        );
        let _ = writeln!(
            out,
            "# HELP l402_refusals_total Requests refused, by reason.\n# TYPE l402_refusals_total counter"
        );
        for (reason, n) in self.refusals() {
            let _ = writeln!(out, "l402_refusals_total{{reason=\"{reason}\"}} {n}");
        }
    }
}

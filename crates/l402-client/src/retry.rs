//! When an HTTP request is sent again: connection errors, `502`/`503`/`504`, and `429` (after its
//! `Retry-After`), with exponential backoff and full jitter, only for requests whose body can be replayed.
//! A non-idempotent method (`POST`, `PATCH`, anything but `GET`, `HEAD`, `PUT`, `DELETE`, `OPTIONS` and
//! `TRACE`) is sent again only after a connection error, when nothing reached the server: a `502`, `503` or
//! `504` may come from a gateway after the server acted on the request, and acting twice is not for the
//! client to decide.
//!
//! Payments have their own rules, from [`l402_lightning::PaymentFailure::retry`]: applied in
//! [`crate::client`], never here.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};

/// The HTTP retry policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (0: never retry).
    pub max_retries: u32,
    /// The first backoff; doubled each retry.
    pub base_delay: Duration,
    /// The longest backoff, and the longest `Retry-After` honoured (a longer one returns the 429 as is).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self { max_retries: 3, base_delay: Duration::from_millis(200), max_delay: Duration::from_secs(30) }
    }
}

/// Whether a status is worth retrying.
pub(crate) fn retryable_status(status: StatusCode) -> bool {
    matches!(status.as_u16(), 429 | 502 | 503 | 504)
}

/// Whether a method may be sent twice with the effect of once (RFC 9110, section 9.2.2).
pub(crate) fn idempotent(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::PUT | Method::DELETE | Method::OPTIONS | Method::TRACE)
}

/// Whether a transport error is worth retrying: the connection failed (nothing reached the server).
pub(crate) fn retryable_error(e: &reqwest::Error) -> bool {
    e.is_connect()
}

/// A `Retry-After` value: delay-seconds or an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let v = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(at.duration_since(SystemTime::now()).unwrap_or(Duration::ZERO))
}

impl RetryPolicy {
    /// The backoff before retry number `attempt` (from 0): a random duration up to `base * 2^attempt`, capped.
    pub(crate) fn backoff(&self, attempt: u32) -> Duration {
        let ceiling = self.base_delay.saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX));
        let ceiling = ceiling.min(self.max_delay);
        let mut b = [0u8; 8];
        let r = if getrandom::fill(&mut b).is_ok() { u64::from_le_bytes(b) } else { u64::MAX / 2 };
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        // Full jitter, but never less than a tenth of the ceiling.
        Duration::from_nanos(nanos / 10 + r % (nanos - nanos / 10).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_jittered_grows_and_is_capped() {
        let p =
            RetryPolicy { max_retries: 5, base_delay: Duration::from_millis(100), max_delay: Duration::from_secs(1) };
        for attempt in 0..8 {
            let d = p.backoff(attempt);
            let ceiling = (Duration::from_millis(100) * 2u32.pow(attempt)).min(Duration::from_secs(1));
            assert!(d <= ceiling && d >= ceiling / 10, "{attempt}: {d:?}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_dates() {
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, "3".parse().expect("value"));
        assert_eq!(retry_after(&h), Some(Duration::from_secs(3)));
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(120));
        h.insert(RETRY_AFTER, later.parse().expect("value"));
        let d = retry_after(&h).expect("date");
        assert!(d > Duration::from_secs(100) && d <= Duration::from_secs(120), "{d:?}");
        h.insert(RETRY_AFTER, "soon".parse().expect("value"));
        assert_eq!(retry_after(&h), None);
    }
}

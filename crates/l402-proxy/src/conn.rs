//! One connection served by hyper (TLS, HTTP/2; plain HTTP/1.x is [`crate::h1`]'s and bounds itself),
//! bounded in time: the wait for the first request, and idleness.
//!
//! hyper bounds each HTTP/1.1 request head itself (`header_read_timeout`, which also covers the wait for the
//! next request on a keep-alive connection) and HTTP/2 liveness with PINGs. What it does not bound is done
//! here by a watchdog beside the connection: a connection that has not started a request within the header
//! timeout (a few bytes and then nothing, before hyper even knows the HTTP version; or an HTTP/2 preface and
//! nothing), or that has had no request in progress for the idle timeout, is closed. A request is in
//! progress from the moment its head is read until its response body is sent or dropped, so a long stream
//! is never cut for idleness.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use axum::body::Body;
use bytes::Bytes;
use hyper::body::{Frame, SizeHint};

/// What the watchdog watches: requests in progress and when the last one ended.
#[derive(Debug)]
pub(crate) struct Activity {
    start: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds from `start` to the end of the last request (0 before any).
    last_done_ms: AtomicU64,
    seen: AtomicBool,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_done_ms: AtomicU64::new(0),
            seen: AtomicBool::new(false),
        })
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Marks a request in progress until the guard (moved into its response body) is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> InFlight {
        self.seen.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Returns when the connection should be closed: no request within `first`, or none in progress for
    /// `idle`.
    pub(crate) async fn watch(&self, first: Duration, idle: Duration) {
        loop {
            let wait = if self.in_flight.load(Ordering::Acquire) > 0 {
                idle
            } else {
                let limit = if self.seen.load(Ordering::Relaxed) { idle } else { first };
                let since =
                    Duration::from_millis(self.now_ms().saturating_sub(self.last_done_ms.load(Ordering::Acquire)));
                // Strictly past the limit: both ends are whole milliseconds, truncated, so `since == limit` may
                // be up to a millisecond short of it.
                if since > limit && self.in_flight.load(Ordering::Acquire) == 0 {
                    return;
                }
                limit.saturating_sub(since).max(Duration::from_millis(10))
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// A request in progress.
#[derive(Debug)]
pub(crate) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.last_done_ms.store(self.0.now_ms(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in progress until it is sent or dropped.
pub(crate) struct Tracked {
    inner: Body,
    _guard: InFlight,
}

impl Tracked {
    pub(crate) fn new(inner: Body, guard: InFlight) -> Self {
        Self { inner, _guard: guard }
    }
}

impl hyper::body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_watchdog_fires_on_silence_and_never_during_a_request() {
        let (first, idle) = (Duration::from_millis(200), Duration::from_millis(300));
        let a = Activity::new();
        let started = Instant::now();
        a.watch(first, idle).await;
        let waited = started.elapsed();
        assert!(waited >= first && waited < first * 3, "no first request: the header timeout ({waited:?})");

        let a = Activity::new();
        let guard = a.begin();
        let watch = a.watch(first, idle);
        tokio::pin!(watch);
        assert!(tokio::time::timeout(idle * 3, &mut watch).await.is_err(), "a request in progress is never idle");
        let ended = Instant::now();
        drop(guard);
        watch.await;
        assert!(ended.elapsed() >= idle, "idle counts from the end of the last request");
    }
}

//! Metered services (`[service.metering]`): a payment buys a balance worth a bundle, each request reserves an
//! estimate of its cost before it is forwarded, and is debited what it used once its response has ended.
//!
//! - The balance is keyed by the payment: an L402 token's id, a `Payment` charge's payment hash. It is opened
//!   (worth the bundle's price) the first time the payment is used, and kept in the store
//!   ([`l402_server::store::TokenStore::reserve`] and `settle`), so instances sharing PostgreSQL share it.
//! - The estimate (`Metering::estimate`): with unit prices, the prompt at one unit per 4 bytes of request
//!   body (rounded up) × the input price, plus the body's `max_completion_tokens` (else `max_tokens`, else
//!   `default_estimate`) × the output price; with `per_request_msat`, that price. A reservation is taken only
//!   if the balance less the reservations in flight covers it; else the answer is a fresh 402 (the next
//!   bundle). An estimate over a whole bundle is a 400: no payment could serve it.
//! - The response streams through untouched, frame by frame (`MeteredBody`); only a bounded tail
//!   ([`TAIL_BYTES`]) is kept, in which the last OpenAI-style `usage` object (`prompt_tokens`,
//!   `completion_tokens`) is looked for when the body ends: the last SSE chunk with usage, or the JSON body's.
//!   The debit is `prompt_tokens` × input price + `completion_tokens` × output price, at most what is left.
//!   A response that ends without usage, fails midway, or that the client drops, is debited the estimate.
//!   The debit is settled before the end of the body is passed on, so a client that has read a whole
//!   response sees the new balance on its next request.
//! - With `pricer_url`, the reported usage is priced by the operator's pricer ([`Pricer`]) instead; the unit
//!   prices are the fallback when it fails, and still price the bundle and the reservation.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use l402_proto::Msat;
use l402_server::store::{BalanceKey, TokenStore};
use serde::Deserialize;

use crate::config::{ConfigError, Meter};

/// How much of a response's end is kept to find its `usage` (OpenAI sends it in the last chunk).
pub const TAIL_BYTES: usize = 64 << 10;

/// A metered service's prices.
#[derive(Clone, Debug)]
pub(crate) struct Metering {
    pub(crate) meter: Meter,
    /// What a bundle is worth (the service's price), msat.
    pub(crate) bundle: Msat,
    /// The external pricer of reported usage, if configured.
    pub(crate) pricer: Option<Arc<Pricer>>,
}

/// An operator's pricer over HTTP (`[service.metering] pricer_url`): asked what a response's reported usage
/// costs. Its answer is read up to [`PRICER_ANSWER_BYTES`]; it never sees a credential.
pub(crate) struct Pricer {
    url: http::Uri,
    timeout: Duration,
    service: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl std::fmt::Debug for Pricer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pricer").field("url", &self.url).finish_non_exhaustive()
    }
}

/// The longest pricer answer read.
pub const PRICER_ANSWER_BYTES: usize = 4096;

/// A pricer's answer.
#[derive(Deserialize)]
struct Price {
    msat: u64,
}

impl Pricer {
    /// A pricer at `url` (checked by the configuration: `http://` with a host) for service `service`.
    pub(crate) fn new(url: &str, timeout: Duration, service: &str) -> Result<Self, ConfigError> {
        let url =
            url.parse().map_err(|_| ConfigError(format!("service {service}: metering: pricer_url: not a URL")))?;
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new()).build(http);
        Ok(Self { url, timeout, service: service.to_owned(), client })
    }

    /// What `usage` of the payment `id` costs, msat, or why the pricer gave no answer.
    pub(crate) async fn price(&self, id: &str, usage: Usage) -> Result<u64, &'static str> {
        let body = serde_json::json!({
            "service": self.service,
            "id": id,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.prompt_tokens.saturating_add(usage.completion_tokens),
        });
        let req = http::Request::post(self.url.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|_| "request not built")?;
        let ask = async {
            let resp = self.client.request(req).await.map_err(|_| "unreachable")?;
            if !resp.status().is_success() {
                return Err("not a 2xx");
            }
            let bytes = Limited::new(resp.into_body(), PRICER_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|_| "answer unreadable or too long")?
                .to_bytes();
            serde_json::from_slice::<Price>(&bytes).map(|p| p.msat).map_err(|_| "answer not {\"msat\": <integer>}")
        };
        tokio::time::timeout(self.timeout, ask).await.map_err(|_| "timed out")?
    }
}

/// The fields of a request body that the estimate reads.
#[derive(Deserialize)]
struct Limits {
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
}

/// What a response reports it used.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub(crate) struct Usage {
    pub(crate) prompt_tokens: u64,
    pub(crate) completion_tokens: u64,
}

impl Metering {
    /// The reservation for a request with this body, msat; `None` when it would be over a bundle.
    pub(crate) fn estimate(&self, body: &[u8]) -> Option<u64> {
        let msat = match self.meter {
            Meter::PerRequest(flat) => flat,
            Meter::Units { input, output, default_estimate } => {
                let limits = serde_json::from_slice::<Limits>(body).ok();
                let out = limits.and_then(|l| l.max_completion_tokens.or(l.max_tokens)).unwrap_or(default_estimate);
                let prompt = u64::try_from(body.len().div_ceil(4)).ok()?;
                prompt.checked_mul(input)?.checked_add(out.checked_mul(output)?)?
            }
        };
        (msat <= self.bundle.0).then_some(msat)
    }

    /// What a response that reported `usage` costs, msat (saturating: the debit is capped by the balance).
    pub(crate) fn cost(&self, usage: Usage) -> u64 {
        match self.meter {
            Meter::PerRequest(flat) => flat,
            Meter::Units { input, output, .. } => {
                usage.prompt_tokens.saturating_mul(input).saturating_add(usage.completion_tokens.saturating_mul(output))
            }
        }
    }

    fn reads_usage(&self) -> bool {
        matches!(self.meter, Meter::Units { .. })
    }
}

/// The last `"usage": {...}` object in `tail` that reads as usage (`"usage": null` chunks are passed over).
pub(crate) fn last_usage(tail: &[u8]) -> Option<Usage> {
    const KEY: &[u8] = b"\"usage\"";
    let mut end = tail.len();
    while let Some(at) = tail[..end].windows(KEY.len()).rposition(|w| w == KEY) {
        end = at;
        let rest = &tail[at + KEY.len()..];
        let rest = rest.trim_ascii_start();
        let Some(value) = rest.strip_prefix(b":") else { continue };
        let mut values = serde_json::Deserializer::from_slice(value.trim_ascii_start()).into_iter::<Usage>();
        if let Some(Ok(u)) = values.next() {
            return Some(u);
        }
    }
    None
}

/// A reservation to settle once the response is over.
pub(crate) struct Reservation {
    pub(crate) store: Arc<dyn TokenStore>,
    pub(crate) key: BalanceKey,
    pub(crate) reserved: Msat,
    pub(crate) metering: Metering,
    pub(crate) now: u64,
    /// For the log line: the token id or payment hash, hex.
    pub(crate) id: String,
}

impl Reservation {
    /// Releases the reservation and debits `debit`.
    pub(crate) async fn settle(self, debit: u64) {
        let (key, reserved) = (self.key, self.reserved);
        match self.store.settle(&key, reserved, Msat(debit), self.now).await {
            Ok(left) => {
                tracing::debug!(kind = key.kind(), id = %self.id, debit_msat = debit, left_msat = left.0, "metered request settled");
            }
            Err(e) => {
                tracing::warn!(kind = key.kind(), id = %self.id, error = %e, "a metered request could not be settled")
            }
        }
    }
}

type Settling = Pin<Box<dyn Future<Output = ()> + Send>>;
type Out = Option<Result<Frame<Bytes>, axum::Error>>;

/// A response body passed through frame by frame while its tail is kept; its reservation is settled when it
/// ends (before the end, or the last byte of a body of known length, is passed on), fails, or is dropped.
pub(crate) struct MeteredBody {
    inner: Body,
    tail: Vec<u8>,
    /// The body's length, when its head says it (hyper stops polling a body once that much is written).
    length: Option<u64>,
    seen: u64,
    reservation: Option<Reservation>,
    settling: Option<Settling>,
    /// What to hand on once settled.
    after: Option<Out>,
    done: bool,
}

impl MeteredBody {
    pub(crate) fn new(inner: Body, reservation: Reservation) -> Self {
        let length = http_body::Body::size_hint(&inner).exact();
        Self {
            inner,
            tail: Vec::new(),
            length,
            seen: 0,
            reservation: Some(reservation),
            settling: None,
            after: None,
            done: false,
        }
    }

    /// Starts settling: the usage found in the tail if the body ended whole, else the estimate.
    fn settle(&mut self, whole: bool) {
        if let Some(r) = self.reservation.take() {
            let usage = if whole && r.metering.reads_usage() { last_usage(&self.tail) } else { None };
            // A flat price is its own estimate: the reservation.
            let builtin = usage.map_or(r.reserved.0, |u| r.metering.cost(u));
            self.settling = Some(match (usage, r.metering.pricer.clone()) {
                (Some(usage), Some(pricer)) => Box::pin(async move {
                    let debit = match pricer.price(&r.id, usage).await {
                        Ok(msat) => msat,
                        Err(why) => {
                            tracing::warn!(service = %pricer.service, id = %r.id, reason = why, "the pricer gave no price: the unit prices are used");
                            builtin
                        }
                    };
                    r.settle(debit).await
                }),
                _ => Box::pin(r.settle(builtin)),
            });
        }
    }
}

impl http_body::Body for MeteredBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Out> {
        let this = &mut *self;
        loop {
            if let Some(f) = this.settling.as_mut() {
                ready!(f.as_mut().poll(cx));
                this.settling = None;
            }
            if let Some(out) = this.after.take() {
                return Poll::Ready(out);
            }
            if this.done {
                return Poll::Ready(None);
            }
            match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => {
                    if let Some(data) = frame.data_ref() {
                        if this.reservation.as_ref().is_some_and(|r| r.metering.reads_usage()) {
                            keep_tail(&mut this.tail, data);
                        }
                        this.seen = this.seen.saturating_add(data.len() as u64);
                    }
                    if this.reservation.is_none() || this.length != Some(this.seen) {
                        return Poll::Ready(Some(Ok(frame)));
                    }
                    // The last byte of a body of known length: settle, then pass it on.
                    this.after = Some(Some(Ok(frame)));
                    this.settle(true);
                }
                Some(Err(e)) => {
                    this.done = true;
                    this.after = Some(Some(Err(e)));
                    this.settle(false);
                }
                None => {
                    this.done = true;
                    this.after = Some(None);
                    this.settle(true);
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.after.is_none() && self.settling.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for MeteredBody {
    fn drop(&mut self) {
        // Dropped before its end (the client went away): the estimate, settled in the background.
        let whole = self.length == Some(self.seen);
        self.settle(whole);
        if let Some(f) = self.settling.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(h) => drop(h.spawn(f)),
                Err(_) => tracing::warn!("a metered request's reservation could not be settled (no runtime)"),
            }
        }
    }
}

/// Appends `data` to `tail`, keeping at most about [`TAIL_BYTES`] (the oldest bytes go first).
fn keep_tail(tail: &mut Vec<u8>, data: &[u8]) {
    if data.len() >= TAIL_BYTES {
        tail.clear();
        tail.extend_from_slice(&data[data.len() - TAIL_BYTES..]);
        return;
    }
    tail.extend_from_slice(data);
    if tail.len() > 2 * TAIL_BYTES {
        let cut = tail.len() - TAIL_BYTES;
        tail.drain(..cut);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UNITS: Metering = Metering {
        meter: Meter::Units { input: 2, output: 3, default_estimate: 10 },
        bundle: Msat(1_000),
        pricer: None,
    };

    #[test]
    fn the_last_usage_object_is_found_past_usage_nulls_and_strings() {
        let sse = b"data: {\"usage\":null}\n\ndata: {\"choices\":[],\"usage\" : {\"prompt_tokens\":4,\"completion_tokens\":7,\"total_tokens\":11}}\n\ndata: {\"usage\":null}\n\ndata: [DONE]\n\n";
        assert_eq!(last_usage(sse), Some(Usage { prompt_tokens: 4, completion_tokens: 7 }));
        assert_eq!(last_usage(br#"{"content":"\"usage\": {\"prompt_tokens\":9}"}"#), None);
        assert_eq!(last_usage(br#"{"usage":{"prompt_tokens":"x"}}"#), None);
        assert_eq!(last_usage(b""), None);
    }

    #[test]
    fn the_estimate_reads_max_tokens_and_refuses_over_a_bundle() {
        let body = br#"{"max_tokens":5}"#; // 16 bytes: 4 prompt units
        assert_eq!(UNITS.estimate(body), Some(4 * 2 + 5 * 3));
        let body = br#"{"max_tokens":5,"max_completion_tokens":6}"#; // 42 bytes: 11 units
        assert_eq!(UNITS.estimate(body), Some(11 * 2 + 6 * 3));
        assert_eq!(UNITS.estimate(b"not json"), Some(2 * 2 + 10 * 3), "no limit given: default_estimate");
        assert_eq!(UNITS.estimate(br#"{"max_tokens":18446744073709551615}"#), None, "overflow");
        assert_eq!(UNITS.estimate(br#"{"max_tokens":400}"#), None, "over a bundle");
        assert_eq!(UNITS.cost(Usage { prompt_tokens: u64::MAX, completion_tokens: 1 }), u64::MAX);
    }

    #[test]
    fn the_tail_stays_bounded_and_keeps_the_end() {
        let mut tail = Vec::new();
        for _ in 0..100 {
            keep_tail(&mut tail, &[b'a'; 10_000]);
        }
        keep_tail(&mut tail, b"END");
        assert!(tail.len() <= 2 * TAIL_BYTES && tail.ends_with(b"aEND"));
        keep_tail(&mut tail, &vec![b'b'; TAIL_BYTES + 5]);
        assert_eq!(tail.len(), TAIL_BYTES);
    }
}

//! Forwarding a request to its upstream and the response back, bodies streamed both ways.
//!
//! The request goes to the canonical path ([`crate::routing::canonical_path`]) with its query as sent.
//! Hop-by-hop headers are dropped in both directions; the credential and any client-sent `X-L402-*` header
//! never reach the upstream ([`crate::headers`]); a verified token adds `X-L402-Token-Id` and
//! `X-L402-Service`; every request gets `X-Forwarded-For` / `-Proto` / `-Host`. The request body is cut at the
//! service's `max_body_bytes` (413). An upstream that cannot be reached is a 502, one that does not answer in
//! time a 504.
//!
//! Connections to the upstream belong to the thread that made them: a `http://` upstream gets HTTP/1.1
//! connections from [`crate::pool`], `h2c://` and `https://` ones hyper-util's client, one per thread.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::uri::Authority;
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use http_body_util::{Either, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::ConfigError;
use crate::headers::{strip_hop_by_hop, strip_request};
use crate::pool::{Pool, PoolError};

/// The body of a request to forward: the client's as it streams in, or (metered services) read whole first.
pub(crate) type ReqBody = Either<crate::h1::Incoming, Full<Bytes>>;
/// The body sent upstream: the client's, cut at the service's limit.
type UpBody = Limited<ReqBody>;
type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A client for one upstream. Each thread gets a connection pool of its own (made on its first request), so
/// a worker's requests use connections driven by that worker: no wakeup crosses threads.
#[derive(Clone, Debug)]
pub(crate) struct Upstream {
    /// This upstream's key in the threads' pools.
    id: usize,
    connector: Connector,
    scheme: http::uri::Scheme,
    /// The HTTP version of the upstream hop, whatever the client spoke: 1.1 for `http://` and `https://`
    /// (ALPN may still pick HTTP/2 for the latter), 2 for `h2c://`.
    version: http::Version,
    authority: http::uri::Authority,
    /// `Host` for our HTTP/1.1 pool (the upstream's authority), made once.
    host: Option<HeaderValue>,
    base_path: String,
    timeout: Duration,
    extra: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Clone, Debug)]
enum Connector {
    /// `http://`: HTTP/1.1 connections of our own pool ([`crate::pool`]).
    Http1,
    /// `h2c://`: HTTP/2 without TLS.
    H2c(HttpConnector),
    /// `https://`: ALPN picks HTTP/2 or HTTP/1.1.
    Tls(HttpsConnector),
}

#[derive(Clone, Debug)]
enum UpstreamClient {
    Pool(Pool),
    Plain(Client<HttpConnector, UpBody>),
    Tls(Client<HttpsConnector, UpBody>),
}

impl Connector {
    fn client(&self, authority: &Authority) -> UpstreamClient {
        match self {
            Connector::Http1 => {
                let port = authority.port_u16().unwrap_or(80);
                let host = authority.host();
                UpstreamClient::Pool(Pool::new(format!("{host}:{port}")))
            }
            Connector::H2c(http) => {
                UpstreamClient::Plain(Client::builder(TokioExecutor::new()).http2_only(true).build(http.clone()))
            }
            Connector::Tls(https) => UpstreamClient::Tls(Client::builder(TokioExecutor::new()).build(https.clone())),
        }
    }
}

static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's pools, by upstream id.
    static POOLS: RefCell<HashMap<usize, UpstreamClient>> = RefCell::new(HashMap::new());
}

/// Why forwarding failed.
#[derive(Debug)]
pub(crate) enum ForwardError {
    /// Could not connect or the connection failed: 502.
    Unreachable(String),
    /// No response in time: 504.
    Timeout,
    /// The request body passed the service's limit: 413.
    BodyTooLarge,
}

impl std::fmt::Display for ForwardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardError::Unreachable(why) => write!(f, "upstream unreachable: {why}"),
            ForwardError::Timeout => f.write_str("upstream timed out"),
            ForwardError::BodyTooLarge => f.write_str("request body over the service's max_body_bytes"),
        }
    }
}

impl Upstream {
    /// A client for `url` (`http://`, `https://` or `h2c://`).
    pub(crate) fn new(
        url: &str,
        ca: Option<&Path>,
        timeout: Duration,
        extra: Vec<(HeaderName, HeaderValue)>,
    ) -> Result<Self, ConfigError> {
        let uri: Uri = url.parse().map_err(|e| ConfigError(format!("upstream {url}: {e}")))?;
        let authority = uri.authority().cloned().ok_or_else(|| ConfigError(format!("upstream {url}: no host")))?;
        let base_path = uri.path().trim_end_matches('/').to_owned();
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.enforce_http(false);
        let version = if uri.scheme_str() == Some("h2c") { http::Version::HTTP_2 } else { http::Version::HTTP_11 };
        let (connector, scheme) = match uri.scheme_str() {
            Some("http") => (Connector::Http1, http::uri::Scheme::HTTP),
            Some("h2c") => (Connector::H2c(http), http::uri::Scheme::HTTP),
            Some("https") => {
                let mut roots = rustls::RootCertStore::empty();
                if let Some(ca) = ca {
                    let pem =
                        std::fs::read(ca).map_err(|e| ConfigError(format!("upstream CA {}: {e}", ca.display())))?;
                    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                        let cert = cert.map_err(|e| ConfigError(format!("upstream CA {}: {e}", ca.display())))?;
                        roots.add(cert).map_err(|e| ConfigError(format!("upstream CA {}: {e}", ca.display())))?;
                    }
                }
                if roots.is_empty() {
                    return Err(ConfigError(format!(
                        "upstream {url}: https needs upstream_ca (no system roots are loaded)"
                    )));
                }
                let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
                let tls = rustls::ClientConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .map_err(|e| ConfigError(format!("tls: {e}")))?
                    .with_root_certificates(roots)
                    .with_no_client_auth();
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(tls)
                    .https_only()
                    .enable_http1()
                    .enable_http2()
                    .wrap_connector(http);
                (Connector::Tls(https), http::uri::Scheme::HTTPS)
            }
            _ => return Err(ConfigError(format!("upstream {url}: scheme must be http, https or h2c"))),
        };
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let host = HeaderValue::from_str(authority.as_str()).ok();
        Ok(Self { id, connector, scheme, version, authority, host, base_path, timeout, extra })
    }

    /// This thread's client (its pool) for this upstream.
    fn client(&self) -> UpstreamClient {
        POOLS.with(|p| p.borrow_mut().entry(self.id).or_insert_with(|| self.connector.client(&self.authority)).clone())
    }

    /// Sends the request upstream at `path` (canonical) and returns its response, headers cleaned. `peer` is
    /// the connection's address (appended to `X-Forwarded-For`); `max_body` cuts the request body.
    pub(crate) async fn forward(
        &self,
        req: Request<ReqBody>,
        path: &str,
        peer: IpAddr,
        tls: bool,
        l402: Option<Paid<'_>>,
        max_body: u64,
    ) -> Result<Response<Body>, ForwardError> {
        let query = req.uri().query();
        let mut pq = String::with_capacity(self.base_path.len() + path.len() + query.map_or(0, |q| q.len() + 1));
        pq.push_str(&self.base_path);
        pq.push_str(path);
        if let Some(q) = query {
            pq.push('?');
            pq.push_str(q);
        }
        let client = self.client();
        // Our HTTP/1.1 pool sends the origin form with `Host`; hyper-util's client wants the absolute form.
        let own_pool = matches!(client, UpstreamClient::Pool(_));
        let uri = if own_pool {
            Uri::try_from(pq).map_err(|e| ForwardError::Unreachable(e.to_string()))?
        } else {
            Uri::builder()
                .scheme(self.scheme.clone())
                .authority(self.authority.clone())
                .path_and_query(pq)
                .build()
                .map_err(|e| ForwardError::Unreachable(e.to_string()))?
        };
        let limit = usize::try_from(max_body).unwrap_or(usize::MAX);
        let mut req = req.map(|b| Limited::new(b, limit));
        let original_host = req
            .headers()
            .get(http::header::HOST)
            .cloned()
            .or_else(|| req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
        *req.uri_mut() = uri;
        *req.version_mut() = self.version;
        let headers = req.headers_mut();
        strip_request(headers);
        headers.remove(http::header::HOST);
        if let (true, Some(h)) = (own_pool, &self.host) {
            headers.insert(http::header::HOST, h.clone());
        }
        append_forwarded_for(headers, peer);
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(if tls { "https" } else { "http" }));
        if let Some(h) = original_host {
            headers.insert(X_FORWARDED_HOST, h);
        }
        if let Some(paid) = l402 {
            let (name, id) = match paid.by {
                PaidBy::Token(t) => (X_L402_TOKEN_ID, t),
                PaidBy::Charge(h) => (X_L402_PAYMENT_HASH, h),
                PaidBy::Session(h) => (X_L402_SESSION_ID, h),
            };
            if let (Ok(t), Ok(s)) = (HeaderValue::from_str(id), HeaderValue::from_str(paid.service)) {
                headers.insert(name, t);
                headers.insert(X_L402_SERVICE, s);
            }
        }
        for (name, value) in &self.extra {
            headers.insert(name.clone(), value.clone());
        }
        let fut = async {
            match &client {
                UpstreamClient::Pool(p) => match p.send(req).await {
                    Ok(r) => Ok(r.map(Body::new)),
                    Err(PoolError::Connect(e) | PoolError::Exchange(e)) => {
                        Err(ForwardError::Unreachable(error_chain(&e)))
                    }
                    Err(PoolError::Body(e)) if cut_at_limit(&*e) => Err(ForwardError::BodyTooLarge),
                    Err(PoolError::Body(e)) => Err(ForwardError::Unreachable(error_chain(&*e))),
                },
                UpstreamClient::Plain(c) => legacy(c.request(req).await),
                UpstreamClient::Tls(c) => legacy(c.request(req).await),
            }
        };
        let resp = match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => return Err(ForwardError::Timeout),
            Ok(r) => r?,
        };
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, body))
    }
}

/// A response of hyper-util's client, or why there is none.
fn legacy(r: Result<Response<Incoming>, hyper_util::client::legacy::Error>) -> Result<Response<Body>, ForwardError> {
    match r {
        Ok(r) => Ok(r.map(Body::new)),
        Err(e) if cut_at_limit(&e) => Err(ForwardError::BodyTooLarge),
        Err(e) => Err(ForwardError::Unreachable(error_chain(&e))),
    }
}

/// Whether the request failed because its body passed the limit.
fn cut_at_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut src = Some(e);
    while let Some(inner) = src {
        if inner.is::<LengthLimitError>() {
            return true;
        }
        src = inner.source();
    }
    false
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_L402_TOKEN_ID: HeaderName = HeaderName::from_static("x-l402-token-id");
const X_L402_SERVICE: HeaderName = HeaderName::from_static("x-l402-service");
/// The session a request was drawn from (its id, the deposit's payment hash), for the upstream.
const X_L402_SESSION_ID: HeaderName = HeaderName::from_static("x-l402-session-id");
const X_L402_PAYMENT_HASH: HeaderName = HeaderName::from_static("x-l402-payment-hash");

/// How a forwarded request was paid, as the upstream is told.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Paid<'a> {
    /// The token or the charge.
    pub(crate) by: PaidBy<'a>,
    /// The service.
    pub(crate) service: &'a str,
}

/// The token id (`X-L402-Token-Id`) or a `Payment` charge's payment hash (`X-L402-Payment-Hash`), hex.
#[derive(Clone, Copy, Debug)]
pub(crate) enum PaidBy<'a> {
    /// An L402 token.
    Token(&'a str),
    /// A `Payment` charge.
    Charge(&'a str),
    /// A `Payment` session (its id).
    Session(&'a str),
}

fn append_forwarded_for(headers: &mut HeaderMap, client: IpAddr) {
    let value = match headers.get(&X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => format!("{prev}, {client}"),
        _ => client.to_string(),
    };
    // The header keeps the string's bytes (no copy).
    if let Ok(v) = HeaderValue::from_maybe_shared(Bytes::from(value)) {
        headers.insert(X_FORWARDED_FOR, v);
    }
}

/// The response for a forwarding failure (gRPC: trailers-only with the matching status).
pub(crate) fn failure_response(err: &ForwardError, grpc: bool) -> Response<Body> {
    let (status, grpc_status, msg) = match err {
        ForwardError::Unreachable(_) => (StatusCode::BAD_GATEWAY, "14", "upstream unavailable"),
        ForwardError::Timeout => (StatusCode::GATEWAY_TIMEOUT, "4", "upstream timed out"),
        ForwardError::BodyTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "8", "request body too large"),
    };
    let builder = Response::builder();
    let resp = if grpc {
        builder
            .status(StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header("grpc-status", grpc_status)
            .header("grpc-message", msg)
            .body(Body::empty())
    } else {
        builder
            .status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(format!("{{\"error\":\"{msg}\"}}")))
    };
    resp.unwrap_or_else(|_| Response::new(Body::empty()))
}

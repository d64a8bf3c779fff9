//! Forwarding a request to its upstream and the response back, bodies streamed both ways.
//!
//! Hop-by-hop headers (RFC 9110 7.6.1: `Connection` and the headers it names, `Keep-Alive`, `Proxy-*`, `TE`
//! except `trailers`, `Trailer`, `Transfer-Encoding`, `Upgrade`) are dropped in both directions. The L402
//! credential never reaches the upstream; it gets `X-L402-Token-Id` and `X-L402-Service` instead, and
//! `X-Forwarded-For` / `-Proto` / `-Host`. An upstream that cannot be reached is a 502, one that does not
//! answer in time a 504.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use axum::body::Body;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::ConfigError;

type HttpsConnector = hyper_rustls::HttpsConnector<HttpConnector>;

/// A client for one upstream.
#[derive(Clone, Debug)]
pub(crate) struct Upstream {
    client: UpstreamClient,
    scheme: http::uri::Scheme,
    /// The HTTP version of the upstream hop, whatever the client spoke: 1.1 for `http://` and `https://`
    /// (ALPN may still pick HTTP/2 for the latter), 2 for `h2c://`.
    version: http::Version,
    authority: http::uri::Authority,
    base_path: String,
    timeout: Duration,
    extra: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Clone, Debug)]
enum UpstreamClient {
    Plain(Client<HttpConnector, Incoming>),
    Tls(Client<HttpsConnector, Incoming>),
}

/// Why forwarding failed.
#[derive(Debug)]
pub(crate) enum ForwardError {
    /// Could not connect or the connection failed: 502.
    Unreachable(String),
    /// No response in time: 504.
    Timeout,
}

impl std::fmt::Display for ForwardError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForwardError::Unreachable(why) => write!(f, "upstream unreachable: {why}"),
            ForwardError::Timeout => f.write_str("upstream timed out"),
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
        let (client, scheme) = match uri.scheme_str() {
            Some("http") => {
                (UpstreamClient::Plain(Client::builder(TokioExecutor::new()).build(http)), http::uri::Scheme::HTTP)
            }
            Some("h2c") => (
                UpstreamClient::Plain(Client::builder(TokioExecutor::new()).http2_only(true).build(http)),
                http::uri::Scheme::HTTP,
            ),
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
                (UpstreamClient::Tls(Client::builder(TokioExecutor::new()).build(https)), http::uri::Scheme::HTTPS)
            }
            _ => return Err(ConfigError(format!("upstream {url}: scheme must be http, https or h2c"))),
        };
        Ok(Self { client, scheme, version, authority, base_path, timeout, extra })
    }

    /// Sends the request upstream and returns its response, headers cleaned.
    pub(crate) async fn forward(
        &self,
        mut req: Request<Incoming>,
        client: IpAddr,
        tls: bool,
        l402: Option<(&str, &str)>,
    ) -> Result<Response<Body>, ForwardError> {
        let path_q = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(format!("{}{path_q}", self.base_path))
            .build()
            .map_err(|e| ForwardError::Unreachable(e.to_string()))?;
        let original_host = req
            .headers()
            .get(http::header::HOST)
            .cloned()
            .or_else(|| req.uri().authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok()));
        *req.uri_mut() = uri;
        *req.version_mut() = self.version;
        let headers = req.headers_mut();
        strip_hop_by_hop(headers);
        strip_credentials(headers);
        headers.remove(http::header::HOST);
        append_forwarded_for(headers, client);
        headers.insert("x-forwarded-proto", HeaderValue::from_static(if tls { "https" } else { "http" }));
        if let Some(h) = original_host {
            headers.insert("x-forwarded-host", h);
        }
        if let Some((token_id, service)) = l402 {
            if let (Ok(t), Ok(s)) = (HeaderValue::from_str(token_id), HeaderValue::from_str(service)) {
                headers.insert("x-l402-token-id", t);
                headers.insert("x-l402-service", s);
            }
        }
        for (name, value) in &self.extra {
            headers.insert(name.clone(), value.clone());
        }
        let fut = async {
            match &self.client {
                UpstreamClient::Plain(c) => c.request(req).await,
                UpstreamClient::Tls(c) => c.request(req).await,
            }
        };
        let resp = match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => return Err(ForwardError::Timeout),
            Ok(Err(e)) => return Err(ForwardError::Unreachable(error_chain(&e))),
            Ok(Ok(r)) => r,
        };
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, Body::new(body)))
    }
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

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers, keeping `TE: trailers` (gRPC needs it end to end).
pub(crate) fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    let trailers = headers
        .get_all(http::header::TE)
        .iter()
        .any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case("trailers"))));
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    if trailers {
        headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Removes L402 credentials (the upstream gets the token id instead); other Authorization schemes pass.
fn strip_credentials(headers: &mut HeaderMap) {
    let keep: Vec<HeaderValue> = headers
        .get_all(http::header::AUTHORIZATION)
        .iter()
        .filter(|v| {
            let s = v.as_bytes();
            let scheme = s.split(|&b| b == b' ').next().unwrap_or_default();
            !(scheme.eq_ignore_ascii_case(b"L402") || scheme.eq_ignore_ascii_case(b"LSAT"))
        })
        .cloned()
        .collect();
    headers.remove(http::header::AUTHORIZATION);
    for v in keep {
        headers.append(http::header::AUTHORIZATION, v);
    }
    headers.remove("macaroon");
    headers.remove("grpc-metadata-macaroon");
}

fn append_forwarded_for(headers: &mut HeaderMap, client: IpAddr) {
    let value = match headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        Some(prev) if !prev.is_empty() => format!("{prev}, {client}"),
        _ => client.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert("x-forwarded-for", v);
    }
}

/// The response for a forwarding failure (gRPC: trailers-only with the matching status).
pub(crate) fn failure_response(err: &ForwardError, grpc: bool) -> Response<Body> {
    let (status, grpc_status, msg) = match err {
        ForwardError::Unreachable(_) => (StatusCode::BAD_GATEWAY, "14", "upstream unavailable"),
        ForwardError::Timeout => (StatusCode::GATEWAY_TIMEOUT, "4", "upstream timed out"),
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

//! The request path: match a service, then free path, freebie, payment, rate limit, forward.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Body;
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use l402_lightning::InvoiceIssuer;
use l402_proto::Msat;
use l402_server::layer::answer;
use l402_server::response::is_grpc;
use l402_server::store::{PostgresStore, SqliteStore, TokenStore};
use l402_server::{Charge, Paywall, ServiceSpec};

use crate::config::{Config, ConfigError, RateKey, ServiceConfig, StoreConfig};
use crate::forward::{Upstream, failure_response};
use crate::limits::{Freebies, RateLimiter};
use crate::metrics::{Outcome, ProxyMetrics};
use crate::routing::{glob, host_only};

/// One configured service, ready to serve.
pub(crate) struct Service {
    pub(crate) config: ServiceConfig,
    pub(crate) spec: Arc<ServiceSpec>,
    pub(crate) upstream: Upstream,
    pub(crate) freebies: Freebies,
    pub(crate) limiter: Option<(RateKey, RateLimiter)>,
}

/// Everything a request needs.
pub(crate) struct State {
    pub(crate) services: Vec<Service>,
    pub(crate) paywall: Arc<Paywall>,
    pub(crate) metrics: Arc<ProxyMetrics>,
    pub(crate) tls: bool,
    pub(crate) requests: AtomicU64,
}

/// Opens the configured store.
pub async fn open_store(config: &StoreConfig) -> Result<Arc<dyn TokenStore>, ConfigError> {
    Ok(match config {
        StoreConfig::Sqlite { path } => {
            Arc::new(SqliteStore::open(path).map_err(|e| ConfigError(format!("store: {e}")))?)
        }
        StoreConfig::Postgres { url, max_connections } => Arc::new(
            PostgresStore::connect(url, *max_connections).await.map_err(|e| ConfigError(format!("store: {e}")))?,
        ),
    })
}

impl State {
    pub(crate) fn new(
        config: &Config,
        store: Arc<dyn TokenStore>,
        issuer: Arc<dyn InvoiceIssuer>,
    ) -> Result<Self, ConfigError> {
        let metrics = Arc::new(ProxyMetrics::default());
        let paywall = Paywall::builder(store, issuer)
            .key_cache_ttl(Duration::from_millis(config.key_cache_ttl_ms))
            .key_cache_size(config.key_cache_size)
            .invoice_expiry(Duration::from_secs(config.invoice_expiry_secs))
            .metrics(metrics.paywall.clone())
            .build();
        let mut services = Vec::new();
        for s in &config.services {
            let mut extra = Vec::new();
            for (name, source) in &s.headers {
                let value = source.resolve(name)?;
                let name =
                    HeaderName::from_bytes(name.as_bytes()).map_err(|e| ConfigError(format!("header {name}: {e}")))?;
                let value = HeaderValue::from_str(&value).map_err(|e| ConfigError(format!("header {name}: {e}")))?;
                extra.push((name, value));
            }
            let upstream =
                Upstream::new(&s.upstream, s.upstream_ca.as_deref(), Duration::from_secs(s.timeout_secs), extra)?;
            let spec = ServiceSpec {
                name: s.name.clone(),
                tier: s.tier,
                price: Msat(s.price()?),
                lifetime: s.lifetime_secs.map(Duration::from_secs),
                capabilities: s.capabilities.clone(),
            };
            services.push(Service {
                spec: Arc::new(spec),
                upstream,
                freebies: Freebies::new(s.freebies),
                limiter: s.rate_limit.as_ref().map(|r| (r.per, RateLimiter::new(r.per_second, r.burst))),
                config: s.clone(),
            });
        }
        Ok(Self { services, paywall, metrics, tls: config.tls.is_some(), requests: AtomicU64::new(0) })
    }

    fn route(&self, req: &Request<Incoming>) -> Option<&Service> {
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .map(host_only)
            .unwrap_or_default();
        let path = req.uri().path();
        self.services.iter().find(|s| glob(&s.config.host.to_ascii_lowercase(), &host) && glob(&s.config.path, path))
    }
}

fn status_response(status: StatusCode, msg: &str, grpc: bool, retry_after: Option<Duration>) -> Response<Body> {
    let mut b = Response::builder();
    if let Some(d) = retry_after {
        b = b.header(http::header::RETRY_AFTER, d.as_secs_f64().ceil().max(1.0).to_string());
    }
    let r = if grpc {
        let code = match status {
            StatusCode::TOO_MANY_REQUESTS => "8",
            StatusCode::NOT_FOUND => "12",
            _ => "13",
        };
        b.status(StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header("grpc-status", code)
            .header("grpc-message", msg)
            .body(Body::empty())
    } else {
        b.status(status)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Body::from(format!("{{\"error\":\"{msg}\"}}")))
    };
    r.unwrap_or_else(|_| Response::new(Body::empty()))
}

/// Serves one request.
pub(crate) async fn handle(state: Arc<State>, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    state.requests.fetch_add(1, Ordering::Relaxed);
    let grpc = is_grpc(req.headers());
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let Some(service) = state.route(&req) else {
        state.metrics.count(Outcome::NoRoute);
        return status_response(StatusCode::NOT_FOUND, "no service for this host and path", grpc, None);
    };
    let client: IpAddr = peer.ip();
    let name = service.spec.name.as_str();

    let free = !service.config.payment
        || service.config.free_paths.iter().any(|p| glob(p, &path))
        || service.freebies.take(client);
    let mut token_id = None;
    if !free {
        let capability = service
            .config
            .routes
            .iter()
            .find(|r| {
                glob(&r.path, &path)
                    && (r.methods.is_empty() || r.methods.iter().any(|m| m.eq_ignore_ascii_case(method.as_str())))
            })
            .map(|r| r.capability.clone());
        let charge = Charge { service: service.spec.clone(), price: service.spec.price, capability };
        match state.paywall.authenticate(req.headers(), &charge).await {
            Ok(token) => token_id = Some(token.token_id.to_hex()),
            Err(refusal) => {
                if let Some((RateKey::Address, limiter)) = &service.limiter {
                    if let Err(wait) = limiter.check(&format!("a:{client}")) {
                        state.metrics.count(Outcome::RateLimited);
                        return status_response(StatusCode::TOO_MANY_REQUESTS, "rate limited", grpc, Some(wait));
                    }
                }
                let resp = answer(&state.paywall, &charge, refusal, grpc).await;
                state.metrics.count(if resp.status() == StatusCode::PAYMENT_REQUIRED || grpc {
                    Outcome::Challenged
                } else {
                    Outcome::Refused
                });
                tracing::info!(%method, path, service = name, status = resp.status().as_u16(), "not forwarded");
                return resp.map(Body::new);
            }
        }
    }
    if let Some((key, limiter)) = &service.limiter {
        let k = match (key, &token_id) {
            (RateKey::Token, Some(t)) => format!("t:{t}"),
            _ => format!("a:{client}"),
        };
        if let Err(wait) = limiter.check(&k) {
            state.metrics.count(Outcome::RateLimited);
            return status_response(StatusCode::TOO_MANY_REQUESTS, "rate limited", grpc, Some(wait));
        }
    }
    let l402 = token_id.as_deref().map(|t| (t, name));
    let result = service.upstream.forward(req, client, state.tls, l402).await;
    let elapsed = started.elapsed();
    state.metrics.upstream_latency.observe(elapsed);
    match result {
        Ok(resp) => {
            state.metrics.count(Outcome::Forwarded);
            tracing::info!(%method, path, service = name, token_id = token_id.as_deref().unwrap_or("-"), status = resp.status().as_u16(), ms = elapsed.as_millis() as u64, "forwarded");
            resp
        }
        Err(e) => {
            state.metrics.count(Outcome::UpstreamError);
            tracing::warn!(%method, path, service = name, error = %e, "upstream failed");
            failure_response(&e, grpc)
        }
    }
}

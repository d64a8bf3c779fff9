//! The request path: the client's address, the canonical path (400 without one), the service, the body
//! limit (413), free path, capability route (405 for a method no route lists), freebie, payment (with the
//! challenge limit, 429), rate limit, forward.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::h1::Incoming;
use axum::body::Body;
use http::header::{HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Body as _;
use l402_lightning::InvoiceIssuer;
use l402_proto::Msat;
use l402_server::layer::answer;
use l402_server::response::is_grpc;
use l402_server::store::{BalanceKey, PostgresStore, Reserve, SqliteStore, TokenStore};
use l402_server::{
    Authorized, Charge, MasterKeys, PaymentScheme, Paywall, Refunder, Refusal, ServiceSpec, SessionSpec,
};

use crate::client::{ClientPrefix, TrustedProxies};
use crate::config::{Config, ConfigError, ListenerConfig, RateKey, ServiceConfig, StoreConfig};
use crate::forward::{ForwardError, Paid, PaidBy, ReqBody, Upstream, failure_response};
use crate::limits::{ChallengeLimiter, Freebies, LimitKey, RateLimiter};
use crate::metering::{MeteredBody, Metering, Pricer, Reservation};
use crate::metrics::{Outcome, ProxyMetrics};
use crate::routing::{canonical_path, glob, host_only};
use crate::services::{Registry, ServiceTable};

/// A capability route, its patterns ready.
pub(crate) struct Route {
    path: String,
    methods: Vec<String>,
    capability: String,
}

/// What a request needs from the routes of its service.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Need<'a> {
    /// No route matches the path: any token of the service (or a freebie) will do.
    Open,
    /// The first route matching path and method requires this capability.
    Capability(&'a str),
    /// Routes match the path but none lists the method: 405, with these methods in `Allow`.
    MethodNotAllowed(String),
}

/// One configured service, ready to serve.
pub(crate) struct Service {
    pub(crate) config: ServiceConfig,
    pub(crate) spec: Arc<ServiceSpec>,
    pub(crate) upstream: Upstream,
    pub(crate) freebies: Freebies,
    /// `[service.metering]`, checked.
    pub(crate) metering: Option<Metering>,
    pub(crate) limiter: Option<(RateKey, RateLimiter<LimitKey>)>,
    /// The host pattern, lower-cased.
    host: String,
    /// The path patterns, lower-cased when the service matches without regard to case.
    path: String,
    free_paths: Vec<String>,
    routes: Vec<Route>,
    /// Requests forwarded on an L402 token or a `Payment` charge (`l402_paid_requests_total`).
    pub(crate) paid_requests: l402_server::metrics::Counter,
}

impl Service {
    /// Makes a service ready to serve from its (checked) configuration: resolves its extra headers, builds
    /// its upstream client; limit tables of `capacity` clients (`shared` with other instances, or not).
    pub(crate) fn build(s: &ServiceConfig, capacity: usize, shared: bool) -> Result<Self, ConfigError> {
        let mut extra = Vec::new();
        for (name, source) in &s.headers {
            let value = source.resolve(name)?;
            let name =
                HeaderName::from_bytes(name.as_bytes()).map_err(|e| ConfigError(format!("header {name}: {e}")))?;
            let value = HeaderValue::from_str(&value)
                .map_err(|_| ConfigError(format!("header {name}: not a valid header value")))?;
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
            schemes: s.schemes()?,
            metered: s.metering.is_some(),
            session: match &s.session {
                Some(c) => Some(SessionSpec { deposit: c.deposit(&s.name, s.price()?)? }),
                None => None,
            },
        };
        let metering = match &s.metering {
            Some(m) => {
                let (meter, price) = m.check(&s.name)?;
                let pricer = match &m.pricer_url {
                    Some(url) => Some(Arc::new(Pricer::new(url, Duration::from_millis(m.pricer_timeout_ms), &s.name)?)),
                    None => None,
                };
                Some(Metering { meter, bundle: Msat(price), pricer })
            }
            None => None,
        };
        let case = |p: &str| if s.case_insensitive_paths { p.to_ascii_lowercase() } else { p.to_owned() };
        Ok(Service {
            spec: Arc::new(spec),
            upstream,
            freebies: Freebies::new(s.freebies, capacity, shared),
            metering,
            limiter: s.rate_limit.as_ref().map(|r| (r.per, RateLimiter::new(r.per_second, r.burst, capacity, shared))),
            host: s.host.to_ascii_lowercase(),
            path: case(&s.path),
            free_paths: s.free_paths.iter().map(|p| case(p)).collect(),
            routes: s
                .routes
                .iter()
                .map(|r| Route { path: case(&r.path), methods: r.methods.clone(), capability: r.capability.clone() })
                .collect(),
            config: s.clone(),
            paid_requests: l402_server::metrics::Counter::default(),
        })
    }

    /// The pattern form of a path for this service: `path` as is, or `lower` (lower-cased) for a service
    /// with `case_insensitive_paths`.
    fn subject<'a>(&self, path: &'a str, lower: &'a str) -> &'a str {
        if self.config.case_insensitive_paths { lower } else { path }
    }

    fn is_free_path(&self, subject: &str) -> bool {
        self.free_paths.iter().any(|p| glob(p, subject))
    }

    /// What the routes ask of a request (`subject` from [`Service::subject`]).
    pub(crate) fn need(&self, subject: &str, method: &http::Method) -> Need<'_> {
        let mut allow: Vec<&str> = Vec::new();
        for r in self.routes.iter().filter(|r| glob(&r.path, subject)) {
            if r.methods.is_empty() || r.methods.iter().any(|m| m.eq_ignore_ascii_case(method.as_str())) {
                return Need::Capability(&r.capability);
            }
            for m in &r.methods {
                if !allow.contains(&m.as_str()) {
                    allow.push(m);
                }
            }
        }
        if allow.is_empty() { Need::Open } else { Need::MethodNotAllowed(allow.join(", ")) }
    }
}

/// Everything a request needs.
pub(crate) struct State {
    /// The live services, swapped whole by the admin API, SIGHUP and the store poller.
    pub(crate) services: Arc<Registry>,
    pub(crate) paywall: Arc<Paywall>,
    pub(crate) metrics: Arc<ProxyMetrics>,
    pub(crate) tls: bool,
    pub(crate) listener: ListenerConfig,
    trusted: TrustedProxies,
    challenges: ChallengeLimiter,
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
        refunder: Option<Arc<dyn Refunder>>,
    ) -> Result<Self, ConfigError> {
        let metrics = Arc::new(ProxyMetrics::default());
        let store = crate::metrics::TimedStore::wrap(store, metrics.clone());
        let mut builder = Paywall::builder(store, issuer)
            .key_cache_ttl(Duration::from_millis(config.key_cache_ttl_ms))
            .key_cache_size(config.key_cache_size)
            .invoice_expiry(Duration::from_secs(config.invoice_expiry_secs))
            .revocation_poll_interval(Duration::from_millis(config.tokens.revocation_poll_ms))
            .recorded_tokens_size(config.tokens.recorded_tokens)
            .verified_stateless_size(config.tokens.verified_tokens)
            .metrics(metrics.paywall.clone());
        let key_files = config.tokens.key_files(&config.store);
        // The Payment scheme is there whenever master keys are (a service taking it may come at runtime);
        // only services whose `schemes` name it offer it.
        let payment_available = !key_files.is_empty();
        if key_files.is_empty() {
            tracing::info!("tokens are stored at mint time (set [tokens] master_key_files for stateless tokens)");
        } else {
            let keys = MasterKeys::load(&key_files).map_err(|e| ConfigError(format!("tokens: {e}")))?;
            let realm = config.payment.realm.clone().unwrap_or_else(|| config.listen.to_string());
            let scheme = PaymentScheme::new(realm, keys.payment_secrets())
                .ok_or_else(|| ConfigError("tokens: no master key".into()))?
                .expiry(Duration::from_secs(config.payment.expiry_secs));
            builder = builder.payment_scheme(scheme);
            builder = builder.master_keys(keys);
            tracing::info!(keys = key_files.len(), "stateless tokens: challenges write nothing to the store");
        }
        let refunds_available = refunder.is_some();
        if let Some(r) = refunder {
            builder = builder.refunder(r);
        }
        let paywall = builder.build();
        let services = Arc::new(Registry::new(
            config,
            paywall.store().clone(),
            payment_available,
            refunds_available,
            config.max_tracked_clients,
            config.shared_limits_on(),
        )?);
        metrics.serve_services(&services);
        Ok(Self {
            services,
            paywall,
            metrics,
            tls: config.tls.is_some(),
            listener: config.listener.clone(),
            trusted: TrustedProxies::parse(&config.trusted_proxies)?,
            challenges: ChallengeLimiter::new(&config.challenge_limit, config.max_tracked_clients),
        })
    }
}

impl State {
    /// A request answered 429: counted by outcome, and as a refusal of `service` for `reason`.
    fn limited(&self, service: &str, reason: &'static str) {
        self.metrics.count(Outcome::RateLimited);
        self.paywall.metrics().refused(service, reason);
    }
}

impl ServiceTable {
    /// The service for a request whose canonical path is `path` (`lower`: lower-cased, if some service
    /// wants it).
    fn route(&self, req: &Request<Incoming>, path: &str, lower: &str) -> Option<&Arc<Service>> {
        let host = req
            .headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .map(host_only)
            .unwrap_or_default();
        self.services.iter().find(|s| glob(&s.host, &host) && glob(&s.path, s.subject(path, lower)))
    }
}

/// An extra on a proxy's own answer.
enum Extra {
    None,
    RetryAfter(Duration),
    Allow(String),
    /// A stable reason code in the JSON body beside the message (`{"error":..., "reason":...}`).
    Reason(&'static str),
}

/// A proxy's own answer; `msg` and the reason are static ASCII without quotes (no escaping needed).
fn status_response(status: StatusCode, msg: &'static str, grpc: bool, extra: Extra) -> Response<Body> {
    let mut b = Response::builder();
    let extra_reason = if let Extra::Reason(r) = extra { Some(r) } else { None };
    match extra {
        Extra::None => {}
        Extra::RetryAfter(d) => {
            b = b.header(http::header::RETRY_AFTER, d.as_secs_f64().ceil().clamp(1.0, 1e6).to_string());
        }
        Extra::Allow(methods) => b = b.header(http::header::ALLOW, methods),
        Extra::Reason(_) => {}
    }
    let r = if grpc {
        let code = match status {
            StatusCode::TOO_MANY_REQUESTS => "8",
            StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => "12",
            StatusCode::BAD_REQUEST => "3",
            StatusCode::PAYLOAD_TOO_LARGE => "8",
            _ => "13",
        };
        b.status(StatusCode::OK)
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .header("grpc-status", code)
            .header("grpc-message", msg)
            .body(Body::empty())
    } else {
        let body = match extra_reason {
            Some(reason) => format!("{{\"error\":\"{msg}\",\"reason\":\"{reason}\"}}"),
            None => format!("{{\"error\":\"{msg}\"}}"),
        };
        b.status(status).header(http::header::CONTENT_TYPE, "application/json").body(Body::from(body))
    };
    r.unwrap_or_else(|_| Response::new(Body::empty()))
}

/// Serves one request.
pub(crate) async fn handle(state: Arc<State>, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let started = Instant::now();
    let grpc = is_grpc(req.headers());
    let method = req.method().clone();
    let client: IpAddr = state.trusted.client(peer.ip(), req.headers());
    let path = match canonical_path(req.uri().path()) {
        Ok(p) => p,
        Err(e) => {
            state.metrics.count(Outcome::BadRequest);
            tracing::info!(%method, %client, reason = e.reason(), "request path refused");
            return status_response(StatusCode::BAD_REQUEST, "bad request path", grpc, Extra::Reason(e.reason()));
        }
    };
    // The table is read once: a request keeps the service it was routed to, whatever is swapped meanwhile.
    let table = state.services.for_request();
    let lower = if table.any_case_insensitive { path.to_ascii_lowercase() } else { String::new() };
    let Some(service) = table.route(&req, &path, &lower) else {
        state.metrics.count(Outcome::NoRoute);
        return status_response(StatusCode::NOT_FOUND, "no service for this host and path", grpc, Extra::None);
    };
    let name = service.spec.name.as_str();
    if req.body().size_hint().lower() > service.config.max_body_bytes {
        state.metrics.count(Outcome::BadRequest);
        tracing::info!(%method, path, %client, service = name, "request body over max_body_bytes");
        return status_response(StatusCode::PAYLOAD_TOO_LARGE, "request body too large", grpc, Extra::None);
    }
    let prefix = ClientPrefix::of(client);
    let subject = service.subject(&path, &lower);

    // Free paths are the operator's explicit choice and win over routes; a freebie never opens a route that
    // needs a capability.
    let free_path = !service.config.payment || service.is_free_path(subject);
    let mut capability = None;
    if !free_path {
        match service.need(subject, &method) {
            Need::Open => {}
            Need::Capability(c) => capability = Some(c.to_owned()),
            Need::MethodNotAllowed(allow) => {
                state.metrics.count(Outcome::BadRequest);
                tracing::info!(%method, path, %client, service = name, "method not allowed by the routes");
                return status_response(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method not allowed",
                    grpc,
                    Extra::Allow(allow),
                );
            }
        }
    }
    let free = free_path || (capability.is_none() && service.freebies.take(prefix));
    let mut token_id = None;
    let mut receipt = None;
    let mut session = None;
    let charge = Charge { service: service.spec.clone(), price: service.spec.price, capability };
    if !free {
        match state.paywall.authorize(req.headers(), &charge).await {
            Ok(Authorized::Token(token)) => token_id = Some(token.token_id),
            Ok(Authorized::Charge(paid)) => receipt = Some(paid),
            Ok(Authorized::Session(paid)) => session = Some(paid),
            Ok(Authorized::SessionClosed(closed)) => {
                state.metrics.count(Outcome::Refused);
                tracing::info!(%method, path, %client, service = name, session = %closed.id, refund_msat = closed.refund.0, status = closed.status.as_str(), "session closed (not forwarded)");
                return l402_server::response::session_closed(&closed, grpc).map(Body::new);
            }
            Err(refusal) => {
                if let Some((RateKey::Address, limiter)) = &service.limiter {
                    if let Err(wait) = limiter.check(LimitKey::Client(prefix)) {
                        state.limited(name, "rate_limited");
                        return status_response(
                            StatusCode::TOO_MANY_REQUESTS,
                            "rate limited",
                            grpc,
                            Extra::RetryAfter(wait),
                        );
                    }
                }
                if refusal.wants_challenge() {
                    if let Err(wait) = state.challenges.check(prefix) {
                        state.limited(name, "challenge_rate_limited");
                        tracing::info!(%method, path, %client, service = name, "challenge rate limited");
                        return status_response(
                            StatusCode::TOO_MANY_REQUESTS,
                            "too many challenges",
                            grpc,
                            Extra::RetryAfter(wait),
                        );
                    }
                }
                let resp = answer(&state.paywall, &charge, refusal, grpc).await;
                state.metrics.count(if resp.status() == StatusCode::PAYMENT_REQUIRED || grpc {
                    Outcome::Challenged
                } else {
                    Outcome::Refused
                });
                tracing::info!(%method, path, %client, service = name, status = resp.status().as_u16(), "not forwarded");
                return resp.map(Body::new);
            }
        }
    }
    if let Some((key, limiter)) = &service.limiter {
        let k = match (key, token_id) {
            (RateKey::Token, Some(t)) => LimitKey::Token(t),
            _ => LimitKey::Client(prefix),
        };
        if let Err(wait) = limiter.check(k) {
            state.limited(name, "rate_limited");
            return status_response(StatusCode::TOO_MANY_REQUESTS, "rate limited", grpc, Extra::RetryAfter(wait));
        }
    }
    if free {
        state.paywall.metrics().free_requests.inc();
    }
    let token_hex = token_id
        .map(|t| t.to_hex())
        .or_else(|| receipt.as_ref().map(|r| hex::encode(r.payment_hash.0)))
        .or_else(|| session.as_ref().map(|s| hex::encode(s.id.0)));
    let paid = token_hex.as_deref().map(|id| Paid {
        by: if receipt.is_some() {
            PaidBy::Charge(id)
        } else if session.is_some() {
            PaidBy::Session(id)
        } else {
            PaidBy::Token(id)
        },
        service: name,
    });
    let key = match (&service.metering, token_id, &receipt) {
        (None, ..) => None,
        (Some(_), Some(t), _) => Some(BalanceKey::Token(t)),
        (Some(_), None, Some(r)) => Some(BalanceKey::Charge(r.payment_hash)),
        (Some(_), None, None) => None, // a free path or a freebie
    };
    let (req, mut reservation) = match (key, &service.metering) {
        (Some(key), Some(m)) => {
            let id = token_hex.clone().unwrap_or_default();
            match reserve(&state, service, m, key, id, req, &charge, prefix, grpc).await {
                Ok((req, r)) => (req, Some(r)),
                Err(resp) => {
                    tracing::info!(%method, path, %client, service = name, token_id = token_hex.as_deref().unwrap_or("-"), status = resp.status().as_u16(), "metered request not forwarded");
                    return resp;
                }
            }
        }
        _ => (req.map(ReqBody::Left), None),
    };
    let result = service.upstream.forward(req, &path, peer.ip(), state.tls, paid, service.config.max_body_bytes).await;
    let elapsed = started.elapsed();
    state.metrics.upstream_latency.observe(elapsed);
    if result.is_err() {
        // Nothing was served: the reservation is released, nothing debited.
        if let Some((r, _)) = reservation.take() {
            r.settle(0).await;
        }
        // A session's request that never reached the upstream gets its debit back (one that timed out may have
        // been served: it keeps it).
        if let (Some(s), Err(ForwardError::Unreachable(_) | ForwardError::BodyTooLarge)) = (&session, &result) {
            if let Err(e) = state.paywall.store().undo_session_debit(&s.id, s.debited, state.paywall.now()).await {
                tracing::warn!(session = %s.id, error = %e, "could not give back a session debit");
            }
        }
    }
    match result {
        Ok(mut resp) => {
            state.metrics.count(Outcome::Forwarded);
            if token_hex.is_some() {
                service.paid_requests.inc();
            }
            if let Some((r, available)) = reservation {
                let h = resp.headers_mut();
                h.insert(X_L402_BALANCE_MSAT, HeaderValue::from(available.0));
                h.insert(X_L402_RESERVED_MSAT, HeaderValue::from(r.reserved.0));
                resp = resp.map(|b| Body::new(MeteredBody::new(b, r)));
            }
            if let Some(value) = receipt.and_then(|r| HeaderValue::from_str(&r.receipt).ok()) {
                l402_server::layer::with_receipt(resp.headers_mut(), value);
            }
            if let Some(s) = &session {
                resp.headers_mut().insert(X_L402_BALANCE_MSAT, HeaderValue::from(s.balance.0));
                if let Ok(value) = HeaderValue::from_str(&s.receipt) {
                    l402_server::layer::with_receipt(resp.headers_mut(), value);
                }
            }
            tracing::info!(%method, path, %client, service = name, token_id = token_hex.as_deref().unwrap_or("-"), status = resp.status().as_u16(), ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX), "forwarded");
            resp
        }
        Err(ForwardError::BodyTooLarge) => {
            state.metrics.count(Outcome::BadRequest);
            tracing::info!(%method, path, %client, service = name, "request body cut at max_body_bytes");
            failure_response(&ForwardError::BodyTooLarge, grpc)
        }
        Err(e) => {
            state.metrics.count(Outcome::UpstreamError);
            tracing::warn!(%method, path, %client, service = name, error = %e, "upstream failed");
            failure_response(&e, grpc)
        }
    }
}

/// The balance left before this request (less other requests' reservations), msat.
const X_L402_BALANCE_MSAT: HeaderName = HeaderName::from_static("x-l402-balance-msat");
/// What this request reserved (its estimate), msat.
const X_L402_RESERVED_MSAT: HeaderName = HeaderName::from_static("x-l402-reserved-msat");

/// A metered request's admission ([`crate::metering`]): its body read (cut at `max_body_bytes`), its estimate
/// reserved from the payment's balance (opened at the first use). The request to forward and the reservation
/// with the balance available before it, or the answer: 413, 400 (an estimate over a bundle), 503 (store),
/// 402 (the balance does not cover the estimate: the next bundle) or 429 (the challenge limit).
#[allow(clippy::too_many_arguments)]
async fn reserve(
    state: &State,
    service: &Service,
    metering: &Metering,
    key: BalanceKey,
    id: String,
    req: Request<Incoming>,
    charge: &Charge,
    prefix: ClientPrefix,
    grpc: bool,
) -> Result<(Request<ReqBody>, (Reservation, Msat)), Response<Body>> {
    use http_body_util::BodyExt as _;
    let (parts, body) = req.into_parts();
    let limit = usize::try_from(service.config.max_body_bytes).unwrap_or(usize::MAX);
    let bytes = match http_body_util::Limited::new(body, limit).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            state.metrics.count(Outcome::BadRequest);
            return Err(status_response(StatusCode::PAYLOAD_TOO_LARGE, "request body too large", grpc, Extra::None));
        }
        Err(_) => {
            state.metrics.count(Outcome::BadRequest);
            return Err(status_response(StatusCode::BAD_REQUEST, "request body unreadable", grpc, Extra::None));
        }
    };
    let Some(estimate) = metering.estimate(&bytes) else {
        state.metrics.count(Outcome::BadRequest);
        return Err(status_response(
            StatusCode::BAD_REQUEST,
            "the request could cost more than a whole bundle",
            grpc,
            Extra::Reason("estimate_over_bundle"),
        ));
    };
    let store = state.paywall.store();
    let unavailable = |e: l402_server::store::StoreError| {
        tracing::warn!(error = %e, "metered balance: store unavailable");
        state.metrics.count(Outcome::Refused);
        state.paywall.metrics().refused(&service.spec.name, "store_unavailable");
        status_response(StatusCode::SERVICE_UNAVAILABLE, "store unavailable", grpc, Extra::None)
    };
    let mut reserved = store.reserve(&key, Msat(estimate)).await.map_err(unavailable)?;
    if reserved == Reserve::Missing {
        store
            .open_balance(&key, &service.spec.name, metering.bundle, state.paywall.now())
            .await
            .map_err(unavailable)?;
        reserved = store.reserve(&key, Msat(estimate)).await.map_err(unavailable)?;
    }
    let available = match reserved {
        Reserve::Reserved { available } => available,
        Reserve::Insufficient { .. } | Reserve::Missing => {
            let left = match reserved {
                Reserve::Insufficient { available } => available.0,
                _ => 0,
            };
            if let Err(wait) = state.challenges.check(prefix) {
                state.limited(&service.spec.name, "challenge_rate_limited");
                return Err(status_response(
                    StatusCode::TOO_MANY_REQUESTS,
                    "too many challenges",
                    grpc,
                    Extra::RetryAfter(wait),
                ));
            }
            state.metrics.count(Outcome::Challenged);
            // The bundle is used up, not refused: the 402 says what is left, so that a client buys the next.
            let mut resp = answer(&state.paywall, charge, Refusal::PaymentRequired, grpc).await.map(Body::new);
            resp.headers_mut().insert(X_L402_BALANCE_MSAT, HeaderValue::from(left));
            return Err(resp);
        }
    };
    let reservation = Reservation {
        store: store.clone(),
        key,
        reserved: Msat(estimate),
        metering: metering.clone(),
        now: state.paywall.now(),
        id,
    };
    Ok((Request::from_parts(parts, ReqBody::Right(http_body_util::Full::new(bytes))), (reservation, available)))
}

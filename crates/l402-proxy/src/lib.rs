//! `l402 proxy`: a reverse proxy that puts a Lightning price on any HTTP/1.1, HTTP/2 or gRPC API, the job
//! Aperture does, configured by one TOML file ([`Config`]; `l402.sample.toml` documents every key).
//!
//! A request's path is first put in its one canonical form ([`routing::canonical_path`]; 400 if it has none),
//! and every decision is taken on it: the first service whose host and path patterns match; then it passes
//! free (a free path, a freebie on a route needing no capability, a service with payment off), or the paywall
//! authenticates it (`l402-server`: no call to the Lightning node), or the paywall answers (402 challenge,
//! limited per client prefix and globally; 401, 403, 503). Paid requests are rate-limited if configured (429
//! with `Retry-After`) and forwarded to the canonical path with streaming bodies, the credential and any
//! client-sent `X-L402-*` header removed ([`headers`]). The listener bounds header reads, TLS handshakes,
//! idle connections, head sizes, bodies and the number of connections ([`config::ListenerConfig`]).
//! A metered service (`[service.metering]`) reserves an estimate from the payment's balance first and is
//! debited the usage its response reports ([`metering`]). `/metrics` and an admin API listen apart ([`admin`]).
//!
//! Connections are accepted on the caller's runtime and handed round robin to worker threads (one per core
//! by default, `[listener] workers`), each a single-threaded runtime that serves its connections whole, with
//! upstream connections of its own: a request never crosses threads. The paywall, its caches and limits are
//! shared by all. Plain HTTP/1.x is read and written by the proxy itself (module `h1`, and `pool` for `http://`
//! upstreams: both hops were most of the CPU a request cost under hyper); TLS and HTTP/2 (gRPC) go to hyper.
//!
//! This crate names no Lightning backend: [`Proxy::start`] takes any `InvoiceIssuer` (the `l402` command
//! builds LND or an embedded LDK node from the config's `[lightning]` section).

pub mod admin;
pub mod client;
mod codec;
pub mod config;
mod conn;
mod forward;
mod h1;
pub mod headers;
mod limits;
pub mod metering;
pub mod metrics;
mod pool;
mod proxy;
pub mod routing;
mod services;
mod shared;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

pub use config::{Config, ConfigError, LightningConfig, StoreConfig};
/// The listener's own HTTP/1.1 parsing, for the fuzz targets.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::codec::decode_chunked;
    pub use crate::h1::{BodyFraming, ParsedHead, parse_request_head};
}
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use l402_lightning::InvoiceIssuer;
/// Pays session refunds through a node (for [`Proxy::start_with_refunder`]).
pub use l402_server::PayerRefunder;
use l402_server::Paywall;
use l402_server::store::TokenStore;
pub use metrics::ProxyMetrics;
pub use proxy::open_store;
pub use services::ServiceError;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::proxy::State;

/// A running proxy. Dropping it stops the listeners.
pub struct Proxy {
    addr: SocketAddr,
    services_bound: Duration,
    admin_addr: Option<SocketAddr>,
    state: Arc<State>,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy").field("addr", &self.addr).field("admin_addr", &self.admin_addr).finish()
    }
}

fn tls_acceptor(tls: &config::TlsConfig) -> Result<tokio_rustls::TlsAcceptor, ConfigError> {
    let read = |p: &std::path::Path| std::fs::read(p).map_err(|e| ConfigError(format!("tls {}: {e}", p.display())));
    let certs = rustls_pemfile::certs(&mut read(&tls.cert)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ConfigError(format!("tls cert: {e}")))?;
    let key = rustls_pemfile::private_key(&mut read(&tls.key)?.as_slice())
        .map_err(|e| ConfigError(format!("tls key: {e}")))?
        .ok_or_else(|| ConfigError("tls key: no private key in the file".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConfigError(format!("tls: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| ConfigError(format!("tls: {e}")))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

impl Proxy {
    /// Binds the listeners and starts serving.
    pub async fn start(
        config: &Config,
        store: Arc<dyn TokenStore>,
        issuer: Arc<dyn InvoiceIssuer>,
    ) -> Result<Self, ConfigError> {
        Self::start_with_refunder(config, store, issuer, None).await
    }

    /// Binds the listeners and starts serving, paying session refunds through `refunder` (services with
    /// `[service.session]` need one).
    pub async fn start_with_refunder(
        config: &Config,
        store: Arc<dyn TokenStore>,
        issuer: Arc<dyn InvoiceIssuer>,
        refunder: Option<Arc<dyn l402_server::Refunder>>,
    ) -> Result<Self, ConfigError> {
        let state = Arc::new(State::new(config, store, issuer.clone(), refunder)?);
        // Read the revocations now: a store that cannot be read fails the start, not the first paid request.
        state.paywall.refresh_revocations().await.map_err(|e| ConfigError(format!("store: {e}")))?;
        // The services the admin API wrote to the store override and extend the file's.
        state.services.load().await.map_err(|e| ConfigError(format!("services: {e}")))?;
        let acceptor = config.tls.as_ref().map(tls_acceptor).transpose()?;
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| ConfigError(format!("listen {}: {e}", config.listen)))?;
        let addr = listener.local_addr().map_err(|e| ConfigError(e.to_string()))?;
        let l = &config.listener;
        let ctx = Arc::new(ConnContext {
            state: state.clone(),
            acceptor,
            builder: http_builder(l),
            first: Duration::from_secs(l.header_read_timeout_secs),
            idle: Duration::from_secs(l.idle_timeout_secs),
            handshake: Duration::from_secs(l.handshake_timeout_secs),
        });
        let workers = match l.workers {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        };
        let queues = spawn_workers(workers, &ctx)?;
        let mut tasks = vec![tokio::spawn(accept(listener, state.listener.max_connections, queues))];
        tasks.push(state.paywall.spawn_settlement_watcher());
        let probe = Duration::from_secs(config.metrics.node_probe_secs);
        tasks.push(metrics::spawn_node_probe(issuer.clone(), state.metrics.clone(), probe));
        tasks.push(state.services.spawn_poller(Duration::from_millis(config.tokens.revocation_poll_ms)));
        if config.shared_limits_on() {
            tasks.push(shared::spawn(&state.services, state.paywall.store().clone(), config.shared_limits.clone()));
        }
        let mut admin_addr = None;
        if let Some(admin) = &config.admin {
            let token = match (&admin.token_env, &admin.token_file) {
                (Some(var), None) => {
                    Some(std::env::var(var).map_err(|_| ConfigError(format!("admin: {var} is not set")))?)
                }
                (None, Some(path)) => Some(
                    std::fs::read_to_string(path)
                        .map_err(|e| ConfigError(format!("admin token {}: {e}", path.display())))?
                        .trim()
                        .to_owned(),
                ),
                (None, None) => None,
                _ => return Err(ConfigError("admin: give token_env or token_file, not both".into())),
            };
            if token.as_ref().is_some_and(|t| t.len() < 16) {
                return Err(ConfigError("admin: the admin token must be at least 16 characters".into()));
            }
            let l = TcpListener::bind(admin.listen).await.map_err(|e| ConfigError(format!("admin listen: {e}")))?;
            admin_addr = Some(l.local_addr().map_err(|e| ConfigError(e.to_string()))?);
            let app =
                admin::router(state.paywall.clone(), state.metrics.clone(), state.services.clone(), token, issuer);
            tasks.push(tokio::spawn(async move {
                let _ = axum::serve(l, app).await;
            }));
        }
        tracing::info!(%addr, admin = ?admin_addr, services = state.services.current().services.len(), "l402 proxy listening");
        let services_bound = Duration::from_millis(config.tokens.revocation_poll_ms) * 2;
        Ok(Self { addr, services_bound, admin_addr, state, tasks })
    }

    /// Where the proxy listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where `/metrics` and the admin API listen.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The paywall (tests and embedding programs).
    pub fn paywall(&self) -> &Arc<Paywall> {
        &self.state.paywall
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<ProxyMetrics> {
        &self.state.metrics
    }

    /// Replaces the config file's services (what SIGHUP does): checked as the file is, with the services
    /// in the store, and swapped in whole; on an error nothing changed. Returns how many services are live.
    pub async fn reload_services(&self, services: Vec<config::ServiceConfig>) -> Result<usize, ServiceError> {
        self.state.services.reload_file(services).await
    }

    /// The bound on a service change made through another instance sharing the store: it is served here
    /// within this (twice `[tokens] revocation_poll_ms`).
    pub fn service_change_bound(&self) -> Duration {
        self.services_bound
    }

    /// The live services' configurations, in matching order.
    pub fn services(&self) -> Vec<config::ServiceConfig> {
        self.state.services.configs()
    }

    /// Stops accepting connections.
    pub fn stop(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The HTTP/1.1 + HTTP/2 server settings of the listener.
fn http_builder(l: &config::ListenerConfig) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(l.header_read_timeout_secs))
        .max_buf_size(l.max_header_bytes);
    let interval =
        (l.http2_keep_alive_interval_secs > 0).then(|| Duration::from_secs(l.http2_keep_alive_interval_secs));
    b.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(interval)
        .keep_alive_timeout(Duration::from_secs(l.http2_keep_alive_timeout_secs))
        .max_concurrent_streams(l.http2_max_concurrent_streams)
        .max_header_list_size(u32::try_from(l.max_header_bytes).unwrap_or(u32::MAX));
    b
}

/// What every connection needs, shared by the workers.
struct ConnContext {
    state: Arc<State>,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    builder: auto::Builder<TokioExecutor>,
    first: Duration,
    idle: Duration,
    handshake: Duration,
}

/// An accepted connection on its way to a worker; the permit counts it against `max_connections`.
struct Accepted {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
}

/// Starts `n` worker threads, each a single-threaded runtime serving the connections sent to it, and returns
/// their queues. A worker ends (its connections with it) when its queue's sender is dropped.
fn spawn_workers(n: usize, ctx: &Arc<ConnContext>) -> Result<Vec<mpsc::UnboundedSender<Accepted>>, ConfigError> {
    let mut queues = Vec::with_capacity(n);
    for i in 0..n {
        let (tx, mut rx) = mpsc::unbounded_channel::<Accepted>();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ConfigError(format!("worker runtime: {e}")))?;
        let ctx = ctx.clone();
        std::thread::Builder::new()
            .name(format!("l402-proxy-{i}"))
            .spawn(move || {
                rt.block_on(async move {
                    while let Some(conn) = rx.recv().await {
                        match tokio::net::TcpStream::from_std(conn.stream) {
                            Ok(stream) => {
                                tokio::spawn(serve_connection(ctx.clone(), stream, conn.peer, conn.permit));
                            }
                            Err(e) => tracing::warn!(error = %e, "a worker could not take a connection"),
                        }
                    }
                });
            })
            .map_err(|e| ConfigError(format!("worker thread: {e}")))?;
        queues.push(tx);
    }
    Ok(queues)
}

/// Accepts connections and hands them to the workers, round robin. Ending (aborted) drops the queues, which
/// ends the workers.
async fn accept(listener: TcpListener, max_connections: usize, queues: Vec<mpsc::UnboundedSender<Accepted>>) {
    let permits = Arc::new(Semaphore::new(max_connections));
    let mut next = 0usize;
    loop {
        // At the cap, stop accepting: new connections wait in the kernel's queue until one closes.
        let Ok(permit) = permits.clone().acquire_owned().await else { return };
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let stream = match stream.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                continue;
            }
        };
        next = (next + 1) % queues.len();
        if queues[next].send(Accepted { stream, peer, permit }).is_err() {
            tracing::warn!(worker = next, "a worker is gone; connection dropped");
        }
    }
}

/// Serves one connection on the current (worker) runtime until it ends: plain HTTP/1.x by our own
/// [`h1`], TLS and HTTP/2 by hyper.
async fn serve_connection(
    ctx: Arc<ConnContext>,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
) {
    let _permit = permit;
    match &ctx.acceptor {
        Some(acc) => match tokio::time::timeout(ctx.handshake, acc.accept(stream)).await {
            Ok(Ok(tls)) => serve_hyper(&ctx, TokioIo::new(tls), peer).await,
            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
            Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
        },
        None => {
            let deadline = tokio::time::Instant::now() + ctx.first;
            match h1::sniff(stream, deadline).await {
                h1::Sniffed::Http1(stream, read) => {
                    let limits =
                        h1::Limits { header_timeout: ctx.first, max_head: ctx.state.listener.max_header_bytes };
                    h1::serve(ctx.state.clone(), stream, read, peer, limits).await;
                }
                h1::Sniffed::Http2(stream) => serve_hyper(&ctx, TokioIo::new(stream), peer).await,
                h1::Sniffed::Gone => tracing::debug!(%peer, "connection closed: no request in time"),
            }
        }
    }
}

/// Serves a connection with hyper (HTTP/2, or anything over TLS) until it ends or the watchdog closes it.
async fn serve_hyper<I>(ctx: &ConnContext, io: TokioIo<I>, peer: SocketAddr)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let activity = conn::Activity::new();
    let watched = activity.clone();
    let state = ctx.state.clone();
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let state = state.clone();
        let guard = watched.begin();
        async move {
            let resp = proxy::handle(state, peer, req.map(h1::Incoming::Hyper)).await;
            Ok::<_, std::convert::Infallible>(resp.map(|b| conn::Tracked::new(b, guard)))
        }
    });
    tokio::select! {
        result = ctx.builder.serve_connection(io, svc) => {
            if let Err(e) = result {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        }
        () = activity.watch(ctx.first, ctx.idle) => tracing::debug!(%peer, "connection closed: no request in time"),
    }
}

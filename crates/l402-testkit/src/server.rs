//! [`LndSimulator`]: the listener, TLS, HTTP/2 and the routing of gRPC paths to the three services.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use l402_lightning::{LightningError, LightningErrorKind};
use l402_lnd::proto::invoicesrpc::invoices_server::InvoicesServer;
use l402_lnd::proto::lnrpc::lightning_server::LightningServer;
use l402_lnd::proto::routerrpc::router_server::RouterServer;
use l402_lnd::{LndConfig, LndNode};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tonic::Status;
use tonic::codegen::{Service, http};

use crate::auth::Macaroons;
use crate::faults::Fault;
use crate::lightning::{InvoicesService, LightningService};
use crate::router::RouterService;
use crate::sim::{Backend, Sim, lock};
use crate::tls::SelfSignedCert;

/// How long a client has to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
struct Services {
    lightning: LightningServer<LightningService>,
    invoices: InvoicesServer<InvoicesService>,
    router: RouterServer<RouterService>,
}

impl Services {
    async fn route(
        mut self,
        request: http::Request<Incoming>,
    ) -> Result<http::Response<tonic::body::Body>, Infallible> {
        let path = request.uri().path();
        if path.starts_with("/lnrpc.Lightning/") {
            self.lightning.call(request).await
        } else if path.starts_with("/invoicesrpc.Invoices/") {
            self.invoices.call(request).await
        } else if path.starts_with("/routerrpc.Router/") {
            self.router.call(request).await
        } else {
            Ok(Status::unimplemented(format!("unknown service {path}")).into_http())
        }
    }
}

/// An LND node as seen over gRPC, served on 127.0.0.1 and backed by a real Lightning node.
///
/// It speaks LND's services (the subset `l402-lnd` uses, with LND's messages, field numbers, status codes
/// and error texts) behind TLS with a fresh self-signed `IsCA` certificate and macaroon checking. Invoices
/// are issued by the backend and payments are made by it, so paying through the simulator is a real
/// Lightning payment. Faults can be injected at any time ([`LndSimulator::inject`]). Dropping the simulator
/// stops it and cuts its connections.
pub struct LndSimulator {
    sim: Arc<Sim>,
    address: SocketAddr,
    cert: SelfSignedCert,
    tasks: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for LndSimulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LndSimulator").field("address", &self.address).finish_non_exhaustive()
    }
}

fn setup_error(message: impl Into<String>) -> LightningError {
    LightningError::new(LightningErrorKind::Internal, message)
}

impl LndSimulator {
    /// Starts a simulator over `backend` on a free loopback port.
    pub async fn start(backend: Arc<dyn Backend>) -> Result<Self, LightningError> {
        let info = backend.info().await?;
        let cert = SelfSignedCert::generate_like_lnd().map_err(setup_error)?;
        let acceptor = TlsAcceptor::from(cert.server_config().map_err(setup_error)?);
        let macaroons = Macaroons::generate().map_err(setup_error)?;
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| setup_error(format!("bind: {e}")))?;
        let address = listener.local_addr().map_err(|e| setup_error(format!("local address: {e}")))?;
        let mut settlements = backend.subscribe_settlements().await?;
        let sim = Arc::new(Sim::new(backend, info.network, macaroons));

        let watcher = {
            let sim = sim.clone();
            tokio::spawn(async move {
                while let Some(item) = settlements.next().await {
                    match item {
                        Ok(settlement) => sim.on_settlement(&settlement),
                        Err(e) => tracing::warn!(error = %e, "backend settlement stream error"),
                    }
                }
            })
        };
        let services = Services {
            lightning: LightningServer::new(LightningService { sim: sim.clone() }),
            invoices: InvoicesServer::new(InvoicesService { sim: sim.clone() }),
            router: RouterServer::new(RouterService { sim: sim.clone() }),
        };
        let accept = tokio::spawn(accept_loop(listener, acceptor, sim.clone(), services));
        tracing::info!(%address, "LND simulator listening");
        Ok(Self { sim, address, cert, tasks: vec![watcher, accept] })
    }

    /// The `host:port` it listens on (127.0.0.1).
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// Its TLS certificate as PEM (what LND writes to `tls.cert`).
    pub fn tls_cert_pem(&self) -> &str {
        &self.cert.pem
    }

    /// Its TLS certificate as DER.
    pub fn tls_cert_der(&self) -> &[u8] {
        &self.cert.der
    }

    /// The admin macaroon (every permission), hex.
    pub fn macaroon_hex(&self) -> String {
        self.sim.macaroons.admin.to_hex()
    }

    /// The invoice macaroon (`invoices:read`/`invoices:write` only, like LND's `invoice.macaroon`), hex.
    pub fn invoice_macaroon_hex(&self) -> String {
        self.sim.macaroons.invoice.to_hex()
    }

    /// A ready-to-use `l402-lnd` configuration (admin macaroon, pinned certificate, default timeouts).
    pub fn lnd_config(&self) -> LndConfig {
        LndConfig::from_parts(
            self.address.to_string(),
            self.cert.der.clone(),
            self.sim.macaroons.admin.as_bytes().to_vec(),
        )
    }

    /// Connects an `l402-lnd` client with [`LndSimulator::lnd_config`].
    pub async fn connect(&self) -> Result<LndNode, LightningError> {
        LndNode::connect(self.lnd_config()).await
    }

    /// Injects a fault for the next call it applies to.
    pub fn inject(&self, fault: Fault) {
        self.add_fault(fault, false);
    }

    /// Injects a fault until [`LndSimulator::clear_faults`].
    pub fn inject_always(&self, fault: Fault) {
        self.add_fault(fault, true);
    }

    fn add_fault(&self, fault: Fault, always: bool) {
        tracing::info!(?fault, always, "fault injected");
        let unreachable = fault == Fault::Unreachable;
        lock(&self.sim.faults).add(fault, always);
        if unreachable {
            self.sim.cut_connections();
        }
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        lock(&self.sim.faults).clear();
    }

    /// Cuts every open connection now (a network blip; clients reconnect).
    pub fn cut_connections(&self) {
        self.sim.cut_connections();
    }

    /// How many times every connection was cut (by [`LndSimulator::cut_connections`], [`Fault::DropStream`]
    /// or [`Fault::Unreachable`]).
    pub fn connection_cuts(&self) -> u64 {
        self.sim.connection_cuts.load(Ordering::SeqCst)
    }

    /// How many payments the simulator has handed to its backend (to check that a hash is paid once).
    pub fn backend_payments(&self) -> u64 {
        self.sim.backend_payments.load(Ordering::SeqCst)
    }
}

impl Drop for LndSimulator {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        self.sim.cut_connections();
    }
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, sim: Arc<Sim>, services: Services) {
    let next_id = AtomicU64::new(0);
    loop {
        let tcp = match listener.accept().await {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if lock(&sim.faults).refuse_connection() {
            tracing::info!("fault: refusing a connection (node unreachable)");
            drop(tcp);
            continue;
        }
        let id = next_id.fetch_add(1, Ordering::Relaxed);
        let (acceptor, services, sim_for_task) = (acceptor.clone(), services.clone(), sim.clone());
        let task = tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            if let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                let service = hyper::service::service_fn(move |request| services.clone().route(request));
                let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service);
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "connection ended");
                }
            }
            lock(&sim_for_task.connections).remove(&id);
        });
        let mut connections = lock(&sim.connections);
        if !task.is_finished() {
            connections.insert(id, task.abort_handle());
        }
    }
}

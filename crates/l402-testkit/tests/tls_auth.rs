//! TLS pinning, macaroon checking and reconnection between `l402-lnd` and the LND simulator, on loopback.
//! These assert only TLS, authentication and connection behaviour, so the simulator is backed by the
//! `NoPayments` double; payments are tested on the regtest network.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{NO_PAYMENTS_PUBKEY, no_payments_simulator};
use l402_lightning::{InvoiceIssuer, LightningErrorKind, Node, Payer, PaymentStatus};
use l402_lnd::{LndConfig, LndNode};
use l402_proto::PaymentHash;
use l402_proto::lightning_invoice::Currency;
use l402_testkit::{Fault, SelfSignedCert};
use rustls::pki_types::{CertificateDer, ServerName};

#[tokio::test]
async fn connects_with_the_pinned_isca_certificate() {
    let sim = no_payments_simulator().await;
    let lnd = sim.connect().await.expect("connects");
    let info = lnd.info().await.expect("GetInfo");
    assert_eq!(info.pubkey, NO_PAYMENTS_PUBKEY);
    assert_eq!(info.network, Currency::Regtest);
}

/// lnd#5450: with the certificate as a trust root, webpki refuses LND's IsCA certificate as an end-entity
/// certificate. This is why the adapter pins the DER instead.
#[tokio::test]
async fn a_ca_store_refuses_the_isca_certificate_which_is_why_it_is_pinned() {
    let sim = no_payments_simulator().await;
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(sim.tls_cert_der().to_vec())).expect("root");
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(sim.address()).await.expect("tcp");
    let err = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect_err("webpki refuses a CA certificate as end entity");
    assert!(err.to_string().contains("CaUsedAsEndEntity"), "{err}");
}

#[tokio::test]
async fn a_different_certificate_is_refused_as_not_the_pinned_one() {
    let sim = no_payments_simulator().await;
    let other = SelfSignedCert::generate_like_lnd().expect("cert");
    let mut config = sim.lnd_config();
    config.tls_cert_der = other.der.clone();
    config.reconnect_timeout = Duration::from_secs(1);
    let err = LndNode::connect(config).await.expect_err("wrong certificate");
    assert_eq!(err.kind, LightningErrorKind::TlsCertificate, "{err}");
    assert!(err.message.contains("is not the pinned tls.cert"), "{}", err.message);
    assert!(!err.is_retryable());
}

#[tokio::test]
async fn a_wrong_macaroon_is_refused_as_the_macaroon() {
    let sim = no_payments_simulator().await;
    let other = no_payments_simulator().await;
    let mut config = sim.lnd_config();
    config.macaroon = hex::decode(other.macaroon_hex()).expect("hex");
    let err = LndNode::connect(config).await.expect_err("wrong macaroon");
    assert_eq!(err.kind, LightningErrorKind::Unauthenticated, "{err}");
    assert!(err.message.contains("refused the macaroon"), "{}", err.message);
    assert!(err.message.contains("verification failed: signature mismatch after caveat verification"), "{err}");
}

#[tokio::test]
async fn a_missing_macaroon_is_refused_as_the_macaroon() {
    let sim = no_payments_simulator().await;
    let mut config = sim.lnd_config();
    config.macaroon.clear(); // sends no macaroon metadata at all
    let err = LndNode::connect(config).await.expect_err("no macaroon");
    assert_eq!(err.kind, LightningErrorKind::Unauthenticated, "{err}");
    assert!(err.message.contains("expected 1 macaroon, got 0"), "{}", err.message);
}

#[tokio::test]
async fn the_invoice_macaroon_lacks_payment_permissions() {
    let sim = no_payments_simulator().await;
    let mut config = sim.lnd_config();
    config.macaroon = hex::decode(sim.invoice_macaroon_hex()).expect("hex");
    let lnd = LndNode::connect_lazy(config).expect("config");
    // invoices:read is enough to look up an invoice...
    let state = lnd.lookup_invoice(&PaymentHash([9; 32])).await.expect("LookupInvoice");
    assert_eq!(state, l402_lightning::InvoiceState::NotFound);
    // ...but not to read payments or node info.
    let err = lnd.payment_status(&PaymentHash([9; 32])).await.expect_err("offchain:read needed");
    assert_eq!(err.kind, LightningErrorKind::Unauthenticated);
    assert!(err.message.contains("lacks a permission"), "{}", err.message);
    let err = lnd.info().await.expect_err("info:read needed");
    assert_eq!(err.kind, LightningErrorKind::Unauthenticated);
}

#[tokio::test]
async fn cert_and_macaroon_load_from_files_and_lndconnect() {
    let sim = no_payments_simulator().await;
    let dir = tempfile::tempdir().expect("dir");
    let cert_path = dir.path().join("tls.cert");
    let mac_path = dir.path().join("admin.macaroon");
    std::fs::write(&cert_path, sim.tls_cert_pem()).expect("write cert");
    std::fs::write(&mac_path, hex::decode(sim.macaroon_hex()).expect("hex")).expect("write macaroon");
    let config =
        LndConfig::new(&sim.address().to_string(), cert_path.to_str().expect("utf8"), mac_path.to_str().expect("utf8"))
            .expect("config from files");
    LndNode::connect(config).await.expect("connects with files");

    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let uri = format!(
        "lndconnect://{}?cert={}&macaroon={}",
        sim.address(),
        b64.encode(sim.tls_cert_der()),
        b64.encode(hex::decode(sim.macaroon_hex()).expect("hex"))
    );
    LndNode::connect(LndConfig::from_lndconnect(&uri).expect("uri")).await.expect("connects with lndconnect");
}

#[tokio::test]
async fn an_unreachable_node_is_retried_with_backoff_then_reported() {
    let sim = no_payments_simulator().await;
    let mut config = sim.lnd_config();
    config.reconnect_timeout = Duration::from_secs(2);
    let lnd = LndNode::connect(config).await.expect("connects");

    // One refused connection: the call reconnects and succeeds.
    sim.inject(Fault::Unreachable);
    lnd.info().await.expect("reconnects after one refused connection");

    // Refused until cleared: the call gives up after the reconnect timeout, as Unavailable.
    sim.inject_always(Fault::Unreachable);
    let started = std::time::Instant::now();
    let err = lnd.info().await.expect_err("unreachable");
    assert_eq!(err.kind, LightningErrorKind::Unavailable, "{err}");
    assert!(err.is_retryable());
    assert!(err.message.contains("could not connect to LND"), "{}", err.message);
    assert!(started.elapsed() >= Duration::from_secs(1), "retried with backoff for a while");

    sim.clear_faults();
    lnd.info().await.expect("reachable again");
}

#[tokio::test]
async fn an_unknown_payment_is_unknown() {
    let sim = no_payments_simulator().await;
    let lnd = sim.connect().await.expect("connects");
    assert_eq!(lnd.payment_status(&PaymentHash([1; 32])).await.expect("status"), PaymentStatus::Unknown);
}

/// Serves `cert_der` with a key that is not its own (a server that copied the public tls.cert).
#[derive(Debug)]
struct StolenCert(Arc<rustls::sign::CertifiedKey>);

impl rustls::server::ResolvesServerCert for StolenCert {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.clone())
    }
}

#[tokio::test]
async fn a_server_with_the_pinned_certificate_but_not_its_key_is_refused() {
    let sim = no_payments_simulator().await;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let other_key = rcgen::KeyPair::generate().expect("key");
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(other_key.serialize_der().into());
    let signer = provider.key_provider.load_private_key(key_der).expect("signing key");
    let certified = rustls::sign::CertifiedKey::new(vec![CertificateDer::from(sim.tls_cert_der().to_vec())], signer);
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(StolenCert(Arc::new(certified))));
    server.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let address = listener.local_addr().expect("address");
    let impostor = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let _ = acceptor.accept(tcp).await;
        }
    });

    let mut config = sim.lnd_config();
    config.address = address.to_string();
    let err = LndNode::connect(config).await.expect_err("impostor refused");
    assert_eq!(err.kind, LightningErrorKind::TlsCertificate, "{err}");
    assert!(err.message.contains("could not prove it holds the pinned tls.cert's key"), "{}", err.message);
    impostor.abort();
}

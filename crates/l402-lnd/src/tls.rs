//! TLS pinned to the node's `tls.cert`, and the connector tonic dials through.
//!
//! LND's self-signed certificate has `IsCA: true`; rustls (through webpki) refuses a CA certificate as an
//! end-entity certificate (lnd#5450), so the usual "trust this root" setup fails. Instead, the verifier
//! accepts exactly one certificate, the pinned DER bytes (compared in constant time), and still checks the
//! TLS 1.2/1.3 handshake signatures against that certificate's key with the crypto provider's algorithms: a
//! peer that merely replays the certificate without its private key is refused. Names and expiry are not
//! checked: the pin is stronger than both (LND renews its certificate by replacing it, which changes the pin).

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::transport::Uri;

/// Text every connection failure's message starts with: tonic turns it into an `Unavailable` status with
/// this message, which is how a call knows its request never left this process.
pub(crate) const CONNECT_FAILED: &str = "could not connect to LND";
/// Text of the message of a connection refused because the certificate is not the pinned one.
pub(crate) const NOT_PINNED: &str = "is not the pinned tls.cert";
/// Text of the message of a connection refused because the peer showed the pinned certificate but could not
/// sign with its key.
pub(crate) const NO_KEY: &str = "could not prove it holds the pinned tls.cert's key";

/// The hex sha256 of a certificate, for messages (a fingerprint, not a secret).
pub(crate) fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The crypto provider: the process default if one is installed, else ring (installed as the default).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    if let Some(p) = CryptoProvider::get_default() {
        return p.clone();
    }
    // Losing a race with another installer is fine: use whichever won.
    let _ = rustls::crypto::ring::default_provider().install_default();
    CryptoProvider::get_default().cloned().unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// Why the verifier refused a handshake.
#[derive(Debug, Clone)]
enum Refusal {
    /// Another certificate (its sha256).
    NotPinned(String),
    /// The pinned certificate, but a handshake signature its key did not make.
    BadSignature(String),
}

/// Accepts exactly the pinned certificate; checks handshake signatures.
pub(crate) struct PinnedCertVerifier {
    pinned: Vec<u8>,
    algorithms: WebPkiSupportedAlgorithms,
    /// Why the last handshake was refused, for the connector's error message.
    last_refused: Mutex<Option<Refusal>>,
}

impl fmt::Debug for PinnedCertVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedCertVerifier").field("pinned_sha256", &fingerprint(&self.pinned)).finish()
    }
}

impl PinnedCertVerifier {
    pub(crate) fn new(pinned: Vec<u8>, provider: &CryptoProvider) -> Self {
        Self { pinned, algorithms: provider.signature_verification_algorithms, last_refused: Mutex::new(None) }
    }

    fn take_refused(&self) -> Option<Refusal> {
        self.last_refused.lock().ok().and_then(|mut g| g.take())
    }

    fn refuse(&self, why: Refusal) {
        if let Ok(mut g) = self.last_refused.lock() {
            *g = Some(why);
        }
    }

    fn checked(
        &self,
        result: Result<HandshakeSignatureValid, rustls::Error>,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        if let Err(e) = &result {
            self.refuse(Refusal::BadSignature(e.to_string()));
        }
        result
    }
}

impl ServerCertVerifier for PinnedCertVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if constant_time_eq(end_entity.as_ref(), &self.pinned) {
            return Ok(ServerCertVerified::assertion());
        }
        self.refuse(Refusal::NotPinned(fingerprint(end_entity.as_ref())));
        Err(rustls::Error::InvalidCertificate(CertificateError::ApplicationVerificationFailure))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.checked(verify_tls12_signature(message, cert, dss, &self.algorithms))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.checked(verify_tls13_signature(message, cert, dss, &self.algorithms))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Why a connection could not be opened. Its message starts with [`CONNECT_FAILED`].
#[derive(Debug)]
pub(crate) struct ConnectFailure {
    address: String,
    detail: String,
}

impl fmt::Display for ConnectFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{CONNECT_FAILED} at {}: {}", self.address, self.detail)
    }
}

impl std::error::Error for ConnectFailure {}

/// Dials TCP, then TLS against the pinned certificate, offering ALPN `h2` (grpc-go, hence LND, requires it).
#[derive(Clone)]
pub(crate) struct PinnedConnector {
    address: String,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    verifier: Arc<PinnedCertVerifier>,
    timeout: Duration,
}

impl PinnedConnector {
    pub(crate) fn new(address: &str, host: &str, pinned: Vec<u8>, timeout: Duration) -> Result<Self, String> {
        let provider = provider();
        let verifier = Arc::new(PinnedCertVerifier::new(pinned, &provider));
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS setup: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        config.alpn_protocols = vec![b"h2".to_vec()];
        // The name is only sent as SNI: the certificate is pinned, not matched against it.
        let server_name = ServerName::try_from(host.to_owned())
            .unwrap_or_else(|_| ServerName::try_from("localhost").expect("a valid DNS name"));
        Ok(Self {
            address: address.to_owned(),
            server_name,
            tls: TlsConnector::from(Arc::new(config)),
            verifier,
            timeout,
        })
    }

    async fn connect(self) -> Result<TokioIo<TlsStream<TcpStream>>, ConnectFailure> {
        let fail = |detail: String| ConnectFailure { address: self.address.clone(), detail };
        let attempt = async {
            let tcp = TcpStream::connect(&self.address).await.map_err(|e| fail(format!("TCP: {e}")))?;
            let _ = tcp.set_nodelay(true);
            match self.tls.connect(self.server_name.clone(), tcp).await {
                Ok(tls) => Ok(TokioIo::new(tls)),
                Err(e) => Err(fail(self.describe_tls_error(&e))),
            }
        };
        match tokio::time::timeout(self.timeout, attempt).await {
            Ok(result) => result,
            Err(_) => Err(fail(format!("no TCP/TLS connection within {:?}", self.timeout))),
        }
    }

    fn describe_tls_error(&self, e: &io::Error) -> String {
        match self.verifier.take_refused() {
            Some(Refusal::NotPinned(presented)) => format!(
                "the node's TLS certificate (sha256 {presented}) {NOT_PINNED} (sha256 {}); check the tls.cert \
                 given, or that this address is the right node",
                fingerprint(&self.verifier.pinned)
            ),
            Some(Refusal::BadSignature(why)) => {
                format!("the node showed the pinned tls.cert but {NO_KEY} (handshake signature: {why})")
            }
            None => format!("TLS handshake failed: {e}"),
        }
    }
}

impl tower::Service<Uri> for PinnedConnector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = ConnectFailure;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        Box::pin(self.clone().connect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_compares_contents_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(constant_time_eq(b"", b""));
    }
}

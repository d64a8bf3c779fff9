//! TLS to PostgreSQL, asked for as libpq does, in the connection string: `sslmode` and `sslrootcert`.
//!
//! - `disable`, and `prefer` or no `sslmode` at all: plaintext (this store does not try TLS unasked; say
//!   `require` or better to get it);
//! - `require`: TLS, or no connection; the server's certificate is not checked unless `sslrootcert` is given
//!   (then as `verify-ca`), exactly as libpq;
//! - `verify-ca`: TLS, and the certificate must chain to a CA in `sslrootcert` (a PEM file);
//! - `verify-full`: as `verify-ca`, and the certificate must name the host connected to (`host`; connect
//!   elsewhere with `hostaddr`). Use this one over any network you do not control.
//!
//! Both the key/value form (`host=db sslmode=verify-full sslrootcert=/etc/l402/db-ca.pem`) and the URL form
//! (`postgresql://db/l402?sslmode=verify-full&sslrootcert=/etc/l402/db-ca.pem`) are read. TLS goes through
//! rustls (ring), with SCRAM channel binding when the server offers it.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor};
use rustls::crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::StoreError;

/// The `sslmode` asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Plain,
    Require,
    VerifyCa,
    VerifyFull,
}

/// The connection string without the TLS parameters, and the TLS asked for.
#[derive(Debug)]
struct Split {
    rest: String,
    mode: Mode,
    root_cert: Option<PathBuf>,
}

fn bad(what: &str) -> StoreError {
    StoreError(format!("postgres connection string: {what}"))
}

fn mode(v: &str) -> Result<Mode, StoreError> {
    Ok(match v {
        "disable" | "allow" | "prefer" => Mode::Plain,
        "require" => Mode::Require,
        "verify-ca" => Mode::VerifyCa,
        "verify-full" => Mode::VerifyFull,
        _ => return Err(bad("sslmode must be disable, prefer, require, verify-ca or verify-full")),
    })
}

/// Takes `sslmode` and `sslrootcert` out of a connection string.
fn split(conn: &str) -> Result<Split, StoreError> {
    let mut mode_v = None;
    let mut root_cert = None;
    let rest = if conn.starts_with("postgres://") || conn.starts_with("postgresql://") {
        match conn.split_once('?') {
            None => conn.to_owned(),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&') {
                    match pair.split_once('=') {
                        Some(("sslmode", v)) => mode_v = Some(percent_decode(v)?),
                        Some(("sslrootcert", v)) => root_cert = Some(percent_decode(v)?),
                        _ => kept.push(pair),
                    }
                }
                if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) }
            }
        }
    } else {
        let mut kept = Vec::new();
        for (key, value, raw) in key_values(conn)? {
            match key {
                "sslmode" => mode_v = Some(value),
                "sslrootcert" => root_cert = Some(value),
                _ => kept.push(raw),
            }
        }
        kept.join(" ")
    };
    let mode = mode_v.as_deref().map(mode).transpose()?.unwrap_or(Mode::Plain);
    let root_cert = root_cert.map(PathBuf::from);
    if matches!(mode, Mode::VerifyCa | Mode::VerifyFull) && root_cert.is_none() {
        return Err(bad("sslmode=verify-ca and verify-full need sslrootcert=<CA file, PEM>"));
    }
    if root_cert.as_deref().is_some_and(|p| p.as_os_str() == "system") {
        return Err(bad("sslrootcert=system is not supported: give the CA file (PEM)"));
    }
    Ok(Split { rest, mode, root_cert })
}

fn percent_decode(s: &str) -> Result<String, StoreError> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let h = b.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
            let v = h.and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or_else(|| bad("bad percent-encoding"))?;
            out.push(v);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad("bad percent-encoding"))
}

/// The `key = value` pairs of a libpq key/value string (values bare or single-quoted, `\` escaping), each with
/// its original text.
fn key_values(s: &str) -> Result<Vec<(&str, String, &str)>, StoreError> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < b.len() && b[*i].is_ascii_whitespace() {
            *i += 1;
        }
    };
    loop {
        skip_ws(&mut i);
        if i >= b.len() {
            return Ok(out);
        }
        let start = i;
        while i < b.len() && b[i] != b'=' && !b[i].is_ascii_whitespace() {
            i += 1;
        }
        let key = &s[start..i];
        skip_ws(&mut i);
        if b.get(i) != Some(&b'=') {
            return Err(bad(&format!("expected = after {key:?}")));
        }
        i += 1;
        skip_ws(&mut i);
        let mut value = Vec::new();
        if b.get(i) == Some(&b'\'') {
            i += 1;
            loop {
                match b.get(i) {
                    None => return Err(bad("unterminated quoted value")),
                    Some(b'\'') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') if i + 1 < b.len() => {
                        value.push(b[i + 1]);
                        i += 2;
                    }
                    Some(&c) => {
                        value.push(c);
                        i += 1;
                    }
                }
            }
        } else {
            while i < b.len() && !b[i].is_ascii_whitespace() {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                value.push(b[i]);
                i += 1;
            }
        }
        let value = String::from_utf8(value).map_err(|_| bad("a value is not UTF-8"))?;
        out.push((key, value, &s[start..i]));
    }
}

/// Parses a connection string into the driver's configuration and the TLS connector it asks for.
pub(super) fn configure(conn: &str) -> Result<(tokio_postgres::Config, MakeRustlsConnect), StoreError> {
    let split = split(conn)?;
    let mut config: tokio_postgres::Config = split.rest.parse().map_err(StoreError::from_display)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match &split.root_cert {
        Some(path) => Some(Arc::new(read_roots(path)?)),
        None => None,
    };
    let algorithms = provider.signature_verification_algorithms;
    let verifier: Arc<dyn ServerCertVerifier> = match (split.mode, roots) {
        (Mode::VerifyFull, Some(roots)) => WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(StoreError::from_display)?,
        // require and verify-ca; never asked for plaintext (verify-full without roots is refused by `split`).
        (_, roots) => Arc::new(ChainOnly { roots, algorithms }),
    };
    config.ssl_mode(match split.mode {
        Mode::Plain => tokio_postgres::config::SslMode::Disable,
        _ => tokio_postgres::config::SslMode::Require,
    });
    if split.mode == Mode::Require && split.root_cert.is_none() {
        tracing::warn!("postgres sslmode=require without sslrootcert: encrypted, but the server is not authenticated");
    }
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(StoreError::from_display)?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok((config, MakeRustlsConnect::new(tls)))
}

fn read_roots(path: &std::path::Path) -> Result<RootCertStore, StoreError> {
    let what = |e: &dyn std::fmt::Display| StoreError(format!("sslrootcert {}: {e}", path.display()));
    let pem = std::fs::read(path).map_err(|e| what(&e))?;
    let mut roots = RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.map_err(|e| what(&e))?).map_err(|e| what(&e))?;
    }
    if roots.is_empty() {
        return Err(what(&"no certificate in the file"));
    }
    Ok(roots)
}

/// `verify-ca` (and `require` with a CA): the chain must lead to a trusted CA, the name is not checked.
/// Without roots, `require` alone: encrypted, the server unauthenticated (libpq's behaviour). Either way the
/// handshake's own signatures are checked.
#[derive(Debug)]
struct ChainOnly {
    roots: Option<Arc<RootCertStore>>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(roots) = &self.roots {
            let cert = rustls::server::ParsedCertificate::try_from(end_entity)?;
            verify_server_cert_signed_by_trust_anchor(&cert, roots, intermediates, now, self.algorithms.all)?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_parameters_are_taken_out_of_both_forms() {
        let s = split("host=db port=5432 sslmode=verify-full  sslrootcert='/etc/my ca.pem' dbname=l402").expect("kv");
        assert_eq!(s.rest, "host=db port=5432 dbname=l402");
        assert_eq!(s.mode, Mode::VerifyFull);
        assert_eq!(s.root_cert.as_deref(), Some(std::path::Path::new("/etc/my ca.pem")));
        let s = split("postgresql://u@db/l402?sslmode=require&application_name=x&sslrootcert=%2Fca.pem").expect("url");
        assert_eq!(s.rest, "postgresql://u@db/l402?application_name=x");
        assert_eq!((s.mode, s.root_cert), (Mode::Require, Some(PathBuf::from("/ca.pem"))));
        let s = split("host = db user='a b\\'c'").expect("spaces and quotes");
        assert_eq!((s.rest.as_str(), s.mode), ("host = db user='a b\\'c'", Mode::Plain));
        assert!(split("host=db sslmode=verify-full").is_err(), "verify-full needs a CA");
        assert!(split("host=db sslmode=bogus").is_err());
        assert!(split("host=db sslrootcert=system sslmode=require").is_err());
        assert!(split("host=db user='unterminated").is_err());
        assert!(split("host").is_err());
    }
}

//! Where the node is and how to prove who we are: address, pinned TLS certificate, macaroon, timeouts.
//!
//! The certificate and the macaroon are each accepted as a file path or as the value itself (PEM, hex or
//! base64 for the certificate; hex or base64 for the macaroon), or both at once in an `lndconnect://` URI.
//! Every error names the input that is wrong, and never echoes a macaroon.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use l402_lightning::{LightningError, LightningErrorKind};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// LND's default gRPC port.
pub const DEFAULT_PORT: u16 = 10009;
/// How long one call may take before it fails with [`LightningErrorKind::Timeout`].
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long opening one connection (TCP and TLS) may take.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a call keeps retrying, with backoff, while the node is unreachable.
pub const DEFAULT_RECONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long past a payment's own timeout the adapter keeps trying to learn its outcome before it reports
/// [`l402_lightning::PayError::OutcomeUnknown`].
pub const DEFAULT_RESUME_MARGIN: Duration = Duration::from_secs(60);

/// How many parts (HTLCs) a payment may be split into, unless [`LndConfig::max_parts`] says otherwise: one.
///
/// Measured on LND 0.21.2: `SendPaymentV2` with `max_parts` unset splits up to 16 ways. When the fee limit is
/// below what the one route costs, LND then sends a smaller shard that fits the limit, and the payment stays
/// IN_FLIGHT (with `failure_reason` NO_ROUTE already set) until the payee fails that lone shard back at its MPP
/// timeout, minutes later; a payee that chose to could even settle it and be paid part of the price. With one
/// part a route over the limit is NO_ROUTE at once and nothing leaves the node. L402 prices are small; a
/// payment that needs several channels' liquidity can raise it.
pub const DEFAULT_MAX_PARTS: u32 = 1;

/// How to reach one LND node.
///
/// Build it with [`LndConfig::new`] (address, certificate, macaroon) or [`LndConfig::from_lndconnect`]; the
/// timeouts start at the `DEFAULT_*` constants of this module and can be changed on the value.
#[derive(Clone)]
pub struct LndConfig {
    /// `host:port` of LND's gRPC interface.
    pub address: String,
    /// The DER bytes of the node's `tls.cert`: the only certificate the connection accepts.
    pub tls_cert_der: Vec<u8>,
    /// The macaroon (binary), sent hex-encoded on every call. A secret: never logged. Empty means none is
    /// sent (for an LND run with `--no-macaroons`).
    pub macaroon: Vec<u8>,
    /// See [`DEFAULT_CALL_TIMEOUT`].
    pub call_timeout: Duration,
    /// See [`DEFAULT_CONNECT_TIMEOUT`].
    pub connect_timeout: Duration,
    /// See [`DEFAULT_RECONNECT_TIMEOUT`].
    pub reconnect_timeout: Duration,
    /// See [`DEFAULT_RESUME_MARGIN`].
    pub resume_margin: Duration,
    /// See [`DEFAULT_MAX_PARTS`].
    pub max_parts: u32,
}

impl fmt::Debug for LndConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LndConfig")
            .field("address", &self.address)
            .field("tls_cert_der", &format_args!("<{} bytes>", self.tls_cert_der.len()))
            .field("macaroon", &format_args!("<redacted>"))
            .field("call_timeout", &self.call_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("reconnect_timeout", &self.reconnect_timeout)
            .field("resume_margin", &self.resume_margin)
            .field("max_parts", &self.max_parts)
            .finish()
    }
}

fn config_error(message: impl Into<String>) -> LightningError {
    LightningError::new(LightningErrorKind::Config, message)
}

impl LndConfig {
    /// A configuration from an address (`host:port`, port 10009 if omitted), the node's `tls.cert` and a
    /// macaroon, each given as a file path or as the value itself.
    ///
    /// The certificate may be PEM, or DER as hex or base64; a file may hold PEM or DER. The macaroon may be
    /// hex or base64 (standard or URL-safe); a file may hold the binary macaroon (LND's `admin.macaroon`) or
    /// its hex.
    pub fn new(address: &str, tls_cert: &str, macaroon: &str) -> Result<Self, LightningError> {
        Ok(Self::from_parts(parse_address(address)?, load_cert(tls_cert)?, load_macaroon(macaroon)?))
    }

    /// A configuration from values already loaded. The certificate and macaroon are used as given.
    pub fn from_parts(address: String, tls_cert_der: Vec<u8>, macaroon: Vec<u8>) -> Self {
        Self {
            address,
            tls_cert_der,
            macaroon,
            call_timeout: DEFAULT_CALL_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            reconnect_timeout: DEFAULT_RECONNECT_TIMEOUT,
            resume_margin: DEFAULT_RESUME_MARGIN,
            max_parts: DEFAULT_MAX_PARTS,
        }
    }

    /// A configuration from an `lndconnect://host[:port]?cert=<base64url DER>&macaroon=<base64url>` URI (the
    /// format of `lndconnect` and of Zeus, Alby and friends). The certificate is required: this adapter pins
    /// it.
    pub fn from_lndconnect(uri: &str) -> Result<Self, LightningError> {
        let err = |m: String| config_error(format!("lndconnect URI: {m}"));
        let rest = uri
            .trim()
            .strip_prefix("lndconnect://")
            .ok_or_else(|| err("does not start with lndconnect://".to_owned()))?;
        let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
        let authority = authority.trim_end_matches('/');
        if authority.is_empty() {
            return Err(err("has no host".to_owned()));
        }
        let address = parse_address(authority).map_err(|e| err(e.message))?;
        let (mut cert, mut macaroon) = (None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let value = percent_decode(value).map_err(|m| err(format!("parameter {key}: {m}")))?;
            match key {
                "cert" => cert = Some(value),
                "macaroon" => macaroon = Some(value),
                _ => {}
            }
        }
        let cert = cert.ok_or_else(|| {
            err("has no cert= parameter; this adapter pins the node's tls.cert, so the URI must carry it".to_owned())
        })?;
        let macaroon = macaroon.ok_or_else(|| err("has no macaroon= parameter".to_owned()))?;
        let cert_der = decode_base64(&cert)
            .ok_or_else(|| err("cert= is not base64url".to_owned()))
            .and_then(|der| check_der(&der).map(|()| der).map_err(|m| err(format!("cert= {m}"))))?;
        let mac = decode_base64(&macaroon).ok_or_else(|| err("macaroon= is not base64url".to_owned()))?;
        check_macaroon(&mac).map_err(|m| err(format!("macaroon= {m}")))?;
        Ok(Self::from_parts(address, cert_der, mac))
    }

    /// The host part of the address (the TLS server name sent; the certificate is pinned, not name-checked).
    pub fn host(&self) -> &str {
        split_host_port(&self.address).map(|(h, _)| h).unwrap_or(&self.address)
    }
}

fn split_host_port(address: &str) -> Option<(&str, &str)> {
    if let Some(rest) = address.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return Some((host, after.strip_prefix(':')?));
    }
    address.rsplit_once(':')
}

/// Normalizes `host[:port]` (IPv6 in brackets) to `host:port`.
pub(crate) fn parse_address(input: &str) -> Result<String, LightningError> {
    let input = input.trim();
    let input = input.strip_prefix("https://").or_else(|| input.strip_prefix("http://")).unwrap_or(input);
    let input = input.trim_end_matches('/');
    let err = |m: &str| config_error(format!("address {input:?}: {m}"));
    if input.is_empty() {
        return Err(err("is empty"));
    }
    let bracketed = input.starts_with('[');
    let has_port = if bracketed { input.contains("]:") } else { input.matches(':').count() == 1 };
    if !has_port {
        if !bracketed && input.contains(':') {
            return Err(err("an IPv6 address must be written in brackets, e.g. [::1]:10009"));
        }
        return Ok(format!("{input}:{DEFAULT_PORT}"));
    }
    let (host, port) = split_host_port(input).ok_or_else(|| err("expected host:port"))?;
    if host.is_empty() {
        return Err(err("has no host"));
    }
    let port: u16 = port.parse().map_err(|_| err("the port is not a number from 1 to 65535"))?;
    if port == 0 {
        return Err(err("the port is not a number from 1 to 65535"));
    }
    Ok(if bracketed { format!("[{host}]:{port}") } else { format!("{host}:{port}") })
}

/// `~/x` to `$HOME/x`, as a shell would (configuration files often carry LND's `~/.lnd/...` paths).
fn expand_home(s: &str) -> String {
    match (s.strip_prefix("~/"), std::env::var("HOME")) {
        (Some(rest), Ok(home)) => format!("{home}/{rest}"),
        _ => s.to_owned(),
    }
}

fn looks_like_path(s: &str) -> bool {
    s.contains('/') || s.contains('\\') || [".cert", ".pem", ".crt", ".der", ".macaroon"].iter().any(|e| s.ends_with(e))
}

fn is_hex(s: &str) -> bool {
    !s.is_empty() && s.len() % 2 == 0 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let s: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD].iter().find_map(|e| e.decode(&s).ok())
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let pair = bytes.get(i + 1..i + 3).ok_or("truncated %-escape")?;
            let text = std::str::from_utf8(pair).map_err(|_| "bad %-escape")?;
            out.push(u8::from_str_radix(text, 16).map_err(|_| "bad %-escape")?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8 after %-decoding".to_owned())
}

/// Checks that `der` is one well-formed DER SEQUENCE (an X.509 certificate's outer shape).
fn check_der(der: &[u8]) -> Result<(), String> {
    let bad = || Err("is not a DER certificate".to_owned());
    if der.len() < 2 || der[0] != 0x30 {
        return bad();
    }
    let (len, header) = match der[1] {
        n if n < 0x80 => (usize::from(n), 2),
        0x81 if der.len() > 2 => (usize::from(der[2]), 3),
        0x82 if der.len() > 3 => (usize::from(der[2]) << 8 | usize::from(der[3]), 4),
        0x83 if der.len() > 4 => (usize::from(der[2]) << 16 | usize::from(der[3]) << 8 | usize::from(der[4]), 5),
        _ => return bad(),
    };
    if header + len != der.len() {
        return bad();
    }
    Ok(())
}

fn cert_from_pem(pem: &[u8]) -> Result<Vec<u8>, String> {
    let der = CertificateDer::from_pem_slice(pem)
        .map(|c| c.as_ref().to_vec())
        .map_err(|e| format!("holds no PEM CERTIFICATE block ({e:?})"))?;
    check_der(&der).map_err(|m| format!("holds a CERTIFICATE block that {m}"))?;
    Ok(der)
}

/// Loads a certificate given as a path, PEM, hex DER or base64 DER; returns its DER bytes.
pub(crate) fn load_cert(input: &str) -> Result<Vec<u8>, LightningError> {
    let err = |m: String| config_error(format!("tls cert: {m}"));
    let expanded = expand_home(input.trim());
    let s = expanded.as_str();
    if s.is_empty() {
        return Err(err("is empty".to_owned()));
    }
    if s.starts_with("-----BEGIN") {
        return cert_from_pem(s.as_bytes()).map_err(|m| err(format!("the PEM text {m}")));
    }
    if !s.contains('\n') && Path::new(s).is_file() {
        let bytes = std::fs::read(s).map_err(|e| err(format!("cannot read file {s}: {e}")))?;
        let text = String::from_utf8_lossy(&bytes);
        let der = if text.trim_start().starts_with("-----BEGIN") {
            cert_from_pem(text.trim().as_bytes()).map_err(|m| err(format!("file {s} {m}")))?
        } else {
            bytes
        };
        check_der(&der).map_err(|m| err(format!("file {s} {m} (expected PEM or DER)")))?;
        return Ok(der);
    }
    let decoded = if is_hex(s) { hex::decode(s).ok() } else { decode_base64(s) };
    match decoded {
        Some(der) => {
            check_der(&der).map_err(|m| err(format!("the value given {m}")))?;
            Ok(der)
        }
        None if looks_like_path(s) => Err(err(format!("no such file: {s}"))),
        None => Err(err("is neither a file path, PEM, nor a hex or base64 DER certificate".to_owned())),
    }
}

fn check_macaroon(bytes: &[u8]) -> Result<(), String> {
    // LND writes macaroons in the libmacaroons V2 binary format, which starts with the version byte 2.
    match bytes.first() {
        None => Err("is empty".to_owned()),
        Some(2) if bytes.len() > 8 => Ok(()),
        Some(_) => Err("is not a binary V2 macaroon (LND's format)".to_owned()),
    }
}

/// Loads a macaroon given as a path (binary or hex file), hex or base64. Never echoes the value.
pub(crate) fn load_macaroon(input: &str) -> Result<Vec<u8>, LightningError> {
    let err = |m: String| config_error(format!("macaroon: {m}"));
    let expanded = expand_home(input.trim());
    let s = expanded.as_str();
    if s.is_empty() {
        return Err(err("is empty".to_owned()));
    }
    if Path::new(s).is_file() {
        let bytes = std::fs::read(s).map_err(|e| err(format!("cannot read file {s}: {e}")))?;
        let text = std::str::from_utf8(&bytes).ok().map(str::trim).filter(|t| is_hex(t));
        let mac = match text {
            Some(hex_text) => hex::decode(hex_text).map_err(|e| err(format!("file {s}: {e}")))?,
            None => bytes,
        };
        check_macaroon(&mac).map_err(|m| err(format!("file {s} {m}")))?;
        return Ok(mac);
    }
    let decoded = if is_hex(s) { hex::decode(s).ok() } else { decode_base64(s) };
    match decoded {
        Some(mac) => {
            check_macaroon(&mac).map_err(|m| err(format!("the value given {m}")))?;
            Ok(mac)
        }
        // Echo the input only when it is plainly a path, never a (possibly mistyped) macaroon.
        None if s.ends_with(".macaroon") || s.starts_with('/') || s.starts_with("./") || s.starts_with('~') => {
            Err(err(format!("no such file: {s}")))
        }
        None => Err(err(format!("is neither a file path, hex nor base64 (a value of {} characters)", s.len()))),
    }
}

#[cfg(test)]
mod tests;

//! A small but faithful L402 server for the client's tests (until the project's own proxy exists), and the
//! regtest network the tests pay over.
//!
//! It answers like Aperture: `402` with `Cache-Control: no-store` and two `WWW-Authenticate` lines (LSAT, then
//! L402), a macaroon minted with `l402_proto::Macaroon::mint` under a fresh root key whose identifier commits to
//! the payment hash of a real invoice from its LDK node; it verifies credentials with `l402_proto::verify` and
//! answers an invalid one with a fresh 402. Tests can make it misbehave ([`Mode`]) or fail transiently
//! ([`Server::fail_next`]).
//!
//! Paths: `/free...` costs nothing; `/other...` is service `other`; anything else is service `svc`. Behind the
//! paywall (once a credential verifies), `.../upstream401` answers like an API wanting its own credentials
//! (`401`, `WWW-Authenticate: Bearer`), `.../upstream402` with a `402` carrying no challenge, `.../big` with
//! [`ServerState::big_bytes`] bytes (streamed, no `Content-Length`), and `.../stall` with the start of a body that never ends.
//!
//! With [`ServerState::offer_payment`] on it also offers a `Payment` scheme Lightning charge after its L402 lines
//! (its own invoice, as Aperture does), accepts a charge credential once (single use), answers it with a
//! `Payment-Receipt`, and can misbehave in its charge offer ([`mpp::ChargeMode`]); [`ServerState::offer_l402`]
//! off leaves only the `Payment` line.
//!
//! [`RawServer`] is the hostile one: it answers whatever a test scripts, byte for byte, and records every
//! request head it was sent.
#![allow(dead_code, unreachable_pub, missing_docs)]

pub mod mpp;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use bitcoin::secp256k1::{Secp256k1, SecretKey};
use l402_ldk::LdkNode;
use l402_lightning::{
    InvoiceIssuer, InvoiceRequest, InvoiceState, IssuedInvoice, LightningError, LightningErrorKind, Node, NodeInfo,
    PayError, PayRequest, Payer, PaymentEvent, PaymentStatus, PaymentSuccess, SettlementStream,
};
use l402_proto::challenge::{challenge_lines, format_challenge, format_challenge_v0};
use l402_proto::lightning_invoice::{Currency, InvoiceBuilder, PaymentSecret};
use l402_proto::*;
use l402_regtest::Regtest;

/// How the server misbehaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Like Aperture.
    Normal,
    /// Only an `LSAT` challenge line (an old server).
    LsatOnly,
    /// Only the 2026 specification's `L402 version="0", token=...` line.
    SpecV0,
    /// The invoice is for mainnet.
    WrongNetwork,
    /// The invoice has no amount.
    Amountless,
    /// The invoice expired.
    Expired,
    /// The invoice pays a hash other than the macaroon's.
    HashMismatch,
    /// Valid credentials are answered with a fresh 402 (takes the money, never serves).
    RefuseValid,
    /// Valid credentials are answered with a fresh 402 saying the bundle is used up (`X-L402-Balance-Msat: 0`),
    /// even a token that never served a request: a metered paywall's word, abused to sell bundle after bundle.
    ClaimUsedUp,
    /// Valid credentials are answered after an hour (takes the money, then keeps the client waiting).
    HangPaid,
    /// Valid credentials are answered `401` with `WWW-Authenticate: L402 error="invalid_credential"` (the
    /// paywall's own refusal, as `l402-server` words it).
    RefuseWithError,
}

pub struct ServerState {
    node: Arc<dyn InvoiceIssuer>,
    root_keys: Mutex<HashMap<[u8; 32], RootKey>>,
    pub mode: Mutex<Mode>,
    /// Price in msat.
    pub price_msat: AtomicU64,
    /// Seconds a token stays valid (a `svc_valid_until` caveat); 0 for none.
    pub valid_secs: AtomicU64,
    /// Statuses (and an optional Retry-After) answered before anything else, one per request.
    pub fail_next: Mutex<VecDeque<(u16, Option<String>)>>,
    pub challenges: AtomicU64,
    pub served_paid: AtomicU64,
    pub served_free: AtomicU64,
    pub requests: AtomicU64,
    /// The scheme of the last credential accepted.
    pub last_scheme: Mutex<Option<String>>,
    /// The body of the last request served.
    pub last_body: Mutex<Vec<u8>>,
    /// The size of the `.../big` body.
    pub big_bytes: AtomicU64,
    /// Whether a 402 carries the L402 lines (`LSAT`, `L402`).
    pub offer_l402: AtomicBool,
    /// Whether a 402 carries a `Payment` charge line (after the L402 ones).
    pub offer_payment: AtomicBool,
    pub charge_mode: Mutex<mpp::ChargeMode>,
    /// The charges issued, by challenge id.
    pub charges: Mutex<HashMap<String, mpp::Issued>>,
    /// The challenge ids of the charge credentials accepted, in order.
    pub charges_accepted: Mutex<Vec<String>>,
    /// Whether [`mpp::ChargeMode::HangOnce`] has hung once.
    pub hung: AtomicBool,
}

pub struct Server {
    pub addr: SocketAddr,
    pub state: Arc<ServerState>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An upstream on loopback answering `upstream saw <path>` (behind a peer proxy such as Aperture).
pub async fn saying_upstream() -> SocketAddr {
    let app = axum::Router::new().fallback(|uri: Uri| async move { format!("upstream saw {}", uri.path()) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    addr
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("randomness");
    b
}

impl Server {
    pub async fn start(node: Arc<dyn InvoiceIssuer>) -> Server {
        let state = Arc::new(ServerState {
            node,
            root_keys: Mutex::default(),
            mode: Mutex::new(Mode::Normal),
            price_msat: AtomicU64::new(100_000),
            valid_secs: AtomicU64::new(3_600),
            fail_next: Mutex::default(),
            challenges: AtomicU64::new(0),
            served_paid: AtomicU64::new(0),
            served_free: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            last_scheme: Mutex::new(None),
            last_body: Mutex::new(Vec::new()),
            big_bytes: AtomicU64::new(1 << 20),
            offer_l402: AtomicBool::new(true),
            offer_payment: AtomicBool::new(false),
            charge_mode: Mutex::new(mpp::ChargeMode::Normal),
            charges: Mutex::default(),
            charges_accepted: Mutex::default(),
            hung: AtomicBool::new(false),
        });
        let app = axum::Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Server { addr, state, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().expect("lock") = mode;
    }

    pub fn set_price_sat(&self, sat: u64) {
        self.state.price_msat.store(sat * 1000, Ordering::SeqCst);
    }

    pub fn fail_next(&self, status: u16, retry_after: Option<&str>) {
        self.state.fail_next.lock().expect("lock").push_back((status, retry_after.map(str::to_owned)));
    }

    pub fn challenges(&self) -> u64 {
        self.state.challenges.load(Ordering::SeqCst)
    }

    pub fn served_paid(&self) -> u64 {
        self.state.served_paid.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// Which schemes a 402 offers.
    pub fn offer(&self, l402: bool, payment: bool) {
        self.state.offer_l402.store(l402, Ordering::SeqCst);
        self.state.offer_payment.store(payment, Ordering::SeqCst);
    }

    pub fn set_charge_mode(&self, mode: mpp::ChargeMode) {
        *self.state.charge_mode.lock().expect("lock") = mode;
    }

    /// The challenge ids of the charges accepted.
    pub fn charges_accepted(&self) -> Vec<String> {
        self.state.charges_accepted.lock().expect("lock").clone()
    }

    /// Forgets every root key (as if the server lost its store): every token is refused from now on.
    pub fn forget_keys(&self) {
        self.state.root_keys.lock().expect("lock").clear();
    }
}

fn service_of(path: &str) -> Option<&'static str> {
    if path.starts_with("/free") {
        None
    } else if path.starts_with("/other") {
        Some("other")
    } else {
        Some("svc")
    }
}

async fn handle(
    State(s): State<Arc<ServerState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    s.requests.fetch_add(1, Ordering::SeqCst);
    let fail = s.fail_next.lock().expect("lock").pop_front();
    if let Some((status, retry_after)) = fail {
        let mut r = (StatusCode::from_u16(status).expect("status"), "try again").into_response();
        if let Some(v) = retry_after {
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_str(&v).expect("value"));
        }
        return r;
    }
    let path = uri.path().to_owned();
    let Some(service) = service_of(&path) else {
        s.served_free.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::OK, format!("free {method} {path}")).into_response();
    };
    let mode = *s.mode.lock().expect("lock");
    if let Some(answer) = charge_answer(&s, &headers, service, &method, &path, &body).await {
        return answer;
    }
    if mode == Mode::ClaimUsedUp && accepted(&s, &headers, service).is_some() {
        let mut r = challenge(&s, service, Mode::Normal).await;
        r.headers_mut().insert("x-l402-balance-msat", HeaderValue::from_static("0"));
        return r;
    }
    let scheme = if mode == Mode::RefuseValid { None } else { accepted(&s, &headers, service) };
    if let Some(scheme) = scheme {
        if mode == Mode::HangPaid {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        if mode == Mode::RefuseWithError {
            let mut r = (StatusCode::UNAUTHORIZED, "refused").into_response();
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("L402 error=\"invalid_credential\""));
            return r;
        }
        if let Some(r) = upstream_behaviour(&s, &path) {
            s.served_paid.fetch_add(1, Ordering::SeqCst);
            return r;
        }
        *s.last_scheme.lock().expect("lock") = Some(scheme);
        *s.last_body.lock().expect("lock") = body.to_vec();
        s.served_paid.fetch_add(1, Ordering::SeqCst);
        return (StatusCode::OK, format!("paid {method} {path} for {service}; body {} bytes", body.len()))
            .into_response();
    }
    challenge(&s, service, mode).await
}

/// The answer to a request carrying a `Payment` credential (`None` if it carries none): served once per charge
/// whose id this server issued, whose echoed request is the one issued, unexpired, with a preimage of the stated
/// hash; a fresh 402 otherwise (as Aperture answers).
async fn charge_answer(
    s: &Arc<ServerState>,
    headers: &HeaderMap,
    service: &str,
    method: &Method,
    path: &str,
    body: &Bytes,
) -> Option<Response> {
    let (id, request, preimage) = headers
        .get_all(header::AUTHORIZATION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(mpp::parse_credential)?;
    let charge_mode = *s.charge_mode.lock().expect("lock");
    let mode = *s.mode.lock().expect("lock");
    let valid = {
        let charges = s.charges.lock().expect("lock");
        charges.get(&id).is_some_and(|c| {
            c.request == request && !c.consumed && now() < c.expires && preimage.payment_hash() == c.stated_hash
        })
    };
    if !valid || charge_mode == mpp::ChargeMode::RefuseCharge {
        return Some(challenge(s, service, mode).await);
    }
    if charge_mode == mpp::ChargeMode::HangOnce && !s.hung.swap(true, Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    // Spent last and once (as Aperture's `INSERT ... ON CONFLICT DO NOTHING`).
    let spent = s
        .charges
        .lock()
        .expect("lock")
        .get_mut(&id)
        .map(|c| (!std::mem::replace(&mut c.consumed, true), c.stated_hash));
    let Some((true, hash)) = spent else { return Some(challenge(s, service, mode).await) };
    s.charges_accepted.lock().expect("lock").push(id.clone());
    *s.last_scheme.lock().expect("lock") = Some("Payment".into());
    *s.last_body.lock().expect("lock") = body.to_vec();
    s.served_paid.fetch_add(1, Ordering::SeqCst);
    let mut r = (StatusCode::OK, format!("paid {method} {path} for {service} by charge")).into_response();
    if charge_mode != mpp::ChargeMode::NoReceipt {
        let receipt = mpp::receipt(&hash, &id, now());
        r.headers_mut().insert("payment-receipt", HeaderValue::from_str(&receipt).expect("receipt"));
    }
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    Some(r)
}

/// The `Payment` charge line of a challenge, made hostile as [`ServerState::charge_mode`] says.
async fn charge_line(s: &ServerState, service: &str) -> Result<String, LightningError> {
    use mpp::ChargeMode as M;
    let mode = *s.charge_mode.lock().expect("lock");
    let price = s.price_msat.load(Ordering::SeqCst);
    let (invoice, hash) = match mode {
        M::MainnetInvoice | M::ExpiredInvoice => {
            let hash = Preimage(random32()).payment_hash();
            let inv = if mode == M::MainnetInvoice {
                foreign_invoice(Currency::Bitcoin, &hash, Some(price), now(), 600)
            } else {
                foreign_invoice(Currency::Regtest, &hash, Some(price), now() - 1_000, 600)
            };
            (inv, hash)
        }
        _ => {
            let req = InvoiceRequest {
                amount: Msat(price),
                memo: format!("l402 test charge {service}"),
                expiry: Duration::from_secs(600),
            };
            let issued = s.node.create_invoice(&req).await?;
            (issued.bolt11, issued.payment_hash)
        }
    };
    let stated_hash = if mode == M::HashMismatch { Preimage(random32()).payment_hash() } else { hash };
    let stated_sat = if mode == M::AmountMismatch { price / 1000 - 1 } else { price / 1000 };
    let network = if matches!(mode, M::StatedMainnet | M::MainnetInvoice) { "mainnet" } else { "regtest" };
    let request = mpp::charge_request(stated_sat, &invoice, network, &stated_hash);
    let expires = if mode == M::ExpiringChallenge { now() + 5 } else { now() + 900 };
    let id = mpp::b64url(&random32());
    let line = mpp::challenge_line(&id, "l402-test", &request, &mpp::rfc3339(expires));
    s.charges.lock().expect("lock").insert(id, mpp::Issued { request, stated_hash, expires, consumed: false });
    Ok(line)
}

/// What the API behind the paywall answers on the special paths (see the module doc).
fn upstream_behaviour(s: &ServerState, path: &str) -> Option<Response> {
    if path.ends_with("/upstream401") {
        let mut r = (StatusCode::UNAUTHORIZED, "the API wants its own login").into_response();
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"api\""));
        return Some(r);
    }
    if path.ends_with("/upstream402") {
        return Some((StatusCode::PAYMENT_REQUIRED, "the API's own 402, no challenge").into_response());
    }
    if path.ends_with("/big") {
        // Streamed in 64 KiB chunks, with no Content-Length: the client only learns the size by reading.
        let n = s.big_bytes.load(Ordering::SeqCst) as usize;
        let chunks: Vec<Result<Bytes, std::io::Error>> =
            (0..n).step_by(1 << 16).map(|i| Ok(Bytes::from(vec![b'x'; (n - i).min(1 << 16)]))).collect();
        return Some(
            (StatusCode::OK, axum::body::Body::from_stream(futures_util::stream::iter(chunks))).into_response(),
        );
    }
    if path.ends_with("/stall") {
        let start = futures_util::stream::once(async { Ok::<_, std::io::Error>(Bytes::from_static(b"the start, ")) });
        let body =
            axum::body::Body::from_stream(futures_util::StreamExt::chain(start, futures_util::stream::pending()));
        return Some((StatusCode::OK, body).into_response());
    }
    None
}

/// The scheme of a credential that verifies for `service` under a root key this server minted, if any.
fn accepted(s: &ServerState, headers: &HeaderMap, service: &str) -> Option<String> {
    let values = headers.get_all(header::AUTHORIZATION).iter().map(HeaderValue::as_bytes);
    let cred = Credential::from_authorization(values).ok()?;
    let root = s.root_keys.lock().expect("lock").get(&cred.macaroon.identifier_hash()).cloned()?;
    let access = Access { service, capability: None, now_unix: now() };
    verify(&cred.macaroon, &cred.preimage, &MacaroonKey::derive(&root), &access).ok()?;
    Some(match cred.form {
        CredentialForm::Authorization(sch) => sch.as_str().to_owned(),
        CredentialForm::MacaroonHeader => "macaroon-header".into(),
    })
}

/// A signed invoice not from the node (for the misbehaving modes: never payable).
pub fn foreign_invoice(
    currency: Currency,
    hash: &PaymentHash,
    amount_msat: Option<u64>,
    created: u64,
    expiry: u64,
) -> String {
    use bitcoin::hashes::Hash as _;
    let secp = Secp256k1::new();
    let key = SecretKey::from_slice(&[0x42; 32]).expect("key");
    let b = InvoiceBuilder::new(currency)
        .description("l402 test (foreign)".into())
        .payment_hash(bitcoin::hashes::sha256::Hash::from_byte_array(hash.0))
        .payment_secret(PaymentSecret([7; 32]))
        .duration_since_epoch(Duration::from_secs(created))
        .min_final_cltv_expiry_delta(18)
        .expiry_time(Duration::from_secs(expiry));
    let signed = match amount_msat {
        Some(a) => b.amount_milli_satoshis(a).build_signed(|m| secp.sign_ecdsa_recoverable(m, &key)),
        None => b.build_signed(|m| secp.sign_ecdsa_recoverable(m, &key)),
    };
    signed.expect("invoice").to_string()
}

async fn challenge(s: &ServerState, service: &str, mode: Mode) -> Response {
    s.challenges.fetch_add(1, Ordering::SeqCst);
    let price = s.price_msat.load(Ordering::SeqCst);
    let (invoice, hash) = match mode {
        Mode::WrongNetwork | Mode::Amountless | Mode::Expired => {
            let hash = Preimage(random32()).payment_hash();
            let inv = match mode {
                Mode::WrongNetwork => foreign_invoice(Currency::Bitcoin, &hash, Some(price), now(), 600),
                Mode::Amountless => foreign_invoice(Currency::Regtest, &hash, None, now(), 600),
                _ => foreign_invoice(Currency::Regtest, &hash, Some(price), now() - 1_000, 600),
            };
            (inv, hash)
        }
        _ => {
            let req = InvoiceRequest {
                amount: Msat(price),
                memo: format!("l402 test {service}"),
                expiry: Duration::from_secs(600),
            };
            let issued = match s.node.create_invoice(&req).await {
                Ok(i) => i,
                Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
            };
            (issued.bolt11, issued.payment_hash)
        }
    };
    let mac_hash = if mode == Mode::HashMismatch { Preimage(random32()).payment_hash() } else { hash };
    let root = RootKey(random32());
    let id = Identifier::new(mac_hash, TokenId(random32()));
    let mut caveats = vec![Caveat::services(&[Service::new(service)]), Caveat::capabilities::<&str>(service, &[])];
    let valid = s.valid_secs.load(Ordering::SeqCst);
    if valid > 0 {
        caveats.push(Caveat::valid_until(service, now() + valid));
    }
    let mac = Macaroon::mint(&root, &id, &caveats);
    s.root_keys.lock().expect("lock").insert(mac.identifier_hash(), root);
    let mut lines: Vec<String> = match mode {
        _ if !s.offer_l402.load(Ordering::SeqCst) => Vec::new(),
        Mode::LsatOnly => vec![format_challenge(Scheme::Lsat, &mac, &invoice)],
        Mode::SpecV0 => vec![format_challenge_v0(&mac, &invoice)],
        _ => challenge_lines(&mac, &invoice).to_vec(),
    };
    if s.offer_payment.load(Ordering::SeqCst) {
        match charge_line(s, service).await {
            Ok(line) => lines.push(line),
            Err(e) => return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
        }
    }
    let mut r = (StatusCode::PAYMENT_REQUIRED, "payment required").into_response();
    for l in lines {
        r.headers_mut().append(header::WWW_AUTHENTICATE, HeaderValue::from_str(&l).expect("header"));
    }
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// A client configuration for the servers here, which are plain http on loopback: paying over http is asked
/// for explicitly.
pub fn loopback_config(dir: impl Into<std::path::PathBuf>) -> l402_client::ClientConfig {
    let mut cfg = l402_client::ClientConfig::new(dir);
    cfg.allow_http = true;
    cfg
}

/// A request as [`RawServer`] read it: the head as sent (request line and header lines) and the body.
#[derive(Clone, Debug)]
pub struct RawRequest {
    pub head: String,
    pub body: Vec<u8>,
}

impl RawRequest {
    /// The request line's method.
    pub fn method(&self) -> &str {
        self.head.split(' ').next().unwrap_or("")
    }

    /// The request line's target.
    pub fn target(&self) -> &str {
        self.head.split(' ').nth(1).unwrap_or("")
    }

    /// The value of header `name` (case-insensitive), if sent.
    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// What a [`RawServer`] answers: the bytes written back for a request (the connection is closed after them).
pub type Script = Arc<dyn Fn(&RawRequest) -> Vec<u8> + Send + Sync>;

/// A server that answers each request with the bytes its script returns, one request per connection, and
/// records every request and every connection accepted.
pub struct RawServer {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<RawRequest>>>,
    pub connections: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A complete HTTP/1.1 response with `Connection: close` (extra header lines end with `\r\n`).
pub fn http_response(status: &str, headers: &str, body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n", body.len())
        .into_bytes();
    out.extend_from_slice(body);
    out
}

impl RawServer {
    /// Listens on `ip` (port chosen by the system) and answers with `script`.
    pub async fn start(ip: &str, script: impl Fn(&RawRequest) -> Vec<u8> + Send + Sync + 'static) -> RawServer {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let script: Script = Arc::new(script);
        let seen: Arc<Mutex<Vec<RawRequest>>> = Arc::default();
        let connections = Arc::new(AtomicU64::new(0));
        let (rec, count) = (seen.clone(), connections.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                count.fetch_add(1, Ordering::SeqCst);
                let (script, rec) = (script.clone(), rec.clone());
                tokio::spawn(async move {
                    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    let head_end = loop {
                        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break i;
                        }
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
                    let mut req = RawRequest { head, body: buf[head_end + 4..].to_vec() };
                    let want: usize = req.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
                    while req.body.len() < want {
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => req.body.extend_from_slice(&chunk[..n]),
                        }
                    }
                    rec.lock().expect("lock").push(req.clone());
                    let answer = script(&req);
                    let _ = stream.write_all(&answer).await;
                    let _ = stream.flush().await;
                    // An answer without `Connection: close` holds the connection open (a server gone silent).
                    if !answer.windows(17).any(|w| w.eq_ignore_ascii_case(b"connection: close")) {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                    }
                });
            }
        });
        RawServer { addr, seen, connections, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn requests(&self) -> Vec<RawRequest> {
        self.seen.lock().expect("lock").clone()
    }
}

/// Lightning without a network, for the rules that need a scripted wallet: it issues self-signed regtest
/// invoices and knows their preimages, and "pays" them by a script (each call takes the next scripted outcome;
/// success when the script is empty). What it reports is what a real wallet reports; nothing moves.
#[derive(Default)]
pub struct FakeLightning {
    pub preimages: Mutex<HashMap<PaymentHash, Preimage>>,
    pub script: Mutex<VecDeque<Result<(), PayError>>>,
    pub calls: Mutex<Vec<PayRequest>>,
    pub statuses: Mutex<HashMap<PaymentHash, PaymentStatus>>,
}

pub const FAKE_FEE_MSAT: u64 = 1_000;

impl FakeLightning {
    pub fn script(&self, outcomes: impl IntoIterator<Item = Result<(), PayError>>) {
        let mut s = self.script.lock().expect("lock");
        s.clear();
        s.extend(outcomes);
    }

    pub fn calls(&self) -> Vec<PayRequest> {
        self.calls.lock().expect("lock").clone()
    }

    /// A payment whose outcome was unknown completes (as a node would report once it learns it).
    pub fn settle(&self, hash: &PaymentHash) {
        let preimage = self.preimages.lock().expect("lock")[hash];
        let ok = PaymentSuccess { preimage, amount: Msat(0), fee: Msat(FAKE_FEE_MSAT) };
        let amount = self.calls().iter().find(|c| c.payment_hash == *hash).map_or(0, |c| c.amount.0);
        let ok = PaymentSuccess { amount: Msat(amount), ..ok };
        self.statuses.lock().expect("lock").insert(*hash, PaymentStatus::Succeeded(ok));
    }
}

#[async_trait::async_trait]
impl Node for FakeLightning {
    async fn info(&self) -> Result<NodeInfo, LightningError> {
        Ok(NodeInfo { pubkey: "02".repeat(33), network: Currency::Regtest, block_height: 1, alias: "fake".into() })
    }
}

#[async_trait::async_trait]
impl InvoiceIssuer for FakeLightning {
    async fn create_invoice(&self, request: &InvoiceRequest) -> Result<IssuedInvoice, LightningError> {
        let preimage = Preimage(random32());
        let hash = preimage.payment_hash();
        self.preimages.lock().expect("lock").insert(hash, preimage);
        let bolt11 = foreign_invoice(Currency::Regtest, &hash, Some(request.amount.0), now(), request.expiry.as_secs());
        Ok(IssuedInvoice { bolt11, payment_hash: hash })
    }
    async fn lookup_invoice(&self, _: &PaymentHash) -> Result<InvoiceState, LightningError> {
        Ok(InvoiceState::NotFound)
    }
    async fn wait_invoice(&self, _: &PaymentHash, _: Duration) -> Result<InvoiceState, LightningError> {
        Ok(InvoiceState::NotFound)
    }
    async fn subscribe_settlements(&self) -> Result<SettlementStream, LightningError> {
        Err(LightningError::new(LightningErrorKind::Internal, "not supported"))
    }
}

#[async_trait::async_trait]
impl Payer for FakeLightning {
    async fn pay(
        &self,
        request: &PayRequest,
        progress: &(dyn Fn(PaymentEvent) + Send + Sync),
    ) -> Result<PaymentSuccess, PayError> {
        self.calls.lock().expect("lock").push(request.clone());
        let next = self.script.lock().expect("lock").pop_front().unwrap_or(Ok(()));
        progress(PaymentEvent::Initiated);
        let hash = request.payment_hash;
        match next {
            Ok(()) => {
                let preimage = *self
                    .preimages
                    .lock()
                    .expect("lock")
                    .get(&hash)
                    .ok_or_else(|| PayError::Failed(l402_lightning::PaymentFailure::IncorrectPaymentDetails))?;
                progress(PaymentEvent::InFlight);
                let ok = PaymentSuccess { preimage, amount: request.amount, fee: Msat(FAKE_FEE_MSAT) };
                self.statuses.lock().expect("lock").insert(hash, PaymentStatus::Succeeded(ok));
                progress(PaymentEvent::Succeeded(ok));
                Ok(ok)
            }
            Err(e) => {
                let status = match &e {
                    PayError::Failed(f) => Some(PaymentStatus::Failed(f.clone())),
                    PayError::OutcomeUnknown(_) => Some(PaymentStatus::InFlight),
                    _ => None,
                };
                if let Some(st) = status {
                    self.statuses.lock().expect("lock").insert(hash, st);
                }
                Err(e)
            }
        }
    }

    async fn payment_status(&self, hash: &PaymentHash) -> Result<PaymentStatus, LightningError> {
        Ok(self.statuses.lock().expect("lock").get(hash).cloned().unwrap_or(PaymentStatus::Unknown))
    }

    async fn track_payment(
        &self,
        hash: &PaymentHash,
        _timeout: Duration,
        _progress: &(dyn Fn(PaymentEvent) + Send + Sync),
    ) -> Result<PaymentSuccess, PayError> {
        match self.payment_status(hash).await? {
            PaymentStatus::Succeeded(s) => Ok(s),
            PaymentStatus::Failed(f) => Err(PayError::Failed(f)),
            PaymentStatus::InFlight => Err(PayError::OutcomeUnknown("still in flight".into())),
            PaymentStatus::Unknown => Err(PayError::Node(LightningError::new(LightningErrorKind::NotFound, "unknown"))),
        }
    }
}

/// A regtest network with a server node and `payers` payer nodes, each with a 500k-sat channel to the server.
pub async fn network(payers: &[&str]) -> (Regtest, Arc<LdkNode>, Vec<Arc<LdkNode>>) {
    let net = Regtest::start().await.expect("regtest starts (is bitcoind installed? scripts/install-bitcoind.sh)");
    let server = net.ldk_node("server").await.expect("server node");
    let mut nodes = Vec::new();
    for name in payers {
        let n = net.ldk_node(name).await.expect("payer node");
        net.fund(&n, 1_000_000).await.expect("fund");
        net.open_channel(&n, &server, 500_000, 0).await.expect("channel");
        nodes.push(n);
    }
    (net, server, nodes)
}

/// The payer's outbound payments that succeeded, as (hash, amount msat, fee msat), from the node's own store.
pub fn node_payments(node: &LdkNode) -> Vec<(String, u64, u64)> {
    use l402_ldk::ldk_node::payment::{PaymentDirection, PaymentKind, PaymentStatus};
    node.inner()
        .list_payments_with_filter(|p| {
            p.direction == PaymentDirection::Outbound && p.status == PaymentStatus::Succeeded
        })
        .into_iter()
        .filter_map(|p| match p.kind {
            PaymentKind::Bolt11 { hash, .. } => {
                Some((hex::encode(hash.0), p.amount_msat.unwrap_or(0), p.fee_paid_msat.unwrap_or(0)))
            }
            _ => None,
        })
        .collect()
}

/// Every outbound Lightning payment record of the node (any status).
pub fn node_payment_count(node: &LdkNode) -> usize {
    use l402_ldk::ldk_node::payment::{PaymentDirection, PaymentKind};
    node.inner()
        .list_payments_with_filter(|p| {
            p.direction == PaymentDirection::Outbound && matches!(p.kind, PaymentKind::Bolt11 { .. })
        })
        .len()
}

/// A finished command, for assertion messages: its exit code and what it printed.
pub fn describe(o: &std::process::Output) -> String {
    format!(
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

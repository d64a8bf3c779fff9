//! What the proxy's integration tests share: a real upstream on loopback that echoes what it received, a real
//! regtest Lightning network, the proxy started from a TOML text, and raw HTTP/1.1 over a TcpStream (a client
//! library would normalize the very paths these tests probe).
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::routing::{any, get, post};
use futures_util::StreamExt as _;
use l402_ldk::LdkNode;
use l402_proxy::{Config, Proxy, open_store};
use l402_regtest::Regtest;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// The upstream: echoes what it received (path, query, headers) as JSON, counts uploads and their bytes,
/// streams events, or answers slowly.
pub struct Upstream {
    pub url: String,
    /// Requests that reached `/upload` (any prefix).
    pub uploads: Arc<AtomicUsize>,
    /// Bytes received by `/upload`, over all requests.
    pub upload_bytes: Arc<AtomicUsize>,
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.url)
    }
}

impl Upstream {
    pub fn uploads(&self) -> usize {
        self.uploads.load(Ordering::SeqCst)
    }
}

pub async fn upstream() -> Upstream {
    let uploads = Arc::new(AtomicUsize::new(0));
    let upload_bytes = Arc::new(AtomicUsize::new(0));
    let echo = |req: Request| async move {
        let headers: serde_json::Map<String, serde_json::Value> = req
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into())))
            .collect();
        let auth: Vec<String> = req
            .headers()
            .get_all("authorization")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        axum::Json(serde_json::json!({
            "path": req.uri().path(),
            "query": req.uri().query(),
            "headers": headers,
            "authorization": auth,
        }))
    };
    let (u, b) = (uploads.clone(), upload_bytes.clone());
    let upload = move |body: Body| async move {
        u.fetch_add(1, Ordering::SeqCst);
        let mut n = 0usize;
        let mut stream = body.into_data_stream();
        while let Some(chunk) = stream.next().await {
            let len = chunk.map(|c| c.len()).unwrap_or(0);
            n += len;
            b.fetch_add(len, Ordering::SeqCst);
        }
        n.to_string()
    };
    let events = || async {
        let stream = futures_util::stream::unfold(0u32, |i| async move {
            if i == 3 {
                return None;
            }
            if i > 0 {
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
            Some((Ok::<_, std::convert::Infallible>(format!("data: event {i}\n\n")), i + 1))
        });
        ([("content-type", "text/event-stream")], Body::from_stream(stream))
    };
    let slow = || async {
        tokio::time::sleep(Duration::from_secs(5)).await;
        "late"
    };
    let app = Router::new()
        .route("/upload", post(upload.clone()))
        .route("/files/upload", post(upload.clone()))
        .route("/open/upload", post(upload))
        .route("/events", get(events))
        .route("/slow", get(slow))
        .fallback(any(echo));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(l, app).await });
    Upstream { url: format!("http://{addr}"), uploads, upload_bytes }
}

/// A real tonic upstream (the standard gRPC health service) on loopback, reached over h2c: its address, and
/// the reporter to keep while it serves.
pub fn grpc_health() -> (std::net::SocketAddr, tonic_health::server::HealthReporter) {
    let incoming = tonic::transport::server::TcpIncoming::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let addr = incoming.local_addr().expect("addr");
    let (reporter, health) = tonic_health::server::health_reporter();
    tokio::spawn(tonic::transport::Server::builder().add_service(health).serve_with_incoming(incoming));
    (addr, reporter)
}

pub struct Net {
    pub net: Regtest,
    pub alice: Arc<LdkNode>,
    pub server: Arc<LdkNode>,
}

/// bitcoind, and alice with a channel to the server's node.
pub async fn network() -> Net {
    let net = Regtest::start().await.expect("regtest (is bitcoind installed? scripts/install-bitcoind.sh)");
    let (alice, server) = net.channel_pair("alice", "server", 1_000_000, 800_000).await.expect("alice -> server");
    Net { net, alice, server }
}

/// bitcoind and one LDK node: enough to issue real invoices (challenges), not to pay them.
pub async fn invoicing_node() -> (Regtest, Arc<LdkNode>) {
    let net = Regtest::start().await.expect("regtest (is bitcoind installed? scripts/install-bitcoind.sh)");
    let server = net.ldk_node("server").await.expect("ldk node");
    (net, server)
}

pub async fn proxy(config: &str, server: &Arc<LdkNode>) -> Proxy {
    let config = Config::parse(config).expect("config");
    let store = open_store(&config.store).await.expect("store");
    Proxy::start(&config, store, server.clone()).await.expect("proxy starts")
}

/// The `store` and `lightning` lines every test config needs (the LDK node itself is passed to
/// [`proxy`]).
pub fn preamble(dir: &std::path::Path) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
store = {{ kind = "sqlite", path = "{}" }}
lightning = {{ backend = "ldk", data_dir = "unused", network = "regtest", bitcoind_rpc = "x", bitcoind_user = "x" }}
"#,
        dir.join("l402.db").display()
    )
}

/// One free service `raw` (`path = "/*"`, payment off) in front of `upstream`, with `listener` lines (a
/// `[listener]` section, or nothing).
pub fn free_service(dir: &std::path::Path, upstream: &str, listener: &str) -> String {
    format!(
        "{}\n{listener}\n[[service]]\nname = \"raw\"\npath = \"/*\"\nupstream = \"{upstream}\"\npayment = false\n",
        preamble(dir)
    )
}

/// Pays a challenge's `WWW-Authenticate` values from `payer` and returns the Authorization value.
pub async fn pay<'a>(payer: &LdkNode, www_authenticate: impl IntoIterator<Item = &'a [u8]>) -> String {
    l402_regtest::pay_challenge(payer, www_authenticate).await.expect("paid").0
}

/// A response read off the wire.
#[derive(Debug)]
pub struct Raw {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }

    pub fn all(&self, name: &str) -> Vec<&[u8]> {
        self.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_bytes()).collect()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self:?}"))
    }
}

/// Sends `head` (the request line and headers, without the blank line; `Connection: close` is added) and
/// `body` over a fresh connection and reads the whole response.
pub async fn raw(addr: std::net::SocketAddr, head: &str, body: &[u8]) -> Raw {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut bytes = head.trim_end_matches("\r\n").as_bytes().to_vec();
    bytes.extend_from_slice(b"\r\nConnection: close\r\n\r\n");
    bytes.extend_from_slice(body);
    s.write_all(&bytes).await.expect("write");
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await.expect("answered").expect("read");
    parse_response(&out)
}

/// `GET path` with extra header lines.
pub async fn http_get(addr: std::net::SocketAddr, path: &str, headers: &[&str]) -> Raw {
    let mut head = format!("GET {path} HTTP/1.1\r\nHost: localhost");
    for h in headers {
        head.push_str("\r\n");
        head.push_str(h);
    }
    raw(addr, &head, b"").await
}

fn parse_response(bytes: &[u8]) -> Raw {
    let text = String::from_utf8_lossy(bytes);
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no response head: {text:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status: {text:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers.iter().any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked { dechunk(rest) } else { rest.to_owned() };
    Raw { status, headers, body }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

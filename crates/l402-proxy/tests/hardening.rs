//! The proxy under attack: each test pins one finding of issue 10 and failed before its fix. Path probes go
//! as raw bytes over a TcpStream (a client library would normalize them); the upstream echoes what reached
//! it; challenges are real invoices from a real LDK node on regtest, and paid tokens real Lightning payments.
#![allow(missing_docs)]

mod support;

use std::time::{Duration, Instant};

use l402_proto::Credential;
use l402_proxy::Config;
use support::{Raw, http_get, invoicing_node, network, pay, preamble, proxy, raw, upstream};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// Services shared by the tests: a priced API with free docs and capability routes, one matched without
/// regard to case, one with a methods-only route and a body limit, one with payment off, one with freebies.
fn services(up: &support::Upstream) -> String {
    format!(
        r#"
[[service]]
name = "weather"
path = "/weather/*"
upstream = "{up}"
price_sat = 10
capabilities = ["read", "write"]
free_paths = ["/weather/docs*"]
rate_limit = {{ per = "token", per_second = 100.0, burst = 100 }}

[[service.route]]
path = "/weather/admin/*"
methods = ["POST"]
capability = "write"

[[service.route]]
path = "/weather/*"
capability = "read"

[[service]]
name = "legacy"
path = "/legacy/*"
upstream = "{up}"
price_sat = 10
capabilities = ["read", "write"]
case_insensitive_paths = true

[[service.route]]
path = "/legacy/admin/*"
capability = "write"

[[service.route]]
path = "/legacy/*"
capability = "read"

[[service]]
name = "files"
path = "/files/*"
upstream = "{up}"
price_sat = 10
capabilities = ["write"]

[[service.route]]
path = "/files/upload*"
methods = ["PUT", "POST"]
capability = "write"

[[service]]
name = "open"
path = "/open/*"
upstream = "{up}"
payment = false
max_body_bytes = 1000

[[service]]
name = "maps"
path = "/maps/*"
upstream = "{up}"
price_sat = 10
freebies = 2
capabilities = ["admin"]

[[service.route]]
path = "/maps/admin/*"
capability = "admin"
"#
    )
}

/// A config: the preamble, `extra` top-level keys and sections, then the services.
fn config(dir: &std::path::Path, up: &support::Upstream, extra: &str) -> String {
    format!("{}{extra}\n{}", preamble(dir), services(up))
}

fn upstream_path(r: &Raw) -> String {
    assert_eq!(r.status, 200, "forwarded: {r:?}");
    r.json()["path"].as_str().expect("path").to_owned()
}

/// A credential for the same token narrowed to `capability` on `service` (a caveat the holder may add).
fn narrowed(auth: &str, service: &str, capability: &str) -> String {
    let c = Credential::parse(auth.as_bytes()).expect("credential");
    let m = c.macaroon.with_caveat(format!("{service}_capabilities={capability}"));
    Credential::new(l402_proto::Scheme::L402, m, c.preimage).header_value()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn dot_segments_cannot_reach_a_paid_path_through_a_free_prefix() {
    let (net, node) = invoicing_node().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let p = proxy(&config(dir.path(), &up, ""), &node).await;
    let a = p.addr();
    assert_eq!(http_get(a, "/weather/docs/../forecast", &[]).await.status, 402, "canonically /weather/forecast: paid");
    assert_eq!(http_get(a, "/weather/docs/./../forecast", &[]).await.status, 402);
    assert_eq!(http_get(a, "/weather/docs//..//forecast", &[]).await.status, 402);
    // A free path is forwarded in its canonical form; the query goes as sent.
    assert_eq!(upstream_path(&http_get(a, "/weather/docs/./intro/../guide", &[]).await), "/weather/docs/guide");
    let r = http_get(a, "/weather/docs/../../weather/docs/x?q=a/../b&c=%2F", &[]).await;
    assert_eq!(upstream_path(&r), "/weather/docs/x");
    assert_eq!(r.json()["query"], "q=a/../b&c=%2F");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn encoded_separators_and_backslashes_are_refused_with_400() {
    let (net, node) = invoicing_node().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let p = proxy(&config(dir.path(), &up, ""), &node).await;
    for (path, reason) in [
        ("/weather/docs%2F..%2Fforecast", "encoded_slash"),
        ("/weather/docs%2f..%2fforecast", "encoded_slash"),
        ("/weather/docs/%2e%2e/forecast", "encoded_dot"),
        ("/weather/docs/%2E./forecast", "encoded_dot"),
        ("/weather/docs/..%5Cforecast", "backslash"),
        ("/weather/docs/..%5cforecast", "backslash"),
        ("/weather/docs\\..\\forecast", "backslash"),
        ("/weather/docs/%zz", "bad_percent_escape"),
        ("/weather/docs/../../../etc/passwd", "dot_dot_above_root"),
    ] {
        let r = http_get(p.addr(), path, &[]).await;
        assert_eq!(r.status, 400, "{path}: {r:?}");
        assert_eq!(r.json()["error"], "bad request path", "{path}");
        assert_eq!(r.json()["reason"], reason, "{path}");
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn repeated_slashes_escapes_and_case_cannot_dodge_a_capability_route() {
    let n = network().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let p = proxy(&config(dir.path(), &up, ""), &n.server).await;
    let a = p.addr();
    let post = |path: &str, auth: &str| {
        let head = format!("POST {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nAuthorization: {auth}");
        async move { raw(a, &head, b"").await }
    };
    let challenge = http_get(a, "/weather/today", &[]).await;
    assert_eq!(challenge.status, 402);
    let full = pay(&n.alice, challenge.all("www-authenticate")).await;
    let read = narrowed(&full, "weather", "read");
    assert_eq!(http_get(a, "/weather/today", &[&format!("Authorization: {read}")]).await.status, 200);
    assert_eq!(post("/weather/admin/x", &read).await.status, 402, "a read token does not open the write route");
    for dodge in
        ["/weather//admin/x", "/weather/%61dmin/x", "/weather/./admin/x", "/weather/x/../admin/y", "//weather/admin/x"]
    {
        assert_eq!(post(dodge, &read).await.status, 402, "{dodge} is the write route");
    }
    // The full token opens it, and the upstream gets the canonical path.
    assert_eq!(upstream_path(&post("/weather/%61dmin//x", &full).await), "/weather/admin/x");

    // A case-insensitive service: /legacy/ADMIN is its write route; the path keeps its case upstream.
    let challenge = http_get(a, "/legacy/x", &[]).await;
    let full = pay(&n.alice, challenge.all("www-authenticate")).await;
    let read = narrowed(&full, "legacy", "read");
    assert_eq!(http_get(a, "/legacy/Today", &[&format!("Authorization: {read}")]).await.status, 200);
    for dodge in ["/legacy/ADMIN/x", "/legacy/Admin/x", "/legacy/%41dmin/x"] {
        assert_eq!(post(dodge, &read).await.status, 402, "{dodge} is the write route");
    }
    assert_eq!(upstream_path(&post("/legacy/ADMIN/x", &full).await), "/legacy/ADMIN/x");
    n.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_route_with_methods_denies_the_methods_it_does_not_list() {
    let (net, node) = invoicing_node().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let p = proxy(&config(dir.path(), &up, ""), &node).await;
    for method in ["DELETE", "GET", "PATCH"] {
        let r = raw(p.addr(), &format!("{method} /files/upload/x HTTP/1.1\r\nHost: localhost"), b"").await;
        assert_eq!(r.status, 405, "{method}: {r:?}");
        assert_eq!(r.header("allow"), Some("PUT, POST"));
    }
    let r = raw(p.addr(), "PUT /files/upload/x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0", b"").await;
    assert_eq!(r.status, 402, "a listed method is charged");
    assert_eq!(http_get(p.addr(), "/files/other", &[]).await.status, 402, "no route: any token of the service");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_sent_l402_headers_never_reach_the_upstream() {
    let n = network().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let p = proxy(&config(dir.path(), &up, ""), &n.server).await;
    let forged = ["X-L402-Token-Id: deadbeef", "X-L402-Service: weather", "x-l402-tier: 9"];
    let l402_headers = |r: &Raw| -> Vec<(String, String)> {
        let seen = r.json();
        seen["headers"]
            .as_object()
            .expect("headers")
            .iter()
            .filter(|(k, _)| k.starts_with("x-l402-"))
            .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
            .collect()
    };
    for (what, path) in [("payment off", "/open/x"), ("free path", "/weather/docs/x"), ("freebie", "/maps/x")] {
        let r = http_get(p.addr(), path, &forged).await;
        assert_eq!(r.status, 200, "{what}");
        assert_eq!(l402_headers(&r), [], "{what}: no client-sent x-l402-* header reaches the upstream");
    }
    // A verified token: the proxy's own values, and only those.
    let challenge = http_get(p.addr(), "/weather/today", &[]).await;
    let auth = pay(&n.alice, challenge.all("www-authenticate")).await;
    let id = Credential::parse(auth.as_bytes()).expect("cred").macaroon.l402_identifier().expect("id").token_id;
    let mut headers = forged.to_vec();
    let auth_line = format!("Authorization: {auth}");
    headers.push(&auth_line);
    let mut seen = l402_headers(&http_get(p.addr(), "/weather/today", &headers).await);
    seen.sort();
    assert_eq!(
        seen,
        [("x-l402-service".to_owned(), "weather".to_owned()), ("x-l402-token-id".to_owned(), id.to_hex())]
    );
    n.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_l402_credential_never_reaches_the_upstream_in_any_form() {
    let n = network().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let p = proxy(&config(dir.path(), &up, ""), &n.server).await;
    let challenge = http_get(p.addr(), "/weather/today", &[]).await;
    let auth = pay(&n.alice, challenge.all("www-authenticate")).await;
    let bare = auth.split_once(' ').expect("scheme").1;
    let forms = [
        format!("Basic dXNlcjpwYXNz, {auth}"),
        format!("L402\t{bare}"),
        format!("Bearer abc,lsat {bare}"),
        format!("l402 {bare}"),
        format!(" \tLSAT\t {bare}"),
    ];
    for form in &forms {
        for path in ["/open/x", "/weather/today"] {
            let r =
                http_get(p.addr(), path, &[&format!("Authorization: {form}"), "Authorization: Bearer keep-me"]).await;
            assert_eq!(r.status, 200, "{path} with {form:?}: {r:?}");
            let seen = r.json();
            assert_eq!(seen["authorization"], serde_json::json!(["Bearer keep-me"]), "{path} with {form:?}");
            assert!(!r.body.contains(bare), "the credential reached the upstream");
        }
    }
    n.net.shutdown().await;
}

/// Writes `bytes` and then nothing; returns how long until the proxy closed the connection (`None`: still
/// open after `wait`).
async fn closed_after(addr: std::net::SocketAddr, bytes: &[u8], wait: Duration) -> Option<Duration> {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let started = Instant::now();
    s.write_all(bytes).await.expect("write");
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(wait.saturating_sub(started.elapsed()), s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => {} // a 408/400 before closing is fine too
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn half_a_request_head_is_cut_at_the_header_read_timeout() {
    let (net, node) = invoicing_node().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let p = proxy(&config(dir.path(), &up, "[listener]\nheader_read_timeout_secs = 1\nidle_timeout_secs = 30"), &node)
        .await;
    let wait = Duration::from_secs(6);
    for (what, bytes) in [
        ("half a head", b"GET /open/x HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1\r\n".as_slice()),
        ("two bytes", b"GE".as_slice()),
        ("nothing", b"".as_slice()),
        ("an HTTP/2 preface alone", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".as_slice()),
    ] {
        let t = closed_after(p.addr(), bytes, wait).await;
        let t = t.unwrap_or_else(|| panic!("{what}: still open after {wait:?}"));
        assert!(t >= Duration::from_millis(900) && t < Duration::from_secs(4), "{what}: closed after {t:?}");
    }
    // A keep-alive connection waiting for its next request is bounded the same way.
    let mut s = tokio::net::TcpStream::connect(p.addr()).await.expect("connect");
    s.write_all(b"GET /open/x HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.expect("read");
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&buf[..n]));
    let started = Instant::now();
    let end = tokio::time::timeout(wait, async {
        loop {
            if matches!(s.read(&mut buf).await, Ok(0) | Err(_)) {
                break;
            }
        }
    })
    .await;
    assert!(end.is_ok() && started.elapsed() < Duration::from_secs(4), "idle keep-alive closed");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    use http_body_util::Empty;
    let (net, node) = invoicing_node().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let listener =
        "[listener]\nheader_read_timeout_secs = 1\nidle_timeout_secs = 2\nhttp2_keep_alive_interval_secs = 1";
    let p = proxy(&config(dir.path(), &up, listener), &node).await;
    let stream = tokio::net::TcpStream::connect(p.addr()).await.expect("connect");
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let req =
        http::Request::get(format!("http://{}/open/x", p.addr())).body(Empty::<bytes::Bytes>::new()).expect("req");
    let resp = sender.send_request(req).await.expect("response");
    assert_eq!(resp.status(), 200);
    drop(resp);
    let started = Instant::now();
    // PINGs (every second here) keep flowing and are answered: they do not make the connection busy.
    let ended = tokio::time::timeout(Duration::from_secs(8), conn).await;
    let t = started.elapsed();
    assert!(ended.is_ok(), "an idle HTTP/2 connection stays open");
    assert!(t >= Duration::from_millis(1500) && t < Duration::from_secs(5), "closed after {t:?}");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connections_past_the_cap_wait_for_a_free_slot() {
    let (net, node) = invoicing_node().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let p =
        proxy(&config(dir.path(), &up, "[listener]\nmax_connections = 2\nheader_read_timeout_secs = 30"), &node).await;
    let held_a = tokio::net::TcpStream::connect(p.addr()).await.expect("connect");
    let _held_b = tokio::net::TcpStream::connect(p.addr()).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let third = tokio::spawn(http_get(p.addr(), "/open/x", &[]));
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(!third.is_finished(), "a third connection is not served while two are held");
    drop(held_a);
    let r =
        tokio::time::timeout(Duration::from_secs(5), third).await.expect("served once a slot is free").expect("join");
    assert_eq!(r.status, 200);
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn challenges_are_limited_per_client_prefix_and_globally() {
    let (net, node) = invoicing_node().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let limits = r#"trusted_proxies = ["127.0.0.1"]
[challenge_limit]
per_client_per_second = 0.01
per_client_burst = 3
global_per_second = 0.01
global_burst = 7"#;
    let p = proxy(&config(dir.path(), &up, limits), &node).await;
    let addr = p.addr();
    let challenge = |client: &'static str| async move {
        http_get(addr, "/weather/today", &[&format!("X-Forwarded-For: {client}")]).await
    };
    // The weather service's own rate limit counts tokens only: the challenge limit applies all the same.
    for _ in 0..3 {
        assert_eq!(challenge("198.51.100.1").await.status, 402);
    }
    let limited = challenge("198.51.100.1").await;
    assert_eq!(limited.status, 429, "{limited:?}");
    let retry: u64 = limited.header("retry-after").expect("Retry-After").parse().expect("seconds");
    assert!(retry >= 1);
    // One IPv6 /64 is one client.
    assert_eq!(challenge("2001:db8:0:1::1").await.status, 402);
    assert_eq!(challenge("2001:db8:0:1::2").await.status, 402);
    assert_eq!(challenge("2001:db8:0:1:ffff::9").await.status, 402);
    assert_eq!(challenge("2001:db8:0:1::3").await.status, 429, "the /64's burst is spent");
    // Seven challenges in all: the global burst is spent for everyone, even a new client.
    assert_eq!(challenge("198.51.100.2").await.status, 402);
    assert_eq!(challenge("198.51.100.3").await.status, 429, "the global limit");
    let issued = p.paywall().metrics().challenges_issued.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(issued, 7, "no invoice past the limits");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn freebies_never_open_a_route_that_needs_a_capability() {
    let (net, node) = invoicing_node().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let p = proxy(&config(dir.path(), &up, ""), &node).await;
    assert_eq!(http_get(p.addr(), "/maps/admin/x", &[]).await.status, 402, "freebies left, but the route needs admin");
    assert_eq!(http_get(p.addr(), "/maps/%61dmin/x", &[]).await.status, 402);
    assert_eq!(http_get(p.addr(), "/maps/x", &[]).await.status, 200);
    assert_eq!(http_get(p.addr(), "/maps/y", &[]).await.status, 200);
    assert_eq!(http_get(p.addr(), "/maps/z", &[]).await.status, 402, "two freebies, then payment");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn freebies_are_counted_per_client_prefix_and_forwarded_for_only_from_trusted_proxies() {
    let (net, node) = invoicing_node().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let trusted = proxy(&config(dir.path(), &up, r#"trusted_proxies = ["127.0.0.0/8"]"#), &node).await;
    let maps = |p: std::net::SocketAddr, client: &str| {
        let h = format!("X-Forwarded-For: 192.0.2.200, {client}");
        async move { http_get(p, "/maps/x", &[&h]).await.status }
    };
    let a = trusted.addr();
    assert_eq!(maps(a, "2001:db8:5:6::1").await, 200);
    assert_eq!(maps(a, "2001:db8:5:6::2").await, 200);
    assert_eq!(maps(a, "2001:db8:5:6:8000::3").await, 402, "one /64, one set of freebies");
    assert_eq!(maps(a, "2001:db8:5:7::1").await, 200, "another /64");
    assert_eq!(maps(a, "203.0.113.4").await, 200);
    assert_eq!(maps(a, "203.0.113.5").await, 200, "IPv4: per address");
    // Without trusted proxies, X-Forwarded-For is the client's own say: ignored.
    let dir2 = tempfile::tempdir().expect("tmp");
    let plain = proxy(&config(dir2.path(), &up, ""), &node).await;
    let b = plain.addr();
    assert_eq!(maps(b, "203.0.113.6").await, 200);
    assert_eq!(maps(b, "203.0.113.7").await, 200);
    assert_eq!(maps(b, "203.0.113.8").await, 402, "every request is 127.0.0.1's");
    // The upstream still sees the chain, the peer appended.
    let r = http_get(b, "/open/x", &["X-Forwarded-For: 203.0.113.9"]).await;
    assert_eq!(r.json()["headers"]["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_body_over_the_limit_is_refused_before_forwarding() {
    let (net, node) = invoicing_node().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let p = proxy(&config(dir.path(), &up, ""), &node).await;
    let addr = p.addr();
    let post = |extra: &'static str, body: Vec<u8>| async move {
        raw(addr, &format!("POST /open/upload HTTP/1.1\r\nHost: localhost\r\n{extra}"), &body).await
    };
    let r = post("Content-Length: 2000", vec![b'x'; 2000]).await;
    assert_eq!(r.status, 413, "{r:?}");
    assert_eq!(up.uploads(), 0, "nothing forwarded");
    // Chunked: cut at the limit.
    let mut chunked = Vec::new();
    for _ in 0..6 {
        chunked.extend_from_slice(b"1f4\r\n");
        chunked.extend_from_slice(&[b'y'; 500]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let r = post("Transfer-Encoding: chunked", chunked).await;
    assert_eq!(r.status, 413, "{r:?}");
    let received = up.upload_bytes.load(std::sync::atomic::Ordering::SeqCst);
    assert!(received <= 1000, "the upstream got {received} bytes");
    let r = post("Content-Length: 500", vec![b'z'; 500]).await;
    assert_eq!((r.status, r.body.as_str()), (200, "500"));
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_503_to_an_anonymous_client_carries_no_internal_error() {
    let (net, node) = invoicing_node().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let p = proxy(&config(dir.path(), &up, ""), &node).await;
    node.stop().await;
    let r = http_get(p.addr(), "/weather/today", &[]).await;
    assert_eq!(r.status, 503, "{r:?}");
    assert_eq!(r.json()["error"], "service temporarily unavailable");
    assert_eq!(r.json()["reason"], "lightning_unavailable");
    for inner in ["LDK", "not running", "lightning backend", "node unavailable"] {
        assert!(!r.body.contains(inner), "internal detail {inner:?} in {:?}", r.body);
    }
    net.shutdown().await;
}

/// The top of a config for the tests that only parse one (no file or node is touched).
const BASE: &str = r#"listen = "127.0.0.1:0"
store = { kind = "sqlite", path = "x.db" }
lightning = { backend = "ldk", data_dir = "unused", network = "regtest", bitcoind_rpc = "x", bitcoind_user = "x" }
"#;

#[test]
fn duplicate_service_names_are_refused() {
    let base = BASE;
    let svc = |name: &str, path: &str, price: u32| {
        format!(
            "[[service]]\nname = \"{name}\"\npath = \"{path}\"\nupstream = \"http://127.0.0.1:1\"\nprice_sat = {price}\n"
        )
    };
    let text = format!("{base}{}{}", svc("weather", "/cheap/*", 1), svc("weather", "/dear/*", 1000));
    let err = Config::parse(&text).expect_err("two services named weather");
    assert!(err.to_string().contains("service weather") && err.to_string().contains("already used"), "{err}");
    let ok = format!("{base}{}{}", svc("cheap", "/cheap/*", 1), svc("dear", "/dear/*", 1000));
    Config::parse(&ok).expect("distinct names");
}

#[test]
fn absurd_limits_are_configuration_errors_not_panics() {
    let base = BASE;
    let svc = "[[service]]\nname = \"a\"\npath = \"/*\"\nupstream = \"http://127.0.0.1:1\"\nprice_sat = 1\n";
    for (extra, key) in [
        ("[listener]\nmax_header_bytes = 100\n", "max_header_bytes"),
        ("[listener]\nheader_read_timeout_secs = 0\n", "header_read_timeout_secs"),
        ("[listener]\nidle_timeout_secs = 18446744073709551615\n", "idle_timeout_secs"),
        ("[listener]\nmax_connections = 0\n", "max_connections"),
        ("[challenge_limit]\nglobal_per_second = nan\n", "global_per_second"),
        ("[challenge_limit]\nper_client_per_second = inf\n", "per_client_per_second"),
        ("[challenge_limit]\nper_client_burst = 0\n", "burst"),
        ("trusted_proxies = [\"10.0.0.0/99\"]\n", "trusted_proxies"),
        ("max_tracked_clients = 0\n", "max_tracked_clients"),
        ("[shared_limits]\nsync_ms = 3600001\n", "shared_limits.sync_ms"),
        ("[shared_limits]\nretention_secs = 0\n", "shared_limits.retention_secs"),
    ] {
        let err = Config::parse(&format!("{base}{extra}{svc}")).expect_err(extra);
        assert!(err.to_string().contains(key), "{extra}: {err}");
    }
    let err = Config::parse(&format!("{base}{svc}rate_limit = {{ per = \"token\", per_second = -1.0, burst = 1 }}\n"))
        .expect_err("negative rate");
    assert!(err.to_string().contains("per_second"), "{err}");
    let err = Config::parse(&format!("{base}{svc}timeout_secs = 18446744073709551615\n")).expect_err("huge timeout");
    assert!(err.to_string().contains("timeout_secs"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_tls_handshake_is_cut_at_the_handshake_timeout() {
    let (net, node) = invoicing_node().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).expect("cert");
    let (cert_pem, key_pem) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_pem, cert.cert.pem()).expect("write");
    std::fs::write(&key_pem, cert.signing_key.serialize_pem()).expect("write");
    let extra = format!(
        "tls = {{ cert = \"{}\", key = \"{}\" }}\n[listener]\nhandshake_timeout_secs = 1\nheader_read_timeout_secs = 30",
        cert_pem.display(),
        key_pem.display()
    );
    let p = proxy(&config(dir.path(), &up, &extra), &node).await;
    let wait = Duration::from_secs(6);
    // Nothing at all, then the first bytes of a TLS record and nothing more.
    for (what, bytes) in
        [("nothing", b"".as_slice()), ("a partial ClientHello", b"\x16\x03\x01\x02\x00\x01".as_slice())]
    {
        let t =
            closed_after(p.addr(), bytes, wait).await.unwrap_or_else(|| panic!("{what}: still open after {wait:?}"));
        assert!(t >= Duration::from_millis(900) && t < Duration::from_secs(4), "{what}: closed after {t:?}");
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_head_over_max_header_bytes_is_refused_with_431() {
    let (net, node) = invoicing_node().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let p = proxy(&config(dir.path(), &up, "[listener]\nmax_header_bytes = 8192"), &node).await;
    let big = format!("X-Big: {}", "b".repeat(10_000));
    let r = http_get(p.addr(), "/open/x", &[&big]).await;
    assert_eq!(r.status, 431, "{:?}", r.status);
    let fits = format!("X-Big: {}", "b".repeat(6_000));
    assert_eq!(http_get(p.addr(), "/open/x", &[&fits]).await.status, 200);
    net.shutdown().await;
}

#[test]
fn a_pattern_no_canonical_path_can_match_is_a_configuration_error() {
    let base = format!("{BASE}[[service]]\nname = \"a\"\nupstream = \"http://127.0.0.1:1\"\nprice_sat = 1\n");
    for (keys, named) in [
        ("path = \"/api//*\"", "\"/api/*\""),
        ("path = \"/api/*\"\nfree_paths = [\"/api/%7Euser*\"]", "\"/api/~user*\""),
        ("path = \"/api/*\"\nfree_paths = [\"/api/docs/../x\"]", "\"/api/x\""),
        ("path = \"/api/*\"\nfree_paths = [\"/api/%2Fx\"]", "encoded '/'"),
    ] {
        let err = Config::parse(&format!("{base}{keys}\n")).expect_err(keys);
        assert!(err.to_string().contains("never matches") && err.to_string().contains(named), "{keys}: {err}");
    }
    Config::parse(&format!("{base}path = \"*\"\nfree_paths = [\"/api/docs*\", \"*.json\"]\n")).expect("fine");
}

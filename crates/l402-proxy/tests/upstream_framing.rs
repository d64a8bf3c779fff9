//! The proxy reads an `http://` upstream's HTTP/1.1 itself ([`l402_proxy`]'s pool): these pin how it frames
//! what a hostile or sloppy upstream sends, against an upstream written here byte by byte. An answer that can be
//! read two ways is a 502 and never reaches the client; a body that breaks off is cut, never completed with
//! whatever came next; a connection is only reused when its last answer ended exactly.
#![allow(missing_docs)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use support::{free_service, invoicing_node, proxy, raw};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// What the scripted upstream answers to `path`, and whether it closes the connection after.
fn answer(method: &str, path: &str, framing: &str, body: &[u8]) -> (Vec<u8>, bool) {
    let plain = |status: &str, extra: &str, body: &str| {
        format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\n{extra}\r\n{body}", body.len()).into_bytes()
    };
    let keep = |bytes: Vec<u8>| (bytes, false);
    let close = |bytes: &[u8]| (bytes.to_vec(), true);
    match path {
        "/ok" => keep(plain("200 OK", "", "ok")),
        "/echo" => keep(plain("200 OK", "", &format!("{method} {framing} {}", String::from_utf8_lossy(body)))),
        "/length-and-chunked" => close(
            concat!(
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n",
                "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
            )
            .as_bytes(),
        ),
        "/two-lengths" => close(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"),
        "/length-list" => close(b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\nhello!"),
        "/negative-length" => close(b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\nhello"),
        "/plus-length" => close(b"HTTP/1.1 200 OK\r\nContent-Length: +5\r\n\r\nhello"),
        "/switching" => close(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"),
        "/not-http" => close(b"HELLO THERE\r\n\r\n"),
        "/folded" => close(b"HTTP/1.1 200 OK\r\nX-A: one\r\n two\r\nContent-Length: 2\r\n\r\nok"),
        "/huge-head" => {
            let mut b = b"HTTP/1.1 200 OK\r\n".to_vec();
            for i in 0..1100 {
                b.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(60)).as_bytes());
            }
            b.extend_from_slice(b"Content-Length: 2\r\n\r\nok");
            close(&b)
        }
        "/same-lengths" => keep(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello".to_vec()),
        "/interim" => keep(
            concat!(
                "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal"
            )
            .as_bytes()
            .to_vec(),
        ),
        "/chunked" => keep(
            concat!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n"
            )
            .as_bytes()
            .to_vec(),
        ),
        "/no-content" => keep(b"HTTP/1.1 204 No Content\r\n\r\n".to_vec()),
        "/head" if method == "HEAD" => keep(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n".to_vec()),
        "/until-close" => close(b"HTTP/1.1 200 OK\r\n\r\nto the end"),
        "/leftover" => keep(
            concat!(
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
                "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nforged"
            )
            .into(),
        ),
        "/bad-chunk-size" => close(
            concat!("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "5\r\nhello\r\nzz\r\nworld\r\n0\r\n\r\n")
                .as_bytes(),
        ),
        "/chunk-overrun" => close(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloEXTRA\r\n0\r\n\r\n"),
        "/huge-chunk-size" => close(
            concat!(
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                "5\r\nhello\r\n10000000000000000\r\nx\r\n"
            )
            .as_bytes(),
        ),
        "/short-body" => close(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"),
        _ => keep(plain("404 Not Found", "", "no such script")),
    }
}

/// Reads one request (head, then its body by `Content-Length` or chunked) and returns method, path, the
/// framing it came with and the body; `None` when the connection ended.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, String, String, Vec<u8>)> {
    async fn fill(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<()> {
        let mut chunk = [0u8; 8192];
        match s.read(&mut chunk).await {
            Ok(n) if n > 0 => {
                buf.extend_from_slice(&chunk[..n]);
                Some(())
            }
            _ => None,
        }
    }
    let end = loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        fill(s, buf).await?;
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end + 4);
    let mut words = head.split(' ');
    let (method, path) = (words.next()?.to_owned(), words.next()?.to_owned());
    let header = |name: &str| {
        head.split("\r\n")
            .filter_map(|l| l.split_once(':'))
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_owned())
    };
    if let Some(len) = header("content-length") {
        let len: usize = len.parse().ok()?;
        while buf.len() < len {
            fill(s, buf).await?;
        }
        let body = buf.drain(..len).collect();
        return Some((method, path, format!("length={len}"), body));
    }
    if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        let mut body = Vec::new();
        loop {
            let line = loop {
                if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                    break i;
                }
                fill(s, buf).await?;
            };
            let size = usize::from_str_radix(&String::from_utf8_lossy(&buf[..line]), 16).ok()?;
            buf.drain(..line + 2);
            while buf.len() < size + 2 {
                fill(s, buf).await?;
            }
            body.extend(buf.drain(..size));
            buf.drain(..2);
            if size == 0 {
                return Some((method, path, "chunked".into(), body));
            }
        }
    }
    Some((method, path, "none".into(), Vec::new()))
}

/// The scripted upstream; counts connections.
async fn scripted_upstream() -> (String, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = l.local_addr().expect("addr");
    let conns = Arc::new(AtomicUsize::new(0));
    let counted = conns.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else { return };
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                while let Some((method, path, framing, body)) = read_request(&mut s, &mut buf).await {
                    let (bytes, close) = answer(&method, &path, &framing, &body);
                    if s.write_all(&bytes).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), conns)
}

/// One worker thread: its one pool shows which connections were reused.
fn config(dir: &std::path::Path, upstream: &str) -> String {
    free_service(dir, upstream, "[listener]\nworkers = 1\n")
}

/// One request on a connection of its own; all the client got until the proxy closed it.
async fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("write");
    let mut out = Vec::new();
    let read =
        tokio::time::timeout(Duration::from_secs(30), s.read_to_end(&mut out)).await.expect("the proxy ended it");
    // A reset after a cut body is an ending too.
    let _ = read;
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upstream_answer_that_can_be_read_two_ways_is_a_502_and_the_pool_stays_clean() {
    let (net, node) = invoicing_node().await;
    let dir = tempfile::tempdir().expect("dir");
    let (up, _) = scripted_upstream().await;
    let p = proxy(&config(dir.path(), &up), &node).await;
    for path in [
        "/length-and-chunked",
        "/two-lengths",
        "/length-list",
        "/negative-length",
        "/plus-length",
        "/switching",
        "/not-http",
        "/folded",
        "/huge-head",
    ] {
        let r = raw(p.addr(), &format!("GET {path} HTTP/1.1\r\nHost: localhost"), b"").await;
        assert_eq!(r.status, 502, "{path}: {r:?}");
        assert!(!r.body.contains("hello") && !r.body.contains("ok\""), "{path}: nothing of the answer passes: {r:?}");
        let after = raw(p.addr(), "GET /ok HTTP/1.1\r\nHost: localhost", b"").await;
        assert_eq!((after.status, after.body.as_str()), (200, "ok"), "after {path}");
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn chunked_interim_bodiless_and_close_delimited_answers_are_framed_as_http_1_1_says() {
    let (net, node) = invoicing_node().await;
    let dir = tempfile::tempdir().expect("dir");
    let (up, conns) = scripted_upstream().await;
    let p = proxy(&config(dir.path(), &up), &node).await;
    let addr = p.addr();
    let get =
        |path: &'static str| async move { raw(addr, &format!("GET {path} HTTP/1.1\r\nHost: localhost"), b"").await };
    let r = get("/same-lengths").await;
    assert_eq!((r.status, r.body.as_str()), (200, "hello"), "repeated equal lengths are one length");
    let r = get("/interim").await;
    assert_eq!((r.status, r.body.as_str()), (200, "final"), "interim 1xx answers are skipped");
    let r = get("/chunked").await;
    assert_eq!((r.status, r.body.as_str()), (200, "hello world"), "chunk extensions and trailers dropped");
    assert_eq!(r.header("x-trailer"), None, "a trailer is not turned into a header");
    let r = get("/no-content").await;
    assert_eq!((r.status, r.body.as_str()), (204, ""));
    let r = raw(p.addr(), "HEAD /head HTTP/1.1\r\nHost: localhost", b"").await;
    assert_eq!((r.status, r.body.as_str(), r.header("content-length")), (200, "", Some("10")), "HEAD: no body");
    // Everything so far ended exactly: one connection carried it all.
    let r = get("/ok").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    assert_eq!(conns.load(Ordering::SeqCst), 1, "bodiless and chunked answers leave the connection reusable");
    let r = get("/until-close").await;
    assert_eq!((r.status, r.body.as_str()), (200, "to the end"), "no length: the body ends with the connection");
    // Bytes after the answer's end are not a second answer: that connection is closed, never reused.
    let r = get("/leftover").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    let before = conns.load(Ordering::SeqCst);
    let r = get("/ok").await;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"), "not the forged answer the upstream left behind");
    assert_eq!(conns.load(Ordering::SeqCst), before + 1, "the connection with leftover bytes was not reused");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_body_that_breaks_off_or_overruns_its_chunk_is_cut_never_completed() {
    let (net, node) = invoicing_node().await;
    let dir = tempfile::tempdir().expect("dir");
    let (up, _) = scripted_upstream().await;
    let p = proxy(&config(dir.path(), &up), &node).await;
    for path in ["/bad-chunk-size", "/chunk-overrun", "/huge-chunk-size", "/short-body"] {
        let got = exchange(p.addr(), format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").as_bytes()).await;
        let text = String::from_utf8_lossy(&got);
        // The connection is cut at the fault: before the head went out, or in the body.
        assert!(text.is_empty() || text.starts_with("HTTP/1.1 200"), "{path}: {text:?}");
        assert!(!text.contains("world") && !text.contains("EXTRA"), "{path}: nothing past the fault: {text:?}");
        if text.contains("transfer-encoding: chunked") {
            assert!(!text.ends_with("0\r\n\r\n"), "{path}: the cut body is not ended as if whole: {text:?}");
        } else {
            let body = text.find("\r\n\r\n").map_or(0, |i| got.len() - (i + 4));
            assert!(body < 100, "{path}: the client gets less than the length it was told: {text:?}");
        }
        let after = raw(p.addr(), "GET /ok HTTP/1.1\r\nHost: localhost", b"").await;
        assert_eq!((after.status, after.body.as_str()), (200, "ok"), "after {path}");
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_bodies_reach_the_upstream_framed_by_the_proxy_whatever_the_client_sent() {
    let (net, node) = invoicing_node().await;
    let dir = tempfile::tempdir().expect("dir");
    let (up, _) = scripted_upstream().await;
    let p = proxy(&config(dir.path(), &up), &node).await;
    let r = raw(p.addr(), "POST /echo HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5", b"hello").await;
    assert_eq!((r.status, r.body.as_str()), (200, "POST length=5 hello"));
    let chunked = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    let r = raw(p.addr(), "POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked", chunked).await;
    assert_eq!((r.status, r.body.as_str()), (200, "POST chunked hello world"), "a streamed body goes chunked");
    let r = raw(p.addr(), "POST /echo HTTP/1.1\r\nHost: localhost", b"").await;
    assert_eq!((r.status, r.body.as_str()), (200, "POST length=0 "), "an empty POST says so");
    let r = raw(p.addr(), "GET /echo HTTP/1.1\r\nHost: localhost", b"").await;
    assert_eq!((r.status, r.body.as_str()), (200, "GET none "), "a GET without a body has no framing");
    net.shutdown().await;
}

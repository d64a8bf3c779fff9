//! The listener's own HTTP/1.1 (plain TCP), in raw bytes: the request-smuggling forms refused before anything
//! reaches the upstream, pipelined requests answered in order, `Expect: 100-continue`, HTTP/1.0 keep-alive,
//! and a request body the answer did not need: read and dropped when small, the connection closed when not.
#![allow(missing_docs)]

mod support;

use std::time::Duration;

use support::{invoicing_node, preamble, proxy, raw, upstream};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

fn config(dir: &std::path::Path, up: &str) -> String {
    format!(
        "{}\n[[service]]\nname = \"open\"\npath = \"/open/*\"\nupstream = \"{up}\"\npayment = false\n\n\
         [[service]]\nname = \"up\"\npath = \"/upload\"\nupstream = \"{up}\"\npayment = false\n",
        preamble(dir)
    )
}

/// One answer read off a kept-alive connection (its body by `Content-Length`): status, head, body.
async fn read_one(s: &mut TcpStream, buf: &mut Vec<u8>) -> (u16, String, String) {
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .map_or(0, |v| v.trim().parse().expect("a length"));
                if buf.len() >= end + 4 + len {
                    let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                    buf.drain(..end + 4 + len);
                    let status = head.split(' ').nth(1).and_then(|c| c.parse().ok()).expect("a status");
                    return (status, head, body);
                }
            }
            let mut chunk = [0u8; 8192];
            let n = s.read(&mut chunk).await.expect("read");
            assert!(n > 0, "closed before a whole answer: {:?}", String::from_utf8_lossy(buf));
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read).await.expect("an answer in time")
}

/// Whether the proxy closes `s` within a few seconds (reading and dropping what it still sends).
async fn closes(s: &mut TcpStream) -> bool {
    let mut sink = [0u8; 8192];
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if matches!(s.read(&mut sink).await, Ok(0) | Err(_)) {
                return;
            }
        }
    })
    .await
    .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn request_smuggling_heads_are_a_400_and_never_reach_the_upstream() {
    let (net, node) = invoicing_node().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("dir");
    let p = proxy(&config(dir.path(), &up.url), &node).await;
    let body = b"5\r\nhello\r\n0\r\n\r\n";
    for head in [
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\nTransfer-Encoding: chunked",
        "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 15",
        "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip",
        "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, identity",
        "POST /upload HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked",
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\nContent-Length: 5",
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 15, 5",
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: -15",
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length : 15",
        "POST /upload HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\nContent-Length: 15",
    ] {
        let r = raw(p.addr(), head, body).await;
        assert_eq!(r.status, 400, "{head:?}: {r:?}");
        assert_eq!(r.header("connection"), Some("close"), "{head:?}");
    }
    assert_eq!(up.uploads(), 0, "no smuggled request reached the upstream");
    // The well-framed forms of the same request pass.
    let r = raw(p.addr(), "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked", body).await;
    assert_eq!((r.status, r.body.as_str()), (200, "5"));
    let r = raw(p.addr(), "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5", b"hello").await;
    assert_eq!((r.status, r.body.as_str()), (200, "5"));
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let (net, node) = invoicing_node().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("dir");
    let p = proxy(&config(dir.path(), &up.url), &node).await;
    let mut s = TcpStream::connect(p.addr()).await.expect("connect");
    let mut all = Vec::new();
    for path in ["/open/a", "/open/b", "/nowhere", "/open/c"] {
        all.extend_from_slice(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes());
    }
    s.write_all(&all).await.expect("write");
    let mut buf = Vec::new();
    for (path, status) in [("/open/a", 200), ("/open/b", 200), ("/nowhere", 404), ("/open/c", 200)] {
        let (got, _, body) = read_one(&mut s, &mut buf).await;
        assert_eq!(got, status, "{path}: {body}");
        if status == 200 {
            assert!(body.contains(&format!("\"path\":\"{path}\"")), "{path}, in order: {body}");
        }
    }
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn expect_100_continue_http_1_0_keep_alive_and_unread_bodies() {
    let (net, node) = invoicing_node().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("dir");
    let p = proxy(&config(dir.path(), &up.url), &node).await;

    // 100 Continue comes before the client sends its body.
    let mut s = TcpStream::connect(p.addr()).await.expect("connect");
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        .await
        .expect("write");
    let mut interim = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut interim))
        .await
        .expect("100 in time")
        .expect("read");
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    s.write_all(b"hello").await.expect("body");
    let mut buf = Vec::new();
    let (status, _, body) = read_one(&mut s, &mut buf).await;
    assert_eq!((status, body.as_str()), (200, "5"));

    // HTTP/1.0: closed after the answer, unless asked to keep it.
    let mut s = TcpStream::connect(p.addr()).await.expect("connect");
    s.write_all(b"GET /open/x HTTP/1.0\r\n\r\n").await.expect("write");
    let mut buf = Vec::new();
    let (status, head, _) = read_one(&mut s, &mut buf).await;
    assert_eq!(status, 200);
    assert!(head.contains("connection: close"), "{head}");
    assert!(closes(&mut s).await, "an HTTP/1.0 connection ends with its answer");
    let mut s = TcpStream::connect(p.addr()).await.expect("connect");
    let mut buf = Vec::new();
    for i in 0..2 {
        s.write_all(b"GET /open/x HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").await.expect("write");
        let (status, head, _) = read_one(&mut s, &mut buf).await;
        assert_eq!(status, 200, "request {i}");
        assert!(head.contains("connection: keep-alive"), "request {i}: {head}");
    }

    // An answer that did not need the body (no service: 404): a small body is read and dropped, and the
    // connection serves the next request; a large one closes it.
    let mut s = TcpStream::connect(p.addr()).await.expect("connect");
    s.write_all(b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789").await.expect("write");
    let mut buf = Vec::new();
    assert_eq!(read_one(&mut s, &mut buf).await.0, 404);
    s.write_all(b"GET /open/next HTTP/1.1\r\nHost: x\r\n\r\n").await.expect("write");
    let (status, _, body) = read_one(&mut s, &mut buf).await;
    assert_eq!(status, 200, "the dropped body was not read as a request: {body}");
    assert!(body.contains("/open/next"), "{body}");
    let mut s = TcpStream::connect(p.addr()).await.expect("connect");
    s.write_all(b"POST /nowhere HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\nxxxx").await.expect("write");
    let mut buf = Vec::new();
    let (status, head, _) = read_one(&mut s, &mut buf).await;
    assert_eq!(status, 404);
    assert!(head.contains("connection: close"), "{head}");
    assert!(closes(&mut s).await, "a large unread body ends the connection");
    net.shutdown().await;
}

//! The proxy's own pool of HTTP/1.1 upstream connections, against an upstream written here byte by byte that
//! closes connections when a real one would: after an idle while, after `Connection: close`, and a client
//! that walks away in the middle of a body. Every request must still get its own, whole answer.
#![allow(missing_docs)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use support::{free_service, http_get, invoicing_node, proxy};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// How the raw upstream treats a connection after each answer.
#[derive(Clone, Copy)]
enum After {
    /// Keeps it open for this long without a request, then closes it (a keep-alive timeout).
    IdleClose(Duration),
    /// Answers with `Connection: close` and closes.
    Close,
}

/// A raw HTTP/1.1 upstream: `/big` is 4 MiB of `x`, anything else `path=<path>`. Counts connections.
async fn raw_upstream(after: After) -> (String, Arc<AtomicUsize>) {
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
                loop {
                    let wait = match after {
                        After::IdleClose(d) => d,
                        After::Close => Duration::from_secs(30),
                    };
                    // Read one request head (these requests have no body).
                    let head = loop {
                        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                            buf.drain(..end + 4);
                            break head;
                        }
                        let mut chunk = [0u8; 4096];
                        match tokio::time::timeout(wait, s.read(&mut chunk)).await {
                            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
                            _ => return, // idle past the keep-alive time, or the proxy closed it
                        }
                    };
                    let path = head.split(' ').nth(1).unwrap_or("").to_owned();
                    let close = matches!(after, After::Close);
                    let conn = if close { "Connection: close\r\n" } else { "" };
                    let body = if path == "/big" { vec![b'x'; 4 << 20] } else { format!("path={path}").into_bytes() };
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n{conn}\r\n", body.len());
                    if s.write_all(head.as_bytes()).await.is_err() || s.write_all(&body).await.is_err() {
                        return;
                    }
                    if close {
                        return;
                    }
                }
            });
        }
    });
    (format!("http://{addr}"), conns)
}

fn config(dir: &std::path::Path, upstream: &str) -> String {
    free_service(dir, upstream, "")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_connection_the_upstream_closed_while_idle_is_never_used_again() {
    let (net, node) = invoicing_node().await;
    let dir = tempfile::tempdir().expect("dir");
    let (up, conns) = raw_upstream(After::IdleClose(Duration::from_millis(200))).await;
    let p = proxy(&config(dir.path(), &up), &node).await;
    let first = http_get(p.addr(), "/one", &[]).await;
    assert_eq!((first.status, first.body.as_str()), (200, "path=/one"));
    // The upstream closes the pooled connection meanwhile; the next request must not be sent on it.
    tokio::time::sleep(Duration::from_millis(600)).await;
    for i in 0..4 {
        let r = http_get(p.addr(), &format!("/again{i}"), &[]).await;
        assert_eq!((r.status, r.body), (200, format!("path=/again{i}")), "request {i} after the upstream closed");
    }
    assert!(conns.load(Ordering::SeqCst) >= 2, "a new upstream connection after the idle close");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upstream_connection_close_is_honoured_and_the_next_request_gets_a_new_one() {
    let (net, node) = invoicing_node().await;
    let dir = tempfile::tempdir().expect("dir");
    let (up, conns) = raw_upstream(After::Close).await;
    let p = proxy(&config(dir.path(), &up), &node).await;
    for i in 0..5 {
        let r = http_get(p.addr(), &format!("/n{i}"), &[]).await;
        assert_eq!((r.status, r.body), (200, format!("path=/n{i}")), "request {i}");
    }
    assert_eq!(conns.load(Ordering::SeqCst), 5, "one upstream connection per answer that said close");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_body_the_client_walked_away_from_never_leaks_into_the_next_answer() {
    let (net, node) = invoicing_node().await;
    let dir = tempfile::tempdir().expect("dir");
    let (up, conns) = raw_upstream(After::IdleClose(Duration::from_secs(30))).await;
    let p = proxy(&config(dir.path(), &up), &node).await;
    // A keep-alive pool that stays warm: one small exchange first.
    let warm = http_get(p.addr(), "/warm", &[]).await;
    assert_eq!((warm.status, warm.body.as_str()), (200, "path=/warm"));
    for round in 0..3 {
        // Ask for 4 MiB, read a little, and hang up: the upstream connection still has most of it unread.
        let mut s = tokio::net::TcpStream::connect(p.addr()).await.expect("connect");
        s.write_all(b"GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n").await.expect("write");
        let mut some = [0u8; 1024];
        let n = s.read(&mut some).await.expect("read");
        assert!(String::from_utf8_lossy(&some[..n]).starts_with("HTTP/1.1 200"), "the big answer started");
        drop(s);
        tokio::time::sleep(Duration::from_millis(100)).await;
        for i in 0..3 {
            let r = http_get(p.addr(), &format!("/after{round}-{i}"), &[]).await;
            assert_eq!(
                (r.status, r.body),
                (200, format!("path=/after{round}-{i}")),
                "round {round}: an answer of its own, not the rest of the big one"
            );
        }
    }
    assert!(conns.load(Ordering::SeqCst) >= 2, "the half-read connection was closed, not pooled");
    net.shutdown().await;
}

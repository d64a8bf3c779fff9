//! The client against servers that try to abuse it, on loopback: redirects that would carry a credential to
//! another origin, APIs whose own 401/402 must not burn a paid token, gateways answering 503 to a POST, bodies
//! too large or never finished, plain http, and addresses an agent's tool must not reach. Payments, where
//! there are any, are real regtest Lightning payments.
#![allow(missing_docs)]

mod support;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use l402_client::{Client, Destinations, Error};
use reqwest::Method;
use support::{FakeLightning, Mode, RawServer, Server, http_response, loopback_config, network, node_payments};

async fn get(c: &Client, url: &str) -> Result<l402_client::L402Response, Error> {
    c.execute(c.request(Method::GET, url).build().expect("request")).await
}

fn tokens(c: &Client) -> Vec<l402_client::StoredToken> {
    c.store().blocking(|conn| l402_client::tokens::list(conn, None)).expect("tokens")
}

/// A client that never pays (for the tests with no payment in them).
fn unpaid_client(dir: &std::path::Path, tweak: impl FnOnce(&mut l402_client::ClientConfig)) -> Client {
    let mut cfg = loopback_config(dir);
    cfg.retry.base_delay = Duration::from_millis(20);
    tweak(&mut cfg);
    Client::new(Arc::new(FakeLightning::default()), cfg).expect("client")
}

/// An attacker's page redirects to a paid API. The client pays the API (that is what the caller asked for,
/// within its caps), but the credential goes to the API only: the attacker never sees it, and the token is
/// stored for the API's origin, not the attacker's.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_redirect_never_carries_a_credential_to_another_origin() {
    let (net, server_node, payers) = network(&["alice"]).await;
    let alice = payers[0].clone();
    let api = Server::start(server_node.clone()).await;
    let target = api.url("/svc/data");
    let attacker =
        RawServer::start("127.0.0.1", move |_| http_response("302 Found", &format!("Location: {target}\r\n"), b""))
            .await;
    let dir = tempfile::tempdir().expect("tmp");
    let c = Client::new(alice.clone(), loopback_config(dir.path())).expect("client");

    let r = get(&c, &attacker.url("/steal")).await;
    let credential_seen = |seen: &[support::RawRequest]| seen.iter().find_map(|req| req.header("authorization"));
    assert_eq!(credential_seen(&attacker.requests()), None, "the attacker was sent the credential");
    let r = r.expect("followed and paid");
    assert_eq!(r.response.status(), 200);
    assert!(r.payment.is_some(), "the API's price was paid");
    assert!(r.response.text().await.expect("body").starts_with("paid GET /svc/data"));
    let stored = tokens(&c);
    assert_eq!(stored.len(), 1);
    let api_origin = l402_client::origin_of(&reqwest::Url::parse(&api.url("/")).expect("url")).expect("origin");
    assert_eq!(stored[0].origin, api_origin, "the token belongs to the origin that sold it");

    // Again: the token is reused at the API, and still never shown to the attacker.
    let r = get(&c, &attacker.url("/steal")).await.expect("reused");
    assert_eq!(r.response.status(), 200);
    assert!(r.payment.is_none());
    let seen = attacker.requests();
    assert_eq!(seen.len(), 2, "one request per fetch reached the attacker: {seen:?}");
    assert_eq!(credential_seen(&seen), None, "the attacker was sent the credential");
    assert_eq!(node_payments(&alice).len(), 1, "one payment");
    net.shutdown().await;
}

#[tokio::test]
async fn redirects_are_bounded_see_other_becomes_get_and_leaving_the_origin_drops_authorization() {
    let other = RawServer::start("127.0.0.1", |_| http_response("200 OK", "", b"other origin")).await;
    let to = other.url("/landed");
    let first = RawServer::start("127.0.0.1", move |req| match req.target() {
        "/see-other" => http_response("303 See Other", &format!("Location: {to}\r\n"), b""),
        "/temporary" => http_response("307 Temporary Redirect", &format!("Location: {to}\r\n"), b""),
        "/same" => http_response("302 Found", "Location: /final\r\n", b""),
        "/final" => http_response("200 OK", "", b"same origin"),
        "/loop" => http_response("302 Found", "Location: /loop\r\n", b""),
        "/ftp" => http_response("301 Moved Permanently", "Location: ftp://example.com/x\r\n", b""),
        _ => http_response("404 Not Found", "", b""),
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let c = unpaid_client(dir.path(), |cfg| cfg.max_redirects = 3);
    let send = |m: Method, path: &str, body: &'static str| {
        let req = c
            .request(m, &first.url(path))
            .header("authorization", "Bearer the-callers-secret")
            .header("cookie", "session=the-callers-cookie")
            .body(body)
            .build()
            .expect("request");
        c.execute(req)
    };

    // 303 after a POST: a GET, without the body, and without the caller's credentials at the other origin.
    let r = send(Method::POST, "/see-other", "the body").await.expect("followed");
    assert_eq!(r.response.text().await.expect("body"), "other origin");
    let landed = other.requests();
    assert_eq!(landed.len(), 1);
    assert_eq!(landed[0].method(), "GET");
    assert!(landed[0].body.is_empty());
    assert_eq!(landed[0].header("authorization"), None, "{}", landed[0].head);
    assert_eq!(landed[0].header("cookie"), None, "{}", landed[0].head);

    // 307: the method and body again, still without the credentials.
    send(Method::PUT, "/temporary", "sent twice").await.expect("followed");
    let landed = other.requests();
    assert_eq!((landed[1].method(), landed[1].body.as_slice()), ("PUT", b"sent twice".as_slice()));
    assert_eq!(landed[1].header("authorization"), None);

    // Within the origin, the caller's headers stay.
    let r = send(Method::GET, "/same", "").await.expect("followed");
    assert_eq!(r.response.text().await.expect("body"), "same origin");
    let last = first.requests().pop().expect("request");
    assert_eq!(last.target(), "/final");
    assert_eq!(last.header("authorization").as_deref(), Some("Bearer the-callers-secret"));

    // A loop stops after max_redirects, with its own error; a non-http Location is not followed.
    let before = first.requests().len();
    let e = send(Method::GET, "/loop", "").await.expect_err("a loop");
    assert!(matches!(e, Error::Redirect(_)), "{e}");
    assert_eq!(e.reason(), "redirect");
    assert_eq!(first.requests().len() - before, 4, "the first request and three redirects");
    let e = send(Method::GET, "/ftp", "").await.expect_err("not http");
    assert!(matches!(e, Error::Redirect(_)), "{e}");

    // max_redirects = 0: the 3xx is the answer.
    let c0 = unpaid_client(&dir.path().join("0"), |cfg| cfg.max_redirects = 0);
    let r = get(&c0, &first.url("/same")).await.expect("answer");
    assert_eq!(r.response.status(), 302);
}

/// The API behind the paywall has its own `401` and `402`: they reach the caller, and the token that was paid
/// for keeps working. Only the paywall's own refusal (`L402 error=`, or a fresh challenge for the same service)
/// marks a token refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_upstream_401_or_a_bare_402_is_returned_and_the_paid_token_stays_valid() {
    let (net, server_node, payers) = network(&["alice"]).await;
    let alice = payers[0].clone();
    let server = Server::start(server_node.clone()).await;
    let dir = tempfile::tempdir().expect("tmp");
    let c = Client::new(alice.clone(), loopback_config(dir.path().join("c"))).expect("client");

    let paid = get(&c, &server.url("/svc/data")).await.expect("paid");
    let token = paid.payment.expect("a payment").token_id.expect("a token");
    for (path, status) in [("/svc/upstream401", 401), ("/svc/upstream402", 402)] {
        let r = get(&c, &server.url(path)).await.expect("the API's answer is returned");
        assert_eq!(r.response.status(), status, "{path}");
        assert_eq!(r.token_id, Some(token), "{path}: sent with the token");
        assert_eq!(tokens(&c)[0].state, "valid", "{path}: the token is not refused");
    }
    let r = get(&c, &server.url("/svc/data")).await.expect("still served");
    assert_eq!(r.response.status(), 200);
    assert!(r.payment.is_none(), "no second payment");
    assert_eq!(node_payments(&alice).len(), 1);

    // The paywall's refusal with `error=`: refused, kept, not paid again.
    server.set_mode(Mode::RefuseWithError);
    let d = Client::new(alice.clone(), loopback_config(dir.path().join("d"))).expect("client");
    let e = get(&d, &server.url("/svc/data")).await.expect_err("refused");
    assert!(matches!(e, Error::PaidButRefused { status: 401, .. }), "{e}");
    assert_eq!(tokens(&d)[0].state, "refused");
    server.set_mode(Mode::Normal);

    // A fresh challenge for the token's own service (the paywall no longer knows it): refused.
    server.forget_keys();
    let e = get(&c, &server.url("/svc/data")).await.expect_err("refused");
    assert!(matches!(e, Error::PaidButRefused { status: 402, .. }), "{e}");
    assert_eq!(tokens(&c)[0].state, "refused");
    assert_eq!(node_payments(&alice).len(), 2, "one payment per client, none after a refusal");
    net.shutdown().await;
}

#[tokio::test]
async fn a_post_is_never_sent_twice_on_502_503_504_and_a_get_is_retried() {
    for status in ["502 Bad Gateway", "503 Service Unavailable", "504 Gateway Timeout", "429 Too Many Requests"] {
        let gateway = RawServer::start("127.0.0.1", move |_| http_response(status, "", b"")).await;
        let dir = tempfile::tempdir().expect("tmp");
        let c = unpaid_client(dir.path(), |_| {});
        for m in [Method::POST, Method::PATCH] {
            let before = gateway.requests().len();
            let req = c.request(m.clone(), &gateway.url("/order")).body("buy one").build().expect("request");
            let r = c.execute(req).await.expect("the gateway's answer");
            assert_eq!(r.response.status().as_u16().to_string(), status[..3], "{m} {status}");
            assert_eq!(gateway.requests().len() - before, 1, "{m} was sent once on {status}");
        }
        let before = gateway.requests().len();
        get(&c, &gateway.url("/order")).await.expect("answer");
        assert_eq!(gateway.requests().len() - before, 4, "GET: the first try and three retries on {status}");
    }

    // A connection refused means nothing was sent: a POST is tried again, and reaches the server once it is up.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tmp");
    let c = unpaid_client(dir.path(), |cfg| cfg.retry.base_delay = Duration::from_millis(400));
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(10)).await;
        let l = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("rebind");
        let (mut s, _) = l.accept().await.expect("accept");
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let mut buf = vec![0u8; 4096];
        let n = s.read(&mut buf).await.expect("read");
        s.write_all(&http_response("200 OK", "", b"done")).await.expect("write");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    let req = c.request(Method::POST, &format!("http://127.0.0.1:{port}/order")).body("x").build().expect("req");
    let r = c.execute(req).await.expect("retried after the connection error");
    assert_eq!(r.response.status(), 200);
    assert!(late.await.expect("server").starts_with("POST /order"));
}

/// Paying over plain http is refused before anything is paid (and a dry run says it would be), unless the
/// configuration asks for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn paying_over_plain_http_is_refused_before_any_payment_unless_allowed() {
    let (net, server_node, payers) = network(&["alice"]).await;
    let alice = payers[0].clone();
    let server = Server::start(server_node.clone()).await;
    let dir = tempfile::tempdir().expect("tmp");
    let url = server.url("/svc/data");

    let strict = Client::new(alice.clone(), l402_client::ClientConfig::new(dir.path().join("strict"))).expect("client");
    let e = get(&strict, &url).await.expect_err("refused");
    assert!(matches!(e, Error::PlainHttp { .. }), "{e}");
    assert_eq!(e.reason(), "plain_http");
    let quote = strict.quote(strict.request(Method::GET, &url).build().expect("req")).await.expect("quote");
    let l402_client::Quote::Payment(q) = quote else { panic!("a payment quote expected") };
    assert!(matches!(q.refusal, Some(Error::PlainHttp { .. })), "the dry run says it would not pay");
    assert!(strict.ledger(None).await.expect("ledger").is_empty(), "nothing journaled");
    assert_eq!(support::node_payment_count(&alice), 0, "no payment attempted");
    let free = get(&strict, &server.url("/free")).await.expect("a free page over http is fetched");
    assert_eq!(free.response.status(), 200);

    let allowed = Client::new(alice.clone(), loopback_config(dir.path().join("allowed"))).expect("client");
    let r = get(&allowed, &url).await.expect("paid when allowed");
    assert_eq!(r.response.status(), 200);
    assert_eq!(node_payments(&alice).len(), 1);
    net.shutdown().await;
}

#[tokio::test]
async fn public_only_refuses_loopback_literals_names_and_redirect_targets_before_connecting() {
    let inner = RawServer::start("127.0.0.2", |_| http_response("200 OK", "", b"internal")).await;
    let dir = tempfile::tempdir().expect("tmp");
    let strict = unpaid_client(dir.path(), |cfg| cfg.destinations = Destinations::PublicOnly { except: vec![] });
    let port = inner.addr.port();
    for url in [
        format!("http://127.0.0.2:{port}/"),
        format!("http://localhost:{port}/"),
        format!("http://[::ffff:127.0.0.2]:{port}/"),
        format!("http://2130706434:{port}/"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/".to_owned(),
        "http://[fd00::1]/".to_owned(),
        "http://100.64.0.1/".to_owned(),
        "http://0.0.0.0/".to_owned(),
    ] {
        let e = get(&strict, &url).await.expect_err("refused");
        assert!(matches!(e, Error::AddressRefused(_)), "{url}: {e}");
        assert_eq!(e.reason(), "address_refused");
    }
    assert_eq!(inner.connections.load(Ordering::SeqCst), 0, "nothing connected to the internal server");

    // A page the policy lets through (here, by an explicit exception) cannot redirect to one it refuses.
    let to = inner.url("/secret");
    let front =
        RawServer::start("127.0.0.1", move |_| http_response("302 Found", &format!("Location: {to}\r\n"), b"")).await;
    let except = vec!["127.0.0.1".parse().expect("ip")];
    let c = unpaid_client(&dir.path().join("x"), |cfg| cfg.destinations = Destinations::PublicOnly { except });
    let e = get(&c, &front.url("/")).await.expect_err("redirect refused");
    assert!(matches!(&e, Error::AddressRefused(r) if r.class == "loopback"), "{e}");
    assert_eq!(front.requests().len(), 1, "the allowed page was reached");
    assert_eq!(inner.connections.load(Ordering::SeqCst), 0, "its redirect target was not");
}

#[tokio::test]
async fn a_body_over_the_cap_or_a_silent_server_is_a_typed_error_not_a_wait() {
    let server = RawServer::start("127.0.0.1", |req| match req.target() {
        "/declared" => b"HTTP/1.1 200 OK\r\nContent-Length: 100000000\r\nConnection: close\r\n\r\n".to_vec(),
        "/chunked" => {
            let mut out = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
            for _ in 0..4 {
                out.extend_from_slice(b"400\r\n");
                out.extend_from_slice(&[b'y'; 0x400]);
                out.extend_from_slice(b"\r\n");
            }
            out.extend_from_slice(b"0\r\n\r\n");
            out
        }
        // The head and a little of the body, then nothing, the connection held open.
        "/stall" => b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nthe start".to_vec(),
        // Not even a head.
        _ => Vec::new(),
    })
    .await;
    let dir = tempfile::tempdir().expect("tmp");
    let c = unpaid_client(dir.path(), |cfg| cfg.read_timeout = Duration::from_secs(1));

    let mut r = get(&c, &server.url("/declared")).await.expect("head").response;
    let e = l402_client::body::read_capped(&mut r, 1_000).await.expect_err("too large");
    assert!(matches!(e, Error::BodyTooLarge { limit: 1_000 }), "{e}");
    let mut r = get(&c, &server.url("/chunked")).await.expect("head").response;
    let e = l402_client::body::read_capped(&mut r, 4_000).await.expect_err("too large");
    assert_eq!(e.reason(), "body_too_large");
    let mut r = get(&c, &server.url("/chunked")).await.expect("head").response;
    let (prefix, complete) = l402_client::body::read_prefix(&mut r, 1_500).await.expect("prefix");
    assert_eq!((prefix.len(), complete), (1_500, false));
    let mut r = get(&c, &server.url("/chunked")).await.expect("head").response;
    assert_eq!(l402_client::body::read_capped(&mut r, 4_096).await.expect("exactly the cap").len(), 4_096);

    let started = Instant::now();
    let mut r = get(&c, &server.url("/stall")).await.expect("head").response;
    let e = l402_client::body::read_capped(&mut r, 1 << 20).await.expect_err("silent");
    assert!(matches!(e, Error::ReadTimeout(_)), "{e}");
    let e = get(&c, &server.url("/silent")).await.expect_err("no head");
    assert!(matches!(e, Error::ReadTimeout(_)), "{e}");
    assert!(started.elapsed() < Duration::from_secs(15), "given up on after the read timeout");
}

#[tokio::test]
async fn a_timeout_too_large_for_the_clock_is_refused_when_the_client_is_built() {
    let dir = tempfile::tempdir().expect("tmp");
    for set in [
        |c: &mut l402_client::ClientConfig| c.payment_timeout = Duration::MAX,
        |c: &mut l402_client::ClientConfig| c.recovery_timeout = Duration::from_secs(u64::MAX),
        |c: &mut l402_client::ClientConfig| c.lease_timeout = Duration::MAX,
        |c: &mut l402_client::ClientConfig| c.read_timeout = Duration::ZERO,
    ] {
        let mut cfg = loopback_config(dir.path());
        set(&mut cfg);
        let e = Client::new(Arc::new(FakeLightning::default()), cfg).expect_err("refused");
        assert!(matches!(e, Error::Request(_)), "{e}");
    }
    // At the bound it is accepted, and paying with it works (the wallet's deadline does not overflow).
    let fake = Arc::new(FakeLightning::default());
    let server = Server::start(fake.clone()).await;
    let mut cfg = loopback_config(dir.path());
    cfg.payment_timeout = l402_client::config::MAX_TIMEOUT;
    let c = Client::new(fake, cfg).expect("client");
    assert_eq!(get(&c, &server.url("/svc/x")).await.expect("paid").response.status(), 200);
}

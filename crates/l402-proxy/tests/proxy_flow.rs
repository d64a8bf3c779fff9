//! `l402 proxy` end to end: real upstreams on loopback (HTTP and gRPC), real invoices paid over a real regtest
//! Lightning channel, a real PostgreSQL for the shared-store test.
#![allow(missing_docs)]

mod support;

use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use l402_ldk::LdkNode;
use l402_proto::{Credential, Msat};
use l402_proxy::{Config, Proxy};
use l402_regtest::Postgres;
use l402_server::store::TokenQuery;
use support::{network, proxy, upstream};

const ADMIN: &str = "admin-secret-0123456789";

/// Pays a 402's challenge from alice and returns the Authorization value.
async fn pay(alice: &LdkNode, headers: &reqwest::header::HeaderMap) -> String {
    support::pay(alice, headers.get_all("www-authenticate").iter().map(|v| v.as_bytes())).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn http_through_the_proxy() {
    let n = network().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let key_file = dir.path().join("key");
    std::fs::write(&key_file, "from-a-file\n").expect("write");
    let admin_file = dir.path().join("admin");
    std::fs::write(&admin_file, ADMIN).expect("write");
    let config = format!(
        r#"
listen = "127.0.0.1:0"
admin = {{ listen = "127.0.0.1:0", token_file = "{admin_file}" }}
store = {{ kind = "sqlite", path = "{db}" }}
lightning = {{ backend = "ldk", data_dir = "unused", network = "regtest", bitcoind_rpc = "x", bitcoind_user = "x" }}

[[service]]
name = "weather"
path = "/weather/*"
upstream = "{up}"
price_sat = 100
lifetime_secs = 3
capabilities = ["read"]
free_paths = ["/weather/health"]
headers = {{ "x-path" = {{ env = "PATH" }}, "x-file-key" = {{ file = "{key}" }}, "x-static" = {{ value = "v" }} }}
rate_limit = {{ per = "token", per_second = 1, burst = 5 }}

[[service]]
name = "maps"
path = "/maps*"
upstream = "{up}"
price_sat = 200
freebies = 2

[[service]]
name = "files"
path = "/upload"
upstream = "{up}"
payment = false

[[service]]
name = "stream"
path = "/events"
upstream = "{up}"
payment = false

[[service]]
name = "slow"
path = "/slow"
upstream = "{up}"
payment = false
timeout_secs = 1

[[service]]
name = "down"
path = "/down/*"
upstream = "http://127.0.0.1:1"
payment = false
"#,
        db = dir.path().join("l402.db").display(),
        key = key_file.display(),
        admin_file = admin_file.display(),
    );
    let p = proxy(&config, &n.server).await;
    let base = format!("http://{}", p.addr());
    let admin = format!("http://{}", p.admin_addr().expect("admin"));
    let http = reqwest::Client::new();
    let get = |path: &str, auth: Option<&str>| {
        let mut r = http.get(format!("{base}{path}")).header("x-forwarded-for", "203.0.113.9");
        r = r.header("connection", "keep-alive, x-hop").header("x-hop", "secret-hop").header("keep-alive", "timeout=5");
        if let Some(a) = auth {
            r = r.header("authorization", a);
        }
        r.send()
    };

    // 402, pay over Lightning, 200 with the upstream's body.
    let first = get("/weather/today", None).await.expect("req");
    assert_eq!(first.status(), 402);
    assert_eq!(first.headers().get_all("www-authenticate").iter().count(), 2);
    let auth = pay(&n.alice, first.headers()).await;
    let ok = get("/weather/today", Some(&auth)).await.expect("req");
    assert_eq!(ok.status(), 200);
    let seen: serde_json::Value = ok.json().await.expect("json");
    let h = &seen["headers"];
    assert_eq!(seen["path"], "/weather/today");
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1", "X-Forwarded-For appended");
    assert!(h.get("x-hop").is_none() && h.get("keep-alive").is_none(), "hop-by-hop headers stripped: {h}");
    assert!(h.get("authorization").is_none(), "the credential is not forwarded");
    assert_eq!(h["x-l402-service"], "weather");
    assert_eq!(h["x-l402-token-id"].as_str().map(str::len), Some(64));
    assert_eq!(h["x-path"].as_str(), std::env::var("PATH").ok().as_deref(), "a header from the environment");
    assert_eq!(h["x-static"], "v");
    assert_eq!(h["x-file-key"], "from-a-file");

    // Reused; then rate-limited per token (burst 5, 1/s).
    let mut limited = None;
    for _ in 0..8 {
        let r = get("/weather/today", Some(&auth)).await.expect("req");
        if r.status() == 429 {
            limited = Some(r);
            break;
        }
        assert_eq!(r.status(), 200);
    }
    let limited = limited.expect("rate limit reached");
    assert!(limited.headers().get("retry-after").is_some());

    // Free path and freebies.
    assert_eq!(get("/weather/health", None).await.expect("req").status(), 200);
    assert_eq!(get("/maps", None).await.expect("req").status(), 200);
    assert_eq!(get("/maps", None).await.expect("req").status(), 200);
    let third = get("/maps", None).await.expect("req");
    assert_eq!(third.status(), 402, "after two freebies, payment");

    // A token for weather is refused on maps (a challenge for maps).
    assert_eq!(get("/maps", Some(&auth)).await.expect("req").status(), 402);

    // The lifetime (3 s) ends: a fresh 402.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let expired = get("/weather/today", Some(&auth)).await.expect("req");
    assert_eq!(expired.status(), 402);
    let auth2 = pay(&n.alice, expired.headers()).await;
    assert_eq!(get("/weather/today", Some(&auth2)).await.expect("req").status(), 200);

    // Admin: needs its credential; lists, revokes; the revoked token is refused.
    assert_eq!(http.get(format!("{admin}/admin/tokens")).send().await.expect("req").status(), 401);
    let admin_get = |path: &'static str| {
        let req = http.get(format!("{admin}{path}")).bearer_auth(ADMIN);
        async move { req.send().await.expect("req").json::<serde_json::Value>().await.expect("json") }
    };
    let tokens = admin_get("/admin/tokens").await;
    let newest = tokens
        .as_array()
        .expect("list")
        .iter()
        .find(|t| t["service"] == "weather" && t["paid_at"].is_number())
        .expect("paid token");
    let listed_ids: Vec<&str> =
        tokens.as_array().expect("list").iter().filter_map(|t| t["token_id"].as_str()).collect();
    let cred2 = Credential::parse(auth2.as_bytes()).expect("cred");
    let id2 = cred2.macaroon.l402_identifier().expect("id").token_id.to_hex();
    assert!(listed_ids.contains(&id2.as_str()) && newest["price_msat"] == 100_000);
    // One token per page, following the Link headers: the same tokens, in the same order.
    let mut paged = Vec::new();
    let mut next = Some("/admin/tokens?limit=1".to_owned());
    while let Some(path) = next.take() {
        let r = http.get(format!("{admin}{path}")).bearer_auth(ADMIN).send().await.expect("req");
        assert_eq!(r.status(), 200);
        next = r.headers().get("link").map(|l| {
            let l = l.to_str().expect("ascii");
            l.strip_prefix('<').and_then(|l| l.split_once(">; rel=\"next\"")).expect("a next link").0.to_owned()
        });
        let page: serde_json::Value = r.json().await.expect("json");
        paged.extend(page.as_array().expect("page").iter().filter_map(|t| t["token_id"].as_str().map(str::to_owned)));
        assert!(paged.len() <= listed_ids.len() + 1, "paging ends");
    }
    assert_eq!(paged, listed_ids);
    let r = http.get(format!("{admin}/admin/tokens?after=nonsense")).bearer_auth(ADMIN).send().await.expect("req");
    assert_eq!(r.status(), 400, "a bad cursor is the caller's error");
    let r = http.post(format!("{admin}/admin/tokens/{id2}/revoke")).bearer_auth(ADMIN).send().await.expect("req");
    assert_eq!(r.status(), 200);
    let refused = get("/weather/today", Some(&auth2)).await.expect("req");
    assert_eq!(refused.status(), 401);
    let revenue = admin_get("/admin/revenue").await;
    assert_eq!(revenue[0]["service"], "weather");
    assert_eq!(revenue[0]["tokens_paid"], 2);
    assert_eq!(revenue[0]["amount_msat"], 200_000);
    let metrics = http.get(format!("{admin}/metrics")).send().await.expect("req").text().await.expect("text");
    assert!(metrics.contains("l402_tokens_verified_total"), "{metrics}");
    assert!(metrics.contains("l402_refusals_total{service=\"weather\",reason=\"revoked\"} 1"), "{metrics}");
    assert!(metrics.contains("l402_proxy_upstream_latency_seconds_count"), "{metrics}");
    assert!(!metrics.contains(&auth2[5..40]), "no credential in metrics");

    // Streaming: a 8 MiB upload passes through; server-sent events arrive as they are sent.
    let big = vec![7u8; 8 << 20];
    let up_n = http.post(format!("{base}/upload")).body(big).send().await.expect("req").text().await.expect("text");
    assert_eq!(up_n, (8 << 20).to_string());
    let started = Instant::now();
    let mut events = http.get(format!("{base}/events")).send().await.expect("req").bytes_stream();
    let first = events.next().await.expect("first chunk").expect("bytes");
    assert!(String::from_utf8_lossy(&first).contains("event 0"));
    assert!(started.elapsed() < Duration::from_millis(1200), "the first event is not held back until the end");
    let mut rest = Vec::new();
    while let Some(c) = events.next().await {
        rest.extend_from_slice(&c.expect("bytes"));
    }
    assert!(String::from_utf8_lossy(&rest).contains("event 2"));

    // Upstream failures: 504 when slow, 502 when down; no route: 404.
    assert_eq!(get("/slow", None).await.expect("req").status(), 504);
    assert_eq!(get("/down/x", None).await.expect("req").status(), 502);
    assert_eq!(get("/nothing-here", None).await.expect("req").status(), 404);

    // The Lightning backend goes away: new challenges 503, paid tokens keep working.
    let maps_auth = pay(&n.alice, third.headers()).await;
    n.server.stop().await;
    assert_eq!(get("/weather/other", None).await.expect("req").status(), 503);
    assert_eq!(get("/maps", Some(&maps_auth)).await.expect("req").status(), 200);
    n.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn grpc_through_the_proxy() {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let n = network().await;
    let (grpc_addr, _reporter) = support::grpc_health();
    let dir = tempfile::tempdir().expect("tmp");
    let config = format!(
        r#"
listen = "127.0.0.1:0"
store = {{ kind = "sqlite", path = "{db}" }}
lightning = {{ backend = "ldk", data_dir = "unused", network = "regtest", bitcoind_rpc = "x", bitcoind_user = "x" }}

[[service]]
name = "health"
path = "/grpc.health.v1.Health/*"
upstream = "h2c://{grpc_addr}"
price_sat = 50
"#,
        db = dir.path().join("l402.db").display()
    );
    let p = proxy(&config, &n.server).await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", p.addr()))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut client = HealthClient::new(channel);

    // Unpaid: the trailers-only challenge, as a gRPC status with the challenge in its metadata.
    let status = client.check(HealthCheckRequest { service: String::new() }).await.expect_err("payment required");
    assert_eq!(status.code(), tonic::Code::Internal);
    assert_eq!(status.message(), "payment required");
    let mut headers = reqwest::header::HeaderMap::new();
    for v in status.metadata().get_all("www-authenticate").iter() {
        headers
            .append("www-authenticate", reqwest::header::HeaderValue::from_bytes(v.as_encoded_bytes()).expect("value"));
    }
    assert_eq!(headers.get_all("www-authenticate").iter().count(), 2);
    let auth = pay(&n.alice, &headers).await;

    // Paid: the credential in metadata, the upstream's answer comes back.
    let mut req = tonic::Request::new(HealthCheckRequest { service: String::new() });
    req.metadata_mut().insert("authorization", auth.parse().expect("metadata"));
    let resp = client.check(req).await.expect("served");
    assert_eq!(resp.into_inner().status, 1, "SERVING");

    // The Macaroon-header form gRPC clients use works too.
    let cred = Credential::parse(auth.as_bytes()).expect("cred");
    let mut req = tonic::Request::new(HealthCheckRequest { service: String::new() });
    req.metadata_mut().insert("macaroon", cred.macaroon_header_value().parse().expect("metadata"));
    assert_eq!(client.check(req).await.expect("served").into_inner().status, 1);
    n.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_proxies_share_one_postgres() {
    let n = network().await;
    let up = upstream().await;
    let mut pg = Postgres::start().await.expect("postgres (apt-get install postgresql)");
    let dir = tempfile::tempdir().expect("tmp");
    let admin_file = dir.path().join("admin");
    std::fs::write(&admin_file, ADMIN).expect("write");
    // Stateless tokens from one master key file both instances read; revocation_poll_ms = 100: a revocation
    // on one instance reaches the other within 200 ms.
    let master = dir.path().join("master.key");
    let config = format!(
        r#"
listen = "127.0.0.1:0"
admin = {{ listen = "127.0.0.1:0", token_file = "{admin}" }}
store = {{ kind = "postgres", url = "{url}" }}
lightning = {{ backend = "ldk", data_dir = "unused", network = "regtest", bitcoind_rpc = "x", bitcoind_user = "x" }}
tokens = {{ master_key_files = ["{master}"], revocation_poll_ms = 100 }}

[[service]]
name = "api"
path = "/*"
upstream = "{up}"
price_sat = 100
"#,
        admin = admin_file.display(),
        url = pg.connection_string(),
        master = master.display(),
    );
    let a = proxy(&config, &n.server).await;
    let b = proxy(&config, &n.server).await;
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&master).expect("the master key file is created on first start").permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the master key file is private");
    let http = reqwest::Client::new();
    let get = |p: &Proxy, auth: Option<&str>| {
        let mut r = http.get(format!("http://{}/thing", p.addr()));
        if let Some(x) = auth {
            r = r.header("authorization", x);
        }
        r.send()
    };
    let challenge = get(&a, None).await.expect("req");
    assert_eq!(challenge.status(), 402);
    let listed = || async {
        a.paywall().store().list(&TokenQuery { limit: 100, ..TokenQuery::default() }).await.expect("list").len()
    };
    assert_eq!(listed().await, 0, "a challenge writes nothing to the store");
    let auth = pay(&n.alice, challenge.headers()).await;
    assert_eq!(get(&a, Some(&auth)).await.expect("req").status(), 200);
    assert_eq!(get(&b, Some(&auth)).await.expect("req").status(), 200, "minted by one, accepted by the other");
    // Recorded off the request path, once: wait for the background writer.
    let deadline = Instant::now() + Duration::from_secs(10);
    while listed().await == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(listed().await, 1, "the token is recorded once paid or used");

    let id =
        Credential::parse(auth.as_bytes()).expect("cred").macaroon.l402_identifier().expect("id").token_id.to_hex();
    let admin_a = format!("http://{}", a.admin_addr().expect("admin"));
    let r = http.post(format!("{admin_a}/admin/tokens/{id}/revoke")).bearer_auth(ADMIN).send().await.expect("req");
    assert_eq!(r.status(), 200);
    tokio::time::sleep(Duration::from_millis(250)).await;
    assert_eq!(get(&a, Some(&auth)).await.expect("req").status(), 401, "revoked on one...");
    assert_eq!(get(&b, Some(&auth)).await.expect("req").status(), 401, "...refused by both");

    // The store goes away: a challenge still needs nothing of it (402), but a paid request is refused (503)
    // once the revocation list can no longer be read within its bound: nothing passes that might be revoked.
    let second = get(&b, None).await.expect("req");
    let auth2 = pay(&n.alice, second.headers()).await;
    pg.kill();
    tokio::time::sleep(Duration::from_millis(250)).await;
    for p in [&a, &b] {
        assert_eq!(get(p, None).await.expect("req").status(), 402, "challenges are free of the store");
        assert_eq!(get(p, Some(&auth2)).await.expect("req").status(), 503, "nothing passes unchecked");
    }
    n.net.shutdown().await;
}

/// The sample configuration in the repository parses and says what it documents.
#[test]
fn the_sample_config_parses() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../l402.sample.toml");
    let c = Config::load(&path).expect("l402.sample.toml parses");
    assert_eq!(c.services.len(), 4);
    let sessions = &c.services[2];
    assert_eq!(sessions.session.as_ref().and_then(|s| s.deposit_sat), Some(200));
    assert_eq!(sessions.session.as_ref().map(|s| s.deposit("d", 10_000).expect("deposit")), Some(Msat(200_000)));
    let chat = &c.services[1];
    assert_eq!(chat.price().expect("the bundle's price"), 2_000_000, "1,000,000 units at 2 msat");
    let weather = &c.services[0];
    assert_eq!(weather.price().expect("price"), 10_000);
    assert_eq!(weather.routes.len(), 2);
    assert_eq!(weather.rate_limit.as_ref().map(|r| r.burst), Some(20));
    assert!(matches!(c.lightning, l402_proxy::LightningConfig::Lnd { .. }));
    // A route needing a capability the service does not grant is a configuration error, named.
    let text =
        std::fs::read_to_string(&path).expect("read").replace("capability = \"write\"", "capability = \"admin\"");
    let err = Config::parse(&text).expect_err("refused");
    assert!(err.to_string().contains("does not grant"), "{err}");
}

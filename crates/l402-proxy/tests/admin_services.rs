//! Services at runtime through the admin API, against a real proxy on loopback and real regtest invoices: a
//! service created, repriced and deleted is served so at once (the 402's invoice decoded), a request in flight
//! across a change finishes with the service it started with, every bad change is refused with its 4xx and
//! changes nothing, changes survive a restart (SQLite), and two proxies on one PostgreSQL apply each other's
//! changes within the stated bound.
#![allow(missing_docs)]

mod support;

use std::time::Duration;

use l402_proto::Msat;
use serde_json::{Value, json};
use support::{http_get, invoicing_node, proxy, upstream};

const TOKEN: &str = "admin-token-for-the-services-test";

/// A config with the admin API on, a file service `file` on `/file*` and `slow` (free) on `/slow`.
fn config(dir: &std::path::Path, store: &str, up: &str, poll_ms: u64) -> String {
    let token_file = dir.join("admin-token");
    std::fs::write(&token_file, TOKEN).expect("token file");
    format!(
        r#"listen = "127.0.0.1:0"
store = {store}
lightning = {{ backend = "ldk", data_dir = "unused", network = "regtest", bitcoind_rpc = "x", bitcoind_user = "x" }}
[tokens]
revocation_poll_ms = {poll_ms}
[admin]
listen = "127.0.0.1:0"
token_file = "{}"

[[service]]
name = "file"
path = "/file*"
upstream = "{up}"
price_sat = 5

[[service]]
name = "slow"
path = "/slow"
upstream = "{up}"
payment = false
"#,
        token_file.display()
    )
}

fn sqlite(dir: &std::path::Path) -> String {
    format!("{{ kind = \"sqlite\", path = \"{}\" }}", dir.join("l402.db").display())
}

/// An admin call: (status, JSON body or Null).
async fn admin(
    p: &l402_proxy::Proxy,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&[u8]>,
) -> (u16, Value) {
    let url = format!("http://{}{path}", p.admin_addr().expect("admin listener"));
    let mut req = reqwest::Client::new().request(method.parse().expect("method"), url);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_vec());
    }
    let resp = req.send().await.expect("admin answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

async fn call(p: &l402_proxy::Proxy, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let bytes = body.map(|b| serde_json::to_vec(&b).expect("json"));
    admin(p, method, path, Some(TOKEN), bytes.as_deref()).await
}

fn names(list: &Value) -> Vec<String> {
    list.as_array().expect("an array").iter().map(|s| s["name"].as_str().expect("name").to_owned()).collect()
}

/// The amount of the invoice in the 402 `path` is answered with.
async fn price_of(p: &l402_proxy::Proxy, path: &str) -> Msat {
    let r = http_get(p.addr(), path, &[]).await;
    assert_eq!(r.status, 402, "{r:?}");
    let c = l402_proto::Challenge::parse(r.all("www-authenticate")).expect("challenge");
    let (_, info) = l402_proto::invoice::decode_invoice(&c.invoice).expect("invoice");
    info.amount.expect("an amount")
}

fn live(up: &str, price_sat: u64) -> Value {
    json!({ "name": "live", "path": "/live*", "upstream": up, "price_sat": price_sat, "capabilities": ["read"] })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn services_are_created_repriced_and_deleted_at_runtime_and_survive_a_restart() {
    let (net, server) = invoicing_node().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let text = config(dir.path(), &sqlite(dir.path()), &up.url, 1000);
    let p = proxy(&text, &server).await;
    assert_eq!(http_get(p.addr(), "/live", &[]).await.status, 404, "not there yet");

    let (status, created) = call(&p, "POST", "/admin/services", Some(live(&up.url, 7))).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["price_sat"], 7);
    assert_eq!(price_of(&p, "/live/x").await, Msat(7_000), "the new service's 402 carries its price");
    let (_, list) = call(&p, "GET", "/admin/services", None).await;
    assert_eq!(names(&list), ["file", "slow", "live"], "after the file's, in matching order");

    let (status, body) = call(&p, "PUT", "/admin/services/live", Some(live(&up.url, 9))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(price_of(&p, "/live/x").await, Msat(9_000), "the next 402 carries the new price");
    // The name may be left out of a PUT body.
    let mut unnamed = live(&up.url, 11);
    unnamed.as_object_mut().expect("object").remove("name");
    assert_eq!(call(&p, "PUT", "/admin/services/live", Some(unnamed)).await.0, 200);
    assert_eq!(price_of(&p, "/live/x").await, Msat(11_000));
    // A file service can be repriced and deleted too.
    let mut file = live(&up.url, 6);
    file["name"] = json!("file");
    file["path"] = json!("/file*");
    assert_eq!(call(&p, "PUT", "/admin/services/file", Some(file)).await.0, 200);
    assert_eq!(price_of(&p, "/file").await, Msat(6_000));
    assert_eq!(call(&p, "DELETE", "/admin/services/slow", None).await.0, 204);
    assert_eq!(http_get(p.addr(), "/slow", &[]).await.status, 404);

    // Restart on the same store: the store's services override and extend the file's.
    drop(p);
    let p = proxy(&text, &server).await;
    let (_, list) = call(&p, "GET", "/admin/services", None).await;
    assert_eq!(names(&list), ["file", "live"], "slow stays deleted; live is back");
    assert_eq!(price_of(&p, "/live/x").await, Msat(11_000));
    assert_eq!(price_of(&p, "/file").await, Msat(6_000), "the store's file service wins over the file's");

    assert_eq!(call(&p, "DELETE", "/admin/services/live", None).await.0, 204);
    assert_eq!(http_get(p.addr(), "/live/x", &[]).await.status, 404, "deleted: no service");
    assert_eq!(call(&p, "DELETE", "/admin/services/live", None).await.0, 404, "deleted twice");
    assert_eq!(call(&p, "PUT", "/admin/services/live", Some(live(&up.url, 1))).await.0, 404, "PUT creates nothing");
    // Created again after its deletion.
    assert_eq!(call(&p, "POST", "/admin/services", Some(live(&up.url, 3))).await.0, 201);
    assert_eq!(price_of(&p, "/live").await, Msat(3_000));
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_request_in_flight_across_a_change_finishes_with_the_service_it_started_with() {
    let (net, server) = invoicing_node().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let p = proxy(&config(dir.path(), &sqlite(dir.path()), &up.url, 1000), &server).await;
    let addr = p.addr();
    // The upstream answers /slow after 5 s.
    let in_flight = tokio::spawn(async move { http_get(addr, "/slow", &[]).await });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let moved = json!({ "name": "slow", "path": "/slow", "upstream": "http://127.0.0.1:1", "payment": false });
    assert_eq!(call(&p, "PUT", "/admin/services/slow", Some(moved)).await.0, 200);
    let next = http_get(addr, "/slow", &[]).await;
    assert_eq!(next.status, 502, "a new request goes to the new upstream (nothing listens there): {next:?}");
    let first = in_flight.await.expect("joined");
    assert_eq!((first.status, first.body.as_str()), (200, "late"), "the old upstream answered the request in flight");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_service_changes_are_refused_with_a_reason_and_change_nothing() {
    let (net, server) = invoicing_node().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let p = proxy(&config(dir.path(), &sqlite(dir.path()), &up.url, 1000), &server).await;
    assert_eq!(call(&p, "POST", "/admin/services", Some(live(&up.url, 7))).await.0, 201);
    let (_, before) = call(&p, "GET", "/admin/services", None).await;
    let version = p.paywall().store().services_version().await.expect("version");

    let with = |key: &str, v: Value| {
        let mut s = live(&up.url, 7);
        s["name"] = json!("other");
        s[key] = v;
        s
    };
    let bytes = |v: Value| serde_json::to_vec(&v).expect("json");
    // (what, method, path, token, body, status)
    type Case<'a> = (&'a str, &'a str, &'a str, Option<&'a str>, Vec<u8>, u16);
    let cases: Vec<Case<'_>> = vec![
        ("not_json", "POST", "/admin/services", Some(TOKEN), b"{\"name\": ".to_vec(), 400),
        ("not_an_object", "POST", "/admin/services", Some(TOKEN), b"[1, 2]".to_vec(), 422),
        ("unknown_key", "POST", "/admin/services", Some(TOKEN), bytes(with("bogus", json!(1))), 422),
        ("wrong_type", "POST", "/admin/services", Some(TOKEN), bytes(with("price_sat", json!("ten"))), 422),
        (
            "missing_path",
            "POST",
            "/admin/services",
            Some(TOKEN),
            bytes(json!({"name": "x", "upstream": up.url, "price_sat": 1})),
            422,
        ),
        ("duplicate_name", "POST", "/admin/services", Some(TOKEN), bytes(live(&up.url, 8)), 409),
        (
            "duplicate_of_a_file_service",
            "POST",
            "/admin/services",
            Some(TOKEN),
            bytes(with("name", json!("file"))),
            409,
        ),
        ("zero_price", "POST", "/admin/services", Some(TOKEN), bytes(with("price_sat", json!(0))), 422),
        ("two_prices", "POST", "/admin/services", Some(TOKEN), bytes(with("price_msat", json!(7000))), 422),
        (
            "no_price",
            "POST",
            "/admin/services",
            Some(TOKEN),
            bytes(json!({"name": "x", "path": "/x", "upstream": up.url})),
            422,
        ),
        ("unknown_scheme", "POST", "/admin/services", Some(TOKEN), bytes(with("schemes", json!(["bitcoin"]))), 422),
        (
            "payment_scheme_in_msat",
            "POST",
            "/admin/services",
            Some(TOKEN),
            bytes(json!({"name": "x", "path": "/x", "upstream": up.url, "price_msat": 1500, "schemes": ["payment"]})),
            422,
        ),
        (
            "route_capability_not_granted",
            "POST",
            "/admin/services",
            Some(TOKEN),
            bytes(with("route", json!([{"path": "/live/admin*", "capability": "admin"}]))),
            422,
        ),
        ("pattern_never_matches", "POST", "/admin/services", Some(TOKEN), bytes(with("path", json!("/a//b"))), 422),
        (
            "zero_rate",
            "POST",
            "/admin/services",
            Some(TOKEN),
            bytes(with("rate_limit", json!({"per": "address", "per_second": 0.0, "burst": 1}))),
            422,
        ),
        ("zero_timeout", "POST", "/admin/services", Some(TOKEN), bytes(with("timeout_secs", json!(0))), 422),
        (
            "bad_upstream_scheme",
            "POST",
            "/admin/services",
            Some(TOKEN),
            bytes(with("upstream", json!("ftp://127.0.0.1:21"))),
            422,
        ),
        ("name_with_a_slash", "POST", "/admin/services", Some(TOKEN), bytes(with("name", json!("a/b"))), 422),
        (
            "header_from_a_file",
            "POST",
            "/admin/services",
            Some(TOKEN),
            bytes(with("headers", json!({"x-key": {"file": "/etc/passwd"}}))),
            422,
        ),
        (
            "header_from_the_environment",
            "POST",
            "/admin/services",
            Some(TOKEN),
            bytes(with("headers", json!({"x-key": {"env": "HOME"}}))),
            422,
        ),
        ("huge_body", "POST", "/admin/services", Some(TOKEN), vec![b' '; 65 << 10], 413),
        ("no_token", "POST", "/admin/services", None, bytes(with("price_sat", json!(1))), 401),
        (
            "wrong_token",
            "POST",
            "/admin/services",
            Some("not-the-admin-token-at-all"),
            bytes(with("price_sat", json!(1))),
            401,
        ),
        ("wrong_token_on_list", "GET", "/admin/services", Some("not-the-admin-token-at-all"), Vec::new(), 401),
        (
            "wrong_token_on_delete",
            "DELETE",
            "/admin/services/live",
            Some("not-the-admin-token-at-all"),
            Vec::new(),
            401,
        ),
        ("put_renames", "PUT", "/admin/services/live", Some(TOKEN), bytes(with("price_sat", json!(8))), 422),
        (
            "put_unknown_service",
            "PUT",
            "/admin/services/nothere",
            Some(TOKEN),
            bytes(with("name", json!("nothere"))),
            404,
        ),
        ("put_not_json", "PUT", "/admin/services/live", Some(TOKEN), b"price=8".to_vec(), 400),
        (
            "put_bad_price",
            "PUT",
            "/admin/services/live",
            Some(TOKEN),
            bytes(json!({"path": "/live*", "upstream": up.url, "price_sat": 0})),
            422,
        ),
        ("delete_unknown_service", "DELETE", "/admin/services/nothere", Some(TOKEN), Vec::new(), 404),
        ("delete_an_encoded_path_trick", "DELETE", "/admin/services/..%2Flive", Some(TOKEN), Vec::new(), 404),
        ("delete_a_nul_name", "DELETE", "/admin/services/live%00", Some(TOKEN), Vec::new(), 404),
    ];
    for (what, method, path, token, body, want) in cases {
        let body = (!body.is_empty()).then_some(body.as_slice());
        let (status, reason) = admin(&p, method, path, token, body).await;
        assert_eq!(status, want, "{what}: {reason}");
        if want == 400 || want == 422 || want == 409 {
            assert!(reason["error"].as_str().is_some_and(|e| !e.is_empty()), "{what}: a reason: {reason}");
        }
        let (_, after) = call(&p, "GET", "/admin/services", None).await;
        assert_eq!(after, before, "{what}: nothing changed");
    }
    assert_eq!(p.paywall().store().services_version().await.expect("version"), version, "nothing written");
    assert_eq!(price_of(&p, "/live").await, Msat(7_000), "still served at its price");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_header_value_is_redacted_when_services_are_listed() {
    let (net, server) = invoicing_node().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let p = proxy(&config(dir.path(), &sqlite(dir.path()), &up.url, 1000), &server).await;
    let mut s = live(&up.url, 7);
    s["free_paths"] = json!(["/live/free"]);
    s["headers"] = json!({"x-upstream-key": {"value": "upstream-secret-value"}});
    let (status, created) = call(&p, "POST", "/admin/services", Some(s)).await;
    assert_eq!(status, 201);
    assert!(!created.to_string().contains("upstream-secret-value"), "{created}");
    let (_, list) = call(&p, "GET", "/admin/services", None).await;
    assert!(!list.to_string().contains("upstream-secret-value"), "{list}");
    assert_eq!(list[2]["headers"]["x-upstream-key"]["value"], "<redacted>");
    // The upstream gets the real value.
    let r = http_get(p.addr(), "/live/free", &[]).await;
    assert_eq!(r.json()["headers"]["x-upstream-key"], "upstream-secret-value", "{r:?}");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_proxies_on_one_postgres_apply_each_others_changes_within_the_bound() {
    let pg = l402_regtest::Postgres::start().await.expect("postgres (apt-get install postgresql)");
    let (net, server) = invoicing_node().await;
    let up = upstream().await;
    let store = format!("{{ kind = \"postgres\", url = \"{}\" }}", pg.connection_string());
    let (da, db) = (tempfile::tempdir().expect("tmp"), tempfile::tempdir().expect("tmp"));
    let a = proxy(&config(da.path(), &store, &up.url, 300), &server).await;
    let b = proxy(&config(db.path(), &store, &up.url, 300), &server).await;
    assert_eq!(b.service_change_bound(), Duration::from_millis(600));

    // Waits until `b` serves `path` with `want` (None: 404), within the bound.
    async fn seen(b: &l402_proxy::Proxy, path: &str, want: Option<Msat>, what: &str) -> Duration {
        let changed = tokio::time::Instant::now();
        loop {
            let r = http_get(b.addr(), path, &[]).await;
            let now = match r.status {
                402 => {
                    let c = l402_proto::Challenge::parse(r.all("www-authenticate")).expect("challenge");
                    l402_proto::invoice::decode_invoice(&c.invoice).expect("invoice").1.amount
                }
                _ => None,
            };
            if now == want && (want.is_some() || r.status == 404) {
                return changed.elapsed();
            }
            assert!(changed.elapsed() <= b.service_change_bound() + Duration::from_millis(200), "{what}: not seen");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(call(&a, "POST", "/admin/services", Some(live(&up.url, 7))).await.0, 201);
    let took = seen(&b, "/live", Some(Msat(7_000)), "created on a").await;
    println!("a creation on a served by b after {took:?} (bound {:?})", b.service_change_bound());
    assert_eq!(call(&b, "PUT", "/admin/services/live", Some(live(&up.url, 9))).await.0, 200);
    seen(&a, "/live", Some(Msat(9_000)), "repriced on b").await;
    assert_eq!(call(&a, "DELETE", "/admin/services/live", None).await.0, 204);
    seen(&b, "/live", None, "deleted on a").await;
    // b knows it is gone: a second delete through b is a 404, not a write.
    assert_eq!(call(&b, "DELETE", "/admin/services/live", None).await.0, 404);
    net.shutdown().await;
}

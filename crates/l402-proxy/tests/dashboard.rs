//! The dashboard at `/` of the admin listener, against a real proxy on loopback and real regtest nodes: in a real
//! headless Chromium (driven through chromedriver), an operator logs in, sees a real payment appear, revokes a
//! token (the proxy then refuses it) and reprices a service (the next 402's invoice carries the new amount); and
//! over plain HTTP, every hostile way in: a wrong token, a forged cookie, a state-changing request without its
//! CSRF token or marked cross-site, and the security headers and cookie flags.
#![allow(missing_docs)]

mod support;

use std::process::Stdio;
use std::time::Duration;

use fantoccini::{ClientBuilder, Locator};
use l402_proto::Msat;
use serde_json::{Value, json};
use support::{Raw, http_get, invoicing_node, network, pay, proxy, raw, upstream};

const TOKEN: &str = "admin-token-for-the-dashboard-test";

/// A config with the admin API on and a service `file` on `/file*` at 5 sat.
fn config(dir: &std::path::Path, up: &str) -> String {
    let token_file = dir.join("admin-token");
    std::fs::write(&token_file, TOKEN).expect("token file");
    format!(
        r#"{}[admin]
listen = "127.0.0.1:0"
token_file = "{}"

[[service]]
name = "file"
path = "/file*"
upstream = "{up}"
price_sat = 5
"#,
        support::preamble(dir),
        token_file.display()
    )
}

fn admin(p: &l402_proxy::Proxy) -> std::net::SocketAddr {
    p.admin_addr().expect("admin listener")
}

/// Logs in with `token` through the form.
async fn login(p: &l402_proxy::Proxy, token: &str) -> Raw {
    let body = format!("token={token}");
    let head = format!(
        "POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}",
        body.len()
    );
    raw(admin(p), &head, body.as_bytes()).await
}

/// The session cookie (`name=value`) a successful login set.
fn session_cookie(r: &Raw) -> String {
    let set = r.header("set-cookie").unwrap_or_else(|| panic!("a cookie: {r:?}"));
    set.split(';').next().expect("name=value").trim().to_owned()
}

/// The page's CSRF token, from its `<meta name="csrf-token">`.
fn csrf_of(page: &str) -> String {
    let needle = "name=\"csrf-token\" content=\"";
    let at = page.find(needle).expect("a csrf meta tag") + needle.len();
    page[at..].split('"').next().expect("closed").to_owned()
}

/// A request on the admin listener with extra header lines and a body.
async fn send(p: &l402_proxy::Proxy, method: &str, path: &str, headers: &[&str], body: &str) -> Raw {
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}", body.len());
    for h in headers {
        head.push_str("\r\n");
        head.push_str(h);
    }
    raw(admin(p), &head, body.as_bytes()).await
}

/// The amount of the invoice in the 402 `path` is answered with.
async fn price_of(p: &l402_proxy::Proxy, path: &str) -> Msat {
    let r = http_get(p.addr(), path, &[]).await;
    assert_eq!(r.status, 402, "{r:?}");
    let c = l402_proto::Challenge::parse(r.all("www-authenticate")).expect("challenge");
    let (_, info) = l402_proto::invoice::decode_invoice(&c.invoice).expect("invoice");
    info.amount.expect("an amount")
}

/// Pays for one token from alice (with SQLite, tokens are stateless: the store has a token's row once it is used)
/// and returns its id and Authorization value.
async fn a_token(p: &l402_proxy::Proxy, n: &support::Net) -> (String, String) {
    let c = http_get(p.addr(), "/file", &[]).await;
    assert_eq!(c.status, 402, "{c:?}");
    let auth = pay(&n.alice, c.all("www-authenticate")).await;
    assert_eq!(http_get(p.addr(), "/file", &[&format!("Authorization: {auth}")]).await.status, 200);
    let cred = l402_proto::Credential::parse(auth.as_bytes()).expect("credential");
    let id = cred.macaroon.l402_identifier().expect("id").token_id.to_hex();
    (id, auth)
}

async fn revoked(p: &l402_proxy::Proxy, id: &str) -> bool {
    let list = send(p, "GET", "/admin/tokens", &[&format!("Authorization: Bearer {TOKEN}")], "").await.json();
    let t = list.as_array().expect("array").iter().find(|t| t["token_id"] == id).expect("listed").clone();
    !t["revoked_at"].is_null()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_token_at_login_is_401_sets_no_cookie_and_repeated_failures_are_limited() {
    // Every log line of this test binary's run is captured (the only global subscriber set in it).
    let logs = Captured::default();
    let sink = logs.clone();
    tracing_subscriber::fmt()
        .with_env_filter("debug,ldk_node=warn,lightning=warn,h2=warn,hyper=warn,hyper_util=warn")
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .init();
    let (net, server) = invoicing_node().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let p = proxy(&config(dir.path(), &up.url), &server).await;
    let wrong = "admin-token-for-the-dashboard-tesT";
    let r = login(&p, wrong).await;
    assert_eq!(r.status, 401, "{r:?}");
    assert!(r.header("set-cookie").is_none(), "no cookie for a wrong token: {r:?}");
    assert!(!r.body.contains(wrong), "the given token is not echoed: {}", r.body);
    assert!(!r.body.contains(TOKEN), "nor the right one");
    let empty = send(&p, "POST", "/login", &["Content-Type: application/x-www-form-urlencoded"], "").await;
    assert_eq!(empty.status, 401, "no token at all: {empty:?}");
    assert!(empty.header("set-cookie").is_none());
    // Ten failures a minute, then 429 even for the right token until the minute is over.
    let mut statuses = Vec::new();
    for _ in 0..10 {
        statuses.push(login(&p, wrong).await.status);
    }
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 2, "failures 11 and 12 are limited: {statuses:?}");
    let right = login(&p, TOKEN).await;
    assert_eq!(right.status, 429, "limited: {right:?}");
    assert!(right.header("set-cookie").is_none());
    let cross = send(
        &p,
        "POST",
        "/login",
        &["Content-Type: application/x-www-form-urlencoded", "Sec-Fetch-Site: cross-site"],
        &format!("token={TOKEN}"),
    )
    .await;
    assert_eq!(cross.status, 403, "a cross-site login is refused: {cross:?}");
    assert!(cross.header("set-cookie").is_none());
    let huge = format!("token={}", "a".repeat(1 << 20));
    let r = send(&p, "POST", "/login", &["Content-Type: application/x-www-form-urlencoded"], &huge).await;
    assert_eq!(r.status, 413, "a huge login body is refused unread: {}", r.status);
    assert!(r.header("set-cookie").is_none());
    let logs = String::from_utf8(logs.0.lock().expect("lock").clone()).expect("utf-8");
    assert!(logs.contains("login failed"), "{logs}");
    assert!(!logs.contains(wrong) && !logs.contains(TOKEN), "no token in the logs");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_sets_a_strict_httponly_session_cookie_that_is_not_the_token_and_pages_carry_security_headers() {
    let (net, server) = invoicing_node().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let p = proxy(&config(dir.path(), &up.url), &server).await;

    let anonymous = http_get(admin(&p), "/", &[]).await;
    assert_eq!((anonymous.status, anonymous.header("location")), (303, Some("/login")), "{anonymous:?}");
    let form = http_get(admin(&p), "/login", &[]).await;
    assert_eq!(form.status, 200);
    assert!(form.body.contains("<form method=\"post\" action=\"/login\""), "{}", form.body);

    let r = login(&p, TOKEN).await;
    assert_eq!((r.status, r.header("location")), (303, Some("/")), "{r:?}");
    let set = r.header("set-cookie").expect("a cookie");
    let flags: Vec<&str> = set.split(';').map(str::trim).collect();
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(flags.contains(&flag), "{flag} in {set}");
    }
    assert!(!set.contains(TOKEN), "the cookie is a session id, not the token: {set}");
    let cookie = session_cookie(&r);
    assert_eq!(cookie.split_once('=').expect("=").1.len(), 64, "256 random bits: {cookie}");

    let page = http_get(admin(&p), "/", &[&format!("Cookie: {cookie}")]).await;
    assert_eq!(page.status, 200, "{page:?}");
    assert!(!page.body.contains(TOKEN), "the page holds no token");
    assert_eq!(csrf_of(&page.body).len(), 64, "the session's CSRF token is in the page");
    for (path, auth) in
        [("/", format!("Cookie: {cookie}")), ("/dashboard.js", String::new()), ("/login", String::new())]
    {
        let r = http_get(admin(&p), path, &[auth.as_str()]).await;
        assert_eq!(r.status, 200, "{path}: {r:?}");
        assert!(!r.body.contains(TOKEN), "{path} holds no token");
        let csp = r.header("content-security-policy").unwrap_or_else(|| panic!("{path}: a CSP"));
        assert!(csp.contains("default-src 'none'") && csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"), "{path}: {csp}");
        assert_eq!(r.header("x-frame-options"), Some("DENY"), "{path}");
        assert_eq!(r.header("cache-control"), Some("no-store"), "{path}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{path}");
    }
    // The Bearer header opens the page too, and the JSON endpoints answer both.
    let bearer = format!("Authorization: Bearer {TOKEN}");
    assert_eq!(http_get(admin(&p), "/", &[&bearer]).await.status, 200);
    for path in ["/admin/summary", "/admin/revenue/series?bucket=minute", "/admin/tokens", "/admin/services"] {
        assert_eq!(http_get(admin(&p), path, &[&bearer]).await.status, 200, "{path} with the Bearer header");
        assert_eq!(
            http_get(admin(&p), path, &[&format!("Cookie: {cookie}")]).await.status,
            200,
            "{path} with the cookie"
        );
        assert_eq!(http_get(admin(&p), path, &[]).await.status, 401, "{path} without either");
    }
    let bad_bucket = http_get(admin(&p), "/admin/revenue/series?bucket=year", &[&bearer]).await;
    assert_eq!(bad_bucket.status, 400, "{bad_bucket:?}");
    let summary = http_get(admin(&p), "/admin/summary", &[&bearer]).await.json();
    assert_eq!(summary["node"]["reachable"], true, "{summary}");
    net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cookie_post_without_or_with_a_wrong_csrf_token_or_cross_site_is_403_and_changes_nothing() {
    let n = network().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let p = proxy(&config(dir.path(), &up.url), &n.server).await;
    let (id, auth) = a_token(&p, &n).await;
    let cookie = format!("Cookie: {}", session_cookie(&login(&p, TOKEN).await));
    let csrf = csrf_of(&http_get(admin(&p), "/", &[&cookie]).await.body);
    let revoke = format!("/admin/tokens/{id}/revoke");
    let reprice =
        serde_json::to_string(&json!({ "path": "/file*", "upstream": up.url, "price_sat": 1 })).expect("json");
    let wrong = format!("X-CSRF-Token: {}", "0".repeat(64));
    let short = "X-CSRF-Token: 00".to_owned();
    let right = format!("X-CSRF-Token: {csrf}");
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("no_csrf_token", vec![&cookie]),
        ("wrong_csrf_token", vec![&cookie, &wrong]),
        ("short_csrf_token", vec![&cookie, &short]),
        ("cross_site_with_the_right_token", vec![&cookie, &right, "Sec-Fetch-Site: cross-site"]),
        ("same_site_with_the_right_token", vec![&cookie, &right, "Sec-Fetch-Site: same-site"]),
    ];
    for (what, headers) in &cases {
        let r = send(&p, "POST", &revoke, headers, "").await;
        assert_eq!(r.status, 403, "{what}: revoke {r:?}");
        let mut h = headers.clone();
        h.push("Content-Type: application/json");
        let r = send(&p, "PUT", "/admin/services/file", &h, &reprice).await;
        assert_eq!(r.status, 403, "{what}: reprice {r:?}");
        let r = send(&p, "POST", "/logout", headers, "").await;
        assert_eq!(r.status, 403, "{what}: logout {r:?}");
    }
    assert!(!revoked(&p, &id).await, "nothing was revoked");
    assert_eq!(http_get(p.addr(), "/file", &[&format!("Authorization: {auth}")]).await.status, 200, "still served");
    assert_eq!(price_of(&p, "/file").await, Msat(5_000), "nothing was repriced");
    assert_eq!(http_get(admin(&p), "/", &[&cookie]).await.status, 200, "still logged in");

    // The right token, same-origin: done.
    let r = send(&p, "POST", &revoke, &[&cookie, &right, "Sec-Fetch-Site: same-origin"], "").await;
    assert_eq!(r.status, 200, "{r:?}");
    assert!(revoked(&p, &id).await);
    assert_eq!(http_get(p.addr(), "/file", &[&format!("Authorization: {auth}")]).await.status, 401, "refused now");
    let r =
        send(&p, "PUT", "/admin/services/file", &[&cookie, &right, "Content-Type: application/json"], &reprice).await;
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(price_of(&p, "/file").await, Msat(1_000));
    // The Bearer header needs no CSRF token.
    let (id2, _) = a_token(&p, &n).await;
    let r = send(&p, "POST", &format!("/admin/tokens/{id2}/revoke"), &[&format!("Authorization: Bearer {TOKEN}")], "")
        .await;
    assert_eq!(r.status, 200, "{r:?}");
    // Both paid tokens are in the revenue series and the summary (the store's rows): 5 sat, then 1 sat after the
    // reprice.
    let bearer = format!("Authorization: Bearer {TOKEN}");
    let series = http_get(admin(&p), "/admin/revenue/series?bucket=day", &[&bearer]).await.json();
    assert_eq!(series["bucket_secs"], 86_400);
    let points = series["points"].as_array().expect("points");
    assert_eq!(points.iter().map(|p| p["tokens_paid"].as_u64().expect("n")).sum::<u64>(), 2, "{series}");
    assert_eq!(points.iter().map(|p| p["amount_msat"].as_u64().expect("msat")).sum::<u64>(), 6_000, "{series}");
    assert!(points.iter().all(|p| p["start"].as_u64().expect("start") % 86_400 == 0), "{series}");
    let summary = http_get(admin(&p), "/admin/summary", &[&bearer]).await.json();
    assert_eq!(
        summary["services"],
        json!([{ "service": "file", "challenges": 2, "tokens_paid": 2, "amount_msat": 6_000 }])
    );
    // A wrong Bearer header is not rescued by a good cookie.
    let r = send(&p, "GET", "/admin/tokens", &[&cookie, "Authorization: Bearer not-the-admin-token-at-all"], "").await;
    assert_eq!(r.status, 401, "{r:?}");
    n.net.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_or_logged_out_session_cookie_redirects_to_login_and_opens_nothing() {
    let (net, server) = invoicing_node().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let p = proxy(&config(dir.path(), &up.url), &server).await;
    let forged = format!("Cookie: l402_admin_session={}", "ab".repeat(32));
    let r = http_get(admin(&p), "/", &[&forged]).await;
    assert_eq!((r.status, r.header("location")), (303, Some("/login")), "{r:?}");
    assert_eq!(http_get(admin(&p), "/admin/tokens", &[&forged]).await.status, 401);
    let token_as_cookie = format!("Cookie: l402_admin_session={TOKEN}");
    assert_eq!(http_get(admin(&p), "/", &[&token_as_cookie]).await.status, 303, "the token is not a session id");

    let cookie = format!("Cookie: {}", session_cookie(&login(&p, TOKEN).await));
    let csrf = csrf_of(&http_get(admin(&p), "/", &[&cookie]).await.body);
    let out = send(&p, "POST", "/logout", &[&cookie, &format!("X-CSRF-Token: {csrf}")], "").await;
    assert_eq!((out.status, out.header("location")), (303, Some("/login")), "{out:?}");
    assert!(out.header("set-cookie").is_some_and(|c| c.contains("Max-Age=0")), "the cookie is cleared: {out:?}");
    let r = http_get(admin(&p), "/", &[&cookie]).await;
    assert_eq!((r.status, r.header("location")), (303, Some("/login")), "logged out: {r:?}");
    net.shutdown().await;
}

#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// chromedriver on a free loopback port, killed when dropped.
struct Driver {
    _child: tokio::process::Child,
    url: String,
}

async fn chromedriver() -> Driver {
    for bin in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(std::path::Path::new(bin).exists(), "{bin} is missing: run scripts/install-deps.sh");
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let child = tokio::process::Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("chromedriver starts");
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
            return Driver { _child: child, url: format!("http://127.0.0.1:{port}") };
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not listen on {port}");
}

/// Waits (clicking Refresh between looks) until the page's `script` answers true.
async fn until(c: &fantoccini::Client, what: &str, script: &str) {
    for _ in 0..120 {
        if c.execute(script, vec![]).await.expect("script runs") == Value::Bool(true) {
            return;
        }
        c.find(Locator::Id("refresh")).await.expect("refresh button").click().await.expect("click");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    panic!("the page never showed {what}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_a_real_browser_an_operator_logs_in_sees_a_payment_revokes_a_token_and_reprices_a_service() {
    let n = network().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let p = proxy(&config(dir.path(), &up.url), &n.server).await;
    let driver = chromedriver().await;
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1400,1600"],
        },
    });
    let caps = caps.as_object().expect("object").clone();
    let c = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a browser session");
    let base = format!("http://{}", admin(&p));

    // Not logged in: sent to the login page; log in there.
    c.goto(&format!("{base}/")).await.expect("goto");
    assert_eq!(c.current_url().await.expect("url").path(), "/login");
    c.find(Locator::Id("token")).await.expect("token field").send_keys(TOKEN).await.expect("type");
    c.find(Locator::Id("login-submit")).await.expect("submit").click().await.expect("click");
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("body[data-loaded]"))
        .await
        .expect("the page loads");
    assert_eq!(c.current_url().await.expect("url").path(), "/");
    assert!(!c.source().await.expect("source").contains(TOKEN), "the token is nowhere in the page");
    until(&c, "the node", "return document.getElementById('node').dataset.reachable === 'true'").await;

    // A real payment: it shows in recent payments and in the revenue.
    let challenge = http_get(p.addr(), "/file", &[]).await;
    assert_eq!(challenge.status, 402);
    let auth = pay(&n.alice, challenge.all("www-authenticate")).await;
    let paid = http_get(p.addr(), "/file", &[&format!("Authorization: {auth}")]).await;
    assert_eq!(paid.status, 200, "{paid:?}");
    let list = http_get(admin(&p), "/admin/tokens", &[&format!("Authorization: Bearer {TOKEN}")]).await.json();
    let id = list[0]["token_id"].as_str().expect("token id").to_owned();
    until(&c, "the payment", &format!("return !!document.querySelector('#payments tr[data-token-id=\"{id}\"]')")).await;
    until(&c, "the revenue", "return document.getElementById('revenue-total').textContent === '5'").await;
    until(&c, "the chart's bar", "return document.querySelectorAll('#chart rect').length === 1").await;
    let by_service =
        c.find(Locator::Css("#by-service tbody tr")).await.expect("a service row").text().await.expect("text");
    assert!(by_service.starts_with("file"), "{by_service}");

    // Revoke it from the page: the proxy refuses it.
    c.find(Locator::Css(&format!("#tokens tr[data-token-id=\"{id}\"] button.revoke")))
        .await
        .expect("a revoke button")
        .click()
        .await
        .expect("click");
    until(
        &c,
        "the revocation",
        &format!("return document.querySelector('#tokens tr[data-token-id=\"{id}\"]').dataset.state === 'revoked'"),
    )
    .await;
    let refused = http_get(p.addr(), "/file", &[&format!("Authorization: {auth}")]).await;
    assert_eq!(refused.status, 401, "revoked from the page: {refused:?}");

    // Reprice the service from the page: the next 402's invoice carries the new price.
    let price = c.find(Locator::Css("#services tr[data-service=\"file\"] input.price")).await.expect("price field");
    price.clear().await.expect("clear");
    price.send_keys("13").await.expect("type");
    c.find(Locator::Css("#services tr[data-service=\"file\"] button.save"))
        .await
        .expect("save")
        .click()
        .await
        .expect("click");
    until(&c, "the new price", "const i = document.querySelector('#services tr[data-service=\"file\"] input.price'); return !!i && !i.dataset.dirty && i.value === '13'").await;
    assert_eq!(
        c.find(Locator::Id("services-message")).await.expect("message").text().await.expect("text"),
        "",
        "no error saving"
    );
    assert_eq!(price_of(&p, "/file").await, Msat(13_000), "the next 402 carries the price set on the page");

    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard");
    std::fs::create_dir_all(&dir).expect("screenshot dir");
    let shot = dir.join("dashboard.png");
    std::fs::write(&shot, c.screenshot().await.expect("screenshot")).expect("saved");
    println!("dashboard screenshot: {}", shot.display());

    // Log out from the page: back to the login page, and the session is gone.
    c.find(Locator::Id("logout")).await.expect("logout").click().await.expect("click");
    c.wait().at_most(Duration::from_secs(30)).for_element(Locator::Id("login")).await.expect("the login page");
    c.goto(&format!("{base}/")).await.expect("goto");
    assert_eq!(c.current_url().await.expect("url").path(), "/login", "logged out");
    c.close().await.expect("close the browser");
    drop(driver);
    n.net.shutdown().await;
}

//! `/metrics` as a real Prometheus sees it: a proxy on a real regtest network is paid (an L402 token and a
//! `Payment` charge), refuses a forged preimage, a revoked token and a spent charge; a real `prometheus`
//! process scrapes it with the alert rules of `deploy/prometheus` loaded, and its query API must give back
//! what happened (challenges per 402, revenue per msat paid, refusals per reason, the node up, the inbound
//! liquidity the node reports). `promtool` checks the rules, their unit tests and the raw scrape (any lint
//! problem fails), and every metric the Grafana dashboard and the rules name must be in the scrape.
//! Prometheus and promtool missing fail the test (scripts/install-deps.sh installs them).
#![allow(missing_docs)]

mod support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use l402_lightning::Node as _;
use l402_proto::Credential;
use serde_json::Value;
use support::{http_get, network, preamble, proxy, upstream};

const ADMIN: &str = "admin-token-for-the-prometheus-test";

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(rel)
}

/// A tool of the Prometheus distribution, or a loud failure.
fn tool(name: &str) -> PathBuf {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} is not installed (Debian's prometheus package; scripts/install-deps.sh)"))
}

/// A `prometheus` process, killed when dropped.
struct Prometheus {
    child: Child,
    url: String,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_prometheus(dir: &Path, target: std::net::SocketAddr) -> Prometheus {
    let rules = repo_file("deploy/prometheus/l402-alerts.yml").canonicalize().expect("the alert rules file");
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\nscrape_configs:\n  \
             - job_name: l402\n    static_configs:\n      - targets: ['{target}']\n",
            rules.display()
        ),
    )
    .expect("prometheus.yml");
    let port = l402_regtest::free_port().expect("a free port");
    let log = std::fs::File::create(dir.join("prometheus.log")).expect("log file");
    let child = Command::new(tool("prometheus"))
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.join("data").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("prometheus starts");
    let p = Prometheus { child, url: format!("http://127.0.0.1:{port}") };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = reqwest::get(format!("{}/-/ready", p.url)).await {
            if r.status().is_success() {
                return p;
            }
        }
        let log = std::fs::read_to_string(dir.join("prometheus.log")).unwrap_or_default();
        assert!(Instant::now() < deadline, "prometheus not ready in 60 s:\n{log}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The value of an instant query with one result, if there is one.
async fn query(p: &Prometheus, q: &str) -> Option<f64> {
    let r = reqwest::Client::new().get(format!("{}/api/v1/query", p.url)).query(&[("query", q)]).send().await.ok()?;
    let v: Value = r.json().await.ok()?;
    assert_eq!(v["status"], "success", "query {q}: {v}");
    let result = v["data"]["result"].as_array()?;
    assert!(result.len() <= 1, "query {q} has several series: {v}");
    result.first()?["value"][1].as_str()?.parse().ok()
}

/// Waits until the query gives `want` (scrapes come every second), and fails with the last value seen.
async fn expect(p: &Prometheus, q: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < deadline {
        last = query(p, q).await;
        if last == Some(want) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    panic!("{q}: want {want}, Prometheus says {last:?}");
}

/// The metric names an expression text mentions (`l402_...`, `process_...`).
fn names_in(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let bytes = text.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b':';
    let mut i = 0;
    while i < bytes.len() {
        if word(bytes[i]) && (i == 0 || !word(bytes[i - 1])) {
            let start = i;
            while i < bytes.len() && word(bytes[i]) {
                i += 1;
            }
            let w = &text[start..i];
            if w.starts_with("l402_") || w.starts_with("process_") {
                out.insert(w.to_owned());
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Every `expr` of a Grafana dashboard.
fn grafana_exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(e)) => out.push(e.clone()),
                    _ => grafana_exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| grafana_exprs(v, out)),
        _ => {}
    }
}

/// The series names a scrape has (histograms by their `_bucket`, `_sum` and `_count` series).
fn scraped_names(scrape: &str) -> BTreeSet<String> {
    scrape
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

fn promtool(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    use std::io::Write as _;
    let mut child = Command::new(tool("promtool"))
        .args(args)
        .current_dir(repo_file("deploy/prometheus"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool runs");
    if let Some(text) = stdin {
        child.stdin.take().expect("stdin").write_all(text.as_bytes()).expect("write the scrape");
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("promtool ends");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn the_alert_rules_pass_promtool_check_and_their_unit_tests() {
    let (ok, out) = promtool(&["check", "rules", "l402-alerts.yml"], None);
    assert!(ok && out.contains("SUCCESS"), "promtool check rules:\n{out}");
    let (ok, out) = promtool(&["test", "rules", "l402-alerts.test.yml"], None);
    assert!(ok && out.contains("SUCCESS"), "promtool test rules:\n{out}");
}

#[test]
fn a_bad_metrics_section_is_a_configuration_error_naming_the_key() {
    let dir = tempfile::tempdir().expect("tmp");
    let with = |metrics: &str| {
        format!(
            "{}{metrics}\n[[service]]\nname = \"w\"\npath = \"/w\"\nupstream = \"http://127.0.0.1:1\"\nprice_sat = 1\n",
            preamble(dir.path())
        )
    };
    let default = l402_proxy::Config::parse(&with("")).expect("no [metrics]: defaults");
    assert_eq!(default.metrics.node_probe_secs, 15);
    assert_eq!(
        l402_proxy::Config::parse(&with("[metrics]\nnode_probe_secs = 2")).expect("ok").metrics.node_probe_secs,
        2
    );
    for (bad, named) in [
        ("[metrics]\nnode_probe_secs = 0", "metrics.node_probe_secs"),
        ("[metrics]\nnode_probe_secs = 3601", "metrics.node_probe_secs"),
        ("[metrics]\nnode_probe_secs = -1", "node_probe_secs"),
        ("[metrics]\nnode_probe_secs = \"15\"", "node_probe_secs"),
        ("[metrics]\nprobe_secs = 15", "probe_secs"),
    ] {
        let err = l402_proxy::Config::parse(&with(bad)).expect_err(bad);
        assert!(err.to_string().contains(named), "{bad}: {err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_challenges_payments_refusals_revenue_and_the_node_as_they_happened() {
    let n = network().await;
    let up = upstream().await;
    let dir = tempfile::tempdir().expect("tmp");
    let token_file = dir.path().join("admin-token");
    std::fs::write(&token_file, ADMIN).expect("token file");
    let config = format!(
        r#"{}
[metrics]
node_probe_secs = 1
[admin]
listen = "127.0.0.1:0"
token_file = "{}"

[[service]]
name = "weather"
path = "/weather*"
upstream = "{up}"
price_sat = 100

[[service]]
name = "news"
path = "/news*"
upstream = "{up}"
price_sat = 20
schemes = ["payment"]

[[service]]
name = "open"
path = "/open*"
upstream = "{up}"
payment = false
rate_limit = {{ per = "address", per_second = 0.001, burst = 1 }}
"#,
        preamble(dir.path()),
        token_file.display()
    );
    let p = proxy(&config, &n.server).await;
    let admin = p.admin_addr().expect("admin listener");

    // Two 402s for weather (L402), one paid; the token used twice.
    let first = http_get(p.addr(), "/weather", &[]).await;
    assert_eq!(first.status, 402);
    assert_eq!(http_get(p.addr(), "/weather/today", &[]).await.status, 402);
    let (auth, paid) =
        l402_regtest::pay_challenge(n.alice.as_ref(), first.all("www-authenticate")).await.expect("paid");
    let with = format!("Authorization: {auth}");
    for _ in 0..2 {
        assert_eq!(http_get(p.addr(), "/weather", &[&with]).await.status, 200);
    }
    // A forged preimage on that macaroon: 401 preimage_mismatch.
    let (macaroon, preimage) = auth.rsplit_once(':').expect("macaroon:preimage");
    let other = if preimage.starts_with('0') { "1" } else { "0" }.repeat(64);
    let forged = format!("Authorization: {macaroon}:{other}");
    assert_eq!(http_get(p.addr(), "/weather", &[&forged]).await.status, 401);
    // Revoked: 401 revoked.
    let token_id =
        Credential::parse(auth.as_bytes()).expect("credential").macaroon.l402_identifier().expect("id").token_id;
    let r = reqwest::Client::new()
        .post(format!("http://{admin}/admin/tokens/{}/revoke", token_id.to_hex()))
        .bearer_auth(ADMIN)
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), 200);
    assert_eq!(http_get(p.addr(), "/weather", &[&with]).await.status, 401);

    // News takes the Payment scheme only: a 402, a charge paid and spent, the same charge again a fresh 402.
    let offer = http_get(p.addr(), "/news", &[]).await;
    assert_eq!(offer.status, 402);
    let (charge, charge_paid) =
        l402_regtest::pay_payment_challenge(n.alice.as_ref(), offer.all("www-authenticate")).await.expect("paid");
    let with_charge = format!("Authorization: {charge}");
    assert_eq!(http_get(p.addr(), "/news", &[&with_charge]).await.status, 200);
    assert_eq!(http_get(p.addr(), "/news", &[&with_charge]).await.status, 402);

    // A free service limited to one request: the second is a 429, refused as rate_limited.
    assert_eq!(http_get(p.addr(), "/open", &[]).await.status, 200);
    assert_eq!(http_get(p.addr(), "/open", &[]).await.status, 429);

    let prom_dir = tempfile::tempdir().expect("tmp");
    let prom = start_prometheus(prom_dir.path(), admin).await;
    let s = "instance=\"".to_owned() + &admin.to_string() + "\"";
    let q = |expr: &str| expr.replace("SEL", &s);
    // Challenges: one per 402, by service and scheme.
    expect(&prom, &q("l402_challenges_issued_total{SEL,service=\"weather\",scheme=\"l402\"}"), 2.0).await;
    expect(&prom, &q("l402_challenges_issued_total{SEL,service=\"weather\",scheme=\"payment\"}"), 0.0).await;
    expect(&prom, &q("l402_challenges_issued_total{SEL,service=\"news\",scheme=\"payment\"}"), 2.0).await;
    expect(&prom, &q("sum(l402_challenges_issued_total{SEL})"), 4.0).await;
    expect(&prom, &q("l402_proxy_requests_total{SEL,outcome=\"challenged\"}"), 4.0).await;
    // Paid, and the revenue to the msat.
    expect(&prom, &q("l402_tokens_paid_total{SEL,service=\"weather\"}"), 1.0).await;
    expect(&prom, &q("l402_charges_paid_total{SEL,service=\"news\"}"), 1.0).await;
    expect(&prom, &q("l402_revenue_msat_total{SEL,service=\"weather\"}"), paid.amount.0 as f64).await;
    expect(&prom, &q("l402_revenue_msat_total{SEL,service=\"news\"}"), charge_paid.amount.0 as f64).await;
    assert_eq!((paid.amount.0, charge_paid.amount.0), (100_000, 20_000));
    expect(&prom, &q("l402_tokens_verified_total{SEL}"), 2.0).await;
    expect(&prom, &q("l402_paid_requests_total{SEL,service=\"weather\"}"), 2.0).await;
    expect(&prom, &q("l402_paid_requests_total{SEL,service=\"news\"}"), 1.0).await;
    expect(&prom, &q("l402_paid_requests_total{SEL,service=\"open\"}"), 0.0).await;
    // Refusals by reason, as sent.
    for (service, reason, count) in [
        ("weather", "payment_required", 2.0),
        ("weather", "preimage_mismatch", 1.0),
        ("weather", "revoked", 1.0),
        ("news", "payment_required", 1.0),
        ("news", "charge_spent", 1.0),
        ("open", "rate_limited", 1.0),
    ] {
        let expr = format!("l402_refusals_total{{{s},service=\"{service}\",reason=\"{reason}\"}}");
        expect(&prom, &expr, count).await;
    }
    expect(&prom, &q("count(l402_refusals_total{SEL})"), 6.0).await;
    expect(&prom, &q("l402_proxy_requests_total{SEL,outcome=\"rate_limited\"}"), 1.0).await;
    expect(&prom, &q("l402_free_requests_total{SEL}"), 1.0).await;
    expect(&prom, &q("l402_proxy_requests_total{SEL,outcome=\"refused\"}"), 2.0).await;
    // The node: up, probed, its liquidity as it reports it; no backend error.
    expect(&prom, &q("l402_node_up{SEL}"), 1.0).await;
    expect(&prom, &q("sum(l402_lightning_errors_total{SEL})"), 0.0).await;
    let balance = n.server.channel_balance().await.expect("the node's balances");
    assert!(balance.inbound.0 > 0, "the server's node has inbound liquidity: {balance:?}");
    expect(&prom, &q("l402_channel_inbound_liquidity_msat{SEL}"), balance.inbound.0 as f64).await;
    expect(&prom, &q("l402_channel_outbound_liquidity_msat{SEL}"), balance.outbound.0 as f64).await;
    let fresh = q("time() - l402_node_last_probe_success_timestamp_seconds{SEL} < 30");
    assert!(query(&prom, &fresh).await.is_some(), "a probe succeeded within 30 s");
    expect(&prom, &q("l402_build_info{SEL}"), 1.0).await;
    // The store calls were timed: the stateless token recorded once, the charge spent once, the revocation.
    expect(&prom, &q("l402_store_latency_seconds_count{SEL,operation=\"record\"}"), 1.0).await;
    expect(&prom, &q("l402_store_latency_seconds_count{SEL,operation=\"spend_charge\"}"), 2.0).await;
    expect(&prom, &q("l402_store_latency_seconds_count{SEL,operation=\"revoke_id\"}"), 1.0).await;
    expect(&prom, &q("sum(l402_store_errors_total{SEL})"), 0.0).await;

    // Every alert rule evaluates without error against the live series.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v: Value =
            reqwest::get(format!("{}/api/v1/rules", prom.url)).await.expect("rules").json().await.expect("json");
        let rules: Vec<Value> = v["data"]["groups"]
            .as_array()
            .expect("groups")
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        assert_eq!(rules.len(), 8, "the rules file's 8 rules are loaded: {v}");
        if rules.iter().all(|r| r["health"] == "ok") {
            let firing: Vec<&Value> = rules.iter().filter(|r| r["state"] == "firing").map(|r| &r["name"]).collect();
            assert!(firing.is_empty(), "no alert fires on a healthy proxy: {firing:?}");
            break;
        }
        assert!(Instant::now() < deadline, "rules not all healthy: {v}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // The raw scrape: promtool finds nothing to lint, no secret or token id is in it, and it has every metric
    // the dashboard and the rules use.
    let scrape = reqwest::get(format!("http://{admin}/metrics")).await.expect("scrape").text().await.expect("text");
    let (ok, out) = promtool(&["check", "metrics"], Some(&scrape));
    assert!(ok && out.trim().is_empty(), "promtool check metrics:\n{out}\n{scrape}");
    for secret in [preimage, &macaroon[5..40], &token_id.to_hex(), ADMIN, &charge[8..40]] {
        assert!(!scrape.contains(secret), "{secret} in the scrape");
    }
    let scraped = scraped_names(&scrape);
    let mut used = names_in(&std::fs::read_to_string(repo_file("deploy/prometheus/l402-alerts.yml")).expect("rules"));
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(repo_file("deploy/grafana/l402-proxy.json")).expect("dashboard"))
            .expect("the dashboard is JSON");
    let mut exprs = Vec::new();
    grafana_exprs(&dashboard, &mut exprs);
    assert!(exprs.len() >= 10, "the dashboard's queries: {exprs:?}");
    for e in &exprs {
        used.extend(names_in(e));
    }
    assert!(used.len() >= 15, "{used:?}");
    let missing: Vec<&String> = used.iter().filter(|n| !scraped.contains(*n)).collect();
    assert!(missing.is_empty(), "used by the dashboard or the rules but not in the scrape: {missing:?}\n{scrape}");
    assert_eq!(dashboard["templating"]["list"][0]["type"], "datasource", "the datasource is a variable");

    drop(prom);
    drop(p);
    n.net.shutdown().await;
}

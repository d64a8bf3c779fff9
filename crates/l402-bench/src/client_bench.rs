//! `l402-bench client`: the paying client (`l402_client::Client`, paying from alice's LDK node) against
//! `l402 proxy` as a process (LND-sim in front of the server's LDK node).
//!
//! - Overhead of a request with a cached token: `Client::execute` (token chosen from its SQLite store, header
//!   set, request, last-use recorded) against a plain `reqwest` request carrying the same credential, on the
//!   same `reqwest::Client` and endpoint; interleaved in blocks, median of each.
//! - Time from 402 to 200 with a real payment: each of `--payments` requests goes to a service of its own,
//!   so each needs a fresh token. Per request: the whole `execute` (request, 402, checks, payment over the
//!   channel, retry, 200) and the part from the client's `Paying` report (the 402 received and checked) to
//!   the 200.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use l402_client::{Client, ClientConfig, Progress};
use serde_json::json;

use crate::net::{self, Net};
use crate::output::{emit, median, micros, millis, note, percentile, round};
use crate::proxyproc::{self, ProxyProcess};
use crate::sys::{self, Snapshot};

/// Options of `l402-bench client`.
#[derive(Args, Debug)]
pub(crate) struct ClientArgs {
    /// The `l402` binary (default: `L402_BIN`, then `l402` beside this binary).
    #[arg(long)]
    l402_bin: Option<PathBuf>,
    /// Requests of each kind for the cached-token overhead.
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Paid requests (each a fresh token) for the 402-to-200 time.
    #[arg(long, default_value_t = 50)]
    payments: usize,
}

/// Runs the client benchmark.
pub(crate) async fn run(args: ClientArgs) -> Result<()> {
    let bin = proxyproc::locate_l402(args.l402_bin.clone())?;
    let net = Net::start(true).await?;
    let result = measure(&args, &bin, &net).await;
    net.shutdown().await;
    result
}

async fn measure(args: &ClientArgs, bin: &std::path::Path, net: &Net) -> Result<()> {
    let dir = tempfile::Builder::new().prefix("l402-bench-client-").tempdir()?;
    let tick = sys::clock_tick_us().await;
    let (sim, lnd) = net::lnd_simulator(&net.server, dir.path()).await?;
    let upstream = net::upstream().await?;
    let port = proxyproc::free_port()?;
    let mut config = format!(
        "listen = \"127.0.0.1:{port}\"\nstore = {{ kind = \"sqlite\", path = \"{db}\" }}\n{lightning}\n\
         [[service]]\nname = \"api\"\npath = \"/api/*\"\nupstream = \"http://{upstream}\"\nprice_sat = 10\n",
        db = dir.path().join("proxy.db").display(),
        lightning = proxyproc::lnd_section(&lnd),
    );
    for i in 0..args.payments {
        config.push_str(&format!(
            "\n[[service]]\nname = \"fresh{i}\"\npath = \"/fresh/{i}/*\"\nupstream = \"http://{upstream}\"\nprice_sat = 10\n"
        ));
    }
    let proxy = ProxyProcess::start(bin, &dir.path().join("proxy.toml"), &config, port, "warn").await?;
    let base = format!("http://{}", proxy.addr());

    let paying_at: Arc<Mutex<Option<Instant>>> = Arc::default();
    let mut client_config = ClientConfig::new(dir.path().join("client"));
    // The proxy listens on loopback over plain http: ask for it, as the client refuses it by default.
    client_config.allow_http = true;
    let seen = paying_at.clone();
    client_config.progress = Some(Arc::new(move |p: &Progress| {
        if let (Progress::Paying { .. }, Ok(mut at)) = (p, seen.lock()) {
            at.get_or_insert_with(Instant::now);
        }
    }));
    let client = Client::new(net.alice()?.clone(), client_config)?;

    // The cached token: bought once (a real payment), then reused.
    let url = format!("{base}/api/hello");
    let first = execute(&client, &url).await?;
    anyhow::ensure!(first.1, "the first request to {url} should have paid");
    let origin = l402_client::origin_of(&reqwest::Url::parse(&url)?)?;
    let stored = client.store().blocking(|c| l402_client::tokens::list(c, Some(&origin)))?;
    let credential = stored.first().context("the client stored no token")?.credential()?.header_value();
    let http = client.http().clone();

    note(&format!("cached token: {} requests through Client, {} plain reqwest", args.requests, args.requests));
    let (mut through_client, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..100 {
        execute(&client, &url).await?;
        plain_get(&http, &url, &credential).await?;
    }
    let machine = Snapshot::take(tick);
    let block = 100;
    while through_client.len() < args.requests {
        for _ in 0..block.min(args.requests - through_client.len()) {
            let t = Instant::now();
            let (_, paid) = execute(&client, &url).await?;
            through_client.push(t.elapsed());
            anyhow::ensure!(!paid, "a cached-token request paid");
        }
        for _ in 0..block.min(args.requests - plain.len()) {
            let t = Instant::now();
            plain_get(&http, &url, &credential).await?;
            plain.push(t.elapsed());
        }
    }
    let now = Snapshot::take(tick);
    let foreign = now.foreign_since(&machine).map(|f| round(f, 3));
    let (c_us, p_us) = (median(&micros(&through_client)), median(&micros(&plain)));
    emit(
        "client.cached_token",
        json!({ "client_median_us": round(c_us, 1), "plain_median_us": round(p_us, 1),
                "client_p99_us": round(percentile(&micros(&through_client), 99.0), 1),
                "plain_p99_us": round(percentile(&micros(&plain), 99.0), 1),
                "overhead_us": round(c_us - p_us, 1), "ratio": round(c_us / p_us, 3), "requests": args.requests,
                "foreign_cpu": foreign }),
        &format!(
            "cached token: Client {c_us:.0} µs vs plain reqwest {p_us:.0} µs (median of {} each): +{:.0} µs, x{:.2}",
            args.requests,
            c_us - p_us,
            c_us / p_us
        ),
    );

    note(&format!("{} requests each paying for a fresh token over Lightning", args.payments));
    let (mut total, mut from_402) = (Vec::new(), Vec::new());
    let machine = Snapshot::take(tick);
    for i in 0..args.payments {
        if let Ok(mut at) = paying_at.lock() {
            *at = None;
        }
        let t = Instant::now();
        let (_, paid) = execute(&client, &format!("{base}/fresh/{i}/data")).await?;
        let end = Instant::now();
        anyhow::ensure!(paid, "request {i} should have paid for a fresh token");
        total.push(end - t);
        let paying = paying_at.lock().ok().and_then(|at| *at).context("no Paying report")?;
        from_402.push(end - paying);
    }
    let now = Snapshot::take(tick);
    let (foreign, iowait) = (now.foreign_since(&machine), now.iowait_since(&machine));
    let (t_ms, f_ms) = (median(&millis(&total)), median(&millis(&from_402)));
    emit(
        "client.paid_request",
        json!({ "total_median_ms": round(t_ms, 1), "from_402_median_ms": round(f_ms, 1),
                "total_p90_ms": round(percentile(&millis(&total), 90.0), 1),
                "from_402_p90_ms": round(percentile(&millis(&from_402), 90.0), 1),
                "min_from_402_ms": round(millis(&from_402).iter().copied().fold(f64::INFINITY, f64::min), 1),
                "max_from_402_ms": round(millis(&from_402).iter().copied().fold(0.0, f64::max), 1),
                "payments": args.payments, "foreign_cpu": foreign.map(|f| round(f, 3)),
                "iowait": iowait.map(|f| round(f, 3)) }),
        &format!(
            "fresh token: 402 -> 200 {f_ms:.1} ms, whole request {t_ms:.1} ms (median of {}, real regtest payments)",
            args.payments
        ),
    );
    proxy.stop().await?;
    drop(sim);
    Ok(())
}

/// `Client::execute` of a GET, body read; returns the status and whether it paid.
async fn execute(client: &Client, url: &str) -> Result<(u16, bool)> {
    let request = client.request(reqwest::Method::GET, url).build()?;
    let answer = client.execute(request).await.with_context(|| format!("Client GET {url}"))?;
    let status = answer.response.status().as_u16();
    let body = answer.response.text().await?;
    anyhow::ensure!(status == 200 && body == "hello", "Client GET {url}: {status} {body:?}");
    Ok((status, answer.payment.is_some()))
}

async fn plain_get(http: &reqwest::Client, url: &str, credential: &str) -> Result<()> {
    let resp = http.get(url).header("authorization", credential).send().await?;
    let status = resp.status();
    let body = resp.text().await?;
    anyhow::ensure!(status == 200 && body == "hello", "plain GET {url}: {status} {body:?}");
    Ok(())
}

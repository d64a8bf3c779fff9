//! `l402-bench proxy`: `l402 proxy` as its own process in front of a "hello" upstream, under wrk, beside
//! nginx `proxy_pass` in front of the same upstream.
//!
//! One run measures, with the same wrk load, round after round (each figure is the median over rounds, each
//! ratio or cost the median of per-round ratios; odd rounds take the targets in one order, even rounds in the
//! other): the upstream hit directly, nginx `proxy_pass` with upstream keepalive ([`crate::nginx`]), the
//! proxy with payment off, and the proxy with a valid token (bought with a real Lightning payment from alice
//! through the LND simulator in front of the server's LDK node). Then, on two more proxy processes over the
//! same store, one with the default key cache (or `--rotation-cache` keys) and one with the cache off, the
//! rotation of `--tokens` (1,000,000) distinct valid tokens (see [`crate::tokens`], [`wrk::Rotation`])
//! beside the same rotation over the one paid token repeated as many times. Beside throughput and latency:
//! the CPU time per request of the proxy (of nginx's processes for nginx), the share of the machine other
//! processes used during each run, and the proxy's `VmRSS` at rest and at its peak under load.
//!
//! With `--perf-dir`, after the rounds, one more run of the nginx, payment-off, valid-token and rotation
//! targets each under `perf record` and `perf stat` of the proxy process (of nginx's) ([`crate::profile`]).
//!
//! The proxy runs with `RUST_LOG=warn`: its default `info` level writes a log line per request.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use l402_proto::Msat;
use l402_server::store::{SqliteStore, TokenStore as _};
use l402_server::{MasterKey, MasterKeys};
use serde_json::json;

use crate::net::{self, Net};
use crate::nginx::{self, Nginx};
use crate::output::{emit, median, note, round};
use crate::profile;
use crate::proxyproc::{self, ProxyProcess, RssSampler, rss_kib};
use crate::sys::{self, Snapshot};
use crate::tokens::{self, Keys};
use crate::wrk::{self, Load, Requests, Rotation, Run};

/// Options of `l402-bench proxy`.
#[derive(Args, Debug)]
pub(crate) struct ProxyArgs {
    /// The `l402` binary (default: `L402_BIN`, then `l402` beside this binary).
    #[arg(long)]
    l402_bin: Option<PathBuf>,
    /// wrk threads.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// wrk connections.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// Seconds per measured wrk run.
    #[arg(long, default_value_t = 10)]
    duration: u32,
    /// Unmeasured seconds before each run.
    #[arg(long, default_value_t = 2)]
    warmup: u32,
    /// Rounds of every run (the figure is the median over rounds).
    #[arg(long, default_value_t = 7)]
    rounds: u32,
    /// Distinct valid tokens in rotation.
    #[arg(long, default_value_t = 1_000_000)]
    tokens: usize,
    /// Mint the rotation's tokens the old way (a random root key each, in the store) instead of stateless
    /// ones (the proxy's default: derived from its master key, nothing stored until first use).
    #[arg(long)]
    stored_tokens: bool,
    /// Stateless tokens the rotation proxy's verified-token cache holds (`[tokens] verified_tokens`; default:
    /// twice `--tokens`: above the tokens in use, as the sample configuration advises, with room to spare).
    #[arg(long)]
    verified_tokens: Option<usize>,
    /// Root keys the rotation proxy's cache holds (`key_cache_size`; default: the proxy's default).
    #[arg(long)]
    rotation_cache: Option<usize>,
    /// Worker threads of each proxy process (`[listener] workers`; 0: one per core, the proxy's default).
    #[arg(long, default_value_t = 0)]
    workers: usize,
    /// Record a perf profile of the proxy for the payment-off, valid-token and rotation loads into this
    /// directory (needs `perf`, Debian's linux-perf).
    #[arg(long)]
    perf_dir: Option<PathBuf>,
}

const PRICE: Msat = Msat::from_sat(10);
const QUIET: &str = "warn";

/// Median over rounds of a run's figures.
pub(crate) struct Summary {
    pub(crate) rps: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) rounds: Vec<f64>,
    pub(crate) cpu_us: Option<f64>,
    pub(crate) foreign: Option<f64>,
}

/// The medians over rounds of `runs`.
pub(crate) fn summarize(runs: &[Run]) -> Summary {
    let rps: Vec<f64> = runs.iter().map(Run::rps).collect();
    Summary {
        rps: median(&rps),
        p50_us: median(&runs.iter().map(|r| r.p50_us as f64).collect::<Vec<_>>()),
        p99_us: median(&runs.iter().map(|r| r.p99_us as f64).collect::<Vec<_>>()),
        rounds: rps.iter().map(|r| round(*r, 1)).collect(),
        cpu_us: runs.iter().map(|r| r.proxy_cpu_us).collect::<Option<Vec<f64>>>().map(|c| median(&c)),
        foreign: runs.iter().map(|r| r.foreign_cpu).collect::<Option<Vec<f64>>>().map(|c| median(&c)),
    }
}

/// CPU time used so far by all of `pids`, µs (None if any cannot be read, or none is given).
fn cpu_of(pids: &[u32], tick: f64) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|p| sys::process_cpu_us(*p, tick)).sum()
}

/// A warm-up, then a measured wrk run, with (for the proxy's pids) their CPU time per request, and the share
/// of the machine other processes used meanwhile.
pub(crate) async fn load_run(load: &Load, url: &str, requests: Requests<'_>, pids: &[u32], tick: f64) -> Result<Run> {
    wrk::warm_up(load, url, requests).await?;
    let proxy_before = cpu_of(pids, tick);
    let before = Snapshot::take(tick);
    let mut run = wrk::measured(load, url, requests).await?;
    let after = Snapshot::take(tick);
    let proxy_after = cpu_of(pids, tick);
    run.proxy_cpu_us = proxy_before.zip(proxy_after).map(|(b, a)| (a - b) / run.requests.max(1) as f64);
    run.foreign_cpu = after.foreign_since(&before);
    Ok(run)
}

/// Prints a load figure: medians over rounds, every run, the wrk flags.
pub(crate) fn emit_load(figure: &str, what: &str, runs: &[Run], load: &Load) {
    let s = summarize(runs);
    emit(
        figure,
        json!({
            "rps": round(s.rps, 1), "p50_us": s.p50_us, "p99_us": s.p99_us, "rps_rounds": s.rounds,
            "runs": runs.iter().map(Run::json).collect::<Vec<_>>(), "wrk": load.flags(),
            "warmup_s": load.warmup_secs, "proxy_cpu_us": s.cpu_us.map(|c| round(c, 2)),
            "foreign_cpu": s.foreign.map(|c| round(c, 3)),
        }),
        &format!(
            "{what}: {:.0} req/s, p50 {:.0} µs, p99 {:.0} µs (median of {} rounds, wrk {})",
            s.rps,
            s.p50_us,
            s.p99_us,
            runs.len(),
            load.flags()
        ),
    );
}

/// The order of `n` targets in a round: 0..n in odd rounds, reversed in even ones.
pub(crate) fn order(round: u32, n: usize) -> Vec<usize> {
    if round % 2 == 1 { (0..n).collect() } else { (0..n).rev().collect() }
}

/// Per round, `a/b`; the median of those, and each.
fn ratio(a: &[Run], b: &[Run]) -> (f64, Vec<f64>) {
    let per: Vec<f64> = a.iter().zip(b).map(|(a, b)| a.rps() / b.rps()).collect();
    (median(&per), per.iter().map(|c| round(*c, 4)).collect())
}

/// Per round, `1 - a/b`; the median of those, and each.
fn cost(a: &[Run], b: &[Run]) -> (f64, Vec<f64>) {
    let per: Vec<f64> = a.iter().zip(b).map(|(a, b)| 1.0 - a.rps() / b.rps()).collect();
    (median(&per), per.iter().map(|c| round(*c, 4)).collect())
}

/// One target of a round: what wrk loads, with what, and whose CPU counts.
struct Target<'a> {
    url: String,
    requests: Requests<'a>,
    pids: Vec<u32>,
    runs: Vec<Run>,
}

impl<'a> Target<'a> {
    fn new(url: String, requests: Requests<'a>, pids: Vec<u32>) -> Self {
        Self { url, requests, pids, runs: Vec::new() }
    }
}

/// `rounds` rounds over `targets`, odd rounds in order, even rounds reversed.
async fn rounds(args: &ProxyArgs, load: &Load, tick: f64, what: &str, targets: &mut [Target<'_>]) -> Result<()> {
    for r in 1..=args.rounds {
        note(&format!("round {r}/{}: {what}", args.rounds));
        for i in order(r, targets.len()) {
            let t = &mut targets[i];
            let run = load_run(load, &t.url, t.requests, &t.pids, tick).await.with_context(|| t.url.clone())?;
            t.runs.push(run);
        }
    }
    Ok(())
}

/// Waits (at most 10 minutes) until the store at `db` counts at least `tokens` tokens paid, or its count has
/// stood still for 5 s, while every process of `pids` used under 2% of a core over a second; returns the count.
/// The count can stop short of `tokens`: a proxy's record queue is bounded and drops what overflows it (such a
/// token is recorded at a later use), so waiting for every token would wait forever.
async fn settle(db: &Path, tokens: u64, pids: &[u32], tick: f64) -> Result<u64> {
    let store = SqliteStore::open(db).context("opening the proxies' store")?;
    let deadline = Instant::now() + std::time::Duration::from_secs(600);
    let (mut last, mut still) = (0u64, 0u32);
    loop {
        let before: Vec<Option<f64>> = pids.iter().map(|p| sys::process_cpu_us(*p, tick)).collect();
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        let idle = pids
            .iter()
            .zip(&before)
            .all(|(p, b)| b.zip(sys::process_cpu_us(*p, tick)).is_some_and(|(b, a)| a - b < 20_000.0));
        let paid: u64 = store.revenue().await.context("the store's revenue")?.iter().map(|r| r.tokens_paid).sum();
        still = if paid == last { still + 1 } else { 0 };
        last = paid;
        if idle && (paid >= tokens || still >= 5) {
            return Ok(paid);
        }
        anyhow::ensure!(Instant::now() < deadline, "the rotated tokens were not all recorded in 10 minutes ({paid})");
    }
}

/// Runs the proxy benchmark.
pub(crate) async fn run(args: ProxyArgs) -> Result<()> {
    let bin = proxyproc::locate_l402(args.l402_bin.clone())?;
    let nginx_bin = nginx::locate()?;
    if args.perf_dir.is_some() {
        profile::check().await?;
    }
    let net = Net::start(true).await?;
    let result = measure(&args, &bin, &nginx_bin, &net).await;
    net.shutdown().await;
    result
}

async fn measure(args: &ProxyArgs, bin: &Path, nginx_bin: &Path, net: &Net) -> Result<()> {
    let load = Load {
        threads: args.threads,
        connections: args.connections,
        duration_secs: args.duration,
        warmup_secs: args.warmup,
    };
    let dir = tempfile::Builder::new().prefix("l402-bench-proxy-").tempdir()?;
    let (sim, lnd) = net::lnd_simulator(&net.server, dir.path()).await?;
    let upstream = net::upstream().await?;
    let db = dir.path().join("l402.db");
    let tick = sys::clock_tick_us().await;

    let kind = if args.stored_tokens { "stored" } else { "stateless" };
    note(&format!("minting {} {kind} tokens (not paid over Lightning)", args.tokens));
    let tokens_file = dir.path().join("tokens.txt");
    let started = Instant::now();
    let keys = if args.stored_tokens {
        Keys::Store { store: SqliteStore::open(&db).context("opening the proxy's store")?, db: db.clone() }
    } else {
        // The key file the proxies load by default for a SQLite store at `db` (`[tokens]`).
        let mut name = db.file_name().unwrap_or_default().to_os_string();
        name.push(".master-key");
        let key = MasterKey::load_or_create(&db.with_file_name(name)).context("the master key")?;
        Keys::MasterSecret(MasterKeys::single(key))
    };
    tokens::mint(&keys, "api", PRICE, args.tokens, &tokens_file).await?;
    drop(keys);
    let minted_in = started.elapsed().as_secs_f64();
    emit(
        "proxy.minting",
        json!({ "tokens": args.tokens, "seconds": round(minted_in, 2), "keys": kind }),
        &if args.stored_tokens {
            format!(
                "{} tokens minted and recorded in the store as paid in {minted_in:.1} s ({:.0} a second)",
                args.tokens,
                args.tokens as f64 / minted_in.max(1e-9)
            )
        } else {
            format!(
                "{} stateless tokens minted under the proxies' master key in {minted_in:.1} s ({:.0} a second)",
                args.tokens,
                args.tokens as f64 / minted_in.max(1e-9)
            )
        },
    );

    let config = |port: u16, cache: &str| {
        format!(
            "listen = \"127.0.0.1:{port}\"\n{cache}\nstore = {{ kind = \"sqlite\", path = \"{db}\" }}\n{lightning}\n\
             [[service]]\nname = \"api\"\npath = \"/api/*\"\nupstream = \"http://{upstream}\"\nprice_msat = {price}\n\n\
             [[service]]\nname = \"open\"\npath = \"/open/*\"\nupstream = \"http://{upstream}\"\npayment = false\n\n\
             [listener]\nworkers = {workers}\n",
            db = db.display(),
            workers = args.workers,
            lightning = proxyproc::lnd_section(&lnd),
            price = PRICE.0,
        )
    };

    // Proxy A: defaults.
    let port = proxyproc::free_port()?;
    let proxy = ProxyProcess::start(bin, &dir.path().join("a.toml"), &config(port, ""), port, QUIET).await?;
    let pid = proxy.pid();
    let base = format!("http://{}", proxy.addr());
    let rss_started = rss_kib(pid).unwrap_or(0);
    let http = reqwest::Client::new();
    let alice = net.alice()?;
    let (token, paid_in) = net::buy_token(&http, &format!("{base}/api/hello"), alice.as_ref()).await?;
    net::expect_ok(&http, &format!("{base}/api/hello"), Some(&token)).await?;
    net::expect_ok(&http, &format!("{base}/open/hello"), None).await?;
    net::expect_ok(&http, &format!("http://{upstream}/hello"), None).await?;
    emit(
        "proxy.real_payment",
        json!({ "ms": round(paid_in.as_secs_f64() * 1e3, 1) }),
        &format!(
            "the token used below was bought with a real payment (alice -> LND-sim -> server LDK node): {:.1} ms",
            paid_in.as_secs_f64() * 1e3
        ),
    );
    let rss_rest = rss_kib(pid).unwrap_or(0);

    // nginx in front of the same upstream.
    let nginx_dir = dir.path().join("nginx");
    std::fs::create_dir_all(&nginx_dir)?;
    let nginx_port = proxyproc::free_port()?;
    let nginx = Nginx::start(nginx_bin, &nginx_dir, upstream, nginx_port).await?;
    let nginx_url = format!("http://{}/hello", nginx.addr());
    net::expect_ok(&http, &nginx_url, None).await.context("nginx in front of the upstream")?;
    let nginx_version = nginx_version(nginx_bin).await;
    emit(
        "proxy.nginx_setup",
        json!({
            "version": nginx_version,
            "workers": nginx.worker_count(),
            "keepalive": 64,
            "proxy_workers": args.workers,
        }),
        &format!(
            "{nginx_version}: proxy_pass to the same upstream, {} workers, upstream keepalive 64, no access log",
            nginx.worker_count()
        ),
    );

    let plain = dir.path().join("plain.lua");
    let with_token = dir.path().join("token.lua");
    wrk::static_script(&plain, None)?;
    wrk::static_script(&with_token, Some(&token))?;
    let mut targets = [
        Target::new(format!("http://{upstream}/hello"), Requests::Fixed(&plain), Vec::new()),
        Target::new(nginx_url.clone(), Requests::Fixed(&plain), nginx.pids()),
        Target::new(format!("{base}/open/hello"), Requests::Fixed(&plain), vec![pid]),
        Target::new(format!("{base}/api/hello"), Requests::Fixed(&with_token), vec![pid]),
    ];
    let sampler = RssSampler::start(pid);
    rounds(args, &load, tick, "upstream direct, nginx, proxy payment off, proxy valid token", &mut targets).await?;
    let peak = sampler.peak_kib();
    drop(sampler);
    let nginx_kib: u64 = nginx.pids().iter().filter_map(|p| rss_kib(*p)).sum();
    if let Some(perf) = &args.perf_dir {
        std::fs::create_dir_all(perf)?;
        for (name, t) in [("nginx", &targets[1]), ("payment-off", &targets[2]), ("valid-token", &targets[3])] {
            profile::record(perf, name, &load, &t.url, t.requests, &t.pids).await?;
        }
    }
    nginx.stop().await?;
    let hwm = proxyproc::proc_status_kib(pid, "VmHWM").unwrap_or(0);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let rss_after = rss_kib(pid).unwrap_or(0);
    proxy.stop().await?;

    let [direct, via_nginx, off, paid] = targets.map(|t| t.runs);
    emit_load("proxy.upstream_direct", "upstream hit directly", &direct, &load);
    emit_load("proxy.nginx", "nginx proxy_pass (upstream keepalive)", &via_nginx, &load);
    emit_load("proxy.payment_off", "proxy, payment off", &off, &load);
    emit_load("proxy.valid_token", "proxy, valid token", &paid, &load);
    let (paywall, per) = cost(&paid, &off);
    emit(
        "proxy.paywall_cost",
        json!({ "value": round(paywall, 4), "rounds": per, "target": 0.05 }),
        &format!("paywall cost = 1 - token/off = {:.1}% (target < 5%)", paywall * 100.0),
    );
    let (off_nginx, per_off) = ratio(&off, &via_nginx);
    let (token_nginx, per_token) = ratio(&paid, &via_nginx);
    let (direct_nginx, per_direct) = ratio(&direct, &via_nginx);
    emit(
        "proxy.vs_nginx",
        json!({ "off": round(off_nginx, 4), "off_rounds": per_off, "token": round(token_nginx, 4),
                "token_rounds": per_token, "direct": round(direct_nginx, 4), "direct_rounds": per_direct,
                "target_off": 1.0 }),
        &format!(
            "against nginx (medians of per-round ratios of req/s): payment off x{off_nginx:.2} (target >= 1), valid \
             token x{token_nginx:.2}, upstream direct x{direct_nginx:.2}"
        ),
    );
    // Paired per round, like the throughput cost: the proxy's CPU per request drifts over a run.
    let pairs: Vec<(f64, f64)> =
        off.iter().zip(&paid).filter_map(|(o, t)| o.proxy_cpu_us.zip(t.proxy_cpu_us)).collect();
    if !pairs.is_empty() {
        let extra: Vec<f64> = pairs.iter().map(|(o, t)| t - o).collect();
        let shares: Vec<f64> = pairs.iter().map(|(o, t)| t / o - 1.0).collect();
        let (extra_us, share) = (median(&extra), median(&shares));
        let (off_cpu, token_cpu) = (summarize(&off).cpu_us.unwrap_or(0.0), summarize(&paid).cpu_us.unwrap_or(0.0));
        emit(
            "proxy.paywall_cpu",
            json!({ "off_us": round(off_cpu, 2), "token_us": round(token_cpu, 2), "extra_us": round(extra_us, 2),
                    "share": round(share, 4), "rounds": shares.iter().map(|s| round(*s, 4)).collect::<Vec<_>>() }),
            &format!(
                "proxy CPU per request (user + system, /proc/PID/stat; medians {off_cpu:.1} µs off, {token_cpu:.1} µs \
                 token): the paywall adds {extra_us:.1} µs, {:.1}% (medians of per-round differences and ratios)",
                share * 100.0
            ),
        );
    }
    let (bare, per) = cost(&off, &direct);
    emit(
        "proxy.proxy_cost",
        json!({ "value": round(bare, 4), "rounds": per }),
        &format!("proxy cost = 1 - off/direct = {:.1}%", bare * 100.0),
    );
    emit(
        "proxy.memory",
        json!({ "started_kib": rss_started, "rest_kib": rss_rest, "peak_load_kib": peak, "vmhwm_kib": hwm,
                "after_load_kib": rss_after, "nginx_kib": nginx_kib }),
        &format!(
            "proxy VmRSS: {:.1} MiB at rest (after the paid request), peak {:.1} MiB under load, {:.1} MiB 2 s after \
             (nginx, master and workers together: {:.1} MiB)",
            rss_rest as f64 / 1024.0,
            peak as f64 / 1024.0,
            rss_after as f64 / 1024.0,
            nginx_kib as f64 / 1024.0
        ),
    );

    // The rotations: every token once in turn, and the paid token repeated as many times (the control).
    let tokens_text = std::fs::read_to_string(&tokens_file)?;
    let many = Rotation::write(dir.path(), "rotate-many", tokens_text.lines().map(str::to_owned), load.threads)?;
    let one = Rotation::write(
        dir.path(),
        "rotate-one",
        std::iter::repeat_n(token.clone(), args.tokens.max(load.threads as usize)),
        load.threads,
    )?;
    // Proxy B (the default caches, or `--rotation-cache`) and proxy C (every cache off: each request verified
    // whole, a stored token read from the store), both over the same store, both running; each round loads one
    // target at a time.
    let port_b = proxyproc::free_port()?;
    let cache = args.rotation_cache.map(|c| format!("key_cache_size = {c}")).unwrap_or_default();
    let verified = args.verified_tokens.unwrap_or(2 * args.tokens);
    let config_b = format!("{}\n[tokens]\nverified_tokens = {verified}\n", config(port_b, &cache));
    let proxy_b = ProxyProcess::start(bin, &dir.path().join("b.toml"), &config_b, port_b, QUIET).await?;
    let port_c = proxyproc::free_port()?;
    // Every cache off: the stored tokens' (`key_cache_ttl_ms`) and the stateless tokens' (`verified_tokens`).
    const CACHES_OFF: &str = "key_cache_ttl_ms = 0, [tokens] verified_tokens = 0";
    let off_cache = format!("{}\n[tokens]\nverified_tokens = 0\n", config(port_c, "key_cache_ttl_ms = 0"));
    let proxy_c = ProxyProcess::start(bin, &dir.path().join("c.toml"), &off_cache, port_c, QUIET).await?;
    let (pid_b, pid_c) = (proxy_b.pid(), proxy_c.pid());
    let (url_b, url_c) =
        (format!("http://{}/api/hello", proxy_b.addr()), format!("http://{}/api/hello", proxy_c.addr()));
    // A sample of the minted tokens is checked on both (the rest is checked by wrk: any non-2xx aborts).
    for line in tokens_text.lines().step_by((args.tokens / 20).max(1)) {
        net::expect_ok(&http, &url_b, Some(line)).await.context("a minted token")?;
        net::expect_ok(&http, &url_c, Some(line)).await.context("a minted token")?;
    }
    drop(tokens_text);
    // Every token used once on each proxy before measuring: a token's first use is when the proxy records it
    // (a stateless one: its row is written then), which is not the steady state measured.
    let started = Instant::now();
    // ...and their records written: the store counts every rotated token paid, and both proxies are idle (the
    // record writer works off the request path, and would otherwise take CPU from the first rounds). A
    // proxy's record queue is bounded: what overflows it is recorded at a later use, so the default-cache
    // proxy goes through the tokens again (at most 4 passes in all) until the store has every one of them;
    // then the cache-off proxy has its pass (its records find the rows written).
    let (mut first_b, mut passes_b, mut recorded) = (0, 0, 0);
    while passes_b < 4 && recorded < args.tokens as u64 {
        first_b += wrk::pass_once(&load, &url_b, &many).await?;
        passes_b += 1;
        recorded = settle(&db, args.tokens as u64, &[pid_b, pid_c], tick).await?;
    }
    let first_c = wrk::pass_once(&load, &url_c, &many).await?;
    settle(&db, args.tokens as u64, &[pid_b, pid_c], tick).await?;
    emit(
        "proxy.rotation_first_pass",
        json!({ "requests_b": first_b, "requests_c": first_c, "seconds": round(started.elapsed().as_secs_f64(), 1),
                "recorded": recorded, "passes_b": passes_b }),
        &format!(
            "every token used on each rotation proxy before measuring ({first_b} requests in {passes_b} pass(es) \
             until {recorded} were recorded, + {first_c}; {:.0} s)",
            started.elapsed().as_secs_f64()
        ),
    );
    let rss_rest_b = rss_kib(pid_b).unwrap_or(0);
    let mut targets = [
        Target::new(url_b.clone(), Requests::Rotating(&one), vec![pid_b]),
        Target::new(url_b.clone(), Requests::Rotating(&many), vec![pid_b]),
        Target::new(url_c, Requests::Rotating(&many), vec![pid_c]),
    ];
    let sampler = RssSampler::start(pid_b);
    let what =
        format!("rotation over 1 token, over {} tokens, over {} tokens with the cache off", args.tokens, args.tokens);
    rounds(args, &load, tick, &what, &mut targets).await?;
    let peak_b = sampler.peak_kib();
    drop(sampler);
    if let Some(perf) = &args.perf_dir {
        profile::record(perf, "rotation", &load, &url_b, Requests::Rotating(&many), &[pid_b]).await?;
    }
    proxy_b.stop().await?;
    proxy_c.stop().await?;
    drop(sim);

    let cache_label = format!(
        "{}, verified_tokens = {verified}",
        args.rotation_cache.map_or_else(|| "default key cache".to_owned(), |c| format!("key cache of {c} keys"))
    );
    let [single, many_runs, uncached] = targets.map(|t| t.runs);
    emit_load("proxy.rotate_1_token", "proxy, the rotation script over the 1 paid token", &single, &load);
    emit_load(
        "proxy.rotate_many_tokens",
        &format!("proxy, {} tokens in rotation, {cache_label}", args.tokens),
        &many_runs,
        &load,
    );
    emit_load(
        "proxy.rotate_many_no_cache",
        &format!("proxy, {} tokens in rotation, every cache off ({CACHES_OFF})", args.tokens),
        &uncached,
        &load,
    );
    let sent = many.len();
    let (rotation, per) = cost(&many_runs, &single);
    emit(
        "proxy.rotation_cost",
        json!({ "value": round(rotation, 4), "rounds": per, "tokens": args.tokens, "distinct": sent,
                "cache": args.rotation_cache, "verified_tokens": verified, "target": 0.05 }),
        &format!("cost of {} tokens over 1 (1 - many/one) = {:.1}% (target < 5%)", args.tokens, rotation * 100.0),
    );
    let (rotation_off, per) = cost(&uncached, &single);
    emit(
        "proxy.rotation_cost_no_cache",
        json!({ "value": round(rotation_off, 4), "rounds": per, "off": CACHES_OFF }),
        &format!("cost of {} tokens with the cache off (1 - uncached/one) = {:.1}%", args.tokens, rotation_off * 100.0),
    );
    emit(
        "proxy.memory_rotation",
        json!({ "rest_kib": rss_rest_b, "peak_load_kib": peak_b, "tokens": args.tokens }),
        &format!(
            "rotation proxy VmRSS: {:.1} MiB at rest, peak {:.1} MiB under load",
            rss_rest_b as f64 / 1024.0,
            peak_b as f64 / 1024.0
        ),
    );
    let paywall_ok = if paywall < 0.05 { "within" } else { "above" };
    let nginx_ok = if off_nginx >= 1.0 { "at least" } else { "below" };
    note(&format!(
        "done: paywall cost {:.1}% ({paywall_ok} the 5% target), payment off x{off_nginx:.2} nginx ({nginx_ok} nginx), \
         {} tokens cost {:.1}%",
        paywall * 100.0,
        args.tokens,
        rotation * 100.0
    ));
    Ok(())
}

/// `nginx -v`'s answer ("nginx version: nginx/1.22.1" -> "nginx/1.22.1").
async fn nginx_version(bin: &Path) -> String {
    let out = tokio::process::Command::new(bin).arg("-v").output().await;
    out.ok()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().trim_start_matches("nginx version: ").to_owned())
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "nginx".to_owned())
}

//! `l402-bench proxy`: `l402 proxy` as its own process in front of a "hello" upstream, under wrk.
//!
//! One run measures, with the same wrk load, round after round (each figure is the median over rounds, each
//! cost the median of per-round ratios; odd rounds take the targets in one order, even rounds in the other):
//! the upstream hit directly, the proxy with payment off, and the proxy with a valid token (bought with a
//! real Lightning payment from alice through the LND simulator in front of the server's LDK node). Then, with
//! two more proxy processes over the same store, one with a key cache of `--rotation-cache` keys and one with
//! the cache off, the rotation of 10,000 distinct valid tokens (see [`crate::tokens`]) beside the same
//! rotation script over the one paid token. Beside throughput and latency: the proxy's CPU time per request,
//! the share of the machine other processes used during each run, and the proxy's `VmRSS` at rest and at its
//! peak under load.
//!
//! The proxy runs with `RUST_LOG=warn`: its default `info` level writes a log line per request.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use l402_proto::Msat;
use serde_json::json;

use crate::net::{self, Net};
use crate::output::{emit, median, note, round};
use crate::proxyproc::{self, ProxyProcess, RssSampler, rss_kib};
use crate::sys::{self, Snapshot};
use crate::tokens;
use crate::wrk::{self, Load, Run};

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
    #[arg(long, default_value_t = 10_000)]
    tokens: usize,
    /// Root keys the rotation proxy's cache holds (`key_cache_size`; far fewer than `--tokens`).
    #[arg(long, default_value_t = 1_000)]
    rotation_cache: usize,
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

/// A warm-up, then a measured wrk run, with (for a proxy pid) the proxy's CPU time per request, and the share
/// of the machine other processes used meanwhile.
pub(crate) async fn load_run(load: &Load, url: &str, script: &Path, pid: Option<u32>, tick: f64) -> Result<Run> {
    wrk::warm_up(load, url, script).await?;
    let proxy_before = pid.and_then(|p| sys::process_cpu_us(p, tick));
    let before = Snapshot::take(tick);
    let mut run = wrk::measured(load, url, script).await?;
    let after = Snapshot::take(tick);
    let proxy_after = pid.and_then(|p| sys::process_cpu_us(p, tick));
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

/// Per round, `1 - a/b`; the median of those.
fn cost(a: &[Run], b: &[Run]) -> (f64, Vec<f64>) {
    let per: Vec<f64> = a.iter().zip(b).map(|(a, b)| 1.0 - a.rps() / b.rps()).collect();
    (median(&per), per.iter().map(|c| round(*c, 4)).collect())
}

/// Runs the proxy benchmark.
pub(crate) async fn run(args: ProxyArgs) -> Result<()> {
    let bin = proxyproc::locate_l402(args.l402_bin.clone())?;
    let net = Net::start(true).await?;
    let result = measure(&args, &bin, &net).await;
    net.shutdown().await;
    result
}

async fn measure(args: &ProxyArgs, bin: &Path, net: &Net) -> Result<()> {
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

    note(&format!("minting {} tokens into the proxy's store (not paid over Lightning)", args.tokens));
    let tokens_file = dir.path().join("tokens.txt");
    tokens::mint_into_store(&db, "api", PRICE, args.tokens, &tokens_file).await?;

    let config = |port: u16, cache: &str| {
        format!(
            "listen = \"127.0.0.1:{port}\"\n{cache}\nstore = {{ kind = \"sqlite\", path = \"{db}\" }}\n{lightning}\n\
             [[service]]\nname = \"api\"\npath = \"/api/*\"\nupstream = \"http://{upstream}\"\nprice_msat = {price}\n\n\
             [[service]]\nname = \"open\"\npath = \"/open/*\"\nupstream = \"http://{upstream}\"\npayment = false\n",
            db = db.display(),
            lightning = proxyproc::lnd_section(&lnd),
            price = PRICE.0,
        )
    };

    // Proxy A: defaults (key cache 100,000 keys, 1 s TTL).
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

    let scripts = dir.path();
    let plain = scripts.join("plain.lua");
    let with_token = scripts.join("token.lua");
    wrk::static_script(&plain, None)?;
    wrk::static_script(&with_token, Some(&token))?;
    let (mut direct, mut off, mut paid) = (Vec::new(), Vec::new(), Vec::new());
    let sampler = RssSampler::start(pid);
    for round in 1..=args.rounds {
        note(&format!("round {round}/{}: upstream direct, proxy payment off, proxy valid token", args.rounds));
        // Odd rounds in one order, even rounds in the other, so that neither target always goes first.
        for target in order(round, 3) {
            match target {
                0 => direct.push(load_run(&load, &format!("http://{upstream}/hello"), &plain, None, tick).await?),
                1 => off.push(load_run(&load, &format!("{base}/open/hello"), &plain, Some(pid), tick).await?),
                _ => paid.push(load_run(&load, &format!("{base}/api/hello"), &with_token, Some(pid), tick).await?),
            }
        }
    }
    let peak = sampler.peak_kib();
    drop(sampler);
    let hwm = proxyproc::proc_status_kib(pid, "VmHWM").unwrap_or(0);
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let rss_after = rss_kib(pid).unwrap_or(0);
    proxy.stop().await?;

    emit_load("proxy.upstream_direct", "upstream hit directly", &direct, &load);
    emit_load("proxy.payment_off", "proxy, payment off", &off, &load);
    emit_load("proxy.valid_token", "proxy, valid token", &paid, &load);
    let (paywall, per) = cost(&paid, &off);
    emit(
        "proxy.paywall_cost",
        json!({ "value": round(paywall, 4), "rounds": per, "target": 0.10 }),
        &format!("paywall cost = 1 - token/off = {:.1}% (target < 10%)", paywall * 100.0),
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
                "after_load_kib": rss_after }),
        &format!(
            "proxy VmRSS: {:.1} MiB at rest (after the paid request), peak {:.1} MiB under load, {:.1} MiB 2 s after",
            rss_rest as f64 / 1024.0,
            peak as f64 / 1024.0,
            rss_after as f64 / 1024.0
        ),
    );

    // Proxy B: the same store, a key cache far smaller than the token set.
    let rotate_all = scripts.join("rotate.lua");
    wrk::rotating_script(&rotate_all, &tokens_file)?;
    let one = scripts.join("one-token.txt");
    std::fs::write(&one, format!("{token}\n"))?;
    let rotate_one = scripts.join("rotate-one.lua");
    wrk::rotating_script(&rotate_one, &one)?;
    // Proxy B (a key cache far smaller than the token set) and proxy C (the cache off: every request reads the
    // store), both over the same store, both running; each round loads one target at a time.
    let port_b = proxyproc::free_port()?;
    let cache = format!("key_cache_size = {}", args.rotation_cache);
    let proxy_b = ProxyProcess::start(bin, &dir.path().join("b.toml"), &config(port_b, &cache), port_b, QUIET).await?;
    let port_c = proxyproc::free_port()?;
    let off_cache = config(port_c, "key_cache_ttl_ms = 0");
    let proxy_c = ProxyProcess::start(bin, &dir.path().join("c.toml"), &off_cache, port_c, QUIET).await?;
    let (pid_b, pid_c) = (proxy_b.pid(), proxy_c.pid());
    let (url_b, url_c) =
        (format!("http://{}/api/hello", proxy_b.addr()), format!("http://{}/api/hello", proxy_c.addr()));
    for line in std::fs::read_to_string(&tokens_file)?.lines().step_by((args.tokens / 20).max(1)) {
        net::expect_ok(&http, &url_b, Some(line)).await.context("a minted token")?;
        net::expect_ok(&http, &url_c, Some(line)).await.context("a minted token")?;
    }
    let rss_rest_b = rss_kib(pid_b).unwrap_or(0);
    let (mut single, mut many, mut uncached) = (Vec::new(), Vec::new(), Vec::new());
    let sampler = RssSampler::start(pid_b);
    for round in 1..=args.rounds {
        note(&format!(
            "round {round}/{}: rotation over 1 token, over {} tokens, over {} tokens with the cache off",
            args.rounds, args.tokens, args.tokens
        ));
        for target in order(round, 3) {
            match target {
                0 => single.push(load_run(&load, &url_b, &rotate_one, Some(pid_b), tick).await?),
                1 => many.push(load_run(&load, &url_b, &rotate_all, Some(pid_b), tick).await?),
                _ => uncached.push(load_run(&load, &url_c, &rotate_all, Some(pid_c), tick).await?),
            }
        }
    }
    let peak_b = sampler.peak_kib();
    drop(sampler);
    proxy_b.stop().await?;
    proxy_c.stop().await?;
    drop(sim);

    emit_load("proxy.rotate_1_token", "proxy, the rotation script over the 1 paid token", &single, &load);
    emit_load(
        "proxy.rotate_many_tokens",
        &format!("proxy, {} tokens in rotation, key cache of {} keys", args.tokens, args.rotation_cache),
        &many,
        &load,
    );
    emit_load(
        "proxy.rotate_many_no_cache",
        &format!("proxy, {} tokens in rotation, key cache off", args.tokens),
        &uncached,
        &load,
    );
    let (rotation, per) = cost(&many, &single);
    emit(
        "proxy.rotation_cost",
        json!({ "value": round(rotation, 4), "rounds": per, "tokens": args.tokens, "cache": args.rotation_cache }),
        &format!("cost of {} tokens over 1 (1 - many/one) = {:.1}%", args.tokens, rotation * 100.0),
    );
    let (rotation_off, per) = cost(&uncached, &single);
    emit(
        "proxy.rotation_cost_no_cache",
        json!({ "value": round(rotation_off, 4), "rounds": per }),
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
    let paywall_ok = if paywall < 0.10 { "within" } else { "above" };
    note(&format!("done: paywall cost {:.1}% ({paywall_ok} the 10% target)", paywall * 100.0));
    Ok(())
}

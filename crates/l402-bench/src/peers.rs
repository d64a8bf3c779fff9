//! `l402-bench peers`: `l402 proxy` side by side with Aperture (Lightning Labs' L402 proxy, v0.5.0, built by
//! `scripts/install-peers.sh`), both minting invoices on the same real LND node, in front of the same
//! upstream, on the same machine in the same run; and real Lightning payment latency between LND and LDK.
//!
//! The network: bitcoind; LND `operator` (both proxies' invoices), LND `payer` (buys the tokens) with a channel
//! to the operator and one to LDK `alice`; LDK `alice` with a channel to LDK `bob`.
//!
//! 1. A valid token for each proxy, bought with a real payment payer -> operator; then the same wrk load on
//!    both, round after round (odd rounds ours first, even rounds Aperture first): req/s, p50, p99 (medians over
//!    rounds; the ratios ours/Aperture are medians of per-round ratios), each proxy process's CPU time per
//!    request (/proc/PID/stat), its `VmRSS` at rest (after the paid request) and at its peak under load.
//! 2. Challenges: a request without credential, answered 402 with a fresh invoice from the operator LND, one
//!    at a time and from `--concurrency` tasks at once, in rounds alternating the order; each 402 is parsed and
//!    its invoice checked to be new.
//! 3. Payment latency, LND -> LDK (payer -> alice), LND -> LND (payer -> operator), LDK -> LDK (alice -> bob):
//!    `--payments` payments each, one at a time, with [`l402_regtest::payments::timed_payments`].
//!
//! Logging: Aperture runs at `info` as `l402-regtest` starts it, which writes a line per request (to its
//! console, and to its log file); `l402 proxy` runs at `--l402-log` (default `info`: also a line per request).
//!
//! lnget (Lightning Labs' L402 client) is not measured: the Go module proxy this machine reaches refuses
//! `github.com/lightninglabs/lnget` at every version (403), so it cannot be built here.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Args;
use l402_ldk::LdkNode;
use l402_lightning::{InvoiceIssuer, Payer};
use l402_regtest::payments::{latency_summary, timed_payments};
use l402_regtest::{Aperture, ApertureService, Lnd, LndMacaroon, Regtest};
use serde_json::json;

use crate::net::{self, LndFiles};
use crate::output::{emit, median, micros, note, percentile, round};
use crate::proxy_bench::{emit_load, load_run, order};
use crate::proxyproc::{self, ProxyProcess, RssSampler, rss_kib};
use crate::sys::{self, Snapshot};
use crate::wrk::{self, Load, Requests, Run};

/// Options of `l402-bench peers`.
#[derive(Args, Debug)]
pub(crate) struct PeersArgs {
    /// The `l402` binary (default: `L402_BIN`, then `l402` beside this binary).
    #[arg(long)]
    l402_bin: Option<std::path::PathBuf>,
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
    /// Rounds of the wrk runs (each round loads both proxies, one after the other).
    #[arg(long, default_value_t = 7)]
    rounds: u32,
    /// Challenges per measurement (per proxy, per mode, per round).
    #[arg(long, default_value_t = 300)]
    challenges: usize,
    /// Rounds of the challenge measurements.
    #[arg(long, default_value_t = 5)]
    challenge_rounds: u32,
    /// Concurrent clients in the concurrent challenge measurement.
    #[arg(long, default_value_t = 8)]
    concurrency: usize,
    /// Payments per direction (LND -> LDK, LND -> LND, LDK -> LDK).
    #[arg(long, default_value_t = 50)]
    payments: usize,
    /// `RUST_LOG` of `l402 proxy` (Aperture runs at `info`, one log line per request; so does ours at `info`).
    #[arg(long, default_value = "info")]
    l402_log: String,
}

/// Aperture has no limit on challenges: ours is raised out of the way so that challenges/s compares the two.
const CHALLENGE_LIMIT_OFF: &str = "challenge_limit = { per_client_per_second = 1000000.0, per_client_burst = 1000000, \
                                   global_per_second = 1000000.0, global_burst = 1000000 }";

const PRICE_SAT: u64 = 10;
const LNGET: &str = "lnget (Lightning Labs' L402 client) could not be benchmarked: the Go module proxy this machine \
                     reaches refuses github.com/lightninglabs/lnget at every version (403), so it cannot be built here";

/// The two proxies under test.
const SIDES: [(&str, &str); 2] = [("ours", "l402 proxy"), ("aperture", "Aperture")];

/// The nodes of the run.
struct Ground {
    operator: Arc<Lnd>,
    payer: Arc<Lnd>,
    alice: Arc<LdkNode>,
    bob: Arc<LdkNode>,
}

/// Runs the side-by-side benchmark.
pub(crate) async fn run(args: PeersArgs) -> Result<()> {
    let bin = proxyproc::locate_l402(args.l402_bin.clone())?;
    note("starting the regtest network (bitcoind, LND operator and payer, LDK alice and bob)");
    let regtest = Regtest::start().await.context("regtest (is bitcoind installed? scripts/install-deps.sh)")?;
    let result = measure(&args, &bin, &regtest).await;
    note("stopping the regtest network");
    regtest.shutdown().await;
    result
}

async fn ground(net: &Regtest) -> Result<Ground> {
    let started = Instant::now();
    let (operator, payer, alice, bob) =
        tokio::try_join!(net.lnd_node("operator"), net.lnd_node("payer"), net.ldk_node("alice"), net.ldk_node("bob"))
            .context("starting the nodes (LND: scripts/install-peers.sh)")?;
    net.fund_lnd(&payer, 3_000_000).await.context("funding the payer LND")?;
    net.fund(&alice, 2_000_000).await.context("funding alice")?;
    note("opening channels: payer -> operator (LND -> LND), payer -> alice (LND -> LDK), alice -> bob (LDK -> LDK)");
    net.open_channel_lnd_to_lnd(&payer, &operator, 1_000_000, 0, None, &[]).await.context("payer -> operator")?;
    net.open_channel_from_lnd(&payer, &alice, 1_000_000, 0).await.context("payer -> alice")?;
    net.open_channel(&alice, &bob, 1_000_000, 0).await.context("alice -> bob")?;
    note(&format!("network ready in {:.1} s", started.elapsed().as_secs_f64()));
    Ok(Ground { operator, payer, alice, bob })
}

async fn measure(args: &PeersArgs, bin: &Path, net: &Regtest) -> Result<()> {
    note(LNGET);
    let g = ground(net).await?;
    let dir = tempfile::Builder::new().prefix("l402-bench-peers-").tempdir()?;
    let upstream = net::upstream().await?;
    let tick = sys::clock_tick_us().await;

    // Ours: the release binary as a process, LND backend with the operator's invoice macaroon.
    let files = LndFiles {
        address: g.operator.rpc_address(),
        tls_cert: g.operator.tls_cert_path(),
        macaroon: g.operator.macaroon_path(LndMacaroon::Invoice),
    };
    let port = proxyproc::free_port()?;
    let config = format!(
        "listen = \"127.0.0.1:{port}\"\nstore = {{ kind = \"sqlite\", path = \"{db}\" }}\n{CHALLENGE_LIMIT_OFF}\n\
         {lightning}\n\
         [[service]]\nname = \"api\"\npath = \"/api/*\"\nupstream = \"http://{upstream}\"\nprice_sat = {PRICE_SAT}\n",
        db = dir.path().join("l402.db").display(),
        lightning = proxyproc::lnd_section(&files),
    );
    let ours = ProxyProcess::start(bin, &dir.path().join("l402.toml"), &config, port, &args.l402_log).await?;
    // Aperture: the same LND, the same upstream, the same price.
    let service =
        ApertureService { name: "api".into(), path_regexp: "^/api/.*$".into(), upstream, price_sat: PRICE_SAT };
    let aperture =
        Aperture::start(&dir.path().join("aperture"), &g.operator, &[service]).await.context("starting Aperture")?;
    let pids = [ours.pid(), aperture.pid().context("Aperture has no pid")?];
    let urls = [format!("http://{}/api/hello", ours.addr()), aperture.url("/api/hello")];

    emit(
        "peers.setup",
        json!({ "l402_log": args.l402_log, "aperture_log": "info", "price_sat": PRICE_SAT }),
        &format!(
            "both proxies sell /api/* for {PRICE_SAT} sat over the same upstream, invoices from the same LND node; \
             l402 proxy logs at RUST_LOG={}, Aperture at debuglevel info (at info, each writes a line per request)",
            args.l402_log
        ),
    );
    let http = reqwest::Client::new();
    let payer = g.payer.connect(LndMacaroon::Pay).await.context("the payer's pay-only client")?;
    let mut tokens = Vec::new();
    for ((key, label), url) in SIDES.iter().zip(&urls) {
        let (token, paid_in) = net::buy_token(&http, url, &payer).await.with_context(|| format!("{label}'s token"))?;
        net::expect_ok(&http, url, Some(&token)).await.with_context(|| format!("{label} with its token"))?;
        emit(
            &format!("peers.{key}.real_payment"),
            json!({ "ms": round(paid_in.as_secs_f64() * 1e3, 1) }),
            &format!(
                "{label}'s token bought with a real payment (payer LND -> operator LND): {:.1} ms",
                paid_in.as_secs_f64() * 1e3
            ),
        );
        tokens.push(token);
    }
    net::expect_ok(&http, &format!("http://{upstream}/hello"), None).await?;
    let rest: Vec<u64> = pids.iter().map(|p| rss_kib(*p).unwrap_or(0)).collect();

    // 1. wrk with a valid token.
    let load = Load {
        threads: args.threads,
        connections: args.connections,
        duration_secs: args.duration,
        warmup_secs: args.warmup,
    };
    let mut scripts = Vec::new();
    for ((key, _), token) in SIDES.iter().zip(&tokens) {
        let script = dir.path().join(format!("{key}.lua"));
        wrk::static_script(&script, Some(token))?;
        scripts.push(script);
    }
    let mut runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
    let samplers = pids.map(RssSampler::start);
    for round in 1..=args.rounds {
        note(&format!("round {round}/{}: wrk with a valid token, l402 proxy and Aperture", args.rounds));
        for side in order(round, 2) {
            runs[side].push(load_run(&load, &urls[side], Requests::Fixed(&scripts[side]), &[pids[side]], tick).await?);
        }
    }
    let peak: Vec<u64> = samplers.iter().map(RssSampler::peak_kib).collect();
    drop(samplers);
    for (side, (key, label)) in SIDES.iter().enumerate() {
        emit_load(&format!("peers.{key}.valid_token"), &format!("{label}, valid token"), &runs[side], &load);
    }
    let per_round = |f: &dyn Fn(&Run) -> Option<f64>| -> Vec<f64> {
        runs[0].iter().zip(&runs[1]).filter_map(|(o, t)| Some(f(o)? / f(t)?)).collect()
    };
    let rps = per_round(&|r| Some(r.rps()));
    let p50 = per_round(&|r| Some(r.p50_us as f64));
    let p99 = per_round(&|r| Some(r.p99_us as f64));
    let cpu = per_round(&|r| r.proxy_cpu_us);
    let rounded = |v: &[f64]| v.iter().map(|x| round(*x, 3)).collect::<Vec<_>>();
    emit(
        "peers.valid_token_ratio",
        json!({ "rps": round(median(&rps), 3), "p50": round(median(&p50), 3), "p99": round(median(&p99), 3),
                "cpu": (!cpu.is_empty()).then(|| round(median(&cpu), 3)), "rps_rounds": rounded(&rps),
                "rounds": rps.len() }),
        &format!(
            "l402 proxy / Aperture, valid token (medians of per-round ratios): req/s x{:.2}, p50 x{:.2}, p99 x{:.2}, \
             CPU per request x{:.2}",
            median(&rps),
            median(&p50),
            median(&p99),
            median(&cpu)
        ),
    );

    // 2. Challenges.
    let mut challenge_figures: [[Vec<Measured>; 2]; 2] = Default::default();
    let mut seen: [HashSet<String>; 2] = Default::default();
    for round in 1..=args.challenge_rounds {
        note(&format!(
            "round {round}/{}: {} challenges each, sequential and {} concurrent",
            args.challenge_rounds, args.challenges, args.concurrency
        ));
        for side in order(round, 2) {
            for (mode, concurrency) in [1, args.concurrency].into_iter().enumerate() {
                let target = Target { url: &urls[side], pid: pids[side], lnd: &g.operator, tick };
                let m = challenges(&http, &target, args.challenges, concurrency, &mut seen[side])
                    .await
                    .with_context(|| format!("challenges from {}", SIDES[side].1))?;
                challenge_figures[side][mode].push(m);
            }
        }
    }
    let hwm: Vec<u64> = pids.iter().map(|p| proxyproc::proc_status_kib(*p, "VmHWM").unwrap_or(0)).collect();
    for (side, (key, label)) in SIDES.iter().enumerate() {
        for (mode, (name, concurrency)) in [("sequential", 1), ("concurrent", args.concurrency)].into_iter().enumerate()
        {
            let figure = format!("peers.{key}.challenges_{name}");
            emit_challenges(&figure, label, concurrency, &challenge_figures[side][mode]);
        }
    }
    let ratio = |mode: usize| -> Vec<f64> {
        challenge_figures[0][mode].iter().zip(&challenge_figures[1][mode]).map(|(o, t)| o.per_sec / t.per_sec).collect()
    };
    let (seq, conc) = (ratio(0), ratio(1));
    emit(
        "peers.challenges_ratio",
        json!({ "sequential": round(median(&seq), 3), "concurrent": round(median(&conc), 3),
                "sequential_rounds": rounded(&seq), "concurrent_rounds": rounded(&conc) }),
        &format!(
            "l402 proxy / Aperture, challenges per second (medians of per-round ratios): sequential x{:.2}, {} \
             concurrent x{:.2}",
            median(&seq),
            args.concurrency,
            median(&conc)
        ),
    );
    emit(
        "peers.memory",
        json!({ "ours_rest_kib": rest[0], "ours_peak_load_kib": peak[0], "ours_vmhwm_kib": hwm[0],
                "aperture_rest_kib": rest[1], "aperture_peak_load_kib": peak[1], "aperture_vmhwm_kib": hwm[1] }),
        &format!(
            "VmRSS at rest (after the paid request) / peak under the wrk load / VmHWM after the challenges: l402 proxy \
             {:.1} / {:.1} / {:.1} MiB, Aperture {:.1} / {:.1} / {:.1} MiB",
            rest[0] as f64 / 1024.0,
            peak[0] as f64 / 1024.0,
            hwm[0] as f64 / 1024.0,
            rest[1] as f64 / 1024.0,
            peak[1] as f64 / 1024.0,
            hwm[1] as f64 / 1024.0
        ),
    );
    ours.stop().await?;
    drop(aperture);

    // 3. Payment latency.
    let operator = g.operator.connect(LndMacaroon::Invoice).await.context("the operator's invoice client")?;
    let directions: [(&str, &str, &dyn InvoiceIssuer, &dyn Payer); 3] = [
        ("lnd_to_ldk", "LND -> LDK (payer LND -> alice)", g.alice.as_ref(), &payer),
        ("lnd_to_lnd", "LND -> LND (payer LND -> operator LND)", &operator, &payer),
        ("ldk_to_ldk", "LDK -> LDK (alice -> bob)", g.bob.as_ref(), g.alice.as_ref()),
    ];
    for (key, label, payee, from) in directions {
        note(&format!("payments {label}: 1 unmeasured, then {}", args.payments));
        timed_payments(payee, from, 1).await;
        let sorted = timed_payments(payee, from, args.payments).await;
        let ms = |d: Option<&Duration>| round(d.map_or(0.0, |d| d.as_secs_f64() * 1e3), 1);
        emit(
            &format!("peers.payment.{key}"),
            json!({ "median_ms": ms(sorted.get(sorted.len() / 2)), "min_ms": ms(sorted.first()),
                    "max_ms": ms(sorted.last()), "count": sorted.len(), "sats": 1_000 }),
            &format!("{label}, one real 1,000-sat payment at a time: {}", latency_summary(&sorted)),
        );
    }
    emit("peers.lnget", json!({ "benchmarked": false, "reason": LNGET }), LNGET);
    Ok(())
}

/// One challenge measurement.
struct Measured {
    per_sec: f64,
    latencies: Vec<Duration>,
    proxy_cpu_us: Option<f64>,
    lnd_cpu_us: Option<f64>,
    foreign: Option<f64>,
}

/// What a challenge measurement asks: the proxy's URL and process, the LND node it mints on.
struct Target<'a> {
    url: &'a str,
    pid: u32,
    lnd: &'a Lnd,
    tick: f64,
}

/// `count` requests without credential to the target from `concurrency` tasks; each must be a 402 whose
/// challenge parses and whose invoice is not in `seen` (no earlier answer carried it). With the proxy's and the
/// LND node's CPU time per challenge.
async fn challenges(
    http: &reqwest::Client,
    target: &Target<'_>,
    count: usize,
    concurrency: usize,
    seen: &mut HashSet<String>,
) -> Result<Measured> {
    let (url, pid, lnd, tick) = (target.url, target.pid, target.lnd, target.tick);
    let cpu = |pid: Option<u32>| pid.and_then(|p| sys::process_cpu_us(p, tick));
    let (proxy_before, lnd_before, machine) = (cpu(Some(pid)), cpu(lnd.pid()), Snapshot::take(tick));
    let started = Instant::now();
    let per_task = count.div_ceil(concurrency);
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let (http, url) = (http.clone(), url.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::with_capacity(per_task);
            for _ in 0..per_task {
                let t = Instant::now();
                let resp = http.get(&url).send().await.context("asking for a challenge")?;
                anyhow::ensure!(resp.status() == 402, "expected 402, got {}", resp.status());
                let lines: Vec<Vec<u8>> =
                    resp.headers().get_all("www-authenticate").iter().map(|v| v.as_bytes().to_vec()).collect();
                resp.bytes().await.context("the 402's body")?;
                let elapsed = t.elapsed();
                let challenge = l402_proto::Challenge::parse(lines.iter().map(Vec::as_slice))
                    .context("parsing the 402's challenge")?;
                out.push((elapsed, challenge.invoice));
            }
            Ok::<_, anyhow::Error>(out)
        }));
    }
    let mut latencies = Vec::with_capacity(per_task * concurrency);
    for task in tasks {
        for (elapsed, invoice) in task.await?? {
            latencies.push(elapsed);
            anyhow::ensure!(seen.insert(invoice), "a 402 from {url} repeated an invoice");
        }
    }
    let wall = started.elapsed();
    let n = latencies.len().max(1) as f64;
    let per = |before: Option<f64>, after: Option<f64>| before.zip(after).map(|(b, a)| (a - b) / n);
    Ok(Measured {
        per_sec: latencies.len() as f64 / wall.as_secs_f64(),
        proxy_cpu_us: per(proxy_before, cpu(Some(pid))),
        lnd_cpu_us: per(lnd_before, cpu(lnd.pid())),
        foreign: Snapshot::take(tick).foreign_since(&machine),
        latencies,
    })
}

fn emit_challenges(figure: &str, label: &str, concurrency: usize, rounds: &[Measured]) {
    let per_sec: Vec<f64> = rounds.iter().map(|m| m.per_sec).collect();
    let all: Vec<Duration> = rounds.iter().flat_map(|m| m.latencies.iter().copied()).collect();
    let us = micros(&all);
    let opt_median = |f: &dyn Fn(&Measured) -> Option<f64>| {
        rounds.iter().map(f).collect::<Option<Vec<f64>>>().map(|v| round(median(&v), 1))
    };
    let mode = if concurrency == 1 { "one at a time".to_owned() } else { format!("{concurrency} concurrent") };
    let (rate, p50, p99) = (median(&per_sec), median(&us), percentile(&us, 99.0));
    emit(
        figure,
        json!({ "per_sec": round(rate, 1), "per_sec_rounds": per_sec.iter().map(|r| round(*r, 1)).collect::<Vec<_>>(),
                "median_us": round(p50, 1), "p99_us": round(p99, 1), "count": all.len(), "concurrency": concurrency,
                "proxy_cpu_us": opt_median(&|m| m.proxy_cpu_us), "lnd_cpu_us": opt_median(&|m| m.lnd_cpu_us),
                "foreign_cpu": rounds.iter().map(|m| m.foreign).collect::<Option<Vec<f64>>>()
                    .map(|f| round(median(&f), 3)) }),
        &format!(
            "{label}, challenges {mode}: {rate:.0}/s (median of {} rounds), latency median {:.2} ms, p99 {:.2} \
             ms over {}",
            rounds.len(),
            p50 / 1e3,
            p99 / 1e3,
            all.len()
        ),
    );
}

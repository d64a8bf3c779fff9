//! `l402-bench addresses`: the proxy's memory while a million distinct client addresses hit it.
//!
//! A load generator in this process opens one connection per client address, each bound to its own source
//! address in 127.0.0.0/8 (Linux routes the whole block to loopback: 127.x.y.z sources need no setup),
//! sends one request on it, reads the whole answer and closes with `SO_LINGER` 0 (a reset: no `TIME_WAIT`
//! left per address; each address has its own ephemeral ports anyway). Scenarios, each on a fresh
//! `l402 proxy` process (so each starts from the same memory):
//! - `open`: a `payment = false` service, the control (connection churn, no per-address state);
//! - `challenge`: a paid service without credential: each answer a 402 challenge with a fresh invoice from
//!   the LND simulator over the server's LDK node, or a 429 once a challenge rate limit applies;
//! - `freebies`: a paid service with `freebies` free requests per address: each address takes one.
//!
//! Every status is counted (and every socket or HTTP error, by kind). The proxy's `VmRSS` is read before the
//! first request, at every tenth of the addresses, at its peak (sampled every 20 ms), and 5 s after the last
//! answer; "bounded" means the second half of the addresses grew it by at most a quarter of what the first
//! half did (or 2 MiB): state kept per address grows the two halves alike. A scenario stops starting
//! addresses after `--max-seconds`; the figure then says how many it reached.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;
use clap::Args;
use http_body_util::{BodyExt as _, Empty};
use hyper_util::rt::TokioIo;
use serde_json::json;

use crate::net::{self, Net};
use crate::output::{emit, note, round};
use crate::proxyproc::{self, ProxyProcess, RssSampler, rss_kib};

/// Options of `l402-bench addresses`.
#[derive(Args, Debug)]
pub(crate) struct AddressesArgs {
    /// The `l402` binary (default: `L402_BIN`, then `l402` beside this binary).
    #[arg(long)]
    l402_bin: Option<PathBuf>,
    /// Distinct client addresses per scenario, one request each.
    #[arg(long, default_value_t = 1_000_000)]
    addresses: u64,
    /// Connections in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Seconds after which a scenario starts no new address.
    #[arg(long, default_value_t = 600)]
    max_seconds: u64,
    /// Free requests per address on the freebies service.
    #[arg(long, default_value_t = 1)]
    freebies: u32,
    /// Scenarios to run, in order (open, challenge, freebies).
    #[arg(long, value_delimiter = ',', default_value = "open,challenge,freebies")]
    scenarios: Vec<String>,
}

/// Source addresses available: 127.1.0.1 to 127.200.255.254, the last octet 1..=254.
const MAX_ADDRESSES: u64 = 200 * 256 * 254;

/// The `i`th client address (0-based): 127.(1 + i / 65024).((i / 254) % 256).(1 + i % 254).
fn client_address(i: u64) -> Ipv4Addr {
    let (a, rest) = (1 + i / (256 * 254), i % (256 * 254));
    Ipv4Addr::new(127, a as u8, (rest / 254) as u8, (1 + rest % 254) as u8)
}

/// What one address's request ended with.
enum Hit {
    Status(u16),
    Error(&'static str),
}

/// One request from `src` to `target`: a fresh connection bound to `src`, closed with a reset after the
/// whole answer is read.
async fn hit(src: Ipv4Addr, target: SocketAddr, path: &str) -> Hit {
    let sock = match tokio::net::TcpSocket::new_v4() {
        Ok(s) => s,
        Err(_) => return Hit::Error("socket"),
    };
    if sock.set_reuseaddr(true).is_err() || sock.set_zero_linger().is_err() {
        return Hit::Error("socket options");
    }
    if sock.bind(SocketAddr::new(src.into(), 0)).is_err() {
        return Hit::Error("bind");
    }
    let stream = match tokio::time::timeout(Duration::from_secs(10), sock.connect(target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => return Hit::Error("connect"),
        Err(_) => return Hit::Error("connect timeout"),
    };
    let _ = stream.set_nodelay(true);
    let exchange = async {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.ok()?;
        let driver = tokio::spawn(conn);
        let req =
            http::Request::get(path).header(http::header::HOST, target.to_string()).body(Empty::<Bytes>::new()).ok()?;
        let resp = sender.send_request(req).await.ok()?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await.ok()?;
        drop(sender);
        let _ = driver.await;
        Some(status)
    };
    match tokio::time::timeout(Duration::from_secs(60), exchange).await {
        Ok(Some(status)) => Hit::Status(status),
        Ok(None) => Hit::Error("http"),
        Err(_) => Hit::Error("answer timeout"),
    }
}

/// What a scenario measured.
struct Outcome {
    reached: u64,
    seconds: f64,
    statuses: BTreeMap<u16, u64>,
    errors: BTreeMap<&'static str, u64>,
    /// (addresses done, VmRSS KiB) at each tenth.
    checkpoints: Vec<(u64, u64)>,
}

/// `total` addresses, `concurrency` at a time, against `path` on `target`, reading `pid`'s VmRSS at each
/// tenth.
async fn drive(target: SocketAddr, path: &str, total: u64, concurrency: usize, max: Duration, pid: u32) -> Outcome {
    let next = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + max;
    let mut workers = Vec::new();
    for _ in 0..concurrency.max(1) {
        let (next, done, path) = (next.clone(), done.clone(), path.to_owned());
        workers.push(tokio::spawn(async move {
            let mut statuses = BTreeMap::new();
            let mut errors = BTreeMap::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total || Instant::now() > deadline {
                    break;
                }
                match hit(client_address(i), target, &path).await {
                    Hit::Status(s) => *statuses.entry(s).or_insert(0u64) += 1,
                    Hit::Error(e) => *errors.entry(e).or_insert(0u64) += 1,
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
            (statuses, errors)
        }));
    }
    let finished = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (done, finished) = (done.clone(), finished.clone());
        tokio::spawn(async move {
            let mut checkpoints = Vec::new();
            let mut tenth = 1;
            while tenth <= 10 && !finished.load(Ordering::Relaxed) {
                let d = done.load(Ordering::Relaxed);
                if d >= total * tenth / 10 {
                    checkpoints.push((d, rss_kib(pid).unwrap_or(0)));
                    tenth += 1;
                    continue;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            checkpoints
        })
    };
    let mut statuses = BTreeMap::new();
    let mut errors = BTreeMap::new();
    for w in workers {
        if let Ok((s, e)) = w.await {
            for (k, v) in s {
                *statuses.entry(k).or_insert(0) += v;
            }
            for (k, v) in e {
                *errors.entry(k).or_insert(0) += v;
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let reached = done.load(Ordering::Relaxed);
    finished.store(true, Ordering::Relaxed);
    let mut checkpoints = monitor.await.unwrap_or_default();
    if checkpoints.last().is_none_or(|(d, _)| *d < reached) {
        checkpoints.push((reached, rss_kib(pid).unwrap_or(0)));
    }
    Outcome { reached, seconds, statuses, errors, checkpoints }
}

/// Runs the benchmark.
pub(crate) async fn run(args: AddressesArgs) -> Result<()> {
    anyhow::ensure!(args.addresses <= MAX_ADDRESSES, "at most {MAX_ADDRESSES} addresses");
    for s in &args.scenarios {
        anyhow::ensure!(["open", "challenge", "freebies"].contains(&s.as_str()), "unknown scenario {s}");
    }
    let bin = proxyproc::locate_l402(args.l402_bin.clone())?;
    let net = Net::start(false).await?;
    let result = measure(&args, &bin, &net).await;
    net.shutdown().await;
    result
}

async fn measure(args: &AddressesArgs, bin: &Path, net: &Net) -> Result<()> {
    let dir = tempfile::Builder::new().prefix("l402-bench-addresses-").tempdir()?;
    let (sim, lnd) = net::lnd_simulator(&net.server, dir.path()).await?;
    let upstream = net::upstream().await?;
    let http = reqwest::Client::new();
    for scenario in &args.scenarios {
        let port = proxyproc::free_port()?;
        let config = format!(
            "listen = \"127.0.0.1:{port}\"\nstore = {{ kind = \"sqlite\", path = \"{db}\" }}\n{lightning}\n\
             [[service]]\nname = \"open\"\npath = \"/open/*\"\nupstream = \"http://{upstream}\"\npayment = false\n\n\
             [[service]]\nname = \"api\"\npath = \"/api/*\"\nupstream = \"http://{upstream}\"\nprice_sat = 10\n\n\
             [[service]]\nname = \"free\"\npath = \"/free/*\"\nupstream = \"http://{upstream}\"\nprice_sat = 10\n\
             freebies = {freebies}\n",
            db = dir.path().join(format!("{scenario}.db")).display(),
            lightning = proxyproc::lnd_section(&lnd),
            freebies = args.freebies,
        );
        let proxy =
            ProxyProcess::start(bin, &dir.path().join(format!("{scenario}.toml")), &config, port, "warn").await?;
        let pid = proxy.pid();
        net::expect_ok(&http, &format!("http://{}/open/hello", proxy.addr()), None).await?;
        let path = match scenario.as_str() {
            "open" => "/open/hello",
            "challenge" => "/api/hello",
            _ => "/free/hello",
        };
        note(&format!(
            "{scenario}: {} client addresses, one request each to {path}, {} at a time (at most {} s)",
            args.addresses, args.concurrency, args.max_seconds
        ));
        let before = rss_kib(pid).unwrap_or(0);
        let sampler = RssSampler::start(pid);
        let out =
            drive(proxy.addr(), path, args.addresses, args.concurrency, Duration::from_secs(args.max_seconds), pid)
                .await;
        let peak = sampler.peak_kib();
        drop(sampler);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let after = rss_kib(pid).unwrap_or(0);
        proxy.stop().await?;
        report(scenario, path, args, &out, before, peak, after);
    }
    drop(sim);
    Ok(())
}

fn report(scenario: &str, path: &str, args: &AddressesArgs, out: &Outcome, before: u64, peak: u64, after: u64) {
    // The RSS closest to half-way and at the end.
    let half = out.checkpoints.iter().find(|(d, _)| *d >= out.reached / 2).map_or(before, |(_, k)| *k);
    let end = out.checkpoints.last().map_or(before, |(_, k)| *k);
    let first = half.saturating_sub(before);
    let second = end.saturating_sub(half);
    let bounded = second <= (first / 4).max(2048);
    let per_address = (peak.saturating_sub(before) as f64 * 1024.0) / out.reached.max(1) as f64;
    let statuses: BTreeMap<String, u64> = out.statuses.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    let errors: BTreeMap<String, u64> = out.errors.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect();
    let shown: Vec<String> = out
        .statuses
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .chain(out.errors.iter().map(|(k, v)| format!("{k} errors: {v}")))
        .collect();
    emit(
        &format!("addresses.{scenario}"),
        json!({
            "path": path, "addresses": args.addresses, "reached": out.reached, "seconds": round(out.seconds, 1),
            "per_second": round(out.reached as f64 / out.seconds.max(1e-9), 1), "concurrency": args.concurrency,
            "max_seconds": args.max_seconds, "freebies": args.freebies, "statuses": statuses, "errors": errors,
            "rss_before_kib": before, "rss_half_kib": half, "rss_end_kib": end, "rss_peak_kib": peak,
            "rss_after_kib": after, "checkpoints": out.checkpoints, "first_half_growth_kib": first,
            "second_half_growth_kib": second, "bounded": bounded, "bytes_per_address": round(per_address, 1),
        }),
        &format!(
            "{} of {} addresses in {:.0} s ({:.0}/s) to {path}: {}; VmRSS {:.1} MiB before, {:.1} MiB half-way, {:.1} \
             MiB at the end, peak {:.1} MiB, {:.1} MiB 5 s after ({:.0} bytes per address at the peak): {}",
            out.reached,
            args.addresses,
            out.seconds,
            out.reached as f64 / out.seconds.max(1e-9),
            shown.join(", "),
            before as f64 / 1024.0,
            half as f64 / 1024.0,
            end as f64 / 1024.0,
            peak as f64 / 1024.0,
            after as f64 / 1024.0,
            per_address,
            if bounded { "bounded" } else { "NOT bounded (the second half grew it like the first)" }
        ),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_addresses_are_distinct_loopback_hosts() {
        let mut seen = std::collections::HashSet::new();
        let indices: std::collections::BTreeSet<u64> =
            (0..MAX_ADDRESSES).step_by(997).chain([253, 254, 65_023, 65_024, MAX_ADDRESSES - 1]).collect();
        for i in indices {
            let a = client_address(i);
            assert!(a.is_loopback(), "{a}");
            assert!(a.octets()[3] != 0 && a.octets()[3] != 255, "{a}");
            assert!(seen.insert(a), "{i} -> {a} twice");
        }
        assert_eq!(client_address(0), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(client_address(254), Ipv4Addr::new(127, 1, 1, 1));
        assert_eq!(client_address(MAX_ADDRESSES - 1), Ipv4Addr::new(127, 200, 255, 254));
    }
}

//! `l402-bench report`: BENCHMARKS.md from the outputs `scripts/bench.sh` collected in one directory.
//!
//! The directory holds, per step, `NN-name.cmd` (the command line), `NN-name.out` (its output) and
//! `NN-name.load` (`/proc/loadavg` just before it); `criterion/*.json` (criterion's `estimates.json` of the
//! run); and `started`, `finished`, `versions` from the script. Every number in the file is read from there:
//! nothing is typed in.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Args;
use serde_json::Value;

use crate::output::PREFIX;

/// Options of `l402-bench report`.
#[derive(Args, Debug)]
pub(crate) struct ReportArgs {
    /// The results directory.
    #[arg(long)]
    dir: PathBuf,
    /// Where to write the Markdown.
    #[arg(long, default_value = "BENCHMARKS.md")]
    out: PathBuf,
}

/// One step of the run.
struct Step {
    name: String,
    command: String,
    output: String,
    load: String,
}

impl Step {
    fn results(&self) -> BTreeMap<String, Value> {
        self.output
            .lines()
            .filter_map(|l| l.strip_prefix(PREFIX))
            .filter_map(|j| serde_json::from_str::<Value>(j).ok())
            .filter_map(|v| Some((v.get("figure")?.as_str()?.to_owned(), v)))
            .collect()
    }
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default().trim().to_owned()
}

fn steps(dir: &Path) -> Result<Vec<Step>> {
    let mut cmds: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cmd"))
        .collect();
    cmds.sort();
    Ok(cmds
        .into_iter()
        .map(|cmd| {
            let stem = cmd.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let name = stem.split_once('-').map(|(_, n)| n.to_owned()).unwrap_or(stem);
            Step {
                name,
                command: read(&cmd),
                output: read(&cmd.with_extension("out")),
                load: read(&cmd.with_extension("load")),
            }
        })
        .collect())
}

/// Writes the report.
pub(crate) fn run(args: ReportArgs) -> Result<()> {
    let steps = steps(&args.dir)?;
    let mut md = String::new();
    let started = read(&args.dir.join("started"));
    let finished = read(&args.dir.join("finished"));
    let _ = writeln!(md, "# Benchmarks\n");
    let _ = writeln!(
        md,
        "Written by `scripts/bench.sh` ({started} to {finished}, UTC) from that one run on the machine below: every \
         number is a median or a ratio of medians measured in that run, under the command named beside it. Nothing \
         is mocked: bitcoind and the LDK nodes are real (regtest), payments are real Lightning payments over real \
         channels, `l402 proxy` is the release binary run as its own process; LND is the project's simulator (LND's \
         gRPC surface over a real LDK node, see `crates/l402-testkit`) except in the side by side with Aperture, \
         which runs real LND and real Aperture. Targets are those of issues 4, 6 and 10.\n"
    );
    machine(&mut md, &args.dir);
    for step in &steps {
        let _ = writeln!(md, "\n## {}\n", title(&step.name));
        let _ = writeln!(md, "Command: `{}`  ", step.command);
        let _ = writeln!(md, "Load average before it (1, 5, 15 min): {}\n", loadavg(&step.load));
        let busy = step.load.split_whitespace().next().and_then(|l| l.parse::<f64>().ok()).unwrap_or(0.0);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        if busy > cores {
            let _ = writeln!(
                md,
                "**The machine was busy when this step started** (load {busy:.1} on {cores:.0} cores, other work \
                 than this benchmark): its figures are likely pessimistic.\n"
            );
        }
        match step.name.as_str() {
            "proto-verify" => verify_section(&mut md, &args.dir),
            "regtest-payments" | "lnd-sim-payments" => payments_section(&mut md, step),
            "proxy" => crate::report_proxy::proxy(&mut md, &step.results()),
            "addresses" => crate::report_proxy::addresses(&mut md, &step.results()),
            "challenges" => crate::report_sections::challenges(&mut md, &step.results()),
            "client" => crate::report_sections::client(&mut md, &step.results()),
            "peers" => crate::report_sections::peers(&mut md, &step.results()),
            _ => {
                for line in step.output.lines().filter(|l| l.starts_with("  ")) {
                    let _ = writeln!(md, "- {}", line.trim());
                }
            }
        }
    }
    std::fs::write(&args.out, md).with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}

fn title(name: &str) -> &str {
    match name {
        "proto-verify" => "Token verification (criterion, one core)",
        "regtest-payments" => "Regtest network and LDK -> LDK payments",
        "lnd-sim-payments" => "LND-sim -> LND-sim payments",
        "proxy" => "Proxy throughput, latency and memory (wrk, `l402 proxy` as a process, beside nginx)",
        "addresses" => "Proxy memory under a million client addresses",
        "challenges" => "Challenges per second (mint + invoice)",
        "client" => "Client: cached-token overhead and time from 402 to 200",
        "metered" => "Metered service: time to first byte of a streamed completion",
        "peers" => "Side by side with Aperture on real LND, and real payment latency",
        other => other,
    }
}

fn loadavg(raw: &str) -> String {
    raw.split_whitespace().take(3).collect::<Vec<_>>().join(", ")
}

fn machine(md: &mut String, dir: &Path) {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix(name).and_then(|r| r.split_once(':')).map(|(_, m)| m.trim().to_owned()))
            .unwrap_or_else(|| "?".into())
    };
    let model = format!(
        "{} (family {}, model {}, {} MHz)",
        field("model name"),
        field("cpu family"),
        field("model\t"),
        field("cpu MHz")
    );
    let nproc = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let mem_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let kernel =
        format!("{} {}", read(Path::new("/proc/sys/kernel/ostype")), read(Path::new("/proc/sys/kernel/osrelease")));
    let _ = writeln!(md, "## Machine\n");
    let _ = writeln!(md, "- CPU: {model}, `nproc` = {nproc}");
    let _ = writeln!(md, "- Memory: {:.1} GiB", mem_kib as f64 / 1024.0 / 1024.0);
    let _ = writeln!(md, "- Kernel: {kernel}");
    let _ = writeln!(md, "- Date: {}", read(&dir.join("started")));
    for line in read(&dir.join("versions")).lines() {
        let _ = writeln!(md, "- {line}");
    }
    let _ = writeln!(
        md,
        "- Everything (wrk, the proxy, the upstream, the nodes) shares these cores. The machine is shared with other \
         work: the load average before each command and the \"other processes\" columns (CPU time used during a \
         measurement by processes this benchmark did not start) show how much it interfered."
    );
}

fn verify_section(md: &mut String, dir: &Path) {
    let median_ns = |id: &str| -> Option<f64> {
        let text = std::fs::read_to_string(dir.join("criterion").join(format!("{id}.json"))).ok()?;
        serde_json::from_str::<Value>(&text).ok()?.pointer("/median/point_estimate")?.as_f64()
    };
    let floor = median_ns("floor_b64_sha256_5hmac");
    let _ = writeln!(md, "| Figure | Median per verification | Per second, one core | Against the target |");
    let _ = writeln!(md, "|---|---|---|---|");
    for (id, what) in [
        (
            "verify_header_3_caveats",
            "verify/header_3_caveats: parse header, decode, preimage hash, HMAC chain (cached key), 3 caveats",
        ),
        ("verify_header_3_caveats_uncached_key", "verify/header_3_caveats_uncached_key: the same, deriving the key"),
        ("floor_b64_sha256_5hmac", "floor/b64_sha256_5hmac: base64 decode + sha256 + 5 HMAC-SHA256, nothing else"),
    ] {
        let Some(ns) = median_ns(id) else {
            let _ = writeln!(md, "| {what} | missing | | criterion wrote no estimates |");
            continue;
        };
        let note = match floor {
            _ if id.starts_with("floor") => "the floor: what any verifier of this token pays".to_owned(),
            Some(f) => {
                format!("{:.2}x the floor; issue 6 sets no number, the proxy needs one per paid request", ns / f)
            }
            None => "no floor measured".to_owned(),
        };
        let _ = writeln!(md, "| {what} | {:.2} µs | {} | {note} |", ns / 1e3, thousands(1e9 / ns));
    }
}

fn payments_section(md: &mut String, step: &Step) {
    let _ = writeln!(md, "| Figure | Result | Interpretation |");
    let _ = writeln!(md, "|---|---|---|");
    for line in step.output.lines() {
        let Some((name, value)) = line.split_once(": ") else { continue };
        if !(name.starts_with("regtest/") || name.starts_with("payments/")) {
            continue;
        }
        let note = match name {
            n if n.starts_with("payments/ldk") => {
                "one real payment over one channel, embedded nodes: the floor under the client's 402 -> 200 below \
                 (no target in issue 6)"
            }
            n if n.starts_with("payments/lnd") => {
                "the same payment through LND's gRPC on both ends (the adapter, TLS and the simulator over LDK); \
                 compare with LDK -> LDK"
            }
            _ => "setup time of the network every benchmark and test starts",
        };
        let _ = writeln!(md, "| {name} | {value} | {note} |");
    }
}

/// An integer with thousands separators: 623,470.
pub(crate) fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.abs());
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    if x < 0.0 { format!("-{out}") } else { out }
}

//! `--perf-dir`: where the proxy's time goes under a wrk load, from `perf` (Debian's linux-perf).
//!
//! One measured wrk run (no warm-up: the process is warm from the rounds before) while
//! `perf record -F 999 --call-graph dwarf -p PID` samples the process on CPU time (`cpu-clock`, a
//! software event that also works in a VM without hardware counters). The release binary has symbols but no
//! frame pointers, hence DWARF unwinding (from `.eh_frame`). Then `perf report -g none` writes, beside the
//! data: `NAME.self.txt` (self time by binary and symbol: where the cycles are spent), `NAME.children.txt`
//! (time including callees: which functions the time is spent under; unwinding makes this one take minutes)
//! and `NAME.dso.txt` (by binary: the proxy, libc, the kernel). The wrk figure of that run is printed too
//! (it is slowed by the sampling). In a VM without a PMU, `cpu-clock` samples taken while interrupts are
//! off land where they are switched back on (`finish_task_switch`, `_raw_spin_unlock_irqrestore`): the
//! kernel's total is right, its split between kernel functions is not. Beside the samples, `perf stat`
//! counts the system calls, context switches and CPU migrations per request (`NAME.stat.csv`); nginx is
//! profiled the same way, for comparison.

use std::path::Path;
use std::process::Stdio;

use anyhow::{Context, Result, bail};
use serde_json::json;
use tokio::process::Command;

use crate::output::{emit, note, round};
use crate::wrk::{self, Load, Requests};

/// Checks that `perf` can record here (installed, and allowed by `kernel.perf_event_paranoid`).
pub(crate) async fn check() -> Result<()> {
    let out = Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-o", "/dev/null", "--", "true"])
        .stdout(Stdio::null())
        .output()
        .await
        .context("running perf (apt-get install -y linux-perf)")?;
    if !out.status.success() {
        bail!("perf cannot record here: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Profiles `pids` (one process, or nginx's master and workers) during one wrk run of `requests` against
/// `url`: `perf record` into `NAME.perf.data` with the reports beside it, and at the same time `perf stat`
/// of their system calls, context switches and migrations, printed per request.
pub(crate) async fn record(
    dir: &Path,
    name: &str,
    load: &Load,
    url: &str,
    requests: Requests<'_>,
    pids: &[u32],
) -> Result<()> {
    let data = dir.join(format!("{name}.perf.data"));
    let counts = dir.join(format!("{name}.stat.csv"));
    let pid_list = pids.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let secs = load.duration_secs.to_string();
    note(&format!("perf: profiling {name} (pids {pid_list}) under {url} for {secs} s"));
    let spawn = |args: Vec<std::ffi::OsString>| {
        Command::new("perf")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("starting perf")
    };
    let os = |a: &[&str]| a.iter().map(std::ffi::OsString::from).collect::<Vec<_>>();
    let mut rec = os(&["record", "-e", "cpu-clock", "-F", "999", "--call-graph", "dwarf,16384", "-p", &pid_list]);
    rec.extend([std::ffi::OsString::from("-o"), data.clone().into()]);
    rec.extend(os(&["--", "sleep", &secs]));
    let mut stat = os(&["stat", "-x", ",", "-e", STAT_EVENTS, "-p", &pid_list, "-o"]);
    stat.push(counts.clone().into());
    stat.extend(os(&["--", "sleep", &secs]));
    let (mut recorder, mut counter) = (spawn(rec)?, spawn(stat)?);
    let run = wrk::measured(load, url, requests).await;
    let (recorded, counted) = (recorder.wait().await?, counter.wait().await?);
    let run = run?;
    if !recorded.success() || !counted.success() {
        bail!("perf failed (record: {recorded}, stat: {counted})");
    }
    for (suffix, args) in [
        ("self", &["--no-children", "--sort", "dso,symbol", "--percent-limit", "0.3"][..]),
        ("children", &["--children", "--sort", "symbol", "--percent-limit", "1"][..]),
        ("dso", &["--no-children", "--sort", "dso"][..]),
    ] {
        let out = Command::new("perf")
            .arg("report")
            .arg("-i")
            .arg(&data)
            .args(["--stdio", "--no-header", "-g", "none"])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .await
            .context("running perf report")?;
        std::fs::write(dir.join(format!("{name}.{suffix}.txt")), &out.stdout).context("writing a perf report")?;
    }
    let text = std::fs::read_to_string(&counts).unwrap_or_default();
    let per_request = |event: &str| {
        text.lines()
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|f| f.get(2) == Some(&event))
            .and_then(|f| f.first()?.parse::<f64>().ok())
            .map(|n| round(n / run.requests.max(1) as f64, 2))
    };
    let (syscalls, switches, migrations) =
        (per_request("raw_syscalls:sys_enter"), per_request("context-switches"), per_request("cpu-migrations"));
    emit(
        &format!("profile.{name}"),
        json!({ "data": data.display().to_string(), "rps": round(run.rps(), 1), "wrk": load.flags(),
                "syscalls_per_request": syscalls, "context_switches_per_request": switches,
                "migrations_per_request": migrations }),
        &format!(
            "perf profile of {name} under {url}: {} ({:.0} req/s while sampled); per request: {} system calls, {} \
             context switches, {} migrations",
            dir.join(format!("{name}.{{self,children,dso}}.txt")).display(),
            run.rps(),
            syscalls.map_or("?".into(), |v| v.to_string()),
            switches.map_or("?".into(), |v| v.to_string()),
            migrations.map_or("?".into(), |v| v.to_string()),
        ),
    );
    Ok(())
}

/// What `perf stat` counts beside the samples.
const STAT_EVENTS: &str = "raw_syscalls:sys_enter,context-switches,cpu-migrations";

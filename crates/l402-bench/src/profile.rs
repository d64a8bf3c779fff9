//! `--perf-dir`: where the proxy's time goes under a wrk load, from `perf` (Debian's linux-perf).
//!
//! One measured wrk run (no warm-up: the proxy is warm from the rounds before) while
//! `perf record -F 999 --call-graph dwarf -p PID` samples the proxy process on CPU time (`cpu-clock`, a
//! software event that also works in a VM without hardware counters). The release binary has symbols but no
//! frame pointers, hence DWARF unwinding (from `.eh_frame`). Then `perf report` writes, beside the data:
//! `NAME.self.txt` (self time by symbol: where the cycles are spent), `NAME.children.txt` (time including
//! callees: which of the proxy's own functions the time is spent under) and `NAME.dso.txt` (by binary:
//! the proxy, libc, the kernel). The wrk figure of that run is printed too (it is slowed by the sampling).

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

/// Profiles `pid` during one wrk run of `requests` against `url`; writes `NAME.perf.data` and the reports
/// into `dir`.
pub(crate) async fn record(
    dir: &Path,
    name: &str,
    load: &Load,
    url: &str,
    requests: Requests<'_>,
    pid: u32,
) -> Result<()> {
    let data = dir.join(format!("{name}.perf.data"));
    note(&format!("perf: profiling the proxy (pid {pid}) under {url} for {} s", load.duration_secs));
    let mut perf = Command::new("perf")
        .args(["record", "-e", "cpu-clock", "-F", "999", "--call-graph", "dwarf,16384", "-p", &pid.to_string(), "-o"])
        .arg(&data)
        .args(["--", "sleep", &load.duration_secs.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting perf record")?;
    let run = wrk::measured(load, url, requests).await;
    let status = perf.wait().await.context("waiting for perf record")?;
    let run = run?;
    if !status.success() {
        bail!("perf record failed ({status})");
    }
    for (suffix, args) in [
        ("self", &["--no-children", "--sort", "symbol", "--percent-limit", "0.3"][..]),
        ("children", &["--children", "--sort", "symbol", "--percent-limit", "2", "-g", "none"][..]),
        ("dso", &["--no-children", "--sort", "dso"][..]),
    ] {
        let out = Command::new("perf")
            .arg("report")
            .arg("-i")
            .arg(&data)
            .args(["--stdio", "--no-header"])
            .args(args)
            .stderr(Stdio::null())
            .output()
            .await
            .context("running perf report")?;
        std::fs::write(dir.join(format!("{name}.{suffix}.txt")), &out.stdout).context("writing a perf report")?;
    }
    emit(
        &format!("profile.{name}"),
        json!({ "data": data.display().to_string(), "rps": round(run.rps(), 1), "wrk": load.flags() }),
        &format!(
            "perf profile of the proxy under {url}: {} ({:.0} req/s while sampled)",
            dir.join(format!("{name}.{{self,children,dso}}.txt")).display(),
            run.rps()
        ),
    );
    Ok(())
}

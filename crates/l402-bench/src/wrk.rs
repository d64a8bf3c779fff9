//! Driving `wrk` (Debian's package): generated Lua scripts, one run, its result.
//!
//! Every script ends with a `done` hook that prints one `WRK_JSON {...}` line (requests, duration, latency
//! percentiles in microseconds, non-2xx answers, socket errors), so nothing depends on wrk's text layout.
//! wrk's latency is per request from send to complete response on each connection (wrk 4 does not correct
//! for coordinated omission), measured by a closed loop of `connections` connections.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::json;

/// The load every target gets.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Load {
    /// wrk threads (`-t`).
    pub(crate) threads: u32,
    /// Open connections (`-c`).
    pub(crate) connections: u32,
    /// Measured seconds (`-d`).
    pub(crate) duration_secs: u32,
    /// Unmeasured seconds before each measured run.
    pub(crate) warmup_secs: u32,
}

impl Load {
    /// The wrk flags, as printed in results.
    pub(crate) fn flags(&self) -> String {
        format!("-t{} -c{} -d{}s --latency", self.threads, self.connections, self.duration_secs)
    }
}

/// What one wrk run measured.
#[derive(Clone, Copy, Debug, Deserialize)]
pub(crate) struct Run {
    /// Completed requests.
    pub(crate) requests: u64,
    /// Measured time, µs.
    pub(crate) duration_us: u64,
    /// Latency percentiles, µs.
    pub(crate) p50_us: u64,
    pub(crate) p90_us: u64,
    pub(crate) p99_us: u64,
    pub(crate) max_us: u64,
    /// Answers that were not 2xx or 3xx.
    pub(crate) non2xx: u64,
    /// Socket errors of every kind (connect, read, write, timeout).
    pub(crate) connect_errors: u64,
    pub(crate) read_errors: u64,
    pub(crate) write_errors: u64,
    pub(crate) timeouts: u64,
    /// CPU time (user + system) the proxy process used per request during the run, µs, when measured.
    #[serde(default)]
    pub(crate) proxy_cpu_us: Option<f64>,
    /// The share of the machine's CPU time that other processes (neither this benchmark, its wrk, nor the
    /// proxy) used during the run: 0 on a quiet machine.
    #[serde(default)]
    pub(crate) foreign_cpu: Option<f64>,
}

impl Run {
    /// Requests per second.
    pub(crate) fn rps(&self) -> f64 {
        self.requests as f64 / (self.duration_us.max(1) as f64 / 1e6)
    }

    /// Any answer or socket error that makes the run meaningless for a throughput figure.
    pub(crate) fn errors(&self) -> u64 {
        self.non2xx + self.connect_errors + self.read_errors + self.write_errors + self.timeouts
    }

    /// As JSON.
    pub(crate) fn json(&self) -> serde_json::Value {
        json!({
            "rps": crate::output::round(self.rps(), 1), "p50_us": self.p50_us, "p90_us": self.p90_us,
            "p99_us": self.p99_us, "max_us": self.max_us, "requests": self.requests, "errors": self.errors(),
            "proxy_cpu_us": self.proxy_cpu_us.map(|c| crate::output::round(c, 2)),
            "foreign_cpu": self.foreign_cpu.map(|c| crate::output::round(c, 3)),
        })
    }
}

const DONE: &str = r#"
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"non2xx":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,"timeouts":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, e.status, e.connect, e.read, e.write, e.timeout))
end
"#;

fn lua_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_ascii_graphic() || c == ' ' => out.push(c),
            c => out.push_str(&format!("\\{}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// A script sending the same request every time (wrk's fast path: no Lua per request), with an
/// `Authorization` header if given.
pub(crate) fn static_script(path: &Path, authorization: Option<&str>) -> Result<()> {
    let header =
        authorization.map(|a| format!("wrk.headers[\"Authorization\"] = {}\n", lua_string(a))).unwrap_or_default();
    std::fs::write(path, format!("{header}{DONE}")).context("writing a wrk script")
}

/// A rotation of `Authorization` values for wrk, so that every request of a run carries another credential.
///
/// The values are split over one file per wrk thread (thread `k` of `T` gets values `k`, `k + T`, ...) and
/// each thread reads its file one line per request, from a byte offset given on wrk's command line: each run
/// carries on where the previous one (warm-up included) stopped, so a set larger than one run goes round in
/// turn instead of its first part being sent again and again. Nothing per value is done in the script's
/// `init`: wrk initialises its threads one after the other and starts each as soon as it is initialised, so
/// a slow `init` (formatting a million requests) would give the first threads a head start counted in the
/// run. A control over one value repeated the same number of times takes exactly the same path in wrk.
pub(crate) struct Rotation {
    script: PathBuf,
    /// Per thread, the byte offset at which each line of its file starts.
    lines: Vec<Vec<u64>>,
    /// Requests sent through this rotation so far, all threads together.
    sent: AtomicU64,
}

impl Rotation {
    /// Writes the files and the script under `dir`, named after `name`, for `threads` wrk threads, from
    /// `values` (one `Authorization` value each; at least one per thread).
    pub(crate) fn write(dir: &Path, name: &str, values: impl Iterator<Item = String>, threads: u32) -> Result<Self> {
        let threads = threads.max(1) as usize;
        let paths: Vec<PathBuf> = (0..threads).map(|k| dir.join(format!("{name}-{k}.txt"))).collect();
        let mut files = Vec::new();
        for path in &paths {
            files.push(std::io::BufWriter::new(std::fs::File::create(path).context("creating a rotation file")?));
        }
        let mut lines = vec![Vec::new(); threads];
        let mut at = vec![0u64; threads];
        for (i, value) in values.enumerate() {
            let k = i % threads;
            anyhow::ensure!(!value.contains(['\r', '\n']), "an Authorization value with a line break");
            lines[k].push(at[k]);
            writeln!(files[k], "{value}")?;
            at[k] += value.len() as u64 + 1;
        }
        for f in &mut files {
            f.flush()?;
        }
        anyhow::ensure!(lines.iter().all(|l| !l.is_empty()), "fewer values than wrk threads for {name}");
        let names: Vec<String> = paths.iter().map(|p| lua_string(&p.display().to_string())).collect();
        let body = format!(
            r#"
local files = {{{files}}}
local threads = 0
function setup(thread)
  thread:set("thread_index", threads)
  threads = threads + 1
end
local f
local pre
function init(args)
  local k = thread_index or 0
  f = assert(io.open(files[k + 1], "r"))
  f:seek("set", tonumber(args[k + 1]) or 0)
  pre = string.format("%s %s HTTP/1.1\r\nHost: %s\r\nAuthorization: ", wrk.method, wrk.path, wrk.headers["Host"])
end
function request()
  local line = f:read("*l")
  if not line then
    f:seek("set", 0)
    line = f:read("*l")
  end
  return pre .. line .. "\r\n\r\n"
end
{DONE}"#,
            files = names.join(", ")
        );
        let script = dir.join(format!("{name}.lua"));
        std::fs::write(&script, body).context("writing a wrk script")?;
        Ok(Self { script, lines, sent: AtomicU64::new(0) })
    }

    /// How many values it rotates through.
    pub(crate) fn len(&self) -> usize {
        self.lines.iter().map(Vec::len).sum()
    }

    /// The script's arguments for the next run: each thread's byte offset.
    fn args(&self) -> Vec<String> {
        let per_thread = self.sent.load(Ordering::Relaxed) / self.lines.len() as u64;
        self.lines.iter().map(|l| l[(per_thread % l.len() as u64) as usize].to_string()).collect()
    }
}

/// What wrk sends in a run.
#[derive(Clone, Copy)]
pub(crate) enum Requests<'a> {
    /// The same request every time (a script from [`static_script`]).
    Fixed(&'a Path),
    /// A [`Rotation`].
    Rotating(&'a Rotation),
}

impl Requests<'_> {
    fn script(&self) -> &Path {
        match self {
            Requests::Fixed(p) => p,
            Requests::Rotating(r) => &r.script,
        }
    }

    fn args(&self) -> Vec<String> {
        match self {
            Requests::Fixed(_) => Vec::new(),
            Requests::Rotating(r) => r.args(),
        }
    }

    fn sent(&self, requests: u64) {
        if let Requests::Rotating(r) = self {
            r.sent.fetch_add(requests, Ordering::Relaxed);
        }
    }
}

/// Runs wrk against `url` with `script` for `secs` seconds.
async fn run_for(load: &Load, secs: u32, url: &str, requests: Requests<'_>) -> Result<Run> {
    let out = tokio::process::Command::new("wrk")
        .arg(format!("-t{}", load.threads))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{secs}s"))
        .arg("--latency")
        .arg("-s")
        .arg(requests.script())
        .arg(url)
        .arg("--")
        .args(requests.args())
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .context("running wrk (apt-get install -y wrk)")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("wrk failed ({}): {}{}", out.status, stdout, String::from_utf8_lossy(&out.stderr));
    }
    let line = stdout.lines().find_map(|l| l.strip_prefix("WRK_JSON ")).context("no WRK_JSON line from wrk")?;
    let run: Run = serde_json::from_str(line).with_context(|| format!("parsing wrk's result {line}"))?;
    requests.sent(run.requests);
    Ok(run)
}

/// The warm-up run (discarded).
pub(crate) async fn warm_up(load: &Load, url: &str, requests: Requests<'_>) -> Result<()> {
    if load.warmup_secs > 0 {
        run_for(load, load.warmup_secs, url, requests).await?;
    }
    Ok(())
}

/// Runs wrk over `rotation` against `url` until every value of it has been sent at least once more (10 s runs),
/// so that what the proxy does on a token's first use (recording it) is behind the measured runs. Returns
/// the requests sent.
pub(crate) async fn pass_once(load: &Load, url: &str, rotation: &Rotation) -> Result<u64> {
    let target = rotation.len() as u64;
    let mut sent = 0;
    while sent < target {
        let run = run_for(load, 10, url, Requests::Rotating(rotation)).await?;
        if run.errors() > 0 {
            bail!("wrk against {url}: {} errors or non-2xx answers in {} requests", run.errors(), run.requests);
        }
        anyhow::ensure!(run.requests > 0, "wrk against {url}: no request in 10 s");
        sent += run.requests;
    }
    Ok(sent)
}

/// The measured run. A run with errors or non-2xx answers is an error: its throughput would not be the
/// throughput of the thing measured.
pub(crate) async fn measured(load: &Load, url: &str, requests: Requests<'_>) -> Result<Run> {
    let run = run_for(load, load.duration_secs, url, requests).await?;
    if run.errors() > 0 {
        bail!("wrk against {url}: {} errors or non-2xx answers in {} requests", run.errors(), run.requests);
    }
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each thread's offset points at the start of the line it is to send next, carrying on across runs
    /// and wrapping around its file.
    #[test]
    fn a_rotation_carries_on_where_the_last_run_stopped() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let values = (0..10).map(|i| format!("L402 token-{i:0width$}", width = 1 + i % 3));
        let rotation = Rotation::write(dir.path(), "r", values, 2)?;
        assert_eq!(rotation.len(), 10);
        let line_at = |k: usize, offset: &str| -> Result<String> {
            let text = std::fs::read_to_string(dir.path().join(format!("r-{k}.txt")))?;
            let at: usize = offset.parse()?;
            Ok(text[at..].lines().next().unwrap_or_default().to_owned())
        };
        let requests = Requests::Rotating(&rotation);
        let args = requests.args();
        assert_eq!((line_at(0, &args[0])?, line_at(1, &args[1])?), ("L402 token-0".into(), "L402 token-01".into()));
        requests.sent(6); // three per thread: thread 0 sent values 0, 2, 4; thread 1 values 1, 3, 5
        let args = requests.args();
        assert_eq!((line_at(0, &args[0])?, line_at(1, &args[1])?), ("L402 token-6".into(), "L402 token-07".into()));
        requests.sent(4); // all ten sent: both threads back at their first line
        let args = requests.args();
        assert_eq!((line_at(0, &args[0])?, line_at(1, &args[1])?), ("L402 token-0".into(), "L402 token-01".into()));
        Ok(())
    }
}

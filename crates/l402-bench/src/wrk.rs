//! Driving `wrk` (Debian's package): generated Lua scripts, one run, its result.
//!
//! Every script ends with a `done` hook that prints one `WRK_JSON {...}` line (requests, duration, latency
//! percentiles in microseconds, non-2xx answers, socket errors), so nothing depends on wrk's text layout.
//! wrk's latency is per request from send to complete response on each connection (wrk 4 does not correct
//! for coordinated omission), measured by a closed loop of `connections` connections.

use std::path::Path;
use std::process::Stdio;

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

/// A script rotating the `Authorization` header through every line of `tokens` (one credential a line):
/// the requests are formatted once in `init`, so each request costs wrk one table lookup. Each thread
/// starts at its own offset.
pub(crate) fn rotating_script(path: &Path, tokens: &Path) -> Result<()> {
    let body = format!(
        r#"
local tokens_file = {file}
local reqs = {{}}
local n = 0
local i = 0
local threads = 0
function setup(thread)
  thread:set("thread_index", threads)
  threads = threads + 1
end
function init(args)
  for line in io.lines(tokens_file) do
    if #line > 0 then
      n = n + 1
      reqs[n] = wrk.format(nil, nil, {{["Authorization"] = line}})
    end
  end
  i = ((thread_index or 0) * 7919) % n
end
function request()
  i = i + 1
  if i > n then i = 1 end
  return reqs[i]
end
{DONE}"#,
        file = lua_string(&tokens.display().to_string())
    );
    std::fs::write(path, body).context("writing a wrk script")
}

/// Runs wrk against `url` with `script` for `secs` seconds.
async fn run_for(load: &Load, secs: u32, url: &str, script: &Path) -> Result<Run> {
    let out = tokio::process::Command::new("wrk")
        .arg(format!("-t{}", load.threads))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{secs}s"))
        .arg("--latency")
        .arg("-s")
        .arg(script)
        .arg(url)
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
    serde_json::from_str(line).with_context(|| format!("parsing wrk's result {line}"))
}

/// The warm-up run (discarded).
pub(crate) async fn warm_up(load: &Load, url: &str, script: &Path) -> Result<()> {
    if load.warmup_secs > 0 {
        run_for(load, load.warmup_secs, url, script).await?;
    }
    Ok(())
}

/// The measured run. A run with errors or non-2xx answers is an error: its throughput would not be the
/// throughput of the thing measured.
pub(crate) async fn measured(load: &Load, url: &str, script: &Path) -> Result<Run> {
    let run = run_for(load, load.duration_secs, url, script).await?;
    if run.errors() > 0 {
        bail!("wrk against {url}: {} errors or non-2xx answers in {} requests", run.errors(), run.requests);
    }
    Ok(run)
}

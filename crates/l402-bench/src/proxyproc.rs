//! `l402 proxy` as a separate process: its configuration file, start, readiness, memory, stop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

use crate::net::LndFiles;

/// Finds the `l402` binary: the flag, then `L402_BIN`, then `target/release/l402` beside this binary.
pub(crate) fn locate_l402(flag: Option<PathBuf>) -> Result<PathBuf> {
    let candidate = flag
        .or_else(|| std::env::var_os("L402_BIN").map(PathBuf::from))
        .or_else(|| std::env::current_exe().ok().and_then(|exe| exe.parent().map(|dir| dir.join("l402"))));
    match candidate {
        Some(p) if p.is_file() => Ok(p),
        Some(p) => bail!("no l402 binary at {} (cargo build --release -p l402-cli, or --l402-bin)", p.display()),
        None => bail!("cannot locate the l402 binary: pass --l402-bin or set L402_BIN"),
    }
}

/// A free loopback port.
pub(crate) fn free_port() -> Result<u16> {
    Ok(l402_regtest::free_port()?)
}

/// The `[lightning]` section for the LND simulator's files.
pub(crate) fn lnd_section(lnd: &LndFiles) -> String {
    format!(
        "[lightning]\nbackend = \"lnd\"\naddress = \"{}\"\ntls_cert = \"{}\"\nmacaroon = \"{}\"\n",
        lnd.address,
        lnd.tls_cert.display(),
        lnd.macaroon.display()
    )
}

/// A running `l402 proxy` process. Dropping it kills the process.
pub(crate) struct ProxyProcess {
    child: Child,
    pid: u32,
    addr: SocketAddr,
    log: PathBuf,
}

impl ProxyProcess {
    /// Writes `config` (checked with `l402_proxy::Config::parse` first) to `path`, starts `l402 proxy` on it
    /// with `RUST_LOG=rust_log`, stderr to `path` + `.log`, and waits until it accepts connections on `port`.
    pub(crate) async fn start(bin: &Path, path: &Path, config: &str, port: u16, rust_log: &str) -> Result<Self> {
        l402_proxy::Config::parse(config).context("the generated proxy configuration")?;
        std::fs::write(path, config).context("writing the proxy configuration")?;
        let log = path.with_extension("log");
        let stderr = std::fs::File::create(&log).context("creating the proxy log")?;
        let child = Command::new(bin)
            .args(["proxy", "--config"])
            .arg(path)
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let pid = child.id().context("the proxy has no pid")?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut proxy = Self { child, pid, addr, log };
        let deadline = Instant::now() + Duration::from_secs(60);
        while tokio::net::TcpStream::connect(addr).await.is_err() {
            if let Some(status) = proxy.child.try_wait()? {
                bail!("l402 proxy exited early ({status}): {}", proxy.log_tail());
            }
            if Instant::now() > deadline {
                bail!("l402 proxy did not listen on {addr} within 60 s: {}", proxy.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(proxy)
    }

    /// Its address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its process id.
    pub(crate) fn pid(&self) -> u32 {
        self.pid
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// Stops it with SIGTERM (a clean shutdown), killing it if it does not exit within 20 s.
    pub(crate) async fn stop(mut self) -> Result<()> {
        let _ = Command::new("kill").args(["-TERM", &self.pid.to_string()]).status().await;
        match tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    bail!("l402 proxy exited with {status}: {}", self.log_tail());
                }
                Ok(())
            }
            Err(_) => {
                self.child.kill().await?;
                bail!("l402 proxy did not stop on SIGTERM within 20 s (killed)")
            }
        }
    }
}

/// A `VmRSS`-like field of `/proc/<pid>/status`, in KiB.
pub(crate) fn proc_status_kib(pid: u32, field: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = text.lines().find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))?;
    line[field.len() + 1..].trim().trim_end_matches("kB").trim().parse().ok()
}

/// The resident set size of a process, KiB.
pub(crate) fn rss_kib(pid: u32) -> Option<u64> {
    proc_status_kib(pid, "VmRSS")
}

/// Samples a process's `VmRSS` every 20 ms on its own thread, keeping the maximum, until dropped.
pub(crate) struct RssSampler {
    stop: Arc<AtomicBool>,
    peak: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl RssSampler {
    /// Starts sampling `pid`.
    pub(crate) fn start(pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak = Arc::new(AtomicU64::new(0));
        let (s, p) = (stop.clone(), peak.clone());
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(kib) = rss_kib(pid) {
                    p.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        Self { stop, peak, thread: Some(thread) }
    }

    /// The highest `VmRSS` seen so far, KiB.
    pub(crate) fn peak_kib(&self) -> u64 {
        self.peak.load(Ordering::Relaxed)
    }
}

impl Drop for RssSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

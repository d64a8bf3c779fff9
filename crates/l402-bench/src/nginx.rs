//! nginx (Debian's package, `/usr/sbin/nginx`) as a plain reverse proxy in front of the same upstream as
//! `l402 proxy`: the yardstick of issue 10 ("`l402 proxy` with payment off at least the req/s of nginx
//! `proxy_pass` with upstream keepalive").
//!
//! Started by the bench from a configuration generated in a temporary directory (no file under /etc, the
//! pid file, logs and temporary paths in that directory), in the foreground (`daemon off`) as a child of the
//! bench, with one worker per core (`worker_processes` = the cores, as `l402 proxy`'s runtime has one worker
//! thread per core). Stopped with SIGTERM, then SIGKILL to the master and workers by their pids: no daemon
//! is left behind. What it does per request mirrors `l402 proxy` with payment off: HTTP/1.1 to the upstream
//! over kept-alive connections, `X-Forwarded-For`, `-Proto` and `-Host` set; no access log (the proxy runs
//! at `warn`, which writes no line per request either). The keep-alive request limits (1,000 per connection
//! by default, on both sides) are raised so that, like `l402 proxy`, it keeps its connections for the whole
//! run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::process::{Child, Command};

/// Where Debian's package installs nginx.
pub(crate) const DEFAULT_BIN: &str = "/usr/sbin/nginx";

/// The nginx binary: `L402_NGINX`, else [`DEFAULT_BIN`].
pub(crate) fn locate() -> Result<PathBuf> {
    let bin = std::env::var_os("L402_NGINX").map_or_else(|| PathBuf::from(DEFAULT_BIN), PathBuf::from);
    if !bin.is_file() {
        bail!("no nginx at {} (apt-get install -y nginx, or set L402_NGINX)", bin.display());
    }
    Ok(bin)
}

/// The configuration: `workers` worker processes, listening on 127.0.0.1:`port`, proxying to `upstream`.
fn config(dir: &Path, port: u16, upstream: SocketAddr, workers: usize) -> String {
    let d = dir.display();
    format!(
        "worker_processes {workers};
daemon off;
master_process on;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 100000000;
    upstream hello {{
        server {upstream};
        keepalive 64;
        keepalive_requests 100000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://hello;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto $scheme;
            proxy_set_header X-Forwarded-Host $host;
        }}
    }}
}}
"
    )
}

/// A running nginx. Dropping it stops it (master and workers).
pub(crate) struct Nginx {
    child: Child,
    master: u32,
    workers: Vec<u32>,
    addr: SocketAddr,
    dir: PathBuf,
}

impl Nginx {
    /// Writes the configuration under `dir` (which must exist), checks it with `nginx -t`, starts nginx and
    /// waits until it listens and its workers are up.
    pub(crate) async fn start(bin: &Path, dir: &Path, upstream: SocketAddr, port: u16) -> Result<Self> {
        let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config(dir, port, upstream, workers)).context("writing nginx.conf")?;
        let args = |test: bool| {
            let mut a: Vec<std::ffi::OsString> =
                vec!["-p".into(), dir.into(), "-e".into(), dir.join("error.log").into()];
            a.extend(["-c".into(), conf.clone().into()]);
            if test {
                a.push("-t".into());
            }
            a
        };
        let check = Command::new(bin).args(args(true)).output().await.context("running nginx -t")?;
        if !check.status.success() {
            bail!("nginx -t refused the generated configuration: {}", String::from_utf8_lossy(&check.stderr));
        }
        let child = Command::new(bin)
            .args(args(false))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let master = child.id().context("nginx has no pid")?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut nginx = Self { child, master, workers: Vec::new(), addr, dir: dir.to_owned() };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = nginx.child.try_wait()? {
                bail!("nginx exited early ({status}): {}", nginx.log_tail());
            }
            nginx.workers = children(master);
            if nginx.workers.len() >= workers && tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(nginx);
            }
            if Instant::now() > deadline {
                bail!("nginx did not listen on {addr} with {workers} workers within 20 s: {}", nginx.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Where it listens.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The master's and the workers' pids (their CPU time together is nginx's).
    pub(crate) fn pids(&self) -> Vec<u32> {
        let mut p = vec![self.master];
        p.extend(&self.workers);
        p
    }

    /// How many worker processes it runs.
    pub(crate) fn worker_count(&self) -> usize {
        self.workers.len()
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }

    /// Stops it: SIGTERM (nginx's fast shutdown), then SIGKILL to whatever is left after 10 s.
    pub(crate) async fn stop(mut self) -> Result<()> {
        signal("TERM", &[self.master]);
        let exited = tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await;
        let left: Vec<u32> = self.pids().into_iter().filter(|p| alive(*p)).collect();
        if !left.is_empty() {
            signal("KILL", &left);
        }
        match exited {
            Ok(status) => {
                status?;
                Ok(())
            }
            Err(_) => bail!("nginx did not stop on SIGTERM within 10 s (killed)"),
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // After `stop`, nothing is left; otherwise (an error on the way) the master and workers go now, the
        // workers by pid since a master killed outright would leave them running.
        let left: Vec<u32> = self.pids().into_iter().filter(|p| alive(*p)).collect();
        if !left.is_empty() {
            signal("KILL", &left);
        }
    }
}

/// Sends `sig` to `pids` (the `kill` command: this crate has no unsafe code).
fn signal(sig: &str, pids: &[u32]) {
    let mut cmd = std::process::Command::new("kill");
    cmd.arg(format!("-{sig}")).args(pids.iter().map(u32::to_string));
    let _ = cmd.stdout(Stdio::null()).stderr(Stdio::null()).status();
}

/// Whether `pid` is still a running (not zombie) process.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(')').map(|(_, rest)| rest.trim_start().to_owned()))
        .is_some_and(|rest| !rest.starts_with('Z'))
}

/// The child processes of `pid`.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

//! A throwaway PostgreSQL server for tests: a cluster in a temporary directory on a free loopback port,
//! started from Debian's `postgresql` binaries and killed on drop.
//!
//! PostgreSQL refuses to run as root; when the tests run as root (CI), the server runs as the `postgres` user
//! through `setpriv`, which execs it (so the child is the server itself).
//!
//! The server runs in its own process group, and [`Postgres::kill`] kills the group: killing the postmaster
//! alone leaves its backends serving the connections they have for a while, so an "outage" would not be one.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::error::RegtestError;
use crate::free_port;

/// A running PostgreSQL server with a database `l402` owned by user `l402` (trust auth on loopback).
pub struct Postgres {
    child: Option<Child>,
    port: u16,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres").field("port", &self.port).finish()
    }
}

fn bin_dir() -> Result<PathBuf, RegtestError> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map_err(|_| RegtestError::BitcoindNotFound("PostgreSQL is not installed (apt-get install postgresql)".into()))?
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("postgres").is_file() && p.join("initdb").is_file())
        .collect();
    found.sort();
    found
        .pop()
        .ok_or_else(|| RegtestError::BitcoindNotFound("no PostgreSQL server binaries in /usr/lib/postgresql".into()))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(|l| l.split_whitespace().nth(1) == Some("0")))
        .unwrap_or(false)
}

fn as_server_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=postgres", "--regid=postgres", "--init-groups"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

impl Postgres {
    /// Creates a cluster and starts the server; waits until it accepts connections.
    pub async fn start() -> Result<Self, RegtestError> {
        let bin = bin_dir()?;
        let dir = tempfile::Builder::new()
            .prefix("l402-pg-")
            .tempdir()
            .map_err(|e| RegtestError::Io("pg tempdir".into(), e))?;
        let data = dir.path().join("data");
        if is_root() {
            let ok = Command::new("chown").args(["-R", "postgres:postgres"]).arg(dir.path()).status();
            if !matches!(ok, Ok(s) if s.success()) {
                return Err(RegtestError::Rpc {
                    method: "chown".into(),
                    message: "cannot hand the cluster to postgres".into(),
                });
            }
        }
        let out = as_server_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&data)
            .args(["-A", "trust", "-U", "l402", "--no-sync", "-E", "UTF8"])
            .output()
            .map_err(|e| RegtestError::Io("running initdb".into(), e))?;
        if !out.status.success() {
            return Err(RegtestError::Rpc {
                method: "initdb".into(),
                message: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        let port = free_port()?;
        let log =
            std::fs::File::create(dir.path().join("postgres.log")).map_err(|e| RegtestError::Io("pg log".into(), e))?;
        let child = as_server_user(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args([
                "-p",
                &port.to_string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "max_connections=200",
            ])
            .arg("-k")
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| RegtestError::Io("starting postgres".into(), e))?;
        let mut pg = Self { child: Some(child), port, _dir: dir };
        pg.wait_ready().await?;
        let out = Command::new(bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "l402", "l402"])
            .output()
            .map_err(|e| RegtestError::Io("running createdb".into(), e))?;
        if !out.status.success() {
            return Err(RegtestError::Rpc {
                method: "createdb".into(),
                message: String::from_utf8_lossy(&out.stderr).into_owned(),
            });
        }
        Ok(pg)
    }

    async fn wait_ready(&mut self) -> Result<(), RegtestError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port)).await.is_ok() {
                // Accepting TCP is not yet accepting sessions; give startup a moment to finish.
                tokio::time::sleep(Duration::from_millis(200)).await;
                return Ok(());
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                return Err(RegtestError::Rpc { method: "postgres".into(), message: format!("exited with {status}") });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RegtestError::Timeout("postgres to accept connections".into()));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A libpq connection string for the `l402` database.
    pub fn connection_string(&self) -> String {
        format!("host=127.0.0.1 port={} user=l402 dbname=l402", self.port)
    }

    /// The server's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Stops the server and every backend, at once (an outage, for fault tests), and waits until they are
    /// gone. It is not restarted.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let group = format!("-{}", c.id());
            let _ = Command::new("kill").args(["-KILL", "--", &group]).stderr(Stdio::null()).status();
            let _ = c.kill();
            let _ = c.wait();
            // The backends are not our children: wait until the group is empty (kill -0 fails).
            for _ in 0..100 {
                let alive = Command::new("kill").args(["-0", "--", &group]).stderr(Stdio::null()).status();
                if !alive.is_ok_and(|s| s.success()) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.kill();
    }
}

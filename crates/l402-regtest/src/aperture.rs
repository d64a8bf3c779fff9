//! Lightning Labs' Aperture (v0.5.0, built by `scripts/install-peers.sh`), the L402 proxy people run today,
//! in front of upstreams on loopback and backed by one of the network's real LND nodes: the anchor our server
//! and client are compared with, in interop tests and in the benchmarks.
//!
//! Config keys as measured against v0.5.0: the SQLite file is `sqlite.databasefilename` (the sample's
//! `dbfile` is the command-line flag's name and is ignored in YAML); `dbbackend: sqlite` (the default is not
//! usable without etcd); `insecure: true` serves plain HTTP; Aperture reads `<macdir>/invoice.macaroon`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::bitcoind::spawn_watchdog;
use crate::error::RegtestError;
use crate::free_port;
use crate::lnd::{Lnd, find_peer};

/// One service Aperture sells.
#[derive(Clone, Debug)]
pub struct ApertureService {
    /// The service name (the `services=<name>:0` caveat).
    pub name: String,
    /// Aperture's `pathregexp`.
    pub path_regexp: String,
    /// The upstream, plain HTTP.
    pub upstream: SocketAddr,
    /// The price, sat (0 means free in Aperture).
    pub price_sat: u64,
}

/// A running Aperture. Killed (with its watchdog) when dropped.
pub struct Aperture {
    child: Option<Child>,
    watchdog: Option<Child>,
    listen: SocketAddr,
    dir: PathBuf,
}

impl std::fmt::Debug for Aperture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aperture").field("listen", &self.listen).field("dir", &self.dir).finish_non_exhaustive()
    }
}

impl Aperture {
    /// Starts Aperture with its files in `dir`, minting invoices on `lnd`, selling `services`, and waits until
    /// it answers HTTP.
    pub async fn start(dir: &Path, lnd: &Lnd, services: &[ApertureService]) -> Result<Self, RegtestError> {
        Self::start_with(dir, lnd, services, false).await
    }

    /// As [`Aperture::start`], with its `Payment` scheme on when `mpp` (`authenticator.enablempp`, realm
    /// `aperture-regtest`): each 402 then carries a `Payment` charge line after the L402 ones, with an invoice
    /// of its own.
    pub async fn start_with(
        dir: &Path,
        lnd: &Lnd,
        services: &[ApertureService],
        mpp: bool,
    ) -> Result<Self, RegtestError> {
        Self::launch(dir, lnd, services, if mpp { Mpp::Charge } else { Mpp::Off }).await
    }

    /// As [`Aperture::start_with`] with MPP on, and its session intent too (`authenticator.enablesessions`):
    /// each 402 then also carries a `Payment ... intent="session"` line (a deposit invoice of
    /// `sessiondepositmultiplier` = 20 × the price), and closes are refunded through `lnd` (its admin
    /// macaroon, from the same macaroon directory).
    pub async fn start_with_sessions(
        dir: &Path,
        lnd: &Lnd,
        services: &[ApertureService],
    ) -> Result<Self, RegtestError> {
        Self::launch(dir, lnd, services, Mpp::Sessions).await
    }

    async fn launch(dir: &Path, lnd: &Lnd, services: &[ApertureService], mpp: Mpp) -> Result<Self, RegtestError> {
        let exe = find_peer("aperture", "L402_APERTURE")?;
        std::fs::create_dir_all(dir).map_err(|e| RegtestError::Io("creating Aperture's directory".into(), e))?;
        let listen: SocketAddr = ([127, 0, 0, 1], free_port()?).into();
        let config = dir.join("aperture.yaml");
        std::fs::write(&config, yaml(listen, dir, lnd, services, mpp))
            .map_err(|e| RegtestError::Io("writing aperture.yaml".into(), e))?;
        let log = std::fs::File::create(dir.join("stdout.log"))
            .map_err(|e| RegtestError::Io("creating Aperture's log".into(), e))?;
        let child = Command::new(&exe)
            .arg(format!("--configfile={}", config.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| RegtestError::Io("Aperture's log".into(), e))?)
            .stderr(log)
            .spawn()
            .map_err(|e| RegtestError::Io(format!("starting {}", exe.display()), e))?;
        let watchdog = spawn_watchdog(child.id());
        let mut me = Self { child: Some(child), watchdog, listen, dir: dir.to_owned() };
        me.wait_ready().await?;
        Ok(me)
    }

    async fn wait_ready(&mut self) -> Result<(), RegtestError> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten()) {
                let log = std::fs::read_to_string(self.dir.join("stdout.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(8).collect();
                return Err(RegtestError::Peer {
                    name: "aperture".into(),
                    message: format!("exited with {status}: {}", tail.join(" | ")),
                });
            }
            if tokio::net::TcpStream::connect(self.listen).await.is_ok() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RegtestError::Timeout("Aperture to listen".into()));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Where it listens (plain HTTP).
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }

    /// `http://<listen><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.listen)
    }

    /// Its directory (config, database, log).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills it.
    pub fn kill(&mut self) {
        for c in [self.child.take(), self.watchdog.take()].into_iter().flatten() {
            let mut c = c;
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Aperture {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Which of Aperture's MPP features are on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mpp {
    Off,
    Charge,
    Sessions,
}

fn yaml(listen: SocketAddr, dir: &Path, lnd: &Lnd, services: &[ApertureService], mpp: Mpp) -> String {
    let macdir = lnd.macaroon_path(crate::lnd::LndMacaroon::Invoice);
    let macdir = macdir.parent().unwrap_or(Path::new("."));
    let mut out = format!(
        "listenaddr: \"{listen}\"\ninsecure: true\nbasedir: \"{dir}\"\ndebuglevel: \"info\"\n\
         dbbackend: \"sqlite\"\nsqlite:\n  databasefilename: \"{db}\"\n\
         authenticator:\n  network: \"regtest\"\n  lndhost: \"{lndhost}\"\n  tlspath: \"{tls}\"\n  macdir: \"{macdir}\"\n\
         services:\n",
        dir = dir.display(),
        db = dir.join("aperture.db").display(),
        lndhost = lnd.rpc_address(),
        tls = lnd.tls_cert_path().display(),
        macdir = macdir.display(),
    );
    if mpp != Mpp::Off {
        let at = out.find("services:\n").unwrap_or(out.len());
        let sessions = if mpp == Mpp::Sessions { "  enablesessions: true\n" } else { "" };
        out.insert_str(at, &format!("  enablempp: true\n  mpprealm: \"aperture-regtest\"\n{sessions}"));
    }
    for s in services {
        out.push_str(&format!(
            "  - name: \"{}\"\n    hostregexp: '.*'\n    pathregexp: '{}'\n    address: \"{}\"\n    protocol: http\n    price: {}\n",
            s.name, s.path_regexp, s.upstream, s.price_sat
        ));
    }
    out
}

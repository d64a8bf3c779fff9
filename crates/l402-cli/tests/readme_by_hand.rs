//! The README's "Try it yourself" section, run as it is written: its fenced blocks in order, each line in the
//! shell of the terminal the block's first line names (`# terminal N`), with the built `l402` first on PATH,
//! in a temporary HOME, TMPDIR (so the network's default directory is ours) and working directory. `l402
//! proxy` runs in the background of its terminal, as its own job; a `Ctrl-C` comment sends that job SIGINT,
//! as the key would. Real bitcoind, real LND, real payments; a missing part fails the test, saying how to
//! install it.
#![allow(missing_docs)]

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The fenced blocks of the README's "Try it yourself" section, each with the terminal its first line names.
fn blocks() -> Vec<(String, Vec<String>)> {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).expect("README");
    let start = readme.find("\n## Try it yourself\n").expect("a \"## Try it yourself\" section in README.md");
    let section = &readme[start + 1..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let mut blocks = Vec::new();
    let mut lines = section.lines();
    while let Some(line) = lines.next() {
        if !line.starts_with("```") {
            continue;
        }
        let body: Vec<String> = lines.by_ref().take_while(|l| !l.starts_with("```")).map(str::to_owned).collect();
        let terminal = body
            .first()
            .and_then(|l| l.strip_prefix("# terminal "))
            .and_then(|l| l.split(|c: char| !c.is_ascii_digit()).next())
            .unwrap_or_else(|| panic!("a block whose first line does not say `# terminal N`: {body:?}"))
            .to_owned();
        blocks.push((terminal, body));
    }
    assert!(blocks.len() >= 3, "the section has its blocks: {blocks:?}");
    blocks
}

/// What one line printed, and how it exited.
#[derive(Debug)]
struct Ran {
    line: String,
    code: i32,
    stdout: String,
    stderr: String,
}

/// One terminal: a bash with job control (a background job is its own process group, as in a terminal)
/// reading the lines it is given, each line's output kept in files.
struct Terminal {
    name: String,
    shell: Child,
    stdin: ChildStdin,
    out: PathBuf,
    n: usize,
    /// The background job, while it runs: its process group and its stderr file.
    job: Option<(u32, PathBuf)>,
}

impl Terminal {
    fn start(name: &str, work: &Path, env: &HashMap<String, String>, out: &Path) -> Self {
        let out = out.join(format!("terminal-{name}"));
        std::fs::create_dir_all(&out).expect("output dir");
        let mut shell = Command::new("bash")
            .current_dir(work)
            .env_clear()
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("bash starts");
        let mut stdin = shell.stdin.take().expect("stdin");
        writeln!(stdin, "set -m").expect("bash");
        Self { name: name.to_owned(), shell, stdin, out, n: 0, job: None }
    }

    fn file(&self, ext: &str) -> PathBuf {
        self.out.join(format!("{}.{ext}", self.n))
    }

    /// Gives `line` to the shell, its output to files, in the foreground or as a background job. Returns the
    /// stdout and stderr files and the file that then receives `$?` (foreground) or `$!` (background).
    fn submit(&mut self, line: &str, background: bool) -> (PathBuf, PathBuf, PathBuf) {
        self.n += 1;
        let (out, err) = (self.file("out"), self.file("err"));
        let (mark, var, amp) = if background { (self.file("pid"), "$!", " &") } else { (self.file("rc"), "$?", "") };
        writeln!(
            self.stdin,
            "{{\n{line}\n}} </dev/null >'{}' 2>'{}'{amp}\necho {var} >'{m}.tmp' && mv '{m}.tmp' '{m}'",
            out.display(),
            err.display(),
            m = mark.display()
        )
        .expect("bash reads");
        (out, err, mark)
    }

    /// Waits (at most `timeout`) for `mark` and returns what it holds.
    fn wait_for(&self, mark: &Path, line: &str, err: &Path, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        while !mark.exists() {
            let so_far = std::fs::read_to_string(err).unwrap_or_default();
            assert!(Instant::now() < deadline, "terminal {}: `{line}` took over {timeout:?}:\n{so_far}", self.name);
            std::thread::sleep(Duration::from_millis(50));
        }
        std::fs::read_to_string(mark).expect("mark").trim().to_owned()
    }

    /// Runs `line` in this terminal and waits for it (at most `timeout`).
    fn run(&mut self, line: &str, timeout: Duration) -> Ran {
        let (out, err, rc) = self.submit(line, false);
        let code = self.wait_for(&rc, line, &err, timeout).parse().expect("exit code");
        Ran {
            line: line.to_owned(),
            code,
            stdout: std::fs::read_to_string(&out).unwrap_or_default(),
            stderr: std::fs::read_to_string(&err).unwrap_or_default(),
        }
    }

    /// Starts `line` as this terminal's background job, and waits until its stderr says `ready`.
    fn background(&mut self, line: &str, ready: &str) {
        let (_, err, pid) = self.submit(line, true);
        let pgid: u32 = self.wait_for(&pid, line, &err, Duration::from_secs(10)).parse().expect("pid");
        self.job = Some((pgid, err.clone()));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let text = std::fs::read_to_string(&err).unwrap_or_default();
            if text.contains(ready) {
                return;
            }
            assert!(alive(pgid), "terminal {}: `{line}` exited:\n{text}", self.name);
            assert!(Instant::now() < deadline, "terminal {}: `{line}` not ready within 60 s:\n{text}", self.name);
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Ctrl-C: SIGINT to the background job's process group; waits until it is gone and returns its stderr.
    fn interrupt(&mut self) -> String {
        let (pgid, err) =
            self.job.take().unwrap_or_else(|| panic!("terminal {}: Ctrl-C with nothing running", self.name));
        signal("-INT", pgid);
        let deadline = Instant::now() + Duration::from_secs(30);
        while alive(pgid) {
            assert!(Instant::now() < deadline, "terminal {}: the job did not stop on Ctrl-C", self.name);
            std::thread::sleep(Duration::from_millis(100));
        }
        std::fs::read_to_string(err).unwrap_or_default()
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Some((pgid, _)) = self.job.take() {
            signal("-TERM", pgid);
        }
        let _ = self.shell.kill();
        let _ = self.shell.wait();
    }
}

/// Sends `sig` to the process group `pgid` (one this test started).
fn signal(sig: &str, pgid: u32) {
    let _ = Command::new("kill").args([sig, "--", &format!("-{pgid}")]).status();
}

fn alive(pid: u32) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    !stat.is_empty() && stat.split_whitespace().nth(2) != Some("Z")
}

/// Stops the network the README started, whatever happened (the README's own `down` does it on success).
struct NetworkGuard(PathBuf);

impl Drop for NetworkGuard {
    fn drop(&mut self) {
        if self.0.join("state.json").exists() {
            let _ = Command::new(env!("CARGO_BIN_EXE_l402")).args(["regtest", "down", "--dir"]).arg(&self.0).output();
        }
    }
}

/// Every part the README needs is here, or the test fails saying how to get it.
fn check_parts() {
    let install = "run `source scripts/install-deps.sh` (bitcoind, and LND built by scripts/install-peers.sh)";
    l402_regtest::find_bitcoind().unwrap_or_else(|e| panic!("bitcoind: {e}; {install}"));
    for (name, env) in [("lnd", "L402_LND"), ("lncli", "L402_LNCLI")] {
        l402_regtest::lnd::find_peer(name, env).unwrap_or_else(|e| panic!("{name}: {e}; {install}"));
    }
    let curl = Command::new("curl").arg("--version").output();
    assert!(curl.is_ok_and(|o| o.status.success()), "curl is missing: apt-get install curl");
}

/// The environment the terminals start with: this one, minus the client's own settings, with the built `l402`
/// first on PATH and a HOME and TMPDIR of the test's own. A new terminal after `bash scripts/demo.sh` names no
/// peer (the script's exports die with it): the variables naming bitcoind, LND and lncli reach the terminals
/// only for a part that `l402` would not find in the project's `.tools/` on its own.
fn environment(tmp: &Path) -> HashMap<String, String> {
    let tools = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.tools");
    let keep: Vec<&str> =
        [("L402_BITCOIND", "bitcoind/bin/bitcoind"), ("L402_LND", "peers/bin/lnd"), ("L402_LNCLI", "peers/bin/lncli")]
            .into_iter()
            .filter(|(_, path)| !tools.join(path).is_file())
            .map(|(k, _)| k)
            .collect();
    let mut env: HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| !k.starts_with("L402_") || keep.contains(&k.as_str()))
        .filter(|(k, _)| !["XDG_DATA_HOME", "RUST_LOG"].contains(&k.as_str()))
        .collect();
    let bin = Path::new(env!("CARGO_BIN_EXE_l402")).parent().expect("bin dir").display().to_string();
    let path = env.get("PATH").cloned().unwrap_or_default();
    env.insert("PATH".into(), format!("{bin}:{path}"));
    for (k, dir) in [("HOME", "home"), ("TMPDIR", "tmp")] {
        std::fs::create_dir_all(tmp.join(dir)).expect("dir");
        env.insert(k.into(), tmp.join(dir).display().to_string());
    }
    env
}

/// The network's processes, by state.json (the server, bitcoind and the LND nodes), and the operator's pubkey.
fn network(dir: &Path) -> (Vec<(String, u32)>, String) {
    let state: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("state.json")).expect("state.json")).expect("json");
    let pid = |v: &Value| u32::try_from(v.as_u64().expect("a pid")).expect("pid");
    let mut pids = vec![
        ("the network server".to_owned(), pid(&state["pid"])),
        ("bitcoind".into(), pid(&state["bitcoind"]["pid"])),
    ];
    let mut operator = String::new();
    for n in state["lnd"].as_array().expect("LND nodes") {
        pids.push((format!("LND {}", n["name"]), pid(&n["pid"])));
        if n["name"] == "operator" {
            operator = n["pubkey"].as_str().expect("pubkey").to_owned();
        }
    }
    (pids, operator)
}

/// Where the README's proxy listens.
const PROXY_ADDRESS: &str = "127.0.0.1:8402";

/// Runs of this test on one machine (other checkouts) take turns, the README's proxy having a fixed address:
/// a lock file first (an `flock`, the client's own), then the address itself (a run without the lock, or
/// another program). Held while the returned file is open.
fn take_turn() -> std::fs::File {
    let path = std::env::temp_dir().join("l402-readme-by-hand.lock");
    let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
    let lock = rt
        .block_on(l402_client::lock_exclusive(&path, Duration::from_secs(900)))
        .unwrap_or_else(|e| panic!("{} stayed locked for 15 min (another run of this test?): {e}", path.display()));
    let deadline = Instant::now() + Duration::from_secs(300);
    while std::net::TcpListener::bind(PROXY_ADDRESS).is_err() {
        assert!(
            Instant::now() < deadline,
            "{PROXY_ADDRESS}, where the README's proxy listens, stayed in use for 5 min"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    lock
}

#[test]
fn the_readme_try_it_yourself_section_runs_as_written() {
    check_parts();
    let _turn = take_turn();
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tmp");
    let env = environment(tmp.path());
    let work = tmp.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let net_dir = tmp.path().join("tmp/l402-regtest"); // `l402 regtest`'s default directory under our TMPDIR
    let _network = NetworkGuard(net_dir.clone());
    let mut terminals: HashMap<String, Terminal> = HashMap::new();
    let mut ran: Vec<Ran> = Vec::new();
    let mut interrupted = String::new();
    let (mut pids, mut operator_pubkey) = (Vec::new(), String::new());
    for (terminal, lines) in blocks() {
        let term = terminals
            .entry(terminal.clone())
            .or_insert_with(|| Terminal::start(&terminal, &work, &env, &tmp.path().join("out")));
        for line in lines.iter().map(|l| l.trim()).filter(|l| !l.is_empty()) {
            if line.starts_with('#') {
                if line.contains("Ctrl-C") {
                    interrupted = term.interrupt();
                }
                continue;
            }
            if line.starts_with("l402 proxy ") {
                term.background(line, "l402 proxy: listening on");
                continue;
            }
            let r = term.run(line, Duration::from_secs(300));
            assert_eq!(r.code, 0, "terminal {terminal}: `{line}` exited {}:\n{}\n{}", r.code, r.stdout, r.stderr);
            if line.starts_with("l402 regtest up") {
                (pids, operator_pubkey) = network(&net_dir);
            }
            ran.push(r);
        }
    }
    let secs = started.elapsed().as_secs_f64();

    let find = |prefix: &str| -> Vec<&Ran> { ran.iter().filter(|r| r.line.starts_with(prefix)).collect() };
    // `up` started the network with LND, said so, and pointed at `regtest env`.
    let up = find("l402 regtest up");
    assert_eq!(up.len(), 1);
    for expected in ["running", "LND payer", "LND operator", "l402 regtest env operator", "l402 regtest env payer"] {
        assert!(up[0].stdout.contains(expected), "`regtest up` shows {expected:?}:\n{}", up[0].stdout);
    }
    // The proxy config names files, not secrets.
    let config = std::fs::read_to_string(work.join("l402.toml")).expect("l402.toml was written");
    assert!(config.contains("invoice.macaroon") && !config.contains("AgEDbG5k"), "{config}");

    let json = |r: &Ran| -> Value { serde_json::from_str(r.stdout.trim()).unwrap_or_else(|e| panic!("{e}: {r:?}")) };
    // The dry run showed the 402's price, to be paid to the operator, and paid nothing.
    let dry = find("l402 fetch --dry-run");
    assert_eq!(dry.len(), 1, "one dry run: {dry:?}");
    let quote = json(dry[0]);
    assert_eq!(quote["payment_required"], true, "{quote}");
    assert_eq!((quote["amount_msat"].as_u64(), quote["would_pay"].as_bool()), (Some(10_000), Some(true)), "{quote}");
    assert_eq!(quote["network"], "regtest", "{quote}");
    assert_eq!(quote["destination"], operator_pubkey, "the operator's LND issued the invoice: {quote}");

    // The first fetch met the 402 and paid; the second reused the token.
    let fetches = find("l402 fetch -i");
    assert_eq!(fetches.len(), 2, "two fetches: {fetches:?}");
    let (first, second) = (json(fetches[0]), json(fetches[1]));
    assert_eq!(first["status"], 200, "{first}");
    assert!(first["body"].as_str().unwrap_or_default().contains("Lisbon"), "the sample API's forecast: {first}");
    assert_eq!(first["payment"]["amount_msat"], 10_000, "paid 10 sat: {first}");
    assert!(fetches[0].stderr.contains("paying 10 sat"), "the payment shown: {}", fetches[0].stderr);
    assert_eq!(second["status"], 200, "{second}");
    assert!(second["payment"].is_null(), "the stored token, nothing paid: {second}");
    assert_eq!(second["token_id"], first["token_id"]);
    assert!(!fetches[1].stderr.contains("paying"), "{}", fetches[1].stderr);

    // `l402 spend`: one payment of 10 sat.
    let spend = find("l402 spend");
    assert_eq!(spend.len(), 1);
    assert_eq!(spend[0].stdout.matches("succeeded").count(), 1, "{}", spend[0].stdout);
    assert!(spend[0].stdout.contains("spent 10 sat"), "{}", spend[0].stdout);
    let payment_hash = first["payment"]["payment_hash"].as_str().expect("hash");
    assert!(spend[0].stdout.contains(payment_hash), "{}", spend[0].stdout);

    // `regtest pay` printed the preimage of the curl's invoice, and curl got the forecast with it.
    let pay = find("preimage=$(l402 regtest pay");
    assert_eq!(pay.len(), 1);
    let preimage = pay[0].stdout.trim();
    assert!(preimage.len() == 64 && preimage.bytes().all(|b| b.is_ascii_hexdigit()), "{:?}", pay[0]);
    let terminal2 = terminals.get_mut("2").expect("terminal 2");
    let invoice = terminal2.run("echo \"$invoice\"", Duration::from_secs(5)).stdout;
    let (_, info) = l402_proto::invoice::decode_invoice(invoice.trim()).expect("the 402's invoice");
    let preimage = l402_proto::Preimage::from_hex(preimage).expect("preimage");
    assert_eq!(preimage.payment_hash(), info.payment_hash, "sha256(preimage) is the invoice's payment hash");
    let curl = find("curl -s -H");
    assert_eq!(curl.len(), 1);
    assert!(curl[0].stdout.contains("Lisbon"), "curl, paid by hand, gets the forecast: {:?}", curl[0]);

    // Ctrl-C stopped the proxy; `regtest down` stopped everything else.
    assert!(interrupted.contains("l402 proxy: shutting down"), "{interrupted}");
    let down = find("l402 regtest down");
    assert_eq!(down.len(), 1);
    assert!(!net_dir.join("state.json").exists(), "no network after `down`");
    let serve_log = std::fs::read_to_string(net_dir.join("serve.log")).unwrap_or_default();
    assert!(serve_log.contains("shutting down"), "{serve_log}");
    assert_eq!(pids.len(), 4, "the server, bitcoind and two LND nodes: {pids:?}");
    for (what, pid) in pids {
        assert!(!alive(pid), "{what} (pid {pid}) still runs after `l402 regtest down`");
    }
    eprintln!("the README's \"Try it yourself\" ran in {secs:.1} s");
}

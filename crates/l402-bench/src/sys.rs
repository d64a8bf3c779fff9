//! What the machine was doing during a measurement, from `/proc`: CPU time of a process, of this benchmark,
//! of the whole machine, and from those the share other processes (builds and tests of other work on a
//! shared machine) took, and the share spent waiting on the disk. Processes this benchmark started (the
//! proxies, bitcoind, wrk) count as its own.

use tokio::process::Command;

/// The length of a clock tick, µs (`getconf CLK_TCK`; 100 Hz if that cannot be asked).
pub(crate) async fn clock_tick_us() -> f64 {
    let hz = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .await
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok())
        .filter(|hz| *hz > 0.0)
        .unwrap_or(100.0);
    1e6 / hz
}

/// The fields of a `/proc/<pid>/stat` after the command name (so index 0 is field 3, the state).
fn stat_fields(path: &str) -> Option<Vec<u64>> {
    let text = std::fs::read_to_string(path).ok()?;
    Some(text.rsplit_once(')')?.1.split_whitespace().map(|f| f.parse().unwrap_or(0)).collect())
}

/// CPU time a process has used (user + system), µs.
pub(crate) fn process_cpu_us(pid: u32, tick_us: f64) -> Option<f64> {
    let f = stat_fields(&format!("/proc/{pid}/stat"))?;
    Some((f.get(11)? + f.get(12)?) as f64 * tick_us)
}

/// This process's CPU time with that of its reaped children (wrk runs), µs.
fn own_cpu_us(tick_us: f64) -> Option<f64> {
    let f = stat_fields("/proc/self/stat")?;
    Some(f.get(11..15)?.iter().sum::<u64>() as f64 * tick_us)
}

/// The whole machine's CPU time, µs, over all cores: (busy, iowait, total).
fn machine_cpu_us(tick_us: f64) -> Option<(f64, f64, f64)> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let v: Vec<u64> = text.lines().next()?.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)? + v.get(7)?;
    let (idle, iowait) = (*v.get(3)?, *v.get(4)?);
    Some((busy as f64 * tick_us, iowait as f64 * tick_us, (busy + idle + iowait) as f64 * tick_us))
}

/// CPU time of every running descendant of this process (the proxies, bitcoind, wrk while it runs), µs.
fn descendants_cpu_us(tick_us: f64) -> f64 {
    let me = std::process::id();
    let mut procs = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            if let Some(f) = stat_fields(&format!("/proc/{pid}/stat")) {
                // ppid is field 4; utime, stime 14, 15.
                let cpu = (f.get(11).unwrap_or(&0) + f.get(12).unwrap_or(&0)) as f64 * tick_us;
                procs.push((pid, f.get(1).copied().unwrap_or(0) as u32, cpu));
            }
        }
    }
    let mut ours = vec![me];
    let mut total = 0.0;
    let mut grew = true;
    while grew {
        grew = false;
        for (pid, ppid, cpu) in &procs {
            if ours.contains(ppid) && !ours.contains(pid) {
                ours.push(*pid);
                total += cpu;
                grew = true;
            }
        }
    }
    total
}

/// CPU counters at one instant: the machine, this benchmark with its reaped children, and its running
/// descendants.
#[derive(Clone, Debug)]
pub(crate) struct Snapshot {
    machine: Option<(f64, f64, f64)>,
    own: Option<f64>,
    children: f64,
}

impl Snapshot {
    /// Now.
    pub(crate) fn take(tick_us: f64) -> Self {
        Self { machine: machine_cpu_us(tick_us), own: own_cpu_us(tick_us), children: descendants_cpu_us(tick_us) }
    }

    /// The share of the machine's CPU time other processes used since `before` (0 on a quiet machine).
    pub(crate) fn foreign_since(&self, before: &Snapshot) -> Option<f64> {
        let ((b_busy, _, b_total), (a_busy, _, a_total)) = (before.machine?, self.machine?);
        if a_total <= b_total {
            return None;
        }
        let ours = (self.own? - before.own?) + (self.children - before.children);
        Some((((a_busy - b_busy) - ours) / (a_total - b_total)).max(0.0))
    }

    /// The share of the machine's CPU time spent idle waiting on the disk since `before`.
    pub(crate) fn iowait_since(&self, before: &Snapshot) -> Option<f64> {
        let ((_, b_io, b_total), (_, a_io, a_total)) = (before.machine?, self.machine?);
        (a_total > b_total).then(|| (a_io - b_io) / (a_total - b_total))
    }
}

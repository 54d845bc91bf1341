//! CPU time and memory of other processes, read from Linux `/proc`: `stat` (utime + stime) and
//! `status` (VmRSS, VmHWM), plus a sampler thread that tracks peak RSS while load runs.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

/// One reading of a process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcSample {
    /// User + system CPU time, in clock ticks.
    pub cpu_ticks: u64,
    /// Resident set size, KiB.
    pub rss_kib: u64,
    /// Peak resident set size since start, KiB.
    pub hwm_kib: u64,
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`.
///
/// # Errors
/// The read error (e.g. the process is gone), or `InvalidData` when the files do not parse.
pub fn sample(pid: u32) -> io::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let cpu_ticks = parse_cpu_ticks(&stat).ok_or_else(|| bad("stat"))?;
    Ok(ProcSample {
        cpu_ticks,
        rss_kib: parse_status_kib(&status, "VmRSS:").ok_or_else(|| bad("VmRSS"))?,
        hwm_kib: parse_status_kib(&status, "VmHWM:").ok_or_else(|| bad("VmHWM"))?,
    })
}

fn bad(what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("unparsable /proc {what}"),
    )
}

/// utime (field 14) + stime (field 15) from a `/proc/<pid>/stat` line. The command name (field
/// 2) may contain spaces and parentheses, so fields are counted after its last `)`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // `rest` starts at field 3 (state); utime is field 14, i.e. index 11 here.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `Name:   123 kB` line's value.
fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100, the Linux default, if that fails).
pub fn clock_ticks_per_sec() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            .unwrap_or(100)
    })
}

/// Samples the RSS of some processes periodically, keeping the largest value seen per pid.
#[derive(Debug)]
pub struct RssSampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<BTreeMap<u32, u64>>,
}

impl RssSampler {
    /// Starts sampling `pids` every `every`.
    ///
    /// # Errors
    /// When the thread cannot be started.
    pub fn start(pids: Vec<u32>, every: Duration) -> io::Result<RssSampler> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("rss-sampler".into())
            .spawn(move || {
                let mut peak = BTreeMap::new();
                loop {
                    for &pid in &pids {
                        if let Ok(s) = sample(pid) {
                            let p = peak.entry(pid).or_insert(0);
                            *p = s.rss_kib.max(*p);
                        }
                    }
                    if flag.load(Ordering::Acquire) {
                        return peak;
                    }
                    std::thread::sleep(every);
                }
            })?;
        Ok(RssSampler { stop, thread })
    }

    /// Stops and returns the peak RSS (KiB) seen per pid.
    pub fn stop(self) -> BTreeMap<u32, u64> {
        self.stop.store(true, Ordering::Release);
        self.thread.join().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_awkward_command_names() {
        let stat = "1234 (side car) x) S 1 1234 1234 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(parse_cpu_ticks(stat), Some(325));
        assert_eq!(parse_cpu_ticks("garbage"), None);
    }

    #[test]
    fn parses_status_lines() {
        let status = "Name:\tsidecar\nVmHWM:\t   20480 kB\nVmRSS:\t   10240 kB\n";
        assert_eq!(parse_status_kib(status, "VmRSS:"), Some(10240));
        assert_eq!(parse_status_kib(status, "VmHWM:"), Some(20480));
        assert_eq!(parse_status_kib(status, "VmSwap:"), None);
    }

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id()).expect("own /proc entry");
        assert!(s.rss_kib > 0 && s.hwm_kib >= s.rss_kib, "{s:?}");
        assert!(clock_ticks_per_sec() > 0);
        let sampler =
            RssSampler::start(vec![std::process::id()], Duration::from_millis(1)).expect("thread");
        let peak = sampler.stop();
        assert!(peak[&std::process::id()] > 0);
    }
}

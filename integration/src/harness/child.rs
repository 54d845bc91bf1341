//! One child process with its own scratch directory and log file: spawn, signal, wait, kill on
//! drop, and show the log when a test fails.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::HarnessError;

/// How often waits poll the child.
const POLL: Duration = Duration::from_millis(10);
/// Set this environment variable to keep every child's scratch directory (config and log).
pub const KEEP_LOGS_ENV: &str = "INTEGRATION_KEEP_LOGS";
/// How much of the log goes into error messages.
const TAIL_LINES: usize = 40;

/// A scratch directory under the system temp dir, unique per call.
pub(crate) fn scratch_dir(prefix: &str) -> Result<PathBuf, HarnessError> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "{prefix}-{}-{}-{nanos}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).map_err(|source| HarnessError::Io {
        action: "creating scratch dir",
        path: dir.clone(),
        source,
    })?;
    Ok(dir)
}

/// The last `lines` lines of a file (empty if unreadable).
pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::new();
    };
    // Read at most the last 64 KiB: enough for any tail we show.
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = strip_ansi(&String::from_utf8_lossy(&buf));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Removes ANSI colour sequences (`ESC [ ... letter`) so log tails read well in error messages.
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.next() == Some('[') {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

/// A running child whose stdout and stderr go to `<dir>/<name>.log`.
#[derive(Debug)]
pub(crate) struct ChildProcess {
    name: &'static str,
    child: Child,
    dir: PathBuf,
    log: PathBuf,
    status: Option<ExitStatus>,
    keep_logs: bool,
}

impl ChildProcess {
    /// Spawns `bin args...` in `cwd`, logging to a file in `dir`.
    pub(crate) fn spawn(
        name: &'static str,
        bin: &Path,
        args: &[&std::ffi::OsStr],
        cwd: &Path,
        dir: PathBuf,
        env: &[(String, String)],
    ) -> Result<ChildProcess, HarnessError> {
        let log = dir.join(format!("{name}.log"));
        let io_err = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| HarnessError::Io {
                action,
                path,
                source,
            }
        };
        let out = File::create(&log).map_err(io_err("creating log", &log))?;
        let err = out.try_clone().map_err(io_err("creating log", &log))?;
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .current_dir(cwd)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().map_err(io_err("spawning", bin))?;
        Ok(ChildProcess {
            name,
            child,
            dir,
            log,
            status: None,
            keep_logs: std::env::var_os(KEEP_LOGS_ENV).is_some(),
        })
    }

    /// Keeps the scratch directory (config, log) after the child is dropped.
    pub(crate) fn keep_logs(&mut self) {
        self.keep_logs = true;
    }

    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }

    pub(crate) fn log_tail(&self) -> String {
        tail(&self.log, TAIL_LINES)
    }

    /// The whole log so far.
    pub(crate) fn log_contents(&self) -> String {
        std::fs::read(&self.log)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The exit status if the child has exited (reaping it).
    pub(crate) fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// An error saying the child exited early, with its log tail.
    pub(crate) fn exited_early(&self, status: ExitStatus) -> HarnessError {
        HarnessError::ExitedEarly {
            name: self.name,
            status,
            log: self.log.clone(),
            tail: self.log_tail(),
        }
    }

    /// Sends a signal by name (`TERM`, `INT`, `KILL`, `STOP`, `CONT`...) with `kill(1)`.
    pub(crate) fn signal(&mut self, signal: &str) -> Result<(), HarnessError> {
        if self.try_status().is_some() {
            return Ok(());
        }
        let status = Command::new("kill")
            .arg("-s")
            .arg(signal)
            .arg(self.pid().to_string())
            .status()
            .map_err(|source| HarnessError::Io {
                action: "running kill(1) for",
                path: PathBuf::from(self.name),
                source,
            })?;
        // kill(1) fails if the process exited meanwhile; the caller's wait will see that.
        let _ = status;
        Ok(())
    }

    /// Waits for the child to exit, up to `deadline`.
    pub(crate) fn wait_exit(&mut self, deadline: Duration) -> Result<ExitStatus, HarnessError> {
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.try_status() {
                return Ok(status);
            }
            if Instant::now() >= until {
                return Err(HarnessError::StillRunning {
                    name: self.name,
                    pid: self.pid(),
                    after: deadline,
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// SIGKILL and reap.
    pub(crate) fn kill(&mut self) -> Option<ExitStatus> {
        if self.try_status().is_none() {
            let _ = self.child.kill();
            self.status = self.child.wait().ok();
        }
        self.status
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            // A test failed while this child ran: point at its log. This is test output, so
            // stderr (captured per test by the harness) is the right place.
            eprintln!(
                "--- {} (pid {}) log kept at {} ---\n{}\n--- end of {} log tail ---",
                self.name,
                self.child.id(),
                self.log.display(),
                self.log_tail(),
                self.name
            );
        } else if !self.keep_logs {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ansi_colours_are_stripped() {
        assert_eq!(
            strip_ansi("\u{1b}[2m2026\u{1b}[0m \u{1b}[31mERROR\u{1b}[0m x"),
            "2026 ERROR x"
        );
        assert_eq!(strip_ansi("plain"), "plain");
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        let dir = scratch_dir("tail-test").unwrap();
        let path = dir.join("log");
        std::fs::write(&path, "a\nb\nc\n").unwrap();
        assert_eq!(tail(&path, 2), "b\nc");
        assert_eq!(tail(&dir.join("missing"), 2), "");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

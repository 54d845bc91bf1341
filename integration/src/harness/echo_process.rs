//! The `bolt-echo` binary as a child process, for tests where the backend must really die
//! (`kill -9`) or live in another process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use super::child::{scratch_dir, ChildProcess};
use super::{find_binary, repo_root};
use crate::error::HarnessError;

/// Environment variable naming the `bolt-echo` binary to run.
pub const BOLT_ECHO_BIN_ENV: &str = "BOLT_ECHO_BIN";
const BUILD_HINT: &str = "build it with `cargo build -p integration --bins` (or set BOLT_ECHO_BIN)";
/// The line `bolt-echo` prints once it accepts connections.
const READY_PREFIX: &str = "listening on ";

/// A running `bolt-echo`; killed when dropped.
#[derive(Debug)]
pub struct EchoProcess {
    proc: ChildProcess,
    addr: SocketAddr,
}

impl EchoProcess {
    /// Starts `bolt-echo --listen <listen>` (port 0 allowed) found like the sidecar binary
    /// (`$BOLT_ECHO_BIN`, next to the running executable, `<repo>/target/<profile>/`).
    ///
    /// # Errors
    /// Missing binary, early exit, or no `listening on` line within 30 s.
    pub fn spawn(listen: SocketAddr) -> Result<EchoProcess, HarnessError> {
        let bin = find_binary("bolt-echo", BOLT_ECHO_BIN_ENV, BUILD_HINT)?;
        Self::spawn_with(&bin, listen, &[])
    }

    /// Starts `binary --listen <listen> <extra_args...>`.
    ///
    /// # Errors
    /// As [`EchoProcess::spawn`].
    pub fn spawn_with(
        binary: &Path,
        listen: SocketAddr,
        extra_args: &[&str],
    ) -> Result<EchoProcess, HarnessError> {
        if !binary.is_file() {
            return Err(HarnessError::BinaryMissing {
                name: "bolt-echo",
                tried: vec![binary.to_path_buf()],
                hint: BUILD_HINT,
            });
        }
        let listen_arg = listen.to_string();
        let mut args: Vec<&str> = vec!["--listen", &listen_arg];
        args.extend(extra_args);
        let (proc, addr) = spawn_listening("bolt-echo", binary, &args, listen)?;
        Ok(EchoProcess { proc, addr })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// Its log file.
    pub fn log_path(&self) -> PathBuf {
        self.proc.log_path().to_path_buf()
    }

    /// `kill -9` and reap: the backend dies without closing anything gracefully (the kernel
    /// still resets its sockets).
    pub fn kill(&mut self) -> Option<ExitStatus> {
        self.proc.kill()
    }

    /// Sends a signal by name (`STOP` freezes it: connections stay open but nothing answers;
    /// `CONT` resumes).
    ///
    /// # Errors
    /// When `kill(1)` cannot be run.
    pub fn signal(&mut self, signal: &str) -> Result<(), HarnessError> {
        self.proc.signal(signal)
    }

    /// The exit status if it has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.proc.try_status()
    }
}

/// Starts `binary args...` (named `name` in errors) and waits up to 30 s for the
/// `listening on <addr>` line it prints once it accepts connections; `listen` is what was
/// asked for (for the error).
pub(crate) fn spawn_listening(
    name: &'static str,
    binary: &Path,
    args: &[&str],
    listen: SocketAddr,
) -> Result<(ChildProcess, SocketAddr), HarnessError> {
    let dir = scratch_dir(name)?;
    let args: Vec<&std::ffi::OsStr> = args.iter().map(std::ffi::OsStr::new).collect();
    let mut proc = ChildProcess::spawn(name, binary, &args, &repo_root(), dir, &[])?;
    let deadline = Duration::from_secs(30);
    let until = Instant::now() + deadline;
    loop {
        if let Some(status) = proc.try_status() {
            return Err(proc.exited_early(status));
        }
        let log = proc.log_contents();
        if let Some(line) = log.lines().find(|l| l.starts_with(READY_PREFIX)) {
            let addr = line[READY_PREFIX.len()..].trim().parse().map_err(|_| {
                HarnessError::UnexpectedOutput {
                    name,
                    line: line.to_owned(),
                }
            })?;
            return Ok((proc, addr));
        }
        if Instant::now() >= until {
            return Err(HarnessError::NotReady {
                name,
                after: deadline,
                pending: vec![listen],
                log: proc.log_path().to_path_buf(),
                tail: proc.log_tail(),
            });
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Environment variable naming the `tcp-relay` binary to run.
pub const TCP_RELAY_BIN_ENV: &str = "TCP_RELAY_BIN";
const RELAY_HINT: &str = "build it with `cargo build -p integration --bins` (or set TCP_RELAY_BIN)";

/// A running `tcp-relay` (plain TCP relays chained in one process); killed when dropped.
#[derive(Debug)]
pub struct RelayProcess {
    proc: ChildProcess,
    addr: SocketAddr,
}

impl RelayProcess {
    /// Starts `tcp-relay --listen 127.0.0.1:0 --upstream <upstream> --hops <hops>`.
    ///
    /// # Errors
    /// Missing binary, early exit, or no `listening on` line within 30 s.
    pub fn spawn(upstream: SocketAddr, hops: usize) -> Result<RelayProcess, HarnessError> {
        let bin = find_binary("tcp-relay", TCP_RELAY_BIN_ENV, RELAY_HINT)?;
        let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
        let (upstream, hops) = (upstream.to_string(), hops.to_string());
        let args = [
            "--listen",
            "127.0.0.1:0",
            "--upstream",
            &upstream,
            "--hops",
            &hops,
        ];
        let (proc, addr) = spawn_listening("tcp-relay", &bin, &args, listen)?;
        Ok(RelayProcess { proc, addr })
    }

    /// Where to connect (the first relay).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The exit status if it has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.proc.try_status()
    }

    /// Its log file.
    pub fn log_path(&self) -> PathBuf {
        self.proc.log_path().to_path_buf()
    }
}

//! The real `sidecar` binary as a child process: `sidecar start -c <config>` with readiness
//! probing, signals and exit status, and `sidecar check -c <config>`.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::child::{scratch_dir, ChildProcess};
use super::{find_binary, repo_root};
use crate::error::HarnessError;

/// Environment variable naming the sidecar binary to run.
pub const SIDECAR_BIN_ENV: &str = "SIDECAR_BIN";
const BUILD_HINT: &str = "build it with `cargo build -p sidecar` (or set SIDECAR_BIN)";
/// Pause between readiness probes.
const PROBE_EVERY: Duration = Duration::from_millis(20);
/// Timeout of one readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_millis(200);

/// How a sidecar is started.
#[derive(Debug, Clone)]
pub struct SidecarOptions {
    /// Binary to run; found with [`super::find_binary`] (`$SIDECAR_BIN`, next to the running
    /// executable, `<repo>/target/<profile>/sidecar`) when `None`.
    pub binary: Option<PathBuf>,
    /// How long to wait for every listener (and the admin port, if configured) to accept.
    pub ready_timeout: Duration,
    /// Extra command-line arguments after `start -c <file>`.
    pub extra_args: Vec<String>,
    /// Extra environment variables.
    pub env: Vec<(String, String)>,
    /// Keep the scratch directory (config + log) after the sidecar is dropped.
    pub keep_logs: bool,
    /// Start the process with this many open files at most (`RLIMIT_NOFILE`, set by
    /// util-linux's `prlimit` before it execs the sidecar: same pid).
    pub max_open_files: Option<u64>,
}

impl Default for SidecarOptions {
    fn default() -> Self {
        SidecarOptions {
            binary: None,
            ready_timeout: Duration::from_secs(60),
            extra_args: Vec::new(),
            env: Vec::new(),
            keep_logs: false,
            max_open_files: None,
        }
    }
}

impl SidecarOptions {
    fn binary(&self) -> Result<PathBuf, HarnessError> {
        match &self.binary {
            Some(b) if b.is_file() => Ok(b.clone()),
            Some(b) => Err(HarnessError::BinaryMissing {
                name: "sidecar",
                tried: vec![b.clone()],
                hint: BUILD_HINT,
            }),
            None => find_binary("sidecar", SIDECAR_BIN_ENV, BUILD_HINT),
        }
    }
}

/// Output of `sidecar check`.
#[derive(Debug, Clone)]
pub struct CheckOutput {
    /// Exit status.
    pub status: ExitStatus,
    /// Everything printed to stdout.
    pub stdout: String,
    /// Everything printed to stderr.
    pub stderr: String,
}

/// A running sidecar; killed (SIGKILL) when dropped, and its log printed if a test panicked.
#[derive(Debug)]
pub struct Sidecar {
    proc: ChildProcess,
    config_path: PathBuf,
    listeners: Vec<(String, SocketAddr)>,
    admin: Option<SocketAddr>,
}

impl Sidecar {
    /// Writes `config` to a scratch file, runs `sidecar start -c <file>` in the repository root
    /// and waits until every listener (and the admin address, if configured) accepts TCP.
    ///
    /// # Errors
    /// Missing binary, a config without listeners, the process exiting early, or not ready in
    /// time; errors carry the log path and its last lines.
    pub fn spawn(config: Value) -> Result<Sidecar, HarnessError> {
        Self::spawn_with(config, &SidecarOptions::default())
    }

    /// [`Sidecar::spawn`] with options.
    ///
    /// # Errors
    /// As [`Sidecar::spawn`].
    pub fn spawn_with(config: Value, options: &SidecarOptions) -> Result<Sidecar, HarnessError> {
        let bin = options.binary()?;
        let listeners = listener_addrs(&config)?;
        let admin = admin_addr(&config);
        let dir = scratch_dir("sidecar")?;
        let config_path = write_config(&dir, &config)?;
        let nofile = options.max_open_files.map(|n| format!("--nofile={n}:{n}"));
        let mut args: Vec<&std::ffi::OsStr> = Vec::new();
        let launcher = match &nofile {
            Some(limit) => {
                args.push(limit.as_ref());
                args.push("--".as_ref());
                args.push(bin.as_os_str());
                PathBuf::from("prlimit")
            }
            None => bin,
        };
        args.push("start".as_ref());
        args.push("-c".as_ref());
        args.push(config_path.as_os_str());
        args.extend(options.extra_args.iter().map(std::ffi::OsStr::new));
        let mut proc =
            ChildProcess::spawn("sidecar", &launcher, &args, &repo_root(), dir, &options.env)?;
        if options.keep_logs {
            proc.keep_logs();
        }
        let mut sidecar = Sidecar {
            proc,
            config_path,
            listeners,
            admin,
        };
        sidecar.wait_ready(options.ready_timeout)?;
        Ok(sidecar)
    }

    fn wait_ready(&mut self, deadline: Duration) -> Result<(), HarnessError> {
        let mut pending: Vec<SocketAddr> = self.listeners.iter().map(|(_, a)| *a).collect();
        pending.extend(self.admin);
        let start = Instant::now();
        loop {
            if let Some(status) = self.proc.try_status() {
                return Err(self.proc.exited_early(status));
            }
            pending.retain(|a| TcpStream::connect_timeout(a, PROBE_TIMEOUT).is_err());
            // Sockets accept as soon as they are bound; the admin API is served only once
            // every worker is up, so with one configured, ready means it answers.
            if pending.is_empty() && self.admin.is_none_or(admin_answers) {
                return Ok(());
            }
            if start.elapsed() >= deadline {
                return Err(HarnessError::NotReady {
                    name: "sidecar",
                    after: deadline,
                    pending,
                    log: self.proc.log_path().to_path_buf(),
                    tail: self.proc.log_tail(),
                });
            }
            std::thread::sleep(PROBE_EVERY);
        }
    }

    /// Runs `sidecar check -c <file>` on `config` and collects its output (waits up to 60 s).
    ///
    /// # Errors
    /// Missing binary, or the check not finishing in time.
    pub fn run_check(config: Value) -> Result<CheckOutput, HarnessError> {
        Self::run_check_with(config, &SidecarOptions::default())
    }

    /// [`Sidecar::run_check`] with options (binary, environment).
    ///
    /// # Errors
    /// As [`Sidecar::run_check`].
    pub fn run_check_with(
        config: Value,
        options: &SidecarOptions,
    ) -> Result<CheckOutput, HarnessError> {
        let bin = options.binary()?;
        let dir = scratch_dir("sidecar-check")?;
        let config_path = write_config(&dir, &config)?;
        let io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| HarnessError::Io {
                action,
                path,
                source,
            }
        };
        let out_path = dir.join("stdout");
        let err_path = dir.join("stderr");
        let stdout = std::fs::File::create(&out_path).map_err(io("creating", &out_path))?;
        let stderr = std::fs::File::create(&err_path).map_err(io("creating", &err_path))?;
        let mut child = std::process::Command::new(&bin)
            .arg("check")
            .arg("-c")
            .arg(&config_path)
            .args(&options.extra_args)
            .envs(options.env.iter().map(|(k, v)| (k, v)))
            .current_dir(repo_root())
            .stdin(std::process::Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .map_err(io("spawning", &bin))?;
        let until = Instant::now() + Duration::from_secs(60);
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if Instant::now() < until => std::thread::sleep(PROBE_EVERY),
                Ok(None) => {
                    let pid = child.id();
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(HarnessError::StillRunning {
                        name: "sidecar check",
                        pid,
                        after: Duration::from_secs(60),
                    });
                }
                Err(source) => {
                    return Err(HarnessError::Io {
                        action: "waiting for",
                        path: bin,
                        source,
                    })
                }
            }
        };
        let read = |p: &Path| {
            std::fs::read(p)
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default()
        };
        let output = CheckOutput {
            status,
            stdout: read(&out_path),
            stderr: read(&err_path),
        };
        let _ = std::fs::remove_dir_all(&dir);
        Ok(output)
    }

    /// The address of the listener called `name`.
    pub fn listener(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
    }

    /// Every listener as `(name, address)`; wildcard addresses are given as loopback.
    pub fn listeners(&self) -> &[(String, SocketAddr)] {
        &self.listeners
    }

    /// The admin API address, if the config has one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }

    /// The config file the sidecar was started with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The file receiving the sidecar's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        self.proc.log_path()
    }

    /// The sidecar's output so far.
    pub fn log_contents(&self) -> String {
        self.proc.log_contents()
    }

    /// The scratch directory (config and log).
    pub fn scratch_dir(&self) -> &Path {
        self.proc.dir()
    }

    /// The exit status if the sidecar has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        self.proc.try_status()
    }

    /// Sends a signal by name (`TERM`, `INT`, `HUP`, `STOP`, `CONT`, `KILL`).
    ///
    /// # Errors
    /// When `kill(1)` cannot be run.
    pub fn signal(&mut self, signal: &str) -> Result<(), HarnessError> {
        self.proc.signal(signal)
    }

    /// SIGTERM, then waits up to `deadline` for the exit status.
    ///
    /// # Errors
    /// [`HarnessError::StillRunning`] if it does not exit in time (it is left running; drop
    /// kills it).
    pub fn terminate(&mut self, deadline: Duration) -> Result<ExitStatus, HarnessError> {
        self.proc.signal("TERM")?;
        self.proc.wait_exit(deadline)
    }

    /// Waits up to `deadline` for the sidecar to exit on its own.
    ///
    /// # Errors
    /// [`HarnessError::StillRunning`].
    pub fn wait_exit(&mut self, deadline: Duration) -> Result<ExitStatus, HarnessError> {
        self.proc.wait_exit(deadline)
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) -> Option<ExitStatus> {
        self.proc.kill()
    }

    /// Name given to the child in logs.
    pub fn name(&self) -> &'static str {
        self.proc.name()
    }
}

fn write_config(dir: &Path, config: &Value) -> Result<PathBuf, HarnessError> {
    let path = dir.join("config.json");
    let text = serde_json::to_string_pretty(config).map_err(|e| HarnessError::Io {
        action: "serializing config for",
        path: path.clone(),
        source: e.into(),
    })?;
    std::fs::write(&path, text).map_err(|source| HarnessError::Io {
        action: "writing",
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Resolves `host:port`, turning a wildcard host into loopback so it can be probed.
fn probe_addr(text: &str) -> Option<SocketAddr> {
    let mut addr = text.to_socket_addrs().ok()?.next()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            [127, 0, 0, 1].into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    Some(addr)
}

/// `(name, address)` of every listener in `servers[*].listeners[*]` that binds a port.
fn listener_addrs(config: &Value) -> Result<Vec<(String, SocketAddr)>, HarnessError> {
    let mut out = Vec::new();
    let servers = config["servers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for listener in servers
        .iter()
        .flat_map(|s| s["listeners"].as_array().map(Vec::as_slice).unwrap_or(&[]))
    {
        if listener["bind_port"] == Value::Bool(false) {
            continue;
        }
        let addr = listener["address"]
            .as_str()
            .and_then(probe_addr)
            .ok_or(HarnessError::Config("a listener address is not host:port"))?;
        let name = listener["name"].as_str().unwrap_or_default().to_owned();
        out.push((name, addr));
    }
    if out.is_empty() {
        return Err(HarnessError::Config("no listener binds a port"));
    }
    Ok(out)
}

/// `admin.address.socket_address` as a probe-able address.
fn admin_addr(config: &Value) -> Option<SocketAddr> {
    let sa = &config["admin"]["address"]["socket_address"];
    let host = sa["address"].as_str()?;
    let port = sa["port_value"].as_u64()?;
    probe_addr(&format!("{host}:{port}"))
}

/// Whether the admin API at `addr` answers `GET /api/v1/states` with 200 (blocking, bounded
/// by [`PROBE_TIMEOUT`] per step).
fn admin_answers(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect_timeout(&addr, PROBE_TIMEOUT) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(PROBE_TIMEOUT));
    let _ = s.set_write_timeout(Some(PROBE_TIMEOUT));
    if s.write_all(b"GET /api/v1/states HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}

/// `GET path` on a sidecar's admin API, its JSON body parsed.
///
/// # Errors
/// The connection fails, or the answer is not an HTTP response with a JSON body.
pub async fn admin_get(addr: SocketAddr, path: &str) -> std::io::Result<Value> {
    let answer = admin_request(addr, "GET", path, "").await?;
    serde_json::from_str(&answer.body)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// An admin API answer.
#[derive(Debug, Clone)]
pub struct AdminAnswer {
    /// The status code.
    pub status: u16,
    /// Header lines (`name: value`, names lower-cased).
    pub headers: Vec<(String, String)>,
    /// The body as text.
    pub body: String,
}

impl AdminAnswer {
    /// The first value of header `name` (lower-case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request (`connection: close`) to a sidecar's admin API.
///
/// # Errors
/// The connection fails or the answer is not an HTTP response.
pub async fn admin_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> std::io::Result<AdminAnswer> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).await?;
    let mut text = String::new();
    s.read_to_string(&mut text).await?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| bad("admin answer without a head"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| bad("admin answer without a status line"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    let body = if chunked {
        dechunk(body).ok_or_else(|| bad("bad chunked body"))?
    } else {
        body.to_owned()
    };
    Ok(AdminAnswer {
        status,
        headers,
        body,
    })
}

/// The payload of a `transfer-encoding: chunked` body.
fn dechunk(mut body: &str) -> Option<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n")?;
        let size = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
        if size == 0 {
            return Some(out);
        }
        out.push_str(rest.get(..size)?);
        body = rest.get(size..)?.strip_prefix("\r\n")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::harness::mosn_config::MosnConfig;

    #[test]
    fn finds_listeners_and_admin_in_configs() {
        let cfg = MosnConfig::sample(
            "127.0.0.1:2045".parse().unwrap(),
            "127.0.0.1:2046".parse().unwrap(),
            "127.0.0.1:12199".parse().unwrap(),
        )
        .admin("0.0.0.0:34901".parse().unwrap())
        .build();
        let ls = listener_addrs(&cfg).unwrap();
        assert_eq!(
            ls,
            vec![
                (
                    "serverListener".to_owned(),
                    "127.0.0.1:2046".parse().unwrap()
                ),
                (
                    "clientListener".to_owned(),
                    "127.0.0.1:2045".parse().unwrap()
                ),
            ]
        );
        assert_eq!(admin_addr(&cfg), Some("127.0.0.1:34901".parse().unwrap()));
        assert!(matches!(
            listener_addrs(&serde_json::json!({"servers": [{"listeners": []}]})),
            Err(HarnessError::Config(_))
        ));
    }

    #[test]
    fn missing_binary_is_a_clear_error() {
        let options = SidecarOptions {
            binary: Some(PathBuf::from("/nonexistent/sidecar")),
            ..SidecarOptions::default()
        };
        let cfg = MosnConfig::sample(
            "127.0.0.1:2045".parse().unwrap(),
            "127.0.0.1:2046".parse().unwrap(),
            "127.0.0.1:12199".parse().unwrap(),
        )
        .build();
        let err = Sidecar::spawn_with(cfg.clone(), &options).unwrap_err();
        assert!(err.to_string().contains("cargo build -p sidecar"), "{err}");
        let err = Sidecar::run_check_with(cfg, &options).unwrap_err();
        assert!(matches!(err, HarnessError::BinaryMissing { .. }));
    }
}

//! The real SOFA peers (sofa-rpc-node from npm, in integration/peers) as child processes for
//! the end-to-end tests: `node server.js` (a SOFA server app) and `node client.js <scenario>`
//! (a SOFA client app), both speaking JSON lines on stdout, every wait bounded by a deadline,
//! every process killed on drop. Shared by the test files that use them; each uses a part, so
//! unused items are allowed here.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use integration::harness::{find_named, free_port, repo_root};
use serde_json::{json, Value};

/// How long a node peer may take to print its first line.
pub const NODE_START: Duration = Duration::from_secs(20);
/// Deadline for a short client scenario (start-up included).
pub const CLIENT_RUN: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Prerequisites

pub fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers")
}

/// Fails with instructions when node or the npm-installed peers are missing.
pub fn require_peers() {
    let installed = peers_dir().join("node_modules/sofa-rpc-node/package.json");
    assert!(
        installed.is_file(),
        "the SOFA test peers are not installed ({} is missing): run `make peers` \
         (or `npm ci` in integration/peers)",
        installed.display()
    );
    let version = Command::new("node").arg("--version").output();
    assert!(
        version.is_ok_and(|o| o.status.success()),
        "`node` (Node.js 20) must be on PATH to run the SOFA end-to-end tests"
    );
}

/// One test at a time: each starts several processes, and the machine has few cores.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Unwraps a step's result; the panic message carries the whole error chain. Panicking (rather
/// than returning the error) while the sidecar is alive makes the harness print its log.
pub fn must<T>(r: Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{e:#}"))
}

// ---------------------------------------------------------------------------------------------
// Child processes speaking JSON lines

/// Lines of a child's stdout, read on a thread and handed over with deadlines.
pub struct Lines {
    rx: Receiver<String>,
    /// Every line read so far.
    pub seen: Vec<String>,
}

impl Lines {
    pub fn new(stdout: impl Read + Send + 'static) -> Self {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// Takes every line already available without waiting.
    pub fn drain(&mut self) {
        while let Ok(line) = self.rx.try_recv() {
            self.seen.push(line);
        }
    }

    /// Waits until a line satisfies `pred` (lines seen earlier count too, from index `from`).
    pub fn wait_for(
        &mut self,
        from: usize,
        deadline: Instant,
        what: &str,
        mut pred: impl FnMut(&str) -> bool,
    ) -> Result<String> {
        let mut checked = from;
        loop {
            while checked < self.seen.len() {
                if pred(&self.seen[checked]) {
                    return Ok(self.seen[checked].clone());
                }
                checked += 1;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Timeout) => {
                    bail!(
                        "timed out waiting for {what}; output so far:\n{}",
                        self.tail()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    bail!("output ended before {what}; output:\n{}", self.tail())
                }
            }
        }
    }

    pub fn tail(&self) -> String {
        let start = self.seen.len().saturating_sub(30);
        self.seen[start..].join("\n")
    }
}

pub fn kill(child: &mut Child) {
    // SIGKILL; the process may already be gone.
    let _ = child.kill();
    let _ = child.wait();
}

/// `node server.js`: the SOFA server app behind the server-side sidecar.
pub struct NodeServer {
    child: Child,
    lines: Lines,
    /// The port it listens on.
    pub port: u16,
}

impl NodeServer {
    pub fn start(port: u16, hessian: &str, max_idle_ms: Option<u64>) -> Result<Self> {
        Self::start_with(port, hessian, max_idle_ms, &[])
    }

    /// A server that also prints every request's Bolt header map as it arrived
    /// (`request_headers` events).
    pub fn start_reporting_headers(port: u16) -> Result<Self> {
        Self::start_with(port, "draft", None, &["--report-headers", "on"])
    }

    fn start_with(
        port: u16,
        hessian: &str,
        max_idle_ms: Option<u64>,
        extra: &[&str],
    ) -> Result<Self> {
        let mut cmd = Command::new("node");
        cmd.current_dir(peers_dir()).args([
            "server.js",
            "--port",
            &port.to_string(),
            "--hessian",
            hessian,
        ]);
        if let Some(ms) = max_idle_ms {
            cmd.args(["--max-idle-ms", &ms.to_string()]);
        }
        cmd.args(extra);
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning node server.js")?;
        let stdout = child.stdout.take().context("server stdout")?;
        let mut server = NodeServer {
            child,
            lines: Lines::new(stdout),
            port,
        };
        let want = format!("listening {port}");
        server
            .lines
            .wait_for(0, Instant::now() + NODE_START, &want, |l| l == want)
            .context("node server did not start")?;
        Ok(server)
    }

    /// SIGKILL: the server vanishes without closing anything gracefully.
    pub fn kill(&mut self) {
        kill(&mut self.child);
    }

    /// The JSON events printed so far.
    pub fn events(&mut self) -> Vec<Value> {
        self.lines.drain();
        self.lines
            .seen
            .iter()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect()
    }

    /// Waits for an event matching `pred`; returns it.
    pub fn wait_event(
        &mut self,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Result<Value> {
        let line = self
            .lines
            .wait_for(0, Instant::now() + timeout, what, |l| {
                serde_json::from_str::<Value>(l).is_ok_and(|v| pred(&v))
            })?;
        Ok(serde_json::from_str(&line)?)
    }
}

impl Drop for NodeServer {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// `node client.js <scenario>`: a SOFA client app with one connection to `port`.
pub struct NodeClient {
    child: Child,
    stdin: ChildStdin,
    lines: Lines,
    what: String,
}

impl NodeClient {
    pub fn spawn(port: u16, args: &[&str]) -> Result<Self> {
        let mut child = Command::new("node")
            .current_dir(peers_dir())
            .arg("client.js")
            .args(args)
            .args(["--server", &format!("127.0.0.1:{port}")])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("spawning node client.js")?;
        let stdout = child.stdout.take().context("client stdout")?;
        let stdin = child.stdin.take().context("client stdin")?;
        Ok(NodeClient {
            child,
            stdin,
            lines: Lines::new(stdout),
            what: format!("client {}", args.join(" ")),
        })
    }

    /// Tells the `load` scenario to end: the test, not a clock, decides when the load is over.
    pub fn stop_load(&mut self) -> Result<()> {
        writeln!(self.stdin, "stop").context("telling the load to stop")?;
        self.stdin.flush().context("telling the load to stop")
    }

    /// Waits for a `{"progress":...}` line (from the `load` scenario) whose body satisfies `pred`.
    pub fn wait_progress(
        &mut self,
        timeout: Duration,
        what: &str,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> Result<Value> {
        let from = self.lines.seen.len();
        let line = self
            .lines
            .wait_for(from, Instant::now() + timeout, what, |l| {
                serde_json::from_str::<Value>(l)
                    .ok()
                    .and_then(|v| v.get("progress").cloned())
                    .is_some_and(|p| pred(&p))
            })?;
        let v: Value = serde_json::from_str(&line)?;
        Ok(v["progress"].clone())
    }

    /// Waits for the scenario's result line and the process's exit.
    pub fn finish(mut self, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        let what = format!("the result of `{}`", self.what);
        let line = self.lines.wait_for(0, deadline, &what, |l| {
            serde_json::from_str::<Value>(l).is_ok_and(|v| v.get("scenario").is_some())
        });
        let line = match line {
            Ok(line) => line,
            Err(e) => {
                kill(&mut self.child);
                return Err(e);
            }
        };
        while self.child.try_wait()?.is_none() {
            if Instant::now() >= deadline {
                kill(&mut self.child);
                bail!("{} printed its result but did not exit", self.what);
            }
            thread::sleep(Duration::from_millis(20));
        }
        Ok(serde_json::from_str(&line)?)
    }
}

impl Drop for NodeClient {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

/// Runs one client scenario to completion.
pub fn run_client(port: u16, args: &[&str]) -> Result<Value> {
    NodeClient::spawn(port, args)?.finish(CLIENT_RUN)
}

pub fn ok(result: &Value) -> bool {
    result["ok"] == json!(true)
}

// ---------------------------------------------------------------------------------------------
// The sidecar between them

/// Where the two sidecar listeners and the app server live in one test.
pub struct Ports {
    pub client_listener: u16,
    pub server_listener: u16,
    pub app_server: u16,
}

impl Ports {
    pub fn new() -> Self {
        let port = || free_port().expect("a free loopback port");
        Ports {
            client_listener: port(),
            server_listener: port(),
            app_server: port(),
        }
    }
}

pub fn set_cluster_host(config: &mut Value, cluster: &str, port: u16) -> Result<()> {
    let c = find_named(config, cluster).with_context(|| format!("cluster {cluster} in config"))?;
    let hosts = c["hosts"]
        .as_array_mut()
        .with_context(|| format!("{cluster}.hosts"))?;
    ensure!(hosts.len() == 1, "{cluster} should have one host");
    hosts[0]["address"] = json!(format!("127.0.0.1:{port}"));
    Ok(())
}

/// configs/mosn_rpc_config_wasm.json with this test's ports (admin on a free port too), and
/// `keepalive` in serverCluster when given.
pub fn sidecar_config(ports: &Ports, keepalive: Option<Value>) -> Result<Value> {
    let path = repo_root().join("configs/mosn_rpc_config_wasm.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let mut config: Value = serde_json::from_str(&text)?;
    for (listener, port) in [
        ("clientListener", ports.client_listener),
        ("serverListener", ports.server_listener),
    ] {
        let l =
            find_named(&mut config, listener).with_context(|| format!("listener {listener}"))?;
        l["address"] = json!(format!("127.0.0.1:{port}"));
    }
    set_cluster_host(&mut config, "clientCluster", ports.server_listener)?;
    set_cluster_host(&mut config, "serverCluster", ports.app_server)?;
    if let Some(keepalive) = keepalive {
        find_named(&mut config, "serverCluster").context("serverCluster")?["keepalive"] = keepalive;
    }
    if let Some(admin) = config.pointer_mut("/admin/address/socket_address") {
        admin["port_value"] = json!(free_port()?);
    }
    let plugin = config
        .pointer("/wasm_global_plugins/0/vm_config/path")
        .and_then(Value::as_str)
        .context("wasm_global_plugins[0].vm_config.path")?;
    ensure!(
        repo_root().join(plugin).is_file(),
        "the Bolt plugin {plugin} is missing: run `make plugins`"
    );
    Ok(config)
}

//! The Apache Dubbo 3.3.6 test peers of `integration/peers/dubbo` (`make dubbo-peers`) as
//! test helpers: a provider JVM ([`Provider`]) and one consumer run ([`consumer`]), each with
//! a deadline, killed on drop. Shared by the tests that drive real Dubbo peers.
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

/// How long a provider JVM may take to export its services.
pub const PROVIDER_START: Duration = Duration::from_secs(90);
/// Deadline for one consumer run (JVM start-up included).
pub const CONSUMER_RUN: Duration = Duration::from_secs(120);
/// The service version the green provider exports.
pub const VERSION: &str = "1.0.0";

// ---------------------------------------------------------------------------------------------
// Prerequisites

pub fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers/dubbo")
}

/// The peers' class path: their classes and the jars Maven resolved.
pub fn class_path() -> String {
    let dir = peers_dir().join("target");
    let jars = fs::read_to_string(dir.join("classpath.txt")).unwrap_or_else(|_| {
        panic!(
            "the Dubbo test peers are not built ({} is missing): run `make dubbo-peers` \
             (Java 17 and Maven on PATH)",
            dir.join("classpath.txt").display()
        )
    });
    format!("{}:{}", dir.join("classes").display(), jars.trim())
}

/// One test at a time: each starts two JVMs and the sidecar, and the machine has few cores.
pub fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Unwraps a step's result with its whole error chain (the harness prints the sidecar's log
/// when a test panics while it is alive).
pub fn must<T>(r: Result<T>) -> T {
    r.unwrap_or_else(|e| panic!("{e:#}"))
}

/// A JVM running one of the peers' main classes; stderr (Dubbo's log) goes to a file.
fn java(main: &str, args: &[String], log: &Path) -> Result<Child> {
    let stderr = fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    Command::new("java")
        .args([
            "-Xss512k",
            "-XX:TieredStopAtLevel=1",
            "-cp",
            &class_path(),
            main,
        ])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("spawning java {main} (is Java 17 on PATH?)"))
}

fn log_file(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("dubbo-peer-{}-{name}.log", std::process::id()))
}

/// Lines of a child's stdout, read on a thread.
fn lines_of(child: &mut Child) -> Result<Receiver<String>> {
    let stdout = child.stdout.take().context("child stdout")?;
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

// ---------------------------------------------------------------------------------------------
// The peers

/// A Dubbo provider JVM.
pub struct Provider {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    log: PathBuf,
}

impl Provider {
    pub fn start(port: u16, instance: &str, group: Option<&str>) -> Result<Self> {
        let mut args = vec![
            "--port".to_owned(),
            port.to_string(),
            "--instance".to_owned(),
            instance.to_owned(),
            "--version".to_owned(),
            VERSION.to_owned(),
        ];
        if let Some(g) = group {
            args.extend(["--group".to_owned(), g.to_owned()]);
        }
        let log = log_file(&format!("provider-{instance}"));
        let mut child = java("org.example.dubbo.Provider", &args, &log)?;
        let lines = lines_of(&mut child)?;
        let mut provider = Provider {
            child,
            lines,
            seen: Vec::new(),
            log,
        };
        let want = format!("listening {port}");
        provider
            .wait_for(PROVIDER_START, &want, |l| l == want)
            .with_context(|| format!("provider {instance} did not start"))?;
        Ok(provider)
    }

    /// Waits for a stdout line matching `pred` (earlier lines count).
    pub fn wait_for(
        &mut self,
        timeout: Duration,
        what: &str,
        pred: impl Fn(&str) -> bool,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let mut checked = 0;
        loop {
            while checked < self.seen.len() {
                if pred(&self.seen[checked]) {
                    return Ok(());
                }
                checked += 1;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Timeout) => bail!(
                    "timed out waiting for {what}; provider log {}:\n{}",
                    self.log.display(),
                    tail(&self.log)
                ),
                Err(RecvTimeoutError::Disconnected) => bail!(
                    "provider exited before {what}; log {}:\n{}",
                    self.log.display(),
                    tail(&self.log)
                ),
            }
        }
    }
}

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// What one consumer run printed: one result per call and the summary.
#[derive(Debug)]
pub struct Run {
    /// One JSON object per call.
    pub calls: Vec<Value>,
    /// The summary line (`ok`, `failed`, `mismatched`, …).
    pub summary: Value,
}

/// Runs the consumer against `port` with `args` until it prints its summary and exits.
pub fn consumer(port: u16, args: &[&str]) -> Result<Run> {
    let mut all = vec!["--address".to_owned(), format!("127.0.0.1:{port}")];
    all.extend(args.iter().map(|a| (*a).to_owned()));
    let log = log_file("consumer");
    let mut child = java("org.example.dubbo.Consumer", &all, &log)?;
    let lines = lines_of(&mut child)?;
    let deadline = Instant::now() + CONSUMER_RUN;
    let mut calls = Vec::new();
    let summary = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = match lines.recv_timeout(left) {
            Ok(line) => line,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "consumer {args:?} gave no summary ({e}); results so far {calls:?}; log:\n{}",
                    tail(&log)
                );
            }
        };
        let Ok(v) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if v.get("summary").is_some() {
            break v;
        }
        calls.push(v);
    };
    while child.try_wait()?.is_none() {
        if Instant::now() >= deadline {
            let _ = child.kill();
            bail!("consumer {args:?} printed its summary but did not exit");
        }
        thread::sleep(Duration::from_millis(20));
    }
    Ok(Run { calls, summary })
}

impl Run {
    pub fn ok(&self) -> u64 {
        self.summary["ok"].as_u64().unwrap_or(0)
    }

    pub fn failed(&self) -> u64 {
        self.summary["failed"].as_u64().unwrap_or(0)
    }

    /// The single call's result.
    pub fn only(&self) -> &Value {
        assert_eq!(self.calls.len(), 1, "{:?}", self.calls);
        &self.calls[0]
    }
}

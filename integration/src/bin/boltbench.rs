//! `boltbench`: Bolt load generator. Closed loop (connections × in-flight) or open loop at a
//! fixed rate with latency counted from each call's intended send time. Prints a JSON report
//! (stdout, or `--json-out FILE`) and a one-line summary on stderr. Loopback targets only.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Parser, ValueEnum};
use integration::bench::{self, parse_duration, BenchOptions, BenchReport, Mode};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LoopKind {
    /// Keep N calls outstanding per connection.
    Closed,
    /// Send at a fixed rate.
    Open,
}

/// Bolt load generator (closed or open loop, HDR latency histograms, JSON report).
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Target `host:port` (must resolve to a loopback address).
    #[arg(long, default_value = "127.0.0.1:2045")]
    target: String,
    /// Loop kind.
    #[arg(long, value_enum, default_value_t = LoopKind::Closed)]
    mode: LoopKind,
    /// TCP connections.
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Closed loop: calls outstanding per connection.
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Open loop: total calls per second.
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Measured window (e.g. 10s, 500ms).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Unmeasured warm-up before the window.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Stop after this many measured calls even if the window is not over.
    #[arg(long)]
    max_requests: Option<u64>,
    /// Content bytes per request.
    #[arg(long, default_value_t = 128)]
    payload: usize,
    /// `service` header value.
    #[arg(long, default_value = bench::options::DEFAULT_SERVICE)]
    service: String,
    /// Extra request header `key=value` (repeatable), e.g. `echo-delay-ms=5`.
    #[arg(long = "header", value_parser = parse_header)]
    headers: Vec<(String, String)>,
    /// Per-call timeout (also written into each frame's timeout field).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    timeout: Duration,
    /// First request id on each connection.
    #[arg(long, default_value_t = 1)]
    first_id: u32,
    /// Open loop: spin this long before each send instead of sleeping (more precise sends,
    /// more CPU).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    spin: Duration,
    /// Write the JSON report here instead of stdout.
    #[arg(long)]
    json_out: Option<PathBuf>,
}

fn parse_header(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("expected key=value, got {s:?}"))
}

fn resolve(target: &str) -> anyhow::Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = target
        .to_socket_addrs()
        .with_context(|| format!("resolving {target}"))?
        .collect();
    match addrs.iter().find(|a| a.ip().is_loopback()) {
        Some(a) => Ok(*a),
        None => bail!("refusing {target}: it does not resolve to a loopback address ({addrs:?})"),
    }
}

fn summary(r: &BenchReport) -> String {
    let l = &r.latency_us;
    let lag = r
        .send_lag_us
        .map(|s| format!(", send lag p50 {:.1} p99 {:.1} µs", s.p50, s.p99))
        .unwrap_or_default();
    format!(
        "{} {}: {:.0} calls/s over {:.2}s; ok {} / sent {}, failed {} (timeouts {}, connection {}, status {:?}), unexpected {}; latency µs p50 {:.1} p90 {:.1} p99 {:.1} p99.9 {:.1} max {:.1}{lag}",
        r.mode,
        r.target,
        r.calls_per_sec,
        r.duration_secs,
        r.ok,
        r.sent,
        r.errors.failed_calls(),
        r.errors.timeouts,
        r.errors.connection,
        r.errors.status,
        r.errors.unexpected,
        l.p50,
        l.p90,
        l.p99,
        l.p999,
        l.max,
    )
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let target = resolve(&args.target)?;
    let mut options = BenchOptions::new(target);
    options.mode = match args.mode {
        LoopKind::Closed => Mode::Closed {
            connections: args.connections,
            in_flight: args.in_flight,
        },
        LoopKind::Open => Mode::Open {
            connections: args.connections,
            rate: args.rate,
        },
    };
    options.duration = args.duration;
    options.warmup = args.warmup;
    options.max_requests = args.max_requests;
    options.payload_size = args.payload;
    options.service = args.service;
    options.extra_headers = args.headers;
    options.timeout = args.timeout;
    options.first_id = args.first_id;
    options.spin = args.spin;
    let report = bench::run(&options)?;
    let json = serde_json::to_string_pretty(&report)?;
    match &args.json_out {
        Some(path) => std::fs::write(path, json + "\n")
            .with_context(|| format!("writing {}", path.display()))?,
        None => println!("{json}"),
    }
    eprintln!("{}", summary(&report));
    Ok(())
}

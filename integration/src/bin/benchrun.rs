//! `benchrun`: the `make bench` orchestrator. Starts the echo server and every variant's
//! sidecars (direct, 1 hop, 2 hops; Wasm and native codec), then runs `boltbench` against each
//! variant, interleaved (round 1: A B C D E, round 2: A B C D E, ...) so drift hits all of them
//! equally, measuring sidecar CPU per call and RSS from /proc. Writes `results.json`,
//! `results.md` and `latency.svg` to the output directory.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Parser;
use integration::bench::procstat::{clock_ticks_per_sec, sample, RssSampler};
use integration::bench::suite::{
    check_targets, summarise, RunResult, Scenario, SidecarUsage, SuiteMeta, SuiteReport, Targets,
    Variant,
};
use integration::bench::topology::{Topology, TopologySetup};
use integration::bench::{parse_duration, plot, table, BenchReport};
use integration::harness::{
    find_binary, repo_root, EchoProcess, SidecarOptions, DEFAULT_PLUGIN_PATH, SIDECAR_BIN_ENV,
};

/// Benchmark orchestrator: direct vs 1 hop vs 2 hops, Wasm vs native codec.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Rounds; each runs every variant under every scenario once.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Measured window per measurement.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// Warm-up per measurement.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    warmup: Duration,
    /// Closed-loop calls outstanding (one connection).
    #[arg(long, default_value_t = 64)]
    in_flight: usize,
    /// Open-loop rate, calls/s (one connection).
    #[arg(long, default_value_t = 2000.0)]
    rate: f64,
    /// Content bytes per request.
    #[arg(long, default_value_t = 128)]
    payload: usize,
    /// Variants to run, comma-separated (direct, relay-1hop, relay-2hop, wasm-1hop,
    /// native-1hop, wasm-2hop, native-2hop).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "direct,relay-2hop,wasm-1hop,native-1hop,wasm-2hop,native-2hop"
    )]
    variants: Vec<String>,
    /// Scenarios to run, comma-separated (closed: 1 connection × --in-flight; closed-8x16;
    /// open: --rate on 1 connection).
    #[arg(long, value_delimiter = ',', default_value = "closed,closed-8x16,open")]
    scenarios: Vec<String>,
    /// Output directory (relative paths are taken from the repository root).
    #[arg(long, visible_alias = "out", default_value = "bench-results")]
    out_dir: PathBuf,
    /// Sidecar binary (default: $SIDECAR_BIN, else target/release/sidecar).
    #[arg(long)]
    sidecar_bin: Option<PathBuf>,
    /// Wasm plugin path, relative to the repository root.
    #[arg(long, default_value = DEFAULT_PLUGIN_PATH)]
    plugin: String,
    /// The Wasm plugin's `instance_num` (instances in all, shared out among the workers;
    /// default: the CPU count, one per worker).
    #[arg(long)]
    instance_num: Option<usize>,
    /// Sidecar log level during the benchmark.
    #[arg(long, default_value = "WARN")]
    log_level: String,
    /// Pause between measurements.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    cooldown: Duration,
}

fn scenarios(args: &Args) -> anyhow::Result<Vec<Scenario>> {
    args.scenarios
        .iter()
        .map(|s| match s.as_str() {
            "closed" => Ok(Scenario::Closed {
                connections: 1,
                in_flight: args.in_flight,
            }),
            // Several connections sharing the workers: 8 × 16 in flight.
            "closed-8x16" => Ok(Scenario::Closed {
                connections: 8,
                in_flight: 16,
            }),
            "open" => Ok(Scenario::Open {
                connections: 1,
                rate: args.rate,
            }),
            other => bail!("unknown scenario {other:?} (closed, closed-8x16, open)"),
        })
        .collect()
}

fn variants(args: &Args) -> anyhow::Result<Vec<Variant>> {
    args.variants
        .iter()
        .map(|v| Variant::parse(v).with_context(|| format!("unknown variant {v:?}")))
        .collect()
}

/// Runs `boltbench` once against `target` and reads its JSON report.
fn run_boltbench(
    bin: &Path,
    target: SocketAddr,
    scenario: &Scenario,
    args: &Args,
    json: &Path,
) -> anyhow::Result<BenchReport> {
    let mut cmd = Command::new(bin);
    cmd.arg("--target")
        .arg(target.to_string())
        .arg("--duration")
        .arg(format!("{}ms", args.duration.as_millis()))
        .arg("--warmup")
        .arg(format!("{}ms", args.warmup.as_millis()))
        .arg("--payload")
        .arg(args.payload.to_string())
        .arg("--json-out")
        .arg(json);
    match *scenario {
        Scenario::Closed {
            connections,
            in_flight,
        } => cmd
            .args(["--mode", "closed", "--connections"])
            .arg(connections.to_string())
            .arg("--in-flight")
            .arg(in_flight.to_string()),
        Scenario::Open { connections, rate } => cmd
            .args(["--mode", "open", "--connections"])
            .arg(connections.to_string())
            .arg("--rate")
            .arg(rate.to_string()),
    };
    let out = cmd
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "boltbench failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text =
        std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    Ok(serde_json::from_str(&text)?)
}

/// One measurement of `topology` under `scenario`, with sidecar CPU and memory.
fn measure(
    bench_bin: &Path,
    topology: &Topology,
    scenario: &Scenario,
    args: &Args,
    json: &Path,
) -> anyhow::Result<(BenchReport, Vec<SidecarUsage>)> {
    let pids = topology.pids();
    let before = pids
        .iter()
        .map(|&p| sample(p))
        .collect::<Result<Vec<_>, _>>()
        .context("reading sidecar /proc before the run")?;
    let sampler = RssSampler::start(pids.clone(), Duration::from_millis(100))?;
    let report = run_boltbench(bench_bin, topology.entry, scenario, args, json);
    let peaks = sampler.stop();
    let report = report?;
    let ticks = clock_ticks_per_sec() as f64;
    let mut usage = Vec::new();
    for (i, (&pid, b)) in pids.iter().zip(&before).enumerate() {
        let a = sample(pid).context("reading sidecar /proc after the run")?;
        let cpu_secs = a.cpu_ticks.saturating_sub(b.cpu_ticks) as f64 / ticks;
        let calls = report.total_sent.max(1) as f64;
        usage.push(SidecarUsage {
            role: Topology::role(i),
            cpu_secs,
            cpu_ms_per_1k_calls: cpu_secs * 1000.0 / (calls / 1000.0),
            rss_peak_kib: peaks.get(&pid).copied().unwrap_or(a.rss_kib).max(a.rss_kib),
            hwm_kib: a.hwm_kib,
        });
    }
    Ok((report, usage))
}

/// The first line of a (possibly multi-line) error message, for one-line report notes.
fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or_default()
}

fn git_commit() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(repo_root())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let scenarios = scenarios(&args)?;
    let wanted = variants(&args)?;
    if args.rounds == 0 {
        bail!("--rounds must be at least 1");
    }
    let exe_hint = "build it with `cargo build --release -p integration --bins`";
    let bench_bin = find_binary("boltbench", "BOLTBENCH_BIN", exe_hint)?;
    let echo_bin = find_binary("bolt-echo", "BOLT_ECHO_BIN", exe_hint)?;
    let needs_sidecar = wanted.iter().any(|v| v.hops > 0);
    let sidecar_bin = match &args.sidecar_bin {
        Some(p) => p.clone(),
        None if needs_sidecar => find_binary(
            "sidecar",
            SIDECAR_BIN_ENV,
            "build it with `cargo build --release -p sidecar` (or set SIDECAR_BIN)",
        )?,
        None => PathBuf::from("(not used)"),
    };
    let out_dir = if args.out_dir.is_absolute() {
        args.out_dir.clone()
    } else {
        repo_root().join(&args.out_dir)
    };
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let started_unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut notes = Vec::new();
    if cfg!(debug_assertions) {
        notes.push("benchrun is a debug build: binaries were looked up next to it, so numbers may come from unoptimised builds".to_owned());
    }

    let echo = EchoProcess::spawn_with(&echo_bin, "127.0.0.1:0".parse()?, &[])?;
    eprintln!("echo server {} (pid {})", echo.addr(), echo.pid());
    let setup = TopologySetup {
        sidecar: SidecarOptions {
            binary: Some(sidecar_bin.clone()),
            keep_logs: true,
            ..SidecarOptions::default()
        },
        plugin_path: args.plugin.clone(),
        log_level: args.log_level.clone(),
        instance_num: args.instance_num,
    };
    let mut topologies = Vec::new();
    for v in &wanted {
        match Topology::start(*v, echo.addr(), &setup) {
            Ok(t) => {
                eprintln!(
                    "{}: entry {} sidecar pids {:?}",
                    v.name(),
                    t.entry,
                    t.pids()
                );
                topologies.push(t);
            }
            Err(e) => {
                eprintln!("{} skipped: its sidecars did not start: {e}", v.name());
                notes.push(format!(
                    "{} skipped: its sidecars did not start: {}",
                    v.name(),
                    first_line(&e.to_string())
                ));
            }
        }
    }
    if topologies.is_empty() {
        bail!("no variant could be started");
    }

    let json_tmp = out_dir.join(".boltbench-run.json");
    let mut runs = Vec::new();
    let total = args.rounds * scenarios.len() * topologies.len();
    let mut n = 0;
    for round in 1..=args.rounds {
        for scenario in &scenarios {
            for topology in topologies.iter_mut() {
                n += 1;
                let name = topology.variant.name();
                if topology.check_alive().is_err() {
                    continue;
                }
                eprint!("[{n}/{total}] round {round} {} {name}: ", scenario.name());
                match measure(&bench_bin, topology, scenario, &args, &json_tmp) {
                    Ok((report, sidecars)) => {
                        eprintln!(
                            "{:.0} calls/s, p50 {:.1} µs, p99 {:.1} µs, failed {}",
                            report.calls_per_sec,
                            report.latency_us.p50,
                            report.latency_us.p99,
                            report.errors.failed_calls()
                        );
                        runs.push(RunResult {
                            round,
                            variant: name.clone(),
                            scenario: scenario.name(),
                            report,
                            sidecars,
                        });
                    }
                    Err(e) => {
                        eprintln!("failed: {e:#}");
                        notes.push(format!(
                            "round {round} {} {name} failed: {e:#}",
                            scenario.name()
                        ));
                    }
                }
                if let Err(e) = topology.check_alive() {
                    eprintln!("{name}: a sidecar died during the run: {e}");
                    let e = e.to_string();
                    notes.push(format!(
                        "{name}: a sidecar died during the run: {}",
                        first_line(&e)
                    ));
                }
                std::thread::sleep(args.cooldown);
            }
        }
    }
    let _ = std::fs::remove_file(&json_tmp);

    let scenario_names: Vec<String> = scenarios.iter().map(Scenario::name).collect();
    let mut summaries = Vec::new();
    for scenario in &scenario_names {
        for v in &wanted {
            summaries.extend(summarise(&runs, &v.name(), scenario));
        }
    }
    for s in &summaries {
        if s.failed_calls > 0 {
            notes.push(format!(
                "{} {}: {} of {} calls failed (see results.json for causes)",
                s.variant, s.scenario, s.failed_calls, s.sent
            ));
        }
    }
    let closed = scenarios
        .iter()
        .find(|s| !s.is_open())
        .map(Scenario::name)
        .unwrap_or_default();
    let open = scenarios
        .iter()
        .find(|s| s.is_open())
        .map(Scenario::name)
        .unwrap_or_default();
    let checks = check_targets(&summaries, &closed, &open, &Targets::default());
    let report = SuiteReport {
        meta: SuiteMeta {
            started_unix,
            git_commit: git_commit(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            rounds: args.rounds,
            warmup_secs: args.warmup.as_secs_f64(),
            duration_secs: args.duration.as_secs_f64(),
            payload_size: args.payload,
            scenarios: scenarios.clone(),
            variants: wanted.iter().map(Variant::name).collect(),
            sidecar_bin: sidecar_bin.display().to_string(),
            notes,
        },
        runs,
        summaries,
        checks,
    };
    let write = |name: &str, text: String| -> anyhow::Result<()> {
        let path = out_dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))
    };
    write(
        "results.json",
        serde_json::to_string_pretty(&report)? + "\n",
    )?;
    let md = table::render(&report);
    write("results.md", md.clone())?;
    write(
        "latency.svg",
        plot::render(&report.summaries, &scenario_names),
    )?;
    println!("{md}");
    eprintln!(
        "wrote {}/results.{{json,md}} and latency.svg",
        out_dir.display()
    );
    Ok(())
}

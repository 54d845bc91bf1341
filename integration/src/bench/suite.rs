//! The benchmark suite `benchrun` runs: which topologies and codecs are compared, how each
//! measurement is stored, and how the rounds are summarised and checked against the targets.

use serde::{Deserialize, Serialize};

use super::record::{BenchReport, LatencySummary};

/// Which codec a sidecar uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CodecKind {
    /// The Bolt Wasm plugin.
    Wasm,
    /// The same Bolt code compiled natively into the sidecar.
    Native,
    /// No sidecar: a plain TCP relay (`tcp-relay`, every hop in one process), the physical
    /// limit the sidecar is measured against.
    Relay,
}

impl CodecKind {
    /// `wasm` or `native`.
    pub fn name(self) -> &'static str {
        match self {
            CodecKind::Wasm => "wasm",
            CodecKind::Native => "native",
            CodecKind::Relay => "relay",
        }
    }
}

/// One path from the load generator to the echo server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Variant {
    /// Sidecars on the path: 0 (direct), 1 or 2.
    pub hops: u8,
    /// Their codec (`None` when direct).
    pub codec: Option<CodecKind>,
}

impl Variant {
    /// Client → echo.
    pub const DIRECT: Variant = Variant {
        hops: 0,
        codec: None,
    };

    /// All variants in the order they are interleaved.
    pub fn all() -> [Variant; 7] {
        [
            Variant::DIRECT,
            Variant::proxied(1, CodecKind::Relay),
            Variant::proxied(2, CodecKind::Relay),
            Variant::proxied(1, CodecKind::Wasm),
            Variant::proxied(1, CodecKind::Native),
            Variant::proxied(2, CodecKind::Wasm),
            Variant::proxied(2, CodecKind::Native),
        ]
    }

    /// Client → `hops` sidecars with `codec` → echo.
    pub const fn proxied(hops: u8, codec: CodecKind) -> Variant {
        Variant {
            hops,
            codec: Some(codec),
        }
    }

    /// `direct`, `wasm-1hop`, `native-2hop`, ...
    pub fn name(&self) -> String {
        match self.codec {
            None => "direct".to_owned(),
            Some(c) => format!("{}-{}hop", c.name(), self.hops),
        }
    }

    /// Parses a [`Variant::name`].
    pub fn parse(s: &str) -> Option<Variant> {
        Variant::all().into_iter().find(|v| v.name() == s)
    }
}

/// One load shape.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Scenario {
    /// Closed loop (capacity).
    Closed {
        /// Connections.
        connections: usize,
        /// Calls outstanding per connection.
        in_flight: usize,
    },
    /// Open loop at a fixed rate (latency).
    Open {
        /// Connections.
        connections: usize,
        /// Calls per second.
        rate: f64,
    },
}

impl Scenario {
    /// `closed-1x64`, `open-2000`, ...
    pub fn name(&self) -> String {
        match *self {
            Scenario::Closed {
                connections,
                in_flight,
            } => format!("closed-{connections}x{in_flight}"),
            Scenario::Open {
                connections: 1,
                rate,
            } => format!("open-{rate}"),
            Scenario::Open { connections, rate } => format!("open-{rate}-{connections}c"),
        }
    }

    /// True for open loop.
    pub fn is_open(&self) -> bool {
        matches!(self, Scenario::Open { .. })
    }
}

/// Resource use of one sidecar process during one measurement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SidecarUsage {
    /// `A` (first hop, the client side) or `B` (second hop).
    pub role: String,
    /// CPU seconds (user + system) used during the measurement (warm-up included).
    pub cpu_secs: f64,
    /// CPU milliseconds per 1,000 calls sent during the measurement.
    pub cpu_ms_per_1k_calls: f64,
    /// Largest RSS sampled during the measurement, KiB.
    pub rss_peak_kib: u64,
    /// The process's lifetime peak RSS (VmHWM) after the measurement, KiB.
    pub hwm_kib: u64,
}

/// One measurement: a variant under a scenario in one round.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Round number, from 1.
    pub round: usize,
    /// [`Variant::name`].
    pub variant: String,
    /// [`Scenario::name`].
    pub scenario: String,
    /// What the load generator measured.
    pub report: BenchReport,
    /// Each sidecar on the path, in path order.
    pub sidecars: Vec<SidecarUsage>,
}

/// The rounds of one variant under one scenario, summarised by medians.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// [`Variant::name`].
    pub variant: String,
    /// [`Scenario::name`].
    pub scenario: String,
    /// Rounds summarised.
    pub rounds: usize,
    /// Median calls/s.
    pub calls_per_sec: f64,
    /// Lowest calls/s of any round.
    pub calls_per_sec_min: f64,
    /// Highest calls/s of any round.
    pub calls_per_sec_max: f64,
    /// Field-wise median of the rounds' latency summaries, µs.
    pub latency_us: LatencySummary,
    /// Point-wise median of the rounds' percentile curves, µs.
    pub percentiles_us: Vec<(f64, f64)>,
    /// Failed calls over all rounds.
    pub failed_calls: u64,
    /// Calls sent over all rounds.
    pub sent: u64,
    /// Median CPU ms per 1,000 calls, summed over the sidecars on the path (`None` if direct).
    pub sidecar_cpu_ms_per_1k: Option<f64>,
    /// Largest RSS sampled in any sidecar on the path, MiB.
    pub sidecar_rss_peak_mib: Option<f64>,
    /// Largest VmHWM of any sidecar on the path, MiB.
    pub sidecar_hwm_mib: Option<f64>,
}

/// Everything one `benchrun` produced; written as `results.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteReport {
    /// How the suite was run.
    pub meta: SuiteMeta,
    /// Every measurement, in the order taken.
    pub runs: Vec<RunResult>,
    /// Per variant and scenario, over the rounds.
    pub summaries: Vec<Summary>,
    /// The targets, checked.
    pub checks: Vec<TargetCheck>,
}

/// How a suite was run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SuiteMeta {
    /// Start time, seconds since the Unix epoch.
    pub started_unix: u64,
    /// `git rev-parse HEAD` of the tree, if available.
    pub git_commit: Option<String>,
    /// CPUs available.
    pub cpus: usize,
    /// Rounds run (each round runs every variant under every scenario once).
    pub rounds: usize,
    /// Warm-up per measurement, seconds.
    pub warmup_secs: f64,
    /// Measured window per measurement, seconds.
    pub duration_secs: f64,
    /// Content bytes per request.
    pub payload_size: usize,
    /// Scenarios, in run order.
    pub scenarios: Vec<Scenario>,
    /// Variants, in run order.
    pub variants: Vec<String>,
    /// The sidecar binary used.
    pub sidecar_bin: String,
    /// Anything a reader must know (e.g. variants that could not run).
    pub notes: Vec<String>,
}

/// Median of `values` (mean of the middle two for an even count); 0 for none.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

fn median_of<T>(items: &[T], f: impl Fn(&T) -> f64) -> f64 {
    let mut v: Vec<f64> = items.iter().map(f).collect();
    median(&mut v)
}

/// Summarises the runs of one variant under one scenario; `None` if there are none.
pub fn summarise(runs: &[RunResult], variant: &str, scenario: &str) -> Option<Summary> {
    let mine: Vec<&RunResult> = runs
        .iter()
        .filter(|r| r.variant == variant && r.scenario == scenario)
        .collect();
    if mine.is_empty() {
        return None;
    }
    let reports: Vec<&BenchReport> = mine.iter().map(|r| &r.report).collect();
    let lat = |f: fn(&LatencySummary) -> f64| median_of(&reports, |r| f(&r.latency_us));
    let latency_us = LatencySummary {
        count: reports.iter().map(|r| r.latency_us.count).sum(),
        min: lat(|l| l.min),
        mean: lat(|l| l.mean),
        p50: lat(|l| l.p50),
        p90: lat(|l| l.p90),
        p99: lat(|l| l.p99),
        p999: lat(|l| l.p999),
        max: lat(|l| l.max),
    };
    let points = reports
        .iter()
        .map(|r| r.percentiles_us.len())
        .min()
        .unwrap_or(0);
    let percentiles_us = (0..points)
        .map(|i| {
            let p = reports[0].percentiles_us[i].0;
            (p, median_of(&reports, |r| r.percentiles_us[i].1))
        })
        .collect();
    let proxied = mine.iter().any(|r| !r.sidecars.is_empty());
    let kib_to_mib = |k: u64| k as f64 / 1024.0;
    let max_over = |f: fn(&SidecarUsage) -> u64| {
        mine.iter()
            .flat_map(|r| r.sidecars.iter().map(f))
            .max()
            .map(kib_to_mib)
    };
    Some(Summary {
        variant: variant.to_owned(),
        scenario: scenario.to_owned(),
        rounds: mine.len(),
        calls_per_sec: median_of(&reports, |r| r.calls_per_sec),
        calls_per_sec_min: reports
            .iter()
            .map(|r| r.calls_per_sec)
            .fold(f64::INFINITY, f64::min),
        calls_per_sec_max: reports.iter().map(|r| r.calls_per_sec).fold(0.0, f64::max),
        latency_us,
        percentiles_us,
        failed_calls: reports.iter().map(|r| r.errors.failed_calls()).sum(),
        sent: reports.iter().map(|r| r.sent).sum(),
        sidecar_cpu_ms_per_1k: proxied.then(|| {
            median_of(&mine, |r| {
                r.sidecars
                    .iter()
                    .map(|s| s.cpu_ms_per_1k_calls)
                    .sum::<f64>()
            })
        }),
        sidecar_rss_peak_mib: max_over(|s| s.rss_peak_kib),
        sidecar_hwm_mib: max_over(|s| s.hwm_kib),
    })
}

/// One target from the brief, checked against the summaries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetCheck {
    /// What is measured.
    pub name: String,
    /// Measured value.
    pub value: f64,
    /// `>=` or `<=`.
    pub op: String,
    /// The limit.
    pub limit: f64,
    /// Whether the value meets the limit.
    pub met: bool,
}

impl TargetCheck {
    fn at_least(name: String, value: f64, limit: f64) -> Self {
        TargetCheck {
            name,
            value,
            op: ">=".into(),
            limit,
            met: value >= limit,
        }
    }

    fn at_most(name: String, value: f64, limit: f64) -> Self {
        TargetCheck {
            name,
            value,
            op: "<=".into(),
            limit,
            met: value <= limit,
        }
    }
}

/// What the benchmark is held to (the targets of the "close to the wire" issue): the sidecar
/// against a plain TCP relay doing the same two hops, CPU per call, Wasm against native,
/// added latency per hop over the relay, memory.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Targets {
    /// Native two hops ÷ relay two hops calls/s, closed loop.
    pub native_relay_ratio: f64,
    /// Wasm two hops ÷ relay two hops calls/s, closed loop.
    pub wasm_relay_ratio: f64,
    /// Native two hops: sidecar CPU µs per call (both hops).
    pub native_cpu_us: f64,
    /// Wasm two hops: sidecar CPU µs per call (both hops).
    pub wasm_cpu_us: f64,
    /// Wasm ÷ native calls/s, closed loop.
    pub wasm_native_ratio: f64,
    /// Open loop: added p50 per hop over the relay, µs.
    pub added_p50_us: f64,
    /// Sidecar RSS, MiB.
    pub rss_mib: f64,
}

impl Default for Targets {
    fn default() -> Self {
        Targets {
            native_relay_ratio: 0.5,
            wasm_relay_ratio: 0.4,
            native_cpu_us: 4.0,
            wasm_cpu_us: 6.0,
            wasm_native_ratio: 0.8,
            added_p50_us: 30.0,
            rss_mib: 30.0,
        }
    }
}

/// Added latency per hop of `codec` in `scenario`, as `(p50, p99)` pairs in µs: estimated from
/// one hop (`1 hop − direct`) and from two (`(2 hops − direct) / 2`).
pub fn added_per_hop(
    summaries: &[Summary],
    scenario: &str,
    codec: CodecKind,
) -> Option<((f64, f64), (f64, f64))> {
    let find = |v: Variant| {
        summaries
            .iter()
            .find(|s| s.scenario == scenario && s.variant == v.name())
    };
    let direct = find(Variant::DIRECT)?;
    let one = find(Variant::proxied(1, codec))?;
    let two = find(Variant::proxied(2, codec))?;
    let d = &direct.latency_us;
    Some((
        (one.latency_us.p50 - d.p50, one.latency_us.p99 - d.p99),
        (
            (two.latency_us.p50 - d.p50) / 2.0,
            (two.latency_us.p99 - d.p99) / 2.0,
        ),
    ))
}

/// Checks the summaries against `targets`. `closed` and `open` name the capacity and latency
/// scenarios; checks whose inputs are missing are left out.
pub fn check_targets(
    summaries: &[Summary],
    closed: &str,
    open: &str,
    targets: &Targets,
) -> Vec<TargetCheck> {
    let find = |scenario: &str, v: Variant| {
        summaries
            .iter()
            .find(|s| s.scenario == scenario && s.variant == v.name())
    };
    let relay = Variant::proxied(2, CodecKind::Relay);
    let mut checks = Vec::new();
    for (codec, ratio, cpu) in [
        (
            CodecKind::Native,
            targets.native_relay_ratio,
            targets.native_cpu_us,
        ),
        (
            CodecKind::Wasm,
            targets.wasm_relay_ratio,
            targets.wasm_cpu_us,
        ),
    ] {
        let c = codec.name();
        let Some(two) = find(closed, Variant::proxied(2, codec)) else {
            continue;
        };
        if let Some(r) = find(closed, relay).filter(|r| r.calls_per_sec > 0.0) {
            checks.push(TargetCheck::at_least(
                format!("{closed}: {c} 2 hops ÷ relay 2 hops calls/s"),
                two.calls_per_sec / r.calls_per_sec,
                ratio,
            ));
        }
        if let Some(us) = two.sidecar_cpu_ms_per_1k {
            checks.push(TargetCheck::at_most(
                format!("{closed}: {c} 2 hops sidecar CPU µs per call"),
                us,
                cpu,
            ));
        }
    }
    for hops in [1, 2] {
        let wasm = find(closed, Variant::proxied(hops, CodecKind::Wasm));
        let native = find(closed, Variant::proxied(hops, CodecKind::Native));
        if let (Some(w), Some(n)) = (wasm, native) {
            if n.calls_per_sec > 0.0 {
                checks.push(TargetCheck::at_least(
                    format!("{closed}: wasm ÷ native calls/s, {hops} hop(s)"),
                    w.calls_per_sec / n.calls_per_sec,
                    targets.wasm_native_ratio,
                ));
            }
        }
    }
    if let Some(r) = find(open, relay) {
        for codec in [CodecKind::Native, CodecKind::Wasm] {
            if let Some(two) = find(open, Variant::proxied(2, codec)) {
                checks.push(TargetCheck::at_most(
                    format!(
                        "{open}: {} added p50 per hop over the relay ((2 hops − relay) ÷ 2), µs",
                        codec.name()
                    ),
                    (two.latency_us.p50 - r.latency_us.p50) / 2.0,
                    targets.added_p50_us,
                ));
            }
        }
    }
    let rss = summaries
        .iter()
        .filter(|s| !s.variant.starts_with("relay"))
        .filter_map(|s| s.sidecar_rss_peak_mib)
        .fold(None, |m: Option<f64>, v| Some(m.map_or(v, |m| m.max(v))));
    if let Some(rss) = rss {
        checks.push(TargetCheck::at_most(
            "sidecar peak RSS under load (any process), MiB".into(),
            rss,
            targets.rss_mib,
        ));
    }
    checks
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::bench::record::ErrorCounts;

    pub(crate) fn report(calls_per_sec: f64, p50: f64, p99: f64) -> BenchReport {
        BenchReport {
            target: "127.0.0.1:1".into(),
            mode: "closed".into(),
            connections: 1,
            in_flight: Some(64),
            rate: None,
            payload_size: 128,
            service: "s".into(),
            warmup_secs: 1.0,
            duration_secs: 5.0,
            sent: 1000,
            total_sent: 1200,
            ok: 1000,
            errors: ErrorCounts::default(),
            calls_per_sec,
            latency_us: LatencySummary {
                count: 1000,
                min: p50 / 2.0,
                mean: p50,
                p50,
                p90: p99 * 0.8,
                p99,
                p999: p99 * 1.5,
                max: p99 * 2.0,
            },
            percentiles_us: vec![(50.0, p50), (99.0, p99)],
            send_lag_us: None,
        }
    }

    pub(crate) fn run(round: usize, v: Variant, scenario: &str, r: BenchReport) -> RunResult {
        let sidecars = (0..v.hops)
            .map(|i| SidecarUsage {
                role: if i == 0 { "A".into() } else { "B".into() },
                cpu_secs: 1.0,
                cpu_ms_per_1k_calls: 10.0,
                rss_peak_kib: 20 * 1024,
                hwm_kib: 25 * 1024,
            })
            .collect();
        RunResult {
            round,
            variant: v.name(),
            scenario: scenario.into(),
            report: r,
            sidecars,
        }
    }

    pub(crate) fn sample_summaries() -> Vec<Summary> {
        let mut runs = Vec::new();
        for round in 1..=3 {
            let jitter = round as f64;
            for (v, cps, p50) in [
                (Variant::DIRECT, 100_000.0, 30.0),
                (Variant::proxied(1, CodecKind::Wasm), 60_000.0, 70.0),
                (Variant::proxied(1, CodecKind::Native), 66_000.0, 60.0),
                (Variant::proxied(2, CodecKind::Wasm), 40_000.0, 110.0),
                (Variant::proxied(2, CodecKind::Native), 50_000.0, 90.0),
                (Variant::proxied(2, CodecKind::Relay), 80_000.0, 50.0),
            ] {
                runs.push(run(
                    round,
                    v,
                    "closed-1x64",
                    report(cps + jitter, p50 * 10.0, p50 * 30.0),
                ));
                runs.push(run(
                    round,
                    v,
                    "open-2000",
                    report(2000.0, p50 + jitter, p50 * 2.0),
                ));
            }
        }
        Variant::all()
            .iter()
            .flat_map(|v| {
                ["closed-1x64", "open-2000"]
                    .into_iter()
                    .filter_map(|s| summarise(&runs, &v.name(), s))
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn names_round_trip() {
        for v in Variant::all() {
            assert_eq!(Variant::parse(&v.name()), Some(v));
        }
        assert_eq!(Variant::parse("wasm-3hop"), None);
        let s = Scenario::Open {
            connections: 1,
            rate: 2000.0,
        };
        assert_eq!(s.name(), "open-2000");
        let s = Scenario::Closed {
            connections: 1,
            in_flight: 64,
        };
        assert_eq!(s.name(), "closed-1x64");
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), 0.0);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn summaries_take_medians_and_sidecar_maxima() {
        let sums = sample_summaries();
        let direct = sums
            .iter()
            .find(|s| s.variant == "direct" && s.scenario == "closed-1x64")
            .unwrap();
        assert_eq!(direct.rounds, 3);
        assert_eq!(direct.calls_per_sec, 100_002.0);
        assert_eq!(direct.calls_per_sec_min, 100_001.0);
        assert_eq!(direct.sidecar_cpu_ms_per_1k, None);
        let two = sums
            .iter()
            .find(|s| s.variant == "wasm-2hop" && s.scenario == "closed-1x64")
            .unwrap();
        assert_eq!(two.sidecar_cpu_ms_per_1k, Some(20.0), "two sidecars summed");
        assert_eq!(two.sidecar_rss_peak_mib, Some(20.0));
        assert_eq!(two.percentiles_us.len(), 2);
    }

    #[test]
    fn targets_are_checked_against_summaries() {
        let sums = sample_summaries();
        let checks = check_targets(&sums, "closed-1x64", "open-2000", &Targets::default());
        let get = |name: &str| checks.iter().find(|c| c.name.contains(name)).unwrap();
        let wasm = get("wasm 2 hops ÷ relay");
        assert!((wasm.value - 40_002.0 / 80_002.0).abs() < 1e-9, "{wasm:?}");
        assert!(wasm.met, "0.5 >= 0.4");
        let native = get("native 2 hops ÷ relay");
        assert!((native.value - 50_002.0 / 80_002.0).abs() < 1e-9);
        assert!(native.met);
        let cpu = get("wasm 2 hops sidecar CPU");
        assert_eq!(cpu.value, 20.0, "two sidecars of 10 µs per call each");
        assert!(!cpu.met);
        let ratio = get("wasm ÷ native calls/s, 1 hop");
        assert!((ratio.value - 60_002.0 / 66_002.0).abs() < 1e-9);
        assert!(ratio.met);
        let added = get("wasm added p50 per hop over the relay");
        assert!(
            (added.value - 30.0).abs() < 1e-9,
            "(110 - 50) / 2: {added:?}"
        );
        assert!(added.met);
        assert!(get("RSS").met);
        assert_eq!(checks.len(), 4 + 2 + 2 + 1);
    }
}

//! The Markdown report of a suite: throughput, latency, per-hop cost, resources, targets.

use std::fmt::Write;

use super::suite::{added_per_hop, CodecKind, SuiteReport, Summary, Variant};

/// Renders `report` as Markdown.
pub fn render(report: &SuiteReport) -> String {
    let mut md = String::new();
    let m = &report.meta;
    let _ = writeln!(md, "# Bolt sidecar benchmark\n");
    let _ = writeln!(
        md,
        "{} round(s), interleaved ({}); each measurement {:.1} s after {:.1} s warm-up; payload {} B; {} CPU(s); commit {}; sidecar `{}`.\n",
        m.rounds,
        m.variants.join(" → "),
        m.duration_secs,
        m.warmup_secs,
        m.payload_size,
        m.cpus,
        m.git_commit.as_deref().unwrap_or("unknown"),
        m.sidecar_bin,
    );
    let _ = writeln!(
        md,
        "Medians over rounds. Latency in µs; open-loop latency counts from each call's intended send time. \
         CPU = sidecar user+system time per 1,000 calls, summed over the sidecars on the path. \
         RSS = largest sampled resident set of any sidecar on the path under load.\n"
    );
    for note in &m.notes {
        let _ = writeln!(md, "> {note}\n");
    }
    for scenario in &m.scenarios {
        let name = scenario.name();
        let rows: Vec<&Summary> = report
            .summaries
            .iter()
            .filter(|s| s.scenario == name)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(md, "## {name}\n");
        let _ = writeln!(
            md,
            "| variant | calls/s | min–max | ÷ direct | ÷ relay | p50 | p90 | p99 | p99.9 | max | failed / sent | CPU ms/1k | RSS MiB |"
        );
        let _ = writeln!(
            md,
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
        );
        let direct = rows
            .iter()
            .find(|s| s.variant == Variant::DIRECT.name())
            .map(|s| s.calls_per_sec);
        for s in &rows {
            let l = &s.latency_us;
            let ratio = match direct {
                Some(d) if d > 0.0 => format!("{:.2}", s.calls_per_sec / d),
                _ => "–".into(),
            };
            // The plain TCP relay with the same number of hops: the physical limit.
            let relay_name = s
                .variant
                .rsplit_once('-')
                .map(|(_, hops)| format!("relay-{hops}"));
            let relay = rows
                .iter()
                .find(|r| Some(&r.variant) == relay_name.as_ref())
                .map(|r| r.calls_per_sec);
            let vs_relay = match relay {
                Some(r) if r > 0.0 => format!("{:.2}", s.calls_per_sec / r),
                _ => "–".into(),
            };
            let _ = writeln!(
                md,
                "| {} | {:.0} | {:.0}–{:.0} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} / {} | {} | {} |",
                s.variant,
                s.calls_per_sec,
                s.calls_per_sec_min,
                s.calls_per_sec_max,
                ratio,
                vs_relay,
                l.p50,
                l.p90,
                l.p99,
                l.p999,
                l.max,
                s.failed_calls,
                s.sent,
                opt(s.sidecar_cpu_ms_per_1k, 2),
                opt(s.sidecar_rss_peak_mib, 1),
            );
        }
        let _ = writeln!(md);
        per_hop(&mut md, &report.summaries, &name);
    }
    if !report.checks.is_empty() {
        let _ = writeln!(md, "## Targets\n");
        let _ = writeln!(md, "| target | measured | limit | met |");
        let _ = writeln!(md, "|---|---:|---:|:---:|");
        for c in &report.checks {
            let _ = writeln!(
                md,
                "| {} | {:.2} | {} {} | {} |",
                c.name,
                c.value,
                c.op,
                c.limit,
                if c.met { "yes" } else { "**no**" }
            );
        }
        let _ = writeln!(md);
    }
    let _ = writeln!(
        md,
        "Latency percentile curves: [latency.svg](latency.svg). Raw data: [results.json](results.json).\n"
    );
    md
}

/// Per-hop cost lines for one scenario, when its variants are all present.
fn per_hop(md: &mut String, summaries: &[Summary], scenario: &str) {
    let rows: Vec<String> = [CodecKind::Wasm, CodecKind::Native]
        .into_iter()
        .filter_map(|codec| {
            let ((p50, p99), (p50_2, p99_2)) = added_per_hop(summaries, scenario, codec)?;
            Some(format!(
                "| {} | {p50:.1} | {p99:.1} | {p50_2:.1} | {p99_2:.1} |",
                codec.name()
            ))
        })
        .collect();
    if rows.is_empty() {
        return;
    }
    let _ = writeln!(
        md,
        "Added latency per hop, µs:\n\n| codec | p50 (1 hop − direct) | p99 (1 hop − direct) | p50 ((2 hops − direct) ÷ 2) | p99 ((2 hops − direct) ÷ 2) |"
    );
    let _ = writeln!(md, "|---|---:|---:|---:|---:|");
    for r in rows {
        let _ = writeln!(md, "{r}");
    }
    let _ = writeln!(md);
}

fn opt(v: Option<f64>, decimals: usize) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{v:.decimals$}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::suite::tests::sample_summaries;
    use crate::bench::suite::{check_targets, Scenario, SuiteMeta, Targets};

    #[test]
    fn renders_every_variant_ratio_and_target() {
        let summaries = sample_summaries();
        let checks = check_targets(&summaries, "closed-1x64", "open-2000", &Targets::default());
        let report = SuiteReport {
            meta: SuiteMeta {
                started_unix: 0,
                git_commit: Some("abc".into()),
                cpus: 2,
                rounds: 3,
                warmup_secs: 1.0,
                duration_secs: 5.0,
                payload_size: 128,
                scenarios: vec![
                    Scenario::Closed {
                        connections: 1,
                        in_flight: 64,
                    },
                    Scenario::Open {
                        connections: 1,
                        rate: 2000.0,
                    },
                ],
                variants: Variant::all().iter().map(Variant::name).collect(),
                sidecar_bin: "target/release/sidecar".into(),
                notes: vec!["a note".into()],
            },
            runs: Vec::new(),
            summaries,
            checks,
        };
        let md = render(&report);
        assert!(md.contains("## closed-1x64"));
        assert!(md.contains("## open-2000"));
        assert!(md.contains("| wasm-2hop | 40002 |"), "{md}");
        assert!(md.contains("| 0.40 |"), "two hops ÷ direct: {md}");
        assert!(md.contains("| wasm | 40.0 |"), "added p50: {md}");
        assert!(md.contains("**no**"), "unmet target flagged");
        assert!(md.contains("> a note"));
    }
}

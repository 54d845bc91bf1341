//! A hand-written SVG of latency percentile curves: one panel per scenario, one line per
//! variant, percentiles on a "nines" axis (50%, 90%, 99%, ...) and latency on a log axis.

use std::fmt::Write;

use super::suite::Summary;

const PANEL_W: f64 = 560.0;
const PANEL_H: f64 = 380.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 150.0;
const TOP: f64 = 40.0;
const BOTTOM: f64 = 50.0;
/// The x axis ends at 99.999% (five nines); the 100% point is drawn there too.
const MAX_NINES: f64 = 5.0;
const COLORS: [&str; 8] = [
    "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666",
];

/// Percentile → position on the nines axis: 0% → 0, 90% → 1, 99% → 2, ...
fn nines(p: f64) -> f64 {
    if p >= 100.0 {
        MAX_NINES
    } else {
        (-(1.0 - p / 100.0).log10()).clamp(0.0, MAX_NINES)
    }
}

/// Renders the percentile curves of `summaries`, one panel per scenario in `scenarios` order.
pub fn render(summaries: &[Summary], scenarios: &[String]) -> String {
    let panels: Vec<(&String, Vec<&Summary>)> = scenarios
        .iter()
        .map(|sc| {
            let rows = summaries
                .iter()
                .filter(|s| &s.scenario == sc && !s.percentiles_us.is_empty())
                .collect();
            (sc, rows)
        })
        .filter(|(_, rows): &(&String, Vec<&Summary>)| !rows.is_empty())
        .collect();
    let width = PANEL_W * panels.len().max(1) as f64;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{PANEL_H}" viewBox="0 0 {width} {PANEL_H}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(svg, r#"<rect width="100%" height="100%" fill="white"/>"#);
    if panels.is_empty() {
        let _ = writeln!(svg, r#"<text x="20" y="40">no latency data</text>"#);
    }
    for (i, (scenario, rows)) in panels.iter().enumerate() {
        panel(&mut svg, i as f64 * PANEL_W, scenario, rows);
    }
    svg.push_str("</svg>\n");
    svg
}

fn panel(svg: &mut String, x0: f64, scenario: &str, rows: &[&Summary]) {
    let plot_w = PANEL_W - LEFT - RIGHT;
    let plot_h = PANEL_H - TOP - BOTTOM;
    let values = rows
        .iter()
        .flat_map(|s| s.percentiles_us.iter().map(|p| p.1))
        .filter(|v| *v > 0.0);
    let (lo, hi) = values.fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if hi <= 0.0 { (1.0, 10.0) } else { (lo, hi) };
    let dec_lo = lo.log10().floor();
    let dec_hi = hi.log10().ceil().max(dec_lo + 1.0);
    let sx = |n: f64| x0 + LEFT + n / MAX_NINES * plot_w;
    let sy = |us: f64| {
        let l = us.max(10f64.powf(dec_lo)).log10();
        TOP + plot_h - (l - dec_lo) / (dec_hi - dec_lo) * plot_h
    };
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="22" font-size="14" font-weight="bold">latency by percentile: {}</text>"#,
        x0 + LEFT,
        escape(scenario)
    );
    // Horizontal grid: decades and their 2× and 5×.
    let mut d = dec_lo;
    while d <= dec_hi {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powf(d);
            if v > 10f64.powf(dec_hi) {
                break;
            }
            let y = sy(v);
            let stroke = if m == 1.0 { "#bbb" } else { "#eee" };
            let _ = writeln!(
                svg,
                r#"<line x1="{:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{stroke}"/>"#,
                sx(0.0),
                sx(MAX_NINES)
            );
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                sx(0.0) - 6.0,
                y + 4.0,
                fmt_us(v)
            );
        }
        d += 1.0;
    }
    for (n, label) in [
        (0.0, "0%"),
        (nines(50.0), "50%"),
        (1.0, "90%"),
        (2.0, "99%"),
        (3.0, "99.9%"),
        (4.0, "99.99%"),
        (5.0, "max"),
    ] {
        let x = sx(n);
        let _ = writeln!(
            svg,
            r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            TOP,
            TOP + plot_h,
            TOP + plot_h + 16.0
        );
    }
    let _ = writeln!(
        svg,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        sx(MAX_NINES / 2.0),
        TOP + plot_h + 36.0
    );
    let _ = writeln!(
        svg,
        r#"<text transform="translate({:.1},{:.1}) rotate(-90)" text-anchor="middle">latency (µs, log scale)</text>"#,
        x0 + 16.0,
        TOP + plot_h / 2.0
    );
    let _ = writeln!(
        svg,
        r##"<rect x="{:.1}" y="{TOP}" width="{plot_w:.1}" height="{plot_h:.1}" fill="none" stroke="#888"/>"##,
        sx(0.0)
    );
    for (i, s) in rows.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let points: Vec<String> = s
            .percentiles_us
            .iter()
            .map(|&(p, v)| format!("{:.1},{:.1}", sx(nines(p)), sy(v)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            points.join(" ")
        );
        let ly = TOP + 10.0 + i as f64 * 18.0;
        let lx = sx(MAX_NINES) + 12.0;
        let _ = writeln!(
            svg,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{color}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{}</text>"#,
            lx + 18.0,
            lx + 24.0,
            ly + 4.0,
            escape(&s.variant)
        );
    }
}

fn fmt_us(v: f64) -> String {
    if v >= 1_000_000.0 {
        format!("{}s", v / 1_000_000.0)
    } else if v >= 1000.0 {
        format!("{}ms", v / 1000.0)
    } else {
        format!("{v}")
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::suite::tests::sample_summaries;

    #[test]
    fn nines_axis() {
        assert_eq!(nines(0.0), 0.0);
        assert!((nines(90.0) - 1.0).abs() < 1e-9);
        assert!((nines(99.9) - 3.0).abs() < 1e-9);
        assert_eq!(nines(100.0), MAX_NINES);
    }

    #[test]
    fn one_panel_per_scenario_one_line_per_variant() {
        let sums = sample_summaries();
        let svg = render(&sums, &["closed-1x64".into(), "open-2000".into()]);
        assert!(svg.starts_with("<svg"));
        assert!(svg.trim_end().ends_with("</svg>"));
        assert_eq!(
            svg.matches("<polyline").count(),
            12,
            "6 variants × 2 scenarios"
        );
        assert_eq!(svg.matches("latency by percentile").count(), 2);
        assert!(svg.contains(">wasm-2hop</text>"));
        assert!(!svg.contains("NaN") && !svg.contains("inf"));
        let empty = render(&[], &["x".into()]);
        assert!(empty.contains("no latency data"));
    }
}

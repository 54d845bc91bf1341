//! `GET /metrics`: the shards merged and written in the Prometheus / OpenMetrics text format by
//! the `prometheus-client` crate's encoder (a [`Collector`] that reads the shards at scrape
//! time, so nothing on the request path knows about Prometheus).
//!
//! Families, all prefixed `sidecar_`:
//! * `downstream_<counter>{listener}`: every downstream counter per listener (sum over
//!   workers; `sum()` in PromQL gives MOSN's `downstream.proxy.global`);
//! * `upstream_<counter>{cluster}` and `upstream_host_<counter>{cluster, host}`;
//! * `downstream_response_status_total{listener, status}`: forwarded responses by the
//!   upstream's status (Bolt's response status; `other` past 31);
//! * `downstream_request_duration_seconds{listener}` and
//!   `upstream_request_duration_seconds{cluster}` histograms;
//! * the counters kept outside the shards: `stream_filter_<key>{namespace}` (per rule),
//!   `codec_<key>{protocol}` (plugin contexts), `downstream_overload_<key>`, and per
//!   `proxywasm` filter `wasm_filter_<key>{filter}` (the host's counters) and
//!   `wasm_filter_metric_<name>{filter}` (the metrics the filter defines).
//!
//! Counters end in `_total` (the encoder adds it); gauges do not.

use std::collections::BTreeMap;
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use serde_json::Value;

use super::{
    ClusterHealthStats, ClusterStats, DownstreamStats, HistogramSnapshot, HostHealthStats, Stats,
    Totals, GAUGES,
};

/// The content type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The whole process's metrics as OpenMetrics text.
///
/// # Errors
/// Only a formatting error of the encoder (writing into a `String` does not fail).
pub fn render(stats: &Arc<Stats>) -> Result<String, std::fmt::Error> {
    let mut registry = Registry::with_prefix("sidecar");
    registry.register_collector(Box::new(StatsCollector(stats.clone())));
    let mut out = String::with_capacity(16 * 1024);
    prometheus_client::encoding::text::encode(&mut out, &registry)?;
    Ok(out)
}

#[derive(Debug)]
struct StatsCollector(Arc<Stats>);

type Labels = Vec<(String, String)>;

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = &self.0;
        let layout = stats.layout();
        let listeners: Vec<(Labels, Totals)> = (0..layout.listeners.len())
            .map(|i| {
                (
                    label("listener", &layout.listeners[i]),
                    stats.downstream_totals(Some(i)),
                )
            })
            .collect();
        encode_counters(
            &mut encoder,
            "downstream",
            DownstreamStats::NAMES,
            &listeners,
        )?;
        let clusters: Vec<(Labels, Totals)> = layout
            .clusters
            .iter()
            .enumerate()
            .map(|(c, (name, _))| (label("cluster", name), stats.cluster_totals(c, None)))
            .collect();
        encode_counters(&mut encoder, "upstream", ClusterStats::NAMES, &clusters)?;
        let mut hosts = Vec::new();
        for (c, (name, addrs)) in layout.clusters.iter().enumerate() {
            for (h, addr) in addrs.iter().enumerate() {
                let mut labels = label("cluster", name);
                labels.extend(label("host", addr));
                hosts.push((labels, stats.cluster_totals(c, Some(h))));
            }
        }
        encode_counters(&mut encoder, "upstream_host", ClusterStats::NAMES, &hosts)?;

        // Health: process-wide, kept beside the shards.
        let mut cluster_health = Vec::new();
        let mut host_health = Vec::new();
        for (c, (name, addrs)) in layout.clusters.iter().enumerate() {
            let Some(h) = stats.health(c) else {
                continue;
            };
            cluster_health.push((
                label("cluster", name),
                Totals {
                    names: ClusterHealthStats::NAMES,
                    values: h.cluster.values(),
                },
            ));
            for (i, addr) in addrs.iter().enumerate() {
                let Some(hs) = h.hosts.get(i) else {
                    continue;
                };
                let mut labels = label("cluster", name);
                labels.extend(label("host", addr));
                host_health.push((
                    labels,
                    Totals {
                        names: HostHealthStats::NAMES,
                        values: hs.values(),
                    },
                ));
            }
        }
        encode_counters(
            &mut encoder,
            "upstream",
            ClusterHealthStats::NAMES,
            &cluster_health,
        )?;
        encode_counters(
            &mut encoder,
            "upstream_host",
            HostHealthStats::NAMES,
            &host_health,
        )?;

        let mut statuses = Vec::new();
        for (i, name) in layout.listeners.iter().enumerate() {
            for (status, n) in stats.response_statuses(Some(i)) {
                let mut labels = label("listener", name);
                labels.extend(label("status", &status));
                statuses.push((labels, n));
            }
        }
        if !statuses.is_empty() {
            let mut family = encoder.encode_descriptor(
                "downstream_response_status",
                "Forwarded responses by upstream status",
                None,
                MetricType::Counter,
            )?;
            for (labels, n) in &statuses {
                family
                    .encode_family(labels)?
                    .encode_counter::<Labels, u64, u64>(n, None)?;
            }
        }

        let request: Vec<(Labels, HistogramSnapshot)> = (0..layout.listeners.len())
            .map(|i| {
                (
                    label("listener", &layout.listeners[i]),
                    stats.request_durations(Some(i)),
                )
            })
            .collect();
        encode_histograms(
            &mut encoder,
            "downstream_request_duration",
            "Downstream request duration, decode to outcome",
            &request,
        )?;
        let upstream: Vec<(Labels, HistogramSnapshot)> = layout
            .clusters
            .iter()
            .enumerate()
            .map(|(c, (name, _))| (label("cluster", name), stats.upstream_durations(c)))
            .collect();
        encode_histograms(
            &mut encoder,
            "upstream_request_duration",
            "Upstream duration of one try, request written to response read",
            &upstream,
        )?;
        encode_sources(&mut encoder, stats)
    }
}

fn label(key: &str, value: &str) -> Labels {
    vec![(key.to_owned(), value.to_owned())]
}

/// One family per counter name, one sample per label set.
fn encode_counters(
    encoder: &mut DescriptorEncoder,
    kind: &str,
    names: &[&str],
    samples: &[(Labels, Totals)],
) -> Result<(), std::fmt::Error> {
    if samples.is_empty() {
        return Ok(());
    }
    for (i, name) in names.iter().enumerate() {
        let gauge = GAUGES.contains(name);
        // The encoder appends `_total` to counters.
        let base = if gauge {
            name
        } else {
            name.strip_suffix("_total").unwrap_or(name)
        };
        let family = format!("{kind}_{base}");
        let help = format!("{kind} {name}");
        let metric_type = if gauge {
            MetricType::Gauge
        } else {
            MetricType::Counter
        };
        let mut family_encoder = encoder.encode_descriptor(&family, &help, None, metric_type)?;
        for (labels, totals) in samples {
            let value = totals.values[i];
            let mut sample = family_encoder.encode_family(labels)?;
            if gauge {
                sample.encode_gauge(&value)?;
            } else {
                sample.encode_counter::<Labels, u64, u64>(&value, None)?;
            }
        }
    }
    Ok(())
}

fn encode_histograms(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    samples: &[(Labels, HistogramSnapshot)],
) -> Result<(), std::fmt::Error> {
    if samples.is_empty() {
        return Ok(());
    }
    let unit = Unit::Seconds;
    let mut family_encoder =
        encoder.encode_descriptor(name, help, Some(&unit), MetricType::Histogram)?;
    for (labels, snapshot) in samples {
        // The encoder writes `+Inf` for a bound of f64::MAX.
        let buckets: Vec<(f64, u64)> = snapshot
            .buckets_seconds()
            .into_iter()
            .map(|(le, n)| (if le.is_finite() { le } else { f64::MAX }, n))
            .collect();
        family_encoder
            .encode_family(labels)?
            .encode_histogram::<Labels>(snapshot.sum_seconds(), snapshot.count(), &buckets, None)?;
    }
    Ok(())
}

/// The counters kept outside the shards (filters, codecs, overload), from their JSON: every
/// top-level number becomes a gauge (their owners do not say which are monotonic).
fn encode_sources(encoder: &mut DescriptorEncoder, stats: &Stats) -> Result<(), std::fmt::Error> {
    let mut families: BTreeMap<String, Vec<(Labels, f64)>> = BTreeMap::new();
    let mut add = |namespace: &str, json: Value| {
        let (family, labels) = if let Some(rest) = namespace.strip_prefix("stream_filter.") {
            ("stream_filter".to_owned(), label("namespace", rest))
        } else if let Some(rest) = namespace.strip_prefix("wasm_filter_metric.") {
            ("wasm_filter_metric".to_owned(), label("filter", rest))
        } else if let Some(rest) = namespace.strip_prefix("wasm_filter.") {
            ("wasm_filter".to_owned(), label("filter", rest))
        } else if let Some(protocol) = namespace.strip_prefix("codec.") {
            ("codec".to_owned(), label("protocol", protocol))
        } else {
            (sanitize(namespace), Vec::new())
        };
        let Value::Object(map) = json else {
            return;
        };
        for (key, value) in map {
            if let Some(v) = value.as_f64() {
                families
                    .entry(format!("{family}_{}", sanitize(&key)))
                    .or_default()
                    .push((labels.clone(), v));
            }
        }
    };
    for (namespace, source) in stats.sources() {
        add(namespace, source.to_json());
    }
    for (namespace, contexts) in stats.codec_sources() {
        add(namespace, super::StatsSource::to_json(contexts.as_ref()));
    }
    for (family, samples) in families {
        let mut family_encoder =
            encoder.encode_descriptor(&family, &family, None, MetricType::Gauge)?;
        for (labels, value) in samples {
            family_encoder
                .encode_family(&labels)?
                .encode_gauge(&value)?;
        }
    }
    Ok(())
}

/// A metric name part: ASCII letters, digits and `_` only.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::{HostStats, StatsLayout};
    use std::time::Duration;

    #[test]
    fn shards_render_as_labelled_families_with_histograms() {
        let stats = Arc::new(Stats::new(StatsLayout {
            listeners: vec!["egress".into()],
            clusters: vec![("app".into(), vec!["127.0.0.1:12200".into()])],
            workers: 2,
        }));
        let (w0, w1) = (stats.worker(0), stats.worker(1));
        w0.listeners[0].counters.request_total.inc();
        w1.listeners[0].counters.request_total.inc();
        w1.listeners[0].counters.request_active.inc();
        w0.listeners[0]
            .request_duration
            .observe(Duration::from_micros(70));
        HostStats::new(w1.clusters[0].clone(), 0)
            .request_total
            .add(3);
        w0.listeners[0].response_status.record(0);
        w1.listeners[0].response_status.record(0);
        w1.listeners[0].response_status.record(900);
        let text = render(&stats).expect("renders");
        assert!(
            text.contains("sidecar_downstream_request_total{listener=\"egress\"} 2"),
            "{text}"
        );
        assert!(text.contains("# TYPE sidecar_downstream_request_active gauge"));
        assert!(text.contains("sidecar_downstream_request_active{listener=\"egress\"} 1"));
        assert!(text.contains("sidecar_upstream_request_total{cluster=\"app\"} 3"));
        assert!(text.contains(
            "sidecar_upstream_host_request_total{cluster=\"app\",host=\"127.0.0.1:12200\"} 3"
        ));
        assert!(text.contains(
            "sidecar_downstream_request_duration_seconds_bucket{le=\"0.0001\",listener=\"egress\"} 1"
        ), "{text}");
        assert!(text.contains(
            "sidecar_downstream_request_duration_seconds_bucket{le=\"+Inf\",listener=\"egress\"} 1"
        ));
        assert!(text
            .contains("sidecar_downstream_request_duration_seconds_count{listener=\"egress\"} 1"));
        assert!(text.contains(
            "sidecar_downstream_response_status_total{listener=\"egress\",status=\"0\"} 2"
        ));
        assert!(text.contains(
            "sidecar_downstream_response_status_total{listener=\"egress\",status=\"other\"} 1"
        ));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn names_are_sanitized() {
        assert_eq!(sanitize("downstream.overload"), "downstream_overload");
        assert_eq!(sanitize("a-b c"), "a_b_c");
    }
}

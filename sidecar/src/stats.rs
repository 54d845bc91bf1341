//! Counters and latency histograms, shaped after MOSN's `downstream.proxy.<listener>` and
//! `upstream.cluster.<name>` namespaces (xprotocol spec (`docs/xprotocol-proxy-and-bolt.md`) §6).
//!
//! Each worker records into its own shard ([`WorkerStats`]: per listener, per cluster, per
//! host), so the request path shares no cache line, let alone a lock, with another thread;
//! the admin API merges the shards when it is asked (JSON here, Prometheus text in
//! [`exposition`]).
//!
//! Every request that enters ends in exactly one outcome, so at any quiet moment
//! `request_total == response_forwarded + oneway_forwarded + hijacked + reset` and
//! `request_active == 0`. Stream filters add their own counters (per rule) through
//! [`StatsSource`].

pub mod exposition;
pub mod histogram;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::failure::{Failure, RejectReason};
pub use histogram::{Histogram, HistogramSnapshot};

/// A monotonic or gauge counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Subtracts one (gauges).
    pub fn dec(&self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
    /// Sets the value (gauges with one writer).
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

macro_rules! counters {
    ($(#[$meta:meta])* $name:ident { $($(#[$fmeta:meta])* $field:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: Counter,)*
        }

        impl $name {
            /// The counters' names, in [`Self::values`] order.
            pub const NAMES: &'static [&'static str] = &[$(stringify!($field)),*];

            /// The counters' values now, in [`Self::NAMES`] order.
            pub fn values(&self) -> Vec<u64> {
                vec![$(self.$field.get()),*]
            }
        }
    };
}

counters!(
    /// Downstream side of the whole proxy (`downstream.proxy.global`).
    DownstreamStats {
        /// Connections accepted.
        connection_total,
        /// Connections open now.
        connection_active,
        /// Connections closed.
        connection_destroy,
        /// Connections closed because the codec rejected their bytes.
        connection_decode_error,
        /// Connections closed after the idle timeout.
        connection_idle_close,
        /// Connections closed because a started frame did not complete in time.
        connection_frame_timeout,
        /// Times a connection stopped being read with its requests-in-flight bound reached.
        connection_paused_in_flight,
        /// Bytes read from downstream.
        bytes_read_total,
        /// Codec decode calls on closed downstream connections (decode work; added when a
        /// connection closes).
        decode_calls,
        /// Requests and oneway requests received.
        request_total,
        /// Requests not yet finished.
        request_active,
        /// Oneway requests received.
        request_oneway_total,
        /// Requests sent upstream on the inline path: no task of their own, answered by the
        /// upstream connection's reader (no stream filters, a connection up, no retry once
        /// sent). The others ran as a task each.
        request_inline_total,
        /// Outcome: an upstream response was relayed.
        response_forwarded,
        /// Outcome: a oneway request was forwarded (or dropped on a failure or by a stream
        /// filter; no response).
        oneway_forwarded,
        /// Outcome: the sidecar answered itself (sum of the `request_<code>_total` below).
        hijacked,
        /// Hijacks by a local rate or concurrency limit (part of `hijacked`).
        hijacked_rate_limited,
        /// Hijacks by an injected fault abort (part of `hijacked`).
        hijacked_fault_abort,
        /// Hijacks by a fleet-wide limit or an unavailable rate limit service with
        /// `failure_mode_deny` (`rateLimit`; part of `hijacked`).
        hijacked_global_rate_limited,
        /// Hijacks answered by a proxy-wasm filter's `proxy_send_local_response` (part of
        /// `hijacked`).
        hijacked_filter_local_response,
        /// Hijacks because a proxy-wasm filter failed (trap, CPU budget, no instance; part
        /// of `hijacked`, code 500).
        hijacked_filter_failure,
        /// Oneway requests dropped by a local limit (part of `oneway_forwarded`).
        oneway_rate_limited,
        /// Oneway requests dropped by an injected fault abort (part of `oneway_forwarded`).
        oneway_fault_aborted,
        /// Oneway requests dropped by `rateLimit` (part of `oneway_forwarded`).
        oneway_global_rate_limited,
        /// Oneway requests dropped by a proxy-wasm filter (local response or failure; part of
        /// `oneway_forwarded`).
        oneway_filter_dropped,
        /// Outcome: no answer possible (downstream gone, or the codec could not build one).
        reset,
        /// Hijacks with code 404 (no route).
        request_404_total,
        /// Hijacks with code 500 (upstream closed, encode failure).
        request_500_total,
        /// Hijacks with code 502 (no healthy host, connect failure).
        request_502_total,
        /// Hijacks with code 503 (circuit breaker).
        request_503_total,
        /// Hijacks with code 504 (timeout).
        request_504_total,
        /// Hijacks with code 2 (header decode error).
        request_2_total,
        /// Hijacks with any other code (e.g. a configured filter status such as 509).
        request_other_code,
        /// Heartbeats answered by the sidecar.
        heartbeat_replied,
        /// GoAway frames sent to clients on a graceful stop (`enable_bolt_goaway`).
        goaway_sent,
        /// Frames dropped because they are not requests (e.g. responses from a client).
        unexpected_frame,
    }
);

counters!(
    /// One upstream cluster (`upstream.cluster.<name>`).
    ClusterStats {
        /// Connections opened.
        connection_total,
        /// Connections open now.
        connection_active,
        /// Connect failures (refused, timeout).
        connection_con_fail,
        /// Connections closed by the remote end.
        connection_remote_close,
        /// Connections closed by the sidecar (keepalive failure, bad bytes, shutdown).
        connection_local_close,
        /// Requests sent (including retries).
        request_total,
        /// Requests whose timeout expired.
        request_timeout,
        /// Requests retried (every retry, whatever triggered it).
        request_retry,
        /// Retries triggered by a response status (`retry_policy.status_codes`; part of
        /// `request_retry`).
        request_retry_on_status,
        /// Retries not attempted because `max_retries` retries were running already.
        request_retry_overflow,
        /// Requests failed because their connection closed.
        request_connection_closed,
        /// Requests refused by a circuit breaker (`max_requests` or
        /// `max_pending_requests`).
        request_pending_overflow,
        /// Requests refused because `max_pending_requests` requests were waiting for a
        /// connection already (part of `request_pending_overflow`).
        request_max_pending_overflow,
        /// Gauge: requests waiting for an upstream connection now.
        request_pending,
        /// Responses delivered to their request.
        response_received,
        /// Responses whose id matched nothing (late, after a timeout or reset): dropped.
        response_late_dropped,
        /// Keepalive heartbeats sent.
        keepalive_sent,
        /// Keepalive heartbeats acknowledged.
        keepalive_ack,
        /// Keepalive heartbeats that timed out.
        keepalive_timeout,
        /// Connections closed because `keepalive.max_failures` heartbeats in a row went
        /// unanswered (part of `connection_local_close`).
        connection_keepalive_close,
        /// GoAway frames received from an upstream: each turns its connection draining.
        upstream_goaway,
        /// Bytes the upstream connections read.
        connection_bytes_read_total,
    }
);

counters!(
    /// Health of one host, process-wide (`upstream.host.<cluster>.<address>` beside its
    /// traffic counters): written only by the health thread (checker and ejector), read by
    /// the admin API.
    HostHealthStats {
        /// Gauge: 1 while the host passes its active health checks (or has none), else 0.
        healthy,
        /// Gauge: 1 while outlier detection has the host ejected, else 0.
        ejected,
        /// Active health checks run.
        health_check_attempt,
        /// Active health checks passed.
        health_check_success,
        /// Active health checks failed (refused, timed out, closed, wrong answer).
        health_check_failure,
        /// Times outlier detection ejected the host.
        outlier_ejections,
    }
);

counters!(
    /// Health of one cluster, process-wide (`upstream.cluster.<name>` beside its traffic
    /// counters).
    ClusterHealthStats {
        /// Gauge: hosts neither failing active health checks nor ejected.
        healthy_hosts,
        /// Gauge: 1 while the healthy share is below `healthy_panic_threshold` and the
        /// balancer uses every host.
        panic_mode,
        /// Ejections that `max_ejection_percent` did not allow.
        outlier_ejections_overflow,
        /// Gauge: hosts present (static hosts, and the addresses `STRICT_DNS` names
        /// resolve to now).
        present_hosts,
        /// `STRICT_DNS` resolutions run (periodic, and after connect failures).
        dns_resolutions,
        /// Resolutions no server answered (the hosts were kept).
        dns_failures,
        /// Resolutions that changed the hosts (some joined or left).
        dns_host_changes,
    }
);

/// One cluster's health counters: the cluster's and one set per host (index-aligned with the
/// cluster's hosts).
#[derive(Debug)]
pub struct HealthCounters {
    /// Cluster-level health.
    pub cluster: ClusterHealthStats,
    /// Per host.
    pub hosts: Vec<HostHealthStats>,
}

impl HealthCounters {
    /// Counters for a cluster of `hosts` hosts, all zero.
    pub fn new(hosts: usize) -> HealthCounters {
        HealthCounters {
            cluster: ClusterHealthStats::default(),
            hosts: (0..hosts).map(|_| HostHealthStats::default()).collect(),
        }
    }
}

impl DownstreamStats {
    /// Records a hijack outcome with its code.
    pub fn record_hijack(&self, failure: Failure) {
        self.hijacked.inc();
        match failure.proxy_code() {
            404 => self.request_404_total.inc(),
            500 => self.request_500_total.inc(),
            502 => self.request_502_total.inc(),
            503 => self.request_503_total.inc(),
            504 => self.request_504_total.inc(),
            2 => self.request_2_total.inc(),
            _ => self.request_other_code.inc(),
        }
        if let Failure::Rejected(r) = failure {
            match r.reason {
                RejectReason::RateLimited => self.hijacked_rate_limited.inc(),
                RejectReason::FaultAbort => self.hijacked_fault_abort.inc(),
                RejectReason::GlobalRateLimited => self.hijacked_global_rate_limited.inc(),
                RejectReason::FilterLocalResponse => self.hijacked_filter_local_response.inc(),
            }
        }
        if failure == Failure::FilterFailed {
            self.hijacked_filter_failure.inc();
        }
    }

    /// Records a oneway request that ended without reaching the upstream (it gets no
    /// answer): counted with the forwarded ones, and by filter reason.
    pub fn record_oneway_dropped(&self, failure: Failure) {
        self.oneway_forwarded.inc();
        if let Failure::Rejected(r) = failure {
            match r.reason {
                RejectReason::RateLimited => self.oneway_rate_limited.inc(),
                RejectReason::FaultAbort => self.oneway_fault_aborted.inc(),
                RejectReason::GlobalRateLimited => self.oneway_global_rate_limited.inc(),
                RejectReason::FilterLocalResponse => self.oneway_filter_dropped.inc(),
            }
        }
        if failure == Failure::FilterFailed {
            self.oneway_filter_dropped.inc();
        }
    }
}

/// Counters kept outside this module (a stream filter's per-rule counters), rendered under
/// their own namespace in the admin API.
pub trait StatsSource: Send + Sync + std::fmt::Debug {
    /// The counters as a JSON object.
    fn to_json(&self) -> Value;
}

/// Plugin context counters of one codec, per instance: what each of a worker's instances
/// reported when the worker last published them ([`CodecContexts::publish`], a few times a
/// second), so the admin API reads them without touching a worker.
#[derive(Debug)]
pub struct CodecContexts {
    per_worker: usize,
    /// Worker `w`'s instance `i` at `w * per_worker + i`.
    instances: Vec<ContextGauge>,
}

#[derive(Debug, Default)]
struct ContextGauge {
    live: AtomicU64,
    live_max: AtomicU64,
    created: AtomicU64,
    deleted: AtomicU64,
    replaced_instances: AtomicU64,
    refused_calls: AtomicU64,
}

/// One codec instance's context counters, as published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContextCounts {
    /// Contexts alive in the guest now.
    pub live: u64,
    /// The most alive at once.
    pub live_max: u64,
    /// Created so far.
    pub created: u64,
    /// Deleted so far.
    pub deleted: u64,
    /// Instances replaced after a trap.
    pub replaced_instances: u64,
    /// Calls refused with the restart budget spent.
    pub refused_calls: u64,
}

impl CodecContexts {
    /// Counters for `workers` workers of `per_worker` instances each, all zero.
    pub fn new(workers: usize, per_worker: usize) -> CodecContexts {
        let per_worker = per_worker.max(1);
        CodecContexts {
            per_worker,
            instances: (0..workers * per_worker)
                .map(|_| ContextGauge::default())
                .collect(),
        }
    }

    /// Worker `worker` publishes the counters of its instance `instance`.
    pub fn publish(&self, worker: usize, instance: usize, c: ContextCounts) {
        if instance >= self.per_worker {
            return;
        }
        let Some(g) = self.instances.get(worker * self.per_worker + instance) else {
            return;
        };
        g.live.store(c.live, Ordering::Relaxed);
        g.live_max.store(c.live_max, Ordering::Relaxed);
        g.created.store(c.created, Ordering::Relaxed);
        g.deleted.store(c.deleted, Ordering::Relaxed);
        g.replaced_instances
            .store(c.replaced_instances, Ordering::Relaxed);
        g.refused_calls.store(c.refused_calls, Ordering::Relaxed);
    }
}

/// Counters summed over `gauges`, except `contexts_live_max`: the most on any one instance
/// (the bound a test asserts is per instance).
fn context_totals(gauges: &[ContextGauge]) -> serde_json::Map<String, Value> {
    let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
    let sum =
        |f: fn(&ContextGauge) -> &AtomicU64| -> u64 { gauges.iter().map(|g| get(f(g))).sum() };
    let max = |f: fn(&ContextGauge) -> &AtomicU64| -> u64 {
        gauges.iter().map(|g| get(f(g))).max().unwrap_or(0)
    };
    let Value::Object(map) = json!({
        "contexts_live": sum(|g| &g.live),
        "contexts_live_max": max(|g| &g.live_max),
        "contexts_created": sum(|g| &g.created),
        "contexts_deleted": sum(|g| &g.deleted),
        "replaced_instances": sum(|g| &g.replaced_instances),
        "refused_calls": sum(|g| &g.refused_calls),
        "instances": gauges.len(),
    }) else {
        unreachable!("a JSON object literal")
    };
    map
}

impl StatsSource for CodecContexts {
    fn to_json(&self) -> Value {
        let workers: Vec<Value> = self
            .instances
            .chunks(self.per_worker)
            .map(|own| {
                let mut worker = context_totals(own);
                let each: Vec<Value> = own
                    .chunks(1)
                    .map(|one| {
                        let mut m = context_totals(one);
                        m.remove("instances");
                        Value::Object(m)
                    })
                    .collect();
                worker.insert("per_instance".into(), Value::Array(each));
                Value::Object(worker)
            })
            .collect();
        let mut all = context_totals(&self.instances);
        all.insert("workers".into(), Value::Array(workers));
        Value::Object(all)
    }
}

/// Counters that are gauges (they go up and down); every other counter only goes up.
pub const GAUGES: &[&str] = &[
    "connection_active",
    "request_active",
    "healthy",
    "ejected",
    "healthy_hosts",
    "panic_mode",
    "present_hosts",
];

/// Counter values summed over shards, in `T::NAMES` order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    /// The counters' names.
    pub names: &'static [&'static str],
    /// Their values.
    pub values: Vec<u64>,
}

impl Totals {
    fn new(names: &'static [&'static str]) -> Totals {
        Totals {
            names,
            values: vec![0; names.len()],
        }
    }

    fn add(&mut self, values: Vec<u64>) {
        for (a, b) in self.values.iter_mut().zip(values) {
            *a += b;
        }
    }

    /// The value of counter `name` (0 for an unknown name).
    pub fn get(&self, name: &str) -> u64 {
        self.names
            .iter()
            .position(|n| *n == name)
            .map_or(0, |i| self.values[i])
    }

    /// As a JSON object `{name: value}`.
    pub fn to_json(&self) -> Value {
        let m: Map<String, Value> = self
            .names
            .iter()
            .zip(&self.values)
            .map(|(n, v)| ((*n).to_owned(), json!(v)))
            .collect();
        Value::Object(m)
    }
}

/// Forwarded responses by the status the upstream answered with (the codec's status field,
/// e.g. Bolt's response status): one counter per status below [`ResponseStatuses::TRACKED`],
/// one for the rest.
#[derive(Debug)]
pub struct ResponseStatuses {
    counts: [Counter; ResponseStatuses::TRACKED as usize + 1],
}

impl Default for ResponseStatuses {
    fn default() -> Self {
        ResponseStatuses {
            counts: std::array::from_fn(|_| Counter::default()),
        }
    }
}

impl ResponseStatuses {
    /// Statuses counted one by one (Bolt's are 0..=0x13); higher ones share `other`.
    pub const TRACKED: u32 = 32;

    /// Counts one response with `status`.
    pub fn record(&self, status: u32) {
        self.counts[status.min(Self::TRACKED) as usize].inc();
    }

    /// `(status, count)` for every status seen (`None`: a status of `TRACKED` or more).
    pub fn values(&self) -> Vec<(Option<u32>, u64)> {
        (0..=Self::TRACKED)
            .map(|s| (s, self.counts[s as usize].get()))
            .filter(|(_, n)| *n > 0)
            .map(|(s, n)| ((s < Self::TRACKED).then_some(s), n))
            .collect()
    }
}

/// One listener's counters and request latency on one worker.
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// The listener's downstream counters.
    pub counters: DownstreamStats,
    /// Forwarded responses by upstream status.
    pub response_status: ResponseStatuses,
    /// Downstream request duration: from the request's decode to its outcome (response
    /// written, hijack written, oneway forwarded or dropped, reset).
    pub request_duration: Histogram,
}

/// One cluster's counters on one worker: the events tied to a host in `hosts`, the others
/// (circuit breaker, retries, timeouts) in `counters`; the cluster's totals are their sum.
#[derive(Debug)]
pub struct ClusterShard {
    /// Cluster-level events (not tied to one host).
    pub counters: ClusterStats,
    /// Per host, index-aligned with the cluster's hosts.
    pub hosts: Vec<ClusterStats>,
    /// Upstream duration: from a request's write to the upstream until its response
    /// arrived (per try; timed-out tries are not observed).
    pub upstream_duration: Histogram,
}

impl ClusterShard {
    fn new(hosts: usize) -> ClusterShard {
        ClusterShard {
            counters: ClusterStats::default(),
            hosts: (0..hosts).map(|_| ClusterStats::default()).collect(),
            upstream_duration: Histogram::default(),
        }
    }
}

/// One host's counters on one worker: what an upstream connection records into.
#[derive(Debug, Clone)]
pub struct HostStats {
    shard: Arc<ClusterShard>,
    host: usize,
}

impl HostStats {
    /// The counters of host `host` of `shard`.
    ///
    /// # Panics
    /// When `host` is not a host index of the shard (a wiring bug).
    pub fn new(shard: Arc<ClusterShard>, host: usize) -> HostStats {
        assert!(host < shard.hosts.len(), "host index out of range");
        HostStats { shard, host }
    }
}

impl std::ops::Deref for HostStats {
    type Target = ClusterStats;

    fn deref(&self) -> &ClusterStats {
        &self.shard.hosts[self.host]
    }
}

/// Everything one worker records into. Aligned so two workers' shards never share a cache
/// line.
#[derive(Debug)]
#[repr(align(128))]
pub struct WorkerStats {
    /// Per listener, index-aligned with the plan's listeners.
    pub listeners: Vec<ListenerStats>,
    /// Per cluster, index-aligned with the plan's clusters.
    pub clusters: Vec<Arc<ClusterShard>>,
}

/// Names the shards are laid out by: listeners, clusters with their hosts, worker count.
#[derive(Debug, Clone, Default)]
pub struct StatsLayout {
    /// Listener names, in plan order.
    pub listeners: Vec<String>,
    /// Cluster names with their host addresses (as configured), in plan order.
    pub clusters: Vec<(String, Vec<String>)>,
    /// Number of workers (one shard each).
    pub workers: usize,
}

/// All counters of the process.
#[derive(Debug)]
pub struct Stats {
    layout: StatsLayout,
    workers: Vec<Arc<WorkerStats>>,
    health: Vec<Arc<HealthCounters>>,
    filters: Vec<(String, Arc<dyn StatsSource>)>,
    codecs: Vec<(String, Arc<CodecContexts>)>,
}

impl Stats {
    /// Zeroed shards for `layout` (at least one worker's).
    pub fn new(layout: StatsLayout) -> Stats {
        let workers = (0..layout.workers.max(1))
            .map(|_| {
                Arc::new(WorkerStats {
                    listeners: layout
                        .listeners
                        .iter()
                        .map(|_| ListenerStats::default())
                        .collect(),
                    clusters: layout
                        .clusters
                        .iter()
                        .map(|(_, hosts)| Arc::new(ClusterShard::new(hosts.len())))
                        .collect(),
                })
            })
            .collect();
        let health = layout
            .clusters
            .iter()
            .map(|(_, hosts)| Arc::new(HealthCounters::new(hosts.len())))
            .collect();
        Stats {
            layout,
            workers,
            health,
            filters: Vec::new(),
            codecs: Vec::new(),
        }
    }

    /// Adds the plugin context counters of the codec serving `protocol` (`codec.<protocol>`).
    pub fn with_codec(mut self, protocol: &str, contexts: Arc<CodecContexts>) -> Stats {
        self.codecs.push((format!("codec.{protocol}"), contexts));
        self
    }

    /// The context counters of the codec serving `protocol`, if it keeps contexts.
    pub fn codec(&self, protocol: &str) -> Option<&Arc<CodecContexts>> {
        let name = format!("codec.{protocol}");
        self.codecs.iter().find(|(n, _)| *n == name).map(|(_, c)| c)
    }

    /// Adds stream filter counters, each under its namespace (`stream_filter.<listener>.<rule>`).
    pub fn with_filters(
        mut self,
        filters: impl IntoIterator<Item = (String, Arc<dyn StatsSource>)>,
    ) -> Stats {
        self.filters.extend(filters);
        self
    }

    /// The shard of worker `index` (the last one for an index past the worker count).
    pub fn worker(&self, index: usize) -> Arc<WorkerStats> {
        self.workers[index.min(self.workers.len() - 1)].clone()
    }

    /// The health counters of cluster `cluster` (process-wide, written by the health
    /// thread); `None` for an unknown index.
    pub fn health(&self, cluster: usize) -> Option<&Arc<HealthCounters>> {
        self.health.get(cluster)
    }

    /// The names the shards are laid out by.
    pub fn layout(&self) -> &StatsLayout {
        &self.layout
    }

    /// Downstream counters of listener `listener` (`None`: every listener), all workers.
    pub fn downstream_totals(&self, listener: Option<usize>) -> Totals {
        let mut t = Totals::new(DownstreamStats::NAMES);
        for w in &self.workers {
            for (i, l) in w.listeners.iter().enumerate() {
                if listener.is_none_or(|want| want == i) {
                    t.add(l.counters.values());
                }
            }
        }
        t
    }

    /// Counters of cluster `cluster`, for one host or (`None`) the whole cluster, all workers.
    pub fn cluster_totals(&self, cluster: usize, host: Option<usize>) -> Totals {
        let mut t = Totals::new(ClusterStats::NAMES);
        for w in &self.workers {
            let Some(shard) = w.clusters.get(cluster) else {
                continue;
            };
            match host {
                Some(h) => {
                    if let Some(hs) = shard.hosts.get(h) {
                        t.add(hs.values());
                    }
                }
                None => {
                    t.add(shard.counters.values());
                    for hs in &shard.hosts {
                        t.add(hs.values());
                    }
                }
            }
        }
        t
    }

    /// Forwarded responses of listener `listener` (`None`: every listener) by status, all
    /// workers, as `(status label, count)` (`"other"` for statuses past the tracked ones).
    pub fn response_statuses(&self, listener: Option<usize>) -> Vec<(String, u64)> {
        let mut by_status = std::collections::BTreeMap::<Option<u32>, u64>::new();
        for w in &self.workers {
            for (i, l) in w.listeners.iter().enumerate() {
                if listener.is_none_or(|want| want == i) {
                    for (s, n) in l.response_status.values() {
                        *by_status.entry(s).or_default() += n;
                    }
                }
            }
        }
        by_status
            .into_iter()
            .map(|(s, n)| (s.map_or_else(|| "other".to_owned(), |s| s.to_string()), n))
            .collect()
    }

    /// Request durations of listener `listener` (`None`: every listener), all workers.
    pub fn request_durations(&self, listener: Option<usize>) -> HistogramSnapshot {
        let mut s = HistogramSnapshot::default();
        for w in &self.workers {
            for (i, l) in w.listeners.iter().enumerate() {
                if listener.is_none_or(|want| want == i) {
                    s.merge(&l.request_duration.snapshot());
                }
            }
        }
        s
    }

    /// Upstream durations of cluster `cluster`, all workers.
    pub fn upstream_durations(&self, cluster: usize) -> HistogramSnapshot {
        let mut s = HistogramSnapshot::default();
        for w in &self.workers {
            if let Some(shard) = w.clusters.get(cluster) {
                s.merge(&shard.upstream_duration.snapshot());
            }
        }
        s
    }

    /// The counters kept outside the shards: stream filters' (`stream_filter.…`), the
    /// overload manager's, by namespace.
    pub fn sources(&self) -> &[(String, Arc<dyn StatsSource>)] {
        &self.filters
    }

    /// The plugin context counters by namespace (`codec.<protocol>`).
    pub fn codec_sources(&self) -> &[(String, Arc<CodecContexts>)] {
        &self.codecs
    }

    /// MOSN-style `{type: {namespace: {key: value}}}` JSON: `downstream.proxy.global` (all
    /// listeners), `downstream.proxy.<listener>`, `upstream.cluster.<name>`,
    /// `upstream.host.<cluster>.<address>`, filter and codec namespaces.
    pub fn to_json(&self) -> Value {
        let downstream_json = |listener: Option<usize>| {
            let mut v = self.downstream_totals(listener).to_json();
            for (status, n) in self.response_statuses(listener) {
                v[format!("response_status_{status}")] = json!(n);
            }
            v
        };
        let mut downstream = Map::new();
        downstream.insert("downstream.proxy.global".into(), downstream_json(None));
        for (i, name) in self.layout.listeners.iter().enumerate() {
            downstream
                .entry(format!("downstream.proxy.{name}"))
                .or_insert_with(|| downstream_json(Some(i)));
        }
        for (namespace, source) in &self.filters {
            downstream.insert(namespace.clone(), source.to_json());
        }
        let mut upstream = Map::new();
        for (c, (name, hosts)) in self.layout.clusters.iter().enumerate() {
            let health = self.health.get(c);
            let mut cluster = self.cluster_totals(c, None).to_json();
            if let Some(h) = health {
                merge(&mut cluster, ClusterHealthStats::NAMES, h.cluster.values());
            }
            upstream.insert(format!("upstream.cluster.{name}"), cluster);
            for (h, addr) in hosts.iter().enumerate() {
                let mut host = self.cluster_totals(c, Some(h)).to_json();
                if let Some(hs) = health.and_then(|x| x.hosts.get(h)) {
                    merge(&mut host, HostHealthStats::NAMES, hs.values());
                }
                upstream.insert(format!("upstream.host.{name}.{addr}"), host);
            }
        }
        let mut codecs = Map::new();
        for (namespace, c) in &self.codecs {
            codecs.insert(namespace.clone(), c.to_json());
        }
        json!({
            "downstream": Value::Object(downstream),
            "upstream": Value::Object(upstream),
            "codec": Value::Object(codecs),
        })
    }
}

/// Adds `names` = `values` to the JSON object `into`.
fn merge(into: &mut Value, names: &[&str], values: Vec<u64>) {
    if let Value::Object(m) = into {
        for (n, v) in names.iter().zip(values) {
            m.insert((*n).to_owned(), json!(v));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_contexts_sum_over_instances_and_keep_the_largest_instance_max() {
        let c = CodecContexts::new(2, 2);
        let counts = |live, live_max, created| ContextCounts {
            live,
            live_max,
            created,
            ..ContextCounts::default()
        };
        c.publish(0, 0, counts(1, 10, 100));
        c.publish(0, 1, counts(2, 30, 200));
        c.publish(1, 0, counts(3, 20, 300));
        c.publish(1, 1, counts(4, 5, 400));
        // Out of range: ignored, not written over another instance.
        c.publish(0, 2, counts(99, 99, 99));
        c.publish(2, 0, counts(99, 99, 99));
        let v = c.to_json();
        assert_eq!(v["contexts_live"], 10);
        assert_eq!(v["contexts_live_max"], 30);
        assert_eq!(v["contexts_created"], 1000);
        assert_eq!(v["instances"], 4);
        let w0 = &v["workers"][0];
        assert_eq!(
            (w0["contexts_live"].as_u64(), w0["instances"].as_u64()),
            (Some(3), Some(2))
        );
        assert_eq!(w0["contexts_live_max"], 30);
        assert_eq!(v["workers"][1]["contexts_live_max"], 20);
        let each = w0["per_instance"].as_array().unwrap();
        assert_eq!(each.len(), 2);
        assert_eq!(each[1]["contexts_created"], 200);
        assert!(each[1].get("instances").is_none());
    }

    fn layout() -> StatsLayout {
        StatsLayout {
            listeners: vec!["in".into(), "out".into()],
            clusters: vec![("c".into(), vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()])],
            workers: 2,
        }
    }

    #[test]
    fn hijacks_are_counted_by_code_and_in_total() {
        let s = Stats::new(layout());
        let d = &s.worker(0).listeners[0].counters;
        d.record_hijack(Failure::NoRoute);
        d.record_hijack(Failure::Timeout);
        assert_eq!(d.hijacked.get(), 2);
        assert_eq!(d.request_404_total.get(), 1);
        assert_eq!(d.request_504_total.get(), 1);
        let v = s.to_json();
        assert_eq!(v["downstream"]["downstream.proxy.global"]["hijacked"], 2);
        assert_eq!(v["downstream"]["downstream.proxy.in"]["hijacked"], 2);
        assert_eq!(v["downstream"]["downstream.proxy.out"]["hijacked"], 0);
        assert_eq!(v["upstream"]["upstream.cluster.c"]["request_total"], 0);
    }

    #[test]
    fn shards_of_every_worker_add_up_per_listener_cluster_and_host() {
        let s = Stats::new(layout());
        let (w0, w1) = (s.worker(0), s.worker(1));
        w0.listeners[0].counters.request_total.inc();
        w1.listeners[0].counters.request_total.inc();
        w1.listeners[1].counters.request_total.add(3);
        HostStats::new(w0.clusters[0].clone(), 0)
            .request_total
            .inc();
        HostStats::new(w1.clusters[0].clone(), 1)
            .request_total
            .add(2);
        w1.clusters[0].counters.request_retry.inc();
        w0.listeners[1]
            .request_duration
            .observe(std::time::Duration::from_micros(40));
        w1.clusters[0]
            .upstream_duration
            .observe(std::time::Duration::from_micros(40));
        assert_eq!(s.downstream_totals(None).get("request_total"), 5);
        assert_eq!(s.downstream_totals(Some(0)).get("request_total"), 2);
        assert_eq!(s.cluster_totals(0, None).get("request_total"), 3);
        assert_eq!(s.cluster_totals(0, None).get("request_retry"), 1);
        assert_eq!(s.cluster_totals(0, Some(1)).get("request_total"), 2);
        assert_eq!(s.cluster_totals(0, Some(1)).get("request_retry"), 0);
        assert_eq!(s.request_durations(None).count(), 1);
        assert_eq!(s.request_durations(Some(0)).count(), 0);
        assert_eq!(s.upstream_durations(0).count(), 1);
        let v = s.to_json();
        assert_eq!(
            v["upstream"]["upstream.host.c.127.0.0.1:2"]["request_total"],
            2
        );
        assert_eq!(v["upstream"]["upstream.cluster.c"]["request_total"], 3);
        assert!(!std::ptr::eq(&*w0, &*s.worker(1)));
        assert!(std::ptr::eq(&*s.worker(1), &*s.worker(7)), "clamped");
    }

    #[test]
    fn rejections_are_hijacks_split_by_reason_and_code() {
        use crate::failure::Rejection;
        let s = DownstreamStats::default();
        let limited = Failure::Rejected(Rejection {
            status: 503,
            reason: RejectReason::RateLimited,
        });
        let aborted = Failure::Rejected(Rejection {
            status: 509,
            reason: RejectReason::FaultAbort,
        });
        s.record_hijack(limited);
        s.record_hijack(aborted);
        s.record_hijack(Failure::Overflow);
        let d = &s;
        assert_eq!(d.hijacked.get(), 3);
        assert_eq!(d.hijacked_rate_limited.get(), 1);
        assert_eq!(d.hijacked_fault_abort.get(), 1);
        assert_eq!(d.request_503_total.get(), 2);
        assert_eq!(d.request_other_code.get(), 1);
        assert_eq!(d.request_2_total.get(), 0);
        s.record_oneway_dropped(limited);
        s.record_oneway_dropped(Failure::NoRoute);
        assert_eq!(d.oneway_forwarded.get(), 2);
        assert_eq!(d.oneway_rate_limited.get(), 1);
        assert_eq!(d.hijacked.get(), 3, "a dropped oneway is no hijack");
    }

    #[test]
    fn global_rate_limit_rejections_have_counters_of_their_own() {
        use crate::failure::Rejection;
        let s = DownstreamStats::default();
        let global = Failure::Rejected(Rejection {
            status: 503,
            reason: RejectReason::GlobalRateLimited,
        });
        s.record_hijack(global);
        s.record_oneway_dropped(global);
        let d = &s;
        assert_eq!(d.hijacked.get(), 1);
        assert_eq!(d.request_503_total.get(), 1);
        assert_eq!(d.hijacked_global_rate_limited.get(), 1);
        assert_eq!(d.hijacked_rate_limited.get(), 0);
        assert_eq!(d.oneway_forwarded.get(), 1);
        assert_eq!(d.oneway_global_rate_limited.get(), 1);
    }

    #[test]
    fn filter_counters_appear_under_their_namespace() {
        #[derive(Debug)]
        struct Fixed;
        impl StatsSource for Fixed {
            fn to_json(&self) -> Value {
                json!({"rejected": 4})
            }
        }
        let s = Stats::new(layout()).with_filters([(
            "stream_filter.l.r".to_owned(),
            Arc::new(Fixed) as Arc<dyn StatsSource>,
        )]);
        assert_eq!(
            s.to_json()["downstream"]["stream_filter.l.r"]["rejected"],
            4
        );
    }
}

//! The runnable plan: the validated configuration resolved once at start-up into what the
//! runtime uses on the request path (compiled routes, cluster settings with their counters,
//! loaded plugins), shared read-only by every worker.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use codec_host::{Codec, CodecError, HeaderMap};

use crate::access_log::{AccessLogs, CHANNEL_RECORDS};
use crate::cluster::{CircuitBreaker, HostSet, HostSlots};
use crate::config::{
    ClusterRef, ClusterTarget, CodecKind, Config, ListenerConfig, PluginConfig, PoolMode,
};
use crate::control::WorkerControl;
use crate::detect::DetectStats;
use crate::filter::FilterChain;
use crate::framed::ReadLimits;
use crate::overload::{Overload, OverloadLimits};
use crate::plugin_slot::PluginSlot;
use crate::router::{Route, RouteTable};
use crate::stats::{CodecContexts, HealthCounters, Stats, StatsLayout, StatsSource};
use crate::upstream::PoolSettings;

/// A listener as the runtime needs it.
pub struct ListenerPlan {
    /// Listener name (logs, stats).
    pub name: String,
    /// Address to bind.
    pub addr: SocketAddr,
    /// Protocol of its codec (e.g. `x-bolt`), or `Auto` for an auto-detecting listener.
    pub protocol: String,
    /// The protocols it serves: one, or an auto-detecting listener's candidates in
    /// detection order. A connection serves one of them (its index here).
    pub protocols: Vec<String>,
    /// The route table for each of `protocols` (index-aligned); `None` when the proxy names
    /// no router config (every request 404s). An auto-detecting listener's table for a
    /// protocol holds only the routes whose clusters speak it.
    pub routes: Vec<Option<Arc<crate::router::RouteTable>>>,
    /// Protocol auto-detection settings and counters; `None` for a single protocol.
    pub auto_detect: Option<AutoDetectPlan>,
    /// Close connections idle this long.
    pub idle_timeout: Duration,
    /// Its stream filters (rate limits, fault injection), shared by every worker.
    pub filters: FilterChain,
    /// Its `proxywasm` filters in config order, run after `filters` (each worker makes its
    /// own instance).
    pub wasm_filters: Vec<Arc<crate::filter::ProxyWasmFilter>>,
    /// On a graceful stop, send the protocol's GoAway on each connection first
    /// (`enable_bolt_goaway`).
    pub goaway_on_drain: bool,
}

/// How an auto-detecting listener decides a connection's protocol.
pub struct AutoDetectPlan {
    /// The most first bytes buffered while no candidate can tell.
    pub max_bytes: usize,
    /// How long a connection may take to send bytes that decide.
    pub timeout: Duration,
    /// What became of its connections (process-wide; once per connection).
    pub stats: Arc<DetectStats>,
}

/// A cluster as every worker shares it: its settings and its live process-wide state (the
/// circuit breaker, the counters, the hosts' health). Each worker builds its own balancer
/// and pools from it.
pub struct SharedCluster {
    /// Cluster name.
    pub name: String,
    /// Protocol spoken to its hosts.
    pub protocol: String,
    /// Pool settings per host (per worker).
    pub pool: PoolSettings,
    /// Circuit breaker: requests, requests waiting for a connection and retries in flight
    /// across all workers (the pools hold it too, for the pending limit).
    pub breaker: Arc<CircuitBreaker>,
    /// The hosts with their health flags, from which each worker builds its balancer.
    pub host_set: HostSet,
}

/// How each worker gets its codec for one protocol.
pub enum CodecPlan {
    /// A Wasm plugin, compiled once; each worker instantiates it. Live reload replaces the
    /// plugin in its slot.
    Wasm {
        /// Protocol name.
        protocol: String,
        /// The current plugin, its generation and the workers' counters.
        slot: Arc<PluginSlot>,
        /// Instances each worker runs (`instance_num` shared out among the workers).
        per_worker: usize,
    },
    /// A codec compiled into the sidecar (the same protocol code as a plugin), from the
    /// codec host's registry.
    Native {
        /// Protocol name.
        protocol: String,
        /// Registry name.
        name: &'static str,
        /// Its limits (the frame cap).
        limits: codec_host::Limits,
    },
}

impl CodecPlan {
    /// The protocol this codec serves.
    pub fn protocol(&self) -> &str {
        match self {
            CodecPlan::Wasm { protocol, .. } | CodecPlan::Native { protocol, .. } => protocol,
        }
    }

    /// How many instances of this codec each worker runs: its plugin's `instance_num`
    /// shared out among the workers for a Wasm codec; one for a native codec, which keeps
    /// no state of its own.
    pub fn per_worker(&self) -> usize {
        match self {
            CodecPlan::Wasm { per_worker, .. } => *per_worker,
            CodecPlan::Native { .. } => 1,
        }
    }

    /// A codec for one worker (one of its [`CodecPlan::per_worker`] instances).
    ///
    /// # Errors
    /// [`CodecError`] when the plugin instance cannot be created or initialised.
    pub fn new_codec(&self) -> Result<Box<dyn Codec>, CodecError> {
        match self {
            CodecPlan::Wasm { slot, .. } => Ok(Box::new(slot.current().new_codec()?)),
            CodecPlan::Native { name, limits, .. } => codec_host::native_codec(name, limits),
        }
    }
}

/// The whole resolved configuration.
pub struct Plan {
    /// Listeners in config order.
    pub listeners: Vec<ListenerPlan>,
    /// Clusters in config order.
    pub clusters: Vec<Arc<SharedCluster>>,
    /// Codecs, one per protocol.
    pub codecs: Vec<CodecPlan>,
    /// Worker threads.
    pub workers: usize,
    /// Longest wait for in-flight requests on stop.
    pub graceful_timeout: Duration,
    /// Admin API address.
    pub admin: Option<SocketAddr>,
    /// Counters.
    pub stats: Arc<Stats>,
    /// What one connection's read side enforces (config `limits`).
    pub read_limits: ReadLimits,
    /// Requests in flight per downstream connection before it is not read any more.
    pub max_requests_per_connection: usize,
    /// Plugin instance replacements allowed per plugin per minute (per worker).
    pub max_plugin_restarts_per_minute: u32,
    /// The process-wide overload budget and its state.
    pub overload: Arc<Overload>,
    /// The configuration as loaded (for `config_dump`).
    pub config_json: serde_json::Value,
    /// The workers' control queues (live plugin reload).
    pub control: WorkerControl,
    /// The listeners' access logs (records, channel, writer's formats).
    pub access_logs: Arc<AccessLogs>,
}

/// Why a valid configuration could not be turned into a running plan.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A Wasm plugin failed to load or compile.
    #[error("wasm plugin {name}: {source}")]
    Plugin {
        /// Plugin name.
        name: String,
        /// The load error.
        #[source]
        source: Box<codec_host::LoadError>,
    },
    /// A `proxywasm` stream filter failed to load.
    #[error("{json_path}: {source}")]
    Filter {
        /// JSON path of the filter's config.
        json_path: String,
        /// The load error.
        #[source]
        source: Box<codec_host::LoadError>,
    },
    /// A codec's first instance does not start.
    #[error("codec {protocol}: {source}")]
    Codec {
        /// The protocol.
        protocol: String,
        /// Why it failed.
        #[source]
        source: CodecError,
    },
    /// A cluster cannot be set up.
    #[error("cluster {name}: {reason}")]
    Cluster {
        /// Cluster name.
        name: String,
        /// Reason.
        reason: String,
    },
}

impl ListenerPlan {
    /// The route for a request with `headers` on a connection serving `protocols[protocol]`
    /// (0 for a single-protocol listener); `None` = no route (404).
    pub fn route(&self, protocol: usize, headers: &HeaderMap) -> Option<&Route> {
        self.routes.get(protocol)?.as_ref()?.route(headers)
    }
}

impl Plan {
    /// Resolves a validated configuration: compiles the Wasm plugins (once per process),
    /// compiles the route tables, resolves host names, and sets up counters.
    ///
    /// # Errors
    /// [`PlanError`] when a plugin does not load or a cluster cannot be resolved.
    pub fn build(config: &Config) -> Result<Plan, PlanError> {
        let filter_chains: Vec<FilterChain> = config
            .listeners
            .iter()
            .map(|l| FilterChain::build(&l.name, &l.stream_filters))
            .collect();
        let mut wasm_filters: Vec<Vec<Arc<crate::filter::ProxyWasmFilter>>> = Vec::new();
        for l in &config.listeners {
            let mut loaded = Vec::new();
            for f in &l.stream_filters {
                if let crate::config::StreamFilterConfig::ProxyWasm(c) = f {
                    let filter = crate::filter::ProxyWasmFilter::load(
                        &l.name,
                        c,
                        config.limits.max_plugin_restarts_per_minute,
                    )
                    .map_err(|source| PlanError::Filter {
                        json_path: format!("{}.vm_config.path", c.json_path),
                        source: Box::new(source),
                    })?;
                    loaded.push(Arc::new(filter));
                }
            }
            wasm_filters.push(loaded);
        }
        let workers = config.server.workers();
        let read_limits = ReadLimits {
            frame_timeout: config.limits.frame_read_timeout,
            write_high_water: config.limits.write_high_water,
            write_low_water: config.limits.write_low_water,
        };
        let overload = Overload::new(
            OverloadLimits {
                max_buffered_bytes: config.limits.max_buffered_bytes,
                max_downstream_connections: config.limits.max_downstream_connections,
            },
            workers,
        );
        let overload_stats: (String, Arc<dyn StatsSource>) =
            ("downstream.overload".into(), overload.clone());
        let access_logs = Arc::new(AccessLogs::new(config, CHANNEL_RECORDS));
        let layout = StatsLayout {
            listeners: config.listeners.iter().map(|l| l.name.clone()).collect(),
            clusters: config
                .clusters
                .iter()
                .map(|c| (c.name.clone(), HostSlots::labels(c)))
                .collect(),
            workers,
        };
        // Auto-detecting listeners' counters, process-wide (one add per connection).
        let mut detect_stats: Vec<Option<Arc<DetectStats>>> = config
            .listeners
            .iter()
            .map(|l| {
                l.proxy.auto_detect.map(|_| {
                    let candidates: Vec<&str> = l
                        .proxy
                        .codecs
                        .iter()
                        .map(|&i| config.codecs[i].protocol.as_str())
                        .collect();
                    Arc::new(DetectStats::new(&candidates))
                })
            })
            .collect();
        let detect_sources: Vec<(String, Arc<dyn StatsSource>)> = config
            .listeners
            .iter()
            .zip(&detect_stats)
            .filter_map(|(l, d)| {
                let d: Arc<dyn StatsSource> = d.clone()?;
                Some((format!("auto_detect.{}", l.name), d))
            })
            .collect();
        let mut stats = Stats::new(layout).with_filters(
            filter_chains
                .iter()
                .flat_map(FilterChain::stats)
                .chain(wasm_filters.iter().flatten().flat_map(|f| f.stats()))
                .chain(detect_sources)
                .chain([overload_stats])
                .chain(access_logs.stats_sources()),
        );
        for c in &config.codecs {
            if let CodecKind::Wasm(w) = &c.kind {
                let per_worker = config.plugins[w.plugin].instances_per_worker(workers);
                stats = stats.with_codec(
                    &c.protocol,
                    Arc::new(CodecContexts::new(workers, per_worker)),
                );
            }
        }
        let stats = Arc::new(stats);

        let mut codecs = Vec::new();
        for c in &config.codecs {
            codecs.push(match &c.kind {
                CodecKind::Wasm(w) => {
                    let p: &PluginConfig = &config.plugins[w.plugin];
                    let mut plugin_config = w.plugin_config_pairs.clone();
                    if !plugin_config.iter().any(|(k, _)| k == "protocol") {
                        plugin_config.push(("protocol".into(), c.protocol.clone()));
                    }
                    let plugin = codec_host::Plugin::load(codec_host::PluginConfig {
                        name: p.name.clone(),
                        wasm_path: p.vm.resolved_path.clone(),
                        vm_config: p.vm.pairs(),
                        plugin_config,
                        root_id: w.root_id,
                        limits: codec_host::Limits {
                            max_frame_bytes: c.max_frame_bytes.unwrap_or(0),
                            max_restarts_per_minute: config.limits.max_plugin_restarts_per_minute,
                            ..codec_host::Limits::from_vm_config_mem(p.vm.mem)
                        },
                    })
                    .map_err(|source| PlanError::Plugin {
                        name: p.name.clone(),
                        source: Box::new(source),
                    })?;
                    CodecPlan::Wasm {
                        protocol: c.protocol.clone(),
                        slot: Arc::new(PluginSlot::new(&c.protocol, plugin, workers)),
                        per_worker: p.instances_per_worker(workers),
                    }
                }
                CodecKind::Native(native) => CodecPlan::Native {
                    protocol: c.protocol.clone(),
                    name: native.name(),
                    limits: codec_host::Limits {
                        max_frame_bytes: c.max_frame_bytes.unwrap_or(0),
                        ..codec_host::Limits::new()
                    },
                },
            });
        }

        let tables = RouteTable::build_all(config);
        // Which protocol each cluster is spoken with: that of the single-protocol listeners
        // routing to it (one protocol per cluster); then auto-detecting listeners, which
        // only route a connection to clusters speaking its protocol, need every cluster
        // they route to settled that way.
        let mut cluster_protocol: Vec<Option<(String, String)>> = vec![None; config.clusters.len()];
        for l in config
            .listeners
            .iter()
            .filter(|l| l.proxy.auto_detect.is_none())
        {
            for c in routed_clusters(config, l) {
                match &cluster_protocol[c.index] {
                    Some((p, other)) if *p != l.proxy.protocol => {
                        return Err(PlanError::Cluster {
                            name: c.name.clone(),
                            reason: format!(
                                "routed to from listeners {other} and {} with different \
                                 protocols; use one cluster per protocol",
                                l.name
                            ),
                        })
                    }
                    Some(_) => {}
                    None => {
                        cluster_protocol[c.index] = Some((l.proxy.protocol.clone(), l.name.clone()))
                    }
                }
            }
        }
        for l in config
            .listeners
            .iter()
            .filter(|l| l.proxy.auto_detect.is_some())
        {
            if let Some(c) =
                routed_clusters(config, l).find(|c| cluster_protocol[c.index].is_none())
            {
                return Err(PlanError::Cluster {
                    name: c.name.clone(),
                    reason: format!(
                        "routed to from the auto-detecting listener {} only, so its protocol \
                         is unknown: route to it from a listener of its protocol too",
                        l.name
                    ),
                });
            }
        }
        let mut listeners = Vec::new();
        for (((l, filters), wasm_filters), detect) in config
            .listeners
            .iter()
            .zip(filter_chains)
            .zip(wasm_filters)
            .zip(&mut detect_stats)
        {
            let table = tables.get(&l.proxy.router_config_name).cloned();
            let protocols: Vec<String> = l
                .proxy
                .codecs
                .iter()
                .map(|&i| config.codecs[i].protocol.clone())
                .collect();
            let (routes, auto_detect) = match &l.proxy.auto_detect {
                None => (vec![table], None),
                Some(d) => {
                    let routes = protocols
                        .iter()
                        .map(|p| {
                            let rc = config.route_configs.get(l.proxy.route_config)?;
                            Some(Arc::new(RouteTable::speaking(rc, |cluster| {
                                cluster_protocol[cluster]
                                    .as_ref()
                                    .is_some_and(|(cp, _)| cp == p)
                            })))
                        })
                        .collect();
                    let plan = AutoDetectPlan {
                        max_bytes: d.max_bytes,
                        timeout: d.timeout,
                        stats: detect
                            .take()
                            .unwrap_or_else(|| Arc::new(DetectStats::new(&protocols))),
                    };
                    (routes, Some(plan))
                }
            };
            listeners.push(ListenerPlan {
                name: l.name.clone(),
                addr: l.address,
                protocol: l.proxy.protocol.clone(),
                protocols,
                routes,
                auto_detect,
                idle_timeout: l
                    .connection_idle_timeout
                    .unwrap_or(crate::config::DEFAULT_CONNECTION_IDLE_TIMEOUT),
                filters,
                wasm_filters,
                goaway_on_drain: l.proxy.goaway_on_drain,
            });
        }

        let mut clusters = Vec::new();
        for (i, c) in config.clusters.iter().enumerate() {
            // A cluster no listener routes to keeps the first codec's protocol; it is never
            // used for requests.
            let protocol = cluster_protocol[i]
                .take()
                .map(|(p, _)| p)
                .or_else(|| config.codecs.first().map(|c| c.protocol.clone()))
                .unwrap_or_default();
            let codec_mode = config
                .codec(&protocol)
                .map_or(PoolMode::Multiplex, |k| k.pool_mode);
            let breaker = Arc::new(CircuitBreaker::new(&c.circuit_breakers));
            clusters.push(Arc::new(SharedCluster {
                name: c.name.clone(),
                protocol,
                pool: PoolSettings {
                    read_limits,
                    ..PoolSettings::new(c, codec_mode, breaker.clone())
                },
                breaker,
                host_set: HostSet::new(
                    c.clone(),
                    stats.health(i).cloned().unwrap_or_else(|| {
                        Arc::new(HealthCounters::new(HostSlots::labels(c).len()))
                    }),
                ),
            }));
        }

        Ok(Plan {
            listeners,
            clusters,
            codecs,
            workers,
            graceful_timeout: config.server.graceful_timeout,
            admin: config.admin,
            stats,
            read_limits,
            max_requests_per_connection: config.limits.max_requests_per_connection,
            max_plugin_restarts_per_minute: config.limits.max_plugin_restarts_per_minute,
            overload,
            config_json: config.to_json(),
            control: WorkerControl::new(workers),
            access_logs,
        })
    }
}

impl Plan {
    /// Starts one instance of every codec, as each worker does (`sidecar check`): a plugin
    /// whose start-up fails (`_start` traps, configure refuses) fails here.
    ///
    /// # Errors
    /// [`PlanError::Codec`] naming the protocol.
    pub fn start_codecs(&self) -> Result<(), PlanError> {
        for c in &self.codecs {
            c.new_codec().map_err(|source| PlanError::Codec {
                protocol: c.protocol().to_owned(),
                source,
            })?;
        }
        Ok(())
    }
}

/// The clusters the routes of listener `l` name (with repeats).
fn routed_clusters<'a>(
    config: &'a Config,
    l: &ListenerConfig,
) -> impl Iterator<Item = &'a ClusterRef> {
    config
        .route_configs
        .get(l.proxy.route_config)
        .into_iter()
        .flat_map(|rc| &rc.virtual_hosts)
        .flat_map(|vh| &vh.routes)
        .flat_map(|r| match &r.action.target {
            ClusterTarget::Cluster(c) => std::slice::from_ref(c).iter().collect::<Vec<_>>(),
            ClusterTarget::Weighted(list) => list.iter().map(|w| &w.cluster).collect(),
        })
}

//! Upstream hosts, off the request path: one `health` thread (a current-thread runtime of
//! its own, never a worker) runs one active-check task per host of every cluster with
//! `health_check` ([`active`] over [`probe`]), one ejector task per cluster with
//! `outlier_detection` ([`outlier`]), and one resolver task per `STRICT_DNS` name
//! ([`resolve`]). They write the clusters' shared [`HostHealth`] flags and [`HostSlots`]
//! addresses, which every worker's balancer and pools read; nothing else crosses threads.
//!
//! [`HostHealth`]: crate::cluster::HostHealth
//! [`HostSlots`]: crate::cluster::HostSlots

pub mod active;
pub mod outlier;
pub mod probe;
pub mod resolve;

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use codec_host::CodecError;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::HealthCheckKind;
use crate::plan::{CodecPlan, Plan};
use active::CheckedHost;
use probe::{has_heartbeat, FollowingCodec, Probe, ProbeCodec};

/// Why the health thread could not start.
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// The thread or its runtime could not be created.
    #[error("health thread: {0}")]
    Thread(#[from] std::io::Error),
    /// The codec for a protocol check does not start.
    #[error("health checks of cluster {cluster}: codec {protocol}: {source}")]
    Codec {
        /// The cluster.
        cluster: String,
        /// Its protocol.
        protocol: String,
        /// Why the codec failed.
        #[source]
        source: CodecError,
    },
    /// The cluster's protocol has no codec in the plan.
    #[error("health checks of cluster {cluster}: no codec for protocol {protocol}")]
    NoCodec {
        /// The cluster.
        cluster: String,
        /// Its protocol.
        protocol: String,
    },
    /// The thread ended during start-up.
    #[error("health thread exited during start-up")]
    Exited,
}

/// The running health thread; stopped by [`HealthThread::stop`] (or when the process ends).
pub struct HealthThread {
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HealthThread {
    /// Starts the checks, ejectors and name resolution of `plan`, after resolving every
    /// `STRICT_DNS` name once; `None` when no cluster needs any of them.
    ///
    /// # Errors
    /// [`HealthError`] when the thread cannot start or a protocol check's codec does not.
    pub fn start(plan: &Arc<Plan>) -> Result<Option<HealthThread>, HealthError> {
        let wanted = plan.clusters.iter().any(|c| {
            let cfg = c.host_set.config();
            let slots = c.host_set.slots();
            !slots.is_empty()
                && (cfg.health_check.is_some()
                    || cfg.outlier_detection.is_some()
                    || !slots.names().is_empty())
        });
        if !wanted {
            return Ok(None);
        }
        let stop = CancellationToken::new();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let thread = {
            let plan = plan.clone();
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("health".into())
                .spawn(move || serve(&plan, &stop, &ready_tx))?
        };
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(Some(HealthThread {
                stop,
                thread: Some(thread),
            })),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(HealthError::Exited)
            }
        }
    }

    /// Stops every check and ejector and waits for the thread. Host flags keep their last
    /// values.
    pub fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for HealthThread {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

type Ready = std::sync::mpsc::Sender<Result<(), HealthError>>;

/// The thread's body: builds the runtime and the tasks, reports readiness, runs until
/// `stop`.
fn serve(plan: &Plan, stop: &CancellationToken, ready: &Ready) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = ready.send(Err(HealthError::Thread(e)));
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    if let Err(e) = local.block_on(&rt, spawn_tasks(plan)) {
        error!(cause = %e, "health checks cannot start");
        let _ = ready.send(Err(e));
        return;
    }
    let _ = ready.send(Ok(()));
    local.block_on(&rt, stop.cancelled());
}

/// Resolves every `STRICT_DNS` name once, then spawns every task on the current
/// `LocalSet`.
async fn spawn_tasks(plan: &Plan) -> Result<(), HealthError> {
    let mut codecs: HashMap<String, ProbeCodec> = HashMap::new();
    for cluster in &plan.clusters {
        let config = cluster.host_set.config();
        let health = cluster.host_set.health();
        let slots = cluster.host_set.slots();
        if slots.is_empty() {
            continue;
        }
        if let (Some(dns), false) = (&config.dns, slots.names().is_empty()) {
            let names = Arc::new(resolve::ClusterNames {
                cluster: cluster.name.clone(),
                slots: slots.clone(),
                health: health.clone(),
                config: dns.clone(),
            });
            let resolver = crate::dns::Resolver::new(dns);
            for (i, name) in slots.names().iter().enumerate() {
                let wait = names.refresh(&resolver, i).await;
                info!(cluster = %cluster.name, name = %name.host,
                    hosts = name.slots.clone().filter(|&s| slots.addr(s).is_some()).count(),
                    refresh_rate = ?dns.refresh_rate, respect_dns_ttl = dns.respect_ttl,
                    "STRICT_DNS name resolved; re-resolving periodically and on connect failure");
                tokio::task::spawn_local(resolve::run(names.clone(), i, wait));
            }
        }
        if let Some(hc) = &config.health_check {
            let probe = match hc.kind {
                HealthCheckKind::TcpConnect => Probe::TcpConnect,
                HealthCheckKind::Heartbeat => {
                    let codec = match codecs.get(&cluster.protocol) {
                        Some(c) => c.clone(),
                        None => {
                            let codec = new_codec(plan, &cluster.name, &cluster.protocol)?;
                            codecs.insert(cluster.protocol.clone(), codec.clone());
                            codec
                        }
                    };
                    if has_heartbeat(&codec) {
                        Probe::Heartbeat(codec)
                    } else {
                        warn!(cluster = %cluster.name, protocol = %cluster.protocol,
                            "the protocol has no heartbeat; health checks are TCP connects");
                        Probe::TcpConnect
                    }
                }
            };
            info!(cluster = %cluster.name, check = ?probe, interval = ?hc.interval,
                timeout = ?hc.timeout, unhealthy_threshold = hc.unhealthy_threshold,
                healthy_threshold = hc.healthy_threshold,
                service = hc.service_name.as_deref().unwrap_or(""),
                hosts = health.present(), "active health checks started");
            let probe = Rc::new(probe);
            for index in 0..slots.len() {
                let host = CheckedHost {
                    health: health.clone(),
                    slots: slots.clone(),
                    index,
                };
                tokio::task::spawn_local(active::run(host, probe.clone(), hc.clone()));
            }
        }
        if let Some(od) = config.outlier_detection {
            info!(cluster = %cluster.name, consecutive_errors = od.consecutive_errors,
                base_ejection_time = ?od.base_ejection_time,
                max_ejection_percent = od.max_ejection_percent, "outlier detection started");
            tokio::task::spawn_local(outlier::run(health.clone(), slots.clone(), od));
        }
    }
    Ok(())
}

fn new_codec(plan: &Plan, cluster: &str, protocol: &str) -> Result<ProbeCodec, HealthError> {
    let codec_plan = plan
        .codecs
        .iter()
        .find(|c| c.protocol() == protocol)
        .ok_or_else(|| HealthError::NoCodec {
            cluster: cluster.to_owned(),
            protocol: protocol.to_owned(),
        })?;
    let codec = match codec_plan {
        CodecPlan::Wasm { slot, .. } => FollowingCodec::following(slot.clone()),
        CodecPlan::Native { .. } => codec_plan.new_codec().map(FollowingCodec::fixed),
    };
    codec.map_err(|source| HealthError::Codec {
        cluster: cluster.to_owned(),
        protocol: protocol.to_owned(),
        source,
    })
}

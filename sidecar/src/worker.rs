//! Worker threads (worker-per-core): each owns a current-thread tokio runtime, its codec
//! instances (one per protocol) and its upstream pools, so the request path shares no lock
//! with other threads. Accepted sockets arrive over a channel.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use codec_host::Codec;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, info_span, Instrument};

use crate::cluster::LoadBalancer;
use crate::downstream::{self, ConnTracker};
use crate::plan::{ClusterPlan, Plan};
use crate::upstream::{HostPool, PoolSettings};

/// A worker's codec, shared by the worker's connections (single-threaded).
pub type CodecRef = Rc<RefCell<Box<dyn Codec>>>;

/// A socket accepted by a listener, handed to a worker.
pub struct Accepted {
    /// The socket (std, so it can cross threads).
    pub stream: std::net::TcpStream,
    /// The peer address.
    pub peer: std::net::SocketAddr,
    /// Index of the listener in the plan.
    pub listener: usize,
}

/// One cluster as a worker sees it: its own load balancer state and one pool per host.
pub struct WorkerCluster {
    /// Shared, immutable cluster settings.
    pub plan: Arc<ClusterPlan>,
    /// This worker's load balancer for the cluster (its own state, no locks).
    pub balancer: LoadBalancer,
    /// One pool per host, index-aligned with `plan.hosts`.
    pub pools: Vec<HostPool>,
}

/// Everything one worker owns.
pub struct Worker {
    /// Worker index (for logs).
    pub index: usize,
    /// The resolved configuration.
    pub plan: Arc<Plan>,
    /// Codecs by protocol name.
    pub codecs: HashMap<String, CodecRef>,
    /// Clusters, index-aligned with `plan.clusters`.
    pub clusters: Vec<WorkerCluster>,
    /// Cancelled when the process begins a graceful stop.
    pub shutdown: CancellationToken,
    /// Live downstream connections of this worker.
    pub conns: ConnTracker,
}

impl Worker {
    fn build(index: usize, plan: Arc<Plan>, shutdown: CancellationToken) -> Result<Worker, String> {
        let mut codecs = HashMap::new();
        for c in &plan.codecs {
            let codec = c
                .new_codec()
                .map_err(|e| format!("codec {}: {e}", c.protocol()))?;
            codecs.insert(c.protocol().to_string(), Rc::new(RefCell::new(codec)));
        }
        let mut clusters = Vec::new();
        for cp in &plan.clusters {
            let codec = codecs.get(&cp.protocol).cloned().ok_or_else(|| {
                format!("cluster {}: no codec for protocol {}", cp.name, cp.protocol)
            })?;
            let pools = cp
                .hosts
                .iter()
                .map(|h| {
                    HostPool::new(
                        *h,
                        PoolSettings::clone(&cp.pool),
                        codec.clone(),
                        cp.stats.clone(),
                    )
                })
                .collect();
            clusters.push(WorkerCluster {
                plan: cp.clone(),
                balancer: cp.lb.balancer(),
                pools,
            });
        }
        Ok(Worker {
            index,
            plan,
            codecs,
            clusters,
            shutdown,
            conns: ConnTracker::default(),
        })
    }
}

/// Starts worker `index` on its own thread. `ready` reports whether its codecs came up.
pub fn spawn(
    index: usize,
    plan: Arc<Plan>,
    shutdown: CancellationToken,
    mut accepted: mpsc::UnboundedReceiver<Accepted>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("worker-{index}"))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready.send(Err(format!("worker {index}: runtime: {e}")));
                    return;
                }
            };
            let worker = match Worker::build(index, plan, shutdown.clone()) {
                Ok(w) => Rc::new(w),
                Err(e) => {
                    let _ = ready.send(Err(format!("worker {index}: {e}")));
                    return;
                }
            };
            let _ = ready.send(Ok(()));
            let local = tokio::task::LocalSet::new();
            let span = info_span!("worker", index);
            local.block_on(
                &rt,
                async move {
                    loop {
                        tokio::select! {
                            a = accepted.recv() => match a {
                                Some(a) => downstream::spawn(worker.clone(), a),
                                None => break,
                            },
                            _ = shutdown.cancelled() => break,
                        }
                    }
                    // Graceful stop: connections finish their in-flight requests; the
                    // server bounds the wait with graceful_timeout.
                    worker.conns.wait_idle().await;
                    for c in &worker.clusters {
                        for p in &c.pools {
                            p.close_all();
                        }
                    }
                    info!("worker stopped");
                }
                .instrument(span),
            );
        })
        .inspect_err(|e| error!(cause = %e, "cannot spawn worker thread"))
}

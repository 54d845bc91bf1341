//! The contexts request handling runs in: a worker's ([`WorkerContext`]: its codecs, its
//! clusters' balancers and pools, its live connections) and a downstream connection's
//! ([`DownstreamConn`], shared by the connection's reader and its request tasks).
//!
//! Everything here is owned by one worker thread (`Rc`, `Cell`); nothing is locked on the
//! request path. Thread start-up lives in `worker`, connection handling in `downstream`, the
//! life of a request in `proxy`; all of them use these types, none of these types use them.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use slab::Slab;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::cluster::LoadBalancer;
use crate::codec_set::CodecSet;
use crate::framed::{CodecRef, FrameSink};
use crate::overload::{Admission, WorkerLoad};
use crate::plan::{Plan, SharedCluster};
use crate::stats::{ClusterShard, DownstreamStats, HostStats, ListenerStats, WorkerStats};
use crate::upstream::{HostPool, OwnedSlot, UpstreamConn};

/// A socket accepted by a listener, handed to a worker.
pub struct Accepted {
    /// The socket (std, so it can cross threads).
    pub stream: std::net::TcpStream,
    /// The peer address.
    pub peer: SocketAddr,
    /// Index of the listener in the plan.
    pub listener: usize,
    /// The connection's slot under the overload manager's connection cap, held for the
    /// connection's life.
    pub admission: Admission,
}

/// One cluster as a worker sees it: its own load balancer state and one pool per host.
pub struct WorkerCluster {
    /// What every worker shares of the cluster (settings, breaker, host health).
    pub shared: Arc<SharedCluster>,
    /// This worker's counters for the cluster (cluster-level events; hosts' are in
    /// `stats.hosts`, recorded by the pools).
    pub stats: Arc<ClusterShard>,
    /// This worker's load balancer for the cluster (its own state, no locks).
    pub balancer: LoadBalancer,
    /// One pool per host slot, index-aligned with `shared.host_set.slots()`.
    pub pools: Vec<HostPool>,
    /// The cluster's index in the plan.
    pub index: usize,
    /// One of this worker's instances of the cluster's protocol's codec (asked for a
    /// response's proxy code when a retry may depend on it: the plugin's mapping, the same
    /// on every instance).
    pub codec: CodecRef,
}

/// Everything one worker owns.
pub struct WorkerContext {
    /// Worker index (for logs).
    pub index: usize,
    /// The resolved configuration.
    pub plan: Arc<Plan>,
    /// Codecs by protocol name: this worker's instances of each.
    pub codecs: HashMap<String, Rc<CodecSet>>,
    /// Clusters, index-aligned with `plan.clusters`.
    pub clusters: Vec<WorkerCluster>,
    /// Cancelled when the process begins a graceful stop.
    pub shutdown: CancellationToken,
    /// Live downstream connections of this worker.
    pub conns: ConnTracker,
    /// This worker's share of the overload manager's accounting.
    pub load: Rc<WorkerLoad>,
    /// This worker's counters and histograms (its shard of the process's stats).
    pub stats: Arc<WorkerStats>,
    /// This worker's side of each listener's `proxywasm` filters (index-aligned with
    /// `plan.listeners`, each in config order).
    pub wasm_filters: Vec<Vec<Rc<crate::filter::WorkerWasmFilter>>>,
}

impl WorkerContext {
    /// Instantiates the plan's codecs and one pool per cluster host for worker `index`.
    ///
    /// # Errors
    /// A message when a codec cannot be instantiated or a cluster's protocol has none.
    pub fn build(
        index: usize,
        plan: Arc<Plan>,
        shutdown: CancellationToken,
    ) -> Result<WorkerContext, String> {
        let mut codecs = HashMap::new();
        for c in &plan.codecs {
            let members = (0..c.per_worker())
                .map(|_| {
                    c.new_codec()
                        .map(|codec| Rc::new(RefCell::new(codec)))
                        .map_err(|e| format!("codec {}: {e}", c.protocol()))
                })
                .collect::<Result<Vec<CodecRef>, String>>()?;
            codecs.insert(c.protocol().to_string(), Rc::new(CodecSet::new(members)));
        }
        let stats = plan.stats.worker(index);
        let mut clusters = Vec::new();
        for (c, shared) in plan.clusters.iter().enumerate() {
            let shard = stats.clusters[c].clone();
            let set = codecs.get(&shared.protocol).cloned().ok_or_else(|| {
                format!(
                    "cluster {}: no codec for protocol {}",
                    shared.name, shared.protocol
                )
            })?;
            let slots = shared.host_set.slots();
            let pools = (0..slots.len())
                .map(|i| {
                    let host_stats = HostStats::new(shard.clone(), i);
                    HostPool::new(
                        slots.clone(),
                        i,
                        shared.pool.clone(),
                        set.clone(),
                        host_stats,
                    )
                })
                .collect();
            clusters.push(WorkerCluster {
                shared: shared.clone(),
                stats: shard,
                balancer: shared.host_set.balancer(),
                pools,
                index: c,
                codec: set.first().clone(),
            });
        }
        let wasm_filters = plan
            .listeners
            .iter()
            .map(|l| l.wasm_filters.iter().map(|f| f.worker()).collect())
            .collect();
        Ok(WorkerContext {
            index,
            wasm_filters,
            load: plan.overload.worker(index),
            plan,
            codecs,
            clusters,
            shutdown,
            conns: ConnTracker::default(),
            stats,
        })
    }

    /// This worker's counters and request histogram for listener `listener`.
    pub fn listener_stats(&self, listener: usize) -> &ListenerStats {
        &self.stats.listeners[listener]
    }

    /// This worker's downstream counters for listener `listener`.
    pub fn downstream_stats(&self, listener: usize) -> &DownstreamStats {
        &self.stats.listeners[listener].counters
    }

    /// Closes every upstream connection of this worker (end of a graceful stop).
    pub fn close_upstreams(&self) {
        for pool in self.clusters.iter().flat_map(|c| &c.pools) {
            pool.close_all();
        }
    }
}

/// Counts live connections of a worker so a graceful stop can wait for them.
#[derive(Default)]
pub struct ConnTracker {
    live: Cell<usize>,
    idle: Notify,
}

impl ConnTracker {
    /// A connection opened.
    pub fn enter(&self) {
        self.live.set(self.live.get() + 1);
    }

    /// A connection closed.
    pub fn leave(&self) {
        self.live.set(self.live.get() - 1);
        if self.live.get() == 0 {
            self.idle.notify_waiters();
        }
    }

    /// Live connections.
    pub fn live(&self) -> usize {
        self.live.get()
    }

    /// Waits until no connection is live.
    pub async fn wait_idle(&self) {
        wait_for_zero(&self.live, &self.idle).await;
    }
}

/// One downstream connection as its request tasks see it.
pub struct DownstreamConn {
    /// The client's address.
    pub peer: SocketAddr,
    /// The connection's local (listener-side) address.
    pub local: Option<SocketAddr>,
    /// Listener index in the plan.
    pub listener: usize,
    /// Which of the listener's protocols the connection speaks (index into
    /// `ListenerPlan::protocols`; 0 unless the listener detects protocols).
    pub protocol: usize,
    sink: FrameSink,
    in_flight: Cell<usize>,
    drained: Notify,
    /// The in-flight level the reader waits for ([`DownstreamConn::wait_in_flight_at_most`]).
    wanted_in_flight: Cell<Option<usize>>,
    slots: Notify,
    last_active: Cell<Instant>,
    /// Its own upstream connections (`tcp` pool mode), by (cluster, host) index.
    owned_upstreams: RefCell<HashMap<(usize, usize), Rc<OwnedSlot>>>,
    /// Its inline requests (no task of their own) waiting on upstream connections, with
    /// their upstream ids: forgotten there when this connection closes.
    inline: RefCell<Slab<(Rc<UpstreamConn>, u32)>>,
}

impl DownstreamConn {
    /// A connection from `peer` to `local` on `listener`, speaking the listener's protocol
    /// `protocol`, answering through `sink`.
    pub fn new(
        peer: SocketAddr,
        local: Option<SocketAddr>,
        (listener, protocol): (usize, usize),
        sink: FrameSink,
    ) -> DownstreamConn {
        DownstreamConn {
            peer,
            local,
            listener,
            protocol,
            sink,
            in_flight: Cell::new(0),
            drained: Notify::new(),
            wanted_in_flight: Cell::new(None),
            slots: Notify::new(),
            last_active: Cell::new(Instant::now()),
            owned_upstreams: RefCell::new(HashMap::new()),
            inline: RefCell::new(Slab::new()),
        }
    }

    /// Notes an inline request waiting on `upstream` as `id`; the key for
    /// [`DownstreamConn::inline_done`].
    pub fn inline_waiting(&self, upstream: Rc<UpstreamConn>, id: u32) -> usize {
        self.inline.borrow_mut().insert((upstream, id))
    }

    /// The inline request noted as `key` ended (answered or failed).
    pub fn inline_done(&self, key: usize) {
        self.inline.borrow_mut().try_remove(key);
    }

    /// The connection is gone: its inline requests are forgotten by their upstream
    /// connections (each ends unanswered, counted as a reset), as a request task is
    /// dropped.
    pub fn reset_inline_requests(&self) {
        let waiting: Vec<_> = self.inline.borrow_mut().drain().collect();
        for (upstream, id) in waiting {
            upstream.forget(id);
        }
    }

    /// This connection's own upstream connection slot to host `host` of cluster `cluster`
    /// (`tcp` pool mode), created empty on first use.
    pub fn owned_upstream(&self, cluster: usize, host: usize) -> Rc<OwnedSlot> {
        self.owned_upstreams
            .borrow_mut()
            .entry((cluster, host))
            .or_default()
            .clone()
    }

    /// Closes this connection's own upstream connections (the downstream closed; also done
    /// when it is dropped).
    pub fn close_owned_upstreams(&self) {
        for slot in self.owned_upstreams.borrow_mut().drain() {
            slot.1.close();
        }
    }

    /// Where responses, hijacks and heartbeat acks for this client go.
    pub fn sink(&self) -> &FrameSink {
        &self.sink
    }

    /// Marks activity (for the idle timeout).
    pub fn touch(&self) {
        self.last_active.set(Instant::now());
    }

    /// The last read or finished request.
    pub fn last_active(&self) -> Instant {
        self.last_active.get()
    }

    /// Requests started and not yet finished.
    pub fn in_flight(&self) -> usize {
        self.in_flight.get()
    }

    /// A request started on this connection.
    pub fn request_started(&self) {
        self.in_flight.set(self.in_flight.get() + 1);
    }

    /// A request finished (answered, hijacked, forwarded oneway or reset) at `now` (the clock
    /// read that also ended its duration).
    pub fn request_finished_at(&self, now: Instant) {
        self.in_flight.set(self.in_flight.get() - 1);
        self.last_active.set(now);
        if self.in_flight.get() == 0 {
            self.drained.notify_waiters();
        }
        if matches!(self.wanted_in_flight.get(), Some(n) if self.in_flight.get() <= n) {
            self.wanted_in_flight.set(None);
            self.slots.notify_waiters();
        }
    }

    /// Waits until at most `n` requests are in flight (the reader's bound per connection).
    pub async fn wait_in_flight_at_most(&self, n: usize) {
        while self.in_flight.get() > n {
            let slots = self.slots.notified();
            self.wanted_in_flight.set(Some(n));
            slots.await;
        }
    }

    /// Waits until no request is in flight.
    pub async fn wait_drained(&self) {
        wait_for_zero(&self.in_flight, &self.drained).await;
    }
}

/// Waits until `count` is zero; whoever brings it to zero calls `notify.notify_waiters()`.
async fn wait_for_zero(count: &Cell<usize>, notify: &Notify) {
    while count.get() > 0 {
        let notified = notify.notified();
        if count.get() == 0 {
            break;
        }
        notified.await;
    }
}

impl Drop for DownstreamConn {
    fn drop(&mut self) {
        self.close_owned_upstreams();
    }
}

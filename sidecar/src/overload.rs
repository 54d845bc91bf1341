//! The overload manager: a process-wide budget for bytes buffered on behalf of peers (partial
//! frames in read buffers, encoded frames waiting in write queues) and a cap on downstream
//! connections, so a crowd of hostile or slow peers cannot take the memory every other
//! client needs.
//!
//! Accounting is per connection ([`ConnLoad`], updated by its reader and its writer) and per
//! worker ([`WorkerLoad`]: the sum of its connections, one atomic only that worker writes).
//! The acceptor reads the sums to refuse new connections while over budget or at the
//! connection cap; each worker sheds its own connections, largest buffers first, until the
//! process is back under budget. One warning per episode (entering overload), one info line
//! when it ends; the counters say how many connections were refused and shed.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use serde_json::{json, Value};
use slab::Slab;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::stats::{Counter, StatsSource};

/// A connection holding less than this never checks the process budget when it grows (the
/// budget is about large buffers; the check reads every worker's gauge).
const CHECK_FROM: usize = 64 << 10;

/// The process-wide limits the overload manager enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverloadLimits {
    /// Most bytes buffered for peers across the process before connections are refused and
    /// the largest buffers shed.
    pub max_buffered_bytes: usize,
    /// Most downstream connections open at once; more are refused at accept.
    pub max_downstream_connections: usize,
}

/// Process-wide overload state: the per-worker sums, the limits and the counters. Shared by
/// the acceptor and every worker.
#[derive(Debug)]
pub struct Overload {
    limits: OverloadLimits,
    workers: Vec<Arc<WorkerGauge>>,
    downstream_connections: AtomicUsize,
    overloaded: AtomicBool,
    /// Connections refused at accept (over budget or at the connection cap).
    pub refused_connections: Counter,
    /// Connections closed to bring buffered bytes back under budget.
    pub shed_connections: Counter,
    /// Times the process entered overload.
    pub episodes: Counter,
}

/// One worker's share of the buffered bytes; written by that worker only.
#[derive(Debug, Default)]
struct WorkerGauge {
    buffered: AtomicUsize,
    /// Wakes the worker's shedder.
    shed: Notify,
}

impl Overload {
    /// State for `workers` workers under `limits`.
    pub fn new(limits: OverloadLimits, workers: usize) -> Arc<Overload> {
        Arc::new(Overload {
            limits,
            workers: (0..workers.max(1)).map(|_| Arc::default()).collect(),
            downstream_connections: AtomicUsize::new(0),
            overloaded: AtomicBool::new(false),
            refused_connections: Counter::default(),
            shed_connections: Counter::default(),
            episodes: Counter::default(),
        })
    }

    /// The limits.
    pub fn limits(&self) -> OverloadLimits {
        self.limits
    }

    /// Bytes buffered for peers across the process.
    pub fn buffered(&self) -> usize {
        self.workers
            .iter()
            .map(|w| w.buffered.load(Ordering::Relaxed))
            .sum()
    }

    /// Downstream connections open now.
    pub fn downstream_connections(&self) -> usize {
        self.downstream_connections.load(Ordering::Relaxed)
    }

    /// Called by the acceptor for each accepted downstream socket: `Some(admission)` when it
    /// may be served (dropping the admission releases its connection slot), `None` when it
    /// must be refused (counted).
    pub fn admit(self: &Arc<Self>) -> Option<Admission> {
        let over_budget = self.over_budget();
        let conns = self.downstream_connections.fetch_add(1, Ordering::Relaxed);
        let admission = Admission {
            overload: self.clone(),
        };
        if over_budget || conns >= self.limits.max_downstream_connections {
            self.refused_connections.inc();
            self.enter_episode(if over_budget {
                "buffered bytes over budget"
            } else {
                "downstream connection cap reached"
            });
            return None; // `admission` drops here and gives the slot back
        }
        self.maybe_end_episode();
        Some(admission)
    }

    /// Worker `index`'s accounting handle.
    pub fn worker(self: &Arc<Self>, index: usize) -> Rc<WorkerLoad> {
        let gauge = self.workers[index % self.workers.len()].clone();
        Rc::new(WorkerLoad {
            overload: self.clone(),
            gauge,
            conns: RefCell::new(Slab::new()),
        })
    }

    fn over_budget(&self) -> bool {
        self.buffered() > self.limits.max_buffered_bytes
    }

    fn enter_episode(&self, why: &str) {
        if !self.overloaded.swap(true, Ordering::Relaxed) {
            self.episodes.inc();
            warn!(
                reason = why,
                buffered_bytes = self.buffered(),
                max_buffered_bytes = self.limits.max_buffered_bytes,
                downstream_connections = self.downstream_connections(),
                max_downstream_connections = self.limits.max_downstream_connections,
                "overload: refusing new connections and shedding the largest buffers"
            );
        }
    }

    /// Ends the episode once well under both limits (hysteresis: 90 %).
    fn maybe_end_episode(&self) {
        if !self.overloaded.load(Ordering::Relaxed) {
            return;
        }
        let calm_bytes = self.buffered() <= self.limits.max_buffered_bytes / 10 * 9;
        let calm_conns =
            self.downstream_connections() < self.limits.max_downstream_connections / 10 * 9 + 1;
        if calm_bytes && calm_conns && self.overloaded.swap(false, Ordering::Relaxed) {
            info!(
                refused_connections = self.refused_connections.get(),
                shed_connections = self.shed_connections.get(),
                "overload ended"
            );
        }
    }
}

impl StatsSource for Overload {
    fn to_json(&self) -> Value {
        json!({
            "buffered_bytes": self.buffered(),
            "max_buffered_bytes": self.limits.max_buffered_bytes,
            "downstream_connections": self.downstream_connections(),
            "max_downstream_connections": self.limits.max_downstream_connections,
            "overloaded": self.overloaded.load(Ordering::Relaxed),
            "episodes": self.episodes.get(),
            "refused_connections": self.refused_connections.get(),
            "shed_connections": self.shed_connections.get(),
        })
    }
}

/// A downstream connection slot, held for the connection's life.
#[derive(Debug)]
pub struct Admission {
    overload: Arc<Overload>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.overload
            .downstream_connections
            .fetch_sub(1, Ordering::Relaxed);
    }
}

/// One worker's connections and their buffered bytes. Single-threaded.
#[derive(Debug)]
pub struct WorkerLoad {
    overload: Arc<Overload>,
    gauge: Arc<WorkerGauge>,
    conns: RefCell<Slab<Weak<ConnLoad>>>,
}

impl WorkerLoad {
    /// Registers a connection; its accounting ends when the returned handle drops.
    pub fn register(self: &Rc<Self>) -> Rc<ConnLoad> {
        let mut conns = self.conns.borrow_mut();
        let entry = conns.vacant_entry();
        let load = Rc::new(ConnLoad {
            worker: self.clone(),
            key: entry.key(),
            read: Cell::new(0),
            write: Cell::new(0),
            shed: CancellationToken::new(),
        });
        entry.insert(Rc::downgrade(&load));
        load
    }

    /// Adds `n` bytes held by a connection that now holds `conn_total`. Only connections
    /// holding at least [`CHECK_FROM`] look at the process total (reading the other workers'
    /// gauges), so small frames never touch another core's cache line.
    fn add(&self, n: usize, conn_total: usize) {
        self.gauge.buffered.fetch_add(n, Ordering::Relaxed);
        if conn_total >= CHECK_FROM && self.overload.over_budget() {
            self.gauge.shed.notify_one();
        }
    }

    fn sub(&self, n: usize) {
        self.gauge.buffered.fetch_sub(n, Ordering::Relaxed);
    }

    /// The worker's shedder: whenever the process is over budget, closes this worker's
    /// connection with the most bytes buffered, then the next, until the process is back
    /// under budget (or this worker has nothing left to shed). Runs until `stop` fires.
    pub async fn run_shedder(self: Rc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                _ = self.gauge.shed.notified() => {}
                _ = stop.cancelled() => return,
            }
            while self.overload.over_budget() {
                self.overload.enter_episode("buffered bytes over budget");
                let Some(victim) = self.largest() else { break };
                warn!(
                    buffered_bytes = victim.buffered(),
                    "overload: shedding the connection with the largest buffers"
                );
                self.overload.shed_connections.inc();
                victim.shed_now();
            }
            self.overload.maybe_end_episode();
        }
    }

    /// The live, not yet shed connection with the most bytes buffered.
    fn largest(&self) -> Option<Rc<ConnLoad>> {
        self.conns
            .borrow()
            .iter()
            .filter_map(|(_, c)| c.upgrade())
            .filter(|c| !c.shed.is_cancelled() && c.buffered() > 0)
            .max_by_key(|c| c.buffered())
    }
}

/// One connection's buffered bytes: what its read buffer holds of frames not yet decoded,
/// and what its write queue holds. Dropping it gives the bytes back.
#[derive(Debug)]
pub struct ConnLoad {
    worker: Rc<WorkerLoad>,
    key: usize,
    read: Cell<usize>,
    write: Cell<usize>,
    shed: CancellationToken,
}

impl ConnLoad {
    /// Sets the bytes the read buffer holds.
    pub fn set_read(&self, n: usize) {
        self.set(&self.read, n);
    }

    /// Sets the bytes the write queue holds.
    pub fn set_write(&self, n: usize) {
        self.set(&self.write, n);
    }

    fn set(&self, cell: &Cell<usize>, n: usize) {
        let old = cell.replace(n);
        if n > old {
            self.worker.add(n - old, self.buffered());
        } else if old > n {
            self.worker.sub(old - n);
        }
    }

    /// Bytes buffered for this connection.
    pub fn buffered(&self) -> usize {
        self.read.get() + self.write.get()
    }

    /// Fires when the overload manager sheds this connection.
    pub fn shed(&self) -> &CancellationToken {
        &self.shed
    }

    /// Sheds the connection now: its bytes stop counting at once (the connection closes
    /// and frees them as soon as it runs).
    fn shed_now(&self) {
        self.set_read(0);
        self.set_write(0);
        self.shed.cancel();
    }
}

impl Drop for ConnLoad {
    fn drop(&mut self) {
        self.worker.sub(self.read.get() + self.write.get());
        self.worker.conns.borrow_mut().try_remove(self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(bytes: usize, conns: usize) -> OverloadLimits {
        OverloadLimits {
            max_buffered_bytes: bytes,
            max_downstream_connections: conns,
        }
    }

    #[test]
    fn connections_past_the_cap_are_refused_and_slots_come_back() {
        let o = Overload::new(limits(1000, 2), 1);
        let a = o.admit().expect("first");
        let _b = o.admit().expect("second");
        assert!(o.admit().is_none(), "third is over the cap");
        assert_eq!(o.refused_connections.get(), 1);
        assert_eq!(
            o.downstream_connections(),
            2,
            "the refused one gave its slot back"
        );
        drop(a);
        assert!(o.admit().is_some(), "a slot freed up");
        assert_eq!(o.episodes.get(), 1);
    }

    #[test]
    fn buffered_bytes_add_up_across_connections_and_come_back_on_drop() {
        let o = Overload::new(limits(1000, 10), 2);
        let w0 = o.worker(0);
        let w1 = o.worker(1);
        let a = w0.register();
        let b = w1.register();
        a.set_read(300);
        a.set_write(100);
        b.set_read(200);
        assert_eq!(o.buffered(), 600);
        a.set_read(50);
        assert_eq!(o.buffered(), 350);
        drop(a);
        assert_eq!(o.buffered(), 200);
        assert_eq!(w0.conns.borrow().len(), 0, "unregistered");
        drop(b);
        assert_eq!(o.buffered(), 0);
    }

    #[test]
    fn over_budget_refuses_new_connections_and_sheds_the_largest_first() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&rt, async {
            let o = Overload::new(limits(1_000_000, 10), 1);
            let w = o.worker(0);
            let stop = CancellationToken::new();
            let shedder = tokio::task::spawn_local(w.clone().run_shedder(stop.clone()));
            let small = w.register();
            let big = w.register();
            let middle = w.register();
            small.set_read(100_000);
            middle.set_read(400_000);
            big.set_read(700_000); // 1.2 MB > 1 MB: the shedder is woken
            assert!(o.admit().is_none(), "over budget: refused");
            tokio::task::yield_now().await;
            assert!(big.shed().is_cancelled(), "the largest goes first");
            assert!(!middle.shed().is_cancelled() && !small.shed().is_cancelled());
            assert_eq!(o.buffered(), 500_000);
            assert_eq!(o.shed_connections.get(), 1);
            assert_eq!(o.episodes.get(), 1, "one episode, one warning");
            assert!(o.admit().is_some(), "back under budget");
            stop.cancel();
            shedder.await.unwrap();
        });
    }
}

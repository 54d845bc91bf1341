//! What every instance of one filter plugin shares, on every worker thread: key-value data
//! with compare-and-swap, named queues, and the metrics the filter defines. One
//! [`FilterShared`] per loaded plugin (Envoy scopes these by VM id; here a plugin is one VM
//! id). Each is behind its own lock, held only for the copy in or out.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::abi::MetricKind;

/// Most bytes (keys + values) the shared data of one plugin holds; a set past it fails.
pub const SHARED_DATA_MAX_BYTES: usize = 16 << 20;
/// Most entries one shared queue holds; an enqueue past it fails.
pub const QUEUE_MAX_ENTRIES: usize = 10_000;
/// Most queues one plugin may register.
pub const MAX_QUEUES: usize = 1024;
/// Most metrics one plugin may define.
pub const MAX_METRICS: usize = 1024;

/// Called with a queue id when data was enqueued on a queue the instance registered; the
/// host schedules `proxy_on_queue_ready` on that instance's thread.
pub type QueueWaker = Arc<dyn Fn(u32) + Send + Sync>;

/// The shared state of one plugin.
#[derive(Default)]
pub struct FilterShared {
    data: Mutex<SharedData>,
    queues: Mutex<Queues>,
    metrics: FilterMetrics,
}

impl std::fmt::Debug for FilterShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterShared").finish_non_exhaustive()
    }
}

/// Why a shared-data set failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SetError {
    /// The caller's CAS is not the entry's current one.
    CasMismatch,
    /// The data would exceed [`SHARED_DATA_MAX_BYTES`].
    Full,
}

#[derive(Default)]
struct SharedData {
    entries: HashMap<Vec<u8>, (Vec<u8>, u32)>,
    bytes: usize,
    next_cas: u32,
}

struct Queue {
    name: Vec<u8>,
    items: VecDeque<Vec<u8>>,
    waker: Option<QueueWaker>,
}

#[derive(Default)]
struct Queues {
    queues: Vec<Queue>,
}

/// Locks `m`; a poisoned lock (a panic while it was held) still guards consistent data here:
/// every critical section is a plain copy.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl FilterShared {
    /// A fresh, empty state.
    pub fn new() -> FilterShared {
        FilterShared::default()
    }

    /// The value of `key` and its CAS, if present.
    pub(crate) fn get(&self, key: &[u8]) -> Option<(Vec<u8>, u32)> {
        lock(&self.data).entries.get(key).cloned()
    }

    /// Sets `key` to `value` when `cas` is 0 or the entry's current CAS; the entry gets a
    /// new CAS (never 0). An empty `value` with a matching CAS removes the entry.
    pub(crate) fn set(&self, key: &[u8], value: &[u8], cas: u32) -> Result<(), SetError> {
        let mut d = lock(&self.data);
        let current = d.entries.get(key).map(|(v, c)| (v.len(), *c));
        if cas != 0 && current.map(|(_, c)| c) != Some(cas) {
            return Err(SetError::CasMismatch);
        }
        let old = current.map_or(0, |(len, _)| key.len() + len);
        let new = key.len() + value.len();
        if d.bytes - old + new > SHARED_DATA_MAX_BYTES {
            return Err(SetError::Full);
        }
        d.bytes = d.bytes - old + new;
        d.next_cas = d.next_cas.wrapping_add(1).max(1);
        let next = d.next_cas;
        d.entries.insert(key.to_vec(), (value.to_vec(), next));
        Ok(())
    }

    /// Registers queue `name` (again: the same id, now woken through `waker`); `None` when
    /// [`MAX_QUEUES`] are registered.
    pub(crate) fn register_queue(&self, name: &[u8], waker: Option<QueueWaker>) -> Option<u32> {
        let mut q = lock(&self.queues);
        if let Some(i) = q.queues.iter().position(|x| x.name == name) {
            q.queues[i].waker = waker;
            return Some(i as u32 + 1);
        }
        if q.queues.len() >= MAX_QUEUES {
            return None;
        }
        q.queues.push(Queue {
            name: name.to_vec(),
            items: VecDeque::new(),
            waker,
        });
        Some(q.queues.len() as u32)
    }

    /// The id of queue `name`, if registered.
    pub(crate) fn resolve_queue(&self, name: &[u8]) -> Option<u32> {
        let q = lock(&self.queues);
        q.queues
            .iter()
            .position(|x| x.name == name)
            .map(|i| i as u32 + 1)
    }

    /// Appends `value` to queue `id` and wakes its registrant. `Err(false)`: no such queue;
    /// `Err(true)`: the queue is full.
    pub(crate) fn enqueue(&self, id: u32, value: &[u8]) -> Result<(), bool> {
        let waker = {
            let mut q = lock(&self.queues);
            let queue = id
                .checked_sub(1)
                .and_then(|i| q.queues.get_mut(i as usize))
                .ok_or(false)?;
            if queue.items.len() >= QUEUE_MAX_ENTRIES {
                return Err(true);
            }
            queue.items.push_back(value.to_vec());
            queue.waker.clone()
        };
        // Outside the lock: the waker may take locks of its own.
        if let Some(w) = waker {
            w(id);
        }
        Ok(())
    }

    /// The oldest item of queue `id`: `Err(())` for no such queue, `Ok(None)` when empty.
    pub(crate) fn dequeue(&self, id: u32) -> Result<Option<Vec<u8>>, ()> {
        let mut q = lock(&self.queues);
        let queue = id
            .checked_sub(1)
            .and_then(|i| q.queues.get_mut(i as usize))
            .ok_or(())?;
        Ok(queue.items.pop_front())
    }

    /// The plugin's metrics.
    pub fn metrics(&self) -> &FilterMetrics {
        &self.metrics
    }
}

/// One defined metric.
#[derive(Debug)]
struct Metric {
    name: String,
    kind: MetricKind,
    /// Counter and gauge value (two's complement for negative gauges); histogram sum.
    value: AtomicU64,
    /// Histogram observations.
    count: AtomicU64,
}

/// The metrics a filter defines (`proxy_define_metric`), shared by its instances: defining a
/// name again (another instance, another worker) gives the same id, so every instance adds
/// to one value.
#[derive(Debug, Default)]
pub struct FilterMetrics {
    defined: Mutex<Vec<Arc<Metric>>>,
}

/// A metric's current value, for exposition.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricValue {
    /// The name the filter gave it.
    pub name: String,
    /// Its kind.
    pub kind: MetricKind,
    /// Counter or gauge value; for a histogram the sum of observations.
    pub value: i64,
    /// Histogram observations (0 for the other kinds).
    pub count: u64,
}

impl FilterMetrics {
    /// Defines `name` (or finds it): its id (1-based). `None` when the name exists with
    /// another kind or [`MAX_METRICS`] are defined.
    pub(crate) fn define(&self, kind: MetricKind, name: &str) -> Option<u32> {
        let mut d = lock(&self.defined);
        if let Some(i) = d.iter().position(|m| m.name == name) {
            return (d[i].kind == kind).then_some(i as u32 + 1);
        }
        if d.len() >= MAX_METRICS {
            return None;
        }
        d.push(Arc::new(Metric {
            name: name.to_owned(),
            kind,
            value: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }));
        Some(d.len() as u32)
    }

    fn get(&self, id: u32) -> Option<Arc<Metric>> {
        let d = lock(&self.defined);
        id.checked_sub(1).and_then(|i| d.get(i as usize)).cloned()
    }

    /// Adds `offset` to metric `id`; false for an unknown id, a histogram, or a negative
    /// offset on a counter.
    pub(crate) fn increment(&self, id: u32, offset: i64) -> bool {
        match self.get(id) {
            Some(m) if m.kind == MetricKind::Counter && offset >= 0 => {
                m.value.fetch_add(offset as u64, Ordering::Relaxed);
                true
            }
            Some(m) if m.kind == MetricKind::Gauge => {
                m.value.fetch_add(offset as u64, Ordering::Relaxed);
                true
            }
            _ => false,
        }
    }

    /// Records `value` on metric `id`: sets a gauge or counter, observes a histogram; false
    /// for an unknown id.
    pub(crate) fn record(&self, id: u32, value: u64) -> bool {
        match self.get(id) {
            Some(m) if m.kind == MetricKind::Histogram => {
                m.value.fetch_add(value, Ordering::Relaxed);
                m.count.fetch_add(1, Ordering::Relaxed);
                true
            }
            Some(m) => {
                m.value.store(value, Ordering::Relaxed);
                true
            }
            None => false,
        }
    }

    /// The current value of metric `id` (a histogram's sum).
    pub(crate) fn value(&self, id: u32) -> Option<u64> {
        self.get(id).map(|m| m.value.load(Ordering::Relaxed))
    }

    /// Every defined metric with its value, in definition order.
    pub fn snapshot(&self) -> Vec<MetricValue> {
        lock(&self.defined)
            .iter()
            .map(|m| MetricValue {
                name: m.name.clone(),
                kind: m.kind,
                value: m.value.load(Ordering::Relaxed) as i64,
                count: m.count.load(Ordering::Relaxed),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;

    #[test]
    fn compare_and_swap_lets_one_of_two_writers_win() {
        let s = FilterShared::new();
        assert_eq!(s.get(b"k"), None);
        s.set(b"k", b"1", 0).unwrap();
        let (v, cas) = s.get(b"k").unwrap();
        assert_eq!(v, b"1");
        assert_ne!(cas, 0);
        s.set(b"k", b"2", cas).unwrap();
        assert_eq!(
            s.set(b"k", b"3", cas),
            Err(SetError::CasMismatch),
            "stale CAS"
        );
        assert_eq!(s.get(b"k").unwrap().0, b"2");
        assert_eq!(s.set(b"absent", b"x", 7), Err(SetError::CasMismatch));
    }

    #[test]
    fn concurrent_cas_increments_lose_nothing() {
        let s = Arc::new(FilterShared::new());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        loop {
                            let (n, cas) = s
                                .get(b"n")
                                .map(|(v, c)| {
                                    (String::from_utf8(v).unwrap().parse::<u64>().unwrap(), c)
                                })
                                .unwrap_or((0, 0));
                            if s.set(b"n", (n + 1).to_string().as_bytes(), cas).is_ok() {
                                break;
                            }
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(s.get(b"n").unwrap().0, b"2000");
    }

    #[test]
    fn shared_data_is_bounded() {
        let s = FilterShared::new();
        let big = vec![0u8; SHARED_DATA_MAX_BYTES];
        assert_eq!(s.set(b"k", &big, 0), Err(SetError::Full));
        s.set(b"k", &big[..SHARED_DATA_MAX_BYTES - 1], 0).unwrap();
        // Replacing the entry frees its old size first.
        s.set(b"k", b"small", 0).unwrap();
        s.set(b"j", &big[..1000], 0).unwrap();
    }

    #[test]
    fn queues_wake_their_registrant_and_keep_order() {
        let s = FilterShared::new();
        let woken = Arc::new(AtomicU32::new(0));
        let w = woken.clone();
        let id = s
            .register_queue(
                b"q",
                Some(Arc::new(move |id| w.store(id, Ordering::SeqCst))),
            )
            .unwrap();
        assert_eq!(s.resolve_queue(b"q"), Some(id));
        assert_eq!(s.resolve_queue(b"other"), None);
        assert_eq!(s.dequeue(id), Ok(None));
        s.enqueue(id, b"a").unwrap();
        s.enqueue(id, b"b").unwrap();
        assert_eq!(woken.load(Ordering::SeqCst), id);
        assert_eq!(s.dequeue(id), Ok(Some(b"a".to_vec())));
        assert_eq!(s.dequeue(id), Ok(Some(b"b".to_vec())));
        assert_eq!(s.enqueue(99, b"x"), Err(false));
        assert_eq!(s.dequeue(0), Err(()));
    }

    #[test]
    fn metrics_defined_twice_share_one_value() {
        let m = FilterMetrics::default();
        let a = m.define(MetricKind::Counter, "calls").unwrap();
        let b = m.define(MetricKind::Counter, "calls").unwrap();
        assert_eq!(a, b);
        assert_eq!(m.define(MetricKind::Gauge, "calls"), None, "kind clash");
        assert!(m.increment(a, 2));
        assert!(m.increment(b, 3));
        assert!(!m.increment(a, -1), "counters only go up");
        let g = m.define(MetricKind::Gauge, "g").unwrap();
        assert!(m.record(g, 10));
        assert!(m.increment(g, -4));
        let h = m.define(MetricKind::Histogram, "h").unwrap();
        assert!(m.record(h, 5) && m.record(h, 7));
        assert!(!m.increment(h, 1));
        assert_eq!(m.value(a), Some(5));
        let snap = m.snapshot();
        assert_eq!(snap[0].value, 5);
        assert_eq!(snap[1].value, 6);
        assert_eq!((snap[2].value, snap[2].count), (12, 2));
        assert!(!m.record(99, 1));
    }
}

//! What the process knows of one Wasm plugin across reloads ([`PluginSlot`]): the plugin new
//! instances are made from, its generation (successful reloads), and each worker's counters
//! as the worker last published them ([`WorkerGauge`], atomics written by one worker a few
//! times a second and read by the admin API; nothing here is touched on the request path).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use codec_host::{Plugin, PluginStats};

/// One Wasm plugin of the plan, shared by the workers, the reload coordinator and the admin.
#[derive(Debug)]
pub struct PluginSlot {
    protocol: String,
    /// The plugin new codecs start from; replaced by a successful reload. Read at worker
    /// start, by reloads and by the admin; never on the request path.
    current: RwLock<Arc<Plugin>>,
    generation: AtomicU64,
    workers: Vec<WorkerGauge>,
}

impl PluginSlot {
    /// The slot of `plugin`, serving `protocol`, for `workers` workers; generation 0.
    pub fn new(protocol: &str, plugin: Arc<Plugin>, workers: usize) -> PluginSlot {
        PluginSlot {
            protocol: protocol.to_owned(),
            current: RwLock::new(plugin),
            generation: AtomicU64::new(0),
            workers: (0..workers).map(|_| WorkerGauge::default()).collect(),
        }
    }

    /// The protocol its codecs serve.
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    /// The plugin new instances are made from.
    pub fn current(&self) -> Arc<Plugin> {
        // A poisoned lock still holds a valid Arc: a panic cannot leave it half-written.
        let guard = self.current.read().unwrap_or_else(|e| e.into_inner());
        Arc::clone(&guard)
    }

    /// Successful reloads so far.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Makes `plugin` the current one (after every worker switched to it); the new
    /// generation.
    pub(crate) fn install(&self, plugin: Arc<Plugin>) -> u64 {
        let mut guard = self.current.write().unwrap_or_else(|e| e.into_inner());
        *guard = plugin;
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Worker `index`'s gauge, if it exists.
    pub fn worker(&self, index: usize) -> Option<&WorkerGauge> {
        self.workers.get(index)
    }

    /// Every worker's gauge, in worker order.
    pub fn workers(&self) -> &[WorkerGauge] {
        &self.workers
    }
}

/// One worker's counters of one plugin, as it last published them.
#[derive(Debug, Default)]
pub struct WorkerGauge {
    generation: AtomicU64,
    instances: AtomicU64,
    retired_instances: AtomicU64,
    memory_bytes: AtomicU64,
    decode_calls: AtomicU64,
    encode_calls: AtomicU64,
    other_calls: AtomicU64,
    errors: AtomicU64,
    traps: AtomicU64,
    cpu_exhausted: AtomicU64,
    replaced_instances: AtomicU64,
    timed_calls: AtomicU64,
    timed_ns: AtomicU64,
}

/// A worker's counters of one plugin at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorkerPluginCounts {
    /// The generation this worker's codec runs (equals the slot's once it switched).
    pub generation: u64,
    /// Live instances: current, spare, and retired ones finishing frames of an earlier
    /// generation.
    pub instances: u64,
    /// Of those, retired ones.
    pub retired_instances: u64,
    /// Linear memory of the live instances, in bytes.
    pub memory_bytes: u64,
    /// Decode calls into the guest.
    pub decode_calls: u64,
    /// Encode calls into the guest.
    pub encode_calls: u64,
    /// Every other guest call.
    pub other_calls: u64,
    /// Codec operations that failed.
    pub errors: u64,
    /// Guest calls that trapped.
    pub traps: u64,
    /// Guest calls stopped at their CPU budget.
    pub cpu_exhausted: u64,
    /// Poisoned instances replaced.
    pub replaced_instances: u64,
    /// Guest calls timed (one in `codec_host::TIME_EVERY`).
    pub timed_calls: u64,
    /// Nanoseconds spent in the timed calls.
    pub timed_ns: u64,
}

/// Applies `$m` to every field name of [`WorkerGauge`] / [`WorkerPluginCounts`].
macro_rules! each_field {
    ($m:ident) => {
        $m!(
            generation,
            instances,
            retired_instances,
            memory_bytes,
            decode_calls,
            encode_calls,
            other_calls,
            errors,
            traps,
            cpu_exhausted,
            replaced_instances,
            timed_calls,
            timed_ns
        )
    };
}

impl WorkerPluginCounts {
    /// The counts of a codec running `generation`.
    pub fn of(generation: u64, s: &PluginStats) -> WorkerPluginCounts {
        WorkerPluginCounts {
            generation,
            instances: s.instances as u64,
            retired_instances: s.retired_instances as u64,
            memory_bytes: s.memory_bytes,
            decode_calls: s.calls.decode,
            encode_calls: s.calls.encode,
            other_calls: s.calls.other,
            errors: s.errors,
            traps: s.calls.traps,
            cpu_exhausted: s.calls.cpu_exhausted,
            replaced_instances: s.replaced_instances,
            timed_calls: s.calls.timed,
            timed_ns: s.calls.timed_ns,
        }
    }

    /// The counts of a worker's instances of one codec, all running `generation`: each
    /// count summed over them.
    pub fn of_all<'a>(
        generation: u64,
        instances: impl IntoIterator<Item = &'a PluginStats>,
    ) -> WorkerPluginCounts {
        WorkerPluginCounts::total(
            generation,
            instances
                .into_iter()
                .map(|s| WorkerPluginCounts::of(generation, s)),
        )
    }

    /// Every count of `parts` summed, under `generation` (not a sum).
    pub fn total(
        generation: u64,
        parts: impl IntoIterator<Item = WorkerPluginCounts>,
    ) -> WorkerPluginCounts {
        macro_rules! add {
            ($($f:ident),*) => { |sum: WorkerPluginCounts, one: WorkerPluginCounts| WorkerPluginCounts { $($f: sum.$f + one.$f,)* } };
        }
        let plus = each_field!(add);
        let sum = parts.into_iter().fold(WorkerPluginCounts::default(), plus);
        WorkerPluginCounts { generation, ..sum }
    }

    /// Mean time of one guest call (ns) from the sampled calls; `None` before any.
    pub fn mean_call_ns(&self) -> Option<u64> {
        self.timed_ns.checked_div(self.timed_calls)
    }
}

impl WorkerGauge {
    /// The worker publishes its counts.
    pub fn publish(&self, c: WorkerPluginCounts) {
        macro_rules! store {
            ($($f:ident),*) => { $(self.$f.store(c.$f, Ordering::Relaxed);)* };
        }
        each_field!(store);
    }

    /// The counts last published.
    pub fn read(&self) -> WorkerPluginCounts {
        macro_rules! load {
            ($($f:ident),*) => { WorkerPluginCounts { $($f: self.$f.load(Ordering::Relaxed),)* } };
        }
        each_field!(load)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_published_count_reads_back() {
        let g = WorkerGauge::default();
        assert_eq!(g.read(), WorkerPluginCounts::default());
        let c = WorkerPluginCounts {
            generation: 1,
            instances: 2,
            retired_instances: 3,
            memory_bytes: 4,
            decode_calls: 5,
            encode_calls: 6,
            other_calls: 7,
            errors: 8,
            traps: 9,
            cpu_exhausted: 10,
            replaced_instances: 11,
            timed_calls: 12,
            timed_ns: 13,
        };
        g.publish(c);
        assert_eq!(g.read(), c);
        let stats = codec_host::PluginStats {
            instances: 2,
            memory_bytes: 100,
            errors: 1,
            ..codec_host::PluginStats::default()
        };
        let all = WorkerPluginCounts::of_all(7, [&stats, &stats, &stats]);
        assert_eq!(
            (all.generation, all.instances, all.memory_bytes, all.errors),
            (7, 6, 300, 3)
        );
        assert_eq!(c.mean_call_ns(), Some(1));
        assert_eq!(WorkerPluginCounts::default().mean_call_ns(), None);
    }
}

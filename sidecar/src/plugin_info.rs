//! What `GET /api/v1/plugins` shows ([`plugins_info`], [`plugins_json`]): per codec its
//! plugin (protocol, path, content hash, ABI version, generation) and each worker's counters
//! as the worker last published them (a few times a second); read from atomics, so asking
//! costs the workers nothing.

use serde::Serialize;
use serde_json::Value;

use crate::plan::{CodecPlan, Plan};
use crate::plugin_slot::{PluginSlot, WorkerPluginCounts};

/// Every codec of the plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PluginsInfo {
    /// One entry per codec, in config order.
    pub plugins: Vec<PluginInfo>,
}

/// One codec.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PluginInfo {
    /// A Wasm plugin.
    Wasm {
        /// The protocol it serves.
        protocol: String,
        /// The plugin name.
        plugin: String,
        /// The `.wasm` file (as configured).
        path: String,
        /// MD5 (hex) of the bytes loaded for the current generation.
        md5: String,
        /// The ABI marker it exports.
        abi_version: &'static str,
        /// Successful reloads so far.
        generation: u64,
        /// Codec instances each worker runs (`instance_num` shared out among the workers;
        /// each has a started spare, counted in `instances`).
        instances_per_worker: usize,
        /// The sum over the workers.
        totals: Box<Counts>,
        /// Each worker, by index.
        workers: Vec<Counts>,
    },
    /// A native codec (compiled in).
    Native {
        /// The protocol it serves.
        protocol: String,
        /// Its registry name.
        codec: String,
        /// Always "not applicable".
        reload: &'static str,
    },
}

/// Counters of one worker, or their sum.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// What was published.
    #[serde(flatten)]
    pub counts: WorkerPluginCounts,
    /// Mean time of one guest call in ns, estimated from every 64th call
    /// (`codec_host::TIME_EVERY`); `null` before any was timed.
    pub mean_call_ns: Option<u64>,
}

impl Counts {
    fn of(counts: WorkerPluginCounts) -> Counts {
        Counts {
            counts,
            mean_call_ns: counts.mean_call_ns(),
        }
    }
}

/// The per-plugin information of `plan`.
pub fn plugins_info(plan: &Plan) -> PluginsInfo {
    PluginsInfo {
        plugins: plan.codecs.iter().map(info).collect(),
    }
}

/// [`plugins_info`] as JSON: `{"plugins": [...]}`.
pub fn plugins_json(plan: &Plan) -> Value {
    serde_json::to_value(plugins_info(plan)).unwrap_or_else(|e| {
        // Plain structs of strings and integers: serialising cannot fail.
        serde_json::json!({"error": e.to_string()})
    })
}

fn info(codec: &CodecPlan) -> PluginInfo {
    match codec {
        CodecPlan::Wasm {
            protocol,
            slot,
            per_worker,
        } => wasm_info(protocol, slot, *per_worker),
        CodecPlan::Native { protocol, name, .. } => PluginInfo::Native {
            protocol: protocol.clone(),
            codec: (*name).to_owned(),
            reload: "not applicable",
        },
    }
}

fn wasm_info(protocol: &str, slot: &PluginSlot, per_worker: usize) -> PluginInfo {
    let plugin = slot.current();
    let workers: Vec<WorkerPluginCounts> = slot.workers().iter().map(|g| g.read()).collect();
    let sum = WorkerPluginCounts::total(slot.generation(), workers.iter().copied());
    PluginInfo::Wasm {
        protocol: protocol.to_owned(),
        plugin: plugin.name().to_owned(),
        path: plugin.path().display().to_string(),
        md5: plugin.md5().to_owned(),
        abi_version: plugin.abi_version(),
        generation: slot.generation(),
        instances_per_worker: per_worker,
        totals: Box::new(Counts::of(sum)),
        workers: workers.into_iter().map(Counts::of).collect(),
    }
}

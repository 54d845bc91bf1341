//! proxy-wasm stream filters: Envoy's filter ABI (`proxy_abi_version_0_2_1`, `0_2_0` and
//! `0_1_0`) on the same engine and sandbox limits as the codec plugins. A [`FilterPlugin`]
//! is loaded and checked once per process; each worker makes a [`FilterInstance`] of it,
//! which runs one stream context per RPC call: the call's header map is what the filter
//! sees as request (or response) headers, its content as the body.
//!
//! What the host does with the outcomes (pausing a call, answering through the codec's
//! hijack, re-encoding changed headers, ticks and queue wake-ups on the worker) is the
//! proxy's; this module only runs the guest.

mod abi;
mod hostcalls;
mod instance;
mod plugin;
mod shared;
pub(crate) mod state;

pub use abi::{serialize_pairs, AbiVersion, Action, MetricKind};
pub use instance::{FilterError, FilterInstance, Phase, PhaseOutcome};
pub use plugin::{FilterPlugin, FilterPluginConfig};
pub use shared::{
    FilterMetrics, FilterShared, MetricValue, QueueWaker, MAX_METRICS, MAX_QUEUES,
    QUEUE_MAX_ENTRIES, SHARED_DATA_MAX_BYTES,
};
pub use state::{LocalResponse, StreamEvent, StreamInfo};

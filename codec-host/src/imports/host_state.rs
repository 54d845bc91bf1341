//! What every host function works with: the per-instance [`HostState`] (kept in the
//! instance's `FunctionEnv`), the status an import answers, and the abort that ends a guest
//! call from inside an import.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use std::sync::Arc;

use codec_abi::Status;
use wasmer::{Memory, TypedFunction};

use crate::guest_output::GuestOutput;

/// What the imports of one instance work with. The host reaches it between calls through
/// the instance's `Vm`.
pub(crate) struct HostState {
    /// The guest's exported memory (set right after instantiation).
    pub(crate) memory: Option<Memory>,
    /// The guest's allocator export, for data returned by imports (ABI §4).
    pub(crate) malloc: Option<TypedFunction<u32, u32>>,
    /// The VM configuration buffer (type 6): §5.2 pairs.
    pub(crate) vm_config: Arc<[u8]>,
    /// The plugin configuration buffer (type 7): §5.2 pairs.
    pub(crate) plugin_config: Arc<[u8]>,
    /// What the guest reported through `proxy_set_buffer_bytes` during the current call.
    pub(crate) result: CallResult,
    /// The guest's log and stdout/stderr output, and the last words of the current call.
    pub(crate) output: GuestOutput,
    /// A filter instance's state (`None` for a codec instance).
    pub(crate) filter: Option<Box<crate::filter::state::FilterState>>,
}

impl HostState {
    /// State for a new instance of plugin `name`.
    pub(crate) fn new(name: Arc<str>, vm_config: Arc<[u8]>, plugin_config: Arc<[u8]>) -> HostState {
        HostState {
            memory: None,
            malloc: None,
            vm_config,
            plugin_config,
            result: CallResult::default(),
            output: GuestOutput::new(name),
            filter: None,
        }
    }
}

/// The codec buffer (13 = decode result, 14 = encode result) reported during one call.
#[derive(Default)]
pub(crate) struct CallResult {
    /// Which buffer type was reported last; `None` when nothing was.
    pub(crate) kind: Option<u32>,
    /// A copy of the reported bytes (the buffer is reused across calls).
    pub(crate) bytes: Vec<u8>,
}

impl CallResult {
    /// Forgets the previous call's report (keeps the allocation).
    pub(crate) fn clear(&mut self) {
        self.kind = None;
        self.bytes.clear();
    }

    /// The bytes reported as buffer type `kind` during this call.
    pub(crate) fn get(&self, kind: u32) -> Option<&[u8]> {
        (self.kind == Some(kind)).then_some(self.bytes.as_slice())
    }
}

/// Why an import aborted the guest call (a Wasm trap raised by the host).
#[derive(Debug, thiserror::Error)]
pub(crate) enum HostAbort {
    /// A nested call into the guest (its `malloc`) failed.
    #[error("nested guest call failed: {0}")]
    NestedCall(String),
    /// The guest called WASI `proc_exit`.
    #[error("plugin called proc_exit({0})")]
    Exit(i32),
}

/// Status values as the i32 an import returns.
pub(crate) fn status(s: Status) -> i32 {
    s.raw() as i32
}

//! One plugin instance and its lifecycle: Fresh → Started (`_start` ran) → Ready (root
//! context configured, ABI §2) → Poisoned (a call trapped or ran out of CPU). A poisoned
//! instance is never called again: the codec replaces it. Also owns the instance's context
//! ids and the queue through which dropped frames hand their contexts back.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use std::cell::RefCell;
use std::rc::Rc;

use codec_abi::Detect;

use crate::call_stats::{CallCounter, CallKind, GuestCalls};
use crate::contexts::ContextIds;
use crate::error::CodecError;
use crate::guest_exports::{
    Configure, ContextCreate, Decode, Delete, Encode, GuestExport, Start, VmStart,
};
use crate::imports::host_state::HostState;
use crate::plugin::Plugin;
use crate::vm::{Vm, VmError};

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    /// Instantiated, no guest code run yet.
    Fresh,
    /// `_start` returned: the guest runtime is initialised.
    Started,
    /// The root context is created, started and configured: codec calls may run.
    Ready,
    /// A call trapped or exhausted its CPU budget; the instance must be replaced.
    Poisoned,
}

/// Contexts whose frames were dropped, waiting for `proxy_on_delete`. Frames push into it
/// (from `Drop`, so no guest call happens there); the codec drains it at its next call. A
/// queue of a replaced instance is simply never drained.
#[derive(Debug, Default)]
pub(crate) struct DroppedContexts(RefCell<Vec<u32>>);

impl DroppedContexts {
    /// Queues `ctx` for deletion.
    pub(crate) fn push(&self, ctx: u32) {
        self.0.borrow_mut().push(ctx);
    }

    /// Moves every queued context into `into` (which must be empty), keeping both
    /// allocations for reuse: no allocation per frame.
    fn take_into(&self, into: &mut Vec<u32>) {
        std::mem::swap(&mut *self.0.borrow_mut(), into);
    }
}

/// Most contexts an instance keeps for reuse (`DECODE_REUSES_CONTEXT`); beyond, finished
/// frames' contexts are deleted. Bounds what idle contexts hold in the guest.
const CONTEXT_POOL_MAX: usize = 256;

/// A started instance of a plugin.
pub(crate) struct PluginInstance {
    vm: Vm,
    lifecycle: Lifecycle,
    root: u32,
    ctxs: ContextIds,
    dropped: Rc<DroppedContexts>,
    /// Scratch list for draining `dropped`.
    draining: Vec<u32>,
    /// A created context not yet holding a frame: the next decode's (kept across
    /// need-more-data retries, ABI §6.2).
    spare: Option<u32>,
    /// Contexts of finished frames kept for the next decodes, when the guest's decode
    /// accepts a used context (`DECODE_REUSES_CONTEXT`): no delete and create per frame.
    pool: Vec<u32>,
    /// Guest calls made on this instance.
    calls: CallCounter,
}

/// The counter kind of export `E`: a comparison of constants, folded per export.
fn kind_of<E: GuestExport>() -> CallKind {
    if E::NAME == Decode::NAME {
        CallKind::Decode
    } else if E::NAME == Encode::NAME {
        CallKind::Encode
    } else {
        CallKind::Other
    }
}

impl PluginInstance {
    /// Instantiates `plugin` and runs the start-up sequence of ABI §2: `_start`, then the root
    /// context (`proxy_on_context_create(root, 0)`, `proxy_on_vm_start`,
    /// `proxy_on_configure`), each result checked.
    ///
    /// # Errors
    /// [`CodecError::Instance`] when instantiation fails; [`CodecError::Trap`] /
    /// [`CodecError::CpuExhausted`] when a start-up call fails; [`CodecError::Rejected`]
    /// (status 0 = false) when vm_start or configure returns false.
    pub(crate) fn start(plugin: &Plugin) -> Result<PluginInstance, CodecError> {
        let host = HostState::new(
            plugin.name_arc(),
            plugin.vm_config_pairs(),
            plugin.plugin_config_pairs(),
        );
        let limits = plugin.limits();
        let vm = Vm::new(
            plugin.compiled(),
            host,
            plugin.checked(),
            limits.cpu_points_per_call,
        )
        .map_err(|e| match e {
            VmError::Instantiate(m) => CodecError::Instance(m),
            other => error(Start::NAME, other),
        })?;
        let root = plugin.root_id();
        let mut inst = PluginInstance {
            vm,
            lifecycle: Lifecycle::Fresh,
            root,
            ctxs: ContextIds::new(root),
            dropped: Rc::new(DroppedContexts::default()),
            draining: Vec::new(),
            spare: None,
            pool: Vec::new(),
            calls: CallCounter::default(),
        };
        inst.call(Start, ())?;
        inst.lifecycle = Lifecycle::Started;
        inst.call(ContextCreate, (root, 0))?;
        let vm_cfg = plugin.vm_config_pairs().len() as u32;
        inst.call_bool(VmStart, (root, vm_cfg))?;
        let plugin_cfg = plugin.plugin_config_pairs().len() as u32;
        inst.call_bool(Configure, (root, plugin_cfg))?;
        inst.lifecycle = Lifecycle::Ready;
        Ok(inst)
    }

    /// The instance's state.
    pub(crate) fn lifecycle(&self) -> Lifecycle {
        self.lifecycle
    }

    /// The queue dropped frames of this instance push their contexts into.
    pub(crate) fn dropped_queue(&self) -> &Rc<DroppedContexts> {
        &self.dropped
    }

    /// Runs guest export `export` with `args`; any failure poisons the instance (it is never
    /// called again: the codec replaces it).
    ///
    /// # Errors
    /// [`CodecError::Trap`] / [`CodecError::CpuExhausted`] naming the export.
    pub(crate) fn call<E: GuestExport>(
        &mut self,
        export: E,
        args: E::Args,
    ) -> Result<E::Rets, CodecError> {
        let sample = self.calls.begin();
        let r = self.vm.call(export, args);
        self.calls.end(kind_of::<E>(), sample);
        self.checked(E::NAME, r)
    }

    /// [`PluginInstance::call`] with `input` copied into guest memory first; `args` builds
    /// the arguments from its (ptr, len).
    ///
    /// # Errors
    /// As [`PluginInstance::call`].
    pub(crate) fn call_with_input<E: GuestExport>(
        &mut self,
        export: E,
        input: &[u8],
        args: impl FnOnce(u32, u32) -> E::Args,
    ) -> Result<E::Rets, CodecError> {
        let sample = self.calls.begin();
        let r = self.vm.call_with_input(export, input, args);
        self.calls.end(kind_of::<E>(), sample);
        self.checked(E::NAME, r)
    }

    /// After a decode on `ctx` answered 99: the frame length the guest declared, through the
    /// optional export (`None` when the module lacks it or the guest does not know yet).
    ///
    /// # Errors
    /// As [`PluginInstance::call`].
    pub(crate) fn decode_bytes_needed(&mut self, ctx: u32) -> Result<Option<usize>, CodecError> {
        let sample = self.calls.begin();
        let r = self.vm.decode_bytes_needed(ctx);
        if !matches!(r, Ok(None)) {
            self.calls.end(CallKind::Other, sample);
        }
        let needed = self.checked(codec_abi::optional_exports::DECODE_BYTES_NEEDED, r)?;
        Ok(needed.filter(|&n| n > 0).map(|n| n as usize))
    }

    /// After a decode on `ctx` answered a request: whether the guest says it is the
    /// protocol's GoAway (false when the module lacks the optional export).
    ///
    /// # Errors
    /// As [`PluginInstance::call`].
    pub(crate) fn decode_is_goaway(&mut self, ctx: u32) -> Result<bool, CodecError> {
        let sample = self.calls.begin();
        let r = self.vm.decode_is_goaway(ctx);
        if !matches!(r, Ok(None)) {
            self.calls.end(CallKind::Other, sample);
        }
        let answer = self.checked(codec_abi::optional_exports::DECODE_IS_GOAWAY, r)?;
        Ok(answer == Some(1))
    }

    /// Where the id of the frame decoded on `ctx` sits, when the guest says the frame can be
    /// forwarded by replacing only those bytes (`None`: encode it, or the module lacks the
    /// optional export).
    ///
    /// # Errors
    /// As [`PluginInstance::call`].
    pub(crate) fn id_field(&mut self, ctx: u32) -> Result<Option<codec_abi::IdField>, CodecError> {
        let sample = self.calls.begin();
        let r = self.vm.id_field(ctx);
        if !matches!(r, Ok(None)) {
            self.calls.end(CallKind::Other, sample);
        }
        let raw = self.checked(codec_abi::optional_exports::ID_FIELD, r)?;
        Ok(raw.and_then(codec_abi::IdField::from_raw))
    }

    /// On a fresh `ctx`: asks the guest to cache a GoAway request with `id`; the status, or
    /// `None` when the module lacks the optional export.
    ///
    /// # Errors
    /// As [`PluginInstance::call`].
    pub(crate) fn goaway(&mut self, ctx: u32, id: u64) -> Result<Option<u32>, CodecError> {
        let sample = self.calls.begin();
        let r = self.vm.goaway(ctx, id);
        if !matches!(r, Ok(None)) {
            self.calls.end(CallKind::Other, sample);
        }
        self.checked(codec_abi::optional_exports::GOAWAY, r)
    }

    /// The proxy code the guest gives a response with protocol `status`, through the
    /// optional export, asked on the spare (next-decode) context, which names the root
    /// (`None` when the module lacks the export or answers 0).
    ///
    /// # Errors
    /// As [`PluginInstance::call`].
    pub(crate) fn response_code(&mut self, status: u32) -> Result<Option<u32>, CodecError> {
        let ctx = self.spare_ctx()?;
        let sample = self.calls.begin();
        let r = self.vm.response_code(ctx, status);
        if !matches!(r, Ok(None)) {
            self.calls.end(CallKind::Other, sample);
        }
        let code = self.checked(codec_abi::optional_exports::RESPONSE_CODE, r)?;
        Ok(code.filter(|&c| c > 0))
    }

    /// Whether the module exports the optional `rpc_sidecar_check`.
    pub(crate) fn has_check(&self) -> bool {
        self.vm.has_check()
    }

    /// The guest's verdict on `first`, the first bytes of a connection (never empty),
    /// through the optional `rpc_sidecar_check` export, asked with ctx 0 (the root): `None`
    /// when the module lacks the export; a status that is no verdict counts as no match.
    ///
    /// # Errors
    /// As [`PluginInstance::call`].
    pub(crate) fn check(&mut self, first: &[u8]) -> Result<Option<Detect>, CodecError> {
        let sample = self.calls.begin();
        let r = self.vm.check(0, first);
        if !matches!(r, Ok(None)) {
            self.calls.end(CallKind::Other, sample);
        }
        let status = self.checked(codec_abi::optional_exports::CHECK, r)?;
        Ok(status.map(|s| Detect::from_status(s).unwrap_or(Detect::NoMatch)))
    }

    /// Maps a guest call's outcome, poisoning the instance on any failure.
    fn checked<T>(&mut self, call: &'static str, r: Result<T, VmError>) -> Result<T, CodecError> {
        r.map_err(|e| {
            self.lifecycle = Lifecycle::Poisoned;
            match e {
                VmError::Trap(_) => self.calls.trapped(),
                VmError::CpuExhausted => self.calls.cpu_exhausted(),
                VmError::Instantiate(_) => {}
            }
            error(call, e)
        })
    }

    /// [`PluginInstance::call`] for an export answering a bool: false is an error (the
    /// instance is unusable, so it is poisoned too).
    fn call_bool<E: GuestExport<Rets = u32>>(
        &mut self,
        export: E,
        args: E::Args,
    ) -> Result<(), CodecError> {
        match self.call(export, args)? {
            0 => {
                self.lifecycle = Lifecycle::Poisoned;
                Err(CodecError::Rejected {
                    call: E::NAME,
                    status: 0,
                })
            }
            _ => Ok(()),
        }
    }

    /// Creates a protocol context under the root.
    pub(crate) fn new_ctx(&mut self) -> Result<u32, CodecError> {
        let ctx = self
            .ctxs
            .allocate()
            .ok_or(CodecError::Instance("context ids exhausted".into()))?;
        if let Err(e) = self.call(ContextCreate, (ctx, self.root)) {
            self.ctxs.release(ctx);
            return Err(e);
        }
        Ok(ctx)
    }

    /// Deletes a live context (`proxy_on_delete`, exactly once per context: ABI §6.7).
    /// Contexts of a poisoned instance are just forgotten.
    pub(crate) fn delete_ctx(&mut self, ctx: u32) -> Result<(), CodecError> {
        if self.lifecycle == Lifecycle::Poisoned || !self.ctxs.release(ctx) {
            return Ok(());
        }
        self.call(Delete, ctx)
    }

    /// Deletes the contexts of every frame dropped since the last call.
    pub(crate) fn release_dropped(&mut self) -> Result<(), CodecError> {
        let mut queued = std::mem::take(&mut self.draining);
        self.dropped.take_into(&mut queued);
        let mut result = Ok(());
        for &ctx in &queued {
            if self.vm.reuses_contexts()
                && self.pool.len() < CONTEXT_POOL_MAX
                && self.lifecycle == Lifecycle::Ready
                && self.ctxs.pool(ctx)
            {
                self.pool.push(ctx);
                continue;
            }
            result = self.delete_ctx(ctx);
            if result.is_err() {
                // Poisoned: the rest die with the instance.
                break;
            }
        }
        queued.clear();
        self.draining = queued;
        result
    }

    /// The context the next decode runs on (created on first need).
    pub(crate) fn spare_ctx(&mut self) -> Result<u32, CodecError> {
        match self.spare {
            Some(ctx) => Ok(ctx),
            None => {
                let ctx = match self.pool.pop() {
                    Some(ctx) => {
                        self.ctxs.unpool();
                        ctx
                    }
                    None => self.new_ctx()?,
                };
                self.spare = Some(ctx);
                Ok(ctx)
            }
        }
    }

    /// Hands the spare context over to a decoded frame.
    pub(crate) fn take_spare(&mut self) -> Option<u32> {
        self.spare.take()
    }

    /// Deletes the spare context (after a failed decode, whose effect on it is unknown).
    pub(crate) fn discard_spare(&mut self) -> Result<(), CodecError> {
        match self.spare.take() {
            Some(ctx) => self.delete_ctx(ctx),
            None => Ok(()),
        }
    }

    /// Live contexts, contexts created and deleted so far.
    pub(crate) fn context_counts(&self) -> (usize, u64, u64) {
        (self.ctxs.live(), self.ctxs.created(), self.ctxs.deleted())
    }

    /// The most contexts live at once on this instance.
    pub(crate) fn context_live_max(&self) -> usize {
        self.ctxs.live_max()
    }

    /// The guest calls made on this instance so far.
    pub(crate) fn guest_calls(&self) -> GuestCalls {
        GuestCalls {
            input_mallocs: self.vm.input_mallocs(),
            ..self.calls.counts()
        }
    }

    /// Bytes of linear memory the guest has now.
    pub(crate) fn memory_bytes(&self) -> u64 {
        self.vm.memory_bytes()
    }

    /// Whether frames hold no context of this instance any more: nothing live but the
    /// spare context of the next decode.
    pub(crate) fn holds_no_frames(&self) -> bool {
        self.ctxs.live() <= usize::from(self.spare.is_some())
    }

    /// The buffer of type `kind` (13 decode, 14 encode) the last call reported.
    pub(crate) fn result(&self, kind: u32) -> Option<&[u8]> {
        self.vm.host().result.get(kind)
    }
}

/// A [`VmError`] of `call` as a [`CodecError`].
fn error(call: &'static str, e: VmError) -> CodecError {
    match e {
        VmError::Trap(message) => CodecError::Trap { call, message },
        VmError::CpuExhausted => CodecError::CpuExhausted { call },
        VmError::Instantiate(m) => CodecError::Instance(m),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;
    use crate::guest_exports::{Decode, Encode};
    use crate::limits::Limits;
    use crate::plugin::PluginConfig;

    /// `proxy_decode_buffer_bytes` on `ctx` with `input`: the status.
    fn decode(inst: &mut PluginInstance, ctx: u32, input: &[u8]) -> Result<u32, CodecError> {
        inst.call_with_input(Decode, input, |ptr, len| (ctx, ptr, len))
    }

    /// `proxy_encode_buffer_bytes` on `ctx` with a §5.3 `input`: the status.
    fn encode(inst: &mut PluginInstance, ctx: u32, input: &[u8]) -> Result<u32, CodecError> {
        inst.call_with_input(Encode, input, |ptr, len| (ctx, ptr, len))
    }

    fn hex(s: &str) -> Vec<u8> {
        let d: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        d.chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    fn bolt() -> Arc<Plugin> {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/wasm32-wasip1/plugin/bolt.wasm");
        assert!(
            path.exists(),
            "{} is missing: run `make plugins`",
            path.display()
        );
        Plugin::load(PluginConfig {
            name: "bolt".into(),
            wasm_path: path,
            vm_config: vec![],
            plugin_config: vec![("protocol".into(), "x-bolt".into())],
            root_id: 1,
            limits: Limits::new(),
        })
        .unwrap()
    }

    /// ABI §5.7, byte for byte through the raw exports: decode result, then the encode of
    /// the ABI spec's own input (new id 9, command id 7, payload "hi").
    #[test]
    fn spec_vector_through_the_raw_exports() {
        let frame = hex(
            "01 01 0001 01 00000007 01 000003e8 0001 000a 00000002 43 00000001 6b 00000001 76 6869",
        );
        let mut inst = PluginInstance::start(&bolt()).unwrap();
        assert_eq!(inst.lifecycle(), Lifecycle::Ready);
        let ctx = inst.new_ctx().unwrap();
        assert_eq!(decode(&mut inst, ctx, &frame).unwrap(), 0);
        // The spec's result, then the decode extras the host asked for: the id at offset 5,
        // 4 bytes wide (0x0504), no GoAway.
        assert_eq!(
            inst.result(13).unwrap(),
            &hex("0000000a 00000001 6b 00000001 76 41 0000000000000007 000003e8 00000023 00000002 6869 00000504 00")[..]
        );
        let input = hex("0000000a 00000001 6b 00000001 76 40 0000000000000009 0000000000000007 000003e8 00000002 6869");
        assert_eq!(encode(&mut inst, ctx, &input).unwrap(), 0);
        let mut want = hex("00000000 41 0000000000000009 000003e8 00000023");
        let mut renumbered = frame.clone();
        renumbered[5..9].copy_from_slice(&9u32.to_be_bytes());
        want.extend_from_slice(&renumbered);
        assert_eq!(inst.result(14).unwrap(), &want[..]);
        // The cached id is now 9: the old command id is refused, the new one accepted.
        assert_eq!(encode(&mut inst, ctx, &input).unwrap(), 10);
        let retry = hex("0000000a 00000001 6b 00000001 76 40 000000000000000b 0000000000000009 000003e8 00000000");
        assert_eq!(encode(&mut inst, ctx, &retry).unwrap(), 0);
        inst.delete_ctx(ctx).unwrap();
        assert_eq!(inst.context_counts(), (0, 1, 1));
    }

    #[test]
    fn need_more_data_reports_nothing() {
        let mut inst = PluginInstance::start(&bolt()).unwrap();
        let ctx = inst.spare_ctx().unwrap();
        assert_eq!(decode(&mut inst, ctx, &[0x01, 0x01]).unwrap(), 99);
        assert_eq!(inst.result(13), None);
        assert_eq!(inst.spare_ctx().unwrap(), ctx, "kept for the retry");
    }
}

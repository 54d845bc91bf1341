//! One running instance of a compiled plugin ([`Vm`]): a private `Store`, the imports the
//! module asks for linked from the namespace tables (§4), the typed exports of §3 resolved
//! once, and one generic call path for every export, which gives each ABI operation its full
//! CPU budget and turns traps into [`VmError`]s.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use codec_abi::exports as ex;
use codec_abi::optional_exports::{
    CHECK, DECODE_BYTES_NEEDED, DECODE_IS_GOAWAY, DECODE_REUSES_CONTEXT, GOAWAY, ID_FIELD,
    INPUT_BUFFER, RESPONSE_CODE,
};
use wasmer::{
    FunctionEnv, Global, Imports, Instance, Memory, RuntimeError, Store, TypedFunction, Value,
};

use crate::budget::{POINTS_EXHAUSTED, POINTS_REMAINING};
use crate::compile::CompiledModule;
use crate::guest_exports::{GuestArgs, GuestExport, Malloc, TypedExports};
use crate::imports;
use crate::imports::host_state::HostState;
use crate::shape::Checked;

/// How a guest call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum VmError {
    /// The guest trapped (or broke the ABI badly enough to stop it). `message` has the
    /// guest's last words first, then the trap.
    Trap(String),
    /// The call ran out of CPU points.
    CpuExhausted,
    /// The instance could not be created (link error, missing export).
    Instantiate(String),
}

/// One running instance of a plugin, with its own store. Dropping it frees everything the
/// guest had (memory included).
pub(crate) struct Vm {
    store: Store,
    env: FunctionEnv<HostState>,
    exports: TypedExports,
    /// The optional `rpc_sidecar_decode_bytes_needed` export, when the module has it.
    bytes_needed: Option<TypedFunction<u32, u32>>,
    /// The optional `rpc_sidecar_response_code` export, when the module has it.
    response_code: Option<TypedFunction<(u32, u32), u32>>,
    /// The optional `rpc_sidecar_decode_is_goaway` export.
    is_goaway: Option<TypedFunction<u32, u32>>,
    /// The optional `rpc_sidecar_goaway` export.
    goaway: Option<TypedFunction<(u32, u64), u32>>,
    /// The optional `rpc_sidecar_check` export (protocol auto-detection).
    check: Option<TypedFunction<(u32, u32, u32), u32>>,
    /// The optional `rpc_sidecar_input_buffer` export: inputs go into a guest-owned buffer
    /// instead of a `malloc` per call.
    input_buffer: Option<TypedFunction<u32, u32>>,
    /// That buffer as last handed out: (pointer, bytes it holds at least); (0, 0) before.
    input_at: (u32, u32),
    /// `malloc` calls made for inputs (0 per frame with an input buffer).
    input_mallocs: u64,
    /// The optional `rpc_sidecar_id_field` export: unchanged frames forwarded by the host.
    id_field: Option<TypedFunction<u32, u32>>,
    /// The module exports the `rpc_sidecar_decode_reuses_context` marker.
    reuses_contexts: bool,
    points_remaining: Global,
    points_exhausted: Global,
    budget: u64,
}

impl Vm {
    /// Instantiates `compiled` with the imports it declares, each from its namespace table
    /// (`env`, §4.1-4.2; WASI under both names, §4.3). `checked` is what the load-time shape
    /// check found (the allocator's name). Runs no guest code besides a start section.
    ///
    /// # Errors
    /// [`VmError::Instantiate`] when linking fails; [`VmError::Trap`] when a start section
    /// traps.
    pub(crate) fn new(
        compiled: &CompiledModule,
        host: HostState,
        checked: Checked,
        budget: u64,
    ) -> Result<Vm, VmError> {
        let mut store = Store::new(compiled.engine.clone());
        let env = FunctionEnv::new(&mut store, host);
        // Only what the module imports; the load-time shape check vouched for each name.
        let mut imports = Imports::new();
        for import in compiled.module.imports() {
            let (module, name) = (import.module(), import.name());
            let provided = imports::find(module, name)
                .ok_or_else(|| VmError::Instantiate(format!("unknown import {module}.{name}")))?;
            imports.define(module, name, provided.function(&mut store, &env));
        }
        let instance =
            Instance::new(&mut store, &compiled.module, &imports).map_err(|e| match e {
                wasmer::InstantiationError::Start(trap) => VmError::Trap(trap.message()),
                other => VmError::Instantiate(other.to_string()),
            })?;
        let x = &instance.exports;
        let exports = TypedExports::resolve(x, &store, |names| checked.name_among(names))
            .map_err(VmError::Instantiate)?;
        let missing = |what: &str, e: wasmer::ExportError| {
            VmError::Instantiate(format!("export {what}: {e}"))
        };
        let memory: Memory = x
            .get_memory(ex::MEMORY)
            .map_err(|e| missing(ex::MEMORY, e))?
            .clone();
        let points_remaining = x
            .get_global(POINTS_REMAINING)
            .map_err(|e| missing(POINTS_REMAINING, e))?
            .clone();
        let points_exhausted = x
            .get_global(POINTS_EXHAUSTED)
            .map_err(|e| missing(POINTS_EXHAUSTED, e))?
            .clone();
        let bytes_needed = match x.get_function(DECODE_BYTES_NEEDED) {
            Err(_) => None,
            Ok(f) => Some(f.typed(&store).map_err(|e| {
                VmError::Instantiate(format!("optional export {DECODE_BYTES_NEEDED}: {e}"))
            })?),
        };
        let response_code = match x.get_function(RESPONSE_CODE) {
            Err(_) => None,
            Ok(f) => Some(f.typed(&store).map_err(|e| {
                VmError::Instantiate(format!("optional export {RESPONSE_CODE}: {e}"))
            })?),
        };
        let is_goaway = match x.get_function(DECODE_IS_GOAWAY) {
            Err(_) => None,
            Ok(f) => Some(f.typed(&store).map_err(|e| {
                VmError::Instantiate(format!("optional export {DECODE_IS_GOAWAY}: {e}"))
            })?),
        };
        let goaway = match x.get_function(GOAWAY) {
            Err(_) => None,
            Ok(f) => Some(
                f.typed(&store)
                    .map_err(|e| VmError::Instantiate(format!("optional export {GOAWAY}: {e}")))?,
            ),
        };
        let check = match x.get_function(CHECK) {
            Err(_) => None,
            Ok(f) => Some(
                f.typed(&store)
                    .map_err(|e| VmError::Instantiate(format!("optional export {CHECK}: {e}")))?,
            ),
        };
        let input_buffer = match x.get_function(INPUT_BUFFER) {
            Err(_) => None,
            Ok(f) => Some(f.typed(&store).map_err(|e| {
                VmError::Instantiate(format!("optional export {INPUT_BUFFER}: {e}"))
            })?),
        };
        let id_field =
            match x.get_function(ID_FIELD) {
                Err(_) => None,
                Ok(f) => Some(f.typed(&store).map_err(|e| {
                    VmError::Instantiate(format!("optional export {ID_FIELD}: {e}"))
                })?),
            };
        let reuses_contexts = x.get_function(DECODE_REUSES_CONTEXT).is_ok();
        let state = env.as_mut(&mut store);
        state.memory = Some(memory);
        state.malloc = Some(Malloc::typed(&exports).clone());
        Ok(Vm {
            store,
            env,
            exports,
            bytes_needed,
            response_code,
            is_goaway,
            goaway,
            check,
            input_buffer,
            input_at: (0, 0),
            input_mallocs: 0,
            id_field,
            reuses_contexts,
            points_remaining,
            points_exhausted,
            budget,
        })
    }

    /// The host state shared with the imports.
    pub(crate) fn host(&self) -> &HostState {
        self.env.as_ref(&self.store)
    }

    /// Bytes of linear memory the guest has now (0 before the memory is known).
    pub(crate) fn memory_bytes(&self) -> u64 {
        let state = self.env.as_ref(&self.store);
        state
            .memory
            .as_ref()
            .map_or(0, |m| m.view(&self.store).data_size())
    }

    /// Runs `export` with `args` as one ABI operation (full CPU budget, no result yet).
    ///
    /// # Errors
    /// [`VmError::Trap`] / [`VmError::CpuExhausted`] when the guest fails.
    pub(crate) fn call<E: GuestExport>(
        &mut self,
        _export: E,
        args: E::Args,
    ) -> Result<E::Rets, VmError> {
        self.arm()?;
        self.invoke::<E>(args)
    }

    /// Like [`Vm::call`], with `input` first copied into a fresh guest allocation (`malloc`,
    /// §3) within the same budget; `args` builds the arguments from its (ptr, len).
    ///
    /// # Errors
    /// As [`Vm::call`], and [`VmError::Trap`] when malloc fails or answers outside memory.
    pub(crate) fn call_with_input<E: GuestExport>(
        &mut self,
        _export: E,
        input: &[u8],
        args: impl FnOnce(u32, u32) -> E::Args,
    ) -> Result<E::Rets, VmError> {
        self.arm()?;
        let (ptr, len) = self.pass_input(input)?;
        self.invoke::<E>(args(ptr, len))
    }

    /// The optional `rpc_sidecar_decode_bytes_needed(ctx)` as one ABI operation; `Ok(None)`
    /// when the module does not export it.
    ///
    /// # Errors
    /// As [`Vm::call`].
    pub(crate) fn decode_bytes_needed(&mut self, ctx: u32) -> Result<Option<u32>, VmError> {
        if self.bytes_needed.is_none() {
            return Ok(None);
        }
        self.arm()?;
        let r = match &self.bytes_needed {
            Some(f) => f.call(&mut self.store, ctx),
            None => return Ok(None),
        };
        r.map(Some).map_err(|e| self.fail(e))
    }

    /// The optional `rpc_sidecar_decode_is_goaway(ctx)` as one ABI operation; `Ok(None)`
    /// when the module does not export it.
    ///
    /// # Errors
    /// As [`Vm::call`].
    pub(crate) fn decode_is_goaway(&mut self, ctx: u32) -> Result<Option<u32>, VmError> {
        if self.is_goaway.is_none() {
            return Ok(None);
        }
        self.arm()?;
        let r = match &self.is_goaway {
            Some(f) => f.call(&mut self.store, ctx),
            None => return Ok(None),
        };
        r.map(Some).map_err(|e| self.fail(e))
    }

    /// The optional `rpc_sidecar_goaway(ctx, id)` as one ABI operation; `Ok(None)` when the
    /// module does not export it.
    ///
    /// # Errors
    /// As [`Vm::call`].
    pub(crate) fn goaway(&mut self, ctx: u32, id: u64) -> Result<Option<u32>, VmError> {
        if self.goaway.is_none() {
            return Ok(None);
        }
        self.arm()?;
        let r = match &self.goaway {
            Some(f) => f.call(&mut self.store, ctx, id),
            None => return Ok(None),
        };
        r.map(Some).map_err(|e| self.fail(e))
    }

    /// The optional `rpc_sidecar_response_code(ctx, status)` as one ABI operation;
    /// `Ok(None)` when the module does not export it.
    ///
    /// # Errors
    /// As [`Vm::call`].
    pub(crate) fn response_code(&mut self, ctx: u32, status: u32) -> Result<Option<u32>, VmError> {
        if self.response_code.is_none() {
            return Ok(None);
        }
        self.arm()?;
        let r = match &self.response_code {
            Some(f) => f.call(&mut self.store, ctx, status),
            None => return Ok(None),
        };
        r.map(Some).map_err(|e| self.fail(e))
    }

    /// The optional `rpc_sidecar_id_field(ctx)` as one ABI operation; `Ok(None)` when the
    /// module does not export it.
    ///
    /// # Errors
    /// As [`Vm::call`].
    pub(crate) fn id_field(&mut self, ctx: u32) -> Result<Option<u32>, VmError> {
        if self.id_field.is_none() {
            return Ok(None);
        }
        self.arm()?;
        let r = match &self.id_field {
            Some(f) => f.call(&mut self.store, ctx),
            None => return Ok(None),
        };
        r.map(Some).map_err(|e| self.fail(e))
    }

    /// Whether decode accepts a used context (the `rpc_sidecar_decode_reuses_context`
    /// marker).
    pub(crate) fn reuses_contexts(&self) -> bool {
        self.reuses_contexts
    }

    /// Whether the module exports the optional `rpc_sidecar_check`.
    pub(crate) fn has_check(&self) -> bool {
        self.check.is_some()
    }

    /// The optional `rpc_sidecar_check(ctx, ptr, len)` on a copy of `input` (never empty) as
    /// one ABI operation; `Ok(None)` when the module does not export it.
    ///
    /// # Errors
    /// As [`Vm::call_with_input`].
    pub(crate) fn check(&mut self, ctx: u32, input: &[u8]) -> Result<Option<u32>, VmError> {
        if self.check.is_none() {
            return Ok(None);
        }
        self.arm()?;
        let (ptr, len) = self.pass_input(input)?;
        let r = match &self.check {
            Some(f) => f.call(&mut self.store, ctx, ptr, len),
            None => return Ok(None),
        };
        r.map(Some).map_err(|e| self.fail(e))
    }

    /// Calls export `E` within the current operation.
    fn invoke<E: GuestExport>(&mut self, args: E::Args) -> Result<E::Rets, VmError> {
        let r = args.call_with(E::typed(&self.exports), &mut self.store);
        r.map_err(|e| self.fail(e))
    }

    /// Prepares one ABI operation: a full CPU budget, no result, no output yet.
    fn arm(&mut self) -> Result<(), VmError> {
        self.points_remaining
            .set(&mut self.store, Value::I64(self.budget as i64))
            .map_err(|e| VmError::Trap(e.message()))?;
        let state = self.env.as_mut(&mut self.store);
        state.result.clear();
        state.output.begin_call();
        Ok(())
    }

    /// Turns a failed guest call into a [`VmError`]: CPU exhaustion if the metering flag is
    /// set, else a trap explained by the guest's own last words.
    fn fail(&mut self, err: RuntimeError) -> VmError {
        if matches!(self.points_exhausted.get(&mut self.store), Value::I32(v) if v != 0) {
            return VmError::CpuExhausted;
        }
        let trap = err.message();
        VmError::Trap(match self.host().output.last_words() {
            Some(words) => format!("{words} ({trap})"),
            None => trap,
        })
    }

    /// `malloc(len)` for an input (counted).
    fn malloc_input(&mut self, len: u32) -> Result<u32, VmError> {
        self.input_mallocs += 1;
        self.invoke::<Malloc>(len)
    }

    /// `malloc` calls made for inputs so far.
    pub(crate) fn input_mallocs(&self) -> u64 {
        self.input_mallocs
    }

    /// Copies `input` into the guest's input buffer (optional export `INPUT_BUFFER`) or a
    /// fresh guest allocation (`malloc`, §3): the (ptr, len) to pass.
    /// Never called with empty input (malloc(0) traps TinyGo guests).
    fn pass_input(&mut self, input: &[u8]) -> Result<(u32, u32), VmError> {
        let len = u32::try_from(input.len())
            .ok()
            .filter(|&len| len <= i32::MAX as u32)
            .ok_or_else(|| VmError::Trap("input larger than 2 GiB".into()))?;
        debug_assert!(len > 0, "codec inputs are never empty");
        let ptr = match &self.input_buffer {
            None => self.malloc_input(len)?,
            Some(_) if len <= self.input_at.1 => self.input_at.0,
            Some(f) => match f.call(&mut self.store, len) {
                Err(e) => return Err(self.fail(e)),
                Ok(0) => self.malloc_input(len)?,
                Ok(ptr) => {
                    self.input_at = (ptr, len);
                    ptr
                }
            },
        };
        let state = self.env.as_ref(&self.store);
        let mem = state
            .memory
            .as_ref()
            .ok_or_else(|| VmError::Trap("no memory".into()))?;
        // ABI §4: a fresh view after the call; memory may have grown.
        let view = mem.view(&self.store);
        let end = u64::from(ptr) + input.len() as u64;
        if end > view.data_size() || !crate::guest_write::write(&view, u64::from(ptr), input) {
            return Err(VmError::Trap(format!(
                "malloc({len}) returned {ptr:#x}, outside guest memory"
            )));
        }
        Ok((ptr, len))
    }
}

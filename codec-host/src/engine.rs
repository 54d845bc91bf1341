//! The wasmer engine, and the only module that drives it: compiling a plugin once per
//! process (cranelift, with CPU metering and the memory cap built in), describing its shape,
//! and running one instance ([`Vm`]): a private `Store`, the imports of §4, the typed exports
//! of §3, the per-call CPU budget, and traps turned into [`VmError`]s.

use std::sync::Arc;

use codec_abi::exports as ex;
use wasmer::sys::{
    CompilerConfig, Cranelift, CraneliftOptLevel, EngineBuilder, FunctionMiddleware,
    MiddlewareError, ModuleMiddleware,
};
use wasmer::wasmparser::Operator;
use wasmer::{
    Engine, ExternType, FunctionEnv, Global, Imports, Instance, LocalFunctionIndex, Memory, Module,
    ModuleInfo, Pages, RuntimeError, Store, TypedFunction, Value,
};
use wasmer_middlewares::Metering;

use crate::imports::{env_import, HostState};
use crate::limits::Limits;
use crate::shape::{FuncType, Item, ItemKind, ModuleShape, ValType};
use crate::wasi::{wasi_import, WASI_MODULES};

/// Export holding the remaining CPU points (added by the metering middleware).
const POINTS_REMAINING: &str = "wasmer_metering_remaining_points";
/// Export set to 1 when the points ran out (added by the metering middleware).
const POINTS_EXHAUSTED: &str = "wasmer_metering_points_exhausted";

/// A plugin compiled for this process: shared by every worker (`Send + Sync`).
pub(crate) struct CompiledModule {
    /// Engine holding the compiled code (one per plugin: the metering middleware belongs to
    /// exactly one module).
    engine: Engine,
    module: Module,
}

/// Metering cost of one Wasm operator: 1 point each, so the budget reads as "operators
/// executed" (branches also pay for the accounting code the middleware inserts).
fn operator_cost(_op: &Operator<'_>) -> u64 {
    1
}

/// Compiles `wasm` (binary, or text for fixtures) with cranelift, CPU metering and the memory
/// cap of `limits` (resolved).
///
/// # Errors
/// The compiler's error when the bytes are not a valid module.
pub(crate) fn compile(
    wasm: &[u8],
    limits: &Limits,
) -> Result<CompiledModule, Box<dyn std::error::Error + Send + Sync>> {
    let mut compiler = Cranelift::new();
    compiler.opt_level(CraneliftOptLevel::Speed);
    compiler.push_middleware(Arc::new(Metering::new(
        limits.cpu_points_per_call,
        operator_cost,
    )));
    compiler.push_middleware(Arc::new(MemoryCap {
        max_pages: limits.memory_pages(),
    }));
    let engine: Engine = EngineBuilder::new(compiler).into();
    let module = Module::new(&engine, wasm)?;
    Ok(CompiledModule { engine, module })
}

impl CompiledModule {
    /// The module's imports and exports, engine-neutral.
    pub(crate) fn shape(&self) -> ModuleShape {
        let kind = |ty: &ExternType| match ty {
            ExternType::Function(f) => ItemKind::Func(FuncType {
                params: f.params().iter().map(val_type).collect(),
                results: f.results().iter().map(val_type).collect(),
            }),
            ExternType::Memory(m) => ItemKind::Memory {
                initial_pages: m.minimum.0,
            },
            ExternType::Global(_) => ItemKind::Other("global"),
            ExternType::Table(_) => ItemKind::Other("table"),
            ExternType::Tag(_) => ItemKind::Other("tag"),
        };
        ModuleShape {
            imports: self
                .module
                .imports()
                .map(|i| Item {
                    module: i.module().to_owned(),
                    name: i.name().to_owned(),
                    kind: kind(i.ty()),
                })
                .collect(),
            exports: self
                .module
                .exports()
                .map(|e| Item {
                    module: String::new(),
                    name: e.name().to_owned(),
                    kind: kind(e.ty()),
                })
                .collect(),
        }
    }
}

fn val_type(t: &wasmer::Type) -> ValType {
    match t {
        wasmer::Type::I32 => ValType::I32,
        wasmer::Type::I64 => ValType::I64,
        wasmer::Type::F32 => ValType::F32,
        wasmer::Type::F64 => ValType::F64,
        _ => ValType::Other,
    }
}

/// Caps every memory's maximum at the configured size: `memory.grow` past it returns -1
/// inside the guest. Done as a compile-time module transform rather than custom `Tunables`,
/// which would need `unsafe` trait methods; the effect on the instance is the same.
#[derive(Debug)]
struct MemoryCap {
    max_pages: u32,
}

/// The per-function half of [`MemoryCap`]: passes every operator through.
#[derive(Debug)]
struct NoOp;

impl<'a> FunctionMiddleware<'a> for NoOp {}

impl ModuleMiddleware for MemoryCap {
    fn generate_function_middleware<'a>(
        &self,
        _: LocalFunctionIndex,
    ) -> Box<dyn FunctionMiddleware<'a> + 'a> {
        Box::new(NoOp)
    }

    fn transform_module_info(&self, info: &mut ModuleInfo) -> Result<(), MiddlewareError> {
        for (_, memory) in info.memories.iter_mut() {
            // Never below the declared minimum: a module needing more than the cap to start
            // is refused at load with a clear message (shape check), not a link error.
            let cap = Pages(self.max_pages.max(memory.minimum.0));
            memory.maximum = Some(memory.maximum.map_or(cap, |m| m.min(cap)));
        }
        Ok(())
    }
}

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

/// The typed exports of §3.
struct Exports {
    start: TypedFunction<(), ()>,
    malloc: TypedFunction<i32, i32>,
    context_create: TypedFunction<(i32, i32), ()>,
    vm_start: TypedFunction<(i32, i32), i32>,
    configure: TypedFunction<(i32, i32), i32>,
    delete: TypedFunction<i32, ()>,
    decode: TypedFunction<(i32, i32, i32), i32>,
    encode: TypedFunction<(i32, i32, i32), i32>,
    keepalive: TypedFunction<(i32, i64), i32>,
    reply_keepalive: TypedFunction<(i32, i32, i32), i32>,
    hijack: TypedFunction<(i32, i32, i32, i32), i32>,
}

/// One running instance of a plugin, with its own store. Dropping it frees everything the
/// guest had (memory included).
pub(crate) struct Vm {
    store: Store,
    env: FunctionEnv<HostState>,
    exports: Exports,
    points_remaining: Global,
    points_exhausted: Global,
    budget: u64,
}

impl Vm {
    /// Instantiates `compiled` with the `env` imports (§4.1-4.2) and WASI under both
    /// namespaces (§4.3). `allocator` is the malloc export chosen at load. Runs no guest
    /// code besides a start section.
    ///
    /// # Errors
    /// [`VmError::Instantiate`] when linking fails; [`VmError::Trap`] when a start section
    /// traps.
    pub(crate) fn new(
        compiled: &CompiledModule,
        host: HostState,
        allocator: &'static str,
        budget: u64,
    ) -> Result<Vm, VmError> {
        let mut store = Store::new(compiled.engine.clone());
        let env = FunctionEnv::new(&mut store, host);
        // Only what the module imports; the load-time shape check vouched for each name.
        let mut imports = Imports::new();
        for import in compiled.module.imports() {
            let (module, name) = (import.module(), import.name());
            let f = if module == "env" {
                env_import(&mut store, &env, name)
            } else if WASI_MODULES.contains(&module) {
                wasi_import(&mut store, &env, name)
            } else {
                None
            };
            let f =
                f.ok_or_else(|| VmError::Instantiate(format!("unknown import {module}.{name}")))?;
            imports.define(module, name, f);
        }
        let instance =
            Instance::new(&mut store, &compiled.module, &imports).map_err(|e| match e {
                wasmer::InstantiationError::Start(trap) => VmError::Trap(trap.message()),
                other => VmError::Instantiate(other.to_string()),
            })?;
        let missing = |what: &str, e: wasmer::ExportError| {
            VmError::Instantiate(format!("export {what}: {e}"))
        };
        let x = &instance.exports;
        macro_rules! typed {
            ($name:expr) => {
                x.get_typed_function(&store, $name)
                    .map_err(|e| missing($name, e))?
            };
        }
        let exports = Exports {
            start: typed!(ex::START),
            malloc: typed!(allocator),
            context_create: typed!(ex::CONTEXT_CREATE),
            vm_start: typed!(ex::VM_START),
            configure: typed!(ex::CONFIGURE),
            delete: typed!(ex::DELETE),
            decode: typed!(ex::DECODE),
            encode: typed!(ex::ENCODE),
            keepalive: typed!(ex::KEEPALIVE),
            reply_keepalive: typed!(ex::REPLY_KEEPALIVE),
            hijack: typed!(ex::HIJACK),
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
        let state = env.as_mut(&mut store);
        state.memory = Some(memory);
        state.malloc = Some(exports.malloc.clone());
        Ok(Vm {
            store,
            env,
            exports,
            points_remaining,
            points_exhausted,
            budget,
        })
    }

    /// The host state shared with the imports.
    pub(crate) fn host(&self) -> &HostState {
        self.env.as_ref(&self.store)
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

    /// Copies `input` into a fresh guest allocation (`malloc`, §3): the (ptr, len) to pass.
    /// Never called with empty input (malloc(0) traps TinyGo guests).
    fn pass_input(&mut self, input: &[u8]) -> Result<(i32, i32), VmError> {
        let len = i32::try_from(input.len())
            .map_err(|_| VmError::Trap("input larger than 2 GiB".into()))?;
        debug_assert!(len > 0, "codec inputs are never empty");
        let ptr = match self.exports.malloc.call(&mut self.store, len) {
            Ok(p) => p,
            Err(e) => return Err(self.fail(e)),
        };
        let state = self.env.as_ref(&self.store);
        let mem = state
            .memory
            .as_ref()
            .ok_or_else(|| VmError::Trap("no memory".into()))?;
        // ABI §4: a fresh view after the call; memory may have grown.
        let view = mem.view(&self.store);
        let end = u64::from(ptr as u32) + input.len() as u64;
        if end > view.data_size() || view.write(u64::from(ptr as u32), input).is_err() {
            return Err(VmError::Trap(format!(
                "malloc({len}) returned {ptr:#x}, outside guest memory"
            )));
        }
        Ok((ptr, len))
    }

    /// Runs `_start` (§2 step 2).
    pub(crate) fn start(&mut self) -> Result<(), VmError> {
        self.arm()?;
        let r = self.exports.start.call(&mut self.store);
        r.map_err(|e| self.fail(e))
    }

    /// `proxy_on_context_create(ctx, parent)`.
    pub(crate) fn context_create(&mut self, ctx: u32, parent: u32) -> Result<(), VmError> {
        self.arm()?;
        let r = self
            .exports
            .context_create
            .call(&mut self.store, ctx as i32, parent as i32);
        r.map_err(|e| self.fail(e))
    }

    /// `proxy_on_vm_start(root, vm_cfg_size)`: the guest's bool.
    pub(crate) fn vm_start(&mut self, root: u32, size: u32) -> Result<i32, VmError> {
        self.arm()?;
        let r = self
            .exports
            .vm_start
            .call(&mut self.store, root as i32, size as i32);
        r.map_err(|e| self.fail(e))
    }

    /// `proxy_on_configure(root, plugin_cfg_size)`: the guest's bool.
    pub(crate) fn configure(&mut self, root: u32, size: u32) -> Result<i32, VmError> {
        self.arm()?;
        let r = self
            .exports
            .configure
            .call(&mut self.store, root as i32, size as i32);
        r.map_err(|e| self.fail(e))
    }

    /// `proxy_on_delete(ctx)`.
    pub(crate) fn delete(&mut self, ctx: u32) -> Result<(), VmError> {
        self.arm()?;
        let r = self.exports.delete.call(&mut self.store, ctx as i32);
        r.map_err(|e| self.fail(e))
    }

    /// `proxy_decode_buffer_bytes(ctx, ptr, len)` with `input` copied in: the status.
    pub(crate) fn decode(&mut self, ctx: u32, input: &[u8]) -> Result<u32, VmError> {
        self.arm()?;
        let (ptr, len) = self.pass_input(input)?;
        let r = self
            .exports
            .decode
            .call(&mut self.store, ctx as i32, ptr, len);
        r.map(|s| s as u32).map_err(|e| self.fail(e))
    }

    /// `proxy_encode_buffer_bytes(ctx, ptr, len)` with `input` (§5.3) copied in: the status.
    pub(crate) fn encode(&mut self, ctx: u32, input: &[u8]) -> Result<u32, VmError> {
        self.arm()?;
        let (ptr, len) = self.pass_input(input)?;
        let r = self
            .exports
            .encode
            .call(&mut self.store, ctx as i32, ptr, len);
        r.map(|s| s as u32).map_err(|e| self.fail(e))
    }

    /// `proxy_keepalive_buffer_bytes(ctx, id)`: the status.
    pub(crate) fn keepalive(&mut self, ctx: u32, id: u64) -> Result<u32, VmError> {
        self.arm()?;
        let r = self
            .exports
            .keepalive
            .call(&mut self.store, ctx as i32, id as i64);
        r.map(|s| s as u32).map_err(|e| self.fail(e))
    }

    /// `proxy_reply_keepalive_buffer_bytes(ctx, 0, 0)` (the guest ignores ptr/len, §6.5).
    pub(crate) fn reply_keepalive(&mut self, ctx: u32) -> Result<u32, VmError> {
        self.arm()?;
        let r = self
            .exports
            .reply_keepalive
            .call(&mut self.store, ctx as i32, 0, 0);
        r.map(|s| s as u32).map_err(|e| self.fail(e))
    }

    /// `proxy_hijack_buffer_bytes(ctx, status_code, ptr, len)` with `input` (§5.3) copied
    /// in: the status.
    pub(crate) fn hijack(
        &mut self,
        ctx: u32,
        status_code: u32,
        input: &[u8],
    ) -> Result<u32, VmError> {
        self.arm()?;
        let (ptr, len) = self.pass_input(input)?;
        let r = self
            .exports
            .hijack
            .call(&mut self.store, ctx as i32, status_code as i32, ptr, len);
        r.map(|s| s as u32).map_err(|e| self.fail(e))
    }
}

//! Compiling a plugin once per process: cranelift, with CPU metering and the memory cap
//! built into the code, and the description of the compiled module's shape for the load
//! check.

use std::sync::Arc;

use wasmer::sys::{
    CompilerConfig, Cranelift, CraneliftOptLevel, EngineBuilder, FunctionMiddleware,
    MiddlewareError, ModuleMiddleware,
};
use wasmer::{Engine, ExternType, LocalFunctionIndex, Module, ModuleInfo, Pages};

use crate::budget::Budget;
use crate::limits::Limits;
use crate::shape::{Item, ItemKind, ModuleShape};

/// A plugin compiled for this process: shared by every worker (`Send + Sync`).
pub(crate) struct CompiledModule {
    /// Engine holding the compiled code (one per plugin: the metering middleware belongs to
    /// exactly one module).
    pub(crate) engine: Engine,
    /// The compiled module.
    pub(crate) module: Module,
}

/// Set (to anything) in the sidecar's environment, plugins are compiled with a perf map
/// (`/tmp/perf-<pid>.map`) so that `perf report` names guest functions.
pub(crate) const PERFMAP_ENV: &str = "RPC_SIDECAR_PERFMAP";

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
    if std::env::var_os(PERFMAP_ENV).is_some() {
        // `perf` names guest functions through /tmp/perf-<pid>.map (when the module keeps
        // its name section).
        compiler.enable_perfmap();
    }
    compiler.push_middleware(Arc::new(Budget::new(limits.cpu_points_per_call)));
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
            ExternType::Function(f) => ItemKind::Func(f.clone()),
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

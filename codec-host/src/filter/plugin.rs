//! Loading a filter plugin once per process ([`FilterPlugin`]): read, check the MD5 when one
//! is configured, compile with the same engine, CPU metering and memory cap as codec plugins,
//! check the module's shape (an ABI version the host speaks, memory, allocator, imports the
//! host offers with the signatures it offers them), and prove that an instance starts.

use std::path::PathBuf;
use std::sync::Arc;

use super::abi::AbiVersion;
use super::hostcalls;
use super::instance::{FilterError, FilterInstance, Recipe};
use super::shared::{FilterShared, QueueWaker};
use crate::compile::{self, CompiledModule};
use crate::error::LoadError;
use crate::limits::Limits;
use crate::shape;

/// How to load one filter plugin.
#[derive(Debug, Clone)]
pub struct FilterPluginConfig {
    /// Name for logs, errors and metrics.
    pub name: String,
    /// The `.wasm` file.
    pub wasm_path: PathBuf,
    /// Expected lower-case hex MD5 of the file, when set.
    pub md5: Option<String>,
    /// The root context id (MOSN's `root_context_id`, default 1).
    pub root_id: u32,
    /// The VM id (`plugin_vm_id`, `proxy_resolve_shared_queue`).
    pub vm_id: String,
    /// The VM configuration buffer (type 6, `proxy_on_vm_start`).
    pub vm_config: Vec<u8>,
    /// The plugin configuration buffer (type 7, `proxy_on_configure`).
    pub plugin_config: Vec<u8>,
    /// Sandbox limits (memory, CPU per callback, restarts per minute).
    pub limits: Limits,
}

/// A compiled, checked filter plugin: shared by every worker, which each make their own
/// instance ([`FilterPlugin::new_instance`]); shared data, queues and metrics are the
/// plugin's, common to all its instances.
pub struct FilterPlugin {
    name: Arc<str>,
    path: PathBuf,
    md5: String,
    abi: AbiVersion,
    compiled: CompiledModule,
    limits: Limits,
    root_id: u32,
    vm_id: String,
    vm_config: Arc<[u8]>,
    plugin_config: Arc<[u8]>,
    shared: Arc<FilterShared>,
}

impl std::fmt::Debug for FilterPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterPlugin")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("abi", &self.abi)
            .finish_non_exhaustive()
    }
}

impl FilterPlugin {
    /// Loads, checks and starts one instance of the plugin `config` describes (the
    /// instance is dropped: each worker makes its own).
    ///
    /// # Errors
    /// A [`LoadError`] naming what is wrong: unreadable file, MD5 mismatch, not Wasm, no
    /// ABI version the host speaks, a missing export, an import the host does not offer
    /// (by name), a wrong signature, memory over the cap, or a root context that does not
    /// start.
    pub fn load(config: FilterPluginConfig) -> Result<FilterPlugin, LoadError> {
        let plugin = config.name.clone();
        if config.root_id == 0 {
            return Err(LoadError::Config {
                plugin,
                reason: "root_context_id must be non-zero".into(),
            });
        }
        let wasm = std::fs::read(&config.wasm_path).map_err(|source| LoadError::Read {
            plugin: plugin.clone(),
            path: config.wasm_path.clone(),
            source,
        })?;
        let md5 = crate::plugin::hex_md5(&wasm);
        if let Some(expected) = config.md5.as_ref().map(|m| m.trim().to_ascii_lowercase()) {
            if !expected.is_empty() && expected != md5 {
                return Err(LoadError::Md5Mismatch {
                    plugin,
                    path: config.wasm_path,
                    expected,
                    actual: md5,
                });
            }
        }
        if !wasm.starts_with(b"\0asm") && !crate::plugin::looks_like_wat(&wasm) {
            return Err(LoadError::NotWasm {
                plugin,
                path: config.wasm_path,
                found: crate::plugin::describe_header(&wasm),
            });
        }
        let limits = config.limits.resolved();
        let compiled = compile::compile(&wasm, &limits).map_err(|source| LoadError::Compile {
            plugin: plugin.clone(),
            source,
        })?;
        let abi = check_shape(&plugin, &compiled, limits.memory_pages())?;
        let me = FilterPlugin {
            name: plugin.as_str().into(),
            path: config.wasm_path,
            md5,
            abi,
            compiled,
            limits,
            root_id: config.root_id,
            vm_id: config.vm_id,
            vm_config: config.vm_config.into(),
            plugin_config: config.plugin_config.into(),
            shared: Arc::new(FilterShared::new()),
        };
        me.new_instance(None).map_err(|e| LoadError::Config {
            plugin: plugin.clone(),
            reason: e.to_string(),
        })?;
        Ok(me)
    }

    /// A fresh instance with its root context started.
    ///
    /// # Errors
    /// As [`FilterInstance`]'s start: link, initialiser or root context failure.
    pub fn new_instance(&self, waker: Option<QueueWaker>) -> Result<FilterInstance, FilterError> {
        FilterInstance::new(
            Recipe {
                compiled: &self.compiled,
                name: self.name.clone(),
                vm_config: self.vm_config.clone(),
                plugin_config: self.plugin_config.clone(),
                abi: self.abi,
                root_id: self.root_id,
                vm_id: &self.vm_id,
                shared: self.shared.clone(),
                budget: self.limits.cpu_points_per_call,
            },
            waker,
        )
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file it was loaded from.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Lower-case hex MD5 of the file.
    pub fn md5(&self) -> &str {
        &self.md5
    }

    /// The ABI version the module speaks.
    pub fn abi(&self) -> AbiVersion {
        self.abi
    }

    /// The resolved sandbox limits.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// The state every instance shares (data, queues, metrics).
    pub fn shared(&self) -> &Arc<FilterShared> {
        &self.shared
    }
}

/// Checks the module's shape: the ABI version it speaks.
fn check_shape(
    plugin: &str,
    compiled: &CompiledModule,
    max_pages: u32,
) -> Result<AbiVersion, LoadError> {
    let shape = compiled.shape();
    let abi = shape
        .exports
        .iter()
        .find_map(|e| AbiVersion::from_marker(&e.name))
        .ok_or_else(|| {
            let others = shape.abi_like_exports();
            LoadError::FilterAbi {
                plugin: plugin.to_owned(),
                found: if others.is_empty() {
                    "none".to_owned()
                } else {
                    others.join(", ")
                },
            }
        })?;
    shape::check_memory(plugin, &shape, max_pages)?;
    if shape.export("proxy_on_context_create").is_none() {
        return Err(LoadError::MissingExport {
            plugin: plugin.to_owned(),
            name: "proxy_on_context_create",
        });
    }
    if shape.export("proxy_on_memory_allocate").is_none() && shape.export("malloc").is_none() {
        return Err(LoadError::MissingExport {
            plugin: plugin.to_owned(),
            name: "proxy_on_memory_allocate (or malloc)",
        });
    }
    shape::check_imports(plugin, &shape, hostcalls::find)?;
    Ok(abi)
}

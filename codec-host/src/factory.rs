//! The instance factory: a [`Plugin`] recipe turned into running codecs. [`Plugin::load`]
//! prepares the recipe once per process and proves that an instance starts;
//! [`Plugin::new_codec`] gives each worker a codec over an instance of its own.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use std::sync::Arc;
use std::time::Instant;

use crate::error::{CodecError, LoadError};
use crate::instance::PluginInstance;
use crate::plugin::{Plugin, PluginConfig};
use crate::wasm_codec::WasmCodec;

impl Plugin {
    /// Loads the plugin `config` describes: reads the file, checks `Md5` if set, compiles
    /// it (once; the result is shared), checks the ABI shape (marker
    /// `proxy_abi_mosn_version_0_2_0`, the exports of §3 with their signatures, imports only
    /// from `env` and WASI), and starts one instance to prove the start-up sequence works.
    ///
    /// # Errors
    /// A [`LoadError`] naming what is wrong: configuration (`root_id` 0, malformed `Md5`),
    /// unreadable file, MD5 mismatch, invalid module, missing marker or export, unknown
    /// import, wrong signature, memory cap below the module's initial memory, or a failing
    /// start-up.
    pub fn load(config: PluginConfig) -> Result<Arc<Plugin>, LoadError> {
        let path = config.wasm_path.clone();
        let plugin = Plugin::prepare(config)?;
        let started = Instant::now();
        PluginInstance::start(&plugin).map_err(|source| LoadError::StartUp {
            plugin: plugin.name().to_owned(),
            source,
        })?;
        let limits = plugin.limits();
        tracing::info!(
            plugin = %plugin.name(),
            path = %path.display(),
            md5 = %plugin.md5(),
            protocol = %plugin.protocol(),
            compile_ms = format_args!("{:.1}", plugin.compile_time().as_secs_f64() * 1e3),
            start_ms = format_args!("{:.2}", started.elapsed().as_secs_f64() * 1e3),
            memory_mib = limits.memory_mib,
            cpu_points_per_call = limits.cpu_points_per_call,
            max_frame_bytes = limits.max_frame_bytes,
            "codec plugin loaded"
        );
        Ok(Arc::new(plugin))
    }

    /// Loads this plugin again from its configuration (the same path, `Md5`, limits and
    /// plugin configuration): the file as it is now, read, checked, compiled and proved to
    /// start, exactly as [`Plugin::load`]. For live reload: `self` is untouched and keeps
    /// serving whatever instances it has.
    ///
    /// # Errors
    /// As [`Plugin::load`].
    pub fn reload(&self) -> Result<Arc<Plugin>, LoadError> {
        Plugin::load(self.config().clone())
    }

    /// A codec for the calling worker: a new instance of the plugin, started (ABI §2). The
    /// codec stays on that worker's thread; make one per worker.
    ///
    /// # Errors
    /// [`CodecError`] when the instance cannot be created or started.
    pub fn new_codec(self: &Arc<Self>) -> Result<WasmCodec, CodecError> {
        WasmCodec::new(Arc::clone(self))
    }
}

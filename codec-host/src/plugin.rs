//! A plugin as a recipe for instances ([`Plugin`]): the `.wasm` read and MD5-checked,
//! compiled once per process, checked against the ABI shape, with the configuration buffers
//! and limits every instance of it starts with. `Send + Sync`, shared by all workers; turning
//! it into running codecs is the factory's job ([`Plugin::load`], [`Plugin::new_codec`]).
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use md5::{Digest, Md5};

use crate::compile::{self, CompiledModule};
use crate::error::LoadError;
use crate::limits::Limits;
use crate::shape::{self, Checked};

/// What the sidecar tells the host about one plugin (parsed from MOSN's JSON, ABI §7).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfig {
    /// `wasm_global_plugins[].plugin_name`: names the plugin in logs and errors.
    pub name: String,
    /// `vm_config.path`: the `.wasm` file.
    pub wasm_path: PathBuf,
    /// The VM configuration buffer's pairs (type 6): the string fields of `vm_config` keyed
    /// by Go field name — `Engine`, `Path`, `Url`, `Md5` — empty strings included. A
    /// non-empty `Md5` is checked against the file (hex MD5, case-insensitive).
    pub vm_config: Vec<(String, String)>,
    /// The plugin configuration buffer's pairs (type 7): every string-valued member of the
    /// codec's `config` (`from_wasm_plugin`, `protocol`, `pool_mode`, …). Its `protocol`
    /// names the codec's protocol ([`crate::Codec::protocol`]); the plugin name otherwise.
    /// The host adds the pair `max_frame_bytes` ([`codec_abi::MAX_FRAME_BYTES_KEY`]) with
    /// its own limit ([`Limits::max_frame_bytes`]), replacing any pair of that name here.
    pub plugin_config: Vec<(String, String)>,
    /// `config.root_id`: the root context id; must be non-zero (ABI §2).
    pub root_id: i32,
    /// Sandbox limits (zero fields take the defaults).
    pub limits: Limits,
}

/// A compiled, checked plugin: `Send + Sync`, shared by all workers. Each worker makes its
/// own [`crate::WasmCodec`] with [`Plugin::new_codec`].
pub struct Plugin {
    name: Arc<str>,
    protocol: String,
    compiled: CompiledModule,
    checked: Checked,
    vm_config: Arc<[u8]>,
    plugin_config: Arc<[u8]>,
    root_id: u32,
    limits: Limits,
    md5: String,
    compile_time: Duration,
    /// The configuration it was prepared from, for [`Plugin::reload`].
    config: PluginConfig,
}

impl Plugin {
    /// Prepares the recipe `config` describes: reads the file, checks `Md5` if set,
    /// compiles it (once; the result is shared) and checks the ABI shape. Runs no guest code:
    /// [`Plugin::load`] also proves that an instance starts.
    ///
    /// # Errors
    /// A [`LoadError`] naming what is wrong: configuration (`root_id` 0, malformed `Md5`),
    /// unreadable file, MD5 mismatch, invalid module, missing marker or export, unknown
    /// import, wrong signature, or a memory cap below the module's initial memory.
    pub(crate) fn prepare(config: PluginConfig) -> Result<Plugin, LoadError> {
        let original = config.clone();
        let plugin = config.name.clone();
        let bad = |reason: String| LoadError::Config {
            plugin: plugin.clone(),
            reason,
        };
        if config.root_id == 0 {
            return Err(bad(
                "root_id must be non-zero (0 means \"create a root\" to the guest, ABI §2)".into(),
            ));
        }
        let expected_md5 = config
            .vm_config
            .iter()
            .find(|(k, _)| k == "Md5")
            .map(|(_, v)| v.trim().to_ascii_lowercase())
            .filter(|v| !v.is_empty());
        if let Some(md5) = &expected_md5 {
            if md5.len() != 32 || !md5.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(bad(format!("Md5 {md5:?} is not 32 hex digits")));
            }
        }
        let wasm = std::fs::read(&config.wasm_path).map_err(|source| LoadError::Read {
            plugin: plugin.clone(),
            path: config.wasm_path.clone(),
            source,
        })?;
        let md5 = hex_md5(&wasm);
        if let Some(expected) = expected_md5 {
            if expected != md5 {
                return Err(LoadError::Md5Mismatch {
                    plugin,
                    path: config.wasm_path,
                    expected,
                    actual: md5,
                });
            }
        }
        if !wasm.starts_with(WASM_MAGIC) && !looks_like_wat(&wasm) {
            return Err(LoadError::NotWasm {
                plugin,
                path: config.wasm_path,
                found: describe_header(&wasm),
            });
        }
        let limits = config.limits.resolved();
        let started = Instant::now();
        let compiled = compile::compile(&wasm, &limits).map_err(|source| LoadError::Compile {
            plugin: plugin.clone(),
            source,
        })?;
        let compile_time = started.elapsed();
        let checked = shape::check(&plugin, &compiled.shape(), limits.memory_pages())?;
        let protocol = config
            .plugin_config
            .iter()
            .find(|(k, v)| k == "protocol" && !v.is_empty())
            .map_or_else(|| plugin.clone(), |(_, v)| v.clone());
        let plugin_config = with_host_limits(&plugin, config.plugin_config, &limits);
        Ok(Plugin {
            name: plugin.as_str().into(),
            protocol,
            compiled,
            checked,
            vm_config: codec_abi::encode_pairs(&config.vm_config).into(),
            plugin_config: codec_abi::encode_pairs(&plugin_config).into(),
            root_id: config.root_id as u32,
            limits,
            md5,
            compile_time,
            config: original,
        })
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The protocol its codecs serve (plugin config `protocol`, else the name).
    pub fn protocol(&self) -> &str {
        &self.protocol
    }

    /// The sandbox limits in force (defaults filled in).
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Hex MD5 of the loaded file.
    pub fn md5(&self) -> &str {
        &self.md5
    }

    /// The `.wasm` file it was loaded from (as configured).
    pub fn path(&self) -> &std::path::Path {
        &self.config.wasm_path
    }

    /// The ABI version the module exports: the marker export (ABI §1) the load-time shape
    /// check found, `proxy_abi_mosn_version_0_2_0` (the only one this host accepts).
    pub fn abi_version(&self) -> &'static str {
        codec_abi::ABI_MARKER
    }

    /// The configuration it was loaded from.
    pub(crate) fn config(&self) -> &PluginConfig {
        &self.config
    }

    pub(crate) fn name_arc(&self) -> Arc<str> {
        Arc::clone(&self.name)
    }

    pub(crate) fn compiled(&self) -> &CompiledModule {
        &self.compiled
    }

    pub(crate) fn checked(&self) -> Checked {
        self.checked
    }

    pub(crate) fn vm_config_pairs(&self) -> Arc<[u8]> {
        Arc::clone(&self.vm_config)
    }

    pub(crate) fn plugin_config_pairs(&self) -> Arc<[u8]> {
        Arc::clone(&self.plugin_config)
    }

    pub(crate) fn root_id(&self) -> u32 {
        self.root_id
    }

    /// How long compiling the module took.
    pub(crate) fn compile_time(&self) -> Duration {
        self.compile_time
    }
}

impl fmt::Debug for Plugin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("protocol", &self.protocol)
            .field("md5", &self.md5)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The plugin configuration pairs a guest sees: `pairs` without any `max_frame_bytes` pair,
/// then that pair with the host's limit, so host and plugin enforce the same limit, then
/// the request for decode extras ([`codec_abi::DECODE_EXTRAS_KEY`]).
fn with_host_limits(
    plugin: &str,
    mut pairs: Vec<(String, String)>,
    limits: &Limits,
) -> Vec<(String, String)> {
    let (key, value) = limits.frame_limit_pair();
    pairs.retain(|(k, v)| {
        if *k != key {
            return true;
        }
        if *v != value {
            tracing::warn!(
                plugin,
                configured = %v,
                limit = %value,
                "plugin config {key} is replaced by the host's frame limit"
            );
        }
        false
    });
    pairs.push((key, value));
    // Plugins built with our SDK then append the decode extras (where the id sits, GoAway)
    // and save the host two guest calls per frame; others ignore the pair.
    pairs.retain(|(k, _)| k != codec_abi::DECODE_EXTRAS_KEY);
    pairs.push((codec_abi::DECODE_EXTRAS_KEY.to_owned(), "1".to_owned()));
    pairs
}

/// Lower-case hex MD5 of `bytes`.
pub(crate) fn hex_md5(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The first bytes of every binary WebAssembly module.
const WASM_MAGIC: &[u8] = b"\0asm";

/// Whether `bytes` could be the WebAssembly text format (what tests and hand-written
/// plugins use): UTF-8 whose first token, after whitespace and `;;` comments, is `(`.
pub(crate) fn looks_like_wat(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let mut rest = text;
    loop {
        rest = rest.trim_start();
        match rest.strip_prefix(";;") {
            Some(comment) => rest = comment.split_once('\n').map_or("", |(_, r)| r),
            None => return rest.starts_with('('),
        }
    }
}

/// What a file that is not a module starts with, for the error message.
pub(crate) fn describe_header(bytes: &[u8]) -> String {
    match bytes {
        [] => "an empty file".to_owned(),
        [0x7f, b'E', b'L', b'F', ..] => "an ELF executable".to_owned(),
        b if b
            .iter()
            .take(64)
            .all(|c| c.is_ascii_graphic() || c.is_ascii_whitespace()) =>
        {
            "text".to_owned()
        }
        b => {
            let head: Vec<String> = b.iter().take(4).map(|c| format!("{c:02x}")).collect();
            format!("bytes {}", head.join(" "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared_by_workers<T: Send + Sync>() {}

    #[test]
    fn a_plugin_is_shared_by_workers() {
        shared_by_workers::<Plugin>();
        shared_by_workers::<Arc<Plugin>>();
    }

    #[test]
    fn the_host_limit_replaces_any_configured_frame_limit() {
        let limits = Limits {
            max_frame_bytes: 1000,
            ..Limits::new()
        };
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let pairs = vec![
            pair("protocol", "x-bolt"),
            pair("max_frame_bytes", "67108864"),
            pair("pool_mode", "multiplex"),
            pair("max_frame_bytes", "1000"),
        ];
        assert_eq!(
            with_host_limits("p", pairs, &limits),
            [
                pair("protocol", "x-bolt"),
                pair("pool_mode", "multiplex"),
                pair("max_frame_bytes", "1000"),
                pair(codec_abi::DECODE_EXTRAS_KEY, "1"),
            ]
        );
        assert_eq!(
            with_host_limits("p", Vec::new(), &Limits::new().resolved()),
            [
                pair("max_frame_bytes", "4194304"),
                pair(codec_abi::DECODE_EXTRAS_KEY, "1")
            ]
        );
    }

    #[test]
    fn only_binary_modules_and_module_text_are_taken_for_plugins() {
        assert!(looks_like_wat(b";; a plugin\n  (module)"));
        assert!(!looks_like_wat(b"#!/bin/sh\necho hi"));
        assert!(!looks_like_wat(b"{\"json\": true}"));
        assert!(!looks_like_wat(b"\x7fELF\x02\x01"));
        assert_eq!(describe_header(b"\x7fELF\x02\x01"), "an ELF executable");
        assert_eq!(describe_header(b"#!/bin/sh\n"), "text");
        assert_eq!(describe_header(b""), "an empty file");
        assert_eq!(describe_header(&[1, 2, 3, 0xff]), "bytes 01 02 03 ff");
    }

    #[test]
    fn md5_is_lower_case_hex() {
        assert_eq!(hex_md5(b""), "d41d8cd98f00b204e9800998ecf8427e");
    }
}

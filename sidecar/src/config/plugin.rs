//! `wasm_global_plugins[]` (and inline `vm_config`s of codecs): which Wasm module to load,
//! how many instances, and the VM-config pairs handed to the guest (ABI spec (`docs/mosn-wasm-codec-abi.md`) §7).

use std::path::{Path, PathBuf};

use super::error::{invalid, ConfigError, Invalid, Warnings};
use super::json::Obj;
use super::md5::md5_hex;

/// A Wasm plugin to compile once and instantiate per worker.
#[derive(Debug, Clone)]
pub struct PluginConfig {
    /// `plugin_name`; inline codec plugins are named `codec:<protocol>`.
    pub name: String,
    /// Instances to create (`instance_num`, ≤ 0 → CPU count).
    pub instance_num: usize,
    /// The VM settings.
    pub vm: VmConfig,
    /// JSON path of this plugin, for messages.
    pub json_path: String,
}

/// Most instances of one codec plugin per worker (a typo in `instance_num` must not start
/// thousands of plugin instances).
pub const MAX_INSTANCES_PER_WORKER: usize = 64;

impl PluginConfig {
    /// How many instances of this plugin, as a codec, each of `workers` workers runs:
    /// `instance_num` (MOSN's count for the whole process) divided by the workers, rounded
    /// up, between 1 and [`MAX_INSTANCES_PER_WORKER`].
    pub fn instances_per_worker(&self, workers: usize) -> usize {
        self.instance_num
            .div_ceil(workers.max(1))
            .clamp(1, MAX_INSTANCES_PER_WORKER)
    }
}

/// `vm_config`.
#[derive(Debug, Clone)]
pub struct VmConfig {
    /// The engine (only wasmer).
    pub engine: Engine,
    /// `path` as written.
    pub path: String,
    /// `path` resolved against the working directory; the file exists.
    pub resolved_path: PathBuf,
    /// `url` as written (fetching is not supported; kept for the VM-config pairs).
    pub url: String,
    /// `md5` as written; when non-empty the file matched it.
    pub md5: String,
    /// `cpu`, accepted with no effect (as in MOSN).
    pub cpu: Option<i64>,
    /// `mem` as written (MOSN ignores it; the runtime may derive a memory limit from it).
    pub mem: Option<i64>,
}

impl VmConfig {
    /// The VM-configuration pairs (buffer type 6): the string fields of `vm_config` keyed by
    /// MOSN's Go field names, in field order, empty strings included (ABI spec (`docs/mosn-wasm-codec-abi.md`) §7).
    pub fn pairs(&self) -> Vec<(String, String)> {
        vec![
            ("Engine".to_owned(), self.engine.as_str().to_owned()),
            ("Path".to_owned(), self.path.clone()),
            ("Url".to_owned(), self.url.clone()),
            ("Md5".to_owned(), self.md5.clone()),
        ]
    }
}

/// `vm_config.engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// `wasmer`.
    Wasmer,
}

impl Engine {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Wasmer => "wasmer",
        }
    }
}

/// Parses a plugin entry's `vm_config` and `instance_num`; `o` is the object holding them
/// (a `wasm_global_plugins[i]` or a codec `config`).
pub(crate) fn parse_vm_and_instances(
    o: &mut Obj<'_>,
    name: String,
    work_dir: &Path,
    cpu_count: usize,
    warnings: &mut Warnings,
) -> Result<PluginConfig, ConfigError> {
    let json_path = o.path().to_owned();
    let instance_num = match o.i64("instance_num")? {
        Some(n) if n > 0 => usize::try_from(n).unwrap_or(cpu_count),
        _ => cpu_count,
    };
    let mut vm = o
        .obj("vm_config")?
        .ok_or_else(|| invalid(o.child("vm_config"), Invalid::Missing))?;
    let engine = match vm.str("engine")? {
        Some("wasmer") => Engine::Wasmer,
        Some("") | None => return Err(invalid(vm.child("engine"), Invalid::Missing)),
        Some(other) => {
            return Err(invalid(
                vm.child("engine"),
                Invalid::Unsupported {
                    value: other.to_owned(),
                    supported: "\"wasmer\"",
                },
            ))
        }
    };
    let path = vm.str("path")?.unwrap_or_default().to_owned();
    let url = vm.str("url")?.unwrap_or_default().to_owned();
    if path.is_empty() {
        return Err(invalid(
            vm.child("path"),
            if url.is_empty() {
                Invalid::Missing
            } else {
                Invalid::Rule("fetching plugins by url is not supported; set path")
            },
        ));
    }
    if !url.is_empty() {
        warnings.push(vm.child("url"), "url is ignored because path is set");
    }
    let md5 = vm.str("md5")?.unwrap_or_default().to_owned();
    let md5_ok = md5.is_empty() || (md5.len() == 32 && md5.bytes().all(|b| b.is_ascii_hexdigit()));
    if !md5_ok {
        return Err(invalid(vm.child("md5"), Invalid::Md5Format { value: md5 }));
    }
    let resolved_path = work_dir.join(&path);
    check_plugin_file(&resolved_path, &md5).map_err(|reason| invalid(vm.child("path"), reason))?;
    let cpu = vm.i64("cpu")?;
    let mem = vm.i64("mem")?;
    if let Some(m) = mem.filter(|&m| m < 0 || m > i64::from(codec_host::Limits::MAX_MEMORY_MIB)) {
        // MOSN's own default applies to 0 or absent; a negative or oversized cap is a typo.
        return Err(invalid(
            vm.child("mem"),
            Invalid::OutOfRange {
                value: m.to_string(),
                range: "0..=4096 MiB (0 or absent: 64 MiB)",
            },
        ));
    }
    vm.finish(warnings);
    Ok(PluginConfig {
        name,
        instance_num,
        vm: VmConfig {
            engine,
            path,
            resolved_path,
            url,
            md5,
            cpu,
            mem,
        },
        json_path,
    })
}

/// The plugin file must be a readable file; with an `md5`, its digest must match.
fn check_plugin_file(path: &Path, md5: &str) -> Result<(), Invalid> {
    let file_error = |source| Invalid::PluginFile {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(file_error)?;
    if !meta.is_file() {
        return Err(file_error(std::io::Error::other("not a regular file")));
    }
    if md5.is_empty() {
        return Ok(());
    }
    let bytes = std::fs::read(path).map_err(file_error)?;
    let actual = md5_hex(&bytes);
    if actual.eq_ignore_ascii_case(md5) {
        Ok(())
    } else {
        Err(Invalid::Md5Mismatch {
            path: path.to_owned(),
            expected: md5.to_owned(),
            actual,
        })
    }
}

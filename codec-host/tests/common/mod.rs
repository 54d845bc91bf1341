//! Helpers shared by the integration tests: plugin paths and configs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use codec_host::{Limits, Plugin, PluginConfig};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A test fixture under `tests/fixtures`.
pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// A real plugin built from `protocols/` (`bolt`, `misbehave`). Panics with the command to
/// run when it is missing: these tests never skip silently.
pub fn plugin_wasm(name: &str) -> PathBuf {
    let path = workspace().join(format!("target/wasm32-wasip1/plugin/{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `make plugins` (cargo build --target wasm32-wasip1 --profile plugin -p bolt -p misbehave)",
        path.display()
    );
    path
}

/// A config like the one the sidecar builds from MOSN's JSON.
pub fn config(name: &str, path: PathBuf) -> PluginConfig {
    PluginConfig {
        name: name.into(),
        wasm_path: path.clone(),
        vm_config: vec![
            ("Engine".into(), "wasmer".into()),
            ("Path".into(), path.display().to_string()),
            ("Url".into(), String::new()),
            ("Md5".into(), String::new()),
        ],
        plugin_config: vec![
            ("from_wasm_plugin".into(), name.into()),
            ("protocol".into(), "x-bolt".into()),
        ],
        root_id: 1,
        limits: Limits::new(),
    }
}

/// Loads a plugin with the default config.
pub fn load(name: &str, path: PathBuf) -> Arc<Plugin> {
    Plugin::load(config(name, path)).unwrap_or_else(|e| panic!("loading {name}: {e}"))
}

/// Writes `text` to a fresh file under the test temp dir and returns its path.
pub fn temp_file(name: &str, text: &str) -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, text).expect("write temp file");
    path
}

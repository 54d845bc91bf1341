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

/// Every captured Bolt frame: (`folder/file.bin`, bytes), sorted by name.
pub fn bolt_vectors() -> Vec<(String, Vec<u8>)> {
    let root = workspace().join("protocols/bolt/testdata");
    let mut out = Vec::new();
    for dir in std::fs::read_dir(&root).expect("testdata") {
        let dir = dir.expect("entry").path();
        if !dir.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&dir).expect("folder") {
            let file = file.expect("entry").path();
            if file.extension().is_some_and(|e| e == "bin") {
                let name = format!(
                    "{}/{}",
                    dir.file_name().unwrap().to_string_lossy(),
                    file.file_name().unwrap().to_string_lossy()
                );
                out.push((name, std::fs::read(&file).expect("read vector")));
            }
        }
    }
    out.sort();
    assert!(
        out.len() >= 14,
        "expected the 14 captured frames, found {}",
        out.len()
    );
    out
}

/// `expected-decode.json`: what MOSN's own plugin reports for each vector.
pub fn expected_decode() -> serde_json::Value {
    let text =
        std::fs::read_to_string(workspace().join("protocols/bolt/testdata/expected-decode.json"))
            .expect("expected-decode.json");
    serde_json::from_str(&text).expect("valid json")
}

/// A Bolt v1 request frame (type 1, cmdCode 1, codec 1) built by hand.
pub fn bolt_request(
    id: u32,
    timeout: u32,
    class: &[u8],
    headers: &[(&str, &str)],
    content: &[u8],
) -> Vec<u8> {
    let mut section = Vec::new();
    for (k, v) in headers {
        section.extend_from_slice(&(k.len() as u32).to_be_bytes());
        section.extend_from_slice(k.as_bytes());
        section.extend_from_slice(&(v.len() as u32).to_be_bytes());
        section.extend_from_slice(v.as_bytes());
    }
    let mut f = vec![0x01, 0x01, 0x00, 0x01, 0x01];
    f.extend_from_slice(&id.to_be_bytes());
    f.push(0x01);
    f.extend_from_slice(&timeout.to_be_bytes());
    f.extend_from_slice(&(class.len() as u16).to_be_bytes());
    f.extend_from_slice(&(section.len() as u16).to_be_bytes());
    f.extend_from_slice(&(content.len() as u32).to_be_bytes());
    f.extend_from_slice(class);
    f.extend_from_slice(&section);
    f.extend_from_slice(content);
    f
}

/// `frame` with its Bolt v1 request/response id (bytes 5..9) replaced.
pub fn with_bolt_id(frame: &[u8], id: u32) -> Vec<u8> {
    let mut f = frame.to_vec();
    f[5..9].copy_from_slice(&id.to_be_bytes());
    f
}

/// Decodes hex with any separators.
pub fn hex(s: &str) -> Vec<u8> {
    let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
    digits
        .chunks(2)
        .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
        .collect()
}

//! The built plugins (`make plugins`, i.e. `cargo build --target wasm32-wasip1 --profile
//! plugin -p bolt -p misbehave`) have the module shape of ABI §1/§3/§9: the exports MOSN and
//! our host call, with their signatures, a `malloc`, no start section, and only the three
//! `env` imports the SDK declares besides WASI.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use wasmparser::{ExternalKind, Parser, Payload, TypeRef, ValType};

fn plugin(name: &str) -> Vec<u8> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let path = target
        .join("wasm32-wasip1/plugin")
        .join(format!("{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the plugins first: cargo build --target wasm32-wasip1 --profile plugin -p bolt -p misbehave",
            path.display()
        )
    })
}

type Sig = (Vec<ValType>, Vec<ValType>);

struct Shape {
    exports: BTreeMap<String, Option<Sig>>,
    imports: BTreeMap<(String, String), Sig>,
    has_start_section: bool,
}

fn shape(wasm: &[u8]) -> Shape {
    let mut types: Vec<Sig> = Vec::new();
    let mut funcs: Vec<u32> = Vec::new();
    let mut imports = BTreeMap::new();
    let mut raw_exports = Vec::new();
    let mut has_start_section = false;
    for payload in Parser::new(0).parse_all(wasm) {
        match payload.expect("valid module") {
            Payload::TypeSection(reader) => {
                for ty in reader.into_iter_err_on_gc_types() {
                    let f = ty.expect("func type");
                    types.push((f.params().to_vec(), f.results().to_vec()));
                }
            }
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.expect("import");
                    if let TypeRef::Func(ty) = import.ty {
                        funcs.push(ty);
                        let sig = types[ty as usize].clone();
                        imports.insert((import.module.to_owned(), import.name.to_owned()), sig);
                    }
                }
            }
            Payload::FunctionSection(reader) => {
                for ty in reader {
                    funcs.push(ty.expect("function"));
                }
            }
            Payload::ExportSection(reader) => {
                for export in reader {
                    let export = export.expect("export");
                    raw_exports.push((export.name.to_owned(), export.kind, export.index));
                }
            }
            Payload::StartSection { .. } => has_start_section = true,
            _ => {}
        }
    }
    let exports = raw_exports
        .into_iter()
        .map(|(name, kind, index)| {
            let sig = match kind {
                ExternalKind::Func => Some(types[funcs[index as usize] as usize].clone()),
                _ => None,
            };
            (name, sig)
        })
        .collect();
    Shape {
        exports,
        imports,
        has_start_section,
    }
}

fn sig(params: &[ValType], results: &[ValType]) -> Option<Sig> {
    Some((params.to_vec(), results.to_vec()))
}

fn check(name: &str) {
    use ValType::{I32, I64};
    let shape = shape(&plugin(name));
    let want: BTreeMap<String, Option<Sig>> = [
        ("memory", None),
        ("_start", sig(&[], &[])),
        ("malloc", sig(&[I32], &[I32])),
        ("proxy_on_memory_allocate", sig(&[I32], &[I32])),
        ("proxy_abi_mosn_version_0_2_0", sig(&[], &[])),
        ("proxy_on_context_create", sig(&[I32, I32], &[])),
        ("proxy_on_vm_start", sig(&[I32, I32], &[I32])),
        ("proxy_on_configure", sig(&[I32, I32], &[I32])),
        ("proxy_on_delete", sig(&[I32], &[])),
        ("proxy_on_done", sig(&[I32], &[I32])),
        ("proxy_on_log", sig(&[I32], &[])),
        ("proxy_on_tick", sig(&[I32], &[])),
        ("proxy_decode_buffer_bytes", sig(&[I32, I32, I32], &[I32])),
        ("proxy_encode_buffer_bytes", sig(&[I32, I32, I32], &[I32])),
        ("proxy_keepalive_buffer_bytes", sig(&[I32, I64], &[I32])),
        (
            "proxy_reply_keepalive_buffer_bytes",
            sig(&[I32, I32, I32], &[I32]),
        ),
        (
            "proxy_hijack_buffer_bytes",
            sig(&[I32, I32, I32, I32], &[I32]),
        ),
        // This host's optional extension (codec_abi::optional_exports).
        ("rpc_sidecar_decode_bytes_needed", sig(&[I32], &[I32])),
        ("rpc_sidecar_response_code", sig(&[I32, I32], &[I32])),
        ("rpc_sidecar_decode_is_goaway", sig(&[I32], &[I32])),
        ("rpc_sidecar_goaway", sig(&[I32, I64], &[I32])),
        ("rpc_sidecar_check", sig(&[I32, I32, I32], &[I32])),
        ("rpc_sidecar_input_buffer", sig(&[I32], &[I32])),
        ("rpc_sidecar_id_field", sig(&[I32], &[I32])),
        ("rpc_sidecar_decode_reuses_context", sig(&[], &[])),
    ]
    .into_iter()
    .map(|(n, s)| (n.to_owned(), s))
    .collect();
    assert_eq!(shape.exports, want, "{name}: exports");
    assert!(
        !shape.has_start_section,
        "{name}: _start must be the only entry"
    );

    let env: BTreeMap<&str, Sig> = shape
        .imports
        .iter()
        .filter(|((module, _), _)| module == "env")
        .map(|((_, field), sig)| (field.as_str(), sig.clone()))
        .collect();
    let want_env: BTreeMap<&str, Sig> = [
        ("proxy_log", (vec![I32; 3], vec![I32])),
        ("proxy_get_buffer_bytes", (vec![I32; 5], vec![I32])),
        ("proxy_set_buffer_bytes", (vec![I32; 5], vec![I32])),
    ]
    .into_iter()
    .collect();
    assert_eq!(env, want_env, "{name}: env imports");
    for (module, field) in shape.imports.keys() {
        assert!(
            module == "env" || module == "wasi_snapshot_preview1",
            "{name}: unexpected import {module}.{field}"
        );
    }
    assert_eq!(
        shape
            .imports
            .get(&("wasi_snapshot_preview1".to_owned(), "fd_write".to_owned())),
        Some(&(vec![I32; 4], vec![I32])),
        "{name}: fd_write carries panic text"
    );
}

#[test]
fn bolt_plugin_has_the_abi_module_shape() {
    check("bolt");
}

#[test]
fn misbehave_plugin_has_the_abi_module_shape() {
    check("misbehave");
}

#[test]
fn misbehave_plugin_runs_its_own_protocol() {
    // misbehave links bolt's rlib, which has a `_start` too; its own must win. Then its
    // misbehaving decode is reachable from `_start` and survives dead-code elimination; with
    // bolt's `_start` it would be gone.
    let contains = |wasm: &[u8], text: &[u8]| wasm.windows(text.len()).any(|w| w == text);
    assert!(contains(&plugin("misbehave"), b"misbehave: trap requested"));
    assert!(!contains(&plugin("bolt"), b"misbehave: trap requested"));
}

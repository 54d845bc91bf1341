//! Loading plugins: what is refused, with which message, and what is accepted.

mod common;

use codec_host::{Limits, LoadError, Plugin};
use common::{config, fixture, temp_file};

fn toy_text() -> String {
    std::fs::read_to_string(fixture("toy.wat")).unwrap()
}

/// Loads a variant of the toy plugin made by replacing `from` with `to`.
fn load_variant(file: &str, from: &str, to: &str) -> Result<(), LoadError> {
    let text = toy_text();
    assert!(text.contains(from), "fixture lacks {from:?}");
    let path = temp_file(file, &text.replacen(from, to, 1));
    Plugin::load(config("variant", path)).map(|_| ())
}

#[test]
fn the_toy_plugin_loads() {
    let plugin = Plugin::load(config("toy", fixture("toy.wat"))).unwrap();
    assert_eq!(plugin.name(), "toy");
    assert_eq!(plugin.protocol(), "x-bolt");
    assert_eq!(plugin.limits(), Limits::new().resolved());
    assert_eq!(plugin.md5().len(), 32);
}

#[test]
fn refuses_a_module_without_the_marker() {
    let err = load_variant(
        "no-marker.wat",
        r#"(export "proxy_abi_mosn_version_0_2_0")"#,
        r#"(export "proxy_abi_revision_0_2_0")"#,
    )
    .unwrap_err();
    assert!(matches!(err, LoadError::MissingMarker { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("missing ABI marker export proxy_abi_mosn_version_0_2_0"),
        "{msg}"
    );
    assert!(msg.contains("proxy_abi_revision_0_2_0"), "{msg}");
}

#[test]
fn refuses_a_missing_export() {
    let err = load_variant(
        "no-hijack.wat",
        r#"(export "proxy_hijack_buffer_bytes")"#,
        r#"(export "not_hijack")"#,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin variant: missing export proxy_hijack_buffer_bytes"
    );
}

#[test]
fn refuses_an_unknown_import() {
    let err = load_variant(
        "unknown-import.wat",
        r#"(import "env" "proxy_set_buffer_bytes""#,
        r#"(import "env" "proxy_frobnicate" (func (param i32)))
  (import "env" "proxy_set_buffer_bytes""#,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin variant: unknown import env.proxy_frobnicate"
    );
    let err = load_variant(
        "unknown-module.wat",
        r#"(import "wasi_snapshot_preview1" "fd_write""#,
        r#"(import "wasi_ephemeral" "fd_write""#,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin variant: unknown import wasi_ephemeral.fd_write"
    );
}

#[test]
fn refuses_wrong_signatures() {
    let err = load_variant(
        "bad-keepalive.wat",
        r#"(func (export "proxy_keepalive_buffer_bytes") (param i32 i64)"#,
        r#"(func (export "proxy_keepalive_buffer_bytes") (param i32 i32)"#,
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin variant: export proxy_keepalive_buffer_bytes has type func (i32, i32) -> (i32), expected func (i32, i64) -> (i32)"
    );
    let err = load_variant(
        "bad-import.wat",
        r#"(func $fd_write (param i32 i32 i32 i32) (result i32))"#,
        r#"(func $fd_write (param i32 i32 i32) (result i32))"#,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains(
            "import wasi_snapshot_preview1.fd_write has type func (i32, i32, i32) -> (i32), expected func (i32, i32, i32, i32) -> (i32)"
        ),
        "{err}"
    );
}

#[test]
fn refuses_root_id_zero_and_bad_md5() {
    let mut cfg = config("toy", fixture("toy.wat"));
    cfg.root_id = 0;
    let err = Plugin::load(cfg).unwrap_err();
    assert!(
        err.to_string().contains("root_id must be non-zero"),
        "{err}"
    );

    let mut cfg = config("toy", fixture("toy.wat"));
    cfg.vm_config[3].1 = "00112233445566778899aabbccddeeff".into();
    let err = Plugin::load(cfg).unwrap_err();
    assert!(matches!(err, LoadError::Md5Mismatch { .. }), "{err}");

    let mut cfg = config("toy", fixture("toy.wat"));
    cfg.vm_config[3].1 = "xyz".into();
    assert!(matches!(Plugin::load(cfg), Err(LoadError::Config { .. })));
}

#[test]
fn accepts_the_right_md5_in_any_case() {
    let md5 = Plugin::load(config("toy", fixture("toy.wat")))
        .unwrap()
        .md5()
        .to_owned();
    let mut cfg = config("toy", fixture("toy.wat"));
    cfg.vm_config[3].1 = md5.to_ascii_uppercase();
    assert_eq!(Plugin::load(cfg).unwrap().md5(), md5);
}

#[test]
fn refuses_missing_files_and_garbage() {
    let err = Plugin::load(config("gone", fixture("does-not-exist.wasm"))).unwrap_err();
    assert!(matches!(err, LoadError::Read { .. }), "{err}");
    let err = Plugin::load(config("junk", temp_file("junk.wasm", "not wasm at all"))).unwrap_err();
    assert!(matches!(err, LoadError::NotWasm { .. }), "{err}");
    assert!(err.to_string().contains("found text"), "{err}");
    // Text that looks like the module text format goes to the compiler, which says why.
    let err =
        Plugin::load(config("bad-wat", temp_file("bad.wat", "(module (func $x"))).unwrap_err();
    assert!(matches!(err, LoadError::Compile { .. }), "{err}");
}

#[test]
fn refuses_a_memory_larger_than_the_cap() {
    let text = toy_text().replacen(
        r#"(memory (export "memory") 1)"#,
        r#"(memory (export "memory") 32)"#,
        1,
    );
    let mut cfg = config("big", temp_file("big-memory.wat", &text));
    cfg.limits = Limits::from_vm_config_mem(Some(1));
    let err = Plugin::load(cfg).unwrap_err();
    assert_eq!(
        err.to_string(),
        "plugin big: needs 2 MiB of memory at start, the limit is 1 MiB"
    );
}

#[test]
fn a_failing_start_up_is_loud() {
    // vm_start answers false: the plugin must not load.
    let err = load_variant(
        "vm-start-false.wat",
        "(call $read_config (i32.const 6) (local.get $size)))",
        "(drop (call $read_config (i32.const 6) (local.get $size))) (i32.const 0))",
    )
    .unwrap_err();
    assert!(matches!(err, LoadError::StartUp { .. }), "{err}");
    assert!(
        err.to_string().contains("proxy_on_vm_start rejected"),
        "{err}"
    );

    // _start traps.
    let err = load_variant(
        "start-traps.wat",
        r#"(func (export "_start") (global.set $started (i32.const 1)))"#,
        r#"(func (export "_start") unreachable)"#,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("plugin trapped in _start"),
        "{err}"
    );
}

//! Link settings of the plugin (Wasm only):
//! * exports wasi-libc's `malloc`, which the host calls to place inputs in guest memory
//!   (ABI §3; the SDK frees those blocks with the same libc `free`);
//! * lets this crate's own `_start` win over the one in the `bolt` rlib it wraps (bolt is
//!   also a plugin, and cargo builds one bolt library for both uses). The linker keeps the
//!   first definition, and rustc passes this crate's objects before its dependencies.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg-cdylib=--export=malloc");
        println!("cargo:rustc-link-arg-cdylib=--allow-multiple-definition");
    }
    println!("cargo:rerun-if-changed=build.rs");
}

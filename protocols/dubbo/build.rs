//! Exports wasi-libc's `malloc` from the plugin: the host calls it to place inputs in guest
//! memory (ABI §3), and the SDK frees those blocks with the same libc `free`.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

fn main() {
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-link-arg-cdylib=--export=malloc");
    }
    println!("cargo:rerun-if-changed=build.rs");
}

// Exports wasi-libc's `malloc` (the allocator the Rust standard library already uses on
// wasm32-wasip1) under its own name: hosts of ABI 0.1.0 allocate guest memory through `malloc`.
// A Rust `#[no_mangle] fn malloc` would clash with the libc symbol.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
        println!("cargo:rustc-cdylib-link-arg=--export=malloc");
    }
}

//! Rust guest SDK for MOSN wasm codec plugins (ABI `proxy_abi_mosn_version_0_2_0`).
//!
//! A plugin implements [`Protocol`] (and its [`Command`]) and names its constructor in
//! [`entry!`]; the SDK provides the exports of ABI §3 with the context state machine of §6,
//! byte for byte as the Go SDK (`proxy-wasm-sdk-go`) speaks it, so MOSN and our own host load
//! either. The same protocol code compiles natively, where the [`harness`] drives it through
//! the same dispatcher for ABI-level tests.
//!
//! Layers (as in proxy-wasm-rust-sdk): `hostcalls` (imports + safe wrappers), `dispatcher`
//! (exports, state machine), the traits authors implement. Unsafe code lives only in
//! `hostcalls`, the dispatcher's exports and `allocator`, all Wasm-only.
//!
//! A plugin crate (`crate-type = ["cdylib", "rlib"]`) needs two things besides its code:
//! ```ignore
//! // src/lib.rs
//! codec_sdk::entry!(MyProtocol::default);
//! // build.rs: export wasi-libc's malloc, which the host calls (ABI §3)
//! fn main() {
//!     if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("wasm32") {
//!         println!("cargo:rustc-link-arg-cdylib=--export=malloc");
//!     }
//! }
//! ```
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).
#![deny(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
#![warn(missing_docs)]

#[cfg(target_arch = "wasm32")]
mod allocator;
mod contexts;
pub mod dispatcher;
mod error;
pub mod harness;
mod header_rule;
pub mod header_section;
mod host;
#[cfg(target_arch = "wasm32")]
mod hostcalls;
pub mod log;
#[cfg(target_arch = "wasm32")]
mod panic_hook;
mod protocol;

pub use codec_abi::{Detect, FrameKind, HeaderMap};
pub use error::ProtocolError;
pub use header_rule::apply_header_edits;
pub use protocol::{Command, Decoded, Protocol};

/// Generates the plugin entry point `_start` (ABI §2), which registers `$factory` (a
/// `Fn() -> P` for a [`Protocol`] `P`, e.g. `Bolt::default`) as the constructor of each root
/// context's protocol. Expands to nothing outside Wasm, so the crate also builds natively.
///
/// ```ignore
/// codec_sdk::entry!(Bolt::default);
/// ```
#[macro_export]
macro_rules! entry {
    ($factory:expr) => {
        /// ABI §2: called once by the host before any other export.
        #[cfg(target_arch = "wasm32")]
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn _start() {
            $crate::dispatcher::start($factory);
        }
    };
}

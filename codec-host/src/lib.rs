//! Hosts protocol codecs for the sidecar: MOSN x-protocol Wasm plugins (ABI
//! `proxy_abi_mosn_version_0_2_0`) on wasmer, and native codecs built from the same protocol
//! code, behind one protocol-neutral [`Codec`] API; and proxy-wasm stream filters
//! ([`filter`]) on the same engine and limits.
//!
//! ```no_run
//! use codec_host::{Codec, Limits, Plugin, PluginConfig};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Once per process: read, check, compile.
//! let plugin = Plugin::load(PluginConfig {
//!     name: "wasm-bolt".into(),
//!     wasm_path: "bolt.wasm".into(),
//!     vm_config: vec![("Engine".into(), "wasmer".into()), ("Md5".into(), String::new())],
//!     plugin_config: vec![("protocol".into(), "x-bolt".into())],
//!     root_id: 1,
//!     limits: Limits::from_vm_config_mem(Some(100)),
//! })?;
//! // Once per worker thread: an instance of its own.
//! let mut codec = plugin.new_codec()?;
//! let mut buf = bytes::BytesMut::from(&b"...bytes from a connection..."[..]);
//! while let Some(mut frame) = codec.decode(&mut buf)? {
//!     let mut out = bytes::BytesMut::new();
//!     codec.encode(&mut frame, 1001, &mut out)?;
//! }
//! # Ok(()) }
//! ```
// Denied everywhere but in `guest_write`, whose one block copies into guest memory without
// wasmer's volatile copy (its SAFETY comment says why that is sound).
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod budget;
mod call_stats;
pub mod codec;
mod compile;
mod contexts;
pub mod error;
mod factory;
pub mod filter;
mod frame_slices;
mod guest_exports;
mod guest_output;
mod guest_write;
mod imports;
mod instance;
mod limits;
mod native;
mod native_codecs;
mod plugin;
mod shape;
mod signature;
mod vm;
mod wasm_codec;

pub use call_stats::{GuestCalls, TIME_EVERY};
pub use codec::ContextStats;
pub use codec::{
    detect_by_decode, Codec, Detect, Frame, FrameKind, FrameParts, FrameState, HeaderMap,
};
pub use error::{CodecError, LoadError};
pub use limits::Limits;
pub use native::NativeCodec;
pub use native_codecs::{native_codec, native_codec_names};
pub use plugin::{Plugin, PluginConfig};
pub use wasm_codec::{PluginStats, WasmCodec};

//! Hosts protocol codecs for the sidecar: MOSN x-protocol Wasm plugins (ABI
//! `proxy_abi_mosn_version_0_2_0`) on wasmer, and native codecs built from the same protocol
//! code, behind one protocol-neutral [`Codec`] API.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod codec;
pub mod error;

pub use codec::{Codec, Frame, FrameKind, FrameParts, FrameState, HeaderMap};
pub use error::CodecError;

//! Apache Dubbo's Dubbo 2 wire protocol (`dubbo://`) as a codec plugin (`dubbo`) for the MOSN
//! wasm codec ABI, and the very same code as a native codec through the `codec-sdk` traits.
//!
//! Built for `wasm32-wasip1` (`cargo build --target wasm32-wasip1 --profile plugin -p dubbo`)
//! it is `dubbo.wasm`; natively, [`Dubbo`] is a [`codec_sdk::Protocol`].
//!
//! Modules, bottom to top: [`frame`] (the 16-byte header), [`hessian`] (a Hessian 2.0 reader
//! that skips values by length), [`body`] (what a proxy reads from a request body),
//! [`status`] (response statuses and the proxy code mapping), the command and the codec.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod body;
mod codec;
mod command;
mod error;
pub mod frame;
pub mod hessian;
pub mod status;

pub use codec::{Dubbo, DEFAULT_MAX_FRAME_BYTES, MAX_FRAME_BYTES_KEY, MIN_MAX_FRAME_BYTES, NAME};
pub use command::{DubboCommand, DUBBO_VERSION, METHOD, SERVICE, VERSION};
pub use error::{DubboError, HessianError};

codec_sdk::entry!(Dubbo::default);

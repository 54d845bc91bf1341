//! SOFA Bolt v1/v2 (xprotocol spec (`docs/xprotocol-proxy-and-bolt.md`) §1) as a codec plugin
//! (`x-bolt`) for the MOSN wasm codec ABI, and the very same code as a native codec through the
//! `codec-sdk` traits.
//!
//! Built for `wasm32-wasip1` (`cargo build --target wasm32-wasip1 --profile plugin -p bolt`)
//! it is `bolt.wasm`; natively, [`Bolt`] is a [`codec_sdk::Protocol`].
#![deny(unsafe_code)]
#![warn(missing_docs)]

mod codec;
mod command;
mod error;
pub mod frame;
pub mod status;

pub use codec::{Bolt, DEFAULT_MAX_FRAME_BYTES, MAX_FRAME_BYTES_KEY, MIN_MAX_FRAME_BYTES, NAME};
pub use command::BoltCommand;
pub use error::BoltError;

codec_sdk::entry!(Bolt::default);

//! The three host services the dispatcher needs (log, read a buffer, report a buffer),
//! behind a trait so the same dispatcher runs inside Wasm (imports, `hostcalls`) and natively
//! (the recording host of `harness`).
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use codec_abi::{BufferType, LogLevel};

/// A host call that did not succeed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HostError {
    /// The host returned a non-zero status (ABI §0).
    #[error("host returned status {0}")]
    Status(u32),
    /// The host returned data the guest cannot use (e.g. a null pointer with a length).
    #[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
    #[error("host returned an unusable buffer: {0}")]
    BadReturn(&'static str),
}

/// The host seen from the guest.
pub(crate) trait Host {
    /// Logs `message` at `level` (`proxy_log`); failures are ignored, a log line must never
    /// fail a codec call.
    fn log(&mut self, level: LogLevel, message: &str);

    /// Reads up to `max_size` bytes of `buffer` from its start (`proxy_get_buffer_bytes`).
    fn get_buffer(&mut self, buffer: BufferType, max_size: usize) -> Result<Vec<u8>, HostError>;

    /// Reports `data` as the whole content of `buffer` (`proxy_set_buffer_bytes`).
    fn set_buffer(&mut self, buffer: BufferType, data: &[u8]) -> Result<(), HostError>;
}

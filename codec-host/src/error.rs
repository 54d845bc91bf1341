//! Error types of the codec host.

use codec_abi::LayoutError;

/// A codec operation that failed. Any error from `decode` means the connection's byte stream
/// can no longer be trusted; errors from the other operations fail only that frame.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The plugin (or native codec) rejected the bytes or the command.
    #[error("{call} rejected by the codec (status {status})")]
    Rejected {
        /// The ABI call (e.g. `proxy_decode_buffer_bytes`).
        call: &'static str,
        /// The status the plugin returned (ABI §0).
        status: u32,
    },
    /// A native codec's own protocol error.
    #[error("protocol error: {0}")]
    Protocol(String),
    /// The plugin trapped (a guest panic, `unreachable`, out-of-bounds access, …). The
    /// instance was replaced; `message` carries what the guest printed before trapping.
    #[error("plugin trapped in {call}: {message}")]
    Trap {
        /// The export being called.
        call: &'static str,
        /// The trap and the guest's last words (its panic text), if any.
        message: String,
    },
    /// The call used up its CPU budget (metering) and was stopped; the instance was replaced.
    #[error("plugin exceeded its CPU budget in {call}")]
    CpuExhausted {
        /// The export being called.
        call: &'static str,
    },
    /// The plugin returned success without reporting its result buffer.
    #[error("{call} returned no result")]
    NoResult {
        /// The export being called.
        call: &'static str,
    },
    /// The plugin reported a result that does not parse.
    #[error("{call} reported a malformed result: {source}")]
    BadResult {
        /// The export being called.
        call: &'static str,
        /// What was wrong with the layout.
        #[source]
        source: LayoutError,
    },
    /// The frame's plugin context belonged to an instance that has since been replaced.
    #[error("the frame's plugin context was lost when its instance was replaced")]
    ContextLost,
    /// The operation does not apply to this frame (e.g. replying to a non-heartbeat).
    #[error("{0}")]
    WrongFrame(&'static str),
    /// The frame or an input exceeds a configured size limit.
    #[error("{what} of {len} bytes exceeds the limit of {limit}")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// The plugin instance could not be (re)created.
    #[error("plugin instance unavailable: {0}")]
    Instance(String),
}

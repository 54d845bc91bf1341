//! Why Dubbo bytes cannot be decoded or encoded, or a configuration is refused.

use codec_sdk::ProtocolError;

/// A Hessian 2.0 body that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HessianError {
    /// The body ends inside a value.
    #[error("hessian2 value truncated at offset {at}")]
    Truncated {
        /// Offset in the body.
        at: usize,
    },
    /// A code byte that cannot start what is expected there.
    #[error("unexpected hessian2 code {code:#04x} at offset {at} (wanted {wanted})")]
    Unexpected {
        /// Offset in the body.
        at: usize,
        /// The code byte.
        code: u8,
        /// What the grammar allows there.
        wanted: &'static str,
    },
    /// A length or index that is negative.
    #[error("negative hessian2 {what} {value} at offset {at}")]
    Negative {
        /// Offset in the body.
        at: usize,
        /// Which count.
        what: &'static str,
        /// The value read.
        value: i32,
    },
    /// An object naming a class definition that was not given.
    #[error("hessian2 object at offset {at} names undefined class {class}")]
    UnknownClass {
        /// Offset in the body.
        at: usize,
        /// The class index.
        class: usize,
    },
    /// A string that is not UTF-8 (or ends inside a character).
    #[error("hessian2 string at offset {at} is not UTF-8")]
    BadUtf8 {
        /// Offset in the body.
        at: usize,
    },
    /// Lists, maps or objects nested deeper than the reader allows.
    #[error("hessian2 values nested too deep at offset {at}")]
    TooDeep {
        /// Offset in the body.
        at: usize,
    },
    /// A parameter-types descriptor that is not a JVM method descriptor list.
    #[error("bad parameter types descriptor {0:?}")]
    BadDescriptor(String),
    /// Bytes left over after the attachments map.
    #[error("{0} bytes after the attachments map")]
    TrailingBytes(usize),
}

/// A Dubbo protocol error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DubboError {
    /// The first two bytes are not the magic 0xdabb.
    #[error("bad magic {0:#06x} (a dubbo frame starts with 0xdabb)")]
    BadMagic(u16),
    /// The body length field is negative as a Java int.
    #[error("negative body length {0}")]
    NegativeLength(i32),
    /// The frame announces more bytes than the configured limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Announced frame length (header + body).
        len: u64,
        /// The limit (`max_frame_bytes`).
        max: usize,
    },
    /// A request body that does not parse, met while rebuilding a frame.
    #[error("request body: {0}")]
    Body(#[from] HessianError),
    /// Headers were edited on a frame whose body cannot carry them.
    #[error("cannot apply header edits to a {0}: only Hessian2 requests carry attachments")]
    CannotEdit(&'static str),
    /// A status that does not fit Dubbo's status byte.
    #[error("status {0} does not fit a dubbo response")]
    BadStatus(u32),
    /// A body too long for the 32-bit length field.
    #[error("body of {0} bytes does not fit the length field")]
    BodyTooLong(usize),
    /// A plugin configuration value is invalid.
    #[error("bad configuration {key} = {value:?}: {reason}")]
    BadConfig {
        /// The key.
        key: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl From<DubboError> for ProtocolError {
    fn from(err: DubboError) -> Self {
        ProtocolError::new(err.to_string())
    }
}

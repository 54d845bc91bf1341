//! Why a Bolt frame cannot be decoded or encoded, or a configuration is refused.

use codec_sdk::ProtocolError;

/// A Bolt protocol error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BoltError {
    /// The first byte is neither 0x01 (v1) nor 0x02 (v2).
    #[error("bad protocol byte {0:#04x}")]
    BadProtocol(u8),
    /// A v2 frame's protocol version (ver1) is neither 1 nor 2.
    #[error("bad bolt v2 protocol version {0}")]
    BadVersion(u8),
    /// The command type is not 0 (response), 1 (request) or 2 (oneway).
    #[error("unknown command type {0:#04x}")]
    UnknownType(u8),
    /// The cmdCode is not valid for the command type.
    #[error("unknown cmdCode {code} for command type {cmd_type}")]
    UnknownCmdCode {
        /// The command type byte.
        cmd_type: u8,
        /// The cmdCode.
        code: u16,
    },
    /// The frame announces more bytes than the configured limit.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Announced frame length.
        len: u64,
        /// The limit (`max_frame_bytes`).
        max: usize,
    },
    /// A v2 frame's CRC32 does not match its bytes.
    #[error("bad CRC32: frame says {expected:#010x}, bytes give {actual:#010x}")]
    BadCrc {
        /// The CRC carried by the frame.
        expected: u32,
        /// The CRC of the bytes.
        actual: u32,
    },
    /// A section is too long for its length field (encode).
    #[error("{what} of {len} bytes does not fit its length field (max {max})")]
    SectionTooLong {
        /// The section.
        what: &'static str,
        /// Its length.
        len: usize,
        /// The largest length the field holds.
        max: usize,
    },
    /// A status that does not fit Bolt's 16-bit status field.
    #[error("status {0} does not fit a bolt response")]
    BadStatus(u32),
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

impl From<BoltError> for ProtocolError {
    fn from(err: BoltError) -> Self {
        ProtocolError::new(err.to_string())
    }
}

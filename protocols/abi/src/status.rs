//! Status codes and enumerations shared by imports and exports (§0).
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

/// Result of an ABI call, as an `i32` on the wire (§0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Status {
    /// Success.
    Ok = 0,
    /// The requested item does not exist.
    NotFound = 1,
    /// Bad argument; from keepalive: the plugin has no keepalive.
    BadArgument = 2,
    /// A pointer/length pair was outside guest memory, or malloc/copy failed.
    InvalidMemoryAccess = 6,
    /// A codec export was given an empty input.
    Empty = 7,
    /// Compare-and-swap mismatch.
    CasMismatch = 8,
    /// Result mismatch.
    ResultMismatch = 9,
    /// Any codec failure inside the guest.
    InternalFailure = 10,
    /// The connection is broken.
    BrokenConnection = 11,
    /// The host does not implement this call.
    Unimplemented = 12,
    /// Decode only: the frame is incomplete (MOSN extension).
    NeedMoreData = 99,
}

impl Status {
    /// Maps a raw status; unknown values are `None`.
    pub fn from_raw(raw: u32) -> Option<Status> {
        Some(match raw {
            0 => Status::Ok,
            1 => Status::NotFound,
            2 => Status::BadArgument,
            6 => Status::InvalidMemoryAccess,
            7 => Status::Empty,
            8 => Status::CasMismatch,
            9 => Status::ResultMismatch,
            10 => Status::InternalFailure,
            11 => Status::BrokenConnection,
            12 => Status::Unimplemented,
            99 => Status::NeedMoreData,
            _ => return None,
        })
    }

    /// The raw value passed across the ABI.
    pub fn raw(self) -> u32 {
        self as u32
    }
}

/// Buffer types named by `proxy_get_buffer_bytes` / `proxy_set_buffer_bytes` (§0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum BufferType {
    /// The VM configuration (pairs, §7).
    VmConfiguration = 6,
    /// The plugin configuration (pairs, §7).
    PluginConfiguration = 7,
    /// Decode result (§5.4), guest → host.
    DecodeData = 13,
    /// Encode result (§5.5), guest → host.
    EncodeData = 14,
}

impl BufferType {
    /// Maps a raw buffer type; types a codec host does not serve are `None`.
    pub fn from_raw(raw: u32) -> Option<BufferType> {
        Some(match raw {
            6 => BufferType::VmConfiguration,
            7 => BufferType::PluginConfiguration,
            13 => BufferType::DecodeData,
            14 => BufferType::EncodeData,
            _ => return None,
        })
    }
}

/// Header map types of proxy-wasm 0.1.0; a codec host serves none of them (§4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum MapType {
    /// HTTP request headers.
    HttpRequestHeaders = 0,
}

/// Log levels of `proxy_log` (§0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u32)]
pub enum LogLevel {
    /// Trace.
    Trace = 0,
    /// Debug.
    Debug = 1,
    /// Info.
    Info = 2,
    /// Warn.
    Warn = 3,
    /// Error.
    Error = 4,
    /// Critical.
    Critical = 5,
    /// Fatal (the Go SDK logs codec errors at this level).
    Fatal = 6,
}

impl LogLevel {
    /// Maps a raw level; values above 6 are treated as [`LogLevel::Fatal`].
    pub fn from_raw(raw: u32) -> LogLevel {
        match raw {
            0 => LogLevel::Trace,
            1 => LogLevel::Debug,
            2 => LogLevel::Info,
            3 => LogLevel::Warn,
            4 => LogLevel::Error,
            5 => LogLevel::Critical,
            _ => LogLevel::Fatal,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_round_trips_and_rejects_unknown() {
        for raw in [0, 1, 2, 6, 7, 8, 9, 10, 11, 12, 99] {
            assert_eq!(Status::from_raw(raw).map(Status::raw), Some(raw));
        }
        assert_eq!(Status::from_raw(3), None);
        assert_eq!(Status::from_raw(100), None);
    }
}

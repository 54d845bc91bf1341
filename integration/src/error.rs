//! The error types of this crate, one enum per tool: framing, client, process harness, load
//! generator.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Bytes that are not a Bolt v1 frame this framer understands, or a frame that cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The first byte is not `0x01` (Bolt v1). Bolt v2 (`0x02`) is deliberately not framed here.
    #[error("unsupported protocol byte {0:#04x} (only Bolt v1, 0x01, is framed)")]
    UnsupportedProtocol(u8),
    /// The type byte is none of response `0x00`, request `0x01`, oneway `0x02`.
    #[error("unknown Bolt frame type {0:#04x}")]
    UnknownType(u8),
    /// The lengths in the fixed part add up to more than the configured limit.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Total frame length announced by the fixed part.
        len: u64,
        /// The limit in force.
        max: usize,
    },
    /// A buffer handed over as one frame does not have the length its fixed part announces.
    #[error("frame buffer is {have} bytes but its fixed part announces {need}")]
    LengthMismatch {
        /// Bytes in the buffer.
        have: usize,
        /// Bytes the fixed part announces.
        need: u64,
    },
    /// The header section ends in the middle of a key or value.
    #[error("header map truncated at offset {offset}")]
    HeaderTruncated {
        /// Offset inside the header section where the truncated field starts.
        offset: usize,
    },
    /// A section is too long for its length field.
    #[error("{field} of {len} bytes does not fit its {max}-byte length field")]
    FieldTooLong {
        /// Which section.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The largest encodable length.
        max: u64,
    },
}

/// Why a client connection ended; delivered to every call that was in flight.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloseReason {
    /// The peer closed the connection (read returned end of stream).
    #[error("peer closed the connection")]
    PeerClosed,
    /// Reading or writing failed.
    #[error("socket error: {0}")]
    Io(io::ErrorKind),
    /// The peer sent bytes that are not a Bolt v1 frame.
    #[error("peer sent an unparsable frame: {0}")]
    Protocol(WireError),
    /// The client was closed locally.
    #[error("closed locally")]
    Local,
}

/// A failed client operation.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connect failed.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// Target address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The connection ended before the answer arrived.
    #[error("connection lost: {0}")]
    ConnectionLost(#[source] CloseReason),
    /// No answer within the call's deadline.
    #[error("no answer to request id {id} within {after:?}")]
    Timeout {
        /// The request id.
        id: u32,
        /// The deadline that passed.
        after: Duration,
    },
    /// A call with this id is already waiting for its answer on this connection.
    #[error("request id {0} is already in flight on this connection")]
    DuplicateId(u32),
    /// The request could not be encoded.
    #[error("encoding the request: {0}")]
    Encode(#[source] WireError),
    /// The peer answered, but not with what the request asks for.
    #[error("unexpected answer: {0}")]
    BadAnswer(String),
    /// The peer sent a GoAway on this connection: no new calls go out on it (calls already
    /// in flight still get their answers); connect anew.
    #[error("the peer sent a GoAway: no new calls on this connection")]
    GoAway,
}

/// A failure to start, probe or stop a child process.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// The binary to run does not exist.
    #[error("{name} binary not found (tried {tried:?}); {hint}")]
    BinaryMissing {
        /// Binary name.
        name: &'static str,
        /// Paths looked at.
        tried: Vec<PathBuf>,
        /// What to do about it.
        hint: &'static str,
    },
    /// A file system or process operation failed.
    #[error("{action} {path:?}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or binary involved.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The config lacks something the harness needs.
    #[error("config: {0}")]
    Config(&'static str),
    /// The child exited while the harness waited for it to become ready.
    #[error("{name} exited early with {status}; log {log:?}:\n{tail}")]
    ExitedEarly {
        /// Which child.
        name: &'static str,
        /// Its exit status.
        status: ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log.
        tail: String,
    },
    /// The child did not accept connections on all its listeners in time.
    #[error("{name} not ready after {after:?} (waiting for {pending:?}); log {log:?}:\n{tail}")]
    NotReady {
        /// Which child.
        name: &'static str,
        /// How long the harness waited.
        after: Duration,
        /// Addresses that still refused connections.
        pending: Vec<SocketAddr>,
        /// Its log file.
        log: PathBuf,
        /// The last lines of the log.
        tail: String,
    },
    /// The child printed something other than what the harness expects.
    #[error("{name} printed an unexpected line {line:?}")]
    UnexpectedOutput {
        /// Which child.
        name: &'static str,
        /// The line.
        line: String,
    },
    /// The child did not exit in time.
    #[error("{name} (pid {pid}) still running after {after:?}")]
    StillRunning {
        /// Which child.
        name: &'static str,
        /// Its pid.
        pid: u32,
        /// How long the harness waited.
        after: Duration,
    },
}

/// A load-generator run that could not start or was set up wrongly.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Target is not a loopback address; the generator only loads this machine.
    #[error("refusing non-loopback target {0} (the load generator only targets this machine)")]
    NonLoopback(SocketAddr),
    /// The options contradict each other or are out of range.
    #[error("bad options: {0}")]
    Options(&'static str),
    /// The first connection to the target failed.
    #[error("connecting to {addr}: {source}")]
    Connect {
        /// Target address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The request template could not be encoded.
    #[error("encoding the request template: {0}")]
    Encode(#[source] WireError),
    /// A worker thread or the runtime could not be started.
    #[error("starting the generator: {0}")]
    Runtime(#[source] io::Error),
}

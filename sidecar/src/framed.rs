//! One framed connection, downstream or upstream alike (mini-redis's `Connection` is the
//! model): a TCP socket whose read side is decoded into [`Frame`]s through the worker's codec,
//! and whose write side is a [`FrameSink`] that encodes frames into the connection's
//! [`WriteQueue`], drained by one writer task.
//!
//! The read side belongs to one task (the connection's handler); the sink is cloned into
//! everything that answers on the connection (request tasks, heartbeat replies, hijacks).
//! Closing is one-way and observable: [`FrameSink::closed`] fires once the connection is
//! over, whoever ended it (a local close, a write error, an overflowing queue).

use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

use bytes::BytesMut;
use codec_host::{Codec, CodecError, Frame};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tracing::debug;

use crate::write_queue::WriteQueue;

/// A worker's codec, shared by the worker's connections (single-threaded).
pub type CodecRef = Rc<RefCell<Box<dyn Codec>>>;

/// Read buffer: initial size, and the least free space kept before each read.
const READ_CHUNK: usize = 16 * 1024;
const READ_MIN_FREE: usize = 4096;

/// Why a frame was not queued.
#[derive(Debug)]
pub enum SendError {
    /// The connection is closed (or closing): nothing was queued.
    Closed,
    /// The codec could not build the bytes: nothing was queued.
    Codec(CodecError),
    /// The protocol has no such frame (a keepalive for a protocol without heartbeats).
    Unsupported,
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed => f.write_str("connection closed"),
            SendError::Codec(e) => write!(f, "{e}"),
            SendError::Unsupported => f.write_str("the protocol has no keepalive"),
        }
    }
}

impl std::error::Error for SendError {}

/// Why reading frames stopped.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The socket failed.
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
    /// The codec rejected the bytes; the connection cannot be trusted any more.
    #[error("codec rejected the bytes: {0}")]
    Codec(#[from] CodecError),
}

/// The write side of a framed connection: encodes frames into its queue. Cheap to clone.
#[derive(Clone)]
pub struct FrameSink {
    codec: CodecRef,
    queue: WriteQueue,
    closed: CancellationToken,
}

impl FrameSink {
    /// Encodes `frame` with `id` as its protocol id (the id rewrite) and queues it.
    ///
    /// # Errors
    /// [`SendError::Closed`] once the connection is closed, [`SendError::Codec`] when the
    /// codec refuses the frame; nothing is queued either way.
    pub fn send(&self, frame: &mut Frame, id: u64) -> Result<(), SendError> {
        self.queue_with(|codec, buf| codec.encode(frame, id, buf))
    }

    /// Queues the ack of a decoded heartbeat request.
    ///
    /// # Errors
    /// As [`FrameSink::send`].
    pub fn reply_keepalive(&self, request: &mut Frame) -> Result<(), SendError> {
        self.queue_with(|codec, buf| codec.reply_keepalive(request, buf))
    }

    /// Queues the protocol's answer to `request` on the server's behalf, for the proxy's
    /// HTTP-like `code`, with `id` as its protocol id.
    ///
    /// # Errors
    /// As [`FrameSink::send`].
    pub fn hijack(&self, request: &Frame, code: u32, id: u64) -> Result<(), SendError> {
        self.queue_with(|codec, buf| codec.hijack(request, code, id, buf))
    }

    /// Builds a heartbeat request with `id` and queues it.
    ///
    /// # Errors
    /// [`SendError::Unsupported`] when the protocol has no keepalive; otherwise as
    /// [`FrameSink::send`].
    pub fn keepalive(&self, id: u64) -> Result<(), SendError> {
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        let heartbeat = self.codec.borrow_mut().keepalive(id);
        match heartbeat {
            Ok(Some(bytes)) if self.queue.push(&bytes) => Ok(()),
            Ok(Some(_)) => Err(SendError::Closed),
            Ok(None) => Err(SendError::Unsupported),
            Err(e) => Err(SendError::Codec(e)),
        }
    }

    fn queue_with(
        &self,
        fill: impl FnOnce(&mut dyn Codec, &mut BytesMut) -> Result<(), CodecError>,
    ) -> Result<(), SendError> {
        let codec = &self.codec;
        match self
            .queue
            .push_with(|buf| fill(codec.borrow_mut().as_mut(), buf))
        {
            Ok(true) => Ok(()),
            // Refused: closed before, or the peer stopped reading and the queue overflowed
            // (the writer then flushes what it has and ends the connection).
            Ok(false) => Err(SendError::Closed),
            Err(e) => Err(SendError::Codec(e)),
        }
    }

    /// Ends the connection: what is queued is flushed, later sends are refused, and
    /// [`FrameSink::closed`] fires.
    pub fn close(&self) {
        self.queue.close();
        self.closed.cancel();
    }

    /// True once the connection is closed (by us, a write error or an overflowing queue).
    pub fn is_closed(&self) -> bool {
        self.closed.is_cancelled()
    }

    /// Completes once the connection is closed.
    pub fn closed(&self) -> WaitForCancellationFuture<'_> {
        self.closed.cancelled()
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.queue.pending()
    }
}

/// A framed connection: the read half, its buffer, the codec and the write side.
pub struct FramedConn {
    read: OwnedReadHalf,
    buf: BytesMut,
    sink: FrameSink,
    writer: JoinHandle<()>,
    on_read: Box<dyn Fn(usize)>,
    last_read: Instant,
}

impl FramedConn {
    /// Frames `stream` with `codec` and starts its writer task on the current worker.
    /// `on_read` is told the size of every read (byte counters, activity timestamps).
    pub fn new(stream: TcpStream, codec: CodecRef, on_read: impl Fn(usize) + 'static) -> Self {
        let (read, write) = stream.into_split();
        let sink = FrameSink {
            codec,
            queue: WriteQueue::new(),
            closed: CancellationToken::new(),
        };
        let writer = {
            let sink = sink.clone();
            tokio::task::spawn_local(async move {
                if let Err(e) = sink.queue.run_writer(write).await {
                    debug!(cause = %e, "write failed");
                }
                // Closed by us, by an overflowing queue, or by a write error: the
                // connection is over either way.
                sink.closed.cancel();
            })
        };
        FramedConn {
            read,
            buf: BytesMut::with_capacity(READ_CHUNK),
            sink,
            writer,
            on_read: Box::new(on_read),
            last_read: Instant::now(),
        }
    }

    /// The write side, to clone into whatever answers on this connection.
    pub fn sink(&self) -> &FrameSink {
        &self.sink
    }

    /// When bytes last arrived (the connection's start before any did).
    pub fn last_read(&self) -> Instant {
        self.last_read
    }

    /// The next decoded frame; `Ok(None)` when the peer closed its side. Frames already
    /// buffered are returned before reading again.
    ///
    /// Cancel-safe: dropped while waiting for bytes, it loses nothing, so it can sit in a
    /// `select!` beside timers.
    ///
    /// # Errors
    /// [`ReadError`] when the socket fails or the codec rejects the bytes.
    pub async fn next_frame(&mut self) -> Result<Option<Frame>, ReadError> {
        loop {
            let decoded = self.sink.codec.borrow_mut().decode(&mut self.buf)?;
            if let Some(frame) = decoded {
                return Ok(Some(frame));
            }
            if self.buf.capacity() - self.buf.len() < READ_MIN_FREE {
                self.buf.reserve(READ_CHUNK);
            }
            let n = self.read.read_buf(&mut self.buf).await?;
            if n == 0 {
                return Ok(None);
            }
            self.last_read = Instant::now();
            (self.on_read)(n);
        }
    }

    /// Closes the connection and waits for the writer to flush what is queued.
    pub async fn close(self) {
        self.sink.close();
        let _ = self.writer.await;
    }
}

//! One framed connection, downstream or upstream alike (mini-redis's `Connection` is the
//! model): a TCP socket whose read side is decoded into [`Frame`]s through the worker's codec,
//! and whose write side is a [`FrameSink`] that encodes frames into the connection's
//! [`WriteQueue`], drained by one writer task.
//!
//! The read side belongs to one task (the connection's handler); the sink is cloned into
//! everything that answers on the connection (request tasks, heartbeat replies, hijacks).
//! Closing is one-way and observable: [`FrameSink::closed`] fires once the connection is
//! over, whoever ended it (a local close, a write error, an overflowing queue).
//!
//! The read side protects the process from its peer ([`ReadLimits`]):
//! * decode work is proportional to the bytes that arrive: once the codec knows how long the
//!   incomplete frame is ([`Codec::bytes_needed`]) it is not asked again before that many
//!   bytes are buffered; when it cannot tell, a large partial frame is retried only after
//!   its buffer doubled or a back-off (doubling, capped) passed;
//! * a frame that started must complete within `frame_timeout`, however slowly its bytes
//!   trickle in ([`ReadError::FrameTimeout`]);
//! * nothing is read while the write queue is over its high-water mark (a peer that does not
//!   read its responses is not served more), until it drains under the low-water mark;
//! * what the buffers hold is reported to the overload manager, which may shed the
//!   connection (its sink then reads closed; [`FramedConn::was_shed`]); large buffers are
//!   given back once empty.

use std::cell::RefCell;
use std::fmt;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use codec_host::{Codec, CodecError, Frame};
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};
use tracing::debug;

use crate::overload::ConnLoad;
use crate::write_queue::{WriteQueue, MAX_PENDING};

/// A worker's codec, shared by the worker's connections (single-threaded).
pub type CodecRef = Rc<RefCell<Box<dyn Codec>>>;

/// Read buffer: initial size, and the least free space kept before each read.
const READ_CHUNK: usize = 16 * 1024;
const READ_MIN_FREE: usize = 4096;
/// Most frames one [`FramedConn::read_frames`] call decodes with a Wasm codec before the
/// worker's other tasks run (and encode them, releasing their guest contexts). Measured with
/// our bolt.wasm at 64 calls in flight: +34 % calls/s and a third off the p50, for ~18 % more
/// CPU per call (smaller write batches); with TinyGo plugins, whose collector walks every
/// live context, the bound is what keeps a collection cheap.
pub const DECODE_BATCH: usize = 16;
/// Longest wait for a closing connection's last bytes to be written.
pub const CLOSE_FLUSH_TIMEOUT: Duration = Duration::from_secs(1);
/// An empty read buffer grown past this (by a large frame) is replaced by a fresh one.
const KEEP_READ_CAPACITY: usize = 256 * 1024;
/// Partial frames shorter than this are re-decoded on every read (cheap); longer ones of a
/// codec that cannot say their length wait for the buffer to double or a back-off.
const BACKOFF_FROM: usize = 64 * 1024;
/// First and longest back-off before re-decoding a long partial frame of unknown length.
const FIRST_BACKOFF: Duration = Duration::from_millis(1);
const MAX_BACKOFF: Duration = Duration::from_millis(64);

/// What a connection's read side enforces (config `limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadLimits {
    /// A frame whose first byte arrived must be complete within this time.
    pub frame_timeout: Duration,
    /// Stop reading while this many bytes wait to be written to the peer… (`usize::MAX`:
    /// never stop)
    pub write_high_water: usize,
    /// …and resume once at most this many do.
    pub write_low_water: usize,
}

impl ReadLimits {
    /// These limits without the read pause on a full write queue: for upstream
    /// connections, whose responses must always be read. Pausing them on our own backlog
    /// of requests would deadlock against a server that stops reading requests while its
    /// responses wait; requests are bounded where they enter, per downstream connection.
    pub fn never_pause(self) -> ReadLimits {
        ReadLimits {
            write_high_water: usize::MAX,
            ..self
        }
    }
}

impl Default for ReadLimits {
    fn default() -> Self {
        ReadLimits {
            frame_timeout: crate::config::DEFAULT_FRAME_READ_TIMEOUT,
            write_high_water: crate::config::DEFAULT_WRITE_HIGH_WATER,
            write_low_water: crate::config::DEFAULT_WRITE_LOW_WATER,
        }
    }
}

/// When the codec is asked again about the incomplete frame in the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// On the next read.
    NextRead,
    /// Once this many bytes are buffered (the frame's declared length).
    AtLength(usize),
    /// Once this many bytes are buffered, or at `at` (unknown length: back-off).
    Backoff {
        len: usize,
        at: Instant,
        wait: Duration,
    },
}

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
    /// A frame started and did not complete within the frame read timeout.
    #[error("a frame did not complete within {timeout:?} ({buffered} bytes of it arrived)")]
    FrameTimeout {
        /// The limit.
        timeout: Duration,
        /// Bytes of the frame buffered when it expired.
        buffered: usize,
    },
}

/// The write side of a framed connection: encodes frames into its queue. Cheap to clone.
#[derive(Clone)]
pub struct FrameSink {
    codec: CodecRef,
    queue: WriteQueue,
    closed: CancellationToken,
}

impl FrameSink {
    /// Encodes `frame` with `id` as its protocol id (the id rewrite) and queues it; returns
    /// the bytes queued.
    ///
    /// # Errors
    /// [`SendError::Closed`] once the connection is closed, [`SendError::Codec`] when the
    /// codec refuses the frame; nothing is queued either way.
    pub fn send(&self, frame: &mut Frame, id: u64) -> Result<usize, SendError> {
        self.queue_with(|codec, buf| codec.encode(frame, id, buf))
    }

    /// Queues the ack of a decoded heartbeat request.
    ///
    /// # Errors
    /// As [`FrameSink::send`].
    pub fn reply_keepalive(&self, request: &mut Frame) -> Result<(), SendError> {
        self.queue_with(|codec, buf| codec.reply_keepalive(request, buf))
            .map(|_| ())
    }

    /// Queues the protocol's answer to `request` on the server's behalf, for the proxy's
    /// HTTP-like `code`, with `id` as its protocol id; returns the bytes queued.
    ///
    /// # Errors
    /// As [`FrameSink::send`].
    pub fn hijack(&self, request: &Frame, code: u32, id: u64) -> Result<usize, SendError> {
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

    /// Builds the protocol's GoAway with `id` and queues it.
    ///
    /// # Errors
    /// [`SendError::Unsupported`] when the protocol has no GoAway, as for
    /// [`FrameSink::keepalive`] otherwise.
    pub fn goaway(&self, id: u64) -> Result<(), SendError> {
        if self.is_closed() {
            return Err(SendError::Closed);
        }
        let goaway = self.codec.borrow_mut().goaway(id);
        match goaway {
            Ok(Some(bytes)) if self.queue.push(&bytes) => Ok(()),
            Ok(Some(_)) => Err(SendError::Closed),
            Ok(None) => Err(SendError::Unsupported),
            Err(e) => Err(SendError::Codec(e)),
        }
    }

    /// Fills the queue through the codec; returns the bytes queued.
    fn queue_with(
        &self,
        fill: impl FnOnce(&mut dyn Codec, &mut BytesMut) -> Result<(), CodecError>,
    ) -> Result<usize, SendError> {
        let codec = &self.codec;
        let mut queued = 0;
        match self.queue.push_with(|buf| {
            let before = buf.len();
            fill(codec.borrow_mut().as_mut(), buf)?;
            queued = buf.len() - before;
            Ok(())
        }) {
            Ok(true) => Ok(queued),
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
    /// Bytes arrived since the codec last said it needs more.
    undecoded: bool,
    limits: ReadLimits,
    retry: Retry,
    /// When the first byte of the incomplete frame in `buf` arrived.
    frame_started: Option<Instant>,
    /// The one timer of the read side: frame deadline or decode back-off, whichever is
    /// first; only armed while a partial frame is buffered.
    timer: Pin<Box<Sleep>>,
    load: Option<Rc<ConnLoad>>,
    decode_calls: u64,
    /// Most frames per call: [`DECODE_BATCH`] for codecs that keep a guest context per
    /// decoded frame (Wasm), unbounded for those that keep none (native).
    batch: usize,
    /// The last call handed over a full batch.
    batch_full: bool,
}

impl FramedConn {
    /// Frames `stream` with `codec` and starts its writer task on the current worker.
    /// `on_read` is told the size of every read (byte counters, activity timestamps).
    pub fn new(stream: TcpStream, codec: CodecRef, on_read: impl Fn(usize) + 'static) -> Self {
        FramedConn::with_limits(stream, codec, ReadLimits::default(), None, on_read)
    }

    /// [`FramedConn::new`] enforcing `limits`, and reporting its buffers to `load` (the
    /// overload manager's view of the connection), which can also shed it.
    pub fn with_limits(
        stream: TcpStream,
        codec: CodecRef,
        limits: ReadLimits,
        load: Option<Rc<ConnLoad>>,
        on_read: impl Fn(usize) + 'static,
    ) -> Self {
        FramedConn::with_buffer(stream, codec, limits, load, on_read, BytesMut::new())
    }

    /// [`FramedConn::with_limits`] starting from `read`, bytes already read from `stream`
    /// (protocol detection read them): they are decoded before anything more is read, and
    /// the frame read deadline counts from now.
    pub fn with_buffer(
        stream: TcpStream,
        codec: CodecRef,
        limits: ReadLimits,
        load: Option<Rc<ConnLoad>>,
        on_read: impl Fn(usize) + 'static,
        read: BytesMut,
    ) -> Self {
        let batch = if codec.borrow().context_stats().is_some() {
            DECODE_BATCH
        } else {
            usize::MAX
        };
        let (read_half, write) = stream.into_split();
        // Shedding (the overload manager) closes the connection like any other close: the
        // handler sees `closed` fire and can tell why ([`FramedConn::was_shed`]).
        let closed = load
            .as_ref()
            .map_or_else(CancellationToken::new, |l| l.shed().child_token());
        let sink = FrameSink {
            codec,
            queue: WriteQueue::accounted(MAX_PENDING, load.clone()),
            closed,
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
        let now = Instant::now();
        let undecoded = !read.is_empty();
        let buf = if undecoded {
            read
        } else {
            BytesMut::with_capacity(READ_CHUNK)
        };
        let mut framed = FramedConn {
            read: read_half,
            buf,
            sink,
            writer,
            on_read: Box::new(on_read),
            last_read: now,
            undecoded,
            limits,
            retry: Retry::NextRead,
            frame_started: undecoded.then_some(now),
            timer: Box::pin(tokio::time::sleep_until(now)),
            load,
            decode_calls: 0,
            batch,
            batch_full: false,
        };
        framed.arm_timer();
        framed.report_read();
        framed
    }

    /// The write side, to clone into whatever answers on this connection.
    pub fn sink(&self) -> &FrameSink {
        &self.sink
    }

    /// Times the codec was asked to decode on this connection (work per byte, for stats).
    pub fn decode_calls(&self) -> u64 {
        self.decode_calls
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
        let mut next = None;
        while next.is_none() {
            if !self.read_frames(|f, _| next = Some(f), 1).await? {
                return Ok(None);
            }
        }
        Ok(next)
    }

    /// Hands every frame the next read completes to `on_frame`, with the time that read
    /// returned (the frame's arrival: one clock read per read, not per frame; at most `max`
    /// frames, and
    /// for a Wasm codec at most [`DECODE_BATCH`], before returning; the rest stay buffered
    /// for the next call),
    /// so a handler pays for one `select!` per read, not per frame. Returns `Ok(false)` when
    /// the peer closed its side. The codec is asked again only after new bytes arrive.
    ///
    /// After a full batch the next call yields to the worker's other tasks before decoding
    /// more, so the frames just handed over are encoded (and their plugin contexts released)
    /// before more are decoded: a read of a hundred pipelined requests never has a hundred
    /// contexts alive in the plugin at once.
    ///
    /// Cancel-safe: only the yield and the wait for bytes can be interrupted, and they lose
    /// nothing.
    ///
    /// # Errors
    /// [`ReadError`] when the socket fails or the codec rejects the bytes.
    pub async fn read_frames(
        &mut self,
        mut on_frame: impl FnMut(Frame, Instant),
        max: usize,
    ) -> Result<bool, ReadError> {
        if self.batch_full {
            self.batch_full = false;
            tokio::task::yield_now().await;
        }
        loop {
            if self.undecoded && self.decode_due() {
                let delivered = self.decode_into(&mut on_frame, max.min(self.batch))?;
                self.batch_full = delivered == self.batch;
                if delivered > 0 {
                    return Ok(true);
                }
            }
            if self.sink.queue.backlog() > self.limits.write_high_water && !self.sink.is_closed() {
                // Backpressure: the peer is not taking its answers; read nothing more from
                // it until they drain (or the connection ends: the handler sees that).
                self.sink
                    .queue
                    .wait_below(self.limits.write_low_water)
                    .await;
                continue;
            }
            if self.buf.capacity() - self.buf.len() < READ_MIN_FREE {
                self.buf.reserve(READ_CHUNK);
            }
            let timed = self.frame_started.is_some();
            let n = tokio::select! {
                biased;
                () = &mut self.timer, if timed => {
                    self.on_timer()?;
                    continue;
                }
                n = self.read.read_buf(&mut self.buf) => n?,
            };
            if n == 0 {
                return Ok(false);
            }
            self.undecoded = true;
            self.last_read = Instant::now();
            if self.frame_started.is_none() {
                self.frame_started = Some(self.last_read);
                self.arm_timer();
            }
            if !self.decode_due() {
                // Decoding reports what stays buffered; bytes waiting for the rest of their
                // frame are reported now.
                self.report_read();
            }
            (self.on_read)(n);
        }
    }

    /// Whether the codec should be asked about the buffered bytes now.
    fn decode_due(&self) -> bool {
        match self.retry {
            Retry::NextRead => true,
            Retry::AtLength(len) => self.buf.len() >= len,
            Retry::Backoff { len, at, .. } => self.buf.len() >= len || Instant::now() >= at,
        }
    }

    /// Decodes up to `max` frames into `on_frame`; how many it delivered.
    fn decode_into(
        &mut self,
        on_frame: &mut impl FnMut(Frame, Instant),
        max: usize,
    ) -> Result<usize, ReadError> {
        let mut delivered = 0;
        while delivered < max {
            self.decode_calls += 1;
            let decoded = self.sink.codec.borrow_mut().decode(&mut self.buf)?;
            match decoded {
                Some(frame) => {
                    on_frame(frame, self.last_read);
                    delivered += 1;
                    self.retry = Retry::NextRead;
                }
                None => {
                    self.undecoded = false;
                    self.retry = self.next_retry();
                    break;
                }
            }
        }
        if self.buf.is_empty() {
            self.frame_started = None;
            if self.buf.capacity() > KEEP_READ_CAPACITY {
                self.buf = BytesMut::with_capacity(READ_CHUNK);
            }
        } else if delivered > 0 {
            // What is left is the start of the next frame, which arrived with the last read.
            self.frame_started = Some(self.last_read);
        }
        self.arm_timer();
        self.report_read();
        Ok(delivered)
    }

    /// After a need-more answer: when to ask the codec again.
    fn next_retry(&mut self) -> Retry {
        let len = self.buf.len();
        if let Some(needed) = self.sink.codec.borrow_mut().bytes_needed(&self.buf) {
            if needed > len {
                return Retry::AtLength(needed);
            }
        }
        if len < BACKOFF_FROM {
            return Retry::NextRead;
        }
        let wait = match self.retry {
            Retry::Backoff { wait, .. } => (wait * 2).min(MAX_BACKOFF),
            _ => FIRST_BACKOFF,
        };
        Retry::Backoff {
            len: len.saturating_mul(2),
            at: Instant::now() + wait,
            wait,
        }
    }

    /// Points the timer at the frame deadline or the back-off, whichever comes first.
    fn arm_timer(&mut self) {
        let Some(started) = self.frame_started else {
            return;
        };
        let mut at = started + self.limits.frame_timeout;
        if let Retry::Backoff { at: retry, .. } = self.retry {
            at = at.min(retry);
        }
        if self.timer.deadline() != at {
            self.timer.as_mut().reset(at);
        }
    }

    /// The timer fired: the frame expired, or a back-off ended (decode again).
    fn on_timer(&mut self) -> Result<(), ReadError> {
        let now = Instant::now();
        if let Some(started) = self.frame_started {
            if now >= started + self.limits.frame_timeout {
                return Err(ReadError::FrameTimeout {
                    timeout: self.limits.frame_timeout,
                    buffered: self.buf.len(),
                });
            }
        }
        if matches!(self.retry, Retry::Backoff { at, .. } if now >= at) {
            self.undecoded = true;
        }
        self.arm_timer();
        Ok(())
    }

    fn report_read(&self) {
        if let Some(load) = &self.load {
            load.set_read(self.buf.len());
        }
    }

    /// Closes the connection: the writer flushes what is queued, for at most
    /// [`CLOSE_FLUSH_TIMEOUT`] (a peer that does not read cannot hold the connection and its
    /// memory open), then the socket is dropped.
    pub async fn close(mut self) {
        self.sink.close();
        if tokio::time::timeout(CLOSE_FLUSH_TIMEOUT, &mut self.writer)
            .await
            .is_err()
        {
            debug!("peer did not take the last bytes in time: dropping them");
            self.writer.abort();
        }
    }

    /// Whether the overload manager shed this connection.
    pub fn was_shed(&self) -> bool {
        self.load.as_ref().is_some_and(|l| l.shed().is_cancelled())
    }

    /// Closes the connection at once, dropping what is queued (a connection shed under
    /// overload, whose buffers are what must be freed).
    pub fn abort(self) {
        self.sink.close();
        self.writer.abort();
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use bytes::{Buf, Bytes};
    use codec_host::{FrameKind, FrameParts, HeaderMap};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    use super::*;

    /// A toy protocol: u8 length of what follows, u8 id, body; length 0 is refused.
    struct Toy;

    impl Codec for Toy {
        fn protocol(&self) -> &str {
            "toy"
        }
        fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
            let Some(&len) = buf.first() else {
                return Ok(None);
            };
            if len == 0 {
                return Err(CodecError::Protocol("zero length".into()));
            }
            if buf.len() < 1 + len as usize {
                return Ok(None);
            }
            let raw = buf.split_to(1 + len as usize).freeze();
            Ok(Some(Frame::new(FrameParts {
                kind: FrameKind::Request,
                id: raw[1] as u64,
                timeout_or_status: 0,
                headers: HeaderMap::new(),
                header_section: Bytes::new(),
                payload: raw.slice(2..),
                raw,
                state: Box::new(()),
            })))
        }
        fn encode(&mut self, f: &mut Frame, id: u64, out: &mut BytesMut) -> Result<(), CodecError> {
            out.extend_from_slice(&[1 + f.payload().len() as u8, id as u8]);
            out.extend_from_slice(f.payload());
            Ok(())
        }
        fn keepalive(&mut self, _id: u64) -> Result<Option<Bytes>, CodecError> {
            Ok(None)
        }
        fn reply_keepalive(&mut self, _: &mut Frame, _: &mut BytesMut) -> Result<(), CodecError> {
            Err(CodecError::Protocol("no heartbeats".into()))
        }
        fn hijack(
            &mut self,
            _: &Frame,
            code: u32,
            id: u64,
            out: &mut BytesMut,
        ) -> Result<(), CodecError> {
            out.extend_from_slice(&[2, id as u8, code as u8]);
            Ok(())
        }
    }

    /// A framed connection over a loopback socket, and the peer's end.
    async fn pair(on_read: impl Fn(usize) + 'static) -> (FramedConn, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap());
        let (peer, accepted) = tokio::join!(peer, listener.accept());
        let codec: CodecRef = Rc::new(RefCell::new(Box::new(Toy)));
        (
            FramedConn::new(accepted.unwrap().0, codec, on_read),
            peer.unwrap(),
        )
    }

    fn local(test: impl std::future::Future<Output = ()>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&rt, test);
    }

    #[test]
    fn frames_split_across_reads_and_packed_in_one_read_come_out_whole() {
        local(async {
            let read = Rc::new(Cell::new(0));
            let counted = read.clone();
            let (mut framed, mut peer) = pair(move |n| counted.set(counted.get() + n)).await;
            peer.write_all(&[4, 7, b'a']).await.unwrap();
            peer.flush().await.unwrap();
            tokio::task::yield_now().await;
            peer.write_all(&[b'b', b'c', 2, 8, b'z']).await.unwrap();
            let first = framed.next_frame().await.unwrap().expect("a frame");
            assert_eq!((first.id(), first.payload().as_ref()), (7, &b"abc"[..]));
            let second = framed.next_frame().await.unwrap().expect("a frame");
            assert_eq!((second.id(), second.payload().as_ref()), (8, &b"z"[..]));
            assert_eq!(read.get(), 8, "every byte read is reported");
            drop(peer);
            assert!(framed.next_frame().await.unwrap().is_none(), "peer closed");
        });
    }

    #[test]
    fn bad_bytes_are_a_codec_error() {
        local(async {
            let (mut framed, mut peer) = pair(|_| {}).await;
            peer.write_all(&[0, 1]).await.unwrap();
            assert!(matches!(
                framed.next_frame().await,
                Err(ReadError::Codec(_))
            ));
        });
    }

    #[test]
    fn the_sink_rewrites_ids_and_hijacks_and_close_flushes_then_fires_closed() {
        local(async {
            let (mut framed, mut peer) = pair(|_| {}).await;
            peer.write_all(&[3, 5, b'h', b'i']).await.unwrap();
            let mut request = framed.next_frame().await.unwrap().expect("a frame");
            let sink = framed.sink().clone();
            sink.send(&mut request, 42).unwrap();
            sink.hijack(&request, 4, 5).unwrap();
            assert!(matches!(sink.keepalive(1), Err(SendError::Unsupported)));
            assert!(matches!(
                sink.reply_keepalive(&mut request),
                Err(SendError::Codec(_))
            ));
            assert!(!sink.is_closed());
            framed.close().await;
            assert!(sink.is_closed());
            sink.closed().await;
            assert!(matches!(sink.send(&mut request, 1), Err(SendError::Closed)));
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            let mut got = Bytes::from(got);
            assert_eq!(got.copy_to_bytes(4).as_ref(), &[3, 42, b'h', b'i']);
            assert_eq!(got.as_ref(), &[2, 5, 4], "the hijack, then the end");
        });
    }

    /// A protocol with a u32 length prefix (of what follows), id 0; `hints` says whether it
    /// tells the frame length before the frame is complete.
    struct Long {
        hints: bool,
    }

    impl Codec for Long {
        fn protocol(&self) -> &str {
            "long"
        }
        fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
            let Some(len) = self.declared(buf) else {
                return Ok(None);
            };
            if buf.len() < len {
                return Ok(None);
            }
            let raw = buf.split_to(len).freeze();
            Ok(Some(Frame::new(FrameParts {
                kind: FrameKind::Request,
                id: 0,
                timeout_or_status: 0,
                headers: HeaderMap::new(),
                header_section: Bytes::new(),
                payload: raw.slice(4..),
                raw,
                state: Box::new(()),
            })))
        }
        fn bytes_needed(&mut self, buf: &[u8]) -> Option<usize> {
            self.hints.then(|| self.declared(buf)).flatten()
        }
        fn encode(&mut self, f: &mut Frame, _: u64, out: &mut BytesMut) -> Result<(), CodecError> {
            out.extend_from_slice(&(4 + f.payload().len() as u32).to_be_bytes());
            out.extend_from_slice(f.payload());
            Ok(())
        }
        fn keepalive(&mut self, _id: u64) -> Result<Option<Bytes>, CodecError> {
            Ok(None)
        }
        fn reply_keepalive(&mut self, _: &mut Frame, _: &mut BytesMut) -> Result<(), CodecError> {
            Err(CodecError::Protocol("no heartbeats".into()))
        }
        fn hijack(
            &mut self,
            _: &Frame,
            _: u32,
            _: u64,
            _: &mut BytesMut,
        ) -> Result<(), CodecError> {
            Err(CodecError::Protocol("no hijack".into()))
        }
    }

    impl Long {
        fn declared(&self, buf: &[u8]) -> Option<usize> {
            let len: [u8; 4] = buf.get(..4)?.try_into().ok()?;
            Some(u32::from_be_bytes(len) as usize)
        }
    }

    async fn long_pair(
        hints: bool,
        limits: ReadLimits,
    ) -> (FramedConn, TcpStream, Rc<Cell<usize>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = TcpStream::connect(listener.local_addr().unwrap());
        let (peer, accepted) = tokio::join!(peer, listener.accept());
        let codec: CodecRef = Rc::new(RefCell::new(Box::new(Long { hints })));
        let read = Rc::new(Cell::new(0));
        let counted = read.clone();
        let framed = FramedConn::with_limits(accepted.unwrap().0, codec, limits, None, move |n| {
            counted.set(counted.get() + n)
        });
        (framed, peer.unwrap(), read)
    }

    /// Sends `head` of a `total`-byte frame, then the rest one byte per read of the
    /// framed side (each byte is read before the next is sent), and returns the decode
    /// calls the whole frame cost.
    async fn trickle(hints: bool, total: usize, head: usize) -> u64 {
        let (mut framed, mut peer, read) = long_pair(hints, ReadLimits::default()).await;
        let mut frame = vec![0u8; total];
        frame[..4].copy_from_slice(&(total as u32).to_be_bytes());
        let reader = tokio::task::spawn_local(async move {
            let f = framed.next_frame().await.unwrap().expect("the frame");
            assert_eq!(f.raw().len(), total);
            framed.decode_calls()
        });
        peer.write_all(&frame[..head]).await.unwrap();
        while read.get() < head {
            tokio::task::yield_now().await;
        }
        for (i, byte) in frame[head..].iter().enumerate() {
            peer.write_all(&[*byte]).await.unwrap();
            while read.get() < head + i + 1 {
                tokio::task::yield_now().await;
            }
        }
        reader.await.unwrap()
    }

    #[test]
    fn a_codec_that_knows_the_frame_length_is_not_asked_again_before_it_is_all_there() {
        local(async {
            let calls = trickle(true, 300_000, 200_000).await;
            // Asked while the head arrived (a few reads), then once the last byte is in:
            // not once per trickled byte.
            assert!(
                calls < 50,
                "{calls} decode calls for 100,000 trickled bytes"
            );
        });
    }

    #[test]
    fn a_codec_that_cannot_tell_is_asked_again_only_after_doubling_or_a_back_off() {
        local(async {
            let calls = trickle(false, 202_000, 200_000).await;
            // 2,000 one-byte reads: without the back-off, 2,000 full decodes of 200 KB.
            assert!(
                calls < 1_000,
                "{calls} decode calls for 2,000 trickled bytes"
            );
        });
    }

    #[test]
    fn a_started_frame_must_complete_within_the_frame_timeout() {
        local(async {
            let limits = ReadLimits {
                frame_timeout: Duration::from_millis(200),
                ..ReadLimits::default()
            };
            let (mut framed, mut peer, _) = long_pair(true, limits).await;
            peer.write_all(&100u32.to_be_bytes()).await.unwrap();
            let keep_sending = tokio::task::spawn_local(async move {
                // A byte at a time, forever: the idle timer alone would never fire.
                loop {
                    if peer.write_all(&[0]).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            });
            match framed.next_frame().await {
                Err(ReadError::FrameTimeout { timeout, buffered }) => {
                    assert_eq!(timeout, Duration::from_millis(200));
                    assert!((4..100).contains(&buffered), "{buffered} bytes buffered");
                }
                other => panic!(
                    "expected a frame timeout, got {:?}",
                    other.map(|f| f.is_some())
                ),
            }
            keep_sending.abort();
        });
    }

    #[test]
    fn nothing_is_read_while_the_peer_does_not_take_its_answers() {
        local(async {
            let limits = ReadLimits {
                write_high_water: 64 * 1024,
                write_low_water: 16 * 1024,
                ..ReadLimits::default()
            };
            let (mut framed, mut peer, read) = long_pair(true, limits).await;
            let sink = framed.sink().clone();
            // The peer sends 2,000 frames of 16 KiB and reads nothing; each is answered in
            // full. Past the high-water mark (plus what the kernel buffers) the framed side
            // stops reading.
            let mut frame = vec![7u8; 16 * 1024];
            frame[..4].copy_from_slice(&(16 * 1024u32).to_be_bytes());
            let (_peer_read, mut peer_write) = peer.split();
            let writer = async {
                for _ in 0..2000 {
                    if tokio::time::timeout(Duration::from_secs(2), peer_write.write_all(&frame))
                        .await
                        .is_err()
                    {
                        return false; // blocked: the framed side stopped reading
                    }
                }
                true
            };
            let echo = async {
                while let Ok(Some(mut f)) = framed.next_frame().await {
                    let _ = sink.send(&mut f, 0);
                }
            };
            let wrote_all = tokio::select! {
                w = writer => w,
                _ = echo => panic!("the connection ended"),
            };
            assert!(
                !wrote_all,
                "the peer could push 3.2 MB without reading anything"
            );
            let backlog = sink.pending();
            assert!(
                backlog <= 64 * 1024 + 16 * 1024 + 4 * 1024 * 1024,
                "{backlog} bytes queued for a peer that reads nothing"
            );
            assert!(read.get() < 2000 * 16 * 1024, "reading stopped");
        });
    }

    #[test]
    fn closing_does_not_wait_forever_for_a_peer_that_does_not_read() {
        local(async {
            let (framed, peer, _) = long_pair(true, ReadLimits::default()).await;
            let sink = framed.sink().clone();
            let mut frame = Frame::new(FrameParts {
                kind: FrameKind::Request,
                id: 0,
                timeout_or_status: 0,
                headers: HeaderMap::new(),
                header_section: Bytes::new(),
                payload: Bytes::from(vec![1u8; 1 << 20]),
                raw: Bytes::new(),
                state: Box::new(()),
            });
            // 32 MiB for a peer that reads nothing: far more than the kernel buffers hold.
            for _ in 0..32 {
                sink.send(&mut frame, 0).unwrap();
            }
            let closed = tokio::time::timeout(Duration::from_secs(30), framed.close()).await;
            assert!(closed.is_ok(), "close waited for a peer that never reads");
            assert!(sink.is_closed());
            drop(peer);
        });
    }
}

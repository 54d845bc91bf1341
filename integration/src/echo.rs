//! A fast Bolt v1 echo server for tests and benchmarks: answers every request with its own
//! content, pipelined, one reader and one batching writer per connection.
//!
//! Behaviour per request frame:
//! * RPC request (cmdCode 1) → response cmdCode 2, same id, status 0, class `SofaResponse`,
//!   content = request content (codec and ver2 copied from the request);
//! * heartbeat (cmdCode 0) → 20-byte ack with the same id, unless the test turned heartbeat
//!   answers off ([`EchoServer::answer_heartbeats`]: a host whose health checks fail while
//!   it still serves requests);
//! * oneway → nothing;
//! * other command codes (e.g. GoAway) and stray responses are counted and ignored.
//!
//! [`EchoServer::send_goaway`] writes a Bolt GoAway (cmdCode 100) on every open connection, as
//! a MOSN server does before it stops: the peer should send no new requests on them; requests
//! already received are still answered.
//!
//! Control headers on a request: `echo-delay-ms: N` answers after N ms without holding up other
//! requests (so answers can go out of order), `echo-hold: 1` holds the answer back until the test
//! calls [`EchoServer::release_held`] (events in order, not by timing), `echo-status: N` sets the
//! response status, `echo-silent: 1` never answers, `echo-counters: 1` answers with the server's
//! [`EchoCounters`] as JSON (see [`query_counters`]; not counted itself). Bytes that are not
//! Bolt v1 close the connection, [`EchoOptions::close_after_requests`] makes the server drop
//! each connection at a given request count, and [`EchoOptions::fail_with_status`] makes it a
//! failing host answering every request with one status.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::client::{BoltClient, ClientOptions};
use crate::error::ClientError;
use crate::wire::{
    encode_response_raw, status, Frame, FrameReader, FrameType, Request, ResponseHead,
    CMD_HEARTBEAT, CMD_REQUEST, CMD_RESPONSE, RESPONSE_CLASS,
};

/// Control header: delay this response by N milliseconds.
pub const DELAY_HEADER: &str = "echo-delay-ms";
/// Control header: answer with this status.
pub const STATUS_HEADER: &str = "echo-status";
/// Control header: `1` = never answer.
pub const SILENT_HEADER: &str = "echo-silent";
/// Control header: `1` = hold the answer until [`EchoServer::release_held`].
pub const HOLD_HEADER: &str = "echo-hold";
/// Control header: `1` = answer with the server's counters as JSON.
pub const COUNTERS_HEADER: &str = "echo-counters";

/// Read buffer growth step per connection.
const READ_CHUNK: usize = 64 * 1024;
/// Response batches queued per connection before the reader waits for the writer.
const WRITE_QUEUE: usize = 256;
/// Coalesced writes stop growing past this size.
const MAX_WRITE_BATCH: usize = 256 * 1024;

/// How an [`EchoServer`] behaves.
#[derive(Debug, Clone)]
pub struct EchoOptions {
    /// Record request ids per connection and the request frames themselves (for tests). Costs a
    /// lock per read batch; benchmarks turn it off.
    pub record: bool,
    /// At most this many request frames are kept when recording (ids are always all kept).
    pub max_recorded_frames: usize,
    /// Frames longer than this close the connection.
    pub max_frame_len: usize,
    /// Close each connection when its Nth two-way request arrives, without answering it or
    /// flushing answers still queued (a server that drops its connections, at a count the test
    /// knows instead of at a moment). The request is counted and recorded. `None` = never.
    pub close_after_requests: Option<u64>,
    /// A failing host: answer every RPC request at once with this status, content echoed,
    /// whatever its control headers say (`echo-counters` aside). `None` = behave by the
    /// headers.
    pub fail_with_status: Option<u16>,
}

impl Default for EchoOptions {
    fn default() -> Self {
        EchoOptions {
            record: true,
            max_recorded_frames: 10_000,
            max_frame_len: crate::wire::DEFAULT_MAX_FRAME_LEN,
            close_after_requests: None,
            fail_with_status: None,
        }
    }
}

/// A snapshot of the server's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EchoCounters {
    /// Connections accepted since start.
    pub connections_accepted: u64,
    /// Two-way RPC requests received (answered or not).
    pub requests: u64,
    /// Oneway requests received.
    pub oneways: u64,
    /// Heartbeat requests received.
    pub heartbeats: u64,
    /// Request frames with another command code (e.g. GoAway), ignored.
    pub other_commands: u64,
    /// Response frames received (a server should never get any), ignored.
    pub stray_responses: u64,
    /// Connections closed because of unparsable bytes.
    pub protocol_errors: u64,
    /// Responses and heartbeat acks queued for writing.
    pub responses: u64,
    /// Answers held back by `echo-hold` so far (released or not).
    pub held: u64,
    /// Connections closed by [`EchoOptions::close_after_requests`].
    pub dropped_connections: u64,
    /// Heartbeats left unanswered while answers were off ([`EchoServer::answer_heartbeats`]).
    #[serde(default)]
    pub heartbeats_ignored: u64,
}

#[derive(Debug, Default)]
struct Counters {
    connections_accepted: AtomicU64,
    requests: AtomicU64,
    oneways: AtomicU64,
    heartbeats: AtomicU64,
    other_commands: AtomicU64,
    stray_responses: AtomicU64,
    protocol_errors: AtomicU64,
    responses: AtomicU64,
    held: AtomicU64,
    dropped_connections: AtomicU64,
    heartbeats_ignored: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> EchoCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        EchoCounters {
            connections_accepted: get(&self.connections_accepted),
            requests: get(&self.requests),
            oneways: get(&self.oneways),
            heartbeats: get(&self.heartbeats),
            other_commands: get(&self.other_commands),
            stray_responses: get(&self.stray_responses),
            protocol_errors: get(&self.protocol_errors),
            responses: get(&self.responses),
            held: get(&self.held),
            dropped_connections: get(&self.dropped_connections),
            heartbeats_ignored: get(&self.heartbeats_ignored),
        }
    }
}

/// What one accepted connection has seen so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Accept order, from 0.
    pub index: usize,
    /// The peer's address.
    pub peer: SocketAddr,
    /// Whether the connection is still open.
    pub open: bool,
    /// Ids of every request frame (two-way, oneway, heartbeat) in arrival order; empty unless
    /// recording is on.
    pub request_ids: Vec<u32>,
}

/// A request frame as the server received it (recording only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeenRequest {
    /// Index of the connection it arrived on.
    pub connection: usize,
    /// The frame, byte for byte.
    pub frame: Frame,
}

#[derive(Debug)]
struct ConnRecord {
    index: usize,
    peer: SocketAddr,
    open: AtomicBool,
    ids: Mutex<Vec<u32>>,
    kill: watch::Sender<bool>,
    /// The connection's writer queue, weakly (the writer ends when its last sender drops).
    writer: Mutex<Option<mpsc::WeakSender<Bytes>>>,
}

/// An answer held back by `echo-hold`, with the writer queue of its connection.
type HeldAnswer = (mpsc::Sender<Bytes>, Bytes);

#[derive(Debug)]
struct Shared {
    options: EchoOptions,
    counters: Counters,
    conns: Mutex<Vec<Arc<ConnRecord>>>,
    seen: Mutex<Vec<SeenRequest>>,
    /// `Some` until [`EchoServer::release_held`]: the answers held so far.
    held: Mutex<Option<Vec<HeldAnswer>>>,
    /// Whether heartbeats are answered (the default) or counted and ignored.
    answer_heartbeats: AtomicBool,
}

impl Shared {
    fn new(options: EchoOptions) -> Self {
        Shared {
            options,
            counters: Counters::default(),
            conns: Mutex::new(Vec::new()),
            seen: Mutex::new(Vec::new()),
            held: Mutex::new(Some(Vec::new())),
            answer_heartbeats: AtomicBool::new(true),
        }
    }

    /// Holds `answer` back if answers are still being held; otherwise hands it back.
    fn hold(&self, tx: &mpsc::Sender<Bytes>, answer: Bytes) -> Option<Bytes> {
        let mut held = lock(&self.held);
        match held.as_mut() {
            Some(list) => {
                list.push((tx.clone(), answer));
                // Counted under the lock: whoever sees the count and then releases finds it.
                self.counters.held.fetch_add(1, Ordering::Relaxed);
                None
            }
            None => Some(answer),
        }
    }
}

/// Locks a mutex, ignoring poisoning: the data behind it stays valid after a panicking holder.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running echo server; shuts down when dropped.
#[derive(Debug)]
pub struct EchoServer {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

impl EchoServer {
    /// Binds `addr` (port 0 allowed) and serves with recording on. Must run inside a tokio
    /// runtime.
    ///
    /// # Errors
    /// The bind error.
    pub async fn start(addr: SocketAddr) -> std::io::Result<EchoServer> {
        Self::start_with(addr, EchoOptions::default()).await
    }

    /// Binds `addr` and serves with `options`.
    ///
    /// # Errors
    /// The bind error.
    pub async fn start_with(addr: SocketAddr, options: EchoOptions) -> std::io::Result<EchoServer> {
        let listener = TcpListener::bind(addr).await?;
        Self::serve(listener, options)
    }

    /// Serves on an already bound listener.
    ///
    /// # Errors
    /// When the listener's address cannot be read.
    pub fn serve(listener: TcpListener, options: EchoOptions) -> std::io::Result<EchoServer> {
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(options));
        let accept = tokio::spawn(accept_loop(listener, shared.clone()));
        Ok(EchoServer {
            local_addr,
            shared,
            accept,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Current counters.
    pub fn counters(&self) -> EchoCounters {
        self.shared.counters.snapshot()
    }

    /// Every connection accepted so far, in accept order.
    pub fn connections(&self) -> Vec<ConnectionStats> {
        lock(&self.shared.conns)
            .iter()
            .map(|c| ConnectionStats {
                index: c.index,
                peer: c.peer,
                open: c.open.load(Ordering::Acquire),
                request_ids: lock(&c.ids).clone(),
            })
            .collect()
    }

    /// Request frames received so far (recording only, capped by
    /// [`EchoOptions::max_recorded_frames`]).
    pub fn seen_requests(&self) -> Vec<SeenRequest> {
        lock(&self.shared.seen).clone()
    }

    /// Closes every open connection without flushing pending responses; keeps accepting.
    pub fn close_all_connections(&self) {
        for c in lock(&self.shared.conns).iter() {
            // A send error means both tasks are gone already.
            let _ = c.kill.send(true);
        }
    }

    /// Sends every answer held back by `echo-hold` (in arrival order, each queued on its own
    /// connection before this returns) and answers later `echo-hold` requests at once. Returns
    /// how many were released; answers for connections closed meanwhile are dropped.
    pub async fn release_held(&self) -> usize {
        let held = lock(&self.shared.held).take().unwrap_or_default();
        let released = held.len();
        for (tx, answer) in held {
            let _ = tx.send(answer).await;
        }
        released
    }

    /// Writes a Bolt GoAway (cmdCode 100, id 0) on every open connection, each queued behind
    /// the answers already queued on it before this returns; returns on how many. Requests
    /// are still read and answered afterwards (the peer decides what to do with GoAway).
    pub async fn send_goaway(&self) -> usize {
        let goaway = Request::goaway(0).to_bytes().expect("GoAway encodes");
        let writers: Vec<mpsc::Sender<Bytes>> = lock(&self.shared.conns)
            .iter()
            .filter(|c| c.open.load(Ordering::Acquire))
            .filter_map(|c| lock(&c.writer).as_ref().and_then(mpsc::WeakSender::upgrade))
            .collect();
        let mut sent = 0;
        for tx in writers {
            if tx.send(goaway.clone()).await.is_ok() {
                sent += 1;
            }
        }
        sent
    }

    /// Turns heartbeat answers on (the default) or off, at once for every connection:
    /// while off, heartbeats are counted (`heartbeats`, `heartbeats_ignored`) and never
    /// answered; requests are answered as before.
    pub fn answer_heartbeats(&self, on: bool) {
        self.shared.answer_heartbeats.store(on, Ordering::SeqCst);
    }

    /// Stops accepting and closes every connection.
    pub fn shutdown(&self) {
        self.accept.abort();
        self.close_all_connections();
    }

    /// Waits until `pred` holds for the counters, polling every 5 ms; false if `deadline`
    /// passes first.
    pub async fn wait_for(&self, deadline: Duration, pred: impl Fn(&EchoCounters) -> bool) -> bool {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            if pred(&self.counters()) {
                return true;
            }
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// Asks the echo server at `addr` (in this process or a `bolt-echo` process) for its counters,
/// over a connection of its own, with the `echo-counters` control header.
///
/// # Errors
/// Connection or call failures; [`ClientError::BadAnswer`] when the answer is not counters.
pub async fn query_counters(addr: SocketAddr) -> Result<EchoCounters, ClientError> {
    let client = BoltClient::connect_with(addr, ClientOptions::default()).await?;
    let request = Request::rpc(client.next_id(), None, Bytes::new()).header(COUNTERS_HEADER, "1");
    let answer = client.call(&request).await?;
    serde_json::from_slice(&answer.content())
        .map_err(|e| ClientError::BadAnswer(format!("echo counters: {e}")))
}

/// Waits until `pred` holds for the counters of the echo server at `addr`, asking every 5 ms;
/// false if `deadline` passes first.
///
/// # Errors
/// As [`query_counters`].
pub async fn wait_for_counters(
    addr: SocketAddr,
    deadline: Duration,
    pred: impl Fn(&EchoCounters) -> bool,
) -> Result<bool, ClientError> {
    let until = tokio::time::Instant::now() + deadline;
    loop {
        if pred(&query_counters(addr).await?) {
            return Ok(true);
        }
        if tokio::time::Instant::now() >= until {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((sock, peer)) => {
                if let Err(e) = sock.set_nodelay(true) {
                    warn!(%peer, cause = %e, "TCP_NODELAY failed");
                }
                shared
                    .counters
                    .connections_accepted
                    .fetch_add(1, Ordering::Relaxed);
                let (kill, kill_rx) = watch::channel(false);
                let record = {
                    let mut conns = lock(&shared.conns);
                    let record = Arc::new(ConnRecord {
                        index: conns.len(),
                        peer,
                        open: AtomicBool::new(true),
                        ids: Mutex::new(Vec::new()),
                        kill,
                        writer: Mutex::new(None),
                    });
                    conns.push(record.clone());
                    record
                };
                debug!(%peer, index = record.index, "echo connection accepted");
                spawn_connection(sock, record, kill_rx, shared.clone());
            }
            Err(e) => {
                // Typically EMFILE: back off instead of spinning.
                warn!(cause = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

fn spawn_connection(
    sock: TcpStream,
    record: Arc<ConnRecord>,
    kill_rx: watch::Receiver<bool>,
    shared: Arc<Shared>,
) {
    let (rd, wr) = sock.into_split();
    let (tx, rx) = mpsc::channel(WRITE_QUEUE);
    *lock(&record.writer) = Some(tx.downgrade());
    let writer = tokio::spawn(write_loop(wr, rx, kill_rx.clone()));
    tokio::spawn(async move {
        read_loop(rd, tx, kill_rx, &record, &shared).await;
        // The writer finishes once every queued and delayed response is flushed, or on kill.
        let _ = writer.await;
        record.open.store(false, Ordering::Release);
        debug!(peer = %record.peer, "echo connection closed");
    });
}

async fn killed(kill: &mut watch::Receiver<bool>) {
    // An error means the sender (the server) is gone: treat as killed too.
    let _ = kill.wait_for(|k| *k).await;
}

async fn read_loop(
    mut rd: OwnedReadHalf,
    tx: mpsc::Sender<Bytes>,
    mut kill: watch::Receiver<bool>,
    record: &ConnRecord,
    shared: &Shared,
) {
    let reader = FrameReader::new(shared.options.max_frame_len);
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let mut two_way_requests: u64 = 0;
    loop {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let n = tokio::select! {
            biased;
            _ = killed(&mut kill) => return,
            r = rd.read_buf(&mut buf) => match r {
                Ok(n) => n,
                Err(e) => {
                    debug!(peer = %record.peer, cause = %e, "echo read failed");
                    return;
                }
            },
        };
        if n == 0 {
            return;
        }
        let mut out = BytesMut::new();
        let mut ids = Vec::new();
        loop {
            match reader.next_frame(&mut buf) {
                Ok(Some(frame)) => {
                    if frame.is_request() && shared.options.record {
                        ids.push(frame.id());
                        let mut seen = lock(&shared.seen);
                        if seen.len() < shared.options.max_recorded_frames {
                            seen.push(SeenRequest {
                                connection: record.index,
                                frame: frame.clone(),
                            });
                        }
                    }
                    if is_two_way(&frame) {
                        two_way_requests += 1;
                        if Some(two_way_requests) == shared.options.close_after_requests {
                            drop_connection(record, &ids, shared);
                            return;
                        }
                    }
                    handle_frame(&frame, &mut out, &tx, shared);
                }
                Ok(None) => break,
                Err(e) => {
                    warn!(peer = %record.peer, cause = %e, "echo got bytes that are not Bolt v1; closing");
                    shared
                        .counters
                        .protocol_errors
                        .fetch_add(1, Ordering::Relaxed);
                    let _ = record.kill.send(true);
                    return;
                }
            }
        }
        if !ids.is_empty() {
            lock(&record.ids).extend_from_slice(&ids);
        }
        if !out.is_empty() && tx.send(out.freeze()).await.is_err() {
            return;
        }
    }
}

/// Whether `frame` is a two-way RPC request (the kind [`EchoCounters::requests`] counts).
fn is_two_way(frame: &Frame) -> bool {
    frame.frame_type() == FrameType::Request && frame.cmd_code() == CMD_REQUEST
}

/// Closes the connection at its [`EchoOptions::close_after_requests`] bound: the request that
/// hit it is counted and recorded (with the other `ids` of this read), then nothing more is
/// answered or flushed.
fn drop_connection(record: &ConnRecord, ids: &[u32], shared: &Shared) {
    shared.counters.requests.fetch_add(1, Ordering::Relaxed);
    lock(&record.ids).extend_from_slice(ids);
    debug!(peer = %record.peer, "echo drops the connection at its request bound");
    let _ = record.kill.send(true);
    shared
        .counters
        .dropped_connections
        .fetch_add(1, Ordering::Relaxed);
}

/// Control settings parsed from a request's headers.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Control {
    delay_ms: u64,
    status: u16,
    silent: bool,
    hold: bool,
    counters: bool,
}

fn parse_num<T: std::str::FromStr>(v: &[u8]) -> Option<T> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

fn flag(v: &[u8]) -> bool {
    v == b"1" || v == b"true"
}

fn control(frame: &Frame) -> Control {
    let mut c = Control::default();
    if frame.header_bytes().is_empty() {
        return c;
    }
    for (k, v) in frame.headers().map_while(Result::ok) {
        if !k.starts_with(b"echo-") {
            continue;
        }
        match k {
            k if k == DELAY_HEADER.as_bytes() => c.delay_ms = parse_num(v).unwrap_or(0),
            k if k == STATUS_HEADER.as_bytes() => c.status = parse_num(v).unwrap_or(0),
            k if k == SILENT_HEADER.as_bytes() => c.silent = flag(v),
            k if k == HOLD_HEADER.as_bytes() => c.hold = flag(v),
            k if k == COUNTERS_HEADER.as_bytes() => c.counters = flag(v),
            _ => {}
        }
    }
    c
}

fn handle_frame(frame: &Frame, out: &mut BytesMut, tx: &mpsc::Sender<Bytes>, shared: &Shared) {
    let counters = &shared.counters;
    match (frame.frame_type(), frame.cmd_code()) {
        (FrameType::Response, _) => {
            counters.stray_responses.fetch_add(1, Ordering::Relaxed);
        }
        (FrameType::Oneway, _) => {
            counters.oneways.fetch_add(1, Ordering::Relaxed);
        }
        (FrameType::Request, CMD_HEARTBEAT) => {
            counters.heartbeats.fetch_add(1, Ordering::Relaxed);
            if !shared.answer_heartbeats.load(Ordering::SeqCst) {
                counters.heartbeats_ignored.fetch_add(1, Ordering::Relaxed);
                return;
            }
            counters.responses.fetch_add(1, Ordering::Relaxed);
            let head = ResponseHead {
                id: frame.id(),
                cmd_code: CMD_HEARTBEAT,
                ver2: frame.ver2(),
                codec: frame.codec(),
                status: status::SUCCESS,
            };
            // Empty sections always fit.
            let _ = encode_response_raw(out, head, &[], &[], &[]);
        }
        (FrameType::Request, CMD_REQUEST) => {
            let mut ctl = control(frame);
            if let Some(status) = shared.options.fail_with_status {
                ctl = Control {
                    status,
                    counters: ctl.counters,
                    ..Control::default()
                };
            }
            let head = ResponseHead {
                id: frame.id(),
                cmd_code: CMD_RESPONSE,
                ver2: frame.ver2(),
                codec: frame.codec(),
                status: ctl.status,
            };
            if ctl.counters {
                // Counters of the requests before this one; a JSON object always fits a frame.
                let json = serde_json::to_vec(&counters.snapshot()).unwrap_or_default();
                let _ = encode_response_raw(out, head, RESPONSE_CLASS.as_bytes(), &[], &json);
                return;
            }
            counters.requests.fetch_add(1, Ordering::Relaxed);
            if ctl.silent {
                return;
            }
            counters.responses.fetch_add(1, Ordering::Relaxed);
            let content = frame.content();
            if ctl.delay_ms == 0 && !ctl.hold {
                // The content came out of a frame, so it fits a u32 length.
                let _ = encode_response_raw(out, head, RESPONSE_CLASS.as_bytes(), &[], &content);
                return;
            }
            let mut delayed = BytesMut::new();
            let _ =
                encode_response_raw(&mut delayed, head, RESPONSE_CLASS.as_bytes(), &[], &content);
            let delayed = delayed.freeze();
            if ctl.hold {
                if let Some(now) = shared.hold(tx, delayed) {
                    // Answers are no longer held: keep this one's place in the answer order.
                    out.extend_from_slice(&now);
                }
                return;
            }
            let tx = tx.clone();
            let delay = Duration::from_millis(ctl.delay_ms);
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                // The connection may be gone by now; then the answer is dropped.
                let _ = tx.send(delayed).await;
            });
        }
        (FrameType::Request, _) => {
            counters.other_commands.fetch_add(1, Ordering::Relaxed);
        }
    }
}

async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Bytes>,
    mut kill: watch::Receiver<bool>,
) {
    let mut batch = BytesMut::new();
    loop {
        let first = tokio::select! {
            biased;
            _ = killed(&mut kill) => return,
            m = rx.recv() => match m {
                Some(b) => b,
                None => return,
            },
        };
        let write = async {
            if let Ok(next) = rx.try_recv() {
                batch.clear();
                batch.extend_from_slice(&first);
                batch.extend_from_slice(&next);
                while batch.len() < MAX_WRITE_BATCH {
                    match rx.try_recv() {
                        Ok(more) => batch.extend_from_slice(&more),
                        Err(_) => break,
                    }
                }
                wr.write_all(&batch).await
            } else {
                wr.write_all(&first).await
            }
        };
        let result = tokio::select! {
            biased;
            _ = killed(&mut kill) => return,
            r = write => r,
        };
        if let Err(e) = result {
            debug!(cause = %e, "echo write failed");
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{Request, CODEC_HESSIAN2};

    fn frame(req: Request) -> Frame {
        Frame::parse(req.to_bytes().unwrap()).unwrap()
    }

    #[test]
    fn control_headers_parse() {
        let f = frame(
            Request::rpc(1, Some("s"), Bytes::new())
                .header(DELAY_HEADER, "25")
                .header(STATUS_HEADER, "7")
                .header(SILENT_HEADER, "1")
                .header(HOLD_HEADER, "true")
                .header(COUNTERS_HEADER, "1"),
        );
        assert_eq!(
            control(&f),
            Control {
                delay_ms: 25,
                status: 7,
                silent: true,
                hold: true,
                counters: true,
            }
        );
        let f = frame(Request::rpc(1, Some("s"), Bytes::new()).header(DELAY_HEADER, "x"));
        assert_eq!(control(&f), Control::default());
    }

    #[tokio::test]
    async fn answers_copy_id_codec_and_content() {
        let (tx, mut rx) = mpsc::channel(4);
        let shared = Shared::new(EchoOptions::default());
        let mut out = BytesMut::new();
        let mut req = Request::rpc(42, Some("s"), &b"payload"[..]);
        req.head.codec = 11;
        handle_frame(&frame(req), &mut out, &tx, &shared);
        handle_frame(&frame(Request::heartbeat(43)), &mut out, &tx, &shared);
        handle_frame(
            &frame(Request::rpc(44, None, Bytes::new()).oneway()),
            &mut out,
            &tx,
            &shared,
        );
        let mut out = out;
        let reader = FrameReader::default();
        let resp = reader.next_frame(&mut out).unwrap().unwrap();
        assert_eq!(
            (resp.id(), resp.cmd_code(), resp.status(), resp.codec()),
            (42, CMD_RESPONSE, Some(0), 11)
        );
        assert_eq!(resp.class(), RESPONSE_CLASS.as_bytes());
        assert_eq!(&resp.content()[..], b"payload");
        let ack = reader.next_frame(&mut out).unwrap().unwrap();
        assert_eq!(ack.raw().len(), 20);
        assert_eq!(
            (ack.id(), ack.cmd_code(), ack.status(), ack.codec()),
            (43, CMD_HEARTBEAT, Some(0), CODEC_HESSIAN2)
        );
        assert!(out.is_empty(), "oneway is not answered");
        assert!(rx.try_recv().is_err());
        let c = shared.counters.snapshot();
        assert_eq!(
            (c.requests, c.heartbeats, c.oneways, c.responses),
            (1, 1, 1, 2)
        );
    }

    #[test]
    fn heartbeats_go_unanswered_while_answers_are_off_and_requests_still_get_theirs() {
        let shared = Shared::new(EchoOptions::default());
        let (tx, _rx) = mpsc::channel(4);
        let mut out = BytesMut::new();
        shared.answer_heartbeats.store(false, Ordering::SeqCst);
        handle_frame(&frame(Request::heartbeat(5)), &mut out, &tx, &shared);
        assert!(out.is_empty(), "no ack while off");
        handle_frame(
            &frame(Request::rpc(6, Some("s"), &b"x"[..])),
            &mut out,
            &tx,
            &shared,
        );
        let reader = FrameReader::default();
        assert_eq!(reader.next_frame(&mut out).unwrap().unwrap().id(), 6);
        shared.answer_heartbeats.store(true, Ordering::SeqCst);
        handle_frame(&frame(Request::heartbeat(7)), &mut out, &tx, &shared);
        assert_eq!(reader.next_frame(&mut out).unwrap().unwrap().id(), 7);
        let c = shared.counters.snapshot();
        assert_eq!((c.heartbeats, c.heartbeats_ignored), (2, 1));
    }

    #[test]
    fn held_answers_wait_for_the_release_and_later_ones_go_out_in_place() {
        let shared = Shared::new(EchoOptions::default());
        let (tx, _rx) = mpsc::channel(4);
        let held = |id| frame(Request::rpc(id, Some("s"), &b"x"[..]).header(HOLD_HEADER, "1"));
        let mut out = BytesMut::new();
        handle_frame(&held(1), &mut out, &tx, &shared);
        assert!(out.is_empty(), "held, not answered");
        assert_eq!(shared.counters.snapshot().held, 1);
        let released = lock(&shared.held).take().expect("still holding");
        assert_eq!(released.len(), 1);
        let reader = FrameReader::default();
        let mut answer = BytesMut::from(&released[0].1[..]);
        assert_eq!(reader.next_frame(&mut answer).unwrap().unwrap().id(), 1);
        // After the release, an `echo-hold` request is answered with the others of its batch.
        handle_frame(&held(2), &mut out, &tx, &shared);
        assert_eq!(reader.next_frame(&mut out).unwrap().unwrap().id(), 2);
        assert_eq!(shared.counters.snapshot().held, 1);
    }

    #[test]
    fn the_counters_query_answers_json_and_is_not_counted() {
        let shared = Shared::new(EchoOptions::default());
        let (tx, _rx) = mpsc::channel(4);
        let mut out = BytesMut::new();
        handle_frame(&frame(Request::heartbeat(1)), &mut out, &tx, &shared);
        let query = Request::rpc(2, None, Bytes::new()).header(COUNTERS_HEADER, "1");
        handle_frame(&frame(query), &mut out, &tx, &shared);
        let reader = FrameReader::default();
        reader.next_frame(&mut out).unwrap().unwrap();
        let answer = reader.next_frame(&mut out).unwrap().unwrap();
        assert_eq!((answer.id(), answer.status()), (2, Some(status::SUCCESS)));
        let reported: EchoCounters = serde_json::from_slice(&answer.content()).unwrap();
        assert_eq!((reported.heartbeats, reported.responses), (1, 1));
        assert_eq!(
            shared.counters.snapshot(),
            reported,
            "the query itself is not counted"
        );
    }
}

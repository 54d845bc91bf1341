//! `BoltClient`: an async Bolt v1 client multiplexing many calls over one TCP connection.
//!
//! A reader task matches responses to waiting calls by id; a writer task batches queued frames
//! into as few writes as possible. When the connection ends, every call in flight fails with
//! the reason at once: nothing hangs. Frames nobody waits for (late answers after a timeout,
//! unknown ids, requests from the peer) are kept for [`BoltClient::next_unsolicited`].
//!
//! A GoAway from the peer (a request with cmdCode 100, MOSN's `CmdCodeGoAway`) is honoured:
//! calls in flight still get their answers, new calls and oneways are refused with
//! [`ClientError::GoAway`] without being written, and [`BoltClient::goaway_received`] /
//! [`BoltClient::wait_goaway`] tell the caller to connect anew.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tracing::debug;

use crate::error::{ClientError, CloseReason};
use crate::wire::{Frame, FrameReader, FrameType, Request, CMD_GOAWAY, DEFAULT_MAX_FRAME_LEN};

/// Coalesced writes stop growing past this size.
const MAX_WRITE_BATCH: usize = 256 * 1024;
/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;

/// How a [`BoltClient`] behaves.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// First id handed out by [`BoltClient::next_id`]; pick something unlike what a proxy
    /// assigns upstream (MOSN starts at 1) so tests can tell the two apart.
    pub first_id: u32,
    /// Deadline of [`BoltClient::call`].
    pub call_timeout: Duration,
    /// Frames longer than this from the peer close the connection.
    pub max_frame_len: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            first_id: 1_000_000,
            call_timeout: Duration::from_secs(5),
            max_frame_len: DEFAULT_MAX_FRAME_LEN,
        }
    }
}

type Waiter = oneshot::Sender<Result<Frame, CloseReason>>;

#[derive(Debug, Default)]
struct State {
    pending: HashMap<u32, Waiter>,
    closed: Option<CloseReason>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    closed_tx: watch::Sender<Option<CloseReason>>,
    /// Set (and never cleared) when the peer sent a GoAway.
    goaway: AtomicBool,
    goaway_tx: watch::Sender<bool>,
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    /// Marks the connection closed (first reason wins) and fails every waiting call.
    fn close(&self, reason: CloseReason) {
        let waiters = {
            let mut st = lock(&self.state);
            if st.closed.is_some() {
                return;
            }
            st.closed = Some(reason.clone());
            std::mem::take(&mut st.pending)
        };
        debug!(%reason, failed = waiters.len(), "client connection closed");
        for (_, w) in waiters {
            let _ = w.send(Err(reason.clone()));
        }
        self.closed_tx.send_replace(Some(reason));
    }

    fn register(
        &self,
        id: u32,
    ) -> Result<oneshot::Receiver<Result<Frame, CloseReason>>, ClientError> {
        let mut st = lock(&self.state);
        if let Some(reason) = &st.closed {
            return Err(ClientError::ConnectionLost(reason.clone()));
        }
        if self.goaway.load(Ordering::Acquire) {
            return Err(ClientError::GoAway);
        }
        if st.pending.contains_key(&id) {
            return Err(ClientError::DuplicateId(id));
        }
        let (tx, rx) = oneshot::channel();
        st.pending.insert(id, tx);
        Ok(rx)
    }

    fn unregister(&self, id: u32) {
        lock(&self.state).pending.remove(&id);
    }
}

/// One multiplexed client connection. Dropping it closes the connection.
#[derive(Debug)]
pub struct BoltClient {
    shared: Arc<Shared>,
    out: mpsc::UnboundedSender<Bytes>,
    unsolicited: tokio::sync::Mutex<mpsc::UnboundedReceiver<Frame>>,
    closed_rx: watch::Receiver<Option<CloseReason>>,
    next_id: AtomicU32,
    options: ClientOptions,
    local_addr: SocketAddr,
    peer_addr: SocketAddr,
}

impl BoltClient {
    /// Connects with default options (TCP_NODELAY on).
    ///
    /// # Errors
    /// [`ClientError::Connect`] when the connection fails.
    pub async fn connect(addr: SocketAddr) -> Result<BoltClient, ClientError> {
        Self::connect_with(addr, ClientOptions::default()).await
    }

    /// Connects with `options`.
    ///
    /// # Errors
    /// [`ClientError::Connect`] when the connection fails.
    pub async fn connect_with(
        addr: SocketAddr,
        options: ClientOptions,
    ) -> Result<BoltClient, ClientError> {
        let connect_err = |source| ClientError::Connect { addr, source };
        let sock = TcpStream::connect(addr).await.map_err(connect_err)?;
        sock.set_nodelay(true).map_err(connect_err)?;
        let local_addr = sock.local_addr().map_err(connect_err)?;
        let (closed_tx, closed_rx) = watch::channel(None);
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            closed_tx,
            goaway: AtomicBool::new(false),
            goaway_tx: watch::channel(false).0,
        });
        let (rd, wr) = sock.into_split();
        let (out, out_rx) = mpsc::unbounded_channel();
        let (unsolicited_tx, unsolicited_rx) = mpsc::unbounded_channel();
        let reader = FrameReader::new(options.max_frame_len);
        tokio::spawn(read_loop(rd, reader, shared.clone(), unsolicited_tx));
        tokio::spawn(write_loop(wr, out_rx, shared.clone()));
        Ok(BoltClient {
            shared,
            out,
            unsolicited: tokio::sync::Mutex::new(unsolicited_rx),
            closed_rx,
            next_id: AtomicU32::new(options.first_id),
            options,
            local_addr,
            peer_addr: addr,
        })
    }

    /// The local end of the connection.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address connected to.
    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_addr
    }

    /// A fresh request id (sequential from [`ClientOptions::first_id`], wrapping).
    pub fn next_id(&self) -> u32 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Sends `request` (with the id it carries) and waits for the response with that id, up to
    /// [`ClientOptions::call_timeout`].
    ///
    /// # Errors
    /// Timeout, connection loss, a duplicate id in flight, or an unencodable request.
    pub async fn call(&self, request: &Request) -> Result<Frame, ClientError> {
        self.call_within(request, self.options.call_timeout).await
    }

    /// [`BoltClient::call`] with an explicit deadline.
    ///
    /// # Errors
    /// Timeout, connection loss, a duplicate id in flight, or an unencodable request.
    pub async fn call_within(
        &self,
        request: &Request,
        deadline: Duration,
    ) -> Result<Frame, ClientError> {
        let bytes = request.to_bytes().map_err(ClientError::Encode)?;
        self.call_raw(bytes, request.head.id, deadline).await
    }

    /// Builds an RPC request with a fresh id, `service` header and `content`, and calls it.
    ///
    /// # Errors
    /// As [`BoltClient::call`].
    pub async fn rpc(
        &self,
        service: &str,
        content: impl Into<Bytes>,
    ) -> Result<Frame, ClientError> {
        self.call(&Request::rpc(self.next_id(), Some(service), content))
            .await
    }

    /// Writes arbitrary bytes (e.g. a malformed frame) and waits for a response carrying `id`.
    ///
    /// # Errors
    /// Timeout, connection loss or a duplicate id in flight.
    pub async fn call_raw(
        &self,
        bytes: Bytes,
        id: u32,
        deadline: Duration,
    ) -> Result<Frame, ClientError> {
        let rx = self.shared.register(id)?;
        if self.out.send(bytes).is_err() {
            self.shared.unregister(id);
            return Err(self.lost());
        }
        match tokio::time::timeout(deadline, rx).await {
            Ok(Ok(Ok(frame))) => Ok(frame),
            Ok(Ok(Err(reason))) => Err(ClientError::ConnectionLost(reason)),
            // The waiter was dropped without an answer: only happens on close.
            Ok(Err(_)) => Err(self.lost()),
            Err(_) => {
                self.shared.unregister(id);
                Err(ClientError::Timeout {
                    id,
                    after: deadline,
                })
            }
        }
    }

    /// Sends a heartbeat with a fresh id and waits for its ack.
    ///
    /// # Errors
    /// As [`BoltClient::call`].
    pub async fn heartbeat(&self) -> Result<Frame, ClientError> {
        self.call(&Request::heartbeat(self.next_id())).await
    }

    /// Sends a oneway request (forces the oneway type); nothing is awaited.
    ///
    /// # Errors
    /// Connection loss or an unencodable request.
    pub fn send_oneway(&self, request: &Request) -> Result<(), ClientError> {
        if self.goaway_received() {
            return Err(ClientError::GoAway);
        }
        let bytes = request
            .clone()
            .oneway()
            .to_bytes()
            .map_err(ClientError::Encode)?;
        self.send_raw(bytes)
    }

    /// Queues arbitrary bytes for writing, e.g. malformed input; any answer goes to
    /// [`BoltClient::next_unsolicited`].
    ///
    /// # Errors
    /// [`ClientError::ConnectionLost`] when the connection has ended.
    pub fn send_raw(&self, bytes: Bytes) -> Result<(), ClientError> {
        if let Some(reason) = self.close_reason() {
            return Err(ClientError::ConnectionLost(reason));
        }
        self.out.send(bytes).map_err(|_| self.lost())
    }

    /// The next frame that no call was waiting for, or `None` if none arrives within `deadline`
    /// (or the connection ended and all were taken).
    pub async fn next_unsolicited(&self, deadline: Duration) -> Option<Frame> {
        let mut rx = self.unsolicited.lock().await;
        tokio::time::timeout(deadline, rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Why the connection ended, if it has.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.closed_rx.borrow().clone()
    }

    /// Waits until the connection ends, up to `deadline`; `None` if still open then.
    pub async fn wait_closed(&self, deadline: Duration) -> Option<CloseReason> {
        let mut rx = self.closed_rx.clone();
        let closed = tokio::time::timeout(deadline, rx.wait_for(Option::is_some)).await;
        match closed {
            Ok(Ok(reason)) => reason.clone(),
            _ => self.close_reason(),
        }
    }

    /// True once the peer sent a GoAway on this connection: new calls are refused
    /// ([`ClientError::GoAway`]); the caller should connect anew.
    pub fn goaway_received(&self) -> bool {
        self.shared.goaway.load(Ordering::Acquire)
    }

    /// Waits until the peer sends a GoAway, up to `deadline`; false if none came by then.
    pub async fn wait_goaway(&self, deadline: Duration) -> bool {
        let mut rx = self.shared.goaway_tx.subscribe();
        let seen = tokio::time::timeout(deadline, rx.wait_for(|g| *g)).await;
        matches!(seen, Ok(Ok(_))) || self.goaway_received()
    }

    /// Number of calls waiting for an answer.
    pub fn in_flight(&self) -> usize {
        lock(&self.shared.state).pending.len()
    }

    /// Closes the connection; calls in flight fail with [`CloseReason::Local`].
    pub fn close(&self) {
        self.shared.close(CloseReason::Local);
    }

    fn lost(&self) -> ClientError {
        ClientError::ConnectionLost(self.close_reason().unwrap_or(CloseReason::Local))
    }
}

impl Drop for BoltClient {
    fn drop(&mut self) {
        self.close();
    }
}

async fn closed(rx: &mut watch::Receiver<Option<CloseReason>>) {
    let _ = rx.wait_for(Option::is_some).await;
}

async fn read_loop(
    mut rd: OwnedReadHalf,
    reader: FrameReader,
    shared: Arc<Shared>,
    unsolicited: mpsc::UnboundedSender<Frame>,
) {
    let mut closed_rx = shared.closed_tx.subscribe();
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let reason = loop {
        if buf.capacity() - buf.len() < READ_CHUNK / 4 {
            buf.reserve(READ_CHUNK);
        }
        let read = tokio::select! {
            biased;
            _ = closed(&mut closed_rx) => return,
            r = rd.read_buf(&mut buf) => r,
        };
        match read {
            Ok(0) => break CloseReason::PeerClosed,
            Ok(_) => {}
            Err(e) => break CloseReason::Io(e.kind()),
        }
        let mut failed = None;
        loop {
            match reader.next_frame(&mut buf) {
                Ok(Some(frame)) => deliver(frame, &shared, &unsolicited),
                Ok(None) => break,
                Err(e) => {
                    failed = Some(CloseReason::Protocol(e));
                    break;
                }
            }
        }
        if let Some(reason) = failed {
            break reason;
        }
    };
    shared.close(reason);
}

fn deliver(frame: Frame, shared: &Shared, unsolicited: &mpsc::UnboundedSender<Frame>) {
    if frame.is_request() && frame.cmd_code() == CMD_GOAWAY {
        // Taken under the state lock, so a call registering concurrently either is in
        // `pending` already (and gets its answer) or sees the flag (and is not written).
        let _st = lock(&shared.state);
        if !shared.goaway.swap(true, Ordering::AcqRel) {
            debug!(
                id = frame.id(),
                "peer sent GoAway: no new calls on this connection"
            );
        }
        shared.goaway_tx.send_replace(true);
        return;
    }
    let waiter = if frame.frame_type() == FrameType::Response {
        lock(&shared.state).pending.remove(&frame.id())
    } else {
        None
    };
    match waiter {
        Some(w) => {
            // The caller may have timed out and gone: then the answer is simply dropped.
            let _ = w.send(Ok(frame));
        }
        None => {
            let _ = unsolicited.send(frame);
        }
    }
}

async fn write_loop(
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    shared: Arc<Shared>,
) {
    let mut closed_rx = shared.closed_tx.subscribe();
    let mut batch = BytesMut::new();
    loop {
        let first = tokio::select! {
            biased;
            _ = closed(&mut closed_rx) => return,
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
            _ = closed(&mut closed_rx) => return,
            r = write => r,
        };
        if let Err(e) = result {
            shared.close(CloseReason::Io(e.kind()));
            return;
        }
    }
}

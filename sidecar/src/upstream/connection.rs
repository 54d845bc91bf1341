//! One upstream connection: a [`FramedConn`] whose handler matches responses to requests by
//! upstream id, answers the upstream's heartbeats, and keeps the connection alive with its
//! own heartbeats after an idle period, closing it after too many misses (xprotocol spec,
//! `docs/xprotocol-proxy-and-bolt.md` §2.5). One task reads and keeps alive; the framed
//! connection's writer task writes.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use codec_host::{Frame, FrameKind};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::inflight::InFlight;
use crate::config::KeepaliveConfig;
use crate::failure::Failure;
use crate::framed::{CodecRef, FrameSink, FramedConn, ReadError, SendError};
use crate::stats::ClusterStats;

/// What a response waiter receives.
pub type ResponseResult = Result<Frame, Failure>;

enum Pending {
    Request(oneshot::Sender<ResponseResult>),
    Heartbeat,
}

/// A live upstream connection shared by the requests of one worker.
pub struct UpstreamConn {
    addr: SocketAddr,
    sink: FrameSink,
    inflight: RefCell<InFlight<Pending>>,
    closed: Cell<bool>,
    oneway_ids: Cell<u32>,
    stats: Arc<ClusterStats>,
}

impl UpstreamConn {
    /// Connects to `addr` within `connect_timeout` and starts the connection's handler and
    /// writer tasks on the current worker.
    ///
    /// # Errors
    /// [`Failure::ConnectFailed`] when the connection cannot be made in time.
    pub async fn connect(
        addr: SocketAddr,
        connect_timeout: Duration,
        codec: CodecRef,
        keepalive: KeepaliveConfig,
        stats: Arc<ClusterStats>,
    ) -> Result<Rc<UpstreamConn>, Failure> {
        let stream = match tokio::time::timeout(connect_timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                debug!(%addr, cause = %e, "upstream connect failed");
                stats.connection_con_fail.inc();
                return Err(Failure::ConnectFailed);
            }
            Err(_) => {
                debug!(%addr, "upstream connect timed out");
                stats.connection_con_fail.inc();
                return Err(Failure::ConnectFailed);
            }
        };
        let _ = stream.set_nodelay(true);
        stats.connection_total.inc();
        stats.connection_active.inc();
        let framed = FramedConn::new(stream, codec, {
            let stats = stats.clone();
            move |n| stats.connection_bytes_read_total.add(n as u64)
        });
        let conn = Rc::new(UpstreamConn {
            addr,
            sink: framed.sink().clone(),
            inflight: RefCell::new(InFlight::new()),
            closed: Cell::new(false),
            oneway_ids: Cell::new(0),
            stats,
        });
        tokio::task::spawn_local(conn.clone().run(framed, Keepalive::new(keepalive)));
        Ok(conn)
    }

    /// The peer address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// True once the connection is closed (by either side).
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// Requests (and heartbeats) in flight.
    pub fn in_flight(&self) -> usize {
        self.inflight.borrow().len()
    }

    /// Encodes `frame` with a fresh upstream id and queues it; the returned future resolves
    /// to the response (or the failure that ended the wait) and forgets the id when dropped
    /// unanswered.
    ///
    /// # Errors
    /// [`Failure::ConnectFailed`] when the connection is closed (retryable),
    /// [`Failure::Overflow`] when its id table is full, [`Failure::EncodeFailed`] when the
    /// codec cannot encode the frame.
    pub fn send(self: &Rc<Self>, frame: &mut Frame) -> Result<PendingResponse, Failure> {
        if self.closed.get() {
            return Err(Failure::ConnectFailed);
        }
        let (tx, rx) = oneshot::channel();
        let id = self
            .inflight
            .borrow_mut()
            .insert(Pending::Request(tx))
            .map_err(|_| Failure::Overflow)?;
        if let Err(f) = self.write_frame(frame, id as u64) {
            self.inflight.borrow_mut().remove(id as u64);
            return Err(f);
        }
        self.stats.request_total.inc();
        Ok(PendingResponse {
            conn: self.clone(),
            id,
            rx,
            answered: false,
        })
    }

    /// Encodes and queues a oneway request with a fresh id; no id is registered, since
    /// nothing comes back.
    ///
    /// # Errors
    /// As [`UpstreamConn::send`].
    pub fn send_oneway(&self, frame: &mut Frame) -> Result<(), Failure> {
        if self.closed.get() {
            return Err(Failure::ConnectFailed);
        }
        let id = self.oneway_ids.get().wrapping_add(1).max(1);
        self.oneway_ids.set(id);
        self.write_frame(frame, id as u64)?;
        self.stats.request_total.inc();
        Ok(())
    }

    fn write_frame(&self, frame: &mut Frame, id: u64) -> Result<(), Failure> {
        match self.sink.send(frame, id) {
            Ok(()) => Ok(()),
            Err(SendError::Codec(e)) => {
                warn!(addr = %self.addr, cause = %e, "cannot encode request for upstream");
                Err(Failure::EncodeFailed)
            }
            Err(_) => Err(Failure::ConnectFailed),
        }
    }

    /// Forgets a request whose waiter gave up (timeout, downstream gone); a late response
    /// for it is dropped and counted.
    fn cancel(&self, id: u32) {
        self.inflight.borrow_mut().remove(id as u64);
    }

    /// Closes the connection and fails every request in flight with
    /// [`Failure::UpstreamClosed`].
    pub fn close(&self, remote: bool) {
        if self.closed.replace(true) {
            return;
        }
        if remote {
            self.stats.connection_remote_close.inc();
        } else {
            self.stats.connection_local_close.inc();
        }
        self.stats.connection_active.dec();
        self.sink.close();
        let pending = self.inflight.borrow_mut().drain();
        for p in pending {
            if let Pending::Request(tx) = p {
                self.stats.request_connection_closed.inc();
                let _ = tx.send(Err(Failure::UpstreamClosed));
            }
        }
    }

    /// The connection's handler: frames in, heartbeats out, until it closes.
    async fn run(self: Rc<Self>, mut framed: FramedConn, mut keepalive: Keepalive) {
        let sink = self.sink.clone();
        while !self.closed.get() {
            let wake = keepalive.wake(framed.last_read());
            let read = tokio::select! {
                biased;
                read = framed.next_frame() => read,
                _ = tokio::time::sleep_until(wake), if keepalive.is_on() => {
                    keepalive.on_timer(&self, framed.last_read());
                    continue;
                }
                // Closed by us (pool shutdown, keepalive), a write error or an overflow.
                _ = sink.closed() => {
                    self.close(false);
                    continue;
                }
            };
            match read {
                Ok(Some(frame)) => self.on_frame(frame),
                Ok(None) => {
                    debug!(addr = %self.addr, "upstream closed the connection");
                    self.close(true);
                }
                Err(ReadError::Io(e)) => {
                    debug!(addr = %self.addr, cause = %e, "upstream read failed");
                    self.close(true);
                }
                Err(ReadError::Codec(e)) => {
                    warn!(addr = %self.addr, cause = %e, "closing upstream connection: codec rejected its bytes");
                    self.close(false);
                }
            }
        }
        framed.close().await;
    }

    fn on_frame(&self, mut frame: Frame) {
        match frame.kind() {
            FrameKind::Response | FrameKind::HeartbeatResponse => {
                let pending = self.inflight.borrow_mut().remove(frame.id());
                match pending {
                    Some(Pending::Request(tx)) => {
                        self.stats.response_received.inc();
                        let _ = tx.send(Ok(frame));
                    }
                    Some(Pending::Heartbeat) => {
                        self.stats.keepalive_ack.inc();
                    }
                    None => {
                        self.stats.response_late_dropped.inc();
                        debug!(addr = %self.addr, id = frame.id(), "dropping response with unknown id");
                    }
                }
            }
            FrameKind::HeartbeatRequest => {
                if let Err(e) = self.sink.reply_keepalive(&mut frame) {
                    warn!(addr = %self.addr, cause = %e, "cannot answer upstream heartbeat");
                }
            }
            FrameKind::Request | FrameKind::Oneway => {
                debug!(addr = %self.addr, "ignoring a request sent by an upstream");
            }
        }
    }
}

/// The response to one request sent on an upstream connection. Dropped before it resolves
/// (a timeout, the downstream gone), it forgets the request's upstream id, so a late
/// response finds nothing and is counted as late.
pub struct PendingResponse {
    conn: Rc<UpstreamConn>,
    id: u32,
    rx: oneshot::Receiver<ResponseResult>,
    answered: bool,
}

impl Future for PendingResponse {
    type Output = ResponseResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ResponseResult> {
        let received = ready!(Pin::new(&mut self.rx).poll(cx));
        self.answered = true;
        // A dropped sender means the connection went away with the request.
        Poll::Ready(received.unwrap_or(Err(Failure::UpstreamClosed)))
    }
}

impl Drop for PendingResponse {
    fn drop(&mut self) {
        if !self.answered {
            self.conn.cancel(self.id);
        }
    }
}

/// The keepalive state of one connection: a heartbeat whenever nothing was read for `idle`,
/// a miss when its ack does not arrive within `timeout`, and a close after `max_failures`
/// consecutive misses.
struct Keepalive {
    settings: KeepaliveConfig,
    /// Idleness is measured from the later of the last read and this (the last probe).
    probed_at: Instant,
    /// After a miss: probe again right away rather than after another idle period.
    reprobe: bool,
    awaiting: Option<(u32, Instant)>,
    misses: u32,
    on: bool,
}

impl Keepalive {
    fn new(settings: KeepaliveConfig) -> Keepalive {
        Keepalive {
            settings: KeepaliveConfig {
                max_failures: settings.max_failures.max(1),
                ..settings
            },
            probed_at: Instant::now(),
            reprobe: false,
            awaiting: None,
            misses: 0,
            on: true,
        }
    }

    /// False once the protocol turned out to have no heartbeat (or cannot build one).
    fn is_on(&self) -> bool {
        self.on
    }

    /// When the timer should fire next.
    fn wake(&self, last_read: Instant) -> Instant {
        match self.awaiting {
            Some((_, until)) => until,
            None if self.reprobe => self.probed_at,
            None => last_read.max(self.probed_at) + self.settings.idle,
        }
    }

    fn on_timer(&mut self, conn: &UpstreamConn, last_read: Instant) {
        let now = Instant::now();
        if let Some((id, _)) = self.awaiting.take() {
            self.check_ack(conn, id);
        } else if self.reprobe || last_read.max(self.probed_at) + self.settings.idle <= now {
            self.probe(conn, now);
        }
    }

    /// The ack's wait is over: still registered means nobody answered in time.
    fn check_ack(&mut self, conn: &UpstreamConn, id: u32) {
        if conn.inflight.borrow_mut().remove(id as u64).is_none() {
            self.misses = 0;
            return;
        }
        self.misses += 1;
        conn.stats.keepalive_timeout.inc();
        if self.misses >= self.settings.max_failures {
            warn!(addr = %conn.addr, misses = self.misses, "closing upstream connection: heartbeats unanswered");
            conn.close(false);
        } else {
            self.reprobe = true;
        }
    }

    fn probe(&mut self, conn: &UpstreamConn, now: Instant) {
        self.probed_at = now;
        self.reprobe = false;
        let Ok(id) = conn.inflight.borrow_mut().insert(Pending::Heartbeat) else {
            return; // id table full: the connection is busy anyway; try after another idle
        };
        match conn.sink.keepalive(id as u64) {
            Ok(()) => {
                conn.stats.keepalive_sent.inc();
                self.awaiting = Some((id, now + self.settings.timeout));
            }
            Err(e) => {
                conn.inflight.borrow_mut().remove(id as u64);
                match e {
                    SendError::Closed => {}
                    SendError::Unsupported => {
                        debug!(addr = %conn.addr, "protocol has no keepalive; idle upstream is not probed");
                        self.on = false;
                    }
                    SendError::Codec(e) => {
                        warn!(addr = %conn.addr, cause = %e, "cannot build keepalive heartbeat");
                        self.on = false;
                    }
                }
            }
        }
    }
}

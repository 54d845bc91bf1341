//! One upstream connection: writes encoded requests, reads and matches responses by
//! upstream id, answers heartbeats from the upstream, and keeps itself alive with heartbeats
//! after an idle period, closing after too many misses (spec §2.5).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use codec_host::{Frame, FrameKind};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::inflight::InFlight;
use crate::failure::Failure;
use crate::stats::ClusterStats;
use crate::worker::CodecRef;
use crate::write_queue::WriteQueue;

/// Keepalive settings of a cluster (spec §2.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepaliveSettings {
    /// Idle time without reads before a heartbeat is sent.
    pub idle: Duration,
    /// How long to wait for the heartbeat's ack.
    pub timeout: Duration,
    /// Consecutive misses that close the connection.
    pub max_failures: u32,
}

/// What a response waiter receives.
pub type ResponseResult = Result<Frame, Failure>;

enum Pending {
    Request(oneshot::Sender<ResponseResult>),
    Heartbeat,
}

/// A live upstream connection shared by the requests of one worker.
pub struct UpstreamConn {
    addr: SocketAddr,
    codec: CodecRef,
    writer: WriteQueue,
    inflight: RefCell<InFlight<Pending>>,
    closed: Cell<bool>,
    close_signal: Notify,
    last_read: Cell<Instant>,
    oneway_ids: Cell<u32>,
    stats: Arc<ClusterStats>,
}

impl UpstreamConn {
    /// Connects to `addr` within `connect_timeout` and starts the connection's reader,
    /// writer and keepalive tasks on the current worker.
    ///
    /// # Errors
    /// [`Failure::ConnectFailed`] when the connection cannot be made in time.
    pub async fn connect(
        addr: SocketAddr,
        connect_timeout: Duration,
        codec: CodecRef,
        keepalive: KeepaliveSettings,
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
        let (read, write) = stream.into_split();
        let conn = Rc::new(UpstreamConn {
            addr,
            codec,
            writer: WriteQueue::new(),
            inflight: RefCell::new(InFlight::new()),
            closed: Cell::new(false),
            close_signal: Notify::new(),
            last_read: Cell::new(Instant::now()),
            oneway_ids: Cell::new(0),
            stats,
        });
        {
            let c = conn.clone();
            tokio::task::spawn_local(async move {
                if let Err(e) = c.writer.run_writer(write).await {
                    debug!(addr = %c.addr, cause = %e, "upstream write failed");
                }
                c.close(false);
            });
        }
        {
            let c = conn.clone();
            tokio::task::spawn_local(async move { c.read_loop(read).await });
        }
        {
            let c = Rc::downgrade(&conn);
            tokio::task::spawn_local(keepalive_loop(c, keepalive));
        }
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

    /// Encodes `frame` with a fresh upstream id and queues it; the receiver gets the
    /// response (or the failure that ended the wait).
    ///
    /// # Errors
    /// [`Failure::ConnectFailed`] when the connection is closed (retryable),
    /// [`Failure::Overflow`] when its id table is full, [`Failure::EncodeFailed`] when the
    /// codec cannot encode the frame.
    pub fn send(
        &self,
        frame: &mut Frame,
    ) -> Result<(u32, oneshot::Receiver<ResponseResult>), Failure> {
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
        Ok((id, rx))
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
        let codec = &self.codec;
        match self
            .writer
            .push_with(|buf| codec.borrow_mut().encode(frame, id, buf))
        {
            Ok(true) => Ok(()),
            Ok(false) => Err(Failure::ConnectFailed),
            Err(e) => {
                warn!(addr = %self.addr, cause = %e, "cannot encode request for upstream");
                Err(Failure::EncodeFailed)
            }
        }
    }

    /// Forgets a request whose waiter gave up (timeout, downstream gone); a late response
    /// for it is dropped and counted.
    pub fn cancel(&self, id: u32) {
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
        self.writer.close();
        self.close_signal.notify_one();
        let pending = self.inflight.borrow_mut().drain();
        for p in pending {
            if let Pending::Request(tx) = p {
                self.stats.request_connection_closed.inc();
                let _ = tx.send(Err(Failure::UpstreamClosed));
            }
        }
    }

    async fn read_loop(self: Rc<Self>, mut read: tokio::net::tcp::OwnedReadHalf) {
        let mut buf = BytesMut::with_capacity(16 * 1024);
        loop {
            if buf.capacity() - buf.len() < 4096 {
                buf.reserve(16 * 1024);
            }
            let n = tokio::select! {
                r = read.read_buf(&mut buf) => r,
                _ = self.close_signal.notified() => return,
            };
            match n {
                Ok(0) => {
                    debug!(addr = %self.addr, "upstream closed the connection");
                    self.close(true);
                    return;
                }
                Ok(n) => {
                    self.stats.connection_bytes_read_total.add(n as u64);
                    self.last_read.set(Instant::now());
                }
                Err(e) => {
                    debug!(addr = %self.addr, cause = %e, "upstream read failed");
                    self.close(true);
                    return;
                }
            }
            loop {
                let decoded = self.codec.borrow_mut().decode(&mut buf);
                match decoded {
                    Ok(Some(frame)) => self.on_frame(frame),
                    Ok(None) => break,
                    Err(e) => {
                        warn!(addr = %self.addr, cause = %e, "closing upstream connection: codec rejected its bytes");
                        self.close(false);
                        return;
                    }
                }
            }
        }
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
                let codec = &self.codec;
                if let Err(e) = self
                    .writer
                    .push_with(|buf| codec.borrow_mut().reply_keepalive(&mut frame, buf))
                {
                    warn!(addr = %self.addr, cause = %e, "cannot answer upstream heartbeat");
                }
            }
            FrameKind::Request | FrameKind::Oneway => {
                debug!(addr = %self.addr, "ignoring a request sent by an upstream");
            }
        }
    }
}

/// Sends a heartbeat whenever the connection has read nothing for `idle`, and closes it
/// after `max_failures` consecutive heartbeats go unanswered within `timeout`.
async fn keepalive_loop(conn: std::rc::Weak<UpstreamConn>, settings: KeepaliveSettings) {
    let mut misses = 0u32;
    loop {
        let wake = match conn.upgrade() {
            Some(c) if !c.is_closed() => c.last_read.get() + settings.idle,
            _ => return,
        };
        tokio::time::sleep_until(wake).await;
        let Some(c) = conn.upgrade() else { return };
        if c.is_closed() {
            return;
        }
        if c.last_read.get() + settings.idle > Instant::now() {
            continue; // traffic arrived meanwhile
        }
        let Ok(id) = c.inflight.borrow_mut().insert(Pending::Heartbeat) else {
            continue;
        };
        let heartbeat = c.codec.borrow_mut().keepalive(id as u64);
        match heartbeat {
            Ok(Some(bytes)) => {
                c.writer.push(&bytes);
                c.stats.keepalive_sent.inc();
            }
            Ok(None) => {
                c.inflight.borrow_mut().remove(id as u64);
                debug!(addr = %c.addr, "protocol has no keepalive; idle upstream is not probed");
                return;
            }
            Err(e) => {
                c.inflight.borrow_mut().remove(id as u64);
                warn!(addr = %c.addr, cause = %e, "cannot build keepalive heartbeat");
                return;
            }
        }
        drop(c);
        tokio::time::sleep(settings.timeout).await;
        let Some(c) = conn.upgrade() else { return };
        // Still registered: nobody answered in time.
        let missed = c.inflight.borrow_mut().remove(id as u64).is_some();
        if missed {
            misses += 1;
            c.stats.keepalive_timeout.inc();
            if misses >= settings.max_failures {
                warn!(addr = %c.addr, misses, "closing upstream connection: heartbeats unanswered");
                c.close(false);
                return;
            }
            // Probe again right away rather than after another idle period.
            c.last_read.set(Instant::now() - settings.idle);
        } else {
            misses = 0;
        }
    }
}

//! One upstream connection: a [`FramedConn`] whose handler matches responses to requests by
//! upstream id, answers the upstream's heartbeats, and keeps the connection alive with its
//! own heartbeats after an idle period, closing it after too many misses (xprotocol spec,
//! `docs/xprotocol-proxy-and-bolt.md` §2.5). One task reads and keeps alive; the framed
//! connection's writer task writes.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use codec_host::{Frame, FrameKind};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::keepalive::{Due, Keepalive};
use super::waiters::{Matched, PendingResponse, Reserved, Waiters};
use crate::config::KeepaliveConfig;
use crate::failure::Failure;
use crate::framed::{CodecRef, FrameSink, FramedConn, ReadError, ReadLimits, SendError};
use crate::stats::HostStats;

/// A live upstream connection shared by the requests of one worker.
pub struct UpstreamConn {
    addr: SocketAddr,
    local: Option<SocketAddr>,
    sink: FrameSink,
    waiters: Waiters,
    closed: Cell<bool>,
    /// Set by the upstream's GoAway or a host address change: no new requests; closes once
    /// nothing is in flight.
    draining: Cell<bool>,
    oneway_ids: Cell<u32>,
    stats: HostStats,
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
        read_limits: ReadLimits,
        stats: HostStats,
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
        let local = stream.local_addr().ok();
        stats.connection_total.inc();
        stats.connection_active.inc();
        let framed = FramedConn::with_limits(stream, codec, read_limits, None, {
            let stats = stats.clone();
            move |n| stats.connection_bytes_read_total.add(n as u64)
        });
        let conn = Rc::new(UpstreamConn {
            addr,
            local,
            sink: framed.sink().clone(),
            waiters: Waiters::default(),
            closed: Cell::new(false),
            draining: Cell::new(false),
            oneway_ids: Cell::new(0),
            stats,
        });
        tokio::task::spawn_local(
            conn.clone()
                .run(framed, Keepalive::new(keepalive, Instant::now())),
        );
        Ok(conn)
    }

    /// The peer address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The connection's local address.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    /// True once the connection is closed (by either side).
    pub fn is_closed(&self) -> bool {
        self.closed.get()
    }

    /// True when new requests may use this connection: open and not draining after a GoAway.
    pub fn is_usable(&self) -> bool {
        !self.closed.get() && !self.draining.get()
    }

    /// True once the upstream sent a GoAway (the connection finishes what is in flight).
    pub fn is_draining(&self) -> bool {
        self.draining.get()
    }

    /// Requests (and heartbeats) in flight.
    pub fn in_flight(&self) -> usize {
        self.waiters.len()
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
        // Draining: nothing was written, so another connection may take it (retryable).
        if !self.is_usable() {
            return Err(Failure::ConnectFailed);
        }
        let (id, response) = self.waiters.request().ok_or(Failure::Overflow)?;
        // On failure, dropping `response` forgets the id.
        self.write_frame(frame, id as u64)?;
        self.stats.request_total.inc();
        Ok(response)
    }

    /// Like [`UpstreamConn::send`], for a request with no task of its own: encodes and
    /// queues `frame` with a fresh upstream id, reserved for the handler that
    /// [`Reserved::park`] then hands to this connection's reader (answered with the
    /// response, the failure that closes the connection, or a timeout).
    ///
    /// # Errors
    /// As [`UpstreamConn::send`].
    pub fn send_reserved(&self, frame: &mut Frame) -> Result<Reserved, Failure> {
        if !self.is_usable() {
            return Err(Failure::ConnectFailed);
        }
        let reserved = self.waiters.reserve().ok_or(Failure::Overflow)?;
        // On failure, dropping `reserved` frees the id.
        self.write_frame(frame, reserved.id() as u64)?;
        self.stats.request_total.inc();
        Ok(reserved)
    }

    /// Forgets the inline request `id` (its handler is dropped unanswered: the downstream
    /// went away); a late response finds nothing.
    pub fn forget(&self, id: u32) {
        self.waiters.forget(id);
        self.close_if_drained();
    }

    /// Encodes and queues a oneway request with a fresh id; no id is registered, since
    /// nothing comes back.
    ///
    /// # Errors
    /// As [`UpstreamConn::send`].
    pub fn send_oneway(&self, frame: &mut Frame) -> Result<(), Failure> {
        if !self.is_usable() {
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
            Ok(_) => Ok(()),
            Err(SendError::Codec(e)) => {
                warn!(addr = %self.addr, cause = %e, "cannot encode request for upstream");
                Err(Failure::EncodeFailed)
            }
            Err(_) => Err(Failure::ConnectFailed),
        }
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
        let failed = self.waiters.fail_all(Failure::UpstreamClosed);
        self.stats.request_connection_closed.add(failed as u64);
    }

    /// The connection's handler: frames in, heartbeats out, until it closes.
    async fn run(self: Rc<Self>, mut framed: FramedConn, mut keepalive: Keepalive) {
        let sink = self.sink.clone();
        // One timer, re-armed when it fires (the keepalive rule checks idleness then).
        let timer = tokio::time::sleep_until(keepalive.wake(framed.last_read()));
        tokio::pin!(timer);
        while !self.closed.get() {
            let read = tokio::select! {
                biased;
                read = framed.read_frames(|frame, read_at| self.on_frame(frame, read_at), usize::MAX) => read,
                _ = &mut timer, if keepalive.is_on() => {
                    self.on_keepalive_timer(&mut keepalive, framed.last_read());
                    timer.as_mut().reset(keepalive.wake(framed.last_read()));
                    continue;
                }
                // An inline request's deadline passed: it was answered with a timeout.
                () = std::future::poll_fn(|cx| self.waiters.poll_timeout(cx)) => {
                    self.close_if_drained();
                    continue;
                }
                // Closed by us (pool shutdown, keepalive), a write error or an overflow.
                _ = sink.closed() => {
                    self.close(false);
                    continue;
                }
            };
            match read {
                Ok(true) => {}
                Ok(false) => {
                    debug!(addr = %self.addr, "upstream closed the connection");
                    self.close(true);
                }
                Err(ReadError::Io(e)) => {
                    debug!(addr = %self.addr, cause = %e, "upstream read failed");
                    self.close(true);
                }
                Err(e @ (ReadError::Codec(_) | ReadError::FrameTimeout { .. })) => {
                    warn!(addr = %self.addr, cause = %e, "closing upstream connection");
                    self.close(false);
                }
            }
        }
        framed.close().await;
    }

    fn on_frame(&self, mut frame: Frame, read_at: Instant) {
        if frame.is_goaway() {
            self.on_goaway();
            return;
        }
        match frame.kind() {
            FrameKind::Response | FrameKind::HeartbeatResponse => {
                match self.waiters.complete(frame, read_at) {
                    Matched::Request => {
                        self.stats.response_received.inc();
                        self.close_if_drained();
                    }
                    Matched::Heartbeat => {
                        self.stats.keepalive_ack.inc();
                        self.close_if_drained();
                    }
                    Matched::Late(frame) => {
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

impl UpstreamConn {
    /// The upstream's GoAway (xprotocol spec §2.9): the pool stops handing out this
    /// connection; it closes once its requests in flight are answered.
    fn on_goaway(&self) {
        if self.draining.replace(true) {
            return;
        }
        self.stats.upstream_goaway.inc();
        debug!(addr = %self.addr, in_flight = self.waiters.len(), "upstream sent GoAway: draining the connection");
        self.close_if_drained();
    }

    /// Stops handing out this connection (its host's address changed): requests in flight
    /// finish, then it closes.
    pub fn drain(&self) {
        if !self.draining.replace(true) {
            debug!(addr = %self.addr, in_flight = self.waiters.len(), "host address changed: draining the connection");
        }
        self.close_if_drained();
    }

    /// Closes a draining connection with nothing left in flight.
    fn close_if_drained(&self) {
        if self.draining.get() && self.waiters.is_empty() {
            debug!(addr = %self.addr, "drained after GoAway: closing");
            self.close(false);
        }
    }

    fn on_keepalive_timer(&self, keepalive: &mut Keepalive, last_read: Instant) {
        let now = Instant::now();
        match keepalive.due(now, last_read) {
            Due::Nothing => {}
            Due::Heartbeat => self.send_heartbeat(keepalive, now),
            Due::Ack(id) => {
                // Still registered: nobody answered in time.
                let missed = self.waiters.forget(id);
                if missed {
                    self.stats.keepalive_timeout.inc();
                }
                self.close_if_drained();
                if self.closed.get() {
                    return;
                }
                if keepalive.checked(missed) {
                    let misses = keepalive.misses();
                    let in_flight = self.waiters.len();
                    warn!(addr = %self.addr, misses, in_flight, "closing upstream connection: heartbeats unanswered");
                    self.stats.connection_keepalive_close.inc();
                    self.close(false);
                }
            }
        }
    }

    fn send_heartbeat(&self, keepalive: &mut Keepalive, now: Instant) {
        let Some(id) = self.waiters.heartbeat() else {
            return; // id table full: the connection is busy anyway; try after another idle
        };
        match self.sink.keepalive(id as u64) {
            Ok(()) => {
                self.stats.keepalive_sent.inc();
                keepalive.sent(id, now);
            }
            Err(e) => {
                self.waiters.forget(id);
                match e {
                    SendError::Closed => {}
                    SendError::Unsupported => {
                        debug!(addr = %self.addr, "protocol has no keepalive; idle upstream is not probed");
                        keepalive.turn_off();
                    }
                    SendError::Codec(e) => {
                        warn!(addr = %self.addr, cause = %e, "cannot build keepalive heartbeat");
                        keepalive.turn_off();
                    }
                }
            }
        }
    }
}

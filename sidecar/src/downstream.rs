//! Downstream connections: read bytes, decode frames through the listener's codec, answer
//! heartbeats locally, hand requests to the proxy flow, write responses back. Bad bytes close
//! only this connection; closing forgets its in-flight requests.

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;

use bytes::BytesMut;
use codec_host::{Frame, FrameKind};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info_span, warn, Instrument};

use crate::plan::ListenerPlan;
use crate::proxy;
use crate::worker::{Accepted, CodecRef, Worker};
use crate::write_queue::WriteQueue;

/// Counts live connections of a worker so a graceful stop can wait for them.
#[derive(Default)]
pub struct ConnTracker {
    live: Cell<usize>,
    idle: Notify,
}

impl ConnTracker {
    fn enter(&self) {
        self.live.set(self.live.get() + 1);
    }
    fn leave(&self) {
        self.live.set(self.live.get() - 1);
        if self.live.get() == 0 {
            self.idle.notify_waiters();
        }
    }
    /// Live connections.
    pub fn live(&self) -> usize {
        self.live.get()
    }
    /// Waits until no connection is live.
    pub async fn wait_idle(&self) {
        while self.live.get() > 0 {
            let notified = self.idle.notified();
            if self.live.get() == 0 {
                break;
            }
            notified.await;
        }
    }
}

/// One downstream connection, shared by its reader and its request tasks.
pub struct Downstream {
    /// The client's address.
    pub peer: SocketAddr,
    /// Listener index in the plan.
    pub listener: usize,
    /// The listener's codec on this worker.
    pub codec: CodecRef,
    /// Outgoing frames.
    pub writer: WriteQueue,
    /// Cancelled when the connection goes away: its request tasks stop waiting.
    pub gone: CancellationToken,
    in_flight: Cell<usize>,
    drained: Notify,
    last_active: Cell<Instant>,
}

impl Downstream {
    /// Marks activity (for the idle timeout).
    pub fn touch(&self) {
        self.last_active.set(Instant::now());
    }

    /// A request started on this connection.
    pub fn request_started(&self) {
        self.in_flight.set(self.in_flight.get() + 1);
    }

    /// A request finished (answered, hijacked, forwarded oneway or reset).
    pub fn request_finished(&self) {
        self.in_flight.set(self.in_flight.get() - 1);
        self.touch();
        if self.in_flight.get() == 0 {
            self.drained.notify_waiters();
        }
    }

    async fn wait_drained(&self) {
        while self.in_flight.get() > 0 {
            let n = self.drained.notified();
            if self.in_flight.get() == 0 {
                break;
            }
            n.await;
        }
    }
}

/// Starts serving an accepted socket on the current worker.
pub fn spawn(worker: Rc<Worker>, accepted: Accepted) {
    let Accepted {
        stream,
        peer,
        listener,
    } = accepted;
    let span = info_span!("downstream", %peer, listener = %worker.plan.listeners[listener].name);
    tokio::task::spawn_local(
        async move {
            if let Err(e) = stream.set_nonblocking(true) {
                warn!(cause = %e, "cannot set socket non-blocking");
                return;
            }
            let stream = match TcpStream::from_std(stream) {
                Ok(s) => s,
                Err(e) => {
                    warn!(cause = %e, "cannot register socket");
                    return;
                }
            };
            let _ = stream.set_nodelay(true);
            serve(worker, stream, peer, listener).await;
        }
        .instrument(span),
    );
}

async fn serve(worker: Rc<Worker>, stream: TcpStream, peer: SocketAddr, listener: usize) {
    let lp: &ListenerPlan = &worker.plan.listeners[listener];
    let Some(codec) = worker.codecs.get(&lp.protocol).cloned() else {
        warn!(protocol = %lp.protocol, "no codec for the listener's protocol");
        return;
    };
    let stats = &worker.plan.stats.downstream;
    stats.connection_total.inc();
    stats.connection_active.inc();
    worker.conns.enter();
    let (mut read, write) = stream.into_split();
    let conn = Rc::new(Downstream {
        peer,
        listener,
        codec,
        writer: WriteQueue::new(),
        gone: CancellationToken::new(),
        in_flight: Cell::new(0),
        drained: Notify::new(),
        last_active: Cell::new(Instant::now()),
    });
    let writer_task = {
        let c = conn.clone();
        tokio::task::spawn_local(async move {
            if let Err(e) = c.writer.run_writer(write).await {
                debug!(cause = %e, "downstream write failed");
            }
            // Closed by us, by an overflowing queue, or by a write error: the connection
            // is over either way.
            c.gone.cancel();
        })
    };

    let idle_timeout = lp.idle_timeout;
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut graceful = false;
    'read: loop {
        if buf.capacity() - buf.len() < 4096 {
            buf.reserve(16 * 1024);
        }
        let idle_deadline = conn.last_active.get() + idle_timeout;
        let read_result = tokio::select! {
            r = read.read_buf(&mut buf) => r,
            _ = tokio::time::sleep_until(idle_deadline) => {
                if conn.in_flight.get() == 0 && conn.last_active.get() + idle_timeout <= Instant::now() {
                    debug!("closing idle downstream connection");
                    stats.connection_idle_close.inc();
                    break 'read;
                }
                continue 'read;
            }
            _ = conn.gone.cancelled() => break 'read,
            _ = worker.shutdown.cancelled(), if !graceful => {
                graceful = true;
                break 'read;
            }
        };
        match read_result {
            Ok(0) => break,
            Ok(n) => {
                stats.bytes_read_total.add(n as u64);
                conn.touch();
            }
            Err(e) => {
                debug!(cause = %e, "downstream read failed");
                break;
            }
        }
        loop {
            let decoded = conn.codec.borrow_mut().decode(&mut buf);
            match decoded {
                Ok(Some(frame)) => dispatch(&worker, &conn, frame),
                Ok(None) => break,
                Err(e) => {
                    warn!(cause = %e, "closing connection: codec rejected its bytes");
                    stats.connection_decode_error.inc();
                    break 'read;
                }
            }
        }
    }

    if graceful {
        // Stop reading new requests, let the ones in flight finish (the server bounds the
        // wait with graceful_timeout), then flush and close.
        tokio::select! {
            _ = conn.wait_drained() => {}
            _ = conn.gone.cancelled() => {}
        }
    }
    conn.gone.cancel();
    conn.writer.close();
    let _ = writer_task.await;
    stats.connection_active.dec();
    stats.connection_destroy.inc();
    worker.conns.leave();
}

fn dispatch(worker: &Rc<Worker>, conn: &Rc<Downstream>, mut frame: Frame) {
    match frame.kind() {
        FrameKind::HeartbeatRequest => {
            let codec = &conn.codec;
            match conn
                .writer
                .push_with(|buf| codec.borrow_mut().reply_keepalive(&mut frame, buf))
            {
                Ok(_) => worker.plan.stats.downstream.heartbeat_replied.inc(),
                Err(e) => warn!(cause = %e, "cannot answer heartbeat"),
            }
        }
        FrameKind::Request | FrameKind::Oneway => {
            proxy::spawn_request(worker.clone(), conn.clone(), frame);
        }
        FrameKind::Response | FrameKind::HeartbeatResponse => {
            debug!(id = frame.id(), "dropping a response sent by a client");
            worker.plan.stats.downstream.unexpected_frame.inc();
        }
    }
}

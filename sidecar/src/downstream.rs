//! Downstream connections: a [`FramedConn`] over the listener's codec (for a listener serving
//! several protocols, the one `detect` picks from the first bytes) whose handler answers
//! heartbeats locally, hands requests to the proxy flow and closes on the idle timeout, bad
//! bytes or a graceful stop. Bad bytes close only this connection; closing it resets its
//! in-flight requests.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use codec_host::{Frame, FrameKind};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tracing::{debug, info_span, warn, Instrument};

use crate::context::{Accepted, DownstreamConn, WorkerContext};
use crate::detect::{sniff, FirstBytes, SniffLimits, Sniffed};
use crate::framed::{CodecRef, FramedConn, ReadError};
use crate::proxy;

/// Starts serving an accepted socket on the current worker.
pub fn spawn(worker: Rc<WorkerContext>, accepted: Accepted) {
    let Accepted {
        stream,
        peer,
        listener,
        admission,
    } = accepted;
    let span = info_span!("downstream", %peer, listener = %worker.plan.listeners[listener].name);
    tokio::task::spawn_local(
        async move {
            match register(stream) {
                Ok(stream) => serve(worker, stream, peer, listener).await,
                Err(e) => warn!(cause = %e, "cannot register socket"),
            }
            // The connection's slot under the connection cap ends with it.
            drop(admission);
        }
        .instrument(span),
    );
}

/// Moves an accepted std socket onto the current runtime.
fn register(stream: std::net::TcpStream) -> std::io::Result<TcpStream> {
    stream.set_nonblocking(true)?;
    let stream = TcpStream::from_std(stream)?;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// How long a connection still reads after its GoAway went out: requests the client sent
/// before it saw the GoAway are served, not left unread.
pub const GOAWAY_GRACE: Duration = Duration::from_millis(500);

/// The protocol id of a GoAway sent downstream (MOSN's stream layer gives it a fresh stream
/// id; clients number their requests from 1, so 0 names none of them).
const GOAWAY_ID: u64 = 0;

/// Why a downstream connection's read loop ended.
enum End {
    /// The client closed, the connection failed or was closed by us: close now.
    Closed,
    /// A graceful stop: let in-flight requests finish first.
    Draining,
    /// Shed by the overload manager: drop everything at once.
    Shed,
}

async fn serve(
    worker: Rc<WorkerContext>,
    mut stream: TcpStream,
    peer: SocketAddr,
    listener: usize,
) {
    let plan = &worker.plan.listeners[listener];
    // The connection's instance of each candidate protocol's codec, for its whole life.
    let Some(codecs) = plan
        .protocols
        .iter()
        .map(|p| worker.codecs.get(p).map(|set| set.assign()))
        .collect::<Option<Vec<CodecRef>>>()
    else {
        warn!("no codec for the listener's protocol");
        return;
    };
    let stats = worker.downstream_stats(listener);
    stats.connection_total.inc();
    stats.connection_active.inc();
    worker.conns.enter();
    // One protocol: straight to framing (no detection cost). Several: the first bytes pick
    // the codec, and the framed connection starts from the bytes detection read.
    let chosen = match &plan.auto_detect {
        None => codecs.into_iter().next().map(|c| (0, c, BytesMut::new())),
        Some(detect) => {
            let limits = SniffLimits {
                max_bytes: detect.max_bytes,
                timeout: detect.timeout,
            };
            let sniffed = sniff(&mut stream, &codecs, limits, &worker.shutdown, |n| {
                stats.bytes_read_total.add(n as u64)
            })
            .await;
            detect.stats.record(&sniffed);
            match sniffed {
                Sniffed::Detected { index, buf } => {
                    debug!(protocol = %plan.protocols[index], "protocol detected");
                    codecs.into_iter().nth(index).map(|c| (index, c, buf))
                }
                Sniffed::NoMatch { buf } => {
                    warn!(listener = %plan.name, %peer, first_bytes = %FirstBytes(&buf), bytes = buf.len(),
                        candidates = %plan.protocols.join(","),
                        "closing connection: no candidate protocol matches its first bytes");
                    None
                }
                Sniffed::Timeout { buf } => {
                    warn!(listener = %plan.name, %peer, first_bytes = %FirstBytes(&buf), bytes = buf.len(),
                        timeout = ?detect.timeout,
                        "closing connection: its protocol was not detected in time");
                    None
                }
                Sniffed::Closed => {
                    debug!("connection closed before its protocol was detected");
                    None
                }
            }
        }
    };
    if let Some((protocol, codec, read)) = chosen {
        serve_framed(&worker, stream, peer, (listener, protocol), codec, read).await;
    }
    stats.connection_active.dec();
    stats.connection_destroy.inc();
    worker.conns.leave();
}

/// Serves a connection whose codec is known, starting from `read` (bytes already read).
async fn serve_framed(
    worker: &Rc<WorkerContext>,
    stream: TcpStream,
    peer: SocketAddr,
    (listener, protocol): (usize, usize),
    codec: CodecRef,
    read: BytesMut,
) {
    let stats = worker.downstream_stats(listener);
    let local = stream.local_addr().ok();
    let load = worker.load.register();
    let on_read = {
        let worker = worker.clone();
        move |n| {
            worker
                .downstream_stats(listener)
                .bytes_read_total
                .add(n as u64)
        }
    };
    let mut framed = FramedConn::with_buffer(
        stream,
        codec,
        worker.plan.read_limits,
        Some(load),
        on_read,
        read,
    );
    let conn = Rc::new(DownstreamConn::new(
        peer,
        local,
        (listener, protocol),
        framed.sink().clone(),
    ));
    let end = read_frames(worker, &conn, &mut framed).await;
    if let End::Draining = end {
        // Stop reading new requests, let the ones in flight finish (the server bounds the
        // wait with graceful_timeout), then flush and close.
        tokio::select! {
            _ = conn.wait_drained() => {}
            _ = conn.sink().closed() => {}
        }
    }
    // What is still in flight ends here as a reset: request tasks see the sink close,
    // inline requests are forgotten by their upstream connections.
    conn.reset_inline_requests();
    stats.decode_calls.add(framed.decode_calls());
    match end {
        End::Shed => framed.abort(),
        End::Closed | End::Draining => framed.close().await,
    }
    // `tcp` pool mode: this connection's own upstream connections close with it.
    conn.close_owned_upstreams();
}

/// Reads and dispatches frames until the connection ends or the worker stops.
async fn read_frames(
    worker: &Rc<WorkerContext>,
    conn: &Rc<DownstreamConn>,
    framed: &mut FramedConn,
) -> End {
    let stats = worker.downstream_stats(conn.listener);
    let idle_timeout = worker.plan.listeners[conn.listener].idle_timeout;
    let max_in_flight = worker.plan.max_requests_per_connection;
    let last_active = |framed: &FramedConn| conn.last_active().max(framed.last_read());
    // One timer for the connection's life, re-armed only when it fires (activity since is
    // checked then), not per read.
    let idle = tokio::time::sleep_until(last_active(framed) + idle_timeout);
    tokio::pin!(idle);
    // After a GoAway: requests the client wrote before it saw it are still read until this
    // grace ends, then reading stops.
    let goaway_on_drain = worker.plan.listeners[conn.listener].goaway_on_drain;
    let mut goaway_grace: Option<Instant> = None;
    let grace = tokio::time::sleep(GOAWAY_GRACE);
    tokio::pin!(grace);
    loop {
        let read = tokio::select! {
            biased;
            r = async {
                // Bound the requests in flight per connection: past the bound, read nothing
                // more until a quarter of them finished.
                if conn.in_flight() >= max_in_flight {
                    stats.connection_paused_in_flight.inc();
                    conn.wait_in_flight_at_most(max_in_flight / 4 * 3).await;
                }
                let room = max_in_flight - conn.in_flight();
                framed.read_frames(|frame, read_at| dispatch(worker, conn, frame, read_at), room).await
            } => r,
            _ = &mut idle => {
                let deadline = last_active(framed) + idle_timeout;
                if conn.in_flight() == 0 && deadline <= Instant::now() {
                    debug!("closing idle downstream connection");
                    stats.connection_idle_close.inc();
                    return End::Closed;
                }
                // Requests in flight keep the connection open; look again an idle period
                // from now rather than spinning on a deadline already past.
                let rearm = if conn.in_flight() > 0 {
                    deadline.max(Instant::now() + idle_timeout)
                } else {
                    deadline
                };
                idle.as_mut().reset(rearm);
                continue;
            }
            _ = conn.sink().closed() => {
                if framed.was_shed() {
                    warn!("closing connection: shed by the overload manager");
                    return End::Shed;
                }
                return End::Closed;
            }
            _ = &mut grace, if goaway_grace.is_some() => return End::Draining,
            _ = worker.shutdown.cancelled(), if goaway_grace.is_none() => {
                if !goaway_on_drain {
                    return End::Draining;
                }
                match conn.sink().goaway(GOAWAY_ID) {
                    Ok(()) => {
                        debug!("sent GoAway; reading on for the grace period");
                        stats.goaway_sent.inc();
                        let until = Instant::now() + GOAWAY_GRACE;
                        goaway_grace = Some(until);
                        grace.as_mut().reset(until);
                        continue;
                    }
                    Err(e) => {
                        debug!(cause = %e, "no GoAway for this connection; draining");
                        return End::Draining;
                    }
                }
            }
        };
        match read {
            Ok(true) => {}
            Ok(false) => return End::Closed,
            Err(ReadError::Io(e)) => {
                debug!(cause = %e, "downstream read failed");
                return End::Closed;
            }
            Err(ReadError::Codec(e)) => {
                warn!(cause = %e, "closing connection: codec rejected its bytes");
                stats.connection_decode_error.inc();
                return End::Closed;
            }
            Err(e @ ReadError::FrameTimeout { .. }) => {
                warn!(cause = %e, "closing connection: frame read timeout");
                stats.connection_frame_timeout.inc();
                return End::Closed;
            }
        }
    }
}

fn dispatch(
    worker: &Rc<WorkerContext>,
    conn: &Rc<DownstreamConn>,
    mut frame: Frame,
    read_at: Instant,
) {
    let stats = worker.downstream_stats(conn.listener);
    if frame.is_goaway() {
        // xprotocol spec §2.2: a client's GoAway is logged and ignored.
        debug!(id = frame.id(), "ignoring a GoAway sent by a client");
        stats.unexpected_frame.inc();
        return;
    }
    match frame.kind() {
        FrameKind::HeartbeatRequest => match conn.sink().reply_keepalive(&mut frame) {
            Ok(()) => stats.heartbeat_replied.inc(),
            Err(e) => warn!(cause = %e, "cannot answer heartbeat"),
        },
        FrameKind::Request | FrameKind::Oneway => {
            proxy::spawn_request(worker.clone(), conn.clone(), frame, read_at);
        }
        FrameKind::Response | FrameKind::HeartbeatResponse => {
            debug!(id = frame.id(), "dropping a response sent by a client");
            stats.unexpected_frame.inc();
        }
    }
}

//! Closed-loop load: each connection keeps a fixed number of calls outstanding, replacing each
//! answered call at once. One task per connection owns the socket and every piece of state, and
//! drives reads and writes from readiness, so nothing is shared and nothing can deadlock on
//! full socket buffers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::options::BenchOptions;
use super::record::{build_report, BenchReport, Recorder, Shape};
use crate::error::BenchError;
use crate::wire::{patch_id, FrameReader, FrameType};

/// How often outstanding calls are checked for timeouts and the clock for the window's end.
const TICK: Duration = Duration::from_millis(10);
/// Pause between reconnect attempts after a connection failure.
const RECONNECT_PAUSE: Duration = Duration::from_millis(50);
/// Read buffer growth step.
const READ_CHUNK: usize = 64 * 1024;
/// Reads stop to settle answers once this much is buffered.
const MAX_READ_BATCH: usize = 1 << 20;

/// The run's timeline, shared by every connection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// Calls sent from here on are measured.
    pub measure_start: Instant,
    /// No call is sent from here on.
    pub measure_end: Instant,
}

impl Window {
    pub(crate) fn new(start: Instant, options: &BenchOptions) -> Self {
        let measure_start = start + options.warmup;
        Window {
            measure_start,
            measure_end: measure_start + options.duration,
        }
    }

    pub(crate) fn measured(&self, t: Instant) -> bool {
        t >= self.measure_start && t < self.measure_end
    }
}

/// Measured calls left before the request bound is hit (`u64::MAX` = unbounded).
#[derive(Debug)]
pub(crate) struct Budget(AtomicU64);

impl Budget {
    pub(crate) fn new(max: Option<u64>) -> Self {
        Budget(AtomicU64::new(max.unwrap_or(u64::MAX)))
    }

    /// Takes one measured call; false when the bound is reached.
    pub(crate) fn take(&self) -> bool {
        self.0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    pub(crate) fn exhausted(&self) -> bool {
        self.0.load(Ordering::Relaxed) == 0
    }
}

/// Runs the closed loop on a dedicated runtime thread and builds the report.
pub(crate) fn run(
    options: &BenchOptions,
    template: Bytes,
    connections: usize,
    in_flight: usize,
) -> Result<BenchReport, BenchError> {
    let threads = connections.clamp(1, 2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .map_err(BenchError::Runtime)?;
    let opts = options.clone();
    let handle = std::thread::Builder::new()
        .name("boltbench-closed".into())
        .spawn(move || rt.block_on(drive(opts, template, connections, in_flight)))
        .map_err(BenchError::Runtime)?;
    match handle.join() {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

async fn drive(
    options: BenchOptions,
    template: Bytes,
    connections: usize,
    in_flight: usize,
) -> Result<BenchReport, BenchError> {
    // Connect every connection up front so a dead target fails fast and clearly.
    let mut socks = Vec::with_capacity(connections);
    for _ in 0..connections {
        socks.push(connect(&options).await?);
    }
    let start = Instant::now();
    let window = Window::new(start, &options);
    let budget = Arc::new(Budget::new(options.max_requests));
    let tasks: Vec<_> = socks
        .into_iter()
        .map(|sock| {
            let conn = Conn {
                options: options.clone(),
                template: template.clone(),
                in_flight,
                window,
                budget: budget.clone(),
            };
            tokio::spawn(conn.run(sock))
        })
        .collect();
    let mut total = Recorder::default();
    for t in tasks {
        match t.await {
            Ok(rec) => total.merge(&rec),
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => {}
        }
    }
    let end = Instant::now().min(window.measure_end);
    let measured = end.saturating_duration_since(window.measure_start);
    let shape = Shape {
        mode: "closed",
        connections,
        in_flight: Some(in_flight),
        rate: None,
    };
    Ok(build_report(&options, shape, measured, &total))
}

async fn connect(options: &BenchOptions) -> Result<TcpStream, BenchError> {
    let err = |source| BenchError::Connect {
        addr: options.target,
        source,
    };
    let sock = TcpStream::connect(options.target).await.map_err(err)?;
    sock.set_nodelay(true).map_err(err)?;
    Ok(sock)
}

struct Conn {
    options: BenchOptions,
    template: Bytes,
    in_flight: usize,
    window: Window,
    budget: Arc<Budget>,
}

/// One outstanding call.
#[derive(Clone, Copy)]
struct Outstanding {
    sent: Instant,
    measured: bool,
}

enum Ended {
    /// Window over and nothing outstanding.
    Done,
    /// The connection failed; reconnect if the window is still open.
    Lost,
}

impl Conn {
    async fn run(self, first: TcpStream) -> Recorder {
        let mut rec = Recorder::default();
        let mut next_id = self.options.first_id;
        let mut sock = Some(first);
        loop {
            let s = match sock.take() {
                Some(s) => s,
                None => {
                    if self.stopping(Instant::now()) {
                        return rec;
                    }
                    tokio::time::sleep(RECONNECT_PAUSE).await;
                    match connect(&self.options).await {
                        Ok(s) => s,
                        Err(_) => {
                            if self.window.measured(Instant::now()) {
                                rec.errors.connection += 1;
                            }
                            continue;
                        }
                    }
                }
            };
            match self.drive(s, &mut rec, &mut next_id).await {
                Ended::Done => return rec,
                Ended::Lost => continue,
            }
        }
    }

    fn stopping(&self, now: Instant) -> bool {
        now >= self.window.measure_end || self.budget.exhausted()
    }

    async fn drive(&self, sock: TcpStream, rec: &mut Recorder, next_id: &mut u32) -> Ended {
        let mut st = ConnState {
            outstanding: HashMap::with_capacity(self.in_flight * 2),
            out: BytesMut::with_capacity(self.template.len() * self.in_flight),
            inbuf: BytesMut::with_capacity(READ_CHUNK),
        };
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_scan = Instant::now() + TICK;
        let mut stopping = false;
        let ended = loop {
            let now = Instant::now();
            stopping = stopping || self.stopping(now);
            if !stopping {
                stopping = !self.top_up(&mut st, rec, next_id, now);
            }
            if stopping && st.outstanding.is_empty() {
                break Ended::Done;
            }
            if flush(&sock, &mut st.out).is_err() {
                break Ended::Lost;
            }
            let interest = if st.out.is_empty() {
                Interest::READABLE
            } else {
                Interest::READABLE | Interest::WRITABLE
            };
            let readable = tokio::select! {
                r = sock.ready(interest) => match r {
                    Ok(r) => r.is_readable(),
                    Err(_) => break Ended::Lost,
                },
                _ = tick.tick() => false,
            };
            if readable && self.read_answers(&sock, &mut st, rec).is_err() {
                break Ended::Lost;
            }
            let now = Instant::now();
            if now >= next_scan {
                next_scan = now + TICK;
                self.expire(&mut st.outstanding, rec, now);
            }
        };
        if let Ended::Lost = ended {
            rec.errors.connection += st.outstanding.values().filter(|o| o.measured).count() as u64;
        }
        ended
    }

    /// Queues calls until `in_flight` are outstanding; false when the request bound is hit.
    fn top_up(
        &self,
        st: &mut ConnState,
        rec: &mut Recorder,
        next_id: &mut u32,
        now: Instant,
    ) -> bool {
        let measured = self.window.measured(now);
        while st.outstanding.len() < self.in_flight {
            if measured && !self.budget.take() {
                return false;
            }
            let id = *next_id;
            *next_id = next_id.wrapping_add(1);
            let at = st.out.len();
            st.out.extend_from_slice(&self.template);
            patch_id(&mut st.out[at..], id);
            rec.total_sent += 1;
            if measured {
                rec.sent += 1;
            }
            if let Some(old) = st.outstanding.insert(
                id,
                Outstanding {
                    sent: now,
                    measured,
                },
            ) {
                // Ids wrapped onto a call that never finished: that one is lost.
                if old.measured {
                    rec.errors.timeouts += 1;
                }
            }
        }
        true
    }

    /// Reads everything available and settles the answered calls. `Err` = connection over.
    fn read_answers(
        &self,
        sock: &TcpStream,
        st: &mut ConnState,
        rec: &mut Recorder,
    ) -> Result<(), ()> {
        let mut eof = false;
        while st.inbuf.len() < MAX_READ_BATCH {
            if st.inbuf.capacity() - st.inbuf.len() < READ_CHUNK / 4 {
                st.inbuf.reserve(READ_CHUNK);
            }
            match sock.try_read_buf(&mut st.inbuf) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => {
                    eof = true;
                    break;
                }
            }
        }
        let now = Instant::now();
        let reader = FrameReader::default();
        loop {
            match reader.next_frame(&mut st.inbuf) {
                Ok(Some(frame)) if frame.frame_type() == FrameType::Response => {
                    match st.outstanding.remove(&frame.id()) {
                        Some(o) if o.measured => rec.answered(
                            frame.status().unwrap_or(0),
                            now.saturating_duration_since(o.sent),
                        ),
                        Some(_) => {}
                        None if self.window.measured(now) => rec.errors.unexpected += 1,
                        None => {}
                    }
                }
                // Requests from the peer (e.g. GoAway) are not answers.
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(_) => return Err(()),
            }
        }
        if eof {
            Err(())
        } else {
            Ok(())
        }
    }

    /// Drops calls outstanding longer than the timeout, counting the measured ones.
    fn expire(
        &self,
        outstanding: &mut HashMap<u32, Outstanding>,
        rec: &mut Recorder,
        now: Instant,
    ) {
        let timeout = self.options.timeout;
        outstanding.retain(|_, o| {
            let alive = now.saturating_duration_since(o.sent) < timeout;
            if !alive && o.measured {
                rec.errors.timeouts += 1;
            }
            alive
        });
    }
}

/// Per-connection buffers and outstanding calls.
struct ConnState {
    outstanding: HashMap<u32, Outstanding>,
    out: BytesMut,
    inbuf: BytesMut,
}

/// Writes as much of `out` as the socket takes without blocking.
fn flush(sock: &TcpStream, out: &mut BytesMut) -> std::io::Result<()> {
    while !out.is_empty() {
        match sock.try_write(out) {
            Ok(n) => out.advance(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

//! Open-loop load at a fixed rate, corrected for coordinated omission: call `k` on a connection
//! is scheduled at `start + offset + k × interval` and its latency counts from that intended
//! time, so a stalled peer (or a late sender) shows up as latency instead of silently lowering
//! the rate.
//!
//! Each connection has a sender thread (precise sleeps, blocking writes, catch-up batches when
//! late) and a receiver thread. Ids are `first_id + k`, so the receiver derives each call's
//! intended time from its id alone: the two threads share only two counters.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};

use super::closed::{Budget, Window};
use super::options::BenchOptions;
use super::record::{build_report, BenchReport, Recorder, Shape};
use crate::error::BenchError;
use crate::wire::{patch_id, FrameReader, FrameType};

/// Lead time between setting up the threads and the first scheduled call.
const LEAD: Duration = Duration::from_millis(20);
/// Receiver wake-up interval when no bytes arrive.
const POLL: Duration = Duration::from_millis(20);

/// When call `k` of one connection is due.
#[derive(Debug, Clone, Copy)]
struct Schedule {
    start: Instant,
    offset_ns: f64,
    interval_ns: f64,
}

impl Schedule {
    fn at(&self, k: u64) -> Instant {
        self.start + Duration::from_nanos((self.offset_ns + k as f64 * self.interval_ns) as u64)
    }
}

/// State the sender and receiver of one connection share.
#[derive(Debug, Default)]
struct Progress {
    /// Calls written (or attempted) so far: ids at or past `first_id + scheduled` are unknown.
    scheduled: AtomicU64,
    /// The sender has finished its schedule.
    done: AtomicBool,
    /// The connection failed.
    lost: AtomicBool,
}

struct Lane {
    options: BenchOptions,
    template: Bytes,
    schedule: Schedule,
    window: Window,
    budget: Arc<Budget>,
    progress: Arc<Progress>,
}

/// Runs the open loop and builds the report.
pub(crate) fn run(
    options: &BenchOptions,
    template: Bytes,
    connections: usize,
    rate: f64,
) -> Result<BenchReport, BenchError> {
    let mut socks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let err = |source| BenchError::Connect {
            addr: options.target,
            source,
        };
        let s = TcpStream::connect_timeout(&options.target, options.timeout).map_err(err)?;
        s.set_nodelay(true).map_err(err)?;
        s.set_write_timeout(Some(options.timeout)).map_err(err)?;
        s.set_read_timeout(Some(POLL)).map_err(err)?;
        socks.push(s);
    }
    let start = Instant::now() + LEAD;
    let window = Window::new(start, options);
    let budget = Arc::new(Budget::new(options.max_requests));
    let interval_ns = connections as f64 * 1e9 / rate;
    let mut threads = Vec::with_capacity(connections * 2);
    for (c, sock) in socks.into_iter().enumerate() {
        let reader = sock.try_clone().map_err(BenchError::Runtime)?;
        let lane = Arc::new(Lane {
            options: options.clone(),
            template: template.clone(),
            schedule: Schedule {
                start,
                offset_ns: c as f64 * 1e9 / rate,
                interval_ns,
            },
            window,
            budget: budget.clone(),
            progress: Arc::new(Progress::default()),
        });
        let l = lane.clone();
        threads.push(spawn(format!("boltbench-send-{c}"), move || l.send(sock))?);
        threads.push(spawn(format!("boltbench-recv-{c}"), move || {
            lane.receive(reader)
        })?);
    }
    let mut total = Recorder::default();
    for t in threads {
        match t.join() {
            Ok(rec) => total.merge(&rec),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
    // Hitting the request bound ends the window early, after `sent / rate` seconds.
    let measured = if budget.exhausted() {
        options
            .duration
            .min(Duration::from_secs_f64(total.sent as f64 / rate))
    } else {
        options.duration
    };
    let shape = Shape {
        mode: "open",
        connections,
        in_flight: None,
        rate: Some(rate),
    };
    Ok(build_report(options, shape, measured, &total))
}

fn spawn(
    name: String,
    f: impl FnOnce() -> Recorder + Send + 'static,
) -> Result<std::thread::JoinHandle<Recorder>, BenchError> {
    std::thread::Builder::new()
        .name(name)
        .spawn(f)
        .map_err(BenchError::Runtime)
}

/// Sleeps until `t`, spinning for the last `spin` of it.
fn wait_until(t: Instant, spin: Duration) {
    loop {
        let now = Instant::now();
        if now >= t {
            return;
        }
        let left = t - now;
        if left > spin {
            std::thread::sleep(left - spin);
        } else {
            std::hint::spin_loop();
        }
    }
}

impl Lane {
    fn id(&self, k: u64) -> u32 {
        self.options.first_id.wrapping_add(k as u32)
    }

    /// Sends on schedule until the window ends or the budget runs out.
    fn send(&self, mut sock: TcpStream) -> Recorder {
        let mut rec = Recorder::default();
        let mut buf = BytesMut::with_capacity(self.template.len() * 16);
        let mut k: u64 = 0;
        let mut lost = false;
        'schedule: loop {
            let intended = self.schedule.at(k);
            if !self.admit(intended) {
                break;
            }
            if lost {
                // The connection is gone: every further call in the window fails unsent.
                if self.window.measured(intended) {
                    rec.sent += 1;
                    rec.errors.connection += 1;
                }
                k += 1;
                continue;
            }
            wait_until(intended, self.options.spin);
            let now = Instant::now();
            buf.clear();
            // Catch up: everything already due goes out in this one write.
            loop {
                let intended = self.schedule.at(k);
                let at = buf.len();
                buf.put_slice(&self.template);
                patch_id(&mut buf[at..], self.id(k));
                rec.total_sent += 1;
                if self.window.measured(intended) {
                    rec.sent += 1;
                    rec.send_lag.record(now.saturating_duration_since(intended));
                }
                k += 1;
                let next = self.schedule.at(k);
                if next > now || !self.admit(next) {
                    break;
                }
            }
            self.progress.scheduled.store(k, Ordering::Release);
            if sock.write_all(&buf).is_err() {
                self.progress.lost.store(true, Ordering::Release);
                lost = true;
                continue 'schedule;
            }
        }
        if !lost {
            // After a loss `scheduled` stays at the calls actually attempted; the rest were
            // counted above.
            self.progress.scheduled.store(k, Ordering::Release);
        }
        self.progress.done.store(true, Ordering::Release);
        rec
    }

    /// Whether a call due at `intended` should be made (window open, budget left).
    fn admit(&self, intended: Instant) -> bool {
        if intended >= self.window.measure_end {
            return false;
        }
        !self.window.measured(intended) || self.budget.take()
    }

    /// Settles answers until every call is answered or overdue.
    fn receive(&self, mut sock: TcpStream) -> Recorder {
        let mut rec = Recorder::default();
        let reader = FrameReader::default();
        let mut answered: Vec<u64> = Vec::new();
        let mut answered_count: u64 = 0;
        let mut inbuf = BytesMut::with_capacity(64 * 1024);
        let mut chunk = vec![0u8; 64 * 1024];
        let timeout = self.options.timeout;
        loop {
            match sock.read(&mut chunk) {
                Ok(0) => {
                    self.progress.lost.store(true, Ordering::Release);
                    break;
                }
                Ok(n) => inbuf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => {
                    self.progress.lost.store(true, Ordering::Release);
                    break;
                }
            }
            let now = Instant::now();
            let scheduled = self.progress.scheduled.load(Ordering::Acquire);
            loop {
                let frame = match reader.next_frame(&mut inbuf) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(_) => {
                        self.progress.lost.store(true, Ordering::Release);
                        return self.settle_unanswered(rec, &answered);
                    }
                };
                if frame.frame_type() != FrameType::Response {
                    continue;
                }
                let k = frame.id().wrapping_sub(self.options.first_id) as u64;
                let (word, bit) = ((k / 64) as usize, 1u64 << (k % 64));
                if k >= scheduled || answered.get(word).is_some_and(|w| w & bit != 0) {
                    if self.window.measured(now) {
                        rec.errors.unexpected += 1;
                    }
                    continue;
                }
                if answered.len() <= word {
                    answered.resize(word + 1, 0);
                }
                answered[word] |= bit;
                answered_count += 1;
                let intended = self.schedule.at(k);
                if self.window.measured(intended) {
                    let latency = now.saturating_duration_since(intended);
                    if latency > timeout {
                        rec.errors.timeouts += 1;
                    } else {
                        rec.answered(frame.status().unwrap_or(0), latency);
                    }
                }
            }
            if self.progress.lost.load(Ordering::Acquire) {
                break;
            }
            if self.progress.done.load(Ordering::Acquire) {
                let total = self.progress.scheduled.load(Ordering::Acquire);
                let last_due = total.checked_sub(1).map(|k| self.schedule.at(k));
                let overdue = last_due.is_none_or(|t| now.saturating_duration_since(t) > timeout);
                if answered_count >= total || overdue {
                    break;
                }
            }
        }
        self.settle_unanswered(rec, &answered)
    }

    /// Counts every measured call without an answer as a timeout, or as a connection failure
    /// when the connection was lost.
    fn settle_unanswered(&self, mut rec: Recorder, answered: &[u64]) -> Recorder {
        // Wait for the sender so the final count of calls is known.
        while !self.progress.done.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(1));
        }
        let total = self.progress.scheduled.load(Ordering::Acquire);
        let lost = self.progress.lost.load(Ordering::Acquire);
        for k in 0..total {
            let (word, bit) = ((k / 64) as usize, 1u64 << (k % 64));
            let done = answered.get(word).is_some_and(|w| w & bit != 0);
            if !done && self.window.measured(self.schedule.at(k)) {
                if lost {
                    rec.errors.connection += 1;
                } else {
                    rec.errors.timeouts += 1;
                }
            }
        }
        rec
    }
}

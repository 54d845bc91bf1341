//! Access logs, as MOSN has them: one line per request (forwarded, hijacked, timed out,
//! reset) in each of its listener's `access_logs`, in MOSN's `%variable%` format or as JSON
//! lines.
//!
//! Off the hot path: a request fills a [`Record`] (clock reads, addresses, counts and the
//! header values the formats name) as it proceeds; its ledger hands it over with
//! [`AccessLogs::submit`], a non-blocking push into one bounded channel. When the channel is
//! full the record is dropped and counted, traffic never waits. The writer thread
//! ([`AccessLogs::start`]) wakes every [`DRAIN_EVERY`], formats what arrived into buffered
//! outputs and flushes them; [`AccessLogs::reopen`] (SIGUSR1) reopens every file for
//! logrotate; [`Writer::stop`] drains and flushes everything at a graceful stop.

mod format;
mod record;
mod writer;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use codec_host::Frame;
use serde_json::{json, Value};
use tracing::{info, warn};

use crate::config::{Config, LogTarget};
use crate::stats::StatsSource;

pub use format::{go_duration, response_flag, start_time, CompiledLog, Names, Scratch, NOT_FOUND};
pub use record::{End, Note, Record};
pub use writer::{OpenError, Output};

/// Records the channel holds before new ones are dropped (about 1.5 s of traffic at 10k
/// requests/s between two drains 20 ms apart: far more than a drain needs).
pub const CHANNEL_RECORDS: usize = 16 * 1024;

/// How often the writer thread drains the channel and flushes its outputs.
pub const DRAIN_EVERY: Duration = Duration::from_millis(20);

/// The most records formatted between two flushes when the channel stays full.
const DRAIN_BATCH: usize = 4096;

/// Counters of one listener's access logs (`access_log.<listener>`).
#[derive(Debug, Default)]
pub struct LogCounters {
    /// Lines written (handed to the OS or buffered for it), summed over the listener's logs.
    pub lines_written: AtomicU64,
    /// Lines dropped because the channel to the writer was full.
    pub lines_dropped: AtomicU64,
    /// Failed writes, flushes and reopens.
    pub write_errors: AtomicU64,
    /// Files reopened (SIGUSR1).
    pub reopens: AtomicU64,
}

impl LogCounters {
    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

impl StatsSource for LogCounters {
    fn to_json(&self) -> Value {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        json!({
            "lines_written": get(&self.lines_written),
            "lines_dropped": get(&self.lines_dropped),
            "write_errors": get(&self.write_errors),
            "reopens": get(&self.reopens),
        })
    }
}

/// What one listener's requests capture and where their lines go.
#[derive(Debug)]
struct ListenerLogs {
    name: String,
    protocol: String,
    /// Indices into [`AccessLogs::logs`].
    logs: Vec<usize>,
    /// Request headers any of its formats names (copied per request).
    request_headers: Vec<String>,
    /// Response headers any of its formats names.
    response_headers: Vec<String>,
    counters: Arc<LogCounters>,
}

/// One configured access log.
#[derive(Debug)]
struct LogSpec {
    listener: usize,
    target: LogTarget,
    compiled: CompiledLog,
}

/// Every access log of the process: what the request path needs to make records, the
/// channel they go through, and what the writer needs to write them.
#[derive(Debug)]
pub struct AccessLogs {
    listeners: Vec<ListenerLogs>,
    logs: Vec<LogSpec>,
    clusters: Vec<String>,
    tx: SyncSender<Record>,
    rx: Mutex<Option<Receiver<Record>>>,
    reopen: AtomicBool,
    stop: AtomicBool,
    thread: Mutex<Option<std::thread::Thread>>,
}

impl AccessLogs {
    /// The access logs of `config`'s listeners (index-aligned with them), with a channel
    /// of `capacity` records. Nothing is opened or started.
    pub fn new(config: &Config, capacity: usize) -> AccessLogs {
        let mut logs = Vec::new();
        let mut listeners = Vec::new();
        for (li, l) in config.listeners.iter().enumerate() {
            let mut request_headers: Vec<String> = Vec::new();
            let mut response_headers: Vec<String> = Vec::new();
            for a in &l.access_logs {
                for h in &a.format.request_headers {
                    if !request_headers.contains(h) {
                        request_headers.push(h.clone());
                    }
                }
                for h in &a.format.response_headers {
                    if !response_headers.contains(h) {
                        response_headers.push(h.clone());
                    }
                }
            }
            let mut indices = Vec::new();
            for a in &l.access_logs {
                indices.push(logs.len());
                logs.push(LogSpec {
                    listener: li,
                    target: a.target.clone(),
                    compiled: CompiledLog::new(
                        a.format.clone(),
                        a.encoding,
                        &request_headers,
                        &response_headers,
                    ),
                });
            }
            listeners.push(ListenerLogs {
                name: l.name.clone(),
                protocol: l.proxy.protocol.clone(),
                logs: indices,
                request_headers,
                response_headers,
                counters: Arc::new(LogCounters::default()),
            });
        }
        // The channel's slots are allocated up front (records travel by value): without an
        // access log nothing is ever sent, so hold no memory for one.
        let capacity = if logs.is_empty() { 1 } else { capacity };
        let (tx, rx) = mpsc::sync_channel(capacity);
        AccessLogs {
            listeners,
            logs,
            clusters: config.clusters.iter().map(|c| c.name.clone()).collect(),
            tx,
            rx: Mutex::new(Some(rx)),
            reopen: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        }
    }

    /// Counters of every listener with access logs, as `(access_log.<listener>, source)`.
    pub fn stats_sources(&self) -> Vec<(String, Arc<dyn StatsSource>)> {
        self.listeners
            .iter()
            .filter(|l| !l.logs.is_empty())
            .map(|l| {
                (
                    format!("access_log.{}", l.name),
                    l.counters.clone() as Arc<dyn StatsSource>,
                )
            })
            .collect()
    }

    /// The counters of listener `index` (plan order).
    pub fn counters(&self, index: usize) -> Option<&Arc<LogCounters>> {
        self.listeners.get(index).map(|l| &l.counters)
    }

    /// A record for `request` arriving on `listener` at `start`, or `None` when the listener
    /// has no access log (then nothing is read or allocated).
    pub fn begin(
        &self,
        listener: usize,
        local: Option<std::net::SocketAddr>,
        remote: std::net::SocketAddr,
        request: &Frame,
        start: std::time::Instant,
    ) -> Option<Box<Record>> {
        let l = self.listeners.get(listener)?;
        if l.logs.is_empty() {
            return None;
        }
        // Boxed while the request runs: its task stays small (tasks are moved around).
        Some(Box::new(Record::begin(
            listener,
            local,
            remote,
            request,
            &l.request_headers,
            start,
        )))
    }

    /// Where the request path notes what happens to `record`'s request.
    pub fn note<'a>(&'a self, record: Option<&'a Record>) -> Note<'a> {
        let response_headers = record
            .and_then(|r| self.listeners.get(r.listener))
            .map_or(&[][..], |l| &l.response_headers[..]);
        Note::new(record, response_headers)
    }

    /// Closes `record` (its request ended) and hands it to the writer; never blocks. A full
    /// channel drops it, counted in `lines_dropped` (one per log of its listener).
    ///
    /// Records travel by value (the channel's slots are allocated once; the box is freed
    /// here, on the worker that made it): a worker never frees memory the writer allocated
    /// or the other way round, so the two never contend on the allocator's locks.
    pub fn submit(&self, record: Box<Record>) {
        record.close();
        let listener = record.listener;
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.tx.try_send(*record)
        {
            if let Some(l) = self.listeners.get(listener) {
                LogCounters::add(&l.counters.lines_dropped, l.logs.len() as u64);
            }
        }
    }

    /// Asks the writer to reopen every file (logrotate's SIGUSR1); done within a drain.
    pub fn reopen(&self) {
        self.reopen.store(true, Ordering::Release);
        self.wake();
    }

    fn wake(&self) {
        if let Ok(t) = self.thread.lock() {
            if let Some(t) = t.as_ref() {
                t.unpark();
            }
        }
    }

    /// Reopens the files on every `usr1`, until the process ends (never returns).
    pub async fn reopen_on(&self, usr1: Sigusr1) {
        #[cfg(unix)]
        if let Some(mut usr1) = usr1.0 {
            while usr1.recv().await.is_some() {
                info!("SIGUSR1 received: reopening access logs");
                self.reopen();
            }
        }
        #[cfg(not(unix))]
        let _ = usr1;
        std::future::pending::<()>().await;
    }

    /// Opens every access log and starts the writer thread (nothing when there are none).
    ///
    /// # Errors
    /// [`StartError`] when a file cannot be opened or the thread not started.
    pub fn start(self: &Arc<Self>) -> Result<Writer, StartError> {
        if self.logs.is_empty() {
            return Ok(Writer {
                thread: None,
                logs: self.clone(),
            });
        }
        let rx = self
            .rx
            .lock()
            .ok()
            .and_then(|mut rx| rx.take())
            .ok_or(StartError::Started)?;
        let mut outputs = Vec::new();
        for spec in &self.logs {
            let output = Output::open(&spec.target).map_err(|source| OpenError {
                listener: self.listeners[spec.listener].name.clone(),
                target: spec.target.to_string(),
                source,
            })?;
            outputs.push(output);
        }
        let logs = self.clone();
        let handle = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || logs.run(rx, outputs))
            .map_err(StartError::Thread)?;
        if let Ok(mut t) = self.thread.lock() {
            *t = Some(handle.thread().clone());
        }
        Ok(Writer {
            thread: Some(handle),
            logs: self.clone(),
        })
    }

    /// The writer thread: drain, format, write, flush; reopen when asked; at stop, drain
    /// everything left and flush.
    fn run(&self, rx: Receiver<Record>, mut outputs: Vec<Output>) {
        let mut line = Vec::with_capacity(1024);
        let mut scratch = Scratch::default();
        let mut failing = vec![false; outputs.len()];
        loop {
            let stopping = self.stop.load(Ordering::Acquire);
            let mut wrote = false;
            let mut drained = 0;
            // Empty or disconnected: nothing more for now.
            while let Ok(record) = rx.try_recv() {
                self.write(&record, &mut outputs, &mut failing, &mut line, &mut scratch);
                wrote = true;
                drained += 1;
                if drained >= DRAIN_BATCH && !stopping {
                    break;
                }
            }
            if wrote || stopping {
                for (i, o) in outputs.iter_mut().enumerate() {
                    let result = o.flush();
                    self.outcome(i, result, &mut failing, "flush");
                }
            }
            if self.reopen.swap(false, Ordering::AcqRel) {
                for (i, o) in outputs.iter_mut().enumerate() {
                    let counters = &self.listeners[self.logs[i].listener].counters;
                    match o.reopen(&self.logs[i].target) {
                        Ok(true) => LogCounters::add(&counters.reopens, 1),
                        Ok(false) => {}
                        Err(e) => self.outcome(i, Err(e), &mut failing, "reopen"),
                    }
                }
            }
            if stopping {
                return;
            }
            if drained < DRAIN_BATCH {
                std::thread::park_timeout(DRAIN_EVERY);
            }
        }
    }

    fn write(
        &self,
        record: &Record,
        outputs: &mut [Output],
        failing: &mut [bool],
        line: &mut Vec<u8>,
        scratch: &mut Scratch,
    ) {
        let Some(l) = self.listeners.get(record.listener) else {
            return;
        };
        let names = Names {
            protocol: &l.protocol,
            clusters: &self.clusters,
        };
        for &i in &l.logs {
            line.clear();
            format::render(&self.logs[i].compiled, &names, record, line, scratch);
            let result = outputs[i].write_line(line);
            if result.is_ok() {
                LogCounters::add(&l.counters.lines_written, 1);
            }
            self.outcome(i, result, failing, "write");
        }
    }

    /// Counts a failed write and warns once per failing episode of output `i`.
    fn outcome(&self, i: usize, result: std::io::Result<()>, failing: &mut [bool], what: &str) {
        let spec = &self.logs[i];
        match result {
            Ok(()) => {
                if failing[i] {
                    failing[i] = false;
                    info!(log = %spec.target, "access log writable again");
                }
            }
            Err(e) => {
                LogCounters::add(&self.listeners[spec.listener].counters.write_errors, 1);
                if !failing[i] {
                    failing[i] = true;
                    warn!(log = %spec.target, cause = %e, "access log {what} failed");
                }
            }
        }
    }
}

/// SIGUSR1, caught (so it no longer ends the process) from [`Sigusr1::watch`] on.
pub struct Sigusr1(#[cfg(unix)] Option<tokio::signal::unix::Signal>);

impl Sigusr1 {
    /// Starts catching SIGUSR1 on `rt` (its signal driver); a failure is logged and the
    /// signal keeps its default action.
    pub fn watch(rt: &tokio::runtime::Runtime) -> Sigusr1 {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let _in_rt = rt.enter();
            match signal(SignalKind::user_defined1()) {
                Ok(s) => Sigusr1(Some(s)),
                Err(e) => {
                    warn!(cause = %e, "cannot watch SIGUSR1; access logs will not be reopened");
                    Sigusr1(None)
                }
            }
        }
        #[cfg(not(unix))]
        {
            let _ = rt;
            Sigusr1()
        }
    }
}

/// Why the access log writer did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A log file could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The thread could not be started.
    #[error("cannot start the access log writer thread: {0}")]
    Thread(#[source] std::io::Error),
    /// The writer was started already.
    #[error("the access log writer was started already")]
    Started,
}

/// The running writer thread.
pub struct Writer {
    thread: Option<std::thread::JoinHandle<()>>,
    logs: Arc<AccessLogs>,
}

impl Writer {
    /// Writes and flushes every record submitted so far, then ends the thread (dropping
    /// the writer does the same).
    pub fn stop(self) {
        drop(self);
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.logs.stop.store(true, Ordering::Release);
        self.logs.wake();
        if let Some(t) = self.thread.take() {
            if t.join().is_err() {
                warn!("the access log writer panicked");
            }
        }
    }
}

#[cfg(test)]
mod tests;

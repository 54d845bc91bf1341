//! What the request path notes about one request for its access log line: a few clock reads,
//! addresses, counts and the header values the formats name, copied as the request
//! proceeds. Nothing is formatted here; the writer thread does that.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use codec_host::{Frame, HeaderMap};

use crate::failure::Failure;

/// How a request ended, as its access log line tells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Not ended yet (a record is never written in this state: the ledger closes it).
    Open,
    /// The upstream's response was relayed.
    Forwarded,
    /// A oneway request was forwarded.
    Oneway,
    /// The sidecar answered itself.
    Hijacked(Failure),
    /// A oneway request was dropped on a failure (no answer).
    OnewayDropped(Failure),
    /// No answer was possible (the client went away, or no answer could be built); the
    /// failure being answered, if there was one.
    Reset(Option<Failure>),
}

/// One request's access log record. Filled on its worker through `&self` (cells), then
/// handed to the writer thread whole.
#[derive(Debug)]
pub struct Record {
    pub(crate) listener: usize,
    pub(crate) start_wall: SystemTime,
    start: Instant,
    pub(crate) bytes_received: u64,
    pub(crate) downstream_local: Option<SocketAddr>,
    pub(crate) downstream_remote: SocketAddr,
    pub(crate) cluster: Cell<Option<usize>>,
    pub(crate) upstream_host: Cell<Option<SocketAddr>>,
    pub(crate) upstream_local: Cell<Option<SocketAddr>>,
    pub(crate) sent_upstream: Cell<Option<Duration>>,
    pub(crate) response_received: Cell<Option<Duration>>,
    pub(crate) finished: Cell<Duration>,
    pub(crate) bytes_sent: Cell<u64>,
    pub(crate) response_code: Cell<Option<u32>>,
    pub(crate) end: Cell<End>,
    pub(crate) request_headers: Vec<Option<Box<[u8]>>>,
    pub(crate) response_headers: RefCell<Vec<Option<Box<[u8]>>>>,
}

/// Copies the values of `names` out of `headers` (absent ones as `None`).
fn copy_headers(headers: &HeaderMap, names: &[String]) -> Vec<Option<Box<[u8]>>> {
    names
        .iter()
        .map(|n| headers.get(n.as_bytes()).map(Box::from))
        .collect()
}

impl Record {
    /// A record for `request` as it arrives on `listener` from `remote` at `start` (the
    /// request path's own clock read, shared), copying the request headers in
    /// `request_headers`.
    pub(crate) fn begin(
        listener: usize,
        local: Option<SocketAddr>,
        remote: SocketAddr,
        request: &Frame,
        request_headers: &[String],
        start: Instant,
    ) -> Record {
        Record {
            listener,
            start_wall: SystemTime::now(),
            start,
            bytes_received: request.wire_len() as u64,
            downstream_local: local,
            downstream_remote: remote,
            cluster: Cell::new(None),
            upstream_host: Cell::new(None),
            upstream_local: Cell::new(None),
            sent_upstream: Cell::new(None),
            response_received: Cell::new(None),
            finished: Cell::new(Duration::ZERO),
            bytes_sent: Cell::new(0),
            response_code: Cell::new(None),
            end: Cell::new(End::Open),
            request_headers: copy_headers(request.headers(), request_headers),
            response_headers: RefCell::new(Vec::new()),
        }
    }

    fn since_start(&self) -> Duration {
        self.start.elapsed()
    }

    /// The ledger closes the record: an open one ended in a reset.
    pub(crate) fn close(&self) {
        self.finished.set(self.since_start());
        if self.end.get() == End::Open {
            self.end.set(End::Reset(None));
        }
    }

    /// The failure that ended the request, if any.
    pub(crate) fn failure(&self) -> Option<Failure> {
        match self.end.get() {
            End::Hijacked(f) | End::OnewayDropped(f) | End::Reset(Some(f)) => Some(f),
            End::Open | End::Forwarded | End::Oneway | End::Reset(None) => None,
        }
    }
}

/// What the request path writes into a request's record; does nothing for a listener
/// without access logs. Cheap to copy.
#[derive(Clone, Copy)]
pub struct Note<'a> {
    record: Option<&'a Record>,
    response_headers: &'a [String],
}

impl<'a> Note<'a> {
    pub(crate) fn new(record: Option<&'a Record>, response_headers: &'a [String]) -> Note<'a> {
        Note {
            record,
            response_headers,
        }
    }

    /// The route chose cluster `index` (plan order).
    pub fn routed(self, index: usize) {
        if let Some(r) = self.record {
            r.cluster.set(Some(index));
        }
    }

    /// A connection to upstream `host` was leased; `local` is its local address.
    pub fn upstream(self, host: SocketAddr, local: Option<SocketAddr>) {
        if let Some(r) = self.record {
            r.upstream_host.set(Some(host));
            r.upstream_local.set(local);
        }
    }

    /// The request was queued toward the upstream (now).
    pub fn sent(self) {
        if let Some(r) = self.record {
            r.sent_upstream.set(Some(r.since_start()));
        }
    }

    /// The request was queued toward the upstream at `at` (a clock read the request path
    /// made anyway).
    pub fn sent_at(self, at: Instant) {
        if let Some(r) = self.record {
            r.sent_upstream
                .set(Some(at.saturating_duration_since(r.start)));
        }
    }

    /// The upstream's `response` arrived.
    pub fn response(self, response: &Frame) {
        if let Some(r) = self.record {
            r.response_received.set(Some(r.since_start()));
            r.response_code.set(Some(response.timeout_or_status()));
            if !self.response_headers.is_empty() {
                *r.response_headers.borrow_mut() =
                    copy_headers(response.headers(), self.response_headers);
            }
        }
    }

    /// The response went back to the client: `bytes` queued.
    pub fn forwarded(self, bytes: usize) {
        if let Some(r) = self.record {
            r.bytes_sent.set(bytes as u64);
            r.end.set(End::Forwarded);
        }
    }

    /// The sidecar is about to answer with `failure` (a reset if that fails).
    pub fn failing(self, failure: Failure) {
        if let Some(r) = self.record {
            r.response_code.set(Some(failure.proxy_code()));
            r.end.set(End::Reset(Some(failure)));
        }
    }

    /// The sidecar answered with `failure`: `bytes` queued.
    pub fn hijacked(self, failure: Failure, bytes: usize) {
        if let Some(r) = self.record {
            r.bytes_sent.set(bytes as u64);
            r.response_code.set(Some(failure.proxy_code()));
            r.end.set(End::Hijacked(failure));
        }
    }

    /// A oneway request was forwarded.
    pub fn oneway(self) {
        if let Some(r) = self.record {
            r.end.set(End::Oneway);
        }
    }

    /// A oneway request was dropped on `failure`.
    pub fn oneway_dropped(self, failure: Failure) {
        if let Some(r) = self.record {
            r.end.set(End::OnewayDropped(failure));
        }
    }
}

//! The life of one request (ARCHITECTURE.md, "The life of a request"): route → cluster →
//! host → pool → upstream id → response matched back → re-encoded with the downstream id.
//! Failures become hijack responses (xprotocol spec, `docs/xprotocol-proxy-and-bolt.md`
//! §2.6); oneway requests never get one. Each request ends in exactly one counted outcome,
//! even when its task is dropped because the downstream went away.

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use codec_host::{Frame, FrameKind};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::access_log::{Note, Record};
use crate::context::{DownstreamConn, WorkerCluster, WorkerContext};
use crate::failure::Failure;
use crate::filter::{FilterGuard, RequestView, WasmStream, WorkerWasmFilter};
use crate::framed::SendError;
use crate::plan::ListenerPlan;
use crate::retry::{RetryPlan, RETRY_BACKOFF};
use crate::router::Route;
use crate::stats::{DownstreamStats, ListenerStats};

mod inline;

use inline::Preselected;

/// How a request ended.
enum Outcome {
    /// The upstream's response, and the address of the host that sent it.
    Response(Frame, Option<SocketAddr>),
    OnewayForwarded,
    Failed(Failure),
}

/// Starts handling `frame` (a request or oneway request) from `conn`; `started` is when the
/// read that carried it returned, the start of the request's duration and access log record.
pub fn spawn_request(
    worker: Rc<WorkerContext>,
    conn: Rc<DownstreamConn>,
    frame: Frame,
    started: Instant,
) {
    let stats = worker.downstream_stats(conn.listener);
    stats.request_total.inc();
    stats.request_active.inc();
    if frame.kind() == FrameKind::Oneway {
        stats.request_oneway_total.inc();
    }
    conn.request_started();
    let log = worker.plan.access_logs.begin(
        conn.listener,
        conn.local,
        conn.peer,
        &frame,
        started.into_std(),
    );
    let ledger = Ledger {
        worker,
        conn,
        started,
        ended: None,
        done: false,
        log,
    };
    // The common case needs no task of its own (no filters, a connection up, nothing
    // retried once sent); everything else runs as one, from the choices already made.
    let Some((ledger, frame, pre)) = inline::start(ledger, frame) else {
        return;
    };
    let fut = async move {
        let conn = ledger.conn.clone();
        // Boxed: the request's state machine is a few KB; spawned by value it would be copied
        // into the task (twice) for every request; boxed here it is written once.
        let handled = Box::pin(handle(ledger, frame, pre));
        tokio::select! {
            _ = handled => {}
            // The downstream closed: dropping `handle` drops its pending response (which
            // forgets the upstream id) and the ledger records the reset.
            _ = conn.sink().closed() => {}
        }
    };
    tokio::task::spawn_local(fut);
}

/// Records the request's single outcome and its duration; if dropped unfinished, records a
/// reset.
struct Ledger {
    worker: Rc<WorkerContext>,
    conn: Rc<DownstreamConn>,
    started: Instant,
    /// When it ended, if a clock was read for it already (else read on drop).
    ended: Option<Instant>,
    done: bool,
    /// The access log record (`None`: the listener has no access log).
    log: Option<Box<Record>>,
}

impl Ledger {
    fn stats(&self) -> &ListenerStats {
        self.worker.listener_stats(self.conn.listener)
    }

    /// Where the request's access log record is filled as it proceeds.
    fn note(&self) -> Note<'_> {
        self.worker.plan.access_logs.note(self.log.as_deref())
    }

    /// The request ended at `now` (a clock read shared with other records).
    fn ended_at(&mut self, now: Instant) {
        self.ended = Some(now);
    }

    fn finish(mut self, record: impl FnOnce(&DownstreamStats)) {
        record(&self.stats().counters);
        self.done = true;
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        let stats = self.stats();
        if !self.done {
            stats.counters.reset.inc();
        }
        stats.counters.request_active.dec();
        let ended = self.ended.unwrap_or_else(Instant::now);
        stats
            .request_duration
            .observe(ended.saturating_duration_since(self.started));
        self.conn.request_finished_at(ended);
        // One access log line per request, whatever its outcome (an open record: a reset).
        if let Some(log) = self.log.take() {
            self.worker.plan.access_logs.submit(log);
        }
    }
}

/// A call's stream contexts in the listener's `proxywasm` filters (in order) and the call's
/// deadline; dropping it ends each stream (`proxy_on_log`, `proxy_on_done`,
/// `proxy_on_delete`).
#[derive(Default)]
struct WasmCall {
    streams: Vec<(Rc<WorkerWasmFilter>, WasmStream)>,
    deadline: Option<Instant>,
}

async fn handle(ledger: Ledger, mut request: Frame, pre: Option<Preselected>) {
    let oneway = request.kind() == FrameKind::Oneway;
    let down_id = request.id();
    let note = ledger.note();
    let mut wasm = WasmCall::default();
    let outcome = forward(
        &ledger.worker,
        &ledger.conn,
        &mut request,
        note,
        &mut wasm,
        pre,
    )
    .await;
    // The response callbacks run in reverse order, as Envoy runs encoder filters.
    let outcome = match outcome {
        Outcome::Response(mut response, upstream) if !wasm.streams.is_empty() => {
            match Box::pin(wasm_response(&wasm, &mut request, &mut response, upstream)).await {
                Ok(()) => Outcome::Response(response, upstream),
                Err(f) => Outcome::Failed(f),
            }
        }
        other => other,
    };
    match outcome {
        Outcome::OnewayForwarded => {
            note.oneway();
            ledger.finish(|s| s.oneway_forwarded.inc());
        }
        Outcome::Failed(failure) if oneway => {
            debug!(%failure, "oneway request dropped");
            note.oneway_dropped(failure);
            ledger.finish(|s| s.record_oneway_dropped(failure));
        }
        Outcome::Response(response, _) => respond(ledger, &request, response, down_id),
        Outcome::Failed(failure) => hijack(ledger, &request, failure, down_id),
    }
}

/// Relays the upstream's `response` to `request`'s downstream with the downstream id.
fn respond(ledger: Ledger, request: &Frame, mut response: Frame, down_id: u64) {
    let status = response.timeout_or_status();
    let note = ledger.note();
    note.response(&response);
    match ledger.conn.sink().send(&mut response, down_id) {
        Ok(bytes) => {
            note.forwarded(bytes);
            ledger.stats().response_status.record(status);
            ledger.finish(|s| s.response_forwarded.inc());
        }
        Err(SendError::Codec(e)) => {
            warn!(cause = %e, "cannot encode the upstream response for downstream");
            hijack(ledger, request, Failure::EncodeFailed, down_id);
        }
        Err(_) => {} // downstream gone: the ledger records a reset
    }
}

/// Answers `request` on the server's behalf with `failure`'s code and the downstream id.
fn hijack(ledger: Ledger, request: &Frame, failure: Failure, down_id: u64) {
    debug!(%failure, id = down_id, "answering on the server's behalf");
    let sink = ledger.conn.sink();
    ledger.note().failing(failure);
    match sink.hijack(request, failure.proxy_code(), down_id) {
        Ok(bytes) => {
            ledger.note().hijacked(failure, bytes);
            ledger.finish(|s| s.record_hijack(failure));
        }
        Err(SendError::Codec(e)) => {
            // Nothing valid can be sent: the client would wait forever, so drop the
            // connection instead; the ledger records a reset.
            warn!(%failure, cause = %e, "cannot build a hijack response; closing the connection");
            sink.close();
        }
        Err(_) => {} // downstream gone: the ledger records a reset
    }
}

/// Runs the response callbacks of every filter the call passed, last first.
async fn wasm_response(
    wasm: &WasmCall,
    request: &mut Frame,
    response: &mut Frame,
    upstream: Option<SocketAddr>,
) -> Result<(), Failure> {
    let deadline = wasm.deadline.unwrap_or_else(Instant::now);
    for (filter, stream) in wasm.streams.iter().rev() {
        filter
            .on_response(stream, request, response, upstream, deadline)
            .await?;
    }
    Ok(())
}

/// Runs the listener's `proxywasm` filters on `request` in order, keeping each stream in
/// `wasm` (so it ends with the call, and sees the response).
async fn wasm_request(
    filters: &[Rc<WorkerWasmFilter>],
    listener: &ListenerPlan,
    conn: &DownstreamConn,
    cluster: &str,
    request: &mut Frame,
    wasm: &mut WasmCall,
) -> Result<(), Failure> {
    let deadline = wasm.deadline.unwrap_or_else(Instant::now);
    let info = codec_host::filter::StreamInfo {
        protocol: Arc::from(listener.protocols[conn.protocol].as_str()),
        listener: Arc::from(listener.name.as_str()),
        cluster: Arc::from(cluster),
        source: Some(conn.peer),
        destination: conn.local,
        request_id: request.id(),
    };
    for filter in filters {
        let stream = filter.on_request(info.clone(), request, deadline).await?;
        wasm.streams.push((filter.clone(), stream));
    }
    Ok(())
}

async fn forward(
    worker: &WorkerContext,
    conn: &DownstreamConn,
    request: &mut Frame,
    note: Note<'_>,
    wasm: &mut WasmCall,
    pre: Option<Preselected>,
) -> Outcome {
    if let Some(reason) = request.header_decode_error() {
        debug!(reason, "request header decode error");
        return Outcome::Failed(Failure::HeaderDecode);
    }
    let listener = &worker.plan.listeners[conn.listener];
    let Some(route) = listener.route(conn.protocol, request.headers()) else {
        return Outcome::Failed(Failure::NoRoute);
    };
    let picked = pre.map_or_else(|| route.pick_cluster().index, |p| p.cluster);
    note.routed(picked);
    let cluster = &worker.clusters[picked];
    let deadline = request_deadline(route, request, Instant::now());
    let shared = &cluster.shared;

    // Stream filters: after routing, before the circuit breaker and the host choice. What a
    // passed request holds (concurrency slots) is released when `_held` drops, however the
    // request ends. No filters (the common case): nothing is built or awaited.
    let _held = if listener.filters.is_empty() {
        FilterGuard::none()
    } else {
        // Boxed: the filters' futures (a gRPC call to the rate limit service among them) would
        // otherwise be part of every request task, filters or not.
        match Box::pin(run_filters(listener, &shared.name, request, deadline)).await {
            Ok(guard) => guard,
            Err(failure) => return Outcome::Failed(failure),
        }
    };

    // proxy-wasm filters: after the built-in ones (limits protect before guest code runs).
    let wasm_filters = &worker.wasm_filters[conn.listener];
    if !wasm_filters.is_empty() {
        wasm.deadline = Some(deadline);
        if let Err(failure) = Box::pin(wasm_request(
            wasm_filters,
            listener,
            conn,
            &shared.name,
            request,
            wasm,
        ))
        .await
        {
            return Outcome::Failed(failure);
        }
    }

    let Some(_admission) = shared.breaker.admit() else {
        cluster.stats.counters.request_pending_overflow.inc();
        return Outcome::Failed(Failure::Overflow);
    };
    let first_host = pre.and_then(|p| p.host);
    let outcome = attempts(
        cluster,
        conn,
        request,
        (route.retry(), first_host),
        deadline,
        note,
    )
    .await;
    if matches!(outcome, Outcome::Failed(Failure::Timeout)) {
        cluster.stats.counters.request_timeout.inc();
    }
    outcome
}

/// When `request` must be answered, counting from `from`: its own timeout, else its route's
/// (`Route::request_timeout`).
fn request_deadline(route: &Route, request: &Frame, from: Instant) -> Instant {
    let requested = request
        .timeout_ms()
        .map(|ms| Duration::from_millis(ms as u64));
    from + route.request_timeout(requested)
}

/// Runs the listener's filter chain on `request`, bounded by the request's deadline (an
/// injected delay or a throttling wait longer than the timeout ends in a timeout).
async fn run_filters(
    listener: &ListenerPlan,
    cluster: &str,
    request: &Frame,
    deadline: Instant,
) -> Result<FilterGuard, Failure> {
    let view = RequestView {
        headers: request.headers(),
        cluster,
        listener: &listener.name,
        oneway: request.kind() == FrameKind::Oneway,
    };
    match tokio::time::timeout_at(deadline, listener.filters.run(&view)).await {
        Ok(Ok(guard)) => Ok(guard),
        Ok(Err(rejection)) => Err(Failure::Rejected(rejection)),
        Err(_) => Err(Failure::Timeout),
    }
}

/// Tries hosts until one answers or the failure is final by the route's retry plan; each try
/// is bounded by the request's deadline. A retry goes to another host when there is one,
/// takes one of the cluster's `max_retries` slots (none free: no retry, the last answer or
/// failure stands) and is counted. A response whose mapped code the plan retries is
/// dropped and retried, except on the last attempt, where it is relayed as it is. The first
/// attempt goes to `first_host` when the balancer chose it already.
async fn attempts(
    cluster: &WorkerCluster,
    downstream: &DownstreamConn,
    request: &mut Frame,
    (retry, mut first_host): (&RetryPlan, Option<usize>),
    deadline: Instant,
    note: Note<'_>,
) -> Outcome {
    let counters = &cluster.stats.counters;
    let total = retry.attempts();
    let mut last = Failure::NoHealthyHost;
    let mut tried = None;
    // The retry slot of the attempt running now (replaced by the next retry's).
    let mut _retrying = None;
    for attempt in 0..total {
        if attempt > 0 {
            tokio::time::sleep(RETRY_BACKOFF).await;
            if Instant::now() >= deadline {
                return Outcome::Failed(Failure::Timeout);
            }
        }
        let Some(host) = first_host
            .take()
            .or_else(|| cluster.balancer.choose_avoiding(tried))
        else {
            return Outcome::Failed(Failure::NoHealthyHost);
        };
        tried = Some(host);
        let result = try_host(cluster, downstream, host, request, retry, deadline, note).await;
        // Outlier detection's streaks (nothing is written without it, nor on a success
        // after a success).
        let health = cluster.shared.host_set.health();
        match &result {
            Ok(_) => health.record_try(host, true),
            Err(f) if f.counts_against_host() => health.record_try(host, false),
            Err(_) => {}
        }
        let last_attempt = attempt + 1 == total;
        match result {
            Ok(Outcome::Response(response, addr)) if !last_attempt && retry.retries_responses() => {
                let code = cluster.codec.borrow_mut().response_code(&response);
                if !retry.retries_response(code) {
                    return Outcome::Response(response, addr);
                }
                let Some(slot) = cluster.shared.breaker.retry() else {
                    counters.request_retry_overflow.inc();
                    debug!(code, "max_retries reached; relaying the response");
                    return Outcome::Response(response, addr);
                };
                debug!(code, host, "retrying a response status on another host");
                _retrying = Some(slot);
                counters.request_retry.inc();
                counters.request_retry_on_status.inc();
                // The response is dropped (its codec context released) unrelayed.
            }
            Ok(outcome) => return outcome,
            Err(f) if !last_attempt && retry.retries(f, Instant::now(), deadline) => {
                let Some(slot) = cluster.shared.breaker.retry() else {
                    counters.request_retry_overflow.inc();
                    debug!(%f, "max_retries reached; not retrying");
                    return Outcome::Failed(f);
                };
                _retrying = Some(slot);
                counters.request_retry.inc();
                last = f;
            }
            Err(f) => return Outcome::Failed(f),
        }
    }
    Outcome::Failed(last)
}

/// One attempt on one host: a connection within the request's `deadline` (in `tcp` pool
/// mode, the downstream connection's own), then the response within the try's deadline.
async fn try_host(
    cluster: &WorkerCluster,
    downstream: &DownstreamConn,
    host: usize,
    request: &mut Frame,
    retry: &RetryPlan,
    deadline: Instant,
    note: Note<'_>,
) -> Result<Outcome, Failure> {
    let pool = &cluster.pools[host];
    if let Some(addr) = pool.addr() {
        note.upstream(addr, None);
    }
    let lease = if cluster.shared.pool.per_downstream() {
        let slot = downstream.owned_upstream(cluster.index, host);
        pool.lease_owned(&slot, deadline).await?
    } else {
        pool.lease(deadline).await?
    };
    let upstream = lease.conn();
    note.upstream(upstream.addr(), upstream.local_addr());
    if request.kind() == FrameKind::Oneway {
        upstream.send_oneway(request)?;
        note.sent();
        return Ok(Outcome::OnewayForwarded);
    }
    let _active = cluster.balancer.track(host);
    let sent = Instant::now();
    let response = upstream.send(request)?;
    note.sent_at(sent.into_std());
    let try_deadline = retry.try_deadline(sent, deadline);
    match tokio::time::timeout_at(try_deadline, response).await {
        Ok(answer) => {
            let response = answer?;
            cluster.stats.upstream_duration.observe(sent.elapsed());
            Ok(Outcome::Response(response, Some(upstream.addr())))
        }
        // Dropping the pending response forgot the upstream id.
        Err(_) => Err(Failure::Timeout),
    }
}

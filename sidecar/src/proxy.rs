//! The life of one request (DESIGN.md "Data flow"): route → cluster → host → pool → upstream
//! id → response matched back → re-encoded with the downstream id. Failures become hijack
//! responses (spec §2.6); oneway requests never get one. Each request ends in exactly one
//! counted outcome, even when its task is dropped because the downstream went away.

use std::rc::Rc;
use std::time::Duration;

use codec_host::{Frame, FrameKind};
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::downstream::Downstream;
use crate::failure::Failure;
use crate::plan::{ClusterPlan, RouteDecision};
use crate::stats::DownstreamStats;
use crate::upstream::UpstreamConn;
use crate::worker::{Worker, WorkerCluster};

/// Timeout when neither the frame nor the route sets one (spec §2.7).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Pause between attempts (MOSN sleeps 10 ms before each retry).
const RETRY_BACKOFF: Duration = Duration::from_millis(10);

/// How a request ended.
enum Outcome {
    Response(Frame),
    OnewayForwarded,
    Failed(Failure),
}

/// Starts handling `frame` (a request or oneway request) from `conn`.
pub fn spawn_request(worker: Rc<Worker>, conn: Rc<Downstream>, frame: Frame) {
    let stats = &worker.plan.stats.downstream;
    stats.request_total.inc();
    stats.request_active.inc();
    if frame.kind() == FrameKind::Oneway {
        stats.request_oneway_total.inc();
    }
    conn.request_started();
    let ledger = Ledger {
        worker: worker.clone(),
        conn: conn.clone(),
        done: false,
    };
    tokio::task::spawn_local(async move {
        let gone = conn.gone.clone();
        tokio::select! {
            _ = handle(ledger, frame) => {}
            // The downstream closed: dropping `handle` drops its upstream registration and
            // the ledger records the reset.
            _ = gone.cancelled() => {}
        }
    });
}

/// Records the request's single outcome; if dropped unfinished, records a reset.
struct Ledger {
    worker: Rc<Worker>,
    conn: Rc<Downstream>,
    done: bool,
}

impl Ledger {
    fn stats(&self) -> &DownstreamStats {
        &self.worker.plan.stats.downstream
    }

    fn finish(mut self, record: impl FnOnce(&DownstreamStats)) {
        record(self.stats());
        self.done = true;
    }
}

impl Drop for Ledger {
    fn drop(&mut self) {
        if !self.done {
            self.stats().reset.inc();
        }
        self.stats().request_active.dec();
        self.conn.request_finished();
    }
}

async fn handle(ledger: Ledger, mut request: Frame) {
    let oneway = request.kind() == FrameKind::Oneway;
    let down_id = request.id();
    let outcome = forward(&ledger.worker, &ledger.conn, &mut request).await;
    let conn = &ledger.conn;
    let codec = &conn.codec;
    match outcome {
        Outcome::OnewayForwarded => ledger.finish(|s| s.oneway_forwarded.inc()),
        Outcome::Failed(failure) if oneway => {
            debug!(%failure, "oneway request dropped");
            ledger.finish(|s| s.oneway_forwarded.inc());
        }
        Outcome::Response(mut response) => {
            match conn
                .writer
                .push_with(|buf| codec.borrow_mut().encode(&mut response, down_id, buf))
            {
                Ok(true) => ledger.finish(|s| s.response_forwarded.inc()),
                Ok(false) => {} // downstream gone: the ledger records a reset
                Err(e) => {
                    warn!(cause = %e, "cannot encode the upstream response for downstream");
                    hijack(ledger, &request, Failure::EncodeFailed, down_id);
                }
            }
        }
        Outcome::Failed(failure) => hijack(ledger, &request, failure, down_id),
    }
}

/// Answers `request` on the server's behalf with `failure`'s code and the downstream id.
fn hijack(ledger: Ledger, request: &Frame, failure: Failure, down_id: u64) {
    let conn = &ledger.conn;
    let codec = &conn.codec;
    debug!(%failure, id = down_id, "answering on the server's behalf");
    match conn.writer.push_with(|buf| {
        codec
            .borrow_mut()
            .hijack(request, failure.proxy_code(), down_id, buf)
    }) {
        Ok(true) => ledger.finish(|s| s.record_hijack(failure)),
        Ok(false) => {}
        Err(e) => {
            // Nothing valid can be sent: the client would wait forever, so drop the
            // connection instead; the ledger records a reset.
            warn!(%failure, cause = %e, "cannot build a hijack response; closing the connection");
            conn.gone.cancel();
        }
    }
}

async fn forward(worker: &Rc<Worker>, conn: &Rc<Downstream>, request: &mut Frame) -> Outcome {
    if let Some(reason) = request.headers().get_str(codec_abi::HEADER_DECODE_ERROR) {
        debug!(reason, "request header decode error");
        return Outcome::Failed(Failure::HeaderDecode);
    }
    let listener = &worker.plan.listeners[conn.listener];
    let Some(route) = listener.route(request.headers()) else {
        return Outcome::Failed(Failure::NoRoute);
    };
    let ci = route.cluster;
    let cluster = &worker.clusters[ci];
    let plan: &ClusterPlan = &cluster.plan;

    // Bolt -1 or 0 means "unset": fall back to the route, then the default (better than
    // MOSN, where -1 waits forever).
    let timeout = request
        .timeout_ms()
        .map(|ms| Duration::from_millis(ms as u64))
        .or(route.timeout)
        .unwrap_or(DEFAULT_TIMEOUT);
    let deadline = Instant::now() + timeout;

    let Some(_slot) = plan.admit() else {
        plan.stats.request_pending_overflow.inc();
        return Outcome::Failed(Failure::Overflow);
    };

    let outcome = attempts(worker, cluster, request, &route, deadline).await;
    if matches!(outcome, Outcome::Failed(Failure::Timeout)) {
        plan.stats.request_timeout.inc();
    }
    outcome
}

/// Tries hosts until one answers or the failure is final (spec §2.8): connection failures
/// are always retried, an upstream close and a per-try timeout only with `retry_on`; each try
/// is bounded by the request's deadline.
async fn attempts(
    worker: &Rc<Worker>,
    cluster: &WorkerCluster,
    request: &mut Frame,
    route: &RouteDecision,
    deadline: Instant,
) -> Outcome {
    let mut last = Failure::NoHealthyHost;
    for attempt in 0..route.attempts.max(1) {
        if attempt > 0 {
            cluster.plan.stats.request_retry.inc();
            tokio::time::sleep(RETRY_BACKOFF).await;
            if Instant::now() >= deadline {
                return Outcome::Failed(Failure::Timeout);
            }
        }
        let Some(host) = cluster.balancer.choose() else {
            return Outcome::Failed(Failure::NoHealthyHost);
        };
        match try_host(worker, route.cluster, host, request, route, deadline).await {
            Ok(outcome) => return outcome,
            Err(f) if f.retryable(route.retry_on) => last = f,
            Err(Failure::Timeout)
                if route.per_try_timeout.is_some()
                    && route.retry_on
                    && Instant::now() < deadline =>
            {
                last = Failure::Timeout
            }
            Err(f) => return Outcome::Failed(f),
        }
    }
    Outcome::Failed(last)
}

/// One attempt on one host.
async fn try_host(
    worker: &Rc<Worker>,
    cluster_index: usize,
    host: usize,
    request: &mut Frame,
    route: &RouteDecision,
    deadline: Instant,
) -> Result<Outcome, Failure> {
    let cluster = &worker.clusters[cluster_index];
    let lease = cluster.pools[host].lease(deadline).await?;
    let up: &Rc<UpstreamConn> = lease.conn();
    if request.kind() == FrameKind::Oneway {
        up.send_oneway(request)?;
        return Ok(Outcome::OnewayForwarded);
    }
    cluster.balancer.request_started(host);
    let active = ActiveGuard {
        balancer: &cluster.balancer,
        host,
    };
    let (id, rx) = up.send(request)?;
    let mut registration = Registration {
        conn: up,
        id,
        answered: false,
    };
    let try_deadline = match route.per_try_timeout {
        Some(t) => deadline.min(Instant::now() + t),
        None => deadline,
    };
    let result = tokio::time::timeout_at(try_deadline, rx).await;
    drop(active);
    match result {
        Ok(Ok(Ok(response))) => {
            registration.answered = true;
            Ok(Outcome::Response(response))
        }
        Ok(Ok(Err(f))) => {
            registration.answered = true;
            Err(f)
        }
        Ok(Err(_)) => {
            registration.answered = true;
            Err(Failure::UpstreamClosed)
        }
        Err(_) => Err(Failure::Timeout), // registration drop forgets the id
    }
}

/// Forgets the upstream id unless the response arrived (timeouts, downstream gone).
struct Registration<'a> {
    conn: &'a Rc<UpstreamConn>,
    id: u32,
    answered: bool,
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.conn.cancel(self.id);
        }
    }
}

/// Decrements the host's active-request count for least-request balancing.
struct ActiveGuard<'a> {
    balancer: &'a crate::cluster::LoadBalancer,
    host: usize,
}

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        self.balancer.request_finished(self.host);
    }
}

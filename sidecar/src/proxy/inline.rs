//! The inline path of a request: no task of its own. When a request needs nothing that
//! waits (no stream filters, a multiplexed upstream connection already up) and nothing can
//! send it again once it is sent (its route retries nothing after the send), it is routed,
//! admitted and encoded toward the upstream within the downstream's read, and parked in the
//! upstream connection's id table as a [`Waiting`]: the connection's reader answers it with
//! the response, the failure that closed the connection, or a timeout from its deadline
//! queue. Its counters, access log record and outcome are the ones a request task records
//! ([`super::Ledger`], [`super::respond`], [`super::hijack`]); a downstream that goes away
//! forgets it (`DownstreamConn::reset_inline_requests`), as dropping a task does.
//!
//! What a request on this path does not cost: a task, its waker and its boxed future, a
//! oneshot channel, a timer entry in the runtime's wheel, a wait on the downstream's close,
//! and three of five clock reads (it is sent at the instant it started).

use codec_host::{Frame, FrameKind};
use tokio::time::Instant;

use super::{hijack, request_deadline, respond, Ledger};
use crate::failure::Failure;
use crate::upstream::waiters::{ResponseHandler, ResponseResult};

/// Choices made before a request was handed to a task: the task goes on from them instead
/// of drawing again.
#[derive(Clone, Copy)]
pub(super) struct Preselected {
    /// The cluster the route picked.
    pub cluster: usize,
    /// The host the balancer chose, when it did.
    pub host: Option<usize>,
}

/// What [`start`] gives back when the request must run as a task.
type ToTask = (Ledger, Frame, Option<Preselected>);

/// Starts `request` on the inline path when it qualifies (then it is answered, or waits in
/// an upstream's table: `None`); else gives it back to run as a task, with the choices
/// already made.
pub(super) fn start(ledger: Ledger, mut request: Frame) -> Option<ToTask> {
    let worker = ledger.worker.clone();
    let conn = &ledger.conn;
    if request.kind() != FrameKind::Request || request.header_decode_error().is_some() {
        return Some((ledger, request, None));
    }
    let listener = &worker.plan.listeners[conn.listener];
    if !listener.filters.is_empty() || !worker.wasm_filters[conn.listener].is_empty() {
        return Some((ledger, request, None));
    }
    let Some(route) = listener.route(conn.protocol, request.headers()) else {
        return Some((ledger, request, None)); // the task answers "no route"
    };
    let retry = route.retry();
    if retry.retries_after_send() {
        return Some((ledger, request, None));
    }
    let picked = route.pick_cluster().index;
    let cluster = &worker.clusters[picked];
    let mut pre = Preselected {
        cluster: picked,
        host: None,
    };
    if cluster.shared.pool.per_downstream() {
        return Some((ledger, request, Some(pre)));
    }
    let Some(host) = cluster.balancer.choose() else {
        return Some((ledger, request, Some(pre))); // the task answers "no healthy host"
    };
    pre.host = Some(host);
    // No connection up (the first request, a reconnect, ping-pong pools): the task connects.
    let Some(upstream) = cluster.pools[host].ready_now() else {
        return Some((ledger, request, Some(pre)));
    };

    let down_id = request.id();
    let note = ledger.note();
    note.routed(picked);
    if !cluster.shared.breaker.admit_detached() {
        cluster.stats.counters.request_pending_overflow.inc();
        hijack(ledger, &request, Failure::Overflow, down_id);
        return None;
    }
    note.upstream(upstream.addr(), upstream.local_addr());
    // Held from here: released once, however the request ends.
    let mut held = Held::take(&ledger, picked, host);
    let reserved = match upstream.send_reserved(&mut request) {
        Ok(reserved) => reserved,
        Err(Failure::ConnectFailed) => {
            // Draining or closed since `ready_now`, nothing written: the task finds another
            // connection (a retry would).
            drop(held);
            return Some((ledger, request, Some(pre)));
        }
        Err(failure) => {
            drop(held);
            hijack(ledger, &request, failure, down_id);
            return None;
        }
    };
    // Sent within the read that started it: the request's start is its send time.
    let sent = ledger.started;
    note.sent_at(sent.into_std());
    let deadline = request_deadline(route, &request, sent);
    let try_deadline = retry.try_deadline(sent, deadline);
    held.key = conn.inline_waiting(upstream.clone(), reserved.id());
    let stats = worker.downstream_stats(conn.listener);
    let waiting = Waiting {
        held,
        ledger,
        request,
        down_id,
        sent,
    };
    reserved.park(Box::new(waiting), try_deadline);
    stats.request_inline_total.inc();
    None
}

/// A request on the inline path, parked in its upstream connection's id table.
struct Waiting {
    held: Held,
    ledger: Ledger,
    request: Frame,
    down_id: u64,
    sent: Instant,
}

impl ResponseHandler for Waiting {
    fn answer(self: Box<Self>, result: ResponseResult, now: Instant) {
        let Waiting {
            held,
            mut ledger,
            request,
            down_id,
            sent,
        } = *self;
        // `now`: when the response's read returned (or the failure was seen), for the
        // upstream's and the request's durations.
        {
            let cluster = &ledger.worker.clusters[held.cluster];
            let health = cluster.shared.host_set.health();
            match &result {
                Ok(_) => {
                    cluster
                        .stats
                        .upstream_duration
                        .observe(now.saturating_duration_since(sent));
                    health.record_try(held.host, true);
                }
                Err(f) => {
                    if f.counts_against_host() {
                        health.record_try(held.host, false);
                    }
                    if *f == Failure::Timeout {
                        cluster.stats.counters.request_timeout.inc();
                    }
                }
            }
        }
        // As a task's admission and active count end before it answers downstream.
        drop(held);
        ledger.ended_at(now);
        match result {
            Ok(response) => respond(ledger, &request, response, down_id),
            Err(failure) => hijack(ledger, &request, failure, down_id),
        }
    }
}

/// What an inline request holds while it is in flight: its circuit breaker admission, its
/// count among its host's active requests (least-request balancing) and its entry among its
/// downstream's inline requests. Released on drop, once.
struct Held {
    worker: std::rc::Rc<crate::context::WorkerContext>,
    conn: std::rc::Rc<crate::context::DownstreamConn>,
    cluster: usize,
    host: usize,
    /// The entry in `conn`'s inline requests (`usize::MAX`: none yet).
    key: usize,
}

impl Held {
    /// Counts a request admitted to `cluster` (the breaker's slot taken already) as active
    /// on `host`.
    fn take(ledger: &Ledger, cluster: usize, host: usize) -> Held {
        ledger.worker.clusters[cluster]
            .balancer
            .request_started(host);
        Held {
            worker: ledger.worker.clone(),
            conn: ledger.conn.clone(),
            cluster,
            host,
            key: usize::MAX,
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let cluster = &self.worker.clusters[self.cluster];
        cluster.shared.breaker.release_request();
        cluster.balancer.request_finished(self.host);
        if self.key != usize::MAX {
            self.conn.inline_done(self.key);
        }
    }
}

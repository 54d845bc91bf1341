//! A cluster's circuit breaker (`circuit_breakers[0]`, xprotocol spec §4): process-wide
//! counts of what is in flight, each with its limit (0 = unlimited), as MOSN's resource
//! manager (`pkg/upstream/cluster/resource.go`):
//! * `max_requests`: requests admitted to the cluster at once (overflow → 503);
//! * `max_pending_requests`: requests waiting for an upstream connection (a connect in
//!   progress, or a busy ping-pong pool) at once (overflow → 503);
//! * `max_retries`: retries running at once (overflow: the retry is not attempted).
//!
//! Every slot is a guard released on drop, so no outcome can leak one.

use std::sync::atomic::{AtomicUsize, Ordering};

use crate::config::CircuitBreakers;

/// One counted resource with its limit.
#[derive(Debug)]
struct Resource {
    /// 0 = unlimited.
    max: usize,
    active: AtomicUsize,
}

impl Resource {
    fn new(max: Option<u32>) -> Resource {
        Resource {
            max: max.unwrap_or(0) as usize,
            active: AtomicUsize::new(0),
        }
    }

    /// Takes one slot; false (nothing taken) when the limit is reached.
    fn acquire(&self) -> bool {
        let now = self.active.fetch_add(1, Ordering::Relaxed) + 1;
        if self.max != 0 && now > self.max {
            self.active.fetch_sub(1, Ordering::Relaxed);
            return false;
        }
        true
    }

    fn release(&self) {
        self.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The circuit breaker of one cluster, shared by every worker.
#[derive(Debug)]
pub struct CircuitBreaker {
    requests: Resource,
    pending: Resource,
    retries: Resource,
}

/// What a slot counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Request,
    Pending,
    Retry,
}

impl CircuitBreaker {
    /// A breaker enforcing `limits` (`None` = unlimited).
    pub fn new(limits: &CircuitBreakers) -> CircuitBreaker {
        CircuitBreaker {
            requests: Resource::new(limits.max_requests),
            pending: Resource::new(limits.max_pending_requests),
            retries: Resource::new(limits.max_retries),
        }
    }

    /// A breaker that never refuses.
    pub fn unlimited() -> CircuitBreaker {
        CircuitBreaker::new(&CircuitBreakers::default())
    }

    fn resource(&self, kind: Kind) -> &Resource {
        match kind {
            Kind::Request => &self.requests,
            Kind::Pending => &self.pending,
            Kind::Retry => &self.retries,
        }
    }

    fn slot(&self, kind: Kind) -> Option<Slot<'_>> {
        // `then`, not `then_some`: a slot built for a refusal would release on drop.
        self.resource(kind).acquire().then(|| Slot {
            breaker: self,
            kind,
        })
    }

    /// Admits one request (`max_requests`); `None` on overflow.
    pub fn admit(&self) -> Option<Slot<'_>> {
        self.slot(Kind::Request)
    }

    /// Admits one request like [`CircuitBreaker::admit`], for a holder that cannot keep a
    /// borrowed [`Slot`] (an inline request, which lives in an upstream's table): true when
    /// admitted, and then [`CircuitBreaker::release_request`] must follow exactly once.
    pub fn admit_detached(&self) -> bool {
        self.requests.acquire()
    }

    /// Ends a request admitted by [`CircuitBreaker::admit_detached`].
    pub fn release_request(&self) {
        self.requests.release();
    }

    /// Lets one request wait for a connection (`max_pending_requests`); `None` on
    /// overflow.
    pub fn wait_for_connection(&self) -> Option<Slot<'_>> {
        self.slot(Kind::Pending)
    }

    /// Lets one retry run (`max_retries`); `None` when as many retries as allowed are
    /// running already.
    pub fn retry(&self) -> Option<Slot<'_>> {
        self.slot(Kind::Retry)
    }

    /// Requests waiting for a connection now, across workers.
    pub fn pending(&self) -> usize {
        self.pending.active.load(Ordering::Relaxed)
    }

    /// Retries running now, across workers.
    pub fn retries(&self) -> usize {
        self.retries.active.load(Ordering::Relaxed)
    }
}

/// One slot of a [`CircuitBreaker`] resource; released on drop.
#[derive(Debug)]
pub struct Slot<'a> {
    breaker: &'a CircuitBreaker,
    kind: Kind,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.breaker.resource(self.kind).release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(requests: u32, pending: u32, retries: u32) -> CircuitBreakers {
        let some = |n: u32| (n > 0).then_some(n);
        CircuitBreakers {
            max_connections: None,
            max_pending_requests: some(pending),
            max_requests: some(requests),
            max_retries: some(retries),
        }
    }

    #[test]
    fn each_limit_counts_its_own_slots_and_frees_them_on_drop() {
        let b = CircuitBreaker::new(&limits(2, 1, 1));
        let r1 = b.admit().expect("first request");
        let _r2 = b.admit().expect("second request");
        assert!(b.admit().is_none(), "max_requests 2");
        let p = b.wait_for_connection().expect("first pending");
        assert!(b.wait_for_connection().is_none(), "max_pending_requests 1");
        assert_eq!(b.pending(), 1);
        let t = b.retry().expect("first retry");
        assert!(b.retry().is_none(), "max_retries 1");
        assert_eq!(b.retries(), 1);
        drop((r1, p, t));
        assert!(b.admit().is_some());
        assert_eq!((b.pending(), b.retries()), (0, 0));
        assert!(b.wait_for_connection().is_some());
        assert!(b.retry().is_some());
    }

    #[test]
    fn zero_is_unlimited() {
        let b = CircuitBreaker::unlimited();
        let held: Vec<_> = (0..1000).filter_map(|_| b.retry()).collect();
        assert_eq!(held.len(), 1000);
        let pending: Vec<_> = (0..1000).filter_map(|_| b.wait_for_connection()).collect();
        assert_eq!(pending.len(), 1000);
    }
}

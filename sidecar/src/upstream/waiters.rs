//! Who waits for what on one multiplexed upstream connection: requests awaiting their
//! response and heartbeats awaiting their ack, keyed by upstream id ([`InFlight`]).
//!
//! A request's wait is a [`PendingResponse`] future; dropped before it resolves (a timeout,
//! the downstream gone) it forgets its id, so a late response finds nothing.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use codec_host::Frame;
use tokio::sync::oneshot;

use super::inflight::InFlight;
use crate::failure::Failure;

/// What a response waiter receives.
pub type ResponseResult = Result<Frame, Failure>;

enum Waiter {
    Request(oneshot::Sender<ResponseResult>),
    Heartbeat,
}

/// What a response frame was for.
pub enum Matched {
    /// A request's response, handed to its waiter.
    Request,
    /// A heartbeat's ack.
    Heartbeat,
    /// Nothing waits for this id (late, after a timeout or reset).
    Late(Frame),
}

/// The waiters of one connection; cheap to clone (shared with its pending responses).
#[derive(Clone, Default)]
pub struct Waiters {
    table: Rc<RefCell<InFlight<Waiter>>>,
}

impl Waiters {
    /// Registers a request; its upstream id and the future of its response. `None` when the
    /// id table is full.
    pub fn request(&self) -> Option<(u32, PendingResponse)> {
        let (tx, rx) = oneshot::channel();
        let id = self.table.borrow_mut().insert(Waiter::Request(tx)).ok()?;
        let pending = PendingResponse {
            waiters: self.clone(),
            id,
            rx,
            answered: false,
        };
        Some((id, pending))
    }

    /// Registers a heartbeat; its upstream id, `None` when the table is full.
    pub fn heartbeat(&self) -> Option<u32> {
        self.table.borrow_mut().insert(Waiter::Heartbeat).ok()
    }

    /// Forgets `id`; true when something was still waiting for it.
    pub fn forget(&self, id: u32) -> bool {
        self.table.borrow_mut().remove(id as u64).is_some()
    }

    /// Hands `response` to whoever waits for its id.
    pub fn complete(&self, response: Frame) -> Matched {
        let waiter = self.table.borrow_mut().remove(response.id());
        match waiter {
            Some(Waiter::Request(tx)) => {
                let _ = tx.send(Ok(response));
                Matched::Request
            }
            Some(Waiter::Heartbeat) => Matched::Heartbeat,
            None => Matched::Late(response),
        }
    }

    /// Fails every waiting request with `failure` (the connection is gone); how many.
    pub fn fail_all(&self, failure: Failure) -> usize {
        let drained = self.table.borrow_mut().drain();
        let mut failed = 0;
        for waiter in drained {
            if let Waiter::Request(tx) = waiter {
                let _ = tx.send(Err(failure));
                failed += 1;
            }
        }
        failed
    }

    /// Requests and heartbeats waiting.
    pub fn len(&self) -> usize {
        self.table.borrow().len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.table.borrow().is_empty()
    }
}

/// The response to one request sent on an upstream connection; forgets the request's
/// upstream id when dropped unanswered.
pub struct PendingResponse {
    waiters: Waiters,
    id: u32,
    rx: oneshot::Receiver<ResponseResult>,
    answered: bool,
}

impl PendingResponse {
    /// The request's upstream id.
    pub fn id(&self) -> u32 {
        self.id
    }
}

impl Future for PendingResponse {
    type Output = ResponseResult;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ResponseResult> {
        let received = ready!(Pin::new(&mut self.rx).poll(cx));
        self.answered = true;
        // A dropped sender means the connection went away with the request.
        Poll::Ready(received.unwrap_or(Err(Failure::UpstreamClosed)))
    }
}

impl Drop for PendingResponse {
    fn drop(&mut self) {
        if !self.answered {
            self.waiters.forget(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_dropped_pending_response_forgets_its_id() {
        let waiters = Waiters::default();
        let (id, pending) = waiters.request().expect("room");
        assert_eq!(waiters.len(), 1);
        drop(pending);
        assert!(waiters.is_empty());
        assert!(!waiters.forget(id), "already forgotten");
    }

    #[tokio::test]
    async fn failing_all_resolves_every_request_and_drops_heartbeats() {
        let waiters = Waiters::default();
        let (_, a) = waiters.request().expect("room");
        let (_, b) = waiters.request().expect("room");
        waiters.heartbeat().expect("room");
        assert_eq!(waiters.fail_all(Failure::UpstreamClosed), 2);
        assert!(waiters.is_empty());
        assert!(matches!(a.await, Err(Failure::UpstreamClosed)));
        assert!(matches!(b.await, Err(Failure::UpstreamClosed)));
    }

    #[tokio::test]
    async fn a_heartbeat_is_forgotten_once() {
        let waiters = Waiters::default();
        let id = waiters.heartbeat().expect("room");
        assert!(waiters.forget(id));
        assert!(!waiters.forget(id));
    }
}

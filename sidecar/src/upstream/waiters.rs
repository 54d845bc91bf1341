//! Who waits for what on one multiplexed upstream connection: requests awaiting their
//! response and heartbeats awaiting their ack, keyed by upstream id ([`InFlight`]).
//!
//! A request waits in one of two ways:
//! * a [`PendingResponse`] future (the request's own task awaits it); dropped before it
//!   resolves (a timeout, the downstream gone) it forgets its id, so a late response finds
//!   nothing;
//! * an inline [`ResponseHandler`] (no task: the connection's reader calls it with the
//!   response, the failure that ended the connection, or a timeout from the connection's
//!   own deadline queue). Forgotten before that (the downstream gone), it is dropped
//!   unanswered.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{ready, Context, Poll};

use codec_host::Frame;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::deadlines::Deadlines;
use super::inflight::InFlight;
use crate::failure::Failure;

/// What a response waiter receives.
pub type ResponseResult = Result<Frame, Failure>;

/// A request waiting for its response without a task of its own: called exactly once with
/// the response or the failure that ended the wait, or dropped unanswered when forgotten.
pub trait ResponseHandler {
    /// The wait is over: `result` is the response, or why there is none; `at` is when the
    /// response's read returned, or when the failure was seen.
    fn answer(self: Box<Self>, result: ResponseResult, at: Instant);
}

enum Waiter {
    Request(oneshot::Sender<ResponseResult>),
    Inline {
        handler: Box<dyn ResponseHandler>,
        /// When it times out (its entry in the deadline heap says the same).
        deadline: Instant,
    },
    /// An id taken for an inline request being encoded ([`Waiters::reserve`]).
    Sending,
    Heartbeat,
}

/// What one connection's waiters share: the id table and the inline requests' deadlines.
#[derive(Default)]
struct Table {
    ids: InFlight<Waiter>,
    deadlines: Deadlines,
}

/// Whether `id` names an inline request waiting with `deadline` (else a deadline entry for
/// it is stale: answered, forgotten, or its id reused).
fn waits_until(ids: &InFlight<Waiter>, id: u32, deadline: Instant) -> bool {
    matches!(ids.get(id as u64), Some(Waiter::Inline { deadline: d, .. }) if *d == deadline)
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
    table: Rc<RefCell<Table>>,
}

impl Waiters {
    /// Registers a request; its upstream id and the future of its response. `None` when the
    /// id table is full.
    pub fn request(&self) -> Option<(u32, PendingResponse)> {
        let (tx, rx) = oneshot::channel();
        let id = self
            .table
            .borrow_mut()
            .ids
            .insert(Waiter::Request(tx))
            .ok()?;
        let pending = PendingResponse {
            waiters: self.clone(),
            id,
            rx,
            answered: false,
        };
        Some((id, pending))
    }

    /// Takes an id for an inline request about to be sent; `None` when the table is full.
    /// The request waits once [`Reserved::park`] gives it its handler; dropped unparked, the
    /// id is freed.
    pub fn reserve(&self) -> Option<Reserved> {
        let id = self.table.borrow_mut().ids.insert(Waiter::Sending).ok()?;
        Some(Reserved {
            waiters: self.clone(),
            id,
            parked: false,
        })
    }

    /// Registers a heartbeat; its upstream id, `None` when the table is full.
    pub fn heartbeat(&self) -> Option<u32> {
        self.table.borrow_mut().ids.insert(Waiter::Heartbeat).ok()
    }

    /// Forgets `id` (an inline request's handler is dropped unanswered); true when something
    /// was still waiting for it.
    pub fn forget(&self, id: u32) -> bool {
        let waiter = self.take(id as u64);
        let found = waiter.is_some();
        drop(waiter); // outside the borrow: a handler's drop may reach other tables
        found
    }

    /// Removes `id`'s waiter.
    fn take(&self, id: u64) -> Option<Waiter> {
        // An inline request's deadline entry goes stale; the heap skips it.
        self.table.borrow_mut().ids.remove(id)
    }

    /// Hands `response`, read at `read_at`, to whoever waits for its id.
    pub fn complete(&self, response: Frame, read_at: Instant) -> Matched {
        match self.take(response.id()) {
            Some(Waiter::Request(tx)) => {
                let _ = tx.send(Ok(response));
                Matched::Request
            }
            Some(Waiter::Inline { handler, .. }) => {
                handler.answer(Ok(response), read_at);
                Matched::Request
            }
            Some(Waiter::Heartbeat) => Matched::Heartbeat,
            Some(Waiter::Sending) | None => Matched::Late(response),
        }
    }

    /// Fails every waiting request with `failure` (the connection is gone); how many.
    pub fn fail_all(&self, failure: Failure) -> usize {
        let drained = {
            let mut table = self.table.borrow_mut();
            table.deadlines.clear();
            table.ids.drain()
        };
        let mut failed = 0;
        let now = Instant::now();
        for waiter in drained {
            match waiter {
                Waiter::Request(tx) => {
                    let _ = tx.send(Err(failure));
                    failed += 1;
                }
                Waiter::Inline { handler, .. } => {
                    handler.answer(Err(failure), now);
                    failed += 1;
                }
                Waiter::Sending | Waiter::Heartbeat => {}
            }
        }
        failed
    }

    /// Waits for the next inline request whose deadline passed and answers it with
    /// [`Failure::Timeout`]; pending while none has (also when none waits).
    pub fn poll_timeout(&self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let waiter = {
                let mut table = self.table.borrow_mut();
                let (id, at) = ready!(table.deadlines.poll_expired(cx));
                if !waits_until(&table.ids, id, at) {
                    continue; // answered or forgotten since
                }
                table.ids.remove(id as u64)
            };
            if let Some(Waiter::Inline { handler, .. }) = waiter {
                handler.answer(Err(Failure::Timeout), Instant::now());
                return Poll::Ready(());
            }
        }
    }

    /// Requests and heartbeats waiting.
    pub fn len(&self) -> usize {
        self.table.borrow().ids.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.table.borrow().ids.is_empty()
    }
}

/// An id taken for an inline request ([`Waiters::reserve`]); freed when dropped unparked.
#[must_use = "an unparked id is freed when dropped"]
pub struct Reserved {
    waiters: Waiters,
    id: u32,
    parked: bool,
}

impl Reserved {
    /// The upstream id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The request was sent with this id: `handler` waits for its answer, which comes by
    /// `deadline` at the latest (then [`Failure::Timeout`]).
    pub fn park(mut self, handler: Box<dyn ResponseHandler>, deadline: Instant) {
        self.parked = true;
        let mut table = self.waiters.table.borrow_mut();
        let Some(slot) = table.ids.get_mut(self.id as u64) else {
            return;
        };
        *slot = Waiter::Inline { handler, deadline };
        let waiting = table.ids.len();
        let Table { ids, deadlines } = &mut *table;
        deadlines.push(deadline, self.id, waiting, |id, at| {
            waits_until(ids, id, at)
        });
    }
}

impl Drop for Reserved {
    fn drop(&mut self) {
        if !self.parked {
            self.waiters.forget(self.id);
        }
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
    use std::cell::RefCell;
    use std::time::Duration;

    use bytes::Bytes;
    use codec_host::{FrameKind, FrameParts, HeaderMap};

    use super::*;

    /// What the test handlers heard: "ok <id>", a failure's name, or "dropped".
    type Heard = Rc<RefCell<Vec<String>>>;

    struct Recorder {
        heard: Heard,
        answered: bool,
    }

    impl ResponseHandler for Recorder {
        fn answer(mut self: Box<Self>, result: ResponseResult, _at: Instant) {
            self.answered = true;
            self.heard.borrow_mut().push(match result {
                Ok(frame) => format!("ok {}", frame.id()),
                Err(f) => format!("{f:?}"),
            });
        }
    }

    impl Drop for Recorder {
        fn drop(&mut self) {
            if !self.answered {
                self.heard.borrow_mut().push("dropped".into());
            }
        }
    }

    fn park(waiters: &Waiters, heard: &Heard, deadline: Instant) -> u32 {
        let reserved = waiters.reserve().expect("room");
        let id = reserved.id();
        let handler = Recorder {
            heard: heard.clone(),
            answered: false,
        };
        reserved.park(Box::new(handler), deadline);
        id
    }

    fn response(id: u32) -> Frame {
        Frame::new(FrameParts {
            kind: FrameKind::Response,
            id: id as u64,
            timeout_or_status: 0,
            headers: HeaderMap::new(),
            header_section: Bytes::new(),
            payload: Bytes::new(),
            raw: Bytes::new(),
            state: Box::new(()),
        })
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(60)
    }

    #[tokio::test]
    async fn an_inline_request_is_answered_once_by_its_response() {
        let waiters = Waiters::default();
        let heard = Heard::default();
        let id = park(&waiters, &heard, later());
        assert!(matches!(
            waiters.complete(response(id), Instant::now()),
            Matched::Request
        ));
        assert!(matches!(
            waiters.complete(response(id), Instant::now()),
            Matched::Late(_)
        ));
        assert_eq!(*heard.borrow(), [format!("ok {id}")]);
        assert!(waiters.is_empty());
    }

    #[tokio::test]
    async fn an_unparked_reservation_frees_its_id_and_answers_nothing() {
        let waiters = Waiters::default();
        let reserved = waiters.reserve().expect("room");
        let id = reserved.id();
        assert_eq!(waiters.len(), 1);
        assert!(
            matches!(
                waiters.complete(response(id), Instant::now()),
                Matched::Late(_)
            ),
            "a response before the park finds no one"
        );
        drop(reserved);
        assert!(waiters.is_empty());
    }

    #[tokio::test]
    async fn a_forgotten_inline_request_is_dropped_unanswered() {
        let waiters = Waiters::default();
        let heard = Heard::default();
        let id = park(&waiters, &heard, later());
        assert!(waiters.forget(id));
        assert!(matches!(
            waiters.complete(response(id), Instant::now()),
            Matched::Late(_)
        ));
        assert_eq!(*heard.borrow(), ["dropped"]);
    }

    #[tokio::test]
    async fn failing_all_answers_inline_requests_with_the_failure() {
        let waiters = Waiters::default();
        let heard = Heard::default();
        park(&waiters, &heard, later());
        park(&waiters, &heard, later());
        let (_, task) = waiters.request().expect("room");
        assert_eq!(waiters.fail_all(Failure::UpstreamClosed), 3);
        assert_eq!(*heard.borrow(), ["UpstreamClosed", "UpstreamClosed"]);
        assert!(matches!(task.await, Err(Failure::UpstreamClosed)));
    }

    #[tokio::test(start_paused = true)]
    async fn an_inline_request_past_its_deadline_is_answered_with_a_timeout() {
        let waiters = Waiters::default();
        let heard = Heard::default();
        let now = Instant::now();
        let early = park(&waiters, &heard, now + Duration::from_millis(100));
        let late = park(&waiters, &heard, now + Duration::from_millis(300));
        let answered = park(&waiters, &heard, now + Duration::from_millis(200));
        assert!(matches!(
            waiters.complete(response(answered), Instant::now()),
            Matched::Request
        ));
        // The first expiry: only the earliest deadline.
        std::future::poll_fn(|cx| waiters.poll_timeout(cx)).await;
        assert_eq!(Instant::now() - now, Duration::from_millis(100));
        assert_eq!(
            *heard.borrow(),
            [format!("ok {answered}"), "Timeout".to_string()]
        );
        assert!(!waiters.forget(early), "gone with its timeout");
        // The answered request's deadline fires nothing; the next expiry is the last one.
        std::future::poll_fn(|cx| waiters.poll_timeout(cx)).await;
        assert_eq!(Instant::now() - now, Duration::from_millis(300));
        assert_eq!(heard.borrow().len(), 3);
        assert!(!waiters.forget(late));
        assert!(waiters.is_empty());
    }

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

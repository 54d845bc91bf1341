//! The deadlines of one upstream connection's inline requests: a min-heap of
//! (deadline, upstream id) behind one timer.
//!
//! Answered requests are not looked for in the heap: their entries stay until they surface
//! (then the caller finds that the id no longer names a request waiting with that deadline
//! and skips it) or until stale entries outnumber live ones, when the heap is rebuilt from
//! the live ones. So a push is O(log n) with no search, n stays within about twice the
//! requests in flight, and the timer is re-armed only when the earliest deadline changes.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use tokio::time::{Instant, Sleep};

/// Stale entries tolerated beyond the live ones before a rebuild.
const SLACK: usize = 64;

/// One connection's deadline heap and its timer.
#[derive(Default)]
pub struct Deadlines {
    heap: BinaryHeap<Reverse<(Instant, u32)>>,
    /// Armed at `armed` (the earliest deadline when last polled); `None` until first needed.
    timer: Option<Pin<Box<Sleep>>>,
    armed: Option<Instant>,
    /// The task polling for expiries, woken when an earlier deadline arrives.
    waker: Option<Waker>,
}

impl Deadlines {
    /// Adds request `id`'s deadline. `live` tells whether an entry still names a waiting
    /// request (its id, with that deadline), for the rebuild when stale entries pile up;
    /// `waiting` is how many requests wait.
    pub fn push(
        &mut self,
        at: Instant,
        id: u32,
        waiting: usize,
        live: impl Fn(u32, Instant) -> bool,
    ) {
        if self.heap.len() > 2 * waiting + SLACK {
            self.heap.retain(|Reverse((at, id))| live(*id, *at));
        }
        self.heap.push(Reverse((at, id)));
        if self.armed.is_none_or(|armed| at < armed) {
            if let Some(waker) = self.waker.take() {
                waker.wake();
            }
        }
    }

    /// The next entry whose deadline passed (the caller checks it is still live); pending
    /// until one has, the timer armed at the earliest deadline.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<(u32, Instant)> {
        let Some(&Reverse((at, _))) = self.heap.peek() else {
            self.armed = None;
            self.register(cx);
            return Poll::Pending;
        };
        if self.armed != Some(at) {
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(at),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(at))),
            }
            self.armed = Some(at);
        }
        let timer = self.timer.as_mut().expect("armed above");
        if timer.as_mut().poll(cx).is_pending() {
            self.register(cx);
            return Poll::Pending;
        }
        let Reverse((at, id)) = self.heap.pop().expect("peeked above");
        Poll::Ready((id, at))
    }

    /// Remembers the polling task (once: it is the connection's reader every time).
    fn register(&mut self, cx: &Context<'_>) {
        if !self.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            self.waker = Some(cx.waker().clone());
        }
    }

    /// Forgets every entry (the connection is gone).
    pub fn clear(&mut self) {
        self.heap.clear();
    }

    /// Entries held, live or stale.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// True when no entry is held.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn entries_expire_in_deadline_order_whatever_the_push_order() {
        let mut d = Deadlines::default();
        let now = Instant::now();
        let ms = |n| now + Duration::from_millis(n);
        d.push(ms(300), 3, 3, |_, _| true);
        d.push(ms(100), 1, 3, |_, _| true);
        d.push(ms(200), 2, 3, |_, _| true);
        for (id, at) in [(1, 100), (2, 200), (3, 300)] {
            assert_eq!(poll_fn(|cx| d.poll_expired(cx)).await, (id, ms(at)));
            assert_eq!(Instant::now(), ms(at), "not before its deadline");
        }
        assert!(d.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_earlier_deadline_wakes_the_waiting_poller() {
        let d = std::rc::Rc::new(std::cell::RefCell::new(Deadlines::default()));
        let now = Instant::now();
        d.borrow_mut()
            .push(now + Duration::from_secs(60), 1, 1, |_, _| true);
        let local = tokio::task::LocalSet::new();
        let waiter = {
            let d = d.clone();
            local.spawn_local(async move { poll_fn(|cx| d.borrow_mut().poll_expired(cx)).await })
        };
        local
            .run_until(async {
                tokio::task::yield_now().await; // the poller waits on the 60 s timer
                d.borrow_mut()
                    .push(now + Duration::from_millis(5), 2, 2, |_, _| true);
                let (id, _) = waiter.await.expect("poller");
                assert_eq!(id, 2);
                assert_eq!(Instant::now(), now + Duration::from_millis(5));
            })
            .await;
    }

    #[test]
    fn stale_entries_are_dropped_once_they_outnumber_the_live_ones() {
        let mut d = Deadlines::default();
        let at = Instant::now() + Duration::from_secs(1);
        // Every earlier request was answered: only the newest is live.
        for id in 0..1000u32 {
            d.push(at, id, 1, |live, _| live + 1 == id);
            assert!(d.len() <= 2 + SLACK + 1, "{} entries", d.len());
        }
    }
}

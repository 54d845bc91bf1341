//! A per-connection outgoing byte queue with one writer task: producers (request tasks,
//! heartbeat replies, hijacks) append encoded frames; the writer drains everything queued in
//! one `write_all`, so frames queued together go out in one syscall. A peer that stops reading
//! cannot make the queue grow without bound: past [`MAX_PENDING`] bytes the queue closes (the
//! connection is dropped) instead of buffering more. Well before that, the connection's
//! reader stops reading while the queue is over its high-water mark
//! ([`WriteQueue::wait_below`]), so a peer that does not read its responses stops being
//! served instead of being buffered for. What the queue holds is reported to the overload
//! manager ([`ConnLoad`]), and the buffers of a burst are given back once it is written.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

use crate::overload::ConnLoad;

/// Most bytes a queue holds before it gives up on a peer that does not read.
pub const MAX_PENDING: usize = 64 << 20;

/// Buffers grown past this by a burst are replaced by fresh small ones once written.
const KEEP_CAPACITY: usize = 256 << 10;
/// Initial buffer size.
const INITIAL_CAPACITY: usize = 16 << 10;

/// Shared handle to a connection's outgoing queue. Cheap to clone; single-threaded.
#[derive(Clone)]
pub struct WriteQueue {
    inner: Rc<Inner>,
}

struct Inner {
    max_pending: usize,
    buf: RefCell<BytesMut>,
    notify: Notify,
    closed: Cell<bool>,
    /// Bytes the writer took and is writing now.
    writing: Cell<usize>,
    /// The level a reader waits for ([`WriteQueue::wait_below`]), if one waits.
    wanted_below: Cell<Option<usize>>,
    space: Notify,
    load: Option<Rc<ConnLoad>>,
}

impl WriteQueue {
    /// A new, open queue holding at most [`MAX_PENDING`] bytes.
    pub fn new() -> WriteQueue {
        WriteQueue::with_limit(MAX_PENDING)
    }

    /// A new, open queue holding at most `max_pending` bytes.
    pub fn with_limit(max_pending: usize) -> WriteQueue {
        WriteQueue::accounted(max_pending, None)
    }

    /// A new, open queue holding at most `max_pending` bytes, reporting what it holds to
    /// `load` (the overload manager's view of the connection).
    pub fn accounted(max_pending: usize, load: Option<Rc<ConnLoad>>) -> WriteQueue {
        WriteQueue {
            inner: Rc::new(Inner {
                max_pending,
                buf: RefCell::new(BytesMut::with_capacity(INITIAL_CAPACITY)),
                notify: Notify::new(),
                closed: Cell::new(false),
                writing: Cell::new(0),
                wanted_below: Cell::new(None),
                space: Notify::new(),
                load,
            }),
        }
    }

    /// Bytes queued or being written: what the peer has yet to take.
    pub fn backlog(&self) -> usize {
        self.pending() + self.inner.writing.get()
    }

    /// Waits until the backlog is at most `low` bytes, or the queue closes.
    pub async fn wait_below(&self, low: usize) {
        while self.backlog() > low && !self.is_closed() {
            let space = self.inner.space.notified();
            self.inner.wanted_below.set(Some(low));
            space.await;
        }
        self.inner.wanted_below.set(None);
    }

    /// Reports the backlog to the overload manager and wakes a reader waiting for it.
    fn changed(&self) {
        let backlog = self.backlog();
        if let Some(load) = &self.inner.load {
            load.set_write(backlog);
        }
        if let Some(low) = self.inner.wanted_below.get() {
            if backlog <= low || self.is_closed() {
                self.inner.wanted_below.set(None);
                self.inner.space.notify_waiters();
            }
        }
    }

    /// Appends bytes through `fill` (which writes into the queue's buffer) and wakes the
    /// writer. Returns `false`, appending nothing, once the queue is closed.
    pub fn push_with<E>(
        &self,
        fill: impl FnOnce(&mut BytesMut) -> Result<(), E>,
    ) -> Result<bool, E> {
        if self.inner.closed.get() {
            return Ok(false);
        }
        let mut buf = self.inner.buf.borrow_mut();
        let before = buf.len();
        match fill(&mut buf) {
            Ok(()) if buf.len() > self.inner.max_pending => {
                // The peer is not reading: stop buffering for it.
                buf.truncate(before);
                drop(buf);
                self.close();
                Ok(false)
            }
            Ok(()) => {
                if buf.len() > before {
                    drop(buf);
                    // Only the first bytes of a batch wake the writer: it takes everything
                    // queued at once, and looks at the buffer before it waits again.
                    if before == 0 {
                        self.inner.notify.notify_one();
                    }
                    self.changed();
                }
                Ok(true)
            }
            Err(e) => {
                buf.truncate(before);
                Err(e)
            }
        }
    }

    /// Appends raw bytes and wakes the writer; `false` once closed.
    pub fn push(&self, bytes: &[u8]) -> bool {
        self.push_with::<()>(|b| {
            b.extend_from_slice(bytes);
            Ok(())
        })
        .unwrap_or(false)
    }

    /// Closes the queue: later pushes are refused; the writer flushes what is queued and
    /// stops.
    pub fn close(&self) {
        self.inner.closed.set(true);
        self.inner.notify.notify_one();
        self.changed();
    }

    /// True once closed.
    pub fn is_closed(&self) -> bool {
        self.inner.closed.get()
    }

    /// Bytes waiting to be written.
    pub fn pending(&self) -> usize {
        self.inner.buf.borrow().len()
    }

    /// The writer loop: writes whatever is queued until the queue is closed (after a final
    /// flush) or the socket fails. Returns the socket error, if any.
    pub async fn run_writer<W: AsyncWrite + Unpin>(&self, mut sink: W) -> std::io::Result<()> {
        let mut out = BytesMut::with_capacity(16 * 1024);
        loop {
            // Swap buffers so producers keep appending while we write; the borrow ends here.
            let finished = {
                let mut buf = self.inner.buf.borrow_mut();
                if !buf.is_empty() {
                    std::mem::swap(&mut *buf, &mut out);
                }
                out.is_empty() && self.inner.closed.get()
            };
            if finished {
                let _ = sink.shutdown().await;
                return Ok(());
            }
            if out.is_empty() {
                self.inner.notify.notified().await;
                continue;
            }
            self.inner.writing.set(out.len());
            let written = sink.write_all(&out).await;
            self.inner.writing.set(0);
            if let Err(e) = written {
                // Nothing queued will ever be written: give it back now.
                self.inner.closed.set(true);
                *self.inner.buf.borrow_mut() = BytesMut::new();
                self.changed();
                return Err(e);
            }
            if out.capacity() > KEEP_CAPACITY {
                // A burst is over: give its memory back.
                out = BytesMut::with_capacity(INITIAL_CAPACITY);
            } else {
                out.clear();
            }
            self.changed();
        }
    }
}

impl Default for WriteQueue {
    fn default() -> Self {
        WriteQueue::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, DuplexStream};
    use tokio::task::JoinHandle;

    /// `q`'s writer task, writing into `sink` (on the current `LocalSet`).
    fn spawn_writer(q: &WriteQueue, sink: DuplexStream) -> JoinHandle<std::io::Result<()>> {
        let q = q.clone();
        tokio::task::spawn_local(async move { q.run_writer(sink).await })
    }

    #[tokio::test(flavor = "current_thread")]
    async fn writes_everything_queued_then_flushes_on_close() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let (a, mut b) = tokio::io::duplex(64);
                let q = WriteQueue::new();
                let writer = spawn_writer(&q, a);
                for i in 0..100u8 {
                    assert!(q.push(&[i; 10]));
                }
                q.close();
                assert!(!q.push(b"late"));
                let mut got = Vec::new();
                b.read_to_end(&mut got).await.unwrap();
                assert_eq!(got.len(), 1000);
                assert_eq!(&got[990..], &[99u8; 10]);
                writer.await.unwrap().unwrap();
            })
            .await;
    }

    #[tokio::test(flavor = "current_thread")]
    async fn bytes_queued_while_the_writer_writes_or_waits_are_all_written() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                // A small pipe: the writer blocks mid-batch while more is queued behind it.
                let (a, mut b) = tokio::io::duplex(8);
                let q = WriteQueue::new();
                let writer = spawn_writer(&q, a);
                let mut got = vec![0u8; 30];
                for round in 0..3u8 {
                    // The first push of a batch wakes the (waiting) writer; the others only
                    // append to the batch it has yet to take or the one after.
                    for i in 0..3u8 {
                        assert!(q.push(&[round * 3 + i; 10]));
                        tokio::task::yield_now().await;
                    }
                    // Bounded only so that a writer never woken fails the test, not hangs it.
                    tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        b.read_exact(&mut got),
                    )
                    .await
                    .expect("the writer was woken")
                    .unwrap();
                    let want: Vec<u8> = (0..3u8).flat_map(|i| [round * 3 + i; 10]).collect();
                    assert_eq!(got, want, "round {round}");
                    // Drained: the writer waits again, and the next push must wake it.
                    assert_eq!(q.pending(), 0);
                }
                q.close();
                writer.await.unwrap().unwrap();
            })
            .await;
    }

    #[test]
    fn a_peer_that_does_not_read_gets_closed_not_buffered_forever() {
        let q = WriteQueue::with_limit(100);
        assert!(q.push(&[0; 60]));
        assert!(!q.push(&[0; 60]), "over the limit: refused");
        assert!(q.is_closed());
        assert_eq!(q.pending(), 60, "what was queued before is still flushed");
    }

    #[test]
    fn a_failed_fill_leaves_nothing_behind() {
        let q = WriteQueue::new();
        q.push(b"ok");
        let r: Result<bool, &str> = q.push_with(|b| {
            b.extend_from_slice(b"partial");
            Err("codec failed")
        });
        assert!(r.is_err());
        assert_eq!(q.pending(), 2);
    }
}

//! A per-connection outgoing byte queue with one writer task: producers (request tasks,
//! heartbeat replies, hijacks) append encoded frames; the writer drains everything queued in
//! one `write_all`, so frames queued together go out in one syscall. A peer that stops reading
//! cannot make the queue grow without bound: past [`MAX_PENDING`] bytes the queue closes (the
//! connection is dropped) instead of buffering more.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::BytesMut;
use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;

/// Most bytes a queue holds before it gives up on a peer that does not read.
pub const MAX_PENDING: usize = 64 << 20;

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
}

impl WriteQueue {
    /// A new, open queue holding at most [`MAX_PENDING`] bytes.
    pub fn new() -> WriteQueue {
        WriteQueue::with_limit(MAX_PENDING)
    }

    /// A new, open queue holding at most `max_pending` bytes.
    pub fn with_limit(max_pending: usize) -> WriteQueue {
        WriteQueue {
            inner: Rc::new(Inner {
                max_pending,
                buf: RefCell::new(BytesMut::with_capacity(16 * 1024)),
                notify: Notify::new(),
                closed: Cell::new(false),
            }),
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
                    self.inner.notify.notify_one();
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
            if let Err(e) = sink.write_all(&out).await {
                self.inner.closed.set(true);
                return Err(e);
            }
            out.clear();
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
    use tokio::io::AsyncReadExt;

    #[tokio::test(flavor = "current_thread")]
    async fn writes_everything_queued_then_flushes_on_close() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let (a, mut b) = tokio::io::duplex(64);
                let q = WriteQueue::new();
                let writer = {
                    let q = q.clone();
                    tokio::task::spawn_local(async move { q.run_writer(a).await })
                };
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

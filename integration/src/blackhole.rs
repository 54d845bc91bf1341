//! A TCP relay in front of one upstream that can be *cut* at a chosen moment, the way a
//! blackholed host looks to a proxy: every relayed connection stays open but nothing crosses
//! it any more in either direction (bytes are read and dropped, no FIN or RST is sent either
//! way), and new connections are refused. Used to test that the sidecar finds a silently dead
//! upstream by its heartbeats, not by a close.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tracing::debug;

/// What the relay saw.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct BlackholeCounters {
    /// Connections accepted and relayed.
    pub accepted: u64,
    /// Relayed connections the client (the sidecar) closed after the cut.
    pub closed_by_client_after_cut: u64,
    /// Bytes dropped after the cut (from either side).
    pub dropped_bytes: u64,
}

#[derive(Default)]
struct Shared {
    cut: AtomicBool,
    cut_notify: Notify,
    accepted: AtomicU64,
    closed_after_cut: AtomicU64,
    dropped: AtomicU64,
}

/// A cuttable relay to one upstream; stops when dropped.
pub struct Blackhole {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Blackhole {
    /// Listens on an ephemeral port of 127.0.0.1 and relays to `upstream`.
    ///
    /// # Errors
    /// When the listener cannot be bound.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Blackhole> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::default());
        let task = tokio::spawn(accept_loop(listener, upstream, shared.clone()));
        Ok(Blackhole { addr, shared, task })
    }

    /// The address to connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts the relay: open connections go silent (kept open, bytes dropped), the listener
    /// closes so new connections are refused.
    pub fn cut(&self) {
        self.shared.cut.store(true, Ordering::SeqCst);
        self.shared.cut_notify.notify_waiters();
    }

    /// What the relay saw so far.
    pub fn counters(&self) -> BlackholeCounters {
        BlackholeCounters {
            accepted: self.shared.accepted.load(Ordering::SeqCst),
            closed_by_client_after_cut: self.shared.closed_after_cut.load(Ordering::SeqCst),
            dropped_bytes: self.shared.dropped.load(Ordering::SeqCst),
        }
    }
}

impl Drop for Blackhole {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    loop {
        let cut = shared.cut_notify.notified();
        if shared.cut.load(Ordering::SeqCst) {
            break;
        }
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = cut => break,
        };
        let Ok((down, _)) = accepted else { continue };
        let Ok(up) = TcpStream::connect(upstream).await else {
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        let _ = down.set_nodelay(true);
        let _ = up.set_nodelay(true);
        let (down_r, down_w) = down.into_split();
        let (up_r, up_w) = up.into_split();
        // The pumps run until their connection ends (or the test's runtime stops).
        tokio::spawn(pump(down_r, up_w, shared.clone(), true));
        tokio::spawn(pump(up_r, down_w, shared.clone(), false));
    }
    drop(listener);
    debug!("blackhole cut: listener closed");
}

/// Copies `from` to `to` until the cut, then reads and drops everything, never closing `to`.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: Arc<Shared>,
    from_client: bool,
) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        // A read error counts as the end of the stream.
        let n = from.read(&mut buf).await.unwrap_or(0);
        let cut = shared.cut.load(Ordering::SeqCst);
        if n == 0 {
            if cut {
                if from_client {
                    shared.closed_after_cut.fetch_add(1, Ordering::SeqCst);
                }
                // Keep the other side open and silent: it never learns of the close.
                std::future::pending::<()>().await;
            }
            let _ = to.shutdown().await;
            return;
        }
        if cut {
            shared.dropped.fetch_add(n as u64, Ordering::SeqCst);
            continue;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

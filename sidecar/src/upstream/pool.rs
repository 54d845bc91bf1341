//! Per-worker connection pools to one upstream host (xprotocol spec,
//! `docs/xprotocol-proxy-and-bolt.md` §2.10).
//!
//! * Multiplex (default): `slots` shared connections; requests from every downstream
//!   connection of the worker are spread over them round-robin, each with its own upstream
//!   id. A slot connects on first use; concurrent requests wait for the same connect.
//! * Ping-pong: one request per connection at a time; idle connections are reused LIFO and
//!   new ones opened up to `max_connections` (0 = unlimited).
//! * TCP: one connection per downstream connection (per host): the downstream's requests all
//!   go over it, multiplexed by upstream id. The downstream owns the slot ([`OwnedSlot`],
//!   kept in its `DownstreamConn`): the connection opens on first use and closes when the
//!   downstream closes ([`OwnedSlot::close`]); [`HostPool::lease_owned`] leases it.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, OnceCell};
use tokio::time::Instant;

use super::connection::UpstreamConn;
use crate::cluster::{CircuitBreaker, HostSlots, Slot};
use crate::codec_set::CodecSet;
use crate::config::{ClusterConfig, KeepaliveConfig, PoolMode};
use crate::failure::Failure;
use crate::framed::ReadLimits;
use crate::stats::HostStats;

/// What a pool needs to open connections.
#[derive(Clone)]
pub struct PoolSettings {
    /// Sharing mode.
    pub mode: PoolMode,
    /// Multiplex: connections per host (≥ 1). Ping-pong: cap (0 = unlimited). TCP: unused
    /// (one per downstream connection).
    pub max_connections: usize,
    /// Connect timeout.
    pub connect_timeout: Duration,
    /// Keepalive of each connection.
    pub keepalive: KeepaliveConfig,
    /// What each connection's read side enforces (frame deadline, backpressure).
    pub read_limits: ReadLimits,
    /// The cluster's circuit breaker: a request that has to wait for a connection (a
    /// connect in progress, a busy ping-pong pool) takes a `max_pending_requests` slot.
    pub breaker: Arc<CircuitBreaker>,
}

impl PoolSettings {
    /// The pool settings of `cluster`, whose protocol's codec defaults to `codec_mode`,
    /// with the cluster's `breaker`.
    pub fn new(
        cluster: &ClusterConfig,
        codec_mode: PoolMode,
        breaker: Arc<CircuitBreaker>,
    ) -> PoolSettings {
        let mode = cluster.effective_pool_mode(codec_mode);
        let limits = &cluster.circuit_breakers;
        let max_connections = match mode {
            PoolMode::Multiplex => limits.multiplex_connections_per_host() as usize,
            PoolMode::PingPong => limits.max_connections.unwrap_or(0) as usize,
            PoolMode::Tcp => 0,
        };
        PoolSettings {
            mode,
            max_connections,
            connect_timeout: cluster.connect_timeout,
            keepalive: cluster.keepalive,
            read_limits: ReadLimits::default(),
            breaker,
        }
    }

    /// True when requests share connections (multiplex); false for exclusive ones.
    fn shares_connections(&self) -> bool {
        self.mode == PoolMode::Multiplex
    }

    /// True when each downstream connection has its own upstream connection (`tcp`).
    pub fn per_downstream(&self) -> bool {
        self.mode == PoolMode::Tcp
    }
}

type ConnectCell = Rc<OnceCell<Result<Rc<UpstreamConn>, Failure>>>;

/// The upstream connection one downstream connection owns to one host (`tcp` pool mode):
/// opened on first use, reopened after it closed, closed by [`OwnedSlot::close`] when the
/// downstream connection closes.
#[derive(Default)]
pub struct OwnedSlot {
    cell: RefCell<ConnectCell>,
}

impl OwnedSlot {
    /// Closes the connection, if one is open (the downstream connection closed).
    pub fn close(&self) {
        if let Some(Ok(c)) = self.cell.borrow().get() {
            c.close(false);
        }
    }
}

/// A connection lent to one request; ping-pong connections go back to the pool on drop.
pub struct Lease {
    conn: Rc<UpstreamConn>,
    pool: Option<Rc<PoolInner>>,
}

impl Lease {
    /// The connection.
    pub fn conn(&self) -> &Rc<UpstreamConn> {
        &self.conn
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            pool.release(self.conn.clone());
        }
    }
}

/// The pool of one host on one worker.
#[derive(Clone)]
pub struct HostPool {
    inner: Rc<PoolInner>,
}

struct PoolInner {
    /// The cluster's host slots and this pool's slot in them.
    host: Arc<HostSlots>,
    index: usize,
    /// The slot's address as this pool last saw it, and the slot generation it saw.
    addr: Cell<Option<SocketAddr>>,
    generation: Cell<u32>,
    settings: PoolSettings,
    /// The worker's instances of the cluster's codec: each new connection gets one.
    codecs: Rc<CodecSet>,
    stats: HostStats,
    // Multiplex state.
    slots: Vec<RefCell<ConnectCell>>,
    next: Cell<usize>,
    // Ping-pong state.
    idle: RefCell<Vec<Rc<UpstreamConn>>>,
    open: Cell<usize>,
    released: Notify,
}

impl HostPool {
    /// A pool for slot `index` of `host` (its address is read from the slot, again whenever
    /// the slot's generation changes); connects lazily.
    pub fn new(
        host: Arc<HostSlots>,
        index: usize,
        settings: PoolSettings,
        codecs: Rc<CodecSet>,
        stats: HostStats,
    ) -> HostPool {
        let slots = if settings.shares_connections() {
            settings.max_connections.max(1)
        } else {
            0
        };
        HostPool {
            inner: Rc::new(PoolInner {
                addr: Cell::new(host.addr(index)),
                generation: Cell::new(host.generation(index)),
                host,
                index,
                codecs,
                stats,
                slots: (0..slots)
                    .map(|_| RefCell::new(Rc::new(OnceCell::new())))
                    .collect(),
                next: Cell::new(0),
                idle: RefCell::new(Vec::new()),
                open: Cell::new(0),
                released: Notify::new(),
                settings,
            }),
        }
    }

    /// The host's current address (`None`: its slot is empty).
    pub fn addr(&self) -> Option<SocketAddr> {
        self.inner.follow_address();
        self.inner.addr.get()
    }

    /// A connection for one request, waiting at most until `deadline`.
    ///
    /// # Errors
    /// [`Failure::ConnectFailed`] when connecting fails, [`Failure::Timeout`] when the
    /// deadline passes first, [`Failure::Overflow`] when the request would have to wait
    /// for a connection and `max_pending_requests` are waiting already.
    pub async fn lease(&self, deadline: Instant) -> Result<Lease, Failure> {
        self.inner.follow_address();
        if self.inner.settings.shares_connections() {
            let conn = tokio::time::timeout_at(deadline, self.inner.multiplexed())
                .await
                .map_err(|_| Failure::Timeout)??;
            Ok(Lease { conn, pool: None })
        } else {
            let conn = tokio::time::timeout_at(deadline, self.inner.exclusive())
                .await
                .map_err(|_| Failure::Timeout)??;
            Ok(Lease {
                conn,
                pool: Some(self.inner.clone()),
            })
        }
    }

    /// A multiplexed connection that is up now (open, usable, to the host's current
    /// address), without waiting or connecting; `None` otherwise (then [`HostPool::lease`]
    /// connects), and always for exclusive (ping-pong) pools, whose connection must be
    /// given back.
    pub fn ready_now(&self) -> Option<Rc<UpstreamConn>> {
        let inner = &self.inner;
        if !inner.settings.shares_connections() {
            return None;
        }
        inner.follow_address();
        let i = inner.next.get() % inner.slots.len();
        let slot = inner.slots[i].borrow();
        match slot.get() {
            Some(Ok(conn)) if inner.takes_requests(conn) => {
                inner.next.set(i + 1);
                Some(conn.clone())
            }
            _ => None,
        }
    }

    /// The connection of `slot` (a downstream connection's own, `tcp` pool mode), connecting
    /// it first when needed, waiting at most until `deadline`.
    ///
    /// # Errors
    /// As [`HostPool::lease`].
    pub async fn lease_owned(&self, slot: &OwnedSlot, deadline: Instant) -> Result<Lease, Failure> {
        self.inner.follow_address();
        let conn = tokio::time::timeout_at(deadline, self.inner.on_slot(&slot.cell))
            .await
            .map_err(|_| Failure::Timeout)??;
        Ok(Lease { conn, pool: None })
    }

    /// Open connections of this pool (for tests and stats).
    pub fn open_connections(&self) -> usize {
        if self.inner.settings.shares_connections() {
            self.inner
                .slots
                .iter()
                .filter(|s| matches!(s.borrow().get(), Some(Ok(c)) if !c.is_closed()))
                .count()
        } else {
            self.inner.open.get()
        }
    }

    /// Closes every connection (shutdown).
    pub fn close_all(&self) {
        for slot in &self.inner.slots {
            if let Some(Ok(c)) = slot.borrow().get() {
                c.close(false);
            }
        }
        for c in self.inner.idle.borrow_mut().drain(..) {
            c.close(false);
        }
    }
}

impl PoolInner {
    /// Picks up a change of the slot's address (one atomic load when there is none): the
    /// connections to the old address drain (requests in flight finish on them), idle ones
    /// close, and the next connect goes to the new address.
    fn follow_address(&self) {
        let generation = self.host.generation(self.index);
        if generation == self.generation.get() {
            return;
        }
        self.generation.set(generation);
        self.addr.set(self.host.addr(self.index));
        for slot in &self.slots {
            if let Some(Ok(c)) = slot.borrow().get() {
                c.drain();
            }
        }
        for c in self.idle.borrow_mut().drain(..) {
            c.close(false);
            self.open.set(self.open.get() - 1);
        }
    }

    /// Whether `conn` goes to the slot's current address (a `tcp`-mode connection a
    /// downstream kept across an address change does not).
    fn is_current(&self, conn: &UpstreamConn) -> bool {
        self.addr.get() == Some(conn.addr())
    }

    /// Whether a request may go on `conn` now: open, not draining, to the current address.
    fn takes_requests(&self, conn: &UpstreamConn) -> bool {
        conn.is_usable() && self.is_current(conn)
    }

    async fn connect(&self) -> Result<Rc<UpstreamConn>, Failure> {
        let Some(addr) = self.addr.get() else {
            return Err(Failure::NoHealthyHost);
        };
        let result = UpstreamConn::connect(
            addr,
            self.settings.connect_timeout,
            self.codecs.assign(),
            self.settings.keepalive,
            self.settings.read_limits.never_pause(),
            self.stats.clone(),
        )
        .await;
        if matches!(result, Err(Failure::ConnectFailed)) {
            self.host.connect_failed(self.index);
        }
        result
    }

    async fn multiplexed(&self) -> Result<Rc<UpstreamConn>, Failure> {
        let i = self.next.get() % self.slots.len();
        self.next.set(i + 1);
        self.on_slot(&self.slots[i]).await
    }

    /// The live connection in `slot`, connecting (or waiting for a connect in progress)
    /// first when there is none.
    async fn on_slot(&self, slot: &RefCell<ConnectCell>) -> Result<Rc<UpstreamConn>, Failure> {
        loop {
            let cell = slot.borrow().clone();
            let ready = matches!(cell.get(), Some(Ok(c)) if !c.is_closed());
            // Waiting for a connect (this request's or another's) is being pending.
            let _pending = if ready { None } else { Some(self.pending()?) };
            // Boxed: the connect future is large and rare; every request's task would carry it.
            let result = cell.get_or_init(|| Box::pin(self.connect())).await.clone();
            match result {
                Ok(conn) if self.takes_requests(&conn) => return Ok(conn),
                outcome => {
                    if let Ok(conn) = &outcome {
                        if conn.is_usable() {
                            conn.drain();
                        }
                    }
                    // Dead, draining after a GoAway (it finishes on its own), or failed: the next attempt (this one, or a later request) must
                    // connect anew, unless someone already replaced the cell.
                    if Rc::ptr_eq(&slot.borrow(), &cell) {
                        *slot.borrow_mut() = Rc::new(OnceCell::new());
                    }
                    outcome?;
                }
            }
        }
    }

    /// Counts a request as waiting for a connection until the returned slot drops;
    /// `Failure::Overflow` (counted) when `max_pending_requests` are waiting already.
    fn pending(&self) -> Result<PendingGuard<'_>, Failure> {
        match self.settings.breaker.wait_for_connection() {
            Some(slot) => {
                self.stats.request_pending.inc();
                Ok(PendingGuard {
                    _slot: slot,
                    stats: &self.stats,
                })
            }
            None => {
                self.stats.request_pending_overflow.inc();
                self.stats.request_max_pending_overflow.inc();
                Err(Failure::Overflow)
            }
        }
    }

    async fn exclusive(&self) -> Result<Rc<UpstreamConn>, Failure> {
        let mut pending = None;
        loop {
            while let Some(c) = self.idle.borrow_mut().pop() {
                if self.takes_requests(&c) {
                    return Ok(c);
                }
                // Draining after a GoAway, or to an address the host no longer has.
                if !c.is_closed() {
                    c.close(false);
                }
                self.open.set(self.open.get() - 1);
            }
            // No idle connection: this request waits (for a connect or a release).
            if pending.is_none() {
                pending = Some(self.pending()?);
            }
            let cap = self.settings.max_connections;
            if cap == 0 || self.open.get() < cap {
                self.open.set(self.open.get() + 1);
                return match self.connect().await {
                    Ok(c) => Ok(c),
                    Err(f) => {
                        self.open.set(self.open.get() - 1);
                        self.released.notify_one();
                        Err(f)
                    }
                };
            }
            self.released.notified().await;
        }
    }

    fn release(&self, conn: Rc<UpstreamConn>) {
        if conn.is_closed() {
            self.open.set(self.open.get() - 1);
        } else {
            self.idle.borrow_mut().push(conn);
        }
        self.released.notify_one();
    }
}

/// A request waiting for a connection: a `max_pending_requests` slot and the
/// `request_pending` gauge, both released on drop.
struct PendingGuard<'a> {
    _slot: Slot<'a>,
    stats: &'a HostStats,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.stats.request_pending.dec();
    }
}

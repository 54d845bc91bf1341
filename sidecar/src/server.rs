//! Process lifecycle: resolve the plan, bind every listener (so nothing starts on a broken
//! setup), start the workers, accept connections and hand them out round-robin, start the
//! admin API on its own thread, reload the Wasm plugins on SIGHUP ([`crate::reload`]), and on
//! SIGTERM/SIGINT stop accepting and let in-flight requests finish within `graceful_timeout`.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::access_log;
use crate::admin::routes::AdminContext;
use crate::admin::AdminServer;
use crate::config::Config;
use crate::context::Accepted;
use crate::health::{HealthError, HealthThread};
use crate::logging::LogHandle;
use crate::plan::{Plan, PlanError};
use crate::{reload, worker};

/// Why the sidecar could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The configuration could not be turned into a runnable plan (plugin load, …).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A listener or the admin address could not be bound.
    #[error("cannot listen on {addr} ({name}): {source}")]
    Bind {
        /// Listener name.
        name: String,
        /// Address.
        addr: std::net::SocketAddr,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A worker failed to start (e.g. its plugin instance did not initialise).
    #[error("worker failed to start: {0}")]
    Worker(String),
    /// The runtime could not be created.
    #[error("runtime: {0}")]
    Runtime(#[from] std::io::Error),
    /// An access log could not be opened, or its writer not started.
    #[error(transparent)]
    AccessLog(#[from] access_log::StartError),
    /// The health checks could not start.
    #[error(transparent)]
    Health(#[from] HealthError),
}

/// Runs the sidecar until SIGTERM/SIGINT, then stops gracefully; SIGHUP reloads the Wasm
/// plugins meanwhile. `log` is the installed subscriber's level switch (the admin API's
/// `update_loglevel`).
///
/// # Errors
/// [`RunError`] when anything fails before the listeners start serving.
pub fn run(config: Config, log: Option<LogHandle>) -> Result<(), RunError> {
    let plan = Arc::new(Plan::build(&config)?);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // Before the workers start: from here on SIGHUP reloads instead of ending the process,
    // and SIGUSR1 (reopen the access logs) is caught before the listeners accept.
    let signals = {
        let _in_runtime = rt.enter();
        Signals::install()
    };
    let usr1 = access_log::Sigusr1::watch(&rt);
    let shutdown = CancellationToken::new();
    let admin = AdminContext {
        plan: plan.clone(),
        log,
        log_path: config.server.log.path.to_string(),
    };
    let started = start(plan.clone(), shutdown.clone(), Some(admin))?;
    rt.block_on(async {
        tokio::select! {
            _ = signals.wait_for_stop(&plan) => {}
            _ = plan.access_logs.reopen_on(usr1) => {}
        }
        info!(
            graceful_timeout = ?plan.graceful_timeout,
            "stopping: no new connections; waiting for in-flight requests"
        );
    });
    started.stop(plan.graceful_timeout);
    Ok(())
}

/// A started sidecar (listeners bound, workers running).
pub struct Started {
    shutdown: CancellationToken,
    access_log: Option<access_log::Writer>,
    acceptor: Option<std::thread::JoinHandle<()>>,
    workers: Vec<std::thread::JoinHandle<()>>,
    health: Option<HealthThread>,
    admin: Option<AdminServer>,
    /// The bound listener addresses, in plan order.
    pub listen_addrs: Vec<std::net::SocketAddr>,
}

impl Started {
    /// Stops accepting, waits up to `grace` for the workers to finish their in-flight
    /// requests (the admin API keeps answering meanwhile), writes out the access logs, and
    /// returns.
    pub fn stop(mut self, grace: Duration) {
        self.drain_workers(grace);
        if let Some(writer) = self.access_log.take() {
            writer.stop();
        }
    }

    fn drain_workers(&mut self, grace: Duration) {
        self.shutdown.cancel();
        if let Some(a) = self.acceptor.take() {
            let _ = a.join();
        }
        let deadline = std::time::Instant::now() + grace;
        let mut drained = true;
        for w in self.workers.drain(..) {
            while !w.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if w.is_finished() {
                let _ = w.join();
            } else {
                warn!("graceful timeout elapsed with requests still in flight");
                drained = false;
                break;
            }
        }
        if let Some(health) = self.health.take() {
            health.stop();
        }
        if let Some(admin) = self.admin.take() {
            admin.stop();
        }
        if drained {
            info!("stopped");
        }
    }
}

/// Binds the listeners and admin address, starts the workers, the acceptor thread and (with
/// `admin` and an admin address in the plan) the admin API's thread.
///
/// # Errors
/// [`RunError`] when binding or a worker's start-up fails; nothing keeps running then.
pub fn start(
    plan: Arc<Plan>,
    shutdown: CancellationToken,
    admin: Option<AdminContext>,
) -> Result<Started, RunError> {
    let mut std_listeners = Vec::new();
    for l in &plan.listeners {
        let sock = std::net::TcpListener::bind(l.addr).map_err(|source| RunError::Bind {
            name: l.name.clone(),
            addr: l.addr,
            source,
        })?;
        sock.set_nonblocking(true)?;
        std_listeners.push(sock);
    }
    // Access logs open before anything is served, so a bad path stops the start.
    let access_log = plan.access_logs.start()?;
    let admin_listener = match plan.admin {
        Some(addr) => {
            let sock = std::net::TcpListener::bind(addr).map_err(|source| RunError::Bind {
                name: "admin".into(),
                addr,
                source,
            })?;
            sock.set_nonblocking(true)?;
            Some(sock)
        }
        None => None,
    };
    let listen_addrs = std_listeners
        .iter()
        .map(|l| l.local_addr())
        .collect::<Result<Vec<_>, _>>()?;

    let mut senders = Vec::new();
    let mut workers = Vec::new();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    for i in 0..plan.workers {
        let (tx, rx) = mpsc::unbounded_channel();
        senders.push(tx);
        workers.push(worker::spawn(
            i,
            plan.clone(),
            shutdown.clone(),
            rx,
            ready_tx.clone(),
        )?);
    }
    drop(ready_tx);
    for _ in 0..plan.workers {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                shutdown.cancel();
                return Err(RunError::Worker(e));
            }
            Err(_) => {
                shutdown.cancel();
                return Err(RunError::Worker("a worker exited during start-up".into()));
            }
        }
    }

    // Health checks and ejection start before the acceptor and the admin API, so the
    // first request and the first stats call see them running.
    let health = match HealthThread::start(&plan) {
        Ok(h) => h,
        Err(e) => {
            shutdown.cancel();
            return Err(e.into());
        }
    };
    let acceptor = {
        let plan = plan.clone();
        let shutdown = shutdown.clone();
        std::thread::Builder::new()
            .name("acceptor".into())
            .spawn(move || accept_loop(plan, std_listeners, senders, shutdown))?
    };
    let admin = match (admin_listener, admin) {
        (Some(listener), Some(ctx)) => Some(AdminServer::start(listener, ctx, shutdown.clone())?),
        _ => None,
    };
    for (l, addr) in plan.listeners.iter().zip(&listen_addrs) {
        info!(listener = %l.name, %addr, protocol = %l.protocol, "listening");
    }
    Ok(Started {
        shutdown,
        access_log: Some(access_log),
        acceptor: Some(acceptor),
        workers,
        health,
        admin,
        listen_addrs,
    })
}

fn accept_loop(
    plan: Arc<Plan>,
    listeners: Vec<std::net::TcpListener>,
    workers: Vec<mpsc::UnboundedSender<Accepted>>,
    shutdown: CancellationToken,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!(cause = %e, "acceptor runtime failed");
            shutdown.cancel();
            return;
        }
    };
    rt.block_on(async move {
        let workers = Arc::new(workers);
        let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for (index, l) in listeners.into_iter().enumerate() {
            let listener = match TcpListener::from_std(l) {
                Ok(l) => l,
                Err(e) => {
                    error!(cause = %e, "cannot register listener");
                    shutdown.cancel();
                    return;
                }
            };
            let workers = workers.clone();
            let next = next.clone();
            let shutdown = shutdown.clone();
            let name = plan.listeners[index].name.clone();
            let plan = plan.clone();
            tasks.spawn(async move {
                loop {
                    let accepted = tokio::select! {
                        a = listener.accept() => a,
                        _ = shutdown.cancelled() => return,
                    };
                    match accepted {
                        Ok((stream, peer)) => {
                            // Over the overload budget or at the connection cap: refuse
                            // (close at once; counted, one warning per episode).
                            let Some(admission) = plan.overload.admit() else {
                                debug!(listener = %name, %peer, "refusing connection: overloaded");
                                drop(stream);
                                continue;
                            };
                            let stream = match stream.into_std() {
                                Ok(s) => s,
                                Err(e) => {
                                    warn!(listener = %name, cause = %e, "cannot hand over socket");
                                    continue;
                                }
                            };
                            let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                                % workers.len();
                            let _ = workers[i].send(Accepted {
                                stream,
                                peer,
                                listener: index,
                                admission,
                            });
                        }
                        Err(e) => {
                            // EMFILE and friends: back off instead of spinning.
                            warn!(listener = %name, cause = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            });
        }
        while tasks.join_next().await.is_some() {}
    });
}

/// The signals the process acts on, installed once.
struct Signals {
    #[cfg(unix)]
    unix: Option<UnixSignals>,
}

#[cfg(unix)]
struct UnixSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers (inside a runtime). Without them (an OS refusal, logged) the
    /// process stops on Ctrl-C only.
    fn install() -> Signals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let unix = match (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
                signal(SignalKind::hangup()),
            ) {
                (Ok(term), Ok(int), Ok(hup)) => Some(UnixSignals { term, int, hup }),
                (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                    warn!(cause = %e, "cannot install signal handlers; stop with Ctrl-C");
                    None
                }
            };
            Signals { unix }
        }
        #[cfg(not(unix))]
        Signals {}
    }

    /// Waits for SIGTERM or SIGINT; each SIGHUP meanwhile reloads the plugins of `plan` on
    /// a blocking thread (the outcome is logged by [`reload::reload_plugins`]).
    async fn wait_for_stop(self, plan: &Arc<Plan>) {
        #[cfg(unix)]
        if let Some(mut s) = self.unix {
            loop {
                tokio::select! {
                    _ = s.term.recv() => return info!("SIGTERM received"),
                    _ = s.int.recv() => return info!("SIGINT received"),
                    _ = s.hup.recv() => {
                        info!("SIGHUP received: reloading plugins");
                        let plan = plan.clone();
                        // Not awaited: a stop signal is still served while workers answer.
                        tokio::task::spawn_blocking(move || reload::reload_plugins(&plan));
                    }
                }
            }
        }
        let _ = plan;
        let _ = tokio::signal::ctrl_c().await;
    }
}

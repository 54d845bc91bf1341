//! The admin API server: hyper's HTTP/1.1 server on a thread of its own (never on a worker),
//! answering with [`routes`]. Loopback by default (a non-loopback address is warned about at
//! start); every connection has a header read deadline and an overall deadline, bodies are
//! capped, at most [`MAX_CONNECTIONS`] are served at once (the rest wait in the kernel's
//! backlog), and accept errors (out of fds) back off instead of spinning.

pub mod routes;

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use routes::{AdminContext, Method, ProcessState, Request, Response};

/// Most admin connections served at once.
pub const MAX_CONNECTIONS: usize = 16;
/// A request's head must arrive within this.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// A connection is closed this long after it was accepted, whatever it is doing.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest request body read (`update_loglevel`, plugin reload).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// A running admin server.
pub struct AdminServer {
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl AdminServer {
    /// Starts serving `listener` on a new thread `admin`. `draining` tells the endpoints the
    /// process is stopping (`/api/v1/states`).
    ///
    /// # Errors
    /// When the thread cannot be spawned.
    pub fn start(
        listener: std::net::TcpListener,
        ctx: AdminContext,
        draining: CancellationToken,
    ) -> std::io::Result<AdminServer> {
        let stop = CancellationToken::new();
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("admin".into())
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            error!(cause = %e, "admin runtime failed; admin API off");
                            return;
                        }
                    };
                    rt.block_on(serve(listener, Arc::new(ctx), draining, stop));
                })?
        };
        Ok(AdminServer {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops accepting, drops open admin connections and joins the thread.
    pub fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

async fn serve(
    listener: std::net::TcpListener,
    ctx: Arc<AdminContext>,
    draining: CancellationToken,
    stop: CancellationToken,
) {
    let listener = match TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            warn!(cause = %e, "cannot register the admin listener; admin API off");
            return;
        }
    };
    if let Ok(addr) = listener.local_addr() {
        info!(%addr, "admin API listening");
    }
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut conns = tokio::task::JoinSet::new();
    loop {
        // At the cap: accept nothing until a connection ends.
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => return,
            },
            _ = stop.cancelled() => break,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.cancelled() => break,
        };
        while conns.try_join_next().is_some() {}
        match accepted {
            Ok((stream, peer)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                let ctx = ctx.clone();
                let draining = draining.clone();
                conns.spawn(async move {
                    serve_connection(stream, ctx, draining).await;
                    debug!(%peer, "admin connection closed");
                    drop(permit);
                });
            }
            Err(e) => {
                // EMFILE and friends: wait (doubling) instead of spinning on the error.
                warn!(cause = %e, retry_in = ?backoff, "admin accept failed");
                drop(permit);
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = stop.cancelled() => break,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
    conns.abort_all();
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    ctx: Arc<AdminContext>,
    draining: CancellationToken,
) {
    let service = service_fn(move |req| {
        let ctx = ctx.clone();
        let draining = draining.clone();
        async move { Ok::<_, Infallible>(answer(req, &ctx, &draining).await) }
    });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    match tokio::time::timeout(CONNECTION_TIMEOUT, conn).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(cause = %e, "admin connection failed"),
        Err(_) => debug!("admin connection closed at its deadline"),
    }
}

async fn answer(
    req: hyper::Request<Incoming>,
    ctx: &Arc<AdminContext>,
    draining: &CancellationToken,
) -> hyper::Response<Full<Bytes>> {
    let method = match *req.method() {
        hyper::Method::GET | hyper::Method::HEAD => Method::Get,
        hyper::Method::POST => Method::Post,
        _ => Method::Other,
    };
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let body = match Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return to_hyper(Response::error(
                400,
                format!("cannot read the body (at most {MAX_BODY_BYTES} bytes): {e}"),
            ))
        }
    };
    let state = if draining.is_cancelled() {
        ProcessState::GracefulStopping
    } else {
        ProcessState::Running
    };
    let request = Request {
        method,
        path: &path,
        query: query.as_deref(),
        body: &body,
    };
    if !routes::blocks(&request) {
        return to_hyper(routes::route(&request, ctx, state));
    }
    // A reload compiles and waits for every worker: off this thread's event loop, so the
    // other endpoints keep answering meanwhile.
    let ctx = ctx.clone();
    let answered = tokio::task::spawn_blocking(move || {
        let request = Request {
            method,
            path: &path,
            query: query.as_deref(),
            body: &body,
        };
        routes::route(&request, &ctx, state)
    })
    .await;
    to_hyper(answered.unwrap_or_else(|e| Response::error(500, format!("the handler failed: {e}"))))
}

fn to_hyper(r: Response) -> hyper::Response<Full<Bytes>> {
    let mut builder = hyper::Response::builder()
        .status(r.status)
        .header(hyper::header::CONTENT_TYPE, r.content_type);
    if let Some(allow) = r.allow {
        builder = builder.header(hyper::header::ALLOW, allow);
    }
    builder
        .body(Full::new(Bytes::from(r.body)))
        .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new())))
}

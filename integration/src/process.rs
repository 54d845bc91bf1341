//! What the small server binaries (`bolt-echo`, `tcp-relay`) share: a multi-thread runtime
//! with an optional thread count, and serving until SIGINT or SIGTERM.

use anyhow::Context;

/// A multi-thread runtime with `threads` workers (default: one per CPU).
///
/// # Errors
/// When the runtime cannot be built.
pub fn runtime(threads: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut rt = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = threads {
        rt.worker_threads(n.max(1));
    }
    rt.enable_all().build().context("starting the runtime")
}

/// Waits for SIGINT (Ctrl-C) or SIGTERM.
///
/// # Errors
/// When the SIGTERM handler cannot be installed.
pub async fn until_stop_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    Ok(())
}

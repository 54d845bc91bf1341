//! Worker threads (worker-per-core): each owns a current-thread tokio runtime and its
//! [`WorkerContext`] (codec instances, balancers, upstream pools), so the request path shares
//! no lock with other threads. Accepted sockets arrive over a channel.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, info_span, Instrument};

use crate::context::{Accepted, WorkerContext};
use crate::downstream;
use crate::plan::Plan;
use crate::reload;
use crate::stats::ContextCounts;

/// Starts worker `index` on its own thread. `ready` reports whether its codecs came up.
pub fn spawn(
    index: usize,
    plan: Arc<Plan>,
    shutdown: CancellationToken,
    accepted: mpsc::UnboundedReceiver<Accepted>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("worker-{index}"))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready.send(Err(format!("worker {index}: runtime: {e}")));
                    return;
                }
            };
            let commands = plan.control.register(index);
            let worker = match WorkerContext::build(index, plan, shutdown) {
                Ok(w) => Rc::new(w),
                Err(e) => {
                    let _ = ready.send(Err(format!("worker {index}: {e}")));
                    return;
                }
            };
            let _ = ready.send(Ok(()));
            let local = tokio::task::LocalSet::new();
            local.block_on(
                &rt,
                serve(worker, accepted, commands).instrument(info_span!("worker", index)),
            );
        })
        .inspect_err(|e| error!(cause = %e, "cannot spawn worker thread"))
}

/// Serves accepted sockets until the process stops, then drains.
async fn serve(
    worker: Rc<WorkerContext>,
    mut accepted: mpsc::UnboundedReceiver<Accepted>,
    commands: mpsc::UnboundedReceiver<crate::control::WorkerCommand>,
) {
    let stop_shedder = CancellationToken::new();
    tokio::task::spawn_local(worker.load.clone().run_shedder(stop_shedder.clone()));
    tokio::task::spawn_local(publish_codec_contexts(worker.clone(), stop_shedder.clone()));
    tokio::task::spawn_local(reload::serve_plugin_control(
        worker.clone(),
        commands,
        stop_shedder.clone(),
    ));
    loop {
        tokio::select! {
            a = accepted.recv() => match a {
                Some(a) => downstream::spawn(worker.clone(), a),
                None => break,
            },
            _ = worker.shutdown.cancelled() => break,
        }
    }
    // Graceful stop: connections finish their in-flight requests; the server bounds the
    // wait with graceful_timeout.
    worker.conns.wait_idle().await;
    worker.close_upstreams();
    stop_shedder.cancel();
    info!("worker stopped");
}

/// How often a worker publishes its codecs' context counters.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// Publishes this worker's plugin context counters into the stats until `stop` fires.
async fn publish_codec_contexts(worker: Rc<WorkerContext>, stop: CancellationToken) {
    // The codecs that keep contexts and where their counters go, looked up once.
    let published: Vec<_> = worker
        .codecs
        .iter()
        .filter_map(|(protocol, set)| Some((set, worker.plan.stats.codec(protocol)?)))
        .collect();
    if published.is_empty() {
        return;
    }
    let mut tick = tokio::time::interval(PUBLISH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        for (set, gauges) in &published {
            for (instance, codec) in set.members().iter().enumerate() {
                let Some(c) = codec.borrow().context_stats() else {
                    continue;
                };
                gauges.publish(
                    worker.index,
                    instance,
                    ContextCounts {
                        live: c.live as u64,
                        live_max: c.live_max as u64,
                        created: c.created,
                        deleted: c.deleted,
                        replaced_instances: c.replaced_instances,
                        refused_calls: c.refused_calls,
                    },
                );
            }
        }
    }
}

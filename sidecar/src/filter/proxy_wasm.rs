//! `proxywasm` stream filters on RPC calls: a proxy-wasm plugin loaded once
//! ([`ProxyWasmFilter`], shared by the workers), one instance per worker
//! ([`WorkerWasmFilter`]), one stream context per call ([`WasmStream`]).
//!
//! Per call, in order: `proxy_on_context_create`, `proxy_on_request_headers` on the
//! request's header map (and `proxy_on_request_body` on its content when exported), then,
//! when a response comes back, `proxy_on_response_headers` / `proxy_on_response_body`, and
//! when the call ends however it ends, `proxy_on_log`, `proxy_on_done`, `proxy_on_delete`.
//! Callbacks the module does not export are not called.
//!
//! * A callback answering `Pause` holds the call until the filter continues it
//!   (`proxy_continue_stream` from another callback, typically `proxy_on_tick`), answers it,
//!   or the call's deadline passes (a timeout, 504).
//! * `proxy_send_local_response` answers through the codec's hijack with the filter's status
//!   (mapped as for any hijack); the call never reaches the upstream.
//! * Changed headers mark the frame changed, so the codec re-encodes it.
//! * A trap or an exhausted CPU budget fails that call with 500 (`FilterFailed`); the
//!   instance is dropped with the contexts it held (their calls skip the filter's later
//!   callbacks) and a fresh one is made for the next call, within the plugin restart budget.
//! * Ticks run on the worker that owns the instance; data enqueued on a shared queue wakes
//!   `proxy_on_queue_ready` on the registrant's worker.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;

use codec_host::filter::{
    FilterError, FilterInstance, FilterPlugin, FilterPluginConfig, MetricKind, Phase, PhaseOutcome,
    StreamEvent, StreamInfo,
};
use codec_host::{Frame, Limits, LoadError};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tracing::{debug, warn};

use super::{RejectReason, Rejection};
use crate::config::ProxyWasmConfig;
use crate::failure::Failure;
use crate::stats::{Counter, StatsSource};

/// Counters of one `proxywasm` filter (all workers).
#[derive(Debug, Default)]
pub struct WasmFilterStats {
    /// Calls the filter saw (stream contexts created).
    pub calls: Counter,
    /// Calls a callback paused.
    pub paused: Counter,
    /// Paused calls the filter continued.
    pub resumed: Counter,
    /// Calls the filter answered itself (`proxy_send_local_response`).
    pub local_responses: Counter,
    /// Calls whose frame the filter changed (headers re-encoded).
    pub headers_changed: Counter,
    /// Callbacks that trapped.
    pub traps: Counter,
    /// Callbacks stopped at the CPU budget.
    pub cpu_exhausted: Counter,
    /// Instances started (one per worker that ran a call, plus replacements).
    pub instances_started: Counter,
    /// Instances replaced after a failure.
    pub instance_replacements: Counter,
    /// Calls failed because no instance could be started (restart budget spent or start
    /// failure).
    pub refused: Counter,
    /// Guest calls made (every callback, all instances).
    pub guest_calls: Counter,
}

impl StatsSource for WasmFilterStats {
    fn to_json(&self) -> Value {
        json!({
            "calls": self.calls.get(),
            "paused": self.paused.get(),
            "resumed": self.resumed.get(),
            "local_responses": self.local_responses.get(),
            "headers_changed": self.headers_changed.get(),
            "traps": self.traps.get(),
            "cpu_exhausted": self.cpu_exhausted.get(),
            "instances_started": self.instances_started.get(),
            "instance_replacements": self.instance_replacements.get(),
            "refused": self.refused.get(),
            "guest_calls": self.guest_calls.get(),
        })
    }
}

/// The metrics the filter defines (`proxy_define_metric`), as the admin API shows them.
#[derive(Debug)]
struct GuestMetrics(Arc<FilterPlugin>);

impl StatsSource for GuestMetrics {
    fn to_json(&self) -> Value {
        let mut m = Map::new();
        for v in self.0.shared().metrics().snapshot() {
            if v.kind == MetricKind::Histogram {
                m.insert(format!("{}_count", v.name), json!(v.count));
                m.insert(format!("{}_sum", v.name), json!(v.value));
            } else {
                m.insert(v.name, json!(v.value));
            }
        }
        Value::Object(m)
    }
}

/// One `proxywasm` filter of a listener, loaded and checked at start-up.
#[derive(Debug)]
pub struct ProxyWasmFilter {
    plugin: Arc<FilterPlugin>,
    /// `<listener>.<plugin>`: the stats namespace suffix.
    label: String,
    stats: Arc<WasmFilterStats>,
    max_restarts_per_minute: u32,
}

impl ProxyWasmFilter {
    /// Loads the filter `config` of listener `listener` (one instance is started as a check
    /// and dropped).
    ///
    /// # Errors
    /// The plugin's [`LoadError`].
    pub fn load(
        listener: &str,
        config: &ProxyWasmConfig,
        max_restarts_per_minute: u32,
    ) -> Result<ProxyWasmFilter, LoadError> {
        let p = &config.plugin;
        let limits = Limits {
            max_restarts_per_minute,
            ..Limits::from_vm_config_mem(p.vm.mem)
        }
        .resolved();
        let plugin = FilterPlugin::load(FilterPluginConfig {
            name: p.name.clone(),
            wasm_path: p.vm.resolved_path.clone(),
            md5: Some(p.vm.md5.clone()).filter(|m| !m.is_empty()),
            root_id: config.root_context_id,
            vm_id: config.vm_id.clone(),
            vm_config: config.vm_configuration.clone(),
            plugin_config: config.plugin_configuration.clone(),
            limits,
        })?;
        Ok(ProxyWasmFilter {
            label: format!("{listener}.{}", p.name),
            plugin: Arc::new(plugin),
            stats: Arc::default(),
            max_restarts_per_minute: limits.max_restarts_per_minute,
        })
    }

    /// The plugin's name.
    pub fn name(&self) -> &str {
        self.plugin.name()
    }

    /// The counters: `wasm_filter.<listener>.<plugin>` (the host's) and
    /// `wasm_filter_metric.<listener>.<plugin>` (the metrics the filter defines).
    pub fn stats(&self) -> Vec<(String, Arc<dyn StatsSource>)> {
        let host: Arc<dyn StatsSource> = self.stats.clone();
        let guest: Arc<dyn StatsSource> = Arc::new(GuestMetrics(self.plugin.clone()));
        vec![
            (format!("wasm_filter.{}", self.label), host),
            (format!("wasm_filter_metric.{}", self.label), guest),
        ]
    }

    /// This worker's side of the filter (its instance is made on first use).
    pub fn worker(self: &Arc<Self>) -> Rc<WorkerWasmFilter> {
        let (queue_tx, queue_rx) = mpsc::unbounded_channel();
        Rc::new(WorkerWasmFilter {
            shared: self.clone(),
            instance: RefCell::new(None),
            generation: Cell::new(0),
            started: Cell::new(0),
            waiters: RefCell::new(HashMap::new()),
            restarts: RefCell::new(VecDeque::new()),
            ticking: Cell::new(false),
            queue_tx,
            queue_rx: RefCell::new(Some(queue_rx)),
        })
    }
}

/// How a paused call goes on.
#[derive(Debug)]
enum Resume {
    Continue,
    Answer(u32),
    Close,
}

/// One worker's instance of a filter, and the calls it holds paused.
pub struct WorkerWasmFilter {
    shared: Arc<ProxyWasmFilter>,
    instance: RefCell<Option<FilterInstance>>,
    /// Bumped whenever the instance is dropped: contexts of older generations are gone.
    generation: Cell<u64>,
    /// Instances started so far.
    started: Cell<u64>,
    waiters: RefCell<HashMap<u32, oneshot::Sender<Resume>>>,
    restarts: RefCell<VecDeque<std::time::Instant>>,
    ticking: Cell<bool>,
    queue_tx: mpsc::UnboundedSender<u32>,
    queue_rx: RefCell<Option<mpsc::UnboundedReceiver<u32>>>,
}

impl std::fmt::Debug for WorkerWasmFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerWasmFilter")
            .field("filter", &self.shared.label)
            .field("generation", &self.generation.get())
            .finish_non_exhaustive()
    }
}

/// A call's stream context in one filter; dropping it ends the stream (`proxy_on_log`,
/// `proxy_on_done`, `proxy_on_delete`).
#[derive(Debug)]
pub struct WasmStream {
    filter: Rc<WorkerWasmFilter>,
    ctx: u32,
    generation: u64,
}

impl Drop for WasmStream {
    fn drop(&mut self) {
        self.filter.waiters.borrow_mut().remove(&self.ctx);
        if self.filter.generation.get() != self.generation {
            return;
        }
        let _ = self.filter.call(|i| i.finish_stream(self.ctx));
    }
}

impl WorkerWasmFilter {
    /// Makes sure an instance runs: the first, or a replacement within the restart budget.
    fn ensure(self: &Rc<Self>) -> Result<(), Failure> {
        if self.instance.borrow().is_some() {
            return Ok(());
        }
        let now = std::time::Instant::now();
        if self.started.get() > 0 {
            let mut r = self.restarts.borrow_mut();
            while r
                .front()
                .is_some_and(|t| now.duration_since(*t).as_secs() >= 60)
            {
                r.pop_front();
            }
            if r.len() >= self.shared.max_restarts_per_minute as usize {
                self.shared.stats.refused.inc();
                return Err(Failure::FilterFailed);
            }
            r.push_back(now);
            self.shared.stats.instance_replacements.inc();
        }
        let tx = self.queue_tx.clone();
        let waker: codec_host::filter::QueueWaker = Arc::new(move |id| {
            let _ = tx.send(id);
        });
        match self.shared.plugin.new_instance(Some(waker)) {
            Ok(i) => {
                *self.instance.borrow_mut() = Some(i);
                self.started.set(self.started.get() + 1);
                self.shared.stats.instances_started.inc();
                if let Some(rx) = self.queue_rx.borrow_mut().take() {
                    tokio::task::spawn_local(serve_queues(Rc::downgrade(self), rx));
                }
                self.settle();
                Ok(())
            }
            Err(e) => {
                warn!(filter = %self.shared.label, error = %e, "proxy-wasm filter instance did not start");
                self.shared.stats.refused.inc();
                Err(Failure::FilterFailed)
            }
        }
    }

    /// Runs `f` on the instance, then acts on what the guest asked (events, tick period) and
    /// drops a poisoned instance. A callback failure is counted and becomes
    /// [`Failure::FilterFailed`].
    fn call<R>(
        self: &Rc<Self>,
        f: impl FnOnce(&mut FilterInstance) -> Result<R, FilterError>,
    ) -> Result<R, Failure> {
        let r = {
            let mut slot = self.instance.borrow_mut();
            let Some(instance) = slot.as_mut() else {
                return Err(Failure::FilterFailed);
            };
            let before = instance.guest_calls();
            let r = f(instance);
            self.shared
                .stats
                .guest_calls
                .add(instance.guest_calls() - before);
            r
        };
        if let Err(e) = &r {
            match e {
                FilterError::CpuExhausted { .. } => self.shared.stats.cpu_exhausted.inc(),
                FilterError::Trap { .. } => self.shared.stats.traps.inc(),
                _ => {}
            }
            warn!(filter = %self.shared.label, error = %e, "proxy-wasm filter failed; the call fails");
        }
        self.settle();
        r.map_err(|_| Failure::FilterFailed)
    }

    /// Delivers what callbacks asked of paused calls; drops a poisoned instance (its paused
    /// calls fail); starts the tick loop when the filter asked for ticks.
    fn settle(self: &Rc<Self>) {
        let (poisoned, events, tick) = {
            let mut slot = self.instance.borrow_mut();
            let Some(i) = slot.as_mut() else {
                return;
            };
            (i.is_poisoned(), i.take_events(), !i.tick_period().is_zero())
        };
        for e in events {
            let Some(tx) = self.waiters.borrow_mut().remove(&e.context()) else {
                debug!(filter = %self.shared.label, event = ?e, "event for a call that is not paused; ignored");
                continue;
            };
            let _ = tx.send(match e {
                StreamEvent::Continue { .. } => Resume::Continue,
                StreamEvent::LocalResponse { response, .. } => Resume::Answer(response.status),
                StreamEvent::Close { .. } => Resume::Close,
            });
        }
        if poisoned {
            *self.instance.borrow_mut() = None;
            self.generation.set(self.generation.get() + 1);
            // Dropping the senders fails every call paused on the old instance.
            self.waiters.borrow_mut().clear();
        }
        if tick && !self.ticking.get() {
            self.ticking.set(true);
            // A weak handle: the loop ends with the worker's filter.
            tokio::task::spawn_local(tick_loop(Rc::downgrade(self)));
        }
    }

    fn implements(&self, phase: Phase) -> bool {
        self.instance
            .borrow()
            .as_ref()
            .is_some_and(|i| i.implements(phase))
    }

    /// Runs the request callbacks on `request`: the call's stream, or how the call ends here.
    ///
    /// # Errors
    /// A filter's local response (a rejection with its status), a failure (500), or a
    /// pause outlasting `deadline` (timeout).
    pub async fn on_request(
        self: &Rc<Self>,
        info: StreamInfo,
        request: &mut Frame,
        deadline: Instant,
    ) -> Result<WasmStream, Failure> {
        self.ensure()?;
        let generation = self.generation.get();
        let ctx = self.call(|i| i.create_stream(info))?;
        self.shared.stats.calls.inc();
        let stream = WasmStream {
            filter: self.clone(),
            ctx,
            generation,
        };
        let body = self.implements(Phase::RequestBody) && !request.payload().is_empty();
        if self.implements(Phase::RequestHeaders) {
            let mut headers = request.take_headers();
            let out = self.call(|i| i.request_headers(ctx, &mut headers, !body));
            let changed = out.as_ref().is_ok_and(|o| o.headers_changed);
            request.restore_headers(headers, changed);
            self.outcome(&stream, out?, deadline).await?;
        }
        if body && self.generation.get() == generation {
            let payload = request.payload().clone();
            let out = self.call(|i| i.request_body(ctx, &payload))?;
            self.outcome(&stream, out, deadline).await?;
        }
        Ok(stream)
    }

    /// Runs the response callbacks of `stream` on `response` (`request` readable).
    ///
    /// # Errors
    /// As [`WorkerWasmFilter::on_request`].
    pub async fn on_response(
        self: &Rc<Self>,
        stream: &WasmStream,
        request: &mut Frame,
        response: &mut Frame,
        upstream: Option<SocketAddr>,
        deadline: Instant,
    ) -> Result<(), Failure> {
        let ctx = stream.ctx;
        if self.generation.get() != stream.generation {
            return Ok(()); // the context went with a failed instance
        }
        let body = self.implements(Phase::ResponseBody) && !response.payload().is_empty();
        if self.implements(Phase::ResponseHeaders) {
            let mut req = request.take_headers();
            let mut resp = response.take_headers();
            let out = self.call(|i| i.response_headers(ctx, &mut req, &mut resp, !body, upstream));
            let changed = out.as_ref().is_ok_and(|o| o.headers_changed);
            request.restore_headers(req, false);
            response.restore_headers(resp, changed);
            self.outcome(stream, out?, deadline).await?;
        }
        if body && self.generation.get() == stream.generation {
            let payload = response.payload().clone();
            let out = self.call(|i| i.response_body(ctx, &payload))?;
            self.outcome(stream, out, deadline).await?;
        }
        Ok(())
    }

    /// Acts on one callback's outcome: an answer or a close ends the call, a pause waits.
    async fn outcome(
        &self,
        stream: &WasmStream,
        out: PhaseOutcome,
        deadline: Instant,
    ) -> Result<(), Failure> {
        let stats = &self.shared.stats;
        if out.headers_changed {
            stats.headers_changed.inc();
        }
        if let Some(answer) = out.local_response {
            stats.local_responses.inc();
            return Err(local_response(answer.status));
        }
        if out.closed {
            return Err(Failure::FilterFailed);
        }
        if out.action == codec_host::filter::Action::Continue {
            return Ok(());
        }
        stats.paused.inc();
        let (tx, rx) = oneshot::channel();
        self.waiters.borrow_mut().insert(stream.ctx, tx);
        match tokio::time::timeout_at(deadline, rx).await {
            Ok(Ok(Resume::Continue)) => {
                stats.resumed.inc();
                Ok(())
            }
            Ok(Ok(Resume::Answer(status))) => {
                stats.local_responses.inc();
                Err(local_response(status))
            }
            Ok(Ok(Resume::Close)) | Ok(Err(_)) => Err(Failure::FilterFailed),
            Err(_) => {
                self.waiters.borrow_mut().remove(&stream.ctx);
                Err(Failure::Timeout)
            }
        }
    }
}

fn local_response(status: u32) -> Failure {
    Failure::Rejected(Rejection {
        status,
        reason: RejectReason::FilterLocalResponse,
    })
}

/// Calls `proxy_on_tick` every tick period while the filter asks for ticks (re-reading the
/// period each time; a replaced instance is started again for its ticks).
async fn tick_loop(filter: std::rc::Weak<WorkerWasmFilter>) {
    loop {
        let Some(f) = filter.upgrade() else {
            return;
        };
        if f.ensure().is_err() {
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            continue;
        }
        let period = f
            .instance
            .borrow()
            .as_ref()
            .map_or(std::time::Duration::ZERO, FilterInstance::tick_period);
        if period.is_zero() {
            f.ticking.set(false);
            return;
        }
        drop(f);
        tokio::time::sleep(period).await;
        let Some(f) = filter.upgrade() else {
            return;
        };
        let _ = f.call(FilterInstance::tick);
    }
}

/// Calls `proxy_on_queue_ready` for every enqueue on a queue this worker's instance
/// registered.
async fn serve_queues(
    filter: std::rc::Weak<WorkerWasmFilter>,
    mut rx: mpsc::UnboundedReceiver<u32>,
) {
    while let Some(queue) = rx.recv().await {
        let Some(f) = filter.upgrade() else {
            return;
        };
        if f.instance.borrow().is_some() {
            let _ = f.call(|i| i.queue_ready(queue));
        }
    }
}

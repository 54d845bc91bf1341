//! `filter-queue`: every call's `service` header goes through a shared queue to whichever
//! instance registered it, which counts what it dequeues; shows shared queues across
//! instances (and worker threads).
//!
//! No configuration. The root context registers the queue `calls` in `on_vm_start` (the last
//! instance to register it is the one woken); each call enqueues its `service` value
//! (`resolve_shared_queue("", "calls")`); `on_queue_ready` dequeues until the queue is empty,
//! adds what it took to the shared-data key `dequeued` (decimal, compare-and-swap) and records
//! it in the gauge `filter_queue_dequeued`.

use std::cell::Cell;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, Status};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(QueueRoot));
}}

const QUEUE: &str = "calls";
const KEY: &str = "dequeued";

thread_local! {
    static GAUGE: Cell<Option<u32>> = const { Cell::new(None) };
}

struct QueueRoot;

impl Context for QueueRoot {}

/// Adds `n` to the shared count; the new total.
fn add_dequeued(n: u64) -> Option<u64> {
    for _ in 0..100 {
        let (value, cas) = hostcalls::get_shared_data(KEY).ok()?;
        let current: u64 = value
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let next = current + n;
        match hostcalls::set_shared_data(KEY, Some(next.to_string().as_bytes()), cas) {
            Ok(()) => return Some(next),
            Err(Status::CasMismatch) => continue,
            Err(_) => return None,
        }
    }
    None
}

impl RootContext for QueueRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        if hostcalls::register_shared_queue(QUEUE).is_err() {
            return false;
        }
        match hostcalls::define_metric(MetricType::Gauge, "filter_queue_dequeued") {
            Ok(id) => GAUGE.with(|g| g.set(Some(id))),
            Err(_) => return false,
        }
        true
    }

    fn on_queue_ready(&mut self, queue_id: u32) {
        let mut taken = 0u64;
        while let Ok(Some(_item)) = hostcalls::dequeue_shared_queue(queue_id) {
            taken += 1;
        }
        if taken == 0 {
            return;
        }
        if let (Some(total), Some(gauge)) = (add_dequeued(taken), GAUGE.with(Cell::get)) {
            let _ = hostcalls::record_metric(gauge, total);
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(QueueCall))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One RPC call.
struct QueueCall;

impl Context for QueueCall {}

impl HttpContext for QueueCall {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let service = self.get_http_request_header("service").unwrap_or_default();
        if let Ok(Some(queue)) = hostcalls::resolve_shared_queue("", QUEUE) {
            let _ = hostcalls::enqueue_shared_queue(queue, Some(service.as_bytes()));
        }
        Action::Continue
    }
}

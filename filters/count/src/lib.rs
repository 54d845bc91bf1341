//! `filter-count`: counts calls across every instance and worker thread of the plugin.
//!
//! Configuration (plugin configuration, a JSON object; absent or empty means the defaults):
//!
//! ```json
//! {"key": "calls"}
//! ```
//!
//! Behaviour: in `on_http_request_headers` the filter increments the count stored in the
//! host's shared data under `key` (the value is the count in decimal ASCII; a missing key counts
//! as 0) with a compare-and-swap loop: `proxy_get_shared_data` gives the value and its CAS
//! token, `proxy_set_shared_data` writes the new value with that token, and a `CasMismatch`
//! (another instance wrote in between) retries, at most [`MAX_TRIES`] times (then it logs an
//! error and continues without the header). It adds the request header `x-call-count: <n>`
//! with the new count, so the server sees it.
//!
//! Metrics, defined by the root context in `on_vm_start`: the counter `filter_count_calls`
//! (incremented by 1 per call, also when the CAS loop gave up) and the gauge
//! `filter_count_last` (set to the new shared count after each increment).
//!
//! A configuration that is not a JSON object, or whose `key` is not a non-empty string, is
//! logged as an error and rejected (`on_configure` returns false).

use std::cell::{Cell, RefCell};

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel, MetricType, Status};

/// Compare-and-swap attempts per call before giving up.
pub const MAX_TRIES: u32 = 100;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(CountRoot));
}}

thread_local! {
    /// Shared data key the count lives under (from the configuration).
    static KEY: RefCell<String> = RefCell::new("calls".to_string());
    /// Metric ids from `proxy_define_metric` (`None` until the root context defined them).
    static CALLS_METRIC: Cell<Option<u32>> = const { Cell::new(None) };
    static LAST_METRIC: Cell<Option<u32>> = const { Cell::new(None) };
}

fn log_error(message: &str) {
    let _ = hostcalls::log(LogLevel::Error, &format!("filter-count: {message}"));
}

/// Parses the plugin configuration into the shared data key; `None` or empty bytes give
/// `"calls"`.
fn parse_key(bytes: Option<&[u8]>) -> Result<String, String> {
    let bytes = match bytes {
        Some(b) if !b.iter().all(u8::is_ascii_whitespace) => b,
        _ => return Ok("calls".to_string()),
    };
    let json: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("bad JSON: {e}"))?;
    let object = json
        .as_object()
        .ok_or("configuration is not a JSON object")?;
    match object.get("key") {
        None => Ok("calls".to_string()),
        Some(v) => match v.as_str() {
            Some(s) if !s.is_empty() => Ok(s.to_string()),
            _ => Err("\"key\" is not a non-empty string".to_string()),
        },
    }
}

/// Increments the shared count under `key`; `None` when every attempt lost the race.
fn increment_shared(key: &str) -> Option<u64> {
    for _ in 0..MAX_TRIES {
        let (value, cas) = match hostcalls::get_shared_data(key) {
            Ok(found) => found,
            Err(status) => {
                log_error(&format!("get_shared_data({key}) failed: {status:?}"));
                return None;
            }
        };
        let current = value
            .as_deref()
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let next = current + 1;
        match hostcalls::set_shared_data(key, Some(next.to_string().as_bytes()), cas) {
            Ok(()) => return Some(next),
            Err(Status::CasMismatch) => continue,
            Err(status) => {
                log_error(&format!("set_shared_data({key}) failed: {status:?}"));
                return None;
            }
        }
    }
    log_error(&format!(
        "gave up incrementing {key:?} after {MAX_TRIES} CAS mismatches"
    ));
    None
}

struct CountRoot;

impl Context for CountRoot {}

impl RootContext for CountRoot {
    fn on_vm_start(&mut self, _vm_configuration_size: usize) -> bool {
        define_metrics();
        true
    }

    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        // A host that skips on_vm_start still gets the metrics.
        define_metrics();
        match parse_key(self.get_plugin_configuration().as_deref()) {
            Ok(key) => {
                KEY.with(|k| *k.borrow_mut() = key);
                true
            }
            Err(e) => {
                log_error(&e);
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Count))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// Defines both metrics once per VM.
fn define_metrics() {
    if CALLS_METRIC.with(Cell::get).is_none() {
        match hostcalls::define_metric(MetricType::Counter, "filter_count_calls") {
            Ok(id) => CALLS_METRIC.with(|m| m.set(Some(id))),
            Err(status) => log_error(&format!("define_metric failed: {status:?}")),
        }
    }
    if LAST_METRIC.with(Cell::get).is_none() {
        match hostcalls::define_metric(MetricType::Gauge, "filter_count_last") {
            Ok(id) => LAST_METRIC.with(|m| m.set(Some(id))),
            Err(status) => log_error(&format!("define_metric failed: {status:?}")),
        }
    }
}

/// One RPC call.
struct Count;

impl Context for Count {}

impl HttpContext for Count {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        if let Some(id) = CALLS_METRIC.with(Cell::get) {
            if let Err(status) = hostcalls::increment_metric(id, 1) {
                log_error(&format!("increment_metric failed: {status:?}"));
            }
        }
        let count = KEY.with(|k| increment_shared(&k.borrow()));
        if let Some(n) = count {
            if let Some(id) = LAST_METRIC.with(Cell::get) {
                if let Err(status) = hostcalls::record_metric(id, n) {
                    log_error(&format!("record_metric failed: {status:?}"));
                }
            }
            self.add_http_request_header("x-call-count", &n.to_string());
        }
        Action::Continue
    }
}

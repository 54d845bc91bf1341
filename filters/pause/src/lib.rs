//! `filter-pause`: pauses every request and resumes it from the root context's timer.
//!
//! Configuration (plugin configuration, a JSON object; absent or empty means the defaults):
//!
//! ```json
//! {"tick_ms": 20}
//! ```
//!
//! Behaviour: the root context asks for a tick every `tick_ms` milliseconds
//! (`proxy_set_tick_period_milliseconds`, in `on_configure`). Each request's
//! `on_http_request_headers` adds the request header `x-paused: 1` (so the server can prove the
//! paused request reached it with the filter's mark), records its context id and returns
//! `Pause`. The root's `on_tick` takes every recorded id and, for each, calls
//! `proxy_set_effective_context(id)` and then `proxy_continue_stream(HttpRequest)` (the crate's
//! `resume_http_request`). An id the host no longer knows (`set_effective_context` answers
//! `BadArgument`) is logged and skipped. Note that the crate's `resume_http_request` treats any
//! status other than `Ok` as a bug and panics (a trap), so the host should answer `Ok` for a
//! context that is still alive.
//!
//! A configuration that is not a JSON object, or whose `tick_ms` is not an integer in
//! 1..=4294967295, is logged as an error and rejected (`on_configure` returns false).

use std::cell::RefCell;
use std::time::Duration;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(PauseRoot));
}}

thread_local! {
    /// Context ids of the requests paused since the last tick.
    static PAUSED: RefCell<Vec<u32>> = const { RefCell::new(Vec::new()) };
}

/// Default tick period.
const DEFAULT_TICK_MS: u64 = 20;

/// Parses the plugin configuration into the tick period in milliseconds.
fn parse_tick_ms(bytes: Option<&[u8]>) -> Result<u64, String> {
    let bytes = match bytes {
        Some(b) if !b.iter().all(u8::is_ascii_whitespace) => b,
        _ => return Ok(DEFAULT_TICK_MS),
    };
    let json: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("bad JSON: {e}"))?;
    let object = json
        .as_object()
        .ok_or("configuration is not a JSON object")?;
    match object.get("tick_ms") {
        None => Ok(DEFAULT_TICK_MS),
        Some(v) => v
            .as_u64()
            .filter(|ms| (1..=u64::from(u32::MAX)).contains(ms))
            .ok_or_else(|| "\"tick_ms\" is not an integer in 1..=4294967295".to_string()),
    }
}

struct PauseRoot;

impl Context for PauseRoot {}

impl RootContext for PauseRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        match parse_tick_ms(self.get_plugin_configuration().as_deref()) {
            Ok(ms) => {
                self.set_tick_period(Duration::from_millis(ms));
                true
            }
            Err(e) => {
                let _ = hostcalls::log(LogLevel::Error, &format!("filter-pause: {e}"));
                false
            }
        }
    }

    fn on_tick(&mut self) {
        let ids = PAUSED.with(|p| std::mem::take(&mut *p.borrow_mut()));
        for id in ids {
            match hostcalls::set_effective_context(id) {
                Ok(()) => {
                    if let Err(status) = hostcalls::resume_http_request() {
                        let _ = hostcalls::log(
                            LogLevel::Warn,
                            &format!("filter-pause: resume of context {id} failed: {status:?}"),
                        );
                    }
                }
                Err(status) => {
                    let _ = hostcalls::log(
                        LogLevel::Warn,
                        &format!("filter-pause: context {id} is gone: {status:?}"),
                    );
                }
            }
        }
    }

    fn create_http_context(&self, context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Pause { context_id }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One RPC call.
struct Pause {
    context_id: u32,
}

impl Context for Pause {}

impl HttpContext for Pause {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.add_http_request_header("x-paused", "1");
        PAUSED.with(|p| p.borrow_mut().push(self.context_id));
        Action::Pause
    }
}

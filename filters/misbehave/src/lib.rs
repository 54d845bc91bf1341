//! `filter-misbehave`: a filter that fails on purpose, to test how the host contains a broken
//! plugin.
//!
//! Configuration (plugin configuration, a JSON object; absent or empty means the defaults):
//!
//! ```json
//! {"mode": "trap"}
//! ```
//!
//! `mode` is one of:
//!
//! * `"trap"`: executes the Wasm `unreachable` instruction (a trap).
//! * `"loop"`: spins forever (the loop has an opaque side effect the optimiser keeps); only a
//!   host with an execution limit (fuel, metering, epoch interruption) gets control back.
//! * `"oom"`: allocates 1 MiB chunks, touches every page of each and keeps them all in a static
//!   vector until an allocation fails; `panic = "abort"` turns the allocation failure into a
//!   trap. Linear memory grows up to the host's limit (at most 4 GiB) first.
//!
//! `header` (default `"x-misbehave"`) and `value` (default: any) choose the calls it fails
//! on, e.g. `{"mode": "trap", "header": "service", "value": "com.example.Bad:1.0"}`.
//!
//! Behaviour: only when the request header `header` is present (with `value`, when given)
//! does `on_http_request_headers` misbehave; otherwise the filter continues. Any other `mode`, or a
//! configuration that is not a JSON object, is logged as an error and rejected (`on_configure`
//! returns false).

use std::cell::{Cell, RefCell};

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(MisbehaveRoot));
}}

/// How the filter fails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Trap,
    Loop,
    Oom,
}

thread_local! {
    static MODE: Cell<Mode> = const { Cell::new(Mode::Trap) };
    /// The request header (and value, if any) that makes a call misbehave.
    static TRIGGER: RefCell<(String, Option<String>)> =
        RefCell::new(("x-misbehave".to_string(), None));
    /// Where `oom` keeps its chunks so none is freed.
    static HOARD: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

const CHUNK: usize = 1 << 20;

/// Parses the plugin configuration; `None` or empty bytes give `trap`.
fn parse_mode(bytes: Option<&[u8]>) -> Result<Mode, String> {
    let bytes = match bytes {
        Some(b) if !b.iter().all(u8::is_ascii_whitespace) => b,
        _ => return Ok(Mode::Trap),
    };
    let json: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| format!("bad JSON: {e}"))?;
    let object = json
        .as_object()
        .ok_or("configuration is not a JSON object")?;
    let header = object.get("header").and_then(|v| v.as_str());
    let value = object.get("value").and_then(|v| v.as_str());
    TRIGGER.with(|t| {
        *t.borrow_mut() = (
            header.unwrap_or("x-misbehave").to_string(),
            value.map(str::to_string),
        )
    });
    match object.get("mode").map(|m| m.as_str()) {
        None => Ok(Mode::Trap),
        Some(Some("trap")) => Ok(Mode::Trap),
        Some(Some("loop")) => Ok(Mode::Loop),
        Some(Some("oom")) => Ok(Mode::Oom),
        Some(_) => Err("\"mode\" is not one of \"trap\", \"loop\", \"oom\"".to_string()),
    }
}

struct MisbehaveRoot;

impl Context for MisbehaveRoot {}

impl RootContext for MisbehaveRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        match parse_mode(self.get_plugin_configuration().as_deref()) {
            Ok(mode) => {
                MODE.with(|m| m.set(mode));
                true
            }
            Err(e) => {
                let _ =
                    proxy_wasm::hostcalls::log(LogLevel::Error, &format!("filter-misbehave: {e}"));
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Misbehave))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

fn trap() -> ! {
    #[cfg(target_arch = "wasm32")]
    core::arch::wasm32::unreachable();
    #[cfg(not(target_arch = "wasm32"))]
    std::process::abort();
}

fn spin() -> ! {
    let mut n: u64 = 0;
    loop {
        n = core::hint::black_box(n).wrapping_add(1);
    }
}

fn exhaust_memory() -> ! {
    loop {
        // Allocation failure aborts (a trap). Touch every 4 KiB page (and the last byte) so the
        // memory is really used, even where the allocator hands out fresh zeroed pages.
        let mut chunk = vec![0u8; CHUNK];
        for i in (0..CHUNK).step_by(4096) {
            chunk[i] = 1;
        }
        chunk[CHUNK - 1] = 1;
        core::hint::black_box(&chunk);
        HOARD.with(|h| h.borrow_mut().push(chunk));
    }
}

/// One RPC call.
struct Misbehave;

impl Context for Misbehave {}

impl HttpContext for Misbehave {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let (header, value) = TRIGGER.with(|t| t.borrow().clone());
        match (self.get_http_request_header(&header), value) {
            (None, _) => return Action::Continue,
            (Some(got), Some(want)) if got != want => return Action::Continue,
            _ => {}
        }
        match MODE.with(Cell::get) {
            Mode::Trap => trap(),
            Mode::Loop => spin(),
            Mode::Oom => exhaust_memory(),
        }
    }
}

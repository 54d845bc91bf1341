//! `filter-deny`: answers a request itself when one request header has a given value.
//!
//! Configuration (plugin configuration, a JSON object; absent or empty means the defaults):
//!
//! ```json
//! {"header": "x-deny", "value": "yes", "status": 403, "body": "denied by filter"}
//! ```
//!
//! Behaviour: in `on_http_request_headers`, when the request header `header` equals `value`
//! (exact, case-sensitive comparison of the value), the filter sends a local response
//! (`proxy_send_local_response`) with status `status`, the response header
//! `x-deny-reason: header` and the body `body`, and returns `Pause` (the call never reaches the
//! upstream). Otherwise it continues. A configuration that is not a JSON object, or whose fields
//! have the wrong type (`status` must be an integer in 100..=999), is logged as an error and
//! rejected (`on_configure` returns false).

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(DenyRoot { config: Rc::new(Config::default()) }));
}}

/// When to deny and what to answer.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Config {
    header: String,
    value: String,
    status: u32,
    body: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            header: "x-deny".to_string(),
            value: "yes".to_string(),
            status: 403,
            body: "denied by filter".to_string(),
        }
    }
}

fn string_field(
    object: &serde_json::Map<String, serde_json::Value>,
    key: &str,
    into: &mut String,
) -> Result<(), String> {
    if let Some(v) = object.get(key) {
        *into = v
            .as_str()
            .ok_or_else(|| format!("\"{key}\" is not a string"))?
            .to_string();
    }
    Ok(())
}

impl Config {
    /// Parses the plugin configuration; `None` or empty bytes give the defaults.
    fn parse(bytes: Option<&[u8]>) -> Result<Config, String> {
        let mut config = Config::default();
        let bytes = match bytes {
            Some(b) if !b.iter().all(u8::is_ascii_whitespace) => b,
            _ => return Ok(config),
        };
        let json: serde_json::Value =
            serde_json::from_slice(bytes).map_err(|e| format!("bad JSON: {e}"))?;
        let object = json
            .as_object()
            .ok_or("configuration is not a JSON object")?;
        string_field(object, "header", &mut config.header)?;
        string_field(object, "value", &mut config.value)?;
        string_field(object, "body", &mut config.body)?;
        if let Some(v) = object.get("status") {
            config.status =
                v.as_u64()
                    .filter(|s| (100..=999).contains(s))
                    .ok_or("\"status\" is not an integer in 100..=999")? as u32;
        }
        Ok(config)
    }
}

struct DenyRoot {
    config: Rc<Config>,
}

impl Context for DenyRoot {}

impl RootContext for DenyRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        match Config::parse(self.get_plugin_configuration().as_deref()) {
            Ok(config) => {
                self.config = Rc::new(config);
                true
            }
            Err(e) => {
                let _ = proxy_wasm::hostcalls::log(LogLevel::Error, &format!("filter-deny: {e}"));
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Deny {
            config: Rc::clone(&self.config),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One RPC call.
struct Deny {
    config: Rc<Config>,
}

impl Context for Deny {}

impl HttpContext for Deny {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let config = &self.config;
        if self.get_http_request_header(&config.header).as_deref() == Some(config.value.as_str()) {
            self.send_http_response(
                config.status,
                vec![("x-deny-reason", "header")],
                Some(config.body.as_bytes()),
            );
            return Action::Pause;
        }
        Action::Continue
    }
}

//! `filter-add-header`: adds one request header and marks the response.
//!
//! Configuration (plugin configuration, a JSON object; absent or empty means the defaults):
//!
//! ```json
//! {"name": "x-filter-added", "value": "by-filter"}
//! ```
//!
//! Behaviour: `on_http_request_headers` adds the request header `name: value`
//! (`proxy_add_header_map_value` on the request header map, i.e. the RPC call's header map) and
//! continues; `on_http_response_headers` adds the response header `x-filter-seen: 1` so a client
//! can see that the response phase ran. A configuration that is not a JSON object, or whose
//! `name`/`value` are not strings, is logged as an error and rejected (`on_configure` returns
//! false).

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Info);
    proxy_wasm::set_root_context(|_| Box::new(AddHeaderRoot { config: Rc::new(Config::default()) }));
}}

/// The header the filter adds to every request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Config {
    name: String,
    value: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            name: "x-filter-added".to_string(),
            value: "by-filter".to_string(),
        }
    }
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
        if let Some(v) = object.get("name") {
            config.name = v.as_str().ok_or("\"name\" is not a string")?.to_string();
        }
        if let Some(v) = object.get("value") {
            config.value = v.as_str().ok_or("\"value\" is not a string")?.to_string();
        }
        Ok(config)
    }
}

struct AddHeaderRoot {
    config: Rc<Config>,
}

impl Context for AddHeaderRoot {}

impl RootContext for AddHeaderRoot {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        match Config::parse(self.get_plugin_configuration().as_deref()) {
            Ok(config) => {
                self.config = Rc::new(config);
                true
            }
            Err(e) => {
                let _ =
                    proxy_wasm::hostcalls::log(LogLevel::Error, &format!("filter-add-header: {e}"));
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(AddHeader {
            config: Rc::clone(&self.config),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One RPC call.
struct AddHeader {
    config: Rc<Config>,
}

impl Context for AddHeader {}

impl HttpContext for AddHeader {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.add_http_request_header(&self.config.name, &self.config.value);
        Action::Continue
    }

    fn on_http_response_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        self.add_http_response_header("x-filter-seen", "1");
        Action::Continue
    }
}

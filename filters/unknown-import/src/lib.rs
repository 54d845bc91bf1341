//! `filter-unknown-import`: a proxy-wasm filter that imports a hostcall no host offers,
//! `env.proxy_no_such_hostcall(i32) -> i32`, to test how the host reports a module it cannot
//! link (instantiation should fail with the import's name).
//!
//! No configuration. Everything else comes from the proxy-wasm crate; the import is called from
//! `on_http_request_headers` (so the linker keeps it), which would add the request header
//! `x-unknown-import: <result>` and continue if a host ever provided it.

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType};

#[link(wasm_import_module = "env")]
extern "C" {
    fn proxy_no_such_hostcall(x: i32) -> i32;
}

proxy_wasm::main! {{
    proxy_wasm::set_root_context(|_| Box::new(UnknownImportRoot));
}}

struct UnknownImportRoot;

impl Context for UnknownImportRoot {}

impl RootContext for UnknownImportRoot {
    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(UnknownImport))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

/// One RPC call.
struct UnknownImport;

impl Context for UnknownImport {}

impl HttpContext for UnknownImport {
    fn on_http_request_headers(&mut self, num_headers: usize, _end_of_stream: bool) -> Action {
        // SAFETY: a plain function of an i32; no host provides it, so this module does not link.
        let result = unsafe { proxy_no_such_hostcall(num_headers as i32) };
        self.add_http_request_header("x-unknown-import", &result.to_string());
        Action::Continue
    }
}

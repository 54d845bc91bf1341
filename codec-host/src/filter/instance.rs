//! One running instance of a filter plugin ([`FilterInstance`]): a private store, the
//! hostcalls the module imports, its root context started (`proxy_on_context_create`,
//! `proxy_on_vm_start`, `proxy_on_configure`), and one stream context per RPC call. Every
//! callback is one guest call with the plugin's full CPU budget; callbacks the module does
//! not export are not called. A trap or an exhausted budget poisons the instance: the call
//! fails, and the owner replaces the instance (its streams' contexts are gone with it).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use codec_abi::HeaderMap;
use wasmer::{FunctionEnv, Global, Imports, Instance, RuntimeError, Store, TypedFunction, Value};

use super::abi::{buffer_type, AbiVersion, Action};
use super::hostcalls;
use super::shared::{FilterShared, QueueWaker};
use super::state::{CallMaps, FilterState, LocalResponse, StreamEvent, StreamInfo, StreamProps};
use crate::budget::{POINTS_EXHAUSTED, POINTS_REMAINING};
use crate::compile::CompiledModule;
use crate::imports::host_state::HostState;

/// What an instance is made from (the plugin's parts; see `FilterPlugin::new_instance`).
pub(crate) struct Recipe<'a> {
    pub(crate) compiled: &'a CompiledModule,
    pub(crate) name: Arc<str>,
    pub(crate) vm_config: Arc<[u8]>,
    pub(crate) plugin_config: Arc<[u8]>,
    pub(crate) abi: AbiVersion,
    pub(crate) root_id: u32,
    pub(crate) vm_id: &'a str,
    pub(crate) shared: Arc<FilterShared>,
    /// CPU points per callback.
    pub(crate) budget: u64,
}

/// A filter callback that failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    /// The guest trapped (panic, `unreachable`, out-of-bounds access, failed allocation).
    #[error("filter trapped in {call}: {message}")]
    Trap {
        /// The callback.
        call: &'static str,
        /// The trap and the guest's last words.
        message: String,
    },
    /// The callback used up its CPU budget.
    #[error("filter exceeded its CPU budget in {call}")]
    CpuExhausted {
        /// The callback.
        call: &'static str,
    },
    /// The instance could not be created or its root context refused to start.
    #[error("filter instance did not start: {0}")]
    Start(String),
    /// The instance failed earlier and must be replaced; nothing runs on it any more.
    #[error("filter instance failed earlier and awaits replacement")]
    Poisoned,
}

/// A stream callback's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhaseOutcome {
    /// What the callback answered.
    pub action: Action,
    /// Whether the callback changed the header map it was given.
    pub headers_changed: bool,
    /// An answer the filter gave instead of the server (`proxy_send_local_response`).
    pub local_response: Option<LocalResponse>,
    /// The filter closed the stream (`proxy_close_stream`).
    pub closed: bool,
}

impl PhaseOutcome {
    /// A callback that was not called (not exported): continue, nothing changed.
    fn skipped() -> PhaseOutcome {
        PhaseOutcome {
            action: Action::Continue,
            headers_changed: false,
            local_response: None,
            closed: false,
        }
    }
}

/// The stream callbacks a module may export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// `proxy_on_request_headers`.
    RequestHeaders,
    /// `proxy_on_request_body`.
    RequestBody,
    /// `proxy_on_response_headers`.
    ResponseHeaders,
    /// `proxy_on_response_body`.
    ResponseBody,
    /// `proxy_on_tick`.
    Tick,
}

/// A header callback: 0.2.x passes `end_of_stream`, 0.1.0 does not.
enum HeadersFn {
    V1(TypedFunction<(u32, u32), u32>),
    V2(TypedFunction<(u32, u32, u32), u32>),
}

/// The module's callbacks, resolved once per instance.
struct Exports {
    context_create: TypedFunction<(u32, u32), ()>,
    vm_start: Option<TypedFunction<(u32, u32), u32>>,
    configure: Option<TypedFunction<(u32, u32), u32>>,
    tick: Option<TypedFunction<u32, ()>>,
    queue_ready: Option<TypedFunction<(u32, u32), ()>>,
    request_headers: Option<HeadersFn>,
    request_body: Option<TypedFunction<(u32, u32, u32), u32>>,
    response_headers: Option<HeadersFn>,
    response_body: Option<TypedFunction<(u32, u32, u32), u32>>,
    log: Option<TypedFunction<u32, ()>>,
    done: Option<TypedFunction<u32, u32>>,
    delete: Option<TypedFunction<u32, ()>>,
}

/// One instance of a filter plugin, owned by one worker thread.
pub struct FilterInstance {
    store: Store,
    env: FunctionEnv<HostState>,
    ex: Exports,
    points_remaining: Global,
    points_exhausted: Global,
    budget: u64,
    root_id: u32,
    next_ctx: u32,
    poisoned: bool,
    calls: u64,
}

impl std::fmt::Debug for FilterInstance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FilterInstance")
            .field("root_id", &self.root_id)
            .field("poisoned", &self.poisoned)
            .finish_non_exhaustive()
    }
}

/// The optional export `name` as a typed function; an export of another type is an error.
fn optional<A: wasmer::WasmTypeList, R: wasmer::WasmTypeList>(
    instance: &Instance,
    store: &Store,
    name: &str,
) -> Result<Option<TypedFunction<A, R>>, FilterError> {
    match instance.exports.get_function(name) {
        Err(_) => Ok(None),
        Ok(f) => f
            .typed(store)
            .map(Some)
            .map_err(|e| FilterError::Start(format!("export {name}: {e}"))),
    }
}

fn headers_fn(
    instance: &Instance,
    store: &Store,
    name: &str,
    abi: AbiVersion,
) -> Result<Option<HeadersFn>, FilterError> {
    Ok(if abi.headers_have_end_of_stream() {
        optional(instance, store, name)?.map(HeadersFn::V2)
    } else {
        optional(instance, store, name)?.map(HeadersFn::V1)
    })
}

impl FilterInstance {
    /// Instantiates `plugin` and starts its root context. `waker` is how data enqueued on
    /// a queue this instance registers reaches it.
    ///
    /// # Errors
    /// [`FilterError::Start`] when linking, the module's initialiser, or the root context's
    /// start (`proxy_on_vm_start` / `proxy_on_configure` answering false) fails; a trap or
    /// CPU exhaustion there.
    pub(crate) fn new(
        plugin: Recipe<'_>,
        waker: Option<QueueWaker>,
    ) -> Result<FilterInstance, FilterError> {
        let compiled = plugin.compiled;
        let mut store = Store::new(compiled.engine.clone());
        let vm_len = plugin.vm_config.len() as u32;
        let config_len = plugin.plugin_config.len() as u32;
        let mut host = HostState::new(plugin.name, plugin.vm_config, plugin.plugin_config);
        host.filter = Some(Box::new(FilterState::new(
            plugin.abi,
            plugin.root_id,
            plugin.vm_id.into(),
            plugin.shared,
            waker,
        )));
        let env = FunctionEnv::new(&mut store, host);
        let mut imports = Imports::new();
        for import in compiled.module.imports() {
            let (module, name) = (import.module(), import.name());
            let provided = hostcalls::find(module, name)
                .ok_or_else(|| FilterError::Start(format!("unknown import {module}.{name}")))?;
            imports.define(module, name, provided.function(&mut store, &env));
        }
        let instance = Instance::new(&mut store, &compiled.module, &imports)
            .map_err(|e| FilterError::Start(e.to_string()))?;
        let x = &instance.exports;
        let start_err =
            |what: &str, e: wasmer::ExportError| FilterError::Start(format!("{what}: {e}"));
        let memory = x
            .get_memory("memory")
            .map_err(|e| start_err("export memory", e))?
            .clone();
        let malloc = match optional::<u32, u32>(&instance, &store, "proxy_on_memory_allocate")? {
            Some(f) => f,
            None => optional(&instance, &store, "malloc")?.ok_or_else(|| {
                FilterError::Start(
                    "no allocator export (proxy_on_memory_allocate or malloc)".into(),
                )
            })?,
        };
        let points_remaining = x
            .get_global(POINTS_REMAINING)
            .map_err(|e| start_err("metering", e))?
            .clone();
        let points_exhausted = x
            .get_global(POINTS_EXHAUSTED)
            .map_err(|e| start_err("metering", e))?
            .clone();
        let abi = plugin.abi;
        let ex = Exports {
            context_create: optional(&instance, &store, "proxy_on_context_create")?
                .ok_or_else(|| FilterError::Start("no export proxy_on_context_create".into()))?,
            vm_start: optional(&instance, &store, "proxy_on_vm_start")?,
            configure: optional(&instance, &store, "proxy_on_configure")?,
            tick: optional(&instance, &store, "proxy_on_tick")?,
            queue_ready: optional(&instance, &store, "proxy_on_queue_ready")?,
            request_headers: headers_fn(&instance, &store, "proxy_on_request_headers", abi)?,
            request_body: optional(&instance, &store, "proxy_on_request_body")?,
            response_headers: headers_fn(&instance, &store, "proxy_on_response_headers", abi)?,
            response_body: optional(&instance, &store, "proxy_on_response_body")?,
            log: optional(&instance, &store, "proxy_on_log")?,
            done: optional(&instance, &store, "proxy_on_done")?,
            delete: optional(&instance, &store, "proxy_on_delete")?,
        };
        let initialize = match optional::<(), ()>(&instance, &store, "_initialize")? {
            Some(f) => Some(f),
            None => optional(&instance, &store, "_start")?,
        };
        {
            let state = env.as_mut(&mut store);
            state.memory = Some(memory);
            state.malloc = Some(malloc);
        }
        let root_id = plugin.root_id;
        let mut me = FilterInstance {
            store,
            env,
            ex,
            points_remaining,
            points_exhausted,
            budget: plugin.budget,
            root_id,
            next_ctx: root_id,
            poisoned: false,
            calls: 0,
        };
        if let Some(init) = initialize {
            me.guest("_initialize", root_id, |s, _| init.call(s))
                .map_err(|e| FilterError::Start(e.to_string()))?;
        }
        me.guest("proxy_on_context_create", root_id, |s, ex| {
            ex.context_create.call(s, root_id, 0)
        })
        .map_err(|e| FilterError::Start(e.to_string()))?;
        if let Some(f) = me.ex.vm_start.clone() {
            let ok = me
                .guest("proxy_on_vm_start", root_id, |s, _| {
                    f.call(s, root_id, vm_len)
                })
                .map_err(|e| FilterError::Start(e.to_string()))?;
            if ok == 0 {
                return Err(FilterError::Start(
                    "proxy_on_vm_start answered false".into(),
                ));
            }
        }
        if let Some(f) = me.ex.configure.clone() {
            let ok = me
                .guest("proxy_on_configure", root_id, |s, _| {
                    f.call(s, root_id, config_len)
                })
                .map_err(|e| FilterError::Start(e.to_string()))?;
            if ok == 0 {
                return Err(FilterError::Start(
                    "proxy_on_configure answered false (the plugin refused its configuration)"
                        .into(),
                ));
            }
        }
        Ok(me)
    }

    fn state(&self) -> &FilterState {
        self.env
            .as_ref(&self.store)
            .filter
            .as_deref()
            .expect("a filter instance has filter state")
    }

    fn state_mut(&mut self) -> &mut FilterState {
        self.env
            .as_mut(&mut self.store)
            .filter
            .as_deref_mut()
            .expect("a filter instance has filter state")
    }

    /// Runs one guest call for context `ctx` with a full CPU budget. A failure poisons the
    /// instance.
    fn guest<R>(
        &mut self,
        call: &'static str,
        ctx: u32,
        f: impl FnOnce(&mut Store, &Exports) -> Result<R, RuntimeError>,
    ) -> Result<R, FilterError> {
        if self.poisoned {
            return Err(FilterError::Poisoned);
        }
        if let Err(e) = self
            .points_remaining
            .set(&mut self.store, Value::I64(self.budget as i64))
        {
            self.poisoned = true;
            return Err(FilterError::Trap {
                call,
                message: e.message(),
            });
        }
        {
            let host = self.env.as_mut(&mut self.store);
            host.output.begin_call();
            if let Some(s) = host.filter.as_deref_mut() {
                s.effective = ctx;
            }
        }
        self.calls += 1;
        let r = f(&mut self.store, &self.ex);
        r.map_err(|e| {
            self.poisoned = true;
            if matches!(self.points_exhausted.get(&mut self.store), Value::I32(v) if v != 0) {
                return FilterError::CpuExhausted { call };
            }
            let trap = e.message();
            let message = match self.env.as_ref(&self.store).output.last_words() {
                Some(words) => format!("{words} ({trap})"),
                None => trap,
            };
            FilterError::Trap { call, message }
        })
    }

    /// Whether the module exports the callback of `phase`.
    pub fn implements(&self, phase: Phase) -> bool {
        match phase {
            Phase::RequestHeaders => self.ex.request_headers.is_some(),
            Phase::RequestBody => self.ex.request_body.is_some(),
            Phase::ResponseHeaders => self.ex.response_headers.is_some(),
            Phase::ResponseBody => self.ex.response_body.is_some(),
            Phase::Tick => self.ex.tick.is_some(),
        }
    }

    /// True once a callback failed: the instance must be replaced.
    pub fn is_poisoned(&self) -> bool {
        self.poisoned
    }

    /// Guest calls made so far.
    pub fn guest_calls(&self) -> u64 {
        self.calls
    }

    /// Bytes of linear memory the guest has now.
    pub fn memory_bytes(&self) -> u64 {
        let host = self.env.as_ref(&self.store);
        host.memory
            .as_ref()
            .map_or(0, |m| m.view(&self.store).data_size())
    }

    /// Live stream contexts.
    pub fn live_streams(&self) -> usize {
        self.state().streams.len()
    }

    /// The tick period the filter asked for (`Duration::ZERO`: none).
    pub fn tick_period(&self) -> Duration {
        self.state().tick_period
    }

    /// Starts the stream context of one RPC call: its id.
    ///
    /// # Errors
    /// When `proxy_on_context_create` fails (the instance is then poisoned).
    pub fn create_stream(&mut self, info: StreamInfo) -> Result<u32, FilterError> {
        let root = self.root_id;
        let ctx = loop {
            self.next_ctx = self.next_ctx.wrapping_add(1);
            let c = self.next_ctx;
            if c != 0 && c != root && !self.state().streams.contains_key(&c) {
                break c;
            }
        };
        self.state_mut().streams.insert(
            ctx,
            StreamProps {
                info,
                ..StreamProps::default()
            },
        );
        let r = self.guest("proxy_on_context_create", ctx, |s, ex| {
            ex.context_create.call(s, ctx, root)
        });
        if let Err(e) = r {
            self.state_mut().streams.remove(&ctx);
            return Err(e);
        }
        Ok(ctx)
    }

    /// Runs a stream callback with `maps` lent to the hostcalls, then takes them back.
    fn phase(
        &mut self,
        call: &'static str,
        ctx: u32,
        maps: CallMaps,
        f: impl FnOnce(&mut Store, &Exports) -> Result<u32, RuntimeError>,
    ) -> (CallMaps, Result<PhaseOutcome, FilterError>) {
        self.state_mut().call = maps;
        let r = self.guest(call, ctx, f);
        let maps = std::mem::take(&mut self.state_mut().call);
        let changed = maps.request_changed || maps.response_changed;
        let outcome = r.map(|raw| {
            let mut out = PhaseOutcome {
                action: Action::from_raw(raw),
                headers_changed: changed,
                local_response: None,
                closed: false,
            };
            // What the callback asked of its own stream is its outcome; what it asked of
            // others waits for `take_events`.
            let events = &mut self.state_mut().events;
            events.retain(|e| {
                if e.context() != ctx {
                    return true;
                }
                match e {
                    StreamEvent::LocalResponse { response, .. } => {
                        out.local_response.get_or_insert_with(|| response.clone());
                    }
                    StreamEvent::Close { .. } => out.closed = true,
                    StreamEvent::Continue { .. } => {}
                }
                false
            });
            out
        });
        (maps, outcome)
    }

    /// `proxy_on_request_headers` on `headers` (the RPC header map), which the filter may
    /// edit.
    ///
    /// # Errors
    /// A trap or CPU exhaustion (the instance is then poisoned).
    pub fn request_headers(
        &mut self,
        ctx: u32,
        headers: &mut HeaderMap,
        end_of_stream: bool,
    ) -> Result<PhaseOutcome, FilterError> {
        let Some(f) = self.ex.request_headers.as_ref().map(clone_headers_fn) else {
            return Ok(PhaseOutcome::skipped());
        };
        let n = headers.len() as u32;
        let maps = CallMaps {
            ctx,
            request: Some(std::mem::take(headers)),
            ..CallMaps::default()
        };
        let (mut maps, r) = self.phase("proxy_on_request_headers", ctx, maps, |s, _| {
            call_headers(&f, s, ctx, n, end_of_stream)
        });
        *headers = maps.request.take().unwrap_or_default();
        r
    }

    /// `proxy_on_request_body` on the call's content (read-only).
    ///
    /// # Errors
    /// As [`FilterInstance::request_headers`].
    pub fn request_body(&mut self, ctx: u32, body: &Bytes) -> Result<PhaseOutcome, FilterError> {
        let Some(f) = self.ex.request_body.clone() else {
            return Ok(PhaseOutcome::skipped());
        };
        let len = body.len() as u32;
        let maps = CallMaps {
            ctx,
            body: Some((buffer_type::REQUEST_BODY, body.clone())),
            ..CallMaps::default()
        };
        self.phase("proxy_on_request_body", ctx, maps, |s, _| {
            f.call(s, ctx, len, 1)
        })
        .1
    }

    /// `proxy_on_response_headers` on the response's header map (editable); the request's
    /// map is readable too (edits to it are dropped: the request is gone).
    ///
    /// # Errors
    /// As [`FilterInstance::request_headers`].
    pub fn response_headers(
        &mut self,
        ctx: u32,
        request: &mut HeaderMap,
        response: &mut HeaderMap,
        end_of_stream: bool,
        upstream: Option<std::net::SocketAddr>,
    ) -> Result<PhaseOutcome, FilterError> {
        if let Some(s) = self.state_mut().streams.get_mut(&ctx) {
            s.upstream = upstream;
        }
        let Some(f) = self.ex.response_headers.as_ref().map(clone_headers_fn) else {
            return Ok(PhaseOutcome::skipped());
        };
        let n = response.len() as u32;
        let maps = CallMaps {
            ctx,
            request: Some(std::mem::take(request)),
            response: Some(std::mem::take(response)),
            ..CallMaps::default()
        };
        let (mut maps, r) = self.phase("proxy_on_response_headers", ctx, maps, |s, _| {
            call_headers(&f, s, ctx, n, end_of_stream)
        });
        *request = maps.request.take().unwrap_or_default();
        *response = maps.response.take().unwrap_or_default();
        r.map(|mut o| {
            o.headers_changed = maps.response_changed;
            o
        })
    }

    /// `proxy_on_response_body` on the response's content (read-only).
    ///
    /// # Errors
    /// As [`FilterInstance::request_headers`].
    pub fn response_body(&mut self, ctx: u32, body: &Bytes) -> Result<PhaseOutcome, FilterError> {
        let Some(f) = self.ex.response_body.clone() else {
            return Ok(PhaseOutcome::skipped());
        };
        let len = body.len() as u32;
        let maps = CallMaps {
            ctx,
            body: Some((buffer_type::RESPONSE_BODY, body.clone())),
            ..CallMaps::default()
        };
        self.phase("proxy_on_response_body", ctx, maps, |s, _| {
            f.call(s, ctx, len, 1)
        })
        .1
    }

    /// Ends stream `ctx`: `proxy_on_log`, `proxy_on_done`, `proxy_on_delete` (those the
    /// module exports), whatever the call's outcome. On a poisoned instance the context is
    /// only forgotten.
    ///
    /// # Errors
    /// The first callback failure (the rest are not called).
    pub fn finish_stream(&mut self, ctx: u32) -> Result<(), FilterError> {
        let r = self.finish_calls(ctx);
        let s = self.state_mut();
        s.streams.remove(&ctx);
        s.events.retain(|e| e.context() != ctx);
        r
    }

    fn finish_calls(&mut self, ctx: u32) -> Result<(), FilterError> {
        if self.poisoned || !self.state().streams.contains_key(&ctx) {
            return Ok(());
        }
        if let Some(f) = self.ex.log.clone() {
            self.guest("proxy_on_log", ctx, |s, _| f.call(s, ctx))?;
        }
        if let Some(f) = self.ex.done.clone() {
            self.guest("proxy_on_done", ctx, |s, _| f.call(s, ctx))?;
        }
        if let Some(f) = self.ex.delete.clone() {
            self.guest("proxy_on_delete", ctx, |s, _| f.call(s, ctx))?;
        }
        Ok(())
    }

    /// `proxy_on_tick` on the root context.
    ///
    /// # Errors
    /// A trap or CPU exhaustion.
    pub fn tick(&mut self) -> Result<(), FilterError> {
        let Some(f) = self.ex.tick.clone() else {
            return Ok(());
        };
        let root = self.root_id;
        self.guest("proxy_on_tick", root, |s, _| f.call(s, root))
    }

    /// `proxy_on_queue_ready` on the root context for queue `queue`.
    ///
    /// # Errors
    /// A trap or CPU exhaustion.
    pub fn queue_ready(&mut self, queue: u32) -> Result<(), FilterError> {
        let Some(f) = self.ex.queue_ready.clone() else {
            return Ok(());
        };
        let root = self.root_id;
        self.guest("proxy_on_queue_ready", root, |s, _| f.call(s, root, queue))
    }

    /// What callbacks asked of streams other than their own since the last call (continue,
    /// answer, close), for live streams, in order.
    pub fn take_events(&mut self) -> Vec<StreamEvent> {
        let s = self.state_mut();
        let mut events = std::mem::take(&mut s.events);
        events.retain(|e| s.streams.contains_key(&e.context()));
        events
    }
}

fn clone_headers_fn(f: &HeadersFn) -> HeadersFn {
    match f {
        HeadersFn::V1(f) => HeadersFn::V1(f.clone()),
        HeadersFn::V2(f) => HeadersFn::V2(f.clone()),
    }
}

fn call_headers(
    f: &HeadersFn,
    store: &mut Store,
    ctx: u32,
    n: u32,
    end_of_stream: bool,
) -> Result<u32, RuntimeError> {
    match f {
        HeadersFn::V1(f) => f.call(store, ctx, n),
        HeadersFn::V2(f) => f.call(store, ctx, n, u32::from(end_of_stream)),
    }
}

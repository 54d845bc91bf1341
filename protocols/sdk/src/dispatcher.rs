//! The ABI state machine (§2, §3, §6) over a [`Protocol`], and, inside Wasm, the
//! `#[no_mangle]` exports the host calls.
//!
//! The `Dispatcher` is target-independent: it talks to the host through the `Host` trait,
//! so the native [`harness`](crate::harness) runs the very same logic. It speaks exactly what
//! the Go SDK speaks (statuses, flag bytes, caching of §6) but never traps on host mistakes:
//! an unknown context in a codec call is status 10 with a log line, an unknown context in
//! delete/done is a log line, and after a trap left a call unfinished every call is refused
//! (10) instead of running on state the trap may have left half-updated (§6.8).
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use std::fmt;

use codec_abi::{
    decode_pairs, write_decode_result, BufferType, FrameKind, HostCommandView, LogLevel, Status,
    ENCODE_RESULT_FIXED_LEN,
};

use crate::contexts::{Contexts, Created, Root, Stream};
use crate::header_rule;
use crate::host::{Host, HostError};
use crate::protocol::{Command, Decoded, Protocol};

/// Scratch buffers larger than this are released after the call that needed them, so one
/// huge frame does not pin its size for the instance's lifetime.
const SCRATCH_KEEP: usize = 1 << 20;

const OK: u32 = Status::Ok as u32;
const BAD_ARGUMENT: u32 = Status::BadArgument as u32;
const EMPTY: u32 = Status::Empty as u32;
const INTERNAL: u32 = Status::InternalFailure as u32;
const NEED_MORE_DATA: u32 = Status::NeedMoreData as u32;

/// The guest side of the ABI for one protocol: contexts, caches and the codec calls.
pub(crate) struct Dispatcher<P: Protocol, H: Host> {
    factory: Box<dyn Fn() -> P>,
    pub(crate) host: H,
    contexts: Contexts<P>,
    /// Reused for every decode/encode result (§5.4, §5.5).
    scratch: Vec<u8>,
    /// The last decode that answered 99: its ctx and the frame length the protocol
    /// declared (0 = unknown), for [`Dispatcher::decode_bytes_needed`].
    needed: (u32, u32),
    /// The host asked for the decode extras ([`codec_abi::DECODE_EXTRAS_KEY`]).
    decode_extras: bool,
}

impl<P: Protocol, H: Host> Dispatcher<P, H> {
    /// A dispatcher that creates one protocol instance per root context with `factory`.
    pub(crate) fn new(factory: Box<dyn Fn() -> P>, host: H) -> Self {
        Dispatcher {
            factory,
            host,
            contexts: Contexts::new(),
            scratch: Vec::new(),
            needed: (0, 0),
            decode_extras: false,
        }
    }

    /// Number of live stream contexts.
    pub(crate) fn live_streams(&self) -> usize {
        self.contexts.streams.len()
    }

    /// `proxy_on_context_create(ctx, parent)`: parent 0 creates a root, else a stream under
    /// root `parent` (§2, §3).
    pub(crate) fn context_create(&mut self, ctx: u32, parent: u32) {
        match self.contexts.create(ctx, parent, &*self.factory) {
            Created::Root | Created::Stream => {}
            Created::RootReplaced => log(
                &mut self.host,
                LogLevel::Warn,
                format_args!("root context {ctx} created twice: replaced by a fresh one"),
            ),
            Created::StreamReset => log(
                &mut self.host,
                LogLevel::Warn,
                format_args!("context {ctx} created twice: its cached commands were dropped"),
            ),
            Created::UnknownParent => log(
                &mut self.host,
                LogLevel::Error,
                format_args!("context {ctx} not created: parent {parent} is not a root context"),
            ),
        }
    }

    /// `proxy_on_vm_start(root, size)`: reads the VM configuration (buffer 6, §7).
    pub(crate) fn vm_start(&mut self, root: u32, size: usize) -> bool {
        let Some(r) = self.contexts.root_mut(root) else {
            log(
                &mut self.host,
                LogLevel::Error,
                format_args!("vm start: {root} is not a root context"),
            );
            return false;
        };
        match read_config(&mut self.host, BufferType::VmConfiguration, size) {
            Ok(pairs) => {
                r.vm_config = pairs;
                true
            }
            Err(err) => {
                log(
                    &mut self.host,
                    LogLevel::Error,
                    format_args!("vm start of root {root}: {err}"),
                );
                false
            }
        }
    }

    /// `proxy_on_configure(root, size)`: reads the plugin configuration (buffer 7, §7) and
    /// hands both configurations to the root's protocol.
    pub(crate) fn configure(&mut self, root: u32, size: usize) -> bool {
        let Some(r) = self.contexts.root_mut(root) else {
            log(
                &mut self.host,
                LogLevel::Error,
                format_args!("configure: {root} is not a root context"),
            );
            return false;
        };
        let plugin_config = match read_config(&mut self.host, BufferType::PluginConfiguration, size)
        {
            Ok(pairs) => pairs,
            Err(err) => {
                log(
                    &mut self.host,
                    LogLevel::Error,
                    format_args!("configure of root {root}: {err}"),
                );
                return false;
            }
        };
        if plugin_config
            .iter()
            .any(|(k, v)| k == codec_abi::DECODE_EXTRAS_KEY && v == "1")
        {
            self.decode_extras = true;
        }
        match r.protocol.configure(&r.vm_config, &plugin_config) {
            Ok(()) => true,
            Err(err) => {
                let name = r.protocol.name().to_owned();
                log(
                    &mut self.host,
                    LogLevel::Error,
                    format_args!(
                        "protocol {name} rejected the configuration of root {root}: {err}"
                    ),
                );
                false
            }
        }
    }

    /// `proxy_decode_buffer_bytes` (§6.2): 0 with one §5.4 report, 99 need more data, 7 empty
    /// input, 10 on any error.
    pub(crate) fn decode(&mut self, ctx: u32, input: &[u8]) -> u32 {
        let Self {
            contexts,
            host,
            scratch,
            needed,
            ..
        } = self;
        *needed = (0, 0);
        let Some((root, stream)) = lookup(contexts, host, ctx, "decode") else {
            return INTERNAL;
        };
        if input.is_empty() {
            return EMPTY;
        }
        let Decoded { command, consumed } = match root.protocol.decode(input) {
            Ok(Some(decoded)) => decoded,
            Ok(None) => {
                let declared = root.protocol.frame_len(input).filter(|&n| n > input.len());
                *needed = (
                    ctx,
                    declared.map_or(0, |n| u32::try_from(n).unwrap_or(u32::MAX)),
                );
                return NEED_MORE_DATA;
            }
            Err(err) => {
                let name = root.protocol.name();
                log(
                    host,
                    LogLevel::Error,
                    format_args!("protocol {name} failed to decode on context {ctx}: {err}"),
                );
                return INTERNAL;
            }
        };
        let drain = match u32::try_from(consumed) {
            Ok(d) if d > 0 && consumed <= input.len() => d,
            _ => {
                let name = root.protocol.name();
                log(
                    host,
                    LogLevel::Error,
                    format_args!(
                        "protocol {name} decoded a frame of {consumed} bytes from {} bytes on context {ctx}",
                        input.len()
                    ),
                );
                return INTERNAL;
            }
        };
        scratch.clear();
        let (flag, id, timeout_or_status) = (
            command.kind().guest_flag(),
            command.id(),
            command.timeout_or_status(),
        );
        match command.encoded_headers() {
            Some(section) => write_decode_result(
                scratch,
                section,
                flag,
                id,
                timeout_or_status,
                drain,
                command.body(),
            ),
            None => write_decode_result(
                scratch,
                command.headers(),
                flag,
                id,
                timeout_or_status,
                drain,
                command.body(),
            ),
        }
        if self.decode_extras {
            codec_abi::DecodeExtras {
                id_field: command.id_field(),
                goaway: command.is_goaway(),
            }
            .write(scratch);
        }
        // A reused context (optional export `DECODE_REUSES_CONTEXT`) starts over: the new
        // command replaces whatever the context held.
        stream.decoded = Some(command);
        stream.encoded = None;
        let reported = host.set_buffer(BufferType::DecodeData, scratch);
        self.finish_report(ctx, "decode", reported)
    }

    /// `rpc_sidecar_decode_bytes_needed` (optional export, `codec_abi::optional_exports`):
    /// the frame length the last decode on `ctx` declared when it answered 99, else 0.
    pub(crate) fn decode_bytes_needed(&mut self, ctx: u32) -> u32 {
        match self.needed {
            (c, n) if c == ctx => n,
            _ => 0,
        }
    }

    /// `rpc_sidecar_response_code` (optional export, `codec_abi::optional_exports`): the
    /// proxy code the protocol of `ctx`'s root gives a response with `status`; 0 when `ctx`
    /// is unknown (the host then uses its default mapping).
    pub(crate) fn response_code(&mut self, ctx: u32, status: u32) -> u32 {
        let Self { contexts, host, .. } = self;
        match lookup(contexts, host, ctx, "response_code") {
            Some((root, _)) => root.protocol.response_code(status),
            None => 0,
        }
    }

    /// `rpc_sidecar_check` (optional export, `codec_abi::optional_exports::CHECK`): the
    /// protocol's [`codec_abi::Detect`] verdict on the first bytes of a connection, as a
    /// status. `ctx` is a stream context whose root names the protocol, or 0 for the first
    /// root; an unknown one, or empty input, is 10 (treated as no match by the host).
    pub(crate) fn check(&mut self, ctx: u32, input: &[u8]) -> u32 {
        let Self { contexts, host, .. } = self;
        let root = if ctx == 0 {
            contexts.roots.first()
        } else {
            match lookup(contexts, host, ctx, "check") {
                Some((root, _)) => Some(&*root),
                None => return INTERNAL,
            }
        };
        match root {
            Some(_) if input.is_empty() => EMPTY,
            Some(root) => root.protocol.check(input).status(),
            None => {
                log(
                    host,
                    LogLevel::Error,
                    format_args!("check: no root context"),
                );
                INTERNAL
            }
        }
    }

    /// `proxy_encode_buffer_bytes` (§6.3): encodes the cached command with the host's id,
    /// headers and body; 0 with one §5.5 report, 7 empty input, 10 on any error.
    pub(crate) fn encode(&mut self, ctx: u32, input: &[u8]) -> u32 {
        let Self {
            contexts,
            host,
            scratch,
            ..
        } = self;
        let Some((root, stream)) = lookup(contexts, host, ctx, "encode") else {
            return INTERNAL;
        };
        if input.is_empty() {
            return EMPTY;
        }
        match encode_cached(root, stream, input, scratch) {
            Ok(()) => {
                let reported = host.set_buffer(BufferType::EncodeData, scratch);
                self.finish_report(ctx, "encode", reported)
            }
            Err(err) => {
                log(
                    host,
                    LogLevel::Error,
                    format_args!("encode on context {ctx}: {err}"),
                );
                self.release_scratch();
                INTERNAL
            }
        }
    }

    /// `proxy_keepalive_buffer_bytes` (§6.4): caches a heartbeat request with `id`; 2 when the
    /// protocol has none.
    pub(crate) fn keepalive(&mut self, ctx: u32, id: u64) -> u32 {
        let Some((root, stream)) = lookup(&mut self.contexts, &mut self.host, ctx, "keepalive")
        else {
            return INTERNAL;
        };
        match root.protocol.keepalive(id) {
            Some(command) => {
                stream.encoded = Some(command);
                OK
            }
            None => BAD_ARGUMENT,
        }
    }

    /// `rpc_sidecar_goaway` (optional export, `codec_abi::optional_exports::GOAWAY`): caches a
    /// GoAway request with `id`; 2 when the protocol has none.
    pub(crate) fn goaway(&mut self, ctx: u32, id: u64) -> u32 {
        let Some((root, stream)) = lookup(&mut self.contexts, &mut self.host, ctx, "goaway") else {
            return INTERNAL;
        };
        match root.protocol.goaway(id) {
            Some(command) => {
                stream.encoded = Some(command);
                OK
            }
            None => BAD_ARGUMENT,
        }
    }

    /// `rpc_sidecar_decode_is_goaway` (optional export,
    /// `codec_abi::optional_exports::DECODE_IS_GOAWAY`): 1 when the command the last decode
    /// on `ctx` reported is the protocol's GoAway, else 0.
    pub(crate) fn decode_is_goaway(&mut self, ctx: u32) -> u32 {
        let goaway = self
            .contexts
            .streams
            .get(&ctx)
            .and_then(|s| s.decoded.as_ref())
            .is_some_and(Command::is_goaway);
        u32::from(goaway)
    }

    /// `rpc_sidecar_id_field` (optional export, `codec_abi::optional_exports::ID_FIELD`):
    /// where the id sits in the frame decoded on `ctx`, as `IdField::to_raw`; 0 when there is
    /// no decoded command or it must be encoded.
    pub(crate) fn id_field(&mut self, ctx: u32) -> u32 {
        self.contexts
            .streams
            .get(&ctx)
            .and_then(|s| s.decoded.as_ref())
            .and_then(Command::id_field)
            .map_or(0, codec_abi::IdField::to_raw)
    }

    /// `proxy_reply_keepalive_buffer_bytes` (§6.5): caches the answer to the decoded heartbeat
    /// request (the host's ptr/len carry nothing).
    pub(crate) fn reply_keepalive(&mut self, ctx: u32) -> u32 {
        let Self { contexts, host, .. } = self;
        let Some((root, stream)) = lookup(contexts, host, ctx, "reply keepalive") else {
            return INTERNAL;
        };
        let Some(request) = stream.decoded.as_ref() else {
            log(
                host,
                LogLevel::Error,
                format_args!("reply keepalive on context {ctx}: no decoded request to answer"),
            );
            return INTERNAL;
        };
        match root.protocol.reply_keepalive(request) {
            Some(reply) => {
                stream.encoded = Some(reply);
                OK
            }
            None => {
                let name = root.protocol.name();
                log(
                    host,
                    LogLevel::Error,
                    format_args!(
                        "reply keepalive on context {ctx}: protocol {name} has no reply to this command"
                    ),
                );
                INTERNAL
            }
        }
    }

    /// `proxy_hijack_buffer_bytes` (§6.6): re-decodes the raw request given as payload, maps
    /// `code` and caches the protocol's response as the EncodeCommand.
    pub(crate) fn hijack(&mut self, ctx: u32, code: u32, input: &[u8]) -> u32 {
        let Self { contexts, host, .. } = self;
        let Some((root, stream)) = lookup(contexts, host, ctx, "hijack") else {
            return INTERNAL;
        };
        if input.is_empty() {
            return EMPTY;
        }
        match hijack_response(root, input, code) {
            Ok(response) => {
                stream.encoded = Some(response);
                OK
            }
            Err(err) => {
                log(
                    host,
                    LogLevel::Error,
                    format_args!("hijack on context {ctx}: {err}"),
                );
                INTERNAL
            }
        }
    }

    /// `proxy_on_done(ctx)`: true for a live stream or root.
    pub(crate) fn done(&mut self, ctx: u32) -> bool {
        let known = self.contexts.streams.contains_key(&ctx)
            || self.contexts.roots.iter().any(|r| r.id == ctx);
        if !known {
            log(
                &mut self.host,
                LogLevel::Warn,
                format_args!("done: unknown context {ctx}"),
            );
        }
        known
    }

    /// `proxy_on_delete(ctx)` (§6.7): drops a stream (or else a root) and its caches.
    pub(crate) fn delete(&mut self, ctx: u32) {
        if !self.contexts.delete(ctx) {
            log(
                &mut self.host,
                LogLevel::Warn,
                format_args!("delete: unknown context {ctx}"),
            );
        }
    }

    /// Status of a call whose result was just reported: 0, or 10 when the host refused it.
    fn finish_report(&mut self, ctx: u32, call: &str, reported: Result<(), HostError>) -> u32 {
        self.release_scratch();
        match reported {
            Ok(()) => OK,
            Err(err) => {
                log(
                    &mut self.host,
                    LogLevel::Error,
                    format_args!("{call} on context {ctx}: reporting the result failed: {err}"),
                );
                INTERNAL
            }
        }
    }

    fn release_scratch(&mut self) {
        if self.scratch.capacity() > SCRATCH_KEEP {
            self.scratch = Vec::new();
        }
    }
}

/// Looks up stream `ctx` and its root, logging why when either is missing.
fn lookup<'a, P: Protocol, H: Host>(
    contexts: &'a mut Contexts<P>,
    host: &mut H,
    ctx: u32,
    call: &str,
) -> Option<(&'a mut Root<P>, &'a mut Stream<P::Command>)> {
    let Some(stream) = contexts.streams.get_mut(&ctx) else {
        log(
            host,
            LogLevel::Error,
            format_args!("{call}: unknown context {ctx}"),
        );
        return None;
    };
    let root_id = stream.root;
    let Some(root) = contexts.roots.iter_mut().find(|r| r.id == root_id) else {
        log(
            host,
            LogLevel::Error,
            format_args!("{call}: root context {root_id} of context {ctx} was deleted"),
        );
        return None;
    };
    Some((root, stream))
}

/// Why an encode or hijack failed (logged, then status 10).
#[derive(Debug, thiserror::Error)]
enum CallError {
    #[error("bad input: {0}")]
    Layout(#[from] codec_abi::LayoutError),
    #[error("failed to find cached command")]
    NoCachedCommand,
    #[error("flag {0:#04x} has type bits 3, which no command matches")]
    BadFlag(u8),
    #[error("cached command should be a {}", if *.0 { "request" } else { "response" })]
    WrongType(bool),
    #[error("command id {given} does not match the cached command's id {cached}")]
    WrongId { given: u64, cached: u64 },
    #[error("the payload holds no complete frame")]
    IncompleteFrame,
    #[error("the payload is not a request")]
    NotARequest,
    #[error("frame of {0} bytes is too long to report")]
    TooLong(usize),
    #[error("protocol {name}: {source}")]
    Protocol {
        name: String,
        #[source]
        source: crate::error::ProtocolError,
    },
}

impl CallError {
    fn protocol<P: Protocol>(protocol: &P, source: crate::error::ProtocolError) -> Self {
        CallError::Protocol {
            name: protocol.name().to_owned(),
            source,
        }
    }
}

/// §6.3 steps 1-6 up to the report: leaves the §5.5 result in `out`.
fn encode_cached<P: Protocol>(
    root: &mut Root<P>,
    stream: &mut Stream<P::Command>,
    input: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CallError> {
    let host = HostCommandView::parse(input)?;
    // Step 1: the DecodeCommand, unless the EncodeCommand is a heartbeat; else the
    // EncodeCommand.
    let heartbeat_reply = stream
        .encoded
        .as_ref()
        .is_some_and(|c| c.kind().is_heartbeat());
    let command = match (&mut stream.decoded, &mut stream.encoded) {
        (_, Some(encoded)) if heartbeat_reply => encoded,
        (Some(decoded), _) => decoded,
        (None, Some(encoded)) => encoded,
        (None, None) => return Err(CallError::NoCachedCommand),
    };
    // Step 2: the type bits must agree with the cached command.
    let wants_request =
        FrameKind::encode_type_is_request(host.flag).ok_or(CallError::BadFlag(host.flag))?;
    if wants_request != command.kind().is_request() {
        return Err(CallError::WrongType(wants_request));
    }
    // Step 3: the host must name the id the command has now.
    if host.command_id != command.id() {
        return Err(CallError::WrongId {
            given: host.command_id,
            cached: command.id(),
        });
    }
    // Step 4: a payload replaces the body.
    if !host.payload.is_empty() {
        command.set_body(host.payload.to_vec());
    }
    // Step 5: the header rule.
    header_rule::apply_section(command, host.headers)?;
    // Step 6: the new id, then the frame after a §5.5 prefix patched in place.
    command.set_id(host.replaced_id);
    out.clear();
    out.resize(ENCODE_RESULT_FIXED_LEN, 0);
    root.protocol
        .encode(command, out)
        .map_err(|e| CallError::protocol(&root.protocol, e))?;
    let frame_len = out.len() - ENCODE_RESULT_FIXED_LEN;
    let frame_len = u32::try_from(frame_len).map_err(|_| CallError::TooLong(frame_len))?;
    // u32be H = 0 (already zero), flag, u64be id, u32be timeout/status, u32be N.
    out[4] = command.kind().guest_flag();
    out[5..13].copy_from_slice(&command.id().to_be_bytes());
    out[13..17].copy_from_slice(&command.timeout_or_status().to_be_bytes());
    out[17..21].copy_from_slice(&frame_len.to_be_bytes());
    Ok(())
}

/// §6.6: the response the protocol builds for the raw request in the hijack input.
fn hijack_response<P: Protocol>(
    root: &mut Root<P>,
    input: &[u8],
    code: u32,
) -> Result<P::Command, CallError> {
    let host = HostCommandView::parse(input)?;
    let request = match root.protocol.decode(host.payload) {
        Ok(Some(decoded)) => decoded.command,
        Ok(None) => return Err(CallError::IncompleteFrame),
        Err(e) => return Err(CallError::protocol(&root.protocol, e)),
    };
    if !request.kind().is_request() {
        return Err(CallError::NotARequest);
    }
    let status = root.protocol.map_status(code);
    root.protocol
        .hijack(&request, status)
        .map_err(|e| CallError::protocol(&root.protocol, e))
}

/// Reads a configuration buffer (§7) as owned pairs.
fn read_config<H: Host>(
    host: &mut H,
    buffer: BufferType,
    size: usize,
) -> Result<Vec<(String, String)>, ConfigError> {
    let bytes = host.get_buffer(buffer, size)?;
    let pairs = decode_pairs(&bytes)?;
    Ok(pairs
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect())
}

/// Why a configuration buffer could not be read.
#[derive(Debug, thiserror::Error)]
enum ConfigError {
    #[error("reading the configuration failed: {0}")]
    Host(#[from] HostError),
    #[error("the configuration is not a pairs buffer: {0}")]
    Layout(#[from] codec_abi::LayoutError),
}

fn log<H: Host>(host: &mut H, level: LogLevel, message: fmt::Arguments<'_>) {
    match message.as_str() {
        Some(text) => host.log(level, text),
        None => host.log(level, &message.to_string()),
    }
}

/// The object-safe face of a [`Dispatcher`], stored by the Wasm entry point.
#[cfg(target_arch = "wasm32")]
trait Abi {
    fn context_create(&mut self, ctx: u32, parent: u32);
    fn vm_start(&mut self, root: u32, size: usize) -> bool;
    fn configure(&mut self, root: u32, size: usize) -> bool;
    fn decode(&mut self, ctx: u32, input: &[u8]) -> u32;
    fn decode_bytes_needed(&mut self, ctx: u32) -> u32;
    fn response_code(&mut self, ctx: u32, status: u32) -> u32;
    fn check(&mut self, ctx: u32, input: &[u8]) -> u32;
    fn decode_is_goaway(&mut self, ctx: u32) -> u32;
    fn id_field(&mut self, ctx: u32) -> u32;
    fn goaway(&mut self, ctx: u32, id: u64) -> u32;
    fn encode(&mut self, ctx: u32, input: &[u8]) -> u32;
    fn keepalive(&mut self, ctx: u32, id: u64) -> u32;
    fn reply_keepalive(&mut self, ctx: u32) -> u32;
    fn hijack(&mut self, ctx: u32, code: u32, input: &[u8]) -> u32;
    fn done(&mut self, ctx: u32) -> bool;
    fn delete(&mut self, ctx: u32);
}

#[cfg(target_arch = "wasm32")]
impl<P: Protocol, H: Host> Abi for Dispatcher<P, H> {
    fn context_create(&mut self, ctx: u32, parent: u32) {
        Dispatcher::context_create(self, ctx, parent)
    }
    fn vm_start(&mut self, root: u32, size: usize) -> bool {
        Dispatcher::vm_start(self, root, size)
    }
    fn configure(&mut self, root: u32, size: usize) -> bool {
        Dispatcher::configure(self, root, size)
    }
    fn decode(&mut self, ctx: u32, input: &[u8]) -> u32 {
        Dispatcher::decode(self, ctx, input)
    }
    fn decode_bytes_needed(&mut self, ctx: u32) -> u32 {
        Dispatcher::decode_bytes_needed(self, ctx)
    }
    fn decode_is_goaway(&mut self, ctx: u32) -> u32 {
        Dispatcher::decode_is_goaway(self, ctx)
    }
    fn goaway(&mut self, ctx: u32, id: u64) -> u32 {
        Dispatcher::goaway(self, ctx, id)
    }
    fn id_field(&mut self, ctx: u32) -> u32 {
        Dispatcher::id_field(self, ctx)
    }
    fn response_code(&mut self, ctx: u32, status: u32) -> u32 {
        Dispatcher::response_code(self, ctx, status)
    }
    fn check(&mut self, ctx: u32, input: &[u8]) -> u32 {
        Dispatcher::check(self, ctx, input)
    }
    fn encode(&mut self, ctx: u32, input: &[u8]) -> u32 {
        Dispatcher::encode(self, ctx, input)
    }
    fn keepalive(&mut self, ctx: u32, id: u64) -> u32 {
        Dispatcher::keepalive(self, ctx, id)
    }
    fn reply_keepalive(&mut self, ctx: u32) -> u32 {
        Dispatcher::reply_keepalive(self, ctx)
    }
    fn hijack(&mut self, ctx: u32, code: u32, input: &[u8]) -> u32 {
        Dispatcher::hijack(self, ctx, code, input)
    }
    fn done(&mut self, ctx: u32) -> bool {
        Dispatcher::done(self, ctx)
    }
    fn delete(&mut self, ctx: u32) {
        Dispatcher::delete(self, ctx)
    }
}

#[cfg(target_arch = "wasm32")]
pub use wasm::start;

/// The Wasm exports (§3): each takes the one dispatcher registered by `_start`.
#[cfg(target_arch = "wasm32")]
mod wasm {
    use std::cell::RefCell;

    use codec_abi::LogLevel;

    use super::{Abi, Dispatcher, INTERNAL};
    use crate::allocator;
    use crate::hostcalls::{self, WasmHost};
    use crate::panic_hook;
    use crate::protocol::Protocol;

    thread_local! {
        static DISPATCHER: RefCell<Option<Box<dyn Abi>>> = const { RefCell::new(None) };
    }

    /// Registers the protocol factory; called by the `_start` that [`entry!`](crate::entry)
    /// generates (§2). Also installs the panic hook. A second call is logged and ignored.
    pub fn start<P: Protocol, F: Fn() -> P + 'static>(factory: F) {
        panic_hook::install();
        DISPATCHER.with(|slot| match slot.try_borrow_mut() {
            Ok(mut slot) if slot.is_none() => {
                *slot = Some(Box::new(Dispatcher::new(Box::new(factory), WasmHost)));
            }
            _ => {
                let _ = hostcalls::log(LogLevel::Warn, "_start called again: ignored");
            }
        });
    }

    /// Runs `f` on the dispatcher; `refused` when there is none (no `_start` yet) or it is
    /// busy (a re-entrant host call, or an earlier trap left a call unfinished: the plugin
    /// state cannot be trusted, §6.8).
    fn with<R>(refused: R, f: impl FnOnce(&mut dyn Abi) -> R) -> R {
        DISPATCHER.with(|slot| match slot.try_borrow_mut() {
            Ok(mut slot) => match slot.as_deref_mut() {
                Some(dispatcher) => f(dispatcher),
                None => {
                    let _ = hostcalls::log(LogLevel::Error, "codec call before _start: refused");
                    refused
                }
            },
            Err(_) => {
                let _ = hostcalls::log(
                    LogLevel::Error,
                    "codec call while another is unfinished (re-entrant call, or an earlier trap): refused",
                );
                refused
            }
        })
    }

    /// A codec input the host placed with `malloc(len)` (owned by the guest, freed on drop) or
    /// in the input buffer (`rpc_sidecar_input_buffer`: kept for the next input).
    struct Input {
        ptr: *mut u8,
        len: usize,
    }

    impl Input {
        /// # Safety
        /// `ptr` is null or a block from the guest's `malloc` holding `len` initialised
        /// bytes (when `len > 0`), not used by the host after the call.
        unsafe fn new(ptr: *mut u8, len: i32) -> Input {
            let len = if ptr.is_null() {
                0
            } else {
                usize::try_from(len).unwrap_or(0)
            };
            Input { ptr, len }
        }

        fn bytes(&self) -> &[u8] {
            if self.len == 0 {
                return &[];
            }
            // SAFETY: per `Input::new`, `ptr` holds `len` initialised bytes owned by the guest
            // until `self` drops.
            unsafe { core::slice::from_raw_parts(self.ptr, self.len) }
        }
    }

    impl Drop for Input {
        fn drop(&mut self) {
            // The input buffer stays the guest's, for the next input.
            if allocator::is_input_buffer(self.ptr) {
                return;
            }
            // SAFETY: per `Input::new`, `ptr` came from the guest's `malloc`; nothing borrows
            // it any more (`bytes()` borrows end before the drop).
            unsafe { allocator::release(self.ptr) }
        }
    }

    fn size(raw: i32) -> usize {
        usize::try_from(raw).unwrap_or(0)
    }

    /// ABI marker (§1); never called.
    #[unsafe(no_mangle)]
    pub extern "C" fn proxy_abi_mosn_version_0_2_0() {}

    /// `(size) -> ptr`: guest memory for the host (alias of the exported libc `malloc`).
    #[unsafe(no_mangle)]
    pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
        allocator::allocate(size)
    }

    /// `(ctx, parent)`: parent 0 creates a root, else a stream under root `parent`.
    #[unsafe(no_mangle)]
    pub extern "C" fn proxy_on_context_create(ctx: u32, parent: u32) {
        with((), |d| d.context_create(ctx, parent));
    }

    /// `(root, vm_cfg_size) -> bool`.
    #[unsafe(no_mangle)]
    pub extern "C" fn proxy_on_vm_start(root: u32, vm_config_size: i32) -> u32 {
        with(false, |d| d.vm_start(root, size(vm_config_size))).into()
    }

    /// `(root, plugin_cfg_size) -> bool`.
    #[unsafe(no_mangle)]
    pub extern "C" fn proxy_on_configure(root: u32, plugin_config_size: i32) -> u32 {
        with(false, |d| d.configure(root, size(plugin_config_size))).into()
    }

    /// `(ctx)`: drops the context.
    #[unsafe(no_mangle)]
    pub extern "C" fn proxy_on_delete(ctx: u32) {
        with((), |d| d.delete(ctx));
    }

    /// `(ctx) -> bool`.
    #[unsafe(no_mangle)]
    pub extern "C" fn proxy_on_done(ctx: u32) -> u32 {
        with(false, |d| d.done(ctx)).into()
    }

    /// `(ctx)`: nothing to do for a codec.
    #[unsafe(no_mangle)]
    pub extern "C" fn proxy_on_log(_ctx: u32) {}

    /// `(root)`: nothing to do for a codec.
    #[unsafe(no_mangle)]
    pub extern "C" fn proxy_on_tick(_root: u32) {}

    /// `(ctx, ptr, len) -> status` (§6.2).
    ///
    /// # Safety
    /// `ptr` is null or a block from the guest's `malloc` holding `len` bytes; the guest
    /// frees it.
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn proxy_decode_buffer_bytes(ctx: u32, ptr: *mut u8, len: i32) -> u32 {
        // SAFETY: forwarded from this function's contract.
        let input = unsafe { Input::new(ptr, len) };
        with(INTERNAL, |d| d.decode(ctx, input.bytes()))
    }

    /// `(ctx) -> u32`: the frame length the last need-more decode on `ctx` declared (this
    /// host's optional extension, `codec_abi::optional_exports::DECODE_BYTES_NEEDED`).
    #[unsafe(no_mangle)]
    pub extern "C" fn rpc_sidecar_decode_bytes_needed(ctx: u32) -> u32 {
        with(0, |d| d.decode_bytes_needed(ctx))
    }

    /// `(ctx) -> u32`: 1 when the last decode on `ctx` reported the protocol's GoAway (this
    /// host's optional extension, `codec_abi::optional_exports::DECODE_IS_GOAWAY`).
    #[unsafe(no_mangle)]
    pub extern "C" fn rpc_sidecar_decode_is_goaway(ctx: u32) -> u32 {
        with(0, |d| d.decode_is_goaway(ctx))
    }

    /// `(ctx, id: i64) -> status`: caches a GoAway request with `id`, 2 when the protocol
    /// has none (optional extension, `codec_abi::optional_exports::GOAWAY`).
    #[unsafe(no_mangle)]
    pub extern "C" fn rpc_sidecar_goaway(ctx: u32, id: u64) -> u32 {
        with(INTERNAL, |d| d.goaway(ctx, id))
    }

    /// `(ctx, status) -> u32`: the proxy code for a response with protocol status `status`,
    /// by the protocol of `ctx`'s root; 0 = unknown context (this host's optional extension,
    /// `codec_abi::optional_exports::RESPONSE_CODE`).
    #[unsafe(no_mangle)]
    pub extern "C" fn rpc_sidecar_response_code(ctx: u32, status: u32) -> u32 {
        with(0, |d| d.response_code(ctx, status))
    }

    /// `(ctx, ptr, len) -> status`: the protocol's verdict on the first bytes of a
    /// connection (this host's optional extension, `codec_abi::optional_exports::CHECK`):
    /// 0 match, 1 no match, 99 need more, 12 the protocol does not implement it.
    ///
    /// # Safety
    /// As [`proxy_decode_buffer_bytes`].
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn rpc_sidecar_check(ctx: u32, ptr: *mut u8, len: i32) -> u32 {
        // SAFETY: forwarded from this function's contract.
        let input = unsafe { Input::new(ptr, len) };
        with(INTERNAL, |d| d.check(ctx, input.bytes()))
    }

    /// Marker (never called): decode accepts a context that already holds a command and
    /// replaces it (optional export `codec_abi::optional_exports::DECODE_REUSES_CONTEXT`).
    #[unsafe(no_mangle)]
    pub extern "C" fn rpc_sidecar_decode_reuses_context() {}

    /// `(ctx) -> u32`: where the id of the frame decoded on `ctx` sits, 0 = encode it
    /// (optional export `codec_abi::optional_exports::ID_FIELD`).
    #[unsafe(no_mangle)]
    pub extern "C" fn rpc_sidecar_id_field(ctx: u32) -> u32 {
        with(0, |d| d.id_field(ctx))
    }

    /// `(len) -> ptr`: the guest-owned input buffer, at least `len` bytes (optional export
    /// `codec_abi::optional_exports::INPUT_BUFFER`); 0 when memory is exhausted.
    #[unsafe(no_mangle)]
    pub extern "C" fn rpc_sidecar_input_buffer(len: u32) -> *mut u8 {
        allocator::input_buffer(len as usize)
    }

    /// `(ctx, ptr, len) -> status` (§6.3).
    ///
    /// # Safety
    /// As [`proxy_decode_buffer_bytes`].
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn proxy_encode_buffer_bytes(ctx: u32, ptr: *mut u8, len: i32) -> u32 {
        // SAFETY: forwarded from this function's contract.
        let input = unsafe { Input::new(ptr, len) };
        with(INTERNAL, |d| d.encode(ctx, input.bytes()))
    }

    /// `(ctx, id: i64) -> status` (§6.4).
    #[unsafe(no_mangle)]
    pub extern "C" fn proxy_keepalive_buffer_bytes(ctx: u32, id: i64) -> u32 {
        with(INTERNAL, |d| d.keepalive(ctx, id as u64))
    }

    /// `(ctx, ptr, len) -> status` (§6.5); the input carries nothing and is only freed.
    ///
    /// # Safety
    /// As [`proxy_decode_buffer_bytes`] (MOSN passes 0, 0).
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn proxy_reply_keepalive_buffer_bytes(
        ctx: u32,
        ptr: *mut u8,
        len: i32,
    ) -> u32 {
        // SAFETY: forwarded from this function's contract.
        let _input = unsafe { Input::new(ptr, len) };
        with(INTERNAL, |d| d.reply_keepalive(ctx))
    }

    /// `(ctx, status_code, ptr, len) -> status` (§6.6).
    ///
    /// # Safety
    /// As [`proxy_decode_buffer_bytes`].
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn proxy_hijack_buffer_bytes(
        ctx: u32,
        status_code: u32,
        ptr: *mut u8,
        len: i32,
    ) -> u32 {
        // SAFETY: forwarded from this function's contract.
        let input = unsafe { Input::new(ptr, len) };
        with(INTERNAL, |d| d.hijack(ctx, status_code, input.bytes()))
    }
}

//! A native test harness (like the Go SDK's emulator): runs the very same dispatcher the
//! plugin runs inside Wasm, against a recording host, so a protocol can be tested at the ABI
//! level (statuses, §5.3–§5.5 bytes, the context caches of §6) without a Wasm runtime.
//!
//! ```
//! use codec_sdk::harness::Harness;
//! # use codec_sdk::{Command, Decoded, FrameKind, HeaderMap, Protocol, ProtocolError};
//! # struct Line(Vec<u8>, HeaderMap);
//! # impl Command for Line {
//! #     fn kind(&self) -> FrameKind { FrameKind::Request }
//! #     fn id(&self) -> u64 { 0 }
//! #     fn set_id(&mut self, _: u64) {}
//! #     fn headers(&self) -> &HeaderMap { &self.1 }
//! #     fn headers_mut(&mut self) -> &mut HeaderMap { &mut self.1 }
//! #     fn body(&self) -> &[u8] { &self.0 }
//! #     fn set_body(&mut self, b: Vec<u8>) { self.0 = b }
//! #     fn timeout_or_status(&self) -> u32 { 0 }
//! # }
//! # #[derive(Default)] struct Lines;
//! # impl Protocol for Lines {
//! #     type Command = Line;
//! #     fn name(&self) -> &str { "lines" }
//! #     fn decode(&mut self, d: &[u8]) -> Result<Option<Decoded<Line>>, ProtocolError> {
//! #         Ok(d.iter().position(|&b| b == b'\n').map(|n| Decoded {
//! #             command: Line(d[..n].to_vec(), HeaderMap::new()), consumed: n + 1 }))
//! #     }
//! #     fn encode(&mut self, c: &Line, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
//! #         out.extend_from_slice(&c.0); out.push(b'\n'); Ok(())
//! #     }
//! #     fn hijack(&mut self, _: &Line, _: u32) -> Result<Line, ProtocolError> {
//! #         Err(ProtocolError::new("no responses"))
//! #     }
//! # }
//! let mut harness = Harness::new(Lines::default).unwrap();
//! let ctx = harness.create_context();
//! assert_eq!(harness.decode(ctx, b"hel").status, 99);
//! let call = harness.decode(ctx, b"hello\n");
//! assert_eq!(call.status, 0);
//! assert_eq!(call.decode_result().unwrap().payload, b"hello");
//! harness.delete(ctx);
//! ```
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use codec_abi::{
    encode_pairs, BufferType, DecodeResultView, EncodeResultView, LayoutError, LogLevel, Status,
};

use crate::dispatcher::Dispatcher;
use crate::host::{Host, HostError};
use crate::protocol::Protocol;

/// The root context id the harness configures (MOSN's usual `root_id`).
pub const ROOT_ID: u32 = 1;

/// What the harness could not do.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HarnessError {
    /// `proxy_on_vm_start` or `proxy_on_configure` returned false.
    #[error("{step} returned false (see the logs)")]
    Start {
        /// The failing export.
        step: &'static str,
    },
    /// The call did not report exactly one buffer of the expected type.
    #[error("expected exactly one report of buffer {buffer}, got {got:?}")]
    Reports {
        /// The buffer type expected.
        buffer: u32,
        /// The buffer types reported.
        got: Vec<u32>,
    },
    /// The reported buffer does not parse.
    #[error("reported buffer does not parse: {0}")]
    Layout(#[from] LayoutError),
}

/// One buffer the guest reported through `proxy_set_buffer_bytes`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// The buffer type (13 decode result, 14 encode result).
    pub buffer: u32,
    /// The bytes.
    pub bytes: Vec<u8>,
}

/// One log line the guest wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Its level.
    pub level: LogLevel,
    /// Its text.
    pub message: String,
}

/// The outcome of one codec export call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    /// The raw status the export returned.
    pub status: u32,
    /// The buffers reported during the call, in order.
    pub reports: Vec<Report>,
}

impl Call {
    /// The status as a known [`Status`], if it is one.
    pub fn known_status(&self) -> Option<Status> {
        Status::from_raw(self.status)
    }

    /// The bytes of the one buffer of type `buffer` the call reported.
    ///
    /// # Errors
    /// [`HarnessError::Reports`] unless exactly one report, of that type, was made.
    pub fn report(&self, buffer: BufferType) -> Result<&[u8], HarnessError> {
        match self.reports.as_slice() {
            [only] if only.buffer == buffer as u32 => Ok(&only.bytes),
            other => Err(HarnessError::Reports {
                buffer: buffer as u32,
                got: other.iter().map(|r| r.buffer).collect(),
            }),
        }
    }

    /// The §5.4 decode result the call reported (exactly once).
    ///
    /// # Errors
    /// [`HarnessError`] when there is not exactly one buffer-13 report or it does not parse.
    pub fn decode_result(&self) -> Result<DecodeResultView<'_>, HarnessError> {
        Ok(DecodeResultView::parse(
            self.report(BufferType::DecodeData)?,
        )?)
    }

    /// The §5.5 encode result the call reported (exactly once).
    ///
    /// # Errors
    /// [`HarnessError`] when there is not exactly one buffer-14 report or it does not parse.
    pub fn encode_result(&self) -> Result<EncodeResultView<'_>, HarnessError> {
        Ok(EncodeResultView::parse(
            self.report(BufferType::EncodeData)?,
        )?)
    }
}

/// The host side of the harness: serves the configuration buffers, records reports and logs.
#[derive(Debug, Default)]
struct RecordingHost {
    vm_config: Vec<u8>,
    plugin_config: Vec<u8>,
    reports: Vec<Report>,
    logs: Vec<LogRecord>,
    refuse_reports: bool,
}

impl Host for RecordingHost {
    fn log(&mut self, level: LogLevel, message: &str) {
        self.logs.push(LogRecord {
            level,
            message: message.to_owned(),
        });
    }

    fn get_buffer(&mut self, buffer: BufferType, max_size: usize) -> Result<Vec<u8>, HostError> {
        let bytes = match buffer {
            BufferType::VmConfiguration => &self.vm_config,
            BufferType::PluginConfiguration => &self.plugin_config,
            _ => return Err(HostError::Status(Status::NotFound as u32)),
        };
        Ok(bytes[..max_size.min(bytes.len())].to_vec())
    }

    fn set_buffer(&mut self, buffer: BufferType, data: &[u8]) -> Result<(), HostError> {
        if self.refuse_reports {
            return Err(HostError::Status(Status::NotFound as u32));
        }
        self.reports.push(Report {
            buffer: buffer as u32,
            bytes: data.to_vec(),
        });
        Ok(())
    }
}

/// Drives a protocol through the ABI state machine natively, as a host would drive the
/// plugin: root context [`ROOT_ID`] is created, started and configured up front; stream
/// contexts are created and deleted by the test.
pub struct Harness<P: Protocol> {
    dispatcher: Dispatcher<P, RecordingHost>,
    next_ctx: u32,
}

impl<P: Protocol> Harness<P> {
    /// A harness with empty VM and plugin configurations.
    ///
    /// # Errors
    /// [`HarnessError::Start`] when the protocol rejects the (empty) configuration.
    pub fn new(factory: impl Fn() -> P + 'static) -> Result<Self, HarnessError> {
        Self::with_config(factory, &[], &[])
    }

    /// A harness whose root context is started with these VM and plugin configuration pairs
    /// (served as §5.2 buffers 6 and 7, §7).
    ///
    /// # Errors
    /// [`HarnessError::Start`] when vm start or configure returns false.
    pub fn with_config(
        factory: impl Fn() -> P + 'static,
        vm_config: &[(&str, &str)],
        plugin_config: &[(&str, &str)],
    ) -> Result<Self, HarnessError> {
        let host = RecordingHost {
            vm_config: encode_pairs(vm_config),
            plugin_config: encode_pairs(plugin_config),
            ..RecordingHost::default()
        };
        let vm_size = host.vm_config.len();
        let plugin_size = host.plugin_config.len();
        let mut dispatcher = Dispatcher::new(Box::new(factory), host);
        dispatcher.context_create(ROOT_ID, 0);
        if !dispatcher.vm_start(ROOT_ID, vm_size) {
            return Err(HarnessError::Start {
                step: "proxy_on_vm_start",
            });
        }
        if !dispatcher.configure(ROOT_ID, plugin_size) {
            return Err(HarnessError::Start {
                step: "proxy_on_configure",
            });
        }
        Ok(Harness {
            dispatcher,
            next_ctx: ROOT_ID + 1,
        })
    }

    /// Creates a fresh stream context under the root and returns its id.
    pub fn create_context(&mut self) -> u32 {
        let ctx = self.next_ctx;
        self.next_ctx = self.next_ctx.wrapping_add(1).max(ROOT_ID + 1);
        self.dispatcher.context_create(ctx, ROOT_ID);
        ctx
    }

    /// `proxy_on_context_create(ctx, parent)` exactly as given (for host-mistake tests).
    pub fn context_create(&mut self, ctx: u32, parent: u32) {
        self.dispatcher.context_create(ctx, parent);
    }

    /// `proxy_decode_buffer_bytes(ctx, data)`.
    pub fn decode(&mut self, ctx: u32, data: &[u8]) -> Call {
        let status = self.dispatcher.decode(ctx, data);
        self.call(status)
    }

    /// `rpc_sidecar_decode_bytes_needed(ctx)` (optional export): the frame length the last
    /// need-more decode on `ctx` declared, 0 when unknown.
    pub fn decode_bytes_needed(&mut self, ctx: u32) -> u32 {
        self.dispatcher.decode_bytes_needed(ctx)
    }

    /// `rpc_sidecar_response_code(ctx, status)` (optional export): the proxy code the
    /// protocol of `ctx`'s root gives a response with `status`; 0 for an unknown context.
    pub fn response_code(&mut self, ctx: u32, status: u32) -> u32 {
        self.dispatcher.response_code(ctx, status)
    }

    /// `rpc_sidecar_check(ctx, data)` (optional export): the protocol's verdict on the first
    /// bytes of a connection as a status (0 match, 1 no match, 99 need more, 12 not
    /// implemented); `ctx` 0 asks the root directly.
    pub fn check(&mut self, ctx: u32, data: &[u8]) -> u32 {
        self.dispatcher.check(ctx, data)
    }

    /// `proxy_encode_buffer_bytes(ctx, input)`; `input` is a §5.3 host command (build it with
    /// [`codec_abi::write_host_command`]).
    pub fn encode(&mut self, ctx: u32, input: &[u8]) -> Call {
        let status = self.dispatcher.encode(ctx, input);
        self.call(status)
    }

    /// `proxy_keepalive_buffer_bytes(ctx, id)`.
    pub fn keepalive(&mut self, ctx: u32, id: u64) -> Call {
        let status = self.dispatcher.keepalive(ctx, id);
        self.call(status)
    }

    /// `rpc_sidecar_goaway(ctx, id)` (optional export).
    pub fn goaway(&mut self, ctx: u32, id: u64) -> Call {
        let status = self.dispatcher.goaway(ctx, id);
        self.call(status)
    }

    /// `rpc_sidecar_decode_is_goaway(ctx)` (optional export): 1 when the last decode on
    /// `ctx` reported a GoAway.
    pub fn decode_is_goaway(&mut self, ctx: u32) -> u32 {
        self.dispatcher.decode_is_goaway(ctx)
    }

    /// `rpc_sidecar_id_field(ctx)` (optional export): where the id of the frame decoded on
    /// `ctx` sits (`codec_abi::IdField::to_raw`), 0 = it must be encoded.
    pub fn id_field(&mut self, ctx: u32) -> u32 {
        self.dispatcher.id_field(ctx)
    }

    /// `proxy_reply_keepalive_buffer_bytes(ctx, 0, 0)`.
    pub fn reply_keepalive(&mut self, ctx: u32) -> Call {
        let status = self.dispatcher.reply_keepalive(ctx);
        self.call(status)
    }

    /// `proxy_hijack_buffer_bytes(ctx, status_code, input)`; `input` is a §5.3 host command
    /// whose payload is the raw request frame (§6.6).
    pub fn hijack(&mut self, ctx: u32, status_code: u32, input: &[u8]) -> Call {
        let status = self.dispatcher.hijack(ctx, status_code, input);
        self.call(status)
    }

    /// `proxy_on_done(ctx)`.
    pub fn done(&mut self, ctx: u32) -> bool {
        self.dispatcher.done(ctx)
    }

    /// `proxy_on_delete(ctx)`.
    pub fn delete(&mut self, ctx: u32) {
        self.dispatcher.delete(ctx);
    }

    /// Number of live stream contexts (each holds cached commands).
    pub fn live_contexts(&self) -> usize {
        self.dispatcher.live_streams()
    }

    /// Makes `proxy_set_buffer_bytes` fail (status 1) from now on, or succeed again.
    pub fn refuse_reports(&mut self, refuse: bool) {
        self.dispatcher.host.refuse_reports = refuse;
    }

    /// The log lines written so far.
    pub fn logs(&self) -> &[LogRecord] {
        &self.dispatcher.host.logs
    }

    /// Takes the log lines written so far.
    pub fn take_logs(&mut self) -> Vec<LogRecord> {
        std::mem::take(&mut self.dispatcher.host.logs)
    }

    fn call(&mut self, status: u32) -> Call {
        Call {
            status,
            reports: std::mem::take(&mut self.dispatcher.host.reports),
        }
    }
}

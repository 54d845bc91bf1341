//! [`WasmCodec`]: the [`Codec`] API over one plugin instance (ABI §6), with the frame state
//! that carries a plugin context from decode to encode and deletes it when the frame is
//! dropped.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use std::any::Any;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use codec_abi::{
    write_host_command, BufferType, DecodeResultView, EncodeResultView, FrameKind, HeaderMap,
    LayoutError,
};

use crate::call_stats::GuestCalls;
use crate::codec::{detect_by_decode, Codec, ContextStats, Detect, Frame, FrameParts};
use crate::error::CodecError;
use crate::frame_slices::payload_and_headers;
use crate::guest_exports::{Decode, Encode, GuestExport, Hijack, Keepalive, ReplyKeepalive};
use crate::instance::{DroppedContexts, Lifecycle, PluginInstance};
use crate::plugin::Plugin;

/// The window of the restart budget.
const RESTART_WINDOW: Duration = Duration::from_secs(60);
/// Past the budget, the least time between two restarts.
const THROTTLED_RESTART_EVERY: Duration = Duration::from_secs(1);

/// First decode window when nothing is known about frame sizes.
const FIRST_WINDOW: usize = 8 * 1024;
/// Smallest first window.
const MIN_WINDOW: usize = 1024;

/// The plugin context a decoded frame holds (its [`crate::FrameState`]). Dropping it hands
/// the context back for deletion, exactly once.
struct WasmFrameState {
    ctx: u32,
    /// The id the guest has cached for `ctx` (the decoded id, then the last encoded one).
    cached_id: u64,
    owner: Rc<DroppedContexts>,
    /// The context went back right after the frame's encode, its last needed call: a
    /// request's after the upstream encode, a response's after the downstream encode. Every
    /// live context keeps a decoded command in the guest, and a TinyGo guest's collector
    /// walks all of them on every collection, so contexts must not live for a round trip. A
    /// later encode (a retry) re-decodes the frame's raw bytes on a fresh context.
    released: bool,
    /// The guest sent decode extras, so `Frame::id_field` is its answer to where the id sits
    /// (`None`: the frame must be encoded); without them the guest is asked at encode.
    told: bool,
}

impl WasmFrameState {
    /// Hands the context back for deletion (once).
    fn release(&mut self) {
        if !self.released {
            self.released = true;
            self.owner.push(self.ctx);
        }
    }
}

impl Drop for WasmFrameState {
    fn drop(&mut self) {
        // No guest call from Drop: the owner's codec deletes it at its next call. If the
        // owner instance was replaced, its queue is never drained and the id is forgotten.
        self.release();
    }
}

/// A codec backed by one instance of a Wasm plugin. Belongs to one worker thread (it is
/// neither `Send` nor `Sync`); its frames must be encoded or dropped on that thread.
///
/// A call that traps or exceeds its CPU budget fails with [`CodecError::Trap`] /
/// [`CodecError::CpuExhausted`]; the instance is then replaced (re-instantiated from the
/// compiled module, start-up re-run) before the next call. Frames whose contexts died with
/// it are re-decoded from their raw bytes when encoded.
///
/// Live reload ([`WasmCodec::switch_to`]) moves the codec to another plugin's instances:
/// new frames are decoded by the new instance, while the old one is kept, retired, until
/// every frame it decoded has been encoded (on it) or dropped, then deleted.
pub struct WasmCodec {
    plugin: Arc<Plugin>,
    instance: Option<PluginInstance>,
    /// A started instance waiting to replace `instance` when it is poisoned, so a trap
    /// costs the worker a swap, not a start-up.
    spare: Option<PluginInstance>,
    replaced: u64,
    /// When the replacements of the last minute happened (at most the limit's worth).
    recent_restarts: VecDeque<Instant>,
    /// Calls refused because the restart budget was spent.
    refused_calls: u64,
    /// The most contexts any replaced instance had alive at once.
    retired_live_max: usize,
    /// Reused buffer for §5.3 inputs.
    scratch: Vec<u8>,
    /// Running estimate of frame size, for the first decode window.
    typical_frame: usize,
    /// The last decode that needed more data: the buffer length it saw and the frame
    /// length the guest declared then (for [`Codec::bytes_needed`]).
    last_need: Option<(usize, usize)>,
    /// Instances of earlier plugins (live reload) still holding contexts of frames in
    /// flight; each is deleted once its frames are all encoded or dropped.
    retired: Vec<Retired>,
    /// Guest calls of instances that are gone (replaced, drained after a reload).
    gone_calls: GuestCalls,
    /// Codec operations that failed (any [`CodecError`]).
    errors: u64,
    /// The current plugin's `rpc_sidecar_check` answered "not implemented" (the SDK's
    /// default): detection goes straight to a trial decode from then on.
    check_unimplemented: bool,
}

/// An instance of an earlier plugin kept for the frames it decoded.
struct Retired {
    /// Its plugin (keeps the module alive, names it in logs).
    plugin: Arc<Plugin>,
    instance: PluginInstance,
}

/// Which instance a frame's context lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// The current instance.
    Current,
    /// `retired[i]`.
    Retired(usize),
}

/// What a [`WasmCodec`] reports about its plugin and instances ([`WasmCodec::plugin_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PluginStats {
    /// Instances alive: the current one, its started spare, and retired ones still
    /// finishing frames of an earlier plugin.
    pub instances: usize,
    /// Of those, retired ones (earlier plugins, after a live reload).
    pub retired_instances: usize,
    /// Linear memory of every live instance, in bytes.
    pub memory_bytes: u64,
    /// Guest calls of every instance this codec ever had.
    pub calls: GuestCalls,
    /// Codec operations (decode, encode, keepalive, reply, hijack) that failed.
    pub errors: u64,
    /// Poisoned instances replaced (after a trap or CPU exhaustion).
    pub replaced_instances: u64,
}

impl WasmCodec {
    /// A codec with a started instance of `plugin`.
    ///
    /// # Errors
    /// [`CodecError`] when the instance cannot be created or started.
    pub(crate) fn new(plugin: Arc<Plugin>) -> Result<WasmCodec, CodecError> {
        let instance = PluginInstance::start(&plugin)?;
        let spare = PluginInstance::start(&plugin).ok();
        Ok(WasmCodec {
            plugin,
            instance: Some(instance),
            spare,
            replaced: 0,
            recent_restarts: VecDeque::new(),
            refused_calls: 0,
            retired_live_max: 0,
            scratch: Vec::new(),
            typical_frame: FIRST_WINDOW / 2,
            last_need: None,
            retired: Vec::new(),
            gone_calls: GuestCalls::default(),
            errors: 0,
            check_unimplemented: false,
        })
    }

    /// Switches this codec to `next`'s plugin (live reload): `next`'s started instance and
    /// spare become this codec's, so every decode from now on runs the new plugin. The old
    /// instance is retired, not dropped: frames it decoded are still encoded (and their
    /// contexts deleted) on it, and it is deleted once none is left. Counters carry over;
    /// the restart budget starts afresh for the new plugin.
    ///
    /// `next` should be a codec made for this worker ([`Plugin::new_codec`]) that has not
    /// served frames yet; frames it did decode are re-decoded here when encoded.
    pub fn switch_to(&mut self, mut next: WasmCodec) {
        let old_plugin = std::mem::replace(&mut self.plugin, Arc::clone(&next.plugin));
        if let Some(spare) = self.spare.take() {
            self.gone_calls += spare.guest_calls();
        }
        let old = std::mem::replace(&mut self.instance, next.instance.take());
        self.spare = next.spare.take();
        self.gone_calls += next.gone_calls;
        self.gone_calls += next
            .retired
            .drain(..)
            .map(|r| r.instance.guest_calls())
            .fold(GuestCalls::default(), |mut a, c| {
                a += c;
                a
            });
        self.recent_restarts.clear();
        self.last_need = None;
        self.check_unimplemented = false;
        if let Some(mut old) = old {
            self.retired_live_max = self.retired_live_max.max(old.context_live_max());
            // The next decode's context is nobody's frame: gone with the old instance.
            let _ = old.discard_spare();
            self.retired.push(Retired {
                plugin: old_plugin,
                instance: old,
            });
        }
        self.sweep_retired();
    }

    /// `codec` as a Wasm codec, when it is one (for plugin management: live reload,
    /// [`WasmCodec::plugin_stats`]).
    pub fn of(codec: &dyn Codec) -> Option<&WasmCodec> {
        codec.as_any()?.downcast_ref()
    }

    /// [`WasmCodec::of`], mutable.
    pub fn of_mut(codec: &mut dyn Codec) -> Option<&mut WasmCodec> {
        codec.as_any_mut()?.downcast_mut()
    }

    /// Counters of the plugin and instances behind this codec (for metrics).
    pub fn plugin_stats(&self) -> PluginStats {
        let live = self
            .instance
            .iter()
            .chain(&self.spare)
            .chain(self.retired.iter().map(|r| &r.instance));
        let mut stats = PluginStats {
            calls: self.gone_calls,
            errors: self.errors,
            replaced_instances: self.replaced,
            retired_instances: self.retired.len(),
            ..PluginStats::default()
        };
        for inst in live {
            stats.instances += 1;
            stats.memory_bytes += inst.memory_bytes();
            stats.calls += inst.guest_calls();
        }
        stats
    }

    /// Deletes the contexts of frames dropped on retired instances and drops every retired
    /// instance that holds no frame any more (or was poisoned).
    fn sweep_retired(&mut self) {
        let gone = &mut self.gone_calls;
        self.retired.retain_mut(|r| {
            let usable =
                r.instance.lifecycle() == Lifecycle::Ready && r.instance.release_dropped().is_ok();
            if usable && !r.instance.holds_no_frames() {
                return true;
            }
            *gone += r.instance.guest_calls();
            tracing::info!(
                plugin = r.plugin.name(),
                md5 = %r.plugin.md5(),
                poisoned = !usable,
                "retired plugin instance finished its frames; deleted"
            );
            false
        });
    }

    /// Counts a failed operation.
    fn counted<T>(&mut self, r: Result<T, CodecError>) -> Result<T, CodecError> {
        if r.is_err() {
            self.errors += 1;
        }
        r
    }

    /// The plugin this codec runs.
    pub fn plugin(&self) -> &Arc<Plugin> {
        &self.plugin
    }

    /// Context counters of the current instance (for tests and metrics).
    pub fn context_stats(&self) -> ContextStats {
        let (mut live, created, deleted) = self
            .instance
            .as_ref()
            .map_or((0, 0, 0), PluginInstance::context_counts);
        live += self
            .retired
            .iter()
            .map(|r| r.instance.context_counts().0)
            .sum::<usize>();
        let live_max = self
            .instance
            .as_ref()
            .map_or(0, PluginInstance::context_live_max)
            .max(self.retired_live_max);
        ContextStats {
            live,
            live_max,
            created,
            deleted,
            replaced_instances: self.replaced,
            refused_calls: self.refused_calls,
        }
    }

    /// Deletes the contexts of frames dropped since the last call now, instead of at the
    /// next codec call (e.g. when a worker goes idle).
    ///
    /// # Errors
    /// [`CodecError`] when the guest traps while deleting (the instance is then replaced).
    pub fn release_dropped_contexts(&mut self) -> Result<(), CodecError> {
        self.ready().map(|_| ())
    }

    /// The instance, replaced first if poisoned, with dropped frames' contexts deleted (on
    /// retired instances too, which are deleted once they hold no frame).
    fn ready(&mut self) -> Result<&mut PluginInstance, CodecError> {
        let usable = matches!(&self.instance, Some(i) if i.lifecycle() == Lifecycle::Ready);
        if !usable {
            self.replace_instance()?;
        }
        if !self.retired.is_empty() {
            self.sweep_retired();
        }
        let inst = self
            .instance
            .as_mut()
            .ok_or(CodecError::Instance("no instance".into()))?;
        inst.release_dropped()?;
        Ok(inst)
    }

    /// Replaces a poisoned (or, after a refusal, missing) instance with the started spare
    /// (a new one only when there is none), within the restart budget, then starts the
    /// next spare.
    fn replace_instance(&mut self) -> Result<(), CodecError> {
        let poisoned = self.instance.take();
        if let Some(old) = &poisoned {
            self.retired_live_max = self.retired_live_max.max(old.context_live_max());
            self.gone_calls += old.guest_calls();
        }
        let limits = self.plugin.limits().resolved();
        let budget = limits.max_restarts_per_minute as usize;
        let now = Instant::now();
        while matches!(self.recent_restarts.front(), Some(t) if now.duration_since(*t) >= RESTART_WINDOW)
        {
            self.recent_restarts.pop_front();
        }
        // Past the budget, at most one restart per second: a plugin trapping in a loop costs
        // one start-up a second, and is reported, instead of a thousand.
        let throttled = self.recent_restarts.len() >= budget
            && matches!(self.recent_restarts.back(), Some(t) if now.duration_since(*t) < THROTTLED_RESTART_EVERY);
        if throttled {
            self.refused_calls += 1;
            if self.refused_calls.is_power_of_two() {
                tracing::error!(
                    plugin = self.plugin.name(),
                    restarts = self.recent_restarts.len(),
                    refused_calls = self.refused_calls,
                    "plugin keeps failing: restart budget spent, restarting it at most once a second"
                );
            }
            return Err(CodecError::Instance(format!(
                "plugin {} was restarted {} times within a minute; calls are refused until its next restart (at most one a second)",
                self.plugin.name(),
                self.recent_restarts.len()
            )));
        }
        if self.recent_restarts.len() >= budget {
            self.recent_restarts.pop_front();
        }
        self.recent_restarts.push_back(now);
        self.replaced += 1;
        tracing::warn!(
            plugin = self.plugin.name(),
            "replacing poisoned plugin instance"
        );
        drop(poisoned);
        let fresh = match self.spare.take() {
            Some(spare) => spare,
            None => PluginInstance::start(&self.plugin)?,
        };
        self.instance = Some(fresh);
        self.spare = PluginInstance::start(&self.plugin).ok();
        Ok(())
    }

    /// The instance `at` names.
    fn instance_at(&mut self, at: At) -> Result<&mut PluginInstance, CodecError> {
        match at {
            At::Current => self.instance.as_mut(),
            At::Retired(i) => self.retired.get_mut(i).map(|r| &mut r.instance),
        }
        .ok_or(CodecError::Instance("no instance".into()))
    }

    /// Where `frame`'s context is, its id and cached id: on the current instance, or on the
    /// retired instance that decoded it (live reload: a decoded frame is encoded on the
    /// instance that decoded it). A frame whose context is gone (released after an encode,
    /// its instance replaced, or another codec's) is re-decoded from its raw bytes on a fresh
    /// context of the current instance first.
    fn frame_ctx(&mut self, frame: &mut Frame) -> Result<(At, u32, u64), CodecError> {
        const FOREIGN: CodecError =
            CodecError::WrongFrame("the frame was not decoded by a Wasm codec");
        self.ready()?;
        let state = frame
            .state()
            .downcast_ref::<WasmFrameState>()
            .ok_or(FOREIGN)?;
        if !state.released {
            let (ctx, id) = (state.ctx, state.cached_id);
            let on = |inst: &PluginInstance| Rc::ptr_eq(&state.owner, inst.dropped_queue());
            if self.instance.as_ref().is_some_and(on) {
                return Ok((At::Current, ctx, id));
            }
            if let Some(i) = self.retired.iter().position(|r| on(&r.instance)) {
                let inst = &mut self.retired[i].instance;
                if inst.lifecycle() == Lifecycle::Ready {
                    inst.release_dropped()?;
                    return Ok((At::Retired(i), ctx, id));
                }
            }
        }
        let inst = self.instance_at(At::Current)?;
        let raw = frame.raw().clone();
        if raw.is_empty() {
            return Err(CodecError::ContextLost);
        }
        let ctx = inst.new_ctx()?;
        let outcome = inst.call_with_input(Decode, &raw, |ptr, len| (ctx, ptr, len));
        let id = match outcome {
            Ok(0) => match inst
                .result(BufferType::DecodeData as u32)
                .map(DecodeResultView::parse)
            {
                Some(Ok(view)) if view.drain as usize == raw.len() => Some(view.id),
                _ => None,
            },
            Ok(_) => None,
            Err(e) => return Err(e),
        };
        let Some(id) = id else {
            inst.delete_ctx(ctx)?;
            return Err(CodecError::ContextLost);
        };
        // Replacing the state drops the old one, which hands its context back to its own
        // (replaced) instance's queue.
        let state = frame
            .state_mut()
            .downcast_mut::<WasmFrameState>()
            .ok_or(FOREIGN)?;
        *state = WasmFrameState {
            ctx,
            cached_id: id,
            owner: Rc::clone(inst.dropped_queue()),
            released: false,
            told: state.told,
        };
        Ok((At::Current, ctx, id))
    }

    /// Runs an encode on `ctx` of the instance `at` with the §5.3 input in `self.scratch`;
    /// appends the frame to `out` and returns the id the guest reports for it.
    fn encode_scratch(&mut self, at: At, ctx: u32, out: &mut BytesMut) -> Result<u64, CodecError> {
        let inst = match at {
            At::Current => self.instance.as_mut(),
            At::Retired(i) => self.retired.get_mut(i).map(|r| &mut r.instance),
        }
        .ok_or(CodecError::Instance("no instance".into()))?;
        match inst.call_with_input(Encode, &self.scratch, |ptr, len| (ctx, ptr, len))? {
            0 => {}
            status => {
                return Err(CodecError::Rejected {
                    call: Encode::NAME,
                    status,
                })
            }
        }
        let result = inst
            .result(BufferType::EncodeData as u32)
            .ok_or(CodecError::NoResult { call: Encode::NAME })?;
        let view = EncodeResultView::parse(result).map_err(|source| CodecError::BadResult {
            call: Encode::NAME,
            source,
        })?;
        out.extend_from_slice(view.frame);
        Ok(view.id)
    }

    /// Builds a header-less §5.3 input in `self.scratch`.
    fn scratch_command(
        &mut self,
        flag: u8,
        replaced: u64,
        command: u64,
        timeout_or_status: u32,
        payload: &[u8],
    ) {
        self.scratch.clear();
        write_host_command(
            &mut self.scratch,
            &[][..],
            flag,
            replaced,
            command,
            timeout_or_status,
            payload,
        );
    }

    /// Runs `f` on a fresh context, deleting it afterwards whatever happens.
    fn with_fresh_ctx<T>(
        &mut self,
        f: impl FnOnce(&mut WasmCodec, u32) -> Result<T, CodecError>,
    ) -> Result<T, CodecError> {
        let ctx = self.ready()?.new_ctx()?;
        let r = f(self, ctx);
        let deleted = match self.instance.as_mut() {
            Some(inst) => inst.delete_ctx(ctx),
            None => Ok(()),
        };
        let value = r?;
        deleted.map(|()| value)
    }
}

impl Codec for WasmCodec {
    fn protocol(&self) -> &str {
        self.plugin.protocol()
    }

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        let r = self.decode_frame(buf);
        self.counted(r)
    }

    fn context_stats(&self) -> Option<ContextStats> {
        Some(WasmCodec::context_stats(self))
    }

    fn bytes_needed(&mut self, buf: &[u8]) -> Option<usize> {
        match self.last_need {
            Some((seen, needed)) if seen == buf.len() => Some(needed),
            _ => None,
        }
    }

    /// Asks the current instance's optional `rpc_sidecar_response_code` export; without it
    /// (or when it answers 0, or the call fails) the host default,
    /// [`codec_abi::default_response_code`]. A failed call counts as a codec error and
    /// poisons the instance like any other.
    fn response_code(&mut self, response: &Frame) -> u32 {
        let status = response.timeout_or_status();
        let asked = match self.ready() {
            Ok(inst) => inst.response_code(status),
            Err(e) => Err(e),
        };
        match self.counted(asked) {
            Ok(Some(code)) => code,
            Ok(None) => codec_abi::default_response_code(status),
            Err(e) => {
                tracing::warn!(status, cause = %e, "response code mapping failed; using the default");
                codec_abi::default_response_code(status)
            }
        }
    }

    /// The plugin's `rpc_sidecar_check` when it has one and implements it; otherwise (a
    /// TinyGo plugin, or the SDK's default answer "not implemented", remembered) a trial
    /// decode on a copy of the bytes. At most one guest call of either kind per call, plus
    /// the deletion of a trial frame's context at the next call. A failure counts as a
    /// codec error and poisons the instance like any other.
    fn detect(&mut self, first: &[u8]) -> Result<Detect, CodecError> {
        let r = self.detect_bytes(first);
        self.counted(r)
    }

    fn encode(&mut self, frame: &mut Frame, id: u64, out: &mut BytesMut) -> Result<(), CodecError> {
        let r = self.encode_frame(frame, id, out);
        self.counted(r)
    }

    fn keepalive(&mut self, id: u64) -> Result<Option<Bytes>, CodecError> {
        let r = self.keepalive_frame(id);
        self.counted(r)
    }

    fn goaway(&mut self, id: u64) -> Result<Option<Bytes>, CodecError> {
        let r = self.goaway_frame(id);
        self.counted(r)
    }

    fn reply_keepalive(
        &mut self,
        request: &mut Frame,
        out: &mut BytesMut,
    ) -> Result<(), CodecError> {
        let r = self.reply_keepalive_frame(request, out);
        self.counted(r)
    }

    fn hijack(
        &mut self,
        request: &Frame,
        status: u32,
        id: u64,
        out: &mut BytesMut,
    ) -> Result<(), CodecError> {
        let r = self.hijack_frame(request, status, id, out);
        self.counted(r)
    }

    fn as_any(&self) -> Option<&dyn Any> {
        Some(self)
    }

    fn as_any_mut(&mut self) -> Option<&mut dyn Any> {
        Some(self)
    }
}

/// The codec operations themselves; the [`Codec`] impl counts their failures.
impl WasmCodec {
    fn detect_bytes(&mut self, first: &[u8]) -> Result<Detect, CodecError> {
        if first.is_empty() {
            return Ok(Detect::NeedMore);
        }
        if !self.check_unimplemented {
            let inst = self.ready()?;
            if inst.has_check() {
                match inst.check(first)? {
                    Some(Detect::NotImplemented) => self.check_unimplemented = true,
                    Some(verdict) => return Ok(verdict),
                    None => {}
                }
            }
        }
        detect_by_decode(first, |buf| self.decode_frame(buf))
    }

    fn decode_frame(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        self.last_need = None;
        if buf.is_empty() {
            return Ok(None);
        }
        let max = self.plugin.limits().max_frame_bytes;
        let first = (self.typical_frame * 2).clamp(MIN_WINDOW, FIRST_WINDOW);
        let mut window = buf.len().min(first).min(max);
        let inst = self.ready()?;
        let ctx = inst.spare_ctx()?;
        // ABI §6.2: the guest keeps no partial state, so a window that turns out too short is
        // just retried larger (×4) while more bytes are buffered: no O(n²) copying of a long
        // buffer of small frames.
        loop {
            match inst.call_with_input(Decode, &buf[..window], |ptr, len| (ctx, ptr, len))? {
                0 => break,
                99 if window >= max => {
                    return Err(CodecError::TooLarge {
                        what: "incomplete frame",
                        len: buf.len(),
                        limit: max,
                    })
                }
                99 if window == buf.len() => {
                    let declared = inst.decode_bytes_needed(ctx)?;
                    if let Some(len) = declared.filter(|&n| n > max) {
                        inst.discard_spare()?;
                        return Err(CodecError::TooLarge {
                            what: "declared frame",
                            len,
                            limit: max,
                        });
                    }
                    self.last_need = declared.filter(|&n| n > buf.len()).map(|n| (buf.len(), n));
                    return Ok(None);
                }
                99 => window = window.saturating_mul(4).min(buf.len()).min(max),
                status => {
                    inst.discard_spare()?;
                    return Err(CodecError::Rejected {
                        call: Decode::NAME,
                        status,
                    });
                }
            }
        }
        let call = Decode::NAME;
        let taken = match inst.result(BufferType::DecodeData as u32) {
            None => Err(CodecError::NoResult { call }),
            Some(result) => take_frame(result, buf, window)
                .map_err(|source| CodecError::BadResult { call, source }),
        };
        let decoded = match taken {
            Ok(d) => d,
            Err(e) => {
                inst.discard_spare()?;
                return Err(e);
            }
        };
        let ctx = inst
            .take_spare()
            .ok_or(CodecError::Instance("spare context vanished".into()))?;
        let state = WasmFrameState {
            ctx,
            cached_id: decoded.id,
            owner: Rc::clone(inst.dropped_queue()),
            released: false,
            told: decoded.extras.is_some(),
        };
        let kind = FrameKind::from_flag(decoded.flag);
        // The optional extension: only requests can be a GoAway (on an error, dropping
        // `state` releases the context). Told by the decode extras, or asked.
        let goaway = matches!(kind, FrameKind::Request | FrameKind::Oneway)
            && match decoded.extras {
                Some(extras) => extras.goaway,
                None => inst.decode_is_goaway(ctx)?,
            };
        self.typical_frame = (self.typical_frame * 3 + decoded.raw.len()) / 4;
        Ok(Some(
            Frame::new(FrameParts {
                kind,
                id: decoded.id,
                timeout_or_status: decoded.timeout_or_status,
                headers: decoded.headers,
                header_section: decoded.header_section,
                raw: decoded.raw,
                payload: decoded.payload,
                state: Box::new(state),
            })
            .with_goaway(goaway)
            .with_id_field(decoded.extras.and_then(|e| e.id_field)),
        ))
    }

    fn encode_frame(
        &mut self,
        frame: &mut Frame,
        id: u64,
        out: &mut BytesMut,
    ) -> Result<(), CodecError> {
        // Unchanged headers and a guest that said where the id is (in the decode extras): the
        // original bytes with only the id replaced, no guest call at all, whatever became of
        // the frame's context.
        let told = frame
            .state()
            .downcast_ref::<WasmFrameState>()
            .is_some_and(|s| s.told);
        if let (false, true, Some(field)) = (frame.headers_changed(), told, frame.id_field()) {
            if forward_with_id(frame, field, id, out) {
                return Ok(());
            }
        }
        let (at, ctx, cached_id) = self.frame_ctx(frame)?;
        // Unchanged headers and a guest that says where the id is: the original bytes with
        // only the id replaced, no encode call (`optional_exports::ID_FIELD`).
        if !frame.headers_changed() && !told {
            if let Some(field) = self.instance_at(at)?.id_field(ctx)? {
                if forward_with_id(frame, field, id, out) {
                    return Ok(());
                }
            }
        }
        let flag = frame.kind().host_flag();
        let timeout_or_status = frame.timeout_or_status();
        // ABI §6.3: the headers as decoded unless edited; P = 0 keeps the cached body.
        self.scratch.clear();
        if frame.headers_changed() {
            write_host_command(
                &mut self.scratch,
                frame.headers(),
                flag,
                id,
                cached_id,
                timeout_or_status,
                &[],
            );
        } else {
            let section: &[u8] = frame.header_section();
            write_host_command(
                &mut self.scratch,
                section,
                flag,
                id,
                cached_id,
                timeout_or_status,
                &[],
            );
        }
        let sent_id = self.encode_scratch(at, ctx, out)?;
        if let Some(state) = frame.state_mut().downcast_mut::<WasmFrameState>() {
            // ABI §6.3: the guest now caches the id it sent. The context is not needed any
            // more (a retry re-decodes): it goes back now, not when the frame drops.
            state.cached_id = sent_id;
            state.release();
        }
        Ok(())
    }

    fn keepalive_frame(&mut self, id: u64) -> Result<Option<Bytes>, CodecError> {
        self.with_fresh_ctx(|codec, ctx| {
            let inst = codec
                .instance
                .as_mut()
                .ok_or(CodecError::Instance("no instance".into()))?;
            match inst.call(Keepalive, (ctx, id))? {
                0 => {}
                2 => return Ok(None),
                status => {
                    return Err(CodecError::Rejected {
                        call: Keepalive::NAME,
                        status,
                    })
                }
            }
            // ABI §6.4: encode the cached heartbeat with flag 0x60, replaced = command = id.
            codec.scratch_command(FrameKind::HeartbeatRequest.host_flag(), id, id, 0, &[]);
            let mut out = BytesMut::new();
            codec.encode_scratch(At::Current, ctx, &mut out)?;
            Ok(Some(out.freeze()))
        })
    }

    fn goaway_frame(&mut self, id: u64) -> Result<Option<Bytes>, CodecError> {
        self.with_fresh_ctx(|codec, ctx| {
            let inst = codec
                .instance
                .as_mut()
                .ok_or(CodecError::Instance("no instance".into()))?;
            match inst.goaway(ctx, id)? {
                Some(0) => {}
                None | Some(2) => return Ok(None),
                Some(status) => {
                    return Err(CodecError::Rejected {
                        call: codec_abi::optional_exports::GOAWAY,
                        status,
                    })
                }
            }
            // As the heartbeat (§6.4): encode the cached request, replaced = command = id.
            codec.scratch_command(FrameKind::Request.host_flag(), id, id, 0, &[]);
            let mut out = BytesMut::new();
            codec.encode_scratch(At::Current, ctx, &mut out)?;
            Ok(Some(out.freeze()))
        })
    }

    fn reply_keepalive_frame(
        &mut self,
        request: &mut Frame,
        out: &mut BytesMut,
    ) -> Result<(), CodecError> {
        if request.kind() != FrameKind::HeartbeatRequest {
            return Err(CodecError::WrongFrame(
                "reply_keepalive needs a heartbeat request",
            ));
        }
        let (at, ctx, cached_id) = self.frame_ctx(request)?;
        let inst = self.instance_at(at)?;
        // ABI §6.5: the guest ignores ptr and len.
        match inst.call(ReplyKeepalive, (ctx, 0, 0))? {
            0 => {}
            status => {
                return Err(CodecError::Rejected {
                    call: ReplyKeepalive::NAME,
                    status,
                })
            }
        }
        // ABI §6.5: encode the cached ack with flag 0x20 and the request's id.
        self.scratch_command(
            FrameKind::HeartbeatResponse.host_flag(),
            request.id(),
            cached_id,
            0,
            &[],
        );
        let sent_id = self.encode_scratch(at, ctx, out)?;
        if let Some(state) = request.state_mut().downcast_mut::<WasmFrameState>() {
            state.cached_id = sent_id;
        }
        Ok(())
    }

    fn hijack_frame(
        &mut self,
        request: &Frame,
        status: u32,
        id: u64,
        out: &mut BytesMut,
    ) -> Result<(), CodecError> {
        let raw = request.raw();
        if raw.is_empty() {
            return Err(CodecError::WrongFrame(
                "hijack needs the request's raw bytes",
            ));
        }
        let request_id = request.id();
        // ABI §6.6: always on a fresh context, the raw request as payload.
        self.with_fresh_ctx(|codec, ctx| {
            codec.scratch_command(
                request.kind().host_flag(),
                request_id,
                request_id,
                request.timeout_or_status(),
                raw,
            );
            let inst = codec
                .instance
                .as_mut()
                .ok_or(CodecError::Instance("no instance".into()))?;
            let input = &codec.scratch;
            match inst.call_with_input(Hijack, input, |ptr, len| (ctx, status, ptr, len))? {
                0 => {}
                status => {
                    return Err(CodecError::Rejected {
                        call: Hijack::NAME,
                        status,
                    })
                }
            }
            // Then encode the cached response: command id = the id inside the raw frame.
            codec.scratch_command(FrameKind::Response.host_flag(), id, request_id, 0, &[]);
            codec.encode_scratch(At::Current, ctx, out).map(|_| ())
        })
    }
}

/// Forwards an unchanged Wasm-decoded `frame` as its own bytes with the id at `field` set to
/// `id`; on success its context goes back now, as after an encode (the guest's cached command
/// keeps its id, which `cached_id` still names).
fn forward_with_id(
    frame: &mut Frame,
    field: codec_abi::IdField,
    id: u64,
    out: &mut BytesMut,
) -> bool {
    if !frame.write_raw_with_id(field, id, out) {
        return false;
    }
    if let Some(state) = frame.state_mut().downcast_mut::<WasmFrameState>() {
        state.release();
    }
    true
}

/// A decoded frame's parts, taken off the connection buffer.
struct Decoded {
    extras: Option<codec_abi::DecodeExtras>,
    headers: HeaderMap,
    header_section: Bytes,
    flag: u8,
    id: u64,
    timeout_or_status: u32,
    raw: Bytes,
    payload: Bytes,
}

/// Parses a §5.4 `result` of decoding the first `input_len` bytes of `buf` and, only if it is
/// valid (drain within the input, header map well-formed: §8.6 bounds it to H), splits the
/// frame's drain bytes off `buf` as its raw bytes (zero copy).
fn take_frame(result: &[u8], buf: &mut BytesMut, input_len: usize) -> Result<Decoded, LayoutError> {
    let view = DecodeResultView::parse(result)?;
    let drain = view.drain as usize;
    if drain == 0 || drain > input_len {
        return Err(LayoutError::BadLength {
            what: "drain length",
            value: u64::from(view.drain),
        });
    }
    let headers = HeaderMap::decode(view.headers)?;
    let raw = buf.split_to(drain).freeze();
    let (payload, header_section) = payload_and_headers(&raw, view.payload, view.headers);
    Ok(Decoded {
        extras: view.extras,
        headers,
        header_section,
        flag: view.flag,
        id: view.id,
        timeout_or_status: view.timeout_or_status,
        raw,
        payload,
    })
}

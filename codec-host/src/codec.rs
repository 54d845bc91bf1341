//! The one seam between the sidecar and protocols (`ARCHITECTURE.md`, "The one seam"): a
//! protocol-neutral codec API implemented by the Wasm plugin host and by native codecs.
//!
//! A codec instance belongs to one worker thread. [`Frame`]s it produces hold their plugin
//! context and must be encoded by (or dropped on) that same worker; dropping a frame releases
//! its context exactly once (ABI §6.7).
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use std::any::Any;
use std::fmt;

use bytes::{Bytes, BytesMut};
pub use codec_abi::{Detect, FrameKind, HeaderMap};

use crate::error::CodecError;

/// The protocol-neutral codec operations (ABI §6.2–§6.6).
pub trait Codec {
    /// The protocol name this codec serves (e.g. `x-bolt`).
    fn protocol(&self) -> &str;

    /// Decodes one frame from the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds only part of a frame (nothing is consumed), or
    /// `Ok(Some(frame))` after splitting the frame's bytes off the front of `buf`.
    ///
    /// # Errors
    /// [`CodecError`] when the bytes are not this protocol or the plugin failed; the
    /// connection they came from cannot be trusted any more.
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError>;

    /// After [`Codec::decode`] answered `Ok(None)` for `buf`: the total length the incomplete
    /// frame at the front of `buf` declares, when the codec knows it, so the caller can wait
    /// for that many bytes before decoding again (decode work proportional to the bytes that
    /// arrive, not one full decode per read). `None` (the default): not known.
    fn bytes_needed(&mut self, buf: &[u8]) -> Option<usize> {
        let _ = buf;
        None
    }

    /// Protocol auto-detection: whether `first`, the first bytes of a downstream connection
    /// (what has arrived so far), are this protocol: [`Detect::Match`], [`Detect::NoMatch`]
    /// or [`Detect::NeedMore`]; never [`Detect::NotImplemented`]. Nothing is consumed and
    /// no frame is kept. The default tries a decode on a copy of the bytes
    /// ([`detect_by_decode`]); codecs whose protocol can tell from its first bytes answer
    /// from them (the Wasm export `rpc_sidecar_check`, `Protocol::check` natively).
    ///
    /// # Errors
    /// [`CodecError`] when the codec itself failed (a plugin trap): the candidate cannot
    /// serve the connection.
    fn detect(&mut self, first: &[u8]) -> Result<Detect, CodecError> {
        detect_by_decode(first, |buf| self.decode(buf))
    }

    /// The proxy's HTTP-like code (200, 500, 502, 503, 504, …) for `response`'s protocol
    /// status: the reverse of the hijack mapping (MOSN's `MappingHeaderStatusCode`), which
    /// retries on response statuses compare with `retry_policy.status_codes`. The default
    /// is [`codec_abi::default_response_code`] (0 → 200, an HTTP code is kept, else 500).
    fn response_code(&mut self, response: &Frame) -> u32 {
        codec_abi::default_response_code(response.timeout_or_status())
    }

    /// The plugin context counters of a codec that keeps guest contexts (Wasm); `None` for
    /// codecs that keep none.
    fn context_stats(&self) -> Option<ContextStats> {
        None
    }

    /// This codec as [`Any`], for downcasting to its concrete type (plugin management: see
    /// `WasmCodec::of`); `None` (the default) for codecs that offer none.
    fn as_any(&self) -> Option<&dyn Any> {
        None
    }

    /// [`Codec::as_any`], mutable.
    fn as_any_mut(&mut self) -> Option<&mut dyn Any> {
        None
    }

    /// Encodes `frame` with `id` as its protocol id and appends the wire bytes to `out`.
    /// This is how ids are rewritten toward upstream and restored toward downstream. The
    /// frame stays usable: it may be encoded again (a retry) with another id.
    ///
    /// # Errors
    /// [`CodecError`] when the plugin refuses or fails; nothing is appended.
    fn encode(&mut self, frame: &mut Frame, id: u64, out: &mut BytesMut) -> Result<(), CodecError>;

    /// Builds a heartbeat request with `id`; `Ok(None)` when the protocol has no keepalive.
    ///
    /// # Errors
    /// [`CodecError`] when the plugin fails.
    fn keepalive(&mut self, id: u64) -> Result<Option<Bytes>, CodecError>;

    /// Builds the protocol's GoAway request with `id` (tells the peer to send no new
    /// requests on this connection); `Ok(None)` (the default) when the protocol has none.
    ///
    /// # Errors
    /// [`CodecError`] when the plugin fails.
    fn goaway(&mut self, id: u64) -> Result<Option<Bytes>, CodecError> {
        let _ = id;
        Ok(None)
    }

    /// Builds the ack of a decoded heartbeat request (same id) and appends it to `out`.
    ///
    /// # Errors
    /// [`CodecError`] when `request` is not a heartbeat request or the plugin fails.
    fn reply_keepalive(
        &mut self,
        request: &mut Frame,
        out: &mut BytesMut,
    ) -> Result<(), CodecError>;

    /// Answers `request` on the server's behalf: builds a protocol response for the proxy's
    /// HTTP-like `status` (404, 502, 504, …; the plugin maps it to a protocol status), with
    /// `id` as its protocol id, and appends it to `out`.
    ///
    /// # Errors
    /// [`CodecError`] when the plugin cannot build the response.
    fn hijack(
        &mut self,
        request: &Frame,
        status: u32,
        id: u64,
        out: &mut BytesMut,
    ) -> Result<(), CodecError>;
}

/// Detection by trial decode, for protocols that cannot tell from their first bytes (MOSN's
/// TinyGo plugins have no `rpc_sidecar_check`): `decode` runs on a copy of `first` (so
/// nothing is consumed; the frame, if any, is dropped at once): a frame = match, need more =
/// need more, a protocol error = no match. A failure of the codec itself (a trap, CPU
/// exhausted, no instance) is returned as the error.
///
/// # Errors
/// [`CodecError::Trap`], [`CodecError::CpuExhausted`] and [`CodecError::Instance`] from
/// `decode`.
pub fn detect_by_decode(
    first: &[u8],
    decode: impl FnOnce(&mut BytesMut) -> Result<Option<Frame>, CodecError>,
) -> Result<Detect, CodecError> {
    if first.is_empty() {
        return Ok(Detect::NeedMore);
    }
    let mut copy = BytesMut::from(first);
    match decode(&mut copy) {
        Ok(Some(_)) => Ok(Detect::Match),
        Ok(None) => Ok(Detect::NeedMore),
        Err(
            e @ (CodecError::Trap { .. }
            | CodecError::CpuExhausted { .. }
            | CodecError::Instance(_)),
        ) => Err(e),
        Err(_) => Ok(Detect::NoMatch),
    }
}

/// Context counters of a codec's current instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextStats {
    /// Contexts alive in the guest (frames not yet dropped and released, plus the one
    /// waiting for the next decode).
    pub live: usize,
    /// The most contexts alive at once on any instance of this codec.
    pub live_max: usize,
    /// Contexts created on this instance.
    pub created: u64,
    /// Contexts deleted (`proxy_on_delete`) on this instance.
    pub deleted: u64,
    /// How many times the codec replaced a poisoned instance.
    pub replaced_instances: u64,
    /// Calls refused while the restart budget (`Limits::max_restarts_per_minute`) was spent.
    pub refused_calls: u64,
}

/// A decoded frame: what the proxy needs to route, rewrite and answer it.
pub struct Frame {
    kind: FrameKind,
    id: u64,
    timeout_or_status: u32,
    headers: HeaderMap,
    headers_changed: bool,
    /// The §5.1 encoding of `headers` as decoded; reused by encode while unchanged.
    header_section: Bytes,
    raw: Bytes,
    payload: Bytes,
    state: FrameState,
    goaway: bool,
    id_field: Option<codec_abi::IdField>,
}

/// Codec-private state that travels with a frame (a plugin context, a native command).
/// Dropping it releases what it holds.
pub type FrameState = Box<dyn Any>;

/// What a codec reports for one decoded frame; turned into a [`Frame`] by [`Frame::new`].
pub struct FrameParts {
    /// What the frame is.
    pub kind: FrameKind,
    /// The protocol id as it is in `raw`.
    pub id: u64,
    /// Request: timeout in ms (`u32::MAX` = none, 0 = unset); response: protocol status.
    pub timeout_or_status: u32,
    /// The header map (what routing sees).
    pub headers: HeaderMap,
    /// The §5.1 encoding of `headers`.
    pub header_section: Bytes,
    /// The whole wire frame.
    pub raw: Bytes,
    /// The protocol body.
    pub payload: Bytes,
    /// Codec-private state (plugin context); dropped with the frame.
    pub state: FrameState,
}

impl Frame {
    /// Assembles a frame from what a codec decoded.
    pub fn new(parts: FrameParts) -> Frame {
        Frame {
            kind: parts.kind,
            id: parts.id,
            timeout_or_status: parts.timeout_or_status,
            headers: parts.headers,
            headers_changed: false,
            header_section: parts.header_section,
            raw: parts.raw,
            payload: parts.payload,
            state: parts.state,
            goaway: false,
            id_field: None,
        }
    }

    /// Records where the frame's id sits in its raw bytes, when the codec knows the frame
    /// can be forwarded with only those bytes replaced ([`Frame::write_raw_with_id`]).
    pub fn with_id_field(mut self, field: Option<codec_abi::IdField>) -> Frame {
        self.id_field = field;
        self
    }

    /// Where the frame's id sits in its raw bytes, if its codec said so at decode.
    pub fn id_field(&self) -> Option<codec_abi::IdField> {
        self.id_field
    }

    /// Marks the frame as the protocol's GoAway (a codec that recognises one).
    pub fn with_goaway(mut self, goaway: bool) -> Frame {
        self.goaway = goaway;
        self
    }

    /// True when the frame is the protocol's GoAway: the peer asks that no new requests be
    /// sent on this connection. Such a frame is a request by its kind, and never forwarded.
    pub fn is_goaway(&self) -> bool {
        self.goaway
    }

    /// What the frame is.
    pub fn kind(&self) -> FrameKind {
        self.kind
    }

    /// The protocol id in the frame's original bytes.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// For requests: the frame's own timeout in milliseconds, `None` when the frame sets
    /// none (0, or a negative value such as Bolt's -1).
    pub fn timeout_ms(&self) -> Option<u32> {
        match self.timeout_or_status {
            0 => None,
            t if t > i32::MAX as u32 => None,
            t => Some(t),
        }
    }

    /// For responses: the protocol status; for requests: the raw timeout field.
    pub fn timeout_or_status(&self) -> u32 {
        self.timeout_or_status
    }

    /// The header map (read-only).
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Why the codec could not parse this request's header section, if it could not: the
    /// value a codec puts under [`codec_abi::HEADER_DECODE_ERROR`] when the frame is
    /// complete but its headers are not (the frame is still reported, so the proxy can
    /// answer it with a hijack instead of closing the connection). `None` for frames whose
    /// headers parsed, and for a value that is not UTF-8.
    pub fn header_decode_error(&self) -> Option<&str> {
        self.headers.get_str(codec_abi::HEADER_DECODE_ERROR)
    }

    /// The header map for editing; marks the headers changed so encode sends them.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        self.headers_changed = true;
        &mut self.headers
    }

    /// Lends the header map out to an editor that reports whether it changed anything
    /// (a proxy-wasm filter); give it back with [`Frame::restore_headers`]. Until then the
    /// frame has an empty map.
    pub fn take_headers(&mut self) -> HeaderMap {
        std::mem::take(&mut self.headers)
    }

    /// Gives back the map taken with [`Frame::take_headers`]; `changed` marks the headers
    /// changed (as [`Frame::headers_mut`] does), so encode sends the new ones.
    pub fn restore_headers(&mut self, headers: HeaderMap, changed: bool) {
        self.headers = headers;
        self.headers_changed |= changed;
    }

    /// True once [`Frame::headers_mut`] was called.
    pub fn headers_changed(&self) -> bool {
        self.headers_changed
    }

    /// The §5.1 encoding of the headers as decoded (stale once headers changed).
    pub fn header_section(&self) -> &Bytes {
        &self.header_section
    }

    /// The frame exactly as it was read from the wire.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// Appends the frame's own bytes with only the id at `field` set to `id` (the forward of
    /// an unchanged frame, no encode); `false`, with `out` as it was, when the field lies
    /// outside the frame or `id` does not fit it.
    pub fn write_raw_with_id(
        &self,
        field: codec_abi::IdField,
        id: u64,
        out: &mut BytesMut,
    ) -> bool {
        let start = out.len();
        out.extend_from_slice(&self.raw);
        if field.write(&mut out[start..], id) {
            return true;
        }
        out.truncate(start);
        false
    }

    /// The protocol body.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Length of the frame on the wire.
    pub fn wire_len(&self) -> usize {
        self.raw.len()
    }

    /// Codec-private state, for the codec that made the frame.
    pub fn state(&self) -> &dyn Any {
        self.state.as_ref()
    }

    /// Codec-private state, mutable.
    pub fn state_mut(&mut self) -> &mut dyn Any {
        self.state.as_mut()
    }

    /// Replaces the codec-private state (a codec that rebuilt what it dropped at decode).
    pub fn set_state(&mut self, state: FrameState) {
        self.state = state;
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("kind", &self.kind)
            .field("id", &self.id)
            .field("timeout_or_status", &self.timeout_or_status)
            .field("headers", &self.headers.len())
            .field("wire_len", &self.raw.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(timeout: u32) -> Frame {
        Frame::new(FrameParts {
            kind: FrameKind::Request,
            id: 7,
            timeout_or_status: timeout,
            headers: HeaderMap::new(),
            header_section: Bytes::new(),
            raw: Bytes::from_static(b"raw"),
            payload: Bytes::new(),
            state: Box::new(()),
        })
    }

    #[test]
    fn bolt_minus_one_and_zero_mean_no_timeout() {
        assert_eq!(frame(u32::MAX).timeout_ms(), None);
        assert_eq!(frame(0).timeout_ms(), None);
        assert_eq!(frame(3000).timeout_ms(), Some(3000));
    }

    #[test]
    fn the_header_decode_error_is_read_from_its_header() {
        assert_eq!(frame(0).header_decode_error(), None);
        let mut f = frame(0);
        f.headers_mut()
            .insert(codec_abi::HEADER_DECODE_ERROR, "truncated header value");
        assert_eq!(f.header_decode_error(), Some("truncated header value"));
        f.headers_mut()
            .insert(codec_abi::HEADER_DECODE_ERROR, vec![0xff]);
        assert_eq!(f.header_decode_error(), None);
    }

    #[test]
    fn editing_headers_marks_them_changed() {
        let mut f = frame(0);
        assert!(!f.headers_changed());
        f.headers_mut().insert("k", "v");
        assert!(f.headers_changed());
    }
}

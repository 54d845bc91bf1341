//! What a plugin author implements: a [`Protocol`] that decodes bytes into [`Command`]s and
//! encodes them back, plus keepalive, reply and hijack.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use codec_abi::{Detect, FrameKind, HeaderMap};

use crate::error::ProtocolError;

/// One decoded (or built) protocol frame, cached by the dispatcher per context (ABI §6.1).
pub trait Command: Sized + 'static {
    /// What the frame is (request, oneway, response, heartbeat request or ack).
    fn kind(&self) -> FrameKind;

    /// True when this request is the protocol's GoAway (the peer asks that no new requests
    /// be sent on this connection). Reported through the optional export
    /// `rpc_sidecar_decode_is_goaway`; the standard decode report stays a request. The
    /// default: the protocol has no GoAway.
    fn is_goaway(&self) -> bool {
        false
    }

    /// Where the id sits in this command's frame as decoded, when that frame can be
    /// forwarded unchanged by replacing only those bytes (reported through the optional
    /// export `rpc_sidecar_id_field`, so the host skips the encode call). `None` (the
    /// default): encode always runs, e.g. for a changed command or a frame whose bytes a
    /// checksum covers.
    fn id_field(&self) -> Option<codec_abi::IdField> {
        None
    }

    /// The protocol id, widened to `u64`.
    fn id(&self) -> u64;

    /// Sets the protocol id (truncated to the protocol's width). Changing only the id keeps
    /// an encoder's fast path (copy the original bytes, patch the id).
    fn set_id(&mut self, id: u64);

    /// The header map: what routing and filters see.
    fn headers(&self) -> &HeaderMap;

    /// The header map for a holder that keeps its own copy (the native host's frame). The
    /// default clones `headers()`; a command that can rebuild its map from its bytes may move
    /// it out instead (a later `headers()` builds it again).
    fn take_headers(&mut self) -> HeaderMap {
        self.headers().clone()
    }

    /// Number of header pairs, as `headers().len()`. Override when the count is known
    /// without building the map (encode compares it with the host's count, §6.3 step 5).
    fn header_count(&self) -> usize {
        self.headers().len()
    }

    /// The §5.1 encoding of `headers()` when the command has it at hand (e.g. the unchanged
    /// header section of a decoded frame in a protocol using that encoding); the decode result
    /// then copies it instead of encoding the map. `None` (the default) = encode the map.
    fn encoded_headers(&self) -> Option<&[u8]> {
        None
    }

    /// The header map, for editing. Implementations mark the command changed, so the next
    /// encode rebuilds the frame from its fields.
    fn headers_mut(&mut self) -> &mut HeaderMap;

    /// The protocol body (no protocol header, class or header map).
    fn body(&self) -> &[u8];

    /// Replaces the body; marks the command changed.
    fn set_body(&mut self, body: Vec<u8>);

    /// Request: the timeout in ms as on the wire (Bolt's -1 is `u32::MAX`); response: the
    /// protocol status.
    fn timeout_or_status(&self) -> u32;
}

/// A command decoded from the front of a buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded<C> {
    /// The command.
    pub command: C,
    /// Bytes it took from the front of the buffer: the whole frame (> 0).
    pub consumed: usize,
}

/// A protocol codec. One instance serves one root context (one plugin configuration) and all
/// its stream contexts; natively, one instance per connection or worker.
pub trait Protocol: 'static {
    /// The protocol's command type.
    type Command: Command;

    /// The protocol name (e.g. `x-bolt`).
    fn name(&self) -> &str;

    /// Decodes one frame from the front of `data`.
    ///
    /// Returns `Ok(None)` when `data` holds only part of a frame (nothing is consumed; call
    /// again with more bytes), `Ok(Some(decoded))` with the frame and its length. Must not
    /// allocate for a frame before all of it is present.
    ///
    /// # Errors
    /// When `data` is not this protocol or the stream is corrupt; the connection cannot be
    /// trusted any more.
    fn decode(&mut self, data: &[u8]) -> Result<Option<Decoded<Self::Command>>, ProtocolError>;

    /// After [`Protocol::decode`] answered `Ok(None)` for `data`: the total length the
    /// incomplete frame at the front of `data` declares, once its fixed part is present.
    /// The host waits for that many bytes before decoding again, so a peer trickling a large
    /// frame costs decode work in proportion to its bytes, not one full decode per read.
    /// `None` (the default): not known; the host backs off on its own.
    fn frame_len(&self, data: &[u8]) -> Option<usize> {
        let _ = data;
        None
    }

    /// Protocol auto-detection: whether `data`, the first bytes of a connection, are this
    /// protocol (optional export `rpc_sidecar_check`, asked by a host choosing among several
    /// codecs for one listener). Cheap and allocation-free: look at magic bytes and fixed
    /// fields, never decode a frame. Answer [`Detect::NeedMore`] while `data` is too short to
    /// tell, [`Detect::Match`] or [`Detect::NoMatch`] as soon as it is not. The default,
    /// [`Detect::NotImplemented`], makes the host try [`Protocol::decode`] on the bytes
    /// instead (a frame = match, an error = no match).
    fn check(&self, data: &[u8]) -> Detect {
        let _ = data;
        Detect::NotImplemented
    }

    /// Appends the wire bytes of `command` to `out`.
    ///
    /// # Errors
    /// When the command cannot be represented on the wire (e.g. a field too long); `out` may
    /// hold a partial frame then and must be discarded by the caller.
    fn encode(&mut self, command: &Self::Command, out: &mut Vec<u8>) -> Result<(), ProtocolError>;

    /// Builds a heartbeat request with `id`. `None` (the default) = the protocol has no
    /// heartbeat (ABI §6.4 status 2).
    fn keepalive(&mut self, id: u64) -> Option<Self::Command> {
        let _ = id;
        None
    }

    /// Builds a GoAway request with `id` (optional export `rpc_sidecar_goaway`). `None` (the
    /// default) = the protocol has no GoAway (status 2).
    fn goaway(&mut self, id: u64) -> Option<Self::Command> {
        let _ = id;
        None
    }

    /// Builds the answer to a heartbeat request. `None` (the default) = no answer: the
    /// protocol has no heartbeat, or `request` is not a heartbeat request.
    fn reply_keepalive(&mut self, request: &Self::Command) -> Option<Self::Command> {
        let _ = request;
        None
    }

    /// Maps the proxy's HTTP-like code (404, 502, 504, ...) to a protocol status; the default
    /// passes it through.
    fn map_status(&self, proxy_code: u32) -> u32 {
        proxy_code
    }

    /// The reverse of [`Protocol::map_status`] (MOSN's `MappingHeaderStatusCode`): the
    /// proxy's HTTP-like code (200, 500, 502, 503, 504, …) for a response with protocol
    /// status `status`; retries on response statuses use it (optional export
    /// `rpc_sidecar_response_code`). The default is [`codec_abi::default_response_code`]:
    /// 0 → 200, an HTTP code (100–599) is kept, anything else → 500.
    fn response_code(&self, status: u32) -> u32 {
        codec_abi::default_response_code(status)
    }

    /// Builds a response to `request` carrying protocol status `status` (already mapped by
    /// [`Protocol::map_status`]), with the request's id.
    ///
    /// # Errors
    /// When no response can be built for `request`.
    fn hijack(
        &mut self,
        request: &Self::Command,
        status: u32,
    ) -> Result<Self::Command, ProtocolError>;

    /// Called once from `proxy_on_configure` with the VM and plugin configuration pairs
    /// (ABI §7). The default accepts anything.
    ///
    /// # Errors
    /// When the configuration is invalid; `proxy_on_configure` then returns false.
    fn configure(
        &mut self,
        vm_config: &[(String, String)],
        plugin_config: &[(String, String)],
    ) -> Result<(), ProtocolError> {
        let _ = (vm_config, plugin_config);
        Ok(())
    }
}

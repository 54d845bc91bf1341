//! [`NativeCodec`]: the [`Codec`] API over a protocol's Rust code called directly (the same
//! `codec_sdk::Protocol` a plugin is built from), for comparison with the Wasm plugin and
//! for deployments that need no sandbox.

use std::marker::PhantomData;

use bytes::{Bytes, BytesMut};
use codec_sdk::{apply_header_edits, Command, Decoded, Detect, Protocol};

use crate::codec::{detect_by_decode, Codec, Frame, FrameKind, FrameParts};
use crate::error::CodecError;
use crate::frame_slices::payload_and_headers;
use crate::limits::Limits;

/// A codec that runs protocol `P` natively. Frames carry the decoded command, so encode
/// only rewrites its id (and applies header edits by the SDK's rule,
/// [`codec_sdk::apply_header_edits`], as the guest SDK does) before encoding it.
pub struct NativeCodec<P: Protocol> {
    protocol: P,
    max_frame_bytes: usize,
    scratch: Vec<u8>,
}

/// The native command a frame carries (its [`crate::FrameState`]).
struct NativeFrameState<C> {
    command: C,
}

/// The state of a frame whose command was dropped at decode because its bytes can be
/// forwarded with only the id patched (`Command::id_field`): the common case keeps no
/// command alive and allocates no state (a zero-sized box). The rare operations that need
/// the command (encode with edited headers, a heartbeat reply, a hijack) decode it again from
/// the frame's raw bytes.
struct Redecodable<C>(PhantomData<C>);

impl<P: Protocol> NativeCodec<P> {
    /// A codec over `protocol` as it is configured, refusing incomplete frames longer than
    /// the default cap ([`Limits::DEFAULT_MAX_FRAME_BYTES`]). The protocol is not told the
    /// cap; [`NativeCodec::with_limits`] tells it, as the Wasm host tells a plugin.
    pub fn new(protocol: P) -> NativeCodec<P> {
        NativeCodec {
            protocol,
            max_frame_bytes: Limits::DEFAULT_MAX_FRAME_BYTES,
            scratch: Vec::new(),
        }
    }

    /// A codec over `protocol` enforcing `limits.max_frame_bytes` exactly as the Wasm codec
    /// does: the protocol is configured with the plugin-configuration pair `max_frame_bytes`
    /// (the only pair: `Protocol::configure(&[], &[pair])`), so it refuses a longer frame
    /// once its header announces it, and the host refuses incomplete frames longer than the
    /// limit.
    ///
    /// # Errors
    /// [`CodecError::Protocol`] when the protocol refuses the limit.
    pub fn with_limits(mut protocol: P, limits: &Limits) -> Result<NativeCodec<P>, CodecError> {
        let limits = limits.resolved();
        protocol
            .configure(&[], &[limits.frame_limit_pair()])
            .map_err(|e| CodecError::Protocol(format!("configure {}: {e}", protocol.name())))?;
        Ok(NativeCodec {
            protocol,
            max_frame_bytes: limits.max_frame_bytes,
            scratch: Vec::new(),
        })
    }

    /// The protocol.
    pub fn protocol_code(&self) -> &P {
        &self.protocol
    }

    /// Encodes `command` into `self.scratch`.
    fn encode_command(&mut self, command: &P::Command) -> Result<(), CodecError> {
        self.scratch.clear();
        self.protocol
            .encode(command, &mut self.scratch)
            .map_err(|e| CodecError::Protocol(e.to_string()))
    }
}

const FOREIGN: CodecError =
    CodecError::WrongFrame("the frame was not decoded by this native codec");

impl<P: Protocol> NativeCodec<P> {
    /// `raw` decoded again: the command of a frame that kept none ([`Redecodable`]).
    fn redecode(&mut self, raw: &[u8]) -> Result<P::Command, CodecError> {
        match self.protocol.decode(raw) {
            Ok(Some(Decoded { command, consumed })) if consumed == raw.len() => Ok(command),
            Ok(_) => Err(CodecError::ContextLost),
            Err(e) => Err(CodecError::Protocol(e.to_string())),
        }
    }

    /// The command inside a frame this codec decoded, decoded again (and kept) if the frame
    /// dropped it.
    fn command_mut<'f>(&mut self, frame: &'f mut Frame) -> Result<&'f mut P::Command, CodecError> {
        if frame.state().is::<Redecodable<P::Command>>() {
            let command = self.redecode(frame.raw())?;
            frame.set_state(Box::new(NativeFrameState { command }));
        }
        frame
            .state_mut()
            .downcast_mut::<NativeFrameState<P::Command>>()
            .map(|s| &mut s.command)
            .ok_or(FOREIGN)
    }
}

impl<P: Protocol> Codec for NativeCodec<P> {
    fn protocol(&self) -> &str {
        self.protocol.name()
    }

    /// `Protocol::check`, or a trial decode when the protocol does not implement it.
    fn detect(&mut self, first: &[u8]) -> Result<Detect, CodecError> {
        match self.protocol.check(first) {
            Detect::NotImplemented => detect_by_decode(first, |buf| self.decode(buf)),
            verdict => Ok(verdict),
        }
    }

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
        if buf.is_empty() {
            return Ok(None);
        }
        let window = buf.len().min(self.max_frame_bytes);
        let decoded = self
            .protocol
            .decode(&buf[..window])
            .map_err(|e| CodecError::Protocol(e.to_string()))?;
        let Some(Decoded {
            mut command,
            consumed,
        }) = decoded
        else {
            if window >= self.max_frame_bytes {
                return Err(CodecError::TooLarge {
                    what: "incomplete frame",
                    len: buf.len(),
                    limit: self.max_frame_bytes,
                });
            }
            return Ok(None);
        };
        if consumed == 0 || consumed > window {
            return Err(CodecError::Protocol(format!(
                "decode consumed {consumed} of {window} bytes"
            )));
        }
        let raw = buf.split_to(consumed).freeze();
        let headers = command.take_headers();
        let mut encoded = Vec::new();
        let section = match command.encoded_headers() {
            Some(section) => section,
            None => {
                headers.encode_into(&mut encoded);
                &encoded
            }
        };
        let (payload, header_section) = payload_and_headers(&raw, command.body(), section);
        let (kind, id, timeout_or_status) =
            (command.kind(), command.id(), command.timeout_or_status());
        let goaway = command.is_goaway();
        let id_field = command.id_field();
        let state: crate::FrameState = if id_field.is_some() {
            Box::new(Redecodable::<P::Command>(PhantomData))
        } else {
            Box::new(NativeFrameState { command })
        };
        Ok(Some(
            Frame::new(FrameParts {
                kind,
                id,
                timeout_or_status,
                headers,
                header_section,
                raw,
                payload,
                state,
            })
            .with_goaway(goaway)
            .with_id_field(id_field),
        ))
    }

    fn bytes_needed(&mut self, buf: &[u8]) -> Option<usize> {
        self.protocol.frame_len(buf)
    }

    fn response_code(&mut self, response: &Frame) -> u32 {
        self.protocol.response_code(response.timeout_or_status())
    }

    fn encode(&mut self, frame: &mut Frame, id: u64, out: &mut BytesMut) -> Result<(), CodecError> {
        // Unchanged, and the protocol says where its id sits: the frame's own bytes with the
        // id patched (as the Wasm codec does with `rpc_sidecar_id_field`), no encode.
        if !frame.headers_changed() {
            // Set at decode exactly for the frames that keep no command ([`Redecodable`]).
            let field = frame.id_field();
            if field.is_some_and(|field| frame.write_raw_with_id(field, id, out)) {
                return Ok(());
            }
        }
        let edited = frame.headers_changed().then(|| frame.headers().clone());
        let command = self.command_mut(frame)?;
        if let Some(edited) = &edited {
            apply_header_edits(command, edited);
        }
        command.set_id(id);
        self.scratch.clear();
        self.protocol
            .encode(command, &mut self.scratch)
            .map_err(|e| CodecError::Protocol(e.to_string()))?;
        out.extend_from_slice(&self.scratch);
        Ok(())
    }

    fn keepalive(&mut self, id: u64) -> Result<Option<Bytes>, CodecError> {
        let Some(command) = self.protocol.keepalive(id) else {
            return Ok(None);
        };
        self.encode_command(&command)?;
        Ok(Some(Bytes::copy_from_slice(&self.scratch)))
    }

    fn goaway(&mut self, id: u64) -> Result<Option<Bytes>, CodecError> {
        let Some(command) = self.protocol.goaway(id) else {
            return Ok(None);
        };
        self.encode_command(&command)?;
        Ok(Some(Bytes::copy_from_slice(&self.scratch)))
    }

    fn reply_keepalive(
        &mut self,
        request: &mut Frame,
        out: &mut BytesMut,
    ) -> Result<(), CodecError> {
        if request.kind() != FrameKind::HeartbeatRequest {
            return Err(CodecError::WrongFrame(
                "reply_keepalive needs a heartbeat request",
            ));
        }
        let command = self.command_mut(request)?;
        let reply = self
            .protocol
            .reply_keepalive(command)
            .ok_or(CodecError::WrongFrame(
                "the protocol has no heartbeat reply",
            ))?;
        self.encode_command(&reply)?;
        out.extend_from_slice(&self.scratch);
        Ok(())
    }

    fn hijack(
        &mut self,
        request: &Frame,
        status: u32,
        id: u64,
        out: &mut BytesMut,
    ) -> Result<(), CodecError> {
        let state = request.state();
        let redecoded;
        let command = if state.is::<Redecodable<P::Command>>() {
            redecoded = self.redecode(request.raw())?;
            &redecoded
        } else {
            state
                .downcast_ref::<NativeFrameState<P::Command>>()
                .map(|s| &s.command)
                .ok_or(FOREIGN)?
        };
        let mapped = self.protocol.map_status(status);
        let mut response = self
            .protocol
            .hijack(command, mapped)
            .map_err(|e| CodecError::Protocol(e.to_string()))?;
        response.set_id(id);
        self.encode_command(&response)?;
        out.extend_from_slice(&self.scratch);
        Ok(())
    }
}

impl<P: Protocol + Default> Default for NativeCodec<P> {
    fn default() -> Self {
        NativeCodec::new(P::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Bolt v1 request (no CRC: forwardable with the id patched) with one header.
    fn v1_request(id: u32) -> Vec<u8> {
        let (k, v) = (b"service", b"s");
        let mut section = Vec::new();
        section.extend_from_slice(&(k.len() as u32).to_be_bytes());
        section.extend_from_slice(k);
        section.extend_from_slice(&(v.len() as u32).to_be_bytes());
        section.extend_from_slice(v);
        let mut f = vec![0x01, 0x01, 0x00, 0x01, 0x01];
        f.extend_from_slice(&id.to_be_bytes());
        f.push(0x01);
        f.extend_from_slice(&1000u32.to_be_bytes());
        f.extend_from_slice(&0u16.to_be_bytes());
        f.extend_from_slice(&(section.len() as u16).to_be_bytes());
        f.extend_from_slice(&2u32.to_be_bytes());
        f.extend_from_slice(&section);
        f.extend_from_slice(b"hi");
        f
    }

    fn decode_one(codec: &mut NativeCodec<bolt::Bolt>, bytes: &[u8]) -> Frame {
        let mut buf = BytesMut::from(bytes);
        let frame = codec.decode(&mut buf).unwrap().expect("a whole frame");
        assert!(buf.is_empty());
        frame
    }

    #[test]
    fn a_forwardable_frame_keeps_no_command_and_rebuilds_it_when_edited() {
        let mut codec = NativeCodec::<bolt::Bolt>::default();
        let mut frame = decode_one(&mut codec, &v1_request(5));
        assert!(frame.state().is::<Redecodable<bolt::BoltCommand>>());
        assert!(frame.id_field().is_some());

        // Unchanged: the raw bytes with the id patched.
        let mut out = BytesMut::new();
        codec.encode(&mut frame, 9, &mut out).unwrap();
        assert_eq!(&out[..], &v1_request(9)[..]);

        // Edited: decoded again from the raw bytes, edited and encoded.
        frame.headers_mut().insert("x-added", "1");
        let mut out = BytesMut::new();
        codec.encode(&mut frame, 11, &mut out).unwrap();
        assert!(frame.state().is::<NativeFrameState<bolt::BoltCommand>>());
        let again = decode_one(&mut codec, &out);
        assert_eq!(again.id(), 11);
        assert_eq!(again.headers().get_str("x-added"), Some("1"));
        assert_eq!(again.headers().get_str("service"), Some("s"));
        assert_eq!(&again.payload()[..], b"hi");

        // A hijack answers from the re-decoded request.
        let frame = decode_one(&mut codec, &v1_request(6));
        let mut out = BytesMut::new();
        codec.hijack(&frame, 503, 6, &mut out).unwrap();
        let answer = decode_one(&mut codec, &out);
        assert_eq!((answer.kind(), answer.id()), (FrameKind::Response, 6));
    }
}

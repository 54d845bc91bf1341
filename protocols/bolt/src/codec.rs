//! [`Bolt`]: the SOFA Bolt v1/v2 [`Protocol`] (decode, encode, heartbeat, hijack, config).

use codec_abi::{Detect, FrameKind};
use codec_sdk::{Command, Decoded, Protocol, ProtocolError};

use crate::command::BoltCommand;
use crate::error::BoltError;
use crate::frame::{
    self, Head, CMD_GOAWAY, CMD_HEARTBEAT, CMD_RPC_RESPONSE, PROTO_V1, TYPE_REQUEST, TYPE_RESPONSE,
};
use crate::status;

/// The protocol name the plugin registers (`x-bolt`, as MOSN's).
pub const NAME: &str = "x-bolt";
/// Limit on one frame's length when nothing configures one: 64 MiB. Our host always
/// configures it (plugin-config pair [`MAX_FRAME_BYTES_KEY`], set to the host's own limit).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 << 20;
/// Smallest accepted `max_frame_bytes`: the largest fixed part plus a CRC.
pub const MIN_MAX_FRAME_BYTES: usize = 28;
/// Plugin configuration key of the frame length limit (the host sets it to its own limit).
pub const MAX_FRAME_BYTES_KEY: &str = codec_abi::MAX_FRAME_BYTES_KEY;

/// The SOFA Bolt codec (v1 and v2, with v2 CRC32).
///
/// The exposed header map is the Bolt header section (routing needs `service`). A request
/// whose header section does not parse is still decoded, with the single header
/// [`codec_abi::HEADER_DECODE_ERROR`] giving the reason. GoAway (cmdCode 100) decodes as a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bolt {
    max_frame_bytes: usize,
}

impl Default for Bolt {
    fn default() -> Self {
        Bolt {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        }
    }
}

impl Bolt {
    /// A codec refusing frames longer than `max_frame_bytes` (at least
    /// [`MIN_MAX_FRAME_BYTES`]).
    pub fn with_max_frame_bytes(max_frame_bytes: usize) -> Self {
        Bolt {
            max_frame_bytes: max_frame_bytes.max(MIN_MAX_FRAME_BYTES),
        }
    }

    /// The frame length limit.
    pub fn max_frame_bytes(&self) -> usize {
        self.max_frame_bytes
    }

    /// Decodes one frame, with the typed error.
    ///
    /// # Errors
    /// [`BoltError`] when the bytes are not Bolt, exceed the limit or fail their CRC.
    pub fn decode_frame(&self, data: &[u8]) -> Result<Option<Decoded<BoltCommand>>, BoltError> {
        let Some(head) = frame::frame_head(data, self.max_frame_bytes)? else {
            return Ok(None);
        };
        let len = head.frame_len();
        let bytes = &data[..len];
        if head.has_crc() {
            frame::verify_crc(bytes)?;
        }
        Ok(Some(Decoded {
            command: BoltCommand::decoded(head, bytes.to_vec()),
            consumed: len,
        }))
    }

    fn apply_config(&mut self, plugin_config: &[(String, String)]) -> Result<(), BoltError> {
        for (key, value) in plugin_config {
            if key == MAX_FRAME_BYTES_KEY {
                let bad = |reason| BoltError::BadConfig {
                    key: MAX_FRAME_BYTES_KEY,
                    value: value.clone(),
                    reason,
                };
                let max: usize = value.trim().parse().map_err(|_| bad("not a byte count"))?;
                if max < MIN_MAX_FRAME_BYTES {
                    return Err(bad("smaller than the largest fixed part plus a CRC (28)"));
                }
                self.max_frame_bytes = max;
            }
        }
        Ok(())
    }
}

/// A response to `request` with no class, header or content, same version (and CRC
/// setting), same id.
fn bare_response(
    request: &BoltCommand,
    cmd_code: u16,
    status: u32,
) -> Result<BoltCommand, BoltError> {
    if status > u32::from(u16::MAX) {
        return Err(BoltError::BadStatus(status));
    }
    let req = request.head();
    Ok(BoltCommand::bare(Head {
        cmd_type: TYPE_RESPONSE,
        cmd_code,
        ver2: frame::DEFAULT_VER2,
        id: request.id() as u32,
        codec: frame::CODEC_HESSIAN2,
        timeout_or_status: status,
        ..*req
    }))
}

impl Protocol for Bolt {
    type Command = BoltCommand;

    fn name(&self) -> &str {
        NAME
    }

    fn decode(&mut self, data: &[u8]) -> Result<Option<Decoded<BoltCommand>>, ProtocolError> {
        Ok(self.decode_frame(data)?)
    }

    /// The length the frame's fixed part declares (class + header + content + CRC).
    fn frame_len(&self, data: &[u8]) -> Option<usize> {
        let (_, total) = frame::declared_frame(data, self.max_frame_bytes).ok()??;
        usize::try_from(total).ok()
    }

    /// Protocol byte 1 or 2 and a plausible type and command code (at most 5 bytes).
    fn check(&self, data: &[u8]) -> Detect {
        frame::check_prefix(data)
    }

    fn encode(&mut self, command: &BoltCommand, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        Ok(command.encode_into(out)?)
    }

    /// A 22-byte v1 heartbeat request with timeout -1.
    fn keepalive(&mut self, id: u64) -> Option<BoltCommand> {
        Some(BoltCommand::bare(Head {
            proto: PROTO_V1,
            ver1: 0,
            switch: 0,
            cmd_type: TYPE_REQUEST,
            cmd_code: CMD_HEARTBEAT,
            ver2: frame::DEFAULT_VER2,
            id: id as u32,
            codec: frame::CODEC_HESSIAN2,
            timeout_or_status: u32::MAX,
            class_len: 0,
            header_len: 0,
            content_len: 0,
        }))
    }

    /// MOSN's Bolt GoAway: a v1 request with cmdCode 100, codec Hessian2, timeout 0 and no
    /// class, header or content (`xprotocol spec §1.4`).
    fn goaway(&mut self, id: u64) -> Option<BoltCommand> {
        Some(BoltCommand::bare(Head {
            proto: PROTO_V1,
            ver1: 0,
            switch: 0,
            cmd_type: TYPE_REQUEST,
            cmd_code: CMD_GOAWAY,
            ver2: frame::DEFAULT_VER2,
            id: id as u32,
            codec: frame::CODEC_HESSIAN2,
            timeout_or_status: 0,
            class_len: 0,
            header_len: 0,
            content_len: 0,
        }))
    }

    /// The heartbeat ack (status 0, same id and version); `None` unless `request` is a
    /// heartbeat request.
    fn reply_keepalive(&mut self, request: &BoltCommand) -> Option<BoltCommand> {
        if request.kind() != FrameKind::HeartbeatRequest {
            return None;
        }
        bare_response(request, CMD_HEARTBEAT, status::SUCCESS).ok()
    }

    fn map_status(&self, proxy_code: u32) -> u32 {
        status::map_status(proxy_code)
    }

    fn response_code(&self, status: u32) -> u32 {
        status::response_code(status)
    }

    /// An RPC response (cmdCode 2) with `status`, the request's id and version, and empty
    /// class, header and content (ver2 1, codec 1, as MOSN and the Go plugin).
    fn hijack(&mut self, request: &BoltCommand, status: u32) -> Result<BoltCommand, ProtocolError> {
        Ok(bare_response(request, CMD_RPC_RESPONSE, status)?)
    }

    /// Reads `max_frame_bytes` from the plugin configuration; other keys are ignored.
    fn configure(
        &mut self,
        _vm_config: &[(String, String)],
        plugin_config: &[(String, String)],
    ) -> Result<(), ProtocolError> {
        Ok(self.apply_config(plugin_config)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(value: &str) -> Vec<(String, String)> {
        vec![
            ("protocol".to_owned(), "x-bolt".to_owned()),
            (MAX_FRAME_BYTES_KEY.to_owned(), value.to_owned()),
        ]
    }

    #[test]
    fn max_frame_bytes_is_configurable() {
        let mut bolt = Bolt::default();
        assert_eq!(bolt.max_frame_bytes(), 64 << 20);
        bolt.configure(&[], &config(" 1048576 ")).unwrap();
        assert_eq!(bolt.max_frame_bytes(), 1 << 20);
        for bad in ["", "x", "27", "-5", "99999999999999999999999"] {
            let err = bolt.configure(&[], &config(bad)).unwrap_err();
            assert!(err.message().contains("max_frame_bytes"), "{bad}: {err}");
        }
        assert_eq!(
            bolt.max_frame_bytes(),
            1 << 20,
            "a refused value changes nothing"
        );
        assert_eq!(
            Bolt::with_max_frame_bytes(3).max_frame_bytes(),
            MIN_MAX_FRAME_BYTES
        );
    }
}

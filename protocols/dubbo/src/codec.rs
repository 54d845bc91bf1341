//! [`Dubbo`]: the Dubbo 2 [`Protocol`] (decode, encode, heartbeat, read-only event, hijack,
//! status mapping, config).

use codec_abi::{Detect, FrameKind};
use codec_sdk::{Command, Decoded, Protocol, ProtocolError};

use crate::command::{DubboCommand, NULL_BODY, READONLY_BODY};
use crate::error::DubboError;
use crate::frame::{self, Head, FLAG_EVENT, FLAG_REQUEST, FLAG_TWO_WAY, HESSIAN2};
use crate::hessian::write_string;
use crate::status;

/// The protocol name the plugin registers (`dubbo`, as MOSN's x-protocol).
pub const NAME: &str = "dubbo";
/// Limit on one frame's length when nothing configures one: 8 MiB, Dubbo's own default
/// `payload`. Our host always configures it (plugin-config pair [`MAX_FRAME_BYTES_KEY`]).
pub const DEFAULT_MAX_FRAME_BYTES: usize = 8 << 20;
/// Smallest accepted `max_frame_bytes`: the header.
pub const MIN_MAX_FRAME_BYTES: usize = frame::HEADER_LEN;
/// Plugin configuration key of the frame length limit (the host sets it to its own limit).
pub const MAX_FRAME_BYTES_KEY: &str = codec_abi::MAX_FRAME_BYTES_KEY;

/// The Dubbo 2 codec (`dubbo://`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dubbo {
    max_frame_bytes: usize,
}

impl Default for Dubbo {
    fn default() -> Self {
        Dubbo {
            max_frame_bytes: DEFAULT_MAX_FRAME_BYTES,
        }
    }
}

impl Dubbo {
    /// A codec refusing frames longer than `max_frame_bytes` (at least
    /// [`MIN_MAX_FRAME_BYTES`]).
    pub fn with_max_frame_bytes(max_frame_bytes: usize) -> Self {
        Dubbo {
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
    /// [`DubboError`] when the bytes are not Dubbo or exceed the limit.
    pub fn decode_frame(&self, data: &[u8]) -> Result<Option<Decoded<DubboCommand>>, DubboError> {
        let Some(head) = frame::parse_head(data, self.max_frame_bytes)? else {
            return Ok(None);
        };
        let len = head.frame_len();
        if data.len() < len {
            return Ok(None);
        }
        Ok(Some(Decoded {
            command: DubboCommand::decoded(head, data[..len].to_vec()),
            consumed: len,
        }))
    }

    fn apply_config(&mut self, plugin_config: &[(String, String)]) -> Result<(), DubboError> {
        for (key, value) in plugin_config {
            if key == MAX_FRAME_BYTES_KEY {
                let bad = |reason| DubboError::BadConfig {
                    key: MAX_FRAME_BYTES_KEY,
                    value: value.clone(),
                    reason,
                };
                let max: usize = value.trim().parse().map_err(|_| bad("not a byte count"))?;
                if max < MIN_MAX_FRAME_BYTES {
                    return Err(bad("smaller than the 16-byte header"));
                }
                self.max_frame_bytes = max;
            }
        }
        Ok(())
    }
}

/// A Hessian2 request header with `flag` bits and `id` (length set when built).
fn request_head(flag: u8, id: u64) -> Head {
    Head {
        flag: FLAG_REQUEST | flag | HESSIAN2,
        status: 0,
        id,
        body_len: 0,
    }
}

impl Protocol for Dubbo {
    type Command = DubboCommand;

    fn name(&self) -> &str {
        NAME
    }

    fn decode(&mut self, data: &[u8]) -> Result<Option<Decoded<DubboCommand>>, ProtocolError> {
        Ok(self.decode_frame(data)?)
    }

    /// 16 + the body length, once the header is there.
    fn frame_len(&self, data: &[u8]) -> Option<usize> {
        let head = frame::parse_head(data, self.max_frame_bytes).ok()??;
        Some(head.frame_len())
    }

    /// The magic 0xdabb and a flag byte naming a serialization (at most 3 bytes).
    fn check(&self, data: &[u8]) -> Detect {
        frame::check_prefix(data)
    }

    fn encode(&mut self, command: &DubboCommand, out: &mut Vec<u8>) -> Result<(), ProtocolError> {
        Ok(command.encode_into(out)?)
    }

    /// A two-way Hessian2 heartbeat event with a null body, as Dubbo's own.
    fn keepalive(&mut self, id: u64) -> Option<DubboCommand> {
        DubboCommand::built(request_head(FLAG_TWO_WAY | FLAG_EVENT, id), &NULL_BODY).ok()
    }

    /// Dubbo's read-only event (oneway, body `R`): the provider takes no new requests.
    fn goaway(&mut self, id: u64) -> Option<DubboCommand> {
        DubboCommand::built(request_head(FLAG_EVENT, id), &READONLY_BODY).ok()
    }

    /// The heartbeat answer: an event response with status OK, the same id and
    /// serialization, and the request's (null) body.
    fn reply_keepalive(&mut self, request: &DubboCommand) -> Option<DubboCommand> {
        if request.kind() != FrameKind::HeartbeatRequest {
            return None;
        }
        let head = Head {
            flag: FLAG_EVENT | request.serialization(),
            status: status::OK,
            id: request.id(),
            body_len: 0,
        };
        DubboCommand::built(head, request.body()).ok()
    }

    fn map_status(&self, proxy_code: u32) -> u32 {
        status::map_status(proxy_code)
    }

    fn response_code(&self, status: u32) -> u32 {
        status::response_code(status)
    }

    /// A Hessian2 response with `status` and the request's id; a status other than OK
    /// carries the error message as a Hessian2 string, as Dubbo writes one.
    fn hijack(
        &mut self,
        request: &DubboCommand,
        status: u32,
    ) -> Result<DubboCommand, ProtocolError> {
        let code = u8::try_from(status).map_err(|_| DubboError::BadStatus(status))?;
        let mut body = Vec::new();
        if code == status::OK {
            body.extend_from_slice(&NULL_BODY);
        } else {
            write_string(&mut body, status::message(code));
        }
        let head = Head {
            flag: HESSIAN2,
            status: code,
            id: request.id(),
            body_len: 0,
        };
        Ok(DubboCommand::built(head, &body)?)
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

    #[test]
    fn max_frame_bytes_is_configurable() {
        let mut dubbo = Dubbo::default();
        let config = |v: &str| vec![(MAX_FRAME_BYTES_KEY.to_owned(), v.to_owned())];
        dubbo.configure(&[], &config(" 4096 ")).unwrap();
        assert_eq!(dubbo.max_frame_bytes(), 4096);
        for bad in ["", "x", "15", "-1"] {
            let err = dubbo.configure(&[], &config(bad)).unwrap_err();
            assert!(err.message().contains("max_frame_bytes"), "{bad}: {err}");
        }
        assert_eq!(dubbo.max_frame_bytes(), 4096);
        assert_eq!(Dubbo::with_max_frame_bytes(1).max_frame_bytes(), 16);
    }
}

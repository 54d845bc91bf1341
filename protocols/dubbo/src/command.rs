//! [`DubboCommand`]: one Dubbo frame as the SDK sees it, keeping its original bytes so an
//! unchanged frame re-encodes by copying them and patching the 8-byte id.

use codec_abi::{FrameKind, HeaderMap, HEADER_DECODE_ERROR};
use codec_sdk::Command;

use crate::body::{self, RequestInfo};
use crate::error::DubboError;
use crate::frame::{self, Head, HEADER_LEN, HESSIAN2};
use crate::status;

/// Header: the service path of a request.
pub const SERVICE: &str = "service";
/// Header: the service version of a request.
pub const VERSION: &str = "version";
/// Header: the method name of a request.
pub const METHOD: &str = "method";
/// Header: the Dubbo protocol version of a request (the `dubbo` attachment of Dubbo itself).
pub const DUBBO_VERSION: &str = "dubbo";

/// The Hessian2 body of a read-only event (`R`), Dubbo's "send no new requests here".
pub const READONLY_BODY: [u8; 2] = [0x01, b'R'];
/// The Hessian2 null: the body of a heartbeat and of its answer.
pub const NULL_BODY: [u8; 1] = [b'N'];

/// A decoded or built Dubbo frame.
///
/// A Hessian2 request's header map holds `service`, `version`, `method`, `dubbo` and every
/// string attachment (those four keys keep the body's fields when an attachment repeats them).
/// A request whose body does not parse still decodes, with the single header
/// [`HEADER_DECODE_ERROR`] giving the reason; other frames have no headers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DubboCommand {
    /// The header as in `raw`.
    head: Head,
    /// The current id (may differ from the one in `raw`).
    id: u64,
    headers: HeaderMap,
    /// The attachments carried a `version` entry (kept when the body is rebuilt).
    version_attached: bool,
    /// The whole frame as decoded or built.
    raw: Vec<u8>,
    /// A body set after decoding; `None` = the body in `raw`.
    body: Option<Vec<u8>>,
    /// `headers_mut` was called.
    headers_changed: bool,
}

impl DubboCommand {
    /// A command for the whole frame `raw` whose header is `head`.
    pub(crate) fn decoded(head: Head, raw: Vec<u8>) -> Self {
        let mut headers = HeaderMap::new();
        let mut version_attached = false;
        let is_call = head.is_request() && !head.is_event();
        if is_call && head.serialization() == HESSIAN2 {
            match body::parse_request(&raw[HEADER_LEN..]) {
                Ok(info) => {
                    version_attached = info.attachments.iter().any(|(k, _)| k == VERSION);
                    headers = request_headers(info);
                }
                Err(err) => headers.push(HEADER_DECODE_ERROR, err.to_string()),
            }
        }
        DubboCommand {
            id: head.id,
            head,
            headers,
            version_attached,
            raw,
            body: None,
            headers_changed: false,
        }
    }

    /// A command with `body` after `head` (heartbeats, hijack responses).
    pub(crate) fn built(head: Head, body: &[u8]) -> Result<Self, DubboError> {
        let head = Head {
            body_len: u32::try_from(body.len())
                .ok()
                .filter(|&n| n <= i32::MAX as u32)
                .ok_or(DubboError::BodyTooLong(body.len()))?,
            ..head
        };
        let mut raw = Vec::with_capacity(head.frame_len());
        head.write(&mut raw, head.id);
        raw.extend_from_slice(body);
        Ok(DubboCommand::decoded(head, raw))
    }

    /// The flag byte.
    pub fn flag(&self) -> u8 {
        self.head.flag
    }

    /// The serialization id (2 Hessian2).
    pub fn serialization(&self) -> u8 {
        self.head.serialization()
    }

    /// The status byte (responses).
    pub fn status(&self) -> u8 {
        self.head.status
    }

    /// The frame's bytes as decoded or built (with the original id).
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// True when headers or body were changed since decoding: encode rebuilds the frame.
    pub fn is_changed(&self) -> bool {
        self.headers_changed || self.body.is_some()
    }

    /// Appends the wire bytes with the current id: the original bytes with the id patched
    /// when nothing changed, else the header with a body rebuilt from the fields.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), DubboError> {
        if !self.is_changed() {
            let start = out.len();
            out.extend_from_slice(&self.raw);
            frame::patch_id(&mut out[start..], self.id);
            return Ok(());
        }
        let rebuilt;
        let body = if self.headers_changed {
            rebuilt = self.body_with_headers()?;
            &rebuilt[..]
        } else {
            self.body()
        };
        let body_len = u32::try_from(body.len())
            .ok()
            .filter(|&n| n <= i32::MAX as u32)
            .ok_or(DubboError::BodyTooLong(body.len()))?;
        Head {
            body_len,
            ..self.head
        }
        .write(out, self.id);
        out.extend_from_slice(body);
        Ok(())
    }

    /// The body with the header map written back into its fields and attachments.
    fn body_with_headers(&self) -> Result<Vec<u8>, DubboError> {
        let is_call = self.head.is_request() && !self.head.is_event();
        let is_answer = !self.head.is_request() && !self.head.is_event();
        if is_answer && self.head.serialization() == HESSIAN2 && self.head.status == status::OK {
            // A response's header map holds only what was added to it (decode reads no
            // response attachments): those become attachments beside the ones it has.
            let extra = self.headers.iter().filter_map(|(k, v)| {
                Some((std::str::from_utf8(k).ok()?, std::str::from_utf8(v).ok()?))
            });
            return Ok(body::response_with_attachments(self.body(), extra)?);
        }
        if !is_call || self.head.serialization() != HESSIAN2 {
            return Err(DubboError::CannotEdit(if is_call {
                "request of another serialization"
            } else {
                "error response or event"
            }));
        }
        let body = self.body();
        let info = body::parse_request(body)?;
        let field = |key: &str, original: &str| -> String {
            self.headers.get_str(key).unwrap_or(original).to_owned()
        };
        let dubbo_version = field(DUBBO_VERSION, &info.dubbo_version);
        let service = field(SERVICE, &info.service);
        let version = field(VERSION, &info.version);
        let method = field(METHOD, &info.method);
        let attachments = self.headers.iter().filter_map(|(k, v)| {
            let (k, v) = (std::str::from_utf8(k).ok()?, std::str::from_utf8(v).ok()?);
            let field_only = [SERVICE, METHOD, DUBBO_VERSION].contains(&k)
                || (k == VERSION && !self.version_attached);
            (!field_only).then_some((k, v))
        });
        let mut out = Vec::with_capacity(body.len() + 64);
        body::write_request(
            &mut out,
            &dubbo_version,
            &service,
            &version,
            &method,
            &body[info.args.clone()],
            attachments,
        );
        Ok(out)
    }
}

/// The header map of a parsed request: its four fields, then the other string attachments.
fn request_headers(info: RequestInfo) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.push(SERVICE, info.service);
    headers.push(VERSION, info.version);
    headers.push(METHOD, info.method);
    headers.push(DUBBO_VERSION, info.dubbo_version);
    for (key, value) in info.attachments {
        if ![SERVICE, VERSION, METHOD, DUBBO_VERSION].contains(&key.as_str()) {
            headers.push(key, value);
        }
    }
    headers
}

impl Command for DubboCommand {
    /// An event request is a heartbeat, except the read-only event (a request or oneway, the
    /// protocol's GoAway); an event response is a heartbeat ack.
    fn kind(&self) -> FrameKind {
        let head = &self.head;
        match (head.is_request(), head.is_event()) {
            (false, true) => FrameKind::HeartbeatResponse,
            (false, false) => FrameKind::Response,
            (true, true) if !self.is_goaway() => FrameKind::HeartbeatRequest,
            _ if head.is_two_way() => FrameKind::Request,
            _ => FrameKind::Oneway,
        }
    }

    /// A read-only event: an event request whose body is the Hessian2 string `R`.
    fn is_goaway(&self) -> bool {
        self.head.is_request() && self.head.is_event() && self.body() == READONLY_BODY
    }

    fn id(&self) -> u64 {
        self.id
    }

    fn set_id(&mut self, id: u64) {
        self.id = id;
    }

    fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    fn headers_mut(&mut self) -> &mut HeaderMap {
        self.headers_changed = true;
        &mut self.headers
    }

    fn body(&self) -> &[u8] {
        match &self.body {
            Some(body) => body,
            None => self.raw.get(HEADER_LEN..).unwrap_or_default(),
        }
    }

    fn set_body(&mut self, body: Vec<u8>) {
        self.body = Some(body);
    }

    /// Request: 0 (unset: the Dubbo 2 header has no timeout; the consumer's `timeout`
    /// attachment is a header); response: the status byte.
    fn timeout_or_status(&self) -> u32 {
        if self.head.is_request() {
            0
        } else {
            u32::from(self.head.status)
        }
    }
}

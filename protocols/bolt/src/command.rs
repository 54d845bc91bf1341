//! [`BoltCommand`]: one Bolt frame as the SDK sees it, keeping its original bytes so an unchanged
//! frame re-encodes by copying them and patching the id (xprotocol spec
//! (`docs/xprotocol-proxy-and-bolt.md`) §1.8).

use std::cell::OnceCell;

use codec_abi::{FrameKind, HeaderMap, HEADER_DECODE_ERROR};
use codec_sdk::{header_section, Command};

use crate::error::BoltError;
use crate::frame::{self, Head, TYPE_ONEWAY, TYPE_RESPONSE};

/// A decoded or built Bolt frame.
///
/// The header map is built on first use: decoding only validates and counts the header
/// section, and an unchanged section is reported and forwarded as the original bytes.
#[derive(Debug, Clone)]
pub struct BoltCommand {
    /// The fixed part as in `raw`.
    head: Head,
    /// The current id (may differ from the one in `raw`).
    id: u32,
    /// Built from the header section on first use (or set at decode when it does not parse).
    headers: OnceCell<HeaderMap>,
    /// Pairs the map holds (valid until the map is edited).
    header_count: usize,
    /// The header section in `raw` is exactly the encoding of the map.
    section_is_map: bool,
    /// `headers_mut` was called.
    headers_changed: bool,
    /// The whole frame as decoded or built.
    raw: Vec<u8>,
    /// A body set after decoding; `None` = the content section of `raw`.
    body: Option<Vec<u8>>,
    /// Headers or body changed: encode rebuilds the frame from the fields.
    changed: bool,
}

impl BoltCommand {
    /// A command for the whole frame `raw` whose fixed part is `head`. A header section that
    /// does not parse becomes the single header [`HEADER_DECODE_ERROR`] with the reason.
    pub(crate) fn decoded(head: Head, raw: Vec<u8>) -> Self {
        let section = raw.get(head.header_range()).unwrap_or_default();
        let (headers, header_count, section_is_map) = match header_section::scan(section) {
            Ok(scan) => (OnceCell::new(), scan.pairs, scan.is_canonical()),
            Err(err) => {
                let mut map = HeaderMap::new();
                map.push(HEADER_DECODE_ERROR, err.to_string());
                (OnceCell::from(map), 1, false)
            }
        };
        BoltCommand {
            id: head.id,
            head,
            headers,
            header_count,
            section_is_map,
            headers_changed: false,
            raw,
            body: None,
            changed: false,
        }
    }

    fn header_section(&self) -> &[u8] {
        self.raw.get(self.head.header_range()).unwrap_or_default()
    }

    fn parse_headers(&self) -> HeaderMap {
        // `decoded` scanned the section: it parses (a failure left the map already set).
        HeaderMap::decode(self.header_section()).unwrap_or_default()
    }

    /// A command with no class, header or content (heartbeats, hijack responses).
    pub(crate) fn bare(head: Head) -> Self {
        let head = Head {
            class_len: 0,
            header_len: 0,
            content_len: 0,
            ..head
        };
        let mut raw = Vec::with_capacity(head.frame_len());
        frame::write_bare_frame(&mut raw, &head, head.id);
        BoltCommand::decoded(head, raw)
    }

    /// The protocol byte: 1 (v1) or 2 (v2).
    pub fn protocol_version(&self) -> u8 {
        self.head.proto
    }

    /// The command code (0 heartbeat, 1 request, 2 response, 100 GoAway).
    pub fn cmd_code(&self) -> u16 {
        self.head.cmd_code
    }

    /// The serialization codec byte (1 Hessian2, 11 protobuf, ...).
    pub fn codec(&self) -> u8 {
        self.head.codec
    }

    /// True for a v2 frame that carries a CRC32.
    pub fn has_crc(&self) -> bool {
        self.head.has_crc()
    }

    /// The class name section (e.g. `com.alipay.sofa.rpc.core.request.SofaRequest`).
    pub fn class(&self) -> &[u8] {
        self.raw.get(self.head.class_range()).unwrap_or_default()
    }

    /// The frame's bytes as decoded or built (with the original id).
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// True when headers or body were changed since decoding: encode rebuilds the frame.
    pub fn is_changed(&self) -> bool {
        self.changed
    }

    pub(crate) fn head(&self) -> &Head {
        &self.head
    }

    /// Appends the wire bytes with the current id: the original bytes with the id (and CRC)
    /// patched when nothing else changed, else a frame rebuilt from the fields.
    pub(crate) fn encode_into(&self, out: &mut Vec<u8>) -> Result<(), BoltError> {
        if !self.changed {
            let start = out.len();
            out.extend_from_slice(&self.raw);
            frame::patch_id(&mut out[start..], &self.head, self.id);
            return Ok(());
        }
        frame::write_frame(
            out,
            &self.head,
            self.id,
            self.class(),
            self.headers(),
            self.body(),
        )
    }
}

impl PartialEq for BoltCommand {
    /// Same frame fields, id, headers, body and changed state (however far the header map
    /// was built).
    fn eq(&self, other: &Self) -> bool {
        self.head == other.head
            && self.id == other.id
            && self.changed == other.changed
            && self.raw == other.raw
            && self.body == other.body
            && self.headers() == other.headers()
    }
}

impl Eq for BoltCommand {}

impl BoltCommand {
    /// Where the id is in `raw`, while the frame forwards as its original bytes with only the
    /// id replaced: unchanged, and without a CRC (which covers the id).
    fn raw_id_field(&self) -> Option<codec_abi::IdField> {
        (!self.changed && !self.head.has_crc()).then(|| codec_abi::IdField {
            offset: self.head.layout().id_at as u32,
            width: 4,
        })
    }
}

impl Command for BoltCommand {
    fn id_field(&self) -> Option<codec_abi::IdField> {
        self.raw_id_field()
    }

    /// GoAway (cmdCode 100) is a [`FrameKind::Request`]; a oneway heartbeat is a heartbeat
    /// request.
    fn kind(&self) -> FrameKind {
        match (self.head.cmd_type, self.head.cmd_code) {
            (TYPE_RESPONSE, frame::CMD_HEARTBEAT) => FrameKind::HeartbeatResponse,
            (TYPE_RESPONSE, _) => FrameKind::Response,
            (_, frame::CMD_HEARTBEAT) => FrameKind::HeartbeatRequest,
            (TYPE_ONEWAY, _) => FrameKind::Oneway,
            _ => FrameKind::Request,
        }
    }

    /// A request (two-way or oneway) with cmdCode 100 (MOSN's `CmdCodeGoAway`).
    fn is_goaway(&self) -> bool {
        self.head.cmd_type != TYPE_RESPONSE && self.head.cmd_code == frame::CMD_GOAWAY
    }

    fn id(&self) -> u64 {
        u64::from(self.id)
    }

    /// Bolt ids are 32-bit: the id is truncated.
    fn set_id(&mut self, id: u64) {
        self.id = id as u32;
    }

    fn headers(&self) -> &HeaderMap {
        self.headers.get_or_init(|| self.parse_headers())
    }

    fn take_headers(&mut self) -> HeaderMap {
        // A map built from an unchanged section is rebuilt from it on the next use; any other
        // (edited, or the decode-error header) is the only copy.
        if self.section_is_map && !self.headers_changed {
            self.headers.take().unwrap_or_else(|| self.parse_headers())
        } else {
            self.headers().clone()
        }
    }

    fn header_count(&self) -> usize {
        self.headers.get().map_or(self.header_count, HeaderMap::len)
    }

    /// The original header section while it is exactly the encoding of the map.
    fn encoded_headers(&self) -> Option<&[u8]> {
        (self.section_is_map && !self.headers_changed).then(|| self.header_section())
    }

    fn headers_mut(&mut self) -> &mut HeaderMap {
        self.changed = true;
        self.headers_changed = true;
        if self.headers.get().is_none() {
            let map = self.parse_headers();
            self.headers = OnceCell::from(map);
        }
        self.headers
            .get_mut()
            .expect("the header map was just built")
    }

    fn body(&self) -> &[u8] {
        match &self.body {
            Some(body) => body,
            None => self.raw.get(self.head.content_range()).unwrap_or_default(),
        }
    }

    fn set_body(&mut self, body: Vec<u8>) {
        self.changed = true;
        self.body = Some(body);
    }

    /// Request: the timeout's bits (-1 is `u32::MAX`); response: the status.
    fn timeout_or_status(&self) -> u32 {
        self.head.timeout_or_status
    }
}

//! The Bolt wire format (xprotocol spec (`docs/xprotocol-proxy-and-bolt.md`) §1): fixed parts of
//! v1/v2 requests and responses, where a frame ends, and writing a frame from its fields.

use std::ops::Range;

use codec_abi::{Detect, HeaderMap};

use crate::error::BoltError;

/// Protocol byte of Bolt v1.
pub const PROTO_V1: u8 = 0x01;
/// Protocol byte of Bolt v2.
pub const PROTO_V2: u8 = 0x02;
/// Command type: response.
pub const TYPE_RESPONSE: u8 = 0;
/// Command type: two-way request.
pub const TYPE_REQUEST: u8 = 1;
/// Command type: oneway request.
pub const TYPE_ONEWAY: u8 = 2;
/// cmdCode: heartbeat (request or ack).
pub const CMD_HEARTBEAT: u16 = 0;
/// cmdCode: RPC request.
pub const CMD_RPC_REQUEST: u16 = 1;
/// cmdCode: RPC response.
pub const CMD_RPC_RESPONSE: u16 = 2;
/// cmdCode: GoAway (MOSN extension; a request).
pub const CMD_GOAWAY: u16 = 100;
/// Command version (ver2) and codec (Hessian2) MOSN and the Go plugin put in built frames.
pub const DEFAULT_VER2: u8 = 1;
/// Serialization codec 1: Hessian2.
pub const CODEC_HESSIAN2: u8 = 1;
/// v2 `switch` bit 0: a CRC32 follows the content (only with ver1 = 2).
pub const SWITCH_CRC: u8 = 0x01;
/// Length of the v2 CRC32 trailer.
pub const CRC_LEN: usize = 4;

/// Where the fields of one kind of fixed part are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    pub(crate) type_at: usize,
    pub(crate) cmd_code_at: usize,
    pub(crate) ver2_at: usize,
    pub(crate) id_at: usize,
    pub(crate) codec_at: usize,
    /// v2 only.
    pub(crate) switch_at: Option<usize>,
    /// Request: i32 timeout; response: u16 status.
    pub(crate) timeout_or_status_at: usize,
    pub(crate) class_len_at: usize,
    pub(crate) header_len_at: usize,
    pub(crate) content_len_at: usize,
    pub(crate) fixed_len: usize,
}

const V1_REQUEST: Layout = Layout {
    type_at: 1,
    cmd_code_at: 2,
    ver2_at: 4,
    id_at: 5,
    codec_at: 9,
    switch_at: None,
    timeout_or_status_at: 10,
    class_len_at: 14,
    header_len_at: 16,
    content_len_at: 18,
    fixed_len: 22,
};

const V1_RESPONSE: Layout = Layout {
    timeout_or_status_at: 10,
    class_len_at: 12,
    header_len_at: 14,
    content_len_at: 16,
    fixed_len: 20,
    ..V1_REQUEST
};

const V2_REQUEST: Layout = Layout {
    type_at: 2,
    cmd_code_at: 3,
    ver2_at: 5,
    id_at: 6,
    codec_at: 10,
    switch_at: Some(11),
    timeout_or_status_at: 12,
    class_len_at: 16,
    header_len_at: 18,
    content_len_at: 20,
    fixed_len: 24,
};

const V2_RESPONSE: Layout = Layout {
    timeout_or_status_at: 12,
    class_len_at: 14,
    header_len_at: 16,
    content_len_at: 18,
    fixed_len: 22,
    ..V2_REQUEST
};

fn layout(proto: u8, cmd_type: u8) -> &'static Layout {
    match (proto, cmd_type) {
        (PROTO_V2, TYPE_RESPONSE) => &V2_RESPONSE,
        (PROTO_V2, _) => &V2_REQUEST,
        (_, TYPE_RESPONSE) => &V1_RESPONSE,
        _ => &V1_REQUEST,
    }
}

/// The fixed part of a frame: every field but the sections themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) proto: u8,
    /// v2 protocol version (1 or 2); 0 for v1.
    pub(crate) ver1: u8,
    /// v2 switch bits; 0 for v1.
    pub(crate) switch: u8,
    pub(crate) cmd_type: u8,
    pub(crate) cmd_code: u16,
    pub(crate) ver2: u8,
    pub(crate) id: u32,
    pub(crate) codec: u8,
    /// Request: the i32 timeout's bits; response: the u16 status.
    pub(crate) timeout_or_status: u32,
    pub(crate) class_len: usize,
    pub(crate) header_len: usize,
    pub(crate) content_len: usize,
}

impl Head {
    pub(crate) fn layout(&self) -> &'static Layout {
        layout(self.proto, self.cmd_type)
    }

    /// A v2 frame with ver1 = 2 and switch bit 0 carries a CRC32 after the content.
    pub(crate) fn has_crc(&self) -> bool {
        self.proto == PROTO_V2 && self.ver1 == 2 && self.switch & SWITCH_CRC != 0
    }

    pub(crate) fn class_range(&self) -> Range<usize> {
        let start = self.layout().fixed_len;
        start..start + self.class_len
    }

    pub(crate) fn header_range(&self) -> Range<usize> {
        let start = self.class_range().end;
        start..start + self.header_len
    }

    pub(crate) fn content_range(&self) -> Range<usize> {
        let start = self.header_range().end;
        start..start + self.content_len
    }

    pub(crate) fn frame_len(&self) -> usize {
        self.content_range().end + if self.has_crc() { CRC_LEN } else { 0 }
    }
}

/// Reads the frame at the front of `data`. `Ok(None)` until all of it is present (nothing is
/// allocated); errors as soon as the bytes seen cannot start a Bolt frame or announce more
/// than `max_frame` bytes.
pub(crate) fn frame_head(data: &[u8], max_frame: usize) -> Result<Option<Head>, BoltError> {
    match declared_frame(data, max_frame)? {
        Some((head, total)) if data.len() as u64 >= total => Ok(Some(head)),
        _ => Ok(None),
    }
}

/// Auto-detection (optional export `rpc_sidecar_check`): whether `data`, the first bytes of
/// a connection, start a Bolt frame, by the same rules the decoder applies to the first
/// fields: protocol byte 1 or 2, v2's version 1 or 2, a type of 0–2 and a command code that
/// type may carry. Needs at most 5 bytes; never allocates.
pub(crate) fn check_prefix(data: &[u8]) -> Detect {
    let Some(&proto) = data.first() else {
        return Detect::NeedMore;
    };
    let type_at = match proto {
        PROTO_V1 => 1,
        PROTO_V2 => match data.get(1) {
            None => return Detect::NeedMore,
            Some(1 | 2) => 2,
            Some(_) => return Detect::NoMatch,
        },
        _ => return Detect::NoMatch,
    };
    let Some(&cmd_type) = data.get(type_at) else {
        return Detect::NeedMore;
    };
    if cmd_type > TYPE_ONEWAY {
        return Detect::NoMatch;
    }
    let Some(code) = data.get(type_at + 1..type_at + 3) else {
        return Detect::NeedMore;
    };
    let cmd_code = u16::from_be_bytes([code[0], code[1]]);
    let code_ok = match cmd_type {
        TYPE_RESPONSE => matches!(cmd_code, CMD_HEARTBEAT | CMD_RPC_RESPONSE),
        _ => matches!(cmd_code, CMD_HEARTBEAT | CMD_RPC_REQUEST | CMD_GOAWAY),
    };
    if code_ok {
        Detect::Match
    } else {
        Detect::NoMatch
    }
}

/// The head of the frame at the front of `data` and the total length it declares, as soon
/// as its fixed part is present (`Ok(None)` before); errors as [`frame_head`].
pub(crate) fn declared_frame(
    data: &[u8],
    max_frame: usize,
) -> Result<Option<(Head, u64)>, BoltError> {
    let Some(&proto) = data.first() else {
        return Ok(None);
    };
    let ver1 = match proto {
        PROTO_V1 => 0,
        PROTO_V2 => match data.get(1) {
            None => return Ok(None),
            Some(&v @ (1 | 2)) => v,
            Some(&v) => return Err(BoltError::BadVersion(v)),
        },
        other => return Err(BoltError::BadProtocol(other)),
    };
    let type_at = if proto == PROTO_V2 { 2 } else { 1 };
    let Some(&cmd_type) = data.get(type_at) else {
        return Ok(None);
    };
    if cmd_type > TYPE_ONEWAY {
        return Err(BoltError::UnknownType(cmd_type));
    }
    let l = layout(proto, cmd_type);
    let Some(code) = data.get(l.cmd_code_at..l.cmd_code_at + 2) else {
        return Ok(None);
    };
    let cmd_code = u16::from_be_bytes([code[0], code[1]]);
    let code_ok = match cmd_type {
        TYPE_RESPONSE => matches!(cmd_code, CMD_HEARTBEAT | CMD_RPC_RESPONSE),
        _ => matches!(cmd_code, CMD_HEARTBEAT | CMD_RPC_REQUEST | CMD_GOAWAY),
    };
    if !code_ok {
        return Err(BoltError::UnknownCmdCode {
            cmd_type,
            code: cmd_code,
        });
    }
    let Some(fixed) = data.get(..l.fixed_len) else {
        return Ok(None);
    };
    let timeout_or_status = if cmd_type == TYPE_RESPONSE {
        u32::from(be16(fixed, l.timeout_or_status_at))
    } else {
        be32(fixed, l.timeout_or_status_at)
    };
    let head = Head {
        proto,
        ver1,
        switch: l.switch_at.map_or(0, |at| fixed[at]),
        cmd_type,
        cmd_code,
        ver2: fixed[l.ver2_at],
        id: be32(fixed, l.id_at),
        codec: fixed[l.codec_at],
        timeout_or_status,
        class_len: usize::from(be16(fixed, l.class_len_at)),
        header_len: usize::from(be16(fixed, l.header_len_at)),
        content_len: 0,
    };
    let content_len = be32(fixed, l.content_len_at);
    let crc = if head.has_crc() { CRC_LEN as u64 } else { 0 };
    let total = l.fixed_len as u64
        + head.class_len as u64
        + head.header_len as u64
        + u64::from(content_len)
        + crc;
    if total > max_frame as u64 {
        return Err(BoltError::FrameTooLarge {
            len: total,
            max: max_frame,
        });
    }
    // total <= max_frame: the content length fits usize.
    let head = Head {
        content_len: content_len as usize,
        ..head
    };
    Ok(Some((head, total)))
}

/// Checks the CRC32 trailer of a whole v2 frame with CRC.
pub(crate) fn verify_crc(frame: &[u8]) -> Result<(), BoltError> {
    let (body, trailer) = frame.split_at(frame.len() - CRC_LEN);
    let expected = be32(trailer, 0);
    let actual = crc32fast::hash(body);
    if expected != actual {
        return Err(BoltError::BadCrc { expected, actual });
    }
    Ok(())
}

/// Rewrites the id of a whole frame in place (and its CRC, if it has one).
pub(crate) fn patch_id(frame: &mut [u8], head: &Head, id: u32) {
    let at = head.layout().id_at;
    frame[at..at + 4].copy_from_slice(&id.to_be_bytes());
    if head.has_crc() {
        write_crc(frame);
    }
}

/// Appends a frame built from `head`'s fixed fields (its section lengths are ignored), `id`
/// and the sections; with a CRC when `head` says so.
pub(crate) fn write_frame(
    out: &mut Vec<u8>,
    head: &Head,
    id: u32,
    class: &[u8],
    headers: &HeaderMap,
    content: &[u8],
) -> Result<(), BoltError> {
    let class_len = u16::try_from(class.len()).map_err(|_| BoltError::SectionTooLong {
        what: "class",
        len: class.len(),
        max: u16::MAX as usize,
    })?;
    let header_len = headers.encoded_len();
    let header_len = u16::try_from(header_len).map_err(|_| BoltError::SectionTooLong {
        what: "header section",
        len: header_len,
        max: u16::MAX as usize,
    })?;
    let content_len = u32::try_from(content.len()).map_err(|_| BoltError::SectionTooLong {
        what: "content",
        len: content.len(),
        max: u32::MAX as usize,
    })?;
    let start = out.len();
    let crc = if head.has_crc() { CRC_LEN } else { 0 };
    out.reserve(
        head.layout().fixed_len + class.len() + usize::from(header_len) + content.len() + crc,
    );
    write_fixed(out, head, id, class_len, header_len, content_len);
    out.extend_from_slice(class);
    headers.encode_into(out);
    out.extend_from_slice(content);
    if head.has_crc() {
        out.extend_from_slice(&[0; CRC_LEN]);
        write_crc(&mut out[start..]);
    }
    Ok(())
}

/// Appends a frame with no class, header or content (heartbeats, hijack responses).
pub(crate) fn write_bare_frame(out: &mut Vec<u8>, head: &Head, id: u32) {
    let start = out.len();
    write_fixed(out, head, id, 0, 0, 0);
    if head.has_crc() {
        out.extend_from_slice(&[0; CRC_LEN]);
        write_crc(&mut out[start..]);
    }
}

fn write_fixed(
    out: &mut Vec<u8>,
    head: &Head,
    id: u32,
    class_len: u16,
    header_len: u16,
    content_len: u32,
) {
    out.push(head.proto);
    if head.proto == PROTO_V2 {
        out.push(head.ver1);
    }
    out.push(head.cmd_type);
    out.extend_from_slice(&head.cmd_code.to_be_bytes());
    out.push(head.ver2);
    out.extend_from_slice(&id.to_be_bytes());
    out.push(head.codec);
    if head.proto == PROTO_V2 {
        out.push(head.switch);
    }
    if head.cmd_type == TYPE_RESPONSE {
        // Response statuses are 16-bit; `Head` only holds statuses that fit.
        out.extend_from_slice(&(head.timeout_or_status as u16).to_be_bytes());
    } else {
        out.extend_from_slice(&head.timeout_or_status.to_be_bytes());
    }
    out.extend_from_slice(&class_len.to_be_bytes());
    out.extend_from_slice(&header_len.to_be_bytes());
    out.extend_from_slice(&content_len.to_be_bytes());
}

/// Computes the CRC32 of a whole frame (all but its last 4 bytes) into its last 4 bytes.
fn write_crc(frame: &mut [u8]) {
    let body_len = frame.len() - CRC_LEN;
    let crc = crc32fast::hash(&frame[..body_len]);
    frame[body_len..].copy_from_slice(&crc.to_be_bytes());
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(proto: u8, ver1: u8, switch: u8, cmd_type: u8) -> Head {
        Head {
            proto,
            ver1,
            switch,
            cmd_type,
            cmd_code: if cmd_type == TYPE_RESPONSE { 2 } else { 1 },
            ver2: 1,
            id: 0x0A0B_0C0D,
            codec: 1,
            timeout_or_status: 7,
            class_len: 0,
            header_len: 0,
            content_len: 0,
        }
    }

    #[test]
    fn fixed_parts_have_the_spec_lengths_and_id_offsets() {
        for (h, fixed, id_at) in [
            (head(PROTO_V1, 0, 0, TYPE_REQUEST), 22, 5),
            (head(PROTO_V1, 0, 0, TYPE_RESPONSE), 20, 5),
            (head(PROTO_V2, 1, 0, TYPE_REQUEST), 24, 6),
            (head(PROTO_V2, 1, 0, TYPE_RESPONSE), 22, 6),
        ] {
            let mut out = Vec::new();
            write_bare_frame(&mut out, &h, h.id);
            assert_eq!(out.len(), fixed);
            assert_eq!(h.layout().fixed_len, fixed);
            assert_eq!(&out[id_at..id_at + 4], &[0x0A, 0x0B, 0x0C, 0x0D]);
            assert_eq!(frame_head(&out, 1 << 20), Ok(Some(h)));
            for cut in 0..out.len() {
                assert_eq!(frame_head(&out[..cut], 1 << 20), Ok(None), "cut {cut}");
            }
        }
    }

    #[test]
    fn crc_frames_carry_a_trailer_over_everything_before_it() {
        let h = head(PROTO_V2, 2, SWITCH_CRC, TYPE_REQUEST);
        let mut out = Vec::new();
        write_bare_frame(&mut out, &h, h.id);
        assert_eq!(out.len(), 24 + CRC_LEN);
        assert_eq!(h.frame_len(), out.len());
        assert_eq!(verify_crc(&out), Ok(()));
        patch_id(&mut out, &h, 99);
        assert_eq!(verify_crc(&out), Ok(()));
        assert_eq!(&out[24..], &crc32fast::hash(&out[..24]).to_be_bytes());
    }

    #[test]
    fn limits_are_checked_on_the_announced_length() {
        let mut out = Vec::new();
        write_bare_frame(&mut out, &head(PROTO_V1, 0, 0, TYPE_REQUEST), 1);
        out[18..22].copy_from_slice(&100u32.to_be_bytes());
        assert_eq!(frame_head(&out, 122), Ok(None));
        assert_eq!(
            frame_head(&out, 121),
            Err(BoltError::FrameTooLarge { len: 122, max: 121 })
        );
    }
}

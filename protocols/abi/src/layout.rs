//! The three codec buffers (§5.3–§5.5): host → guest command (encode/hijack input), decode
//! result and encode result. Writers append to a `Vec<u8>`; views borrow the buffer they
//! parse and check every offset first.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use crate::error::LayoutError;
use crate::header_map::HeaderMap;

/// Fixed bytes of a §5.3 host command besides the header map and payload.
pub const HOST_COMMAND_FIXED_LEN: usize = 4 + 1 + 8 + 8 + 4 + 4;
/// Fixed bytes of a §5.4 decode result besides the header map and payload.
pub const DECODE_RESULT_FIXED_LEN: usize = 4 + 1 + 8 + 4 + 4 + 4;
/// Fixed bytes of a §5.5 encode result besides the frame.
pub const ENCODE_RESULT_FIXED_LEN: usize = 4 + 1 + 8 + 4 + 4;

/// Something that can be written as a §5.1 header section: an encoded one or a map.
pub trait HeaderSection {
    /// Encoded length in bytes.
    fn section_len(&self) -> usize;
    /// Appends the encoded section.
    fn write_section(&self, out: &mut Vec<u8>);
}

impl HeaderSection for [u8] {
    fn section_len(&self) -> usize {
        self.len()
    }
    fn write_section(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl HeaderSection for HeaderMap {
    fn section_len(&self) -> usize {
        self.encoded_len()
    }
    fn write_section(&self, out: &mut Vec<u8>) {
        self.encode_into(out);
    }
}

/// Appends a §5.3 host command: header map, flag, replaced id, command id, timeout/status,
/// payload.
pub fn write_host_command<H: HeaderSection + ?Sized>(
    out: &mut Vec<u8>,
    headers: &H,
    flag: u8,
    replaced_id: u64,
    command_id: u64,
    timeout_or_status: u32,
    payload: &[u8],
) {
    let h = headers.section_len();
    out.reserve(HOST_COMMAND_FIXED_LEN + h + payload.len());
    out.extend_from_slice(&(h as u32).to_be_bytes());
    headers.write_section(out);
    out.push(flag);
    out.extend_from_slice(&replaced_id.to_be_bytes());
    out.extend_from_slice(&command_id.to_be_bytes());
    out.extend_from_slice(&timeout_or_status.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Appends a §5.4 decode result.
#[allow(clippy::too_many_arguments)]
pub fn write_decode_result<H: HeaderSection + ?Sized>(
    out: &mut Vec<u8>,
    headers: &H,
    flag: u8,
    id: u64,
    timeout_or_status: u32,
    drain: u32,
    payload: &[u8],
) {
    let h = headers.section_len();
    out.reserve(DECODE_RESULT_FIXED_LEN + h + payload.len());
    out.extend_from_slice(&(h as u32).to_be_bytes());
    headers.write_section(out);
    out.push(flag);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&timeout_or_status.to_be_bytes());
    out.extend_from_slice(&drain.to_be_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Appends a §5.5 encode result (header map length always 0).
pub fn write_encode_result(
    out: &mut Vec<u8>,
    flag: u8,
    id: u64,
    timeout_or_status: u32,
    frame: &[u8],
) {
    out.reserve(ENCODE_RESULT_FIXED_LEN + frame.len());
    out.extend_from_slice(&0u32.to_be_bytes());
    out.push(flag);
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(&timeout_or_status.to_be_bytes());
    out.extend_from_slice(&(frame.len() as u32).to_be_bytes());
    out.extend_from_slice(frame);
}

/// A parsed §5.3 host command (encode or hijack input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostCommandView<'a> {
    /// The encoded §5.1 header map.
    pub headers: &'a [u8],
    /// Flag byte (§5.6).
    pub flag: u8,
    /// The id to put into the outgoing frame.
    pub replaced_id: u64,
    /// The id the guest must have cached for the context.
    pub command_id: u64,
    /// Timeout (request) or status (response); ignored by the guest.
    pub timeout_or_status: u32,
    /// New body, or empty to keep the cached one.
    pub payload: &'a [u8],
}

impl<'a> HostCommandView<'a> {
    /// Parses a §5.3 buffer; bytes after the payload are ignored.
    ///
    /// # Errors
    /// [`LayoutError::Truncated`] when a field runs past the end of `buf`.
    pub fn parse(buf: &'a [u8]) -> Result<HostCommandView<'a>, LayoutError> {
        let mut r = Reader::new(buf);
        let h = r.u32("header map length")? as usize;
        let headers = r.bytes(h, "header map")?;
        let flag = r.u8("flag")?;
        let replaced_id = r.u64("replaced id")?;
        let command_id = r.u64("command id")?;
        let timeout_or_status = r.u32("timeout or status")?;
        let p = r.u32("payload length")? as usize;
        let payload = r.bytes(p, "payload")?;
        Ok(HostCommandView {
            headers,
            flag,
            replaced_id,
            command_id,
            timeout_or_status,
            payload,
        })
    }
}

/// What a plugin asked for them ([`crate::DECODE_EXTRAS_KEY`]) appends after a §5.4 decode
/// result: `u32be id_field` ([`crate::IdField::to_raw`], 0 for none) and `u8 goaway` (1 for a
/// GoAway request, else 0).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DecodeExtras {
    /// Where the id sits in the frame, when it can be forwarded with only the id replaced.
    pub id_field: Option<crate::IdField>,
    /// The request is the protocol's GoAway.
    pub goaway: bool,
}

/// Bytes [`DecodeExtras`] take after a decode result.
pub const DECODE_EXTRAS_LEN: usize = 5;

impl DecodeExtras {
    /// Appends the extras' encoding.
    pub fn write(self, out: &mut Vec<u8>) {
        let raw = self.id_field.map_or(0, crate::IdField::to_raw);
        out.extend_from_slice(&raw.to_be_bytes());
        out.push(u8::from(self.goaway));
    }

    /// Reads what follows a decode result: `None` unless it is exactly the extras (a plugin
    /// that does not append them; other trailing bytes stay ignored, as they always were).
    pub fn parse(rest: &[u8]) -> Option<DecodeExtras> {
        if rest.len() != DECODE_EXTRAS_LEN {
            return None;
        }
        let raw = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]);
        Some(DecodeExtras {
            id_field: crate::IdField::from_raw(raw),
            goaway: rest[4] == 1,
        })
    }
}

/// A parsed §5.4 decode result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeResultView<'a> {
    /// The encoded §5.1 header map of the decoded command (bounded to H, §8.6).
    pub headers: &'a [u8],
    /// Flag byte (§5.6).
    pub flag: u8,
    /// The frame's protocol id.
    pub id: u64,
    /// Request: timeout in ms (0xFFFFFFFF for none); response: status.
    pub timeout_or_status: u32,
    /// Input bytes consumed: the whole frame length.
    pub drain: u32,
    /// The protocol body.
    pub payload: &'a [u8],
    /// Offset of `payload` within the parsed buffer.
    pub payload_offset: usize,
    /// The decode extras after the result, when the plugin appended them.
    pub extras: Option<DecodeExtras>,
}

impl<'a> DecodeResultView<'a> {
    /// Parses a §5.4 buffer.
    ///
    /// # Errors
    /// [`LayoutError::Truncated`] when a field runs past the end of `buf`.
    pub fn parse(buf: &'a [u8]) -> Result<DecodeResultView<'a>, LayoutError> {
        let mut r = Reader::new(buf);
        let h = r.u32("header map length")? as usize;
        let headers = r.bytes(h, "header map")?;
        let flag = r.u8("flag")?;
        let id = r.u64("id")?;
        let timeout_or_status = r.u32("timeout or status")?;
        let drain = r.u32("drain length")?;
        let c = r.u32("payload length")? as usize;
        let payload_offset = r.at;
        let payload = r.bytes(c, "payload")?;
        let extras = DecodeExtras::parse(&buf[r.at..]);
        Ok(DecodeResultView {
            headers,
            flag,
            id,
            timeout_or_status,
            drain,
            payload,
            payload_offset,
            extras,
        })
    }
}

/// A parsed §5.5 encode result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeResultView<'a> {
    /// Flag byte (§5.6).
    pub flag: u8,
    /// The id now in the frame.
    pub id: u64,
    /// Timeout or status.
    pub timeout_or_status: u32,
    /// The complete wire frame.
    pub frame: &'a [u8],
    /// Offset of `frame` within the parsed buffer.
    pub frame_offset: usize,
}

impl<'a> EncodeResultView<'a> {
    /// Parses a §5.5 buffer; a non-zero header map length is skipped.
    ///
    /// # Errors
    /// [`LayoutError::Truncated`] when a field runs past the end of `buf`.
    pub fn parse(buf: &'a [u8]) -> Result<EncodeResultView<'a>, LayoutError> {
        let mut r = Reader::new(buf);
        let h = r.u32("header map length")? as usize;
        r.bytes(h, "header map")?;
        let flag = r.u8("flag")?;
        let id = r.u64("id")?;
        let timeout_or_status = r.u32("timeout or status")?;
        let n = r.u32("frame length")? as usize;
        let frame_offset = r.at;
        let frame = r.bytes(n, "frame")?;
        Ok(EncodeResultView {
            flag,
            id,
            timeout_or_status,
            frame,
            frame_offset,
        })
    }
}

/// Bounds-checked big-endian reader.
struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf, at: 0 }
    }

    fn bytes(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], LayoutError> {
        let have = self.buf.len() - self.at;
        if len > have {
            return Err(LayoutError::Truncated {
                what,
                offset: self.at,
                need: len,
                have,
            });
        }
        let s = &self.buf[self.at..self.at + len];
        self.at += len;
        Ok(s)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], LayoutError> {
        let s = self.bytes(N, what)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, LayoutError> {
        Ok(self.array::<1>(what)?[0])
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, LayoutError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, LayoutError> {
        Ok(u64::from_be_bytes(self.array(what)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    // §5.7: the test vector checked against MOSN's own bolt plugin.
    const FRAME: &str =
        "01 01 0001 01 00000007 01 000003e8 0001 000a 00000002 43 00000001 6b 00000001 76 6869";

    #[test]
    fn decode_extras_follow_a_result_and_anything_else_is_ignored() {
        let map: HeaderMap = [("k", "v")].into_iter().collect();
        let mut out = Vec::new();
        write_decode_result(&mut out, &map, 0x41, 7, 1000, 35, b"hi");
        assert_eq!(DecodeResultView::parse(&out).unwrap().extras, None);
        let extras = DecodeExtras {
            id_field: Some(crate::IdField {
                offset: 5,
                width: 4,
            }),
            goaway: true,
        };
        let mut with = out.clone();
        extras.write(&mut with);
        assert_eq!(with.len(), out.len() + DECODE_EXTRAS_LEN);
        let view = DecodeResultView::parse(&with).unwrap();
        assert_eq!(view.extras, Some(extras));
        assert_eq!(view.payload, b"hi");
        let mut none = out.clone();
        DecodeExtras::default().write(&mut none);
        assert_eq!(
            DecodeResultView::parse(&none).unwrap().extras,
            Some(DecodeExtras::default())
        );
        out.extend_from_slice(b"pad");
        assert_eq!(DecodeResultView::parse(&out).unwrap().extras, None);
    }

    #[test]
    fn decode_result_of_the_spec_vector() {
        let want = hex(
            "0000000a 00000001 6b 00000001 76 41 0000000000000007 000003e8 00000023 00000002 6869",
        );
        let map: HeaderMap = [("k", "v")].into_iter().collect();
        let mut out = Vec::new();
        write_decode_result(&mut out, &map, 0x41, 7, 1000, 35, b"hi");
        assert_eq!(out, want);
        let view = DecodeResultView::parse(&out).unwrap();
        assert_eq!(HeaderMap::decode(view.headers).unwrap(), map);
        assert_eq!(
            (view.flag, view.id, view.timeout_or_status),
            (0x41, 7, 1000)
        );
        assert_eq!((view.drain, view.payload), (35, &b"hi"[..]));
        assert_eq!(&out[view.payload_offset..], b"hi");
    }

    #[test]
    fn encode_input_of_the_spec_vector() {
        let want = hex("0000000a 00000001 6b 00000001 76 40 0000000000000009 0000000000000007 000003e8 00000002 6869");
        let map: HeaderMap = [("k", "v")].into_iter().collect();
        let mut out = Vec::new();
        write_host_command(&mut out, &map, 0x40, 9, 7, 1000, b"hi");
        assert_eq!(out, want);
        let view = HostCommandView::parse(&out).unwrap();
        assert_eq!((view.replaced_id, view.command_id), (9, 7));
        assert_eq!(view.payload, b"hi");
    }

    #[test]
    fn encode_result_of_the_spec_vector() {
        let mut frame = hex(FRAME);
        frame[5..9].copy_from_slice(&9u32.to_be_bytes());
        let mut want = hex("00000000 41 0000000000000009 000003e8 00000023");
        want.extend_from_slice(&frame);
        let mut out = Vec::new();
        write_encode_result(&mut out, 0x41, 9, 1000, &frame);
        assert_eq!(out, want);
        let view = EncodeResultView::parse(&out).unwrap();
        assert_eq!(view.frame, &frame[..]);
        assert_eq!(view.frame_offset, ENCODE_RESULT_FIXED_LEN);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let mut out = Vec::new();
        let map: HeaderMap = [("k", "v")].into_iter().collect();
        write_decode_result(&mut out, &map, 0x41, 7, 1000, 35, b"hi");
        for cut in 0..out.len() {
            assert!(DecodeResultView::parse(&out[..cut]).is_err(), "cut {cut}");
            assert!(HostCommandView::parse(&out[..cut]).is_err(), "cut {cut}");
        }
        let mut enc = Vec::new();
        write_encode_result(&mut enc, 0x41, 9, 0, b"frame");
        for cut in 0..enc.len() {
            assert!(EncodeResultView::parse(&enc[..cut]).is_err(), "cut {cut}");
        }
    }

    #[test]
    fn lying_lengths_are_errors_not_allocations() {
        let buf = [0xff, 0xff, 0xff, 0xff, 0x41];
        assert!(DecodeResultView::parse(&buf).is_err());
        assert!(HostCommandView::parse(&buf).is_err());
        assert!(EncodeResultView::parse(&buf).is_err());
    }
}

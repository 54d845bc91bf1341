//! Minimal SOFA Bolt v1 framing (xprotocol spec (`docs/xprotocol-proxy-and-bolt.md`) §1) for the test tools: splitting a byte stream into
//! frames, reading their fields, and building requests and responses.
//!
//! Written independently of `protocols/bolt` on purpose: a bug shared by the sidecar's codec and
//! the tools that test it would otherwise cancel out. All integers are big-endian.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::WireError;

/// Protocol byte of Bolt v1.
pub const PROTO_V1: u8 = 0x01;
/// Frame type byte: response.
pub const TYPE_RESPONSE: u8 = 0x00;
/// Frame type byte: two-way request.
pub const TYPE_REQUEST: u8 = 0x01;
/// Frame type byte: oneway request.
pub const TYPE_ONEWAY: u8 = 0x02;
/// Command code: heartbeat (request) or heartbeat ack (response).
pub const CMD_HEARTBEAT: u16 = 0;
/// Command code: RPC request.
pub const CMD_REQUEST: u16 = 1;
/// Command code: RPC response.
pub const CMD_RESPONSE: u16 = 2;
/// Command code: GoAway (MOSN-only extension).
pub const CMD_GOAWAY: u16 = 100;
/// Command version (`ver2`) used by every known peer.
pub const VER2: u8 = 0x01;
/// Serialization byte for Hessian2.
pub const CODEC_HESSIAN2: u8 = 1;
/// Length of a v1 request's fixed part.
pub const REQUEST_FIXED_LEN: usize = 22;
/// Length of a v1 response's fixed part.
pub const RESPONSE_FIXED_LEN: usize = 20;
/// Offset of the request id in every v1 frame.
pub const ID_OFFSET: usize = 5;
/// Class name SOFA RPC puts on requests.
pub const REQUEST_CLASS: &str = "com.alipay.sofa.rpc.core.request.SofaRequest";
/// Class name SOFA RPC puts on responses.
pub const RESPONSE_CLASS: &str = "com.alipay.sofa.rpc.core.response.SofaResponse";
/// Default cap on one frame's size (64 MiB): a guard against absurd lengths, not a protocol limit.
pub const DEFAULT_MAX_FRAME_LEN: usize = 64 << 20;

/// Response status values (sofa-bolt `ResponseStatus`, spec §1.5).
pub mod status {
    /// Success.
    pub const SUCCESS: u16 = 0x00;
    /// Generic error.
    pub const ERROR: u16 = 0x01;
    /// The server threw.
    pub const SERVER_EXCEPTION: u16 = 0x02;
    /// Unknown error.
    pub const UNKNOWN: u16 = 0x03;
    /// The server's thread pool is busy.
    pub const SERVER_THREADPOOL_BUSY: u16 = 0x04;
    /// Communication error.
    pub const ERROR_COMM: u16 = 0x05;
    /// No processor (MOSN: no route, no host, connect failure).
    pub const NO_PROCESSOR: u16 = 0x06;
    /// Timeout.
    pub const TIMEOUT: u16 = 0x07;
    /// The client could not send.
    pub const CLIENT_SEND_ERROR: u16 = 0x08;
    /// Codec failure.
    pub const CODEC_EXCEPTION: u16 = 0x09;
    /// Connection closed.
    pub const CONNECTION_CLOSED: u16 = 0x10;
    /// Server-side serialization failure.
    pub const SERVER_SERIAL_EXCEPTION: u16 = 0x11;
    /// Server-side deserialization failure.
    pub const SERVER_DESERIAL_EXCEPTION: u16 = 0x12;
}

/// What the type byte says a frame is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameType {
    /// A response (type `0x00`, 20-byte fixed part).
    Response,
    /// A two-way request (type `0x01`, 22-byte fixed part).
    Request,
    /// A oneway request (type `0x02`, 22-byte fixed part).
    Oneway,
}

impl FrameType {
    fn from_byte(b: u8) -> Result<Self, WireError> {
        match b {
            TYPE_RESPONSE => Ok(FrameType::Response),
            TYPE_REQUEST => Ok(FrameType::Request),
            TYPE_ONEWAY => Ok(FrameType::Oneway),
            other => Err(WireError::UnknownType(other)),
        }
    }

    /// Length of the fixed part for this type.
    pub fn fixed_len(self) -> usize {
        match self {
            FrameType::Response => RESPONSE_FIXED_LEN,
            FrameType::Request | FrameType::Oneway => REQUEST_FIXED_LEN,
        }
    }
}

/// Outcome of looking for a frame at the start of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// The buffer holds only part of a frame; `at_least` bytes are needed in total.
    NeedMore {
        /// Total bytes needed before the next check can succeed (a lower bound).
        at_least: usize,
    },
    /// The buffer starts with a complete frame of `len` bytes.
    Frame {
        /// The frame's length.
        len: usize,
    },
}

/// Finds the first frame in `buf` without copying.
///
/// # Errors
/// [`WireError`] when the bytes cannot start a Bolt v1 frame or announce more than `max_len`
/// bytes; the stream cannot be resynchronised after that.
pub fn split(buf: &[u8], max_len: usize) -> Result<Split, WireError> {
    let Some(&proto) = buf.first() else {
        return Ok(Split::NeedMore { at_least: 2 });
    };
    if proto != PROTO_V1 {
        return Err(WireError::UnsupportedProtocol(proto));
    }
    let Some(&ty) = buf.get(1) else {
        return Ok(Split::NeedMore { at_least: 2 });
    };
    let fixed = FrameType::from_byte(ty)?.fixed_len();
    if buf.len() < fixed {
        return Ok(Split::NeedMore { at_least: fixed });
    }
    let len = announced_len(buf, fixed);
    if len > max_len as u64 {
        return Err(WireError::TooLarge { len, max: max_len });
    }
    // `len <= max_len`, so it fits in usize.
    let len = len as usize;
    if buf.len() < len {
        Ok(Split::NeedMore { at_least: len })
    } else {
        Ok(Split::Frame { len })
    }
}

/// Total frame length announced by a fixed part of `fixed` bytes at the start of `buf`.
fn announced_len(buf: &[u8], fixed: usize) -> u64 {
    let at = fixed - 8;
    let class = u16::from_be_bytes([buf[at], buf[at + 1]]) as u64;
    let header = u16::from_be_bytes([buf[at + 2], buf[at + 3]]) as u64;
    let content = u32::from_be_bytes([buf[at + 4], buf[at + 5], buf[at + 6], buf[at + 7]]) as u64;
    fixed as u64 + class + header + content
}

/// Splits complete frames off the front of a read buffer.
#[derive(Debug, Clone, Copy)]
pub struct FrameReader {
    max_len: usize,
}

impl Default for FrameReader {
    fn default() -> Self {
        FrameReader {
            max_len: DEFAULT_MAX_FRAME_LEN,
        }
    }
}

impl FrameReader {
    /// A reader refusing frames longer than `max_len` bytes.
    pub fn new(max_len: usize) -> Self {
        FrameReader { max_len }
    }

    /// Takes the next complete frame off the front of `buf`: `Ok(None)` when more bytes are
    /// needed (nothing is consumed then).
    ///
    /// # Errors
    /// [`WireError`] when the stream is not Bolt v1; the connection should be closed.
    pub fn next_frame(&self, buf: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        match split(buf, self.max_len)? {
            Split::NeedMore { at_least } => {
                buf.reserve(at_least.saturating_sub(buf.len()));
                Ok(None)
            }
            Split::Frame { len } => Frame::parse(buf.split_to(len).freeze()).map(Some),
        }
    }
}

/// One parsed Bolt v1 frame: fixed-part fields plus zero-copy views of its sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    raw: Bytes,
    frame_type: FrameType,
    cmd_code: u16,
    ver2: u8,
    id: u32,
    codec: u8,
    timeout_or_status: u32,
    class_at: usize,
    header_at: usize,
    content_at: usize,
}

impl Frame {
    /// Parses `raw`, which must hold exactly one frame.
    ///
    /// # Errors
    /// [`WireError`] for a bad protocol or type byte, or a length that does not match `raw`.
    pub fn parse(raw: Bytes) -> Result<Frame, WireError> {
        let len = match split(&raw, usize::MAX)? {
            Split::Frame { len } => len,
            Split::NeedMore { at_least } => {
                return Err(WireError::LengthMismatch {
                    have: raw.len(),
                    need: at_least as u64,
                })
            }
        };
        if len != raw.len() {
            return Err(WireError::LengthMismatch {
                have: raw.len(),
                need: len as u64,
            });
        }
        let frame_type = FrameType::from_byte(raw[1])?;
        let fixed = frame_type.fixed_len();
        let timeout_or_status = match frame_type {
            FrameType::Response => u16::from_be_bytes([raw[10], raw[11]]) as u32,
            FrameType::Request | FrameType::Oneway => be_u32(&raw, 10),
        };
        let at = fixed - 8;
        let class_len = u16::from_be_bytes([raw[at], raw[at + 1]]) as usize;
        let header_len = u16::from_be_bytes([raw[at + 2], raw[at + 3]]) as usize;
        Ok(Frame {
            frame_type,
            cmd_code: u16::from_be_bytes([raw[2], raw[3]]),
            ver2: raw[4],
            id: be_u32(&raw, ID_OFFSET),
            codec: raw[9],
            timeout_or_status,
            class_at: fixed,
            header_at: fixed + class_len,
            content_at: fixed + class_len + header_len,
            raw,
        })
    }

    /// Request, oneway or response.
    pub fn frame_type(&self) -> FrameType {
        self.frame_type
    }

    /// True for requests and oneways.
    pub fn is_request(&self) -> bool {
        self.frame_type != FrameType::Response
    }

    /// The command code (0 heartbeat, 1 request, 2 response, 100 GoAway).
    pub fn cmd_code(&self) -> u16 {
        self.cmd_code
    }

    /// True for heartbeat requests and heartbeat acks (cmdCode 0).
    pub fn is_heartbeat(&self) -> bool {
        self.cmd_code == CMD_HEARTBEAT
    }

    /// The command version byte.
    pub fn ver2(&self) -> u8 {
        self.ver2
    }

    /// The request id.
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The serialization byte.
    pub fn codec(&self) -> u8 {
        self.codec
    }

    /// A request's timeout in ms (`-1` = none); `None` for responses.
    pub fn timeout_ms(&self) -> Option<i32> {
        match self.frame_type {
            FrameType::Response => None,
            FrameType::Request | FrameType::Oneway => Some(self.timeout_or_status as i32),
        }
    }

    /// A response's status; `None` for requests.
    pub fn status(&self) -> Option<u16> {
        match self.frame_type {
            FrameType::Response => Some(self.timeout_or_status as u16),
            FrameType::Request | FrameType::Oneway => None,
        }
    }

    /// The class name bytes.
    pub fn class(&self) -> &[u8] {
        &self.raw[self.class_at..self.header_at]
    }

    /// The raw header section.
    pub fn header_bytes(&self) -> &[u8] {
        &self.raw[self.header_at..self.content_at]
    }

    /// The content section (a cheap slice of the frame).
    pub fn content(&self) -> Bytes {
        self.raw.slice(self.content_at..)
    }

    /// The whole frame as received.
    pub fn raw(&self) -> &Bytes {
        &self.raw
    }

    /// The header pairs in wire order.
    pub fn headers(&self) -> HeaderPairs<'_> {
        HeaderPairs::new(self.header_bytes())
    }

    /// The value of the first header named `key` (case-sensitive, like MOSN). A malformed header
    /// section yields `None` past the damage.
    pub fn header(&self, key: &str) -> Option<&[u8]> {
        self.headers()
            .map_while(Result::ok)
            .find(|(k, _)| *k == key.as_bytes())
            .map(|(_, v)| v)
    }

    /// The header pairs as owned UTF-8 strings (invalid UTF-8 replaced), in wire order.
    ///
    /// # Errors
    /// [`WireError::HeaderTruncated`] when the section is malformed.
    pub fn header_strings(&self) -> Result<Vec<(String, String)>, WireError> {
        self.headers()
            .map(|pair| {
                pair.map(|(k, v)| {
                    (
                        String::from_utf8_lossy(k).into_owned(),
                        String::from_utf8_lossy(v).into_owned(),
                    )
                })
            })
            .collect()
    }
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Length value sofa-rpc writes for a null key or value.
const NULL_LEN: u32 = u32::MAX;

/// Iterator over a header section's `u32 len, key, u32 len, value` pairs. Pairs with a null key
/// or value (length −1) are skipped, as sofa-rpc does. After an error it ends.
#[derive(Debug, Clone)]
pub struct HeaderPairs<'a> {
    buf: &'a [u8],
    at: usize,
}

impl<'a> HeaderPairs<'a> {
    /// Iterates over the header section `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        HeaderPairs { buf, at: 0 }
    }

    /// Reads one length-prefixed string; `None` inside `Ok` means null.
    fn field(&mut self) -> Result<Option<&'a [u8]>, WireError> {
        let start = self.at;
        let truncated = WireError::HeaderTruncated { offset: start };
        let Some(len_bytes) = self.buf.get(start..start + 4) else {
            return Err(truncated);
        };
        let len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        if len == NULL_LEN {
            self.at = start + 4;
            return Ok(None);
        }
        let end = (start + 4)
            .checked_add(len as usize)
            .ok_or(truncated.clone())?;
        let value = self.buf.get(start + 4..end).ok_or(truncated)?;
        self.at = end;
        Ok(Some(value))
    }
}

impl<'a> Iterator for HeaderPairs<'a> {
    type Item = Result<(&'a [u8], &'a [u8]), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.at < self.buf.len() {
            let pair = self.field().and_then(|k| Ok((k, self.field()?)));
            match pair {
                Ok((Some(k), Some(v))) => return Some(Ok((k, v))),
                Ok(_) => continue,
                Err(e) => {
                    self.at = self.buf.len();
                    return Some(Err(e));
                }
            }
        }
        None
    }
}

/// Encoded size of a header map.
pub fn header_map_len<K: AsRef<[u8]>, V: AsRef<[u8]>>(headers: &[(K, V)]) -> usize {
    headers
        .iter()
        .map(|(k, v)| 8 + k.as_ref().len() + v.as_ref().len())
        .sum()
}

/// Appends the header map encoding (`u32 len, key, u32 len, value` per pair).
pub fn encode_header_map<K: AsRef<[u8]>, V: AsRef<[u8]>>(out: &mut BytesMut, headers: &[(K, V)]) {
    for (k, v) in headers {
        let (k, v) = (k.as_ref(), v.as_ref());
        out.put_u32(k.len() as u32);
        out.put_slice(k);
        out.put_u32(v.len() as u32);
        out.put_slice(v);
    }
}

fn check_len(field: &'static str, len: usize, max: u64) -> Result<(), WireError> {
    if len as u64 > max {
        Err(WireError::FieldTooLong { field, len, max })
    } else {
        Ok(())
    }
}

/// The fields of a v1 request's fixed part that the caller chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestHead {
    /// Request id.
    pub id: u32,
    /// Oneway (`0x02`) instead of two-way (`0x01`).
    pub oneway: bool,
    /// Command code.
    pub cmd_code: u16,
    /// Command version.
    pub ver2: u8,
    /// Serialization byte.
    pub codec: u8,
    /// Timeout in ms, `-1` for none.
    pub timeout_ms: i32,
}

/// Appends one request frame built from its parts; `header_map` is an already-encoded section.
///
/// # Errors
/// [`WireError::FieldTooLong`] when a section does not fit its length field.
pub fn encode_request_raw(
    out: &mut BytesMut,
    head: RequestHead,
    class: &[u8],
    header_map: &[u8],
    content: &[u8],
) -> Result<(), WireError> {
    check_len("class", class.len(), u16::MAX as u64)?;
    check_len("header map", header_map.len(), u16::MAX as u64)?;
    check_len("content", content.len(), u32::MAX as u64)?;
    out.reserve(REQUEST_FIXED_LEN + class.len() + header_map.len() + content.len());
    out.put_u8(PROTO_V1);
    out.put_u8(if head.oneway {
        TYPE_ONEWAY
    } else {
        TYPE_REQUEST
    });
    out.put_u16(head.cmd_code);
    out.put_u8(head.ver2);
    out.put_u32(head.id);
    out.put_u8(head.codec);
    out.put_i32(head.timeout_ms);
    out.put_u16(class.len() as u16);
    out.put_u16(header_map.len() as u16);
    out.put_u32(content.len() as u32);
    out.put_slice(class);
    out.put_slice(header_map);
    out.put_slice(content);
    Ok(())
}

/// The fields of a v1 response's fixed part that the caller chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResponseHead {
    /// Request id being answered.
    pub id: u32,
    /// Command code (2 RPC response, 0 heartbeat ack).
    pub cmd_code: u16,
    /// Command version.
    pub ver2: u8,
    /// Serialization byte.
    pub codec: u8,
    /// Response status.
    pub status: u16,
}

/// Appends one response frame built from its parts; `header_map` is an already-encoded section.
///
/// # Errors
/// [`WireError::FieldTooLong`] when a section does not fit its length field.
pub fn encode_response_raw(
    out: &mut BytesMut,
    head: ResponseHead,
    class: &[u8],
    header_map: &[u8],
    content: &[u8],
) -> Result<(), WireError> {
    check_len("class", class.len(), u16::MAX as u64)?;
    check_len("header map", header_map.len(), u16::MAX as u64)?;
    check_len("content", content.len(), u32::MAX as u64)?;
    out.reserve(RESPONSE_FIXED_LEN + class.len() + header_map.len() + content.len());
    out.put_u8(PROTO_V1);
    out.put_u8(TYPE_RESPONSE);
    out.put_u16(head.cmd_code);
    out.put_u8(head.ver2);
    out.put_u32(head.id);
    out.put_u8(head.codec);
    out.put_u16(head.status);
    out.put_u16(class.len() as u16);
    out.put_u16(header_map.len() as u16);
    out.put_u32(content.len() as u32);
    out.put_slice(class);
    out.put_slice(header_map);
    out.put_slice(content);
    Ok(())
}

/// Overwrites the request id of an encoded v1 frame in place (offset 5). Returns false, leaving
/// `frame` alone, when it is too short to hold an id.
pub fn patch_id(frame: &mut [u8], id: u32) -> bool {
    match frame.get_mut(ID_OFFSET..ID_OFFSET + 4) {
        Some(slot) => {
            slot.copy_from_slice(&id.to_be_bytes());
            true
        }
        None => false,
    }
}

/// An owned request, convenient for tests: build, then [`Request::encode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// Fixed-part fields.
    pub head: RequestHead,
    /// Class name.
    pub class: Bytes,
    /// Header pairs in wire order.
    pub headers: Vec<(String, String)>,
    /// Content.
    pub content: Bytes,
}

impl Request {
    /// A two-way SOFA RPC request: class `SofaRequest`, Hessian2, timeout 3000 ms, header
    /// `service` (skipped when `service` is `None`).
    pub fn rpc(id: u32, service: Option<&str>, content: impl Into<Bytes>) -> Self {
        Request {
            head: RequestHead {
                id,
                oneway: false,
                cmd_code: CMD_REQUEST,
                ver2: VER2,
                codec: CODEC_HESSIAN2,
                timeout_ms: 3000,
            },
            class: Bytes::from_static(REQUEST_CLASS.as_bytes()),
            headers: service
                .map(|s| vec![("service".to_owned(), s.to_owned())])
                .unwrap_or_default(),
            content: content.into(),
        }
    }

    /// A heartbeat request as spec §1.4 describes it: cmdCode 0, timeout −1, no sections.
    pub fn heartbeat(id: u32) -> Self {
        Request {
            head: RequestHead {
                id,
                oneway: false,
                cmd_code: CMD_HEARTBEAT,
                ver2: VER2,
                codec: CODEC_HESSIAN2,
                timeout_ms: -1,
            },
            class: Bytes::new(),
            headers: Vec::new(),
            content: Bytes::new(),
        }
    }

    /// MOSN's Bolt GoAway (`CmdCodeGoAway`): a request with cmdCode 100, Hessian2, timeout 0
    /// and no sections; it tells the peer to send no new requests on the connection.
    pub fn goaway(id: u32) -> Self {
        Request {
            head: RequestHead {
                id,
                oneway: false,
                cmd_code: CMD_GOAWAY,
                ver2: VER2,
                codec: CODEC_HESSIAN2,
                timeout_ms: 0,
            },
            class: Bytes::new(),
            headers: Vec::new(),
            content: Bytes::new(),
        }
    }

    /// Makes it a oneway request.
    pub fn oneway(mut self) -> Self {
        self.head.oneway = true;
        self
    }

    /// Sets the timeout (ms, `-1` = none).
    pub fn timeout_ms(mut self, ms: i32) -> Self {
        self.head.timeout_ms = ms;
        self
    }

    /// Appends a header pair.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((key.into(), value.into()));
        self
    }

    /// Encoded length.
    pub fn encoded_len(&self) -> usize {
        REQUEST_FIXED_LEN + self.class.len() + header_map_len(&self.headers) + self.content.len()
    }

    /// Appends the frame to `out`.
    ///
    /// # Errors
    /// [`WireError::FieldTooLong`] when a section does not fit its length field.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), WireError> {
        let mut map = BytesMut::with_capacity(header_map_len(&self.headers));
        encode_header_map(&mut map, &self.headers);
        encode_request_raw(out, self.head, &self.class, &map, &self.content)
    }

    /// The frame as one buffer.
    ///
    /// # Errors
    /// [`WireError::FieldTooLong`] when a section does not fit its length field.
    pub fn to_bytes(&self) -> Result<Bytes, WireError> {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut out)?;
        Ok(out.freeze())
    }
}

/// An owned response, convenient for tests: build, then [`Response::encode`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Fixed-part fields.
    pub head: ResponseHead,
    /// Class name.
    pub class: Bytes,
    /// Header pairs in wire order.
    pub headers: Vec<(String, String)>,
    /// Content.
    pub content: Bytes,
}

impl Response {
    /// An RPC response: cmdCode 2, class `SofaResponse`, Hessian2.
    pub fn rpc(id: u32, status: u16, content: impl Into<Bytes>) -> Self {
        Response {
            head: ResponseHead {
                id,
                cmd_code: CMD_RESPONSE,
                ver2: VER2,
                codec: CODEC_HESSIAN2,
                status,
            },
            class: Bytes::from_static(RESPONSE_CLASS.as_bytes()),
            headers: Vec::new(),
            content: content.into(),
        }
    }

    /// A heartbeat ack: cmdCode 0, status SUCCESS, no sections (20 bytes).
    pub fn heartbeat_ack(id: u32) -> Self {
        Response {
            head: ResponseHead {
                id,
                cmd_code: CMD_HEARTBEAT,
                ver2: VER2,
                codec: CODEC_HESSIAN2,
                status: status::SUCCESS,
            },
            class: Bytes::new(),
            headers: Vec::new(),
            content: Bytes::new(),
        }
    }

    /// Appends a header pair.
    pub fn header(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((key.into(), value.into()));
        self
    }

    /// Encoded length.
    pub fn encoded_len(&self) -> usize {
        RESPONSE_FIXED_LEN + self.class.len() + header_map_len(&self.headers) + self.content.len()
    }

    /// Appends the frame to `out`.
    ///
    /// # Errors
    /// [`WireError::FieldTooLong`] when a section does not fit its length field.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), WireError> {
        let mut map = BytesMut::with_capacity(header_map_len(&self.headers));
        encode_header_map(&mut map, &self.headers);
        encode_response_raw(out, self.head, &self.class, &map, &self.content)
    }

    /// The frame as one buffer.
    ///
    /// # Errors
    /// [`WireError::FieldTooLong`] when a section does not fit its length field.
    pub fn to_bytes(&self) -> Result<Bytes, WireError> {
        let mut out = BytesMut::with_capacity(self.encoded_len());
        self.encode(&mut out)?;
        Ok(out.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::path::PathBuf;

    fn testdata() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../protocols/bolt/testdata")
    }

    fn load(name: &str) -> Bytes {
        let path = testdata().join(name);
        Bytes::from(std::fs::read(&path).unwrap_or_else(|e| panic!("reading {path:?}: {e}")))
    }

    fn expected() -> serde_json::Map<String, serde_json::Value> {
        let text = std::fs::read_to_string(testdata().join("expected-decode.json"))
            .expect("expected-decode.json");
        match serde_json::from_str(&text).expect("valid JSON") {
            serde_json::Value::Object(map) => map,
            other => panic!("expected an object, got {other}"),
        }
    }

    /// Every captured frame splits as exactly one frame whose fields match what MOSN's own
    /// plugin reported for it (id, timeout/status, kind, content, header map).
    #[test]
    fn captured_frames_match_expected_decode() {
        let expected = expected();
        assert!(expected.len() >= 12, "all captured frames are listed");
        for (name, want) in &expected {
            let raw = load(name);
            assert_eq!(
                split(&raw, DEFAULT_MAX_FRAME_LEN).unwrap(),
                Split::Frame { len: raw.len() },
                "{name}"
            );
            assert_eq!(
                want["drain"].as_u64().unwrap() as usize,
                raw.len(),
                "{name}"
            );
            let frame = Frame::parse(raw.clone()).unwrap();
            assert_eq!(frame.id() as u64, want["id"].as_u64().unwrap(), "{name} id");
            let flag =
                u8::from_str_radix(want["flag"].as_str().unwrap().trim_start_matches("0x"), 16)
                    .unwrap();
            // ABI flag: bits 7-6 kind (00 response, 01 request, 11 oneway), bit 5 heartbeat.
            let kind = match flag >> 6 {
                0 => FrameType::Response,
                1 => FrameType::Request,
                3 => FrameType::Oneway,
                _ => panic!("{name}: flag {flag:#x}"),
            };
            assert_eq!(frame.frame_type(), kind, "{name} kind");
            assert_eq!(frame.is_heartbeat(), flag & 0x20 != 0, "{name} heartbeat");
            let tos = want["timeout_or_status"].as_u64().unwrap();
            match frame.frame_type() {
                FrameType::Response => assert_eq!(frame.status(), Some(tos as u16), "{name}"),
                _ => assert_eq!(frame.timeout_ms(), Some(tos as i32), "{name}"),
            }
            assert_eq!(
                frame.content().len() as u64,
                want["payload_len"].as_u64().unwrap(),
                "{name} content"
            );
            let headers: BTreeMap<String, String> =
                frame.header_strings().unwrap().into_iter().collect();
            let want_headers: BTreeMap<String, String> = want["headers"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            assert_eq!(headers, want_headers, "{name} headers");
        }
    }

    /// Decoding a captured frame and re-encoding it from its parts reproduces it byte for byte.
    #[test]
    fn captured_frames_reencode_identically() {
        for (name, _) in expected() {
            let raw = load(&name);
            let f = Frame::parse(raw.clone()).unwrap();
            let mut out = BytesMut::new();
            match f.frame_type() {
                FrameType::Response => encode_response_raw(
                    &mut out,
                    ResponseHead {
                        id: f.id(),
                        cmd_code: f.cmd_code(),
                        ver2: f.ver2(),
                        codec: f.codec(),
                        status: f.status().unwrap(),
                    },
                    f.class(),
                    f.header_bytes(),
                    &f.content(),
                ),
                _ => encode_request_raw(
                    &mut out,
                    RequestHead {
                        id: f.id(),
                        oneway: f.frame_type() == FrameType::Oneway,
                        cmd_code: f.cmd_code(),
                        ver2: f.ver2(),
                        codec: f.codec(),
                        timeout_ms: f.timeout_ms().unwrap(),
                    },
                    f.class(),
                    f.header_bytes(),
                    &f.content(),
                ),
            }
            .unwrap();
            assert_eq!(&out[..], &raw[..], "{name}");
        }
    }

    #[test]
    fn builders_reproduce_captured_frames() {
        let raw = load("sofa-rpc-node-hessian-draft/request-echo.bin");
        let f = Frame::parse(raw.clone()).unwrap();
        assert_eq!(f.class(), REQUEST_CLASS.as_bytes());
        assert_eq!(
            f.header("service"),
            Some(&b"com.alipay.test.TestService:1.0"[..])
        );
        let built = Request::rpc(1, Some("com.alipay.test.TestService:1.0"), f.content())
            .to_bytes()
            .unwrap();
        assert_eq!(built, raw);

        let raw = load("sofa-rpc-node-hessian-draft/response-echo-success.bin");
        let f = Frame::parse(raw.clone()).unwrap();
        assert_eq!(f.class(), RESPONSE_CLASS.as_bytes());
        let built = Response::rpc(f.id(), status::SUCCESS, f.content())
            .to_bytes()
            .unwrap();
        assert_eq!(built, raw);

        // The captured heartbeat carries timeout 3000; ours uses -1 as spec §1.4 says.
        let raw = load("sofa-rpc-node-hessian-draft/heartbeat-request.bin");
        let built = Request::heartbeat(7).timeout_ms(3000).to_bytes().unwrap();
        assert_eq!(built, raw);
        let raw = load("sofa-rpc-node-hessian-draft/heartbeat-ack.bin");
        assert_eq!(Response::heartbeat_ack(7).to_bytes().unwrap(), raw);
    }

    /// Frames fed one byte at a time, then all at once with a trailing partial frame, come out
    /// whole and in order.
    #[test]
    fn reader_splits_byte_by_byte_and_back_to_back() {
        let names = [
            "sofa-rpc-node-hessian-draft/request-echo.bin",
            "sofa-rpc-node-hessian-draft/heartbeat-request.bin",
            "anthunder-protobuf/response-error.bin",
            "sofa-rpc-node-hessian4/response-server-exception.bin",
        ];
        let frames: Vec<Bytes> = names.iter().map(|n| load(n)).collect();
        let stream: Vec<u8> = frames.iter().flat_map(|f| f.iter().copied()).collect();
        let reader = FrameReader::default();

        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in &stream {
            buf.put_u8(*b);
            while let Some(f) = reader.next_frame(&mut buf).unwrap() {
                got.push(f.raw().clone());
            }
        }
        assert_eq!(got, frames);
        assert!(buf.is_empty());

        let mut buf = BytesMut::from(&stream[..]);
        buf.put_slice(&frames[0][..10]);
        let mut got = Vec::new();
        while let Some(f) = reader.next_frame(&mut buf).unwrap() {
            got.push(f.raw().clone());
        }
        assert_eq!(got, frames);
        assert_eq!(&buf[..], &frames[0][..10], "partial frame stays buffered");
    }

    #[test]
    fn split_reports_need_more_with_lower_bound() {
        let raw = load("sofa-rpc-node-hessian-draft/request-echo.bin");
        assert_eq!(split(&[], 1 << 20), Ok(Split::NeedMore { at_least: 2 }));
        assert_eq!(
            split(&raw[..1], 1 << 20),
            Ok(Split::NeedMore { at_least: 2 })
        );
        assert_eq!(
            split(&raw[..21], 1 << 20),
            Ok(Split::NeedMore { at_least: 22 })
        );
        assert_eq!(
            split(&raw[..22], 1 << 20),
            Ok(Split::NeedMore {
                at_least: raw.len()
            })
        );
    }

    #[test]
    fn bad_bytes_are_errors_not_panics() {
        assert_eq!(
            split(b"GET / HTTP/1.1\r\n", 1 << 20),
            Err(WireError::UnsupportedProtocol(b'G'))
        );
        assert_eq!(
            split(&[2, 1, 0], 1 << 20),
            Err(WireError::UnsupportedProtocol(2))
        );
        assert_eq!(split(&[1, 7], 1 << 20), Err(WireError::UnknownType(7)));

        let mut big = Request::rpc(1, None, vec![0u8; 100])
            .to_bytes()
            .unwrap()
            .to_vec();
        assert_eq!(
            split(&big, 50),
            Err(WireError::TooLarge {
                len: big.len() as u64,
                max: 50
            })
        );
        big.truncate(30);
        assert!(matches!(
            Frame::parse(Bytes::from(big)),
            Err(WireError::LengthMismatch { have: 30, .. })
        ));

        let mut buf = BytesMut::from(&[1u8, 9, 0, 0][..]);
        assert_eq!(
            FrameReader::default().next_frame(&mut buf),
            Err(WireError::UnknownType(9))
        );
    }

    #[test]
    fn header_pairs_skip_nulls_and_stop_at_truncation() {
        let mut map = BytesMut::new();
        encode_header_map(&mut map, &[("a", "1")]);
        // null key, then a pair with a null value: both skipped.
        map.put_u32(NULL_LEN);
        map.put_u32(1);
        map.put_slice(b"x");
        map.put_u32(1);
        map.put_slice(b"k");
        map.put_u32(NULL_LEN);
        encode_header_map(&mut map, &[("", "empty-key")]);
        let pairs: Vec<_> = HeaderPairs::new(&map).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            pairs,
            vec![(&b"a"[..], &b"1"[..]), (&b""[..], &b"empty-key"[..])]
        );

        let mut bad = BytesMut::new();
        encode_header_map(&mut bad, &[("service", "s")]);
        bad.put_u32(100);
        bad.put_slice(b"short");
        let items: Vec<_> = HeaderPairs::new(&bad).collect();
        assert_eq!(items.len(), 2);
        assert!(items[0].is_ok());
        assert_eq!(items[1], Err(WireError::HeaderTruncated { offset: 16 }));
        assert_eq!(HeaderPairs::new(&[0, 0]).collect::<Vec<_>>().len(), 1);
    }

    #[test]
    fn oneway_and_patch_id() {
        let raw = Request::rpc(5, Some("s:1.0"), &b"hi"[..])
            .oneway()
            .to_bytes()
            .unwrap();
        let mut raw = raw.to_vec();
        assert!(patch_id(&mut raw, 0xA1B2_C3D4));
        let f = Frame::parse(Bytes::from(raw)).unwrap();
        assert_eq!(f.frame_type(), FrameType::Oneway);
        assert_eq!(f.id(), 0xA1B2_C3D4);
        assert_eq!(f.header("service"), Some(&b"s:1.0"[..]));
        assert_eq!(&f.content()[..], b"hi");
        assert!(!patch_id(&mut [1, 2, 3], 9));
    }

    #[test]
    fn oversize_sections_are_refused() {
        let long = "k".repeat(70_000);
        let req = Request::rpc(1, None, Bytes::new()).header(long, "v");
        assert!(matches!(
            req.to_bytes(),
            Err(WireError::FieldTooLong {
                field: "header map",
                ..
            })
        ));
    }
}

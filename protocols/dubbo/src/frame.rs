//! The Dubbo 2 wire format: a 16-byte header (magic 0xdabb, flag, status, 8-byte request id,
//! 4-byte body length, all big-endian) followed by the body.
//!
//! Flag byte: 0x80 request (else response), 0x40 two-way (a response is expected), 0x20
//! event (heartbeat; "R" body: read-only), low five bits the serialization id (2 Hessian2).

use codec_abi::Detect;

use crate::error::DubboError;

/// The magic number.
pub const MAGIC: u16 = 0xdabb;
/// Length of the header.
pub const HEADER_LEN: usize = 16;
/// Flag bit: request.
pub const FLAG_REQUEST: u8 = 0x80;
/// Flag bit: two-way request.
pub const FLAG_TWO_WAY: u8 = 0x40;
/// Flag bit: event (heartbeat or read-only).
pub const FLAG_EVENT: u8 = 0x20;
/// Mask of the serialization id in the flag byte.
pub const SERIALIZATION_MASK: u8 = 0x1f;
/// Serialization id of Hessian2.
pub const HESSIAN2: u8 = 2;
/// Offset of the request id.
pub const ID_AT: usize = 4;
/// Offset of the body length.
pub const BODY_LEN_AT: usize = 12;

/// The header of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    /// The flag byte.
    pub flag: u8,
    /// The status byte (responses; 0 on requests).
    pub status: u8,
    /// The request id.
    pub id: u64,
    /// The body length.
    pub body_len: u32,
}

impl Head {
    /// True for a request (two-way, oneway or event).
    pub fn is_request(&self) -> bool {
        self.flag & FLAG_REQUEST != 0
    }

    /// True for a two-way request.
    pub fn is_two_way(&self) -> bool {
        self.flag & FLAG_TWO_WAY != 0
    }

    /// True for an event (heartbeat or read-only).
    pub fn is_event(&self) -> bool {
        self.flag & FLAG_EVENT != 0
    }

    /// The serialization id (2 Hessian2, 6 fastjson, 7 native Java, ...).
    pub fn serialization(&self) -> u8 {
        self.flag & SERIALIZATION_MASK
    }

    /// Header plus body.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.body_len as usize
    }

    /// Writes the header with `id` in place of [`Head::id`].
    pub fn write(&self, out: &mut Vec<u8>, id: u64) {
        out.extend_from_slice(&MAGIC.to_be_bytes());
        out.push(self.flag);
        out.push(self.status);
        out.extend_from_slice(&id.to_be_bytes());
        out.extend_from_slice(&self.body_len.to_be_bytes());
    }
}

/// Checks the first bytes of `data` as far as they are present: the magic. A `check` on
/// the first bytes of a connection (protocol detection) can use it. `Ok(false)`: fewer than
/// two bytes.
///
/// # Errors
/// [`DubboError::BadMagic`].
pub fn check_magic(data: &[u8]) -> Result<bool, DubboError> {
    match data {
        [a, b, ..] => {
            let magic = u16::from_be_bytes([*a, *b]);
            if magic == MAGIC {
                Ok(true)
            } else {
                Err(DubboError::BadMagic(magic))
            }
        }
        [a] if *a != (MAGIC >> 8) as u8 => Err(DubboError::BadMagic(u16::from(*a) << 8)),
        _ => Ok(false),
    }
}

/// Auto-detection (optional export `rpc_sidecar_check`): whether `data`, the first bytes of
/// a connection, start a Dubbo frame: the magic 0xdabb and a flag byte naming a
/// serialization (its low five bits are not 0). Needs at most 3 bytes.
pub fn check_prefix(data: &[u8]) -> Detect {
    match check_magic(data) {
        Err(_) => Detect::NoMatch,
        Ok(false) => Detect::NeedMore,
        Ok(true) => match data.get(2) {
            None => Detect::NeedMore,
            Some(flag) if flag & SERIALIZATION_MASK != 0 => Detect::Match,
            Some(_) => Detect::NoMatch,
        },
    }
}

/// The header at the front of `data`, once its 16 bytes are there; checks the magic, the
/// sign of the length and the limit on the whole frame.
///
/// # Errors
/// [`DubboError::BadMagic`], [`DubboError::NegativeLength`], [`DubboError::FrameTooLarge`].
pub fn parse_head(data: &[u8], max_frame_bytes: usize) -> Result<Option<Head>, DubboError> {
    if !check_magic(data)? || data.len() < HEADER_LEN {
        return Ok(None);
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&data[ID_AT..ID_AT + 8]);
    let len = [data[12], data[13], data[14], data[15]];
    let signed = i32::from_be_bytes(len);
    if signed < 0 {
        return Err(DubboError::NegativeLength(signed));
    }
    let head = Head {
        flag: data[2],
        status: data[3],
        id: u64::from_be_bytes(id),
        body_len: u32::from_be_bytes(len),
    };
    let total = head.frame_len();
    if total > max_frame_bytes {
        return Err(DubboError::FrameTooLarge {
            len: total as u64,
            max: max_frame_bytes,
        });
    }
    Ok(Some(head))
}

/// Rewrites the request id of a whole frame in place.
pub fn patch_id(frame: &mut [u8], id: u64) {
    frame[ID_AT..ID_AT + 8].copy_from_slice(&id.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_fields_and_limits() {
        let bytes = [0xda, 0xbb, 0xc2, 0, 0, 0, 0, 0, 0, 0, 1, 2, 0, 0, 0, 5];
        let head = parse_head(&bytes, 100).unwrap().unwrap();
        assert_eq!(head.id, 0x102);
        assert_eq!(head.frame_len(), 21);
        assert!(head.is_request() && head.is_two_way() && !head.is_event());
        assert_eq!(head.serialization(), HESSIAN2);
        let mut out = Vec::new();
        head.write(&mut out, 0x102);
        assert_eq!(out, bytes);
        assert_eq!(parse_head(&bytes[..15], 100), Ok(None));
        assert_eq!(
            parse_head(&bytes, 20),
            Err(DubboError::FrameTooLarge { len: 21, max: 20 })
        );
        let mut negative = bytes;
        negative[12] = 0x80;
        assert!(matches!(
            parse_head(&negative, 100),
            Err(DubboError::NegativeLength(_))
        ));
        assert_eq!(
            parse_head(&[0xca, 0xfe], 100),
            Err(DubboError::BadMagic(0xcafe))
        );
        assert_eq!(check_magic(&[0x01]), Err(DubboError::BadMagic(0x0100)));
        assert_eq!(check_magic(&[0xda]), Ok(false));
        assert_eq!(check_magic(&[]), Ok(false));
    }
}

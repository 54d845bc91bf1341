//! Minimal Dubbo 2 framing for the test tools (the capture relay and the Dubbo load client):
//! splitting a byte stream into frames by their 16-byte header and building the few frames a
//! load client sends.
//!
//! Written independently of `protocols/dubbo` on purpose, like [`crate::wire`] for Bolt. All
//! integers are big-endian.

/// The magic number every Dubbo frame starts with.
pub const MAGIC: u16 = 0xdabb;
/// Length of the fixed header.
pub const HEADER_LEN: usize = 16;
/// Flag bit: request (else response).
pub const FLAG_REQUEST: u8 = 0x80;
/// Flag bit: two-way request (a response is expected).
pub const FLAG_TWO_WAY: u8 = 0x40;
/// Flag bit: event (heartbeat).
pub const FLAG_EVENT: u8 = 0x20;
/// Serialization id of Hessian2 (low five bits of the flag byte).
pub const HESSIAN2: u8 = 2;
/// Response status OK.
pub const STATUS_OK: u8 = 20;
/// Offset of the 8-byte request id.
pub const ID_OFFSET: usize = 4;

/// The fixed header of one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// The flag byte.
    pub flag: u8,
    /// The status byte (responses).
    pub status: u8,
    /// The request id.
    pub id: u64,
    /// The body length.
    pub body_len: u32,
}

impl Header {
    /// The header at the front of `data`, once 16 bytes are there.
    ///
    /// # Errors
    /// A message when the magic is wrong.
    pub fn parse(data: &[u8]) -> Result<Option<Header>, String> {
        if data.len() < HEADER_LEN {
            return Ok(None);
        }
        let magic = u16::from_be_bytes([data[0], data[1]]);
        if magic != MAGIC {
            return Err(format!("bad magic {magic:#06x}"));
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&data[4..12]);
        Ok(Some(Header {
            flag: data[2],
            status: data[3],
            id: u64::from_be_bytes(id),
            body_len: u32::from_be_bytes([data[12], data[13], data[14], data[15]]),
        }))
    }

    /// Header plus body.
    pub fn frame_len(&self) -> usize {
        HEADER_LEN + self.body_len as usize
    }

    /// A short name of what the frame is: `request`, `oneway`, `heartbeat-request`,
    /// `response`, `heartbeat-response`.
    pub fn kind(&self) -> &'static str {
        let event = self.flag & FLAG_EVENT != 0;
        match (self.flag & FLAG_REQUEST != 0, event) {
            (true, true) => "heartbeat-request",
            (true, false) if self.flag & FLAG_TWO_WAY == 0 => "oneway",
            (true, false) => "request",
            (false, true) => "heartbeat-response",
            (false, false) => "response",
        }
    }
}

/// Splits the complete frames off the front of `buf`, leaving a partial one there.
///
/// # Errors
/// A message when the stream is not Dubbo.
pub fn split_frames(buf: &mut Vec<u8>) -> Result<Vec<Vec<u8>>, String> {
    let mut frames = Vec::new();
    while let Some(head) = Header::parse(buf)? {
        let len = head.frame_len();
        if buf.len() < len {
            break;
        }
        frames.push(buf.drain(..len).collect());
    }
    Ok(frames)
}

/// Sets the request id of a whole frame.
pub fn set_id(frame: &mut [u8], id: u64) {
    frame[ID_OFFSET..ID_OFFSET + 8].copy_from_slice(&id.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_frames_and_keeps_a_partial_one() {
        let mut frame = vec![
            0xda, 0xbb, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 7, 0, 0, 0, 2, b'N', b'N',
        ];
        let mut buf = frame.clone();
        buf.extend_from_slice(&frame[..5]);
        let frames = split_frames(&mut buf).unwrap();
        assert_eq!(frames, vec![frame.clone()]);
        assert_eq!(buf.len(), 5);
        let head = Header::parse(&frames[0]).unwrap().unwrap();
        assert_eq!((head.id, head.kind(), head.frame_len()), (7, "request", 18));
        set_id(&mut frame, 9);
        assert_eq!(Header::parse(&frame).unwrap().unwrap().id, 9);
        assert!(split_frames(&mut vec![0u8; 16]).is_err());
    }
}

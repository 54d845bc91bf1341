//! The flag byte of decode/encode layouts (§5.6) and the frame kinds it encodes.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

/// What a frame is, as told by the flag byte (§5.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameKind {
    /// A two-way request.
    Request,
    /// A request that gets no response.
    Oneway,
    /// A response to a request.
    Response,
    /// A heartbeat request (answered by the proxy, never forwarded).
    HeartbeatRequest,
    /// A heartbeat acknowledgement.
    HeartbeatResponse,
}

const TYPE_SHIFT: u8 = 6;
const HEARTBEAT_BIT: u8 = 0x20;
/// Bit 0: "copy raw bytes"; the guest sets it on all output and the host ignores it.
const COPY_BIT: u8 = 0x01;

impl FrameKind {
    /// Reads a flag byte. Type bits 2 (MOSN's oneway) and 3 (the Go SDK's oneway) both mean
    /// oneway (§8.1). A heartbeat bit on a response is an ack, on anything else a request.
    pub fn from_flag(flag: u8) -> FrameKind {
        let heartbeat = flag & HEARTBEAT_BIT != 0;
        match (flag >> TYPE_SHIFT, heartbeat) {
            (0, false) => FrameKind::Response,
            (0, true) => FrameKind::HeartbeatResponse,
            (_, true) => FrameKind::HeartbeatRequest,
            (1, false) => FrameKind::Request,
            (_, false) => FrameKind::Oneway,
        }
    }

    /// The flag a host sends in an encode/hijack input (§5.6): never type bits 3, which the
    /// Go SDK rejects.
    pub fn host_flag(self) -> u8 {
        match self {
            FrameKind::Response => 0x00,
            FrameKind::HeartbeatResponse => HEARTBEAT_BIT,
            FrameKind::Request => 1 << TYPE_SHIFT,
            FrameKind::HeartbeatRequest => (1 << TYPE_SHIFT) | HEARTBEAT_BIT,
            FrameKind::Oneway => 2 << TYPE_SHIFT,
        }
    }

    /// The flag a guest reports, exactly as the Go SDK emits it (§5.6: 0x01, 0x21, 0x41,
    /// 0x61, 0xC1).
    pub fn guest_flag(self) -> u8 {
        match self {
            FrameKind::Oneway => (3 << TYPE_SHIFT) | COPY_BIT,
            other => other.host_flag() | COPY_BIT,
        }
    }

    /// True for requests, oneway requests and heartbeat requests.
    pub fn is_request(self) -> bool {
        matches!(
            self,
            FrameKind::Request | FrameKind::Oneway | FrameKind::HeartbeatRequest
        )
    }

    /// True for heartbeat requests and acks.
    pub fn is_heartbeat(self) -> bool {
        matches!(
            self,
            FrameKind::HeartbeatRequest | FrameKind::HeartbeatResponse
        )
    }

    /// What an encode input's type bits must agree with (§6.3 step 2): `Some(true)` for a
    /// request, `Some(false)` for a response, `None` for type bits 3, which the Go SDK rejects.
    pub fn encode_type_is_request(flag: u8) -> Option<bool> {
        match flag >> TYPE_SHIFT {
            0 => Some(false),
            1 | 2 => Some(true),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_flags_match_what_the_go_sdk_emits() {
        assert_eq!(FrameKind::Response.guest_flag(), 0x01);
        assert_eq!(FrameKind::HeartbeatResponse.guest_flag(), 0x21);
        assert_eq!(FrameKind::Request.guest_flag(), 0x41);
        assert_eq!(FrameKind::HeartbeatRequest.guest_flag(), 0x61);
        assert_eq!(FrameKind::Oneway.guest_flag(), 0xC1);
    }

    #[test]
    fn every_kind_round_trips_through_both_flags() {
        for kind in [
            FrameKind::Request,
            FrameKind::Oneway,
            FrameKind::Response,
            FrameKind::HeartbeatRequest,
            FrameKind::HeartbeatResponse,
        ] {
            assert_eq!(FrameKind::from_flag(kind.guest_flag()), kind);
            assert_eq!(FrameKind::from_flag(kind.host_flag()), kind);
        }
    }

    #[test]
    fn both_oneway_encodings_are_accepted() {
        assert_eq!(FrameKind::from_flag(0x80), FrameKind::Oneway);
        assert_eq!(FrameKind::from_flag(0xC0), FrameKind::Oneway);
        assert_eq!(FrameKind::encode_type_is_request(0xC0), None);
        assert_eq!(FrameKind::encode_type_is_request(0x80), Some(true));
        assert_eq!(FrameKind::encode_type_is_request(0x20), Some(false));
    }
}

//! Constants and byte layouts of the MOSN wasm codec ABI `proxy_abi_mosn_version_0_2_0`.
//!
//! This crate is shared by the host (`codec-host`) and the guest SDK (`codec-sdk`), so both
//! sides read and write exactly the same bytes. It has no dependencies, no `unsafe`, and never
//! panics on malformed input: every parser returns a [`LayoutError`].
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod detect;
mod error;
mod flag;
mod header_map;
mod layout;
mod pairs;
mod status;

pub use detect::Detect;
pub use error::LayoutError;
pub use flag::FrameKind;
pub use header_map::HeaderMap;
pub use layout::{
    write_decode_result, write_encode_result, write_host_command, DecodeExtras, DecodeResultView,
    EncodeResultView, HeaderSection, HostCommandView, DECODE_EXTRAS_LEN, DECODE_RESULT_FIXED_LEN,
    ENCODE_RESULT_FIXED_LEN, HOST_COMMAND_FIXED_LEN,
};
pub use pairs::{decode_pairs, encode_pairs, pairs_len, Pair};
pub use status::{BufferType, LogLevel, MapType, Status};

/// Name of the function export that marks a module as a MOSN codec plugin (§1).
pub const ABI_MARKER: &str = "proxy_abi_mosn_version_0_2_0";

/// Names of the exports a codec plugin must provide (§3), besides the [`ABI_MARKER`].
pub mod exports {
    /// The guest's linear memory.
    pub const MEMORY: &str = "memory";
    /// Runtime initialisation; called once before anything else (§2).
    pub const START: &str = "_start";
    /// Guest allocator: `(size) -> ptr`.
    pub const MALLOC: &str = "malloc";
    /// Alias of [`MALLOC`] in proxy-wasm naming.
    pub const MEMORY_ALLOCATE: &str = "proxy_on_memory_allocate";
    /// `(ctx, parent) -> ()`.
    pub const CONTEXT_CREATE: &str = "proxy_on_context_create";
    /// `(root, vm_cfg_size) -> bool`.
    pub const VM_START: &str = "proxy_on_vm_start";
    /// `(root, plugin_cfg_size) -> bool`.
    pub const CONFIGURE: &str = "proxy_on_configure";
    /// `(ctx) -> ()`.
    pub const DELETE: &str = "proxy_on_delete";
    /// `(ctx) -> bool`.
    pub const DONE: &str = "proxy_on_done";
    /// `(ctx, ptr, len) -> status`.
    pub const DECODE: &str = "proxy_decode_buffer_bytes";
    /// `(ctx, ptr, len) -> status`.
    pub const ENCODE: &str = "proxy_encode_buffer_bytes";
    /// `(ctx, id: i64) -> status`.
    pub const KEEPALIVE: &str = "proxy_keepalive_buffer_bytes";
    /// `(ctx, ptr, len) -> status`.
    pub const REPLY_KEEPALIVE: &str = "proxy_reply_keepalive_buffer_bytes";
    /// `(ctx, status_code, ptr, len) -> status`.
    pub const HIJACK: &str = "proxy_hijack_buffer_bytes";
}

/// Optional exports: this host's extensions to the ABI. A plugin may export them; MOSN never
/// calls them, and a host that finds one absent keeps the standard path.
pub mod optional_exports {
    /// `(ctx) -> u32`: called right after `proxy_decode_buffer_bytes(ctx, …)` answered 99
    /// (need more data): the total length, counted from the first input byte, that the
    /// incomplete frame at the front of that input declares; 0 when it is not known yet
    /// (its fixed part is incomplete too). The host then waits for that many bytes before
    /// decoding again, so decode work stays proportional to the bytes that arrive.
    pub const DECODE_BYTES_NEEDED: &str = "rpc_sidecar_decode_bytes_needed";
    /// `(ctx) -> u32`: called right after `proxy_decode_buffer_bytes(ctx, …)` answered 0 with
    /// a request: 1 when the decoded frame is the protocol's GoAway (the peer asks to stop
    /// sending new requests on this connection), 0 otherwise. The standard report stays a
    /// plain request, as MOSN's Go SDK reports it.
    pub const DECODE_IS_GOAWAY: &str = "rpc_sidecar_decode_is_goaway";
    /// `(ctx, id: i64) -> status`: on a fresh ctx, like `proxy_keepalive_buffer_bytes`:
    /// 0 = a GoAway request with protocol id `id` is cached (a following
    /// `proxy_encode_buffer_bytes(ctx, …)` with the request flag encodes it), 2 = the
    /// protocol has no GoAway.
    pub const GOAWAY: &str = "rpc_sidecar_goaway";

    /// `(ctx, status) -> u32`: the reverse of the hijack mapping, MOSN's
    /// `MappingHeaderStatusCode`: the proxy's HTTP-like code (200, 500, 502, 503, 504, …) for
    /// a response carrying protocol status `status` (what the decode result reported in its
    /// timeout/status field). `ctx` is any live stream context; it names the root (the
    /// plugin configuration) whose protocol answers. 0 = no mapping: the host then uses
    /// [`crate::default_response_code`]. Retries on response statuses use it.
    pub const RESPONSE_CODE: &str = "rpc_sidecar_response_code";

    /// `(ctx, ptr, len) -> status`: protocol auto-detection. The input is the first bytes of
    /// a downstream connection (never empty, at most the host's sniff cap); the answer is a
    /// [`crate::Detect`] status: 0 = these bytes are this protocol, 1 = they are not,
    /// 99 = too few bytes to tell (the host asks again with more), 12 = the protocol cannot
    /// tell (the host then tries a decode instead). `ctx` is a live stream context whose
    /// root names the protocol, or 0 for the instance's first root. Nothing is cached: the
    /// call has no effect on any context.
    pub const CHECK: &str = "rpc_sidecar_check";

    /// `(len) -> ptr`: a guest-owned input buffer of at least `len` bytes (never 0), where the
    /// host places the input of the next codec export call (decode, encode, check, keepalive
    /// reply, hijack) instead of `malloc`ing a block the guest frees after the call. The
    /// guest keeps the buffer (it never frees it as an input) and grows it when asked for
    /// more; the pointer stays valid until the next call of this export. The host asks again
    /// only for a longer input, so a steady stream of frames costs no allocation call at all.
    /// 0 = no buffer: the host falls back to `malloc`.
    pub const INPUT_BUFFER: &str = "rpc_sidecar_input_buffer";

    /// `(ctx) -> u32`: where the protocol id of the frame decoded on `ctx` sits in that
    /// frame's bytes as decoded, as [`crate::IdField::to_raw`]; 0 = the frame must go through
    /// encode (changed, covered by a checksum, or a protocol that cannot tell). The host asks
    /// before encoding a frame whose headers it did not change: with an answer it forwards the
    /// frame's original bytes with only those bytes replaced by the new id, and makes no
    /// encode call (the guest's cached command keeps its id, as after no encode at all).
    pub const ID_FIELD: &str = "rpc_sidecar_id_field";

    /// `() -> ()`, never called: a marker saying that `proxy_decode_buffer_bytes` accepts a
    /// context that already holds a command (decoded, or cached by keepalive, reply or
    /// hijack) and replaces it. The host then keeps the contexts of finished frames and
    /// decodes the next frames on them, instead of a `proxy_on_delete` and a
    /// `proxy_on_context_create` per frame. MOSN's Go SDK traps on a decode on a used
    /// context, so without the marker every frame gets a fresh one.
    pub const DECODE_REUSES_CONTEXT: &str = "rpc_sidecar_decode_reuses_context";
}

/// Where a frame's protocol id sits in its bytes (optional export
/// [`optional_exports::ID_FIELD`]): `width` bytes (1..=8), big-endian, at `offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdField {
    /// Byte offset from the start of the frame (below 2^24).
    pub offset: u32,
    /// Bytes (1..=8).
    pub width: u8,
}

impl IdField {
    /// The export's answer: `offset << 8 | width`.
    pub fn to_raw(self) -> u32 {
        (self.offset << 8) | u32::from(self.width)
    }

    /// Reads an answer; `None` for 0 (no field) or a width outside 1..=8.
    pub fn from_raw(raw: u32) -> Option<IdField> {
        let width = (raw & 0xff) as u8;
        (1..=8).contains(&width).then_some(IdField {
            offset: raw >> 8,
            width,
        })
    }

    /// Sets the field to `id` in `frame` (a copy of the frame's bytes); `false`, with
    /// `frame` untouched, when the field lies outside it or `id` does not fit its width.
    pub fn write(self, frame: &mut [u8], id: u64) -> bool {
        let start = self.offset as usize;
        let width = usize::from(self.width);
        let Some(end) = start.checked_add(width) else {
            return false;
        };
        if end > frame.len() || (width < 8 && id >> (8 * width) != 0) {
            return false;
        }
        frame[start..end].copy_from_slice(&id.to_be_bytes()[8 - width..]);
        true
    }
}

/// The proxy's HTTP-like code for a response with protocol status `status`, for a codec that
/// defines no mapping of its own (no [`optional_exports::RESPONSE_CODE`] export, or a native
/// codec without one): 0 is success (200); a status that already is an HTTP code (100–599) is
/// kept; anything else is an internal error (500). Bolt, for one, maps its own statuses
/// (0→200, 4→503, 7→504, 16→502, else 500).
pub fn default_response_code(status: u32) -> u32 {
    match status {
        0 => 200,
        100..=599 => status,
        _ => 500,
    }
}

/// Header a plugin adds to a decoded request whose frame is complete but whose header section
/// does not parse (value: the reason). The frame is still reported so the proxy can answer it
/// with a hijack (code 2, MOSN's "request header decode error") instead of closing the
/// connection. Plugins that never set it are unaffected.
pub const HEADER_DECODE_ERROR: &str = "x-codec-header-error";

/// Plugin-configuration key (buffer type 7, §7) through which the host tells a plugin the
/// largest frame it accepts, in bytes (decimal). The host always sends it, replacing any
/// configured pair of that name, so host and plugin enforce the same limit; a plugin that
/// limits frame sizes reads it in `proxy_on_configure`.
pub const MAX_FRAME_BYTES_KEY: &str = "max_frame_bytes";

/// Plugin-configuration key through which this host asks a plugin to append the decode
/// extras ([`layout::DecodeExtras`]: where the id sits, whether the request is a GoAway)
/// after each §5.4 decode result, value `"1"`. The answers the optional exports
/// `rpc_sidecar_id_field` and `rpc_sidecar_decode_is_goaway` give then come with the
/// decode, and the host makes neither call. MOSN never sends the key, so a plugin that
/// honours it writes the standard layout there; a plugin that ignores it is asked the
/// exports as before.
pub const DECODE_EXTRAS_KEY: &str = "rpc_sidecar_decode_extras";

#[cfg(test)]
mod tests {
    use super::default_response_code;

    #[test]
    fn the_default_response_code_keeps_http_codes_and_fails_the_rest() {
        assert_eq!(default_response_code(0), 200);
        assert_eq!(default_response_code(200), 200);
        assert_eq!(default_response_code(503), 503);
        assert_eq!(default_response_code(4), 500);
        assert_eq!(default_response_code(99), 500);
        assert_eq!(default_response_code(600), 500);
    }
}

#[cfg(test)]
mod id_field_tests {
    use super::IdField;

    #[test]
    fn the_raw_answer_round_trips_and_bad_widths_are_no_field() {
        let f = IdField {
            offset: 5,
            width: 4,
        };
        assert_eq!(IdField::from_raw(f.to_raw()), Some(f));
        assert_eq!(IdField::from_raw(0), None);
        assert_eq!(IdField::from_raw(5 << 8 | 9), None);
    }

    #[test]
    fn write_sets_the_id_big_endian_and_refuses_what_does_not_fit() {
        let f = IdField {
            offset: 1,
            width: 4,
        };
        let mut frame = [0u8; 6];
        assert!(f.write(&mut frame, 0x0102_0304));
        assert_eq!(frame, [0, 1, 2, 3, 4, 0]);
        assert!(!f.write(&mut frame, 1 << 32), "too wide for 4 bytes");
        assert!(!f.write(&mut frame[..4], 7), "outside the frame");
        assert_eq!(frame, [0, 1, 2, 3, 4, 0], "untouched");
    }
}

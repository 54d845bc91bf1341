//! The Bolt codec as the host runs it natively (`codec-host`'s `NativeCodec<Bolt>`): decode
//! arbitrary bytes through the `Protocol` API as a stream of frames and, for each frame that
//! decodes, check what the host relies on:
//!
//! - it consumed at least its fixed part and at most the input, and its raw bytes are that
//!   prefix; bytes after it change nothing; every shorter prefix is "incomplete", never an
//!   error; the frame limit is applied to exactly its length;
//! - the header count, the header map and the reported section agree;
//! - an unchanged frame re-encodes byte for byte, and with a rewritten id only its id bytes
//!   (and CRC) differ and it decodes again with that id;
//! - frames rebuilt after an edit (headers touched, a header added, the host's edit rule,
//!   a new body) decode again to exactly the edited fields;
//! - heartbeat replies and hijack responses decode as the responses they claim to be.

#![no_main]

use bolt::{Bolt, BoltCommand, BoltError, MIN_MAX_FRAME_BYTES};
use codec_abi::{FrameKind, HeaderMap};
use codec_sdk::{apply_header_edits, Command, Decoded, Protocol};
use libfuzzer_sys::fuzz_target;

/// Smallest Bolt frame (a v1 response's fixed part).
const MIN_FRAME: usize = 20;

fuzz_target!(|data: &[u8]| {
    // A stream: frame after frame, as a connection reads them, until one is incomplete or
    // the bytes are not Bolt.
    let bolt = Bolt::default();
    let mut rest = data;
    for _ in 0..8 {
        match check_frame(&bolt, rest) {
            Some(consumed) => rest = &rest[consumed..],
            None => break,
        }
    }
});

/// Checks the frame at the front of `data`, if one decodes; returns its length.
fn check_frame(bolt: &Bolt, data: &[u8]) -> Option<usize> {
    let Ok(Some(Decoded { command, consumed })) = bolt.decode_frame(data) else {
        return None;
    };
    let frame = &data[..consumed];
    assert!(consumed >= MIN_FRAME && consumed <= data.len());
    assert_eq!(command.raw(), frame);
    assert_eq!(
        decoded(bolt, frame),
        command,
        "trailing bytes changed the frame"
    );
    check_prefixes(bolt, frame);
    check_limit(frame);
    check_headers(&command);

    // Unchanged: byte for byte, then with a rewritten id.
    assert_eq!(encode(&command), frame);
    for id in [0, 1, u64::from(u32::MAX), 0x1_0000_0007] {
        check_id_rewrite(bolt, &command, frame, id);
    }

    check_rebuilds(bolt, &command);
    check_replies(bolt, &command);
    Some(consumed)
}

fn encode(command: &BoltCommand) -> Vec<u8> {
    let mut out = Vec::new();
    Bolt::default()
        .encode(command, &mut out)
        .expect("a decoded frame encodes");
    out
}

/// The one whole frame `bytes` decodes to.
fn decoded(bolt: &Bolt, bytes: &[u8]) -> BoltCommand {
    let d = bolt
        .decode_frame(bytes)
        .expect("a frame the codec wrote decodes")
        .expect("a frame the codec wrote is complete");
    assert_eq!(d.consumed, bytes.len(), "decode consumed part of a frame");
    d.command
}

/// Every prefix of a whole frame is incomplete (the first ones and the last ones cover the
/// fixed part and the sections' ends; the rest are sampled).
fn check_prefixes(bolt: &Bolt, frame: &[u8]) {
    let n = frame.len();
    let cuts = (0..n.min(32))
        .chain(n.saturating_sub(8)..n)
        .chain((0..n).step_by(97));
    for cut in cuts {
        assert_eq!(
            bolt.decode_frame(&frame[..cut]).map(|d| d.is_some()),
            Ok(false),
            "prefix of {cut} of a {n}-byte frame"
        );
    }
}

/// A limit of the frame's length accepts it; one byte less refuses it as too large.
fn check_limit(frame: &[u8]) {
    let n = frame.len();
    let at_limit = Bolt::with_max_frame_bytes(n).decode_frame(frame);
    assert!(matches!(at_limit, Ok(Some(ref d)) if d.consumed == n));
    if n > MIN_MAX_FRAME_BYTES {
        assert_eq!(
            Bolt::with_max_frame_bytes(n - 1).decode_frame(frame).err(),
            Some(BoltError::FrameTooLarge {
                len: n as u64,
                max: n - 1
            })
        );
    }
}

fn check_headers(command: &BoltCommand) {
    // Before and after the map is built.
    let count = command.header_count();
    let map = command.headers();
    assert_eq!(count, map.len());
    assert_eq!(command.header_count(), map.len());
    if let Some(section) = command.encoded_headers() {
        let mut enc = Vec::new();
        map.encode_into(&mut enc);
        assert_eq!(enc, section, "reported section is not the map's encoding");
        assert_eq!(HeaderMap::decode(section).as_ref(), Ok(map));
    }
}

/// Same fields, as decoded from the frame `command` encodes to.
fn assert_same_fields(got: &BoltCommand, want: &BoltCommand) {
    assert_eq!(got.kind(), want.kind());
    assert_eq!(got.id(), want.id());
    assert_eq!(got.timeout_or_status(), want.timeout_or_status());
    assert_eq!(
        (got.protocol_version(), got.cmd_code(), got.codec()),
        (want.protocol_version(), want.cmd_code(), want.codec())
    );
    assert_eq!(got.has_crc(), want.has_crc());
    assert_eq!(got.class(), want.class());
    assert_eq!(got.headers(), want.headers());
    assert_eq!(got.body(), want.body());
}

fn check_id_rewrite(bolt: &Bolt, command: &BoltCommand, frame: &[u8], id: u64) {
    let mut c = command.clone();
    c.set_id(id);
    assert_eq!(c.id(), u64::from(id as u32), "ids are 32-bit");
    let out = encode(&c);
    assert_eq!(out.len(), frame.len());
    let id_at = if c.protocol_version() == 1 { 5 } else { 6 };
    assert_eq!(&out[id_at..id_at + 4], &(id as u32).to_be_bytes());
    let crc_at = if c.has_crc() {
        out.len() - 4
    } else {
        out.len()
    };
    assert_eq!(&out[..id_at], &frame[..id_at]);
    assert_eq!(&out[id_at + 4..crc_at], &frame[id_at + 4..crc_at]);
    let again = decoded(bolt, &out);
    assert_same_fields(&again, &c);
    assert_eq!(again.raw(), &out[..]);
}

fn check_rebuilds(bolt: &Bolt, command: &BoltCommand) {
    // Headers touched but equal: a canonical section rebuilds to the very same bytes.
    let mut c = command.clone();
    let _ = c.headers_mut();
    assert!(c.is_changed());
    let out = encode(&c);
    assert_same_fields(&decoded(bolt, &out), &c);
    if command.encoded_headers().is_some() {
        assert_eq!(
            out,
            command.raw(),
            "an unedited canonical frame rebuilt differently"
        );
    }

    // A header added (a section too long for Bolt's u16 length is refused, not truncated).
    let mut c = command.clone();
    c.headers_mut().insert("x-fuzz", "1");
    rebuild_or_too_long(bolt, &c);

    // The host's edit rule: the first key dropped, every other value replaced.
    let mut c = command.clone();
    let edited: HeaderMap = command
        .headers()
        .iter()
        .skip(1)
        .map(|(k, v)| (k.to_vec(), [v, b"!"].concat()))
        .collect();
    let touched = apply_header_edits(&mut c, &edited);
    assert_eq!(touched, !command.headers().is_empty());
    assert_eq!(c.is_changed(), touched);
    rebuild_or_too_long(bolt, &c);

    // A new body, one byte longer than the old one.
    let mut c = command.clone();
    let body = [command.body(), b"+"].concat();
    c.set_body(body.clone());
    let again = decoded(bolt, &encode(&c));
    assert_same_fields(&again, &c);
    assert_eq!(again.body(), &body[..]);
}

fn rebuild_or_too_long(bolt: &Bolt, c: &BoltCommand) {
    let mut out = Vec::new();
    match Bolt::default().encode(c, &mut out) {
        Ok(()) => assert_same_fields(&decoded(bolt, &out), c),
        Err(e) => {
            assert!(c.headers().encoded_len() > usize::from(u16::MAX), "{e}");
            assert!(e.message().contains("header section"), "{e}");
        }
    }
}

fn check_replies(bolt: &Bolt, command: &BoltCommand) {
    let mut p = Bolt::default();
    let reply = p.reply_keepalive(command);
    assert_eq!(
        reply.is_some(),
        command.kind() == FrameKind::HeartbeatRequest
    );
    if let Some(reply) = reply {
        let r = decoded(bolt, &encode(&reply));
        assert_eq!(r.kind(), FrameKind::HeartbeatResponse);
        assert_eq!((r.id(), r.timeout_or_status()), (command.id(), 0));
        assert_eq!(r.protocol_version(), command.protocol_version());
    }
    if matches!(command.kind(), FrameKind::Request | FrameKind::Oneway) {
        for status in [0, p.map_status(2), u32::from(u16::MAX)] {
            let hijacked = p.hijack(command, status).expect("a 16-bit status");
            let r = decoded(bolt, &encode(&hijacked));
            assert_eq!(r.kind(), FrameKind::Response);
            assert_eq!((r.id(), r.timeout_or_status()), (command.id(), status));
            assert_eq!(r.has_crc(), command.has_crc());
            assert!(r.headers().is_empty() && r.body().is_empty() && r.class().is_empty());
        }
        assert!(p.hijack(command, 1 << 16).is_err());
    }
}

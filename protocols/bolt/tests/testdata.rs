//! The captured frames of `testdata/`: decoded as MOSN's own plugin reports them (through the
//! Protocol API and at the ABI level through the harness), re-encoded byte for byte, with the
//! id rewritten, split at every offset and packed back to back.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

mod vectors;

use bolt::Bolt;
use codec_abi::{BufferType, FrameKind, Status};
use codec_sdk::harness::Harness;
use codec_sdk::{Command, Protocol};
use vectors::{encode_input, id_offset, sha256_hex, sorted, vectors, with_id};

#[test]
fn every_frame_decodes_as_the_go_plugin_reports_it() {
    for v in vectors() {
        let mut bolt = Bolt::default();
        let decoded = bolt
            .decode(&v.bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", v.name))
            .unwrap_or_else(|| panic!("{}: incomplete", v.name));
        let c = &decoded.command;
        assert_eq!(decoded.consumed, v.bytes.len(), "{}", v.name);
        assert_eq!(decoded.consumed, v.drain, "{}", v.name);
        assert_eq!(c.kind().guest_flag(), v.flag, "{}", v.name);
        assert_eq!(c.id(), v.id, "{}", v.name);
        assert_eq!(c.timeout_or_status(), v.timeout_or_status, "{}", v.name);
        assert_eq!(c.body().len(), v.payload_len, "{}", v.name);
        assert_eq!(sha256_hex(c.body()), v.payload_sha256, "{}", v.name);
        assert_eq!(sorted(c.headers()), v.headers, "{}", v.name);
        assert_eq!(c.raw(), &v.bytes[..], "{}", v.name);
    }
}

#[test]
fn every_frame_decodes_through_the_abi_as_the_go_plugin_reports_it() {
    let mut h = Harness::new(Bolt::default).unwrap();
    for v in vectors() {
        let ctx = h.create_context();
        let call = h.decode(ctx, &v.bytes);
        assert_eq!(call.known_status(), Some(Status::Ok), "{}", v.name);
        let report = call.report(BufferType::DecodeData).unwrap();
        assert_eq!(report.len(), v.decode_result_len, "{}", v.name);
        let r = call.decode_result().unwrap();
        assert_eq!(r.flag, v.flag, "{}", v.name);
        assert_eq!(r.id, v.id, "{}", v.name);
        assert_eq!(r.timeout_or_status, v.timeout_or_status, "{}", v.name);
        assert_eq!(r.drain as usize, v.drain, "{}", v.name);
        assert_eq!(r.payload.len(), v.payload_len, "{}", v.name);
        assert_eq!(sha256_hex(r.payload), v.payload_sha256, "{}", v.name);
        let headers = codec_abi::HeaderMap::decode(r.headers).unwrap();
        assert_eq!(sorted(&headers), v.headers, "{}", v.name);
        h.delete(ctx);
    }
    assert_eq!(h.live_contexts(), 0);
    assert!(h.logs().is_empty(), "{:?}", h.logs());
}

#[test]
fn every_frame_reencodes_byte_identically_and_with_a_new_id() {
    for v in vectors() {
        let mut bolt = Bolt::default();
        let mut c = bolt.decode(&v.bytes).unwrap().unwrap().command;
        let mut out = Vec::new();
        bolt.encode(&c, &mut out).unwrap();
        assert_eq!(out, v.bytes, "{}", v.name);

        c.set_id(0xDEAD_BEEF);
        out.clear();
        bolt.encode(&c, &mut out).unwrap();
        assert_eq!(out, with_id(&v.bytes, 0xDEAD_BEEF), "{}", v.name);
        let at = id_offset(&v.bytes);
        let differing: Vec<usize> = (0..out.len()).filter(|&i| out[i] != v.bytes[i]).collect();
        assert!(
            differing.iter().all(|i| (at..at + 4).contains(i)),
            "{}",
            v.name
        );
    }
}

#[test]
fn every_frame_reencodes_through_the_abi_with_the_hosts_id() {
    let mut h = Harness::new(Bolt::default).unwrap();
    for v in vectors() {
        for new_id in [v.id, 1, 0xFFFF_FFFF] {
            let ctx = h.create_context();
            let decoded = h.decode(ctx, &v.bytes);
            let r = decoded.decode_result().unwrap();
            let kind = FrameKind::from_flag(r.flag);
            let input = encode_input(r.headers, kind, new_id, v.id, r.timeout_or_status, &[]);
            let call = h.encode(ctx, &input);
            assert_eq!(call.status, 0, "{}: {:?}", v.name, h.logs());
            let e = call.encode_result().unwrap();
            assert_eq!(e.flag, v.flag, "{}", v.name);
            assert_eq!(e.id, new_id, "{}", v.name);
            assert_eq!(e.timeout_or_status, v.timeout_or_status, "{}", v.name);
            assert_eq!(e.frame, &with_id(&v.bytes, new_id as u32)[..], "{}", v.name);
            // The cached id is now the new one: a retry names it (§6.3).
            let retry = encode_input(r.headers, kind, 5, new_id, 0, &[]);
            assert_eq!(h.encode(ctx, &retry).status, 0, "{}", v.name);
            h.delete(ctx);
        }
    }
    assert_eq!(h.live_contexts(), 0);
}

#[test]
fn every_split_point_needs_more_data_until_the_frame_is_whole() {
    let mut h = Harness::new(Bolt::default).unwrap();
    for v in vectors() {
        let mut bolt = Bolt::default();
        let ctx = h.create_context();
        for cut in 0..v.bytes.len() {
            assert_eq!(
                bolt.decode(&v.bytes[..cut]),
                Ok(None),
                "{} cut {cut}",
                v.name
            );
            let call = h.decode(ctx, &v.bytes[..cut]);
            let want = if cut == 0 {
                Status::Empty
            } else {
                Status::NeedMoreData
            };
            assert_eq!(call.known_status(), Some(want), "{} cut {cut}", v.name);
            assert!(call.reports.is_empty(), "{} cut {cut}", v.name);
            // Once the fixed part is in, the frame's whole length is declared (0 before).
            let needed = h.decode_bytes_needed(ctx) as usize;
            assert_eq!(needed, bolt.frame_len(&v.bytes[..cut]).unwrap_or(0));
            assert!(
                needed == 0 || needed == v.bytes.len(),
                "{} cut {cut}: needed {needed}",
                v.name
            );
            if cut + 1 == v.bytes.len() && v.bytes.len() > 30 {
                assert_eq!(
                    needed,
                    v.bytes.len(),
                    "{}: known before the last byte",
                    v.name
                );
            }
        }
        assert_eq!(
            h.decode_bytes_needed(ctx + 1),
            0,
            "another context knows nothing"
        );
        // The same context then decodes the whole frame (the guest keeps no partial state).
        assert_eq!(h.decode(ctx, &v.bytes).status, 0, "{}", v.name);
        h.delete(ctx);
    }
}

#[test]
fn frames_back_to_back_decode_one_at_a_time() {
    let all = vectors();
    let mut stream = Vec::new();
    for v in &all {
        stream.extend_from_slice(&v.bytes);
    }
    let mut bolt = Bolt::default();
    let mut h = Harness::new(Bolt::default).unwrap();
    let mut at = 0;
    for v in &all {
        let d = bolt.decode(&stream[at..]).unwrap().unwrap();
        assert_eq!(d.consumed, v.bytes.len(), "{}", v.name);
        assert_eq!(d.command.raw(), &v.bytes[..], "{}", v.name);

        let ctx = h.create_context();
        let call = h.decode(ctx, &stream[at..]);
        assert_eq!(call.decode_result().unwrap().drain as usize, v.bytes.len());
        h.delete(ctx);
        at += d.consumed;
    }
    assert_eq!(at, stream.len());
}

#[test]
fn two_frames_in_one_buffer_decode_as_two() {
    let all = vectors();
    let request = all.iter().find(|v| v.flag == 0x41).unwrap();
    let response = all.iter().find(|v| v.flag == 0x01).unwrap();
    let mut both = request.bytes.clone();
    both.extend_from_slice(&response.bytes);
    let mut bolt = Bolt::default();
    let first = bolt.decode(&both).unwrap().unwrap();
    assert_eq!(first.consumed, request.bytes.len());
    assert_eq!(first.command.kind(), FrameKind::Request);
    let second = bolt.decode(&both[first.consumed..]).unwrap().unwrap();
    assert_eq!(second.consumed, response.bytes.len());
    assert_eq!(second.command.kind(), FrameKind::Response);
}

//! The real bolt plugin (`bolt.wasm`, built from protocols/bolt) and the same code natively
//! (`native_codec("bolt")`, a `NativeCodec<bolt::Bolt>`), through the same `Codec` API and the same
//! checks: the captured vectors, splits, concatenation, malformed input, heartbeats, hijack,
//! context deletion.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

mod common;

use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use codec_host::{native_codec, Codec, CodecError, Frame, FrameKind, Limits, Plugin, WasmCodec};
use common::{bolt_request, bolt_vectors, expected_decode, plugin_wasm, with_bolt_id};
use sha2::{Digest, Sha256};

fn plugin() -> Arc<Plugin> {
    static PLUGIN: OnceLock<Arc<Plugin>> = OnceLock::new();
    PLUGIN
        .get_or_init(|| common::load("wasm-bolt", plugin_wasm("bolt")))
        .clone()
}

fn wasm() -> WasmCodec {
    plugin().new_codec().expect("bolt instance")
}

/// Both codecs, named.
fn both() -> Vec<(&'static str, Box<dyn Codec>)> {
    vec![
        ("wasm", Box::new(wasm())),
        (
            "native",
            native_codec("bolt", &Limits::new()).expect("native bolt"),
        ),
    ]
}

/// Both codecs with `limits`: a freshly loaded plugin, and the native codec by name.
fn both_with(limits: Limits) -> Vec<(&'static str, Box<dyn Codec>)> {
    let mut cfg = common::config("wasm-bolt", plugin_wasm("bolt"));
    cfg.limits = limits;
    let plugin = Plugin::load(cfg).expect("load bolt");
    vec![
        ("wasm", Box::new(plugin.new_codec().expect("bolt instance"))),
        (
            "native",
            native_codec("bolt", &limits).expect("native bolt"),
        ),
    ]
}

fn decode_all(codec: &mut dyn Codec, bytes: &[u8]) -> Vec<Frame> {
    let mut buf = BytesMut::from(bytes);
    let mut frames = Vec::new();
    while let Some(f) = codec.decode(&mut buf).expect("decode") {
        frames.push(f);
    }
    assert!(buf.is_empty(), "{} bytes left over", buf.len());
    frames
}

fn encode(codec: &mut dyn Codec, frame: &mut Frame, id: u64) -> Vec<u8> {
    let mut out = BytesMut::new();
    codec.encode(frame, id, &mut out).expect("encode");
    out.to_vec()
}

#[test]
fn every_captured_frame_decodes_as_mosn_reports_and_re_encodes_byte_identically() {
    let expected = expected_decode();
    for (name, mut codec) in both() {
        for (file, bytes) in bolt_vectors() {
            let want = &expected[file.as_str()];
            let ctx = format!("{name} {file}");
            let mut frames = decode_all(codec.as_mut(), &bytes);
            assert_eq!(frames.len(), 1, "{ctx}");
            let f = &mut frames[0];
            assert_eq!(
                f.wire_len() as u64,
                want["drain"].as_u64().unwrap(),
                "{ctx}: drain"
            );
            assert_eq!(f.wire_len(), bytes.len(), "{ctx}");
            let flag =
                u8::from_str_radix(want["flag"].as_str().unwrap().trim_start_matches("0x"), 16)
                    .unwrap();
            assert_eq!(f.kind(), FrameKind::from_flag(flag), "{ctx}: kind");
            assert_eq!(f.id(), want["id"].as_u64().unwrap(), "{ctx}: id");
            assert_eq!(
                u64::from(f.timeout_or_status()),
                want["timeout_or_status"].as_u64().unwrap(),
                "{ctx}: timeout/status"
            );
            assert_eq!(
                f.payload().len() as u64,
                want["payload_len"].as_u64().unwrap(),
                "{ctx}"
            );
            let sha: String = Sha256::digest(f.payload())
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            assert_eq!(
                sha,
                want["payload_sha256"].as_str().unwrap(),
                "{ctx}: payload"
            );
            let mut headers: Vec<(String, String)> = f
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        String::from_utf8_lossy(k).into(),
                        String::from_utf8_lossy(v).into(),
                    )
                })
                .collect();
            headers.sort();
            let mut want_headers: Vec<(String, String)> = want["headers"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                .collect();
            want_headers.sort();
            assert_eq!(headers, want_headers, "{ctx}: headers");
            assert_eq!(f.raw().as_ref(), &bytes[..], "{ctx}: raw");

            // Unchanged: byte for byte. Rewritten: only the id differs. Then a retry.
            let id = f.id();
            assert_eq!(encode(codec.as_mut(), f, id), bytes, "{ctx}: same id");
            assert_eq!(
                encode(codec.as_mut(), f, 4242),
                with_bolt_id(&bytes, 4242),
                "{ctx}: new id"
            );
            assert_eq!(
                encode(codec.as_mut(), f, 7),
                with_bolt_id(&bytes, 7),
                "{ctx}: retry"
            );
        }
    }
}

#[test]
fn every_split_point_needs_more_until_whole() {
    for (name, mut codec) in both() {
        for (file, bytes) in bolt_vectors() {
            for cut in 0..bytes.len() {
                let mut buf = BytesMut::from(&bytes[..cut]);
                assert!(
                    codec.decode(&mut buf).unwrap().is_none(),
                    "{name} {file} cut {cut}"
                );
                assert_eq!(buf.len(), cut);
                buf.extend_from_slice(&bytes[cut..]);
                let f = codec.decode(&mut buf).unwrap().expect("whole");
                assert_eq!(f.wire_len(), bytes.len());
                assert!(buf.is_empty());
            }
        }
    }
}

#[test]
fn concatenated_frames_decode_one_by_one() {
    let vectors = bolt_vectors();
    let mut all = Vec::new();
    for _ in 0..20 {
        for (_, bytes) in &vectors {
            all.extend_from_slice(bytes);
        }
    }
    for (name, mut codec) in both() {
        let frames = decode_all(codec.as_mut(), &all);
        assert_eq!(frames.len(), vectors.len() * 20, "{name}");
        for (f, (file, bytes)) in frames.iter().zip(vectors.iter().cycle()) {
            assert_eq!(f.raw().as_ref(), &bytes[..], "{name} {file}");
        }
    }
}

/// Malformed inputs: each must be an error (not a panic, not a frame).
fn malformed() -> Vec<(&'static str, Vec<u8>)> {
    let good = bolt_request(1, 1000, b"C", &[("k", "v")], b"hi");
    let mut bad_proto = good.clone();
    bad_proto[0] = 0x07;
    let mut bad_type = good.clone();
    bad_type[1] = 0x09;
    let mut bad_code = good.clone();
    bad_code[3] = 0x55;
    let mut absurd_content = good.clone();
    absurd_content[18..22].copy_from_slice(&u32::MAX.to_be_bytes());
    let garbage: Vec<u8> = (0..200u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8 | 0x80)
        .collect();
    vec![
        ("bad protocol byte", bad_proto),
        ("unknown type", bad_type),
        ("unknown command code", bad_code),
        ("absurd content length", absurd_content),
        ("garbage", garbage),
    ]
}

#[test]
fn malformed_input_is_a_clear_error_and_the_codec_keeps_working() {
    let good = bolt_request(5, 1000, b"C", &[("k", "v")], b"hi");
    for (name, mut codec) in both() {
        for (what, bytes) in malformed() {
            let mut buf = BytesMut::from(&bytes[..]);
            match codec.decode(&mut buf) {
                Err(CodecError::Rejected { .. } | CodecError::Protocol(_)) => {}
                other => panic!("{name} {what}: expected an error, got {other:?}"),
            }
            assert_eq!(buf.len(), bytes.len(), "{name} {what}: nothing consumed");
            let frames = decode_all(codec.as_mut(), &good);
            assert_eq!(frames[0].id(), 5, "{name} after {what}");
        }
    }
}

#[test]
fn a_truncated_header_map_is_reported_in_the_decode_error_header() {
    // Header section length 10 but its key claims 100 bytes: the frame is complete, its
    // header map is not (the team's convention, codec_abi::HEADER_DECODE_ERROR).
    let mut frame = bolt_request(9, 1000, b"C", &[("k", "v")], b"hi");
    frame[23..27].copy_from_slice(&100u32.to_be_bytes());
    for (name, mut codec) in both() {
        let frames = decode_all(codec.as_mut(), &frame);
        let f = &frames[0];
        assert_eq!(f.id(), 9, "{name}");
        assert_eq!(f.headers().len(), 1, "{name}");
        let reason = f
            .headers()
            .get_str(codec_abi::HEADER_DECODE_ERROR)
            .expect("error header");
        assert!(!reason.is_empty(), "{name}");
        assert_eq!(f.header_decode_error(), Some(reason), "{name}");
        let good = bolt_request(10, 1000, b"C", &[("k", "v")], b"hi");
        assert_eq!(
            decode_all(codec.as_mut(), &good)[0].header_decode_error(),
            None
        );
    }
}

#[test]
fn one_frame_limit_holds_for_both_codecs() {
    // 5 MiB: more than the host's default limit (4 MiB), less than bolt's own default
    // (64 MiB), which the host's limit replaces.
    let big = bolt_request(11, 1000, b"C", &[("service", "a")], &vec![7u8; 5 << 20]);
    let limited = Limits {
        max_frame_bytes: 4 << 20,
        ..Limits::new()
    };
    for (name, mut codec) in both_with(limited) {
        // Refused as soon as the header announces the length, and when all of it is there.
        for len in [1024, big.len()] {
            let mut buf = BytesMut::from(&big[..len]);
            let err = codec.decode(&mut buf).expect_err(name);
            let refused = match &err {
                CodecError::Rejected { call, .. } => *call == "proxy_decode_buffer_bytes",
                CodecError::Protocol(m) => m.contains("exceeds the limit of 4194304 bytes"),
                _ => false,
            };
            assert!(refused, "{name} with {len} bytes: {err}");
            assert_eq!(buf.len(), len, "{name}: nothing consumed");
        }
    }
    let raised = Limits {
        max_frame_bytes: 8 << 20,
        ..Limits::new()
    };
    for (name, mut codec) in both_with(raised) {
        let mut buf = BytesMut::from(&big[..1024]);
        assert!(codec.decode(&mut buf).expect(name).is_none(), "{name}");
        let mut frames = decode_all(codec.as_mut(), &big);
        assert_eq!(frames[0].wire_len(), big.len(), "{name}");
        assert_eq!(encode(codec.as_mut(), &mut frames[0], 11), big, "{name}");
    }
}

#[test]
fn the_spec_vector_round_trips() {
    // ABI §5.7: request id 7, timeout 1000, class "C", header k=v, body "hi".
    let frame = common::hex(
        "01 01 0001 01 00000007 01 000003e8 0001 000a 00000002 43 00000001 6b 00000001 76 6869",
    );
    assert_eq!(frame, bolt_request(7, 1000, b"C", &[("k", "v")], b"hi"));
    for (name, mut codec) in both() {
        let mut frames = decode_all(codec.as_mut(), &frame);
        let f = &mut frames[0];
        assert_eq!(
            (f.kind(), f.id(), f.timeout_ms()),
            (FrameKind::Request, 7, Some(1000)),
            "{name}"
        );
        assert_eq!(
            f.header_section().as_ref(),
            &common::hex("00000001 6b 00000001 76")[..],
            "{name}"
        );
        assert_eq!(f.payload().as_ref(), b"hi");
        assert_eq!(
            encode(codec.as_mut(), f, 9),
            with_bolt_id(&frame, 9),
            "{name}"
        );
    }
}

#[test]
fn response_statuses_map_back_like_mosn_in_wasm_and_native() {
    let req = bolt_vectors()
        .into_iter()
        .find(|(f, _)| f.ends_with("hessian4/request-echo.bin"))
        .unwrap()
        .1;
    // Hijack code → Bolt status on the wire → code back (MOSN's BoltStatusMapping).
    let table = [
        (200, 200),
        (503, 503),
        (504, 504),
        (502, 502),
        (404, 500),
        (500, 500),
    ];
    for (name, mut codec) in both() {
        let request = decode_all(codec.as_mut(), &req).remove(0);
        for (code, back) in table {
            let mut out = BytesMut::new();
            codec.hijack(&request, code, 9, &mut out).unwrap();
            let response = decode_all(codec.as_mut(), &out).remove(0);
            assert_eq!(response.kind(), FrameKind::Response, "{name}");
            assert_eq!(
                codec.response_code(&response),
                back,
                "{name}: hijack {code}"
            );
        }
    }
}

#[test]
fn keepalive_reply_and_hijack_agree_between_wasm_and_native() {
    let vectors = bolt_vectors();
    let find = |n: &str| {
        vectors
            .iter()
            .find(|(f, _)| f.ends_with(n))
            .unwrap()
            .1
            .clone()
    };
    let hb = find("hessian-draft/heartbeat-request.bin");
    let req = find("hessian4/request-echo.bin");
    let mut results: Vec<(Bytes, Vec<u8>, Vec<u8>)> = Vec::new();
    for (name, mut codec) in both() {
        let ka = codec.keepalive(77).unwrap().expect("bolt has heartbeats");
        assert_eq!(ka.len(), 22, "{name}");
        let mut back = decode_all(codec.as_mut(), &ka);
        assert_eq!(
            (back[0].kind(), back[0].id()),
            (FrameKind::HeartbeatRequest, 77),
            "{name}"
        );
        assert_eq!(back[0].timeout_ms(), None, "{name}: timeout -1");

        let mut hb_frames = decode_all(codec.as_mut(), &hb);
        let mut ack = BytesMut::new();
        codec.reply_keepalive(&mut hb_frames[0], &mut ack).unwrap();
        let acked = decode_all(codec.as_mut(), &ack);
        assert_eq!(
            (acked[0].kind(), acked[0].id()),
            (FrameKind::HeartbeatResponse, 7),
            "{name}"
        );
        assert_eq!(acked[0].timeout_or_status(), 0, "{name}");
        let mut out = BytesMut::new();
        codec
            .reply_keepalive(&mut back[0], &mut out)
            .expect("reply to our own heartbeat");
        out.clear();
        let mut req_frames = decode_all(codec.as_mut(), &req);
        assert!(matches!(
            codec.reply_keepalive(&mut req_frames[0], &mut out),
            Err(CodecError::WrongFrame(_))
        ));

        let mut hijacked = BytesMut::new();
        codec
            .hijack(&req_frames[0], 404, 123, &mut hijacked)
            .unwrap();
        let resp = decode_all(codec.as_mut(), &hijacked);
        assert_eq!(
            (resp[0].kind(), resp[0].id()),
            (FrameKind::Response, 123),
            "{name}"
        );
        assert_eq!(
            resp[0].timeout_or_status(),
            bolt::status::map_status(404),
            "{name}"
        );
        // The request frame is still usable after a hijack (its context was not touched).
        assert_eq!(
            encode(codec.as_mut(), &mut req_frames[0], 9),
            with_bolt_id(&req, 9),
            "{name}"
        );
        results.push((ka, ack.to_vec(), hijacked.to_vec()));
    }
    assert_eq!(
        results[0], results[1],
        "wasm and native build the same bytes"
    );
}

#[test]
fn plugin_contexts_are_deleted_exactly_once() {
    let mut codec = wasm();
    let vectors = bolt_vectors();
    let mut frames = Vec::new();
    for (_, bytes) in &vectors {
        frames.extend(decode_all(&mut codec, bytes));
    }
    let s = codec.context_stats();
    assert_eq!(
        (s.live, s.created, s.deleted),
        (vectors.len(), vectors.len() as u64, 0)
    );
    for f in &mut frames[..5] {
        let id = f.id();
        encode(&mut codec, f, id + 1);
    }
    assert!(codec.keepalive(3).unwrap().is_some());
    let mut out = BytesMut::new();
    codec.hijack(&frames[0], 502, 1, &mut out).unwrap();
    let s = codec.context_stats();
    assert_eq!(
        s.live,
        vectors.len() - 5,
        "the encoded frames' contexts, keepalive's and hijack's are gone"
    );
    assert_eq!(s.created - s.deleted, vectors.len() as u64 - 5);
    drop(frames);
    codec.release_dropped_contexts().unwrap();
    let s = codec.context_stats();
    assert_eq!(s.live, 0);
    assert_eq!(s.created, s.deleted);
    assert_eq!(s.replaced_instances, 0);
}

#[test]
fn header_edits_follow_the_same_rule_in_both() {
    let frame = bolt_request(3, 1000, b"C", &[("service", "a"), ("k", "v")], b"hi");
    let mut outs = Vec::new();
    for (name, mut codec) in both() {
        // Removing a key changes the count: applied (the frame is rebuilt without it).
        let mut frames = decode_all(codec.as_mut(), &frame);
        frames[0].headers_mut().remove(b"k");
        let out = encode(codec.as_mut(), &mut frames[0], 3);
        let back = decode_all(codec.as_mut(), &out);
        assert_eq!(back[0].headers().len(), 1, "{name}");
        assert_eq!(back[0].headers().get_str("service"), Some("a"), "{name}");
        outs.push(out);
    }
    assert_eq!(outs[0], outs[1]);
}

#[test]
fn a_frames_context_goes_back_right_after_its_encode_and_a_retry_still_works() {
    // 128 requests in flight: decoded, encoded upstream, waiting for their responses (the
    // frames stay alive for a retry or a hijack).
    let mut codec = wasm();
    let mut in_flight = Vec::new();
    for id in 0..128u32 {
        let wire = bolt_request(id, 1000, b"C", &[("service", "s")], b"payload");
        let mut buf = BytesMut::from(&wire[..]);
        let mut frame = codec.decode(&mut buf).unwrap().expect("a frame");
        let mut out = BytesMut::new();
        codec
            .encode(&mut frame, u64::from(id) + 1000, &mut out)
            .unwrap();
        assert_eq!(&out[..], &with_bolt_id(&wire, id + 1000)[..]);
        in_flight.push((frame, wire));
    }
    let stats = codec.context_stats();
    // The next decode's spare, and the last frame's context not yet deleted (deleted at
    // the next call): not one per frame in flight.
    assert!(stats.live <= 2, "{stats:?}");
    assert!(stats.live_max <= 2, "{stats:?}");
    // A retry of a frame whose context went back re-decodes its bytes on a fresh one.
    let (frame, wire) = &mut in_flight[5];
    let mut out = BytesMut::new();
    codec.encode(frame, 7777, &mut out).unwrap();
    assert_eq!(&out[..], &with_bolt_id(wire, 7777)[..]);
    assert!(codec.context_stats().live <= 3);
    drop(in_flight);
    codec.release_dropped_contexts().unwrap();
    let stats = codec.context_stats();
    assert_eq!(
        stats.created,
        stats.deleted + stats.live as u64,
        "{stats:?}"
    );
}

#[test]
fn goaway_round_trips_on_wasm_and_native_and_a_request_is_no_goaway() {
    let vectors = bolt_vectors();
    let req = vectors
        .iter()
        .find(|(f, _)| f.ends_with("hessian4/request-echo.bin"))
        .unwrap()
        .1
        .clone();
    let mut built = Vec::new();
    for (name, mut codec) in both() {
        let goaway = codec.goaway(0).unwrap().expect("bolt has a GoAway");
        assert_eq!(
            goaway.as_ref(),
            &common::hex("01 01 0064 01 00000000 01 00000000 0000 0000 00000000")[..],
            "{name}: MOSN's GoAway, cmdCode 100"
        );
        let back = decode_all(codec.as_mut(), &goaway);
        assert!(back[0].is_goaway(), "{name}");
        assert_eq!(
            (back[0].kind(), back[0].id()),
            (FrameKind::Request, 0),
            "{name}"
        );
        let ka = codec.keepalive(5).unwrap().unwrap();
        assert!(!decode_all(codec.as_mut(), &ka)[0].is_goaway(), "{name}");
        let frames = decode_all(codec.as_mut(), &req);
        assert!(!frames[0].is_goaway(), "{name}");
        built.push(codec.goaway(77).unwrap().unwrap());
    }
    assert_eq!(built[0], built[1], "wasm and native agree");
}

#[test]
fn inputs_go_into_the_plugins_input_buffer_not_a_malloc_per_frame() {
    // bolt.wasm exports `rpc_sidecar_input_buffer`: after the first frames (the buffer grows
    // to the largest input), decode and encode place their inputs without a malloc call.
    let mut codec = wasm();
    for id in 0..500u32 {
        let body = vec![b'x'; (id as usize * 37) % 3000];
        let wire = bolt_request(id, 1000, b"C", &[("service", "s")], &body);
        let mut frames = decode_all(&mut codec, &wire);
        let out = encode(&mut codec, &mut frames[0], u64::from(id) + 7);
        assert_eq!(
            out,
            with_bolt_id(&wire, id + 7),
            "frame {id} forwarded byte for byte"
        );
    }
    let calls = codec.plugin_stats().calls;
    assert!(
        calls.input_mallocs <= 2,
        "at most start-up and warm-up allocations, got {} for 1,000 inputs",
        calls.input_mallocs
    );
    assert!(calls.decode >= 500, "{calls:?}");
}

#[test]
fn an_unchanged_frame_is_forwarded_by_the_host_without_an_encode_call() {
    let mut codec = wasm();
    let wire = bolt_request(9, 1000, b"C", &[("service", "s")], b"payload");
    // The first decode starts the instance; count from the second.
    decode_all(&mut codec, &wire);
    let start = codec.plugin_stats().calls;
    let mut frames = decode_all(&mut codec, &wire);
    let before = codec.plugin_stats().calls;
    assert_eq!(before.decode, start.decode + 1);
    assert_eq!(
        before.other, start.other,
        "no GoAway call: the decode extras answered it"
    );
    let out = encode(&mut codec, &mut frames[0], 77);
    assert_eq!(out, with_bolt_id(&wire, 77));
    let after = codec.plugin_stats().calls;
    assert_eq!(
        after.encode, before.encode,
        "no encode call for an unchanged frame"
    );
    assert_eq!(
        after.other, before.other,
        "no id-field call either: the decode extras said where the id is"
    );
    // Edited headers still go through the plugin's encode.
    let mut frames = decode_all(&mut codec, &wire);
    frames[0].headers_mut().insert("x-added", "1");
    let out = encode(&mut codec, &mut frames[0], 78);
    assert_eq!(codec.plugin_stats().calls.encode, after.encode + 1);
    let back = decode_all(&mut codec, &out);
    assert_eq!(back[0].headers().get_str("x-added"), Some("1"));
    assert_eq!(back[0].id(), 78);
}

#[test]
fn an_unchanged_frame_keeps_its_own_bytes_in_wasm_and_native_with_only_the_id_patched() {
    // A header section with a null value: the map drops that pair, so a re-encode would
    // not reproduce these bytes; the id-only path forwards them as they came (as MOSN does).
    let mut section = Vec::new();
    section.extend_from_slice(&1u32.to_be_bytes());
    section.push(b'k');
    section.extend_from_slice(&u32::MAX.to_be_bytes());
    section.extend_from_slice(&7u32.to_be_bytes());
    section.extend_from_slice(b"service");
    section.extend_from_slice(&1u32.to_be_bytes());
    section.push(b's');
    let mut wire = vec![0x01, 0x01, 0x00, 0x01, 0x01];
    wire.extend_from_slice(&9u32.to_be_bytes());
    wire.push(0x01);
    wire.extend_from_slice(&1000u32.to_be_bytes());
    wire.extend_from_slice(&1u16.to_be_bytes());
    wire.extend_from_slice(&(section.len() as u16).to_be_bytes());
    wire.extend_from_slice(&4u32.to_be_bytes());
    wire.push(b'C');
    wire.extend_from_slice(&section);
    wire.extend_from_slice(b"body");
    for (name, mut codec) in both() {
        let mut frames = decode_all(codec.as_mut(), &wire);
        assert_eq!(
            frames[0].headers().len(),
            1,
            "{name}: the null pair is dropped"
        );
        let out = encode(codec.as_mut(), &mut frames[0], 77);
        assert_eq!(out, with_bolt_id(&wire, 77), "{name}: the original bytes");
        // An edited map is encoded from the map: no null pair, the new header.
        let mut frames = decode_all(codec.as_mut(), &wire);
        frames[0].headers_mut().insert("x-added", "1");
        let out = encode(codec.as_mut(), &mut frames[0], 78);
        assert!(out.len() < wire.len() + 8 + 7 + 1, "{name}: re-encoded");
        let back = decode_all(codec.as_mut(), &out);
        assert_eq!(back[0].headers().get_str("x-added"), Some("1"), "{name}");
        assert_eq!(back[0].headers().get_str("service"), Some("s"), "{name}");
        assert_eq!(back[0].id(), 78, "{name}");
    }
}

/// `Limits::DEFAULT_CPU_POINTS` is sized from this: start-up, a decode and an encode with
/// edited headers each fit in 40,000 points, for a small frame and a 4 MiB one alike (bulk
/// copies cost one point), so the default budget leaves a 1,600× margin.
#[test]
fn a_bolt_frame_costs_the_guest_under_40000_points_whatever_its_size() {
    let limits = Limits {
        cpu_points_per_call: 40_000,
        ..Limits::new()
    };
    let mut cfg = common::config("wasm-bolt-40000", plugin_wasm("bolt"));
    cfg.limits = limits;
    let plugin = Plugin::load(cfg).expect("start-up fits");
    let mut codec = plugin.new_codec().expect("bolt instance");
    let big = vec![7u8; (4 << 20) - 1024];
    for content in [&b"hi"[..], &big[..]] {
        let frame = bolt_request(3, 1000, b"com.example.Svc", &[("service", "s")], content);
        let mut buf = BytesMut::from(&frame[..]);
        let mut decoded = codec
            .decode(&mut buf)
            .unwrap_or_else(|e| panic!("decode of {} bytes: {e}", frame.len()))
            .expect("a whole frame");
        decoded.headers_mut().insert("x-added", "1");
        let mut out = BytesMut::new();
        codec
            .encode(&mut decoded, 9, &mut out)
            .unwrap_or_else(|e| panic!("encode of {} bytes: {e}", frame.len()));
        assert!(out.len() > frame.len(), "the added header is in the frame");
    }
}

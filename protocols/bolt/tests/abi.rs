//! Bolt through the ABI state machine (the SDK's harness runs the plugin's dispatcher):
//! the ABI spec's §5.7 vector byte for byte, keepalive, heartbeat reply, hijack, and the encode
//! rules of §6.3 with their failure statuses.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

mod vectors;

use bolt::Bolt;
use codec_abi::{FrameKind, HeaderMap, LogLevel, Status};
use codec_sdk::harness::{Harness, HarnessError};
use vectors::{encode_input, header_section, hex, hijack_input, vectors, with_id, Spec};

// ABI §5.7.
const FRAME: &str =
    "01 01 0001 01 00000007 01 000003e8 0001 000a 00000002 43 00000001 6b 00000001 76 6869";

fn harness() -> Harness<Bolt> {
    Harness::new(Bolt::default).unwrap()
}

fn vector(name: &str) -> Vec<u8> {
    vectors()
        .into_iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("vector {name}"))
        .bytes
}

fn last_log(h: &Harness<Bolt>) -> String {
    h.logs()
        .last()
        .map(|l| l.message.clone())
        .unwrap_or_default()
}

#[test]
fn spec_vector_decodes_and_encodes_byte_for_byte() {
    let mut h = harness();
    let ctx = h.create_context();
    let call = h.decode(ctx, &hex(FRAME));
    assert_eq!(call.status, 0);
    assert_eq!(
        call.report(codec_abi::BufferType::DecodeData).unwrap(),
        hex("0000000a 00000001 6b 00000001 76 | 41 | 0000000000000007 | 000003e8 | 00000023 | 00000002 | 6869")
    );
    let input = hex("0000000a 00000001 6b 00000001 76 | 40 | 0000000000000009 | 0000000000000007 | 000003e8 | 00000002 | 6869");
    let call = h.encode(ctx, &input);
    assert_eq!(call.status, 0);
    let mut want = hex("00000000 | 41 | 0000000000000009 | 000003e8 | 00000023");
    want.extend_from_slice(&with_id(&hex(FRAME), 9));
    assert_eq!(
        call.report(codec_abi::BufferType::EncodeData).unwrap(),
        want
    );
    h.delete(ctx);
}

#[test]
fn keepalive_then_encode_gives_the_22_byte_heartbeat() {
    let mut h = harness();
    for id in [0u64, 5, 0xFFFF_FFFF] {
        let ctx = h.create_context();
        let call = h.keepalive(ctx, id);
        assert_eq!((call.status, call.reports.len()), (0, 0));
        let call = h.encode(
            ctx,
            &encode_input(&[], FrameKind::HeartbeatRequest, id, id, 0, &[]),
        );
        assert_eq!(call.status, 0, "{:?}", h.logs());
        let e = call.encode_result().unwrap();
        assert_eq!((e.flag, e.id, e.timeout_or_status), (0x61, id, u32::MAX));
        let mut want = hex("01 01 0000 01 00000000 01 ffffffff 0000 0000 00000000");
        want[5..9].copy_from_slice(&(id as u32).to_be_bytes());
        assert_eq!(e.frame, &want[..]);
        h.delete(ctx);
    }
}

#[test]
fn heartbeat_reply_matches_the_captured_ack() {
    let request = vector("sofa-rpc-node-hessian-draft/heartbeat-request.bin");
    let ack = vector("sofa-rpc-node-hessian-draft/heartbeat-ack.bin");
    let mut h = harness();
    let ctx = h.create_context();
    assert_eq!(h.decode(ctx, &request).decode_result().unwrap().flag, 0x61);
    let call = h.reply_keepalive(ctx);
    assert_eq!((call.status, call.reports.len()), (0, 0));
    let call = h.encode(
        ctx,
        &encode_input(&[], FrameKind::HeartbeatResponse, 7, 7, 0, &[]),
    );
    assert_eq!(call.status, 0, "{:?}", h.logs());
    let e = call.encode_result().unwrap();
    assert_eq!((e.flag, e.id, e.timeout_or_status), (0x21, 7, 0));
    assert_eq!(e.frame, &ack[..]);
}

#[test]
fn reply_needs_a_decoded_heartbeat_request() {
    let mut h = harness();
    let ctx = h.create_context();
    assert_eq!(h.reply_keepalive(ctx).status, 10);
    assert!(
        last_log(&h).contains("no decoded request"),
        "{}",
        last_log(&h)
    );
    assert_eq!(h.decode(ctx, &hex(FRAME)).status, 0);
    assert_eq!(h.reply_keepalive(ctx).status, 10);
}

#[test]
fn hijack_on_a_fresh_context_builds_the_mapped_response() {
    let request = vector("sofa-rpc-node-hessian4/request-echo.bin");
    let mut h = harness();
    for (code, status) in [
        (404u32, 6u16),
        (502, 16),
        (503, 4),
        (504, 7),
        (200, 0),
        (0, 9),
        (3, 18),
        (500, 3),
    ] {
        let ctx = h.create_context();
        let call = h.hijack(ctx, code, &hijack_input(&request, 1, 3000));
        assert_eq!((call.status, call.reports.len()), (0, 0), "{code}");
        // §6.6: command id = the id inside the raw frame; replaced id = the id to send.
        let call = h.encode(ctx, &encode_input(&[], FrameKind::Response, 77, 1, 0, &[]));
        assert_eq!(call.status, 0, "{code}: {:?}", h.logs());
        let e = call.encode_result().unwrap();
        assert_eq!(
            (e.flag, e.id, e.timeout_or_status),
            (0x01, 77, u32::from(status))
        );
        let mut want = hex("01 00 0002 01 0000004d 01 0000 0000 0000 00000000");
        want[10..12].copy_from_slice(&status.to_be_bytes());
        assert_eq!(e.frame, &want[..], "{code}");
        h.delete(ctx);
    }
}

#[test]
fn response_statuses_map_back_to_proxy_codes_through_the_optional_export() {
    let mut h = harness();
    let ctx = h.create_context();
    for (status, code) in [
        (0u32, 200u32),
        (4, 503),
        (7, 504),
        (16, 502),
        (2, 500),
        (6, 500),
    ] {
        assert_eq!(h.response_code(ctx, status), code, "status {status}");
    }
    assert_eq!(
        h.response_code(ctx + 100, 4),
        0,
        "an unknown context maps nothing"
    );
    h.delete(ctx);
}

#[test]
fn hijack_on_the_decoded_context_fails_at_encode_like_the_go_sdk() {
    let request = vector("sofa-rpc-node-hessian4/request-echo.bin");
    let mut h = harness();
    let ctx = h.create_context();
    assert_eq!(h.decode(ctx, &request).status, 0);
    assert_eq!(
        h.hijack(ctx, 404, &hijack_input(&request, 1, 3000)).status,
        0
    );
    let call = h.encode(ctx, &encode_input(&[], FrameKind::Response, 1, 1, 0, &[]));
    assert_eq!(call.status, 10);
    assert!(
        last_log(&h).contains("should be a response"),
        "{}",
        last_log(&h)
    );
}

#[test]
fn hijack_refuses_what_is_not_a_whole_request() {
    let request = vector("sofa-rpc-node-hessian4/request-echo.bin");
    let response = vector("sofa-rpc-node-hessian4/response-echo-success.bin");
    let mut h = harness();
    let ctx = h.create_context();
    assert_eq!(h.hijack(ctx, 404, &[]).status, 7);
    let cut = hijack_input(&request[..request.len() - 1], 1, 3000);
    assert_eq!(h.hijack(ctx, 404, &cut).status, 10);
    assert!(last_log(&h).contains("no complete frame"));
    assert_eq!(
        h.hijack(ctx, 404, &hijack_input(&response, 1, 0)).status,
        10
    );
    assert!(last_log(&h).contains("not a request"));
    assert_eq!(
        h.hijack(ctx, 404, &hijack_input(b"\x07garbage", 1, 0))
            .status,
        10
    );
    assert_eq!(h.hijack(ctx, 404, &[0, 0, 0, 9]).status, 10);
    // Nothing was cached: encode has no command.
    let call = h.encode(ctx, &encode_input(&[], FrameKind::Response, 1, 1, 0, &[]));
    assert_eq!(call.status, 10);
}

#[test]
fn encode_checks_context_input_type_bits_and_command_id() {
    let frame = hex(FRAME);
    let section = header_section(&[("k", "v")]);
    let mut h = harness();
    // Unknown context: 10 with a log line, no trap.
    assert_eq!(
        h.encode(
            4242,
            &encode_input(&section, FrameKind::Request, 9, 7, 0, &[])
        )
        .status,
        10
    );
    assert!(last_log(&h).contains("unknown context 4242"));
    let ctx = h.create_context();
    assert_eq!(h.encode(ctx, &[]).status, 7);
    let call = h.encode(
        ctx,
        &encode_input(&section, FrameKind::Request, 9, 7, 0, &[]),
    );
    assert_eq!(call.status, 10);
    assert!(last_log(&h).contains("failed to find cached command"));
    assert_eq!(h.decode(ctx, &frame).status, 0);
    // Truncated input.
    assert_eq!(h.encode(ctx, &[0, 0, 0, 10, 0]).status, 10);
    // Type bits 3 are refused; a response flag does not match a cached request.
    let mut input = encode_input(&section, FrameKind::Request, 9, 7, 0, &[]);
    input[4 + section.len()] = 0xC0;
    assert_eq!(h.encode(ctx, &input).status, 10);
    let call = h.encode(
        ctx,
        &encode_input(&section, FrameKind::Response, 9, 7, 0, &[]),
    );
    assert_eq!(call.status, 10);
    // The command id must be the cached one.
    let call = h.encode(
        ctx,
        &encode_input(&section, FrameKind::Request, 9, 8, 0, &[]),
    );
    assert_eq!(call.status, 10);
    assert!(last_log(&h).contains("does not match"));
    // Oneway type bits (2) pass for a request; the guest still reports the cached kind.
    let call = h.encode(
        ctx,
        &encode_input(&section, FrameKind::Oneway, 9, 7, 0, &[]),
    );
    assert_eq!(call.status, 0);
    assert_eq!(call.encode_result().unwrap().flag, 0x41);
}

#[test]
fn a_payload_replaces_the_body_and_rebuilds_the_frame() {
    let mut h = harness();
    let ctx = h.create_context();
    let request = Spec::request(3).build();
    assert_eq!(h.decode(ctx, &request).status, 0);
    let section = header_section(&[("service", "com.foo.HelloService:1.0")]);
    let call = h.encode(
        ctx,
        &encode_input(&section, FrameKind::Request, 4, 3, 0, b"a new, longer body"),
    );
    assert_eq!(call.status, 0);
    let want = Spec {
        id: 4,
        content: b"a new, longer body".to_vec(),
        ..Spec::request(3)
    };
    assert_eq!(call.encode_result().unwrap().frame, &want.build()[..]);
}

#[test]
fn the_hosts_headers_are_encoded_when_they_differ_added_keys_included() {
    let spec = Spec {
        headers: header_section(&[("service", "s"), ("a", "1"), ("b", "2")]),
        ..Spec::request(3)
    };
    let request = spec.build();
    let mut h = harness();
    let encoded = |h: &mut Harness<Bolt>, section: &[u8]| {
        let ctx = h.create_context();
        assert_eq!(h.decode(ctx, &request).status, 0);
        let call = h.encode(
            ctx,
            &encode_input(section, FrameKind::Request, 3, 3, 0, &[]),
        );
        call.encode_result().unwrap().frame.to_vec()
    };
    let rebuilt = |pairs: &[(&str, &str)]| {
        Spec {
            headers: header_section(pairs),
            ..spec.clone()
        }
        .build()
    };

    // The section as decoded: the original bytes.
    let same = header_section(&[("service", "s"), ("a", "1"), ("b", "2")]);
    assert_eq!(encoded(&mut h, &same), request);
    // Same count, other values and keys: those.
    let changed = [("service", "t"), ("a", "9"), ("new", "x")];
    assert_eq!(
        encoded(&mut h, &header_section(&changed)),
        rebuilt(&changed)
    );
    // Fewer pairs: `b` deleted.
    let fewer = [("service", "s"), ("a", "9")];
    assert_eq!(encoded(&mut h, &header_section(&fewer)), rebuilt(&fewer));
    // A key added (a proxy-wasm filter's header): on the wire.
    let more = [("service", "s"), ("a", "1"), ("b", "2"), ("new", "x")];
    assert_eq!(encoded(&mut h, &header_section(&more)), rebuilt(&more));

    // A host header section that does not parse fails the encode.
    let ctx = h.create_context();
    assert_eq!(h.decode(ctx, &request).status, 0);
    let call = h.encode(
        ctx,
        &encode_input(&[0, 0, 0, 9, b'x'], FrameKind::Request, 3, 3, 0, &[]),
    );
    assert_eq!(call.status, 10);
}

#[test]
fn oneway_decodes_with_the_go_sdk_flag() {
    let oneway = Spec {
        cmd_type: 2,
        ..Spec::request(11)
    }
    .build();
    let mut h = harness();
    let ctx = h.create_context();
    let call = h.decode(ctx, &oneway);
    assert_eq!(call.decode_result().unwrap().flag, 0xC1);
    let section = header_section(&[("service", "com.foo.HelloService:1.0")]);
    let call = h.encode(
        ctx,
        &encode_input(&section, FrameKind::Oneway, 12, 11, 0, &[]),
    );
    assert_eq!(call.status, 0);
    let e = call.encode_result().unwrap();
    assert_eq!(e.flag, 0xC1);
    assert_eq!(e.frame, &with_id(&oneway, 12)[..]);
}

#[test]
fn a_refused_report_is_an_internal_failure() {
    let mut h = harness();
    let ctx = h.create_context();
    h.refuse_reports(true);
    assert_eq!(h.decode(ctx, &hex(FRAME)).status, 10);
    assert!(last_log(&h).contains("reporting the result failed"));
    h.refuse_reports(false);
    assert_eq!(h.decode(ctx, &hex(FRAME)).status, 0);
    h.refuse_reports(true);
    let section = header_section(&[("k", "v")]);
    let call = h.encode(
        ctx,
        &encode_input(&section, FrameKind::Request, 7, 7, 0, &[]),
    );
    assert_eq!((call.status, call.reports.len()), (10, 0));
}

#[test]
fn context_mistakes_are_logged_not_trapped() {
    let mut h = harness();
    // A stream under a parent that is not a root is not created.
    h.context_create(50, 49);
    assert!(last_log(&h).contains("not a root context"));
    assert_eq!(h.decode(50, &hex(FRAME)).status, 10);
    // MOSN's first stream context may reuse the root id (§6.1).
    h.context_create(codec_sdk::harness::ROOT_ID, codec_sdk::harness::ROOT_ID);
    assert_eq!(h.decode(codec_sdk::harness::ROOT_ID, &hex(FRAME)).status, 0);
    h.delete(codec_sdk::harness::ROOT_ID);
    assert_eq!(h.live_contexts(), 0);
    // ...and deleting it deleted the stream, not the root.
    let ctx = h.create_context();
    assert_eq!(h.decode(ctx, &hex(FRAME)).status, 0);
    // A second create of a live context drops its caches.
    h.context_create(ctx, codec_sdk::harness::ROOT_ID);
    assert!(last_log(&h).contains("created twice"));
    let section = header_section(&[("k", "v")]);
    let call = h.encode(
        ctx,
        &encode_input(&section, FrameKind::Request, 7, 7, 0, &[]),
    );
    assert_eq!(call.status, 10);
    assert!(h.done(ctx));
    h.delete(ctx);
    // Unknown contexts in delete/done: a warning each.
    let before = h.logs().len();
    h.delete(ctx);
    assert!(!h.done(ctx));
    assert_eq!(h.logs().len(), before + 2);
    assert!(h.logs()[before..].iter().all(|l| l.level == LogLevel::Warn));
    // Every other codec call on an unknown context: 10.
    assert_eq!(h.keepalive(ctx, 1).status, 10);
    assert_eq!(h.reply_keepalive(ctx).status, 10);
    assert_eq!(
        h.hijack(ctx, 404, &hijack_input(&hex(FRAME), 7, 0)).status,
        10
    );
}

#[test]
fn a_frame_whose_headers_do_not_parse_is_still_reported() {
    let spec = Spec {
        headers: vec![0, 0, 0, 7, b's', b'e', b'r'],
        ..Spec::request(21)
    };
    let mut h = harness();
    let ctx = h.create_context();
    let call = h.decode(ctx, &spec.build());
    assert_eq!(call.status, 0);
    let r = call.decode_result().unwrap();
    let headers = HeaderMap::decode(r.headers).unwrap();
    assert_eq!(headers.len(), 1);
    let reason = headers.get_str(codec_abi::HEADER_DECODE_ERROR).unwrap();
    assert!(reason.contains("truncated"), "{reason}");
    assert_eq!(r.payload, b"hessian body");
    // The proxy answers it with code 2 -> UNKNOWN 3.
    let ctx = h.create_context();
    assert_eq!(
        h.hijack(ctx, 2, &hijack_input(&spec.build(), 21, 3000))
            .status,
        0
    );
    let call = h.encode(ctx, &encode_input(&[], FrameKind::Response, 21, 21, 0, &[]));
    assert_eq!(call.encode_result().unwrap().timeout_or_status, 3);
}

#[test]
fn max_frame_bytes_comes_from_the_plugin_configuration() {
    let big = vector("sofa-rpc-node-hessian4/request-echo.bin");
    let mut h = Harness::with_config(
        Bolt::default,
        &[("Engine", "wasmer"), ("Path", "bolt.wasm")],
        &[("protocol", "x-bolt"), ("max_frame_bytes", "300")],
    )
    .unwrap();
    let ctx = h.create_context();
    assert_eq!(h.decode(ctx, &big[..30]).status, 10);
    assert!(
        last_log(&h).contains("exceeds the limit of 300"),
        "{}",
        last_log(&h)
    );
    assert_eq!(h.decode(ctx, &hex(FRAME)).status, 0);

    for bad in ["lots", "", "27", "-1"] {
        let refused = Harness::with_config(Bolt::default, &[], &[("max_frame_bytes", bad)]);
        assert!(
            matches!(
                refused,
                Err(HarnessError::Start {
                    step: "proxy_on_configure"
                })
            ),
            "{bad}"
        );
    }
    assert_eq!(
        Status::from_raw(Harness::new(Bolt::default).unwrap().decode(2, &big).status),
        Some(Status::InternalFailure),
        "no context 2 yet"
    );
}

#[test]
fn goaway_then_encode_gives_mosns_goaway_and_decodes_back_as_one() {
    // MOSN's CmdCodeGoAway: a v1 request, cmdCode 100, Hessian2, timeout 0, no sections.
    let mut h = harness();
    let ctx = h.create_context();
    let call = h.goaway(ctx, 3);
    assert_eq!((call.status, call.reports.len()), (0, 0), "{:?}", h.logs());
    let call = h.encode(ctx, &encode_input(&[], FrameKind::Request, 3, 3, 0, &[]));
    assert_eq!(call.status, 0, "{:?}", h.logs());
    let e = call.encode_result().unwrap();
    let want = hex("01 01 0064 01 00000003 01 00000000 0000 0000 00000000");
    assert_eq!(e.frame, &want[..]);
    h.delete(ctx);

    // Decoded back: a request by the standard report, a GoAway by the optional export.
    let ctx = h.create_context();
    let call = h.decode(ctx, &want);
    assert_eq!(call.status, 0, "{:?}", h.logs());
    assert_eq!(call.decode_result().unwrap().flag, 0x41);
    assert_eq!(h.decode_is_goaway(ctx), 1);
    h.delete(ctx);

    // A normal request is not a GoAway.
    let ctx = h.create_context();
    assert_eq!(h.decode(ctx, &hex(FRAME)).status, 0);
    assert_eq!(h.decode_is_goaway(ctx), 0);
    h.delete(ctx);
}

/// `rpc_sidecar_check` through the harness: every captured frame (v1 and v2, requests,
/// responses, heartbeats) matches from its first 5 bytes, and says "need more" on each
/// shorter prefix; other protocols' first bytes and garbage are refused at the first byte
/// that cannot be Bolt; `ctx` 0 asks the root directly, an unknown context is refused.
#[test]
fn check_answers_from_the_first_bytes() {
    const MATCH: u32 = 0;
    const NO_MATCH: u32 = 1;
    const NEED_MORE: u32 = 99;
    let mut h = harness();
    let ctx = h.create_context();
    let all = vectors();
    assert!(all.len() >= 10, "the captured frames are there");
    let mut v2 = hex("02 01 01 0001 01 00000007 01 01 000003e8 0000 0000 00000000");
    v2.truncate(5);
    let mut frames: Vec<Vec<u8>> = all.into_iter().map(|v| v.bytes).collect();
    frames.push(v2);
    for frame in &frames {
        let needed = if frame[0] == 2 { 5 } else { 4 };
        for end in 1..needed {
            assert_eq!(
                h.check(ctx, &frame[..end]),
                NEED_MORE,
                "{:02x?}",
                &frame[..end]
            );
        }
        assert_eq!(
            h.check(ctx, &frame[..needed]),
            MATCH,
            "{:02x?}",
            &frame[..needed]
        );
        assert_eq!(h.check(0, frame), MATCH);
    }
    // Dubbo's magic, HTTP, TLS, a Bolt byte followed by an impossible type or command code.
    for other in [
        &[0xda, 0xbb, 0xc2, 0x00][..],
        b"GET / HTTP/1.1\r\n",
        &[0x16, 0x03, 0x01],
        &[0x01, 0x07],
        &[0x01, 0x00, 0x00, 0x01],
        &[0x01, 0x01, 0x00, 0x02],
        &[0x02, 0x09],
        &[0x00],
    ] {
        assert_eq!(h.check(ctx, other), NO_MATCH, "{other:02x?}");
    }
    assert_eq!(h.check(ctx, &[]), Status::Empty as u32);
    assert_eq!(h.check(ctx + 100, &[1]), Status::InternalFailure as u32);
    assert_eq!(h.live_contexts(), 1, "check creates and caches nothing");
    h.delete(ctx);
}

#[test]
fn the_id_field_names_the_id_bytes_of_an_unchanged_frame_without_a_crc() {
    let mut h = harness();
    for (spec, field) in [
        (Spec::request(3), Some((5, 4))),
        (Spec::response(3, 0), Some((5, 4))),
        (Spec::request(3).v2(1, 0), Some((6, 4))),
        // The CRC covers the id: the frame goes through encode, which rewrites the CRC.
        (Spec::request(3).v2(2, 1), None),
    ] {
        let frame = spec.build();
        let ctx = h.create_context();
        assert_eq!(h.decode(ctx, &frame).status, 0);
        let got = codec_abi::IdField::from_raw(h.id_field(ctx)).map(|f| (f.offset, f.width));
        assert_eq!(got, field, "{spec:?}");
        if let Some((offset, _)) = got {
            assert_eq!(offset as usize, vectors::id_offset(&frame));
        }
    }
    // A frame whose headers an encode changed is not forwarded by its old bytes any more.
    let spec = Spec {
        headers: header_section(&[("service", "s"), ("a", "1")]),
        ..Spec::request(3)
    };
    let ctx = h.create_context();
    assert_eq!(h.decode(ctx, &spec.build()).status, 0);
    let edited = header_section(&[("service", "s")]);
    let call = h.encode(
        ctx,
        &encode_input(&edited, FrameKind::Request, 3, 3, 0, &[]),
    );
    assert_eq!(call.status, 0);
    assert_eq!(h.id_field(ctx), 0);
    // No decoded command: nothing to say.
    assert_eq!(h.id_field(999), 0);
}

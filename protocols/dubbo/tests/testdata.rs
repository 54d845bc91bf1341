//! The frames captured between a real Apache Dubbo 3.3.6 consumer and provider
//! (`testdata/`): decoded facts, header maps, byte-identical re-encoding with the id rewritten,
//! every split point, frames back to back, through the Protocol API and at the ABI level
//! through the SDK's harness; Dubbo's own heartbeat bytes from our keepalive.
//!
//! Section numbers (§) refer to the ABI spec (`docs/mosn-wasm-codec-abi.md`).

use std::path::Path;

use codec_abi::{BufferType, FrameKind, Status};
use codec_sdk::harness::Harness;
use codec_sdk::{Command, Protocol};
use dubbo::hessian::Reader;
use dubbo::Dubbo;

/// One captured frame and what it must decode to (read off the bytes by hand).
struct Vector {
    file: &'static str,
    kind: FrameKind,
    id: u64,
    /// Request: 0 (no timeout in a Dubbo header); response: the status byte.
    timeout_or_status: u32,
}

const VECTORS: [Vector; 11] = [
    v("request-echo", FrameKind::Request, 0x045c_db59_fb74_ccd4, 0),
    v(
        "response-echo",
        FrameKind::Response,
        0x045c_db59_fb74_ccd4,
        20,
    ),
    v(
        "heartbeat-request",
        FrameKind::HeartbeatRequest,
        0x045c_db59_fb74_ccd5,
        0,
    ),
    v(
        "heartbeat-response",
        FrameKind::HeartbeatResponse,
        0x045c_db59_fb74_ccd5,
        20,
    ),
    v("request-fail", FrameKind::Request, 0x2742_03f2_a035_5081, 0),
    v(
        "response-exception",
        FrameKind::Response,
        0x2742_03f2_a035_5081,
        20,
    ),
    v("oneway-fire", FrameKind::Oneway, 0xb6bf_93bf_8961_0cae, 0),
    v(
        "request-mixed",
        FrameKind::Request,
        0x9432_c165_2e0b_7db7,
        0,
    ),
    v(
        "response-mixed",
        FrameKind::Response,
        0x9432_c165_2e0b_7db7,
        20,
    ),
    v(
        "request-unknown-version",
        FrameKind::Request,
        0x5655_a049_d1fc_e5d9,
        0,
    ),
    v(
        "response-bad-request",
        FrameKind::Response,
        0x5655_a049_d1fc_e5d9,
        40,
    ),
];

const fn v(file: &'static str, kind: FrameKind, id: u64, timeout_or_status: u32) -> Vector {
    Vector {
        file,
        kind,
        id,
        timeout_or_status,
    }
}

fn bytes(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("testdata/dubbo-3.3.6-hessian2")
        .join(format!("{name}.bin"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn sorted(headers: &codec_abi::HeaderMap) -> Vec<(String, String)> {
    let mut pairs: Vec<(String, String)> = headers
        .iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect();
    pairs.sort();
    pairs
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = list
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    v.sort();
    v
}

/// The attachments Dubbo 3.3.6's consumer puts on every call of this test's reference.
fn call_headers(method: &str, version: &str, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut list = vec![
        ("service", "org.example.dubbo.EchoService"),
        ("version", version),
        ("method", method),
        ("dubbo", "2.0.2"),
        ("path", "org.example.dubbo.EchoService"),
        ("interface", "org.example.dubbo.EchoService"),
        ("remote.application", "echo-consumer"),
        ("timeout", "5000"),
    ];
    list.extend_from_slice(extra);
    pairs(&list)
}

fn with_id(frame: &[u8], id: u64) -> Vec<u8> {
    let mut out = frame.to_vec();
    out[4..12].copy_from_slice(&id.to_be_bytes());
    out
}

#[test]
fn every_frame_decodes_with_its_kind_id_and_status() {
    for v in &VECTORS {
        let frame = bytes(v.file);
        let mut dubbo = Dubbo::default();
        let decoded = dubbo.decode(&frame).unwrap().unwrap();
        let c = &decoded.command;
        assert_eq!(decoded.consumed, frame.len(), "{}", v.file);
        assert_eq!(c.kind(), v.kind, "{}", v.file);
        assert_eq!(c.id(), v.id, "{}", v.file);
        assert_eq!(c.timeout_or_status(), v.timeout_or_status, "{}", v.file);
        assert_eq!(c.serialization(), 2, "{}: hessian2", v.file);
        assert_eq!(c.body(), &frame[16..], "{}", v.file);
        assert!(!c.is_goaway(), "{}", v.file);
        assert_eq!(dubbo.frame_len(&frame), Some(frame.len()), "{}", v.file);
        if !matches!(v.kind, FrameKind::Request | FrameKind::Oneway) {
            assert!(
                c.headers().is_empty(),
                "{}: {:?}",
                v.file,
                sorted(c.headers())
            );
        }
    }
}

#[test]
fn requests_expose_service_version_method_and_attachments() {
    let cases = [
        (
            "request-echo",
            call_headers("echo", "1.0.0", &[("app.tag", "blue")]),
        ),
        ("request-fail", call_headers("fail", "1.0.0", &[])),
        ("oneway-fire", call_headers("fire", "1.0.0", &[])),
        ("request-mixed", call_headers("mixed", "1.0.0", &[])),
        (
            "request-unknown-version",
            call_headers("echo", "9.9.9", &[]),
        ),
    ];
    for (file, want) in cases {
        let c = Dubbo::default()
            .decode(&bytes(file))
            .unwrap()
            .unwrap()
            .command;
        assert_eq!(sorted(c.headers()), want, "{file}");
    }
}

#[test]
fn the_mixed_arguments_are_skipped_exactly() {
    // Eleven arguments of most Hessian2 types (compact and full ints and longs, every double
    // form, both date forms, chunked binary, typed and untyped lists, maps with a class
    // instance and back references, a chunked 40000-char string, null) lie between the
    // descriptor and the attachments: the attachments parse only if each is skipped exactly.
    let frame = bytes("request-mixed");
    let info = dubbo::body::parse_request(&frame[16..]).unwrap();
    assert_eq!(info.method, "mixed");
    assert_eq!(info.arg_count, 11);
    assert_eq!(info.attachments.len(), 5);
    // The arguments end where the attachments map ('H') starts.
    assert_eq!(frame[16 + info.args.end], b'H');
}

#[test]
fn every_frame_reencodes_byte_identically_and_with_a_new_id() {
    for v in &VECTORS {
        let frame = bytes(v.file);
        let mut dubbo = Dubbo::default();
        let mut c = dubbo.decode(&frame).unwrap().unwrap().command;
        let mut out = Vec::new();
        dubbo.encode(&c, &mut out).unwrap();
        assert_eq!(out, frame, "{}", v.file);
        for id in [0, 1, 0xdead_beef, u64::MAX] {
            c.set_id(id);
            out.clear();
            dubbo.encode(&c, &mut out).unwrap();
            assert_eq!(out, with_id(&frame, id), "{}", v.file);
            let differing = (0..out.len()).filter(|&i| out[i] != frame[i]);
            assert!(
                differing.into_iter().all(|i| (4..12).contains(&i)),
                "{}",
                v.file
            );
        }
    }
}

#[test]
fn every_frame_decodes_and_reencodes_through_the_abi() {
    let mut h = Harness::new(Dubbo::default).unwrap();
    for v in &VECTORS {
        let frame = bytes(v.file);
        let ctx = h.create_context();
        let call = h.decode(ctx, &frame);
        assert_eq!(
            call.known_status(),
            Some(Status::Ok),
            "{}: {:?}",
            v.file,
            h.logs()
        );
        let r = call.decode_result().unwrap();
        assert_eq!(FrameKind::from_flag(r.flag), v.kind, "{}", v.file);
        assert_eq!(r.id, v.id, "{}", v.file);
        assert_eq!(r.timeout_or_status, v.timeout_or_status, "{}", v.file);
        assert_eq!(r.drain as usize, frame.len(), "{}", v.file);
        assert_eq!(r.payload, &frame[16..], "{}", v.file);
        let headers = r.headers.to_vec();
        let (flag, status) = (r.flag, r.timeout_or_status);
        let new_id = 0x0102_0304_0506_0708;
        let input = encode_input(&headers, FrameKind::from_flag(flag), new_id, v.id, status);
        let call = h.encode(ctx, &input);
        assert_eq!(call.status, 0, "{}: {:?}", v.file, h.logs());
        let e = call.encode_result().unwrap();
        assert_eq!(e.id, new_id, "{}", v.file);
        assert_eq!(e.frame, &with_id(&frame, new_id)[..], "{}", v.file);
        h.delete(ctx);
    }
    assert_eq!(h.live_contexts(), 0);
    assert!(h.logs().is_empty(), "{:?}", h.logs());
}

/// A §5.3 encode input: the header map as decoded, flag, ids, status, no payload.
fn encode_input(headers: &[u8], kind: FrameKind, replaced: u64, command: u64, tos: u32) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&(headers.len() as u32).to_be_bytes());
    out.extend_from_slice(headers);
    out.push(kind.host_flag());
    out.extend_from_slice(&replaced.to_be_bytes());
    out.extend_from_slice(&command.to_be_bytes());
    out.extend_from_slice(&tos.to_be_bytes());
    out.extend_from_slice(&0u32.to_be_bytes());
    out
}

#[test]
fn every_split_point_needs_more_data_until_the_frame_is_whole() {
    let mut h = Harness::new(Dubbo::default).unwrap();
    for v in &VECTORS {
        let frame = bytes(v.file);
        let dubbo = Dubbo::default();
        let ctx = h.create_context();
        // The big frame: every split in its header and near its end, a sample in between.
        let cuts: Vec<usize> = if frame.len() > 4096 {
            (0..64)
                .chain((64..frame.len()).step_by(997))
                .chain(frame.len() - 64..frame.len())
                .collect()
        } else {
            (0..frame.len()).collect()
        };
        for cut in cuts {
            assert_eq!(
                dubbo.decode_frame(&frame[..cut]),
                Ok(None),
                "{} cut {cut}",
                v.file
            );
            let want = (cut >= 16).then_some(frame.len());
            assert_eq!(dubbo.frame_len(&frame[..cut]), want, "{} cut {cut}", v.file);
            if cut > 0 {
                assert_eq!(
                    h.decode(ctx, &frame[..cut]).status,
                    99,
                    "{} cut {cut}",
                    v.file
                );
            }
        }
        assert_eq!(h.decode(ctx, &frame).status, 0, "{}", v.file);
        h.delete(ctx);
    }
}

#[test]
fn frames_back_to_back_decode_one_at_a_time() {
    let mut stream = Vec::new();
    for v in &VECTORS {
        stream.extend_from_slice(&bytes(v.file));
    }
    let mut dubbo = Dubbo::default();
    let mut rest = &stream[..];
    for v in &VECTORS {
        let d = dubbo.decode(rest).unwrap().unwrap();
        assert_eq!(
            (d.command.id(), d.command.kind()),
            (v.id, v.kind),
            "{}",
            v.file
        );
        rest = &rest[d.consumed..];
    }
    assert!(rest.is_empty());
}

#[test]
fn our_heartbeat_and_its_answer_are_dubbos_own_bytes() {
    let request = bytes("heartbeat-request");
    let response = bytes("heartbeat-response");
    let mut dubbo = Dubbo::default();
    let ping = dubbo.keepalive(0x045c_db59_fb74_ccd5).unwrap();
    let mut out = Vec::new();
    dubbo.encode(&ping, &mut out).unwrap();
    assert_eq!(out, request);

    let decoded = dubbo.decode(&request).unwrap().unwrap().command;
    let pong = dubbo.reply_keepalive(&decoded).unwrap();
    out.clear();
    dubbo.encode(&pong, &mut out).unwrap();
    assert_eq!(out, response);
    assert_eq!(pong.kind(), FrameKind::HeartbeatResponse);

    let call = dubbo
        .decode(&bytes("request-echo"))
        .unwrap()
        .unwrap()
        .command;
    assert!(
        dubbo.reply_keepalive(&call).is_none(),
        "only heartbeats get an answer"
    );
}

#[test]
fn a_hijack_is_shaped_like_dubbos_own_error_response() {
    // Dubbo's provider answered the unknown version with status 40 and a Hessian2 string.
    let theirs = bytes("response-bad-request");
    let mut dubbo = Dubbo::default();
    let request = dubbo
        .decode(&bytes("request-unknown-version"))
        .unwrap()
        .unwrap()
        .command;
    // Proxy code, Dubbo status, and the code that status maps back to (for retries).
    let table = [
        (504, 31, 504),
        (503, 100, 503),
        (502, 100, 503),
        (404, 60, 404),
        (400, 40, 400),
        (500, 80, 500),
    ];
    for (proxy_code, status, back_code) in table {
        let mapped = dubbo.map_status(proxy_code);
        assert_eq!(mapped, status, "{proxy_code}");
        let response = dubbo.hijack(&request, mapped).unwrap();
        let mut ours = Vec::new();
        dubbo.encode(&response, &mut ours).unwrap();
        assert_eq!(
            ours[..3],
            theirs[..3],
            "magic and flag (response, hessian2)"
        );
        assert_eq!(u32::from(ours[3]), status);
        assert_eq!(ours[4..12], theirs[4..12], "the request's id");
        let body_len = u32::from_be_bytes([ours[12], ours[13], ours[14], ours[15]]) as usize;
        assert_eq!(body_len, ours.len() - 16);
        let mut r = Reader::new(&ours[16..]);
        let message = r.read_string().unwrap();
        assert!(message.starts_with("rpc sidecar: "), "{message}");
        assert!(r.at_end());
        let back = dubbo.decode(&ours).unwrap().unwrap().command;
        assert_eq!(back.kind(), FrameKind::Response);
        assert_eq!(dubbo.response_code(back.timeout_or_status()), back_code);
    }
    assert!(
        dubbo.hijack(&request, 256).is_err(),
        "a status must fit a byte"
    );
}

#[test]
fn edited_headers_are_written_into_the_attachments_keeping_the_arguments() {
    let frame = bytes("request-mixed");
    let mut dubbo = Dubbo::default();
    let mut c = dubbo.decode(&frame).unwrap().unwrap().command;
    c.headers_mut().insert("group", "blue");
    c.headers_mut().insert("version", "2.0.0");
    c.set_id(7);
    let mut out = Vec::new();
    dubbo.encode(&c, &mut out).unwrap();
    let back = dubbo.decode(&out).unwrap().unwrap().command;
    assert_eq!(back.id(), 7);
    assert_eq!(back.headers().get_str("group"), Some("blue"));
    assert_eq!(back.headers().get_str("version"), Some("2.0.0"));
    assert_eq!(back.headers().len(), c.headers().len());
    let before = dubbo::body::parse_request(&frame[16..]).unwrap();
    let after = dubbo::body::parse_request(&out[16..]).unwrap();
    assert_eq!(
        frame[16..][before.args],
        out[16..][after.args],
        "arguments untouched"
    );
    assert_eq!(after.version, "2.0.0");

    // A response carries added headers as attachments beside Dubbo's own (`dubbo`), its
    // value untouched.
    let frame = bytes("response-echo");
    let mut response = dubbo.decode(&frame).unwrap().unwrap().command;
    response.headers_mut().insert("x-sidecar", "yes");
    let mut out = Vec::new();
    dubbo.encode(&response, &mut out).unwrap();
    let mut r = dubbo::hessian::Reader::new(&out[16..]);
    assert_eq!(r.read_int().unwrap(), 4, "RESPONSE_VALUE_WITH_ATTACHMENTS");
    assert_eq!(r.read_string().unwrap(), "hello-0");
    let map = r.read_string_map().unwrap();
    assert_eq!(
        map,
        vec![
            ("dubbo".to_owned(), "2.0.2".to_owned()),
            ("x-sidecar".to_owned(), "yes".to_owned())
        ]
    );
    assert_eq!(&out[..4], &frame[..4], "magic, flag and status kept");
    let back = dubbo.decode(&out).unwrap().unwrap().command;
    assert_eq!(back.id(), response.id());

    // An error response (a status other than OK, its body a message) cannot carry them.
    let mut failed = dubbo
        .decode(&bytes("response-bad-request"))
        .unwrap()
        .unwrap()
        .command;
    failed.headers_mut().insert("x", "y");
    let err = dubbo.encode(&failed, &mut Vec::new()).unwrap_err();
    assert!(err.message().contains("cannot apply header edits"), "{err}");
}

#[test]
fn the_plugin_configuration_reaches_the_codec() {
    let mut h = Harness::with_config(Dubbo::default, &[], &[("max_frame_bytes", "100")]).unwrap();
    let ctx = h.create_context();
    assert_eq!(
        h.decode(ctx, &bytes("request-echo")).known_status(),
        Some(Status::InternalFailure)
    );
    let ctx = h.create_context();
    assert_eq!(
        h.decode(ctx, &bytes("response-echo")).known_status(),
        Some(Status::Ok)
    );
    assert!(h
        .decode(ctx, &bytes("response-echo"))
        .report(BufferType::DecodeData)
        .is_ok());
}

/// `rpc_sidecar_check` through the harness: every captured frame (requests, responses,
/// heartbeats, oneway) matches from its first 3 bytes and needs more before; Bolt's first
/// bytes, HTTP, a wrong second magic byte and a flag without a serialization are refused.
#[test]
fn check_answers_from_the_magic_and_the_flag_byte() {
    const MATCH: u32 = 0;
    const NO_MATCH: u32 = 1;
    const NEED_MORE: u32 = 99;
    let mut h = Harness::new(Dubbo::default).unwrap();
    let ctx = h.create_context();
    for v in &VECTORS {
        let frame = bytes(v.file);
        assert_eq!(h.check(ctx, &frame[..1]), NEED_MORE, "{}", v.file);
        assert_eq!(h.check(ctx, &frame[..2]), NEED_MORE, "{}", v.file);
        assert_eq!(h.check(ctx, &frame[..3]), MATCH, "{}", v.file);
        assert_eq!(h.check(0, &frame), MATCH, "{}", v.file);
    }
    for other in [
        &[0x01, 0x01, 0x00, 0x01][..],
        b"GET / HTTP/1.1\r\n",
        &[0xda, 0xbc],
        &[0xdb],
        &[0xda, 0xbb, 0x80],
    ] {
        assert_eq!(h.check(ctx, other), NO_MATCH, "{other:02x?}");
    }
    assert_eq!(h.live_contexts(), 1, "check caches nothing");
    h.delete(ctx);
}

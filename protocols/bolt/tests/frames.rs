//! Bolt through the Protocol API: v1 and v2 (with and without CRC), keepalive, reply and
//! hijack frames byte for byte, edits that rebuild the frame, and malformed input.

mod vectors;

use bolt::{Bolt, BoltError, DEFAULT_MAX_FRAME_BYTES};
use codec_abi::{FrameKind, HeaderMap};
use codec_sdk::{Command, Protocol};
use vectors::{header_section, hex, with_id, Spec};

fn decode(bytes: &[u8]) -> bolt::BoltCommand {
    let d = Bolt::default().decode_frame(bytes).unwrap().unwrap();
    assert_eq!(d.consumed, bytes.len());
    d.command
}

fn encode(command: &bolt::BoltCommand) -> Vec<u8> {
    let mut out = Vec::new();
    Bolt::default().encode(command, &mut out).unwrap();
    out
}

#[test]
fn v1_request_and_response_fields() {
    let c = decode(&Spec::request(7).build());
    assert_eq!(
        (c.kind(), c.id(), c.timeout_or_status()),
        (FrameKind::Request, 7, 3000)
    );
    assert_eq!(
        c.headers().get_str("service"),
        Some("com.foo.HelloService:1.0")
    );
    assert_eq!(c.class(), b"com.alipay.sofa.rpc.core.request.SofaRequest");
    assert_eq!(c.body(), b"hessian body");
    assert_eq!((c.protocol_version(), c.cmd_code(), c.codec()), (1, 1, 1));

    let c = decode(&Spec::response(7, 0x12).build());
    assert_eq!(
        (c.kind(), c.timeout_or_status()),
        (FrameKind::Response, 0x12)
    );
    assert!(c.headers().is_empty());

    let none = Spec {
        timeout_or_status: u32::MAX,
        ..Spec::request(1)
    };
    assert_eq!(decode(&none.build()).timeout_or_status(), u32::MAX);
    let goaway = Spec {
        cmd_code: 100,
        timeout_or_status: 0,
        ..Spec::request(1)
    };
    assert_eq!(decode(&goaway.build()).kind(), FrameKind::Request);
}

#[test]
fn v2_without_crc_round_trips_and_rewrites_the_id_at_offset_6() {
    for spec in [
        Spec::request(9).v2(1, 0),
        Spec::request(9).v2(1, 1), // ver1 1: the switch bit means nothing
        Spec::request(9).v2(2, 0),
        Spec::response(9, 4).v2(1, 0),
    ] {
        let frame = spec.build();
        let mut c = decode(&frame);
        assert!(!c.has_crc(), "{spec:?}");
        assert_eq!(c.id(), 9);
        assert_eq!(c.body(), &spec.content[..]);
        assert_eq!(encode(&c), frame);
        c.set_id(0x0102_0304);
        let out = encode(&c);
        assert_eq!(&out[6..10], &[1, 2, 3, 4]);
        assert_eq!(out, with_id(&frame, 0x0102_0304));
    }
}

#[test]
fn v2_crc_is_verified_and_recomputed_after_an_id_rewrite() {
    for spec in [Spec::request(9).v2(2, 1), Spec::response(9, 0).v2(2, 0x81)] {
        let frame = spec.build();
        let mut c = decode(&frame);
        assert!(c.has_crc());
        assert_eq!(encode(&c), frame);
        c.set_id(10);
        let out = encode(&c);
        let want = Spec {
            id: 10,
            ..spec.clone()
        }
        .build();
        assert_eq!(out, want);
        assert_ne!(out[out.len() - 4..], frame[frame.len() - 4..]);
        // The rewritten frame decodes (its CRC checks out).
        assert_eq!(decode(&out).id(), 10);
    }
}

#[test]
fn a_bad_crc_is_refused() {
    let frame = Spec::request(9).v2(2, 1).build();
    // id, switch (0x41 still asks for a CRC), class, content, the CRC itself.
    for at in [6, 11, 30, frame.len() - 5, frame.len() - 1] {
        let mut bad = frame.clone();
        bad[at] ^= 0x40;
        assert!(
            matches!(
                Bolt::default().decode_frame(&bad),
                Err(BoltError::BadCrc { .. })
            ),
            "byte {at}"
        );
    }
}

#[test]
fn edited_commands_are_rebuilt_from_their_fields() {
    for spec in [
        Spec::request(5),
        Spec::request(5).v2(2, 1),
        Spec::response(5, 2).v2(1, 0),
    ] {
        let mut c = decode(&spec.build());
        c.headers_mut().insert("x-added", "1");
        assert!(c.is_changed());
        c.set_body(b"new".to_vec());
        c.set_id(6);
        let mut headers: HeaderMap = HeaderMap::decode(&spec.headers).unwrap();
        headers.insert("x-added", "1");
        let mut section = Vec::new();
        headers.encode_into(&mut section);
        let want = Spec {
            id: 6,
            headers: section,
            content: b"new".to_vec(),
            ..spec.clone()
        };
        assert_eq!(encode(&c), want.build(), "{spec:?}");
    }
}

#[test]
fn keepalive_reply_and_hijack_frames() {
    let mut bolt = Bolt::default();
    let hb = bolt.keepalive(0x1_0000_0005).unwrap();
    assert_eq!(hb.kind(), FrameKind::HeartbeatRequest);
    assert_eq!(
        encode(&hb),
        hex("01 01 0000 01 00000005 01 ffffffff 0000 0000 00000000")
    );

    let ack = bolt.reply_keepalive(&hb).unwrap();
    assert_eq!(ack.kind(), FrameKind::HeartbeatResponse);
    assert_eq!(
        encode(&ack),
        hex("01 00 0000 01 00000005 01 0000 0000 0000 00000000")
    );

    // v2 heartbeat requests get v2 acks, with a CRC when the request had one.
    let v2_hb = Spec {
        cmd_code: 0,
        class: vec![],
        headers: vec![],
        content: vec![],
        ..Spec::request(8).v2(2, 1)
    };
    let ack = bolt.reply_keepalive(&decode(&v2_hb.build())).unwrap();
    let want = Spec {
        cmd_type: 0,
        cmd_code: 0,
        timeout_or_status: 0,
        ..v2_hb.clone()
    };
    assert_eq!(encode(&ack), want.build());

    // Only heartbeat requests are answered.
    assert!(bolt
        .reply_keepalive(&decode(&Spec::request(1).build()))
        .is_none());

    let request = decode(
        &Spec {
            codec: 11,
            ..Spec::request(42)
        }
        .build(),
    );
    let status = bolt.map_status(504);
    let resp = bolt.hijack(&request, status).unwrap();
    assert_eq!(
        (resp.kind(), resp.id(), resp.timeout_or_status()),
        (FrameKind::Response, 42, 7)
    );
    assert_eq!(
        encode(&resp),
        hex("01 00 0002 01 0000002a 01 0007 0000 0000 00000000")
    );
    let v2 = decode(&Spec::request(42).v2(2, 1).build());
    let resp = bolt.hijack(&v2, 16).unwrap();
    let want = Spec {
        cmd_type: 0,
        cmd_code: 2,
        timeout_or_status: 16,
        class: vec![],
        headers: vec![],
        content: vec![],
        ..Spec::request(42).v2(2, 1)
    };
    assert_eq!(encode(&resp), want.build());
    assert!(bolt.hijack(&request, 0x1_0000).is_err());
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    let bolt = Bolt::default();
    let cases: Vec<(&str, Vec<u8>, BoltError)> = vec![
        (
            "protocol byte",
            vec![0x07, 1, 0, 1],
            BoltError::BadProtocol(7),
        ),
        (
            "http",
            b"GET / HTTP/1.1\r\n".to_vec(),
            BoltError::BadProtocol(b'G'),
        ),
        ("v2 version", vec![2, 3, 1, 0, 1], BoltError::BadVersion(3)),
        ("type", vec![1, 3, 0, 1], BoltError::UnknownType(3)),
        ("v2 type", vec![2, 1, 9, 0, 1], BoltError::UnknownType(9)),
        (
            "request cmdCode",
            vec![1, 1, 0, 2],
            BoltError::UnknownCmdCode {
                cmd_type: 1,
                code: 2,
            },
        ),
        (
            "response cmdCode",
            vec![1, 0, 0, 1],
            BoltError::UnknownCmdCode {
                cmd_type: 0,
                code: 1,
            },
        ),
        (
            "oneway cmdCode",
            vec![1, 2, 0x12, 0x34],
            BoltError::UnknownCmdCode {
                cmd_type: 2,
                code: 0x1234,
            },
        ),
    ];
    for (what, bytes, want) in cases {
        assert_eq!(bolt.decode_frame(&bytes), Err(want), "{what}");
    }

    // Lengths past the limit fail as soon as the fixed part is there.
    let mut huge = Spec::request(1).build()[..22].to_vec();
    huge[18..22].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        bolt.decode_frame(&huge),
        Err(BoltError::FrameTooLarge {
            max: DEFAULT_MAX_FRAME_BYTES,
            ..
        })
    ));
    let small = Bolt::with_max_frame_bytes(100);
    let frame = Spec::request(1).build();
    assert!(frame.len() > 100);
    assert!(matches!(
        small.decode_frame(&frame[..22]),
        Err(BoltError::FrameTooLarge { .. })
    ));
    // Through the trait the error is a ProtocolError with the same text.
    let err = Bolt::default().decode(&[0x07]).unwrap_err();
    assert_eq!(err.message(), "bad protocol byte 0x07");
}

#[test]
fn garbage_never_panics() {
    // A small xorshift generator: deterministic, no dependency.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let valid = Spec::request(3).v2(2, 1).build();
    let mut bolt = Bolt::with_max_frame_bytes(4096);
    for round in 0..20_000 {
        let len = (next() % 96) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if round % 2 == 0 && !bytes.is_empty() {
            // Keep a plausible prefix so the parser gets past the first bytes.
            let keep = (next() as usize % valid.len()).min(bytes.len());
            bytes[..keep].copy_from_slice(&valid[..keep]);
        }
        if let Ok(Some(d)) = bolt.decode(&bytes) {
            assert!(d.consumed <= bytes.len());
            let mut out = Vec::new();
            bolt.encode(&d.command, &mut out).unwrap();
            assert_eq!(out, &bytes[..d.consumed]);
        }
    }
}

#[test]
fn header_sections_that_do_not_parse_become_the_error_header() {
    let spec = Spec {
        headers: header_section(&[("service", "s")])[..9].to_vec(),
        ..Spec::request(4)
    };
    let c = decode(&spec.build());
    assert_eq!(c.headers().len(), 1);
    assert!(c
        .headers()
        .get_str(codec_abi::HEADER_DECODE_ERROR)
        .is_some());
    // Unchanged, it still forwards byte for byte.
    assert_eq!(encode(&c), spec.build());
}

#[test]
fn oversized_sections_cannot_be_encoded() {
    let mut c = decode(&Spec::request(1).build());
    c.headers_mut().insert("big", vec![b'x'; 70_000]);
    let mut out = Vec::new();
    let err = Bolt::default().encode(&c, &mut out).unwrap_err();
    assert!(err.message().contains("header section"), "{err}");
}

#[test]
fn goaway_round_trips_and_only_cmd_code_100_requests_are_goaway() {
    let goaway = Bolt::default().goaway(12).expect("bolt has a GoAway");
    assert!(goaway.is_goaway());
    let bytes = encode(&goaway);
    assert_eq!(
        bytes,
        hex("01 01 0064 01 0000000c 01 00000000 0000 0000 00000000")
    );
    let back = decode(&bytes);
    assert!(back.is_goaway());
    assert_eq!(
        (back.kind(), back.id(), back.cmd_code()),
        (FrameKind::Request, 12, 100)
    );
    assert!(!decode(&Spec::request(12).build()).is_goaway());
    assert!(!decode(&Spec::response(12, 0).build()).is_goaway());
    assert!(!decode(&encode(&Bolt::default().keepalive(12).unwrap())).is_goaway());
}

#[test]
fn taken_headers_are_rebuilt_from_the_section_and_the_frame_still_forwards() {
    let bytes = Spec::request(9).build();
    let mut c = decode(&bytes);
    let taken = c.take_headers();
    assert_eq!(taken.get_str("service"), Some("com.foo.HelloService:1.0"));
    assert_eq!(c.headers(), &taken, "rebuilt from the unchanged section");
    assert_eq!(c.header_count(), taken.len());
    assert_eq!(encode(&c), bytes);

    // The decode-error header is the only copy: taking leaves it in place.
    let spec = Spec {
        headers: header_section(&[("service", "s")])[..9].to_vec(),
        ..Spec::request(4)
    };
    let mut c = decode(&spec.build());
    let taken = c.take_headers();
    assert!(taken.get_str(codec_abi::HEADER_DECODE_ERROR).is_some());
    assert_eq!(c.headers(), &taken);

    // After an edit, the edited map is kept too.
    let mut c = decode(&bytes);
    c.headers_mut().insert("x-added", "1");
    let taken = c.take_headers();
    assert_eq!(taken.get_str("x-added"), Some("1"));
    assert_eq!(c.headers().get_str("x-added"), Some("1"));
}

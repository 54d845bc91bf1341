//! The host side of the ABI, driven through the `Codec` API with the WAT toy plugin
//! (`fixtures/toy.wat`, which traps like TinyGo guests on ABI violations).

mod common;

use bytes::{Bytes, BytesMut};
use codec_abi::MAX_FRAME_BYTES_KEY;
use codec_host::{Codec, CodecError, FrameKind, Limits, Plugin, WasmCodec};
use common::{config, fixture};

/// The plugin-configuration pair through which the host tells a plugin its frame limit.
/// The pairs the host always appends to a plugin's configuration: its frame limit, then its
/// request for the decode extras.
fn host_pairs(bytes: usize) -> Vec<(String, String)> {
    vec![
        (MAX_FRAME_BYTES_KEY.into(), bytes.to_string()),
        (codec_abi::DECODE_EXTRAS_KEY.into(), "1".into()),
    ]
}

/// A toy frame: u16be total length, id, cmd, body.
fn frame(id: u8, cmd: u8, body: &[u8]) -> Vec<u8> {
    let n = (4 + body.len()) as u16;
    let mut f = n.to_be_bytes().to_vec();
    f.extend_from_slice(&[id, cmd]);
    f.extend_from_slice(body);
    f
}

fn codec_with(limits: Limits) -> WasmCodec {
    let mut cfg = config("toy", fixture("toy.wat"));
    cfg.limits = limits;
    Plugin::load(cfg).unwrap().new_codec().unwrap()
}

fn codec() -> WasmCodec {
    codec_with(Limits::new())
}

fn decode_one(codec: &mut WasmCodec, bytes: &[u8]) -> codec_host::Frame {
    let mut buf = BytesMut::from(bytes);
    let f = codec.decode(&mut buf).unwrap().expect("a whole frame");
    assert!(buf.is_empty());
    f
}

#[test]
fn decodes_and_encodes_with_the_id_rewritten_and_retries() {
    let mut c = codec();
    let wire = frame(7, 0, b"hello");
    let mut f = decode_one(&mut c, &wire);
    assert_eq!(f.kind(), FrameKind::Request);
    assert_eq!(f.id(), 7);
    assert_eq!(f.raw().as_ref(), &wire[..]);
    assert_eq!(f.payload().as_ref(), b"hello");
    assert!(f.headers().is_empty());

    let mut out = BytesMut::new();
    c.encode(&mut f, 9, &mut out).unwrap();
    assert_eq!(&out[..], &[0, 4, 9, 0]);
    // A retry: the guest now caches 9, and the host passes it as the command id.
    out.clear();
    c.encode(&mut f, 11, &mut out).unwrap();
    assert_eq!(&out[..], &[0, 4, 11, 0]);
}

#[test]
fn payload_is_a_slice_of_the_raw_frame() {
    let mut c = codec();
    let f = decode_one(&mut c, &frame(1, 0, b"body bytes"));
    let raw = f.raw().as_ptr() as usize;
    let payload = f.payload().as_ptr() as usize;
    assert_eq!(
        payload,
        raw + 4,
        "payload should point into raw (zero copy)"
    );
}

#[test]
fn every_split_point_needs_more_until_whole() {
    let mut c = codec();
    let wire = frame(3, 0, &[0xab; 40]);
    for cut in 0..wire.len() {
        let mut buf = BytesMut::from(&wire[..cut]);
        assert!(c.decode(&mut buf).unwrap().is_none(), "cut {cut}");
        assert_eq!(buf.len(), cut, "nothing consumed at cut {cut}");
        buf.extend_from_slice(&wire[cut..]);
        let f = c.decode(&mut buf).unwrap().expect("whole frame");
        assert_eq!(f.id(), 3);
        assert!(buf.is_empty());
    }
}

#[test]
fn many_frames_in_one_buffer_and_big_frames_behind_small_ones() {
    let mut c = codec();
    let mut wire = Vec::new();
    for id in 0..50u8 {
        wire.extend(frame(id, 0, &[id; 100]));
    }
    let big = frame(200, 0, &vec![0x5a; 40_000]); // larger than the first 8 KiB window
    wire.extend(&big);
    wire.extend(frame(201, 0, b"tail"));
    let mut buf = BytesMut::from(&wire[..]);
    let mut ids = Vec::new();
    while let Some(f) = c.decode(&mut buf).unwrap() {
        if f.id() == 200 {
            assert_eq!(f.raw().as_ref(), &big[..]);
        }
        ids.push(f.id());
    }
    let want: Vec<u64> = (0..50).chain([200, 201]).collect();
    assert_eq!(ids, want);
    assert!(buf.is_empty());
}

#[test]
fn frames_over_the_limit_are_refused() {
    let mut c = codec_with(Limits {
        max_frame_bytes: 1000,
        ..Limits::new()
    });
    let wire = frame(1, 0, &[0; 2000]);
    let mut buf = BytesMut::from(&wire[..999]);
    assert!(c.decode(&mut buf).unwrap().is_none());
    buf.extend_from_slice(&wire[999..]);
    assert!(matches!(
        c.decode(&mut buf),
        Err(CodecError::TooLarge { limit: 1000, .. })
    ));
    let mut ok = BytesMut::from(&frame(2, 0, &[0; 500])[..]);
    assert_eq!(c.decode(&mut ok).unwrap().unwrap().id(), 2);
}

#[test]
fn malformed_input_and_bad_results_are_errors_and_the_codec_keeps_working() {
    let mut c = codec();
    let mut garbage = BytesMut::from(&[0u8, 1, 2, 3][..]); // N = 1 < 4
    assert!(matches!(
        c.decode(&mut garbage),
        Err(CodecError::Rejected { status: 10, .. })
    ));
    let mut no_result = BytesMut::from(&frame(1, 4, b"")[..]);
    assert!(matches!(
        c.decode(&mut no_result),
        Err(CodecError::NoResult { .. })
    ));
    let mut bad_drain = BytesMut::from(&frame(1, 5, b"")[..]);
    let err = c.decode(&mut bad_drain).unwrap_err();
    assert!(matches!(err, CodecError::BadResult { .. }), "{err}");
    assert_eq!(bad_drain.len(), 4, "nothing consumed on error");
    let f = decode_one(&mut c, &frame(42, 0, b"ok"));
    assert_eq!(f.id(), 42);
    assert_eq!(c.context_stats().replaced_instances, 0);
}

#[test]
fn the_plugin_reads_the_configuration_pairs() {
    let cfg = config("toy", fixture("toy.wat"));
    // What the guest is sent: the configured pairs, then the host's frame limit.
    let mut sent = cfg.plugin_config.clone();
    sent.extend(host_pairs(Limits::DEFAULT_MAX_FRAME_BYTES));
    let want = codec_abi::encode_pairs(&sent);
    let mut c = Plugin::load(cfg).unwrap().new_codec().unwrap();
    let f = decode_one(&mut c, &frame(1, 6, b""));
    assert_eq!(f.payload().as_ref(), &want[..]);
}

#[test]
fn empty_configuration_buffers_do_not_call_malloc_zero() {
    // The toy traps on malloc(0) and checks that an empty buffer comes back as (0, 0).
    let mut cfg = config("toy", fixture("toy.wat"));
    cfg.vm_config.clear();
    cfg.plugin_config.clear();
    let plugin = Plugin::load(cfg).unwrap();
    assert_eq!(plugin.protocol(), "toy");
    let mut c = plugin.new_codec().unwrap();
    // The VM configuration stays empty; the plugin configuration always carries the host's
    // frame limit and its request for decode extras.
    assert!(decode_one(&mut c, &frame(1, 9, b"")).payload().is_empty());
    let want = codec_abi::encode_pairs(&host_pairs(Limits::DEFAULT_MAX_FRAME_BYTES));
    assert_eq!(
        decode_one(&mut c, &frame(2, 6, b"")).payload().as_ref(),
        &want[..]
    );
}

#[test]
fn the_host_frame_limit_replaces_a_configured_one() {
    let mut cfg = config("toy", fixture("toy.wat"));
    cfg.plugin_config
        .insert(0, (MAX_FRAME_BYTES_KEY.into(), "64".into()));
    cfg.limits.max_frame_bytes = 1000;
    let mut c = Plugin::load(cfg.clone()).unwrap().new_codec().unwrap();
    let mut sent = cfg.plugin_config[1..].to_vec();
    sent.extend(host_pairs(1000));
    let want = codec_abi::encode_pairs(&sent);
    assert_eq!(
        decode_one(&mut c, &frame(1, 6, b"")).payload().as_ref(),
        &want[..]
    );
}

#[test]
fn contexts_are_deleted_exactly_once() {
    let mut c = codec();
    let frames: Vec<_> = (0..5)
        .map(|i| decode_one(&mut c, &frame(i, 0, b"x")))
        .collect();
    let s = c.context_stats();
    assert_eq!((s.live, s.created, s.deleted), (5, 5, 0));
    drop(frames);
    // Deletion happens at the next call (the toy traps on unknown or repeated deletes).
    c.release_dropped_contexts().unwrap();
    let s = c.context_stats();
    assert_eq!((s.live, s.created, s.deleted), (0, 5, 5));
    // A need-more-data decode keeps its context for the retry; the frame then takes it.
    let wire = frame(9, 0, b"abc");
    let mut buf = BytesMut::from(&wire[..3]);
    assert!(c.decode(&mut buf).unwrap().is_none());
    assert_eq!(c.context_stats().live, 1);
    buf.extend_from_slice(&wire[3..]);
    let f = c.decode(&mut buf).unwrap().unwrap();
    let s = c.context_stats();
    assert_eq!((s.live, s.created), (1, 6));
    drop(f);
    c.release_dropped_contexts().unwrap();
    assert_eq!(c.context_stats().live, 0);
    assert_eq!(c.context_stats().deleted, 6);
}

#[test]
fn keepalive_unsupported_hijack_refused_and_their_contexts_deleted() {
    let mut c = codec();
    assert_eq!(c.keepalive(5).unwrap(), None::<Bytes>);
    let req = decode_one(&mut c, &frame(3, 0, b""));
    let mut out = BytesMut::new();
    assert!(matches!(
        c.hijack(&req, 404, 3, &mut out),
        Err(CodecError::Rejected { status: 10, .. })
    ));
    assert!(out.is_empty());
    let s = c.context_stats();
    assert_eq!((s.live, s.created, s.deleted), (1, 3, 2));
}

#[test]
fn reply_keepalive_wants_a_heartbeat() {
    let mut c = codec();
    let mut req = decode_one(&mut c, &frame(3, 0, b""));
    let mut out = BytesMut::new();
    assert!(matches!(
        c.reply_keepalive(&mut req, &mut out),
        Err(CodecError::WrongFrame(_))
    ));
    let mut hb = decode_one(&mut c, &frame(4, 7, b""));
    assert_eq!(hb.kind(), FrameKind::HeartbeatRequest);
    assert!(matches!(
        c.reply_keepalive(&mut hb, &mut out),
        Err(CodecError::Rejected { status: 10, .. })
    ));
    let resp = decode_one(&mut c, &frame(5, 8, b""));
    assert_eq!(resp.kind(), FrameKind::Response);
}

#[test]
fn without_the_optional_export_response_codes_are_the_host_default() {
    let mut c = codec();
    let resp = decode_one(&mut c, &frame(5, 8, b""));
    let status = resp.timeout_or_status();
    assert_eq!(
        c.response_code(&resp),
        codec_abi::default_response_code(status)
    );
    assert_eq!(c.plugin_stats().errors, 0, "a missing export is no error");
}

#[test]
fn a_trap_carries_the_guests_last_words_and_the_instance_is_replaced() {
    let mut c = codec();
    let mut before = decode_one(&mut c, &frame(1, 0, b"kept"));
    let mut buf = BytesMut::from(&frame(2, 3, b"")[..]);
    match c.decode(&mut buf) {
        Err(CodecError::Trap { call, message }) => {
            assert_eq!(call, "proxy_decode_buffer_bytes");
            assert!(message.contains("panic: toy boom"), "{message}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    // The same codec works afterwards, on a new instance.
    let mut after = decode_one(&mut c, &frame(3, 0, b"new"));
    let mut out = BytesMut::new();
    c.encode(&mut after, 30, &mut out).unwrap();
    assert_eq!(&out[..], &[0, 4, 30, 0]);
    assert_eq!(c.context_stats().replaced_instances, 1);
    // A frame decoded on the old instance is re-decoded from its raw bytes.
    out.clear();
    c.encode(&mut before, 10, &mut out).unwrap();
    assert_eq!(&out[..], &[0, 4, 10, 0]);
    drop(before);
    drop(after);
    c.release_dropped_contexts().unwrap();
    assert_eq!(c.context_stats().live, 0);
}

#[test]
fn an_endless_loop_runs_out_of_cpu() {
    let mut c = codec();
    let mut buf = BytesMut::from(&frame(1, 1, b"")[..]);
    assert!(matches!(
        c.decode(&mut buf),
        Err(CodecError::CpuExhausted {
            call: "proxy_decode_buffer_bytes"
        })
    ));
    assert_eq!(decode_one(&mut c, &frame(2, 0, b"")).id(), 2);
    assert_eq!(c.context_stats().replaced_instances, 1);
}

#[test]
fn memory_growth_stops_at_the_cap() {
    let mut c = codec_with(Limits::from_vm_config_mem(Some(4)));
    let mut buf = BytesMut::from(&frame(1, 2, b"")[..]);
    assert!(matches!(c.decode(&mut buf), Err(CodecError::Trap { .. })));
    assert_eq!(decode_one(&mut c, &frame(2, 0, b"")).id(), 2);
}

#[test]
fn a_frame_from_another_codec_is_re_decoded_here() {
    let plugin = Plugin::load(config("toy", fixture("toy.wat"))).unwrap();
    let mut a = plugin.new_codec().unwrap();
    let mut b = plugin.new_codec().unwrap();
    let mut f = decode_one(&mut a, &frame(6, 0, b""));
    let mut out = BytesMut::new();
    b.encode(&mut f, 60, &mut out).unwrap();
    assert_eq!(&out[..], &[0, 4, 60, 0]);
    // a's context went back to a's queue; b holds the frame's new one.
    a.release_dropped_contexts().unwrap();
    assert_eq!(a.context_stats().live, 0);
    assert_eq!(b.context_stats().live, 1);
}

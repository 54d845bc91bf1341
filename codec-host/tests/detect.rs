//! Protocol auto-detection through the `Codec` API (`Codec::detect`) with real plugins:
//! `bolt.wasm` answers from its `rpc_sidecar_check` export, `misbehave.wasm` (Bolt without
//! `Protocol::check`: the SDK answers "not implemented") and the WAT toy plugin (no export at
//! all, like MOSN's TinyGo plugins) are detected by a trial decode; the native Bolt codec
//! answers from `Protocol::check`. A detection consumes nothing: the same codec then decodes
//! the same bytes.

mod common;

use bytes::BytesMut;
use codec_host::{native_codec, Codec, CodecError, Detect, Limits, Plugin, WasmCodec};
use common::{bolt_request, bolt_vectors, config, fixture, plugin_wasm};

fn wasm(name: &str) -> WasmCodec {
    Plugin::load(config(name, plugin_wasm(name)))
        .expect("load plugin")
        .new_codec()
        .expect("instance")
}

fn toy() -> WasmCodec {
    Plugin::load(config("toy", fixture("toy.wat")))
        .expect("load toy")
        .new_codec()
        .expect("instance")
}

/// Garbage no candidate speaks: a TLS client hello's first bytes, then HTTP.
const TLS: &[u8] = &[
    0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03,
];
const HTTP: &[u8] = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n";

#[test]
fn bolt_wasm_answers_from_its_check_export_with_one_guest_call_per_detection() {
    let mut codec = wasm("bolt");
    for (name, frame) in bolt_vectors() {
        let needed = if frame[0] == 2 { 5 } else { 4 };
        for end in 1..needed {
            assert_eq!(
                codec.detect(&frame[..end]).unwrap(),
                Detect::NeedMore,
                "{name}"
            );
        }
        let before = codec.plugin_stats().calls;
        assert_eq!(
            codec.detect(&frame[..needed]).unwrap(),
            Detect::Match,
            "{name}"
        );
        let after = codec.plugin_stats().calls;
        assert_eq!(after.decode, before.decode, "check decodes nothing");
        assert_eq!(after.other, before.other + 1, "one guest call: the check");
    }
    assert_eq!(codec.detect(TLS).unwrap(), Detect::NoMatch);
    assert_eq!(codec.detect(HTTP).unwrap(), Detect::NoMatch);
    assert_eq!(codec.detect(&[0xda, 0xbb, 0xc2]).unwrap(), Detect::NoMatch);
    // Nothing was consumed or cached: the same codec decodes the frame it detected.
    let frame = bolt_request(7, 1000, b"C", &[("service", "s")], b"hi");
    assert_eq!(codec.detect(&frame).unwrap(), Detect::Match);
    let mut buf = BytesMut::from(&frame[..]);
    let decoded = codec.decode(&mut buf).unwrap().expect("a frame");
    assert_eq!((decoded.id(), buf.len()), (7, 0));
    drop(decoded);
    codec.release_dropped_contexts().unwrap();
    assert_eq!(codec.context_stats().live, 0, "no context left behind");
    assert_eq!(codec.plugin_stats().errors, 0);
}

#[test]
fn a_plugin_without_check_is_detected_by_a_trial_decode() {
    let mut codec = wasm("misbehave");
    let frame = bolt_request(9, 1000, b"C", &[("service", "s")], b"hello");
    // The SDK's default answers "not implemented" once; from then on only the decode runs.
    assert_eq!(codec.detect(&frame[..3]).unwrap(), Detect::NeedMore);
    let before = codec.plugin_stats().calls;
    assert_eq!(codec.detect(&frame[..20]).unwrap(), Detect::NeedMore);
    let after = codec.plugin_stats().calls;
    assert_eq!(
        after.decode,
        before.decode + 1,
        "one trial decode per detection"
    );
    // The one other call is the SDK's bytes-needed query after the need-more decode; a
    // second check call would make it two.
    assert_eq!(after.other, before.other + 1, "no second check call");
    assert_eq!(codec.detect(&frame).unwrap(), Detect::Match);
    assert_eq!(codec.detect(TLS).unwrap(), Detect::NoMatch);
    assert_eq!(codec.detect(HTTP).unwrap(), Detect::NoMatch);
    // The trial frame's context went back; the bytes are still decodable, whole.
    let mut buf = BytesMut::from(&frame[..]);
    let decoded = codec.decode(&mut buf).unwrap().expect("a frame");
    assert_eq!((decoded.id(), buf.len()), (9, 0));
    drop(decoded);
    codec.release_dropped_contexts().unwrap();
    assert_eq!(
        codec.context_stats().live,
        0,
        "the trial frame's context went back"
    );
}

#[test]
fn a_module_without_the_export_is_detected_by_a_trial_decode() {
    let mut codec = toy();
    // Toy frame: u16be total length, id, cmd, body.
    let frame = [0x00, 0x06, 0x07, 0x00, b'h', b'i'];
    assert_eq!(codec.detect(&frame[..1]).unwrap(), Detect::NeedMore);
    assert_eq!(codec.detect(&frame[..5]).unwrap(), Detect::NeedMore);
    assert_eq!(codec.detect(&frame).unwrap(), Detect::Match);
    // A declared length under the toy's minimum is a decode error: no match.
    assert_eq!(codec.detect(&[0x00, 0x02, 0x01]).unwrap(), Detect::NoMatch);
    assert_eq!(codec.detect(&[]).unwrap(), Detect::NeedMore);
    // The toy loops on command 1: the plugin's failure is an error (the host does not take
    // it as a verdict), and the codec, its instance replaced, detects on.
    let looping = [0x00, 0x04, 0x01, 0x01];
    assert!(matches!(
        codec.detect(&looping),
        Err(CodecError::CpuExhausted { .. })
    ));
    assert_eq!(codec.detect(&frame).unwrap(), Detect::Match);
    assert_eq!(codec.context_stats().replaced_instances, 1);
}

#[test]
fn the_native_bolt_codec_answers_from_protocol_check() {
    let mut codec = native_codec("bolt", &Limits::new()).expect("native bolt");
    let frame = bolt_request(3, 1000, b"C", &[("service", "s")], b"x");
    assert_eq!(codec.detect(&frame[..3]).unwrap(), Detect::NeedMore);
    assert_eq!(codec.detect(&frame[..4]).unwrap(), Detect::Match);
    assert_eq!(codec.detect(TLS).unwrap(), Detect::NoMatch);
    assert_eq!(codec.detect(HTTP).unwrap(), Detect::NoMatch);
}

//! A plugin that traps, loops or exhausts memory on request (`misbehave.wasm`, built from
//! protocols/misbehave): each failure is clean and the same codec keeps working.

mod common;

use bytes::BytesMut;
use codec_host::{Codec, CodecError, Limits, Plugin, WasmCodec};
use common::{bolt_request, config, plugin_wasm, with_bolt_id};

fn codec(limits: Limits) -> WasmCodec {
    let mut cfg = config("misbehave", plugin_wasm("misbehave"));
    cfg.limits = limits;
    Plugin::load(cfg)
        .expect("load misbehave.wasm")
        .new_codec()
        .expect("instance")
}

fn bad_request(what: &str) -> BytesMut {
    BytesMut::from(
        &bolt_request(
            66,
            1000,
            b"C",
            &[("service", "s"), ("misbehave", what)],
            b"x",
        )[..],
    )
}

/// Decodes and encodes a normal request on `codec`, and re-encodes `earlier` (a frame
/// decoded before the failure).
fn still_works(codec: &mut WasmCodec, earlier: &mut codec_host::Frame, earlier_bytes: &[u8]) {
    let good = bolt_request(5, 1000, b"C", &[("service", "s")], b"hello");
    let mut buf = BytesMut::from(&good[..]);
    let mut f = codec.decode(&mut buf).unwrap().expect("a frame");
    let mut out = BytesMut::new();
    codec.encode(&mut f, 500, &mut out).unwrap();
    assert_eq!(&out[..], &with_bolt_id(&good, 500)[..]);
    out.clear();
    codec.encode(earlier, 600, &mut out).unwrap();
    assert_eq!(&out[..], &with_bolt_id(earlier_bytes, 600)[..]);
}

fn decode_earlier(codec: &mut WasmCodec) -> (codec_host::Frame, Vec<u8>) {
    let bytes = bolt_request(1, 1000, b"C", &[("service", "s")], b"before");
    let mut buf = BytesMut::from(&bytes[..]);
    (codec.decode(&mut buf).unwrap().expect("a frame"), bytes)
}

#[test]
fn a_trap_reports_the_plugins_panic_text() {
    let mut c = codec(Limits::new());
    let (mut earlier, bytes) = decode_earlier(&mut c);
    match c.decode(&mut bad_request("trap")) {
        Err(CodecError::Trap { call, message }) => {
            assert_eq!(call, "proxy_decode_buffer_bytes");
            assert!(message.contains("misbehave: trap requested"), "{message}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    still_works(&mut c, &mut earlier, &bytes);
    assert_eq!(c.context_stats().replaced_instances, 1);
}

#[test]
fn an_endless_loop_is_stopped_by_the_cpu_budget() {
    let mut c = codec(Limits::new());
    let (mut earlier, bytes) = decode_earlier(&mut c);
    assert!(matches!(
        c.decode(&mut bad_request("loop")),
        Err(CodecError::CpuExhausted {
            call: "proxy_decode_buffer_bytes"
        })
    ));
    still_works(&mut c, &mut earlier, &bytes);
}

#[test]
fn memory_exhaustion_is_a_trap_at_the_cap() {
    let mut c = codec(Limits::from_vm_config_mem(Some(16)));
    let (mut earlier, bytes) = decode_earlier(&mut c);
    match c.decode(&mut bad_request("oom")) {
        Err(CodecError::Trap { message, .. }) => {
            assert!(message.contains("misbehave: out of memory"), "{message}");
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    still_works(&mut c, &mut earlier, &bytes);
}

#[test]
fn one_codec_survives_all_three_in_a_row() {
    let mut c = codec(Limits::from_vm_config_mem(Some(16)));
    let (mut earlier, bytes) = decode_earlier(&mut c);
    for what in ["trap", "loop", "oom", "trap"] {
        assert!(c.decode(&mut bad_request(what)).is_err(), "{what}");
        still_works(&mut c, &mut earlier, &bytes);
    }
    assert_eq!(c.context_stats().replaced_instances, 4);
}

#[test]
#[ignore = "timing probe, run by hand"]
fn probe_trap_and_restart_costs() {
    let mut c = codec(Limits::new());
    let _ = decode_earlier(&mut c);
    for _ in 0..5 {
        let t = std::time::Instant::now();
        let _ = c.decode(&mut bad_request("trap"));
        let trapped = t.elapsed();
        let t = std::time::Instant::now();
        let _ = decode_earlier(&mut c);
        eprintln!("trap {trapped:?}, restart+decode {:?}", t.elapsed());
    }
    let t = std::time::Instant::now();
    let _ = c.decode(&mut bad_request("loop"));
    eprintln!("loop {:?}", t.elapsed());
    for _ in 0..3 {
        let t = std::time::Instant::now();
        let _ = c.decode(&mut bad_request("oom"));
        let trapped = t.elapsed();
        let t = std::time::Instant::now();
        let _ = decode_earlier(&mut c);
        eprintln!("oom {trapped:?}, restart+decode {:?}", t.elapsed());
    }
}

#[test]
fn a_plugin_trapping_in_a_loop_is_restarted_within_its_budget_then_at_most_once_a_second() {
    let mut c = codec(Limits {
        max_restarts_per_minute: 3,
        ..Limits::new()
    });
    let (mut earlier, bytes) = decode_earlier(&mut c);
    for _ in 0..3 {
        assert!(matches!(
            c.decode(&mut bad_request("trap")),
            Err(CodecError::Trap { .. })
        ));
        // Each trap within the budget: the spare takes over at once.
        still_works(&mut c, &mut earlier, &bytes);
    }
    assert_eq!(c.context_stats().replaced_instances, 3);
    // The fourth trap spends the budget: the next calls (within a second) are refused,
    // not answered by yet another restart.
    assert!(c.decode(&mut bad_request("trap")).is_err());
    let good = bolt_request(5, 1000, b"C", &[("service", "s")], b"hello");
    match c.decode(&mut BytesMut::from(&good[..])) {
        Err(CodecError::Instance(m)) => assert!(m.contains("restarted 3 times"), "{m}"),
        other => panic!("expected a refusal, got {:?}", other.map(|f| f.is_some())),
    }
    assert_eq!(c.context_stats().replaced_instances, 3);
    assert!(c.context_stats().refused_calls >= 1);
    // A second later one more restart is allowed.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    still_works(&mut c, &mut earlier, &bytes);
    assert_eq!(c.context_stats().replaced_instances, 4);
}

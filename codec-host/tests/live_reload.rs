//! Live reload inside one codec ([`WasmCodec::switch_to`]) with the real plugins: frames
//! decoded before the switch are encoded on the instance that decoded them, frames after it
//! on the new plugin, and the old instance is deleted once its frames are gone. The plugins
//! tell themselves apart: `misbehave.wasm` traps on a request carrying `misbehave: trap`,
//! `bolt.wasm` passes it like any other header. Also the per-plugin counters
//! ([`WasmCodec::plugin_stats`]).

mod common;

use std::sync::Arc;

use bytes::BytesMut;
use codec_host::{Codec, CodecError, Frame, Plugin, WasmCodec};
use common::{bolt_request, load, plugin_wasm, with_bolt_id};

fn bolt() -> Arc<Plugin> {
    load("wasm-bolt", plugin_wasm("bolt"))
}

fn misbehave() -> Arc<Plugin> {
    load("wasm-bolt", plugin_wasm("misbehave"))
}

/// A request asking the misbehave plugin to trap (harmless to bolt).
fn trap_request(id: u32) -> Vec<u8> {
    bolt_request(
        id,
        1000,
        b"C",
        &[("service", "s"), ("misbehave", "trap")],
        b"x",
    )
}

fn decode_one(codec: &mut WasmCodec, bytes: &[u8]) -> Result<Frame, CodecError> {
    let mut buf = BytesMut::from(bytes);
    let frame = codec.decode(&mut buf)?.expect("a whole frame");
    assert!(buf.is_empty());
    Ok(frame)
}

fn encode(codec: &mut WasmCodec, frame: &mut Frame, id: u64) -> Vec<u8> {
    let mut out = BytesMut::new();
    codec.encode(frame, id, &mut out).expect("encode");
    out.to_vec()
}

#[test]
fn frames_in_flight_finish_on_the_instance_that_decoded_them() {
    let mut codec = bolt().new_codec().unwrap();
    let before = trap_request(1);
    let mut in_flight = decode_one(&mut codec, &before).expect("bolt decodes it");
    let dropped = decode_one(&mut codec, &trap_request(2)).unwrap();
    assert_eq!(codec.plugin_stats().instances, 2, "current and spare");

    let next = misbehave().new_codec().unwrap();
    let next_md5 = next.plugin().md5().to_owned();
    codec.switch_to(next);
    assert_eq!(codec.plugin().md5(), next_md5);
    let stats = codec.plugin_stats();
    assert_eq!((stats.instances, stats.retired_instances), (3, 1));

    // A new frame runs the new plugin: it traps on the header bolt let through.
    match decode_one(&mut codec, &trap_request(3)) {
        Err(CodecError::Trap { message, .. }) => assert!(message.contains("misbehave")),
        other => panic!("expected the new plugin to trap, got {other:?}"),
    }
    // The frame decoded before the switch is encoded on the old (bolt) instance: on the new
    // plugin its re-decode would trap.
    assert_eq!(
        encode(&mut codec, &mut in_flight, 77),
        with_bolt_id(&before, 77)
    );
    assert_eq!(codec.plugin_stats().retired_instances, 1, "one frame left");
    drop(dropped);
    codec.release_dropped_contexts().unwrap();
    let stats = codec.plugin_stats();
    assert_eq!(
        stats.retired_instances, 0,
        "the old instance is deleted once its last frame is gone"
    );
    // Current (replaced after the trap, from the spare) and a new spare.
    assert_eq!(stats.instances, 2);
    assert_eq!(stats.replaced_instances, 1);
    assert_eq!(stats.calls.traps, 1);
    // Encoded again (a retry) unchanged: the id-only path needs no guest (the decode extras
    // said where the id is), so the new plugin is not asked.
    assert_eq!(
        encode(&mut codec, &mut in_flight, 78),
        with_bolt_id(&before, 78)
    );
    // Encoded again with an edited header: the context went back after the first encode, so
    // the frame is re-decoded, now on the new plugin, which traps on it.
    in_flight.headers_mut().insert("x-retry", "1");
    let mut out = BytesMut::new();
    assert!(matches!(
        codec.encode(&mut in_flight, 78, &mut out),
        Err(CodecError::Trap { .. })
    ));
    assert_eq!(
        codec.plugin_stats().errors,
        2,
        "the trapped decode and encode"
    );
}

#[test]
fn a_codec_with_nothing_in_flight_drops_its_old_instance_at_once() {
    let mut codec = bolt().new_codec().unwrap();
    let good = bolt_request(9, 1000, b"C", &[("service", "s")], b"hi");
    let mut f = decode_one(&mut codec, &good).unwrap();
    encode(&mut codec, &mut f, 10);
    drop(f);
    codec.switch_to(bolt().new_codec().unwrap());
    let stats = codec.plugin_stats();
    assert_eq!((stats.instances, stats.retired_instances), (2, 0));
    // Still serves, on the new instances.
    let mut f = decode_one(&mut codec, &good).unwrap();
    assert_eq!(encode(&mut codec, &mut f, 11), with_bolt_id(&good, 11));
}

#[test]
fn guest_calls_are_counted_by_kind_and_memory_is_reported() {
    let mut codec = bolt().new_codec().unwrap();
    let start = codec.plugin_stats();
    assert_eq!((start.calls.decode, start.calls.encode), (0, 0));
    assert!(start.calls.other >= 8, "two start-ups of four calls each");
    assert!(start.memory_bytes >= 2 * 64 * 1024, "two instances' memory");
    let good = bolt_request(9, 1000, b"C", &[("service", "s")], b"hi");
    for i in 0..100 {
        let mut f = decode_one(&mut codec, &good).unwrap();
        encode(&mut codec, &mut f, 100 + i);
    }
    let stats = codec.plugin_stats();
    // Unchanged frames are forwarded by the host (the plugin's id-field export): no encode
    // call, one id-field call each.
    assert_eq!((stats.calls.decode, stats.calls.encode), (100, 0));
    assert!(stats.calls.timed >= 200 / codec_host::TIME_EVERY);
    assert!(stats.calls.mean_ns().is_some_and(|ns| ns > 0));
    assert_eq!((stats.errors, stats.calls.traps), (0, 0));
    let reloaded = codec.plugin().reload().expect("the same file loads again");
    assert_eq!(reloaded.md5(), codec.plugin().md5());
    assert_eq!(reloaded.path(), codec.plugin().path());
    assert_eq!(reloaded.abi_version(), "proxy_abi_mosn_version_0_2_0");
    codec.switch_to(reloaded.new_codec().unwrap());
    assert!(
        codec.plugin_stats().calls.decode >= 100,
        "counters carry over a switch"
    );
}

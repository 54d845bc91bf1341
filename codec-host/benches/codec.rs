//! Decode + encode (id rewritten) of one captured request, native codec vs Wasm plugin, side
//! by side, for each protocol: a 362-byte Bolt request (sofa-rpc-node), a 240-byte Dubbo
//! request and an 80 KB Dubbo request whose arguments the plugin skips value by value
//! (Apache Dubbo 3.3.6). Each iteration: the frame arrives in the connection buffer, is
//! decoded (a fresh plugin context), encoded with a new id, and dropped (its context is
//! deleted at the next call, which is inside the next iteration).
//!
//! `cargo bench -p codec-host --bench codec` (needs `make plugins` for bolt.wasm, dubbo.wasm).

use std::path::Path;
use std::time::Duration;

use bolt::Bolt;
use bytes::BytesMut;
use codec_host::{Codec, Limits, NativeCodec, Plugin, PluginConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use dubbo::Dubbo;

/// One benchmarked frame: group name, plugin, protocol name, captured frame.
struct Case {
    group: &'static str,
    plugin: &'static str,
    protocol: &'static str,
    frame: &'static str,
    native: fn() -> Box<dyn Codec>,
}

const CASES: [Case; 3] = [
    Case {
        group: "decode+encode request-echo 362B",
        plugin: "bolt",
        protocol: "x-bolt",
        frame: "protocols/bolt/testdata/sofa-rpc-node-hessian4/request-echo.bin",
        native: || Box::new(NativeCodec::new(Bolt::default())),
    },
    Case {
        group: "dubbo decode+encode request-echo 240B",
        plugin: "dubbo",
        protocol: "dubbo",
        frame: "protocols/dubbo/testdata/dubbo-3.3.6-hessian2/request-echo.bin",
        native: || Box::new(NativeCodec::new(Dubbo::default())),
    },
    Case {
        group: "dubbo decode+encode request-mixed 80668B",
        plugin: "dubbo",
        protocol: "dubbo",
        frame: "protocols/dubbo/testdata/dubbo-3.3.6-hessian2/request-mixed.bin",
        native: || Box::new(NativeCodec::new(Dubbo::default())),
    },
];

fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn wasm_codec(name: &str, protocol: &str) -> Box<dyn Codec> {
    let path = workspace().join(format!("target/wasm32-wasip1/plugin/{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run `make plugins`",
        path.display()
    );
    let plugin = Plugin::load(PluginConfig {
        name: name.into(),
        wasm_path: path,
        vm_config: Vec::new(),
        plugin_config: vec![("protocol".into(), protocol.into())],
        root_id: 1,
        limits: Limits::new(),
    })
    .unwrap_or_else(|e| panic!("load {name}.wasm: {e}"));
    Box::new(plugin.new_codec().expect("instance"))
}

/// One decode + encode round; returns the encoded length so nothing is optimised away.
fn round(
    codec: &mut dyn Codec,
    frame: &[u8],
    buf: &mut BytesMut,
    out: &mut BytesMut,
    id: u64,
) -> usize {
    buf.extend_from_slice(frame);
    let mut f = codec.decode(buf).expect("decode").expect("whole frame");
    out.clear();
    codec.encode(&mut f, id, out).expect("encode");
    out.len()
}

fn bench(c: &mut Criterion) {
    for case in &CASES {
        let frame = std::fs::read(workspace().join(case.frame)).expect("test frame");
        let mut group = c.benchmark_group(case.group);
        group.throughput(Throughput::Elements(1));
        group.measurement_time(Duration::from_secs(5));
        let mut codecs: Vec<(&str, Box<dyn Codec>)> = vec![
            ("native", (case.native)()),
            ("wasm", wasm_codec(case.plugin, case.protocol)),
        ];
        for (name, codec) in &mut codecs {
            let mut buf = BytesMut::with_capacity(frame.len() * 2);
            let mut out = BytesMut::with_capacity(frame.len() * 2);
            let mut id = 0u64;
            group.bench_function(*name, |b| {
                b.iter(|| {
                    id = (id + 1) & 0xffff_ffff;
                    round(codec.as_mut(), &frame, &mut buf, &mut out, id)
                })
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

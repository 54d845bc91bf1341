//! Decode + encode (id rewritten) of one 362-byte Bolt request, native codec vs Wasm plugin,
//! side by side. Each iteration: the frame arrives in the connection buffer, is decoded (a
//! fresh plugin context), encoded with a new id, and dropped (its context is deleted at the
//! next call, which is inside the next iteration).
//!
//! `cargo bench -p codec-host --bench codec` (needs `make plugins` for bolt.wasm).

use std::path::Path;
use std::time::Duration;

use bolt::Bolt;
use bytes::BytesMut;
use codec_host::{Codec, Limits, NativeCodec, Plugin, PluginConfig};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

const FRAME: &str = "protocols/bolt/testdata/sofa-rpc-node-hessian4/request-echo.bin";

fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn wasm_codec() -> impl Codec {
    let path = workspace().join("target/wasm32-wasip1/plugin/bolt.wasm");
    assert!(
        path.exists(),
        "{} is missing: run `make plugins`",
        path.display()
    );
    let plugin = Plugin::load(PluginConfig {
        name: "bolt".into(),
        wasm_path: path,
        vm_config: Vec::new(),
        plugin_config: vec![("protocol".into(), "x-bolt".into())],
        root_id: 1,
        limits: Limits::new(),
    })
    .expect("load bolt.wasm");
    plugin.new_codec().expect("instance")
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
    let frame = std::fs::read(workspace().join(FRAME)).expect("test frame");
    let mut group = c.benchmark_group("decode+encode request-echo 362B");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    let mut codecs: Vec<(&str, Box<dyn Codec>)> = vec![
        ("native", Box::new(NativeCodec::new(Bolt::default()))),
        ("wasm", Box::new(wasm_codec())),
    ];
    for (name, codec) in &mut codecs {
        let mut buf = BytesMut::with_capacity(4096);
        let mut out = BytesMut::with_capacity(4096);
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

criterion_group!(benches, bench);
criterion_main!(benches);

//! What recording one request costs the request path: the counters and histograms a
//! forwarded request touches on its worker's shard (request total/active, outcome, response
//! status, the downstream and upstream durations with their clock reads), measured alone.

use std::hint::black_box;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use sidecar::stats::{HostStats, Stats, StatsLayout};

fn recording(c: &mut Criterion) {
    let stats = Stats::new(StatsLayout {
        listeners: vec!["egress".into()],
        clusters: vec![("app".into(), vec!["127.0.0.1:1".into()])],
        workers: 2,
    });
    let shard = stats.worker(0);
    let listener = &shard.listeners[0];
    let cluster = shard.clusters[0].clone();
    let host = HostStats::new(cluster.clone(), 0);
    c.bench_function("stats: one forwarded request recorded", |b| {
        b.iter(|| {
            let started = Instant::now();
            listener.counters.request_total.inc();
            listener.counters.request_active.inc();
            host.request_total.inc();
            let sent = Instant::now();
            host.response_received.inc();
            cluster.upstream_duration.observe(black_box(sent.elapsed()));
            listener.response_status.record(black_box(0));
            listener.counters.response_forwarded.inc();
            listener.counters.request_active.dec();
            listener
                .request_duration
                .observe(black_box(started.elapsed()));
        })
    });
    c.bench_function("stats: clock read (Instant::now)", |b| {
        b.iter(|| black_box(Instant::now()))
    });
}

criterion_group!(benches, recording);
criterion_main!(benches);

//! Access log records through formats, the channel's drop rule and the writer thread.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use codec_host::{Frame, FrameKind, FrameParts, HeaderMap};
use serde_json::{json, Value};

use super::*;
use crate::config::{Config, LoadContext};
use crate::failure::{Failure, RejectReason, Rejection};

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!(
            "sidecar-access-log-{name}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A one-listener config (native codec) whose listener has `access_logs`.
fn config(access_logs: Value, dir: &Path) -> Config {
    let v = json!({
        "servers": [{
            "default_log_path": "stdout",
            "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "h", "domains": ["*"],
                "routers": [{"match": {"headers": [{"name": "service", "value": ".*"}]},
                             "route": {"cluster_name": "appCluster"}}]}]}],
            "listeners": [{"name": "egress", "address": "127.0.0.1:2045", "bind_port": true,
                "access_logs": access_logs,
                "filter_chains": [{"filters": [{"type": "proxy", "config": {
                    "downstream_protocol": "X", "router_config_name": "r",
                    "extend_config": {"sub_protocol": "x-bolt"}}}]}]}]
        }],
        "cluster_manager": {"clusters": [{"name": "appCluster", "type": "SIMPLE",
            "lb_type": "LB_RANDOM", "hosts": [{"address": "127.0.0.1:12199"}]}]},
        "third_part_codec": {"codecs": [
            {"type": "native", "enable": true, "config": {"protocol": "x-bolt", "codec": "bolt"}}
        ]}
    });
    let ctx = LoadContext {
        work_dir: dir.to_path_buf(),
        config_path: None,
        cpu_count: 1,
    };
    Config::from_value(&v, &ctx).expect("valid config")
}

fn frame(kind: FrameKind, status: u32, headers: &[(&str, &str)], len: usize) -> Frame {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.push(k.as_bytes(), v.as_bytes());
    }
    Frame::new(FrameParts {
        kind,
        id: 7,
        timeout_or_status: status,
        headers: map,
        header_section: Bytes::new(),
        raw: Bytes::from(vec![0u8; len]),
        payload: Bytes::new(),
        state: Box::new(()),
    })
}

const CLIENT: &str = "10.0.0.9:50123";
const LOCAL: &str = "127.0.0.1:2045";
const HOST: &str = "127.0.0.1:12199";
const UP_LOCAL: &str = "127.0.0.1:40001";

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("address")
}

/// Renders `record` with log `i` of listener 0.
fn line(logs: &AccessLogs, i: usize, record: &Record) -> String {
    let names = Names {
        protocol: &logs.listeners[0].protocol,
        clusters: &logs.clusters,
    };
    let mut out = Vec::new();
    format::render(
        &logs.logs[i].compiled,
        &names,
        record,
        &mut out,
        &mut format::Scratch::default(),
    );
    String::from_utf8(out).expect("utf-8")
}

fn request(logs: &AccessLogs, headers: &[(&str, &str)]) -> Box<Record> {
    let req = frame(FrameKind::Request, 3000, headers, 120);
    logs.begin(
        0,
        Some(addr(LOCAL)),
        addr(CLIENT),
        &req,
        std::time::Instant::now(),
    )
    .expect("the listener logs")
}

#[test]
fn a_forwarded_request_fills_every_variable() {
    let dir = TempDir::new("forwarded");
    let format = "%start_time%|%request_received_duration%|%response_received_duration%|\
        %request_finished_duration%|%duration%|%bytes_sent%|%bytes_received%|%protocol%|\
        %response_code%|%response_flag%|%response_flags%|%upstream_local_address%|\
        %downstream_local_address%|%downstream_remote_address%|%upstream_host%|\
        %upstream_cluster%|%upstream_transport_failure_reason%|%request_header_service%|\
        %request_header_sofa_head_method_name%|%request_header_sofa_trace_id%|\
        %request_header_absent%|%response_header_rpc_trace_context%";
    let cfg = config(json!([{"log_path": "a.log", "log_format": format}]), &dir.0);
    let logs = AccessLogs::new(&cfg, 8);
    let record = request(
        &logs,
        &[
            ("service", "com.alipay.test.TestService:1.0"),
            ("sofa_head_method_name", "echo"),
            ("sofa_trace_id", "0a0fe8a81700000000001"),
        ],
    );
    let note = logs.note(Some(&record));
    note.routed(0);
    note.upstream(addr(HOST), Some(addr(UP_LOCAL)));
    note.sent();
    note.response(&frame(
        FrameKind::Response,
        0,
        &[("rpc_trace_context", "ctx-1")],
        80,
    ));
    note.forwarded(80);
    record.close();
    let text = line(&logs, 0, &record);
    assert!(
        text.ends_with('\n') && text.lines().count() == 1,
        "{text:?}"
    );
    let f: Vec<&str> = text.trim_end().split('|').collect();
    assert_eq!(f.len(), 22, "{text}");
    // 2024/05/01 12:00:00.000
    assert_eq!(f[0].len(), 23, "{}", f[0]);
    assert_eq!(&f[0][4..5], "/");
    for d in &f[1..5] {
        assert!(
            d.ends_with('s') && *d != NOT_FOUND,
            "a Go duration, got {d:?}"
        );
    }
    assert_eq!(
        &f[5..],
        [
            "80",
            "120",
            "x-bolt",
            "0",
            NOT_FOUND,
            NOT_FOUND,
            UP_LOCAL,
            LOCAL,
            CLIENT,
            HOST,
            "appCluster",
            NOT_FOUND,
            "com.alipay.test.TestService:1.0",
            "echo",
            "0a0fe8a81700000000001",
            NOT_FOUND,
            "ctx-1"
        ]
    );
}

#[test]
fn hijacks_timeouts_and_resets_have_their_codes_and_flags() {
    let dir = TempDir::new("hijack");
    let cfg = config(
        json!([{"log_path": "a.log", "log_format":
            "%response_code% %response_flag% %upstream_host% %bytes_sent% %request_received_duration% %upstream_transport_failure_reason%"}]),
        &dir.0,
    );
    let logs = AccessLogs::new(&cfg, 8);

    let no_route = request(&logs, &[]);
    logs.note(Some(&no_route)).hijacked(Failure::NoRoute, 30);
    no_route.close();
    assert_eq!(
        line(&logs, 0, &no_route),
        "404 NoRouteFound - 30 - no route\n"
    );

    let timeout = request(&logs, &[("service", "s")]);
    let note = logs.note(Some(&timeout));
    note.routed(0);
    note.upstream(addr(HOST), None);
    note.sent();
    note.hijacked(Failure::Timeout, 31);
    timeout.close();
    let text = line(&logs, 0, &timeout);
    assert!(
        text.starts_with(&format!("504 UpstreamRequestTimeout {HOST} 31 ")),
        "{text}"
    );
    assert!(text.ends_with(" timeout\n"), "{text}");

    let limited = request(&logs, &[]);
    logs.note(Some(&limited)).hijacked(
        Failure::Rejected(Rejection {
            status: 509,
            reason: RejectReason::RateLimited,
        }),
        30,
    );
    limited.close();
    assert!(line(&logs, 0, &limited).starts_with("509 RateLimited "));

    // The client went away: nothing was answered.
    let reset = request(&logs, &[]);
    reset.close();
    assert_eq!(
        line(&logs, 0, &reset),
        "- DownStreamTermination - 0 - downstream closed\n"
    );

    // A hijack that could not be built: the failure's flag, no bytes.
    let unbuilt = request(&logs, &[]);
    logs.note(Some(&unbuilt)).failing(Failure::NoHealthyHost);
    unbuilt.close();
    assert!(line(&logs, 0, &unbuilt).starts_with("502 NoHealthyUpstream - 0 "));

    let oneway = request(&logs, &[]);
    logs.note(Some(&oneway)).oneway();
    oneway.close();
    assert!(line(&logs, 0, &oneway).starts_with("- - "));
}

#[test]
fn the_default_format_is_mosns() {
    let dir = TempDir::new("default");
    let cfg = config(json!([{"log_path": "a.log"}]), &dir.0);
    let logs = AccessLogs::new(&cfg, 8);
    let r = request(&logs, &[]);
    logs.note(Some(&r)).hijacked(Failure::NoRoute, 30);
    r.close();
    let text = line(&logs, 0, &r);
    let f: Vec<&str> = text.trim_end().split(' ').collect();
    // date and time are two words
    assert_eq!(f.len(), 15, "{text}");
    assert_eq!(
        &f[4..],
        [
            "30",
            "120",
            "x-bolt",
            "404",
            f[8],
            "NoRouteFound",
            "404",
            NOT_FOUND,
            LOCAL,
            CLIENT,
            NOT_FOUND
        ]
    );
}

#[test]
fn json_lines_escape_values_and_type_numbers() {
    let dir = TempDir::new("json");
    let cfg = config(
        json!([{"log_path": "a.log", "log_encoding": "json", "log_format":
            "%bytes_received% %response_code% %upstream_host% %request_header_service% %request_header_odd% %protocol%"}]),
        &dir.0,
    );
    let logs = AccessLogs::new(&cfg, 8);
    let odd = "q\"uote \\ back\nnew\ttab \u{1} ctl é 漢";
    let r = request(&logs, &[("service", "svc"), ("odd", odd)]);
    logs.note(Some(&r)).hijacked(Failure::Timeout, 10);
    r.close();
    let text = line(&logs, 0, &r);
    assert_eq!(text.matches('\n').count(), 1, "one line: {text:?}");
    let v: Value = serde_json::from_str(&text).expect("a JSON object");
    assert_eq!(
        v,
        json!({
            "bytes_received": 120,
            "response_code": 504,
            "upstream_host": null,
            "request_header_service": "svc",
            "request_header_odd": odd,
            "protocol": "x-bolt",
        })
    );
}

#[test]
fn a_full_channel_drops_and_counts_without_waiting() {
    let dir = TempDir::new("full");
    let cfg = config(
        json!([{"log_path": "a.log"}, {"log_path": "b.log", "log_encoding": "json"}]),
        &dir.0,
    );
    let logs = Arc::new(AccessLogs::new(&cfg, 2));
    for _ in 0..5 {
        let r = request(&logs, &[]);
        logs.submit(r);
    }
    let c = logs.counters(0).expect("counters");
    // Two records fit; three are dropped, once per log of the listener.
    assert_eq!(c.lines_dropped.load(Ordering::Relaxed), 6);
    let writer = logs.start().expect("writer starts");
    writer.stop();
    assert_eq!(c.lines_written.load(Ordering::Relaxed), 4);
    let a = std::fs::read_to_string(dir.0.join("a.log")).expect("a.log");
    let b = std::fs::read_to_string(dir.0.join("b.log")).expect("b.log");
    assert_eq!((a.lines().count(), b.lines().count()), (2, 2));
    let stats = c.to_json();
    assert_eq!(stats["lines_dropped"], 6);
    assert_eq!(stats["write_errors"], 0);
}

/// Polls `cond` every 10 ms for up to 10 s.
fn eventually(what: &str, cond: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn reopen_moves_new_lines_to_a_new_file() {
    let dir = TempDir::new("reopen");
    let cfg = config(json!([{"log_path": "logs/access.log"}]), &dir.0);
    let logs = Arc::new(AccessLogs::new(&cfg, 64));
    let writer = logs.start().expect("writer starts");
    let c = logs.counters(0).expect("counters").clone();
    let path = dir.0.join("logs/access.log");
    let rotated = dir.0.join("logs/access.log.1");
    logs.submit(request(&logs, &[]));
    eventually("the first line", || {
        std::fs::read_to_string(&path).is_ok_and(|s| s.lines().count() == 1)
    });
    std::fs::rename(&path, &rotated).expect("rename");
    logs.reopen();
    eventually("the reopen", || c.reopens.load(Ordering::Relaxed) == 1);
    logs.submit(request(&logs, &[]));
    logs.submit(request(&logs, &[]));
    writer.stop();
    let old = std::fs::read_to_string(&rotated).expect("rotated");
    let new = std::fs::read_to_string(&path).expect("new file");
    assert_eq!((old.lines().count(), new.lines().count()), (1, 2));
    assert_eq!(c.lines_written.load(Ordering::Relaxed), 3);
}

#[test]
fn a_listener_without_access_logs_records_nothing() {
    let dir = TempDir::new("none");
    let cfg = config(json!([]), &dir.0);
    let logs = Arc::new(AccessLogs::new(&cfg, 8));
    let req = frame(FrameKind::Request, 0, &[], 10);
    assert!(logs
        .begin(0, None, addr(CLIENT), &req, std::time::Instant::now())
        .is_none());
    assert!(logs.stats_sources().is_empty());
    logs.start().expect("nothing to start").stop();
}

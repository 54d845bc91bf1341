//! The proxy-wasm filter host against the real filter modules built from `filters/` (`make
//! filters`: the Rust `proxy-wasm` crate, a Go-built module and a 0.1.0 module) and a few
//! module texts for what no SDK would build.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use codec_host::filter::{
    AbiVersion, Action, FilterError, FilterInstance, FilterPlugin, FilterPluginConfig, MetricKind,
    StreamEvent, StreamInfo,
};
use codec_host::{HeaderMap, Limits, LoadError};

fn module(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/filters/wasm")
        .join(format!("{name}.wasm"));
    assert!(p.exists(), "{} missing: run `make filters`", p.display());
    p
}

fn config(name: &str, path: PathBuf, plugin_config: &str) -> FilterPluginConfig {
    FilterPluginConfig {
        name: name.into(),
        wasm_path: path,
        md5: None,
        root_id: 1,
        vm_id: String::new(),
        vm_config: Vec::new(),
        plugin_config: plugin_config.as_bytes().to_vec(),
        limits: Limits::new(),
    }
}

fn load(name: &str, plugin_config: &str) -> FilterPlugin {
    FilterPlugin::load(config(name, module(name), plugin_config)).expect("loads")
}

fn info() -> StreamInfo {
    StreamInfo {
        protocol: "bolt".into(),
        listener: "l".into(),
        cluster: "c".into(),
        source: Some("127.0.0.1:5000".parse().unwrap()),
        destination: Some("127.0.0.1:2045".parse().unwrap()),
        request_id: 7,
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.push(*k, *v);
    }
    h
}

fn wat_module(text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("filter-wat-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{:x}.wat", fastrand::u64(..)));
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn a_rust_filter_adds_a_request_header_and_a_response_header() {
    let plugin = load("filter_add_header", r#"{"name":"x-added","value":"yes"}"#);
    assert_eq!(plugin.abi(), AbiVersion::V0_2_1);
    let mut f = plugin.new_instance(None).unwrap();
    let ctx = f.create_stream(info()).unwrap();
    let mut req = headers(&[("service", "com.a.B:1.0")]);
    let out = f.request_headers(ctx, &mut req, true).unwrap();
    assert_eq!(out.action, Action::Continue);
    assert!(out.headers_changed);
    assert_eq!(req.get_str("x-added"), Some("yes"));
    assert_eq!(req.get_str("service"), Some("com.a.B:1.0"), "kept");
    let mut resp = headers(&[]);
    let out = f
        .response_headers(ctx, &mut req, &mut resp, true, None)
        .unwrap();
    assert!(out.headers_changed);
    assert_eq!(resp.get_str("x-filter-seen"), Some("1"));
    assert_eq!(f.live_streams(), 1);
    f.finish_stream(ctx).unwrap();
    assert_eq!(f.live_streams(), 0);
}

#[test]
fn a_filter_that_does_not_change_headers_leaves_them_unchanged() {
    let plugin = load("filter_noop", "");
    let mut f = plugin.new_instance(None).unwrap();
    let ctx = f.create_stream(info()).unwrap();
    let mut req = headers(&[("service", "s")]);
    let before = f.guest_calls();
    let out = f.request_headers(ctx, &mut req, true).unwrap();
    assert_eq!(f.guest_calls(), before + 1, "one guest call for the phase");
    assert!(!out.headers_changed);
    assert_eq!(req, headers(&[("service", "s")]));
}

#[test]
fn a_deny_filter_answers_with_a_local_response() {
    let plugin = load(
        "filter_deny",
        r#"{"header":"x-deny","value":"yes","status":403}"#,
    );
    let mut f = plugin.new_instance(None).unwrap();
    let ctx = f.create_stream(info()).unwrap();
    let out = f
        .request_headers(ctx, &mut headers(&[("x-deny", "yes")]), true)
        .unwrap();
    let local = out.local_response.expect("denied");
    assert_eq!(local.status, 403);
    assert_eq!(out.action, Action::Pause);
    let ctx2 = f.create_stream(info()).unwrap();
    let out = f
        .request_headers(ctx2, &mut headers(&[("x-deny", "no")]), true)
        .unwrap();
    assert_eq!(out.local_response, None);
    assert_eq!(out.action, Action::Continue);
}

#[test]
fn shared_data_and_metrics_count_calls_across_instances_on_two_threads() {
    let plugin = Arc::new(load("filter_count", r#"{"key":"calls"}"#));
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let plugin = plugin.clone();
            std::thread::spawn(move || {
                let mut f = plugin.new_instance(None).unwrap();
                for _ in 0..300 {
                    let ctx = f.create_stream(info()).unwrap();
                    let mut h = headers(&[]);
                    f.request_headers(ctx, &mut h, true).unwrap();
                    assert!(h.get_str("x-call-count").is_some());
                    f.finish_stream(ctx).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let metrics = plugin.shared().metrics().snapshot();
    let calls = metrics
        .iter()
        .find(|m| m.name == "filter_count_calls")
        .expect("the counter");
    assert_eq!(calls.kind, MetricKind::Counter);
    assert_eq!(calls.value, 600);
    let last = metrics
        .iter()
        .find(|m| m.name == "filter_count_last")
        .expect("the gauge");
    // The first write of a missing key is unconditional (CAS 0), so two first calls racing
    // may both write 1; every later write is checked.
    assert!(last.value >= 599, "{last:?}");
}

#[test]
fn a_paused_request_is_continued_from_the_tick() {
    let plugin = load("filter_pause", r#"{"tick_ms":20}"#);
    let mut f = plugin.new_instance(None).unwrap();
    assert_eq!(f.tick_period(), Duration::from_millis(20));
    let a = f.create_stream(info()).unwrap();
    let b = f.create_stream(info()).unwrap();
    for ctx in [a, b] {
        let mut h = headers(&[]);
        let out = f.request_headers(ctx, &mut h, true).unwrap();
        assert_eq!(out.action, Action::Pause);
        assert_eq!(h.get_str("x-paused"), Some("1"));
    }
    assert!(f.take_events().is_empty());
    f.tick().unwrap();
    let events = f.take_events();
    assert_eq!(
        events,
        vec![
            StreamEvent::Continue { context: a },
            StreamEvent::Continue { context: b }
        ]
    );
}

#[test]
fn a_trap_a_loop_and_a_memory_bomb_fail_their_call_and_poison_only_that_instance() {
    for (mode, cpu) in [("trap", false), ("loop", true), ("oom", false)] {
        let plugin = FilterPlugin::load(FilterPluginConfig {
            limits: Limits {
                memory_mib: 16,
                cpu_points_per_call: 20_000_000,
                ..Limits::new()
            },
            ..config(
                "filter_misbehave",
                module("filter_misbehave"),
                &format!(r#"{{"mode":"{mode}"}}"#),
            )
        })
        .unwrap();
        let mut f = plugin.new_instance(None).unwrap();
        let fine = f.create_stream(info()).unwrap();
        assert_eq!(
            f.request_headers(fine, &mut headers(&[]), true)
                .unwrap()
                .action,
            Action::Continue,
            "{mode}: calls without the header pass"
        );
        let bad = f.create_stream(info()).unwrap();
        let err = f
            .request_headers(bad, &mut headers(&[("x-misbehave", "1")]), true)
            .expect_err(mode);
        match (&err, cpu) {
            (FilterError::CpuExhausted { .. }, true) | (FilterError::Trap { .. }, false) => {}
            _ => panic!("{mode}: {err:?}"),
        }
        assert!(f.is_poisoned());
        assert_eq!(
            f.request_headers(fine, &mut headers(&[]), true),
            Err(FilterError::Poisoned)
        );
        // A fresh instance of the same plugin works.
        let mut g: FilterInstance = plugin.new_instance(None).unwrap();
        let ctx = g.create_stream(info()).unwrap();
        assert!(g.request_headers(ctx, &mut headers(&[]), true).is_ok());
    }
}

#[test]
fn a_module_importing_an_unknown_hostcall_is_refused_at_load_with_its_name() {
    let err = FilterPlugin::load(config("bad", module("filter_unknown_import"), "")).unwrap_err();
    assert!(
        matches!(&err, LoadError::UnknownImport { name, .. } if name == "proxy_no_such_hostcall"),
        "{err}"
    );
    assert!(
        err.to_string().contains("env.proxy_no_such_hostcall"),
        "{err}"
    );
}

#[test]
fn an_abi_0_1_0_filter_runs_with_two_argument_header_callbacks() {
    let plugin = load("filter_abi010", "");
    assert_eq!(plugin.abi(), AbiVersion::V0_1_0);
    let mut f = plugin.new_instance(None).unwrap();
    let ctx = f.create_stream(info()).unwrap();
    let mut h = headers(&[]);
    f.request_headers(ctx, &mut h, true).unwrap();
    assert_eq!(h.get_str("x-abi"), Some("0.1.0"));
    f.finish_stream(ctx).unwrap();
}

#[test]
fn a_go_built_filter_adds_its_header() {
    let plugin = load("go_add_header", "");
    let mut f = plugin.new_instance(None).unwrap();
    for _ in 0..50 {
        let ctx = f.create_stream(info()).unwrap();
        let mut h = headers(&[("service", "s")]);
        f.request_headers(ctx, &mut h, true).unwrap();
        assert_eq!(h.get_str("x-go-filter"), Some("1"));
        f.finish_stream(ctx).unwrap();
    }
}

#[test]
fn an_unknown_abi_version_is_a_load_error_naming_what_it_exports() {
    let path = wat_module(
        r#"(module
            (memory (export "memory") 1)
            (func (export "proxy_abi_version_0_3_0"))
            (func (export "proxy_on_memory_allocate") (param i32) (result i32) i32.const 0)
            (func (export "proxy_on_context_create") (param i32 i32)))"#,
    );
    let err = FilterPlugin::load(config("future", path, "")).unwrap_err();
    assert!(matches!(err, LoadError::FilterAbi { .. }), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("proxy_abi_version_0_3_0"), "{msg}");
    assert!(msg.contains("proxy_abi_version_0_2_1"), "{msg}");
}

#[test]
fn properties_body_and_callbacks_a_module_does_not_export() {
    // A 0.2.1 module with only request headers: reads `request.id` and the body length.
    let path = wat_module(
        r#"(module
            (import "env" "proxy_get_property" (func $prop (param i32 i32 i32 i32) (result i32)))
            (import "env" "proxy_add_header_map_value" (func $add (param i32 i32 i32 i32 i32) (result i32)))
            (memory (export "memory") 1)
            (data (i32.const 100) "request\00id")
            (data (i32.const 120) "x-id")
            (global $heap (mut i32) (i32.const 1024))
            (func (export "proxy_abi_version_0_2_1"))
            (func (export "proxy_on_memory_allocate") (param $n i32) (result i32)
                (local $p i32)
                global.get $heap
                local.set $p
                global.get $heap
                local.get $n
                i32.add
                global.set $heap
                local.get $p)
            (func (export "proxy_on_context_create") (param i32 i32))
            (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
                ;; value pointer at 200, length at 204
                (drop (call $prop (i32.const 100) (i32.const 10) (i32.const 200) (i32.const 204)))
                (drop (call $add (i32.const 0) (i32.const 120) (i32.const 4)
                    (i32.load (i32.const 200)) (i32.load (i32.const 204))))
                i32.const 0))"#,
    );
    let plugin = FilterPlugin::load(config("props", path, "")).unwrap();
    let mut f = plugin.new_instance(None).unwrap();
    let ctx = f.create_stream(info()).unwrap();
    let mut h = headers(&[]);
    f.request_headers(ctx, &mut h, true).unwrap();
    assert_eq!(h.get_str("x-id"), Some("7"), "request.id");
    let calls = f.guest_calls();
    // No body, response or finish callbacks exported: none called.
    f.request_body(ctx, &Bytes::from_static(b"content"))
        .unwrap();
    f.response_headers(ctx, &mut h, &mut headers(&[]), true, None)
        .unwrap();
    f.finish_stream(ctx).unwrap();
    assert_eq!(f.guest_calls(), calls);
}

#[test]
fn a_shared_queue_carries_calls_from_another_thread_to_the_last_registrant() {
    use std::sync::Mutex;
    let plugin = Arc::new(load("filter_queue", ""));
    // An instance on another thread (another worker) registers the queue and enqueues five
    // calls; nobody is woken yet (it registered without a waker).
    let other = plugin.clone();
    std::thread::spawn(move || {
        let mut f = other.new_instance(None).unwrap();
        for i in 0..5 {
            let ctx = f.create_stream(info()).unwrap();
            let mut h = headers(&[("service", &format!("svc-{i}"))]);
            f.request_headers(ctx, &mut h, true).unwrap();
            f.finish_stream(ctx).unwrap();
        }
    })
    .join()
    .unwrap();
    // This instance registers last, with a waker (the sidecar's schedules
    // `proxy_on_queue_ready` on the registrant's worker): it owns the queue now.
    let woken = Arc::new(Mutex::new(Vec::new()));
    let w = woken.clone();
    let mut owner = plugin
        .new_instance(Some(Arc::new(move |id| w.lock().unwrap().push(id))))
        .unwrap();
    let ctx = owner.create_stream(info()).unwrap();
    owner
        .request_headers(ctx, &mut headers(&[("service", "svc-5")]), true)
        .unwrap();
    let ids = woken.lock().unwrap().clone();
    assert_eq!(ids.len(), 1, "one wake-up per enqueue, for the registrant");
    owner.queue_ready(ids[0]).unwrap();
    let dequeued = plugin
        .shared()
        .metrics()
        .snapshot()
        .into_iter()
        .find(|m| m.name == "filter_queue_dequeued")
        .expect("the gauge");
    assert_eq!(dequeued.value, 6, "five from the other thread and one here");
}

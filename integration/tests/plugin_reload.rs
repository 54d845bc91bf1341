//! Live plugin reload through the real `sidecar` binary, driven by SIGHUP: a reload under
//! load fails no call and new frames use the new plugin; a reload that cannot load (garbage,
//! a missing file, an md5 mismatch) keeps the old plugin serving and logs why.
//!
//! The plugins tell themselves apart by behaviour: `misbehave.wasm` traps on a request
//! carrying `misbehave: trap`, which `bolt.wasm` passes like any header; and by content hash
//! (a copy of `bolt.wasm` with a custom section appended loads the same but hashes
//! differently). Every wait is bounded by counts and log events, never by a sleep.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use integration::client::{BoltClient, ClientOptions};
use integration::echo::EchoServer;
use integration::harness::eventually;
use integration::harness::{admin_get, free_addr, patch, repo_root, MosnConfig, Sidecar};
use integration::wire::Request;
use md5::{Digest, Md5};

const SERVICE: &str = "com.alipay.test.TestService:1.0";
/// Longest any awaited event may take on a loaded machine.
const WAIT: Duration = Duration::from_secs(60);
/// Calls in flight at once during the reload under load.
const CONNECTIONS: usize = 4;
const TASKS_PER_CONNECTION: usize = 16;
/// Calls answered before the reload, and again after it took effect.
const CALLS_EACH_SIDE: u64 = 2_000;

const RELOADED: &str = "plugin reloaded";
const RELOAD_FAILED: &str = "plugin reload failed";
const RETIRED: &str = "retired plugin instance finished its frames";

fn built_plugin(name: &str) -> Vec<u8> {
    let path = repo_root().join(format!("target/wasm32-wasip1/plugin/{name}.wasm"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}; run `make plugins`", path.display()))
}

/// `module` with a custom section (id 0) named `tag` appended: the same plugin, other bytes.
fn with_custom_section(module: &[u8], tag: &str) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut body = Vec::new();
    leb(tag.len(), &mut body);
    body.extend_from_slice(tag.as_bytes());
    body.extend_from_slice(b"reload test payload");
    let mut out = module.to_vec();
    out.push(0);
    leb(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A directory of its own for one test's plugin file.
fn plugin_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("plugin-reload-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// Replaces the file at `path` with `bytes` in one rename, as a deployment would.
fn install(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, bytes).expect("write plugin");
    std::fs::rename(&tmp, path).expect("rename plugin");
}

/// The log lines containing `needle`.
fn lines_with(sidecar: &Sidecar, needle: &str) -> Vec<String> {
    sidecar
        .log_contents()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_owned)
        .collect()
}

/// Waits for the `n`-th log line containing `needle`; all of them.
async fn wait_for_lines(sidecar: &Sidecar, needle: &str, n: usize) -> Vec<String> {
    let lines = eventually(WAIT, async || lines_with(sidecar, needle), |l| l.len() >= n).await;
    assert!(
        lines.len() >= n,
        "expected {n} log lines with {needle:?}, found {}:\n{}",
        lines.len(),
        sidecar.log_contents()
    );
    lines
}

/// The value of field `name` in a log line (`name=value`, quotes dropped).
fn field(line: &str, name: &str) -> Option<String> {
    let at = line.find(&format!(" {name}="))? + name.len() + 2;
    let value = line[at..].split_whitespace().next()?;
    Some(value.trim_matches('"').to_owned())
}

async fn client(addr: SocketAddr) -> Arc<BoltClient> {
    let options = ClientOptions {
        first_id: 2_000_000_000,
        call_timeout: Duration::from_secs(30),
        ..ClientOptions::default()
    };
    Arc::new(
        BoltClient::connect_with(addr, options)
            .await
            .expect("connect"),
    )
}

/// `n` calls on a fresh connection, every one answered by the app.
async fn calls_succeed(addr: SocketAddr, n: usize, what: &str) {
    let c = client(addr).await;
    for i in 0..n {
        let r = c.rpc(SERVICE, format!("{what}-{i}")).await;
        let status = r.as_ref().map(|f| f.status());
        assert_eq!(status.ok().flatten(), Some(0), "{what} call {i}: {r:?}");
    }
}

/// A request that makes the misbehave plugin trap, on a fresh connection: whether it was
/// answered with success.
async fn trap_probe_succeeds(addr: SocketAddr) -> bool {
    let c = client(addr).await;
    let req = Request::rpc(c.next_id(), Some(SERVICE), "probe").header("misbehave", "trap");
    matches!(c.call(&req).await, Ok(f) if f.status() == Some(0))
}

/// A sidecar with two workers serving the plugin at `plugin`, in front of an echo app.
fn config(listen: SocketAddr, app: SocketAddr, plugin: &Path) -> serde_json::Value {
    let mut cfg = MosnConfig::single_hop(listen, vec![app])
        .wasm_plugin(&plugin.display().to_string())
        .build();
    assert!(patch(&mut cfg, "/servers/0/processor", 2.into()));
    cfg
}

/// Calls in a closed loop on [`CONNECTIONS`] connections until stopped, counting outcomes.
struct Load {
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: tokio::task::JoinSet<Vec<String>>,
}

impl Load {
    async fn start(addr: SocketAddr) -> Load {
        let ok = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = tokio::task::JoinSet::new();
        for conn in 0..CONNECTIONS {
            let c = client(addr).await;
            for task in 0..TASKS_PER_CONNECTION {
                let (c, ok, failed, stop) = (c.clone(), ok.clone(), failed.clone(), stop.clone());
                tasks.spawn(async move {
                    let mut errors = Vec::new();
                    let mut i = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let body = format!("load-{conn}-{task}-{i}");
                        match c.rpc(SERVICE, body.clone()).await {
                            Ok(f)
                                if f.status() == Some(0) && f.content()[..] == *body.as_bytes() =>
                            {
                                ok.fetch_add(1, Ordering::Relaxed);
                            }
                            other => {
                                failed.fetch_add(1, Ordering::Relaxed);
                                errors.push(format!("{body}: {other:?}"));
                            }
                        }
                        i += 1;
                    }
                    errors
                });
            }
        }
        Load {
            ok,
            failed,
            stop,
            tasks,
        }
    }

    /// Waits until `n` calls were answered in total.
    async fn wait_answered(&self, n: u64) {
        let ok = eventually(WAIT, async || self.ok.load(Ordering::Relaxed), |&v| v >= n).await;
        assert!(ok >= n, "only {ok} of {n} calls answered");
    }

    /// Stops the loop; every failure, described.
    async fn stop(mut self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let mut errors = Vec::new();
        while let Some(r) = self.tasks.join_next().await {
            errors.extend(r.expect("load task"));
        }
        assert_eq!(self.failed.load(Ordering::Relaxed), errors.len() as u64);
        (self.ok.load(Ordering::Relaxed), errors)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_under_load_fails_no_call_and_new_frames_use_the_new_plugin() {
    let bolt = built_plugin("bolt");
    let misbehave = built_plugin("misbehave");
    let dir = plugin_dir("under-load");
    let plugin = dir.join("codec.wasm");
    install(&plugin, &bolt);
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let listen = free_addr().unwrap();
    let mut sidecar = Sidecar::spawn(config(listen, app.local_addr(), &plugin)).expect("starts");
    let loaded = wait_for_lines(&sidecar, "codec plugin loaded", 1).await;
    assert_eq!(field(&loaded[0], "md5"), Some(md5_hex(&bolt)));
    assert!(
        trap_probe_succeeds(listen).await,
        "bolt passes the misbehave header"
    );

    let load = Load::start(listen).await;
    load.wait_answered(CALLS_EACH_SIDE).await;
    install(&plugin, &misbehave);
    sidecar.signal("HUP").expect("SIGHUP");
    let reloaded = wait_for_lines(&sidecar, RELOADED, 1).await;
    let after_reload = load.ok.load(Ordering::Relaxed);
    load.wait_answered(after_reload + CALLS_EACH_SIDE).await;
    let (answered, errors) = load.stop().await;
    assert!(
        errors.is_empty(),
        "{} of {} calls failed across the reload, e.g. {:?}",
        errors.len(),
        answered + errors.len() as u64,
        &errors[..errors.len().min(5)]
    );
    assert!(answered >= 2 * CALLS_EACH_SIDE);

    let line = &reloaded[0];
    eprintln!("{answered} calls answered, none failed; {line}");
    assert_eq!(field(line, "previous_md5"), Some(md5_hex(&bolt)), "{line}");
    assert_eq!(field(line, "md5"), Some(md5_hex(&misbehave)), "{line}");
    assert_eq!(field(line, "generation").as_deref(), Some("1"), "{line}");
    assert_eq!(field(line, "workers").as_deref(), Some("2"), "{line}");
    // Each worker's old instance is deleted once its last frame is gone (at the switch, or
    // once the frames it had decoded were encoded or dropped).
    wait_for_lines(&sidecar, RETIRED, 2).await;
    assert!(lines_with(&sidecar, RELOAD_FAILED).is_empty());

    // New frames run the new plugin: the same request now traps it (its connection closes).
    assert!(
        !trap_probe_succeeds(listen).await,
        "the reloaded plugin traps on the misbehave header"
    );
    calls_succeed(listen, 20, "after-probe").await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_that_does_not_load_leaves_the_old_one_serving() {
    let bolt = built_plugin("bolt");
    let dir = plugin_dir("bad-file");
    let plugin = dir.join("codec.wasm");
    install(&plugin, &bolt);
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let listen = free_addr().unwrap();
    let mut sidecar = Sidecar::spawn(config(listen, app.local_addr(), &plugin)).expect("starts");
    calls_succeed(listen, 20, "before").await;

    // Garbage: not a module.
    install(&plugin, b"this is not a plugin\n");
    sidecar.signal("HUP").expect("SIGHUP");
    let failed = wait_for_lines(&sidecar, RELOAD_FAILED, 1).await;
    assert!(
        failed[0].contains("is not a WebAssembly module"),
        "{}",
        failed[0]
    );
    assert_eq!(field(&failed[0], "md5"), Some(md5_hex(&bolt)), "still bolt");
    assert_eq!(field(&failed[0], "generation").as_deref(), Some("0"));
    calls_succeed(listen, 20, "after-garbage").await;

    // No file at all.
    std::fs::remove_file(&plugin).expect("remove plugin");
    sidecar.signal("HUP").expect("SIGHUP");
    let failed = wait_for_lines(&sidecar, RELOAD_FAILED, 2).await;
    assert!(failed[1].contains("cannot read"), "{}", failed[1]);
    calls_succeed(listen, 20, "after-missing").await;
    assert!(lines_with(&sidecar, RELOADED).is_empty());

    // A good file again (other bytes, the same plugin): this one reloads, with its hash.
    let copy = with_custom_section(&bolt, "reload-test");
    install(&plugin, &copy);
    sidecar.signal("HUP").expect("SIGHUP");
    let reloaded = wait_for_lines(&sidecar, RELOADED, 1).await;
    assert_ne!(md5_hex(&copy), md5_hex(&bolt));
    assert_eq!(field(&reloaded[0], "md5"), Some(md5_hex(&copy)));
    assert_eq!(field(&reloaded[0], "generation").as_deref(), Some("1"));
    calls_succeed(listen, 20, "after-reload").await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_md5_mismatch_is_refused_and_the_old_plugin_keeps_serving() {
    let bolt = built_plugin("bolt");
    let dir = plugin_dir("md5");
    let plugin = dir.join("codec.wasm");
    install(&plugin, &bolt);
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let listen = free_addr().unwrap();
    let mut cfg = config(listen, app.local_addr(), &plugin);
    assert!(patch(
        &mut cfg,
        "/wasm_global_plugins/0/vm_config/md5",
        md5_hex(&bolt).into()
    ));
    let mut sidecar = Sidecar::spawn(cfg).expect("starts");
    let load = Load::start(listen).await;
    load.wait_answered(200).await;

    // A valid plugin, but not the one the configuration pins.
    let copy = with_custom_section(&bolt, "not-pinned");
    install(&plugin, &copy);
    sidecar.signal("HUP").expect("SIGHUP");
    let failed = wait_for_lines(&sidecar, RELOAD_FAILED, 1).await;
    let line = &failed[0];
    assert!(
        line.contains(&format!("md5 of {}", plugin.display())),
        "{line}"
    );
    assert!(
        line.contains(&md5_hex(&copy)),
        "names the file's md5: {line}"
    );
    assert_eq!(
        field(line, "md5"),
        Some(md5_hex(&bolt)),
        "still bolt: {line}"
    );
    let after = load.ok.load(Ordering::Relaxed);
    load.wait_answered(after + 200).await;
    let (_, errors) = load.stop().await;
    assert!(
        errors.is_empty(),
        "calls failed: {:?}",
        &errors[..errors.len().min(5)]
    );
    assert!(lines_with(&sidecar, RELOADED).is_empty());

    // The pinned file again: reloads (same hash, generation 1).
    install(&plugin, &bolt);
    sidecar.signal("HUP").expect("SIGHUP");
    let reloaded = wait_for_lines(&sidecar, RELOADED, 1).await;
    assert_eq!(field(&reloaded[0], "md5"), Some(md5_hex(&bolt)));
    calls_succeed(listen, 20, "after").await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_health_checks_follow_a_reload() {
    let bolt = built_plugin("bolt");
    let dir = plugin_dir("health");
    let plugin = dir.join("codec.wasm");
    install(&plugin, &bolt);
    let app = EchoServer::start("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let (listen, admin) = (free_addr().unwrap(), free_addr().unwrap());
    let cfg = MosnConfig::single_hop(listen, vec![app.local_addr()])
        .wasm_plugin(&plugin.display().to_string())
        .admin(admin)
        .edit_cluster("upstreamCluster", |c| {
            c.field(
                "health_check",
                serde_json::json!({"protocol": "bolt", "interval": "100ms", "timeout": "2s"}),
            )
        })
        .build();
    let mut sidecar = Sidecar::spawn(cfg).expect("starts");
    let host = format!("upstream.host.upstreamCluster.{}", app.local_addr());
    let checks = async || -> (u64, u64) {
        let stats: serde_json::Value = admin_get(admin, "/api/v1/stats?key=upstream")
            .await
            .expect("stats");
        let get = |k: &str| stats[&host][k].as_u64().unwrap_or(0);
        (get("health_check_success"), get("health_check_failure"))
    };
    let (before, _) = eventually(WAIT, checks, |(ok, _)| *ok >= 2).await;
    assert!(before >= 2, "heartbeat checks pass before the reload");
    let heartbeats_before = app.counters().heartbeats;

    // The same protocol, other bytes: a reload the health thread must follow.
    install(&plugin, &with_custom_section(&bolt, "health-follows"));
    sidecar.signal("HUP").expect("SIGHUP");
    wait_for_lines(&sidecar, RELOADED, 1).await;
    let followed = wait_for_lines(&sidecar, "health checks use the reloaded plugin", 1).await;
    assert_eq!(field(&followed[0], "generation").as_deref(), Some("1"));

    // Checks keep passing on the new instance: heartbeats it encodes reach the app and
    // its decoder reads the acks.
    let (after, failed) = eventually(WAIT, checks, |(ok, _)| *ok >= before + 3).await;
    assert!(after >= before + 3, "checks go on after the reload");
    assert_eq!(failed, 0, "no check failed across the reload");
    assert!(app.counters().heartbeats > heartbeats_before);
}

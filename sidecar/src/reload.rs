//! Live plugin reload ([`reload_plugins`]): every Wasm plugin of the plan is loaded again
//! from its configured path (read, `md5` checked when configured, compiled, shape-checked,
//! proved to start) and switched to on every worker in two phases, so a plugin that fails
//! anywhere leaves the old one serving everywhere:
//!
//! 1. *stage*: each worker starts a codec of the new plugin (instance and spare) on its own
//!    thread and answers whether it started;
//! 2. *commit* (every worker staged it) or *abort* (one could not): each worker switches its
//!    codec ([`codec_host::WasmCodec::switch_to`]: new frames on the new instances, frames
//!    in flight finish on the old one, which is deleted after its last frame) and confirms,
//!    or drops what it staged.
//!
//! The coordinator blocks the calling thread (the admin's, or a blocking task for SIGHUP)
//! while it waits for the answers; workers never wait for it: they read commands from their
//! control queue ([`crate::control`]) between requests ([`serve_plugin_control`]).
//! Native codecs are compiled in and cannot be reloaded; the report says so.

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use codec_host::{LoadError, Plugin, WasmCodec};
use serde::ser::SerializeStruct;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::context::WorkerContext;
use crate::control::{WorkerCommand, WorkerReply};
use crate::plan::{CodecPlan, Plan};
use crate::plugin_slot::{PluginSlot, WorkerPluginCounts};

/// How long the coordinator waits for all workers to answer one phase.
pub const WORKER_ANSWER_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a worker publishes its plugin counters.
const PUBLISH_EVERY: Duration = Duration::from_millis(250);

/// One reload at a time in the process (a second caller waits for the first to finish).
static RELOADING: Mutex<()> = Mutex::new(());
/// Ids of reloads, so a worker never confuses a staged codec of one with another's.
static NEXT_RELOAD: AtomicU64 = AtomicU64::new(1);

/// What a reload did, plugin by plugin (the JSON answer of `POST /api/v1/plugins/reload`).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReloadReport {
    /// One entry per codec of the plan, in config order.
    pub plugins: Vec<PluginReload>,
}

impl ReloadReport {
    /// The entries that failed.
    pub fn failures(&self) -> impl Iterator<Item = &PluginReload> {
        self.plugins
            .iter()
            .filter(|p| matches!(p, PluginReload::Failed { .. }))
    }
}

/// The outcome of reloading one codec's plugin.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PluginReload {
    /// Every worker runs the new plugin for new frames.
    Reloaded {
        /// The codec's protocol.
        protocol: String,
        /// The plugin name.
        plugin: String,
        /// The file loaded.
        path: String,
        /// MD5 (hex) of the plugin served before.
        previous_md5: String,
        /// MD5 (hex) of the plugin served now.
        md5: String,
        /// The generation now served (reloads so far).
        generation: u64,
        /// Workers that switched.
        workers: usize,
        /// Load, start on every worker and switch, in milliseconds.
        elapsed_ms: f64,
    },
    /// The old plugin keeps serving everywhere (or, for `stage: "switch"`, on the workers
    /// that did not confirm).
    Failed {
        /// The codec's protocol.
        protocol: String,
        /// The plugin name.
        plugin: String,
        /// The file that was tried.
        path: String,
        /// MD5 (hex) of the plugin still served.
        md5: String,
        /// The generation still served.
        generation: u64,
        /// Where it failed: `load` (file, md5, module, exports, start-up proof), `start`
        /// (a worker's instances), `switch` (a worker did not confirm).
        stage: FailedStage,
        /// Why, for a human.
        error: String,
    },
    /// A native codec: compiled into the sidecar, nothing to reload.
    NotApplicable {
        /// The codec's protocol.
        protocol: String,
        /// The native codec's registry name.
        codec: String,
        /// Why.
        reason: String,
    },
}

/// Where a plugin reload failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FailedStage {
    /// Loading the new plugin (nothing changed anywhere).
    Load,
    /// Starting its instances on a worker (nothing changed anywhere).
    Start,
    /// A worker did not confirm the switch; the others switched.
    Switch,
}

/// Why one plugin did not reload.
#[derive(Debug, thiserror::Error)]
pub enum PluginReloadError {
    /// The new plugin does not load: missing file, not wasm, md5 mismatch, missing exports,
    /// failing start-up.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// One or more workers could not start its instances (all keep the old plugin).
    #[error("instances of the new plugin did not start on every worker: {}", describe(.0))]
    Start(Vec<(usize, String)>),
    /// One or more workers did not confirm the switch (they may still run the old plugin).
    #[error("workers did not confirm the switch: {}", describe(.0))]
    Switch(Vec<(usize, String)>),
}

impl PluginReloadError {
    fn stage(&self) -> FailedStage {
        match self {
            PluginReloadError::Load(_) => FailedStage::Load,
            PluginReloadError::Start(_) => FailedStage::Start,
            PluginReloadError::Switch(_) => FailedStage::Switch,
        }
    }
}

fn describe(failures: &[(usize, String)]) -> String {
    failures
        .iter()
        .map(|(w, why)| format!("worker {w}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// A reload in which at least one plugin failed. Serialises as
/// `{"error": "<reason>", "report": <ReloadReport>}`.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// Some plugins failed (the report has every plugin's outcome).
    #[error("{} of {} plugins failed to reload and keep their old version: {}",
        .report.failures().count(), .report.plugins.len(), failure_reasons(.report))]
    Failed {
        /// Every plugin's outcome.
        report: ReloadReport,
    },
}

fn failure_reasons(report: &ReloadReport) -> String {
    report
        .failures()
        .filter_map(|f| match f {
            PluginReload::Failed {
                protocol, error, ..
            } => Some(format!("{protocol}: {error}")),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl ReloadError {
    /// Every plugin's outcome.
    pub fn report(&self) -> &ReloadReport {
        match self {
            ReloadError::Failed { report } => report,
        }
    }
}

impl serde::Serialize for ReloadError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("ReloadError", 2)?;
        st.serialize_field("error", &self.to_string())?;
        st.serialize_field("report", self.report())?;
        st.end()
    }
}

/// Reloads every Wasm plugin of `plan` on every worker (see the module docs); blocks until
/// each worker answered (at most [`WORKER_ANSWER_TIMEOUT`] per phase). Callable from any
/// thread but a worker's. Logs every outcome (INFO reloaded, WARN failed) with the plugin
/// path and hash.
///
/// # Errors
/// [`ReloadError::Failed`] when any plugin failed; it carries the whole report.
pub fn reload_plugins(plan: &Plan) -> Result<ReloadReport, ReloadError> {
    let _one_at_a_time = RELOADING.lock().unwrap_or_else(|e| e.into_inner());
    let plugins: Vec<PluginReload> = plan
        .codecs
        .iter()
        .map(|c| match c {
            CodecPlan::Wasm { slot, .. } => reload_one(plan, slot),
            CodecPlan::Native { protocol, name, .. } => {
                info!(%protocol, codec = name, "plugin reload: native codec, nothing to reload");
                PluginReload::NotApplicable {
                    protocol: protocol.clone(),
                    codec: (*name).to_owned(),
                    reason: "native codec, compiled into the sidecar: reload is not applicable"
                        .into(),
                }
            }
        })
        .collect();
    let report = ReloadReport { plugins };
    if report.failures().next().is_some() {
        Err(ReloadError::Failed { report })
    } else {
        Ok(report)
    }
}

/// Reloads the plugin of one slot; logs and reports the outcome.
fn reload_one(plan: &Plan, slot: &PluginSlot) -> PluginReload {
    let started = Instant::now();
    let old = slot.current();
    let path = old.path().display().to_string();
    match load_and_switch(plan, slot, &old) {
        Ok((next, generation, workers)) => {
            let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
            info!(
                plugin = old.name(),
                protocol = slot.protocol(),
                %path,
                previous_md5 = %old.md5(),
                md5 = %next.md5(),
                generation,
                workers,
                elapsed_ms = format_args!("{elapsed_ms:.1}"),
                "plugin reloaded: new frames use the new plugin, frames in flight finish on the old one"
            );
            PluginReload::Reloaded {
                protocol: slot.protocol().to_owned(),
                plugin: old.name().to_owned(),
                path,
                previous_md5: old.md5().to_owned(),
                md5: next.md5().to_owned(),
                generation,
                workers,
                elapsed_ms,
            }
        }
        Err(e) => {
            let generation = slot.generation();
            let served = slot.current();
            warn!(
                plugin = old.name(),
                protocol = slot.protocol(),
                %path,
                md5 = %served.md5(),
                generation,
                error = %e,
                "plugin reload failed; the old plugin keeps serving"
            );
            PluginReload::Failed {
                protocol: slot.protocol().to_owned(),
                plugin: old.name().to_owned(),
                path,
                md5: served.md5().to_owned(),
                generation,
                stage: e.stage(),
                error: e.to_string(),
            }
        }
    }
}

/// Loads `old` again and switches every worker to it: the new plugin, its generation and
/// how many workers switched.
fn load_and_switch(
    plan: &Plan,
    slot: &PluginSlot,
    old: &Plugin,
) -> Result<(Arc<Plugin>, u64, usize), PluginReloadError> {
    let next = old.reload()?;
    let reload = NEXT_RELOAD.fetch_add(1, Ordering::Relaxed);
    let workers = plan.control.workers();
    let failed = ask_all(plan, workers, |reply| WorkerCommand::Stage {
        reload,
        protocol: slot.protocol().to_owned(),
        plugin: Arc::clone(&next),
        reply,
    });
    if !failed.is_empty() {
        for w in 0..workers {
            let _ = plan.control.send(w, WorkerCommand::Abort { reload });
        }
        return Err(PluginReloadError::Start(failed));
    }
    let generation = slot.generation() + 1;
    let failed = ask_all(plan, workers, |reply| WorkerCommand::Commit {
        reload,
        generation,
        reply,
    });
    // Whoever confirmed serves the new plugin now: it is the current one either way.
    let generation = slot.install(Arc::clone(&next));
    if !failed.is_empty() {
        return Err(PluginReloadError::Switch(failed));
    }
    Ok((next, generation, workers))
}

/// Sends the command `make` builds to each of `workers` workers and waits for their
/// answers: the workers that failed, did not answer in time, or are gone, with why.
fn ask_all(
    plan: &Plan,
    workers: usize,
    make: impl Fn(std_mpsc::Sender<WorkerReply>) -> WorkerCommand,
) -> Vec<(usize, String)> {
    let (tx, rx) = std_mpsc::channel();
    let mut waiting = vec![false; workers];
    let mut failed = Vec::new();
    for (w, wait) in waiting.iter_mut().enumerate() {
        match plan.control.send(w, make(tx.clone())) {
            Ok(()) => *wait = true,
            Err(_) => failed.push((w, "the worker is not running".to_owned())),
        }
    }
    drop(tx);
    let deadline = Instant::now() + WORKER_ANSWER_TIMEOUT;
    while waiting.iter().any(|&w| w) {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((w, outcome)) => {
                if let Some(wait) = waiting.get_mut(w) {
                    *wait = false;
                }
                if let Err(why) = outcome {
                    failed.push((w, why));
                }
            }
            Err(e) => {
                let why = match e {
                    std_mpsc::RecvTimeoutError::Timeout => {
                        format!("no answer within {WORKER_ANSWER_TIMEOUT:?}")
                    }
                    std_mpsc::RecvTimeoutError::Disconnected => {
                        "the worker stopped before answering".to_owned()
                    }
                };
                for (w, _) in waiting.iter().enumerate().filter(|(_, &wait)| wait) {
                    failed.push((w, why.clone()));
                }
                break;
            }
        }
    }
    failed.sort_by_key(|(w, _)| *w);
    failed
}

/// A worker's side of plugin management, run as one task on the worker's runtime until
/// `stop`: answers control commands (stage, commit, abort a reload) and publishes the
/// worker's plugin counters into the plan's [`PluginSlot`]s every 250 ms (and right after a
/// switch), deleting finished retired instances of an idle codec on the way.
pub async fn serve_plugin_control(
    worker: Rc<WorkerContext>,
    mut commands: mpsc::UnboundedReceiver<WorkerCommand>,
    stop: CancellationToken,
) {
    let mut state = WorkerPlugins::new(&worker);
    let mut tick = tokio::time::interval(PUBLISH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => state.publish(&worker),
            c = commands.recv() => match c {
                Some(c) => state.handle(&worker, c),
                None => return,
            },
            _ = stop.cancelled() => return,
        }
    }
}

/// One worker's plugin state: what reloads staged, the generation each codec runs.
struct WorkerPlugins {
    /// What each reload staged: its protocol and one codec per instance of it.
    staged: HashMap<u64, (String, Vec<WasmCodec>)>,
    generation: HashMap<String, u64>,
}

impl WorkerPlugins {
    fn new(worker: &WorkerContext) -> WorkerPlugins {
        let generation = worker
            .plan
            .codecs
            .iter()
            .filter_map(|c| match c {
                CodecPlan::Wasm { protocol, slot, .. } => {
                    Some((protocol.clone(), slot.generation()))
                }
                CodecPlan::Native { .. } => None,
            })
            .collect();
        WorkerPlugins {
            staged: HashMap::new(),
            generation,
        }
    }

    fn handle(&mut self, worker: &WorkerContext, command: WorkerCommand) {
        let index = worker.index;
        match command {
            WorkerCommand::Stage {
                reload,
                protocol,
                plugin,
                reply,
            } => {
                // One new codec per instance the worker runs of this protocol.
                let outcome = match worker.codecs.get(&protocol) {
                    Some(set) => (0..set.members().len())
                        .map(|_| plugin.new_codec().map_err(|e| e.to_string()))
                        .collect::<Result<Vec<WasmCodec>, String>>(),
                    None => Err(format!("no codec for protocol {protocol}")),
                };
                let answer = outcome.map(|codecs| {
                    self.staged.insert(reload, (protocol, codecs));
                });
                if let Err(why) = &answer {
                    warn!(plugin = plugin.name(), md5 = plugin.md5(), %why, "new plugin instance did not start");
                }
                let _ = reply.send((index, answer));
            }
            WorkerCommand::Commit {
                reload,
                generation,
                reply,
            } => {
                let answer = self.commit(worker, reload, generation);
                let _ = reply.send((index, answer));
                self.publish(worker);
            }
            WorkerCommand::Abort { reload } => {
                self.staged.remove(&reload);
            }
        }
    }

    /// Switches the codec to what `reload` staged.
    fn commit(
        &mut self,
        worker: &WorkerContext,
        reload: u64,
        generation: u64,
    ) -> Result<(), String> {
        let (protocol, next) = self
            .staged
            .remove(&reload)
            .ok_or_else(|| format!("reload {reload} staged nothing here"))?;
        let set = worker
            .codecs
            .get(&protocol)
            .ok_or_else(|| format!("no codec for protocol {protocol}"))?;
        // Every instance or none: all of them are checked before any switches.
        let mut codecs = set
            .members()
            .iter()
            .map(|c| c.try_borrow_mut())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| "the codec is in use".to_owned())?;
        if codecs.len() != next.len() {
            return Err(format!(
                "{} instances staged for {} running",
                next.len(),
                codecs.len()
            ));
        }
        let mut wasms = Vec::with_capacity(codecs.len());
        for codec in &mut codecs {
            wasms.push(
                WasmCodec::of_mut(codec.as_mut())
                    .ok_or_else(|| format!("the codec of {protocol} is not a Wasm codec"))?,
            );
        }
        for (wasm, next) in wasms.into_iter().zip(next) {
            wasm.switch_to(next);
        }
        self.generation.insert(protocol, generation);
        Ok(())
    }

    /// Publishes every Wasm codec's counters.
    fn publish(&self, worker: &WorkerContext) {
        for c in &worker.plan.codecs {
            let CodecPlan::Wasm { protocol, slot, .. } = c else {
                continue;
            };
            let (Some(set), Some(gauge)) = (worker.codecs.get(protocol), slot.worker(worker.index))
            else {
                continue;
            };
            let mut stats = Vec::with_capacity(set.members().len());
            for codec in set.members() {
                let Ok(mut codec) = codec.try_borrow_mut() else {
                    continue;
                };
                let Some(wasm) = WasmCodec::of_mut(codec.as_mut()) else {
                    continue;
                };
                if wasm.plugin_stats().retired_instances > 0 {
                    // An idle codec deletes finished retired instances here, not at its
                    // next request.
                    let _ = wasm.release_dropped_contexts();
                }
                stats.push(wasm.plugin_stats());
            }
            let generation = self.generation.get(protocol).copied().unwrap_or(0);
            gauge.publish(WorkerPluginCounts::of_all(generation, &stats));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::thread::JoinHandle;

    use serde_json::json;

    use super::*;
    use crate::config::{Config, LoadContext};
    use crate::plugin_info::plugins_json;

    fn repo() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    fn built(name: &str) -> Vec<u8> {
        let path = repo().join(format!("target/wasm32-wasip1/plugin/{name}.wasm"));
        std::fs::read(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run `make plugins`", path.display()))
    }

    /// A scratch copy of bolt.wasm for one test.
    fn plugin_file(test: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("sidecar-reload-{}-{test}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("codec.wasm");
        std::fs::write(&path, built("bolt")).unwrap();
        path
    }

    /// The shipped sample config with `codec` as its codec section and two workers.
    fn plan(codec: serde_json::Value) -> Arc<Plan> {
        let text =
            std::fs::read_to_string(repo().join("configs/mosn_rpc_config_wasm.json")).unwrap();
        let mut doc: serde_json::Value = serde_json::from_str(&text).unwrap();
        doc["servers"][0]["processor"] = json!(2);
        doc.as_object_mut().unwrap().remove("admin");
        doc.as_object_mut().unwrap().remove("wasm_global_plugins");
        doc.as_object_mut().unwrap().remove("third_part_codec");
        for (k, v) in codec.as_object().unwrap() {
            doc[k] = v.clone();
        }
        let ctx = LoadContext {
            work_dir: repo(),
            config_path: None,
            cpu_count: 2,
        };
        let config = Config::from_value(&doc, &ctx).expect("valid config");
        Arc::new(Plan::build(&config).expect("plan"))
    }

    fn wasm_plan(path: &Path) -> Arc<Plan> {
        wasm_plan_of(path, 2)
    }

    /// [`wasm_plan`] with `instance_num` instances over its two workers.
    fn wasm_plan_of(path: &Path, instance_num: usize) -> Arc<Plan> {
        plan(json!({
            "wasm_global_plugins": [{"plugin_name": "wasm-bolt", "instance_num": instance_num,
                "vm_config": {"engine": "wasmer", "path": path.display().to_string()}}],
            "third_part_codec": {"codecs": [{"type": "wasm", "enable": true,
                "config": {"from_wasm_plugin": "wasm-bolt", "protocol": "x-bolt", "root_id": 1}}]}
        }))
    }

    /// A worker as `worker::spawn` runs it, reduced to its plugin side: its context (codecs
    /// included) and [`serve_plugin_control`] on a current-thread runtime, until `stop`.
    /// Ends with the md5 of the plugin each of its codec instances runs.
    fn worker(plan: &Arc<Plan>, index: usize, stop: &CancellationToken) -> JoinHandle<Vec<String>> {
        let commands = plan.control.register(index);
        let (plan, stop) = (plan.clone(), stop.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, async move {
                let ctx =
                    Rc::new(WorkerContext::build(index, plan, CancellationToken::new()).unwrap());
                serve_plugin_control(ctx.clone(), commands, stop).await;
                ctx.codecs
                    .values()
                    .flat_map(|set| set.members())
                    .filter_map(|c| {
                        let codec = c.borrow();
                        WasmCodec::of(codec.as_ref()).map(|w| w.plugin().md5().to_owned())
                    })
                    .collect()
            })
        })
    }

    fn wasm_slot(plan: &Plan) -> &PluginSlot {
        plan.codecs
            .iter()
            .find_map(|c| match c {
                CodecPlan::Wasm { slot, .. } => Some(&**slot),
                CodecPlan::Native { .. } => None,
            })
            .unwrap()
    }

    /// Waits (bounded) until every worker published generation `g`.
    fn wait_published(slot: &PluginSlot, g: u64) -> bool {
        wait_published_with(slot, g, 2)
    }

    /// Waits (bounded) until every worker published generation `g` with exactly
    /// `instances` instances live (no retired one left).
    fn wait_published_with(slot: &PluginSlot, g: u64, instances: u64) -> bool {
        let until = Instant::now() + Duration::from_secs(20);
        while Instant::now() < until {
            if slot.workers().iter().all(|w| {
                let c = w.read();
                c.generation == g && c.instances == instances && c.retired_instances == 0
            }) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }

    #[test]
    fn every_worker_switches_and_reports_the_new_generation() {
        let path = plugin_file("switch");
        let plan = wasm_plan(&path);
        let stop = CancellationToken::new();
        let workers: Vec<_> = (0..2).map(|i| worker(&plan, i, &stop)).collect();
        let slot = wasm_slot(&plan);
        let old_md5 = slot.current().md5().to_owned();
        let mut other = built("bolt");
        other.extend_from_slice(&[0, 4, 3, b'a', b'b', b'c']); // a custom section
        std::fs::write(&path, &other).unwrap();

        let report = reload_plugins(&plan).expect("reloads");
        match &report.plugins[..] {
            [PluginReload::Reloaded {
                previous_md5,
                md5,
                generation,
                workers,
                ..
            }] => {
                assert_eq!(previous_md5, &old_md5);
                assert_ne!(md5, &old_md5);
                assert_eq!((*generation, *workers), (1, 2));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(slot.generation(), 1);
        assert!(wait_published(slot, 1), "both workers confirm generation 1");
        let info = plugins_json(&plan);
        let p = &info["plugins"][0];
        assert_eq!(p["kind"], "wasm");
        assert_eq!(p["generation"], 1);
        assert_eq!(p["md5"], slot.current().md5());
        assert_eq!(p["abi_version"], "proxy_abi_mosn_version_0_2_0");
        assert_eq!(p["workers"].as_array().unwrap().len(), 2);
        assert!(p["totals"]["other_calls"].as_u64().unwrap() > 0, "{p}");
        assert!(p["totals"]["memory_bytes"].as_u64().unwrap() > 0, "{p}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["plugins"][0]["outcome"], "reloaded");
        stop.cancel();
        for w in workers {
            w.join().unwrap();
        }
    }

    #[test]
    fn every_instance_of_a_worker_switches() {
        let path = plugin_file("instances");
        // Two instances per worker, each with its started spare.
        let plan = wasm_plan_of(&path, 4);
        let stop = CancellationToken::new();
        let workers: Vec<_> = (0..2).map(|i| worker(&plan, i, &stop)).collect();
        let slot = wasm_slot(&plan);
        assert!(
            wait_published_with(slot, 0, 4),
            "two instances and spares per worker"
        );
        let mut other = built("bolt");
        other.extend_from_slice(&[0, 4, 3, b'x', b'y', b'z']); // a custom section
        std::fs::write(&path, &other).unwrap();
        reload_plugins(&plan).expect("reloads");
        // The old instances retired and, holding no frames, were deleted.
        assert!(
            wait_published_with(slot, 1, 4),
            "every worker on generation 1"
        );
        let info = plugins_json(&plan);
        assert_eq!(info["plugins"][0]["instances_per_worker"], 2);
        assert_eq!(info["plugins"][0]["totals"]["instances"], 8);
        let new_md5 = slot.current().md5().to_owned();
        stop.cancel();
        for w in workers {
            // Both instances of each worker run the new plugin.
            assert_eq!(w.join().unwrap(), [new_md5.clone(), new_md5.clone()]);
        }
    }

    #[test]
    fn a_worker_that_cannot_start_it_leaves_every_worker_on_the_old_plugin() {
        let path = plugin_file("one-worker");
        let plan = wasm_plan(&path);
        let stop = CancellationToken::new();
        // Worker 1 never runs: staging cannot complete there.
        let w0 = worker(&plan, 0, &stop);
        let slot = wasm_slot(&plan);
        let before = slot.current();
        let old_md5 = before.md5().to_owned();
        let err = reload_plugins(&plan).expect_err("worker 1 is missing");
        match &err.report().plugins[..] {
            [PluginReload::Failed {
                stage,
                error,
                md5,
                generation,
                ..
            }] => {
                assert_eq!(*stage, FailedStage::Start);
                assert!(
                    error.contains("worker 1: the worker is not running"),
                    "{error}"
                );
                assert_eq!((md5.as_str(), *generation), (old_md5.as_str(), 0));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(slot.generation(), 0);
        assert!(
            Arc::ptr_eq(&before, &slot.current()),
            "the old plugin stays current"
        );
        // Worker 0 staged and then aborted: it still publishes generation 0.
        let until = Instant::now() + Duration::from_secs(20);
        while slot.workers()[0].read().instances == 0 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(slot.workers()[0].read().generation, 0);
        let json = serde_json::to_value(&err).unwrap();
        assert!(
            json["error"]
                .as_str()
                .unwrap()
                .contains("1 of 1 plugins failed"),
            "{json}"
        );
        assert_eq!(json["report"]["plugins"][0]["stage"], "start");
        stop.cancel();
        w0.join().unwrap();
    }

    #[test]
    fn a_file_that_does_not_load_changes_nothing() {
        let path = plugin_file("garbage");
        let plan = wasm_plan(&path);
        let slot = wasm_slot(&plan);
        let before = slot.current();
        std::fs::write(&path, b"garbage").unwrap();
        let err = reload_plugins(&plan).expect_err("garbage does not load");
        match &err.report().plugins[..] {
            [PluginReload::Failed { stage, error, .. }] => {
                assert_eq!(*stage, FailedStage::Load);
                assert!(error.contains("is not a WebAssembly module"), "{error}");
            }
            other => panic!("{other:?}"),
        }
        assert!(Arc::ptr_eq(&before, &slot.current()));
        assert_eq!(slot.generation(), 0);
    }

    #[test]
    fn native_codecs_report_that_reload_does_not_apply() {
        let plan = plan(
            json!({"third_part_codec": {"codecs": [{"type": "native", "enable": true,
            "config": {"protocol": "x-bolt", "codec": "bolt"}}]}}),
        );
        let report = reload_plugins(&plan).expect("nothing fails");
        assert!(
            matches!(&report.plugins[..], [PluginReload::NotApplicable { codec, .. }] if codec == "bolt")
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["plugins"][0]["outcome"], "not_applicable");
        assert_eq!(
            plugins_json(&plan)["plugins"][0]["reload"],
            "not applicable"
        );
    }
}

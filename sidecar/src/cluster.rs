//! Clusters at run time, in three parts:
//! * [`HostSet`] (one per cluster per process): the cluster's hosts with their live health
//!   ([`HostHealth`]: atomics that only the health thread writes, plus the per-host failure
//!   streaks the request path counts for outlier detection);
//! * [`LoadBalancer`] (one per cluster per worker), built from the host set: that worker's
//!   LB state and per-host active-request counts, `!Sync`, in `Cell`s, so the request path
//!   takes no lock;
//! * [`CircuitBreaker`] (one per cluster per process): `max_requests`,
//!   `max_pending_requests` and `max_retries` across all workers (`breaker.rs`).

mod breaker;
mod lb;
mod slots;

pub use breaker::{CircuitBreaker, Slot};
pub use slots::{DnsName, HostSlots, SlotChanges};

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;
use tracing::{info, warn};

use crate::config::{ClusterConfig, HostConfig, LbType};
use crate::stats::HealthCounters;
use lb::{Algorithm, HostView};

/// Flag: the host failed `unhealthy_threshold` active health checks in a row.
const FAILED_ACTIVE_CHECK: u8 = 1;
/// Flag: outlier detection ejected the host.
const EJECTED: u8 = 2;
/// Flag: the slot holds no address (a `STRICT_DNS` slot nobody resolved into). Never
/// picked, not even in panic mode, and not counted among the cluster's hosts.
const ABSENT: u8 = 4;

#[derive(Debug, Default)]
struct HostState {
    /// Why the host is out of rotation; 0 = healthy.
    flags: AtomicU8,
    /// Failed tries in a row (outlier detection), counted by every worker.
    consecutive_failures: AtomicU32,
}

/// Live health of a cluster's hosts, shared by every worker. A host starts healthy (as in
/// MOSN) and is taken out of rotation while it fails active health checks or is ejected.
/// Flags are written only by the health thread; every worker's balancer reads them on each
/// pick. When the healthy share falls below the panic threshold, balancers ignore health.
#[derive(Debug)]
pub struct HostHealth {
    cluster: String,
    hosts: Box<[HostState]>,
    /// Percent of healthy hosts below which the balancer uses every host (0 = never).
    panic_threshold: u32,
    panic: AtomicBool,
    /// Outlier detection's `consecutive_errors`; `None` = failures are not counted.
    outlier_threshold: Option<u32>,
    /// Woken when a host's failure streak reaches the threshold.
    outlier_wake: Notify,
    counters: Arc<HealthCounters>,
}

impl HostHealth {
    /// Health for the `hosts` hosts of cluster `cluster`, all healthy, publishing into
    /// `counters` (which must have `hosts` host entries).
    pub fn new(
        cluster: &str,
        hosts: usize,
        panic_threshold: u32,
        outlier_threshold: Option<u32>,
        counters: Arc<HealthCounters>,
    ) -> HostHealth {
        let health = HostHealth {
            cluster: cluster.to_owned(),
            hosts: (0..hosts).map(|_| HostState::default()).collect(),
            panic_threshold,
            panic: AtomicBool::new(false),
            outlier_threshold,
            outlier_wake: Notify::new(),
            counters,
        };
        for h in &health.counters.hosts {
            h.healthy.set(1);
        }
        health.refresh();
        health
    }

    /// Whether host `index` is in rotation: present, passing its health checks and not
    /// ejected (unknown indices are not).
    pub fn is_healthy(&self, index: usize) -> bool {
        self.hosts
            .get(index)
            .is_some_and(|h| h.flags.load(Ordering::Relaxed) == 0)
    }

    /// Whether the balancer may pick host `index`: healthy, or in `panic` mode present.
    fn pickable(&self, index: usize, panic: bool) -> bool {
        self.hosts.get(index).is_some_and(|h| {
            let flags = h.flags.load(Ordering::Relaxed);
            flags == 0 || (panic && flags & ABSENT == 0)
        })
    }

    /// Whether slot `index` holds a host (static hosts always; `STRICT_DNS` slots while
    /// an address is resolved into them).
    pub fn is_present(&self, index: usize) -> bool {
        self.hosts
            .get(index)
            .is_some_and(|h| h.flags.load(Ordering::Relaxed) & ABSENT == 0)
    }

    /// Slot `index` got a new address (`true`: a new host, healthy and with no failure
    /// streak, as any host starts) or lost it (`false`: out of rotation and of the counts).
    pub fn set_present(&self, index: usize, present: bool) {
        let Some(h) = self.hosts.get(index) else {
            return;
        };
        h.consecutive_failures.store(0, Ordering::Relaxed);
        h.flags
            .store(if present { 0 } else { ABSENT }, Ordering::Relaxed);
        if let Some(c) = self.counters.hosts.get(index) {
            c.healthy.set(u64::from(present));
            c.ejected.set(0);
        }
        self.refresh();
    }

    /// Hosts present now (slots holding an address).
    pub fn present(&self) -> usize {
        (0..self.hosts.len())
            .filter(|&i| self.is_present(i))
            .count()
    }

    /// Whether host `index` is ejected by outlier detection.
    pub fn is_ejected(&self, index: usize) -> bool {
        self.flag(index, EJECTED)
    }

    /// Whether host `index` is failing its active health checks.
    pub fn fails_active_check(&self, index: usize) -> bool {
        self.flag(index, FAILED_ACTIVE_CHECK)
    }

    fn flag(&self, index: usize, flag: u8) -> bool {
        self.hosts
            .get(index)
            .is_some_and(|h| h.flags.load(Ordering::Relaxed) & flag != 0)
    }

    /// Marks host `index` healthy or not by its active health checks (the health thread;
    /// tests). Returns whether the flag changed; unknown indices are ignored.
    pub fn set_healthy(&self, index: usize, healthy: bool) -> bool {
        let changed = self.set_flag(index, FAILED_ACTIVE_CHECK, !healthy);
        if let Some(c) = self.counters.hosts.get(index) {
            c.healthy.set(u64::from(healthy));
        }
        changed
    }

    /// Marks host `index` ejected or back (the ejector). Returns whether the flag changed.
    pub fn set_ejected(&self, index: usize, ejected: bool) -> bool {
        let changed = self.set_flag(index, EJECTED, ejected);
        if let Some(c) = self.counters.hosts.get(index) {
            c.ejected.set(u64::from(ejected));
        }
        changed
    }

    fn set_flag(&self, index: usize, flag: u8, on: bool) -> bool {
        let Some(h) = self.hosts.get(index) else {
            return false;
        };
        let before = if on {
            h.flags.fetch_or(flag, Ordering::Relaxed)
        } else {
            h.flags.fetch_and(!flag, Ordering::Relaxed)
        };
        let changed = (before & flag != 0) != on;
        if changed {
            self.refresh();
        }
        changed
    }

    /// Recounts the healthy hosts and enters or leaves panic mode.
    fn refresh(&self) {
        let total = self.present();
        let healthy = (0..self.hosts.len())
            .filter(|&i| self.is_healthy(i))
            .count();
        self.counters.cluster.healthy_hosts.set(healthy as u64);
        self.counters.cluster.present_hosts.set(total as u64);
        let panic = in_panic(healthy, total, self.panic_threshold);
        self.counters.cluster.panic_mode.set(u64::from(panic));
        if self.panic.swap(panic, Ordering::Relaxed) != panic {
            if panic {
                warn!(
                    cluster = %self.cluster, healthy, total, threshold = self.panic_threshold,
                    "panic mode: too few healthy hosts; balancing over every host"
                );
            } else {
                info!(cluster = %self.cluster, healthy, total, "panic mode over");
            }
        }
    }

    /// True while the healthy share is below the panic threshold (balancers use every host).
    pub fn in_panic(&self) -> bool {
        self.panic.load(Ordering::Relaxed)
    }

    /// The request path's report of one try on host `index` (only with outlier detection):
    /// a success ends the host's failure streak (a load, and a store only when there was a
    /// streak, so successes write nothing shared), a failure lengthens it and wakes the
    /// ejector once it reaches `consecutive_errors`.
    pub fn record_try(&self, index: usize, ok: bool) {
        let Some(threshold) = self.outlier_threshold else {
            return;
        };
        let Some(h) = self.hosts.get(index) else {
            return;
        };
        if ok {
            if h.consecutive_failures.load(Ordering::Relaxed) != 0 {
                h.consecutive_failures.store(0, Ordering::Relaxed);
            }
        } else if h.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1 >= threshold {
            self.outlier_wake.notify_one();
        }
    }

    /// Failed tries in a row on host `index`.
    pub fn consecutive_failures(&self, index: usize) -> u32 {
        self.hosts
            .get(index)
            .map_or(0, |h| h.consecutive_failures.load(Ordering::Relaxed))
    }

    /// Ends host `index`'s failure streak (on ejection and return).
    pub fn reset_failures(&self, index: usize) {
        if let Some(h) = self.hosts.get(index) {
            h.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// Notified when a failure streak reaches the outlier threshold.
    pub fn outlier_wake(&self) -> &Notify {
        &self.outlier_wake
    }

    /// The health counters this writes (admin API).
    pub fn counters(&self) -> &Arc<HealthCounters> {
        &self.counters
    }

    /// The cluster's name.
    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.hosts.len()
    }

    /// True for a cluster without hosts.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }
}

/// Whether `healthy` of `total` hosts is below `threshold` percent (0 = never).
pub fn in_panic(healthy: usize, total: usize, threshold: u32) -> bool {
    threshold > 0 && total > 0 && (healthy as u64) * 100 < u64::from(threshold) * total as u64
}

/// A cluster's hosts (its config, its host slots) and their live health flags, shared by
/// every worker; each worker builds its own [`LoadBalancer`] from it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HostSet {
    config: Arc<ClusterConfig>,
    /// Each slot's host config (a `STRICT_DNS` name's for each of its slots).
    hosts: Arc<[HostConfig]>,
    slots: Arc<HostSlots>,
    health: Arc<HostHealth>,
}

impl HostSet {
    /// Settings for `config`: static hosts healthy, `STRICT_DNS` slots empty until their
    /// name is resolved, health published into `counters` (one entry per slot:
    /// [`HostSlots::labels`]).
    pub fn new(config: Arc<ClusterConfig>, counters: Arc<HealthCounters>) -> HostSet {
        let (slots, hosts) = HostSlots::new(&config);
        let health = Arc::new(HostHealth::new(
            &config.name,
            slots.len(),
            config.healthy_panic_threshold,
            config.outlier_detection.map(|o| o.consecutive_errors),
            counters,
        ));
        for name in slots.names() {
            for i in name.slots.clone() {
                health.set_present(i, false);
            }
        }
        HostSet {
            config,
            hosts: hosts.into(),
            slots: Arc::new(slots),
            health,
        }
    }

    /// The host slots (addresses, `STRICT_DNS` names).
    pub fn slots(&self) -> &Arc<HostSlots> {
        &self.slots
    }

    /// The cluster config.
    pub fn config(&self) -> &Arc<ClusterConfig> {
        &self.config
    }

    /// The shared health flags (for a health checker or an admin endpoint).
    pub fn health(&self) -> &Arc<HostHealth> {
        &self.health
    }

    /// A balancer for one worker, randomly seeded.
    pub fn balancer(&self) -> LoadBalancer {
        self.balancer_with_rng(fastrand::Rng::new())
    }

    /// A balancer for one worker drawing from `rng` (tests pass a seeded one).
    pub fn balancer_with_rng(&self, mut rng: fastrand::Rng) -> LoadBalancer {
        let weights: Box<[u32]> = self.hosts.iter().map(|h| h.weight).collect();
        let algorithm = match self.config.lb {
            LbType::Random => Algorithm::Random,
            LbType::RoundRobin => Algorithm::round_robin(&weights, &mut rng),
            LbType::LeastRequest => Algorithm::least_request(&weights),
        };
        LoadBalancer {
            settings: self.clone(),
            active: (0..weights.len()).map(|_| Cell::new(0)).collect(),
            weights,
            state: RefCell::new((algorithm, rng)),
        }
    }
}

/// One worker's load balancer for one cluster. Not shared between threads; every method
/// takes `&self` so the worker's tasks can share it (e.g. in an `Rc`).
#[derive(Debug)]
pub struct LoadBalancer {
    settings: HostSet,
    weights: Box<[u32]>,
    active: Box<[Cell<u32>]>,
    state: RefCell<(Algorithm, fastrand::Rng)>,
}

impl LoadBalancer {
    /// Picks a healthy host by the cluster's `lb_type`; `None` when no host is healthy (a
    /// no-healthy-upstream error). In panic mode (too few healthy hosts) every host is a
    /// candidate. Returns an index into [`LoadBalancer::hosts`].
    pub fn choose(&self) -> Option<usize> {
        let health = &self.settings.health;
        let panic = health.in_panic();
        let healthy = |i: usize| health.pickable(i, panic);
        let view = HostView {
            weights: &self.weights,
            healthy: &healthy,
            active: &self.active,
        };
        // Not re-entered: nothing here calls back into the balancer.
        let mut state = self.state.borrow_mut();
        let (algorithm, rng) = &mut *state;
        algorithm.pick(&view, rng)
    }

    /// Like [`LoadBalancer::choose`], but never `avoid` (the host a retry just failed on)
    /// while another host can be chosen; `avoid` itself when it is the only candidate.
    pub fn choose_avoiding(&self, avoid: Option<usize>) -> Option<usize> {
        let Some(avoid) = avoid else {
            return self.choose();
        };
        let health = &self.settings.health;
        let panic = health.in_panic();
        let healthy = |i: usize| i != avoid && health.pickable(i, panic);
        let view = HostView {
            weights: &self.weights,
            healthy: &healthy,
            active: &self.active,
        };
        let picked = {
            let mut state = self.state.borrow_mut();
            let (algorithm, rng) = &mut *state;
            algorithm.pick(&view, rng)
        };
        picked.or_else(|| self.choose())
    }

    /// The cluster's host slots' configs.
    pub fn hosts(&self) -> &[HostConfig] {
        &self.settings.hosts
    }

    /// Host slot `index`'s config.
    pub fn host(&self, index: usize) -> Option<&HostConfig> {
        self.settings.hosts.get(index)
    }

    /// The cluster config.
    pub fn config(&self) -> &Arc<ClusterConfig> {
        &self.settings.config
    }

    /// Counts a request sent to host `index` (least-request uses these counts).
    pub fn request_started(&self, index: usize) {
        if let Some(c) = self.active.get(index) {
            c.set(c.get().saturating_add(1));
        }
    }

    /// Counts a request to host `index` as finished (answered, failed or timed out).
    pub fn request_finished(&self, index: usize) {
        if let Some(c) = self.active.get(index) {
            c.set(c.get().saturating_sub(1));
        }
    }

    /// Counts a request to host `index` as active until the returned guard is dropped.
    pub fn track(&self, index: usize) -> ActiveRequest<'_> {
        self.request_started(index);
        ActiveRequest {
            balancer: self,
            index,
        }
    }

    /// This worker's active requests on host `index`.
    pub fn active_requests(&self, index: usize) -> u32 {
        self.active.get(index).map_or(0, Cell::get)
    }
}

/// A request counted as active on one host of a [`LoadBalancer`] (least-request uses the
/// counts); finished on drop.
pub struct ActiveRequest<'a> {
    balancer: &'a LoadBalancer,
    index: usize,
}

impl Drop for ActiveRequest<'_> {
    fn drop(&mut self) {
        self.balancer.request_finished(self.index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{
        CircuitBreakers, ClusterType, HostAddress, KeepaliveConfig, DEFAULT_CONNECT_TIMEOUT,
    };

    fn settings(lb: LbType, weights: &[u32]) -> HostSet {
        settings_with(lb, weights, 0, None)
    }

    fn settings_with(
        lb: LbType,
        weights: &[u32],
        healthy_panic_threshold: u32,
        consecutive_errors: Option<u32>,
    ) -> HostSet {
        let outlier_detection =
            consecutive_errors.map(|consecutive_errors| crate::config::OutlierDetectionConfig {
                consecutive_errors,
                interval: std::time::Duration::from_secs(10),
                base_ejection_time: std::time::Duration::from_secs(30),
                max_ejection_time: std::time::Duration::from_secs(300),
                max_ejection_percent: 10,
            });
        let counters = Arc::new(HealthCounters::new(weights.len()));
        HostSet::new(
            Arc::new(ClusterConfig {
                name: "c".into(),
                kind: ClusterType::Simple,
                lb,
                hosts: weights
                    .iter()
                    .enumerate()
                    .map(|(i, &weight)| HostConfig {
                        address: HostAddress::Ip(
                            format!("127.0.0.1:{}", 9000 + i)
                                .parse::<std::net::SocketAddr>()
                                .expect("addr"),
                        ),
                        hostname: None,
                        weight,
                        metadata: Default::default(),
                    })
                    .collect(),
                connect_timeout: DEFAULT_CONNECT_TIMEOUT,
                circuit_breakers: CircuitBreakers::default(),
                max_request_per_conn: 1024,
                conn_buffer_limit_bytes: 16384,
                keepalive: KeepaliveConfig::default(),
                pool_mode: None,
                health_check: None,
                outlier_detection,
                healthy_panic_threshold,
                dns: None,
                json_path: "c".into(),
            }),
            counters,
        )
    }

    fn counts(lb: &LoadBalancer, picks: usize) -> Vec<usize> {
        let mut counts = vec![0; lb.hosts().len()];
        for _ in 0..picks {
            counts[lb.choose().expect("a healthy host")] += 1;
        }
        counts
    }

    fn assert_share(counts: &[usize], i: usize, expected: f64) {
        let total: usize = counts.iter().sum();
        let share = counts[i] as f64 / total as f64;
        assert!(
            (share - expected).abs() < 0.03,
            "host {i}: share {share:.3}, expected {expected:.3} ({counts:?})"
        );
    }

    #[test]
    fn a_retry_avoids_the_host_it_failed_on_unless_it_is_the_only_one() {
        for lb_type in [LbType::Random, LbType::RoundRobin, LbType::LeastRequest] {
            let s = settings(lb_type, &[1, 1, 1]);
            let lb = s.balancer_with_rng(fastrand::Rng::with_seed(7));
            for _ in 0..200 {
                let first = lb.choose().unwrap();
                assert_ne!(lb.choose_avoiding(Some(first)), Some(first), "{lb_type:?}");
            }
            let one = settings(lb_type, &[1]);
            let lb = one.balancer_with_rng(fastrand::Rng::with_seed(7));
            assert_eq!(lb.choose_avoiding(Some(0)), Some(0), "{lb_type:?}");
        }
    }

    #[test]
    fn random_follows_weights() {
        let s = settings(LbType::Random, &[1, 3, 6]);
        let lb = s.balancer_with_rng(fastrand::Rng::with_seed(1));
        let c = counts(&lb, 50_000);
        assert_share(&c, 0, 0.1);
        assert_share(&c, 1, 0.3);
        assert_share(&c, 2, 0.6);
    }

    #[test]
    fn round_robin_is_smooth_and_exact_per_cycle() {
        let s = settings(LbType::RoundRobin, &[5, 1, 1]);
        let lb = s.balancer_with_rng(fastrand::Rng::with_seed(3));
        // Over every full cycle of total weight 7, each host is picked weight times, and
        // the heavy host is interleaved (a naive weighted round robin runs it 5 in a row;
        // the smooth one gives a a b a c a a, at most 4 in a row across cycles).
        let picks: Vec<usize> = (0..70).map(|_| lb.choose().expect("host")).collect();
        for cycle in picks.chunks(7) {
            let mut c = [0; 3];
            for &p in cycle {
                c[p] += 1;
            }
            assert_eq!(c, [5, 1, 1], "{picks:?}");
        }
        let longest_run = picks
            .chunk_by(|a, b| a == b)
            .map(<[usize]>::len)
            .max()
            .unwrap_or(0);
        assert!(longest_run <= 4, "{picks:?}");
    }

    #[test]
    fn round_robin_starts_at_a_random_offset() {
        let s = settings(LbType::RoundRobin, &[1, 1, 1, 1, 1, 1, 1, 1]);
        let firsts: std::collections::HashSet<usize> = (0..64)
            .map(|seed| {
                s.balancer_with_rng(fastrand::Rng::with_seed(seed))
                    .choose()
                    .expect("host")
            })
            .collect();
        assert!(firsts.len() > 1, "every worker started on the same host");
    }

    #[test]
    fn unhealthy_hosts_are_skipped_by_every_policy() {
        for lb_type in [LbType::Random, LbType::RoundRobin, LbType::LeastRequest] {
            let s = settings(lb_type, &[1, 1, 1]);
            s.health().set_healthy(1, false);
            let lb = s.balancer_with_rng(fastrand::Rng::with_seed(9));
            let c = counts(&lb, 3_000);
            assert_eq!(c[1], 0, "{lb_type}: {c:?}");
            assert!(c[0] > 0 && c[2] > 0, "{lb_type}: {c:?}");
            s.health().set_healthy(0, false);
            s.health().set_healthy(2, false);
            assert_eq!(lb.choose(), None, "{lb_type}");
            s.health().set_healthy(2, true);
            assert_eq!(lb.choose(), Some(2), "{lb_type}");
        }
    }

    #[test]
    fn empty_cluster_has_no_host() {
        for lb_type in [LbType::Random, LbType::RoundRobin, LbType::LeastRequest] {
            let lb = settings(lb_type, &[]).balancer();
            assert_eq!(lb.choose(), None);
        }
    }

    #[test]
    fn round_robin_spreads_over_the_remaining_hosts_when_one_is_down() {
        let s = settings(LbType::RoundRobin, &[2, 1, 1]);
        s.health().set_healthy(0, false);
        let lb = s.balancer_with_rng(fastrand::Rng::with_seed(5));
        let c = counts(&lb, 100);
        assert_eq!(c, [0, 50, 50]);
    }

    #[test]
    fn least_request_prefers_idle_hosts() {
        let s = settings(LbType::LeastRequest, &[1, 1]);
        let lb = s.balancer_with_rng(fastrand::Rng::with_seed(11));
        for _ in 0..5 {
            lb.request_started(0);
        }
        // With two hosts both are always the two choices: the idle one wins.
        for _ in 0..100 {
            assert_eq!(lb.choose(), Some(1));
        }
        for _ in 0..5 {
            lb.request_finished(0);
        }
        lb.request_started(1);
        assert_eq!(lb.choose(), Some(0));
        assert_eq!(lb.active_requests(1), 1);
        lb.request_finished(1);
        lb.request_finished(1);
        assert_eq!(lb.active_requests(1), 0, "saturates at zero");
    }

    #[test]
    fn least_request_avoids_the_busiest_of_many() {
        let s = settings(LbType::LeastRequest, &[1, 1, 1, 1]);
        let lb = s.balancer_with_rng(fastrand::Rng::with_seed(13));
        for _ in 0..10 {
            lb.request_started(2);
        }
        let c = counts(&lb, 4_000);
        // Host 2 can only win when drawn twice, which two distinct choices never do.
        assert_eq!(c[2], 0, "{c:?}");
    }

    #[test]
    fn weighted_least_request_uses_weight_over_active() {
        let s = settings(LbType::LeastRequest, &[4, 1]);
        let lb = s.balancer_with_rng(fastrand::Rng::with_seed(17));
        // Idle: 4/1 beats 1/1.
        assert_eq!(lb.choose(), Some(0));
        // 4/(4+1) = 0.8 still beats 1/(0+1) = 1? No: 0.8 < 1, host 1 wins.
        for _ in 0..4 {
            lb.request_started(0);
        }
        assert_eq!(lb.choose(), Some(1));
        // 4/(2+1) = 1.33 beats 1.
        lb.request_finished(0);
        lb.request_finished(0);
        assert_eq!(lb.choose(), Some(0));
    }

    #[test]
    fn health_flags_are_shared_by_all_workers() {
        let s = settings(LbType::RoundRobin, &[1, 1]);
        let w1 = s.balancer();
        let w2 = s.balancer();
        s.health().set_healthy(0, false);
        assert_eq!(w1.choose(), Some(1));
        assert_eq!(w2.choose(), Some(1));
        assert!(!s.health().is_healthy(7));
        assert_eq!(s.health().len(), 2);
    }

    #[test]
    fn below_the_panic_threshold_every_host_is_used() {
        for lb_type in [LbType::Random, LbType::RoundRobin, LbType::LeastRequest] {
            let s = settings_with(lb_type, &[1, 1, 1, 1], 50, None);
            let lb = s.balancer_with_rng(fastrand::Rng::with_seed(21));
            let h = s.health();
            let c = h.counters();
            assert_eq!(c.cluster.healthy_hosts.get(), 4);
            h.set_healthy(0, false);
            h.set_ejected(1, true);
            // 2 of 4 healthy = 50%: not below the threshold, the two are skipped.
            assert!(!h.in_panic(), "{lb_type}");
            let counts_half = counts(&lb, 400);
            assert_eq!((counts_half[0], counts_half[1]), (0, 0), "{lb_type}");
            assert_eq!(c.cluster.panic_mode.get(), 0);
            h.set_healthy(2, false);
            // 1 of 4 = 25% < 50%: panic, every host is a candidate again.
            assert!(h.in_panic(), "{lb_type}");
            assert_eq!(c.cluster.panic_mode.get(), 1);
            assert_eq!(c.cluster.healthy_hosts.get(), 1);
            let all = counts(&lb, 400);
            assert!(all.iter().all(|&n| n > 0), "{lb_type}: {all:?}");
            h.set_healthy(0, true);
            assert!(!h.in_panic(), "{lb_type}: 2 of 4 again");
            assert_eq!(c.hosts[0].healthy.get(), 1);
            assert_eq!(c.hosts[1].ejected.get(), 1);
            assert_eq!(c.hosts[2].healthy.get(), 0);
        }
    }

    #[test]
    fn panic_arithmetic_is_strictly_below_the_share() {
        assert!(!in_panic(1, 2, 50));
        assert!(in_panic(0, 2, 50));
        assert!(in_panic(2, 5, 50));
        assert!(!in_panic(0, 2, 0), "0 turns panic mode off");
        assert!(!in_panic(0, 0, 50), "no hosts, no panic");
        assert!(in_panic(99, 100, 100));
    }

    #[test]
    fn a_threshold_of_zero_never_panics_and_no_healthy_host_means_none() {
        let s = settings_with(LbType::RoundRobin, &[1, 1], 0, None);
        s.health().set_healthy(0, false);
        s.health().set_ejected(1, true);
        assert_eq!(s.balancer().choose(), None);
        assert!(!s.health().set_ejected(1, true), "unchanged");
        assert!(s.health().set_ejected(1, false));
        assert_eq!(s.balancer().choose(), Some(1));
    }

    #[test]
    fn failure_streaks_are_counted_only_with_outlier_detection_and_wake_the_ejector() {
        let off = settings(LbType::Random, &[1]);
        off.health().record_try(0, false);
        assert_eq!(off.health().consecutive_failures(0), 0);

        let s = settings_with(LbType::Random, &[1, 1], 0, Some(3));
        let h = s.health();
        h.record_try(0, false);
        h.record_try(0, false);
        h.record_try(0, true);
        assert_eq!(h.consecutive_failures(0), 0, "a success ends the streak");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let woken = h.outlier_wake().notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            h.record_try(1, false);
            h.record_try(1, false);
            assert!(
                tokio::time::timeout(std::time::Duration::ZERO, woken.as_mut())
                    .await
                    .is_err(),
                "two of three: no wake-up"
            );
            h.record_try(1, false);
            tokio::time::timeout(std::time::Duration::from_secs(5), woken)
                .await
                .expect("the third failure wakes the ejector");
        });
        assert_eq!(h.consecutive_failures(1), 3);
        h.reset_failures(1);
        assert_eq!(h.consecutive_failures(1), 0);
    }
}

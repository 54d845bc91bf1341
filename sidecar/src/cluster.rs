//! Clusters at run time, in three parts:
//! * [`HostSet`] (one per cluster per process): the cluster's hosts with their live health
//!   flags, atomics that only a health checker writes;
//! * [`LoadBalancer`] (one per cluster per worker), built from the host set: that worker's
//!   LB state and per-host active-request counts, `!Sync`, in `Cell`s, so the request path
//!   takes no lock;
//! * [`CircuitBreaker`] (one per cluster per process): `max_requests` across all workers.

mod lb;

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use crate::config::{ClusterConfig, HostConfig, LbType};
use lb::{Algorithm, HostView};

/// Health flags of a cluster's hosts, shared by every worker. Hosts are healthy unless
/// marked otherwise.
#[derive(Debug)]
pub struct HostHealth {
    healthy: Box<[AtomicBool]>,
}

impl HostHealth {
    /// `hosts` hosts, all healthy.
    pub fn all_healthy(hosts: usize) -> HostHealth {
        HostHealth {
            healthy: (0..hosts).map(|_| AtomicBool::new(true)).collect(),
        }
    }

    /// Whether host `index` is healthy (unknown indices are not).
    pub fn is_healthy(&self, index: usize) -> bool {
        self.healthy
            .get(index)
            .is_some_and(|h| h.load(Ordering::Relaxed))
    }

    /// Marks host `index` healthy or not; unknown indices are ignored.
    pub fn set_healthy(&self, index: usize, healthy: bool) {
        if let Some(h) = self.healthy.get(index) {
            h.store(healthy, Ordering::Relaxed);
        }
    }

    /// Number of hosts.
    pub fn len(&self) -> usize {
        self.healthy.len()
    }

    /// True for a cluster without hosts.
    pub fn is_empty(&self) -> bool {
        self.healthy.is_empty()
    }
}

/// A cluster's hosts (its config) and their live health flags, shared by every worker;
/// each worker builds its own [`LoadBalancer`] from it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct HostSet {
    config: Arc<ClusterConfig>,
    health: Arc<HostHealth>,
}

impl HostSet {
    /// Settings for `config`, every host healthy.
    pub fn new(config: Arc<ClusterConfig>) -> HostSet {
        let health = Arc::new(HostHealth::all_healthy(config.hosts.len()));
        HostSet { config, health }
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
        let weights: Box<[u32]> = self.config.hosts.iter().map(|h| h.weight).collect();
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
    /// no-healthy-upstream error). Returns an index into [`LoadBalancer::hosts`].
    pub fn choose(&self) -> Option<usize> {
        let health = &self.settings.health;
        let healthy = |i: usize| health.is_healthy(i);
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

    /// The cluster's hosts.
    pub fn hosts(&self) -> &[HostConfig] {
        &self.settings.config.hosts
    }

    /// Host `index`.
    pub fn host(&self, index: usize) -> Option<&HostConfig> {
        self.settings.config.hosts.get(index)
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

/// The `max_requests` circuit breaker of a cluster: requests in flight across all workers.
#[derive(Debug)]
pub struct CircuitBreaker {
    max_requests: usize,
    active: AtomicUsize,
}

impl CircuitBreaker {
    /// A breaker admitting at most `max_requests` at once (0 = unlimited).
    pub fn new(max_requests: usize) -> CircuitBreaker {
        CircuitBreaker {
            max_requests,
            active: AtomicUsize::new(0),
        }
    }

    /// Admits one request; `None` on overflow. The slot is released when the returned guard
    /// is dropped.
    pub fn admit(&self) -> Option<Admission<'_>> {
        let now = self.active.fetch_add(1, Ordering::Relaxed) + 1;
        if self.max_requests != 0 && now > self.max_requests {
            self.active.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(Admission { breaker: self })
    }
}

/// A request counted against a [`CircuitBreaker`]; released on drop.
pub struct Admission<'a> {
    breaker: &'a CircuitBreaker,
}

impl Drop for Admission<'_> {
    fn drop(&mut self) {
        self.breaker.active.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{
        CircuitBreakers, ClusterType, HostAddress, KeepaliveConfig, DEFAULT_CONNECT_TIMEOUT,
    };

    fn settings(lb: LbType, weights: &[u32]) -> HostSet {
        HostSet::new(Arc::new(ClusterConfig {
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
            json_path: "c".into(),
        }))
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
    fn the_breaker_admits_up_to_its_limit_and_releases_on_drop() {
        let breaker = CircuitBreaker::new(2);
        let a = breaker.admit().expect("first");
        let _b = breaker.admit().expect("second");
        assert!(breaker.admit().is_none(), "third overflows");
        drop(a);
        assert!(breaker.admit().is_some(), "a released slot is reused");
        let unlimited = CircuitBreaker::new(0);
        let held: Vec<_> = (0..1000)
            .map(|_| unlimited.admit().expect("unlimited"))
            .collect();
        assert_eq!(held.len(), 1000);
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
}

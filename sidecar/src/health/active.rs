//! Active health checks of one host: MOSN's threshold rule ([`ActiveCheck`], a pure state
//! machine) and the task that runs [`Probe`]s on a timer and writes the host's flag.

use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use super::probe::Probe;
use crate::cluster::{HostHealth, HostSlots};
use crate::config::{HealthCheckConfig, FIRST_CHECK_AFTER};

/// A state change of a host by its checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// No change.
    None,
    /// `unhealthy_threshold` failures in a row: out of rotation.
    BecameUnhealthy,
    /// `healthy_threshold` passes in a row: back in rotation.
    BecameHealthy,
}

/// MOSN's `sessionChecker` rule: a healthy host turns unhealthy after `unhealthy_threshold`
/// consecutive failures, an unhealthy one healthy after `healthy_threshold` consecutive
/// passes; any other result resets the opposite streak. A host starts healthy.
#[derive(Debug, Clone)]
pub struct ActiveCheck {
    healthy_threshold: u32,
    unhealthy_threshold: u32,
    passes: u32,
    failures: u32,
    failed: bool,
}

impl ActiveCheck {
    /// A healthy host under these thresholds (0 counts as 1).
    pub fn new(healthy_threshold: u32, unhealthy_threshold: u32) -> ActiveCheck {
        ActiveCheck {
            healthy_threshold: healthy_threshold.max(1),
            unhealthy_threshold: unhealthy_threshold.max(1),
            passes: 0,
            failures: 0,
            failed: false,
        }
    }

    /// True while the host is unhealthy.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// A check passed.
    pub fn passed(&mut self) -> Transition {
        self.failures = 0;
        if !self.failed {
            return Transition::None;
        }
        self.passes += 1;
        if self.passes < self.healthy_threshold {
            return Transition::None;
        }
        self.passes = 0;
        self.failed = false;
        Transition::BecameHealthy
    }

    /// A check failed.
    pub fn failed(&mut self) -> Transition {
        self.passes = 0;
        if self.failed {
            return Transition::None;
        }
        self.failures += 1;
        if self.failures < self.unhealthy_threshold {
            return Transition::None;
        }
        self.failures = 0;
        self.failed = true;
        Transition::BecameUnhealthy
    }
}

/// One host slot under active checks.
pub struct CheckedHost {
    /// The cluster's health flags.
    pub health: Arc<HostHealth>,
    /// The cluster's host slots (where to connect: read before every check).
    pub slots: Arc<HostSlots>,
    /// The host's slot in the cluster.
    pub index: usize,
}

/// Checks `host` forever: the first check after `min(interval, 1 s)` (MOSN's first
/// interval), then one `interval` (plus up to `interval_jitter`) after each check ends. An
/// empty slot (a `STRICT_DNS` name resolved to fewer addresses) is not checked; a new
/// address in the slot starts a new host's streaks.
pub async fn run(host: CheckedHost, probe: Rc<Probe>, config: HealthCheckConfig) {
    let CheckedHost {
        health,
        slots,
        index,
    } = host;
    let Some(counters) = health.counters().hosts.get(index) else {
        return;
    };
    let cluster = health.cluster().to_owned();
    let mut rng = fastrand::Rng::new();
    let jitter = |rng: &mut fastrand::Rng| {
        let max = config.interval_jitter.as_nanos() as u64;
        Duration::from_nanos(if max == 0 { 0 } else { rng.u64(0..max) })
    };
    let mut check = ActiveCheck::new(config.healthy_threshold, config.unhealthy_threshold);
    tokio::time::sleep(config.interval.min(FIRST_CHECK_AFTER) + jitter(&mut rng)).await;
    let mut id: u64 = 0;
    let mut generation = slots.generation(index);
    loop {
        let seen = slots.generation(index);
        if seen != generation {
            generation = seen;
            check = ActiveCheck::new(config.healthy_threshold, config.unhealthy_threshold);
        }
        let Some(addr) = slots.addr(index) else {
            tokio::time::sleep(config.interval + jitter(&mut rng)).await;
            continue;
        };
        id = id.wrapping_add(1).max(1);
        counters.health_check_attempt.inc();
        let result = probe.check(addr, config.timeout, id).await;
        if slots.generation(index) != generation {
            // The address changed during the check: its result is about the old host.
            continue;
        }
        match result {
            Ok(()) => {
                counters.health_check_success.inc();
                if check.passed() == Transition::BecameHealthy {
                    health.set_healthy(index, true);
                    info!(%cluster, host = %addr, passes = config.healthy_threshold,
                        "upstream host healthy again: health checks pass");
                }
            }
            Err(e) => {
                counters.health_check_failure.inc();
                debug!(%cluster, host = %addr, cause = %e, "health check failed");
                if check.failed() == Transition::BecameUnhealthy {
                    health.set_healthy(index, false);
                    warn!(%cluster, host = %addr, failures = config.unhealthy_threshold,
                        cause = %e, "upstream host unhealthy: health checks fail; out of rotation");
                }
            }
        }
        tokio::time::sleep(config.interval + jitter(&mut rng)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::HealthCheckKind;
    use crate::stats::HealthCounters;

    #[test]
    fn thresholds_count_consecutive_results_only() {
        let mut c = ActiveCheck::new(2, 3);
        assert_eq!(c.failed(), Transition::None);
        assert_eq!(c.failed(), Transition::None);
        assert_eq!(
            c.passed(),
            Transition::None,
            "a pass resets the failure streak"
        );
        assert_eq!(c.failed(), Transition::None);
        assert_eq!(c.failed(), Transition::None);
        assert!(!c.is_failed());
        assert_eq!(c.failed(), Transition::BecameUnhealthy);
        assert!(c.is_failed());
        assert_eq!(c.failed(), Transition::None, "already unhealthy");
        assert_eq!(c.passed(), Transition::None);
        assert_eq!(
            c.failed(),
            Transition::None,
            "a failure resets the pass streak"
        );
        assert_eq!(c.passed(), Transition::None);
        assert_eq!(c.passed(), Transition::BecameHealthy);
        assert!(!c.is_failed());
        assert_eq!(c.passed(), Transition::None);
    }

    #[test]
    fn a_zero_threshold_acts_as_one() {
        let mut c = ActiveCheck::new(0, 0);
        assert_eq!(c.failed(), Transition::BecameUnhealthy);
        assert_eq!(c.passed(), Transition::BecameHealthy);
    }

    /// A host behind a closed port leaves rotation after exactly `unhealthy_threshold`
    /// checks, and once it listens comes back after `healthy_threshold`. Real time (real
    /// sockets do not mix with a paused clock), short intervals, steps ordered by counts.
    #[test]
    fn the_task_flips_the_shared_flag_at_the_thresholds() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        tokio::task::LocalSet::new().block_on(&rt, async {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            drop(listener); // closed: every connect is refused at once
            let health = Arc::new(HostHealth::new(
                "c",
                1,
                0,
                None,
                Arc::new(HealthCounters::new(1)),
            ));
            let config = HealthCheckConfig {
                protocol: String::new(),
                kind: HealthCheckKind::TcpConnect,
                timeout: Duration::from_secs(5),
                interval: Duration::from_millis(5),
                interval_jitter: Duration::ZERO,
                healthy_threshold: 2,
                unhealthy_threshold: 3,
                service_name: None,
            };
            let task = tokio::task::spawn_local(run(
                CheckedHost {
                    health: health.clone(),
                    slots: Arc::new(HostSlots::fixed(&[addr])),
                    index: 0,
                },
                Rc::new(Probe::TcpConnect),
                config,
            ));
            let counters = &health.counters().hosts[0];
            let give_up = tokio::time::Instant::now() + Duration::from_secs(20);
            // Flag and counters change in one step of the task, so every poll of this
            // (same-thread) loop sees them consistent: healthy exactly until the third
            // failure.
            loop {
                let failures = counters.health_check_failure.get();
                assert_eq!(health.is_healthy(0), failures < 3, "{failures} failures");
                assert_eq!(counters.healthy.get(), u64::from(failures < 3));
                if failures >= 4 {
                    break;
                }
                assert!(tokio::time::Instant::now() < give_up, "checks stalled");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            // The host comes up: healthy again exactly at the second pass.
            let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
            loop {
                let passes = counters.health_check_success.get();
                assert_eq!(health.is_healthy(0), passes >= 2, "{passes} passes");
                if passes >= 3 {
                    break;
                }
                assert!(tokio::time::Instant::now() < give_up, "checks stalled");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            drop(listener);
            task.abort();
        });
    }
}

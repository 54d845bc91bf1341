//! Passive outlier ejection of one cluster (Envoy's consecutive-errors detector): the
//! request path counts each host's failed tries in a row ([`HostHealth::record_try`], shared
//! atomics), and one task per cluster on the health thread ejects a host whose streak
//! reaches `consecutive_errors` for `base_ejection_time` × times ejected (at most
//! `max_ejection_time`), never more than `max_ejection_percent` of the hosts at once (one
//! host always may be), and lets it back when the time has passed. [`Ejector`] is the
//! decision, over explicit instants; [`run`] the task.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{info, warn};

use crate::cluster::{HostHealth, HostSlots};
use crate::config::OutlierDetectionConfig;

/// What [`Ejector::try_eject`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Ejected for this long.
    Ejected(Duration),
    /// Not ejected: it would put the cluster past `max_ejection_percent`.
    Overflow,
    /// Already ejected.
    AlreadyEjected,
}

#[derive(Debug, Clone, Copy, Default)]
struct Ejection {
    until: Option<Instant>,
    /// The ejection multiplier: times ejected, less one per interval spent in rotation.
    times: u32,
}

/// Ejection state of one cluster's hosts.
#[derive(Debug)]
pub struct Ejector {
    config: OutlierDetectionConfig,
    hosts: Vec<Ejection>,
}

impl Ejector {
    /// Nothing ejected, for `hosts` hosts.
    pub fn new(config: OutlierDetectionConfig, hosts: usize) -> Ejector {
        Ejector {
            config,
            hosts: vec![Ejection::default(); hosts],
        }
    }

    /// Whether host `index` is ejected.
    pub fn is_ejected(&self, index: usize) -> bool {
        self.hosts.get(index).is_some_and(|h| h.until.is_some())
    }

    /// Hosts ejected now.
    pub fn ejected(&self) -> usize {
        self.hosts.iter().filter(|h| h.until.is_some()).count()
    }

    /// Ejects host `index` at `now` unless that would eject more than
    /// `max_ejection_percent` of the `total` hosts present (the first ejection is always
    /// allowed).
    pub fn try_eject(&mut self, index: usize, now: Instant, total: usize) -> Verdict {
        let total = total as u64;
        let ejected = self.ejected() as u64;
        let Some(h) = self.hosts.get_mut(index) else {
            return Verdict::AlreadyEjected;
        };
        if h.until.is_some() {
            return Verdict::AlreadyEjected;
        }
        if ejected > 0 && (ejected + 1) * 100 > u64::from(self.config.max_ejection_percent) * total
        {
            return Verdict::Overflow;
        }
        h.times = h.times.saturating_add(1);
        let time = self
            .config
            .base_ejection_time
            .saturating_mul(h.times)
            .min(self.config.max_ejection_time);
        h.until = Some(now + time);
        Verdict::Ejected(time)
    }

    /// Hosts whose ejection has ended by `now`, now back.
    pub fn returns(&mut self, now: Instant) -> Vec<usize> {
        let mut back = Vec::new();
        for (i, h) in self.hosts.iter_mut().enumerate() {
            if h.until.is_some_and(|u| u <= now) {
                h.until = None;
                back.push(i);
            }
        }
        back
    }

    /// The next ejection to end.
    pub fn next_return(&self) -> Option<Instant> {
        self.hosts.iter().filter_map(|h| h.until).min()
    }

    /// One `interval` passed: hosts in rotation lose one step of their multiplier.
    pub fn sweep(&mut self) {
        for h in self.hosts.iter_mut().filter(|h| h.until.is_none()) {
            h.times = h.times.saturating_sub(1);
        }
    }
}

/// Runs outlier ejection for the cluster of `health` (whose hosts are in `slots`, for logs)
/// until the health thread stops.
pub async fn run(health: Arc<HostHealth>, slots: Arc<HostSlots>, config: OutlierDetectionConfig) {
    let host = |i: usize| {
        slots
            .addr(i)
            .map_or_else(|| format!("slot {i}"), |a| a.to_string())
    };
    let cluster = health.cluster().to_owned();
    let counters = health.counters().clone();
    let hosts = health.len();
    let mut ejector = Ejector::new(config, hosts);
    let mut next_sweep = Instant::now() + config.interval;
    loop {
        let wake = ejector
            .next_return()
            .map_or(next_sweep, |r| r.min(next_sweep));
        tokio::select! {
            _ = health.outlier_wake().notified() => {}
            _ = tokio::time::sleep_until(wake) => {}
        }
        let now = Instant::now();
        for i in ejector.returns(now) {
            health.reset_failures(i);
            health.set_ejected(i, false);
            info!(%cluster, host = %host(i), "upstream host back from outlier ejection");
        }
        if now >= next_sweep {
            ejector.sweep();
            next_sweep = now + config.interval;
        }
        for i in 0..hosts {
            if ejector.is_ejected(i) || health.consecutive_failures(i) < config.consecutive_errors {
                continue;
            }
            // A new streak is needed either way: the next decision is after `n` more.
            health.reset_failures(i);
            match ejector.try_eject(i, now, health.present()) {
                Verdict::Ejected(time) => {
                    health.set_ejected(i, true);
                    if let Some(c) = counters.hosts.get(i) {
                        c.outlier_ejections.inc();
                    }
                    warn!(%cluster, host = %host(i), ?time, failures = config.consecutive_errors,
                        "upstream host ejected: consecutive failures");
                }
                Verdict::Overflow => {
                    counters.cluster.outlier_ejections_overflow.inc();
                    warn!(%cluster, host = %host(i), max_percent = config.max_ejection_percent,
                        "upstream host not ejected: max_ejection_percent reached");
                }
                Verdict::AlreadyEjected => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::HealthCounters;

    fn config(max_ejection_percent: u32) -> OutlierDetectionConfig {
        OutlierDetectionConfig {
            consecutive_errors: 3,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(100),
            max_ejection_percent,
        }
    }

    #[test]
    fn ejection_time_grows_with_each_ejection_up_to_the_cap_and_shrinks_in_rotation() {
        let t0 = Instant::now();
        let mut e = Ejector::new(config(100), 2);
        let mut now = t0;
        let mut times = Vec::new();
        for _ in 0..4 {
            let Verdict::Ejected(d) = e.try_eject(0, now, 2) else {
                panic!("ejects");
            };
            times.push(d.as_secs());
            assert_eq!(e.try_eject(0, now, 2), Verdict::AlreadyEjected);
            assert_eq!(e.next_return(), Some(now + d));
            assert!(e.returns(now + d - Duration::from_millis(1)).is_empty());
            now += d;
            assert_eq!(e.returns(now), [0]);
            assert!(!e.is_ejected(0));
        }
        assert_eq!(
            times,
            [30, 60, 90, 100],
            "base × n, capped at max_ejection_time"
        );
        // Two intervals in rotation take the multiplier from 4 to 2: the next is 3 × base.
        e.sweep();
        e.sweep();
        assert_eq!(
            e.try_eject(0, now, 2),
            Verdict::Ejected(Duration::from_secs(90))
        );
        // An ejected host's multiplier does not shrink.
        e.sweep();
        let back = now + Duration::from_secs(90);
        assert_eq!(e.returns(back), [0]);
        assert_eq!(
            e.try_eject(0, back, 2),
            Verdict::Ejected(Duration::from_secs(100))
        );
    }

    #[test]
    fn max_ejection_percent_bounds_the_ejected_share_but_one_host_always_may_go() {
        let now = Instant::now();
        let mut e = Ejector::new(config(50), 4);
        assert!(matches!(e.try_eject(0, now, 4), Verdict::Ejected(_)));
        assert!(
            matches!(e.try_eject(1, now, 4), Verdict::Ejected(_)),
            "2 of 4 = 50%"
        );
        assert_eq!(e.try_eject(2, now, 4), Verdict::Overflow, "3 of 4 > 50%");
        assert_eq!(e.ejected(), 2);

        let mut three = Ejector::new(config(50), 3);
        assert!(matches!(three.try_eject(0, now, 3), Verdict::Ejected(_)));
        assert_eq!(
            three.try_eject(1, now, 3),
            Verdict::Overflow,
            "2 of 3 > 50%"
        );

        let mut tiny = Ejector::new(config(10), 2);
        assert!(
            matches!(tiny.try_eject(1, now, 2), Verdict::Ejected(_)),
            "10% of 2 hosts is less than one, but one host may always be ejected"
        );
        assert_eq!(tiny.try_eject(0, now, 2), Verdict::Overflow);
    }

    /// The task with paused time: failures reported through the shared health eject at the
    /// threshold, the overflowing host stays, and the ejected one returns after its time.
    #[test]
    fn the_task_ejects_on_a_streak_and_returns_after_the_ejection_time() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        rt.block_on(async {
            let health = Arc::new(HostHealth::new(
                "c",
                3,
                0,
                Some(3),
                Arc::new(HealthCounters::new(3)),
            ));
            let addrs: Vec<std::net::SocketAddr> =
                (1..=3).map(|p| ([127, 0, 0, 1], p).into()).collect();
            let slots = Arc::new(HostSlots::fixed(&addrs));
            let task = tokio::spawn(run(health.clone(), slots, config(50)));
            let settle = || tokio::time::sleep(Duration::from_millis(1));
            for _ in 0..2 {
                health.record_try(1, false);
            }
            settle().await;
            assert!(!health.is_ejected(1), "two of three");
            health.record_try(1, false);
            settle().await;
            assert!(health.is_ejected(1), "the third failure ejects");
            assert!(!health.is_healthy(1));
            let c = health.counters();
            assert_eq!(c.hosts[1].outlier_ejections.get(), 1);
            assert_eq!(c.hosts[1].ejected.get(), 1);
            assert_eq!(c.cluster.healthy_hosts.get(), 2);
            for _ in 0..3 {
                health.record_try(2, false);
            }
            settle().await;
            assert!(!health.is_ejected(2), "2 of 3 would pass 50%");
            assert_eq!(c.cluster.outlier_ejections_overflow.get(), 1);
            tokio::time::sleep(Duration::from_secs(29)).await;
            assert!(health.is_ejected(1), "ejected for 30 s");
            tokio::time::sleep(Duration::from_secs(2)).await;
            assert!(!health.is_ejected(1), "back after 30 s");
            assert_eq!(c.hosts[1].ejected.get(), 0);
            assert_eq!(health.consecutive_failures(1), 0);
            task.abort();
        });
    }
}

//! `STRICT_DNS` names kept current: each name is resolved at start (before the first request
//! is accepted), then every `dns_refresh_rate` (or its answer's TTL + 1 s with
//! `respect_dns_ttl`), and at once when a connect to one of its addresses fails. An answer
//! moves addresses in and out of the name's host slots ([`HostSlots::apply`]); a failed
//! resolution keeps them (as MOSN and Envoy do), a name that no longer exists or has no
//! address empties them.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::cluster::{HostHealth, HostSlots};
use crate::config::DnsConfig;
use crate::dns::{DnsError, Resolver};

/// After a connect failure triggered a resolution, further failures wait this long (or the
/// refresh period, if shorter) before triggering another: a dead host with many requests
/// must not turn into a stream of queries.
const MIN_TRIGGERED_INTERVAL: Duration = Duration::from_secs(1);

/// One cluster's name resolution.
pub struct ClusterNames {
    /// The cluster's name (logs).
    pub cluster: String,
    /// Its host slots.
    pub slots: Arc<HostSlots>,
    /// Its health flags (slots gain and lose hosts there).
    pub health: Arc<HostHealth>,
    /// Its DNS settings.
    pub config: DnsConfig,
}

impl ClusterNames {
    /// Resolves name `name` once and applies the answer; returns when to resolve it next.
    pub async fn refresh(&self, resolver: &Resolver, name: usize) -> Duration {
        let n = &self.slots.names()[name];
        let counters = self.health.counters();
        counters.cluster.dns_resolutions.inc();
        let outcome = resolver.resolve(&n.host).await;
        let (addrs, ttl) = match outcome {
            Ok(r) => (r.addrs, r.ttl),
            Err(DnsError::NoRecords(_)) => (Vec::new(), None),
            Err(e @ DnsError::Failed { .. }) => {
                counters.cluster.dns_failures.inc();
                warn!(cluster = %self.cluster, name = %n.host, cause = %e,
                    "DNS resolution failed; keeping the current hosts");
                return self.config.refresh_rate;
            }
        };
        let changes = self.slots.apply(name, &addrs);
        for (slot, addr) in &changes.left {
            self.health.set_present(*slot, false);
            info!(cluster = %self.cluster, name = %n.host, host = %addr,
                "host left (no longer in DNS): its connections drain");
        }
        for (slot, addr) in &changes.joined {
            self.health.set_present(*slot, true);
            info!(cluster = %self.cluster, name = %n.host, host = %addr, "host joined from DNS");
        }
        if changes.dropped > 0 {
            warn!(cluster = %self.cluster, name = %n.host, dropped = changes.dropped,
                max = self.config.max_hosts,
                "name resolves to more addresses than dns_max_hosts; the rest are not used");
        }
        if !changes.joined.is_empty() || !changes.left.is_empty() {
            counters.cluster.dns_host_changes.inc();
        }
        if addrs.is_empty() {
            warn!(cluster = %self.cluster, name = %n.host, "name has no address: no hosts");
        }
        debug!(cluster = %self.cluster, name = %n.host, addresses = addrs.len(), ?ttl, "resolved");
        match ttl {
            Some(ttl) if self.config.respect_ttl => ttl + Duration::from_secs(1),
            _ => self.config.refresh_rate,
        }
    }
}

/// Keeps name `name` of `names` resolved until the health thread stops; the first
/// resolution already happened (`first_wait` is what it returned).
pub async fn run(names: Arc<ClusterNames>, name: usize, first_wait: Duration) {
    let resolver = Resolver::new(&names.config);
    let trigger = names.slots.names()[name].resolve_now();
    let min_triggered = MIN_TRIGGERED_INTERVAL.min(names.config.refresh_rate);
    let mut next = Instant::now() + first_wait;
    // Connect failures trigger at most one resolution per `min_triggered`; the periodic ones
    // do not count against that.
    let mut last_triggered: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next) => {}
            _ = trigger.notified() => {
                let now = Instant::now();
                if let Some(earliest) = last_triggered.map(|t| t + min_triggered) {
                    if now < earliest {
                        // Too soon after the last triggered one: run at `earliest` instead,
                        // unless the period comes first.
                        next = next.min(earliest);
                        continue;
                    }
                }
                last_triggered = Some(now);
                debug!(cluster = %names.cluster, "connect failed: resolving again");
            }
        }
        let wait = names.refresh(&resolver, name).await;
        next = Instant::now() + wait;
    }
}

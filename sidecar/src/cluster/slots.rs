//! Where a cluster's hosts are. Every host has a fixed slot (an index shared by the balancer,
//! the pools, the health flags and the counters): one per static host, and `dns_max_hosts`
//! per `STRICT_DNS` name, filled with the addresses the name resolves to. A re-resolution
//! moves addresses in and out of a name's slots; a slot whose address changes gets a new
//! generation, and each worker's pool drains its connections to the old address when it
//! sees one. Addresses are read on connect, not per request.

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

use tokio::sync::Notify;

use crate::config::{ClusterConfig, HostAddress, HostConfig};

/// One slot's current address and its generation (bumped on every change).
#[derive(Debug)]
struct Slot {
    addr: Mutex<Option<SocketAddr>>,
    generation: AtomicU32,
    /// The `STRICT_DNS` name filling this slot (index into `names`), if any.
    name: Option<usize>,
}

/// A `STRICT_DNS` host entry: the name, its port and its slots.
#[derive(Debug)]
pub struct DnsName {
    /// The host name as configured.
    pub host: String,
    /// The port every resolved address gets.
    pub port: u16,
    /// Its slots.
    pub slots: Range<usize>,
    /// Woken when a connect to one of its addresses fails: resolve again now.
    resolve_now: Notify,
}

impl DnsName {
    /// Notified when a connect to one of this name's addresses failed.
    pub fn resolve_now(&self) -> &Notify {
        &self.resolve_now
    }
}

/// How one re-resolution changed a name's slots.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SlotChanges {
    /// Slots that got an address (slot, address).
    pub joined: Vec<(usize, SocketAddr)>,
    /// Slots whose address went away (slot, old address).
    pub left: Vec<(usize, SocketAddr)>,
    /// Resolved addresses with no free slot (over `dns_max_hosts`).
    pub dropped: usize,
}

/// A cluster's host slots, shared by every worker and the health thread.
#[derive(Debug)]
pub struct HostSlots {
    slots: Box<[Slot]>,
    names: Vec<DnsName>,
}

impl HostSlots {
    /// The slots of `config`: static hosts hold their address; `STRICT_DNS` names' slots
    /// start empty (the first resolution fills them). Also returns each slot's host config
    /// (a name's config for each of its slots), index-aligned.
    pub fn new(config: &ClusterConfig) -> (HostSlots, Vec<HostConfig>) {
        let max_hosts = config.dns.as_ref().map_or(1, |d| d.max_hosts as usize);
        let mut slots = Vec::new();
        let mut hosts = Vec::new();
        let mut names = Vec::new();
        for h in &config.hosts {
            match &h.address {
                HostAddress::Ip(addr) => {
                    slots.push(Slot {
                        addr: Mutex::new(Some(*addr)),
                        generation: AtomicU32::new(0),
                        name: None,
                    });
                    hosts.push(h.clone());
                }
                HostAddress::Dns { host, port } => {
                    let start = slots.len();
                    for _ in 0..max_hosts {
                        slots.push(Slot {
                            addr: Mutex::new(None),
                            generation: AtomicU32::new(0),
                            name: Some(names.len()),
                        });
                        hosts.push(h.clone());
                    }
                    names.push(DnsName {
                        host: host.clone(),
                        port: *port,
                        slots: start..slots.len(),
                        resolve_now: Notify::new(),
                    });
                }
            }
        }
        (
            HostSlots {
                slots: slots.into_boxed_slice(),
                names,
            },
            hosts,
        )
    }

    /// Slots for static hosts at `addrs` (no names to resolve).
    pub fn fixed(addrs: &[SocketAddr]) -> HostSlots {
        HostSlots {
            slots: addrs
                .iter()
                .map(|a| Slot {
                    addr: Mutex::new(Some(*a)),
                    generation: AtomicU32::new(0),
                    name: None,
                })
                .collect(),
            names: Vec::new(),
        }
    }

    /// Each slot's stable name in the counters: the address of a static host, `name:port#k`
    /// for the `k`-th slot of a `STRICT_DNS` name (its address changes; the slot does not).
    pub fn labels(config: &ClusterConfig) -> Vec<String> {
        let max_hosts = config.dns.as_ref().map_or(1, |d| d.max_hosts as usize);
        let mut labels = Vec::new();
        for h in &config.hosts {
            match &h.address {
                HostAddress::Ip(addr) => labels.push(addr.to_string()),
                HostAddress::Dns { host, port } => {
                    labels.extend((0..max_hosts).map(|k| format!("{host}:{port}#{k}")));
                }
            }
        }
        labels
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True for a cluster without hosts.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Slot `index`'s current address (`None`: empty, or out of range).
    pub fn addr(&self, index: usize) -> Option<SocketAddr> {
        let slot = self.slots.get(index)?;
        *slot.addr.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Slot `index`'s generation: changes whenever its address does.
    pub fn generation(&self, index: usize) -> u32 {
        self.slots
            .get(index)
            .map_or(0, |s| s.generation.load(Ordering::Acquire))
    }

    /// The cluster's `STRICT_DNS` names.
    pub fn names(&self) -> &[DnsName] {
        &self.names
    }

    /// A connect to slot `index` failed: its name (if it has one) is resolved again now.
    pub fn connect_failed(&self, index: usize) {
        if let Some(name) = self.slots.get(index).and_then(|s| s.name) {
            self.names[name].resolve_now.notify_one();
        }
    }

    fn set(&self, index: usize, addr: Option<SocketAddr>) {
        let slot = &self.slots[index];
        *slot.addr.lock().unwrap_or_else(|e| e.into_inner()) = addr;
        slot.generation.fetch_add(1, Ordering::Release);
    }

    /// Makes name `name`'s slots hold exactly `resolved` (in order, at most one slot each):
    /// addresses already in a slot stay where they are, vanished ones leave their slot,
    /// new ones take the first free slots. An empty `resolved` empties every slot.
    pub fn apply(&self, name: usize, resolved: &[IpAddr]) -> SlotChanges {
        let Some(n) = self.names.get(name) else {
            return SlotChanges::default();
        };
        let wanted: Vec<SocketAddr> = resolved
            .iter()
            .map(|ip| SocketAddr::new(*ip, n.port))
            .collect();
        let mut changes = SlotChanges::default();
        let mut kept = Vec::new();
        for i in n.slots.clone() {
            if let Some(a) = self.addr(i) {
                if wanted.contains(&a) {
                    kept.push(a);
                } else {
                    self.set(i, None);
                    changes.left.push((i, a));
                }
            }
        }
        let mut free = n.slots.clone().filter(|&i| self.addr(i).is_none());
        for a in wanted.iter().filter(|a| !kept.contains(a)) {
            match free.next() {
                Some(i) => {
                    self.set(i, Some(*a));
                    changes.joined.push((i, *a));
                }
                None => changes.dropped += 1,
            }
        }
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{DnsConfig, LbType};

    pub(crate) fn dns_cluster(max_hosts: u32) -> ClusterConfig {
        use crate::config::{
            CircuitBreakers, ClusterType, KeepaliveConfig, DEFAULT_CONNECT_TIMEOUT,
        };
        let host = |address| HostConfig {
            address,
            hostname: None,
            weight: 1,
            metadata: Default::default(),
        };
        ClusterConfig {
            name: "c".into(),
            kind: ClusterType::StrictDns,
            lb: LbType::RoundRobin,
            hosts: vec![
                host(HostAddress::Ip("127.0.0.1:9000".parse().unwrap())),
                host(HostAddress::Dns {
                    host: "backend.test".into(),
                    port: 12200,
                }),
            ],
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            circuit_breakers: CircuitBreakers::default(),
            max_request_per_conn: 1024,
            conn_buffer_limit_bytes: 16384,
            keepalive: KeepaliveConfig::default(),
            pool_mode: None,
            health_check: None,
            outlier_detection: None,
            healthy_panic_threshold: 0,
            dns: Some(DnsConfig {
                max_hosts,
                ..DnsConfig::default()
            }),
            json_path: "c".into(),
        }
    }

    fn ips(last: &[u8]) -> Vec<IpAddr> {
        last.iter().map(|&b| IpAddr::from([10, 0, 0, b])).collect()
    }

    #[test]
    fn static_hosts_hold_their_address_and_names_start_empty() {
        let config = dns_cluster(3);
        let (slots, hosts) = HostSlots::new(&config);
        assert_eq!(slots.len(), 4);
        assert_eq!(hosts.len(), 4);
        assert_eq!(slots.addr(0), Some("127.0.0.1:9000".parse().unwrap()));
        assert_eq!((1..4).filter_map(|i| slots.addr(i)).count(), 0);
        assert_eq!(slots.names()[0].slots, 1..4);
        assert_eq!(
            HostSlots::labels(&config),
            [
                "127.0.0.1:9000",
                "backend.test:12200#0",
                "backend.test:12200#1",
                "backend.test:12200#2"
            ]
        );
    }

    #[test]
    fn addresses_keep_their_slot_and_changes_bump_only_their_generation() {
        let (slots, _) = HostSlots::new(&dns_cluster(3));
        let c = slots.apply(0, &ips(&[1, 2]));
        assert_eq!(c.joined.len(), 2);
        assert_eq!(slots.addr(1), Some("10.0.0.1:12200".parse().unwrap()));
        assert_eq!(slots.addr(2), Some("10.0.0.2:12200".parse().unwrap()));
        let g = (
            slots.generation(1),
            slots.generation(2),
            slots.generation(3),
        );

        // 1 vanishes, 3 appears: 2 stays in its slot, 3 takes the free ones in order.
        let c = slots.apply(0, &ips(&[3, 2]));
        assert_eq!(c.left, [(1, "10.0.0.1:12200".parse().unwrap())]);
        assert_eq!(c.joined, [(1, "10.0.0.3:12200".parse().unwrap())]);
        assert_eq!(
            slots.generation(2),
            g.1,
            "an address that stayed keeps its generation"
        );
        assert_eq!(slots.generation(1), g.0 + 2);
        assert_eq!(slots.generation(3), g.2);

        // The same answer again changes nothing.
        assert_eq!(slots.apply(0, &ips(&[2, 3])), SlotChanges::default());

        // More addresses than slots: the rest are dropped and counted.
        let c = slots.apply(0, &ips(&[2, 3, 4, 5]));
        assert_eq!((c.joined.len(), c.dropped), (1, 1));

        // Nothing resolved: every slot empties; the static host is untouched.
        let c = slots.apply(0, &[]);
        assert_eq!(c.left.len(), 3);
        assert_eq!((1..4).filter_map(|i| slots.addr(i)).count(), 0);
        assert_eq!(slots.addr(0), Some("127.0.0.1:9000".parse().unwrap()));
    }

    #[test]
    fn a_failed_connect_wakes_only_a_dns_name() {
        let (slots, _) = HostSlots::new(&dns_cluster(2));
        slots.connect_failed(0); // static: nothing to resolve
        slots.connect_failed(2);
        let woken = slots.names()[0].resolve_now().notified();
        // The stored permit completes the wait at once.
        futures_lite_now(woken);
    }

    fn futures_lite_now(f: impl std::future::Future<Output = ()>) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        rt.block_on(async {
            tokio::time::timeout(std::time::Duration::from_secs(5), f)
                .await
                .expect("notified");
        });
    }
}

//! `cluster_manager.clusters[]`: static host lists, load-balancing type, circuit breakers,
//! connect timeout and upstream keepalive settings.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use super::codec::PoolMode;
use super::dns::{parse_dns, DnsConfig};
use super::error::{invalid, ConfigError, Invalid, Warnings};
use super::health::{
    parse_health_check, parse_outlier_detection, parse_panic_threshold, HealthCheckConfig,
    OutlierDetectionConfig,
};
use super::json::{Item, Obj};

/// Connect timeout when `connect_timeout` is absent (MOSN: 10 s).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Idle time before a heartbeat is sent on an upstream connection (MOSN's fixed 15 s).
pub const DEFAULT_KEEPALIVE_IDLE: Duration = Duration::from_secs(15);
/// How long a heartbeat may wait for its ack (MOSN: 1 s).
pub const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(1);
/// Consecutive heartbeat timeouts before the connection is closed (MOSN: 6).
pub const DEFAULT_KEEPALIVE_MAX_FAILURES: u32 = 6;
/// `max_request_per_conn` default (MOSN: 1024; parsed, not enforced).
pub const DEFAULT_MAX_REQUEST_PER_CONN: u32 = 1024;
/// `conn_buffer_limit_bytes` default (MOSN: 16384; parsed, not enforced).
pub const DEFAULT_CONN_BUFFER_LIMIT_BYTES: u32 = 16384;
/// Host weights are clamped to this range (MOSN).
pub const HOST_WEIGHT_RANGE: std::ops::RangeInclusive<u32> = 1..=128;

/// One upstream cluster, validated.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Unique name (routes refer to it).
    pub name: String,
    /// Where hosts come from.
    pub kind: ClusterType,
    /// Load-balancing policy.
    pub lb: LbType,
    /// The hosts, in config order (LB host indices refer to this list).
    pub hosts: Vec<HostConfig>,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Limits from `circuit_breakers[0]`.
    pub circuit_breakers: CircuitBreakers,
    /// Parsed and reported, not enforced (as in MOSN for X protocols).
    pub max_request_per_conn: u32,
    /// Parsed and reported, not enforced (as in MOSN for X protocols).
    pub conn_buffer_limit_bytes: u32,
    /// Upstream heartbeat settings.
    pub keepalive: KeepaliveConfig,
    /// Pool mode override (our extension); `None` = the codec's mode.
    pub pool_mode: Option<PoolMode>,
    /// Active health checks (`health_check`); `None` = none run.
    pub health_check: Option<HealthCheckConfig>,
    /// Passive outlier ejection (`outlier_detection`); `None` = off.
    pub outlier_detection: Option<OutlierDetectionConfig>,
    /// Below this share of healthy hosts (percent) the balancer uses every host
    /// (`healthy_panic_threshold`; 0 = never).
    pub healthy_panic_threshold: u32,
    /// Name resolution of a `STRICT_DNS` cluster; `None` for static hosts.
    pub dns: Option<DnsConfig>,
    /// JSON path of this cluster, for messages.
    pub json_path: String,
}

impl ClusterConfig {
    /// The pool mode for traffic of a codec whose own mode is `codec_mode`.
    pub fn effective_pool_mode(&self, codec_mode: PoolMode) -> PoolMode {
        self.pool_mode.unwrap_or(codec_mode)
    }
}

/// `type`: only static hosts and strict DNS exist (others are built as SIMPLE, like MOSN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClusterType {
    /// Static hosts (`SIMPLE`).
    Simple,
    /// Host names resolved by the runtime (`STRICT_DNS`).
    StrictDns,
}

impl fmt::Display for ClusterType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ClusterType::Simple => "SIMPLE",
            ClusterType::StrictDns => "STRICT_DNS",
        })
    }
}

/// `lb_type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbType {
    /// `LB_RANDOM`: weighted random over healthy hosts.
    Random,
    /// `LB_ROUNDROBIN` (also `LB_WEIGHTED_ROUNDROBIN`): smooth weighted round robin.
    RoundRobin,
    /// `LB_LEAST_REQUEST`: power of two choices by active requests.
    LeastRequest,
}

impl fmt::Display for LbType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            LbType::Random => "LB_RANDOM",
            LbType::RoundRobin => "LB_ROUNDROBIN",
            LbType::LeastRequest => "LB_LEAST_REQUEST",
        })
    }
}

/// One host.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// Where to connect.
    pub address: HostAddress,
    /// `hostname` label, if set.
    pub hostname: Option<String>,
    /// LB weight, clamped to 1..=128 (default 1).
    pub weight: u32,
    /// String metadata (kept for dumps; subset LB is not supported).
    pub metadata: BTreeMap<String, String>,
}

/// A host address: an IP socket address, or (STRICT_DNS clusters only) a name and port that
/// the runtime resolves when it connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostAddress {
    /// `ip:port`.
    Ip(SocketAddr),
    /// `name:port`, to be resolved.
    Dns {
        /// Host name.
        host: String,
        /// Port.
        port: u16,
    },
}

impl fmt::Display for HostAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostAddress::Ip(a) => write!(f, "{a}"),
            HostAddress::Dns { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// `circuit_breakers[0]`; `None` = unlimited (0 in the config).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CircuitBreakers {
    /// Connections per host (multiplex: pool size; ping-pong: cap).
    pub max_connections: Option<u32>,
    /// Requests waiting for a connection.
    pub max_pending_requests: Option<u32>,
    /// Active requests in the cluster, process-wide (overflow → 503).
    pub max_requests: Option<u32>,
    /// Concurrent retries in the cluster.
    pub max_retries: Option<u32>,
}

impl CircuitBreakers {
    /// Connections per host in a multiplex pool: `max_connections` when it is in
    /// 1..=65534, else 1 (MOSN).
    pub fn multiplex_connections_per_host(&self) -> u32 {
        match self.max_connections {
            Some(n) if (1..=65534).contains(&n) => n,
            _ => 1,
        }
    }
}

/// Upstream heartbeat settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepaliveConfig {
    /// Periodic heartbeat regardless of traffic (`keepalive.interval`), so a silently dead
    /// upstream of a busy connection is found within about `interval + max_failures ×
    /// timeout`; `None` (absent or 0) = off, heartbeats only after `idle`.
    pub interval: Option<Duration>,
    /// How long an ack may take.
    pub timeout: Duration,
    /// Read-idle time before a heartbeat is sent.
    pub idle: Duration,
    /// Consecutive timeouts before the connection is closed.
    pub max_failures: u32,
}

impl Default for KeepaliveConfig {
    fn default() -> Self {
        KeepaliveConfig {
            interval: None,
            timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            idle: DEFAULT_KEEPALIVE_IDLE,
            max_failures: DEFAULT_KEEPALIVE_MAX_FAILURES,
        }
    }
}

/// Parses one `clusters[i]`.
pub(crate) fn parse_cluster(
    item: &Item<'_>,
    warnings: &mut Warnings,
) -> Result<ClusterConfig, ConfigError> {
    let mut o = item.obj()?;
    let name = o.required_str("name")?.to_owned();
    let kind = match o.str("type")? {
        Some("SIMPLE") | None => ClusterType::Simple,
        Some("STRICT_DNS") => ClusterType::StrictDns,
        Some(other) => {
            warnings.push(
                o.child("type"),
                format!("cluster type {other:?} is not supported; built as SIMPLE (static hosts)"),
            );
            ClusterType::Simple
        }
    };
    let dns = parse_dns(&mut o, kind == ClusterType::StrictDns, warnings)?;
    let lb = match o.str("lb_type")? {
        None | Some("") | Some("LB_ROUNDROBIN") | Some("LB_WEIGHTED_ROUNDROBIN") => {
            LbType::RoundRobin
        }
        Some("LB_RANDOM") => LbType::Random,
        Some("LB_LEAST_REQUEST") => LbType::LeastRequest,
        Some(other) => {
            warnings.push(
                o.child("lb_type"),
                format!("lb_type {other:?} is not supported; using LB_ROUNDROBIN"),
            );
            LbType::RoundRobin
        }
    };
    let mut hosts = Vec::new();
    for h in o.items("hosts")? {
        hosts.push(parse_host(&h, kind, warnings)?);
    }
    if hosts.is_empty() {
        warnings.push(
            o.child("hosts"),
            "cluster has no hosts: requests routed to it get a no-healthy-upstream error",
        );
    }
    let connect_timeout = o
        .duration("connect_timeout")?
        .unwrap_or(DEFAULT_CONNECT_TIMEOUT);
    if connect_timeout.is_zero() {
        return Err(invalid(
            o.child("connect_timeout"),
            Invalid::Rule("connect_timeout must be greater than zero"),
        ));
    }
    let circuit_breakers = parse_circuit_breakers(&mut o, warnings)?;
    let max_request_per_conn = o
        .u32("max_request_per_conn")?
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_MAX_REQUEST_PER_CONN);
    let conn_buffer_limit_bytes = o
        .u32("conn_buffer_limit_bytes")?
        .filter(|n| *n > 0)
        .unwrap_or(DEFAULT_CONN_BUFFER_LIMIT_BYTES);
    let keepalive = match o.obj("keepalive")? {
        Some(k) => parse_keepalive(k, warnings)?,
        None => KeepaliveConfig::default(),
    };
    let pool_mode = match o.str("pool_mode")? {
        None | Some("") => None,
        Some(s) => Some(PoolMode::parse_strict(s).ok_or_else(|| {
            invalid(
                o.child("pool_mode"),
                Invalid::Unsupported {
                    value: s.to_owned(),
                    supported: "\"multiplex\", \"ping-pong\", \"tcp\"",
                },
            )
        })?),
    };
    let health_check = match o.obj("health_check")? {
        Some(h) => Some(parse_health_check(h, warnings)?),
        None => None,
    };
    let outlier_detection = match o.obj("outlier_detection")? {
        Some(d) => Some(parse_outlier_detection(d, warnings)?),
        None => None,
    };
    let healthy_panic_threshold = parse_panic_threshold(&mut o)?;
    o.warn_if_set(
        "lb_subset_config",
        "subset load balancing is not supported; ignored",
        warnings,
    );
    o.warn_if_set(
        "tls_context",
        "TLS is not supported; plaintext is used",
        warnings,
    );
    o.warn_if_set(
        "lbconfig",
        "lbconfig is not supported; built-in LB settings are used",
        warnings,
    );
    o.warn_if_set(
        "original_dst_lb_config",
        "original-destination LB is not supported; ignored",
        warnings,
    );
    let json_path = o.path().to_owned();
    o.finish(warnings);
    Ok(ClusterConfig {
        name,
        kind,
        lb,
        hosts,
        connect_timeout,
        circuit_breakers,
        max_request_per_conn,
        conn_buffer_limit_bytes,
        keepalive,
        pool_mode,
        health_check,
        outlier_detection,
        healthy_panic_threshold,
        dns,
        json_path,
    })
}

fn parse_host(
    item: &Item<'_>,
    kind: ClusterType,
    warnings: &mut Warnings,
) -> Result<HostConfig, ConfigError> {
    let mut o = item.obj()?;
    let address_text = o.required_str("address")?;
    let address = parse_host_address(address_text, kind).ok_or_else(|| {
        invalid(
            o.child("address"),
            Invalid::Address {
                value: address_text.to_owned(),
            },
        )
    })?;
    let hostname = o
        .str("hostname")?
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let weight = match o.u32("weight")? {
        None | Some(0) => 1,
        Some(w) if w > *HOST_WEIGHT_RANGE.end() => {
            warnings.push(o.child("weight"), format!("weight {w} clamped to 128"));
            *HOST_WEIGHT_RANGE.end()
        }
        Some(w) => w,
    };
    let mut metadata = BTreeMap::new();
    if let Some(mut m) = o.obj("metadata")? {
        for (key, value) in m.rest() {
            // Only string values are kept; MOSN's metadata is map[string]string.
            let v = value.node().as_str()?.to_owned();
            metadata.insert(key.to_owned(), v);
        }
    }
    o.accept("tls_disable");
    o.finish(warnings);
    Ok(HostConfig {
        address,
        hostname,
        weight,
        metadata,
    })
}

/// `ip:port`, or for STRICT_DNS also `name:port`.
fn parse_host_address(text: &str, kind: ClusterType) -> Option<HostAddress> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(HostAddress::Ip(addr));
    }
    if kind != ClusterType::StrictDns {
        return None;
    }
    let (host, port) = text.rsplit_once(':')?;
    let port = port.parse::<u16>().ok()?;
    let valid_name = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    valid_name.then(|| HostAddress::Dns {
        host: host.to_owned(),
        port,
    })
}

fn parse_circuit_breakers(
    o: &mut Obj<'_>,
    warnings: &mut Warnings,
) -> Result<CircuitBreakers, ConfigError> {
    let items = o.items("circuit_breakers")?;
    let Some(first) = items.first() else {
        return Ok(CircuitBreakers::default());
    };
    for extra in &items[1..] {
        warnings.push(
            extra.path.clone(),
            "only the first circuit_breakers entry is used (as in MOSN); ignored",
        );
    }
    let mut t = first.obj()?;
    let limit = |v: Option<u32>| v.filter(|n| *n > 0);
    let cb = CircuitBreakers {
        max_connections: limit(t.u32("max_connections")?),
        max_pending_requests: limit(t.u32("max_pending_requests")?),
        max_requests: limit(t.u32("max_requests")?),
        max_retries: limit(t.u32("max_retries")?),
    };
    t.accept("priority");
    t.finish(warnings);
    Ok(cb)
}

fn parse_keepalive(
    mut k: Obj<'_>,
    warnings: &mut Warnings,
) -> Result<KeepaliveConfig, ConfigError> {
    let d = KeepaliveConfig::default();
    let positive = |k: &Obj<'_>, key: &str, v: Option<Duration>| match v {
        Some(v) if v.is_zero() => Err(invalid(
            k.child(key),
            Invalid::Rule("must be greater than zero"),
        )),
        other => Ok(other),
    };
    // 0 (or absent) = no periodic heartbeat, only the idle one.
    let interval = k.duration("interval")?.filter(|v| !v.is_zero());
    let timeout = k.duration("timeout")?;
    let timeout = positive(&k, "timeout", timeout)?.unwrap_or(d.timeout);
    let idle = k.duration("idle")?;
    let idle = positive(&k, "idle", idle)?.unwrap_or(d.idle);
    let max_failures = match k.u32("max_failures")? {
        Some(0) => {
            return Err(invalid(
                k.child("max_failures"),
                Invalid::Rule("must be at least 1"),
            ))
        }
        Some(n) => n,
        None => d.max_failures,
    };
    k.finish(warnings);
    Ok(KeepaliveConfig {
        interval,
        timeout,
        idle,
        max_failures,
    })
}

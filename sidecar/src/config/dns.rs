//! A `STRICT_DNS` cluster's name resolution, in MOSN's field names: `dns_refresh_rate`,
//! `respect_dns_ttl`, `dns_lookup_family`, `dns_resolvers` (`servers`, `port`, `timeout`,
//! `attempts`) or `dns_resolver_file` + `dns_resolver_port`, and our own `dns_max_hosts`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use super::error::{invalid, ConfigError, Invalid, Warnings};
use super::json::Obj;

/// `dns_refresh_rate` default (MOSN's `DefaultRefreshInterval`).
pub const DEFAULT_DNS_REFRESH_RATE: Duration = Duration::from_secs(5);
/// `dns_resolvers.timeout` default, per query.
pub const DEFAULT_DNS_TIMEOUT: Duration = Duration::from_secs(2);
/// `dns_resolvers.attempts` default: rounds over the server list.
pub const DEFAULT_DNS_ATTEMPTS: u32 = 2;
/// `dns_resolvers.port` / `dns_resolver_port` default.
pub const DEFAULT_DNS_PORT: u16 = 53;
/// `dns_max_hosts` default: addresses kept per configured name.
pub const DEFAULT_DNS_MAX_HOSTS: u32 = 16;
/// `dns_max_hosts` upper bound.
pub const MAX_DNS_MAX_HOSTS: u32 = 256;

/// Which address records a name is resolved to (`dns_lookup_family`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LookupFamily {
    /// IPv4 only (`V4_ONLY`, MOSN's default).
    V4Only,
    /// IPv6 only (`V6_ONLY`).
    V6Only,
}

impl std::fmt::Display for LookupFamily {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LookupFamily::V4Only => "V4_ONLY",
            LookupFamily::V6Only => "V6_ONLY",
        })
    }
}

/// Who answers the queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsServers {
    /// The system resolver (`getaddrinfo`: `/etc/hosts`, then `/etc/resolv.conf`); it
    /// reports no TTL.
    System,
    /// These name servers over UDP, in order (`dns_resolvers.servers`, or the
    /// `nameserver` lines of `dns_resolver_file`).
    Servers(Vec<SocketAddr>),
}

/// A `STRICT_DNS` cluster's resolution settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    /// Time between resolutions of one name.
    pub refresh_rate: Duration,
    /// Re-resolve after the answer's smallest TTL plus one second instead (MOSN).
    pub respect_ttl: bool,
    /// Address family asked for.
    pub family: LookupFamily,
    /// Who answers.
    pub servers: DnsServers,
    /// How long one query to one server may take.
    pub timeout: Duration,
    /// Rounds over the server list before a resolution fails.
    pub attempts: u32,
    /// Addresses kept per configured name (each is a host; more are dropped with a warning).
    pub max_hosts: u32,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            refresh_rate: DEFAULT_DNS_REFRESH_RATE,
            respect_ttl: false,
            family: LookupFamily::V4Only,
            servers: DnsServers::System,
            timeout: DEFAULT_DNS_TIMEOUT,
            attempts: DEFAULT_DNS_ATTEMPTS,
            max_hosts: DEFAULT_DNS_MAX_HOSTS,
        }
    }
}

const DNS_FIELDS: [&str; 7] = [
    "dns_refresh_rate",
    "respect_dns_ttl",
    "dns_lookup_family",
    "dns_resolvers",
    "dns_resolver_file",
    "dns_resolver_port",
    "dns_max_hosts",
];

/// Reads the DNS fields of a cluster object. `Some` for a `STRICT_DNS` cluster; for any
/// other cluster the fields are ignored with a warning and the result is `None`.
pub(crate) fn parse_dns(
    o: &mut Obj<'_>,
    strict_dns: bool,
    warnings: &mut Warnings,
) -> Result<Option<DnsConfig>, ConfigError> {
    if !strict_dns {
        for key in DNS_FIELDS {
            o.warn_if_set(
                key,
                "DNS settings apply to STRICT_DNS clusters only; ignored",
                warnings,
            );
        }
        return Ok(None);
    }
    let mut dns = DnsConfig::default();
    if let Some(rate) = o.duration("dns_refresh_rate")? {
        if !rate.is_zero() {
            dns.refresh_rate = rate;
        }
    }
    dns.respect_ttl = o.bool("respect_dns_ttl")?.unwrap_or(false);
    dns.family = parse_family(o)?;
    if let Some(n) = o.u32("dns_max_hosts")? {
        if !(1..=MAX_DNS_MAX_HOSTS).contains(&n) {
            return Err(invalid(
                o.child("dns_max_hosts"),
                Invalid::OutOfRange {
                    value: n.to_string(),
                    range: "1..=256",
                },
            ));
        }
        dns.max_hosts = n;
    }
    let file_port = parse_port_text(o, "dns_resolver_port")?;
    if let Some(mut r) = o.obj("dns_resolvers")? {
        let port = parse_port_text(&mut r, "port")?.unwrap_or(DEFAULT_DNS_PORT);
        let mut servers = Vec::new();
        for item in r.items("servers")? {
            let node = item.node();
            let text = node.as_str()?;
            let addr = parse_server(text, port).ok_or_else(|| {
                invalid(
                    item.path.clone(),
                    Invalid::Address {
                        value: text.to_owned(),
                    },
                )
            })?;
            servers.push(addr);
        }
        if let Some(t) = r.u32("timeout")? {
            if t > 0 {
                dns.timeout = Duration::from_secs(u64::from(t));
            }
        }
        if let Some(a) = r.u32("attempts")? {
            if a > 0 {
                dns.attempts = a;
            }
        }
        for key in ["search", "ndots"] {
            r.warn_if_set(
                key,
                "search domains are not applied: names are queried as written",
                warnings,
            );
        }
        r.finish(warnings);
        if !servers.is_empty() {
            dns.servers = DnsServers::Servers(servers);
        }
    }
    if let Some(file) = o.str("dns_resolver_file")?.filter(|s| !s.is_empty()) {
        let path = o.child("dns_resolver_file");
        if dns.servers != DnsServers::System {
            warnings.push(
                path,
                "dns_resolvers.servers is set; dns_resolver_file ignored",
            );
        } else {
            let servers = read_resolv_conf(&PathBuf::from(file), file_port)
                .map_err(|reason| invalid(path.clone(), Invalid::Message(reason)))?;
            dns.servers = DnsServers::Servers(servers);
        }
    }
    Ok(Some(dns))
}

fn parse_family(o: &mut Obj<'_>) -> Result<LookupFamily, ConfigError> {
    let Some(item) = o.get("dns_lookup_family") else {
        return Ok(LookupFamily::V4Only);
    };
    let v = item.value;
    // MOSN's constants: V4Only = 0, V6Only = 1; names accepted as well.
    let family = match (v.as_u64(), v.as_str()) {
        (Some(0), _) | (_, Some("V4_ONLY" | "V4Only" | "")) => Some(LookupFamily::V4Only),
        (Some(1), _) | (_, Some("V6_ONLY" | "V6Only")) => Some(LookupFamily::V6Only),
        _ if v.is_null() => Some(LookupFamily::V4Only),
        _ => None,
    };
    family.ok_or_else(|| {
        invalid(
            item.path,
            Invalid::Unsupported {
                value: v.to_string(),
                supported: "\"V4_ONLY\" (0), \"V6_ONLY\" (1)",
            },
        )
    })
}

/// A port given as text (MOSN: `"53"`) or as a number.
fn parse_port_text(o: &mut Obj<'_>, key: &str) -> Result<Option<u16>, ConfigError> {
    let Some(item) = o.get(key) else {
        return Ok(None);
    };
    let v = item.value;
    if v.is_null() || v.as_str() == Some("") {
        return Ok(None);
    }
    let port = match (v.as_u64(), v.as_str()) {
        (Some(n), _) => u16::try_from(n).ok(),
        (_, Some(s)) => s.parse::<u16>().ok(),
        _ => None,
    };
    match port {
        Some(p) if p > 0 => Ok(Some(p)),
        _ => Err(invalid(
            item.path,
            Invalid::OutOfRange {
                value: v.to_string(),
                range: "a port 1..=65535",
            },
        )),
    }
}

/// `ip` (with `port`) or `ip:port`.
fn parse_server(text: &str, port: u16) -> Option<SocketAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(SocketAddr::new(ip, port));
    }
    text.parse::<SocketAddr>().ok()
}

/// The `nameserver` lines of a resolv.conf-style file, on `port` (default 53).
fn read_resolv_conf(path: &PathBuf, port: Option<u16>) -> Result<Vec<SocketAddr>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let servers = parse_resolv_conf(&text, port.unwrap_or(DEFAULT_DNS_PORT));
    if servers.is_empty() {
        return Err(format!("{} names no nameserver", path.display()));
    }
    Ok(servers)
}

fn parse_resolv_conf(text: &str, port: u16) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next() == Some("nameserver"))
                .then(|| words.next())
                .flatten()
                .and_then(|ip| ip.parse::<IpAddr>().ok())
                .map(|ip| SocketAddr::new(ip, port))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(
        v: serde_json::Value,
        strict: bool,
    ) -> (Result<Option<DnsConfig>, String>, Vec<String>) {
        let mut warnings = Warnings::default();
        let result = Obj::new(&v, "c".into())
            .and_then(|mut o| {
                let r = parse_dns(&mut o, strict, &mut warnings);
                o.finish(&mut warnings);
                r
            })
            .map_err(|e| e.to_string());
        (
            result,
            warnings.0.iter().map(|w| w.message.clone()).collect(),
        )
    }

    #[test]
    fn defaults_are_mosns() {
        let (dns, warnings) = parse(json!({}), true);
        assert_eq!(dns.unwrap().unwrap(), DnsConfig::default());
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(DnsConfig::default().refresh_rate, Duration::from_secs(5));
    }

    #[test]
    fn servers_port_timeout_attempts_ttl_and_family_are_read() {
        let (dns, warnings) = parse(
            json!({"dns_refresh_rate": "250ms", "respect_dns_ttl": true,
                   "dns_lookup_family": "V6_ONLY", "dns_max_hosts": 4,
                   "dns_resolvers": {"servers": ["127.0.0.1", "127.0.0.2:5353"], "port": "1053",
                                     "timeout": 1, "attempts": 3}}),
            true,
        );
        let dns = dns.unwrap().unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(dns.refresh_rate, Duration::from_millis(250));
        assert!(dns.respect_ttl);
        assert_eq!(dns.family, LookupFamily::V6Only);
        assert_eq!(dns.max_hosts, 4);
        assert_eq!(dns.timeout, Duration::from_secs(1));
        assert_eq!(dns.attempts, 3);
        assert_eq!(
            dns.servers,
            DnsServers::Servers(vec![
                "127.0.0.1:1053".parse().unwrap(),
                "127.0.0.2:5353".parse().unwrap()
            ])
        );
    }

    #[test]
    fn bad_values_are_errors_with_their_path() {
        let (r, _) = parse(json!({"dns_resolvers": {"servers": ["not an ip"]}}), true);
        assert!(r.unwrap_err().contains("c.dns_resolvers.servers[0]"));
        let (r, _) = parse(json!({"dns_lookup_family": "V5"}), true);
        assert!(r.unwrap_err().contains("c.dns_lookup_family"));
        let (r, _) = parse(json!({"dns_max_hosts": 0}), true);
        assert!(r.unwrap_err().contains("c.dns_max_hosts"));
        let (r, _) = parse(json!({"dns_resolver_port": "99999"}), true);
        assert!(r.unwrap_err().contains("c.dns_resolver_port"));
        let (r, _) = parse(
            json!({"dns_resolver_file": "/nonexistent/resolv.conf"}),
            true,
        );
        assert!(r.unwrap_err().contains("cannot read"));
    }

    #[test]
    fn dns_fields_on_a_static_cluster_are_warned_about() {
        let (r, warnings) = parse(json!({"dns_refresh_rate": "1s"}), false);
        assert!(r.unwrap().is_none());
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("STRICT_DNS clusters only"),
            "{warnings:?}"
        );
    }

    #[test]
    fn resolv_conf_nameservers_take_the_port() {
        let text = "# comment\nsearch example.com\nnameserver 10.0.0.1\nnameserver ::1\noptions ndots:2\nnameserver bogus\n";
        assert_eq!(
            parse_resolv_conf(text, 5353),
            vec![
                "10.0.0.1:5353".parse::<SocketAddr>().unwrap(),
                "[::1]:5353".parse().unwrap()
            ]
        );
    }
}

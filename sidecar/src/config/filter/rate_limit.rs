//! The `rateLimit` stream filter's `config`: fleet-wide limits kept by Envoy's rate limit
//! service (gRPC `envoy.service.ratelimit.v3.RateLimitService`), asked once per request with
//! descriptors built from the request's headers.
//!
//! ```json
//! {"type": "rateLimit", "config": {
//!   "domain": "sidecar",
//!   "rate_limit_service": {"address": "127.0.0.1:8081"},
//!   "timeout": "20ms",
//!   "failure_mode_deny": false,
//!   "status": 503,
//!   "descriptors": [
//!     {"entries": [{"key": "service", "header": "service"}]},
//!     {"entries": [{"value": "tenant-budget"},
//!                  {"key": "tenant", "header": "tenant", "skip_if_absent": true}]}
//!   ]
//! }}
//! ```
//!
//! Each descriptor follows one Envoy `rate_limits[]` entry: an entry with `header` is Envoy's
//! `request_headers {header_name, descriptor_key}` action, an entry with `value` its
//! `generic_key {descriptor_value, descriptor_key}` action (`key` defaults to
//! `"generic_key"`, as in Envoy). Parsed strictly, like every implemented stream filter: an
//! unknown field is an error naming its JSON path.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};

use super::super::duration::format_go_duration;
use super::super::error::{invalid, ConfigError, Invalid};
use super::super::json::Obj;

/// The filter type in `stream_filters[].type`.
pub(super) const TYPE: &str = "rateLimit";

/// How long one call to the rate limit service may take when `timeout` is absent (Envoy's
/// default for its rate limit filters).
pub const DEFAULT_RATE_LIMIT_TIMEOUT: Duration = Duration::from_millis(20);
/// The proxy code an over-limit request is answered with when `status` is absent (the Bolt
/// plugin maps it to SERVER_THREADPOOL_BUSY).
pub const DEFAULT_RATE_LIMIT_STATUS: u32 = 503;
/// The descriptor key of a `value` entry without `key` (Envoy's `generic_key` action).
pub const GENERIC_KEY: &str = "generic_key";
/// The proxy codes `status` may take.
const STATUS_RANGE: std::ops::RangeInclusive<u32> = 400..=599;

/// A validated `rateLimit` filter config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlobalRateLimitConfig {
    /// Names the filter's counters: `stream_filters[i]`.
    pub label: String,
    /// `domain`: the namespace of the limits in the service's configuration.
    pub domain: String,
    /// `rate_limit_service.address`: `host:port` of the service's gRPC endpoint (plain
    /// HTTP/2).
    pub service_address: String,
    /// `timeout`: the longest one call may take, connecting included.
    pub timeout: Duration,
    /// `failure_mode_deny`: reject requests when the service cannot answer (default: let
    /// them through).
    pub failure_mode_deny: bool,
    /// `status`: the proxy code over-limit (and, with `failure_mode_deny`, unanswered)
    /// requests are answered with.
    pub status: u32,
    /// `descriptors`: what is sent for each request, in order.
    pub descriptors: Vec<DescriptorConfig>,
    /// JSON path of the filter's `config`, for messages.
    pub json_path: String,
}

/// One descriptor template: a list of entries, all of which must be produced for the
/// descriptor to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorConfig {
    /// `entries`, in order.
    pub entries: Vec<DescriptorEntryConfig>,
}

/// One `(key, value)` entry of a descriptor and where its value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescriptorEntryConfig {
    /// `key`: the descriptor key.
    pub key: String,
    /// Where the value comes from.
    pub source: EntrySource,
}

/// The value of a descriptor entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntrySource {
    /// `header`: the request header's value. When the header is absent the whole descriptor
    /// is not sent, unless `skip_if_absent` drops just this entry (Envoy's
    /// `request_headers` action).
    Header {
        /// The header name (case-sensitive, as the router matches headers).
        name: String,
        /// `skip_if_absent`.
        skip_if_absent: bool,
    },
    /// `value`: a fixed value (Envoy's `generic_key` action).
    Value(String),
}

impl GlobalRateLimitConfig {
    /// The config in the JSON form it is parsed from, every default filled in (for the admin
    /// API's `config_dump`).
    pub(super) fn to_json(&self) -> Value {
        let descriptors: Vec<Value> = self
            .descriptors
            .iter()
            .map(|d| {
                let entries: Vec<Value> = d
                    .entries
                    .iter()
                    .map(|e| match &e.source {
                        EntrySource::Header {
                            name,
                            skip_if_absent,
                        } => {
                            json!({"key": e.key, "header": name, "skip_if_absent": skip_if_absent})
                        }
                        EntrySource::Value(v) => json!({"key": e.key, "value": v}),
                    })
                    .collect();
                json!({ "entries": entries })
            })
            .collect();
        json!({
            "domain": self.domain,
            "rate_limit_service": {"address": self.service_address},
            "timeout": format_go_duration(self.timeout),
            "failure_mode_deny": self.failure_mode_deny,
            "status": self.status,
            "descriptors": descriptors,
        })
    }

    /// One line for `sidecar check`.
    pub(super) fn describe(&self) -> String {
        let descriptors: Vec<String> = self
            .descriptors
            .iter()
            .map(|d| {
                let entries: Vec<String> = d
                    .entries
                    .iter()
                    .map(|e| match &e.source {
                        EntrySource::Header {
                            name,
                            skip_if_absent: false,
                        } => format!("{}=<{name}>", e.key),
                        EntrySource::Header { name, .. } => format!("{}=<{name}>?", e.key),
                        EntrySource::Value(v) => format!("{}={v}", e.key),
                    })
                    .collect();
                format!("[{}]", entries.join(", "))
            })
            .collect();
        let failure = if self.failure_mode_deny {
            "rejects"
        } else {
            "lets requests through"
        };
        format!(
            "rateLimit {}: asks {} (domain {:?}, timeout {}) with {}; over limit → code {}; \
             service unavailable → {failure}",
            self.label,
            self.service_address,
            self.domain,
            format_go_duration(self.timeout),
            descriptors.join(" "),
            self.status,
        )
    }
}

/// Parses the `config` of one `rateLimit` filter; `label` is `stream_filters[i]`.
///
/// # Errors
/// [`ConfigError::Invalid`] naming the JSON path of the first bad or unknown field.
pub(super) fn parse(mut o: Obj<'_>, label: &str) -> Result<GlobalRateLimitConfig, ConfigError> {
    let json_path = o.path().to_owned();
    let domain = o.required_str("domain")?.to_owned();
    let mut service = o
        .obj("rate_limit_service")?
        .ok_or_else(|| invalid(o.child("rate_limit_service"), Invalid::Missing))?;
    let service_address = parse_host_port(&mut service, "address")?;
    service.finish_strict()?;
    let timeout = match o.duration("timeout")? {
        None => DEFAULT_RATE_LIMIT_TIMEOUT,
        Some(d) if d.is_zero() => {
            return Err(invalid(
                o.child("timeout"),
                Invalid::Rule("the rate limit service timeout must be greater than zero"),
            ))
        }
        Some(d) => d,
    };
    let failure_mode_deny = o.bool("failure_mode_deny")?.unwrap_or(false);
    let status = match o.u32("status")? {
        None => DEFAULT_RATE_LIMIT_STATUS,
        Some(s) if STATUS_RANGE.contains(&s) => s,
        Some(s) => {
            return Err(invalid(
                o.child("status"),
                Invalid::OutOfRange {
                    value: s.to_string(),
                    range: "400..=599",
                },
            ))
        }
    };
    let items = o.items("descriptors")?;
    if items.is_empty() {
        return Err(invalid(o.child("descriptors"), Invalid::Missing));
    }
    let mut descriptors = Vec::with_capacity(items.len());
    for item in items {
        let mut d = item.obj()?;
        let entries = d.items("entries")?;
        if entries.is_empty() {
            return Err(invalid(d.child("entries"), Invalid::Missing));
        }
        let entries = entries
            .iter()
            .map(|e| parse_entry(e.obj()?))
            .collect::<Result<Vec<_>, _>>()?;
        d.finish_strict()?;
        descriptors.push(DescriptorConfig { entries });
    }
    o.finish_strict()?;
    Ok(GlobalRateLimitConfig {
        label: label.to_owned(),
        domain,
        service_address,
        timeout,
        failure_mode_deny,
        status,
        descriptors,
        json_path,
    })
}

fn parse_entry(mut e: Obj<'_>) -> Result<DescriptorEntryConfig, ConfigError> {
    let key = e.str("key")?;
    let header = e.str("header")?;
    let value = e.str("value")?;
    let skip_if_absent = e.bool("skip_if_absent")?;
    let (key, source) = match (header, value) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                e.path(),
                Invalid::Rule("an entry takes either \"header\" or \"value\", not both"),
            ))
        }
        (None, None) => {
            return Err(invalid(
                e.path(),
                Invalid::Rule("an entry needs \"header\" (request header) or \"value\" (fixed)"),
            ))
        }
        (Some(name), None) => {
            if name.is_empty() {
                return Err(invalid(e.child("header"), Invalid::Missing));
            }
            let key = key
                .filter(|k| !k.is_empty())
                .ok_or_else(|| invalid(e.child("key"), Invalid::Missing))?;
            let source = EntrySource::Header {
                name: name.to_owned(),
                skip_if_absent: skip_if_absent.unwrap_or(false),
            };
            (key, source)
        }
        (None, Some(value)) => {
            if value.is_empty() {
                return Err(invalid(e.child("value"), Invalid::Missing));
            }
            if skip_if_absent.is_some() {
                return Err(invalid(
                    e.child("skip_if_absent"),
                    Invalid::Rule("skip_if_absent applies to \"header\" entries only"),
                ));
            }
            let key = match key {
                None => GENERIC_KEY,
                Some("") => return Err(invalid(e.child("key"), Invalid::Missing)),
                Some(k) => k,
            };
            (key, EntrySource::Value(value.to_owned()))
        }
    };
    e.finish_strict()?;
    Ok(DescriptorEntryConfig {
        key: key.to_owned(),
        source,
    })
}

/// A required `host:port` member: an IP address (IPv6 in brackets) or a DNS name, and a
/// non-zero port.
fn parse_host_port(o: &mut Obj<'_>, key: &str) -> Result<String, ConfigError> {
    let text = o.required_str(key)?;
    let bad = || {
        invalid(
            o.child(key),
            Invalid::HostPort {
                value: text.to_owned(),
            },
        )
    };
    if text.parse::<SocketAddr>().is_ok() {
        return Ok(text.to_owned());
    }
    let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
    let name_ok = !host.is_empty()
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    match port.parse::<u16>() {
        Ok(p) if p != 0 && name_ok => Ok(text.to_owned()),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::tests::parse_json;
    use super::super::StreamFilterConfig;
    use super::*;

    const BASE: &str = "listeners[0].stream_filters[0].config";

    /// Parses `config` as the only stream filter of a listener.
    fn parse(config: &Value) -> Result<GlobalRateLimitConfig, ConfigError> {
        let (filters, warnings) = parse_json(json!([{"type": "rateLimit", "config": config}]))?;
        assert!(warnings.is_empty(), "{warnings:?}");
        match filters.as_slice() {
            [StreamFilterConfig::RateLimit(c)] => Ok(c.clone()),
            other => panic!("{other:?}"),
        }
    }

    fn minimal() -> Value {
        json!({"domain": "sidecar", "rate_limit_service": {"address": "127.0.0.1:8081"},
               "descriptors": [{"entries": [{"key": "service", "header": "service"}]}]})
    }

    fn error_at(v: &Value, path_suffix: &str, needle: &str) {
        let e = parse(v).expect_err("config must be refused");
        let path = e.json_path().expect("an Invalid error");
        assert_eq!(path, format!("{BASE}{path_suffix}"), "{e}");
        assert!(e.to_string().contains(needle), "{e}");
    }

    #[test]
    fn defaults_follow_envoy() {
        let c = parse(&minimal()).unwrap();
        assert_eq!(c.label, "stream_filters[0]");
        assert_eq!(c.json_path, BASE);
        assert_eq!(c.domain, "sidecar");
        assert_eq!(c.service_address, "127.0.0.1:8081");
        assert_eq!(c.timeout, Duration::from_millis(20));
        assert!(!c.failure_mode_deny);
        assert_eq!(c.status, 503);
        assert_eq!(
            c.descriptors,
            vec![DescriptorConfig {
                entries: vec![DescriptorEntryConfig {
                    key: "service".into(),
                    source: EntrySource::Header {
                        name: "service".into(),
                        skip_if_absent: false
                    },
                }]
            }]
        );
    }

    #[test]
    fn every_field_is_read_and_dumps_back() {
        let v = json!({"domain": "d", "rate_limit_service": {"address": "ratelimit.mesh.local:8081"},
            "timeout": "250ms", "failure_mode_deny": true, "status": 429,
            "descriptors": [
                {"entries": [{"key": "service", "header": "service"}]},
                {"entries": [{"value": "tenant-budget"},
                             {"key": "tenant", "header": "x-tenant", "skip_if_absent": true},
                             {"key": "plan", "value": "gold"}]}]});
        let c = parse(&v).unwrap();
        assert_eq!(c.service_address, "ratelimit.mesh.local:8081");
        assert_eq!(c.timeout, Duration::from_millis(250));
        assert!(c.failure_mode_deny);
        assert_eq!(c.status, 429);
        let second = &c.descriptors[1].entries;
        assert_eq!(second[0].key, GENERIC_KEY);
        assert_eq!(second[0].source, EntrySource::Value("tenant-budget".into()));
        assert_eq!(
            second[1].source,
            EntrySource::Header {
                name: "x-tenant".into(),
                skip_if_absent: true
            }
        );
        assert_eq!(second[2].key, "plan");
        assert_eq!(parse(&c.to_json()).unwrap(), c);
        assert_eq!(
            c.describe(),
            "rateLimit stream_filters[0]: asks ratelimit.mesh.local:8081 (domain \"d\", timeout \
             250ms) with [service=<service>] [generic_key=tenant-budget, tenant=<x-tenant>?, \
             plan=gold]; over limit → code 429; service unavailable → rejects"
        );
    }

    #[test]
    fn unknown_fields_are_errors_with_their_paths() {
        let mut v = minimal();
        v["stage"] = json!(0);
        error_at(&v, ".stage", "unknown field");
        let mut v = minimal();
        v["rate_limit_service"]["transport_api_version"] = json!("V3");
        error_at(
            &v,
            ".rate_limit_service.transport_api_version",
            "unknown field",
        );
        let mut v = minimal();
        v["descriptors"][0]["entries"][0]["descriptor_key"] = json!("x");
        error_at(
            &v,
            ".descriptors[0].entries[0].descriptor_key",
            "unknown field",
        );
        let mut v = minimal();
        v["descriptors"][0]["limit"] = json!({});
        error_at(&v, ".descriptors[0].limit", "unknown field");
    }

    #[test]
    fn required_fields_are_named() {
        let mut v = minimal();
        v.as_object_mut().unwrap().remove("domain");
        error_at(&v, ".domain", "missing");
        let mut v = minimal();
        v.as_object_mut().unwrap().remove("rate_limit_service");
        error_at(&v, ".rate_limit_service", "missing");
        let mut v = minimal();
        v["rate_limit_service"] = json!({});
        error_at(&v, ".rate_limit_service.address", "missing");
        let mut v = minimal();
        v["descriptors"] = json!([]);
        error_at(&v, ".descriptors", "missing");
        let mut v = minimal();
        v["descriptors"] = json!([{"entries": []}]);
        error_at(&v, ".descriptors[0].entries", "missing");
        let mut v = minimal();
        v["descriptors"][0]["entries"][0] = json!({"header": "service"});
        error_at(&v, ".descriptors[0].entries[0].key", "missing");
        let e = parse_json(json!([{"type": "rateLimit"}])).unwrap_err();
        assert_eq!(
            e.json_path(),
            Some("listeners[0].stream_filters[0].config.domain")
        );
    }

    #[test]
    fn bad_values_are_refused_with_their_paths() {
        let mut v = minimal();
        v["rate_limit_service"]["address"] = json!("127.0.0.1");
        error_at(&v, ".rate_limit_service.address", "expected host:port");
        v["rate_limit_service"]["address"] = json!("bad host:80");
        error_at(&v, ".rate_limit_service.address", "\"bad host:80\"");
        v["rate_limit_service"]["address"] = json!("svc:0");
        error_at(&v, ".rate_limit_service.address", "expected host:port");
        let mut v = minimal();
        v["timeout"] = json!("0s");
        error_at(&v, ".timeout", "greater than zero");
        v["timeout"] = json!("soon");
        error_at(&v, ".timeout", "invalid duration");
        let mut v = minimal();
        v["status"] = json!(200);
        error_at(&v, ".status", "400..=599");
        let mut v = minimal();
        v["failure_mode_deny"] = json!("yes");
        error_at(&v, ".failure_mode_deny", "expected a boolean");
        let mut v = minimal();
        v["descriptors"][0]["entries"][0] = json!({"key": "k", "header": "h", "value": "v"});
        error_at(&v, ".descriptors[0].entries[0]", "not both");
        v["descriptors"][0]["entries"][0] = json!({"key": "k"});
        error_at(&v, ".descriptors[0].entries[0]", "needs \"header\"");
        v["descriptors"][0]["entries"][0] = json!({"value": "v", "skip_if_absent": true});
        error_at(
            &v,
            ".descriptors[0].entries[0].skip_if_absent",
            "header\" entries only",
        );
        v["descriptors"][0]["entries"][0] = json!({"key": "k", "header": ""});
        error_at(&v, ".descriptors[0].entries[0].header", "missing");
    }

    #[test]
    fn addresses_may_be_ip_or_dns_names() {
        for ok in [
            "127.0.0.1:8081",
            "[::1]:8081",
            "localhost:8081",
            "rls-0.ns.svc:81",
        ] {
            let mut v = minimal();
            v["rate_limit_service"]["address"] = json!(ok);
            assert_eq!(parse(&v).unwrap().service_address, ok);
        }
        for bad in [
            "",
            ":8081",
            "host:",
            "host:65536",
            "-x:1",
            "a..b:1",
            "::1:8081x",
        ] {
            let mut v = minimal();
            v["rate_limit_service"]["address"] = json!(bad);
            assert!(parse(&v).is_err(), "{bad:?} accepted");
        }
    }
}

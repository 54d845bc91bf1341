//! A cluster's host health settings: MOSN's `health_check` (active checks), Envoy's
//! `outlier_detection` (passive ejection; MOSN has no config for it) and Envoy's
//! `healthy_panic_threshold`.

use std::time::Duration;

use super::error::{invalid, ConfigError, Invalid, Warnings};
use super::json::Obj;

/// `health_check.timeout` default (MOSN's `healthcheck.DefaultTimeout`).
pub const DEFAULT_HEALTH_CHECK_TIMEOUT: Duration = Duration::from_secs(1);
/// `health_check.interval` default (MOSN's `healthcheck.DefaultInterval`).
pub const DEFAULT_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(15);
/// `health_check.healthy_threshold` / `unhealthy_threshold` default (MOSN's
/// `DefaultHealthyThreshold` / `DefaultUnhealthyThreshold` of its SOFA RPC check; MOSN's
/// generic checker has none, and there a 0 means a host never changes state).
pub const DEFAULT_HEALTH_THRESHOLD: u32 = 2;
/// The first check runs this long after start-up at most (MOSN's `firstInterval`).
pub const FIRST_CHECK_AFTER: Duration = Duration::from_secs(1);

/// `outlier_detection.consecutive_errors` default (Envoy's `consecutive_5xx`).
pub const DEFAULT_CONSECUTIVE_ERRORS: u32 = 5;
/// `outlier_detection.interval` default (Envoy).
pub const DEFAULT_OUTLIER_INTERVAL: Duration = Duration::from_secs(10);
/// `outlier_detection.base_ejection_time` default (Envoy).
pub const DEFAULT_BASE_EJECTION_TIME: Duration = Duration::from_secs(30);
/// `outlier_detection.max_ejection_time` default (Envoy).
pub const DEFAULT_MAX_EJECTION_TIME: Duration = Duration::from_secs(300);
/// `outlier_detection.max_ejection_percent` default (Envoy).
pub const DEFAULT_MAX_EJECTION_PERCENT: u32 = 10;
/// `healthy_panic_threshold` default, in percent (Envoy).
pub const DEFAULT_HEALTHY_PANIC_THRESHOLD: u32 = 50;

/// What an active health check does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HealthCheckKind {
    /// Open a TCP connection and close it (MOSN's default `TCPDialSession`).
    TcpConnect,
    /// Open a connection, send the cluster codec's heartbeat (the plugin's keepalive
    /// frame) and wait for its ack.
    Heartbeat,
}

impl std::fmt::Display for HealthCheckKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HealthCheckKind::TcpConnect => "tcp connect",
            HealthCheckKind::Heartbeat => "protocol heartbeat",
        })
    }
}

/// `clusters[i].health_check`, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheckConfig {
    /// `protocol` as written (empty when absent).
    pub protocol: String,
    /// Chosen from `protocol`: empty or `tcp` = TCP connect, anything else = heartbeat.
    pub kind: HealthCheckKind,
    /// How long one check may take.
    pub timeout: Duration,
    /// Time between the end of one check and the start of the next.
    pub interval: Duration,
    /// Up to this much random time is added to each interval.
    pub interval_jitter: Duration,
    /// Consecutive passes that bring an unhealthy host back.
    pub healthy_threshold: u32,
    /// Consecutive failures that take a healthy host out.
    pub unhealthy_threshold: u32,
    /// `service_name` (MOSN: the checker's stats prefix); shown in logs.
    pub service_name: Option<String>,
}

/// `clusters[i].outlier_detection`, validated (Envoy's field names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutlierDetectionConfig {
    /// Consecutive failed tries (connect failure, upstream close with the request in
    /// flight, timeout) that eject a host.
    pub consecutive_errors: u32,
    /// How often the ejector sweeps: an ejection multiplier of a host that is not ejected
    /// shrinks by one per interval.
    pub interval: Duration,
    /// Ejection time = this × times the host was ejected …
    pub base_ejection_time: Duration,
    /// … but never longer than this.
    pub max_ejection_time: Duration,
    /// At most this share of the cluster's hosts is ejected at once (one host may always
    /// be).
    pub max_ejection_percent: u32,
}

/// Parses `health_check`.
pub(crate) fn parse_health_check(
    mut o: Obj<'_>,
    warnings: &mut Warnings,
) -> Result<HealthCheckConfig, ConfigError> {
    let protocol = o.str("protocol")?.unwrap_or_default().to_owned();
    let kind = if protocol.is_empty() || protocol.eq_ignore_ascii_case("tcp") {
        HealthCheckKind::TcpConnect
    } else {
        HealthCheckKind::Heartbeat
    };
    let timeout = o.duration("timeout")?;
    let timeout = positive(&o, "timeout", timeout, DEFAULT_HEALTH_CHECK_TIMEOUT)?;
    let interval = o.duration("interval")?;
    let interval = positive(&o, "interval", interval, DEFAULT_HEALTH_CHECK_INTERVAL)?;
    let interval_jitter = o.duration("interval_jitter")?.unwrap_or_default();
    let threshold = |o: &mut Obj<'_>, key: &str| -> Result<u32, ConfigError> {
        Ok(o.u32(key)?
            .filter(|n| *n > 0)
            .unwrap_or(DEFAULT_HEALTH_THRESHOLD))
    };
    let healthy_threshold = threshold(&mut o, "healthy_threshold")?;
    let unhealthy_threshold = threshold(&mut o, "unhealthy_threshold")?;
    let service_name = o
        .str("service_name")?
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    for key in [
        "check_path",
        "check_config",
        "session_config",
        "common_callbacks",
        "event_log_path",
    ] {
        o.warn_if_set(
            key,
            &format!("health_check.{key} is not implemented; ignored"),
            warnings,
        );
    }
    o.finish(warnings);
    Ok(HealthCheckConfig {
        protocol,
        kind,
        timeout,
        interval,
        interval_jitter,
        healthy_threshold,
        unhealthy_threshold,
        service_name,
    })
}

/// Parses `outlier_detection`.
pub(crate) fn parse_outlier_detection(
    mut o: Obj<'_>,
    warnings: &mut Warnings,
) -> Result<OutlierDetectionConfig, ConfigError> {
    let consecutive_errors = match o.u32("consecutive_errors")? {
        Some(0) => {
            return Err(invalid(
                o.child("consecutive_errors"),
                Invalid::Rule("must be at least 1"),
            ))
        }
        Some(n) => n,
        None => DEFAULT_CONSECUTIVE_ERRORS,
    };
    let interval = o.duration("interval")?;
    let interval = positive(&o, "interval", interval, DEFAULT_OUTLIER_INTERVAL)?;
    let base = o.duration("base_ejection_time")?;
    let base_ejection_time = positive(&o, "base_ejection_time", base, DEFAULT_BASE_EJECTION_TIME)?;
    let max = o.duration("max_ejection_time")?;
    let max_ejection_time = positive(&o, "max_ejection_time", max, DEFAULT_MAX_EJECTION_TIME)?;
    if max_ejection_time < base_ejection_time {
        return Err(invalid(
            o.child("max_ejection_time"),
            Invalid::Rule("must not be shorter than base_ejection_time"),
        ));
    }
    let max_ejection_percent = match o.u32("max_ejection_percent")? {
        Some(p) if p > 100 => {
            return Err(invalid(
                o.child("max_ejection_percent"),
                Invalid::OutOfRange {
                    value: p.to_string(),
                    range: "0..=100",
                },
            ))
        }
        Some(p) => p,
        None => DEFAULT_MAX_EJECTION_PERCENT,
    };
    for key in [
        "consecutive_5xx",
        "consecutive_gateway_failure",
        "consecutive_local_origin_failure",
        "split_external_local_origin_errors",
        "success_rate_minimum_hosts",
        "success_rate_request_volume",
        "success_rate_stdev_factor",
        "enforcing_consecutive_5xx",
        "enforcing_success_rate",
        "failure_percentage_threshold",
    ] {
        o.warn_if_set(
            key,
            &format!("outlier_detection.{key} is not implemented; only consecutive_errors ejects"),
            warnings,
        );
    }
    o.finish(warnings);
    Ok(OutlierDetectionConfig {
        consecutive_errors,
        interval,
        base_ejection_time,
        max_ejection_time,
        max_ejection_percent,
    })
}

/// Parses `healthy_panic_threshold`: a percentage 0–100 (0 = never panic), as a number or
/// Envoy's `{"value": n}`.
pub(crate) fn parse_panic_threshold(o: &mut Obj<'_>) -> Result<u32, ConfigError> {
    let path = o.child("healthy_panic_threshold");
    let value = match o.get("healthy_panic_threshold") {
        None => return Ok(DEFAULT_HEALTHY_PANIC_THRESHOLD),
        Some(item) if item.value.is_object() => {
            let mut inner = item.obj()?;
            let v = inner.non_negative_f64("value")?;
            inner.finish_strict()?;
            v.unwrap_or(0.0)
        }
        Some(item) => item.node().as_non_negative_f64()?,
    };
    if value > 100.0 {
        return Err(invalid(
            path,
            Invalid::OutOfRange {
                value: value.to_string(),
                range: "0..=100",
            },
        ));
    }
    Ok(value.round() as u32)
}

/// A duration that must be greater than zero when given: `v` as read from `key` of `o`, or
/// `default` when absent.
fn positive(
    o: &Obj<'_>,
    key: &str,
    v: Option<Duration>,
    default: Duration,
) -> Result<Duration, ConfigError> {
    match v {
        Some(d) if d.is_zero() => Err(invalid(
            o.child(key),
            Invalid::Rule("must be greater than zero"),
        )),
        Some(d) => Ok(d),
        None => Ok(default),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse_hc(v: serde_json::Value) -> (Result<HealthCheckConfig, ConfigError>, Warnings) {
        let mut w = Warnings::default();
        let o = Obj::new(&v, "hc".into()).expect("object");
        (parse_health_check(o, &mut w), w)
    }

    fn parse_od(v: serde_json::Value) -> Result<OutlierDetectionConfig, ConfigError> {
        let mut w = Warnings::default();
        parse_outlier_detection(Obj::new(&v, "od".into()).expect("object"), &mut w)
    }

    #[test]
    fn health_check_defaults_follow_mosn() {
        let (hc, w) = parse_hc(json!({}));
        let hc = hc.expect("valid");
        assert_eq!(hc.kind, HealthCheckKind::TcpConnect);
        assert_eq!(hc.timeout, Duration::from_secs(1));
        assert_eq!(hc.interval, Duration::from_secs(15));
        assert_eq!(hc.interval_jitter, Duration::ZERO);
        assert_eq!((hc.healthy_threshold, hc.unhealthy_threshold), (2, 2));
        assert!(w.0.is_empty(), "{:?}", w.0);
    }

    #[test]
    fn the_protocol_field_picks_the_kind_and_unimplemented_fields_warn_by_name() {
        let (hc, w) = parse_hc(json!({
            "protocol": "bolt", "timeout": "500ms", "interval": "2s",
            "interval_jitter": "100ms", "healthy_threshold": 3, "unhealthy_threshold": 4,
            "service_name": "svc", "check_path": "/x", "bogus": 1
        }));
        let hc = hc.expect("valid");
        assert_eq!(hc.kind, HealthCheckKind::Heartbeat);
        assert_eq!(hc.timeout, Duration::from_millis(500));
        assert_eq!((hc.healthy_threshold, hc.unhealthy_threshold), (3, 4));
        assert_eq!(hc.service_name.as_deref(), Some("svc"));
        let paths: Vec<&str> = w.0.iter().map(|w| w.path.as_str()).collect();
        assert_eq!(paths, ["hc.check_path", "hc.bogus"]);
        let (tcp, _) = parse_hc(json!({"protocol": "TCP"}));
        assert_eq!(tcp.expect("valid").kind, HealthCheckKind::TcpConnect);
        let (zero, _) = parse_hc(json!({"interval": 0}));
        assert_eq!(zero.unwrap_err().json_path(), Some("hc.interval"));
    }

    #[test]
    fn outlier_detection_defaults_follow_envoy_and_bad_values_name_their_path() {
        let od = parse_od(json!({})).expect("valid");
        assert_eq!(od.consecutive_errors, 5);
        assert_eq!(od.base_ejection_time, Duration::from_secs(30));
        assert_eq!(od.max_ejection_time, Duration::from_secs(300));
        assert_eq!(od.max_ejection_percent, 10);
        assert_eq!(od.interval, Duration::from_secs(10));
        let e = parse_od(json!({"max_ejection_percent": 101})).unwrap_err();
        assert_eq!(e.json_path(), Some("od.max_ejection_percent"));
        let e = parse_od(json!({"consecutive_errors": 0})).unwrap_err();
        assert_eq!(e.json_path(), Some("od.consecutive_errors"));
        let e =
            parse_od(json!({"base_ejection_time": "10s", "max_ejection_time": "1s"})).unwrap_err();
        assert_eq!(e.json_path(), Some("od.max_ejection_time"));
    }

    #[test]
    fn the_panic_threshold_takes_a_number_or_envoys_object() {
        let read = |v: serde_json::Value| {
            let mut o = Obj::new(&v, "c".into()).expect("object");
            parse_panic_threshold(&mut o)
        };
        assert_eq!(read(json!({})).expect("valid"), 50);
        assert_eq!(
            read(json!({"healthy_panic_threshold": 0})).expect("valid"),
            0
        );
        assert_eq!(
            read(json!({"healthy_panic_threshold": {"value": 25.0}})).expect("valid"),
            25
        );
        let e = read(json!({"healthy_panic_threshold": 120})).unwrap_err();
        assert_eq!(e.json_path(), Some("c.healthy_panic_threshold"));
    }
}

//! `flowControlFilter` (MOSN's Sentinel filter), for RPC: each request gets a limit key built
//! from its headers (`limit_key_type: "HEADER"`, `limit_key` template such as
//! `"{service}#{sofa_head_method_name}"`), and every rule whose `resource` matches the key
//! (exactly, or as an anchored regex) applies: `grade` 1 = calls per second (token bucket),
//! `grade` 0 = calls in flight.

use std::time::Duration;

use regex::bytes::Regex;
use serde_json::{json, Value};

use super::super::duration::format_go_duration;
use super::super::error::{invalid, ConfigError, Invalid, Warnings};
use super::super::json::Obj;

/// The MOSN filter type.
pub(super) const TYPE: &str = "flowControlFilter";

/// `action.status` when absent: 503, which the Bolt plugin answers as SERVER_THREADPOOL_BUSY
/// so SOFA clients back off (MOSN's 509 would be UNKNOWN).
pub const DEFAULT_ACTION_STATUS: u32 = 503;

/// `limit_key` when absent.
pub const DEFAULT_LIMIT_KEY: &str = "{service}";

/// Sentinel's statistic interval when `statIntervalInMs` is absent or 0.
const DEFAULT_STAT_INTERVAL: Duration = Duration::from_secs(1);

/// A validated `flowControlFilter` config.
#[derive(Debug, Clone)]
pub struct FlowControlConfig {
    /// `global_switch`: false (MOSN's default) = the filter does nothing.
    pub enabled: bool,
    /// `monitor`: count what would be rejected, but let it through.
    pub monitor: bool,
    /// `limit_key` as written.
    pub limit_key_text: String,
    /// `limit_key`, compiled.
    pub limit_key: Vec<LimitKeyPart>,
    /// `action.status`: the proxy code of the hijack answering a rejected call.
    pub status: u32,
    /// `rules`, in order.
    pub rules: Vec<FlowRuleConfig>,
    /// JSON path of the filter's `config`, for messages.
    pub json_path: String,
}

/// One piece of a `limit_key` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LimitKeyPart {
    /// Text copied as is.
    Literal(String),
    /// `{name}`: the value of header `name` (empty when the request has no such header).
    Header(String),
}

/// One Sentinel flow rule.
#[derive(Debug, Clone)]
pub struct FlowRuleConfig {
    /// Names the rule's counters: `id` when set, else `stream_filters[i].rules[j]`.
    pub label: String,
    /// `resource`: the limit key this rule applies to.
    pub resource: String,
    /// `regex: true`: `resource` compiled as a regex matching the whole key.
    pub regex: Option<Regex>,
    /// What is limited.
    pub limit: FlowLimit,
    /// JSON path, for messages.
    pub json_path: String,
}

/// What a rule limits.
#[derive(Debug, Clone, PartialEq)]
pub enum FlowLimit {
    /// `grade: 1`: `threshold` calls per `stat_interval`, as a token bucket of `burst` tokens.
    Rate {
        /// Calls per `stat_interval`.
        threshold: f64,
        /// `statIntervalInMs` (1 s).
        stat_interval: Duration,
        /// Calls admitted at once from a full bucket.
        burst: u32,
        /// `controlBehavior: 1` (throttling): a call may wait up to this long for its token
        /// (`maxQueueingTimeMs`); `None` = reject at once.
        max_queueing: Option<Duration>,
    },
    /// `grade: 0`: at most `max` calls in flight.
    Concurrency {
        /// `threshold`.
        max: u32,
    },
}

impl FlowLimit {
    /// Tokens per second of a rate limit.
    pub fn rate_per_sec(threshold: f64, stat_interval: Duration) -> f64 {
        threshold / stat_interval.as_secs_f64()
    }
}

/// Parses the `config` of one `flowControlFilter`; `label` is `stream_filters[i]`.
pub(super) fn parse(
    mut c: Obj<'_>,
    label: &str,
    warnings: &mut Warnings,
) -> Result<FlowControlConfig, ConfigError> {
    let enabled = c.bool("global_switch")?.unwrap_or(false);
    if !enabled {
        warnings.push(
            c.child("global_switch"),
            "global_switch is not true: this flowControlFilter limits nothing (as in MOSN)",
        );
    }
    let monitor = c.bool("monitor")?.unwrap_or(false);
    match c.str("limit_key_type")? {
        None | Some("HEADER") => {}
        Some(other @ ("PATH" | "ARG" | "URI")) => {
            return Err(refused(
                &c,
                "limit_key_type",
                other,
                "PATH, ARG and URI are HTTP resources that RPC requests do not have \
                 (MOSN would limit nothing); use \"HEADER\" with a limit_key template",
            ))
        }
        Some(other) => {
            return Err(invalid(
                c.child("limit_key_type"),
                Invalid::Unsupported {
                    value: other.to_owned(),
                    supported: "\"HEADER\"",
                },
            ))
        }
    }
    let limit_key_text = c.str("limit_key")?.unwrap_or(DEFAULT_LIMIT_KEY).to_owned();
    let limit_key = parse_template(&limit_key_text, &c.child("limit_key"))?;
    let mut status = DEFAULT_ACTION_STATUS;
    if let Some(mut action) = c.obj("action")? {
        status = action.u32("status")?.unwrap_or(DEFAULT_ACTION_STATUS);
        action.warn_if_set(
            "body",
            "ignored: the plugin's hijack answers with the protocol's own error response, \
             which carries no body",
            warnings,
        );
        action.finish_strict()?;
    }
    for key in ["app_name", "log_path"] {
        c.warn_if_set(
            key,
            "ignored: no Sentinel logs are written (the counters are in the admin API)",
            warnings,
        );
    }
    if let Some(name) = c.str("callback_name")? {
        if !name.is_empty() {
            return Err(refused(
                &c,
                "callback_name",
                name,
                "custom Sentinel callbacks cannot be loaded; leave it empty",
            ));
        }
    }
    match c.str("direction")? {
        None => {}
        Some(d) if d.eq_ignore_ascii_case("inbound") || d.eq_ignore_ascii_case("outbound") => {}
        Some(other) => {
            return Err(invalid(
                c.child("direction"),
                Invalid::Unsupported {
                    value: other.to_owned(),
                    supported: "\"inbound\", \"outbound\"",
                },
            ))
        }
    }
    let mut rules = Vec::new();
    for (j, r) in c.items("rules")?.into_iter().enumerate() {
        rules.push(parse_rule(
            r.obj()?,
            &format!("{label}.rules[{j}]"),
            warnings,
        )?);
    }
    if enabled && rules.is_empty() {
        warnings.push(
            c.child("rules"),
            "no rules: this flowControlFilter limits nothing",
        );
    }
    let json_path = c.path().to_owned();
    c.finish_strict()?;
    Ok(FlowControlConfig {
        enabled,
        monitor,
        limit_key_text,
        limit_key,
        status,
        rules,
        json_path,
    })
}

fn parse_rule(
    mut r: Obj<'_>,
    default_label: &str,
    warnings: &mut Warnings,
) -> Result<FlowRuleConfig, ConfigError> {
    let label = match r.str("id")? {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => default_label.to_owned(),
    };
    let resource = r.required_str("resource")?.to_owned();
    let regex = if r.bool("regex")?.unwrap_or(false) {
        Some(Regex::new(&format!("^(?:{resource})$")).map_err(|source| {
            invalid(
                r.child("resource"),
                Invalid::Regex {
                    pattern: resource.clone(),
                    source,
                },
            )
        })?)
    } else {
        None
    };
    let grade = one_of_two(&mut r, "grade", "metricType")?.unwrap_or(1);
    let threshold_key = if r.get("threshold").is_some() {
        "threshold"
    } else {
        "count"
    };
    let threshold = one_of_two_f64(&mut r, "threshold", "count")?
        .ok_or_else(|| invalid(r.child("threshold"), Invalid::Missing))?;
    let behavior = r.i64("controlBehavior")?.unwrap_or(0);
    let max_queueing_ms = r.u32("maxQueueingTimeMs")?;
    let stat_interval_ms = r.u32("statIntervalInMs")?;
    let burst = r.u32("burst")?;
    if burst == Some(0) {
        return Err(invalid(
            r.child("burst"),
            Invalid::OutOfRange {
                value: "0".into(),
                range: "1..=4294967295",
            },
        ));
    }
    let limit = match grade {
        1 => {
            let stat_interval = match stat_interval_ms {
                None | Some(0) => DEFAULT_STAT_INTERVAL,
                Some(ms) => Duration::from_millis(u64::from(ms)),
            };
            let max_queueing = match behavior {
                0 => {
                    if max_queueing_ms.is_some_and(|ms| ms > 0) {
                        warnings.push(
                            r.child("maxQueueingTimeMs"),
                            "ignored: it only applies with controlBehavior 1 (throttling)",
                        );
                    }
                    None
                }
                1 => Some(Duration::from_millis(u64::from(
                    max_queueing_ms.unwrap_or(0),
                ))),
                other => return Err(bad_behavior(&r, other)),
            };
            // Sentinel counts `threshold` calls per interval, so a full interval's worth may
            // come at once; throttling paces calls one by one unless a burst is given.
            let default_burst = if max_queueing.is_some() {
                1
            } else {
                threshold.ceil().clamp(1.0, f64::from(u32::MAX)) as u32
            };
            FlowLimit::Rate {
                threshold,
                stat_interval,
                burst: burst.unwrap_or(default_burst),
                max_queueing,
            }
        }
        0 => {
            if behavior != 0 {
                return Err(bad_behavior(&r, behavior));
            }
            if burst.is_some() {
                return Err(invalid(
                    r.child("burst"),
                    Invalid::Rule("burst applies to rate rules (grade 1) only"),
                ));
            }
            for (key, set) in [
                ("statIntervalInMs", stat_interval_ms.is_some_and(|v| v > 0)),
                ("maxQueueingTimeMs", max_queueing_ms.is_some_and(|v| v > 0)),
            ] {
                if set {
                    warnings.push(
                        r.child(key),
                        "ignored: a concurrency rule (grade 0) counts calls in flight",
                    );
                }
            }
            if threshold.fract() != 0.0 || threshold > f64::from(u32::MAX) {
                return Err(invalid(
                    r.child(threshold_key),
                    Invalid::OutOfRange {
                        value: threshold.to_string(),
                        range: "a whole number of calls in flight, 0..=4294967295",
                    },
                ));
            }
            FlowLimit::Concurrency {
                max: threshold as u32,
            }
        }
        other => {
            return Err(invalid(
                r.child("grade"),
                Invalid::Unsupported {
                    value: other.to_string(),
                    supported: "1 (calls per second), 0 (calls in flight)",
                },
            ))
        }
    };
    // Sentinel fields that would change which calls pass: only their defaults are accepted.
    match r.str("limitApp")? {
        None | Some("") | Some("default") => {}
        Some(other) => return Err(refused(&r, "limitApp", other, "limits per caller app need the caller's identity, which RPC headers do not carry reliably; leave it empty or \"default\"")),
    }
    for key in ["strategy", "relationStrategy"] {
        if let Some(v) = r.i64(key)? {
            if v != 0 {
                return Err(refused(
                    &r,
                    key,
                    &v.to_string(),
                    "only 0 (the rule's own resource) is supported",
                ));
            }
        }
    }
    if let Some(v) = r.str("refResource")? {
        if !v.is_empty() {
            return Err(refused(
                &r,
                "refResource",
                v,
                "associated-resource rules are not supported",
            ));
        }
    }
    let token_strategy = r.i64("tokenCalculateStrategy")?.unwrap_or(0);
    if token_strategy != 0 {
        return Err(refused(
            &r,
            "tokenCalculateStrategy",
            &token_strategy.to_string(),
            "only 0 (direct) is supported; warm-up and adaptive strategies are not",
        ));
    }
    for key in ["warmUpPeriodSec", "warmUpColdFactor"] {
        r.warn_if_set(
            key,
            "ignored: it only applies with tokenCalculateStrategy 1 (warm-up)",
            warnings,
        );
    }
    if let Some(v) = r.str("adaptiveConfigName")? {
        if !v.is_empty() {
            return Err(refused(
                &r,
                "adaptiveConfigName",
                v,
                "adaptive rules are not supported",
            ));
        }
    }
    if r.bool("clusterMode")?.unwrap_or(false) {
        return Err(refused(
            &r,
            "clusterMode",
            "true",
            "cluster flow control is not supported; the limit is per sidecar process",
        ));
    }
    let json_path = r.path().to_owned();
    r.finish_strict()?;
    Ok(FlowRuleConfig {
        label,
        resource,
        regex,
        limit,
        json_path,
    })
}

/// An integer given under either of two names (Sentinel's and MOSN's spellings); both given
/// with different values is an error.
fn one_of_two(r: &mut Obj<'_>, a: &str, b: &str) -> Result<Option<i64>, ConfigError> {
    match (r.i64(a)?, r.i64(b)?) {
        (Some(x), Some(y)) if x != y => Err(invalid(
            r.child(b),
            Invalid::Rule("contradicts the other spelling of the same field (grade/metricType)"),
        )),
        (x, y) => Ok(x.or(y)),
    }
}

fn one_of_two_f64(r: &mut Obj<'_>, a: &str, b: &str) -> Result<Option<f64>, ConfigError> {
    match (r.non_negative_f64(a)?, r.non_negative_f64(b)?) {
        (Some(x), Some(y)) if x != y => Err(invalid(
            r.child(b),
            Invalid::Rule("contradicts the other spelling of the same field (threshold/count)"),
        )),
        (x, y) => Ok(x.or(y)),
    }
}

fn bad_behavior(r: &Obj<'_>, value: i64) -> ConfigError {
    invalid(
        r.child("controlBehavior"),
        Invalid::Unsupported {
            value: value.to_string(),
            supported: "0 (reject), or 1 (throttling, rate rules only)",
        },
    )
}

fn refused(r: &Obj<'_>, key: &str, value: &str, why: &'static str) -> ConfigError {
    invalid(
        r.child(key),
        Invalid::Refused {
            value: format!("{key} {value:?}"),
            why,
        },
    )
}

/// Compiles a `limit_key` template: `{name}` is header `name`, `{{` and `}}` are literal
/// braces, anything else is literal text.
fn parse_template(text: &str, path: &str) -> Result<Vec<LimitKeyPart>, ConfigError> {
    let bad = |why: &'static str| invalid(path, Invalid::Rule(why));
    if text.is_empty() {
        return Err(invalid(path, Invalid::Missing));
    }
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '{' if chars.peek() == Some(&'{') => {
                chars.next();
                literal.push('{');
            }
            '}' if chars.peek() == Some(&'}') => {
                chars.next();
                literal.push('}');
            }
            '}' => {
                return Err(bad(
                    "unmatched '}' in limit_key (write '}}' for a literal brace)",
                ))
            }
            '{' => {
                let mut name = String::new();
                loop {
                    match chars.next() {
                        Some('}') => break,
                        Some('{') | None => {
                            return Err(bad(
                                "unclosed '{' in limit_key (write '{{' for a literal brace)",
                            ))
                        }
                        Some(ch) => name.push(ch),
                    }
                }
                if name.is_empty() {
                    return Err(bad("empty header name '{}' in limit_key"));
                }
                if !literal.is_empty() {
                    parts.push(LimitKeyPart::Literal(std::mem::take(&mut literal)));
                }
                parts.push(LimitKeyPart::Header(name));
            }
            other => literal.push(other),
        }
    }
    if !literal.is_empty() {
        parts.push(LimitKeyPart::Literal(literal));
    }
    Ok(parts)
}

impl FlowControlConfig {
    /// The effective config as MOSN-shaped JSON.
    pub(super) fn to_json(&self) -> Value {
        json!({
            "global_switch": self.enabled,
            "monitor": self.monitor,
            "limit_key_type": "HEADER",
            "limit_key": self.limit_key_text,
            "action": {"status": self.status},
            "rules": self.rules.iter().map(FlowRuleConfig::to_json).collect::<Vec<_>>(),
        })
    }

    /// One line for `sidecar check`.
    pub(super) fn describe(&self) -> String {
        let mode = match (self.enabled, self.monitor) {
            (false, _) => " (disabled: global_switch false)",
            (true, true) => " (monitor only)",
            (true, false) => "",
        };
        let rules: Vec<String> = self.rules.iter().map(FlowRuleConfig::describe).collect();
        format!(
            "flowControlFilter{mode}: key {}, rejects with code {}; {}",
            self.limit_key_text,
            self.status,
            if rules.is_empty() {
                "no rules".to_owned()
            } else {
                rules.join("; ")
            }
        )
    }
}

impl FlowRuleConfig {
    fn to_json(&self) -> Value {
        let mut v = json!({"id": self.label, "resource": self.resource,
            "regex": self.regex.is_some()});
        match &self.limit {
            FlowLimit::Rate {
                threshold,
                stat_interval,
                burst,
                max_queueing,
            } => {
                v["grade"] = json!(1);
                v["threshold"] = json!(threshold);
                v["statIntervalInMs"] = json!(stat_interval.as_millis() as u64);
                v["burst"] = json!(burst);
                v["controlBehavior"] = json!(u8::from(max_queueing.is_some()));
                if let Some(q) = max_queueing {
                    v["maxQueueingTimeMs"] = json!(q.as_millis() as u64);
                }
            }
            FlowLimit::Concurrency { max } => {
                v["grade"] = json!(0);
                v["threshold"] = json!(max);
            }
        }
        v
    }

    fn describe(&self) -> String {
        let what = if self.regex.is_some() {
            format!("key ~ /{}/", self.resource)
        } else {
            format!("key = {:?}", self.resource)
        };
        let limit = match &self.limit {
            FlowLimit::Rate {
                threshold,
                stat_interval,
                burst,
                max_queueing,
            } => {
                let per_sec = FlowLimit::rate_per_sec(*threshold, *stat_interval);
                match max_queueing {
                    Some(q) => format!(
                        "{per_sec} calls/s, burst {burst}, queueing up to {}",
                        format_go_duration(*q)
                    ),
                    None => format!("{per_sec} calls/s, burst {burst}"),
                }
            }
            FlowLimit::Concurrency { max } => format!("{max} calls in flight"),
        };
        format!("{} [{what}]: {limit}", self.label)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse_json;
    use super::super::StreamFilterConfig;
    use super::*;

    fn flow(config: Value) -> Result<(FlowControlConfig, Vec<String>), ConfigError> {
        let (filters, warnings) =
            parse_json(json!([{"type": "flowControlFilter", "config": config}]))?;
        match filters.into_iter().next() {
            Some(StreamFilterConfig::FlowControl(f)) => Ok((f, warnings)),
            other => panic!("expected a flow control filter, got {other:?}"),
        }
    }

    fn path_of(config: Value) -> String {
        flow(config)
            .expect_err("config must be refused")
            .json_path()
            .unwrap_or_default()
            .to_owned()
    }

    const P: &str = "listeners[0].stream_filters[0].config";

    #[test]
    fn mosns_sample_shape_is_accepted() {
        let (f, warnings) = flow(json!({
            "app_name": "sample", "log_path": "/tmp/sentinel",
            "global_switch": true, "monitor": false,
            "limit_key_type": "HEADER", "limit_key": "{service}",
            "action": {"status": 503, "body": ""},
            "rules": [{"resource": "com.foo.Svc:1.0", "limitApp": "", "grade": 1,
                       "threshold": 10, "strategy": 0}],
        }))
        .unwrap();
        assert!(f.enabled && !f.monitor);
        assert_eq!(f.status, 503);
        assert_eq!(f.limit_key, [LimitKeyPart::Header("service".into())]);
        assert_eq!(f.rules.len(), 1);
        assert_eq!(f.rules[0].label, "stream_filters[0].rules[0]");
        assert_eq!(
            f.rules[0].limit,
            FlowLimit::Rate {
                threshold: 10.0,
                stat_interval: Duration::from_secs(1),
                burst: 10,
                max_queueing: None
            }
        );
        // app_name and log_path warn; nothing else does.
        assert_eq!(warnings.len(), 2, "{warnings:?}");
    }

    #[test]
    fn defaults_are_mosns_except_the_rpc_key_and_status() {
        let (f, warnings) = flow(json!({"rules": [{"resource": "a", "count": 2}]})).unwrap();
        assert!(!f.enabled, "global_switch defaults to false as in MOSN");
        assert!(warnings[0].contains("limits nothing"), "{warnings:?}");
        assert_eq!(f.status, DEFAULT_ACTION_STATUS);
        assert_eq!(f.limit_key_text, "{service}");
        assert!(matches!(f.rules[0].limit, FlowLimit::Rate { threshold, .. } if threshold == 2.0));
    }

    #[test]
    fn concurrency_rules_take_whole_thresholds() {
        let (f, _) = flow(json!({"global_switch": true,
            "rules": [{"id": "c", "resource": "a", "grade": 0, "threshold": 5}]}))
        .unwrap();
        assert_eq!(f.rules[0].limit, FlowLimit::Concurrency { max: 5 });
        assert_eq!(f.rules[0].label, "c");
        assert_eq!(
            path_of(json!({"rules": [{"resource": "a", "grade": 0, "threshold": 2.5}]})),
            format!("{P}.rules[0].threshold")
        );
        assert_eq!(
            path_of(json!({"rules": [{"resource": "a", "grade": 0, "threshold": 1, "burst": 3}]})),
            format!("{P}.rules[0].burst")
        );
    }

    #[test]
    fn throttling_paces_one_by_one_unless_a_burst_is_given() {
        let (f, _) = flow(json!({"rules": [
            {"resource": "a", "threshold": 20, "controlBehavior": 1, "maxQueueingTimeMs": 500},
            {"resource": "b", "threshold": 20, "controlBehavior": 1, "burst": 4,
             "statIntervalInMs": 2000},
        ]}))
        .unwrap();
        assert_eq!(
            f.rules[0].limit,
            FlowLimit::Rate {
                threshold: 20.0,
                stat_interval: Duration::from_secs(1),
                burst: 1,
                max_queueing: Some(Duration::from_millis(500))
            }
        );
        match f.rules[1].limit {
            FlowLimit::Rate {
                threshold,
                stat_interval,
                burst,
                max_queueing,
            } => {
                assert_eq!(FlowLimit::rate_per_sec(threshold, stat_interval), 10.0);
                assert_eq!((burst, max_queueing), (4, Some(Duration::ZERO)));
            }
            ref other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refused_values_are_errors_with_their_path() {
        let cases = [
            (
                json!({"limit_key_type": "PATH"}),
                format!("{P}.limit_key_type"),
            ),
            (
                json!({"limit_key_type": "COOKIE"}),
                format!("{P}.limit_key_type"),
            ),
            (json!({"limit_key": "{service"}), format!("{P}.limit_key")),
            (json!({"limit_key": "a}b"}), format!("{P}.limit_key")),
            (json!({"limit_key": "{}"}), format!("{P}.limit_key")),
            (
                json!({"callback_name": "mine"}),
                format!("{P}.callback_name"),
            ),
            (json!({"direction": "sideways"}), format!("{P}.direction")),
            (
                json!({"action": {"status": -1}}),
                format!("{P}.action.status"),
            ),
            (
                json!({"action": {"stauts": 503}}),
                format!("{P}.action.stauts"),
            ),
            (
                json!({"rules": [{"threshold": 1}]}),
                format!("{P}.rules[0].resource"),
            ),
            (
                json!({"rules": [{"resource": "a"}]}),
                format!("{P}.rules[0].threshold"),
            ),
            (
                json!({"rules": [{"resource": "a", "threshold": -1}]}),
                format!("{P}.rules[0].threshold"),
            ),
            (
                json!({"rules": [{"resource": "a", "threshold": 1, "count": 2}]}),
                format!("{P}.rules[0].count"),
            ),
            (
                json!({"rules": [{"resource": "a", "threshold": 1, "grade": 2}]}),
                format!("{P}.rules[0].grade"),
            ),
            (
                json!({"rules": [{"resource": "a", "threshold": 1, "controlBehavior": 2}]}),
                format!("{P}.rules[0].controlBehavior"),
            ),
            (
                json!({"rules": [{"resource": "a", "threshold": 1, "grade": 0, "controlBehavior": 1}]}),
                format!("{P}.rules[0].controlBehavior"),
            ),
            (
                json!({"rules": [{"resource": "a", "threshold": 1, "burst": 0}]}),
                format!("{P}.rules[0].burst"),
            ),
            (
                json!({"rules": [{"resource": "(", "regex": true, "threshold": 1}]}),
                format!("{P}.rules[0].resource"),
            ),
            (
                json!({"rules": [{"resource": "a", "threshold": 1, "limitApp": "billing"}]}),
                format!("{P}.rules[0].limitApp"),
            ),
            (
                json!({"rules": [{"resource": "a", "threshold": 1, "strategy": 1}]}),
                format!("{P}.rules[0].strategy"),
            ),
            (
                json!({"rules": [{"resource": "a", "threshold": 1, "refResource": "b"}]}),
                format!("{P}.rules[0].refResource"),
            ),
            (
                json!({"rules": [{"resource": "a", "threshold": 1, "tokenCalculateStrategy": 1}]}),
                format!("{P}.rules[0].tokenCalculateStrategy"),
            ),
            (
                json!({"rules": [{"resource": "a", "threshold": 1, "adaptiveConfigName": "x"}]}),
                format!("{P}.rules[0].adaptiveConfigName"),
            ),
            (
                json!({"rules": [{"resource": "a", "threshold": 1, "clusterMode": true}]}),
                format!("{P}.rules[0].clusterMode"),
            ),
            (
                json!({"rules": [{"resource": "a", "treshold": 1, "threshold": 1}]}),
                format!("{P}.rules[0].treshold"),
            ),
            (json!({"global_swich": true}), format!("{P}.global_swich")),
        ];
        for (config, path) in cases {
            assert_eq!(path_of(config.clone()), path, "{config}");
        }
    }

    #[test]
    fn templates_mix_headers_and_text() {
        assert_eq!(
            parse_template("{service}#{sofa_head_method_name}", "p").unwrap(),
            [
                LimitKeyPart::Header("service".into()),
                LimitKeyPart::Literal("#".into()),
                LimitKeyPart::Header("sofa_head_method_name".into()),
            ]
        );
        assert_eq!(
            parse_template("{{all}}", "p").unwrap(),
            [LimitKeyPart::Literal("{all}".into())]
        );
        assert!(parse_template("", "p").is_err());
    }

    #[test]
    fn regex_resources_match_the_whole_key() {
        let (f, _) = flow(
            json!({"rules": [{"resource": "com\\.foo\\..*", "regex": true,
            "threshold": 1}]}),
        )
        .unwrap();
        let re = f.rules[0].regex.as_ref().unwrap();
        assert!(re.is_match(b"com.foo.Bar:1.0"));
        assert!(!re.is_match(b"x.com.foo.Bar"));
    }

    #[test]
    fn no_effect_fields_warn() {
        let (_, warnings) = flow(json!({"global_switch": true,
            "action": {"body": "current request is limited"},
            "rules": [{"resource": "a", "threshold": 1, "maxQueueingTimeMs": 10,
                       "warmUpPeriodSec": 10}]}))
        .unwrap();
        assert_eq!(warnings.len(), 3, "{warnings:?}");
        assert!(warnings[0].contains("action.body"));
        assert!(warnings[1].contains("maxQueueingTimeMs"));
        assert!(warnings[2].contains("warmUpPeriodSec"));
    }
}

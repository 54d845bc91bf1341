//! MOSN's `fault` stream filter: delay a share of the requests, abort a share with a status
//! (answered through the plugin's hijack), optionally only for requests to one
//! `upstream_cluster` and with matching `headers`. Both of MOSN's shapes are read: the stream
//! filter's `{delay{fixed_delay, percentage}, abort{status, percentage}}` and the flat
//! `{delay_percent, delay_duration, abort_percent, abort_status}`.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};

use super::super::duration::format_go_duration;
use super::super::error::{invalid, ConfigError, Invalid, Warnings};
use super::super::json::Obj;
use super::super::route::parse_header_matcher;
use super::super::{ClusterRef, HeaderMatcherConfig};
use super::percent;

/// The MOSN filter type.
pub(super) const TYPE: &str = "fault";
/// The older name of the same filter.
pub(super) const LEGACY_TYPE: &str = "faultinject";

/// A validated `fault` config.
#[derive(Debug, Clone)]
pub struct FaultConfig {
    /// Names the filter's counters: `stream_filters[i]`.
    pub label: String,
    /// The delay, if any is configured with a non-zero duration and percentage.
    pub delay: Option<FaultDelay>,
    /// The abort, if any is configured with a non-zero percentage.
    pub abort: Option<FaultAbort>,
    /// Only requests routed to this cluster.
    pub upstream_cluster: Option<ClusterRef>,
    /// Only requests whose headers all match.
    pub headers: Vec<HeaderMatcherConfig>,
    /// JSON path of the filter's `config`, for messages.
    pub json_path: String,
}

/// An injected delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultDelay {
    /// How long.
    pub duration: Duration,
    /// Share of the matching requests delayed, 1..=100.
    pub percent: u32,
}

/// An injected abort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FaultAbort {
    /// The proxy code the hijack answers with.
    pub status: u32,
    /// Share of the matching requests aborted, 1..=100.
    pub percent: u32,
}

/// Parses the `config` of one `fault` filter; `label` is `stream_filters[i]`.
pub(super) fn parse(
    mut c: Obj<'_>,
    label: &str,
    clusters: &HashMap<&str, usize>,
    warnings: &mut Warnings,
) -> Result<FaultConfig, ConfigError> {
    let nested_delay = match c.obj("delay")? {
        Some(mut d) => {
            let v = (d.duration("fixed_delay")?, percent(&mut d, "percentage")?);
            d.finish_strict()?;
            Some(v)
        }
        None => None,
    };
    let flat_delay = (
        c.duration("delay_duration")?,
        percent(&mut c, "delay_percent")?,
    );
    let (duration, delay_percent) = pick(&c, nested_delay, flat_delay, "delay")?;
    let delay = match (duration, delay_percent) {
        (Some(d), Some(p)) if !d.is_zero() && p > 0 => Some(FaultDelay {
            duration: d,
            percent: p,
        }),
        _ => None,
    };

    let nested_abort = match c.obj("abort")? {
        Some(mut a) => {
            let v = (a.u32("status")?, percent(&mut a, "percentage")?);
            a.finish_strict()?;
            Some(v)
        }
        None => None,
    };
    let flat_abort = (c.u32("abort_status")?, percent(&mut c, "abort_percent")?);
    let from_nested = nested_abort.is_some();
    let (status, abort_percent) = pick(&c, nested_abort, flat_abort, "abort")?;
    let abort = match (status, abort_percent) {
        (Some(status), Some(p)) if p > 0 => Some(FaultAbort { status, percent: p }),
        (None, Some(p)) if p > 0 => {
            let path = if from_nested {
                c.child("abort.status")
            } else {
                c.child("abort_status")
            };
            return Err(invalid(path, Invalid::Missing));
        }
        _ => None,
    };

    let upstream_cluster = match c.str("upstream_cluster")? {
        None | Some("") => None,
        Some(name) => match clusters.get(name) {
            Some(&index) => Some(ClusterRef {
                name: name.to_owned(),
                index,
            }),
            None => {
                return Err(invalid(
                    c.child("upstream_cluster"),
                    Invalid::UnknownCluster {
                        name: name.to_owned(),
                    },
                ))
            }
        },
    };
    let mut headers = Vec::new();
    for h in c.items("headers")? {
        let mut ho = h.obj()?;
        headers.push(parse_header_matcher(&mut ho)?);
        ho.finish_strict()?;
    }
    if delay.is_none() && abort.is_none() {
        warnings.push(
            c.path().to_owned(),
            "no delay and no abort with a non-zero percentage: this fault filter does nothing",
        );
    }
    let json_path = c.path().to_owned();
    c.finish_strict()?;
    Ok(FaultConfig {
        label: label.to_owned(),
        delay,
        abort,
        upstream_cluster,
        headers,
        json_path,
    })
}

/// One of the two shapes: the nested object, or the flat keys; both is an error.
fn pick<A, B>(
    c: &Obj<'_>,
    nested: Option<(Option<A>, Option<B>)>,
    flat: (Option<A>, Option<B>),
    what: &'static str,
) -> Result<(Option<A>, Option<B>), ConfigError> {
    let flat_given = flat.0.is_some() || flat.1.is_some();
    match nested {
        Some(_) if flat_given => Err(invalid(
            c.child(what),
            Invalid::Rule(
                "give either the nested delay/abort object or the flat delay_*/abort_* keys, not both",
            ),
        )),
        Some(n) => Ok(n),
        None => Ok(flat),
    }
}

impl FaultConfig {
    /// The effective config as MOSN-shaped JSON (the nested shape).
    pub(super) fn to_json(&self) -> Value {
        let mut v = json!({});
        if let Some(d) = self.delay {
            v["delay"] = json!({"fixed_delay": format_go_duration(d.duration),
                "percentage": d.percent});
        }
        if let Some(a) = self.abort {
            v["abort"] = json!({"status": a.status, "percentage": a.percent});
        }
        if let Some(c) = &self.upstream_cluster {
            v["upstream_cluster"] = json!(c.name);
        }
        if !self.headers.is_empty() {
            v["headers"] = json!(self
                .headers
                .iter()
                .map(|h| json!({"name": h.name, "value": h.value, "regex": h.regex.is_some()}))
                .collect::<Vec<_>>());
        }
        v
    }

    /// One line for `sidecar check`.
    pub(super) fn describe(&self) -> String {
        let mut what = Vec::new();
        if let Some(d) = self.delay {
            what.push(format!(
                "delay {} for {}%",
                format_go_duration(d.duration),
                d.percent
            ));
        }
        if let Some(a) = self.abort {
            what.push(format!("abort with code {} for {}%", a.status, a.percent));
        }
        if what.is_empty() {
            what.push("nothing".to_owned());
        }
        let mut only = Vec::new();
        if let Some(c) = &self.upstream_cluster {
            only.push(format!("cluster {}", c.name));
        }
        if !self.headers.is_empty() {
            only.push(format!("{} header matcher(s)", self.headers.len()));
        }
        let scope = if only.is_empty() {
            String::new()
        } else {
            format!(" (only {})", only.join(", "))
        };
        format!("fault {}: {}{scope}", self.label, what.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::parse_json;
    use super::super::StreamFilterConfig;
    use super::*;

    fn fault(kind: &str, config: Value) -> Result<(FaultConfig, Vec<String>), ConfigError> {
        let (filters, warnings) = parse_json(json!([{"type": kind, "config": config}]))?;
        match filters.into_iter().next() {
            Some(StreamFilterConfig::Fault(f)) => Ok((f, warnings)),
            other => panic!("expected a fault filter, got {other:?}"),
        }
    }

    const P: &str = "listeners[0].stream_filters[0].config";

    #[test]
    fn the_nested_shape() {
        let (f, warnings) = fault(
            "fault",
            json!({"delay": {"fixed_delay": "150ms", "percentage": 100},
                   "abort": {"status": 503, "percentage": 10},
                   "upstream_cluster": "serverCluster",
                   "headers": [{"name": "service", "value": "svc"}]}),
        )
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            f.delay,
            Some(FaultDelay {
                duration: Duration::from_millis(150),
                percent: 100
            })
        );
        assert_eq!(
            f.abort,
            Some(FaultAbort {
                status: 503,
                percent: 10
            })
        );
        assert_eq!(f.upstream_cluster.as_ref().map(|c| c.index), Some(0));
        assert_eq!(f.headers.len(), 1);
        assert_eq!(f.label, "stream_filters[0]");
    }

    #[test]
    fn the_flat_shape_and_the_legacy_type_name() {
        let (f, _) = fault(
            "faultinject",
            json!({"delay_percent": 50, "delay_duration": "1s",
                   "abort_percent": 100, "abort_status": 500}),
        )
        .unwrap();
        assert_eq!(
            f.delay,
            Some(FaultDelay {
                duration: Duration::from_secs(1),
                percent: 50
            })
        );
        assert_eq!(
            f.abort,
            Some(FaultAbort {
                status: 500,
                percent: 100
            })
        );
    }

    #[test]
    fn zero_percent_or_zero_delay_injects_nothing_and_warns() {
        let (f, warnings) = fault(
            "fault",
            json!({"delay": {"fixed_delay": "0s", "percentage": 100},
                   "abort": {"status": 500, "percentage": 0}}),
        )
        .unwrap();
        assert_eq!((f.delay, f.abort), (None, None));
        assert!(warnings[0].contains("does nothing"), "{warnings:?}");
    }

    #[test]
    fn bad_values_are_errors_with_their_path() {
        let cases = [
            (
                json!({"abort": {"percentage": 100}}),
                format!("{P}.abort.status"),
            ),
            (json!({"abort_percent": 100}), format!("{P}.abort_status")),
            (
                json!({"abort": {"status": 500, "percentage": 100, "pct": 1}}),
                format!("{P}.abort.pct"),
            ),
            (
                json!({"delay": {"fixed_delay": "soon", "percentage": 1}}),
                format!("{P}.delay.fixed_delay"),
            ),
            (
                json!({"delay": {"fixed_delay": "1s", "percentage": 1}, "delay_percent": 5}),
                format!("{P}.delay"),
            ),
            (
                json!({"delay_percent": 200, "delay_duration": "1s"}),
                format!("{P}.delay_percent"),
            ),
            (
                json!({"upstream_cluster": "nope"}),
                format!("{P}.upstream_cluster"),
            ),
            (
                json!({"headers": [{"name": "x", "value": "(", "regex": true}]}),
                format!("{P}.headers[0].value"),
            ),
            (
                json!({"headers": [{"value": "x"}]}),
                format!("{P}.headers[0].name"),
            ),
            (
                json!({"abort_status": 500, "abort_percent": 1, "percent": 1}),
                format!("{P}.percent"),
            ),
        ];
        for (config, path) in cases {
            let e = fault("fault", config.clone()).expect_err("refused");
            assert_eq!(e.json_path(), Some(path.as_str()), "{config}: {e}");
        }
    }
}

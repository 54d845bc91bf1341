//! The human summary `sidecar check` prints: listeners, routes, clusters, plugins, codecs
//! and warnings.

use super::duration::format_go_duration as dur;
use super::{ClusterTarget, CodecKind, Config, HeaderMatcherConfig, RetryPolicy, RouteMatch};
use std::fmt::Write;

/// Renders `config` as indented text.
pub(crate) fn render(config: &Config) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_summary(&mut out, config);
    out
}

fn write_summary(out: &mut String, c: &Config) -> std::fmt::Result {
    let s = &c.server;
    writeln!(
        out,
        "server: log {} at {}, graceful timeout {}, {} worker(s)",
        s.log.path,
        s.log.level,
        dur(s.graceful_timeout),
        s.processor
    )?;
    match c.admin {
        Some(a) => writeln!(out, "admin: {a}")?,
        None => writeln!(out, "admin: off")?,
    }
    let l = &c.limits;
    writeln!(
        out,
        "limits: frame read timeout {}, write queue high/low water {}/{} bytes, {} requests in flight per connection, {} bytes buffered in all, {} downstream connections, {} plugin restarts per minute",
        dur(l.frame_read_timeout),
        l.write_high_water,
        l.write_low_water,
        l.max_requests_per_connection,
        l.max_buffered_bytes,
        l.max_downstream_connections,
        l.max_plugin_restarts_per_minute
    )?;

    writeln!(out, "listeners ({}):", c.listeners.len())?;
    for l in &c.listeners {
        let codecs: Vec<String> = l
            .proxy
            .codecs
            .iter()
            .map(|&i| {
                let codec = &c.codecs[i];
                match l.proxy.auto_detect {
                    Some(_) => format!("{} {}", codec.protocol, codec_kind(c, &codec.kind)),
                    None => codec_kind(c, &codec.kind),
                }
            })
            .collect();
        writeln!(
            out,
            "  {} {}{} protocol {} ({}) -> route config {}, idle timeout {}",
            l.name,
            l.address,
            if l.bind_port {
                ""
            } else {
                " (virtual, not bound)"
            },
            l.proxy.protocol,
            codecs.join(", "),
            l.proxy.router_config_name,
            l.connection_idle_timeout.map_or("never".to_owned(), dur),
        )?;
        if let Some(d) = &l.proxy.auto_detect {
            writeln!(
                out,
                "    auto-detect: first matching candidate in this order; undecided after {} bytes or {}: closed",
                d.max_bytes,
                dur(d.timeout)
            )?;
        }
        for f in &l.stream_filters {
            writeln!(out, "    stream filter {}", f.describe())?;
        }
        for a in &l.access_logs {
            writeln!(out, "    access log {} ({} lines)", a.target, a.encoding)?;
        }
    }

    writeln!(out, "route configs ({}):", c.route_configs.len())?;
    for rc in &c.route_configs {
        writeln!(out, "  {}", rc.name)?;
        for vh in &rc.virtual_hosts {
            writeln!(
                out,
                "    virtual host {:?} domains [{}]{}",
                vh.name,
                vh.domains.join(", "),
                if vh.is_default() {
                    ""
                } else {
                    " (unused by RPC)"
                }
            )?;
            for (i, r) in vh.routes.iter().enumerate() {
                let when = match &r.matcher {
                    RouteMatch::NonRpc => "never (HTTP rule)".to_owned(),
                    RouteMatch::Headers(m) if m.is_empty() => "always".to_owned(),
                    RouteMatch::Headers(m) => describe_matchers(m),
                };
                let to = match &r.action.target {
                    ClusterTarget::Cluster(cr) => cr.name.clone(),
                    ClusterTarget::Weighted(list) => list
                        .iter()
                        .map(|w| format!("{}={}", w.cluster.name, w.weight))
                        .collect::<Vec<_>>()
                        .join(", "),
                };
                let timeout = r.action.timeout.map_or("default".to_owned(), dur);
                let retry = retry_summary(r.action.retry_policy.as_ref());
                writeln!(
                    out,
                    "      #{i} when {when} -> {to} (timeout {timeout}{retry})"
                )?;
            }
        }
    }

    writeln!(out, "clusters ({}):", c.clusters.len())?;
    for cl in &c.clusters {
        let cb = &cl.circuit_breakers;
        let limit = |v: Option<u32>| v.map_or("unlimited".to_owned(), |n| n.to_string());
        writeln!(
            out,
            "  {} {} {} connect timeout {}, {} connection(s) per host per worker when \
             multiplexed (ping-pong cap {}), max_requests {}, max_pending_requests {}, \
             max_retries {}{}",
            cl.name,
            cl.kind,
            cl.lb,
            dur(cl.connect_timeout),
            cb.multiplex_connections_per_host(),
            limit(cb.max_connections),
            limit(cb.max_requests),
            limit(cb.max_pending_requests),
            limit(cb.max_retries),
            cl.pool_mode
                .map_or(String::new(), |m| format!(", pool {m}")),
        )?;
        let k = &cl.keepalive;
        writeln!(
            out,
            "    keepalive: heartbeat after {} idle, timeout {}, close after {} misses{}",
            dur(k.idle),
            dur(k.timeout),
            k.max_failures,
            k.interval
                .map_or(String::new(), |i| format!(", every {}", dur(i)))
        )?;
        match &cl.health_check {
            Some(hc) => writeln!(
                out,
                "    health check: {} every {} (+ up to {} jitter), timeout {}, unhealthy after \
                 {} failures, healthy after {} passes",
                hc.kind,
                dur(hc.interval),
                dur(hc.interval_jitter),
                dur(hc.timeout),
                hc.unhealthy_threshold,
                hc.healthy_threshold
            )?,
            None => writeln!(out, "    health check: off")?,
        }
        match &cl.outlier_detection {
            Some(od) => writeln!(
                out,
                "    outlier detection: eject after {} consecutive failures for {} x times \
                 ejected (at most {}), at most {}% of hosts, sweep every {}",
                od.consecutive_errors,
                dur(od.base_ejection_time),
                dur(od.max_ejection_time),
                od.max_ejection_percent,
                dur(od.interval)
            )?,
            None => writeln!(out, "    outlier detection: off")?,
        }
        if let Some(dns) = &cl.dns {
            let servers = match &dns.servers {
                super::DnsServers::System => "the system resolver".to_owned(),
                super::DnsServers::Servers(s) => {
                    let list: Vec<String> = s.iter().map(ToString::to_string).collect();
                    format!("{} over UDP", list.join(", "))
                }
            };
            writeln!(
                out,
                "    dns: {} via {}, every {}{}, on connect failure, up to {} hosts per name, \
                 timeout {} x {} attempts",
                dns.family,
                servers,
                dur(dns.refresh_rate),
                if dns.respect_ttl {
                    " (or TTL + 1s)"
                } else {
                    ""
                },
                dns.max_hosts,
                dur(dns.timeout),
                dns.attempts
            )?;
        }
        writeln!(
            out,
            "    panic threshold: {}",
            match cl.healthy_panic_threshold {
                0 => "off".to_owned(),
                p => format!("{p}% healthy"),
            }
        )?;
        for h in &cl.hosts {
            writeln!(out, "    host {} weight {}", h.address, h.weight)?;
        }
    }

    writeln!(out, "wasm plugins ({}):", c.plugins.len())?;
    for p in &c.plugins {
        writeln!(
            out,
            "  {} engine {} file {} ({}), instance_num {} over {} worker(s){}",
            p.name,
            p.vm.engine.as_str(),
            p.vm.path,
            p.vm.resolved_path.display(),
            p.instance_num,
            c.server.workers(),
            if p.vm.md5.is_empty() {
                ""
            } else {
                ", md5 checked"
            }
        )?;
    }

    writeln!(out, "codecs ({}):", c.codecs.len())?;
    for codec in &c.codecs {
        let instances = match &codec.kind {
            CodecKind::Wasm(w) => format!(
                ", {} instance(s) per worker",
                c.plugins[w.plugin].instances_per_worker(c.server.workers())
            ),
            CodecKind::Native(_) => String::new(),
        };
        writeln!(
            out,
            "  {} {}, pool {}{instances}",
            codec.protocol,
            codec_kind(c, &codec.kind),
            codec.pool_mode
        )?;
    }

    writeln!(out, "warnings ({}):", c.warnings.len())?;
    for w in &c.warnings {
        writeln!(out, "  {w}")?;
    }
    Ok(())
}

/// What a route's retries actually do (MOSN, xprotocol spec §2.8): the attempts (at least
/// 3), and what triggers a retry.
fn retry_summary(policy: Option<&RetryPolicy>) -> String {
    let attempts = policy.map_or(3, |p| p.num_retries.max(3));
    let Some(p) = policy.filter(|p| p.retry_on) else {
        return format!(", {attempts} attempts on connect failures");
    };
    let statuses = if p.status_codes.is_empty() {
        "code >= 500".to_owned()
    } else {
        let codes: Vec<String> = p.status_codes.iter().map(u32::to_string).collect();
        format!("code in [{}]", codes.join(", "))
    };
    format!(
        ", {attempts} attempts on connect failures, upstream closes, per-try timeouts{} and \
         responses with {statuses}",
        p.retry_timeout
            .map_or(String::new(), |t| format!(" (per try {})", dur(t)))
    )
}

fn codec_kind(c: &Config, kind: &CodecKind) -> String {
    match kind {
        CodecKind::Wasm(w) => format!(
            "wasm plugin {}, root_id {}",
            c.plugins[w.plugin].name, w.root_id
        ),
        CodecKind::Native(n) => format!("native {n}"),
    }
}

fn describe_matchers(m: &[HeaderMatcherConfig]) -> String {
    let single_service = m.len() == 1 && m[0].name == "service";
    m.iter()
        .map(|h| match &h.regex {
            Some(_) => format!("{} ~ /{}/", h.name, h.value),
            None if single_service && h.value == ".*" => format!("{} is non-empty", h.name),
            None if single_service => format!("{} == {:?} (non-empty)", h.name, h.value),
            None => format!("{} == {:?}", h.name, h.value),
        })
        .collect::<Vec<_>>()
        .join(" and ")
}

//! The effective config as MOSN-layout JSON with every default filled in (what the admin
//! API's `config_dump` shows). Unsupported fields that were warned about are not repeated.

use serde_json::{json, Map, Value};

use super::duration::format_go_duration as dur;
use super::{
    ClusterConfig, ClusterTarget, CodecConfig, CodecKind, Config, ListenerConfig, RouteConfig,
    RouteMatch,
};

/// Renders `config` in MOSN's JSON layout.
pub(crate) fn render(c: &Config) -> Value {
    let mut root = Map::new();
    root.insert(
        "servers".into(),
        json!([{
            "default_log_path": c.server.log.path.to_string(),
            "default_log_level": c.server.log.level.to_string(),
            "graceful_timeout": dur(c.server.graceful_timeout),
            "processor": c.server.processor,
            "routers": c.route_configs.iter().map(route_config).collect::<Vec<_>>(),
            "listeners": c.listeners.iter().map(|l| listener(c, l)).collect::<Vec<_>>(),
        }]),
    );
    root.insert(
        "cluster_manager".into(),
        json!({"clusters": c.clusters.iter().map(|cl| cluster(cl)).collect::<Vec<_>>()}),
    );
    if let Some(admin) = c.admin {
        root.insert(
            "admin".into(),
            json!({"address": {"socket_address": {
                "address": admin.ip().to_string(), "port_value": admin.port()}}}),
        );
    }
    let globals: Vec<Value> = c
        .plugins
        .iter()
        .filter(|p| !p.name.starts_with("codec:"))
        .map(plugin)
        .collect();
    root.insert("wasm_global_plugins".into(), Value::Array(globals));
    let codecs: Vec<Value> = c
        .codecs
        .iter()
        .map(|codec| {
            let mut v = dump_codec(c, codec);
            if let Some(max) = codec.max_frame_bytes {
                v["config"]["max_frame_bytes"] = json!(max);
            }
            v
        })
        .collect();
    root.insert("third_part_codec".into(), json!({ "codecs": codecs }));
    let l = &c.limits;
    root.insert(
        "limits".into(),
        json!({
            "frame_read_timeout": dur(l.frame_read_timeout),
            "write_high_water_bytes": l.write_high_water,
            "write_low_water_bytes": l.write_low_water,
            "max_requests_per_connection": l.max_requests_per_connection,
            "max_buffered_bytes": l.max_buffered_bytes,
            "max_downstream_connections": l.max_downstream_connections,
            "max_plugin_restarts_per_minute": l.max_plugin_restarts_per_minute,
        }),
    );
    Value::Object(root)
}

fn dump_codec(c: &Config, codec: &CodecConfig) -> Value {
    match &codec.kind {
        CodecKind::Wasm(w) => {
            let p = &c.plugins[w.plugin];
            let mut config = json!({
                "protocol": codec.protocol,
                "root_id": w.root_id,
                "pool_mode": codec.pool_mode.to_string(),
                "disable_worker_pool": w.disable_worker_pool,
            });
            if p.name.starts_with("codec:") {
                config["vm_config"] = plugin(p)["vm_config"].clone();
                config["instance_num"] = json!(p.instance_num);
            } else {
                config["from_wasm_plugin"] = json!(p.name);
            }
            for (k, v) in &w.plugin_config_pairs {
                if config.get(k).is_none() {
                    config[k.as_str()] = json!(v);
                }
            }
            json!({"type": "wasm", "enable": true, "config": config})
        }
        CodecKind::Native(n) => json!({"type": "native", "enable": true, "config": {
                "protocol": codec.protocol, "codec": n.to_string(),
                "pool_mode": codec.pool_mode.to_string()}}),
    }
}

fn route_config(rc: &RouteConfig) -> Value {
    json!({
        "router_config_name": rc.name,
        "virtual_hosts": rc.virtual_hosts.iter().map(|vh| json!({
            "name": vh.name,
            "domains": vh.domains,
            "routers": vh.routes.iter().map(|r| {
                let headers: Vec<Value> = match &r.matcher {
                    RouteMatch::Headers(list) => list
                        .iter()
                        .map(|h| json!({"name": h.name, "value": h.value, "regex": h.regex.is_some()}))
                        .collect(),
                    RouteMatch::NonRpc => Vec::new(),
                };
                let mut route = Map::new();
                match &r.action.target {
                    ClusterTarget::Cluster(cr) => {
                        route.insert("cluster_name".into(), json!(cr.name));
                    }
                    ClusterTarget::Weighted(list) => {
                        route.insert("weighted_clusters".into(), list.iter().map(|w| json!({
                            "cluster": {"name": w.cluster.name, "weight": w.weight}})).collect());
                    }
                }
                if let Some(t) = r.action.timeout {
                    route.insert("timeout".into(), json!(dur(t)));
                }
                if let Some(p) = &r.action.retry_policy {
                    let mut policy = json!({"retry_on": p.retry_on, "num_retries": p.num_retries,
                        "status_codes": p.status_codes});
                    if let Some(t) = p.retry_timeout {
                        policy["retry_timeout"] = json!(dur(t));
                    }
                    route.insert("retry_policy".into(), policy);
                }
                let mut entry = json!({"match": {"headers": headers}, "route": route});
                if matches!(r.matcher, RouteMatch::NonRpc) {
                    entry["match"]["unsupported_http_rule"] = json!(true);
                }
                entry
            }).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}

fn listener(c: &Config, l: &ListenerConfig) -> Value {
    let protocol = &l.proxy.protocol;
    let mut v = json!({
        "name": l.name,
        "address": l.address.to_string(),
        "bind_port": l.bind_port,
        "network": "tcp",
        "connection_idle_timeout": l.connection_idle_timeout.map_or("0s".to_owned(), dur),
        "filter_chains": [{"filters": [{"type": "proxy", "config": {
            "downstream_protocol": protocol,
            "upstream_protocol": protocol,
            "router_config_name": c.route_configs[l.proxy.route_config].name,
        }}]}],
    });
    if let Some(d) = &l.proxy.auto_detect {
        let candidates: Vec<&str> = l
            .proxy
            .codecs
            .iter()
            .map(|&i| c.codecs[i].protocol.as_str())
            .collect();
        v["filter_chains"][0]["filters"][0]["config"]["extend_config"] = json!({
            "sub_protocol": candidates.join(","),
            "auto_detect": {"max_bytes": d.max_bytes, "timeout": dur(d.timeout)},
        });
    }
    if !l.stream_filters.is_empty() {
        v["stream_filters"] = json!(l
            .stream_filters
            .iter()
            .map(|f| f.to_json())
            .collect::<Vec<_>>());
    }
    if !l.access_logs.is_empty() {
        v["access_logs"] = json!(l
            .access_logs
            .iter()
            .map(|a| json!({
                "log_path": a.target.to_string(),
                "log_format": a.format_text,
                "log_encoding": a.encoding.to_string(),
            }))
            .collect::<Vec<_>>());
    }
    v
}

fn cluster(cl: &ClusterConfig) -> Value {
    let cb = &cl.circuit_breakers;
    let mut v = json!({
        "name": cl.name,
        "type": cl.kind.to_string(),
        "lb_type": cl.lb.to_string(),
        "hosts": cl.hosts.iter().map(|h| {
            let mut host = json!({"address": h.address.to_string(), "weight": h.weight});
            if let Some(name) = &h.hostname {
                host["hostname"] = json!(name);
            }
            if !h.metadata.is_empty() {
                host["metadata"] = json!(h.metadata);
            }
            host
        }).collect::<Vec<_>>(),
        "connect_timeout": dur(cl.connect_timeout),
        "circuit_breakers": [{
            "max_connections": cb.max_connections.unwrap_or(0),
            "max_pending_requests": cb.max_pending_requests.unwrap_or(0),
            "max_requests": cb.max_requests.unwrap_or(0),
            "max_retries": cb.max_retries.unwrap_or(0),
        }],
        "max_request_per_conn": cl.max_request_per_conn,
        "conn_buffer_limit_bytes": cl.conn_buffer_limit_bytes,
        "keepalive": {
            "timeout": dur(cl.keepalive.timeout),
            "idle": dur(cl.keepalive.idle),
            "max_failures": cl.keepalive.max_failures,
        },
    });
    if let Some(i) = cl.keepalive.interval {
        v["keepalive"]["interval"] = json!(dur(i));
    }
    if let Some(m) = cl.pool_mode {
        v["pool_mode"] = json!(m.to_string());
    }
    if let Some(hc) = &cl.health_check {
        v["health_check"] = json!({
            "protocol": hc.protocol,
            "kind": hc.kind.to_string(),
            "timeout": dur(hc.timeout),
            "interval": dur(hc.interval),
            "interval_jitter": dur(hc.interval_jitter),
            "healthy_threshold": hc.healthy_threshold,
            "unhealthy_threshold": hc.unhealthy_threshold,
        });
        if let Some(name) = &hc.service_name {
            v["health_check"]["service_name"] = json!(name);
        }
    }
    if let Some(od) = &cl.outlier_detection {
        v["outlier_detection"] = json!({
            "consecutive_errors": od.consecutive_errors,
            "interval": dur(od.interval),
            "base_ejection_time": dur(od.base_ejection_time),
            "max_ejection_time": dur(od.max_ejection_time),
            "max_ejection_percent": od.max_ejection_percent,
        });
    }
    v["healthy_panic_threshold"] = json!(cl.healthy_panic_threshold);
    v
}

fn plugin(p: &super::PluginConfig) -> Value {
    let mut vm = json!({
        "engine": p.vm.engine.as_str(),
        "path": p.vm.path,
        "url": p.vm.url,
        "md5": p.vm.md5,
    });
    if let Some(cpu) = p.vm.cpu {
        vm["cpu"] = json!(cpu);
    }
    if let Some(mem) = p.vm.mem {
        vm["mem"] = json!(mem);
    }
    json!({"plugin_name": p.name, "instance_num": p.instance_num, "vm_config": vm})
}

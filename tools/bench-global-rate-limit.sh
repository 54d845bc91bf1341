#!/usr/bin/env bash
# Per-call cost of the `rateLimit` filter: one sidecar (one worker, Wasm Bolt plugin) in front
# of bolt-echo, without and with the filter asking the real rate limit service (on Redis),
# driven by boltbench over one connection; the two variants interleaved for ROUNDS rounds.
# Prints calls/s, latency and CPU per call of the sidecar, the rate limit service and Redis.
#
#   tools/bench-global-rate-limit.sh [ROUNDS] [DURATION] [IN_FLIGHT]     (3, 5s, 64)
#   BIN_DIR=target/release tools/bench-global-rate-limit.sh              (default target/debug)
#
# Needs the sidecar, bolt-echo and boltbench binaries in BIN_DIR and the Bolt plugin
# (make plugins); starts Redis and the rate limit service itself (tools/services.sh).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ -z "${RATELIMIT_ADDR:-}" ]; then
    exec tools/services.sh run -- "$0" "$@"
fi

ROUNDS="${1:-3}"
DURATION="${2:-5s}"
IN_FLIGHT="${3:-64}"
BIN_DIR="${BIN_DIR:-target/debug}"
OUT="$(mktemp -d)"
TICKS="$(getconf CLK_TCK)"
# configs/ratelimit: com.example.Bench* may make a million calls a second, so every call is
# answered OK after a real counter update in Redis.
SERVICE="com.example.Bench.run-$$"

for bin in sidecar bolt-echo boltbench; do
    [ -x "$BIN_DIR/$bin" ] || { echo "missing $BIN_DIR/$bin" >&2; exit 1; }
done

pids=()
cleanup() {
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
    wait 2>/dev/null || true
    rm -rf "$OUT"
}
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_port() {
    for _ in $(seq 300); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return
        sleep 0.1
    done
    echo "nothing listens on $1" >&2
    exit 1
}

ECHO_PORT="$(port)"
"$BIN_DIR/bolt-echo" --listen "127.0.0.1:$ECHO_PORT" >"$OUT/echo.log" 2>&1 &
pids+=($!)
wait_port "$ECHO_PORT"

# config PORT FILTERS_JSON: one listener on PORT forwarding to bolt-echo.
config() {
    cat <<EOF
{"servers": [{"default_log_path": "stdout", "default_log_level": "WARN", "processor": 1,
  "routers": [{"router_config_name": "r", "virtual_hosts": [{"name": "h", "domains": ["*"],
    "routers": [{"match": {"headers": [{"name": "service", "value": ".*"}]},
                 "route": {"cluster_name": "echo"}}]}]}],
  "listeners": [{"name": "bench", "address": "127.0.0.1:$1", "bind_port": true,
    "filter_chains": [{"filters": [{"type": "proxy", "config": {"downstream_protocol": "X",
      "upstream_protocol": "X", "router_config_name": "r",
      "extend_config": {"sub_protocol": "x-bolt"}}}]}],
    "stream_filters": $2}]}],
 "cluster_manager": {"clusters": [{"name": "echo", "type": "SIMPLE", "lb_type": "LB_RANDOM",
   "hosts": [{"address": "127.0.0.1:$ECHO_PORT"}]}]},
 "wasm_global_plugins": [{"plugin_name": "wasm-bolt",
   "vm_config": {"engine": "wasmer", "path": "target/wasm32-wasip1/plugin/bolt.wasm"}}],
 "third_part_codec": {"codecs": [{"type": "wasm", "enable": true,
   "config": {"from_wasm_plugin": "wasm-bolt", "protocol": "x-bolt", "root_id": 1}}]}}
EOF
}

FILTER='[{"type": "rateLimit", "config": {"domain": "sidecar",
  "rate_limit_service": {"address": "'"$RATELIMIT_ADDR"'"}, "timeout": "1s",
  "descriptors": [{"entries": [{"key": "service", "header": "service"}]}]}}]'

declare -A SIDECAR_PORT SIDECAR_PID
for variant in without with; do
    p="$(port)"
    if [ "$variant" = with ]; then filters="$FILTER"; else filters='[]'; fi
    config "$p" "$filters" >"$OUT/$variant.json"
    "$BIN_DIR/sidecar" start -c "$OUT/$variant.json" >"$OUT/$variant.log" 2>&1 &
    pid=$!
    pids+=("$pid")
    wait_port "$p"
    SIDECAR_PORT[$variant]="$p"
    SIDECAR_PID[$variant]="$pid"
done

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
RLS_PID="$(cat target/services/ratelimit.pid)"
REDIS_PID="$(cat target/services/redis.pid)"

printf '%-8s %5s %10s %8s %8s %14s %14s %14s\n' variant round calls/s p50_us p99_us \
    sidecar_us/call rls_us/call redis_us/call
for round in $(seq "$ROUNDS"); do
    for variant in without with; do
        pid="${SIDECAR_PID[$variant]}"
        s0="$(cpu_ticks "$pid")" r0="$(cpu_ticks "$RLS_PID")" d0="$(cpu_ticks "$REDIS_PID")"
        "$BIN_DIR/boltbench" --target "127.0.0.1:${SIDECAR_PORT[$variant]}" --connections 1 \
            --in-flight "$IN_FLIGHT" --duration "$DURATION" --warmup 1s --service "$SERVICE" \
            --json-out "$OUT/report.json" 2>>"$OUT/boltbench.log"
        s1="$(cpu_ticks "$pid")" r1="$(cpu_ticks "$RLS_PID")" d1="$(cpu_ticks "$REDIS_PID")"
        python3 - "$OUT/report.json" "$variant" "$round" "$TICKS" \
            "$((s1 - s0))" "$((r1 - r0))" "$((d1 - d0))" <<'EOF'
import json, sys
report, variant, rnd, ticks = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], int(sys.argv[4])
calls = report["total_sent"]
per_call = [int(t) / ticks * 1e6 / calls for t in sys.argv[5:8]]
failed = report["sent"] - report["ok"]
print(f'{variant:<8} {rnd:>5} {report["calls_per_sec"]:>10.0f} {report["latency_us"]["p50"]:>8.0f} '
      f'{report["latency_us"]["p99"]:>8.0f} {per_call[0]:>14.1f} {per_call[1]:>14.1f} {per_call[2]:>14.1f}'
      + (f'  ({failed} failed)' if failed else ''))
EOF
    done
done

#!/bin/bash
# Access logs on vs off: boltbench closed loop (1 connection x 64 in flight) through the release
# sidecar with the Wasm plugin, one hop (serverListener) and two hops (clientListener), in
# interleaved rounds (alternating which of on/off runs first). "on" = configs/mosn_rpc_config_wasm.json with
# access_logs [{log_path: <file>, log_format: ""}] (MOSN's default format) on both listeners.
# Ports are moved (22045, 22046, 22199, admin 34991) so a `make run` elsewhere does not clash.
#
# Usage: tools/access-log-bench.sh [rounds] [work dir]   (after `make build-release`)
# Prints one line per run: calls/s, p50/p99 µs, sidecar CPU ms per 1k calls, access log lines.
set -eu
ROUNDS=${1:-5}
WORK=${2:-$(mktemp -d /tmp/access-log-bench.XXXXXX)}
REPO=$(cd "$(dirname "$0")/.." && pwd)
B=$REPO/target/release
mkdir -p "$WORK"
cd "$WORK"
python3 - "$REPO" "$WORK" <<'PY'
import copy, json, sys
repo, work = sys.argv[1], sys.argv[2]
c = json.load(open(f"{repo}/configs/mosn_rpc_config_wasm.json"))
ports = {"serverListener": "127.0.0.1:22046", "clientListener": "127.0.0.1:22045"}
hosts = {"serverCluster": "127.0.0.1:22199", "clientCluster": "127.0.0.1:22046"}
for l in c["servers"][0]["listeners"]:
    l["address"] = ports[l["name"]]
for cl in c["cluster_manager"]["clusters"]:
    cl["hosts"][0]["address"] = hosts[cl["name"]]
c["admin"]["address"]["socket_address"]["port_value"] = 34991
for w in c.get("wasm_global_plugins", []):
    if not w["vm_config"]["path"].startswith("/"):
        w["vm_config"]["path"] = f"{repo}/{w['vm_config']['path']}"
json.dump(c, open("off.json", "w"), indent=1)
for l in c["servers"][0]["listeners"]:
    l["access_logs"] = [{"log_path": f"{work}/{l['name']}.access.log", "log_format": ""}]
json.dump(c, open("on.json", "w"), indent=1)
PY
wait_port() { for _ in $(seq 1 200); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; return 1; }
"$B/bolt-echo" --listen 127.0.0.1:22199 > echo.log 2>&1 &
ECHO=$!
trap 'kill $ECHO 2>/dev/null' EXIT
sleep 0.5
for r in $(seq 1 "$ROUNDS"); do
  for target in 22046 22045; do
    # Alternate which goes first, so a slower first or second run of a pair cancels out.
    if [ $((r % 2)) -eq 1 ]; then MODES="off on"; else MODES="on off"; fi
    for mode in $MODES; do
      rm -f ./*.access.log
      "$B/sidecar" start -c $mode.json > sidecar-$mode.log 2>&1 &
      SC=$!
      wait_port 22045; wait_port 22046
      CPU0=$(awk '{print $14+$15}' /proc/$SC/stat)
      "$B/boltbench" --target 127.0.0.1:$target --duration 5s --warmup 1s --json-out run.json > /dev/null
      CPU=$(( $(awk '{print $14+$15}' /proc/$SC/stat) - CPU0 ))
      kill -TERM $SC; wait $SC || true
      LINES=$(cat ./*.access.log 2>/dev/null | wc -l)
      python3 -c "
import json; d = json.load(open('run.json'))
print('round $r target $target access_log $mode calls_per_sec %.0f p50_us %.0f p99_us %.0f cpu_ms_per_1k %.2f lines $LINES sent %d'
      % (d['calls_per_sec'], d['latency_us']['p50'], d['latency_us']['p99'], $CPU * 10.0 / (d['total_sent'] / 1000.0), d['total_sent']))"
    done
  done
done

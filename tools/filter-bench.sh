#!/bin/bash
# proxy-wasm filters: no filter vs a no-op filter vs the header-adding filter, through both
# hops of the release sidecar with the Wasm Bolt plugin (the filter on clientListener, the
# first hop), boltbench closed loop (1 connection x 64 in flight) against bolt-echo, in
# interleaved rounds (the order rotates each round). Ports are moved (23045, 23046, 23199,
# admin 34992) so a `make run` elsewhere does not clash.
#
# Usage: tools/filter-bench.sh [rounds] [work dir]   (after `make build-release filters`)
# Prints one line per run, then the median of each variant: calls/s, p50/p99 µs, sidecar CPU
# µs per call (both hops), and the filter's guest calls per call.
set -eu
ROUNDS=${1:-3}
WORK=${2:-$(mktemp -d /tmp/filter-bench.XXXXXX)}
REPO=$(cd "$(dirname "$0")/.." && pwd)
B=$REPO/target/release
F=$REPO/target/filters/wasm
for m in filter_noop filter_add_header; do
  [ -f "$F/$m.wasm" ] || { echo "$F/$m.wasm missing: run make filters" >&2; exit 1; }
done
mkdir -p "$WORK"
cd "$WORK"
python3 - "$REPO" "$F" <<'PY'
import json, sys
repo, f = sys.argv[1], sys.argv[2]
c = json.load(open(f"{repo}/configs/mosn_rpc_config_wasm.json"))
ports = {"serverListener": "127.0.0.1:23046", "clientListener": "127.0.0.1:23045"}
hosts = {"serverCluster": "127.0.0.1:23199", "clientCluster": "127.0.0.1:23046"}
for l in c["servers"][0]["listeners"]:
    l["address"] = ports[l["name"]]
for cl in c["cluster_manager"]["clusters"]:
    cl["hosts"][0]["address"] = hosts[cl["name"]]
c["admin"]["address"]["socket_address"]["port_value"] = 34992
for w in c.get("wasm_global_plugins", []):
    if not w["vm_config"]["path"].startswith("/"):
        w["vm_config"]["path"] = f"{repo}/{w['vm_config']['path']}"
json.dump(c, open("none.json", "w"), indent=1)
variants = {
    "noop": ("filter_noop", None),
    "add_header": ("filter_add_header", {"name": "x-filter-added", "value": "by-filter"}),
}
for name, (module, conf) in variants.items():
    for l in c["servers"][0]["listeners"]:
        if l["name"] == "clientListener":
            cfg = {"vm_config": {"engine": "wasmer", "path": f"{f}/{module}.wasm"}}
            if conf is not None:
                cfg["configuration"] = conf
            l["stream_filters"] = [{"type": "proxywasm", "config": cfg}]
    json.dump(c, open(f"{name}.json", "w"), indent=1)
PY
wait_port() { for _ in $(seq 1 200); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; return 1; }
"$B/bolt-echo" --listen 127.0.0.1:23199 > echo.log 2>&1 &
ECHO=$!
trap 'kill $ECHO 2>/dev/null' EXIT
sleep 0.5
: > runs.txt
ORDER=(none noop add_header)
for r in $(seq 1 "$ROUNDS"); do
  # Rotate the order each round, so drift over the run does not favour one variant.
  shift_by=$(( (r - 1) % 3 ))
  MODES="${ORDER[@]:$shift_by} ${ORDER[@]:0:$shift_by}"
  for mode in $MODES; do
    "$B/sidecar" start -c $mode.json > sidecar-$mode.log 2>&1 &
    SC=$!
    wait_port 23045; wait_port 23046
    CPU0=$(awk '{print $14+$15}' /proc/$SC/stat)
    "$B/boltbench" --target 127.0.0.1:23045 --duration 5s --warmup 1s --json-out run.json > /dev/null
    CPU=$(( $(awk '{print $14+$15}' /proc/$SC/stat) - CPU0 ))
    STATS=$(curl -s 127.0.0.1:34992/api/v1/stats || echo '{}')
    kill -TERM $SC; wait $SC || true
    python3 - "$r" "$mode" "$CPU" "$STATS" <<'PY' | tee -a runs.txt
import json, sys
r, mode, cpu, stats = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4] or "{}")
d = json.load(open("run.json"))
sent = d["total_sent"]
guest = 0
for ns, v in stats.get("downstream", {}).items():
    if ns.startswith("wasm_filter.") and isinstance(v, dict):
        calls = v.get("calls", 0)
        guest = v.get("guest_calls", 0) / calls if calls else 0
print("round %s variant %s calls_per_sec %.0f p50_us %.0f p99_us %.0f cpu_us_per_call %.2f "
      "guest_calls_per_call %.1f failed %d sent %d"
      % (r, mode, d["calls_per_sec"], d["latency_us"]["p50"], d["latency_us"]["p99"],
         cpu * 10000.0 / sent, guest, d["sent"] - d["ok"], sent))
PY
  done
done
python3 - <<'PY'
import statistics
rows = {}
for line in open("runs.txt"):
    w = line.split()
    kv = dict(zip(w[::2], w[1::2]))
    rows.setdefault(kv["variant"], []).append(kv)
base = None
print("\nmedians (%d rounds)" % max(len(v) for v in rows.values()))
print("| variant | calls/s | ÷ no filter | p50 µs | p99 µs | sidecar CPU µs/call | guest calls/call | failed |")
print("|---|---:|---:|---:|---:|---:|---:|---:|")
for name in ["none", "noop", "add_header"]:
    v = rows.get(name, [])
    if not v:
        continue
    med = lambda k: statistics.median(float(x[k]) for x in v)
    cps = med("calls_per_sec")
    base = base or cps
    print("| %s | %.0f | %.2f | %.0f | %.0f | %.2f | %.1f | %d |"
          % (name, cps, cps / base, med("p50_us"), med("p99_us"), med("cpu_us_per_call"),
             med("guest_calls_per_call"), sum(int(x["failed"]) for x in v)))
PY

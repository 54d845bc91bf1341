#!/bin/bash
# Dubbo through the sidecar: dubbobench closed loop (1 connection x 64 in flight, the captured
# 240-byte Apache Dubbo echo request) against dubbo-echo directly, and through both hops of one
# sidecar process (configs/mosn_rpc_config_dubbo.json: clientListener -> serverListener ->
# dubbo-echo) with the Dubbo Wasm plugin and with the native build of the same code; then the
# same for Bolt (boltbench, 128-byte payload, against bolt-echo through
# configs/mosn_rpc_config_wasm.json), in the same run, interleaved per round.
# Ports are moved (2xxxx, admin 34992) so a `make run` elsewhere does not clash.
#
# Usage: tools/dubbo-bench.sh [rounds] [work dir]   (after `make build-release plugins`)
# Prints one line per run: protocol, variant, calls/s (measured window), failed, sidecar CPU µs
# per call (the sidecar's utime + stime over the whole run / every call answered in it).
set -eu
ROUNDS=${1:-3}
WORK=${2:-$(mktemp -d /tmp/dubbo-bench.XXXXXX)}
REPO=$(cd "$(dirname "$0")/.." && pwd)
B=$REPO/target/release
mkdir -p "$WORK"
cd "$WORK"
python3 - "$REPO" <<'PY'
import json, sys
repo = sys.argv[1]
def fix_paths(c):
    for w in c.get("wasm_global_plugins", []):
        if not w["vm_config"]["path"].startswith("/"):
            w["vm_config"]["path"] = f"{repo}/{w['vm_config']['path']}"
    c["admin"]["address"]["socket_address"]["port_value"] = 34992
    c["servers"][0]["default_log_level"] = "WARN"
def native(c, protocol, codec):
    c["third_part_codec"] = {"codecs": [{"type": "native", "enable": True,
                                         "config": {"protocol": protocol, "codec": codec}}]}
# Dubbo: every route of the server side to the one echo.
d = json.load(open(f"{repo}/configs/mosn_rpc_config_dubbo.json"))
ports = {"serverListener": "127.0.0.1:23086", "clientListener": "127.0.0.1:23085"}
hosts = {"serverCluster": "127.0.0.1:23080", "blueCluster": "127.0.0.1:23080",
         "clientCluster": "127.0.0.1:23086"}
for l in d["servers"][0]["listeners"]:
    l["address"] = ports[l["name"]]
for cl in d["cluster_manager"]["clusters"]:
    cl["hosts"] = [{"address": hosts[cl["name"]]}]
fix_paths(d)
json.dump(d, open("dubbo-wasm.json", "w"), indent=1)
native(d, "dubbo", "dubbo")
json.dump(d, open("dubbo-native.json", "w"), indent=1)
b = json.load(open(f"{repo}/configs/mosn_rpc_config_wasm.json"))
ports = {"serverListener": "127.0.0.1:23046", "clientListener": "127.0.0.1:23045"}
hosts = {"serverCluster": "127.0.0.1:23199", "clientCluster": "127.0.0.1:23046"}
for l in b["servers"][0]["listeners"]:
    l["address"] = ports[l["name"]]
for cl in b["cluster_manager"]["clusters"]:
    cl["hosts"][0]["address"] = hosts[cl["name"]]
fix_paths(b)
json.dump(b, open("bolt-wasm.json", "w"), indent=1)
native(b, b["third_part_codec"]["codecs"][0]["config"]["protocol"], "bolt")
json.dump(b, open("bolt-native.json", "w"), indent=1)
PY
wait_port() { for _ in $(seq 1 200); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return 0; sleep 0.05; done; return 1; }
"$B/dubbo-echo" --listen 127.0.0.1:23080 > dubbo-echo.log 2>&1 &
DE=$!
"$B/bolt-echo" --listen 127.0.0.1:23199 > bolt-echo.log 2>&1 &
BE=$!
trap 'kill $DE $BE 2>/dev/null' EXIT
wait_port 23080; wait_port 23199
TICK=$(getconf CLK_TCK)
dubbo_run() { "$B/dubbobench" --target "$1" --duration 4 --warmup 1 > run.json; python3 -c "import json; d=json.load(open('run.json')); print(d['total'], d['failed'], round(d['calls_per_sec']))"; }
bolt_run() { "$B/boltbench" --target "$1" --duration 4s --warmup 1s --json-out run.json > /dev/null 2>> boltbench.log; python3 -c "import json; d=json.load(open('run.json')); print(d['total_sent'], d['sent'] - d['ok'], round(d['calls_per_sec']))"; }
for r in $(seq 1 "$ROUNDS"); do
  read -r calls failed cps <<< "$(dubbo_run 127.0.0.1:23080)"
  echo "round $r dubbo direct calls_per_sec $cps failed $failed"
  read -r calls failed cps <<< "$(bolt_run 127.0.0.1:23199)"
  echo "round $r bolt direct calls_per_sec $cps failed $failed"
  for codec in wasm native; do
    for proto in dubbo bolt; do
      "$B/sidecar" start -c $proto-$codec.json > sidecar-$proto-$codec.log 2>&1 &
      SC=$!
      if [ $proto = dubbo ]; then wait_port 23085; wait_port 23086; else wait_port 23045; wait_port 23046; fi
      CPU0=$(awk '{print $14+$15}' /proc/$SC/stat)
      if [ $proto = dubbo ]; then
        read -r calls failed cps <<< "$(dubbo_run 127.0.0.1:23085)"
      else
        read -r calls failed cps <<< "$(bolt_run 127.0.0.1:23045)"
      fi
      CPU=$(( $(awk '{print $14+$15}' /proc/$SC/stat) - CPU0 ))
      kill -TERM $SC; wait $SC || true
      python3 -c "print('round $r $proto $codec-2hop calls_per_sec $cps failed $failed cpu_us_per_call %.1f' % ($CPU * 1e6 / $TICK / max($calls, 1)))"
    done
  done
done

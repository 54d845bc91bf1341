#!/usr/bin/env bash
# The services the global rate limit tests talk to: a Redis server and Envoy's rate limit
# service (envoyproxy/ratelimit, gRPC `envoy.service.ratelimit.v3.RateLimitService`) backed by
# it, both on free loopback ports, with the limits in configs/ratelimit/.
#
#   tools/services.sh install         redis-server and prometheus (Debian packages) + the rate
#                                     limit service, built from the Go module proxy into
#                                     target/tools/ratelimit
#   tools/services.sh start           start both (state, logs and env file in target/services/)
#   tools/services.sh stop            stop what `start` started
#   tools/services.sh run -- CMD ...  start, run CMD with the services' variables, stop (also
#                                     when CMD fails or is interrupted); exits with CMD's status
#   tools/services.sh env             print `export` lines for the running services
#
# Variables given to CMD (and printed by `env`):
#   RATELIMIT_ADDR       host:port of the rate limit service's gRPC API
#   RATELIMIT_BIN        the rate limit service binary (tests start private instances with it)
#   RATELIMIT_REDIS_URL  host:port of the Redis server the service uses
#
# Ports are free ones picked at start; to pin them (e.g. for a sidecar config that names the
# service's address) set REDIS_PORT, RATELIMIT_GRPC_PORT, RATELIMIT_HTTP_PORT and
# RATELIMIT_DEBUG_PORT.
#
# Everything is idempotent and needs no terminal (CI=true, no stdin).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# envoyproxy/ratelimit has no recent tags; this pins the commit of 2026-01-22.
RATELIMIT_MODULE="github.com/envoyproxy/ratelimit"
RATELIMIT_VERSION="${RATELIMIT_VERSION:-v1.4.1-0.20260122083618-3fb702589d36}"
TOOLS_DIR="$ROOT/target/tools"
RATELIMIT_BIN="${RATELIMIT_BIN:-$TOOLS_DIR/ratelimit}"
STATE_DIR="$ROOT/target/services"
ENV_FILE="$STATE_DIR/env"
READY_SECONDS=30

log() { echo "services: $*" >&2; }
die() { log "error: $*"; exit 1; }

install_redis() {
    if command -v redis-server >/dev/null; then
        return
    fi
    if [ "$(id -u)" -ne 0 ]; then
        die "redis-server is not installed; install the Debian package: sudo apt-get install -y redis-server"
    fi
    log "installing redis-server (Debian package)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
}

# Prometheus (Debian package; brings promtool): the admin API tests start a private server
# that scrapes the sidecar's /metrics.
install_prometheus() {
    if command -v prometheus >/dev/null; then
        return
    fi
    if [ "$(id -u)" -ne 0 ]; then
        die "prometheus is not installed; install the Debian package: sudo apt-get install -y prometheus"
    fi
    log "installing prometheus (Debian package)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
}

install_ratelimit() {
    local stamp="$RATELIMIT_BIN.version"
    if [ -x "$RATELIMIT_BIN" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$RATELIMIT_VERSION" ]; then
        return
    fi
    command -v go >/dev/null || die "go is required to build $RATELIMIT_MODULE"
    log "building $RATELIMIT_MODULE@$RATELIMIT_VERSION (Go module proxy) into $RATELIMIT_BIN"
    local gobin
    gobin="$(mktemp -d)"
    # GOTOOLCHAIN=local: build with the Go that is installed, never fetch another one.
    GOBIN="$gobin" GOTOOLCHAIN=local GOFLAGS=-mod=mod \
        go install "$RATELIMIT_MODULE/src/service_cmd@$RATELIMIT_VERSION"
    mkdir -p "$(dirname "$RATELIMIT_BIN")"
    mv "$gobin/service_cmd" "$RATELIMIT_BIN"
    rmdir "$gobin"
    echo "$RATELIMIT_VERSION" >"$stamp"
}

# A loopback port nothing listens on right now (another process may still take it first;
# start-up then fails and says so).
free_port() {
    local port
    for _ in $(seq 100); do
        port=$((20000 + RANDOM % 40000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
    die "no free loopback port found"
}

# Waits until `check` succeeds, or the process `pid` exits, or READY_SECONDS pass.
wait_ready() {
    local name="$1" pid="$2" logfile="$3"
    shift 3
    local deadline=$((SECONDS + READY_SECONDS))
    until "$@" >/dev/null 2>&1; do
        if ! kill -0 "$pid" 2>/dev/null; then
            tail -n 20 "$logfile" >&2 || true
            die "$name exited during start-up (log: $logfile)"
        fi
        if [ "$SECONDS" -ge "$deadline" ]; then
            tail -n 20 "$logfile" >&2 || true
            die "$name not ready after ${READY_SECONDS}s (log: $logfile)"
        fi
        sleep 0.2
    done
}

# The pid in `file` if that process is still the one we started (its command line contains
# `what`), so a recycled pid is never signalled.
live_pid() {
    local file="$1" what="$2" pid
    pid="$(cat "$file" 2>/dev/null)" || return 1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$what" &&
        echo "$pid"
}

start() {
    [ -x "$RATELIMIT_BIN" ] || die "$RATELIMIT_BIN is missing: run tools/services.sh install"
    command -v redis-server >/dev/null || die "redis-server is missing: run tools/services.sh install"
    if live_pid "$STATE_DIR/redis.pid" redis-server >/dev/null ||
        live_pid "$STATE_DIR/ratelimit.pid" "$RATELIMIT_BIN" >/dev/null; then
        die "services already running (tools/services.sh stop first)"
    fi
    mkdir -p "$STATE_DIR"
    rm -f "$ENV_FILE"

    local redis_port grpc_port http_port debug_port
    redis_port="${REDIS_PORT:-$(free_port)}"
    log "starting redis-server on 127.0.0.1:$redis_port"
    redis-server --bind 127.0.0.1 --port "$redis_port" --save '' --appendonly no \
        --dir "$STATE_DIR" --daemonize no >"$STATE_DIR/redis.log" 2>&1 &
    echo $! >"$STATE_DIR/redis.pid"
    wait_ready redis-server $! "$STATE_DIR/redis.log" \
        redis-cli -h 127.0.0.1 -p "$redis_port" ping

    grpc_port="${RATELIMIT_GRPC_PORT:-$(free_port)}"
    http_port="${RATELIMIT_HTTP_PORT:-$(free_port)}"
    debug_port="${RATELIMIT_DEBUG_PORT:-$(free_port)}"
    log "starting the rate limit service on 127.0.0.1:$grpc_port (gRPC)"
    env USE_STATSD=false LOG_LEVEL=warn \
        REDIS_SOCKET_TYPE=tcp REDIS_URL="127.0.0.1:$redis_port" \
        RUNTIME_ROOT="$ROOT/configs" RUNTIME_SUBDIRECTORY=ratelimit \
        RUNTIME_WATCH_ROOT=false RUNTIME_IGNOREDOTFILES=true \
        HEALTHY_WITH_AT_LEAST_ONE_CONFIG_LOADED=true \
        HOST=127.0.0.1 PORT="$http_port" \
        GRPC_HOST=127.0.0.1 GRPC_PORT="$grpc_port" \
        DEBUG_HOST=127.0.0.1 DEBUG_PORT="$debug_port" \
        "$RATELIMIT_BIN" >"$STATE_DIR/ratelimit.log" 2>&1 &
    echo $! >"$STATE_DIR/ratelimit.pid"
    # Healthy only once a config is loaded, so no test sees "no rate limit configuration".
    wait_ready "rate limit service" $! "$STATE_DIR/ratelimit.log" \
        curl -fsS "http://127.0.0.1:$http_port/healthcheck"

    cat >"$ENV_FILE" <<EOF
export RATELIMIT_ADDR=127.0.0.1:$grpc_port
export RATELIMIT_BIN=$RATELIMIT_BIN
export RATELIMIT_REDIS_URL=127.0.0.1:$redis_port
EOF
    log "ready: $(tr '\n' ' ' <"$ENV_FILE")"
}

stop_one() {
    local name="$1" what="$2" pid
    if pid="$(live_pid "$STATE_DIR/$name.pid" "$what")"; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        log "stopped $name (pid $pid)"
    fi
    rm -f "$STATE_DIR/$name.pid"
}

stop() {
    stop_one ratelimit "$RATELIMIT_BIN"
    stop_one redis redis-server
    rm -f "$ENV_FILE"
}

case "${1:-}" in
install)
    install_redis
    install_prometheus
    install_ratelimit
    ;;
start) start ;;
stop) stop ;;
env)
    [ -f "$ENV_FILE" ] || die "services are not running (tools/services.sh start)"
    cat "$ENV_FILE"
    ;;
run)
    shift
    [ "${1:-}" = "--" ] && shift
    [ $# -gt 0 ] || die "usage: tools/services.sh run -- CMD ..."
    trap stop EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    start
    # shellcheck disable=SC1090
    source "$ENV_FILE"
    # CMD runs in the background so that a signal to this script is handled at once (bash
    # defers traps while a foreground child runs): it is passed on to CMD, then EXIT stops
    # the services.
    "$@" &
    child=$!
    trap 'kill -INT "$child" 2>/dev/null; wait "$child"; exit 130' INT
    trap 'kill -TERM "$child" 2>/dev/null; wait "$child"; exit 143' TERM
    status=0
    wait "$child" || status=$?
    exit "$status"
    ;;
*)
    sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
    exit 64
    ;;
esac

#!/usr/bin/env bash
# benches/soak.sh: a bounded soak of weir on 127.0.0.1 only; stops by itself.
#
#     benches/soak.sh                      # 30 minutes (the default)
#     DURATION=3m benches/soak.sh          # a short trial run
#
# What it runs (details and the verdict's rules in README.md, "Soak"):
#   - weir (release build; WEIR_BIN=... to use another) daemonized with an http
#     listener and an https+h2 listener (self-signed certificate made with
#     openssl), access log to a file, an admin API with a token;
#   - backends: two nginx processes (`return 200`), one of which is SIGKILLed
#     and restarted every minute (down 5 s), and a Python WebSocket echo server;
#   - benches/soak_load.py: fixed-rate clients (HTTP/1.1 keep-alive, HTTP/1.1 one
#     connection per request, HTTP/2 over TLS, WebSocket over ws and wss, slow
#     clients trickling their heads), a live reload every 10 s (a changed
#     response header each time), `weir upgrade` every 5 minutes, and a sample
#     every 10 s of the current weir process (pid file followed across
#     upgrades): RSS, fds, threads, requests and errors per client kind;
#   - benches/soak_report.py: report.md (a table per minute, the verdict),
#     soak.png (gnuplot), and the exit code: 0 when the verdict passes.
#
# Output goes to OUT (default benches/results/soak-<UTC time>/): samples.csv,
# events.log, errors.log, report.md, soak.png, weir's error.log and access.log.
# Every process it starts is stopped on exit, Ctrl-C or TERM, by pid.
#
# Environment (defaults): DURATION=30m (Ns, Nm) PORT_BASE=19500 (uses
# PORT_BASE..PORT_BASE+5) BUILD=auto (BUILD=0: use WEIR_BIN as it is)
# RATE_KEEPALIVE=25 KEEPALIVE_CONNS=4 RATE_NEWCONN=15 NEWCONN_LOOPS=2
# RATE_H2=30 H2_CONNS=2 WS_CLIENTS=2 SLOW_CLIENTS=3 (about 250 requests/s)
# RELOAD_EVERY=10 UPGRADE_EVERY=300 (a multiple of RELOAD_EVERY) RESTART_EVERY=60 (seconds)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DURATION=${DURATION:-30m}
PORT_BASE=${PORT_BASE:-19500}
BUILD=${BUILD:-auto}
case "$DURATION" in
    *m) DURATION_S=$(( ${DURATION%m} * 60 )) ;;
    *s) DURATION_S=${DURATION%s} ;;
    *) DURATION_S=$DURATION ;;
esac
OUT=${OUT:-$ROOT/benches/results/soak-$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
T=$(mktemp -d /tmp/weir-soak.XXXXXX)
PY=/usr/bin/python3

die() { echo "soak: $*" >&2; exit 1; }

# --- install what it needs (Debian) ---------------------------------------------
need=()
command -v nginx >/dev/null || need+=(nginx)
command -v openssl >/dev/null || need+=(openssl)
command -v gnuplot >/dev/null || need+=(gnuplot-nox)
$PY -c 'import h2' 2>/dev/null || need+=(python3-h2)
$PY -c 'import websockets' 2>/dev/null || need+=(python3-websockets)
if [ ${#need[@]} -gt 0 ]; then
    echo "soak: installing ${need[*]}"
    # keep Debian from starting nginx as a service
    [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

# --- weir ------------------------------------------------------------------------
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WEIR_BIN=${WEIR_BIN:-$TARGET/release/weir}
if [ "$BUILD" != 0 ]; then
    cargo build --release --bin weir
fi
[ -x "$WEIR_BIN" ] || die "no weir binary at $WEIR_BIN"

HTTP_PORT=$PORT_BASE; HTTPS_PORT=$((PORT_BASE + 1)); ADMIN_PORT=$((PORT_BASE + 2))
A_PORT=$((PORT_BASE + 3)); B_PORT=$((PORT_BASE + 4)); WS_PORT=$((PORT_BASE + 5))

PIDS=()
cleanup() {
    local rc=$?
    set +e
    local p
    p=$(cat "$T/weir.pid" 2>/dev/null)
    for pid in "${PIDS[@]}" $p $(cat "$T"/*.bpid 2>/dev/null); do
        kill -TERM "$pid" 2>/dev/null
    done
    for _ in $(seq 50); do
        alive=0
        for pid in "${PIDS[@]}" $p $(cat "$T"/*.bpid 2>/dev/null); do
            kill -0 "$pid" 2>/dev/null && alive=1
        done
        [ $alive = 0 ] && break
        sleep 0.1
    done
    for pid in "${PIDS[@]}" $p $(cat "$T"/*.bpid 2>/dev/null); do
        kill -KILL "$pid" 2>/dev/null
    done
    cp "$T/error.log" "$OUT/weir-error.log" 2>/dev/null
    gzip -c "$T/access.log" >"$OUT/access.log.gz" 2>/dev/null
    rm -rf "$T"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,DNS:soak.test,IP:127.0.0.1 \
    -keyout "$T/cert.key" -out "$T/cert.pem" 2>/dev/null

# --- backends --------------------------------------------------------------------
nginx_conf() { # $1 name, $2 port
    mkdir -p "$T/$1"
    cat >"$T/$1/nginx.conf" <<EOF
pid $T/$1/nginx.pid;
error_log $T/$1/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 1000000;
    server {
        listen 127.0.0.1:$2;
        location / { add_header X-Backend $1; return 200 "ok $1\n"; }
    }
}
EOF
}
nginx_conf a "$A_PORT"
nginx_conf b "$B_PORT"
nginx -p "$T/a" -c "$T/a/nginx.conf" -g 'daemon off; master_process off;' >"$T/a/out.log" 2>&1 &
PIDS+=($!)
cat >"$T/ws_echo.py" <<'EOF'
import asyncio, sys, websockets
async def echo(ws, path=None):
    async for m in ws:
        await ws.send(m)
async def main():
    async with websockets.serve(echo, "127.0.0.1", int(sys.argv[1]), max_size=2**20):
        await asyncio.Future()
asyncio.run(main())
EOF
$PY "$T/ws_echo.py" "$WS_PORT" >"$T/ws_echo.log" 2>&1 &
PIDS+=($!)

# --- weir config (the template's @GEN@ changes at every reload) ----------------------
cat >"$T/weir.yaml.tmpl" <<EOF
server:
  threads: 2
  pid_file: $T/weir.pid
  upgrade_sock: $T/upgrade.sock
  error_log: $T/error.log
  grace_period_seconds: 5
  graceful_shutdown_timeout_seconds: 5
log: { level: info, access_log: { path: $T/access.log, format: json } }
admin: { listen: "127.0.0.1:$ADMIN_PORT", token: soak-token }
listeners:
  - { name: web, address: "127.0.0.1:$HTTP_PORT", timeouts: { header: 10s, keepalive: 60s } }
  - name: websecure
    address: "127.0.0.1:$HTTPS_PORT"
    protocol: https
    tls: { certificates: [{ cert: $T/cert.pem, key: $T/cert.key }], http2: true }
routes:
  - name: ws
    match: { path_prefix: /ws }
    upstream: echo
  - name: main
    upstream: pool
    retries: 2
    retry_on: [connect_failure, timeout, 5xx]
    response_headers: { set: { x-soak-gen: "@GEN@" } }
upstreams:
  pool:
    backends: [127.0.0.1:$A_PORT, 127.0.0.1:$B_PORT]
    health_check: { type: http, path: /, interval: 1s, timeout: 500ms, healthy_threshold: 1, unhealthy_threshold: 1 }
    timeouts: { connect: 1s, read: 10s }
  echo:
    backends: [127.0.0.1:$WS_PORT]
    timeouts: { tunnel_idle: 60s }
EOF
sed 's/@GEN@/0/' "$T/weir.yaml.tmpl" >"$T/weir.yaml"
"$WEIR_BIN" check -c "$T/weir.yaml" >/dev/null || die "weir check refused the config"

cat >"$T/load.json" <<EOF
{
  "out_dir": "$OUT", "duration_s": $DURATION_S, "sample_every": 10,
  "http_port": $HTTP_PORT, "https_port": $HTTPS_PORT,
  "weir_bin": "$WEIR_BIN", "weir_config": "$T/weir.yaml", "weir_template": "$T/weir.yaml.tmpl",
  "pid_file": "$T/weir.pid",
  "reload_every": ${RELOAD_EVERY:-10}, "upgrade_every": ${UPGRADE_EVERY:-300},
  "restarting_backend": "b", "restart_every": ${RESTART_EVERY:-60}, "down_for": 5, "settle": 3,
  "backends": { "b": { "port": $B_PORT, "pidfile": "$T/b.bpid", "log": "$T/b/out.log",
                       "cmd": ["nginx", "-p", "$T/b", "-c", "$T/b/nginx.conf", "-g", "daemon off; master_process off;"] } },
  "rate_keepalive": ${RATE_KEEPALIVE:-25}, "keepalive_conns": ${KEEPALIVE_CONNS:-4},
  "rate_newconn": ${RATE_NEWCONN:-15}, "newconn_loops": ${NEWCONN_LOOPS:-2},
  "rate_h2": ${RATE_H2:-30}, "h2_conns": ${H2_CONNS:-2},
  "ws_clients": ${WS_CLIENTS:-2}, "slow_clients": ${SLOW_CLIENTS:-3}
}
EOF

wait_port() { # $1 port
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
wait_port "$A_PORT" || die "backend a did not start"
wait_port "$WS_PORT" || die "websocket echo backend did not start"
"$WEIR_BIN" -c "$T/weir.yaml" -d || die "weir did not start: $(tail -5 "$T/error.log" 2>/dev/null)"
wait_port "$HTTP_PORT" && wait_port "$HTTPS_PORT" || die "weir is not listening: $(tail -5 "$T/error.log")"

commit=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
echo "soak: $DURATION_S s, weir $WEIR_BIN (commit $commit), output in $OUT"
cat >"$OUT/run.txt" <<EOF
command: DURATION=$DURATION benches/soak.sh
commit: $commit ($(git -C "$ROOT" log -1 --format=%s 2>/dev/null))
started: $(date -u +%Y-%m-%dT%H:%M:%SZ)
weir: $WEIR_BIN
EOF

$PY "$ROOT/benches/soak_load.py" "$T/load.json" &
LOAD=$!
PIDS+=("$LOAD")
wait "$LOAD" || die "the load generator failed (exit $?)"
echo "finished: $(date -u +%Y-%m-%dT%H:%M:%SZ)" >>"$OUT/run.txt"

cp "$T/error.log" "$OUT/weir-error.log" 2>/dev/null || true
$PY "$ROOT/benches/soak_report.py" "$OUT"

#!/usr/bin/env bash
# benches/instructions.sh: user-space instructions per proxied request, weir
# against the floor proxy (bare Pingora with weir's build choices), counted by
# valgrind's callgrind. Unlike CPU time these counts do not move with the
# machine's load: the same binaries give the same numbers (±0.5%), so a change
# of 1% is visible on a noisy 2-core machine. They leave out the kernel (about
# half of a proxied request's CPU time, the same work for both) and weigh every
# instruction alike, so they rank user-space costs; load.sh says what they are
# worth in time.
#
#     benches/instructions.sh                    # weir and floor, 2000 requests each
#     N=5000 benches/instructions.sh
#     BUILD=0 WEIR_BIN=/tmp/old/weir benches/instructions.sh   # another build
#     PROFILE=1 benches/instructions.sh          # also the top functions of weir − floor
#     WEIR_EXTRA='tracing: { otlp: "http://127.0.0.1:19400", sample_ratio: 1 }' benches/instructions.sh
#
# Per binary it runs the proxy under callgrind twice, once with one request and
# once with N more keep-alive requests (10 connections, round robin, from a
# Python client), and divides the difference by N, so start-up and shut-down
# cancel out. The origin is nginx (`return 200 "ok"`, as in load.sh). Needs
# valgrind, nginx and python3 (installed from Debian when missing, as root or
# through sudo) and ports PORT_BASE..PORT_BASE+1 (default 19400) free. Takes
# about a minute after the build. Every process it starts is stopped on exit.
set -euo pipefail

N=${N:-2000}
PORT_BASE=${PORT_BASE:-19400}
BUILD=${BUILD:-auto}
PROFILE=${PROFILE:-0}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WEIR_BIN=${WEIR_BIN:-$ROOT/target/release/weir}
FLOOR_BIN=${FLOOR_BIN:-$ROOT/target/release/examples/floor_proxy}
ORIGIN=$PORT_BASE
PROXY=$((PORT_BASE + 1))

log() { printf '[instructions.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

T=$(mktemp -d /tmp/weir-instr.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    rm -rf "$T"
}
trap cleanup EXIT INT TERM

need=()
command -v valgrind >/dev/null || need+=(valgrind)
command -v nginx >/dev/null || need+=(nginx)
command -v python3 >/dev/null || need+=(python3)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
    log "installing ${need[*]}"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ "$BUILD" != 0 ]; then
    log "building weir and floor_proxy (release)"
    (cd "$ROOT" && cargo build --release --bin weir --example floor_proxy)
fi
[ -x "$WEIR_BIN" ] || die "no $WEIR_BIN"
[ -x "$FLOOR_BIN" ] || die "no $FLOOR_BIN"

cat >"$T/origin.conf" <<EOF
daemon off;
master_process off;
worker_processes 1;
error_log $T/origin.err;
pid $T/origin.pid;
events { worker_connections 1024; }
http {
  access_log off;
  server { listen 127.0.0.1:$ORIGIN; keepalive_requests 1000000; location / { return 200 "ok"; } }
}
EOF
cat >"$T/weir.yaml" <<EOF
server:
  threads: 1
  pid_file: $T/weir.pid
  upgrade_sock: $T/weir_upgrade.sock
  grace_period_seconds: 1
  graceful_shutdown_timeout_seconds: 1
log:
  level: warn
listeners:
  - name: bench
    address: 127.0.0.1:$PROXY
routes:
  - name: all
    upstream: origin
upstreams:
  origin:
    backends: [127.0.0.1:$ORIGIN]
EOF
# WEIR_EXTRA: more top-level config for weir, e.g. a tracing section whose
# collector is the origin (it answers POST /v1/traces with 200).
printf '%s\n' "${WEIR_EXTRA:-}" >>"$T/weir.yaml"
cat >"$T/client.py" <<'EOF'
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
deadline = time.time() + 60
while True:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        break
    except OSError:
        if time.time() > deadline:
            sys.exit("proxy never listened")
        time.sleep(0.2)
req = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
socks = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(10)]
for i in range(n):
    s = socks[i % len(socks)]
    s.sendall(req)
    buf = b""
    while b"\r\n\r\n" not in buf or not buf.endswith(b"ok"):
        d = s.recv(4096)
        if not d:
            sys.exit("connection closed")
        buf += d
    if not buf.startswith(b"HTTP/1.1 200"):
        sys.exit(buf[:200])
for s in socks:
    s.close()
EOF

nginx -p "$T" -c "$T/origin.conf" >/dev/null 2>&1 &
PIDS+=($!)
disown

# total instructions of one run of "$@" serving $1 requests
run() {
    local n=$1 out=$T/cg.$2.$1
    shift 2
    # TMPDIR: where floor_proxy puts its pid file and upgrade socket
    TMPDIR=$T valgrind --tool=callgrind --callgrind-out-file="$out" "$@" >"$out.log" 2>&1 &
    local vp=$!
    # run() is called in $(...), a subshell: the EXIT trap's PIDS never sees $vp, so a
    # failure here kills it itself
    python3 "$T/client.py" "$PROXY" "$n" || {
        kill -KILL "$vp" 2>/dev/null || true
        tail -5 "$out.log" >&2
        die "client failed"
    }
    kill -INT "$vp"
    for _ in $(seq 600); do kill -0 "$vp" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$vp" 2>/dev/null || true
    wait "$vp" 2>/dev/null || true
    callgrind_annotate "$out" | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}'
}

declare -A PER
for name in weir floor; do
    if [ "$name" = weir ]; then cmd=("$WEIR_BIN" -c "$T/weir.yaml"); else
        cmd=("$FLOOR_BIN" "127.0.0.1:$PROXY" "127.0.0.1:$ORIGIN" 1); fi
    log "$name: $N requests under callgrind"
    a=$(run 1 "$name" "${cmd[@]}")
    b=$(run $((N + 1)) "$name" "${cmd[@]}")
    PER[$name]=$(((b - a) / N))
done

printf '\ninstructions per request (user space, callgrind, %d keep-alive requests)\n' "$N"
printf '  weir   %8d\n  floor  %8d\n  weir / floor = %s\n' "${PER[weir]}" "${PER[floor]}" \
    "$(awk -v w="${PER[weir]}" -v f="${PER[floor]}" 'BEGIN {printf "%.2f×", w / f}')"

if [ "$PROFILE" = 1 ]; then
    printf '\nfunctions by (weir − floor) instructions per request (exclusive):\n'
    python3 - "$T" "$N" "$((N + 1))" <<'EOF'
import re, subprocess, sys
t, n, big = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def load(path):
    out = subprocess.run(["callgrind_annotate", "--threshold=100", path], capture_output=True, text=True).stdout
    d = {}
    for line in out.splitlines():
        m = re.match(r"\s*([\d,]+) \([^)]*\)\s+(.*)", line)
        if m and "PROGRAM TOTALS" not in line:
            k = re.sub(r" \[.*\]$", "", m.group(2))
            d[k] = d.get(k, 0) + int(m.group(1).replace(",", ""))
    return d
def per(name):
    a, b = load(f"{t}/cg.{name}.1"), load(f"{t}/cg.{name}.{big}")
    return {k: (b.get(k, 0) - a.get(k, 0)) / n for k in set(a) | set(b)}
w, f = per("weir"), per("floor")
rows = sorted(((w.get(k, 0) - f.get(k, 0), k) for k in set(w) | set(f)), reverse=True)
for d, k in rows[:30]:
    print(f"  {d:7.0f} {w.get(k, 0):7.0f} {f.get(k, 0):7.0f}  {k[:110]}")
EOF
fi

#!/usr/bin/env bash
# benches/load.sh: weir against the floor_proxy (bare Pingora), nginx and
# HAProxy, side by side, on 127.0.0.1 only. One command:
#
#     benches/load.sh                 # ROUNDS=3 by default
#     ROUNDS=1 benches/load.sh        # quick look
#
# What it does (details in benches/README.md):
#   - installs nginx, haproxy and wrk from Debian if missing (apt-get; needs
#     root or sudo; services are kept from starting through policy-rc.d);
#   - builds `weir` and the `floor_proxy` example in release (cargo decides
#     whether anything changed; BUILD=0 uses the binaries already in target/);
#   - origin: nginx `return 200 "ok"`, 1 worker, access_log off, pinned to core 1;
#   - proxies under test, one worker thread each, pinned to core 0, access
#     logs off: weir, floor_proxy, nginx (upstream keepalive 64), HAProxy
#     (nbthread 1, http-reuse always); wrk runs on core 1 with the origin;
#   - per proxy and round: max throughput and p50/p99 latency (wrk keep-alive,
#     CONNS connections), latency and CPU per request at a paced rate (wrk with
#     a Lua delay(): PACED_CONNS connections, each waiting PACED_DELAY_MS
#     between requests, since neither wrk2 nor oha is packaged in Debian),
#     CPU per request at max throughput, peak RSS under load (VmHWM), and RSS
#     per idle keep-alive connection (IDLE_CONNS clients that each made one
#     request and stay open, against the RSS before them; a fresh process);
#   - wrk straight at the origin: the ceiling of this setup;
#   - ROUNDS rounds, the proxy order rotated every round; prints medians with
#     ratios to nginx and weir's ratios to the floor proxy, and writes them to
#     benches/results/latest.md (raw numbers: benches/results/latest.tsv).
#
# Every process it starts is stopped on exit, Ctrl-C or TERM. Without the
# build and the install it takes about 75 s per round (4 proxies + origin),
# so about 4 minutes for 3 rounds on a quiet machine, at most ~9 on a busy one.
#
# Environment (defaults): ROUNDS=3 DURATION=5 (seconds per measured wrk run)
# CONNS=50 PACED_CONNS=20 PACED_DELAY_MS=2 IDLE_CONNS=1000 PORT_BASE=18080
# PROXIES="weir floor nginx haproxy" BUILD=auto (BUILD=0 with WEIR_BIN=... and
# FLOOR_BIN=... compares other builds) QUIET_WAIT=20 (seconds to wait
# for an idle machine before each measurement) RETRY_UNTIL=300 (a measurement
# that other processes disturbed, >= 10% of core 0, is repeated up to twice,
# and the script waits for quiet, only while the run is younger than this)
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-50}
PACED_CONNS=${PACED_CONNS:-20}
PACED_DELAY_MS=${PACED_DELAY_MS:-2}
IDLE_CONNS=${IDLE_CONNS:-1000}
PORT_BASE=${PORT_BASE:-18080}
PROXIES=${PROXIES:-"weir floor nginx haproxy"}
BUILD=${BUILD:-auto}
QUIET_WAIT=${QUIET_WAIT:-20}
RETRY_UNTIL=${RETRY_UNTIL:-300}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS_DIR=$ROOT/benches/results
WEIR_BIN=${WEIR_BIN:-$ROOT/target/release/weir}
FLOOR_BIN=${FLOOR_BIN:-$ROOT/target/release/examples/floor_proxy}
ORIGIN_PORT=$PORT_BASE
declare -A PORT=([weir]=$((PORT_BASE + 1)) [floor]=$((PORT_BASE + 2)) [nginx]=$((PORT_BASE + 3)) [haproxy]=$((PORT_BASE + 4)))
TICK=$(getconf CLK_TCK)

log() { printf '[load.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------- cleanup
T=""
PIDS=()
POLICY_RC_CREATED=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    if [ "$POLICY_RC_CREATED" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    if [ -n "$T" ] && [ -d "$T" ]; then rm -rf "$T"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

forget_pid() {
    local keep=() p
    for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
    PIDS=("${keep[@]}")
}

# Whether a process runs (an exited child not yet reaped does not).
alive() {
    local state
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}

# Stops one process we started: SIG (default TERM), then KILL after 5 s.
stop_pid() {
    local pid=$1 sig=${2:-TERM}
    kill "-$sig" "$pid" 2>/dev/null || true
    for _ in $(seq 50); do alive "$pid" || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    forget_pid "$pid"
}

# ---------------------------------------------------------------- tools
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

install_tools() {
    local missing=()
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
    command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v taskset >/dev/null || missing+=(util-linux)
    command -v python3 >/dev/null || missing+=(python3)
    [ ${#missing[@]} = 0 ] && return
    log "installing from Debian: ${missing[*]}"
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        # keep the packages' own nginx/haproxy services from starting
        printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
        as_root chmod 755 /usr/sbin/policy-rc.d
        POLICY_RC_CREATED=1
    fi
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    if [ "$POLICY_RC_CREATED" = 1 ]; then as_root rm -f /usr/sbin/policy-rc.d; POLICY_RC_CREATED=0; fi
}

build() {
    if [ "$BUILD" = 0 ]; then
        if [ ! -x "$WEIR_BIN" ] || [ ! -x "$FLOOR_BIN" ]; then die "BUILD=0 but $WEIR_BIN or $FLOOR_BIN is missing"; fi
        return
    fi
    log "cargo build --release --bin weir --example floor_proxy (a cold build takes ~6 min)"
    (cd "$ROOT" && cargo build --release --bin weir --example floor_proxy) >"$T/build.log" 2>&1 \
        || { tail -30 "$T/build.log" >&2; die "release build failed"; }
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# True once GET / on the port answers 200.
http_ok() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && printf 'GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n' >&3 && head -c 12 <&3" 2>/dev/null | grep -q ' 200'
}

wait_ready() {
    local port=$1 pid=$2 name=$3
    for _ in $(seq 100); do
        alive "$pid" || { tail -20 "$T/$name.log" >&2 || true; die "$name exited at start"; }
        http_ok "$port" && return 0
        sleep 0.1
    done
    tail -20 "$T/$name.log" >&2 || true
    die "$name did not answer on 127.0.0.1:$port"
}

# ---------------------------------------------------------------- configs
nginx_common() { # $1 = name
    cat <<EOF
worker_processes 1;
master_process off;
daemon off;
pid $T/$1.pid;
error_log $T/$1.err warn;
worker_rlimit_nofile 20000;
events { worker_connections 8192; multi_accept on; }
EOF
}

nginx_http_common() {
    cat <<EOF
    access_log off;
    default_type text/plain;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path $T/ng_body;
    proxy_temp_path $T/ng_proxy;
    fastcgi_temp_path $T/ng_fastcgi;
    uwsgi_temp_path $T/ng_uwsgi;
    scgi_temp_path $T/ng_scgi;
EOF
}

write_configs() {
    { nginx_common origin; echo "http {"; nginx_http_common; cat <<EOF
    server {
        listen 127.0.0.1:$ORIGIN_PORT backlog=4096;
        location / { return 200 "ok"; }
    }
}
EOF
    } >"$T/origin.conf"

    { nginx_common nginx; echo "http {"; nginx_http_common; cat <<EOF
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 64;
        keepalive_requests 100000000;
    }
    server {
        listen 127.0.0.1:${PORT[nginx]} backlog=4096;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    } >"$T/nginx.conf"

    cat >"$T/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 8000
    pidfile $T/haproxy.pid
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    http-reuse always
frontend fe
    bind 127.0.0.1:${PORT[haproxy]}
    default_backend be
backend be
    server origin 127.0.0.1:$ORIGIN_PORT
EOF

    # weir: one listener, one route, one upstream; access logs are off by default.
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
    address: 127.0.0.1:${PORT[weir]}
routes:
  - name: all
    upstream: origin
upstreams:
  origin:
    backends: [127.0.0.1:$ORIGIN_PORT]
EOF

    cat >"$T/pace.lua" <<EOF
-- each connection waits this long after a response before its next request
function delay() return $PACED_DELAY_MS end
EOF
}

# ---------------------------------------------------------------- processes
# Starts proxy $1 pinned to core 0; sets STARTED_PID.
start_proxy() {
    local name=$1 pid
    case $name in
        weir) taskset -c 0 "$WEIR_BIN" -c "$T/weir.yaml" >"$T/weir.log" 2>&1 & pid=$! ;;
        floor) TMPDIR=$T taskset -c 0 "$FLOOR_BIN" "127.0.0.1:${PORT[floor]}" "127.0.0.1:$ORIGIN_PORT" 1 >"$T/floor.log" 2>&1 & pid=$! ;;
        nginx) taskset -c 0 nginx -p "$T" -e "$T/nginx.err" -c "$T/nginx.conf" >"$T/nginx.log" 2>&1 & pid=$! ;;
        haproxy) taskset -c 0 haproxy -db -f "$T/haproxy.cfg" >"$T/haproxy.log" 2>&1 & pid=$! ;;
        *) die "unknown proxy $name" ;;
    esac
    PIDS+=("$pid")
    wait_ready "${PORT[$name]}" "$pid" "$name"
    STARTED_PID=$pid
}

stop_proxy() { # $1 name, $2 pid: weir and floor_proxy stop fast on INT (TERM drains)
    case $1 in weir | floor) stop_pid "$2" INT ;; *) stop_pid "$2" TERM ;; esac
}

cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }
status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
core_busy() { awk -v c="cpu$1" '$1 == c {print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }

# Latency text from wrk (123.45us, 1.20ms, 1.02s) to microseconds.
to_us() {
    awk -v v="$1" 'BEGIN {
        n = v + 0
        if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000;
        else if (v ~ /m$/) print n * 60000000; else if (v ~ /s$/) print n * 1000000; else print n }'
}

# Runs a command and writes the CPU seconds its children used to the file $1.
RUSAGE_PY='
import resource, subprocess, sys
p = subprocess.run(sys.argv[2:])
r = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write("%f\n" % (r.ru_utime + r.ru_stime))
sys.exit(p.returncode)
'

# Runs wrk on core 1 against port $2 for $3 seconds with extra args, while
# proxy $1 (a pid, or "" for none) serves. Prints "rps requests p50_us p99_us
# errors proxy_ticks proxy_pct core1_busy_pct noise_pct", where noise is the
# largest share of a core that neither we nor the proxy, origin or wrk used
# (other processes on the machine).
run_wrk() {
    local pid=$1 port=$2 secs=$3 out
    shift 3
    local p0=0 p1=0 o0 o1 c0a c0b c1a c1b
    if [ -n "$pid" ]; then p0=$(cpu_ticks "$pid"); fi
    o0=$(cpu_ticks "$ORIGIN_PID")
    c0a=$(core_busy 0)
    c1a=$(core_busy 1)
    out=$(taskset -c 1 python3 -c "$RUSAGE_PY" "$T/wrk.cpu" wrk -t1 "$@" -d"${secs}s" --latency "http://127.0.0.1:$port/" 2>&1) || { echo "$out" >&2; die "wrk failed"; }
    c0b=$(core_busy 0)
    c1b=$(core_busy 1)
    o1=$(cpu_ticks "$ORIGIN_PID")
    if [ -n "$pid" ]; then p1=$(cpu_ticks "$pid"); fi
    echo "$out" >>"$T/wrk.log"
    local rps req p50 p99 errs
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    req=$(awk '/requests in/ {print $1}' <<<"$out")
    p50=$(to_us "$(awk '$1 == "50%" {print $2}' <<<"$out")")
    p99=$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
    errs=$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}' <<<"$out")
    local shares
    shares=$(awk -v c0="$c0a $c0b" -v c1="$c1a $c1b" -v p="$((p1 - p0))" -v o="$((o1 - o0))" \
        -v w="$(cat "$T/wrk.cpu")" -v k="$TICK" 'BEGIN {
        split(c0, a); split(c1, b)
        t0 = a[4] - a[2]; t1 = b[4] - b[2]
        busy0 = t0 ? 100 * (a[3] - a[1]) / t0 : 0
        busy1 = t1 ? 100 * (b[3] - b[1]) / t1 : 0
        proxy = t0 ? 100 * p / t0 : 0
        ours1 = t1 ? 100 * (o + w * k) / t1 : 0
        n0 = busy0 - proxy; n1 = busy1 - ours1
        n = (n0 > n1 ? n0 : n1)
        printf "%.0f %.0f %.0f", proxy, busy1, (n > 0 ? n : 0) }')
    echo "${rps:-0} ${req:-0} ${p50:-0} ${p99:-0} $errs $((p1 - p0)) $shares"
}

IDLE_PY='
import socket, sys, time
port, n, ready = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
req = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(req)
    buf = b""
    while b"\r\n\r\n" not in buf:
        buf += s.recv(4096)
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        body += s.recv(4096)
    socks.append(s)
open(ready, "w").write("%d\n" % len(socks))
time.sleep(120)
'

# Idle-connection cost on a fresh process; sets IDLE_RESULT to
# "base_rss_kib rss_with_idle_kib kib_per_conn".
measure_idle() {
    local name=$1 pid py ready=$T/idle.ready
    start_proxy "$name"
    pid=$STARTED_PID
    sleep 0.5
    local base with
    base=$(status_kib "$pid" VmRSS)
    rm -f "$ready"
    taskset -c 1 python3 -c "$IDLE_PY" "${PORT[$name]}" "$IDLE_CONNS" "$ready" >"$T/idle.log" 2>&1 &
    py=$!
    PIDS+=("$py")
    for _ in $(seq 300); do
        [ -s "$ready" ] && break
        alive "$py" || { cat "$T/idle.log" >&2; die "idle client failed against $name"; }
        sleep 0.1
    done
    [ -s "$ready" ] || die "idle client did not finish against $name"
    sleep 1
    with=$(status_kib "$pid" VmRSS)
    stop_pid "$py" TERM
    stop_proxy "$name" "$pid"
    IDLE_RESULT=$(awk -v b="$base" -v w="$with" -v n="$IDLE_CONNS" 'BEGIN {printf "%d %d %.2f", b, w, (w - b) / n}')
}

# Percent of core $1 busy between two core_busy samples "$2 $3" and "$4 $5".
busy_pct() { awk -v a="$(($4 - $2))" -v b="$(($5 - $3))" 'BEGIN {printf "%.0f", b ? 100 * a / b : 0}'; }

# Waits (at most QUIET_WAIT seconds) until the machine is nearly idle, so
# that a build or test run elsewhere does not land in a measurement.
wait_quiet() {
    local deadline=$(($(date +%s) + QUIET_WAIT)) a0 t0 a1 t1 busy
    [ $(($(date +%s) - START)) -gt "$RETRY_UNTIL" ] && return 0
    while :; do
        read -r a0 t0 < <(awk '$1 == "cpu" {print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
        sleep 1
        read -r a1 t1 < <(awk '$1 == "cpu" {print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat)
        busy=$(busy_pct x "$a0" "$t0" "$a1" "$t1")
        [ "$busy" -lt 10 ] && return 0
        if [ "$(date +%s)" -ge "$deadline" ]; then
            log "machine still ${busy}% busy after ${QUIET_WAIT}s of waiting; measuring anyway"
            return 0
        fi
    done
}

# Load runs on a fresh process; sets LAST_ROW (a TSV row) and LAST_NOISE (the
# largest share of a core that other processes used during a load run).
measure_load() {
    local round=$1 name=$2 port pid=""
    if [ "$name" = direct ]; then port=$ORIGIN_PORT; else
        start_proxy "$name"
        pid=$STARTED_PID
        port=${PORT[$name]}
    fi
    run_wrk "$pid" "$port" 1 -c"$CONNS" >/dev/null # warm-up (pools, caches)
    local max paced rss_peak=0
    max=$(run_wrk "$pid" "$port" "$DURATION" -c"$CONNS")
    if [ -n "$pid" ]; then
        paced=$(run_wrk "$pid" "$port" "$DURATION" -c"$PACED_CONNS" -s "$T/pace.lua")
        rss_peak=$(status_kib "$pid" VmHWM)
        stop_proxy "$name" "$pid"
    else
        paced="0 0 0 0 0 0 0 0 0"
    fi
    local rps req p50 p99 errs cpu_max cpu_pct core1_busy noise_max
    local prps preq pp50 pp99 perrs cpu_paced _ _ noise_paced
    read -r rps req p50 p99 errs cpu_max cpu_pct core1_busy noise_max <<<"$max"
    read -r prps preq pp50 pp99 perrs cpu_paced _ _ noise_paced <<<"$paced"
    IDLE_RESULT="0 0 0"
    if [ "$name" != direct ]; then measure_idle "$name"; fi
    local rss_base rss_idle kib_conn
    read -r rss_base rss_idle kib_conn <<<"$IDLE_RESULT"
    local us_max us_paced
    us_max=$(awk -v t="$cpu_max" -v r="$req" -v k="$TICK" 'BEGIN {printf "%.2f", r ? t * 1e6 / k / r : 0}')
    us_paced=$(awk -v t="$cpu_paced" -v r="$preq" -v k="$TICK" 'BEGIN {printf "%.2f", r ? t * 1e6 / k / r : 0}')
    LAST_NOISE=$((noise_max > noise_paced ? noise_max : noise_paced))
    LAST_ROW=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s' \
        "$round" "$name" "$rps" "$p50" "$p99" "$us_max" "$cpu_pct" "$core1_busy" \
        "$prps" "$pp50" "$pp99" "$us_paced" "$kib_conn" "$rss_base" "$rss_peak" "$((errs + perrs))" "$rss_idle" "$LAST_NOISE")
    log "round $round $name: ${rps} req/s p50 ${p50}us p99 ${p99}us | cpu ${us_max}us/req at max (${cpu_pct}%), ${us_paced}us/req at ${prps} req/s | ${kib_conn} KiB/idle conn | peak RSS ${rss_peak} KiB | errors $((errs + perrs)) | core1 ${core1_busy}% busy | other processes ${LAST_NOISE}%"
}

# ---------------------------------------------------------------- main
[ "$(uname -s)" = Linux ] || die "Linux only (/proc, taskset)"
[ "$(nproc)" -ge 2 ] || die "needs 2 cores (proxy on core 0, wrk and origin on core 1)"
T=$(mktemp -d /tmp/weir-load.XXXXXX)
mkdir -p "$T"/ng_body "$T"/ng_proxy "$T"/ng_fastcgi "$T"/ng_uwsgi "$T"/ng_scgi "$RESULTS_DIR"
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge $((IDLE_CONNS + 500)) ] || die "open-file limit $(ulimit -n) is too low for IDLE_CONNS=$IDLE_CONNS"

install_tools
PATH=$PATH:/usr/sbin
build
for p in $ORIGIN_PORT "${PORT[@]}"; do
    if port_busy "$p"; then die "port $p is in use (set PORT_BASE)"; fi
done
write_configs

START=$(date +%s)
log "origin: nginx on 127.0.0.1:$ORIGIN_PORT (core 1)"
taskset -c 1 nginx -p "$T" -e "$T/origin.err" -c "$T/origin.conf" >"$T/origin.log" 2>&1 &
ORIGIN_PID=$!
PIDS+=("$ORIGIN_PID")
wait_ready "$ORIGIN_PORT" "$ORIGIN_PID" origin

TSV=$RESULTS_DIR/latest.tsv
printf 'round\tproxy\trps\tp50_us\tp99_us\tcpu_us_per_req_max\tcpu_pct_max\tcore1_busy_pct\tpaced_rps\tpaced_p50_us\tpaced_p99_us\tcpu_us_per_req_paced\tkib_per_idle_conn\trss_base_kib\trss_peak_kib\terrors\trss_idle_kib\tnoise_pct\n' >"$TSV"

read -r -a ORDER <<<"$PROXIES direct"
for r in $(seq "$ROUNDS"); do
    n=${#ORDER[@]}
    k=$(((r - 1) % n))
    this=("${ORDER[@]:k}" "${ORDER[@]:0:k}")
    log "round $r/$ROUNDS: ${this[*]}"
    for name in "${this[@]}"; do
        for attempt in 1 2 3; do
            wait_quiet
            measure_load "$r" "$name"
            if [ "$LAST_NOISE" -lt 10 ] || [ "$attempt" = 3 ] || [ $(($(date +%s) - START)) -gt "$RETRY_UNTIL" ]; then
                break
            fi
            log "other processes used ${LAST_NOISE}% of a core: measuring $name again"
        done
        printf '%s\n' "$LAST_ROW" >>"$TSV"
    done
done
ELAPSED=$(($(date +%s) - START))

CPU_MODEL=$(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}')
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$ROOT" status --porcelain --untracked-files=no -- src Cargo.toml 2>/dev/null | head -1)
if [ -n "$DIRTY" ]; then COMMIT="$COMMIT (src modified)"; fi
VERSIONS="nginx $( (nginx -v 2>&1 || true) | sed 's/.*nginx\///'), HAProxy $( (haproxy -v 2>/dev/null || true) | awk 'NR == 1 {print $3}'), $( (wrk -v 2>&1 || true) | awk 'NR == 1 {print $1, $2}')"

python3 - "$TSV" "$RESULTS_DIR/latest.md" <<EOF
import csv, statistics, sys
tsv, md = sys.argv[1], sys.argv[2]
rows = list(csv.DictReader(open(tsv), delimiter="\t"))
num = lambda v: float(v) if v not in ("", None) else 0.0
order = [p for p in "$PROXIES direct".split() if any(r["proxy"] == p for r in rows)]
med = {p: {k: statistics.median(num(r[k]) for r in rows if r["proxy"] == p)
           for k in rows[0] if k not in ("round", "proxy")} for p in order}
errors = {p: sum(num(r["errors"]) for r in rows if r["proxy"] == p) for p in order}
names = {"weir": "weir", "floor": "floor_proxy (bare Pingora)", "nginx": "nginx", "haproxy": "HAProxy", "direct": "direct to origin"}
cols = [  # key, header, format, scale
    ("rps", "req/s", "{:,.0f}", 1),
    ("p50_us", "p50 ms", "{:.3f}", 1e-3),
    ("p99_us", "p99 ms", "{:.3f}", 1e-3),
    ("cpu_us_per_req_max", "CPU µs/req @max", "{:.1f}", 1),
    ("cpu_pct_max", "proxy CPU % @max", "{:.0f}", 1),
    ("paced_p50_us", "p50 ms @paced", "{:.3f}", 1e-3),
    ("paced_p99_us", "p99 ms @paced", "{:.3f}", 1e-3),
    ("cpu_us_per_req_paced", "CPU µs/req @paced", "{:.1f}", 1),
    ("kib_per_idle_conn", "KiB/idle conn", "{:.1f}", 1),
    ("rss_base_kib", "RSS idle MiB", "{:.1f}", 1 / 1024),
    ("rss_peak_kib", "peak RSS MiB", "{:.1f}", 1 / 1024),
]
proxy_only = {"cpu_us_per_req_max", "cpu_pct_max", "paced_p50_us", "paced_p99_us", "cpu_us_per_req_paced", "kib_per_idle_conn", "rss_base_kib", "rss_peak_kib"}
def cell(p, key, fmt, scale):
    if p == "direct" and key in proxy_only:
        return "–"
    v = med[p][key]
    s = fmt.format(v * scale)
    if p != "nginx" and key != "cpu_pct_max" and "nginx" in med and med["nginx"][key]:
        s += " ({:.2f}×)".format(v / med["nginx"][key])
    return s
paced = statistics.median(num(r["paced_rps"]) for r in rows if r["proxy"] != "direct") if any(r["proxy"] != "direct" for r in rows) else 0
rounds = len({r["round"] for r in rows})
out = []
out.append("# weir load benchmark (benches/load.sh)\n")
out.append("- date: $(date -u '+%Y-%m-%d %H:%M UTC')")
out.append("- machine: $(nproc) cores, $CPU_MODEL")
out.append("- command: \`ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS PACED_CONNS=$PACED_CONNS PACED_DELAY_MS=$PACED_DELAY_MS IDLE_CONNS=$IDLE_CONNS benches/load.sh\`")
out.append("- weir commit: $COMMIT; $VERSIONS; run time ${ELAPSED} s")
out.append("- each proxy: 1 worker thread on core 0; wrk and the origin (nginx, return 200 \"ok\") on core 1; keep-alive everywhere")
out.append("- medians of %d round(s); (×) = ratio to nginx (for req/s higher is better, for the rest lower is better)" % rounds)
out.append("- @max: wrk -t1 -c$CONNS, ${DURATION} s; @paced: wrk -t1 -c$PACED_CONNS with a ${PACED_DELAY_MS} ms delay between requests per connection (≈%s req/s; wrk2/oha are not in Debian); CPU = utime+stime of the proxy process / requests served (µs per request = ms per 1,000 requests)" % format(round(paced), ","))
out.append("- KiB/idle conn: (VmRSS with $IDLE_CONNS idle keep-alive clients that each made one request − VmRSS before) / $IDLE_CONNS, fresh process; RSS idle = that VmRSS before; peak RSS = VmHWM after the load runs\n")
out.append("| proxy | " + " | ".join(c[1] for c in cols) + " |")
out.append("|---|" + "---:|" * len(cols))
for p in order:
    out.append("| %s | " % names[p] + " | ".join(cell(p, *c[0:1], *c[2:4]) for c in cols) + " |")
if "weir" in med and "floor" in med:
    f, w = med["floor"], med["weir"]
    ratio = lambda k: "{:.2f}×".format(w[k] / f[k]) if f[k] else "n/a"
    out.append("\nweir / floor_proxy: req/s %s, p50 %s, p99 %s, CPU/req @max %s, CPU/req @paced %s, p99 @paced %s, KiB/idle conn %s, peak RSS %s" % (
        ratio("rps"), ratio("p50_us"), ratio("p99_us"), ratio("cpu_us_per_req_max"), ratio("cpu_us_per_req_paced"),
        ratio("paced_p99_us"), ratio("kib_per_idle_conn"), ratio("rss_peak_kib")))
out.append("\ncore 1 (wrk + origin) busy during the @max runs: " + ", ".join("%s %.0f%%" % (names[p], med[p]["core1_busy_pct"]) for p in order)
           + ". Where it is ~100%, wrk and the origin are the limit and req/s understates that proxy: compare CPU µs/req.")
noisy = [(r["round"], names[r["proxy"]], num(r["noise_pct"])) for r in rows if num(r["noise_pct"]) >= 10]
if noisy:
    out.append("\nNOISE: other processes on the machine used this much of a core during: " + ", ".join("round %s %s (%.0f%%)" % n for n in noisy) + " — rerun on a quiet machine")
bad = {p: e for p, e in errors.items() if e}
if bad:
    out.append("\nWARNING: non-2xx responses or socket errors: " + ", ".join("%s %d" % (names[p], e) for p, e in bad.items()))
text = "\n".join(out) + "\n"
open(md, "w").write(text)
print(text)
EOF
log "done in ${ELAPSED} s; table in benches/results/latest.md, raw rows in benches/results/latest.tsv"

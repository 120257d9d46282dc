#!/usr/bin/env bash
# benches/load.sh: weir against the floor_proxy (bare Pingora), nginx, HAProxy
# and pingap (another Pingora-based proxy), side by side, on 127.0.0.1 only.
# One command:
#
#     benches/load.sh                 # ROUNDS=3 by default, every row
#     ROUNDS=1 benches/load.sh        # quick look
#     ROWS=http benches/load.sh       # only the plain-HTTP table (the old run)
#     ROWS=cache benches/load.sh      # cache hits and gzip vs nginx (benches/cache.sh)
#
# What it does (details in benches/README.md):
#   - installs nginx, haproxy, wrk, curl, openssl, h2load (nghttp2-client) and
#     a C compiler from Debian if missing (apt-get; needs root or sudo;
#     services are kept from starting through policy-rc.d);
#   - builds `weir` and the `floor_proxy` example in release (cargo decides
#     whether anything changed; BUILD=0 uses the binaries already in target/);
#   - pingap 0.13.1 is built once and cached: PINGAP_BIN if set, else
#     ${XDG_CACHE_HOME:-~/.cache}/weir-bench/pingap-0.13.1/bin/pingap, else
#     `cargo install pingap --version 0.13.1 --locked` into that folder (20+
#     minutes on 2 cores; protobuf-compiler is installed first when protoc is
#     missing). PINGAP_BUILD=0 never builds. When pingap cannot be built or
#     does not start, its rows are skipped with a note under the tables;
#   - origin: nginx `return 200 "ok"`, 1 worker, access_log off, pinned to core 1;
#   - proxies under test, one worker thread each, pinned to core 0, access
#     logs off: weir, floor_proxy, nginx (upstream keepalive 64), HAProxy
#     (nbthread 1, http-reuse always), pingap (threads 1); wrk runs on core 1
#     with the origin;
#   - ROWS=http, per proxy and round: max throughput and p50/p99 latency (wrk
#     keep-alive, CONNS connections), latency and CPU per request at a paced
#     rate (wrk with a Lua delay(): PACED_CONNS connections, each waiting
#     PACED_DELAY_MS between requests, since neither wrk2 nor oha is packaged
#     in Debian), CPU per request at max throughput, peak RSS under load
#     (VmHWM), and RSS per idle keep-alive connection (IDLE_CONNS clients that
#     each made one request and stay open, against the RSS before them; a
#     fresh process); and wrk straight at the origin: the ceiling of this setup;
#   - ROWS=policy: the same for weir with a route running rate_limit (local,
#     keyed by a header, never reached), auth.api_keys (wrk sends a valid key)
#     and request_headers.set, next to the bare weir row;
#   - ROWS=tls, on https listeners of weir, nginx, HAProxy and pingap (same
#     self-signed certificates, generated with openssl): full TLS handshakes
#     per second (wrk -H 'Connection: close', HS_CONNS connections, with
#     benches/tls_noresume.c preloaded so that wrk never resumes a session;
#     it counts the handshakes) with an ECDSA P-256 and an RSA 2048 key, and
#     keep-alive requests per second over TLS (ECDSA, CONNS connections);
#   - ROWS=h2: HTTP/2 requests per second over TLS (ALPN h2, ECDSA) with
#     h2load -c H2_CONNS -m H2_STREAMS for DURATION seconds;
#   - ROUNDS rounds, the proxy order rotated every round; prints medians with
#     ratios to nginx, weir's ratios to the floor proxy, to pingap and of the
#     policy route to the bare one, and writes them to
#     benches/results/latest.md (raw numbers: benches/results/latest.tsv;
#     the tables are made by benches/load_report.py).
#
# Every process it starts is stopped on exit, Ctrl-C or TERM. Without the
# builds and the install it takes about 3.5 minutes per round with every row
# on a quiet machine (1.7 for ROWS="http policy", 1.8 for ROWS="tls h2"), so
# about 11 minutes for 3 rounds; on a busy one, waiting for quiet and
# repeating disturbed measurements add up to 2-3 minutes (one round took 6).
#
# Environment (defaults): ROUNDS=3 DURATION=5 (seconds per measured load run)
# ROWS="http policy tls h2" CONNS=50 PACED_CONNS=20 PACED_DELAY_MS=2
# IDLE_CONNS=1000 HS_CONNS=50 H2_CONNS=10 H2_STREAMS=10 PORT_BASE=18080
# (uses PORT_BASE..PORT_BASE+15) PROXIES="weir floor nginx haproxy pingap"
# (the TLS and h2 rows take those of them that serve TLS: all but floor)
# BUILD=auto (BUILD=0 with WEIR_BIN=... and FLOOR_BIN=... compares other
# builds) PINGAP_BIN=... PINGAP_BUILD=auto QUIET_WAIT=20 (seconds to wait for
# an idle machine before each measurement) RETRY_UNTIL=300 (a measurement
# that other processes disturbed, >= 10% of core 0, is repeated up to twice,
# and the script waits for quiet, only while the run is younger than this)
# RESULTS_DIR=benches/results (where latest.md and latest.tsv go)
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
ROWS=${ROWS:-"http policy tls h2"}
CONNS=${CONNS:-50}
PACED_CONNS=${PACED_CONNS:-20}
PACED_DELAY_MS=${PACED_DELAY_MS:-2}
IDLE_CONNS=${IDLE_CONNS:-1000}
HS_CONNS=${HS_CONNS:-50}
H2_CONNS=${H2_CONNS:-10}
H2_STREAMS=${H2_STREAMS:-10}
PORT_BASE=${PORT_BASE:-18080}
PROXIES=${PROXIES:-"weir floor nginx haproxy pingap"}
BUILD=${BUILD:-auto}
QUIET_WAIT=${QUIET_WAIT:-20}
RETRY_UNTIL=${RETRY_UNTIL:-300}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RESULTS_DIR=${RESULTS_DIR:-$ROOT/benches/results}
WEIR_BIN=${WEIR_BIN:-$ROOT/target/release/weir}
FLOOR_BIN=${FLOOR_BIN:-$ROOT/target/release/examples/floor_proxy}
PINGAP_VERSION=0.13.1
BENCH_CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/weir-bench
PINGAP_ROOT=$BENCH_CACHE/pingap-$PINGAP_VERSION
PINGAP_BIN_SET=${PINGAP_BIN:+1}
PINGAP_BIN=${PINGAP_BIN:-$PINGAP_ROOT/bin/pingap}
PINGAP_BUILD=${PINGAP_BUILD:-auto}
PINGAP_NOTE="" # why pingap is not measured, when it is wanted and is not
API_KEY="k-bench-0123456789abcdef"
ORIGIN_PORT=$PORT_BASE
declare -A PORT=([weir]=$((PORT_BASE + 1)) [floor]=$((PORT_BASE + 2)) [nginx]=$((PORT_BASE + 3))
    [haproxy]=$((PORT_BASE + 4)) [pingap]=$((PORT_BASE + 5)) [weir-policy]=$((PORT_BASE + 6))
    [pingap-weir]=$((PORT_BASE + 7)))
# https listeners: one per proxy, started with the ECDSA or the RSA certificate
declare -A TLS_PORT=([weir]=$((PORT_BASE + 11)) [nginx]=$((PORT_BASE + 13))
    [haproxy]=$((PORT_BASE + 14)) [pingap]=$((PORT_BASE + 15)))
TICK=$(getconf CLK_TCK)

log() { printf '[load.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
has_row() { [[ " $ROWS " == *" $1 "* ]]; }
# ROWS=cache: cache hits and gzip against nginx, measured by benches/cache.sh.
if has_row cache; then
    ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS "$(dirname "${BASH_SOURCE[0]}")/cache.sh"
    ROWS=$(echo " $ROWS " | sed 's/ cache / /g' | xargs)
    [ -n "$ROWS" ] || exit 0
fi
for row in $ROWS; do
    case $row in http | policy | tls | h2) ;; *) die "unknown row '$row' in ROWS (http policy tls h2)" ;; esac
done

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

# Installs Debian packages (as root or through sudo), keeping their services
# from starting.
apt_install() {
    log "installing from Debian: $*"
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        # keep the packages' own nginx/haproxy services from starting
        printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
        as_root chmod 755 /usr/sbin/policy-rc.d
        POLICY_RC_CREATED=1
    fi
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
    if [ "$POLICY_RC_CREATED" = 1 ]; then as_root rm -f /usr/sbin/policy-rc.d; POLICY_RC_CREATED=0; fi
}

install_tools() {
    local missing=()
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
    command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
    command -v wrk >/dev/null || missing+=(wrk)
    command -v taskset >/dev/null || missing+=(util-linux)
    command -v python3 >/dev/null || missing+=(python3)
    if has_row tls || has_row h2 || has_row policy; then command -v curl >/dev/null || missing+=(curl); fi
    if has_row tls || has_row h2; then command -v openssl >/dev/null || missing+=(openssl); fi
    if has_row tls; then command -v cc >/dev/null || missing+=(gcc libc6-dev); fi
    if has_row h2; then command -v h2load >/dev/null || missing+=(nghttp2-client); fi
    [ ${#missing[@]} = 0 ] && return
    apt_install "${missing[@]}"
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

# Sets PINGAP_NOTE (and leaves the binary missing) when pingap cannot be had:
# PINGAP_BIN if set, else the cached build, else a build into the cache.
find_pingap() {
    if [ -x "$PINGAP_BIN" ]; then return; fi
    if [ -n "$PINGAP_BIN_SET" ]; then PINGAP_NOTE="PINGAP_BIN=$PINGAP_BIN is not an executable"; return; fi
    if [ "$PINGAP_BUILD" = 0 ]; then
        PINGAP_NOTE="not built (PINGAP_BUILD=0 and no $PINGAP_BIN)"
        return
    fi
    if ! command -v cargo >/dev/null; then PINGAP_NOTE="cannot be built: no cargo"; return; fi
    local missing=()
    command -v protoc >/dev/null || missing+=(protobuf-compiler)
    command -v cmake >/dev/null || missing+=(cmake)
    command -v pkg-config >/dev/null || missing+=(pkg-config)
    [ -e /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
    if [ ${#missing[@]} != 0 ]; then
        apt_install "${missing[@]}" || { PINGAP_NOTE="cannot be built: installing ${missing[*]} failed"; return; }
    fi
    mkdir -p "$BENCH_CACHE"
    local blog=$BENCH_CACHE/pingap-build.log
    log "building pingap $PINGAP_VERSION once into $PINGAP_ROOT (20+ minutes on 2 cores; log: $blog)"
    echo "== benches/load.sh, $(date -u '+%Y-%m-%d %H:%M:%S UTC')" >>"$blog" # appended: never cut another build's log
    if (cargo install pingap --version "$PINGAP_VERSION" --locked --root "$PINGAP_ROOT" \
        --target-dir "$BENCH_CACHE/pingap-target") >>"$blog" 2>&1 && [ -x "$PINGAP_BIN" ]; then
        log "pingap built: $PINGAP_BIN"
    else
        tail -5 "$blog" >&2 || true
        PINGAP_NOTE="cannot be built (cargo install failed, see $blog)"
    fi
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# True once GET / on the port answers 200 (with the API key the policy route
# wants; the other routes ignore it).
http_ok() {
    timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1 && printf 'GET / HTTP/1.1\r\nHost: bench\r\nx-api-key: $API_KEY\r\nConnection: close\r\n\r\n' >&3 && head -c 12 <&3" 2>/dev/null | grep -q ' 200'
}

# The same over TLS (any certificate).
https_ok() {
    [ "$(curl -sk --max-time 2 -o /dev/null -w '%{http_code}' "https://127.0.0.1:$1/" 2>/dev/null)" = 200 ]
}

# Waits until the process $2 (log $T/$3.log) answers on port $1, over TLS when
# $4 is set. Dies when it does not, or with $5 = probe returns 1 instead.
wait_ready() {
    local port=$1 pid=$2 tag=$3 tls=${4:-} mode=${5:-} why=""
    for _ in $(seq 100); do
        alive "$pid" || { why="$tag exited at start"; break; }
        if [ -n "$tls" ]; then https_ok "$port" && return 0; else http_ok "$port" && return 0; fi
        sleep 0.1
    done
    [ -n "$why" ] || why="$tag did not answer on 127.0.0.1:$port"
    if [ "$mode" = probe ]; then
        PROBE_ERROR="$why: $(tail -3 "$T/$tag.log" 2>/dev/null | tr '\n' ' ' | cut -c1-300)"
        stop_pid "$pid" INT
        return 1
    fi
    tail -20 "$T/$tag.log" >&2 || true
    die "$why"
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

# nginx proxy config: $1 tag, $2 the listen parameters, $3 extra server lines.
nginx_proxy_conf() {
    { nginx_common "$1"; echo "http {"; nginx_http_common; cat <<EOF
    upstream origin {
        server 127.0.0.1:$ORIGIN_PORT;
        keepalive 64;
        keepalive_requests 100000000;
    }
    server {
        listen $2 backlog=4096;$3
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
    } >"$T/$1.conf"
}

# HAProxy config: $1 tag, $2 the bind line.
haproxy_conf() {
    cat >"$T/$1.cfg" <<EOF
global
    nbthread 1
    maxconn 8000
    pidfile $T/$1.pid
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout http-keep-alive 300s
    http-reuse always
frontend fe
    bind $2
    default_backend be
backend be
    server origin 127.0.0.1:$ORIGIN_PORT
EOF
}

# weir config: $1 tag, $2 the listener (YAML lines under "- name: bench"),
# $3 route lines after "upstream: origin". Access logs are off by default.
weir_conf() {
    cat >"$T/$1.yaml" <<EOF
server:
  threads: 1
  pid_file: $T/$1.pid
  upgrade_sock: $T/$1_upgrade.sock
  grace_period_seconds: 1
  graceful_shutdown_timeout_seconds: 1
log:
  level: warn
listeners:
  - name: bench
$2
routes:
  - name: all
    upstream: origin
$3
upstreams:
  origin:
    backends: [127.0.0.1:$ORIGIN_PORT]
EOF
    local out
    out=$("$WEIR_BIN" check -c "$T/$1.yaml" 2>&1) || { echo "$out" >&2; die "weir check refused $T/$1.yaml"; }
}

# pingap config (one TOML file): $1 tag, $2 port, $3 key type for TLS (ec or
# rsa; empty: plain HTTP), $4 = weir: doing what weir does by default (the
# SPEC's X-Forwarded-For/Proto/Host, an X-Request-Id upstream and on the
# answer, upstream timeouts connect 5 s, read/write/idle 60 s; pingap adds
# X-Real-IP and X-Forwarded-Port too). threads 1 and no work stealing as weir and the floor
# proxy; no access_log key: pingap then logs no requests.
pingap_conf() {
    local tls_server="" tls_cert="" up_extra="" loc_extra="" plugins=""
    if [ "${4:-}" = weir ]; then
        up_extra=$'connection_timeout = "5s"\nread_timeout = "60s"\nwrite_timeout = "60s"\nidle_timeout = "60s"'
        loc_extra=$'enable_reverse_proxy_headers = true\nplugins = ["rid"]'
        plugins=$'[plugins.rid]\ncategory = "request_id"'
    fi
    if [ -n "${3:-}" ]; then
        tls_server=$'global_certificates = true\nenabled_h2 = true'
        tls_cert="[certificates.bench]
tls_cert = \"$T/$3.pem\"
tls_key = \"$T/$3.key\"
is_default = true
"
    fi
    cat >"$T/$1.toml" <<EOF
[basic]
threads = 1
work_stealing = false
pid_file = "$T/$1.pid"
upgrade_sock = "$T/$1_upgrade.sock"
grace_period = "1s"
graceful_shutdown_timeout = "1s"
log_level = "warn"

$tls_cert
[upstreams.origin]
addrs = ["127.0.0.1:$ORIGIN_PORT"]
$up_extra

[locations.all]
upstream = "origin"
path = "/"
$loc_extra

[servers.bench]
addr = "127.0.0.1:$2"
locations = ["all"]
$tls_server

$plugins
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

    nginx_proxy_conf nginx "127.0.0.1:${PORT[nginx]}" ""
    haproxy_conf haproxy "127.0.0.1:${PORT[haproxy]}"
    weir_conf weir "    address: 127.0.0.1:${PORT[weir]}" ""
    pingap_conf pingap "${PORT[pingap]}" ""
    pingap_conf pingap-weir "${PORT[pingap-weir]}" "" weir
    # the bare route plus rate_limit (never reached: one key, 10^9 per second),
    # an API key (wrk sends it) and a request header set
    weir_conf weir-policy "    address: 127.0.0.1:${PORT[weir-policy]}" "    rate_limit: { requests_per_second: 1000000000, key: \"header:x-api-key\" }
    auth: { api_keys: [\"$API_KEY\"] }
    request_headers: { set: { x-bench: policy } }"

    if has_row tls || has_row h2; then
        # self-signed, for 127.0.0.1; the same files for every server
        openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj /CN=bench \
            -addext "subjectAltName=DNS:bench,IP:127.0.0.1" -keyout "$T/ec.key" -out "$T/ec.pem" >>"$T/openssl.log" 2>&1 \
            || { cat "$T/openssl.log" >&2; die "openssl could not make the ECDSA certificate"; }
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=bench \
            -addext "subjectAltName=DNS:bench,IP:127.0.0.1" -keyout "$T/rsa.key" -out "$T/rsa.pem" >>"$T/openssl.log" 2>&1 \
            || { cat "$T/openssl.log" >&2; die "openssl could not make the RSA certificate"; }
        local k
        for k in ec rsa; do
            cat "$T/$k.pem" "$T/$k.key" >"$T/$k.bundle.pem" # HAProxy wants both in one file
            # nginx 1.22 enables TLSv1.3 only when told; session cache and
            # tickets stay at their defaults (the client never resumes)
            nginx_proxy_conf "nginx-tls-$k" "127.0.0.1:${TLS_PORT[nginx]} ssl http2" "
        ssl_certificate $T/$k.pem;
        ssl_certificate_key $T/$k.key;
        ssl_protocols TLSv1.2 TLSv1.3;"
            haproxy_conf "haproxy-tls-$k" "127.0.0.1:${TLS_PORT[haproxy]} ssl crt $T/$k.bundle.pem alpn h2,http/1.1"
            weir_conf "weir-tls-$k" "    address: 127.0.0.1:${TLS_PORT[weir]}
    protocol: https
    tls:
      certificates: [{ cert: $T/$k.pem, key: $T/$k.key }]
      http2: true" ""
            pingap_conf "pingap-tls-$k" "${TLS_PORT[pingap]}" "$k"
        done
    fi
    if has_row tls; then
        cc -O2 -shared -fPIC -o "$T/noresume.so" "$ROOT/benches/tls_noresume.c" -ldl >"$T/cc.log" 2>&1 \
            || { cat "$T/cc.log" >&2; die "could not build benches/tls_noresume.c"; }
    fi

    cat >"$T/pace.lua" <<EOF
-- each connection waits this long after a response before its next request
function delay() return $PACED_DELAY_MS end
EOF
}

# ---------------------------------------------------------------- processes
# Starts proxy $1 pinned to core 0, on plain HTTP or, with $2 = ec or rsa, on
# its https listener with that certificate; sets STARTED_PID. With $3 = probe
# it returns 1 (reason in PROBE_ERROR) instead of dying when it does not start.
start_proxy() {
    local name=$1 key=${2:-} mode=${3:-} tag pid port
    if [ -n "$key" ]; then tag=$name-tls-$key; port=${TLS_PORT[$name]}; else tag=$name; port=${PORT[$name]}; fi
    case $name in
        weir | weir-policy) taskset -c 0 "$WEIR_BIN" -c "$T/$tag.yaml" >"$T/$tag.log" 2>&1 & pid=$! ;;
        floor) TMPDIR=$T taskset -c 0 "$FLOOR_BIN" "127.0.0.1:${PORT[floor]}" "127.0.0.1:$ORIGIN_PORT" 1 >"$T/floor.log" 2>&1 & pid=$! ;;
        nginx) taskset -c 0 nginx -p "$T" -e "$T/$tag.err" -c "$T/$tag.conf" >"$T/$tag.log" 2>&1 & pid=$! ;;
        haproxy) taskset -c 0 haproxy -db -f "$T/$tag.cfg" >"$T/$tag.log" 2>&1 & pid=$! ;;
        pingap | pingap-weir) taskset -c 0 env PINGAP_DISABLE_ACME=1 "$PINGAP_BIN" -c "$T/$tag.toml" >"$T/$tag.log" 2>&1 & pid=$! ;;
        *) die "unknown proxy $name" ;;
    esac
    PIDS+=("$pid")
    wait_ready "$port" "$pid" "$tag" "$key" "$mode" || return 1
    STARTED_PID=$pid
}

stop_proxy() { # $1 name, $2 pid: the Pingora-based ones stop fast on INT (TERM drains)
    case $1 in weir | weir-policy | floor | pingap | pingap-weir) stop_pid "$2" INT ;; *) stop_pid "$2" TERM ;; esac
}

# Starts and stops pingap once with each config the run will use ($@: "http",
# "ec", "rsa"); on failure sets PINGAP_NOTE, so its rows are skipped.
probe_pingap() {
    local v key
    for v in "$@"; do
        key=$v
        [ "$v" = http ] && key=""
        if ! start_proxy pingap "$key" probe; then
            PINGAP_NOTE="did not start with its $v config: $PROBE_ERROR"
            return
        fi
        stop_proxy pingap "$STARTED_PID"
    done
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

# Runs a load generator (the command in $3...) on core 1 for about $2 seconds
# while proxy $1 (a pid, or "" for none) serves; its output goes to
# $T/load.out. Prints "proxy_ticks proxy_pct core1_busy_pct noise_pct", where
# noise is the largest share of a core that neither we nor the proxy, origin
# or load generator used (other processes on the machine). Dies when the
# command fails. The command runs under `timeout` (its own time + 30 s).
run_load() {
    local pid=$1 secs=$2
    shift 2
    local p0=0 p1=0 o0 o1 c0a c0b c1a c1b
    if [ -n "$pid" ]; then p0=$(cpu_ticks "$pid"); fi
    o0=$(cpu_ticks "$ORIGIN_PID")
    c0a=$(core_busy 0)
    c1a=$(core_busy 1)
    taskset -c 1 python3 -c "$RUSAGE_PY" "$T/load.cpu" timeout -k 5 $((secs + 30)) "$@" >"$T/load.out" 2>&1 \
        || { cat "$T/load.out" >&2; die "load run failed: $*"; }
    c0b=$(core_busy 0)
    c1b=$(core_busy 1)
    o1=$(cpu_ticks "$ORIGIN_PID")
    if [ -n "$pid" ]; then p1=$(cpu_ticks "$pid"); fi
    cat "$T/load.out" >>"$T/wrk.log"
    awk -v c0="$c0a $c0b" -v c1="$c1a $c1b" -v p="$((p1 - p0))" -v o="$((o1 - o0))" \
        -v w="$(cat "$T/load.cpu")" -v k="$TICK" 'BEGIN {
        split(c0, a); split(c1, b)
        t0 = a[4] - a[2]; t1 = b[4] - b[2]
        busy0 = t0 ? 100 * (a[3] - a[1]) / t0 : 0
        busy1 = t1 ? 100 * (b[3] - b[1]) / t1 : 0
        proxy = t0 ? 100 * p / t0 : 0
        ours1 = t1 ? 100 * (o + w * k) / t1 : 0
        n0 = busy0 - proxy; n1 = busy1 - ours1
        n = (n0 > n1 ? n0 : n1)
        printf "%d %.0f %.0f %.0f\n", p, proxy, busy1, (n > 0 ? n : 0) }'
}

# Runs wrk on core 1 against $2 (a port on 127.0.0.1, or a URL) for $3 seconds
# with extra args, while proxy $1 (a pid, or "" for none) serves. Prints "rps
# requests p50_us p99_us errors proxy_ticks proxy_pct core1_busy_pct
# noise_pct". With NORESUME=1 in its environment, wrk runs with
# benches/tls_noresume.c preloaded (never resumes a TLS session) and writes
# its handshake counts to $T/hs.stats.
run_wrk() {
    local pid=$1 target=$2 secs=$3 cpu out
    shift 3
    [[ $target == *://* ]] || target="http://127.0.0.1:$target/"
    local pre=()
    if [ -n "${NORESUME:-}" ]; then
        rm -f "$T/hs.stats"
        pre=(env LD_PRELOAD="$T/noresume.so" TLS_NORESUME_STATS="$T/hs.stats")
    fi
    cpu=$(run_load "$pid" "$secs" ${pre[@]+"${pre[@]}"} wrk -t1 "$@" -d"${secs}s" --latency "$target")
    out=$(cat "$T/load.out")
    local rps req p50 p99 errs
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    req=$(awk '/requests in/ {print $1}' <<<"$out")
    p50=$(to_us "$(awk '$1 == "50%" {print $2}' <<<"$out")")
    p99=$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
    errs=$(awk '/Non-2xx/ {n += $NF} /Socket errors/ {gsub(",", ""); n += $4 + $6 + $8 + $10} END {print n + 0}' <<<"$out")
    echo "${rps:-0} ${req:-0} ${p50:-0} ${p99:-0} $errs $cpu"
}

# Runs h2load (HTTP/2 over TLS, ALPN h2) on core 1 against port $2 for $3
# seconds: H2_CONNS connections with H2_STREAMS streams each. Prints the same
# fields as run_wrk (h2load has no percentiles: p50 is its mean time per
# request, p99 is 0). Dies when h2 was not negotiated.
run_h2() {
    local pid=$1 port=$2 secs=$3 cpu out
    cpu=$(run_load "$pid" "$secs" h2load -t1 -c"$H2_CONNS" -m"$H2_STREAMS" -D "$secs" "https://127.0.0.1:$port/")
    out=$(cat "$T/load.out")
    grep -q '^Application protocol: h2$' <<<"$out" || { echo "$out" | tail -20 >&2; die "h2load did not negotiate h2 on port $port"; }
    local rps req mean errs
    rps=$(awk '/^finished in/ {gsub(",", ""); print $4}' <<<"$out")
    req=$(awk '/^requests:/ {print $8}' <<<"$out")
    mean=$(to_us "$(awk '/^time for request:/ {print $6}' <<<"$out")")
    errs=$(awk '/^requests:/ {f = $10} /^status codes:/ {gsub(",", ""); n = $5 + $7 + $9} END {print f + n}' <<<"$out")
    echo "${rps:-0} ${req:-0} ${mean:-0} 0 $errs $cpu"
}

# "protocol/cipher/key exchange/signature" that `openssl s_client` gets from
# port $1 (what wrk's OpenSSL negotiates too).
tls_params() {
    timeout 5 openssl s_client -connect "127.0.0.1:$1" -brief </dev/null 2>&1 | awk -F': ' '
        /^Protocol version/ {p = $2} /^Ciphersuite/ {c = $2} /^Server Temp Key/ {split($2, t, ","); k = t[1]}
        /^Signature type/ {s = $2}
        END {printf "%s/%s/%s/%s\n", p ? p : "?", c ? c : "?", k ? k : "?", s ? s : "?"}'
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

# One TSV row: $1 round, $2 proxy, $3 test, $4 run_wrk/run_h2 output, $5 full
# and $6 resumed handshakes (empty: not counted), $7 TLS parameters.
tsv_row() {
    local rps req p50 p99 errs ticks pct core1 noise us
    read -r rps req p50 p99 errs ticks pct core1 noise <<<"$4"
    us=$(awk -v t="$ticks" -v r="$req" -v k="$TICK" 'BEGIN {printf "%.2f", r ? t * 1e6 / k / r : 0}')
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t0\t0\t0\t0\t0\t0\t0\t%s\t0\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$1" "$2" "$rps" "$p50" "$p99" "$us" "$pct" "$core1" "$errs" "$noise" "$3" "${5:-0}" "${6:-0}" "$7" "$req"
    log "round $1 $2 $3: ${rps}/s | cpu ${us}us per request (${pct}%) | p50 ${p50}us p99 ${p99}us | errors $errs${5:+ | handshakes: $5 full, $6 resumed} | $7 | core1 ${core1}% busy | other processes ${noise}%"
}

# Keeps in LAST_NOISE the largest noise share of run_wrk/run_h2 outputs.
note_noise() {
    local n
    n=$(awk '{print $9}' <<<"$1")
    LAST_NOISE=$((n > LAST_NOISE ? n : LAST_NOISE))
}

# Load runs on a fresh process; sets LAST_ROW (a TSV row) and LAST_NOISE (the
# largest share of a core that other processes used during a load run).
measure_load() {
    local round=$1 name=$2 port pid="" hdr=()
    if [ "$name" = direct ]; then port=$ORIGIN_PORT; else
        start_proxy "$name"
        pid=$STARTED_PID
        port=${PORT[$name]}
    fi
    if [ "$name" = weir-policy ]; then
        hdr=(-H "x-api-key: $API_KEY")
        # the policies run: without the key, 401
        local code
        code=$(curl -s --max-time 2 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/" || true)
        [ "$code" = 401 ] || die "weir-policy answered $code without an API key (expected 401)"
    fi
    run_wrk "$pid" "$port" 1 -c"$CONNS" ${hdr[@]+"${hdr[@]}"} >/dev/null # warm-up (pools, caches)
    local max paced rss_peak=0
    max=$(run_wrk "$pid" "$port" "$DURATION" -c"$CONNS" ${hdr[@]+"${hdr[@]}"})
    if [ -n "$pid" ]; then
        paced=$(run_wrk "$pid" "$port" "$DURATION" -c"$PACED_CONNS" -s "$T/pace.lua" ${hdr[@]+"${hdr[@]}"})
        rss_peak=$(status_kib "$pid" VmHWM)
        stop_proxy "$name" "$pid"
    else
        paced="0 0 0 0 0 0 0 0 0"
    fi
    local rps req p50 p99 errs cpu_max cpu_pct core1_busy noise_max
    local prps preq pp50 pp99 perrs cpu_paced _ _ noise_paced
    read -r rps req p50 p99 errs cpu_max cpu_pct core1_busy noise_max <<<"$max"
    read -r prps preq pp50 pp99 perrs cpu_paced _ _ noise_paced <<<"$paced"
    # per-connection memory does not depend on the route: not measured again
    # for the policy route or pingap doing weir's work
    IDLE_RESULT="0 0 0"
    case $name in direct | weir-policy | pingap-weir) ;; *) measure_idle "$name" ;; esac
    local rss_base rss_idle kib_conn
    read -r rss_base rss_idle kib_conn <<<"$IDLE_RESULT"
    local us_max us_paced
    us_max=$(awk -v t="$cpu_max" -v r="$req" -v k="$TICK" 'BEGIN {printf "%.2f", r ? t * 1e6 / k / r : 0}')
    us_paced=$(awk -v t="$cpu_paced" -v r="$preq" -v k="$TICK" 'BEGIN {printf "%.2f", r ? t * 1e6 / k / r : 0}')
    LAST_NOISE=$((noise_max > noise_paced ? noise_max : noise_paced))
    LAST_ROW=$(printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\thttp\t0\t0\t-\t%s' \
        "$round" "$name" "$rps" "$p50" "$p99" "$us_max" "$cpu_pct" "$core1_busy" \
        "$prps" "$pp50" "$pp99" "$us_paced" "$kib_conn" "$rss_base" "$rss_peak" "$((errs + perrs))" "$rss_idle" "$LAST_NOISE" "$req")
    log "round $round $name: ${rps} req/s p50 ${p50}us p99 ${p99}us | cpu ${us_max}us/req at max (${cpu_pct}%), ${us_paced}us/req at ${prps} req/s | ${kib_conn} KiB/idle conn | peak RSS ${rss_peak} KiB | errors $((errs + perrs)) | core1 ${core1_busy}% busy | other processes ${LAST_NOISE}%"
}

# The TLS and h2 rows of proxy $2 in round $1, each run after a 1 s warm-up:
# with the RSA certificate, full handshakes; then with the ECDSA one, full
# handshakes, keep-alive requests over TLS and HTTP/2 requests (those of them
# ROWS asks for). Sets LAST_ROW (TSV rows, one a line) and LAST_NOISE.
measure_tls() {
    local round=$1 name=$2 port pid info out url full resumed k
    port=${TLS_PORT[$name]}
    url="https://127.0.0.1:$port/"
    LAST_ROW=""
    LAST_NOISE=0
    local keys=()
    if has_row tls; then keys+=(rsa); fi
    keys+=(ec)
    for k in "${keys[@]}"; do
        start_proxy "$name" "$k"
        pid=$STARTED_PID
        info=$(tls_params "$port")
        if has_row tls; then
            # a new connection and a full handshake per request
            NORESUME=1 run_wrk "$pid" "$url" 1 -c"$HS_CONNS" -H 'Connection: close' >/dev/null
            out=$(NORESUME=1 run_wrk "$pid" "$url" "$DURATION" -c"$HS_CONNS" -H 'Connection: close')
            read -r full resumed <"$T/hs.stats" || { full=0; resumed=0; }
            LAST_ROW+=$(tsv_row "$round" "$name" "tls-hs-$k" "$out" "$full" "$resumed" "$info")$'\n'
            note_noise "$out"
        fi
        if [ "$k" = ec ] && has_row tls; then
            run_wrk "$pid" "$url" 1 -c"$CONNS" >/dev/null
            out=$(run_wrk "$pid" "$url" "$DURATION" -c"$CONNS")
            LAST_ROW+=$(tsv_row "$round" "$name" tls-ka "$out" "" "" "$info")$'\n'
            note_noise "$out"
        fi
        if [ "$k" = ec ] && has_row h2; then
            run_h2 "$pid" "$port" 1 >/dev/null
            out=$(run_h2 "$pid" "$port" "$DURATION")
            LAST_ROW+=$(tsv_row "$round" "$name" h2 "$out" "" "" "$info")$'\n'
            note_noise "$out"
        fi
        stop_proxy "$name" "$pid"
    done
    LAST_ROW=${LAST_ROW%$'\n'}
}

# ---------------------------------------------------------------- main
[ "$(uname -s)" = Linux ] || die "Linux only (/proc, taskset)"
[ "$(nproc)" -ge 2 ] || die "needs 2 cores (proxy on core 0, wrk and origin on core 1)"
T=$(mktemp -d /tmp/weir-load.XXXXXX)
mkdir -p "$T"/ng_body "$T"/ng_proxy "$T"/ng_fastcgi "$T"/ng_uwsgi "$T"/ng_scgi "$RESULTS_DIR"
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -ge $((IDLE_CONNS + 500)) ] || die "open-file limit $(ulimit -n) is too low for IDLE_CONNS=$IDLE_CONNS"

# What runs: the plain-HTTP lineup (PROXIES, the policy route next to weir,
# direct to the origin) and the TLS lineup (those of PROXIES that serve TLS).
HTTP_LINEUP=()
TLS_LINEUP=()
for name in $PROXIES; do
    [ -n "${PORT[$name]:-}" ] && [ "$name" != weir-policy ] && [ "$name" != pingap-weir ] || die "unknown proxy '$name' in PROXIES (weir floor nginx haproxy pingap)"
    if has_row http; then HTTP_LINEUP+=("$name"); fi
    if { has_row tls || has_row h2; } && [ -n "${TLS_PORT[$name]:-}" ]; then TLS_LINEUP+=("$name"); fi
done
if has_row policy; then
    [[ " ${HTTP_LINEUP[*]} " == *" weir "* ]] || HTTP_LINEUP+=(weir)
    HTTP_LINEUP+=(weir-policy)
fi
# pingap again, doing what weir does by default (like with like)
if [[ " ${HTTP_LINEUP[*]} " == *" pingap "* ]]; then HTTP_LINEUP+=(pingap-weir); fi
if has_row http; then HTTP_LINEUP+=(direct); fi
# drops pingap from both lineups
drop_pingap() {
    local keep=() n
    for n in ${HTTP_LINEUP[@]+"${HTTP_LINEUP[@]}"}; do [ "$n" = pingap ] || [ "$n" = pingap-weir ] || keep+=("$n"); done
    HTTP_LINEUP=(${keep[@]+"${keep[@]}"})
    keep=()
    for n in ${TLS_LINEUP[@]+"${TLS_LINEUP[@]}"}; do [ "$n" = pingap ] || keep+=("$n"); done
    TLS_LINEUP=(${keep[@]+"${keep[@]}"})
}
WANT_PINGAP=0
[[ " ${HTTP_LINEUP[*]} ${TLS_LINEUP[*]} " == *" pingap "* ]] && WANT_PINGAP=1

install_tools
PATH=$PATH:/usr/sbin
build
if [ "$WANT_PINGAP" = 1 ]; then
    find_pingap
    if [ -n "$PINGAP_NOTE" ]; then log "pingap skipped: $PINGAP_NOTE"; drop_pingap; fi
fi
for p in $ORIGIN_PORT "${PORT[@]}" "${TLS_PORT[@]}"; do
    if port_busy "$p"; then die "port $p is in use (set PORT_BASE)"; fi
done
write_configs
log "origin: nginx on 127.0.0.1:$ORIGIN_PORT (core 1)"
taskset -c 1 nginx -p "$T" -e "$T/origin.err" -c "$T/origin.conf" >"$T/origin.log" 2>&1 &
ORIGIN_PID=$!
PIDS+=("$ORIGIN_PID")
wait_ready "$ORIGIN_PORT" "$ORIGIN_PID" origin
if [ "$WANT_PINGAP" = 1 ] && [ -z "$PINGAP_NOTE" ]; then
    probe=()
    [[ " ${HTTP_LINEUP[*]} " == *" pingap "* ]] && probe+=(http)
    [[ " ${TLS_LINEUP[*]} " == *" pingap "* ]] && probe+=(ec)
    [[ " ${TLS_LINEUP[*]} " == *" pingap "* ]] && has_row tls && probe+=(rsa)
    probe_pingap "${probe[@]}"
    if [ -n "$PINGAP_NOTE" ]; then log "pingap skipped: $PINGAP_NOTE"; drop_pingap; fi
fi
[ ${#HTTP_LINEUP[@]} != 0 ] || [ ${#TLS_LINEUP[@]} != 0 ] || die "nothing to measure (ROWS='$ROWS', PROXIES='$PROXIES')"

START=$(date +%s)
TSV=$RESULTS_DIR/latest.tsv
printf 'round\tproxy\trps\tp50_us\tp99_us\tcpu_us_per_req_max\tcpu_pct_max\tcore1_busy_pct\tpaced_rps\tpaced_p50_us\tpaced_p99_us\tcpu_us_per_req_paced\tkib_per_idle_conn\trss_base_kib\trss_peak_kib\terrors\trss_idle_kib\tnoise_pct\ttest\thandshakes_full\thandshakes_resumed\ttls\trequests\n' >"$TSV"

# Runs measure_$1 (load or tls) for round $2 and proxy $3, again (at most
# twice) when other processes disturbed it, and appends its rows to the TSV.
measure() {
    local attempt
    for attempt in 1 2 3; do
        wait_quiet
        "measure_$1" "$2" "$3"
        if [ "$LAST_NOISE" -lt 10 ] || [ "$attempt" = 3 ] || [ $(($(date +%s) - START)) -gt "$RETRY_UNTIL" ]; then
            break
        fi
        log "other processes used ${LAST_NOISE}% of a core: measuring $3 again"
    done
    printf '%s\n' "$LAST_ROW" >>"$TSV"
}

for r in $(seq "$ROUNDS"); do
    if [ ${#HTTP_LINEUP[@]} != 0 ]; then
        n=${#HTTP_LINEUP[@]}
        k=$(((r - 1) % n))
        this=("${HTTP_LINEUP[@]:k}" "${HTTP_LINEUP[@]:0:k}")
        log "round $r/$ROUNDS, http: ${this[*]}"
        for name in "${this[@]}"; do measure load "$r" "$name"; done
    fi
    if [ ${#TLS_LINEUP[@]} != 0 ]; then
        n=${#TLS_LINEUP[@]}
        k=$(((r - 1) % n))
        this=("${TLS_LINEUP[@]:k}" "${TLS_LINEUP[@]:0:k}")
        log "round $r/$ROUNDS, tls/h2: ${this[*]}"
        for name in "${this[@]}"; do measure tls "$r" "$name"; done
    fi
done
ELAPSED=$(($(date +%s) - START))

COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git -C "$ROOT" status --porcelain --untracked-files=no -- src Cargo.toml 2>/dev/null | head -1)
if [ -n "$DIRTY" ]; then COMMIT="$COMMIT (src modified)"; fi
VERSIONS="nginx $( (nginx -v 2>&1 || true) | sed 's/.*nginx\///'), HAProxy $( (haproxy -v 2>/dev/null || true) | awk 'NR == 1 {print $3}'), $( (wrk -v 2>&1 || true) | awk 'NR == 1 {print $1, $2}')"
if [[ " ${HTTP_LINEUP[*]} ${TLS_LINEUP[*]} " == *" pingap "* ]]; then
    VERSIONS="$VERSIONS, pingap $( ("$PINGAP_BIN" --version 2>/dev/null || true) | awk 'NR == 1 {print $2}')"
fi
if [ ${#TLS_LINEUP[@]} != 0 ]; then
    VERSIONS="$VERSIONS, $( (openssl version 2>/dev/null || true) | awk '{print $1, $2}') (nginx, HAProxy, pingap and the clients; weir: rustls with ring)"
fi
if has_row h2 && [ ${#TLS_LINEUP[@]} != 0 ]; then
    VERSIONS="$VERSIONS, $( (h2load --version 2>/dev/null || true) | awk 'NR == 1 {print $2}' | sed 's/^/h2load /')"
fi

LR_DATE=$(date -u '+%Y-%m-%d %H:%M UTC') \
LR_MACHINE="$(nproc) cores, $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2; exit}')" \
LR_COMMAND="ROUNDS=$ROUNDS DURATION=$DURATION ROWS=\"$ROWS\" CONNS=$CONNS PACED_CONNS=$PACED_CONNS PACED_DELAY_MS=$PACED_DELAY_MS IDLE_CONNS=$IDLE_CONNS HS_CONNS=$HS_CONNS H2_CONNS=$H2_CONNS H2_STREAMS=$H2_STREAMS benches/load.sh" \
LR_COMMIT=$COMMIT LR_VERSIONS=$VERSIONS LR_ELAPSED=$ELAPSED \
LR_HTTP_ORDER="${HTTP_LINEUP[*]}" LR_TLS_ORDER="${TLS_LINEUP[*]}" \
LR_DURATION=$DURATION LR_CONNS=$CONNS LR_PACED_CONNS=$PACED_CONNS LR_PACED_DELAY_MS=$PACED_DELAY_MS \
LR_IDLE_CONNS=$IDLE_CONNS LR_HS_CONNS=$HS_CONNS LR_H2_CONNS=$H2_CONNS LR_H2_STREAMS=$H2_STREAMS \
LR_PINGAP_NOTE=$PINGAP_NOTE \
    python3 "$ROOT/benches/load_report.py" "$TSV" "$RESULTS_DIR/latest.md"
log "done in ${ELAPSED} s; tables in $RESULTS_DIR/latest.md, raw rows in $TSV"

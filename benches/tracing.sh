#!/usr/bin/env bash
# benches/tracing.sh: what OpenTelemetry tracing costs a proxied request, on
# 127.0.0.1 only. weir (release build, one worker thread, pinned to core 0,
# access log off) proxies to an nginx origin (`return 200 "ok"`, pinned to
# core 1 with wrk); the same nginx answers the OTLP export (POST /v1/traces,
# 200), so the spans are encoded and sent as they would be to a collector.
# Variants, each on a fresh process:
#   off      no `tracing` section
#   r0       sample_ratio 0      (context per request, traceparent upstream, no spans)
#   r0.01    sample_ratio 0.01
#   r1       sample_ratio 1      (every request: 2 spans, exported)
#   r1-down  sample_ratio 1 with the collector down (a closed port)
# Per variant and round: wrk keep-alive max throughput (CONNS connections,
# DURATION s after a 1 s warm-up), p99, and weir's CPU per request from
# /proc/PID/stat; afterwards weir_tracing_spans_dropped_total. Prints the
# medians over ROUNDS (variant order rotated each round) with ratios to `off`
# and writes them to benches/results/tracing.md.
#
# Environment (defaults): ROUNDS=3 DURATION=5 CONNS=50 PORT_BASE=18180
# BUILD=auto (BUILD=0 uses WEIR_BIN as it is) WEIR_BIN=target/release/weir
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-50}
PORT_BASE=${PORT_BASE:-18180}
BUILD=${BUILD:-auto}
WEIR_BIN=${WEIR_BIN:-target/release/weir}
VARIANTS=(off r0 r0.01 r1 r1-down)
ORIGIN=$PORT_BASE
LISTEN=$((PORT_BASE + 1))
ADMIN=$((PORT_BASE + 2))
DEAD=$((PORT_BASE + 3))
TICK=$(getconf CLK_TCK)

die() { echo "tracing.sh: $*" >&2; exit 1; }
log() { echo "[$(date +%T)] $*" >&2; }

need=()
for c in wrk nginx curl taskset; do command -v "$c" >/dev/null || need+=("$c"); done
if [ ${#need[@]} -gt 0 ]; then
    log "installing ${need[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk nginx curl util-linux >/dev/null
fi
if [ "$BUILD" != 0 ]; then cargo build --release --bin weir >&2; fi
[ -x "$WEIR_BIN" ] || die "no weir binary at $WEIR_BIN"

T=$(mktemp -d)
PIDS=()
cleanup() {
    for p in ${PIDS[@]+"${PIDS[@]}"}; do kill "$p" 2>/dev/null || true; done
    for p in ${PIDS[@]+"${PIDS[@]}"}; do wait "$p" 2>/dev/null || true; done
    rm -rf "$T"
}
trap cleanup EXIT INT TERM

cat >"$T/origin.conf" <<EOF
daemon off; worker_processes 1; pid $T/origin.pid; error_log $T/origin.err;
events { worker_connections 4096; }
http {
    access_log off; keepalive_requests 1000000;
    client_body_temp_path $T; proxy_temp_path $T; fastcgi_temp_path $T; uwsgi_temp_path $T; scgi_temp_path $T;
    server {
        listen 127.0.0.1:$ORIGIN backlog=4096;
        location / { return 200 "ok"; }
        location = /v1/traces { client_body_buffer_size 1m; return 200; }
    }
}
EOF
taskset -c 1 nginx -p "$T" -c "$T/origin.conf" >"$T/origin.log" 2>&1 &
PIDS+=($!)

weir_conf() { # $1 variant
    local tracing=""
    case $1 in
        off) ;;
        r1-down) tracing="tracing: { otlp: \"http://127.0.0.1:$DEAD\", sample_ratio: 1 }" ;;
        r*) tracing="tracing: { otlp: \"http://127.0.0.1:$ORIGIN\", sample_ratio: ${1#r} }" ;;
    esac
    cat >"$T/$1.yaml" <<EOF
server: { threads: 1, pid_file: "$T/weir.pid", upgrade_sock: "$T/up.sock" }
admin: { listen: "127.0.0.1:$ADMIN" }
listeners: [{ name: web, address: "127.0.0.1:$LISTEN" }]
routes: [{ name: all, match: { path_prefix: / }, upstream: origin }]
upstreams: { origin: { backends: ["127.0.0.1:$ORIGIN"] } }
$tracing
EOF
}

wait_http() { # $1 url
    local i
    for i in $(seq 1 100); do
        curl -s -o /dev/null --max-time 1 "$1" && return 0
        sleep 0.1
    done
    return 1
}

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# wrk's p99 in microseconds from its --latency table.
p99_us() {
    awk '$1 == "99%" {v = $2; u = 1;
        if (v ~ /us$/) {sub(/us$/, "", v)} else if (v ~ /ms$/) {sub(/ms$/, "", v); u = 1000}
        else if (v ~ /s$/) {sub(/s$/, "", v); u = 1000000}
        printf "%.0f", v * u}'
}

measure() { # $1 round, $2 variant: prints "variant rps us_per_req p99_us dropped"
    local v=$2 pid out before after reqs rps p99 dropped
    weir_conf "$v"
    taskset -c 0 "$WEIR_BIN" -c "$T/$v.yaml" >"$T/$v.log" 2>&1 &
    pid=$!
    PIDS+=("$pid")
    wait_http "http://127.0.0.1:$LISTEN/" || die "weir ($v) did not start: $(tail -5 "$T/$v.log")"
    taskset -c 1 wrk -t1 -c"$CONNS" -d1s "http://127.0.0.1:$LISTEN/" >/dev/null
    before=$(cpu_ticks "$pid")
    out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "http://127.0.0.1:$LISTEN/")
    after=$(cpu_ticks "$pid")
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    rps=$(awk '/^Requests\/sec/ {printf "%.0f", $2}' <<<"$out")
    p99=$(p99_us <<<"$out")
    sleep 1.5 # one export interval, so the last batch is counted
    dropped=$(curl -s "http://127.0.0.1:$ADMIN/metrics" | awk '$1 == "weir_tracing_spans_dropped_total" {print $2}')
    kill -INT "$pid"
    wait "$pid" 2>/dev/null || true
    awk -v v="$v" -v r="$rps" -v t=$((after - before)) -v n="$reqs" -v k="$TICK" -v p="$p99" -v d="${dropped:-0}" \
        'BEGIN {printf "%s %s %.2f %s %s\n", v, r, n ? t * 1e6 / k / n : 0, p, d}'
}

wait_http "http://127.0.0.1:$ORIGIN/" || die "the origin did not start"
for round in $(seq 1 "$ROUNDS"); do
    n=${#VARIANTS[@]}
    for i in $(seq 0 $((n - 1))); do
        v=${VARIANTS[$(((i + round - 1) % n))]}
        row=$(measure "$round" "$v")
        log "round $round: $row"
        echo "$row" >>"$T/rows"
    done
done

median() { sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; } # of stdin
column() { awk -v v="$1" -v c="$2" '$1 == v {print $c}' "$T/rows"; } # $1 variant, $2 field

mkdir -p benches/results
{
    echo "| tracing | req/s | CPU µs/req | vs off | p99 | spans dropped (last round) |"
    echo "| --- | --- | --- | --- | --- | --- |"
    base=$(column off 3 | median)
    for v in "${VARIANTS[@]}"; do
        awk -v v="$v" -v r="$(column "$v" 2 | median)" -v u="$(column "$v" 3 | median)" \
            -v p="$(column "$v" 4 | median)" -v d="$(column "$v" 5 | tail -1)" -v b="$base" \
            'BEGIN {printf "| `%s` | %d | %.2f | %+.1f%% | %.2f ms | %s |\n", v, r, u, b ? (u / b - 1) * 100 : 0, p / 1000, d}'
    done
    echo
    echo "Medians of $ROUNDS rounds, $DURATION s each, $CONNS keep-alive connections, one weir worker thread; $(nproc) cores; $(date -u +%F)."
} | tee benches/results/tracing.md

#!/usr/bin/env bash
# benches/cache.sh: weir's cache hits and gzip against nginx, side by side on
# 127.0.0.1 (run alone, or through `ROWS=cache benches/load.sh`).
#
#     benches/cache.sh               # ROUNDS=3
#
# What it does:
#   - origin: nginx serving a 1 KiB and a 100 KiB file (Cache-Control:
#     max-age=3600) and a 20 KiB JSON document, 1 worker, pinned to core 1;
#   - under test, one worker thread each, pinned to core 0, access logs off:
#     weir (release build) with a caching route, nginx with proxy_cache (its
#     cache folder on tmpfs, /dev/shm), and for reference weir proxying the
#     same 1 KiB file to the keep-alive origin without a cache;
#   - rows: cache hits of the 1 KiB and the 100 KiB object (every request a
#     hit: one warm-up request first, checked to be a HIT), and gzip of the
#     20 KiB JSON (no cache; Accept-Encoding: gzip) with weir at level 1 and at
#     its default (6) against nginx `gzip on` (gzip_comp_level 1, nginx's
#     default), and the same JSON as a cache hit compressed per client (both
#     compress every hit again);
#   - wrk -t1 -cCONNS -dDURATION on core 1 (with the origin); CPU per request
#     from the proxy's /proc/PID/stat ticks over the run; ROUNDS rounds, the
#     order rotated each round; prints medians (markdown) and writes them to
#     benches/results/cache-latest.md.
#   - Pingap (another Pingora-based proxy) on the two hit rows, when its
#     binary is there (PINGAP_BIN; never built here: `cargo install pingap
#     --version 0.16.1 --locked --root ~/.cache/weir-bench/pingap-0.16.1`,
#     20+ minutes on 2 cores): one thread (basic and server), its `cache`
#     plugin on the memory backend (TinyUFO, max_size=256mb like weir's
#     memory tier), no access log, checked to answer `x-cache-status: hit`.
#     Without the binary its columns say why and the rest runs as before.
#
# Environment (defaults): ROUNDS=3 DURATION=5 CONNS=50 PORT_BASE=19080
# WEIR_BIN=target/release/weir BUILD=auto (BUILD=0: use WEIR_BIN as it is)
# PINGAP_BIN=~/.cache/weir-bench/pingap-0.16.1/bin/pingap (PINGAP_BIN="": skip)
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}
CONNS=${CONNS:-50}
PORT_BASE=${PORT_BASE:-19080}
BUILD=${BUILD:-auto}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WEIR_BIN=${WEIR_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/weir}
RESULTS=${RESULTS_DIR:-$ROOT/benches/results}/cache-latest.md
TICK=$(getconf CLK_TCK)
ORIGIN=$PORT_BASE
declare -A PORT=([weir]=$((PORT_BASE + 1)) [nginx]=$((PORT_BASE + 2)) [weir-nocache]=$((PORT_BASE + 3))
    [weir-gzip1]=$((PORT_BASE + 4)) [weir-gzip]=$((PORT_BASE + 5)) [nginx-gzip]=$((PORT_BASE + 6))
    [weir-hitgzip]=$((PORT_BASE + 7)) [nginx-hitgzip]=$((PORT_BASE + 8)) [pingap]=$((PORT_BASE + 9)))
PINGAP_BIN=${PINGAP_BIN-${XDG_CACHE_HOME:-$HOME/.cache}/weir-bench/pingap-0.16.1/bin/pingap}
PINGAP_NOTE="" # why Pingap is not measured, when it is not
if [ -z "$PINGAP_BIN" ]; then PINGAP_NOTE="skipped (PINGAP_BIN empty)"
elif [ ! -x "$PINGAP_BIN" ]; then PINGAP_NOTE="not measured: no $PINGAP_BIN"; fi

log() { printf '[cache.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

T=$(mktemp -d /dev/shm/weir-cache-bench.XXXXXX)
PIDS=()
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$T"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

for tool in nginx wrk taskset curl; do command -v $tool >/dev/null || die "$tool is needed (apt-get install nginx wrk util-linux curl)"; done
if [ "$BUILD" != 0 ]; then (cd "$ROOT" && cargo build --release --bin weir) >&2; fi
[ -x "$WEIR_BIN" ] || die "no $WEIR_BIN"

# ---------------------------------------------------------------- configs
mkdir -p "$T/www" "$T/ngcache"
head -c 1024 /dev/zero | tr '\0' 'a' >"$T/www/1k"
head -c 102400 /dev/zero | tr '\0' 'b' >"$T/www/100k"
python3 -c 'import json; print(json.dumps([{"id": i, "name": "item %d" % i, "tags": ["a", "b"], "price": i * 1.5} for i in range(330)])[:20480], end="")' >"$T/www/data.json"

ng_head() { # $1 name
    cat <<EOF
worker_processes 1;
master_process off;
daemon off;
pid $T/$1.pid;
error_log $T/$1.err warn;
events { worker_connections 4096; }
http {
    access_log off;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
    client_body_temp_path $T/ng_body_$1;
    proxy_temp_path $T/ng_proxy_$1;
    fastcgi_temp_path $T/ng_fcgi_$1;
    uwsgi_temp_path $T/ng_uwsgi_$1;
    scgi_temp_path $T/ng_scgi_$1;
EOF
}
{ ng_head origin; cat <<EOF
    server {
        listen 127.0.0.1:$ORIGIN;
        root $T/www;
        types { application/json json; }
        default_type text/plain;
        etag on;
        add_header Cache-Control "max-age=3600";
    }
}
EOF
} >"$T/origin.conf"
{ ng_head nginx; cat <<EOF
    upstream origin { server 127.0.0.1:$ORIGIN; keepalive 64; }
    proxy_cache_path $T/ngcache levels=1:2 keys_zone=c:16m max_size=256m inactive=1h use_temp_path=off;
    server {
        listen 127.0.0.1:${PORT[nginx]};
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache c;
            add_header x-cache \$upstream_cache_status;
        }
    }
    server {
        listen 127.0.0.1:${PORT[nginx-hitgzip]};
        gzip on;
        gzip_comp_level 1;
        gzip_types application/json;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_cache c;
        }
    }
    server {
        listen 127.0.0.1:${PORT[nginx-gzip]};
        gzip on;
        gzip_comp_level 1;
        gzip_types application/json;
        gzip_min_length 1024;
        location / {
            proxy_pass http://origin;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
} >"$T/nginx.conf"
weir_conf() { # $1 name, $2 route keys
    cat >"$T/$1.yaml" <<EOF
server: { threads: 1, pid_file: "$T/$1.wpid", upgrade_sock: "$T/$1.sock" }
log: { level: warn }
cache: { memory: 256MiB }
listeners: [{ name: web, address: "127.0.0.1:${PORT[$1]}" }]
routes:
  - upstream: origin
$2
upstreams:
  origin: { backends: ["127.0.0.1:$ORIGIN"] }
EOF
}
weir_conf weir "    cache: {}"
weir_conf weir-nocache ""
weir_conf weir-gzip1 "    compression: { level: 1, types: [application/json] }"
weir_conf weir-gzip "    compression: { types: [application/json] }"
weir_conf weir-hitgzip "    cache: {}
    compression: { level: 1, types: [application/json] }"

# Pingap: one thread, the cache plugin on its memory backend, no access log.
cat >"$T/pingap.toml" <<EOF
[basic]
threads = 1
work_stealing = false
pid_file = "$T/pingap.pid"
upgrade_sock = "$T/pingap_upgrade.sock"
grace_period = "1s"
graceful_shutdown_timeout = "1s"
log_level = "warn"

[upstreams.origin]
addrs = ["127.0.0.1:$ORIGIN"]

[plugins.memcache]
category = "cache"
directory = "memory://pingap?max_size=256mb"
max_file_size = "1mb"

[locations.all]
upstream = "origin"
path = "/"
plugins = ["memcache"]

[servers.bench]
addr = "127.0.0.1:${PORT[pingap]}"
locations = ["all"]
threads = 1
EOF

# Starts proxy $1 (nginx serves both nginx rows from one process); sets PID.
NGINX_PID=""
start() {
    case $1 in
        nginx | nginx-gzip | nginx-hitgzip)
            if [ -z "$NGINX_PID" ]; then
                taskset -c 0 nginx -c "$T/nginx.conf" -p "$T" 2>>"$T/nginx.log" &
                NGINX_PID=$!
                PIDS+=("$NGINX_PID")
            fi
            PID=$NGINX_PID ;;
        pingap)
            taskset -c 0 env PINGAP_DISABLE_ACME=1 "$PINGAP_BIN" -c "$T/pingap.toml" >"$T/pingap.log" 2>&1 &
            PID=$!
            PIDS+=("$PID") ;;
        *)
            taskset -c 0 "$WEIR_BIN" -c "$T/$1.yaml" >"$T/$1.log" 2>&1 &
            PID=$!
            PIDS+=("$PID") ;;
    esac
    for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:${PORT[$1]}/1k" && return; sleep 0.1; done
    die "$1 did not start: $(cat "$T/$1.log" 2>/dev/null)"
}

taskset -c 1 nginx -c "$T/origin.conf" -p "$T" 2>>"$T/origin.log" &
PIDS+=($!)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$ORIGIN/1k" && break; sleep 0.1; done

ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

# One measurement of proxy $1 on path $2, with header $3 (or ""): "rps µs/req".
measure() {
    local name=$1 path=$2 hdr=$3 url p0 p1 out rps n
    url="http://127.0.0.1:${PORT[$name]}$path"
    local args=(-t1 -c"$CONNS" -d"${DURATION}s")
    if [ -n "$hdr" ]; then
        args+=(-H "$hdr")
        curl -s -o /dev/null -H "$hdr" "$url"
        curl -s -D - -o /dev/null -H "$hdr" "$url" | grep -qi "content-encoding: gzip" || die "$name: $path not gzip"
    else
        curl -s -o /dev/null "$url"
        local hit="x-cache: HIT"
        if [ "$name" = pingap ]; then hit="x-cache-status: hit"; fi
        if [ "$name" != weir-nocache ]; then
            curl -s -D - -o /dev/null "$url" | grep -qi "$hit" || die "$name: $path is not a hit"
        fi
    fi
    p0=$(ticks "$PID")
    out=$(taskset -c 1 wrk "${args[@]}" "$url")
    p1=$(ticks "$PID")
    if echo "$out" | grep -q "Non-2xx"; then die "$name: non-2xx answers: $out"; fi
    rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
    n=$(echo "$out" | awk '/requests in/ {print $1}')
    awk -v r="$rps" -v n="$n" -v t="$((p1 - p0))" -v k="$TICK" 'BEGIN {printf "%.0f %.1f\n", r, 1e6 * t / k / n}'
}

CASES=("weir /1k -" "nginx /1k -" "weir-nocache /1k -" "weir /100k -" "nginx /100k -"
    "weir-gzip1 /data.json gzip" "weir-gzip /data.json gzip" "nginx-gzip /data.json gzip"
    "weir-hitgzip /data.json gzip" "nginx-hitgzip /data.json gzip")
if [ -z "$PINGAP_NOTE" ]; then CASES+=("pingap /1k -" "pingap /100k -"); else log "pingap $PINGAP_NOTE"; fi
declare -A RES
for round in $(seq "$ROUNDS"); do
    log "round $round/$ROUNDS"
    n=${#CASES[@]}
    for i in $(seq 0 $((n - 1))); do
        c=${CASES[$(((i + round) % n))]}
        read -r name path enc <<<"$c"
        hdr=""
        if [ "$enc" = gzip ]; then hdr="Accept-Encoding: gzip"; fi
        start "$name"
        RES["$c"]+="$(measure "$name" "$path" "$hdr");"
        # weir starts fresh for each row (an empty cache, warmed by measure)
        if [ "${name#nginx}" = "$name" ]; then kill -INT "$PID"; wait "$PID" 2>/dev/null || true; fi
    done
done

pingap_version() { if [ -z "$PINGAP_NOTE" ]; then "$PINGAP_BIN" --version 2>/dev/null | awk '{printf " %s", $2; exit}'; fi; }
median() { tr ';' '\n' | grep -v '^$' | awk -v f="$1" '{print $f}' | sort -g | awk '{a[NR]=$1} END {print (NR % 2 ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2)}'; }
row() { # $1 label, $2 weir case, $3 nginx case, $4 Pingap case ("" for none)
    local wr wc nr="" nc="" pr="" pc=""
    wr=$(echo "${RES[$2]}" | median 1)
    wc=$(echo "${RES[$2]}" | median 2)
    if [ -n "$3" ]; then nr=$(echo "${RES[$3]}" | median 1); nc=$(echo "${RES[$3]}" | median 2); fi
    if [ -n "${4:-}" ]; then
        if [ -n "$PINGAP_NOTE" ]; then pr=$PINGAP_NOTE; pc="–"
        else pr=$(echo "${RES[$4]}" | median 1); pc=$(echo "${RES[$4]}" | median 2); fi
    fi
    echo "| $1 | $wr | $wc | $nr | $nc | $pr | $pc |"
}
{
    echo "Cache hits and gzip (\`ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS benches/cache.sh\`, $(date -u +%F), weir at $(cd "$ROOT" && git rev-parse --short HEAD), medians of $ROUNDS rounds):"
    echo
    echo "| row | weir req/s | weir CPU µs/req | nginx req/s | nginx CPU µs/req | Pingap req/s | Pingap CPU µs/req |"
    echo "|---|---:|---:|---:|---:|---:|---:|"
    row "cache hit, 1 KiB (nginx: proxy_cache on tmpfs; Pingap$(pingap_version): cache plugin, memory)" "weir /1k -" "nginx /1k -" "pingap /1k -"
    row "cache hit, 100 KiB" "weir /100k -" "nginx /100k -" "pingap /100k -"
    row "gzip, 20 KiB JSON, level 1 (nginx: gzip_comp_level 1)" "weir-gzip1 /data.json gzip" "nginx-gzip /data.json gzip"
    row "gzip, 20 KiB JSON, weir's default level (6)" "weir-gzip /data.json gzip" "nginx-gzip /data.json gzip"
    row "cache hit + gzip level 1, 20 KiB JSON (weir: its kept encoded copy; nginx: compressed per hit)" "weir-hitgzip /data.json gzip" "nginx-hitgzip /data.json gzip"
    row "weir proxying the 1 KiB object to the keep-alive origin, no cache (reference)" "weir-nocache /1k -" ""
} | tee "$RESULTS"

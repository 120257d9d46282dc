#!/usr/bin/env bash
# benches/idle_tls.sh: memory per idle TLS keep-alive client, weir against
# nginx, on 127.0.0.1 only.
#
#     benches/idle_tls.sh                     # weir from target/release
#     WEIR_BIN=/path/to/weir benches/idle_tls.sh
#
# Each proxy (one worker, an https listener with an ECDSA P-256 certificate
# made here by openssl, ALPN h2 + http/1.1, nginx as the origin behind it)
# gets N clients (default 1000) that each do a TLS 1.3 handshake, make one
# HTTP/1.1 request and stay open; the result is (VmRSS with them − VmRSS
# before them) / N, the method of load.sh's plain "KiB/idle conn". ROUNDS
# (default 2) fresh processes each. Needs nginx, openssl, curl, python3.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WEIR_BIN=${WEIR_BIN:-$ROOT/target/release/weir}
N=${N:-1000}
ROUNDS=${ROUNDS:-2}
PORT_BASE=${PORT_BASE:-39100}
ORIGIN=$PORT_BASE
PROXY=$((PORT_BASE + 1))

log() { printf '[idle_tls.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ -x "$WEIR_BIN" ] || die "no $WEIR_BIN (cargo build --release --bin weir)"
for c in nginx openssl curl python3 pkill; do command -v $c >/dev/null || die "needs $c"; done
ulimit -n $((N * 2 + 256)) || die "cannot raise the open-files limit to $((N * 2 + 256))"

T=$(mktemp -d /tmp/weir-idle-tls.XXXXXX)
PIDS=()
cleanup() {
    # nginx masters' workers first: a killed master leaves them running
    for p in "${PIDS[@]}"; do
        pkill -KILL -P "$p" 2>/dev/null || true
        kill -KILL "$p" 2>/dev/null || true
    done
    rm -rf "$T"
}
trap cleanup EXIT INT TERM

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout "$T/key.pem" -out "$T/cert.pem" -days 30 -subj /CN=bench.test \
    -addext subjectAltName=DNS:bench.test 2>/dev/null

cat >"$T/origin.conf" <<EOF
worker_processes 1; daemon off; pid $T/origin.pid; error_log $T/origin.err;
events { worker_connections 4096; }
http { access_log off;
  server { listen 127.0.0.1:$ORIGIN; location / { return 200 "ok"; } } }
EOF
cat >"$T/nginx.conf" <<EOF
worker_processes 1; daemon off; pid $T/nginx.pid; error_log $T/nginx.err;
events { worker_connections $((N * 2 + 256)); }
http { access_log off;
  upstream o { server 127.0.0.1:$ORIGIN; keepalive 64; }
  server { listen 127.0.0.1:$PROXY ssl http2;
    ssl_certificate $T/cert.pem; ssl_certificate_key $T/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / { proxy_pass http://o; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
EOF
cat >"$T/weir.yaml" <<EOF
server: { threads: 1, pid_file: $T/weir.pid, upgrade_sock: $T/up.sock }
listeners:
  - name: web
    address: 127.0.0.1:$PROXY
    protocol: https
    tls: { certificates: [{ cert: $T/cert.pem, key: $T/key.pem }], http2: true }
routes:
  - { name: all, match: { path_prefix: / }, upstream: o }
upstreams:
  o: { backends: ["127.0.0.1:$ORIGIN"] }
EOF
cat >"$T/client.py" <<'EOF'
import socket, ssl, sys, time
port, n, pid, cert = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1])
ctx = ssl.create_default_context(cafile=cert)
ctx.set_alpn_protocols(["http/1.1"])
before = rss()
conns = []
deadline = time.monotonic() + 120
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    t = ctx.wrap_socket(s, server_hostname="bench.test")
    t.sendall(b"GET / HTTP/1.1\r\nHost: bench.test\r\n\r\n")
    buf = b""
    while not buf.endswith(b"ok"):
        d = t.recv(4096)
        if not d:
            sys.exit("closed by the proxy")
        buf += d
    conns.append(t)
    if time.monotonic() > deadline:
        sys.exit("took over 120 s")
time.sleep(1)
print(f"{(rss() - before) / n:.2f}")
EOF

nginx -p "$T" -c "$T/origin.conf" >/dev/null 2>&1 &
PIDS+=($!)

# One measurement: $1 name; appends "name<TAB>KiB per idle client" to
# $T/results. Runs in this shell, so that cleanup() knows its pids.
measure() {
    local name=$1 pid
    if [ "$name" = weir ]; then
        "$WEIR_BIN" -c "$T/weir.yaml" >"$T/weir.log" 2>&1 &
        pid=$!
    else
        nginx -p "$T" -c "$T/nginx.conf" >/dev/null 2>&1 &
        pid=$!
    fi
    PIDS+=("$pid")
    local ok=""
    for _ in $(seq 100); do
        curl -sk --max-time 2 --resolve "bench.test:$PROXY:127.0.0.1" "https://bench.test:$PROXY/" >/dev/null && { ok=1; break; }
        sleep 0.1
    done
    [ -n "$ok" ] || die "$name did not answer on $PROXY"
    local measured=$pid
    # nginx: the worker holds the connections
    if [ "$name" = nginx ]; then measured=$(pgrep -P "$pid" | head -1); fi
    local kib
    kib=$(python3 "$T/client.py" "$PROXY" "$N" "$measured" "$T/cert.pem") || die "client failed against $name"
    printf '%s\t%s\n' "$name" "$kib" >>"$T/results"
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    pkill -KILL -P "$pid" 2>/dev/null || true
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

for r in $(seq "$ROUNDS"); do
    for name in weir nginx; do
        log "round $r $name"
        measure "$name"
    done
done
printf '\nKiB per idle TLS keep-alive client (%d clients, %d rounds):\n' "$N" "$ROUNDS"
sort "$T/results" | awk -F'\t' '{ printf "  %-6s %s\n", $1, $2 }'

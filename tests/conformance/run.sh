#!/usr/bin/env bash
# tests/conformance/run.sh: weir against outside tools and hostile clients, on
# 127.0.0.1 only. Not part of CI (testssl alone takes ~5 minutes per target).
#
#     tests/conformance/run.sh                 # everything (~10 min after the build)
#     TESTSSL=0 tests/conformance/run.sh       # only the HTTP/2 and HTTP/1.1 probes (~1 min)
#
# What it does (README.md, "Conformance"):
#   - installs from Debian what is missing: testssl.sh, nginx, openssl,
#     python3-h2 (falls back to `pip install h2` when the Debian package is
#     not there);
#   - builds weir in release (BUILD=0: use WEIR_BIN as it is), writes a config
#     and a self-signed certificate (openssl) to a temp dir, starts weir with
#     an http listener, an https+h2 listener and an https listener with
#     `min_version: "1.3"`, every request routed to a recording backend;
#   - testssl.sh against weir's https listener and against nginx (Debian's,
#     same certificate, nginx's compiled-in TLS defaults: no ssl_protocols or
#     ssl_ciphers line), run side by side; reports the findings per severity
#     for both and fails when weir has a finding (same testssl id) rated worse
#     than nginx's; then TLS 1.2 must not be offered on the min_version 1.3
#     listener (testssl's protocol scan, and an `openssl s_client -tls1_2`);
#   - tests/conformance/probe.py: the HTTP/2 -> HTTP/1.1 translation (Python
#     `h2` client) and HTTP/1.1 desync vectors (raw sockets), each against
#     a backend that records the exact bytes it receives (recorder.py).
# Prints one PASS/FAIL line per check and `N passed, M failed`; exits 1 on any
# failure. Every process it starts is stopped on exit, by pid.
#
# Environment (defaults): PORT_BASE=19600 (uses PORT_BASE..PORT_BASE+4)
# BUILD=auto TESTSSL=1 WEIR_BIN=$CARGO_TARGET_DIR/release/weir KEEP=0 (1: keep the temp dir)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
HERE=$ROOT/tests/conformance
PORT_BASE=${PORT_BASE:-19600}
BUILD=${BUILD:-auto}
TESTSSL=${TESTSSL:-1}
HTTP=$PORT_BASE; HTTPS=$((PORT_BASE + 1)); TLS13=$((PORT_BASE + 2))
BACKEND=$((PORT_BASE + 3)); NGINX=$((PORT_BASE + 4))
T=$(mktemp -d /tmp/weir-conf.XXXXXX)
PY=/usr/bin/python3
PIDS=()

die() { echo "conformance: $*" >&2; exit 2; }

cleanup() {
    local rc=$?
    set +e
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null
    done
    if [ "${KEEP:-0}" = 1 ]; then echo "temp dir kept: $T"; else rm -rf "$T"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- install -----------------------------------------------------------------------
need=()
command -v openssl >/dev/null || need+=(openssl)
command -v nginx >/dev/null || need+=(nginx)
command -v testssl >/dev/null || need+=(testssl.sh)
[ -x $PY ] || need+=(python3)
$PY -c 'import h2' 2>/dev/null || need+=(python3-h2)
if [ ${#need[@]} -gt 0 ]; then
    echo "installing ${need[*]}"
    # keep Debian from starting nginx as a service
    [ -e /usr/sbin/policy-rc.d ] || { printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d; chmod +x /usr/sbin/policy-rc.d; }
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null ||
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl nginx testssl.sh python3 python3-pip >/dev/null
fi
$PY -c 'import h2' 2>/dev/null || $PY -m pip install --quiet --break-system-packages h2 ||
    die "python h2 is not installable"

# --- weir ----------------------------------------------------------------------------
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
WEIR_BIN=${WEIR_BIN:-$TARGET/release/weir}
[ "$BUILD" = 0 ] || cargo build --release --bin weir
[ -x "$WEIR_BIN" ] || die "no weir binary at $WEIR_BIN"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 365 \
    -subj /CN=localhost -addext subjectAltName=DNS:localhost,DNS:conf.test,DNS:h2.conf.test,IP:127.0.0.1 \
    -keyout "$T/cert.key" -out "$T/cert.pem" 2>/dev/null

cat >"$T/weir.yaml" <<EOF
server: { threads: 2, pid_file: $T/weir.pid, upgrade_sock: $T/up.sock, error_log: $T/error.log,
          grace_period_seconds: 1, graceful_shutdown_timeout_seconds: 1 }
log: { level: info, access_log: { path: $T/access.log } }
listeners:
  - { name: web, address: "127.0.0.1:$HTTP" }
  - name: websecure
    address: "127.0.0.1:$HTTPS"
    protocol: https
    tls: { certificates: [{ cert: $T/cert.pem, key: $T/cert.key }], http2: true }
  - name: tls13
    address: "127.0.0.1:$TLS13"
    protocol: https
    tls: { certificates: [{ cert: $T/cert.pem, key: $T/cert.key }], http2: true, min_version: "1.3" }
routes:
  - name: scanner                # testssl asks for / with Host 127.0.0.1
    match: { host: 127.0.0.1 }
    respond: { status: 200, body: "ok\n" }
  - { name: all, upstream: recorder }
upstreams:
  recorder: { backends: ["127.0.0.1:$BACKEND"], timeouts: { connect: 1s, read: 5s } }
EOF
"$WEIR_BIN" check -c "$T/weir.yaml" >/dev/null || die "weir check refused $T/weir.yaml"
"$WEIR_BIN" -c "$T/weir.yaml" >"$T/weir.out" 2>&1 &
PIDS+=($!)

cat >"$T/nginx.conf" <<EOF
pid $T/nginx.pid;
error_log $T/nginx-error.log warn;
events { worker_connections 1024; }
http {
    access_log off;
    server {
        listen 127.0.0.1:$NGINX ssl http2;
        ssl_certificate $T/cert.pem;
        ssl_certificate_key $T/cert.key;
        location / { return 200 "ok\n"; }
    }
}
EOF
nginx -p "$T" -c "$T/nginx.conf" -g 'daemon off; master_process off;' >"$T/nginx.out" 2>&1 &
PIDS+=($!)

wait_port() {
    for _ in $(seq 150); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
for p in $HTTP $HTTPS $TLS13 $NGINX; do
    wait_port "$p" || die "port $p is not listening: $(tail -5 "$T/error.log" "$T/nginx.out" 2>/dev/null)"
done
echo "weir binary $WEIR_BIN ($("$WEIR_BIN" --version 2>/dev/null || true)), worktree at commit $(git rev-parse --short HEAD)"
echo "nginx $(nginx -v 2>&1 | sed 's/.*\///'), testssl.sh $(dpkg-query -W -f '${Version}' testssl.sh 2>/dev/null || echo '?')"

RESULTS=$T/results.txt
: >"$RESULTS"
check() { # $1 PASS|FAIL, $2 text
    echo "$1 $2" | tee -a "$RESULTS"
}

# --- testssl ---------------------------------------------------------------------------
if [ "$TESTSSL" = 1 ]; then
    echo "== testssl.sh (weir :$HTTPS and nginx :$NGINX side by side, ~5 min)"
    ts() { # $1 name, $2 port, rest: extra options
        local name=$1 port=$2
        shift 2
        timeout 900 testssl --quiet --color 0 --warnings batch --ip one "$@" \
            --jsonfile "$T/testssl-$name.json" "127.0.0.1:$port" >"$T/testssl-$name.txt" 2>&1
    }
    ts weir "$HTTPS" & w=$!
    ts nginx "$NGINX" & n=$!
    PIDS+=("$w" "$n")
    wait "$w" || true
    wait "$n" || true
    $PY "$HERE/testssl_compare.py" "$T/testssl-weir.json" "$T/testssl-nginx.json" | tee -a "$RESULTS"

    echo "== min_version 1.3 (item 7)"
    ts tls13 "$TLS13" -p || true
    $PY "$HERE/testssl_compare.py" --protocols "$T/testssl-tls13.json" | tee -a "$RESULTS"
fi
if echo | timeout 10 openssl s_client -connect "127.0.0.1:$TLS13" -tls1_2 >"$T/s_client12.txt" 2>&1 \
    && grep -q '^ *Protocol *: *TLSv1.2' "$T/s_client12.txt"; then
    check FAIL "tls: min_version 1.3 listener completes a TLS 1.2 handshake (openssl s_client -tls1_2) (item 7)"
else
    check PASS "tls: min_version 1.3 listener refuses a TLS 1.2 handshake (openssl s_client -tls1_2)"
fi
if echo | timeout 10 openssl s_client -connect "127.0.0.1:$TLS13" -tls1_3 2>/dev/null | grep -q 'TLSv1.3'; then
    check PASS "tls: min_version 1.3 listener completes a TLS 1.3 handshake"
else
    check FAIL "tls: min_version 1.3 listener refuses TLS 1.3 too"
fi

# --- HTTP/2 and HTTP/1.1 probes ------------------------------------------------------------
echo "== HTTP/2 -> HTTP/1.1 translation and HTTP/1.1 desync vectors"
(cd "$HERE" && timeout 600 $PY probe.py "$HTTP" "$HTTPS" "$BACKEND") | tee -a "$RESULTS" || true

kill -0 "${PIDS[0]}" 2>/dev/null || check FAIL "weir is still running after the probes"
pass=$(grep -c '^PASS' "$RESULTS" || true)
fail=$(grep -c '^FAIL' "$RESULTS" || true)
echo
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]

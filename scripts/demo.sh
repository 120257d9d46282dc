#!/usr/bin/env bash
# Quick start: builds weir and the demo backends, starts three backends on
# 127.0.0.1:9001-9003 and weir on conf/weir.yaml (port 8080). Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin weir --example demo_backends
./target/release/examples/demo_backends 127.0.0.1:9001 127.0.0.1:9002 127.0.0.1:9003 &
backends=$!
trap 'kill $backends 2>/dev/null; wait $backends 2>/dev/null || true' EXIT INT TERM
./target/release/weir check -c conf/weir.yaml
echo "weir on http://127.0.0.1:8080 — try: for i in 1 2 3 4; do curl -s localhost:8080/; done"
./target/release/weir -c conf/weir.yaml

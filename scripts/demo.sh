#!/usr/bin/env bash
# Quick start: builds weir and the demo backends, starts three backends on
# 127.0.0.1:9001-9003 and weir on conf/weir.yaml (port 8080). Ctrl-C stops all.
set -euo pipefail
cd "$(dirname "$0")/.."
# Pingora builds zlib-ng, which needs cmake.
if ! command -v cmake >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing cmake (needed to build Pingora's zlib-ng)…"
    apt-get update -qq && apt-get install -y -qq cmake >/dev/null
  else
    echo "weir needs cmake to build (Pingora builds zlib-ng): install it, e.g." >&2
    echo "  sudo apt-get install -y cmake     (Debian/Ubuntu)" >&2
    echo "  brew install cmake                (macOS)" >&2
    exit 1
  fi
fi
cargo build --release --bin weir --example demo_backends
./target/release/examples/demo_backends 127.0.0.1:9001 127.0.0.1:9002 127.0.0.1:9003 &
backends=$!
trap 'kill $backends 2>/dev/null; wait $backends 2>/dev/null || true' EXIT INT TERM
./target/release/weir check -c conf/weir.yaml
echo "weir on http://127.0.0.1:8080 — try: for i in 1 2 3 4; do curl -s localhost:8080/; done"
./target/release/weir -c conf/weir.yaml

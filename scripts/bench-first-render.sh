#!/usr/bin/env bash
# First render after a reconnect: socket open -> the last message of the first render, against
# one release-built demo worker on loopback, with a same-run baseline (bench/examples/first_render.rs).
#
#   scripts/bench-first-render.sh [RUNS]     (default 300)
#
# PORT (default 3951) must be free: a port in use is an error, never someone else's server.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-300}
port=${PORT:-3951}
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
  echo "bench-first-render: port $port is in use; set PORT" >&2
  exit 2
fi
cargo build --quiet --release --example demo
cargo build --quiet --release -p state-recovery-bench --example first_render
dir=$(mktemp -d /tmp/state-recovery-first-render.XXXXXX)
keys="bench:$(head -c 32 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')"
STATE_RECOVERY_KEYS=$keys PORT=$port WORKER_ID=bench RUST_LOG=warn \
  ${CARGO_TARGET_DIR:-target}/release/examples/demo >"$dir/demo.log" 2>&1 &
demo=$!
trap 'kill $demo 2>/dev/null || true; wait $demo 2>/dev/null || true; rm -rf "$dir"' EXIT
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.05
done
timeout 300 ${CARGO_TARGET_DIR:-target}/release/examples/first_render "ws://127.0.0.1:$port/ws" "$runs"

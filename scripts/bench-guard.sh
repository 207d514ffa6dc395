#!/usr/bin/env bash
# What the guard costs (examples/guard_cost.rs): a reconnect without a guard, with the
# in-process store and with Redis on loopback, and a seal with and without the write-behind.
# Starts its own redis-server on 127.0.0.1:${REDIS_PORT:-3660} (refused if the port is in use).
set -euo pipefail
cd "$(dirname "$0")/.."
port=${REDIS_PORT:-3660}
if timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; then
  echo "bench-guard: port $port is in use; choose another with REDIS_PORT" >&2
  exit 1
fi
command -v redis-server >/dev/null || { echo "bench-guard: apt-get install -y redis-server" >&2; exit 1; }
dir=$(mktemp -d /tmp/state-recovery-bench-guard.XXXXXX)
redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" --logfile "$dir/redis.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
for ((t = 0; t < 50; t++)); do
  timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null && break
  sleep 0.1
done
cargo build --quiet --release -p state-recovery-bench --features redis --example guard_cost
GUARD_BENCH_REDIS="redis://127.0.0.1:$port/" "${CARGO_TARGET_DIR:-target}/release/examples/guard_cost"

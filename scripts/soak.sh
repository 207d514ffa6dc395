#!/usr/bin/env bash
# Bounded soak: CYCLES (default 100) kill-and-reconnect cycles in a row through nginx, with
# the real JS client under node. Each cycle changes every component, SIGKILLs the worker
# serving the connection (the cluster restarts it), and checks that nothing was lost.
# Prints the reconnect time median and p99.
#
#   scripts/soak.sh         # exits non-zero on any failure
#
# Environment: CYCLES, WORKERS (default 3), PORT (nginx, default 3000), WORKER_BASE_PORT
# (default 3100).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
port=${PORT:-3000}
base=${WORKER_BASE_PORT:-3100}
workers=${WORKERS:-3}
work=$(mktemp -d /tmp/state-recovery-soak.XXXXXX)
run_name=soak
# shellcheck source=cluster-run.sh
source "$root/scripts/cluster-run.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v node >/dev/null || { echo "node (>= 20) is required" >&2; exit 1; }
(cd "$root" && cargo build --quiet --example demo)

mkdir -p "$work/cluster"
RESPAWN=1 RESPAWN_DELAY=0.05 CLUSTER_DIR="$work/cluster" PORT=$port WORKER_BASE_PORT=$base \
  DEMO_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/examples/demo" \
  "$root/scripts/cluster.sh" "$workers" >"$work/cluster.log" 2>&1 &
cluster_pid=$!
for ((t = 0; t < 300; t++)); do
  [[ -f $work/cluster/ready ]] && break
  kill -0 "$cluster_pid" 2>/dev/null || { cat "$work/cluster.log" >&2; exit 1; }
  sleep 0.1
done
[[ -f $work/cluster/ready ]] || { echo "cluster did not start" >&2; exit 1; }

APP_WS="ws://127.0.0.1:$port/ws" CLUSTER_DIR="$work/cluster" WORKERS=$workers \
  WORKER_BASE_PORT=$base CYCLES=${CYCLES:-100} \
  timeout 300 node --experimental-websocket --no-warnings "$root/scripts/soak.mjs"

#!/usr/bin/env bash
# Clicks in flight when a worker dies: one tab (the real JS client under node) clicks the
# demo's counter every CLICK_MS (default 2) while the worker serving it is SIGKILLed KILLS
# times (default 20) behind nginx (3 workers, restarted when they die); then it settles,
# reconnects once more and compares the counter it restored with the clicks `send` accepted.
# Exits non-zero if any click was lost (or doubled).
#
#   scripts/inflight.sh
#   DEMO_BIN=/path/to/old/demo CLIENT=/path/to/old/state-recovery.js scripts/inflight.sh   # before
#
# Environment: KILLS, CLICK_MS, PORT (nginx, default 3860), WORKER_BASE_PORT (default 3870:
# workers on 3871..3873), DEMO_BIN (default: this checkout's debug build), CLIENT (default:
# client/state-recovery.js). Loopback only; refuses to start if any of its ports is in use.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
port=${PORT:-3860}
base=${WORKER_BASE_PORT:-3870}
workers=3
work=$(mktemp -d /tmp/state-recovery-inflight.XXXXXX)
run_name=inflight
# shellcheck source=cluster-run.sh
source "$root/scripts/cluster-run.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

command -v node >/dev/null || { echo "node (>= 20) is required" >&2; exit 1; }
bin=${DEMO_BIN:-}
if [[ -z $bin ]]; then
  (cd "$root" && cargo build --quiet --example demo)
  bin=${CARGO_TARGET_DIR:-$root/target}/debug/examples/demo
fi

mkdir -p "$work/cluster"
# cluster.sh refuses ports in use (it never talks to workers it did not start).
RESPAWN=1 RESPAWN_DELAY=0.05 CLUSTER_DIR="$work/cluster" PORT=$port WORKER_BASE_PORT=$base \
  DEMO_BIN="$bin" "$root/scripts/cluster.sh" "$workers" >"$work/cluster.log" 2>&1 &
cluster_pid=$!
for ((t = 0; t < 300; t++)); do
  [[ -f $work/cluster/ready ]] && break
  kill -0 "$cluster_pid" 2>/dev/null || { cat "$work/cluster.log" >&2; exit 1; }
  sleep 0.1
done
[[ -f $work/cluster/ready ]] || { echo "cluster did not start" >&2; cat "$work/cluster.log" >&2; exit 1; }

APP_WS="ws://127.0.0.1:$port/ws" CLUSTER_DIR="$work/cluster" WORKERS=$workers \
  WORKER_BASE_PORT=$base KILLS=${KILLS:-20} CLICK_MS=${CLICK_MS:-2} CLIENT=${CLIENT:-} \
  timeout 300 node --experimental-websocket --no-warnings "$root/scripts/inflight.mjs"

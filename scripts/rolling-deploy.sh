#!/usr/bin/env bash
# Rolling deploy under load: N live clients (default 60) with the real JS client under node,
# while a 3-worker cluster behind nginx is rolled from "version K" of the demo (wizard state
# schema 1) to "version K+1" (schema 2, adds an e-mail) in two phases, one worker at a time:
# expand (DEMO_SCHEMA=2 DEMO_SEAL_AS=1: reads 1 and 2, seals 1), then contract (DEMO_SCHEMA=2:
# seals 2). Each step writes the worker's w<i>.env (see scripts/cluster.sh), SIGTERMs it and
# lets the supervisor restart it; every client then makes a change, reconnects (to K or K+1,
# round-robin) and checks every component. Prints per step the clients, how many were on the
# replaced worker, how many lost state, and reconnect times; exits 0 only if nothing was lost.
#
#   scripts/rolling-deploy.sh          # 60 clients
#   scripts/rolling-deploy.sh 100
#
# Environment: PORT (nginx, default 3400), WORKER_BASE_PORT (default 3410: workers on
# 3411..3413), DEMO_BIN and CLIENT (another build of the demo and of the JS client, to compare
# releases; by default this checkout's), ALLOW_SMALL=1 (allow N < 50), KEEP=1 (keep the cluster dir and logs even on
# success; on failure they are always kept), SKIP_EXPAND=1 (a negative control: straight to
# the contract phase, so K workers get entries they cannot read and clients are lost; expect a
# failure). Loopback only. Refuses to start if any of its
# ports is in use. The node part has a hard limit of 120 s (every wait in it is 10 s at most);
# the cluster is stopped on any exit.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
n=${1:-60}
port=${PORT:-3400}
base=${WORKER_BASE_PORT:-3410}
workers=3

if [[ ! $n =~ ^[1-9][0-9]*$ ]] || ((n > 400)); then
  echo "usage: $0 [N]  (clients, 50..400; default 60)" >&2
  exit 2
fi
if ((n < 50)) && [[ ${ALLOW_SMALL:-0} != 1 ]]; then
  echo "rolling-deploy: N=$n is below 50 clients; set ALLOW_SMALL=1 to run it anyway" >&2
  exit 2
fi
# Our ports must be free: this script never talks to a cluster it did not start.
# shellcheck source=ports.sh
source "$root/scripts/ports.sh"
cluster_ports rolling-deploy "$port" "$base" "$workers" || exit $?

command -v node >/dev/null || { echo "rolling-deploy: node (>= 20) is required" >&2; exit 1; }
major=$(node -p 'process.versions.node.split(".")[0]')
((major >= 20)) || { echo "rolling-deploy: node $(node --version) is too old (need 20 or newer)" >&2; exit 1; }

work=$(mktemp -d /tmp/state-recovery-rolling.XXXXXX)

run_name=rolling-deploy
# shellcheck source=cluster-run.sh
source "$root/scripts/cluster-run.sh"
trap cleanup EXIT
trap 'exit 130' INT TERM

bin=${DEMO_BIN:-}
if [[ -z $bin ]]; then
  (cd "$root" && cargo build --quiet --example demo)
  bin=${CARGO_TARGET_DIR:-$root/target}/debug/examples/demo
fi

# Version K everywhere to start with, whatever this shell has set.
mkdir -p "$work/cluster"
env -u DEMO_SCHEMA -u DEMO_SEAL_AS RESPAWN=1 RESPAWN_DELAY=0.2 CLUSTER_DIR="$work/cluster" \
  PORT="$port" WORKER_BASE_PORT="$base" DEMO_BIN="$bin" \
  "$root/scripts/cluster.sh" "$workers" >"$work/cluster.log" 2>&1 &
cluster_pid=$!
# Bounded: 120 s, enough for cluster.sh to install nginx when it is missing.
for ((t = 0; t < 1200; t++)); do
  [[ -f $work/cluster/ready ]] && break
  kill -0 "$cluster_pid" 2>/dev/null || { cat "$work/cluster.log" >&2; exit 1; }
  sleep 0.1
done
[[ -f $work/cluster/ready ]] || { echo "rolling-deploy: the cluster did not start" >&2; exit 1; }
for ((i = 1; i <= workers; i++)); do
  [[ $(curl -fsS -m 2 "http://127.0.0.1:$((base + i))/healthz") == "ok w$i" ]] ||
    { echo "rolling-deploy: port $((base + i)) does not answer as worker w$i" >&2; exit 1; }
done
echo "rolling-deploy: $n clients, cluster of $workers on 127.0.0.1:$port (workers $((base + 1))..$((base + workers)))" >&2

# In the background, so that a signal to this script is handled at once (bash runs traps
# only between foreground commands) and cleanup stops it.
rc=0
APP_WS="ws://127.0.0.1:$port/ws" CLUSTER_DIR="$work/cluster" WORKERS=$workers \
  WORKER_BASE_PORT=$base CLIENTS=$n SKIP_EXPAND=${SKIP_EXPAND:-0} \
  timeout -k 5 120 node --experimental-websocket --no-warnings "$root/scripts/rolling-deploy.mjs" &
driver_pid=$!
wait "$driver_pid" || rc=$?
driver_pid=
((rc == 124 || rc == 137)) && echo "rolling-deploy: timed out after 120 s" >&2

# What the workers said about it (a schema-2 entry read by a schema-1 worker, say).
for ((i = 1; i <= workers; i++)); do
  log=$work/cluster/w$i.log
  printf 'rolling-deploy: w%s: %s starts, %s newer-schema, %s WARN, %s ERROR lines\n' "$i" \
    "$(grep -c 'listening on' "$log" || true)" "$(grep -c 'newer-schema' "$log" || true)" \
    "$(grep -c ' WARN ' "$log" || true)" "$(grep -c ' ERROR ' "$log" || true)" >&2
done
exit "$rc"
